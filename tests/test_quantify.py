"""Local composition from edge jumps: k-factors, amounts, and the twin end to end."""

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.quantify import (
    composition_from_fractions,
    fit_k_factors,
    quantify,
    quantify_known,
)


def _jumps(n=50, seed=0):
    """Jumps of a column with known atoms and known cross-section ratios."""
    rng = np.random.default_rng(seed)
    ni = rng.uniform(0.2, 0.8, n)
    mn = rng.uniform(0.0, 0.4, n)
    co = 1.0 - ni - np.minimum(mn, 1 - ni)
    mn = 1.0 - ni - co
    o = 2.0 * rng.uniform(0.95, 1.0, n)  # O per TM, a few vacancies
    sigma = {"O_K": 1.0, "Mn_L23": 3.0, "Co_L23": 2.0, "Ni_L23": 1.5}  # per atom
    t = rng.uniform(0.5, 2.0, n)  # thickness
    ds = xr.Dataset({
        "jump_O_K": ("pixel", t * sigma["O_K"] * o),
        "jump_Mn_L23": ("pixel", t * sigma["Mn_L23"] * mn),
        "jump_Co_L23": ("pixel", t * sigma["Co_L23"] * co),
        "jump_Ni_L23": ("pixel", t * sigma["Ni_L23"] * ni),
    })
    truth = {"Mn_L23": mn / o, "Co_L23": co / o, "Ni_L23": ni / o}
    k_true = {e: sigma["O_K"] / sigma[e] for e in truth}
    return ds, truth, k_true, (ni, mn, co, o)


def test_fit_k_factors_recovers_cross_section_ratios_and_quantify_the_amounts():
    ds, truth, k_true, (ni, mn, co, o) = _jumps()
    # the reference region: its mean composition, weighted as the summed jumps are
    t = ds["jump_O_K"].values / o
    comp = {"Ni": np.sum(t * ni), "Mn": np.sum(t * mn), "Co": np.sum(t * co), "O": np.sum(t * o)}
    k = fit_k_factors(ds, comp)
    for e, kt in k_true.items():
        assert k[e] == pytest.approx(kt, rel=1e-9)
    q = quantify(ds, k)
    for e, a in truth.items():
        np.testing.assert_allclose(q[f"amount_{e}"].values, a, rtol=1e-9)
    assert q.attrs["history"][-1]["step"] == "quantify"
    assert "amount_Ni_L23" not in ds  # input untouched
    # given k-factors, or fitted on the known composition, or neither: unchanged
    xr.testing.assert_identical(quantify_known(ds, k_factors=k), q)
    xr.testing.assert_identical(quantify_known(ds, composition=comp), q)
    assert quantify_known(ds) is ds


def test_composition_from_fractions_and_bad_inputs():
    c = composition_from_fractions(0.6, 0.2, 0.2)
    assert c == pytest.approx({"Ni": 0.6, "Mn": 0.2, "Co": 0.2, "O": 2.0})
    with pytest.raises(MMSpecError, match="non-negative"):
        composition_from_fractions(-0.1, 0.5, 0.6)
    ds, *_ = _jumps()
    with pytest.raises(MMSpecError, match="O atoms"):
        fit_k_factors(ds, {"Ni": 1.0, "Mn": 1.0, "Co": 1.0})
    with pytest.raises(MMSpecError, match="positive amount of Mn"):
        fit_k_factors(ds, {"Ni": 1.0, "Co": 1.0, "O": 2.0})
    with pytest.raises(MMSpecError, match="positive k-factor for Co_L23"):
        quantify(ds, {"Ni_L23": 1.0, "Co_L23": -1.0})
    with pytest.raises(DataError, match="jump_O_K"):
        quantify(ds.drop_vars("jump_O_K"), {"Ni_L23": 1.0})
    with pytest.raises(DataError, match="no pixel"):
        fit_k_factors(ds * 0.0, composition_from_fractions(0.6, 0.2, 0.2))


