"""Maps a microscopist can trust: composition from cross-sections, edges that
are not detected are not read, targets without their element's edge are NaN
with a reason, and the CLI maps an instrument file."""

import warnings

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.crosssections import (
    SYSTEMATIC,
    differential_cross_section,
    effective_collection_angle,
    window_cross_section,
)
from mmspec_widgets.errors import DataError
from mmspec_widgets.extract import jump_window
from mmspec_widgets.quantify import (
    REASONS,
    TM_EDGES,
    explain_reasons,
    quantify,
    summed_composition,
)

TM = ("Mn_L23", "Co_L23", "Ni_L23")
#: the issue's acceptance range for the real particle (fractions of the TMs)
MN_RANGE, MINOR_RANGE = (0.60, 0.78), (0.08, 0.25)


@pytest.fixture(scope="module")
def real_edges(tm_si_path, zlp_si_path):
    from mmspec_widgets.demo import REFERENCES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        si, zlp = mm.load(tm_si_path), mm.load(zlp_si_path)
        cal = mm.calibrate(si, zlp=zlp, references=REFERENCES)
        return mm.extract_edges(mm.remove_spikes(cal), edges=["O_K", *TM])


@pytest.fixture(scope="module")
def model():
    return mm.load_model()


def test_hydrogenic_cross_sections_agree_with_exspy_and_kinematics():
    """Own integration of Egerton's hydrogenic GOS against exspy's, offline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from exspy._misc.eels.hydrogenic_gos import HydrogenicGOS
    for edge, sub in (("O_K", "O_K"), ("Mn_L23", "Mn_L3"), ("Co_L23", "Co_L3"),
                      ("Ni_L23", "Ni_L3")):
        ref = HydrogenicGOS(sub)
        spline = ref.integrateq(ref.onset_energy, 0.1, 300.0)  # rad, keV
        e = np.linspace(*jump_window(edge), 5)
        ours = differential_cross_section(edge, e, beam_energy_keV=300, collection_mrad=100)
        np.testing.assert_allclose(ours, spline(e), rtol=0.01)
    # below the onset nothing; a larger collection angle collects more; a faster
    # beam less (Bethe: ~ 1 / v^2 at large angles)
    assert differential_cross_section("O_K", [520.0], beam_energy_keV=300,
                                      collection_mrad=100)[0] == 0.0
    w = jump_window("Ni_L23")
    s = {b: window_cross_section("Ni_L23", w, beam_energy_keV=300, collection_mrad=b)
         for b in (10, 30, 100)}
    assert s[10] < s[30] < s[100]
    assert window_cross_section("Ni_L23", w, beam_energy_keV=200, collection_mrad=100) > s[100]
    # convergent probe: Egerton's effective angle, as exspy computes it (exspy takes a
    # characteristic angle twice E / (gamma m v^2); within 0.5 % where theta_E << beta)
    from exspy._misc.eels.effective_angle import effective_angle

    assert effective_collection_angle(300, 600, 0.0, 20.0) == 20.0
    for a, b in ((10.0, 100.0), (30.0, 20.0), (40.0, 20.0)):
        assert effective_collection_angle(300, 600, a, b) == pytest.approx(
            effective_angle(300, 600, a, b), rel=5e-3)
    assert effective_collection_angle(300, 600, 30.0, 100.0) < 100.0
    assert window_cross_section("Ni_L23", w, beam_energy_keV=300, collection_mrad=100,
                                convergence_mrad=30) <= s[100]


def _synthetic_jumps(seed=0, n=200, counts=1e5):
    """Jumps of columns of known atoms made with the cross-sections themselves
    (300 kV, 100 mrad), with Poisson-like noise of known size."""
    rng = np.random.default_rng(seed)
    frac = rng.dirichlet([6, 2, 2], n)  # Mn, Co, Ni shares
    o = rng.uniform(1.8, 2.0, n)  # O per TM
    sig = {e: window_cross_section(e, jump_window(e), beam_energy_keV=300, collection_mrad=100)
           for e in ("O_K", *TM)}
    thick = rng.uniform(0.5, 1.5, n) * counts / sig["O_K"] / 2
    atoms = {"O_K": o, **{e: frac[:, i] for i, e in enumerate(TM)}}
    data = {}
    for e, a in atoms.items():
        j = thick * a * sig[e]
        s = np.sqrt(j) + 0.01 * j  # counting + background extrapolation
        data[f"jump_{e}"] = ("pixel", j + rng.normal(0, 1, n) * s)
        data[f"jump_{e}_std"] = ("pixel", s)
    ds = xr.Dataset(data, attrs={"beam_energy_keV": 300.0, "collection_angle_mrad": 100.0})
    return ds, atoms, frac


def test_quantify_by_cross_sections_recovers_the_atoms_and_states_its_std():
    ds, atoms, frac = _synthetic_jumps()
    q = quantify(ds)  # no k-factors: cross-sections from the attrs
    assert q.attrs["quantify_method"] == "cross_sections"
    assert q.attrs["history"][-1]["params"]["collection_mrad"] == 100.0
    total = sum(q[f"tm_fraction_{e}"] for e in TM).values
    np.testing.assert_allclose(total, 1.0, atol=1e-12)  # on the simplex, every pixel
    for i, e in enumerate(TM):
        per_o = atoms[e] / atoms["O_K"]
        a, s = q[f"amount_{e}"].values, q[f"amount_{e}_std"].values
        z = (a - per_o) / s
        # the stated std includes the cross-section systematic: it is never below it
        assert np.all(s / np.maximum(a, 1e-9) >= np.hypot(SYSTEMATIC["L23"], SYSTEMATIC["K"])
                      - 1e-9)
        assert np.median(np.abs(z)) < 1.0  # counting errors alone would be far smaller
        f, fs = q[f"tm_fraction_{e}"].values, q[f"tm_fraction_{e}_std"].values
        assert np.mean(np.abs(f - frac[:, i]) <= 2 * fs) > 0.95
        # without the systematic the fractions are still right, within counting errors
    q0 = quantify(ds, systematic={"K": 0.0, "L23": 0.0})
    for i, e in enumerate(TM):
        err = np.abs(q0[f"tm_fraction_{e}"].values - frac[:, i])
        assert np.mean(err <= 3 * q0[f"tm_fraction_{e}_std"].values) > 0.95
        assert np.all(q0[f"tm_fraction_{e}_std"].values < q[f"tm_fraction_{e}_std"].values)
    # instrument missing from attrs: a clear error, or given as arguments
    bare = ds.copy()
    bare.attrs = {}
    with pytest.raises(DataError, match="beam_energy_keV"):
        quantify(bare)
    xr.testing.assert_allclose(quantify(bare, beam_energy_keV=300, collection_mrad=100)
                               ["tm_fraction_Ni_L23"], q["tm_fraction_Ni_L23"])


def test_quantify_flags_vacuum_and_undetected_li():
    ds, *_ = _synthetic_jumps(n=10)
    ds["jump_O_K"][0] = 0.5 * float(ds["jump_O_K_std"][0])  # below 3 std: vacuum-like
    ds["jump_Li_K"] = ("pixel", np.r_[-50.0, np.full(9, 5.0)])
    ds["jump_Li_K_std"] = ("pixel", np.full(10, 10.0))
    q = quantify(ds)
    assert np.isnan(q["amount_Mn_L23"].values[0]) and np.isfinite(q["amount_Mn_L23"].values[1:]).all()
    assert q["quantify_reason"].values[0] & 2
    assert np.isnan(q["amount_Li_K"].values).all()  # Li K never above 3 std
    assert np.all(q["quantify_reason"].values & 4)
    assert "Li K not detected Li not measurable" in explain_reasons(int(q["quantify_reason"][1]))
    assert q["quantify_reason"].attrs["flag_meanings"].split() == list(REASONS.values())


def test_real_tm_si_is_mn_rich_by_cross_sections(real_edges):
    q = quantify(real_edges)
    particle = np.isfinite(q["amount_Mn_L23"].values)
    assert particle.sum() >= 38
    total = sum(q[f"tm_fraction_{e}"] for e in TM).values[particle]
    np.testing.assert_allclose(total, 1.0, atol=1e-9)
    mean = {e: np.mean(q[f"tm_fraction_{e}"].values[particle]) for e in TM}
    assert MN_RANGE[0] <= mean["Mn_L23"] <= MN_RANGE[1]
    for e in ("Co_L23", "Ni_L23"):
        assert MINOR_RANGE[0] <= mean[e] <= MINOR_RANGE[1]
        std = q[f"tm_fraction_{e}_std"].values[particle]
        assert np.all(np.isfinite(std) & (std > 0))
    # the summed jumps (the classical quantification of the particle) agree
    s = summed_composition(q)
    assert MN_RANGE[0] <= s["fractions"]["Mn"][0] <= MN_RANGE[1]
    for el in ("Mn", "Co", "Ni"):
        v, sd = s["fractions"][el]
        assert abs(v - mean[f"{el}_L23"]) < 0.05 and 0 < sd < 0.1
    # TM per O near the layered oxide's 0.5
    tm_per_o = sum(v for v, _ in s["per_o"].values())
    assert 0.35 < tm_per_o < 0.7


def test_predict_reads_fractions_from_the_jumps_and_records_the_edges(real_edges, model):
    q = quantify(real_edges)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = model.predict(q)
    particle = np.isfinite(q["amount_Mn_L23"].values)
    fr = [f"{e.split('_')[0].lower()}_fraction" for e in TM_EDGES]
    total = sum(maps[t] for t in fr).values
    np.testing.assert_allclose(total[particle], 1.0, atol=0.02)
    for t in fr:
        assert np.isfinite(maps[f"{t}_std"].values[particle]).all()
    # every pixel records which edges it used; an undetected edge is never used
    assert maps["edges_used"].values[particle].min() > 0
    for e in ("O_K", *TM):
        used = maps[f"used_{e}"].values
        det = q[f"detected_{e}"].values
        assert not np.any(used & ~det)
        assert np.all(maps["nan_reason"].values[~det & particle] & 32)
        bit = int(maps["edges_used"].attrs["flag_masks"][
            maps["edges_used"].attrs["flag_meanings"].split().index(e)])
        np.testing.assert_array_equal((maps["edges_used"].values & bit) > 0, used)
    # an oxidation state is given only where its element's edge was used
    for el in ("ni", "mn", "co"):
        ox = maps[f"{el}_oxidation"].values
        used = maps[f"used_{el.capitalize()}_L23"].values
        assert np.all(np.isnan(ox[~used]))
        assert np.all(maps["nan_reason"].values[particle & ~used]
                      & {"ni": 128, "mn": 256, "co": 512}[el])


def test_o_k_and_mn_only_leave_ni_and_co_unknown(real_edges, model):
    q = quantify(real_edges, which=["Mn_L23"])
    keep = ["O_K", "Mn_L23"] + [v for v in q.data_vars
                                if str(v).endswith(("O_K", "Mn_L23", "O_K_std", "Mn_L23_std"))
                                or str(v) == "quantify_reason"]
    sub = q[sorted(set(keep), key=keep.index)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = model.predict(sub)
    for t in ("ni_fraction", "co_fraction", "mn_fraction", "ni_oxidation", "co_oxidation",
              "ni_fraction_std", "co_oxidation_std"):
        assert np.isnan(maps[t].values).all(), t
    assert np.all(maps["nan_reason"].values & 1024)
    r = maps["nan_reason"].values
    assert np.all(((r & 16) > 0) | (((r & 128) > 0) & ((r & 512) > 0)))  # no edge, or no Ni/Co
    # the Mn oxidation is read where the Mn edge is used, unless the model could
    # not learn it (a training set of Mn4+ only): then NaN everywhere, with why
    used = maps["used_Mn_L23"].values
    assert used.any()
    if "mn_oxidation" in maps.attrs["not_learnt"]:
        assert np.isnan(maps["mn_oxidation"].values).all()
        assert "does not vary" in maps["mn_oxidation"].attrs["not_learnt"]
        assert np.all(maps["nan_reason"].values[used] & 4096)
    else:
        assert np.isfinite(maps["mn_oxidation"].values[used]).all()


def test_si_si_li_k_pixels_are_nan_with_a_reason(si_si_path, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        si = mm.load(si_si_path)
        eds = mm.extract_edges(mm.remove_spikes(si), edges=["Li_K", "O_K"])
        q = quantify(eds)
        maps = model.predict(q)
    assert np.isnan(q["amount_Li_K"].values).all()
    li = maps["li_content"].values
    assert np.isnan(li).all() and np.isnan(maps["li_content_std"].values).all()
    reason = maps["nan_reason"].values
    assert np.all(reason & (2048 | 16))
    assert all(explain_reasons(int(r)) for r in reason.ravel())


def test_cli_predict_maps_the_instrument_file(tm_si_path, zlp_si_path, tmp_path, capsys):
    from mmspec_widgets import cli

    out = tmp_path / "maps.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cli.main(["predict", str(tm_si_path), "--zlp", str(zlp_si_path),
                       "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "cross-sections" in text and "O_K, Mn_L23, Co_L23, Ni_L23" in text
    maps = xr.load_dataset(out)
    particle = maps["used_O_K"].values
    assert particle.sum() >= 38
    fr = ("ni_fraction", "mn_fraction", "co_fraction")
    total = sum(maps[t] for t in fr).values[particle]
    assert np.all(np.abs(total - 1) <= 0.02)
    assert maps["edges_used"].values[particle].min() > 0
    assert {f"used_{e}" for e in ("O_K", *TM)} <= set(maps.data_vars)
    mean = {t: float(np.mean(maps[t].values[particle])) for t in fr}
    assert MN_RANGE[0] <= mean["mn_fraction"] <= MN_RANGE[1]
    assert MINOR_RANGE[0] <= mean["ni_fraction"] <= MINOR_RANGE[1]
    assert MINOR_RANGE[0] <= mean["co_fraction"] <= MINOR_RANGE[1]
    for t in fr:
        assert np.isfinite(maps[f"{t}_std"].values[particle]).all()
    # other references: the particle stays Mn-rich; a bad reference name is refused
    out2 = tmp_path / "maps_ni.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["predict", str(tm_si_path), "--zlp", str(zlp_si_path),
                         "--references", "O_K=530,Ni_L3=853.5", "--out", str(out2)]) == 0
        other = xr.load_dataset(out2)
        assert MN_RANGE[0] <= float(np.nanmean(other["mn_fraction"].values)) <= MN_RANGE[1]
        capsys.readouterr()
        assert cli.main(["predict", str(tm_si_path), "--references", "Fe_L3",
                         "--out", str(out2)]) == 1
    assert "unknown feature" in capsys.readouterr().err


def test_twin_removing_an_edge_widens_or_refuses_what_it_informs(model):
    """On the digital twin: without O K the Li content and O-vacancy std widen;
    without an element's L2,3 edge its oxidation state is refused (NaN, reason)."""
    from mmspec_widgets.demo import REFERENCES
    from mmspec_widgets.quantify import fit_k_factors
    from mmspec_widgets.twin import load_digital_twin

    twin = load_digital_twin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eds = mm.extract_edges(mm.remove_spikes(mm.calibrate(twin.si, zlp=twin.zlp,
                                                             references=REFERENCES)))
        q = quantify(eds, fit_k_factors(eds, twin.provenance["nominal_composition"]))
        full = model.predict(q)
        no_o = model.predict(q, edges=list(TM))
        no_ni = model.predict(q, edges=["O_K", "Mn_L23", "Co_L23"])
    particle = np.isfinite(twin.truth["li_content"].values)
    for t in ("li_content", "o_vacancy"):
        a, b = full[f"{t}_std"].values, no_o[f"{t}_std"].values
        ok = particle & np.isfinite(a) & np.isfinite(b)
        assert ok.sum() > 100
        assert np.median(b[ok] / a[ok]) > 1.1, t  # measured: Li 1.39, O vacancy 1.16
    assert np.isnan(no_ni["ni_oxidation"].values).all()
    assert np.all(no_ni["nan_reason"].values[particle] & 128)
    # with every edge, the Ni oxidation truth lies within 2 std on most pixels it is given
    err = np.abs(full["ni_oxidation"].values - twin.truth["ni_oxidation"].values)
    ok = np.isfinite(err)
    assert np.mean(err[ok] <= 2 * full["ni_oxidation_std"].values[ok]) > 0.9


