"""The committed training set: schema, counts, provenance, and that it is
what the committed campaign store assembles to."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets.edges import EDGE_ORDER, get_edge
from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.paths import data_dir
from mmspec_widgets.simulate.campaign import CampaignStore
from mmspec_widgets.simulate.dataset import (
    REFERENCE_SPEC,
    _main_feature,
    assemble_training_set,
    assign_split,
    load_training_set,
    region_spectrum,
)
from mmspec_widgets.simulate.labels import LABELS

STORE = data_dir() / "sim"


@pytest.fixture(scope="module")
def ds():
    return load_training_set()


def test_schema(ds):
    assert "sample" in ds.dims
    for edge in EDGE_ORDER:
        dim = f"energy_{edge}"
        assert ds[edge].dims == ("sample", dim)
        np.testing.assert_allclose(ds[dim].values, get_edge(edge).energy)
        assert ds[dim].attrs["units"] == "eV"
    for lab in LABELS:
        assert ds[lab].dims == ("sample",)
    for c in ("structure_id", "split", "defect", "composition"):
        assert ds[c].dims == ("sample",)
    for a in ("engines", "feff_params", "alignment", "git_revision", "date", "history"):
        assert a in ds.attrs
    assert "feff10" in json.loads(ds.attrs["engines"])["feff"]


def test_counts_and_labels(ds):
    n = ds.sizes["sample"]
    assert n >= 120  # the data set target; the campaign keeps adding
    assert len(set(ds["structure_id"].values.tolist())) == n  # one sample per structure
    assert set(np.unique(ds["split"].values)) <= {"train", "test"}
    for lab in ("o_vacancy", "antisite"):
        v = ds[lab].values
        assert np.issubdtype(v.dtype, np.integer) and v.min() >= 0
    tm = ds["ni_fraction"] + ds["mn_fraction"] + ds["co_fraction"]
    np.testing.assert_allclose(tm.values, 1.0, atol=1e-9)
    assert float(ds["li_content"].min()) >= 0.0 and float(ds["li_content"].max()) <= 1.3
    ox = ds["ni_oxidation"].values
    assert np.all((ox[np.isfinite(ox)] >= 2.0) & (ox[np.isfinite(ox)] <= 4.0))
    # defect labels agree with the defect class of the structure (layered
    # ones: a rock-salt region's cation mixing counts as antisites whatever
    # its class)
    d = ds["defect"].values
    layered = (np.asarray(ds["phase"].values) == "layered") if "phase" in ds.coords \
        else np.ones(n, bool)
    assert np.all(ds["o_vacancy"].values[(d == "none") & layered] == 0)
    assert np.all(ds["antisite"].values[(d == "none") & layered] == 0)
    assert np.all(ds["o_vacancy"].values[d == "vacancy"] > 0)


def test_amounts_are_the_region_composition_per_oxygen(ds):
    """amount_<edge>: atoms per O atom; their shares are the TM fractions and their
    sum is 1/2 in a stoichiometric region, more where O is missing."""
    am = {el: ds[f"amount_{el}_L23"].values for el in ("Mn", "Co", "Ni")}
    total = sum(am.values())
    for el, a in am.items():
        assert ds[f"amount_{el}_L23"].attrs["units"] == "atoms per O"
        np.testing.assert_allclose(a / total, ds[f"{el.lower()}_fraction"].values, atol=1e-9)
    vac = ds["o_vacancy"].values
    np.testing.assert_allclose(total[vac == 0], 0.5, atol=1e-9)
    assert np.all(total[vac > 0] > 0.5)
    # Li per O over TM per O is the Li content x of LixMO2
    np.testing.assert_allclose(ds["amount_Li_K"].values / total, ds["li_content"].values,
                               atol=1e-9)


def test_missing_edges_are_nan_only_where_element_absent(ds):
    for el in ("Mn", "Co", "Ni"):
        frac = ds[f"{el.lower()}_fraction"].values
        for edge in (f"{el}_L23", f"{el}_K"):
            finite = np.isfinite(ds[edge].values).all(axis=1)
            assert not np.any(finite & (frac == 0)), f"{edge} present without {el}"
        # L2,3 multiplets never fail: present whenever the element is
        assert np.all(np.isfinite(ds[f"{el}_L23"].values).all(axis=1)[frac > 0])
    for edge in EDGE_ORDER:  # a row is either complete or all NaN
        y = ds[edge].values
        assert np.all(np.isfinite(y).all(axis=1) | np.isnan(y).all(axis=1))


def test_split_is_stratified_and_stable(ds):
    ref = json.loads((STORE / "alignment.json").read_text())["reference"]
    manifests = [m for m in CampaignStore(STORE).structures() if m["structure_id"] != ref]
    split = assign_split(manifests)
    for sid, s in zip(ds["structure_id"].values, ds["split"].values, strict=True):
        assert split[sid] == s
    # every defect class with >= 3 structures has a held-out one; ~20 % overall
    for d in np.unique(ds["defect"].values):
        m = ds["defect"].values == d
        if m.sum() >= 3:
            assert (ds["split"].values[m] == "test").any()
    if ds.sizes["sample"] >= 20:
        assert 0.1 <= np.mean(ds["split"].values == "test") <= 0.3
    # adding structures never moves an existing one
    assert assign_split(manifests[: len(manifests) // 2]) == {
        k: v for k, v in split.items() if k in {m["structure_id"] for m in
                                                 manifests[: len(manifests) // 2]}}


def test_committed_set_reassembles_from_committed_store(ds, tmp_path):
    again = assemble_training_set(STORE)
    ids = list(ds["structure_id"].values)
    pos = {s: i for i, s in enumerate(again["structure_id"].values)}
    assert all(s in pos for s in ids)
    idx = [pos[s] for s in ids]
    for edge in EDGE_ORDER:
        np.testing.assert_allclose(again[edge].values[idx], ds[edge].values, equal_nan=True,
                                   atol=1e-9)
    for lab in LABELS:
        np.testing.assert_allclose(again[lab].values[idx], ds[lab].values, equal_nan=True)


def test_alignment_puts_reference_features_at_table_energies():
    store = CampaignStore(STORE)
    align = json.loads((STORE / "alignment.json").read_text())
    man = json.loads((STORE / "structures" / f"{REFERENCE_SPEC.key}.json").read_text())
    assert align["reference"] == REFERENCE_SPEC.key
    for edge, recs in man["sites"].items():
        e = get_edge(edge)
        x = np.arange(e.energy[0] - 5, e.energy[-1], 0.05)
        y = region_spectrum(store, recs, edge, align["shift"][edge],
                            align["l23_scale"].get(edge, 1.0), grid=x)
        assert abs(_main_feature(edge, x, y) - e.reference) < 0.1, edge
        if e.shell == "L23":  # edge step 1 far above, L3 / step as documented
            assert y[-1] == pytest.approx(1.0, abs=0.05)
            assert y.max() == pytest.approx(align["l3_to_step"], rel=0.05)


def test_load_errors(tmp_path):
    with pytest.raises(MMSpecError, match="not found"):
        load_training_set(tmp_path / "none.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(MMSpecError, match="netCDF"):
        load_training_set(bad)


class _Store:
    """Two site spectra: a step at 530 eV and one at 540 eV."""

    def __init__(self):
        om = np.linspace(500.0, 600.0, 401)
        self.d = {"a": (om, (om > 530).astype(float)), "b": (om, (om > 540).astype(float))}

    def has(self, k):
        return k in self.d

    def get(self, k):
        om, mu = self.d[k]
        return {"omega": om, "mu": mu}


def test_region_spectrum_weights_sites():
    """A region spectrum is the weighted mean of its site spectra (weights from
    the manifest, normalised; records without weights count equally)."""
    grid = np.array([535.0, 545.0])
    st = _Store()
    w = region_spectrum(st, [{"key": "a", "weight": 0.1}, {"key": "b", "weight": 0.3}],
                        "O_K", fwhm=0.0, grid=grid)
    np.testing.assert_allclose(w, [0.25, 1.0], atol=1e-9)
    eq = region_spectrum(st, [{"key": "a"}, {"key": "b"}], "O_K", fwhm=0.0, grid=grid)
    np.testing.assert_allclose(eq, [0.5, 1.0], atol=1e-9)
    # a site not in the store is left out and the others renormalised
    one = region_spectrum(st, [{"key": "a", "weight": 0.1}, {"key": "c", "weight": 0.9}],
                          "O_K", fwhm=0.0, grid=grid)
    np.testing.assert_allclose(one, [1.0, 1.0], atol=1e-9)


def test_cli_assemble_renders_trends(tmp_path, capsys):
    """``mmspec simulate --assemble --trends PNG``: the set, its trends figure
    and the rank correlations (Ni L3 centroid follows the Ni oxidation state)."""
    from mmspec_widgets import cli

    path, png = tmp_path / "set.nc", tmp_path / "trends.png"
    assert cli.main(["simulate", "--assemble", "--out", str(STORE), "--dataset", str(path),
                     "--trends", str(png)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["samples"] >= 120 and path.exists()
    assert out["structures"] >= 240 and out["phases"]["layered"] >= 240  # set_summary
    assert set(out["spans"]) == {"li_content", "ni_oxidation", "mn_oxidation", "co_oxidation"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ni = next(r for r in out["trends"] if r["descriptor"] == "Ni_L3_centroid"
              and r["label"] == "ni_oxidation")
    assert ni["agrees"] and ni["rho"] > 0.9


def test_split_stratified_by_phase_leaves_layered_assignments():
    from mmspec_widgets.simulate.dataset import structure_phase

    layered = [{"structure_id": f"l{i:03d}", "order": i, "defect": d}
               for i, d in enumerate(["none", "vacancy", "antisite", "both"] * 10)]
    new = [{"structure_id": f"n{i:03d}", "order": i, "defect": "vacancy",
            "phase": p, "spec": {"phase": p}}
           for i, p in enumerate(["li_rich", "rock_salt", "spinel", "li_rich"] * 5)]
    before = assign_split(layered)
    after = assign_split(layered + new)
    assert {k: after[k] for k in before} == before  # new kinds never move a layered one
    for p in ("li_rich", "rock_salt", "spinel"):
        ids = [m["structure_id"] for m in new if m["phase"] == p]
        assert any(after[i] == "test" for i in ids) and any(after[i] == "train" for i in ids)
    assert structure_phase(layered[0]) == "layered"
    assert structure_phase({"spec": {"phase": "spinel"}}) == "spinel"


def test_assembled_set_has_a_phase_for_every_sample(ds):
    again = assemble_training_set(STORE)
    assert "phase" in again.coords
    assert set(np.unique(again["phase"].values)) <= {"layered", "li_rich", "rock_salt", "spinel"}
    assert (again["phase"].values == "layered").sum() >= 240
    # one 0/1 label per phase other than layered, equal to the phase coordinate
    for ph in ("li_rich", "rock_salt", "spinel"):
        np.testing.assert_array_equal(again[ph].values, again["phase"].values == ph)


def test_set_summary_counts_phases_and_spans():
    from mmspec_widgets.simulate.dataset import set_summary

    n = 8
    toy = xr.Dataset(
        {"mn_fraction": ("sample", [0.3, 0.7, 0.5, 0.9, 0.2, 0.2, 0.3, 0.3]),
         "li_content": ("sample", np.linspace(0.2, 1.2, n)),
         "mn_oxidation": ("sample", [4, 4, 3.5, 3, 2, np.nan, 4, 4]),
         "co_oxidation": ("sample", [3, 3, 3, np.nan, 2, 2.5, 3, 3.5]),
         "ni_oxidation": ("sample", np.full(n, np.nan))},
        coords={"structure_id": ("sample", ["a", "b", "c", "d", "e", "f", "g", "g"]),
                "phase": ("sample", ["layered", "li_rich", "li_rich", "li_rich", "rock_salt",
                                     "spinel", "layered", "layered"])})
    s = set_summary(toy)
    assert s["structures"] == 7
    assert s["phases"] == {"layered": 2, "li_rich": 3, "rock_salt": 1, "spinel": 1}
    assert s["li_rich_mn_rich"] == 2  # Mn 0.7 and 0.9 of the TMs, not 0.5
    assert s["reduced_surface"] == 2
    assert s["spans"]["mn_oxidation"] == [2.0, 4.0]
    assert s["spans"]["co_oxidation"] == [2.0, 3.5]
    assert s["spans"]["ni_oxidation"] is None
    # a set that records no phases: every structure layered
    s = set_summary(toy.drop_vars("phase"))
    assert s["phases"] == {"layered": 7} and s["reduced_surface"] == 0


def test_l3_to_step_rescales_the_white_lines_only(tmp_path, capsys):
    from mmspec_widgets import cli

    align = (STORE / "alignment.json").read_text()
    edges = ["Mn_L23", "Co_L23"]
    base = assemble_training_set(STORE, edges=edges)
    low = assemble_training_set(STORE, edges=edges, l3_to_step={"Mn_L23": 3.9})
    assert (STORE / "alignment.json").read_text() == align  # the store's file untouched
    np.testing.assert_array_equal(low["Co_L23"].values, base["Co_L23"].values)
    ok = np.isfinite(base["Mn_L23"].values).all(axis=1)
    peak_b = np.nanmax(base["Mn_L23"].values[ok], axis=1)
    peak_l = np.nanmax(low["Mn_L23"].values[ok], axis=1)
    # white lines scaled by (3.9 - step) / (6 - step) at the L3 maximum (step ~2/3);
    # the post-edge step stays 1
    ratio = np.median((peak_l - 0.67) / (peak_b - 0.67))
    assert 0.5 < ratio < 0.7
    np.testing.assert_allclose(low["Mn_L23"].values[ok][:, -5:],
                               base["Mn_L23"].values[ok][:, -5:], atol=0.05)
    assert json.loads(low.attrs["alignment"])["l3_to_step"] == {"Mn_L23": 3.9}
    for bad, msg in (({"O_K": 3.0}, "not an L2,3 edge"), ({"Mn_L23": 0.5}, "above 1")):
        with pytest.raises(MMSpecError, match=msg):
            assemble_training_set(STORE, edges=edges, l3_to_step=bad)
    assert cli.main(["simulate", "--assemble", "--out", str(STORE), "--dataset",
                     str(tmp_path / "x.nc"), "--l3-to-step", "Mn_L23=abc"]) == 2
    assert "--l3-to-step" in capsys.readouterr().err



def test_committed_set_holds_the_chemistry_of_real_cathodes(ds):
    """The committed set: Li-rich Mn-rich layers and reduced surfaces next to layered
    NMC, oxidation states of Mn and Co across the range those phases reach, and every
    new phase present in both the training and the held-out split."""
    from mmspec_widgets.simulate.dataset import set_summary

    s = set_summary(ds)
    assert s["structures"] >= 300
    assert s["li_rich_mn_rich"] >= 40  # Li-rich with a region of Mn >= 0.6 of the TMs
    assert s["reduced_surface"] >= 40  # rock-salt- or spinel-like
    lo, hi = s["spans"]["mn_oxidation"]
    assert lo <= 2.5 and hi >= 4.0
    lo, hi = s["spans"]["co_oxidation"]
    assert lo <= 2.0 and hi >= 3.5
    for ph in ("li_rich", "rock_salt", "spinel"):
        split = set(ds["split"].values[ds["phase"].values == ph].tolist())
        assert split == {"train", "test"}, ph