def test_extract_edges_records_jumps_that_quantify_the_twin():
    """End to end on the shipped twin: calibrate -> edges -> k-factors fitted on the
    particle's mean composition -> amounts per pixel follow the true composition."""
    from mmspec_widgets.background import remove_spikes
    from mmspec_widgets.calibrate import calibrate
    from mmspec_widgets.demo import REFERENCES
    from mmspec_widgets.extract import extract_edges
    from mmspec_widgets.twin import load_digital_twin

    twin = load_digital_twin()
    eds = extract_edges(remove_spikes(calibrate(twin.si, zlp=twin.zlp, references=REFERENCES)))
    for e in ("O_K", "Mn_L23", "Co_L23", "Ni_L23"):
        assert f"jump_{e}" in eds and eds[f"jump_{e}"].dims == ("y", "x")
    tr = twin.truth
    particle = np.isfinite(tr["li_content"].values)
    fr = {el: np.nanmean(tr[f"{el.lower()}_fraction"].values[particle]) for el in ("Ni", "Mn", "Co")}
    comp = composition_from_fractions(fr["Ni"], fr["Mn"], fr["Co"])
    q = quantify(eds, fit_k_factors(eds, comp))
    total = sum(q[f"amount_{e}"] for e in ("Mn_L23", "Co_L23", "Ni_L23"))
    share = (q["amount_Ni_L23"] / total).values[particle]
    true = tr["ni_fraction"].values[particle]
    ok = np.isfinite(share)
    assert ok.mean() > 0.9
    # the Ni share of the TM jumps tracks the true local Ni fraction
    assert np.corrcoef(share[ok], true[ok])[0, 1] > 0.8
    assert np.median(np.abs(share[ok] - true[ok])) < 0.1


def test_cli_predict_reads_the_composition_from_the_jumps(tmp_path, capsys):
    import warnings

    import mmspec_widgets as mm
    from mmspec_widgets import cli
    from mmspec_widgets.demo import REFERENCES
    from mmspec_widgets.twin import load_digital_twin

    twin = load_digital_twin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eds = mm.extract_edges(mm.remove_spikes(mm.calibrate(twin.si, zlp=twin.zlp,
                                                             references=REFERENCES)))
    src = mm.save(eds, tmp_path / "edges.nc")
    nominal = twin.provenance["nominal_composition"]
    comp = ",".join(str(nominal[el]) for el in ("Ni", "Mn", "Co"))
    out = tmp_path / "maps.nc"
    assert cli.main(["predict", str(src), "--composition", comp, "--out", str(out)]) == 0
    assert "k-factors fitted" in capsys.readouterr().out
    maps = xr.load_dataset(out)
    assert str(maps.attrs["amounts_used"]) in ("True", "1")
    truth = twin.truth["ni_fraction"].values
    err = np.nanmean(np.abs(maps["ni_fraction"].values - truth))
    assert err < 0.1
    plain = tmp_path / "plain.nc"
    assert cli.main(["predict", str(src), "--out", str(plain)]) == 0
    assert np.nanmean(np.abs(xr.load_dataset(plain)["ni_fraction"].values - truth)) > err
    capsys.readouterr()
    assert cli.main(["predict", str(src), "--composition", "0.6;0.2", "--out", str(plain)]) == 1
    assert "NI,MN,CO" in capsys.readouterr().err
    assert cli.main(["predict", str(src), "--composition", comp, "--k-factors", "Ni_L23=1",
                     "--out", str(plain)]) == 1
    assert "not both" in capsys.readouterr().err


def test_stated_jump_std_matches_the_scatter_of_fresh_poisson_draws():
    import warnings

    import mmspec_widgets as mm
    from mmspec_widgets.demo import REFERENCES
    from mmspec_widgets.twin import load_digital_twin

    twin = load_digital_twin()
    rng = np.random.default_rng(5)

    def edges_of(si):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mm.extract_edges(mm.remove_spikes(mm.calibrate(si, zlp=twin.zlp,
                                                                  references=REFERENCES)))

    eds = edges_of(twin.si)
    draws = [edges_of(twin.si.copy(data=rng.poisson(np.clip(twin.si.values, 0, None))
                                   .astype(np.float32))) for _ in range(5)]
    for e in ("O_K", "Mn_L23", "Co_L23", "Ni_L23"):
        stated = eds[f"jump_{e}_std"].values
        emp = np.nanstd(np.stack([d[f"jump_{e}"].values for d in draws]), axis=0, ddof=1)
        ok = np.isfinite(stated) & np.isfinite(emp) & (stated > 0)
        assert ok.mean() > 0.8
        assert 0.7 < np.median(emp[ok] / stated[ok]) < 1.4, e
    # propagated into the amounts and TM fractions, and from there into the maps
    k = fit_k_factors(eds, twin.provenance["nominal_composition"])
    q = quantify(eds, k)
    assert "amount_Ni_L23_std" in q and (q["amount_Ni_L23_std"] > 0).any()
    assert "tm_fraction_Ni_L23_std" in q and (q["tm_fraction_Ni_L23_std"] > 0).any()
    from mmspec_widgets.learn import load_model

    model = load_model()
    base = model.predict(q, refuse_undetected=False)
    wide = eds.copy()
    for e in ("Mn_L23", "Co_L23", "Ni_L23"):
        wide[f"jump_{e}_std"] = 10 * eds[f"jump_{e}_std"]
    widened = model.predict(quantify(wide, k), refuse_undetected=False)
    # (pixels whose TM edges all fall below 3 std once widened have no fractions)
    particle = np.isfinite(base["ni_fraction"].values) & np.isfinite(
        widened["ni_fraction"].values)
    assert particle.sum() > 0.5 * np.isfinite(base["ni_fraction"].values).sum()
    assert np.all(widened["ni_fraction_std"].values[particle]
                  >= base["ni_fraction_std"].values[particle] - 1e-12)
    assert np.mean(widened["ni_fraction_std"].values[particle]) > 1.5 * np.mean(
        base["ni_fraction_std"].values[particle])
    np.testing.assert_allclose(widened["ni_fraction"].values[particle],
                               base["ni_fraction"].values[particle])


