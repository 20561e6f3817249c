"""Fused multimodal model: any subset of edges, any leading dims, uncertainty, OOD.

Runs on the toy Dataset of ``mmspec_widgets.learn._synthetic`` (same schema as
the simulated training set, not simulated data) with small models.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.base import clone
from sklearn.metrics import r2_score

from mmspec_widgets.edges import edge_grid, get_edge
from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.learn._synthetic import make_synthetic_training_set
from mmspec_widgets.learn.fusion import (
    PHASE_TARGETS,
    REGRESSION_TARGETS,
    TARGETS,
    MultimodalModel,
    dataset_to_matrix,
    phase_map,
)
from mmspec_widgets.learn.uncertainty import Z90, calibrate_scale, interval_coverage

# no augmented copies, so no noisy spectra to learn a noise level from: shape
# featurizers only (the noise featurizer is tested with augmentation below)
SMALL = dict(params={"max_iter": 50, "min_samples_leaf": 5, "max_leaf_nodes": 7, "max_bins": 32},
             settings={"n_points": 12, "n_windows": 2, "n_peaks": 1}, n_folds=3,
             dropout_copies=3, augment_copies=0, kinds=("cdf", "poly", "peaks"))
EELS = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")


@pytest.fixture(scope="module")
def toy() -> xr.Dataset:
    return make_synthetic_training_set(n_structures=30, sites=4, seed=3, missing=0.03)


@pytest.fixture(scope="module")
def split(toy):
    tr = toy.isel(sample=np.flatnonzero(toy.split.values == "train"))
    te = toy.isel(sample=np.flatnonzero(toy.split.values == "test"))
    return tr, te


@pytest.fixture(scope="module")
def model(split):
    return MultimodalModel(**SMALL).fit(split[0])


def _r2(y, p):
    m = np.isfinite(y) & np.isfinite(p)
    return r2_score(y[m], p[m])


def as_image(ds: xr.Dataset, ny: int, nx: int) -> xr.Dataset:
    """Samples -> a (y, x) spectrum-image-like Dataset with nm coordinates."""
    edges = [e for e in ds.data_vars if str(e) in TARGETS or "_K" in str(e) or "_L23" in str(e)]
    sub = ds[[e for e in edges if e not in TARGETS]].isel(sample=slice(0, ny * nx))
    sub = sub.drop_vars(["structure_id", "split"])
    idx = xr.Coordinates.from_pandas_multiindex(
        __import__("pandas").MultiIndex.from_product([np.arange(ny), np.arange(nx)],
                                                     names=["y", "x"]), "sample")
    img = sub.assign_coords(idx).unstack("sample")
    img = img.assign_coords(y=("y", 2.0 * np.arange(ny), {"units": "nm"}),
                            x=("x", 2.0 * np.arange(nx), {"units": "nm"}))
    return img


def test_model_is_a_sklearn_estimator(model):
    params = model.get_params()
    assert params["fusion"] == "early" and params["n_folds"] == 3
    twin = clone(model)
    assert twin.get_params()["settings"] == SMALL["settings"]
    assert not hasattr(twin, "models_")


def test_predict_keeps_leading_dims_yx_scan_and_none(model, split):
    te = split[1]
    img = as_image(te, 3, 4)
    maps = model.predict(img)
    assert maps["li_content"].dims == ("y", "x") and maps.sizes == {"y": 3, "x": 4}
    assert maps["x"].attrs["units"] == "nm"
    for t in TARGETS:
        assert t in maps and f"{t}_std" in maps
    assert maps["ood"].dtype == bool and maps["ood"].dims == ("y", "x")
    assert maps.attrs["edge_set"] == "+".join(model.edges_)
    assert maps.attrs["model_id"] == model.model_id
    assert maps.attrs["history"][-1]["step"] == "learn.predict"

    # the same pixels as a (scan,) series and one by one (no leading dims)
    flat = img.stack(scan=("y", "x")).reset_index("scan", drop=True)
    flat = flat.drop_vars(["y", "x"], errors="ignore").transpose("scan", ...)
    scan = model.predict(flat)
    assert scan["li_content"].dims == ("scan",) and scan.sizes["scan"] == 12
    np.testing.assert_allclose(scan["li_content"].values, maps["li_content"].values.ravel())
    single = model.predict(flat.isel(scan=5))
    assert single["li_content"].dims == () and single["ood"].dims == ()
    np.testing.assert_allclose(float(single["li_content"]), scan["li_content"].values[5])
    np.testing.assert_allclose(float(single["li_content_std"]),
                               scan["li_content_std"].values[5])


def test_large_images_are_predicted_in_blocks_with_the_same_result(model, split, monkeypatch):
    from mmspec_widgets.learn import fusion

    img = as_image(split[1], 4, 5)
    img.attrs["history"] = '[{"step": "extract_edges"}]'  # as read back from netCDF
    whole = model.predict(img)
    monkeypatch.setattr(fusion, "_CHUNK_ROWS", 3)
    blocks = model.predict(img.chunk({"y": 2}))  # dask-backed, 7 blocks of pixels
    for name in whole.data_vars:  # equal up to floating-point summation order
        np.testing.assert_allclose(whole[name].values, blocks[name].values, rtol=1e-9,
                                   atol=1e-12)
    assert [h["step"] for h in blocks.attrs["history"]] == ["extract_edges", "learn.predict"]


def test_fused_prediction_is_accurate_and_uses_what_it_is_given(model, split):
    te = split[1]
    full = model.predict(te)
    assert _r2(te.li_content.values, full.li_content.values) > 0.7
    assert _r2(te.ni_oxidation.values, full.ni_oxidation.values) > 0.8
    p = full["o_vacancy"].values
    assert np.nanmin(p) >= 0 and np.nanmax(p) <= 1

    sub = model.predict(te, edges=["O_K", "Ni_L23"])
    assert sub.attrs["edges"] == ["O_K", "Ni_L23"] and sub.attrs["edge_set"] == "O_K+Ni_L23"
    # restricting the edges changes the answer (the other edges were really ignored) ...
    assert not np.allclose(sub.li_content.values, full.li_content.values, equal_nan=True)
    # ... and equals predicting from a Dataset that only holds those edges
    only = model.predict(te[["O_K", "Ni_L23"]])
    np.testing.assert_allclose(only.li_content.values, sub.li_content.values)


def test_only_ni_k_xas_predicts_ni_oxidation_and_li_content(model, split):
    te = split[1]
    scans = te[["Ni_K"]].rename(sample="scan")
    maps = model.predict(scans)
    assert maps.attrs["edge_set"] == "Ni_K" and maps["ni_oxidation"].dims == ("scan",)
    ok = np.isfinite(te.Ni_K.values).all(axis=1)
    assert np.isfinite(maps.ni_oxidation.values[ok]).all()
    assert _r2(te.ni_oxidation.values, maps.ni_oxidation.values) > 0.7
    assert _r2(te.li_content.values, maps.li_content.values) > 0.2
    assert np.all(maps.ni_oxidation_std.values[ok] > 0)


def test_model_without_k_edges_works_with_them_absent(split):
    tr, te = split
    eels = MultimodalModel(edges=EELS + ("Li_K",), **SMALL).fit(tr)
    assert "Ni_K" not in eels.edges_
    maps = eels.predict(te)  # the Dataset has K edges; the model ignores them
    assert maps.attrs["edges"] == ["O_K", "Li_K", "Mn_L23", "Co_L23", "Ni_L23"]
    assert _r2(te.li_content.values, maps.li_content.values) > 0.7
    no_k = te.drop_vars(["Mn_K", "Co_K", "Ni_K"])
    np.testing.assert_allclose(eels.predict(no_k).li_content.values, maps.li_content.values)
    with pytest.raises(MMSpecError, match="not one the model was trained on"):
        eels.predict(te, edges=["Ni_K"])


def test_bad_inputs_raise_clear_errors(model, split):
    te = split[1]
    with pytest.raises(MMSpecError, match="unknown edge"):
        model.predict(te, edges=["Fe_L23"])
    with pytest.raises(DataError, match="holds none of the edges"):
        model.predict(te[["li_content"]])
    with pytest.raises(DataError, match="requested"):
        model.predict(te[["O_K"]], edges=["O_K", "Ni_L23"])
    bad = xr.Dataset({"O_K": (("sample", "energy_O_K"), np.ones((2, 10)))})
    with pytest.raises(DataError, match="standard grid"):
        model.predict(bad)
    with pytest.raises(MMSpecError, match="Dataset"):
        model.predict(te["O_K"])
    with pytest.raises(MMSpecError, match="fusion"):
        MultimodalModel(fusion="middle").fit(split[0])


def test_spectra_on_another_energy_grid_are_interpolated(model, split):
    te = split[1].isel(sample=slice(0, 6))
    e = edge_grid("O_K")
    fine = np.arange(e[0] - 2, e[-1] + 2, 0.1)
    resampled = xr.Dataset({"O_K": (("sample", "energy_O_K"),
                                    np.stack([np.interp(fine, e, r) for r in te.O_K.values]))},
                           coords={"energy_O_K": fine})
    a = model.predict(te[["O_K"]]).li_content.values
    b = model.predict(resampled).li_content.values
    np.testing.assert_allclose(a, b, atol=0.05)
    X, layout = dataset_to_matrix(resampled, ["O_K", "Ni_L23"])
    assert X.shape == (6, e.size + edge_grid("Ni_L23").size) and layout["edges"] == ["O_K"]
    assert np.isnan(X[:, e.size:]).all()


def test_missing_pixels_give_nan_and_ood(model, split):
    te = split[1].isel(sample=slice(0, 4)).copy(deep=True)
    for e in model.edges_:
        te[e][1] = np.nan
    maps = model.predict(te)
    assert np.isnan(maps.li_content.values[1]) and bool(maps.ood.values[1])
    assert np.isfinite(maps.li_content.values[[0, 2, 3]]).all()


def test_ood_flags_unlike_spectra_but_not_training_ones(model, split):
    tr, te = split
    train_flags = model.predict(tr).ood.values
    assert train_flags.mean() < 0.05
    assert model.predict(te).ood.values.mean() < 0.15  # unseen structures, same physics
    weird = te.isel(sample=slice(0, 8)).copy(deep=True)
    rng = np.random.default_rng(0)
    for e in model.edges_:
        weird[e][:] = rng.random(weird[e].shape)  # noise, nothing like an edge
    assert model.predict(weird).ood.values.all()
    shifted = te[["Ni_L23"]].isel(sample=slice(0, 8)).copy(deep=True)
    shifted["Ni_L23"][:] = np.roll(shifted.Ni_L23.values, 40, axis=1)  # 8 eV off
    res = model.predict(shifted)
    assert res.ood.values.mean() > 0.5
    assert (res.ood_score.values > 1).sum() == res.ood.values.sum()


def test_an_edge_far_out_of_distribution_is_ignored_for_that_pixel(model, split):
    te = split[1].isel(sample=slice(0, 10)).copy(deep=True)
    te = te.isel(sample=np.flatnonzero(np.isfinite(te.Mn_L23.values).all(axis=1)))
    noisy = te.copy(deep=True)
    rng = np.random.default_rng(1)
    noisy["Mn_L23"][:3] = rng.normal(0, 1, noisy["Mn_L23"][:3].shape)  # a weak edge: noise
    kept = model.predict(noisy, drop_ood_edges=None)
    dropped = model.predict(noisy)  # default: far-out edges ignored
    others = model.predict(noisy, edges=[e for e in model.edges_ if e != "Mn_L23"])
    assert (dropped.n_edges.values[:3] == kept.n_edges.values[:3] - 1).all()
    assert (dropped.n_edges.values[3:] == kept.n_edges.values[3:]).all()
    for t in ("li_content", "o_vacancy"):
        np.testing.assert_allclose(dropped[t].values[:3], others[t].values[:3])
        np.testing.assert_allclose(dropped[t].values[3:], kept[t].values[3:])
    assert dropped.ood.values[:3].all()  # still flagged
    assert dropped.attrs["history"][-1]["drop_ood_edges"] == 10.0


def test_uncertainty_is_calibrated_on_held_out_residuals(model, split):
    te = split[1]
    maps = model.predict(te)
    for t in ("li_content", "ni_oxidation"):
        c = interval_coverage(te[t].values, maps[t].values, maps[f"{t}_std"].values,
                              model.q90(t))
        assert c["n"] > 20
        assert 0.4 <= c["within_1std"] <= 0.95
        assert c["within_90"] >= c["within_1std"]
    # fewer edges -> larger stated uncertainty, on average
    ni = model.predict(te, edges=["Ni_L23"])
    assert np.nanmean(ni.li_content_std) > np.nanmean(maps.li_content_std)
    # defect probabilities carry the fold-ensemble spread
    assert np.nanmax(maps.o_vacancy_std.values) > 0
    assert model.cv_report_["li_content"]["all_edges"] > 0.5


def test_calibrate_scale_recovers_gaussian_quantiles():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 2.0, 20000)
    r = np.abs(rng.normal(0, sigma))
    c1, q90 = calibrate_scale(r, 2 * sigma)  # raw spreads twice too large
    assert c1 == pytest.approx(0.5, rel=0.03)
    assert q90 == pytest.approx(Z90, rel=0.03)
    with pytest.raises(MMSpecError, match="residuals"):
        calibrate_scale(r[:5], sigma[:5])


@pytest.mark.parametrize("fusion", ["late", "hybrid"])
def test_late_and_hybrid_fusion_predict_from_subsets(split, fusion):
    tr, te = split
    late = MultimodalModel(fusion=fusion, edges=("O_K", "Li_K", "Ni_L23", "Ni_K"),
                           edge_params={"max_iter": 40, "max_leaf_nodes": 7}, **SMALL)
    late.fit(tr)
    assert set(late.edge_models_) >= {"O_K/li_content", "Ni_K/ni_oxidation"}
    full = late.predict(te)
    assert _r2(te.li_content.values, full.li_content.values) > 0.7
    ni = late.predict(te, edges=["Ni_K"])
    assert _r2(te.ni_oxidation.values, ni.ni_oxidation.values) > 0.7


def _with_amounts(ds: xr.Dataset) -> xr.Dataset:
    """The toy set plus the relative amounts the simulated set carries (atoms per O)."""
    ds = ds.copy()
    vac = np.asarray(ds["o_vacancy"].values, float)
    o_per_tm = 2.0 * (1.0 - vac / (24.0 + vac))
    for el in ("Mn", "Co", "Ni"):
        ds[f"amount_{el}_L23"] = ("sample", np.nan_to_num(ds[f"{el.lower()}_fraction"].values)
                                  / o_per_tm)
    ds["amount_Li_K"] = ("sample", ds["li_content"].values / o_per_tm)
    return ds


def test_li_amount_gives_the_li_content_with_o_k_and_li_k(split):
    tr, te = (_with_amounts(d) for d in split)
    m = MultimodalModel(edges=("O_K", "Li_K", "Ni_L23"), targets=("li_content",),
                        **SMALL).fit(tr)
    assert m.li_amount_ and m.amount_edges_ == []  # one L2,3 edge: no TM shares
    y = te["li_content"].values
    fused = m.predict(te)
    assert fused.attrs["amounts_used"]
    shapes = m.predict(te.drop_vars("amount_Li_K"))
    li_only = m.predict(te, edges=["Li_K"])  # no O K: no amount
    assert not li_only.attrs["amounts_used"]
    err = {k: np.nanmean(np.abs(v["li_content"].values - y))
           for k, v in (("fused", fused), ("shapes", shapes), ("li_only", li_only))}
    assert err["fused"] < 0.6 * min(err["shapes"], err["li_only"]), err


def test_amounts_give_the_fractions_when_the_eels_edges_come_together(split):
    tr, te = (_with_amounts(d) for d in split)
    m = MultimodalModel(edges=EELS, targets=("ni_fraction", "co_fraction", "li_content"),
                        **SMALL).fit(tr)
    assert m.amount_edges_ == ["Mn_L23", "Co_L23", "Ni_L23"]
    fused = m.predict(te)
    assert fused.attrs["amounts_used"] is True
    shapes = m.predict(te.drop_vars([f"amount_{e}" for e in m.amount_edges_]))
    assert shapes.attrs["amounts_used"] is False
    no_o = m.predict(te, edges=["Mn_L23", "Co_L23", "Ni_L23"])  # no O K: no amounts
    assert no_o.attrs["amounts_used"] is False
    for t in ("ni_fraction", "co_fraction"):
        y = te[t].values
        err_fused = np.nanmean(np.abs(fused[t].values - y))
        err_shapes = np.nanmean(np.abs(shapes[t].values - y))
        assert _r2(y, fused[t].values) > 0.7, t
        assert err_fused < 0.6 * err_shapes, (t, err_fused, err_shapes)
    # a model told not to read amounts ignores them
    plain = MultimodalModel(edges=EELS, targets=("ni_fraction",), use_amounts=False,
                            **SMALL).fit(tr)
    assert plain.amount_edges_ == [] and plain.predict(te).attrs["amounts_used"] is False


def test_specialists_are_precision_weighted_over_kept_edges():
    m = MultimodalModel(edges=("O_K", "Ni_L23", "Ni_K"), targets=("ni_oxidation", "antisite"))
    m.edges_, m.targets_ = list(m.edges), list(m.targets)
    # ni_oxidation: Ni L2,3 10x the precision of O K, Ni K has no model; antisite unweighted
    m.edge_weights_ = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    P = np.array([[2.0, 0.1, 3.0, 0.2, 9.0, 0.3],     # (rows, edges x targets)
                  [2.0, 0.1, np.nan, 0.2, 9.0, 0.3],
                  [2.0, 0.1, 3.0, 0.2, 9.0, 0.3]])
    kept = np.array([[True, True, True], [True, True, True], [False, False, True]])
    S = m._specialists(P, kept)
    assert S[0, 0] == pytest.approx((2.0 + 10 * 3.0) / 11)
    assert S[1, 0] == pytest.approx(2.0)  # Ni L2,3 missing: O K alone
    assert np.isnan(S[2, 0])  # only Ni K kept, which has no weighted model
    assert np.all(np.isnan(S[:, 1]))


def test_hybrid_carries_a_strong_specialist_and_shrinks_tree_corrections(split):
    """Late/hybrid fusion start each regression target from the weighted
    per-edge predictions; the stage-2 correction is scaled by a factor fitted
    out of fold, and with that factor at 0 the prediction is the baseline."""
    tr, te = split
    edges = ("O_K", "Li_K", "Ni_L23", "Ni_K")
    kw = dict(fusion="hybrid", edges=edges, edge_params={"max_iter": 40, "max_leaf_nodes": 7},
              **SMALL)
    m = MultimodalModel(**kw).fit(tr)
    nt = len(m.targets_)
    for k_t, t in enumerate(m.targets_):
        w = m.edge_weights_[:, k_t]
        # weights for regression targets; classification and unlabelled targets none
        assert np.all(w >= 0) and (np.any(w > 0) == (t in REGRESSION_TARGETS))
    assert m.correction_scale_ and all(0.0 <= a <= 1.0 for a in m.correction_scale_.values())
    # with the corrections switched off, a one-edge prediction is that edge's model
    m.correction_scale_ = {t: 0.0 for t in m.correction_scale_}
    X, _ = dataset_to_matrix(te, m.edges_, use=["Ni_L23"])
    F = m.featurizer_.transform(X)
    P = m._level1(F)
    out = m.predict(te, edges=["Ni_L23"])
    k = m.targets_.index("ni_oxidation")
    j = m.edges_.index("Ni_L23")
    np.testing.assert_allclose(out.ni_oxidation.values, P[:, j * nt + k], rtol=1e-9)
    # and the specialist baseline is what the default switch turns on
    off = MultimodalModel(specialist_baseline=False, **kw).fit(tr)
    ref = off.predict(te)
    assert not np.allclose(ref.ni_oxidation.values, m.predict(te).ni_oxidation.values,
                           equal_nan=True)


def test_noisy_pixels_get_wider_uncertainty_than_clean_spectra(split):
    """Trained with noise-level augmentation and the noise featurizer (the
    defaults), the model states a larger std for noisy spectra (as single EELS
    pixels are) than for clean ones, and that std still covers the larger errors
    (on this toy set a model with 1 % training noise and no noise feature covers
    62 % of the Mn oxidation errors within 2 std at 5 % noise, this one 81 %)."""
    tr, te = split
    kw = {**SMALL, "augment_copies": 2, "edges": EELS,
          "targets": ("ni_oxidation", "mn_oxidation")}
    del kw["kinds"]
    m = MultimodalModel(**kw).fit(tr)
    assert "noise" in m.kinds and m.augment is None  # the defaults: DEFAULT_AUGMENT
    rng = np.random.default_rng(0)
    noisy = te.copy()
    for e in EELS:
        x = te[e].values
        noisy[e] = te[e].copy(data=x + rng.normal(0, 0.05, x.shape) * np.nanmax(x, axis=1,
                                                                                keepdims=True))
    clean_p, noisy_p = m.predict(te, edges=EELS), m.predict(noisy, edges=EELS)
    for t in ("ni_oxidation", "mn_oxidation"):
        s_clean = np.nanmean(clean_p[f"{t}_std"].values)
        s_noisy = np.nanmean(noisy_p[f"{t}_std"].values)
        assert s_noisy > 1.3 * s_clean
        err = np.abs(noisy_p[t].values - te[t].values)
        ok = np.isfinite(err)
        assert np.mean(err[ok] <= 2 * noisy_p[f"{t}_std"].values[ok]) > 0.8, t


def test_phase_map_from_the_phase_probabilities():
    out = {"li_rich": np.array([0.9, 0.1, 0.2, np.nan, 0.4]),
           "rock_salt": np.array([0.05, 0.1, 0.7, 0.1, 0.4]),
           "spinel": np.array([0.0, 0.1, 0.2, 0.1, 0.4])}
    res = phase_map(out)
    code, attrs = res["phase"]
    names = attrs["flag_meanings"].split()
    assert [names[c + 1] for c in code] == ["li_rich", "layered", "rock_salt", "unknown",
                                            "li_rich"]
    p = res["phase_probability"][0]
    assert p[0] == pytest.approx(0.9) and p[1] == pytest.approx(0.7)  # layered: 1 - 0.3
    assert np.isnan(p[3])
    # ties go to the first phase; the probabilities are normalised
    assert p[4] == pytest.approx(0.4 / 1.2)
    assert phase_map({"li_rich": np.ones(2)}) == {}
    assert "phase_probability_std" not in res  # no stds given, none made up
    # with the phases' stds: the shown phase's own (layered: the others' in
    # quadrature), over the same normalisation, at most 0.5
    out.update({"li_rich_std": np.array([0.1, 0.1, 0.2, 0.3, 0.5]),
                "rock_salt_std": np.array([0.05, 0.2, 0.3, 0.1, 0.5]),
                "spinel_std": np.array([0.0, 0.2, 0.1, 0.1, 0.5])})
    s = phase_map(out)["phase_probability_std"][0]
    assert s[0] == pytest.approx(0.1) and s[2] == pytest.approx(0.3 / 1.1)
    assert s[1] == pytest.approx(np.sqrt(0.1 ** 2 + 0.2 ** 2 + 0.2 ** 2))
    assert np.isnan(s[3]) and s[4] == pytest.approx(0.5 / 1.2)


def test_a_set_without_phases_leaves_them_not_learnt(model, split):
    for t in PHASE_TARGETS:
        assert "records no structure phases" in model.not_learnt_[t]
    maps = model.predict(split[1])
    assert (maps["phase"].values == -1).all()
    assert np.isnan(maps["phase_probability"].values).all()
    assert np.isnan(maps["spinel"].values).all()


def test_phases_are_learnt_and_mapped():
    toy = make_synthetic_training_set(n_structures=36, sites=4, seed=7, missing=0.0, phases=True,
                                      edges=EELS, test_fraction=0.3)
    tr = toy.isel(sample=np.flatnonzero(toy.split.values == "train"))
    te = toy.isel(sample=np.flatnonzero(toy.split.values == "test"))
    m = MultimodalModel(edges=EELS, **SMALL).fit(tr)
    assert not set(PHASE_TARGETS) & set(m.not_learnt_)
    maps = m.predict(te)
    names = np.array(maps["phase"].attrs["flag_meanings"].split())
    got = names[maps["phase"].values + 1]
    truth = np.asarray(te["phase"].values).astype(str)
    assert (got != "unknown").all()
    assert np.mean(got == truth) > 0.8, (got, truth)
    assert set(truth) == {"layered", "li_rich", "rock_salt", "spinel"}
    assert np.all((maps["phase_probability"].values > 0.25)
                  & (maps["phase_probability"].values <= 1.0))


def test_edge_ood_ratios_name_the_unlike_edge(model, split):
    te = split[1]
    X, _ = dataset_to_matrix(te, model.edges_)
    r = model.edge_ood_ratios(X)
    names = model.ood_edges
    assert r.shape == (X.shape[0], len(names))
    fin = np.isfinite(X[:, :get_edge("O_K").n_points]).all(axis=1)
    assert np.median(r[fin, names.index("O_K")]) < 1.0  # held-out, like training
    bad = X.copy()
    o = slice(0, get_edge("O_K").n_points)
    bad[:, o] = bad[:, o][:, ::-1]  # O K reversed: unlike any O K
    rb = model.edge_ood_ratios(bad)
    assert np.all(rb[fin, names.index("O_K")] > 1.0)
    others = [j for j, e in enumerate(names) if e != "O_K"]
    np.testing.assert_allclose(rb[:, others], r[:, others], equal_nan=True)
    # the same judgement as predict's: those rows are flagged
    rev = te.copy()
    rev["O_K"] = (te["O_K"].dims, te["O_K"].values[:, ::-1])
    assert model.predict(rev)["ood"].values[fin].all()
    missing = np.isnan(X[:, o]).all(axis=1)
    if missing.any():
        assert np.isnan(r[missing, names.index("O_K")]).all()


def test_std_scale_per_edge_count_covers_each_group():
    """Rows read from one edge and from all of them err differently: one scale
    per group covers each at 68 % / 90 %, where one pooled scale over-covers
    the many single-edge rows and under-covers the all-edge ones."""
    from mmspec_widgets.learn.uncertainty import (
        ONE_SIGMA,
        Z90,
        calibrate_by_edge_count,
        calibrate_scale,
        edge_count_group,
    )

    rng = np.random.default_rng(3)
    n_edges = np.concatenate([np.ones(3000, int), rng.integers(2, 4, 800),
                              rng.integers(4, 9, 400)])
    sigma = np.ones(n_edges.size)
    true_sd = np.where(n_edges == 1, 0.5, np.where(n_edges < 4, 1.0, 3.0))
    r = np.abs(rng.normal(0.0, true_sd))
    c1, scales, q90 = calibrate_by_edge_count(r, sigma, n_edges)
    assert c1 == calibrate_scale(r, sigma)[0]
    assert scales[0] < scales[1] < scales[2]
    grp = edge_count_group(n_edges)
    for g in range(3):
        z = r[grp == g] / scales[g]
        assert np.mean(z <= 1.0) >= ONE_SIGMA - 0.02 and np.mean(z <= Z90) >= 0.88
    # the pooled scale leaves the all-edge rows under-covered
    assert np.mean(r[grp == 2] / c1 <= Z90) < 0.8
    assert q90 <= Z90
    # too few rows in a group: the pooled scale
    _, few, _ = calibrate_by_edge_count(r[:3010], sigma[:3010], n_edges[:3010])
    assert few[1] == few[2] == calibrate_scale(r[:3010], sigma[:3010])[0]
