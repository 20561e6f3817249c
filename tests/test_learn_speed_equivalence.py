"""The compiled prediction path gives the numbers of the plain numpy / scipy one.

Each compiled piece is compared, bit for bit, with the computation it replaced,
written out here in plain numpy / scipy: the tree traversal (and scikit-learn's
own predictions), the normalisation, the CDF and peak features, the Gaussian
smoothing, numpy's pairwise sum.  Then whole models (the shipped one on the
digital twin, and small early / late / hybrid models on the toy set) predict
once as they do and once with every compiled piece swapped for its reference:
every map must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks, peak_widths
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from mmspec_widgets.edges import edge_grid
from mmspec_widgets.learn import features as feat
from mmspec_widgets.learn import fusion, trees
from mmspec_widgets.learn.features import (
    CDFFeaturizer,
    FusedFeaturizer,
    PeakFeaturizer,
    normalize_spectra,
)
from mmspec_widgets.learn.trees import CompactBoosting, compact, raw_scores
from mmspec_widgets.learn.uncertainty import OODDetector


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


# --------------------------------------------------------------------------- references

def reference_raw(model: CompactBoosting, X: np.ndarray) -> np.ndarray:
    """Tree traversal with numpy gathers, one depth level at a time, tree outputs
    added in tree order (the implementation the compiled one replaced)."""
    X = np.asarray(X, dtype=np.float64)
    raw = np.full(X.shape[0], model.baseline_)
    if model.roots_.size == 0 or X.shape[0] == 0:
        return raw
    leaf = model.is_leaf_
    idx = np.arange(leaf.size)
    children = np.stack([np.where(leaf, idx, model.right_), np.where(leaf, idx, model.left_)],
                        axis=1).ravel()
    feature = np.where(leaf, 0, model.feature_)
    threshold = np.where(leaf, np.inf, model.threshold_)
    missing_left = model.missing_left_ | leaf
    node = np.tile(model.roots_, (X.shape[0], 1))
    rows = np.arange(X.shape[0])[:, None]
    for _ in range(model.depth_):
        x = X[rows, feature[node]]
        with np.errstate(invalid="ignore"):
            go_left = np.where(np.isnan(x), missing_left[node], x <= threshold[node])
        node = children[2 * node + go_left]
    values = model.value_[node]
    for t in range(values.shape[1]):
        raw += values[:, t]
    return raw


def reference_cdf(self: CDFFeaturizer, Z: np.ndarray) -> np.ndarray:
    Z = np.clip(Z, 0, None)
    de = np.diff(self.energy_)
    cum = np.concatenate([np.zeros((Z.shape[0], 1)),
                          np.cumsum(0.5 * (Z[:, 1:] + Z[:, :-1]) * de, axis=1)], axis=1)
    total = cum[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf = np.where(total > 0, cum / total, np.nan)
    return cdf @ self.weights_.T


def reference_peak_rows(S: np.ndarray, e: np.ndarray, k: int, min_prominence: float,
                        step: float) -> np.ndarray:
    """scipy's peak finder, one smoothed spectrum at a time."""
    out = np.zeros((S.shape[0], 3 * k))
    out[:, 0::3] = e[-1]
    for i, s in enumerate(S):
        top = s.max()
        if not np.isfinite(top) or top <= 0:
            continue
        peaks, props = find_peaks(s, prominence=float(min_prominence) * top)
        if peaks.size == 0:
            continue
        keep = np.sort(peaks[np.argsort(props["prominences"])[::-1][:k]])
        widths = peak_widths(s, keep, rel_height=0.5)[0] * step
        out[i, 0:3 * len(keep):3] = e[keep]
        out[i, 1:3 * len(keep):3] = s[keep]
        out[i, 2:3 * len(keep):3] = widths
    return out


def reference_peaks(self: PeakFeaturizer, Z: np.ndarray) -> np.ndarray:
    sigma = float(self.smooth) / self.step_
    S = gaussian_filter1d(Z, sigma, axis=1, mode="nearest") if sigma > 0 else Z
    return reference_peak_rows(S, self.energy_, int(self.n_peaks), float(self.min_prominence),
                               self.step_)