def test_fast_and_out_of_core_chains_read_the_jumps_too(tmp_path):
    import warnings

    from mmspec_widgets.demo import run_chain
    from mmspec_widgets.pipeline import map_spectrum_image, run_chain_fast
    from mmspec_widgets.twin import load_digital_twin

    twin = load_digital_twin()
    nominal = twin.provenance["nominal_composition"]
    truth = twin.truth["ni_fraction"].values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eds_plain, plain = run_chain(twin.si, twin.zlp, composition=nominal)
        eds_fast, fast = run_chain_fast(twin.si, twin.zlp, composition=nominal)
    assert fast.attrs["amounts_used"]
    for e in ("Mn_L23", "Co_L23", "Ni_L23"):
        a, b = eds_plain[f"amount_{e}"].values, eds_fast[f"amount_{e}"].values
        ok = np.isfinite(a) & np.isfinite(b)
        assert ok.mean() > 0.85
        np.testing.assert_allclose(b[ok], a[ok], rtol=1e-3, atol=1e-4)
    err_fast = np.nanmean(np.abs(fast["ni_fraction"].values - truth))
    assert err_fast < 0.1
    assert abs(err_fast - np.nanmean(np.abs(plain["ni_fraction"].values - truth))) < 0.01
    k = {e: float(eds_fast[f"amount_{e}"].attrs["k_factor"]) for e in ("Mn_L23", "Co_L23",
                                                                       "Ni_L23")}
    store = tmp_path / "maps.zarr"
    ooc = map_spectrum_image(twin.si, twin.zlp, k_factors=k, out=store, block=(6, 12),
                             progress=False)
    np.testing.assert_allclose(ooc["ni_fraction"].values, fast["ni_fraction"].values,
                               atol=1e-6, equal_nan=True)
    # both carry the counting errors of the jumps into the fraction std, as the plain chain
    np.testing.assert_allclose(ooc["ni_fraction_std"].values, fast["ni_fraction_std"].values,
                               rtol=1e-6, equal_nan=True)
    ok = np.isfinite(plain["ni_fraction_std"].values)
    ratio = fast["ni_fraction_std"].values[ok] / plain["ni_fraction_std"].values[ok]
    assert np.median(np.abs(ratio - 1)) < 0.02
    # a store written with other k-factors is not silently resumed
    with pytest.raises(MMSpecError, match="k_factors"):
        map_spectrum_image(twin.si, twin.zlp, k_factors={e: 2 * v for e, v in k.items()},
                           out=store, block=(6, 12), progress=False)


def test_li_k_is_calibrated_only_when_the_composition_gives_li():
    ds, truth, k_true, (ni, mn, co, o) = _jumps()
    li = np.full(ni.size, 0.8)
    ds["jump_Li_K"] = ds["jump_O_K"] / o * 0.5 * li  # Li K cross-section half of O K's
    comp = composition_from_fractions(np.mean(ni), np.mean(mn), np.mean(co))
    k = fit_k_factors(ds, comp)
    assert "Li_K" not in k and {"Mn_L23", "Co_L23", "Ni_L23"} <= set(k)
    t = ds["jump_O_K"].values / o
    k_li = fit_k_factors(ds, {"Li": np.sum(t * li), "O": np.sum(t * o)}, which=["Li_K"])
    np.testing.assert_allclose(quantify(ds, k_li)["amount_Li_K"].values, li / o, rtol=1e-9)