def test_real_si_report_counts_the_particle(tm_si_path, zlp_si_path, tmp_path, capsys):
    """benchmarks/real_si.py: the share of particle pixels in distribution, the
    edges they use and the phase map, the numbers README quotes."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "real_si", Path(__file__).parents[1] / "benchmarks" / "real_si.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    png = tmp_path / "maps.png"
    assert bench.main(["--json", "--png", str(png)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["particle_pixels"] >= 38
    assert 0.0 <= res["in_distribution"] <= 1.0 and res["median_ood_score"] > 0
    assert res["pixels_using"]["O_K"] == res["particle_pixels"]
    assert 0.0 < res["all_four_edges"] <= 1.0
    assert 0.6 <= res["targets"]["mn_fraction"]["mean"] <= 0.8  # Mn-rich, as quantified
    for t in res["not_learnt"]:
        assert res["targets"].get(t) is None  # not learnt: no value anywhere
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each edge's median OOD ratio, unshifted: Co L2,3 the nearest to the
    # training spectra, Mn L2,3 the farthest (README quotes them)
    ratio = {e: r["+0.0"] for e, r in res["edge_ood_ratio"].items()}
    assert set(ratio) == {"O_K", "Mn_L23", "Co_L23", "Ni_L23"}
    assert all(r > 0 for r in ratio.values())
    assert min(ratio, key=ratio.get) == "Co_L23" and max(ratio, key=ratio.get) == "Mn_L23"
    # the phase map names one phase per particle pixel
    assert sum(res["phase_pixels"].values()) == res["particle_pixels"]