def reference_transform(self: FusedFeaturizer, X) -> np.ndarray:
    """Each per-edge featurizer's own transform (numpy normalisation) on its block."""
    X = np.asarray(X, dtype=np.float64)
    return np.concatenate([t.transform(X[:, sl]) for e, sl in self.blocks_.items()
                           for t in self.transformers_[e]], axis=1)


def _reference_law(self: OODDetector, e: str, noise, rows):
    """Per row: log mean and log std of the held-out distances of edge ``e``, at
    the row's noise where the detector learnt them as a function of it."""
    law = getattr(self, "noise_law_", {}).get(e)
    n = int(rows.sum())
    if law is None or noise is None:
        return np.full(n, self.log_mean_[e]), np.full(n, self.log_std_[e])
    x = np.log(np.maximum(np.asarray(noise, float)[rows, self.edges_.index(e)], 1e-6))
    x = np.where(np.isfinite(x), x, law["log_noise"][-1])
    mu = np.array([np.interp(v, law["log_noise"], law["log_mean"]) for v in x])
    sd = np.array([np.interp(v, law["log_noise"], law["log_std"]) for v in x])
    return mu, sd


def reference_ood_score(self: OODDetector, F: np.ndarray, noise=None) -> np.ndarray:
    from scipy.stats import norm

    n = F.shape[0]
    present = {e: np.all(np.isfinite(F[:, c]), axis=1) for e, c in self.columns_.items()
               if e in self.fits_}
    k = np.sum([p for p in present.values()], axis=0) if present else np.zeros(n)
    level = 1 - (1 - float(self.quantile)) / np.maximum(k, 1)
    out = np.full(n, -np.inf)
    for e, rows in present.items():
        if rows.any():
            d = self._distance_with(self.fits_[e], F[rows][:, self.columns_[e]])
            mu, sd = _reference_law(self, e, noise, rows)
            thr = np.exp(mu + sd * norm.ppf(level[rows]))
            out[rows] = np.maximum(out[rows], d / thr)
    out[~np.isfinite(out)] = np.inf
    return out


def reference_edge_ratios(self: OODDetector, F: np.ndarray, noise=None) -> np.ndarray:
    from scipy.stats import norm

    out = np.full((F.shape[0], len(self.edges_)), np.nan)
    for j, e in enumerate(self.edges_):
        if e in self.fits_:
            rows = np.all(np.isfinite(F[:, self.columns_[e]]), axis=1)
            if rows.any():
                d = self._distance_with(self.fits_[e], F[rows][:, self.columns_[e]])
                mu, sd = _reference_law(self, e, noise, rows)
                out[rows, j] = d / np.exp(mu + sd * norm.ppf(float(self.quantile)))
    return out


def assert_same_maps(fast: xr.Dataset, ref: xr.Dataset) -> None:
    assert set(fast.data_vars) == set(ref.data_vars)
    for name in ref.data_vars:
        a, b = fast[name].values, ref[name].values
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)  # NaN where NaN, else equal


# --------------------------------------------------------------------------- trees

def _missing_patterns(n: int, n_features: int, rng) -> np.ndarray:
    """Rows in a few large groups with whole feature blocks missing (absent edges),
    constant 0/1 indicator columns, a scatter of single missing values and some
    rows with nothing at all."""
    X = rng.normal(size=(n, n_features))
    blocks = np.array_split(np.arange(n_features - 3), 3)
    group = rng.integers(0, 4, n)
    for g, b in zip(range(3), blocks, strict=True):
        X[np.ix_(group == g, b)] = np.nan
    X[:, -3:] = (group[:, None] == np.arange(3)).astype(float)  # presence indicators
    scatter = rng.random((n, n_features)) < 0.02
    X[scatter] = np.nan
    X[:7] = np.nan
    return X


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(5)
    X = _missing_patterns(1500, 15, rng)
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 5]) ** 2 - 2 * np.nan_to_num(X[:, -1])
    y = signal + 0.2 * rng.normal(size=X.shape[0])
    with threadpool_limits(limits=1):  # OpenMP threads crawl on a busy machine
        reg = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=31,
                                            random_state=0).fit(X, y)
        deep = HistGradientBoostingRegressor(max_iter=15, max_leaf_nodes=127, min_samples_leaf=2,
                                             random_state=1).fit(X, y)
        clf = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y > 0.5)
        const = HistGradientBoostingRegressor(max_iter=5).fit(X, np.full(X.shape[0], 2.5))
    Xt = _missing_patterns(3000, 15, np.random.default_rng(6))
    return {"reg": reg, "deep": deep, "clf": clf, "const": const}, Xt


