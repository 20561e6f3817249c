"""Per-edge featurizers and training-time augmentation.

Every featurizer is a scikit-learn transformer that takes a 2-D array of
spectra, one row per spectrum, one column per energy of the edge's standard
grid (eV), and returns a 2-D array of features.  Parameters are set in
``__init__`` and never changed there; learned state ends with ``_``.

Each featurizer normalises its input itself (unit area by default, or unit
maximum; optionally a baseline removed first), so that simulated and
experimental spectra reach the model the same way whatever normalisation was
applied upstream.

A row containing NaN is a *missing* spectrum (the edge was not measured for
that sample or pixel): its features are NaN.  Fusion models read NaN blocks as
absent edges.

Featurizers
-----------
:class:`GridFeaturizer`
    the normalised spectrum itself, optionally binned.
:class:`CDFFeaturizer`
    the cumulative distribution function (CDF) of the normalised spectrum,
    sampled on a coarse grid: the most transferable representation, tolerant to
    small energy shifts (Chen et al., arXiv 2310.07049).
:class:`PolynomialFeaturizer`
    coefficients of cubic least-squares fits on equal energy windows.
:class:`PeakFeaturizer`
    positions (eV), heights and full widths at half maximum (eV) of the most
    prominent peaks of the smoothed spectrum.
:class:`PCAFeaturizer`
    principal-component scores of the normalised spectra.
:class:`FusedFeaturizer`
    several edges side by side: applies per-edge featurizers to the blocks of a
    joined spectrum matrix and records which feature belongs to which edge.

Augmentation (:func:`augment_spectra`, :class:`SpectrumAugmenter`) perturbs
spectra with energy shifts, Gaussian or Lorentzian broadening, Gaussian and
Poisson noise; it is applied at fit time only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks, peak_widths
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from ..edges import edge_grid, get_edge
from ..errors import DataError, MMSpecError

__all__ = [
    "normalize_spectra",
    "GridFeaturizer",
    "CDFFeaturizer",
    "PolynomialFeaturizer",
    "PeakFeaturizer",
    "PCAFeaturizer",
    "FusedFeaturizer",
    "FEATURIZERS",
    "make_edge_featurizer",
    "augment_spectra",
    "SpectrumAugmenter",
]

_MIN_POINTS = 2
_NORMALIZATIONS = ("area", "max", "none")
_BASELINES = ("none", "pre_edge", "min")


def normalize_spectra(X: np.ndarray, energy: np.ndarray, method: str = "area",
                      baseline: str = "none") -> np.ndarray:
    """Normalise spectra row by row.

    Parameters
    ----------
    X : ndarray, shape (n_spectra, n_energy)
        Spectra on the grid ``energy`` (any intensity unit).
    energy : ndarray, shape (n_energy,)
        Energy grid in eV, increasing.
    method : {"area", "max", "none"}
        ``"area"``: unit integral of the absolute value over the grid
        (eV^-1 units); ``"max"``: unit maximum absolute value;
        ``"none"``: unchanged.
    baseline : {"none", "pre_edge", "min"}
        Level subtracted first: nothing (spectra arrive background-subtracted,
        the usual case: the standard grids start at or just below the edge, so
        they hold little or no pre-edge), the mean of the lowest 5 % of the
        grid, or each spectrum's minimum.

    Returns
    -------
    ndarray, shape (n_spectra, n_energy)
        Normalised spectra; rows that cannot be normalised (zero area, NaN)
        are NaN.
    """
    if method not in _NORMALIZATIONS:
        raise MMSpecError(f"normalize={method!r}: expected one of {_NORMALIZATIONS}")
    if baseline not in _BASELINES:
        raise MMSpecError(f"baseline={baseline!r}: expected one of {_BASELINES}")
    X = np.array(X, dtype=float)
    if baseline == "pre_edge":
        k = max(1, int(round(0.05 * X.shape[1])))
        X -= X[:, :k].mean(axis=1, keepdims=True)
    elif baseline == "min":
        X -= X.min(axis=1, keepdims=True)
    if method == "none":
        return X
    if method == "area":
        step = np.gradient(np.asarray(energy, float)) if X.shape[1] > 1 else np.ones(1)
        scale = (np.abs(X) * step).sum(axis=1)
    else:
        scale = np.abs(X).max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(scale) & (scale > 1e-12 * (np.abs(X).max(axis=1) + 1e-300))
        out = np.full_like(X, np.nan)
        out[ok] = X[ok] / scale[ok, None]
    return out


class _SpectrumTransformer(TransformerMixin, BaseEstimator):
    """Common machinery: energy grid, validation, normalisation, NaN rows."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _grid(self, n_features: int) -> np.ndarray:
        if self.energy is not None:
            energy = np.asarray(self.energy, dtype=float).ravel()
        elif self.edge is not None:
            energy = edge_grid(self.edge)
        else:
            return np.arange(n_features, dtype=float)
        if energy.size != n_features:
            where = f"edge {self.edge!r}" if self.energy is None else "energy"
            raise ValueError(
                f"{type(self).__name__}: {where} has {energy.size} points but X has "
                f"{n_features} columns; expected one column per energy of the grid")
        if np.any(np.diff(energy) <= 0):
            raise MMSpecError(f"{type(self).__name__}: energy must increase strictly")
        return energy

    def _validate(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, ensure_all_finite="allow-nan",
                          dtype=np.float64)
        if X.shape[1] < _MIN_POINTS:
            raise ValueError(
                f"{type(self).__name__}: got {X.shape[1]} feature(s); a spectrum needs "
                f"at least {_MIN_POINTS} energy points")
        return X

    def _normalized(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised copy of X and the mask of usable (complete) rows."""
        Z = normalize_spectra(X, self.energy_, self.normalize, self.baseline)
        valid = np.all(np.isfinite(Z), axis=1)
        return Z, valid

    def fit(self, X, y=None):
        """Learn the energy grid (and any state) from spectra ``X``.

        Parameters
        ----------
        X : array-like, shape (n_spectra, n_energy)
            Spectra on the grid; NaN rows are ignored.
        y : ignored

        Returns
        -------
        self
        """
        X = self._validate(X, reset=True)
        normalize_spectra(X[:1], self._grid(X.shape[1]), self.normalize, self.baseline)
        self.energy_ = self._grid(X.shape[1])
        Z, valid = self._normalized(X)
        self._fit_state(Z[valid])
        return self

    def _fit_state(self, Z: np.ndarray) -> None:
        pass

    def transform(self, X):
        """Features of spectra ``X``.

        Parameters
        ----------
        X : array-like, shape (n_spectra, n_energy)

        Returns
        -------
        ndarray, shape (n_spectra, n_features_out)
            NaN rows for spectra containing NaN or with no positive area.
        """
        check_is_fitted(self, "energy_")
        X = self._validate(X, reset=False)
        Z, valid = self._normalized(X)
        out = np.full((X.shape[0], self._n_out()), np.nan)
        if valid.any():
            out[valid] = self._features(Z[valid])
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "energy_")
        prefix = f"{self.edge}_" if self.edge else ""
        return np.asarray([f"{prefix}{n}" for n in self._names()], dtype=object)


class GridFeaturizer(_SpectrumTransformer):
    """The normalised spectrum on its grid, optionally averaged in bins.

    Parameters
    ----------
    edge : str, optional
        Edge name; its standard grid gives the energies (eV).
    energy : array-like, optional
        Energy grid in eV (overrides ``edge``); default: channel index.
    bin : int
        Number of adjacent grid points averaged into one feature (1: none).
    normalize : {"area", "max", "none"}
        Per-spectrum normalisation, see :func:`normalize_spectra`.
    baseline : {"none", "pre_edge", "min"}
        Level subtracted before normalising, see :func:`normalize_spectra`.
    """

    def __init__(self, edge: str | None = None, energy=None, bin: int = 1,
                 normalize: str = "area", baseline: str = "none"):
        self.edge = edge
        self.energy = energy
        self.bin = bin
        self.normalize = normalize
        self.baseline = baseline

    def _fit_state(self, Z):
        b = int(self.bin)
        if b < 1:
            raise MMSpecError(f"GridFeaturizer: bin={self.bin!r}; expected an integer >= 1")
        n = len(self.energy_)
        self.bins_ = np.minimum(np.arange(n) // b, (n - 1) // b)

    def _n_out(self):
        return int(self.bins_.max()) + 1

    def _features(self, Z):
        counts = np.bincount(self.bins_)
        out = np.zeros((Z.shape[0], self._n_out()))
        for j in range(self._n_out()):
            out[:, j] = Z[:, self.bins_ == j].sum(axis=1) / counts[j]
        return out

    def _names(self):
        centres = np.bincount(self.bins_, weights=self.energy_) / np.bincount(self.bins_)
        return [f"grid_{e:.1f}" for e in centres]


class CDFFeaturizer(_SpectrumTransformer):
    """Cumulative distribution function of the normalised spectrum.

    The normalised spectrum (negative values clipped to zero) is
    integrated along energy and divided by its total, giving a curve rising
    from 0 to 1; it is sampled at ``n_points`` equally spaced energies.  A
    shift of the spectrum by ``dE`` changes the CDF by at most about
    ``dE`` x (largest spectral density), much less than it changes the raw
    spectrum near sharp peaks.

    Parameters
    ----------
    edge : str, optional
        Edge name; its standard grid gives the energies (eV).
    energy : array-like, optional
        Energy grid in eV (overrides ``edge``); default: channel index.
    n_points : int
        Number of energies at which the CDF is sampled.
    normalize : {"area", "max", "none"}
        Per-spectrum normalisation before integration.
    baseline : {"none", "pre_edge", "min"}
        Level subtracted first, see :func:`normalize_spectra`.
    """

    def __init__(self, edge: str | None = None, energy=None, n_points: int = 40,
                 normalize: str = "area", baseline: str = "none"):
        self.edge = edge
        self.energy = energy
        self.n_points = n_points
        self.normalize = normalize
        self.baseline = baseline

    def _fit_state(self, Z):
        if int(self.n_points) < 2:
            raise MMSpecError(f"CDFFeaturizer: n_points={self.n_points!r}; expected >= 2")
        e = self.energy_
        self.points_ = np.linspace(e[0], e[-1], int(self.n_points))
        # linear interpolation weights from the grid onto the sample points
        idx = np.clip(np.searchsorted(e, self.points_, side="right") - 1, 0, len(e) - 2)
        w = (self.points_ - e[idx]) / (e[idx + 1] - e[idx])
        W = np.zeros((len(self.points_), len(e)))
        W[np.arange(len(idx)), idx] = 1 - w
        W[np.arange(len(idx)), idx + 1] += w
        self.weights_ = W

    def _n_out(self):
        return len(self.points_)

    def _features(self, Z):
        Z = np.clip(Z, 0, None)
        de = np.diff(self.energy_)
        cum = np.concatenate([np.zeros((Z.shape[0], 1)),
                              np.cumsum(0.5 * (Z[:, 1:] + Z[:, :-1]) * de, axis=1)], axis=1)
        total = cum[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            cdf = np.where(total > 0, cum / total, np.nan)
        return cdf @ self.weights_.T

    def _names(self):
        return [f"cdf_{e:.1f}" for e in self.points_]


class PolynomialFeaturizer(_SpectrumTransformer):
    """Coefficients of cubic fits on equal energy windows.

    The grid is cut into ``n_windows`` windows of (nearly) equal numbers of
    points; on each, the normalised spectrum is fitted by least squares with a
    polynomial of degree ``degree`` in the window's reduced coordinate
    ``t`` in [-1, 1]; the coefficients (constant term first) are the features.

    Parameters
    ----------
    edge, energy, normalize, baseline
        As for :class:`GridFeaturizer`.
    n_windows : int
        Number of windows.
    degree : int
        Polynomial degree (3: piecewise cubic).
    """

    def __init__(self, edge: str | None = None, energy=None, n_windows: int = 6,
                 degree: int = 3, normalize: str = "area", baseline: str = "none"):
        self.edge = edge
        self.energy = energy
        self.n_windows = n_windows
        self.degree = degree
        self.normalize = normalize
        self.baseline = baseline

    def _fit_state(self, Z):
        n = len(self.energy_)
        nw, deg = int(self.n_windows), int(self.degree)
        if nw < 1 or deg < 0 or n // nw < deg + 1:
            raise MMSpecError(
                f"PolynomialFeaturizer: {nw} windows of degree {deg} need at least "
                f"{nw * (deg + 1)} energy points, the grid has {n}")
        self.windows_ = np.array_split(np.arange(n), nw)
        self.projectors_ = []
        for idx in self.windows_:
            e = self.energy_[idx]
            t = 2 * (e - e[0]) / (e[-1] - e[0]) - 1 if len(e) > 1 else np.zeros(1)
            V = np.vander(t, deg + 1, increasing=True)
            self.projectors_.append(np.linalg.pinv(V))

    def _n_out(self):
        return len(self.windows_) * (int(self.degree) + 1)

    def _features(self, Z):
        return np.concatenate([Z[:, idx] @ P.T for idx, P in zip(self.windows_, self.projectors_,
                                                                 strict=True)], axis=1)

    def _names(self):
        return [f"poly{w}_c{k}" for w in range(len(self.windows_))
                for k in range(int(self.degree) + 1)]


class PeakFeaturizer(_SpectrumTransformer):
    """Positions, heights and widths of the most prominent peaks.

    The normalised spectrum is smoothed with a Gaussian of ``smooth`` eV
    standard deviation; local maxima whose prominence exceeds
    ``min_prominence`` x (spectrum maximum) are detected; the ``n_peaks`` most
    prominent are kept and sorted by energy.  For each: position (eV), height
    (normalised units) and full width at half prominence (eV).  Missing peaks
    (fewer than ``n_peaks`` found) get height 0, width 0 and the grid's upper
    end as position.

    Parameters
    ----------
    edge, energy, normalize, baseline
        As for :class:`GridFeaturizer`.
    n_peaks : int
        Number of peaks reported.
    smooth : float
        Gaussian smoothing, eV (standard deviation).
    min_prominence : float
        Minimum prominence relative to the spectrum maximum.
    """

    def __init__(self, edge: str | None = None, energy=None, n_peaks: int = 3,
                 smooth: float = 0.4, min_prominence: float = 0.05,
                 normalize: str = "area", baseline: str = "none"):
        self.edge = edge
        self.energy = energy
        self.n_peaks = n_peaks
        self.smooth = smooth
        self.min_prominence = min_prominence
        self.normalize = normalize
        self.baseline = baseline

    def _fit_state(self, Z):
        if int(self.n_peaks) < 1:
            raise MMSpecError(f"PeakFeaturizer: n_peaks={self.n_peaks!r}; expected >= 1")
        self.step_ = float(np.median(np.diff(self.energy_)))

    def _n_out(self):
        return 3 * int(self.n_peaks)

    def _features(self, Z):
        k = int(self.n_peaks)
        sigma = float(self.smooth) / self.step_
        S = gaussian_filter1d(Z, sigma, axis=1, mode="nearest") if sigma > 0 else Z
        e = self.energy_
        out = np.zeros((S.shape[0], 3 * k))
        out[:, 0::3] = e[-1]
        for i, s in enumerate(S):
            top = s.max()
            if not np.isfinite(top) or top <= 0:
                continue
            peaks, props = find_peaks(s, prominence=float(self.min_prominence) * top)
            if peaks.size == 0:
                continue
            keep = np.sort(peaks[np.argsort(props["prominences"])[::-1][:k]])
            widths = peak_widths(s, keep, rel_height=0.5)[0] * self.step_
            out[i, 0:3 * len(keep):3] = e[keep]
            out[i, 1:3 * len(keep):3] = s[keep]
            out[i, 2:3 * len(keep):3] = widths
        return out

    def _names(self):
        return [f"peak{j}_{q}" for j in range(int(self.n_peaks))
                for q in ("position", "height", "fwhm")]


class PCAFeaturizer(_SpectrumTransformer):
    """Principal-component scores of normalised spectra.

    Parameters
    ----------
    edge, energy, normalize, baseline
        As for :class:`GridFeaturizer`.
    n_components : int
        Number of components kept (capped by the number of spectra and energies).
    """

    def __init__(self, edge: str | None = None, energy=None, n_components: int = 8,
                 normalize: str = "area", baseline: str = "none"):
        self.edge = edge
        self.energy = energy
        self.n_components = n_components
        self.normalize = normalize
        self.baseline = baseline

    def _fit_state(self, Z):
        if Z.shape[0] < 2:
            raise ValueError(f"PCAFeaturizer: got {Z.shape[0]} sample(s) with a complete spectrum; "
                             "need at least 2 to fit")
        n = min(int(self.n_components), Z.shape[0], Z.shape[1])
        self.pca_ = PCA(n_components=n).fit(Z)

    def _n_out(self):
        return self.pca_.n_components_

    def _features(self, Z):
        return self.pca_.transform(Z)

    def _names(self):
        return [f"pc{j}" for j in range(self.pca_.n_components_)]


#: featurizer kinds by short name
FEATURIZERS = {
    "grid": GridFeaturizer,
    "cdf": CDFFeaturizer,
    "poly": PolynomialFeaturizer,
    "peaks": PeakFeaturizer,
    "pca": PCAFeaturizer,
}


def make_edge_featurizer(kind: str, edge: str, **params) -> _SpectrumTransformer:
    """A featurizer of kind ``kind`` (see :data:`FEATURIZERS`) for ``edge``.

    ``params`` are passed on where the class accepts them, others ignored, so
    one settings dict can serve several kinds.
    """
    try:
        cls = FEATURIZERS[kind]
    except KeyError:
        raise MMSpecError(
            f"unknown featurizer {kind!r}: expected one of {', '.join(FEATURIZERS)}") from None
    names = cls._get_param_names()
    return cls(edge=edge, **{k: v for k, v in params.items() if k in names and k != "edge"})


class FusedFeaturizer(TransformerMixin, BaseEstimator):
    """Features of several edges side by side.

    Input rows are the spectra of all ``edges`` joined in the given order,
    each on its standard grid (:func:`mmspec_widgets.edges.edge_grid`); a NaN
    block is a missing edge and gives NaN features.

    Parameters
    ----------
    edges : sequence of str
        Edge names, in the order of the input blocks.
    kinds : sequence of str
        Featurizer kinds applied to every edge, see :data:`FEATURIZERS`.
    settings : dict, optional
        Parameters for the per-edge featurizers (e.g. ``{"n_points": 40}``),
        passed where a featurizer accepts them.

    Attributes
    ----------
    blocks_ : dict
        Edge -> slice of the input columns.
    transformers_ : dict
        Edge -> list of fitted per-edge featurizers.
    feature_edges_ : ndarray of str
        Edge of each output feature.
    """

    def __init__(self, edges: Sequence[str] = ("O_K",), kinds: Sequence[str] = ("cdf",),
                 settings: dict | None = None):
        self.edges = edges
        self.kinds = kinds
        self.settings = settings

    def _blocks(self):
        blocks, start = {}, 0
        for e in self.edges:
            n = get_edge(e).n_points
            blocks[e] = slice(start, start + n)
            start += n
        return blocks, start

    def fit(self, X, y=None):
        """Fit each edge's featurizers on the complete rows of its block.

        Parameters
        ----------
        X : array-like, shape (n_samples, sum of the edges' grid sizes)
        y : ignored

        Returns
        -------
        self
        """
        X = validate_data(self, X, reset=True, ensure_all_finite="allow-nan", dtype=np.float64)
        if len(set(self.edges)) != len(tuple(self.edges)) or not len(tuple(self.edges)):
            raise MMSpecError(f"FusedFeaturizer: edges={self.edges!r}; expected distinct names")
        blocks, total = self._blocks()
        if X.shape[1] != total:
            raise DataError(
                f"FusedFeaturizer: X has {X.shape[1]} columns, expected {total} "
                f"(the grids of {', '.join(self.edges)} joined)")
        settings = dict(self.settings or {})
        self.blocks_ = blocks
        self.transformers_ = {}
        edges_out, names = [], []
        for e, sl in blocks.items():
            block = X[:, sl]
            rows = np.all(np.isfinite(block), axis=1)
            if rows.sum() < 2:
                raise DataError(f"FusedFeaturizer: fewer than 2 complete {e} spectra to fit on")
            fitted = []
            for kind in self.kinds:
                t = make_edge_featurizer(kind, e, **settings).fit(block[rows])
                fitted.append(t)
                n = t.get_feature_names_out()
                names.extend(n)
                edges_out.extend([e] * len(n))
            self.transformers_[e] = fitted
        self.feature_edges_ = np.asarray(edges_out, dtype=object)
        self.feature_names_ = np.asarray(names, dtype=object)
        return self

    def transform(self, X):
        """Joined features; NaN where an edge's block is incomplete.

        Parameters
        ----------
        X : array-like, shape (n_samples, sum of the edges' grid sizes)

        Returns
        -------
        ndarray, shape (n_samples, n_features_out)
        """
        check_is_fitted(self, "transformers_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        parts = []
        for e, sl in self.blocks_.items():
            for t in self.transformers_[e]:
                parts.append(t.transform(X[:, sl]))
        return np.concatenate(parts, axis=1)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "transformers_")
        return self.feature_names_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


# --------------------------------------------------------------------------- augmentation

def _kernel_rows(n: int, step: float, fwhm: np.ndarray, shape: str) -> np.ndarray:
    """Unit-sum convolution kernels, one per row, on a grid of spacing ``step``."""
    half = n
    x = step * np.arange(-half, half + 1)
    fwhm = np.maximum(fwhm, 1e-9)[:, None]
    if shape == "gaussian":
        sigma = fwhm / 2.3548
        k = np.exp(-0.5 * (x / sigma) ** 2)
    else:
        gamma = fwhm / 2
        k = gamma / (x ** 2 + gamma ** 2)
    return k / k.sum(axis=1, keepdims=True)


def augment_spectra(X: np.ndarray, energy: np.ndarray, *, rng: np.random.Generator | int | None = None,
                    shift: float = 0.5, broadening: float = 0.5,
                    broadening_shape: str = "mixed", noise: float = 0.01,
                    counts: float | None = None) -> np.ndarray:
    """Randomly perturbed copies of spectra (one per row).

    Parameters
    ----------
    X : ndarray, shape (n_spectra, n_energy)
        Spectra on ``energy``; NaN rows stay NaN.
    energy : ndarray, shape (n_energy,)
        Energy grid, eV.
    rng : numpy Generator or int, optional
        Random source.
    shift : float
        Each spectrum is shifted by a uniform random energy in [-shift, shift] eV.
    broadening : float
        Extra broadening: a kernel with FWHM uniform in [0, broadening] eV.
    broadening_shape : {"gaussian", "lorentzian", "mixed"}
        Kernel shape; ``"mixed"`` draws one of the two per spectrum.
    noise : float
        Gaussian noise standard deviation relative to each spectrum's maximum.
    counts : float, optional
        If given, Poisson noise as if each spectrum's maximum were ``counts``
        counts.

    Returns
    -------
    ndarray, shape (n_spectra, n_energy)
    """
    rng = np.random.default_rng(rng)
    X = np.array(X, dtype=float)
    energy = np.asarray(energy, dtype=float)
    n, m = X.shape
    if broadening_shape not in ("gaussian", "lorentzian", "mixed"):
        raise MMSpecError(f"broadening_shape={broadening_shape!r}: expected 'gaussian', "
                          "'lorentzian' or 'mixed'")
    if shift > 0:
        d = rng.uniform(-shift, shift, n)
        for i in range(n):
            X[i] = np.interp(energy - d[i], energy, X[i])
    if broadening > 0 and m > 2:
        step = float(np.median(np.diff(energy)))
        fwhm = rng.uniform(0, broadening, n)
        half = min(m - 1, int(np.ceil(6 * broadening / step)) + 1)
        shapes = (rng.random(n) < 0.5) if broadening_shape == "mixed" else \
            np.full(n, broadening_shape == "gaussian")
        kg = _kernel_rows(half, step, fwhm, "gaussian")
        kl = _kernel_rows(half, step, fwhm, "lorentzian")
        for i in range(n):
            k = kg[i] if shapes[i] else kl[i]
            padded = np.pad(X[i], half, mode="edge")
            X[i] = np.convolve(padded, k, mode="valid")
    with np.errstate(invalid="ignore"):
        scale = np.max(np.abs(X), axis=1, keepdims=True) if m else np.ones((n, 1))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    if counts is not None and counts > 0:
        lam = np.clip(X / scale, 0, None) * counts
        lam = np.where(np.isfinite(lam), lam, 0)
        X = np.where(np.isfinite(X), rng.poisson(lam) / counts * scale, np.nan)
    if noise > 0:
        X = X + rng.normal(0, noise, X.shape) * scale
    return X


class SpectrumAugmenter(TransformerMixin, BaseEstimator):
    """Training-time augmentation as a pipeline step.

    ``fit_transform`` (what a :class:`~sklearn.pipeline.Pipeline` calls while
    fitting) returns perturbed spectra, see :func:`augment_spectra`;
    ``transform`` (prediction time) returns its input unchanged.  The number of
    rows is kept, so targets stay aligned.

    Parameters
    ----------
    edge : str, optional
        Edge name; its standard grid gives the energies (eV).
    energy : array-like, optional
        Energy grid (eV); overrides ``edge``; default: channel index.
    shift, broadening, broadening_shape, noise, counts
        See :func:`augment_spectra`.
    random_state : int, optional
        Seed.
    """

    def __init__(self, edge: str | None = None, energy=None, shift: float = 0.5,
                 broadening: float = 0.5, broadening_shape: str = "mixed",
                 noise: float = 0.01, counts: float | None = None,
                 random_state: int | None = None):
        self.edge = edge
        self.energy = energy
        self.shift = shift
        self.broadening = broadening
        self.broadening_shape = broadening_shape
        self.noise = noise
        self.counts = counts
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X, reset=True, ensure_all_finite="allow-nan", dtype=np.float64)
        self.energy_ = _SpectrumTransformer._grid(self, X.shape[1])
        return self

    def transform(self, X):
        check_is_fitted(self, "energy_")
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan",
                             dtype=np.float64)

    def fit_transform(self, X, y=None, **fit_params):
        self.fit(X)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        return augment_spectra(X, self.energy_, rng=self.random_state, shift=self.shift,
                               broadening=self.broadening,
                               broadening_shape=self.broadening_shape,
                               noise=self.noise, counts=self.counts)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
