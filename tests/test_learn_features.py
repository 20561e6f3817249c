"""Featurizers and augmentation of mmspec_widgets.learn.features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from mmspec_widgets.edges import edge_grid
from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.learn.features import (
    CDFFeaturizer,
    FusedFeaturizer,
    GridFeaturizer,
    NoiseFeaturizer,
    PCAFeaturizer,
    PeakFeaturizer,
    PolynomialFeaturizer,
    SpectrumAugmenter,
    augment_spectra,
    normalize_spectra,
    relative_noise,
)

E = edge_grid("Ni_L23")


def lorentz(e, c, w):
    return (0.5 * w) ** 2 / ((e - c) ** 2 + (0.5 * w) ** 2)


def ni_like(shift=0.0, scale=1.0, offset=0.0):
    """An L2,3-like spectrum on the Ni grid: two white lines and a step."""
    e = E - shift
    s = lorentz(e, 855.0, 1.2) + 0.4 * lorentz(e, 872.0, 1.8) + 0.1 / (1 + np.exp(-(e - 855)))
    return scale * s + offset


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [
    GridFeaturizer(bin=2), CDFFeaturizer(n_points=5), PolynomialFeaturizer(n_windows=1, degree=1),
    PeakFeaturizer(n_peaks=2), PCAFeaturizer(n_components=2), NoiseFeaturizer()],
    ids=lambda e: type(e).__name__)
def test_sklearn_estimator_checks(estimator):
    # scikit-learn's own API checks (clone, get_params, fit/transform contracts,
    # NaN handling, pickling, n_features_in_ ...); the array-API check needs an
    # optional SciPy mode and reports itself as skipped, everything else must pass.
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40


@pytest.mark.parametrize("cls", [GridFeaturizer, CDFFeaturizer, PolynomialFeaturizer,
                                 PeakFeaturizer, PCAFeaturizer, NoiseFeaturizer])
def test_clone_and_params_round_trip(cls):
    est = cls(edge="Ni_L23", normalize="max")
    params = est.get_params()
    assert params["edge"] == "Ni_L23" and params["normalize"] == "max"
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    X = np.stack([ni_like(shift=s) for s in np.linspace(-1, 1, 6)])
    assert clone(est.fit(X)).get_params() == params
    assert not hasattr(clone(est.fit(X)), "energy_")


def test_cdf_tolerates_small_energy_shifts_better_than_raw_grid():
    ref = ni_like()[None]
    shifted = np.stack([ni_like(shift=s) for s in (-0.5, -0.2, 0.2, 0.5)])
    other = ni_like(shift=0.0)[None] * 0 + ni_like(shift=3.0)[None]  # a real change of the edge
    cdf = CDFFeaturizer(edge="Ni_L23", n_points=40).fit(ref)
    grid = GridFeaturizer(edge="Ni_L23").fit(ref)

    def rel(f):
        a, b, c = f.transform(ref), f.transform(shifted), f.transform(other)
        return np.linalg.norm(b - a, axis=1).max() / np.linalg.norm(c - a)

    # +-0.5 eV moves CDF features far less, relative to a 3 eV change, than grid features
    assert rel(cdf) < 0.25
    assert rel(cdf) < 0.5 * rel(grid)
    # and in absolute terms the CDF (range 0..1) moves by at most a few hundredths per point
    d = np.abs(cdf.transform(shifted) - cdf.transform(ref)).max()
    assert d < 0.1


def test_features_are_independent_of_upstream_scale():
    X = ni_like()[None]
    Y = ni_like(scale=37.0)[None]
    for est in (CDFFeaturizer(edge="Ni_L23"), GridFeaturizer(edge="Ni_L23", bin=4),
                PolynomialFeaturizer(edge="Ni_L23"), PeakFeaturizer(edge="Ni_L23"),
                CDFFeaturizer(edge="Ni_L23", normalize="max")):
        est.fit(np.vstack([X, Y]))
        np.testing.assert_allclose(est.transform(X), est.transform(Y), rtol=1e-6, atol=1e-9)
    # with a baseline option, an offset left by upstream processing is removed too
    Z = ni_like(scale=37.0, offset=5.0)[None]
    est = CDFFeaturizer(edge="Ni_L23", baseline="min").fit(X)
    np.testing.assert_allclose(est.transform(X), est.transform(Z), rtol=1e-6, atol=1e-9)


def test_area_normalisation_gives_unit_integral():
    Z = normalize_spectra(np.stack([ni_like(scale=3), ni_like(scale=0.1)]), E, "area")
    area = (np.abs(Z) * np.gradient(E)).sum(axis=1)
    np.testing.assert_allclose(area, 1.0, rtol=1e-9)
    with pytest.raises(MMSpecError, match="normalize"):
        normalize_spectra(Z, E, "bogus")


def test_peak_featurizer_finds_the_white_lines():
    f = PeakFeaturizer(edge="Ni_L23", n_peaks=2).fit(ni_like()[None])
    pos = f.transform(ni_like()[None])[0, 0::3]
    np.testing.assert_allclose(pos, [855.0, 872.0], atol=0.25)
    pos_shift = f.transform(ni_like(shift=1.0)[None])[0, 0::3]
    np.testing.assert_allclose(pos_shift - pos, 1.0, atol=0.25)


def test_nan_rows_give_nan_features_and_wrong_grid_is_refused():
    X = np.stack([ni_like(), np.full(E.size, np.nan), ni_like(shift=0.3)])
    out = CDFFeaturizer(edge="Ni_L23").fit(X).transform(X)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    with pytest.raises(ValueError, match="Ni_L23"):
        CDFFeaturizer(edge="Ni_L23").fit(X[:, :50])


def test_fused_featurizer_layout_and_missing_blocks():
    o = edge_grid("O_K")
    o_spec = lorentz(o, 530, 1.0) + lorentz(o, 541, 5)
    X = np.stack([np.concatenate([o_spec, ni_like(shift=s)]) for s in (0, 0.3, -0.3, 0.6)])
    X[1, : o.size] = np.nan  # sample 1 has no O K
    f = FusedFeaturizer(edges=("O_K", "Ni_L23"), kinds=("cdf", "peaks"),
                        settings={"n_points": 10, "n_peaks": 2}).fit(X)
    F = f.transform(X)
    assert F.shape == (4, 2 * (10 + 6))
    assert list(f.feature_edges_).count("O_K") == 16
    o_cols = f.feature_edges_ == "O_K"
    assert np.isnan(F[1, o_cols]).all() and np.isfinite(F[1, ~o_cols]).all()
    assert f.get_feature_names_out()[0].startswith("O_K_cdf")
    assert clone(f).get_params()["edges"] == ("O_K", "Ni_L23")
    with pytest.raises(DataError, match="columns"):
        FusedFeaturizer(edges=("O_K", "Ni_L23")).fit(X[:, :-1])


def test_augment_spectra_perturbs_within_bounds():
    X = np.stack([ni_like()] * 50)
    A = augment_spectra(X, E, rng=0, shift=0.5, broadening=0.0, noise=0.0)
    # the white line moves by at most the shift bound (grid step 0.2 eV)
    peak = E[A.argmax(axis=1)]
    assert np.abs(peak - 855.0).max() <= 0.5 + 0.2
    assert np.ptp(peak) > 0.2
    B = augment_spectra(X, E, rng=1, shift=0.0, broadening=1.0, noise=0.0)
    assert (B.max(axis=1) < X.max(axis=1) + 1e-12).all()  # broadening lowers the white line
    np.testing.assert_allclose(B.sum(axis=1), X.sum(axis=1), rtol=0.05)  # and keeps the area
    C = augment_spectra(X, E, rng=2, shift=0.0, broadening=0.0, noise=0.02, counts=1000)
    resid = (C - X).std()
    assert 0.005 < resid < 0.1
    with pytest.raises(MMSpecError, match="broadening_shape"):
        augment_spectra(X, E, broadening_shape="box")


def test_noise_level_range_and_its_estimate():
    """A (low, high) noise draws a level per spectrum; relative_noise reads it back
    (within a factor 1.8, ranking the spectra alike), and a clean spectrum with sharp white lines reads as clean."""
    X = np.stack([ni_like()] * 400)
    A = augment_spectra(X, E, rng=3, shift=0.0, broadening=0.0, noise=(0.002, 0.1))
    true = (A - X).std(axis=1) / X.max(axis=1)
    est = relative_noise(A)
    assert true.min() < 0.003 and true.max() > 0.07  # the whole range is drawn
    assert np.abs(np.log(est / true)).max() < np.log(1.8)
    rank = np.corrcoef(np.argsort(np.argsort(est)), np.argsort(np.argsort(true)))[0, 1]
    assert rank > 0.95
    assert relative_noise(X[:1])[0] < 1e-3
    f = NoiseFeaturizer(edge="Ni_L23").fit(A)
    F = f.transform(A)
    assert F.shape == (400, 1) and list(f.get_feature_names_out()) == ["Ni_L23_log_noise"]
    np.testing.assert_allclose(F[:, 0], np.log10(est), atol=0.05)  # scale-free
    assert np.isnan(f.transform(np.full((1, E.size), np.nan))).all()
    # the compiled kernel is the numpy formula, value for value (NaN rows: NaN)
    R = np.random.default_rng(4).random((50, 30))
    R[7, 3] = np.nan
    ref = np.median(np.abs(np.diff(R, 2, axis=1)), axis=1) / 0.6745 / np.sqrt(6) \
        / np.max(np.abs(R), axis=1)
    np.testing.assert_array_equal(relative_noise(R), ref)
    for bad in [(0.1, 0.01), (0.0, 0.1), (0.1, 0.2, 0.3), -1.0]:
        with pytest.raises(MMSpecError, match="noise"):
            augment_spectra(X[:2], E, noise=bad)


def test_spectrum_augmenter_only_acts_at_fit_time():
    X = np.stack([ni_like()] * 8)
    aug = SpectrumAugmenter(edge="Ni_L23", random_state=0)
    Xa = aug.fit_transform(X)
    assert Xa.shape == X.shape and not np.allclose(Xa, X)
    np.testing.assert_array_equal(aug.transform(X), X)
    # inside a pipeline: fitting sees perturbed spectra, prediction the real ones
    pipe = make_pipeline(SpectrumAugmenter(edge="Ni_L23", random_state=0),
                         CDFFeaturizer(edge="Ni_L23"))
    pipe.fit(X)
    np.testing.assert_allclose(pipe.transform(X),
                               CDFFeaturizer(edge="Ni_L23").fit(X).transform(X))