@pytest.mark.parametrize("threads", ["1", "2"])
def test_compact_trees_predict_exactly_as_scikit_learn(fitted, threads, monkeypatch):
    monkeypatch.setenv("MMSPEC_NUM_THREADS", threads)
    ests, Xt = fitted
    for name in ("reg", "deep", "const"):
        c = compact(ests[name])
        np.testing.assert_array_equal(c.predict(Xt), ests[name].predict(Xt), err_msg=name)
        np.testing.assert_array_equal(c._raw(Xt), reference_raw(c, Xt), err_msg=name)
    c = compact(ests["clf"])
    np.testing.assert_array_equal(c.predict_proba(Xt), ests["clf"].predict_proba(Xt))
    np.testing.assert_array_equal(c.predict(Xt), ests["clf"].predict(Xt))


def test_rows_in_any_order_and_group_give_the_same_scores(fitted, monkeypatch):
    ests, Xt = fitted
    c = compact(ests["deep"])
    whole = raw_scores([c], Xt)[:, 0]
    order = np.random.default_rng(0).permutation(Xt.shape[0])
    np.testing.assert_array_equal(raw_scores([c], Xt[order])[:, 0], whole[order])
    for n in (1, 5, 17, 130):  # fewer rows than a lane group or a specialised group
        np.testing.assert_array_equal(raw_scores([c], Xt[:n])[:, 0], whole[:n])
    monkeypatch.setattr(trees, "_MIN_GROUP", 10**9)  # no group large enough: no shortcut
    np.testing.assert_array_equal(raw_scores([c], Xt)[:, 0], whole)
    assert raw_scores([c], Xt[:0]).shape == (0, 1)


def test_stacked_models_with_column_maps_equal_each_model_alone(fitted):
    ests, Xt = fitted
    models = [compact(ests[k]) for k in ("reg", "clf", "const", "deep")]
    rng = np.random.default_rng(2)
    wide = np.concatenate([rng.normal(size=(Xt.shape[0], 4)), Xt], axis=1)  # extra columns
    cols = [np.arange(4, 19)] * 4 + [None]  # None: the first columns, in order
    out = raw_scores(models + [models[0]], wide, cols)
    for j, m in enumerate(models):
        np.testing.assert_array_equal(out[:, j], reference_raw(m, Xt), err_msg=str(j))
    np.testing.assert_array_equal(out[:, 4], reference_raw(models[0], wide[:, :15]))
    np.testing.assert_array_equal(expit(out[:, 1]), ests["clf"].predict_proba(Xt)[:, 1])


def test_shipped_model_trees_equal_the_numpy_traversal(twin_rows):
    model, X = twin_rows
    F = model.featurizer_.transform(X)
    D = model._design(model._stage2_input(F, None), model._present(F))
    ms = [m for t in model.targets_ for m in model.models_[t]] + list(model.sigma_models_.values())
    if D.shape[1] != ms[0].n_features_in_:  # models reading amounts: their extra columns
        D = np.concatenate([D, np.full((D.shape[0], ms[0].n_features_in_ - D.shape[1]), np.nan)],
                           axis=1)
    out = raw_scores(ms, D)
    for j, m in enumerate(ms):
        np.testing.assert_array_equal(out[:, j], reference_raw(m, D))


# --------------------------------------------------------------------------- features

def test_pairwise_sum_is_numpys_sum():
    rng = np.random.default_rng(0)
    frames, values = np.empty((64, 3), np.int64), np.empty(64)
    for n in list(range(1, 300)) + [511, 1024, 1269, 5000]:
        a = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6)
        assert 0.0 + feat._k_pairwise_sum(a, 0, n, frames, values) == a.sum(), n


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0, 4.7])
def test_smoothing_is_scipys_gaussian_filter(sigma):
    rng = np.random.default_rng(1)
    w = feat._gaussian_weights(sigma)
    assert w is not None and w[0] == w.max()
    for n in (3, 9, 40, 201):
        z = rng.random(n)
        s = np.empty(n)
        feat._k_smooth(z, w, np.empty(n + 2 * (w.size - 1)), s)
        np.testing.assert_array_equal(s, gaussian_filter1d(z, sigma, mode="nearest"))


