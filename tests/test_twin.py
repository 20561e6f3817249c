"""The digital twin generator, on a small synthetic training set with known peaks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.edges import get_edge
from mmspec_widgets.twin import REGIONS, build_digital_twin, load_digital_twin, save_digital_twin


def _toy_set(n=12, seed=0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset()
    peaks = {"O_K": 530.0, "Mn_L23": 642.5, "Co_L23": 780.0, "Ni_L23": 853.5}
    for name, p in peaks.items():
        g = get_edge(name).energy
        spec = 1 / (1 + np.exp(-(g - p - 1) / 0.5)) + 3 * np.exp(-0.5 * ((g - p) / 0.6) ** 2)
        ds[name] = (("sample", f"energy_{name}"), np.tile(spec, (n, 1)))
        ds = ds.assign_coords({f"energy_{name}": g})
    ds["li_content"] = ("sample", rng.uniform(0.3, 1.0, n))
    ds["o_vacancy"] = ("sample", np.array([0, 0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0])[:n])
    ds["antisite"] = ("sample", np.array([0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0])[:n])
    for t in ("ni_fraction", "mn_fraction", "co_fraction"):
        ds[t] = ("sample", np.full(n, 1 / 3))
    for t in ("ni_oxidation", "mn_oxidation", "co_oxidation"):
        ds[t] = ("sample", rng.uniform(2, 4, n))
    ds = ds.assign_coords(structure_id=("sample", [f"s{i}" for i in range(n)]),
                          split=("sample", ["test"] * n))
    return ds


@pytest.fixture(scope="module")
def twin():
    return build_digital_twin(_toy_set(), shape=(6, 16), seed=3)


def test_layout_and_truth(twin):
    assert twin.si.dims == ("y", "x", "energy") and twin.si.shape == (6, 16, 2048)
    assert twin.zlp.shape[:2] == (6, 16)
    region = twin.truth["region"].values
    # a set without phases: no reduced surface, no Li-rich patch
    assert set(np.unique(region)) == {0, 1, 2, 3, 4}
    assert "phase" not in twin.truth and "rock_salt" not in twin.truth
    vac = region == 0
    assert np.isnan(twin.truth["li_content"].values[vac]).all()
    assert np.isfinite(twin.truth["li_content"].values[~vac]).all()
    assert (twin.truth["o_vacancy"].values[region == 3] > 0).all()
    assert (twin.truth["antisite"].values[region == 4] > 0).all()
    # vacuum has ~1 % of the bulk counts
    tot = twin.si.sum("energy").values
    assert tot[vac].mean() < 0.02 * tot[region == 2].mean()


def _toy_set_with_phases():
    ds = _toy_set()
    extra = _toy_set(n=12, seed=1).isel(sample=slice(0, 4))
    extra["mn_fraction"] = ("sample", np.array([0.5, 0.4, 0.7, 0.9]))
    extra = extra.assign_coords(structure_id=("sample", [f"p{i}" for i in range(4)]))
    ds = ds.assign_coords(phase=("sample", ["layered"] * 12))
    extra = extra.assign_coords(phase=("sample", ["rock_salt", "spinel", "li_rich", "li_rich"]))
    ds = xr.concat([ds, extra], dim="sample")
    for ph in ("li_rich", "rock_salt", "spinel"):
        ds[ph] = ("sample", (ds["phase"].values == ph).astype(np.int64))
    return ds


def test_phases_add_a_reduced_surface_and_a_li_rich_patch():
    ds = _toy_set_with_phases()
    tw = build_digital_twin(ds, shape=(8, 24), seed=1)
    region = tw.truth["region"].values
    assert set(np.unique(region)) == set(REGIONS)
    phase = tw.truth["phase"].values
    names = tw.truth["phase"].attrs["flag_meanings"].split()
    assert names[0] == "unknown"
    named = np.array(names)[phase + 1]
    assert set(named[region == 5]) <= {"rock_salt", "spinel"}
    assert set(named[region == 6]) == {"li_rich"}
    assert (tw.truth["mn_fraction"].values[region == 6] >= 0.6).all()
    assert set(named[np.isin(region, (1, 2, 3, 4))]) == {"layered"}
    assert (named[region == 0] == "unknown").all()
    # the reduced layer lies between the vacuum and the delithiated layer
    cols = {k: np.flatnonzero((region == k).any(axis=0)) for k in (0, 5, 1)}
    assert cols[0].max() < cols[5].min() and cols[5].max() < cols[1].min()
    assert tw.truth["rock_salt"].values[region == 5].sum() >= 1 or \
        tw.truth["spinel"].values[region == 5].sum() >= 1
    assert set(tw.provenance["regions"]) == {str(k) for k in REGIONS}


def test_zero_loss_records_the_axis_error(twin):
    from mmspec_widgets.calibrate import zero_loss_positions

    z = zero_loss_positions(twin.zlp).values
    off, disp = twin.provenance["energy_error"]["offset_eV"], twin.provenance["energy_error"]["dispersion"]
    assert np.median(z) == pytest.approx(-off / disp, abs=0.1)
    assert 0.05 < z.std() < 0.3  # per-pixel jitter


def test_chain_recovers_the_energy_axis(twin):
    cal = mm.calibrate(twin.si, zlp=twin.zlp, references={"O_K": 530.0, "Ni_L3": 853.5})
    # after zero-loss alignment the error is a pure dispersion error
    assert cal.attrs["calibration_scale"] == pytest.approx(1 / 1.004 * 1.004 ** 2, abs=2e-3)
    ds = mm.extract_edges(mm.remove_spikes(cal))
    bulk = twin.truth["region"].values == 2
    mn = ds["Mn_L23"].values[bulk].mean(0)
    e = ds["energy_Mn_L23"].values
    assert abs(e[np.nanargmax(mn)] - 642.5) < 0.4


def test_round_trip_through_files(twin, tmp_path):
    save_digital_twin(twin, tmp_path / "t")
    back = load_digital_twin(tmp_path / "t")
    np.testing.assert_array_equal(back.si.values, twin.si.values)
    np.testing.assert_allclose(back.si["energy"].values, twin.si["energy"].values, atol=1e-4)
    assert back.si.attrs["beam_energy_keV"] == 300.0
    xr.testing.assert_allclose(back.truth[["li_content", "region"]],
                               twin.truth[["li_content", "region"]])
    assert back.provenance["seed"] == 3


def test_needs_held_out_samples():
    ts = _toy_set().assign_coords(split=("sample", ["train"] * 12))
    with pytest.raises(mm.DataError, match="split"):
        build_digital_twin(ts, shape=(6, 16))
