"""Uncertainty and trust: calibrated standard deviations and out-of-distribution flags.

Regression targets get a standard deviation from a *residual model*: a
gradient-boosting regressor trained on the absolute out-of-fold residuals of
grouped cross-validation (so it knows which edges were present and how hard a
spectrum is), then scaled so that, on those held-out residuals and with the
residual model itself cross-fitted, +-1 std covers 68.3 % and a stored
multiplier gives the 90 % interval.  Coverage is measured
afterwards on the test split (:func:`interval_coverage`).

Classification targets (``o_vacancy``, ``antisite``) give a probability; its
standard deviation is the spread of the cross-validation fold models.

:class:`OODDetector` flags spectra unlike the training spectra: per edge, the
Mahalanobis distance of the standardised features in PCA space plus the PCA
reconstruction residual, thresholded at a quantile (99 % by default) of the
held-out training distances, corrected for the number of edges tested together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from ..errors import MMSpecError

__all__ = ["OODDetector", "calibrate_scale", "calibrate_by_edge_count", "edge_count_group",
           "EDGE_COUNT_GROUPS", "interval_coverage"]

#: fraction of a standard normal within +-1 sigma
ONE_SIGMA = 0.6826894921370859
#: half-width of a 90 % interval of a standard normal, in sigma
Z90 = 1.6448536269514722
#: default of ``predict(drop_ood_edges=...)``: an edge this many times beyond
#: its OOD threshold is ignored for that pixel
DROP_OOD_EDGES = 10.0
#: bins of log relative noise in which an :class:`OODDetector` fitted with
#: noise learns the law of held-out distances
N_NOISE_BINS = 8


def calibrate_scale(abs_residual: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """Scale factors that make ``sigma`` a calibrated standard deviation.

    Parameters
    ----------
    abs_residual : ndarray
        Absolute held-out residuals (target units).
    sigma : ndarray
        Raw predicted spreads for the same rows (target units, > 0).

    Returns
    -------
    (c1, q90) : (float, float)
        ``c1 * sigma`` is the calibrated std: the smallest scale under which
        the residuals are covered as a normal law's are at both levels, 68.3 %
        within 1 std and 90 % within 1.645 std (residuals with heavy tails,
        common for trees, would otherwise escape 2 std far more often than
        5 % of the time); ``q90 * c1 * sigma`` covers 90 % (the 90 %
        half-width, at most 1.645 std).
    """
    z = np.asarray(abs_residual, float) / np.asarray(sigma, float)
    z = z[np.isfinite(z)]
    if z.size < 10:
        raise MMSpecError(f"calibrate_scale: {z.size} usable residuals; need at least 10")
    c68 = float(np.quantile(z, ONE_SIGMA))
    c90 = float(np.quantile(z, 0.90))
    c1 = max(c68, c90 / Z90, 1e-12)
    return c1, c90 / c1


#: groups of rows by the number of edges they are read from, each with its own
#: std scale: a model reads one edge and all of them with different errors,
#: and one scale for both covers the first too widely and the second too
#: narrowly (lower and upper bound of each group)
EDGE_COUNT_GROUPS = ((1, 1), (2, 3), (4, 1_000_000))
#: fewest residuals a group needs for a scale of its own (else the pooled one)
MIN_GROUP_ROWS = 50


def edge_count_group(n_edges: np.ndarray) -> np.ndarray:
    """Index into :data:`EDGE_COUNT_GROUPS` of each row's number of edges
    (rows without an edge go with the single-edge group)."""
    n = np.asarray(n_edges)
    out = np.zeros(n.shape, dtype=np.intp)
    for g, (lo, _hi) in enumerate(EDGE_COUNT_GROUPS):
        out[n >= lo] = g
    return out


def calibrate_by_edge_count(abs_residual: np.ndarray, sigma: np.ndarray, n_edges: np.ndarray,
                            min_rows: int = MIN_GROUP_ROWS) -> tuple[float, tuple, float]:
    """:func:`calibrate_scale` in each group of :data:`EDGE_COUNT_GROUPS`.

    Returns
    -------
    (c1, scales, q90) : (float, tuple of float, float)
        The pooled scale; one scale per group (the pooled one for a group of
        fewer than ``min_rows`` usable residuals), so that the residuals of
        each group are covered at 68.3 % within 1 std and 90 % within 1.645
        std; and the 90 % half-width, in calibrated std, of all residuals
        together (at most 1.645).
    """
    r = np.asarray(abs_residual, float)
    sig = np.asarray(sigma, float)
    grp = edge_count_group(n_edges)
    c1, _ = calibrate_scale(r, sig)
    scales = []
    for g in range(len(EDGE_COUNT_GROUPS)):
        m = grp == g
        ok = m & np.isfinite(r / sig)
        scales.append(calibrate_scale(r[m], sig[m])[0] if ok.sum() >= min_rows else c1)
    z = r / (sig * np.asarray(scales)[grp])
    z = z[np.isfinite(z)]
    q90 = float(min(Z90, np.quantile(z, 0.90)))
    return c1, tuple(float(v) for v in scales), q90


def interval_coverage(y_true: np.ndarray, y_pred: np.ndarray, std: np.ndarray,
                      q90: float = Z90) -> dict:
    """Fraction of true values inside +-1 std and inside the 90 % interval.

    Parameters
    ----------
    y_true, y_pred, std : ndarray
        Truth, prediction and stated standard deviation (same units).
    q90 : float
        Half-width of the 90 % interval in units of ``std``.

    Returns
    -------
    dict
        ``{"n", "within_1std", "within_90", "mean_std"}``; nominal values 0.683 and 0.90.
    """
    y_true, y_pred, std = (np.asarray(a, float) for a in (y_true, y_pred, std))
    m = np.isfinite(y_true) & np.isfinite(y_pred) & np.isfinite(std)
    err = np.abs(y_true[m] - y_pred[m])
    if not m.any():
        return {"n": 0, "within_1std": None, "within_90": None, "mean_std": None}
    return {"n": int(m.sum()), "within_1std": float(np.mean(err <= std[m])),
            "within_90": float(np.mean(err <= q90 * std[m])), "mean_std": float(std[m].mean())}


class OODDetector(BaseEstimator):
    """Per-edge Mahalanobis distance in PCA feature space.

    For each edge the features are centred and scaled by
    ``sqrt(variance + scale_floor**2)``, projected on ``n_components``
    principal components, and the distance is the Mahalanobis norm of the
    scores (variances floored at 1) plus the reconstruction residual (relative
    to its training mean, floored at 1).  The floors keep the distance finite
    and meaningful when the training spectra of an edge hardly vary: a
    deviation then counts in units of ``scale_floor``.  The threshold comes
    from the distances of training samples *held out* from the fit
    (``n_splits``-fold cross-fitting, grouped when groups are given), to which
    a log-normal law is fitted, so that rare quantiles are smooth even for
    small training sets.

    Parameters
    ----------
    quantile : float
        Training quantile used as threshold: about ``1 - quantile`` of
        in-distribution samples are flagged whatever the number of edges,
        because with ``k`` edges present each edge is tested at
        ``1 - (1 - quantile) / k``.
    n_components : int
        PCA components per edge.
    n_splits : int
        Cross-fitting folds for the threshold.
    scale_floor : float
        Smallest feature scale, in feature units (0.01 suits CDF features,
        which run from 0 to 1).

    Attributes
    ----------
    edges_ : list of str
    fits_ : dict
        Per edge ``(mean, scale, pca, resid_scale)``, fitted on all training rows.
    log_mean_, log_std_ : dict
        Per edge, log-normal law of the held-out training distances.
    """

    def __init__(self, quantile: float = 0.99, n_components: int = 8, n_splits: int = 5,
                 scale_floor: float = 0.01):
        self.quantile = quantile
        self.n_components = n_components
        self.n_splits = n_splits
        self.scale_floor = scale_floor

    def _fit_edge(self, block: np.ndarray):
        mean = block.mean(axis=0)
        scale = np.sqrt(block.var(axis=0) + float(self.scale_floor) ** 2)
        Z = (block - mean) / scale
        k = max(1, min(int(self.n_components), Z.shape[0] - 1, Z.shape[1]))
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            # identical spectra (a constant block) leave no variance to explain
            warnings.simplefilter("ignore", RuntimeWarning)
            pca = PCA(n_components=k).fit(Z)
        resid = ((Z - pca.inverse_transform(pca.transform(Z))) ** 2).sum(axis=1)
        return mean, scale, pca, float(max(resid.mean(), 1.0))

    @staticmethod
    def _distance_with(fitted, block: np.ndarray) -> np.ndarray:
        mean, scale, pca, resid_scale = fitted
        Z = (block - mean) / scale
        S = pca.transform(Z)
        maha = (S ** 2 / np.maximum(pca.explained_variance_, 1.0)).sum(axis=1)
        resid = ((Z - pca.inverse_transform(S)) ** 2).sum(axis=1) / resid_scale
        return np.sqrt(maha + resid)

    def fit(self, F: np.ndarray, feature_edges: Sequence[str], groups=None,
            noise: np.ndarray | None = None, fit_rows: np.ndarray | None = None):
        """Learn per-edge distance distributions.

        Parameters
        ----------
        F : ndarray, shape (n_samples, n_features)
            Training features; NaN blocks are absent edges.
        feature_edges : sequence of str
            Edge of each column of ``F``.
        groups : sequence, optional
            Group (structure) per row, kept together in the cross-fitting.
        noise : ndarray, shape (n_samples, n_edges), optional
            Relative noise of each row's spectrum per edge (columns in the
            order edges first appear in ``feature_edges``; see
            :func:`~mmspec_widgets.learn.features.relative_noise`).  Given, the
            law of the held-out distances is learnt as a function of the
            noise (in ``N_NOISE_BINS`` quantile bins of log noise), so that a
            noisy spectrum of a known chemistry is compared with noisy
            held-out spectra, and a clean one with clean ones.
        fit_rows : ndarray of bool, shape (n_samples,), optional
            Rows the PCA description is fitted on (default all; e.g. the clean
            spectra only, while the thresholds use noisy copies as well).

        Returns
        -------
        self
        """
        from sklearn.model_selection import GroupKFold, KFold

        feature_edges = np.asarray(feature_edges, dtype=object)
        self.edges_ = list(dict.fromkeys(feature_edges))
        self.columns_ = {e: np.flatnonzero(feature_edges == e) for e in self.edges_}
        self.fits_, self.log_mean_, self.log_std_ = {}, {}, {}
        self.noise_law_ = {}
        if noise is not None:
            noise = np.asarray(noise, dtype=float)
            if noise.shape != (F.shape[0], len(self.edges_)):
                raise MMSpecError(f"noise: expected shape {(F.shape[0], len(self.edges_))}, "
                                  f"got {noise.shape}")
        base = np.ones(F.shape[0], bool) if fit_rows is None else np.asarray(fit_rows, bool)
        for j, (e, cols) in enumerate(self.columns_.items()):
            finite = np.all(np.isfinite(F[:, cols]), axis=1)
            rows = np.flatnonzero(finite)
            if rows.size < 6 or (finite & base).sum() < 6:
                continue
            block = F[rows][:, cols]
            in_fit = base[rows]
            g = None if groups is None else np.asarray(groups)[rows]
            n_splits = min(int(self.n_splits), rows.size // 3,
                           rows.size if g is None else np.unique(g).size)
            d = np.full(rows.size, np.nan)
            if n_splits >= 2:
                cv = KFold(n_splits, shuffle=True, random_state=0) if g is None else \
                    GroupKFold(n_splits)
                for tr, te in cv.split(block, groups=g):
                    tr = tr[in_fit[tr]]
                    if tr.size >= 3:
                        d[te] = self._distance_with(self._fit_edge(block[tr]), block[te])
            self.fits_[e] = self._fit_edge(block[in_fit])
            miss = ~np.isfinite(d)
            if miss.any():
                d[miss] = self._distance_with(self.fits_[e], block[miss])
            logd = np.log(np.maximum(d, 1e-12))
            self.log_mean_[e] = float(logd.mean())
            self.log_std_[e] = float(max(logd.std(), 1e-3))
            if noise is not None:
                self.noise_law_[e] = self._noise_law(np.log(np.maximum(noise[rows, j], 1e-6)),
                                                     logd)
        return self

    @staticmethod
    def _noise_law(lognoise: np.ndarray, logd: np.ndarray) -> dict:
        """Mean and std of log distance in quantile bins of log noise, both made
        non-decreasing with noise (more noise never makes a spectrum closer to
        the training set, nor its distance better defined)."""
        ok = np.isfinite(lognoise) & np.isfinite(logd)
        x, y = lognoise[ok], logd[ok]
        n_bins = int(max(1, min(N_NOISE_BINS, x.size // 30)))
        edges = np.quantile(x, np.linspace(0, 1, n_bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
        centre, mean, std = [], [], []
        for b in range(n_bins):
            sel = which == b
            if sel.sum() < 5:
                continue
            centre.append(float(np.median(x[sel])))
            mean.append(float(y[sel].mean()))
            std.append(float(max(y[sel].std(), 1e-3)))
        mean = np.maximum.accumulate(np.asarray(mean))
        std = np.maximum.accumulate(np.asarray(std))
        return {"log_noise": list(centre), "log_mean": [float(v) for v in mean],
                "log_std": [float(v) for v in std]}

    def _law(self, edge: str, noise: np.ndarray | None, n: int):
        """(log mean, log std) of held-out distances of ``edge``, per row."""
        law = getattr(self, "noise_law_", {}).get(edge)
        if law is None or noise is None:
            return np.full(n, self.log_mean_[edge]), np.full(n, self.log_std_[edge])
        x = np.log(np.maximum(np.asarray(noise, float), 1e-6))
        # rows without a noise estimate are compared with the noisiest bin's law
        x = np.where(np.isfinite(x), x, law["log_noise"][-1])
        return (np.interp(x, law["log_noise"], law["log_mean"]),
                np.interp(x, law["log_noise"], law["log_std"]))

    def threshold(self, edge: str, level: np.ndarray | float,
                  noise: np.ndarray | None = None) -> np.ndarray:
        """Distance threshold of ``edge`` at quantile ``level`` of the held-out law
        (at the given relative noise, for detectors fitted with noise)."""
        from scipy.stats import norm

        if noise is None:
            return np.exp(self.log_mean_[edge] + self.log_std_[edge] * norm.ppf(level))
        mu, sd = self._law(edge, noise, np.size(noise))
        return np.exp(mu + sd * norm.ppf(level))

    def _edge_distances(self, F: np.ndarray) -> list:
        """Per fitted edge: the rows where it is present and their distances."""
        out = []
        for e, cols in self.columns_.items():
            if e not in self.fits_:
                continue
            block = F[:, cols]
            rows = np.all(np.isfinite(block), axis=1)
            d = self._distance_with(self.fits_[e], block[rows]) if rows.any() else None
            out.append((e, rows, d))
        return out

    def edge_ratios(self, F: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Per edge: distance / threshold at ``quantile`` (NaN where the edge is absent).

        Parameters
        ----------
        F : ndarray, shape (n_samples, n_features)
        noise : ndarray, shape (n_samples, n_edges), optional
            Relative noise per row and edge (see :meth:`fit`).

        Returns
        -------
        ndarray, shape (n_samples, n_edges)
            Columns in the order of ``edges_``.
        """
        check_is_fitted(self, "log_mean_")
        return self._ratios(F, self._edge_distances(F), noise)

    def _noise_of(self, noise, e, rows):
        return None if noise is None else np.asarray(noise, float)[rows, self.edges_.index(e)]

    def _ratios(self, F: np.ndarray, distances: list, noise=None) -> np.ndarray:
        out = np.full((F.shape[0], len(self.edges_)), np.nan)
        for e, rows, d in distances:
            if d is not None:
                thr = self.threshold(e, float(self.quantile), self._noise_of(noise, e, rows))
                out[rows, self.edges_.index(e)] = d / thr
        return out

    def score(self, F: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """OOD score per row: largest ratio distance / threshold over present edges.

        A score above 1 means out of distribution.  With ``k`` edges present each
        is compared with its threshold at ``1 - (1 - quantile) / k``.  Rows
        without any usable edge get ``inf``.

        Parameters
        ----------
        F : ndarray, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        check_is_fitted(self, "log_mean_")
        return self._score(F, self._edge_distances(F), noise)

    def score_and_ratios(self, F: np.ndarray, noise: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``(score(F), edge_ratios(F))``, computing each edge's distances once."""
        check_is_fitted(self, "log_mean_")
        distances = self._edge_distances(F)
        return self._score(F, distances, noise), self._ratios(F, distances, noise)

    def _score(self, F: np.ndarray, distances: list, noise=None) -> np.ndarray:
        n = F.shape[0]
        k = np.sum([rows for _, rows, _ in distances], axis=0) if distances else np.zeros(n)
        k = np.maximum(k, 1)
        # the threshold's quantile depends on k only: its normal quantile once per k
        from scipy.stats import norm

        ks, inverse = np.unique(k, return_inverse=True)
        z = norm.ppf(1 - (1 - float(self.quantile)) / ks)[inverse.ravel()]
        out = np.full(n, -np.inf)
        for e, rows, d in distances:
            if d is None:
                continue
            mu, sd = self._law(e, self._noise_of(noise, e, rows), int(rows.sum()))
            thr = np.exp(mu + sd * z[rows])
            out[rows] = np.maximum(out[rows], d / thr)
        out[~np.isfinite(out)] = np.inf
        return out