def _spectra(rng, n: int, m: int) -> np.ndarray:
    """Random spectra with the awkward cases: plateaus and exact ties (values on a
    coarse lattice), flat rows, all-negative rows, single-peak rows."""
    e = np.linspace(0, 1, m)
    X = np.round(rng.random((n, m)) * 4) / 4
    X[: n // 4] = rng.random((n // 4, m)) + 3 * np.exp(-((e - 0.3) / 0.05) ** 2)
    X[n // 4: n // 4 + 3] = 1.0
    X[n // 4 + 3: n // 4 + 6] = -rng.random((3, m))
    X[n // 4 + 6] = np.exp(-((e - 0.5) / 0.1) ** 2)
    return X


@pytest.mark.parametrize("k,smooth,min_prominence", [(2, 0.0, 0.05), (3, 0.4, 0.05),
                                                     (1, 0.0, 0.0), (4, 1.5, 0.2)])
def test_peak_features_are_scipys(k, smooth, min_prominence):
    rng = np.random.default_rng(k)
    E = np.linspace(850.0, 880.0, 151)
    f = PeakFeaturizer(energy=E, n_peaks=k, smooth=smooth, min_prominence=min_prominence,
                       normalize="none").fit(rng.random((3, E.size)))
    Z = _spectra(rng, 4000, E.size)
    np.testing.assert_array_equal(f._features(Z), reference_peaks(f, Z))


def test_peak_ties_at_the_cut_follow_scipy():
    E = np.arange(11.0)
    f = PeakFeaturizer(energy=E, n_peaks=2, smooth=0.0, min_prominence=0.01,
                       normalize="none").fit(np.ones((2, 11)))
    Z = np.array([[0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0],  # five equal peaks: scipy's sort decides
                  [0, 1, 1, 0, 2, 2, 2, 0, 1, 0, 0],  # plateaus
                  [0, 3, 0, 1, 0, 2, 0, 1, 0, 0, 0]], float)
    np.testing.assert_array_equal(f._features(Z), reference_peaks(f, Z))


def test_cdf_features_are_the_numpy_formula():
    rng = np.random.default_rng(3)
    E = np.linspace(528.0, 562.0, 170)
    f = CDFFeaturizer(energy=E, n_points=24).fit(rng.random((3, E.size)))
    Z = _spectra(rng, 2000, E.size) - 0.3
    Z[10] = 0.0  # no positive area: NaN
    np.testing.assert_array_equal(f._features(Z), reference_cdf(f, Z))


def test_fused_features_equal_each_featurizer_on_its_own():
    rng = np.random.default_rng(4)
    edges = ("O_K", "Mn_L23", "Ni_L23")
    n_pts = [edge_grid(e).size for e in edges]
    X = np.concatenate([np.abs(_spectra(rng, 600, n)) + 0.05 for n in n_pts], axis=1)
    X[5:40, :n_pts[0]] = np.nan  # an absent edge
    X[50, 3] = np.nan  # one missing value
    X[60, n_pts[0]:n_pts[0] + n_pts[1]] = 0.0  # no area
    X[70:80] = np.nan
    fits = [FusedFeaturizer(edges, ("cdf", "poly", "peaks"), {"n_points": 12}).fit(X),
            FusedFeaturizer(edges, ("cdf",), {"n_points": 12}).fit(X),
            FusedFeaturizer(edges, ("grid", "peaks"), {"normalize": "max", "bin": 3}).fit(X)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CDFFeaturizer, "_features", reference_cdf)
        mp.setattr(PeakFeaturizer, "_features", reference_peaks)
        want = [reference_transform(f, X) for f in fits]
    got = feat.fused_transform(fits, X)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert np.isnan(got[0][5:40, :15]).all() and np.isfinite(got[0][100]).all()
    np.testing.assert_array_equal(normalize_spectra(X[:3, :n_pts[0]], edge_grid("O_K")),
                                  feat._normalize_rows(X, np.arange(3), slice(0, n_pts[0]),
                                                       edge_grid("O_K"), "area", "none")[0])


# --------------------------------------------------------------------------- whole models

@pytest.fixture(scope="module")
def twin_rows():
    from mmspec_widgets.learn import load_model
    from mmspec_widgets.pipeline import run_chain_fast
    from mmspec_widgets.twin import load_digital_twin

    model = load_model()
    twin = load_digital_twin()
    eds, _ = run_chain_fast(twin.si, twin.zlp, predict=False)
    X, _ = fusion.dataset_to_matrix(eds, model.edges_)
    return model, X


def test_shipped_model_maps_equal_the_reference_path(twin_rows, monkeypatch):
    from mmspec_widgets.pipeline import run_chain_fast
    from mmspec_widgets.twin import load_digital_twin

    model, _ = twin_rows
    twin = load_digital_twin()
    eds, _ = run_chain_fast(twin.si, twin.zlp, predict=False)
    monkeypatch.setattr(fusion, "_BLOCK_ROWS", 200)  # several blocks, on threads
    monkeypatch.setenv("MMSPEC_NUM_THREADS", "2")
    fast = model.predict(eds)
    with pytest.MonkeyPatch.context() as mp:
        _use_references(mp)
        ref = model.predict(eds)
    assert_same_maps(fast, ref)
    assert np.isfinite(fast["li_content"].values).sum() > 100


def _use_references(mp):
    """Swap every compiled piece of the prediction for its plain reference."""
    def predict_many(jobs, D):
        return [fusion.predict_estimator(est, D if cols is None else D[:, cols], task)
                for est, task, cols in jobs]

    mp.setattr(CompactBoosting, "_raw", reference_raw)
    mp.setattr(CDFFeaturizer, "_features", reference_cdf)
    mp.setattr(PeakFeaturizer, "_features", reference_peaks)
    mp.setattr(fusion, "fused_transform", lambda fs, X: [reference_transform(f, X) for f in fs])
    mp.setattr(fusion, "_predict_many", predict_many)
    mp.setattr(OODDetector, "score", reference_ood_score)
    mp.setattr(OODDetector, "edge_ratios", reference_edge_ratios)
    mp.setattr(OODDetector, "score_and_ratios",
               lambda self, F, noise=None: (reference_ood_score(self, F, noise),
                                            reference_edge_ratios(self, F, noise)))
    mp.setattr(fusion, "_prediction_threads", lambda: 1)
    mp.setattr(fusion, "_CHUNK_ROWS", 10**9)


@pytest.fixture(scope="module")
def toy_split():
    from mmspec_widgets.learn._synthetic import make_synthetic_training_set

    ds = make_synthetic_training_set(n_structures=16, sites=4, seed=7, missing=0.1,
                                     edges=("O_K", "Mn_L23", "Ni_L23", "Ni_K"))
    tr = ds.isel(sample=np.flatnonzero(ds.split.values == "train"))
    te = ds.isel(sample=np.flatnonzero(ds.split.values == "test"))
    return tr, te


@pytest.mark.parametrize("fusion_mode", ["early", "late", "hybrid"])
def test_toy_models_of_every_fusion_give_the_reference_maps(toy_split, fusion_mode, monkeypatch):
    tr, te = toy_split
    model = fusion.MultimodalModel(
        fusion=fusion_mode, edges=("O_K", "Mn_L23", "Ni_L23", "Ni_K"),
        params={"max_iter": 15, "max_leaf_nodes": 7, "min_samples_leaf": 3, "max_bins": 32},
        edge_params={"max_iter": 10, "max_leaf_nodes": 5},
        settings={"n_points": 10, "n_windows": 2, "n_peaks": 2}, n_folds=3,
        dropout_copies=1, augment_copies=0).fit(tr)
    data = xr.concat([te] * 40, dim="sample")  # enough rows for blocks and row groups
    ni = data["Ni_L23"].values.copy()
    ni[3, 10:14] = np.nan  # partly missing: interpolated
    ni[500, 5:100] = np.nan  # mostly missing: dropped
    data["Ni_L23"] = data["Ni_L23"].copy(data=ni)
    monkeypatch.setattr(fusion, "_BLOCK_ROWS", 300)
    monkeypatch.setenv("MMSPEC_NUM_THREADS", "2")
    for edges in (None, ["Ni_K"], ["O_K", "Ni_L23"]):
        fast = model.predict(data, edges=edges)
        with pytest.MonkeyPatch.context() as mp:
            _use_references(mp)
            ref = model.predict(data, edges=edges)
        assert_same_maps(fast, ref)
