"""Multimodal fusion models: predict local structure from any subset of edges.

Data enter as an :class:`xarray.Dataset` with one variable per edge (``O_K``,
``Ni_L23`` ...) on dim ``energy_<edge>`` and any leading dims (``sample``;
``y, x``; ``scan``; none).  :func:`dataset_to_matrix` joins them into one row
per sample/pixel, every edge on its standard grid, NaN blocks for edges that
are missing.

:class:`MultimodalModel` then featurizes each edge
(:class:`~mmspec_widgets.learn.features.FusedFeaturizer`) and fuses:

``fusion="early"``
    one gradient-boosting model per target on the joined features of all
    edges plus per-edge presence indicators;
``fusion="late"``
    per-edge models predict every target from one edge each; a stacking
    model per target combines the per-edge predictions of all targets
    (out-of-fold during training) and the presence indicators;
``fusion="hybrid"``
    the stage-2 model sees the joined features *and* the per-edge
    predictions, so it can lean on a strong single-edge specialist.

Either way the model is trained with *edge dropout*: the training rows are
repeated with random subsets of their edges hidden (set to NaN, the presence
indicator cleared), so a single model serves every subset of the edges it was
trained on.  Grouped-CV fold models (structures never shared between folds)
give out-of-fold predictions: their residuals train the uncertainty model of
each regression target (see :mod:`mmspec_widgets.learn.uncertainty`), and for
the defect classifiers the fold models form the ensemble whose spread is the
probability's standard deviation.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupKFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ..edges import EDGE_ORDER, TM_EDGES, edge_grid, edge_set_key, get_edge
from ..errors import DataError, MMSpecError
from ..kernels import shift_resample
from ..reasons import DETECTION_Z, TARGET_REASONS, reason_attrs
from ..simulate.labels import CLASSIFICATION_LABELS, PHASE_LABELS, phase_flags
from .coverage import check_rows, complete_rows, coverage, is_partial_edge, partial_edges, widen
from .features import (
    FusedFeaturizer,
    augment_spectra,
    fused_transform,
    gaussian_broaden,
    relative_noise,
)
from .trees import compact, single_threaded, stage
from .uncertainty import (
    DROP_OOD_EDGES,
    Z90,
    OODDetector,
    calibrate_by_edge_count,
    edge_count_group,
)

__all__ = [
    "TARGETS",
    "REGRESSION_TARGETS",
    "CLASSIFICATION_TARGETS",
    "PHASE_TARGETS",
    "phase_map",
    "dataset_to_matrix",
    "target_matrix",
    "label_values",
    "make_estimator",
    "MultimodalModel",
    "DEFAULT_KINDS",
    "DEFAULT_AUGMENT",
]

REGRESSION_TARGETS = ("li_content", "ni_fraction", "mn_fraction", "co_fraction",
                      "ni_oxidation", "mn_oxidation", "co_oxidation")
#: probability that the region is of that phase rather than layered NMC (0/1
#: labels of the set, :data:`mmspec_widgets.simulate.labels.PHASE_LABELS`);
#: together they give the ``phase`` map (:func:`phase_map`)
PHASE_TARGETS = tuple(PHASE_LABELS)
#: classified as count > 0; the model gives the probability of at least one
#: (defects), or of the phase
CLASSIFICATION_TARGETS = CLASSIFICATION_LABELS
TARGETS = REGRESSION_TARGETS + CLASSIFICATION_TARGETS

_UNITS = {"li_content": "Li per formula unit", "ni_fraction": "fraction of TM",
          "mn_fraction": "fraction of TM", "co_fraction": "fraction of TM",
          "ni_oxidation": "oxidation state", "mn_oxidation": "oxidation state",
          "co_oxidation": "oxidation state", "o_vacancy": "probability",
          "antisite": "probability", **{t: "probability" for t in PHASE_TARGETS}}

#: featurizers of the default model: shape (CDF, piecewise cubics, peaks) and
#: the noise level, so noisy pixels get wider uncertainty than clean simulations
DEFAULT_KINDS = ("cdf", "poly", "peaks", "noise")
#: augmentation of the training copies: shifts and broadening up to 0.5 eV, a
#: noise level per spectrum log-uniform between 0.1 % and 10 % of its maximum
#: (the L2,3 edges of single pixels of the real NMC SI sit at 1 - 10 %)
DEFAULT_AUGMENT = {"shift": 0.5, "broadening": 0.5, "noise": (0.001, 0.1)}
#: noisy copies of the training spectra behind the OOD thresholds, and their
#: noise range (relative to each spectrum's maximum): single pixels of the real
#: NMC SI sit at 1 - 14 % (Ni L2,3 the noisiest), so a noisy pixel of a known
#: chemistry is judged against noisy held-out spectra; a spectrum noisier than
#: the range is held to its top (spectra that are mostly noise stay flagged)
OOD_NOISE_COPIES = 4
OOD_NOISE = (0.002, 0.2)

_HGB_DEFAULTS = {"max_iter": 150, "learning_rate": 0.1, "max_leaf_nodes": 15,
                 "min_samples_leaf": 20, "l2_regularization": 1.0, "max_bins": 128,
                 "max_features": 0.5}
#: per-edge (level-1) models of late fusion: small and fixed
_EDGE_MODEL_PARAMS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15,
                      "min_samples_leaf": 10, "max_features": 1.0}
#: pixels predicted at once (bounds memory for large spectrum images)
_CHUNK_ROWS = 16384
#: pixels per block of a large image (the block's arrays stay in the caches)
_BLOCK_ROWS = 4096
#: large images (predicted block by block): the calibration error's effect is
#: computed on every CALIBRATION_STRIDE-th pixel of a block and its RMS added to
#: the block's std (small images: on every pixel)
CALIBRATION_STRIDE = 16
#: fewest pixels per block when blocks are predicted on several threads
_MIN_THREAD_ROWS = 1024
#: fewest complete spectra for an edge to be used in training
_MIN_SPECTRA = 4
#: probability that an edge-dropout copy keeps a single edge
_P_SINGLE = 0.35
_RF_DEFAULTS = {"n_estimators": 200, "min_samples_leaf": 3, "max_features": 0.3}


# --------------------------------------------------------------------------- data in

def _energy_dim(da: xr.DataArray, edge: str) -> str:
    name = f"energy_{edge}"
    if name in da.dims:
        return name
    cands = [d for d in da.dims if str(d).startswith("energy")]
    if len(cands) != 1:
        raise DataError(f"variable {edge!r} has dims {da.dims}; expected one energy dim "
                        f"named {name!r}")
    return cands[0]


def _on_grid(da: xr.DataArray, edge: str, dim: str, max_missing: float) -> np.ndarray:
    """Spectra of ``da`` on the edge's standard grid, shape (n_rows, n_grid)."""
    grid = edge_grid(edge)
    lead = [d for d in da.dims if d != dim]
    vals = np.asarray(da.transpose(*lead, dim).values, dtype=float).reshape(-1, da.sizes[dim])
    if dim in da.coords:
        e = np.asarray(da[dim].values, dtype=float)
        if e.size == grid.size and np.allclose(e, grid, atol=1e-3):
            out = vals
        else:
            order = np.argsort(e)
            e, vals = e[order], vals[:, order]
            if e[0] > grid[-1] or e[-1] < grid[0]:
                raise DataError(f"{edge}: energy axis {e[0]:.1f} - {e[-1]:.1f} eV does not "
                                f"overlap the grid {grid[0]:.1f} - {grid[-1]:.1f} eV")
            out = np.full((vals.shape[0], grid.size), np.nan)
            inside = (grid >= e[0]) & (grid <= e[-1])
            for i, row in enumerate(vals):
                out[i, inside] = np.interp(grid[inside], e, row)
    else:
        if vals.shape[1] != grid.size:
            raise DataError(f"{edge}: {vals.shape[1]} energies without coordinate; expected "
                            f"{grid.size} (the standard grid of {edge})")
        out = vals
    if is_partial_edge(edge):  # a XANES scan may cover part of a K edge's grid
        return complete_rows(out, edge, max_missing, copy=out is vals)
    # partially missing spectra: fill short gaps, drop mostly-empty ones
    bad = ~np.isfinite(out)
    partial = bad.any(axis=1) & ~bad.all(axis=1)
    if partial.any() and out is vals:  # the caller's data: completed on a copy
        out = out.copy()
    for i in np.flatnonzero(partial):
        ok = ~bad[i]
        if ok.mean() >= 1 - max_missing:
            out[i] = np.interp(grid, grid[ok], out[i, ok])
        else:
            out[i] = np.nan
    return out


def dataset_to_matrix(ds: xr.Dataset, edges: Sequence[str], *, use: Sequence[str] | None = None,
                      max_missing: float = 0.2) -> tuple[np.ndarray, dict]:
    """Join the edges of a Dataset into one row per sample or pixel.

    Parameters
    ----------
    ds : xarray.Dataset
        One variable per edge, named as in the edge table, each with an energy
        dim (``energy_<edge>``, eV) and the same leading dims.
    edges : sequence of str
        Column blocks, in this order, each on its standard grid.
    use : sequence of str, optional
        Edges to read from ``ds``; the other blocks are NaN.  Default: all of
        ``edges`` found in ``ds``.
    max_missing : float
        A spectrum with at most this fraction of NaN (or off-range) points is
        completed by interpolation; beyond, it counts as missing.  Hard-XAS
        K edges follow :mod:`~mmspec_widgets.learn.coverage` instead: a scan
        covering part of the grid (at least the edge's rise and white line) is
        completed by its measured rule, with ``max_missing`` applied to gaps
        inside the covered span; less coverage raises ``DataError``.

    Returns
    -------
    X : ndarray, shape (n_rows, sum of grid sizes)
        Spectra (eV grids of :func:`~mmspec_widgets.edges.edge_grid`); NaN blocks
        for missing edges.
    layout : dict
        ``dims``, ``shape``, ``coords`` of the leading dims (to rebuild maps) and
        ``edges`` (those read).
    """
    layout = _layout(ds, edges, use)
    edges = [get_edge(e).name for e in edges]
    lead_dims, shape, use = layout["dims"], layout["shape"], layout["edges"]
    n = int(np.prod(shape)) if shape else 1
    blocks = []
    for e in edges:
        if e in use:
            da = ds[e].transpose(*lead_dims, _energy_dim(ds[e], e))
            blocks.append(_on_grid(da, e, _energy_dim(ds[e], e), max_missing))
        else:
            blocks.append(np.full((n, get_edge(e).n_points), np.nan))
    return np.concatenate(blocks, axis=1), layout


def _layout(ds: xr.Dataset, edges: Sequence[str], use: Sequence[str] | None) -> dict:
    """Leading dims, shape, coordinates and edges read, without reading spectra."""
    if not isinstance(ds, xr.Dataset):
        raise MMSpecError(f"expected an xarray.Dataset of edges, got {type(ds).__name__}")
    edges = [get_edge(e).name for e in edges]
    use = [e for e in edges if e in ds.data_vars] if use is None else \
        [get_edge(e).name for e in use]
    for e in use:
        if e not in edges:
            raise MMSpecError(f"edge {e!r} is not one the model was trained on "
                              f"({', '.join(edges)})")
        if e not in ds.data_vars:
            raise DataError(f"edge {e!r} requested but the Dataset has no variable {e!r} "
                            f"(it has {', '.join(map(str, ds.data_vars))})")
    if not use:
        raise DataError(f"the Dataset holds none of the edges {', '.join(edges)} "
                        f"(variables: {', '.join(map(str, ds.data_vars)) or 'none'})")
    lead_dims = None
    for e in use:
        dims = tuple(d for d in ds[e].dims if d != _energy_dim(ds[e], e))
        if lead_dims is None:
            lead_dims = dims
        elif set(dims) != set(lead_dims):
            raise DataError(f"edge {e!r} has leading dims {dims}, others {lead_dims}")
    shape = tuple(ds.sizes[d] for d in lead_dims)
    coords = {}
    for name, c in ds.coords.items():
        if set(c.dims) and set(c.dims) <= set(lead_dims):
            # the input's own phase labels (a simulated set) stay beside the
            # predicted ``phase`` map under another name
            coords["phase_label" if name == "phase" else name] = c.variable
    return {"dims": lead_dims, "shape": shape, "coords": coords, "edges": use}


def label_values(ds: xr.Dataset, target: str) -> np.ndarray:
    """The labels of ``target`` in ``ds`` as floats (counts as counts); NaN for
    a phase target of a set that records no phases.

    Raises
    ------
    DataError
        If another target's variable is missing from ``ds``.
    """
    if target in PHASE_TARGETS and target not in ds:
        return np.full(ds.sizes["sample"], np.nan)
    if target not in ds:
        raise DataError(f"training set has no label variable {target!r}")
    return np.asarray(ds[target].values, dtype=float).ravel()


def target_matrix(ds: xr.Dataset, targets: Sequence[str]) -> np.ndarray:
    """Labels of ``targets`` as columns; counts of classification targets become 0/1.

    Raises
    ------
    DataError
        If a target variable is missing from ``ds``.
    """
    cols = []
    for t in targets:
        # a set assembled before structures had phases leaves them unlabelled:
        # those targets are not learnt (NaN maps that say why)
        v = label_values(ds, t)
        if t in CLASSIFICATION_TARGETS:
            v = np.where(np.isfinite(v), (v > 0).astype(float), np.nan)
        cols.append(v)
    return np.stack(cols, axis=1)


def _columns(ds: xr.Dataset, names: Sequence[str], dims: Sequence[str]) -> np.ndarray:
    """Variables ``names`` over the leading ``dims`` as columns (rows in the order
    of ``dims``); NaN columns for variables ``ds`` does not have."""
    n = int(np.prod([ds.sizes[d] for d in dims])) if dims else 1
    return np.stack([np.asarray(ds[v].transpose(*dims).values, dtype=float).ravel()
                     if v in ds else np.full(n, np.nan) for v in names], axis=1) \
        if names else np.zeros((n, 0))


def amount_matrix(ds: xr.Dataset, edges: Sequence[str], dims: Sequence[str]) -> np.ndarray:
    """Relative amounts ``amount_<edge>`` (atoms per O atom) as columns.

    Parameters
    ----------
    ds : xarray.Dataset
        Training set or the output of :func:`mmspec_widgets.quantify.quantify`.
    edges : sequence of str
        One column per edge; NaN where ``ds`` has no ``amount_<edge>``.
    dims : sequence of str
        Leading dims, in row order.

    Returns
    -------
    ndarray, shape (n_rows, len(edges))
        Amounts (atoms per O atom, >= 0); NaN where unknown.
    """
    a = _columns(ds, [f"amount_{e}" for e in edges], dims)
    return np.where(np.isfinite(a), np.maximum(a, 0.0), np.nan)


def _std_matrix(ds: xr.Dataset, edges: Sequence[str], dims: Sequence[str]) -> np.ndarray:
    """``amount_<edge>_std`` as columns, rows in the order of ``dims``."""
    return _columns(ds, [f"amount_{e}_std" for e in edges], dims)


def make_estimator(kind: str, task: str, params: dict | None = None, random_state: int = 0):
    """A fresh tree-ensemble estimator that accepts NaN features.

    Parameters
    ----------
    kind : {"hgb", "rf", "xgb"}
        Histogram gradient boosting (default), random forest, or XGBoost
        (optional dependency).
    task : {"regression", "classification"}
    params : dict, optional
        Hyperparameters overriding the defaults.
    random_state : int
    """
    params = dict(params or {})
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        cls = HistGradientBoostingRegressor if task == "regression" else \
            HistGradientBoostingClassifier
        return cls(**{**_HGB_DEFAULTS, **params}, early_stopping=False, random_state=random_state)
    if kind == "rf":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
        cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
        return cls(**{**_RF_DEFAULTS, **params}, n_jobs=1, random_state=random_state)
    if kind == "xgb":
        try:
            import xgboost
        except ImportError:
            raise MMSpecError("estimator 'xgb' needs the optional package xgboost "
                              "(pip install xgboost-cpu)") from None
        base = {"n_estimators": 300, "learning_rate": 0.08, "max_depth": 6, "subsample": 0.8,
                "colsample_bytree": 0.5, "tree_method": "hist", "n_jobs": 1}
        cls = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
        return cls(**{**base, **params}, random_state=random_state)
    raise MMSpecError(f"estimator={kind!r}: expected 'hgb', 'rf' or 'xgb'")


def predict_estimator(est, D: np.ndarray, task: str) -> np.ndarray:
    """Predictions of a fitted estimator on ``D``: values for a regression
    ``task``, the probability of class 1 for a classification."""
    if task == "regression":
        return np.asarray(est.predict(D), dtype=float)
    proba = est.predict_proba(D)
    classes = list(est.classes_)
    return proba[:, classes.index(1.0)] if 1.0 in classes else np.zeros(D.shape[0])


def _predict_many(jobs: Sequence[tuple], D: np.ndarray) -> list[np.ndarray]:
    """``[predict_estimator(est, D[:, cols], task) for est, task, cols in jobs]`` (cols None:
    all columns), the compact boosting models evaluated together in one
    compiled pass over ``D`` (identical numbers)."""
    from scipy.special import expit

    from .trees import CompactBoosting, raw_scores

    out: list = [None] * len(jobs)
    fast = [i for i, job in enumerate(jobs) if isinstance(job[0], CompactBoosting)]
    if fast:
        with stage("trees"):
            raw = raw_scores([jobs[i][0] for i in fast], D, [jobs[i][2] for i in fast])
        for col, i in enumerate(fast):
            est, task, _ = jobs[i]
            if task == "regression":
                out[i] = raw[:, col]
                continue
            p1 = expit(raw[:, col])  # CompactBoosting.predict_proba: [1 - p1, p1]
            classes = list(est.classes_)
            out[i] = (p1 if classes.index(1.0) == 1 else 1 - p1) if 1.0 in classes \
                else np.zeros(D.shape[0])
    for i, (est, task, cols) in enumerate(jobs):
        if out[i] is None:
            out[i] = predict_estimator(est, D if cols is None else D[:, cols], task)
    return out


def _prediction_threads() -> int:
    from .trees import prediction_threads

    return prediction_threads()


def _row_blocks(ds: xr.Dataset, edges: Sequence[str], used: Sequence[str],
                dims: Sequence[str], n: int):
    """``rows(i0, i1)``: ``dataset_to_matrix`` of pixels ``i0:i1`` (leading dims
    flattened in order).  Spectra already on the standard grids are copied
    straight into the matrix (what ``dataset_to_matrix`` returns for them); a
    block with a partly missing spectrum goes through ``dataset_to_matrix``."""
    from .features import k_copy_rows

    arrays = {}
    direct = True
    for e in used:
        dim = _energy_dim(ds[e], e)
        da = ds[e].transpose(*dims, dim)
        if not isinstance(da.data, np.ndarray):  # dask-backed: xarray stacks it lazily
            stacked = ds[used].stack(_row=dims).transpose("_row", ...)
            return lambda i0, i1: dataset_to_matrix(stacked.isel(_row=slice(i0, i1)), edges,
                                                    use=used)[0]
        coords = {dim: ds[dim]} if dim in ds.coords else {}
        grid = edge_grid(e)
        e_val = np.asarray(ds[dim].values, dtype=float) if dim in ds.coords else None
        direct &= (e_val is not None and e_val.size == grid.size
                   and np.allclose(e_val, grid, atol=1e-3)
                   and da.dtype in (np.float32, np.float64))
        arrays[e] = (dim, da.data.reshape(n, da.sizes[dim]), coords)
    sizes = [get_edge(e).n_points for e in edges]
    starts = np.cumsum([0] + sizes)
    local = threading.local()  # one matrix per thread, reused block after block

    def rows(i0, i1):
        if direct:
            shape = (min(i1, n) - i0, int(starts[-1]))
            X = getattr(local, "X", None)
            if X is None or X.shape != shape:
                X = local.X = np.empty(shape)  # a fresh large array costs page faults
            ok = True
            for k, e in enumerate(edges):
                if e in arrays:
                    ok = ok and k_copy_rows(np.ascontiguousarray(arrays[e][1][i0:i1]), X,
                                            int(starts[k]))
                else:
                    X[:, starts[k]:starts[k + 1]] = np.nan
            if ok:
                return X
        sub = xr.Dataset({e: xr.DataArray(a[i0:i1], dims=("_row", dim), coords=c)
                          for e, (dim, a, c) in arrays.items()})
        return dataset_to_matrix(sub, edges, use=used)[0]

    return rows


def _blank_rows(da: xr.DataArray, keep: np.ndarray, dims: Sequence[str], shape) -> xr.DataArray:
    """``da`` with NaN in the pixels (over ``dims``) where ``keep`` is False:
    ``da.where(keep)``, computed on the numpy array itself (one copy, no
    broadcasting) unless ``da`` is lazy."""
    keep = np.asarray(keep, bool).ravel()
    if keep.all():
        return da
    if not isinstance(da.data, np.ndarray):  # dask-backed: stays lazy
        return da.where(xr.DataArray(keep.reshape(shape), dims=tuple(dims)))
    order = tuple(dims) + tuple(d for d in da.dims if d not in dims)
    t = da.transpose(*order)
    v = t.values
    out = v.copy() if v.dtype.kind == "f" else v.astype(float)
    out.reshape(keep.size, -1)[~keep] = np.nan
    return t.copy(data=out).transpose(*da.dims)


def _detection(ds: xr.Dataset, edges: Sequence[str], dims: Sequence[str]) -> dict:
    """Edge -> bool (n_rows,): the edge's jump stands above its noise, for the
    edges of ``edges`` whose jump and jump std ``ds`` carries."""
    out = {}
    for e in edges:
        j, s = ds.get(f"jump_{e}"), ds.get(f"jump_{e}_std")
        if j is None or s is None or set(j.dims) != set(dims):
            continue
        jv = np.asarray(j.transpose(*dims).values, float).ravel()
        sv = np.asarray(s.transpose(*dims).values, float).ravel()
        with np.errstate(invalid="ignore"):
            out[e] = np.isfinite(jv) & np.isfinite(sv) & (jv > DETECTION_Z * sv)
    return out


def _n_complete(da: xr.DataArray) -> int:
    v = np.asarray(da.values, dtype=float)
    return int(np.all(np.isfinite(v.reshape(-1, v.shape[-1])), axis=1).sum())


def target_task(target: str) -> str:
    """``"classification"`` or ``"regression"``: the task of ``target``."""
    return "classification" if target in CLASSIFICATION_TARGETS else "regression"


def charge_balance(out: Mapping[str, np.ndarray], ds: xr.Dataset, dims: Sequence[str]
                   ) -> dict:
    """Per-pixel charge balance of the predicted composition and oxidation states.

    In Li_x TM O_y the charges balance when ``x + sum_i f_i v_i = 2 y``, with
    ``f_i`` the TM fractions, ``v_i`` their oxidation states, ``x`` Li per TM
    (``li_content``, Li per Li-layer site, equals Li per TM in the layered
    structure) and ``y`` O per TM, measured by the edge jumps
    (``1 / sum_i amount_i`` of :func:`mmspec_widgets.quantify.quantify`).  The
    residual ``x + sum_i f_i v_i - 2 y`` (elementary charges per TM) is 0 for a
    consistent answer; a residual many std away says the pixel's composition,
    states and O content do not describe one neutral oxide (a wrong state, an
    O count off, or a structure outside the layered description, e.g. Li in
    the TM layer).  A TM whose fraction is 0 counts 0 whatever its state.

    Parameters
    ----------
    out : mapping
        Flat per-pixel predictions (``li_content``, ``<el>_fraction``,
        ``<el>_oxidation`` and their ``_std``).
    ds : xarray.Dataset
        The input, with ``amount_<edge>`` and ``amount_<edge>_std`` of the three
        TM L2,3 edges.
    dims : sequence of str
        Leading dims of ``ds``, in the order of the rows of ``out``.

    Returns
    -------
    dict
        ``{"charge_balance": (values, attrs), "charge_balance_std": (...)}``,
        NaN where a term is unknown; empty when ``ds`` has no TM amounts.
    """
    if not all(f"amount_{e}" in ds for e in TM_EDGES) or "li_content" not in out:
        return {}
    A = amount_matrix(ds, TM_EDGES, dims)
    As = _std_matrix(ds, TM_EDGES, dims)
    tot = A.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        o_per_tm = np.where(tot > 0, 1.0 / tot, np.nan)
        o_std = o_per_tm ** 2 * np.sqrt(np.nansum(As ** 2, axis=1))
    val = np.asarray(out["li_content"], float) - 2.0 * o_per_tm
    var = np.asarray(out["li_content_std"], float) ** 2 + (2.0 * o_std) ** 2
    for e in TM_EDGES:
        el = get_edge(e).element.lower()
        f, fs = out.get(f"{el}_fraction"), out.get(f"{el}_fraction_std")
        v, vs = out.get(f"{el}_oxidation"), out.get(f"{el}_oxidation_std")
        if f is None or v is None:
            return {}
        absent = np.asarray(f) == 0
        term = np.where(absent, 0.0, f * v)
        tvar = np.where(absent, 0.0, (v * fs) ** 2 + (f * vs) ** 2)
        val = val + term
        var = var + tvar
    attrs = {"long_name": "charge balance residual: Li + sum(TM fraction x oxidation state) "
                          "- 2 O per TM", "units": "e per TM"}
    return {"charge_balance": (val, attrs),
            "charge_balance_std": (np.sqrt(var), {"long_name": "standard deviation of "
                                                  "charge_balance", "units": "e per TM"})}


def phase_map(out: Mapping[str, np.ndarray]) -> dict:
    """The most probable phase of each pixel, from the phase probabilities.

    The model gives, for each phase other than layered NMC, the probability
    that the region is of that phase (:data:`PHASE_TARGETS`, one classifier
    each); layered NMC takes what they leave, ``max(0, 1 - sum)``. The four are
    normalised and the largest wins.

    Parameters
    ----------
    out : mapping
        Flat per-pixel predictions, with every one of :data:`PHASE_TARGETS`
        (and their ``<target>_std``, for the probability's std).

    Returns
    -------
    dict
        ``{"phase": (codes, attrs), "phase_probability": (values, attrs),
        "phase_probability_std": (values, attrs)}``: ``phase`` is an index into
        :data:`~mmspec_widgets.simulate.labels.PHASES` (int8, CF ``flag_values`` /
        ``flag_meanings``), -1 where a phase probability is NaN (not learnt, or no
        usable edge); the std of the shown phase's probability is that phase's
        own std (layered: the others' in quadrature), over the same normalisation,
        at most 0.5, so a pixel out of distribution shows its wide std here too;
        empty when ``out`` lacks a phase target.
    """
    if not all(t in out for t in PHASE_TARGETS):
        return {}
    p = np.stack([np.asarray(out[t], float) for t in PHASE_TARGETS], axis=1)
    known = np.isfinite(p).all(axis=1)
    p = np.clip(np.where(known[:, None], p, 0.0), 0.0, 1.0)
    full = np.concatenate([np.clip(1.0 - p.sum(axis=1, keepdims=True), 0.0, 1.0), p], axis=1)
    total = np.maximum(full.sum(axis=1, keepdims=True), 1e-12)
    full /= total
    code = np.where(known, np.argmax(full, axis=1), -1).astype(np.int8)
    prob = np.where(known, full.max(axis=1), np.nan)
    res = {
        "phase": (code, {"long_name": "most probable phase of the region", **phase_flags()}),
        "phase_probability": (prob, {"long_name": "probability of the most probable phase "
                                                  "(phase probabilities normalised)",
                                     "units": "probability"}),
    }
    if all(f"{t}_std" in out for t in PHASE_TARGETS):
        s = np.stack([np.asarray(out[f"{t}_std"], float) for t in PHASE_TARGETS], axis=1)
        s_full = np.concatenate([np.sqrt(np.sum(s ** 2, axis=1, keepdims=True)), s], axis=1)
        s_full = np.minimum(s_full / total, 0.5)
        pick = np.take_along_axis(s_full, np.maximum(code, 0)[:, None].astype(np.intp), 1)[:, 0]
        res["phase_probability_std"] = (
            np.where(known, pick, np.nan),
            {"long_name": "standard deviation of phase_probability", "units": "probability"})
    return res


#: a label varies in the training set when at least MIN_VARIED of its labelled
#: samples lie at least this far from its median (classification: when the
#: rarer class holds at least MIN_VARIED of them)
LABEL_STEPS = {"li_content": 0.1, "ni_fraction": 0.05, "mn_fraction": 0.05,
               "co_fraction": 0.05, "ni_oxidation": 0.1, "mn_oxidation": 0.1,
               "co_oxidation": 0.1}
MIN_VARIED = 0.05


def unvaried_reason(target: str, y: np.ndarray) -> str | None:
    """Why the training labels ``y`` of ``target`` do not vary enough to learn it
    (see :data:`LABEL_STEPS`, :data:`MIN_VARIED`); None when they do."""
    y = np.asarray(y, float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return "no labelled samples in the training set"
    if target in CLASSIFICATION_TARGETS:
        pos = int(np.sum(y > 0))
        p = float(np.mean(y > 0))
        if min(p, 1 - p) >= MIN_VARIED:
            return None
        return (f"the training set does not vary it: {pos} of {y.size} labelled samples "
                "positive")
    step = LABEL_STEPS.get(target, 0.0)
    far = np.abs(y - np.median(y)) >= step
    if float(np.mean(far)) >= MIN_VARIED:
        return None
    off = int(far.sum())
    return (f"the training set does not vary it: {off} of {y.size} labelled samples differ "
            f"from {np.median(y):g} by {step:g} or more")


# --------------------------------------------------------------------------- the model

class MultimodalModel(BaseEstimator):
    """Fused multimodal model: spectra of any subset of edges -> local structure.

    Parameters
    ----------
    edges : sequence of str
        Edges the model is trained on (a subset of the edge table).
    targets : sequence of str
        Targets; regression for amounts and oxidation states, probability of
        ``count > 0`` for ``o_vacancy`` and ``antisite``.
    kinds : sequence of str
        Featurizers applied to every edge (see ``features.FEATURIZERS``).
    settings : dict, optional
        Featurizer parameters, e.g. ``{"n_points": 40, "n_windows": 6}``.
    fusion : {"early", "late", "hybrid"}
        Joined features, per-edge models stacked, or both side by side (see
        module docstring).
    estimator : {"hgb", "rf", "xgb"}
        Tree ensemble used throughout.
    params : dict, optional
        Hyperparameters: either one dict for all targets, or
        ``{target: dict}`` (e.g. found by :func:`~mmspec_widgets.learn.train.tune`).
    edge_params : dict, optional
        Late and hybrid fusion: hyperparameters of the per-edge models (default: small
        fixed boosting models, ``_EDGE_MODEL_PARAMS``).
    n_folds : int
        Grouped cross-validation folds.
    dropout_copies : int
        Extra copies of the training rows with random edge subsets hidden.
    augment_copies : int
        Extra copies of the training spectra perturbed by
        :func:`~mmspec_widgets.learn.features.augment_spectra`.
    augment : dict, optional
        Arguments for the augmentation (``shift`` eV, ``broadening`` eV,
        ``noise``, ``counts``); default :data:`DEFAULT_AUGMENT`: shifts and
        broadening up to 0.5 eV and a noise level drawn per spectrum between
        0.1 % and 10 % of its maximum, the range from clean simulations to the
        single pixels of an EELS spectrum image (with the ``"noise"`` featurizer
        the model, and its uncertainty, can tell them apart).
    ood_quantile : float
        Training quantile of the OOD threshold.
    ood_noise : (float, float) or None
        Noise range (relative to each spectrum's maximum, log-uniform) of the
        noisy copies of the training spectra from which the OOD thresholds are
        learnt as a function of each spectrum's own noise (default
        :data:`OOD_NOISE`), so that noisy pixels of a known chemistry are not
        flagged for their noise while clean spectra are held to clean ones.
        None: thresholds from the clean spectra only.
    use_amounts : bool
        Read the relative amounts ``amount_<edge>`` (atoms per O atom) of the
        L2,3 edges when the training set has them and O K is among the edges:
        in EELS the jump of an edge counts its atoms, so with O K they give the
        local composition (see :mod:`mmspec_widgets.quantify`).  At prediction
        an amount is used only where its edge and O K are both given.
    amount_noise : float
        Relative (log-normal) noise on the amounts of the augmented copies,
        standing for k-factor and counting errors of single pixels (default
        0.3; pixel-to-pixel scatter of the jump ratios to O K in the real NMC
        SI: Mn L2,3 7 %, Co L2,3 54 %, Ni L2,3 134 %, composition variation
        included).
    specialist_baseline : bool
        Late and hybrid fusion: the stage-2 trees of a regression target learn
        the correction to the precision-weighted mean of the per-edge
        predictions of the edges present (weights 1 / out-of-fold MSE of each
        edge's model), where no physics baseline applies; a strong single-edge
        specialist (Ni L2,3 for Ni oxidation) then carries through the fusion
        instead of being re-learnt, coarsely, by trees.
    resolution : float or None
        Energy resolution (Gaussian FWHM, eV) of the measurements the model is
        for: the training spectra of the EELS / soft-XAS edges are broadened
        from the set's resolution (``fwhm_eV`` in its attrs, 0.8 eV) to this
        one before featurising; None: the set's own. A resolution finer than the
        set's is refused (spectra cannot be sharpened). The data's resolution
        (``resolution_fwhm_eV`` that :func:`~mmspec_widgets.calibrate.calibrate`
        records from the zero-loss peak) is compared at prediction.
    n_jobs : int or None
        Threads for the tree ensembles (OpenMP/BLAS limit while fitting and
        predicting); 1 by default, which is fastest on small shared machines.
        None: no limit.
    random_state : int

    Attributes
    ----------
    featurizer_ : FusedFeaturizer
    models_ : dict
        Target -> list of estimators (stage 2 for late fusion): for regression
        one model fitted on all training rows; for classification the grouped-CV
        fold models, whose mean is the probability; its std is that of the 0/1
        outcome, sqrt(p (1 - p)), with the spread of the fold models added.
    amount_edges_ : list of str
        L2,3 edges whose relative amounts the model reads (empty: none).
    li_amount_ : bool
        Whether the model reads the Li amount (Li K with O K).
    edge_models_ : dict
        Late and hybrid fusion: ``"<edge>/<target>"`` -> per-edge estimator.
    correction_scale_ : dict
        Regression target -> factor (0 - 1) applied to the trees' correction
        where a baseline applies, chosen on the out-of-fold predictions (0: the
        baseline alone predicts best).
    edge_weights_ : ndarray
        Late and hybrid fusion: (edges, targets) 1 / out-of-fold MSE of each
        per-edge regression model (0: no model, or a classification target).
    design_columns_ : list of ndarray
        Per edge, the stage-2 input columns hidden when the edge is absent.
    sigma_models_, calibration_ : dict
        Regression targets: residual model and ``(c1, q90, floor)``: std =
        ``max(c1 * residual model, floor)``, 90 % half-width = ``q90 * std``.
    ood_ : OODDetector
    cv_report_ : dict
        Out-of-fold scores measured during fit (rows with all available edges,
        and all rows including edge-dropout copies).
    metadata_ : dict
        Provenance (training data hash, sizes, package versions, time).
    """

    # read by bundles saved before these parameters existed (they read no amounts)
    use_amounts = False
    amount_noise = 0.05
    amount_edges_: list = []
    li_amount_ = False
    specialist_baseline = False
    resolution = None
    resolution_fwhm_eV_: dict = {}
    ood_noise = None  # bundles from before noise-aware OOD thresholds
    not_learnt_: dict = {}

    def __init__(self, edges: Sequence[str] = EDGE_ORDER, targets: Sequence[str] = TARGETS,
                 kinds: Sequence[str] = DEFAULT_KINDS, settings: dict | None = None,
                 fusion: str = "early", estimator: str = "hgb", params: dict | None = None,
                 edge_params: dict | None = None,
                 n_folds: int = 4, dropout_copies: int = 3, augment_copies: int = 1,
                 augment: dict | None = None, ood_quantile: float = 0.99,
                 use_amounts: bool = True, amount_noise: float = 0.3,
                 specialist_baseline: bool = True, resolution: float | None = None,
                 ood_noise: tuple | None = OOD_NOISE,
                 n_jobs: int | None = 1, random_state: int = 0):
        self.edges = edges
        self.targets = targets
        self.kinds = kinds
        self.settings = settings
        self.fusion = fusion
        self.estimator = estimator
        self.params = params
        self.edge_params = edge_params
        self.n_folds = n_folds
        self.dropout_copies = dropout_copies
        self.augment_copies = augment_copies
        self.augment = augment
        self.ood_quantile = ood_quantile
        self.use_amounts = use_amounts
        self.amount_noise = amount_noise
        self.specialist_baseline = specialist_baseline
        self.resolution = resolution
        self.ood_noise = ood_noise
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ---------------------------------------------------------------- helpers
    def _params_for(self, target: str) -> dict:
        p = dict(self.params or {})
        if p and all(k in TARGETS for k in p):
            return dict(p.get(target, {}))
        return p

    def _edge_columns(self, feature_edges) -> list[np.ndarray]:
        fe = np.asarray(feature_edges, dtype=object)
        return [np.flatnonzero(fe == e) for e in self.edges_]

    def _present(self, F: np.ndarray) -> np.ndarray:
        return np.stack([np.all(np.isfinite(F[:, c]), axis=1) for c in self.columns_], axis=1)

    def _dropout(self, present: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        """Row indices and edge masks of the original rows plus dropout copies.

        In each copy a row keeps a random non-empty subset of its edges: a single
        edge with probability ``_P_SINGLE`` (single-edge use is common and
        otherwise rare among random subsets), else a subset of uniformly drawn
        size >= 2.
        """
        n, k = present.shape
        idx = [np.arange(n)]
        masks = [present.copy()]
        for _ in range(int(self.dropout_copies)):
            m = np.zeros_like(present)
            for i in range(n):
                avail = np.flatnonzero(present[i])
                if avail.size == 0:
                    continue
                if avail.size == 1 or rng.random() < _P_SINGLE:
                    size = 1
                else:
                    size = rng.integers(2, avail.size + 1)
                m[i, rng.choice(avail, size=size, replace=False)] = True
            idx.append(np.arange(n))
            masks.append(m)
        return np.concatenate(idx), np.concatenate(masks)

    def _design(self, A: np.ndarray, mask: np.ndarray, G: np.ndarray | None = None
                ) -> np.ndarray:
        """Stage-2 design: masked level-1 values, presence indicators, then the
        composition features ``G`` of models that read amounts."""
        cols = getattr(self, "design_columns_", None)
        if cols is None:  # bundles written before hybrid fusion existed
            cols = self.columns_ if self.fusion == "early" else self.pred_columns_
        n, k_a, k_m = A.shape[0], A.shape[1], mask.shape[1]
        k_g = self._n_amount_features()
        D = np.empty((n, k_a + k_m + k_g))  # one allocation, each part written once
        D[:, :k_a] = A
        for j, c in enumerate(cols):  # a block is NaN where its edge is masked
            rows = ~mask[:, j]
            if rows.any():
                D[np.ix_(rows, c)] = np.nan
        D[:, k_a:k_a + k_m] = mask
        if k_g:
            D[:, k_a + k_m:] = G if G is not None else np.nan
        return D

    def _li_column(self) -> int:
        """Column of Li per O among the composition features (after the TM
        shares and TM/O, if any); Li per TM follows it when there are TM shares."""
        k = len(getattr(self, "amount_edges_", []) or [])
        return k + 1 if k else 0

    def augment_params(self) -> dict:
        """The augmentation arguments this model trains with: ``augment``, or
        :data:`DEFAULT_AUGMENT` when it is None."""
        return dict(DEFAULT_AUGMENT if self.augment is None else self.augment)

    def _n_amount_features(self) -> int:
        """Columns of the composition features: TM shares + TM/O, Li/O + Li/TM."""
        li = (2 if self._li_column() else 1) if getattr(self, "li_amount_", False) else 0
        return self._li_column() + li

    def _stage2_input(self, F: np.ndarray, P: np.ndarray | None) -> np.ndarray:
        """Level-1 values seen by the stage-2 models: features, predictions or both."""
        if self.fusion == "early":
            return F
        if self.fusion == "late":
            return P
        return np.concatenate([F, P], axis=1)

    def _amount_features(self, Am: np.ndarray | None, keep: np.ndarray,
                         Li: np.ndarray | None = None, li_keep: np.ndarray | None = None
                         ) -> np.ndarray:
        """Composition features from relative amounts (atoms per O).

        Each L2,3 element's share of their sum (its TM fraction, if the k-factors
        are right) and the sum itself (TM per O: 0.5 in a stoichiometric layered
        oxide, more where O is missing); then Li per O and Li per TM (the Li
        content x of LixMO2).  NaN where ``keep`` / ``li_keep`` is False or an
        amount is unknown.
        """
        k = len(self.amount_edges_)
        n = keep.shape[0]
        G = np.full((n, self._n_amount_features()), np.nan)
        total = np.full(n, np.nan)
        if Am is not None and k:
            Am = np.asarray(Am, dtype=float).reshape(n, k)
            s = Am.sum(axis=1)
            ok = keep & np.all(np.isfinite(Am), axis=1) & (s > 0)
            G[ok, :k] = Am[ok] / s[ok, None]
            G[ok, k] = s[ok]
            total[ok] = s[ok]
        if getattr(self, "li_amount_", False) and Li is not None:
            c = self._li_column()
            Li = np.asarray(Li, dtype=float).reshape(n)
            ok = (li_keep if li_keep is not None else keep) & np.isfinite(Li)
            G[ok, c] = Li[ok]
            if k:
                G[ok, c + 1] = Li[ok] / total[ok]  # NaN where the TM amounts are unknown
        return G

    def _uses_specialists(self) -> bool:
        return self.fusion != "early" and bool(getattr(self, "specialist_baseline", False)) \
            and getattr(self, "edge_weights_", None) is not None

    def _specialists(self, P: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Precision-weighted mean of the per-edge predictions of the kept edges,
        per target (NaN where no kept edge has a weighted model)."""
        nt = len(self.targets_)
        n = P.shape[0]
        S = np.full((n, nt), np.nan)
        for k_t in range(nt):
            w = self.edge_weights_[:, k_t]
            if not np.any(w > 0):
                continue
            V = P[:, k_t::nt]  # (rows, edges): edge j's prediction of target k_t
            W = np.where(kept & np.isfinite(V) & (w > 0), w, 0.0)
            tot = W.sum(axis=1)
            ok = tot > 0
            S[ok, k_t] = (W[ok] * np.nan_to_num(V[ok])).sum(axis=1) / tot[ok]
        return S

    def _baseline(self, G: np.ndarray | None, n: int, S: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Baseline of each target, the trees learn the correction (0 where
        none): a TM fraction is its element's share of the L2,3 amounts and
        the Li content Li per TM wherever the amounts are read; elsewhere, with
        ``S`` (late and hybrid fusion), the weighted per-edge prediction.

        Returns (baseline, where one applies)."""
        if S is None:
            B, has = np.zeros((n, len(self.targets_))), np.zeros((n, len(self.targets_)), bool)
        else:
            B, has = np.nan_to_num(S), np.isfinite(S)
        if G is None:
            return B, has
        if getattr(self, "li_amount_", False) and "li_content" in self.targets_:
            # Li per TM; without the TM amounts, Li per O x 2 O per TM
            c = self._li_column()
            per_o = G[:, c]
            per_tm = G[:, c + 1] if self.amount_edges_ else np.full(n, np.nan)
            k_li = self.targets_.index("li_content")
            B[:, k_li] = np.where(
                np.isfinite(per_tm), per_tm, np.where(np.isfinite(per_o), 2.0 * per_o, B[:, k_li]))
            has[:, k_li] |= np.isfinite(per_tm) | np.isfinite(per_o)
        for k_t, t in enumerate(self.targets_):
            if t.endswith("_fraction"):
                edge = f"{t.split('_')[0].capitalize()}_L23"
                if edge in self.amount_edges_:
                    g = G[:, self.amount_edges_.index(edge)]
                    B[:, k_t] = np.where(np.isfinite(g), g, B[:, k_t])
                    has[:, k_t] |= np.isfinite(g)
        return B, has

    def _add_share_std(self, out: dict, Am: np.ndarray, Sd: np.ndarray) -> None:
        """Add, in quadrature, the counting error of each TM share to the std of
        its fraction, in the pixels whose fraction is read from the amounts."""
        total = Am.sum(axis=1)
        ok = np.all(np.isfinite(Am), axis=1) & np.all(np.isfinite(Sd), axis=1) & (total > 0)
        for i, e in enumerate(self.amount_edges_):
            t = f"{get_edge(e).element.lower()}_fraction"
            if t not in out or f"{t}_std" not in out:
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                # d share_i / d a_j = (delta_ij * total - a_i) / total^2
                d = -Am[:, i:i + 1] / total[:, None] ** 2 * np.ones_like(Am)
                d[:, i] += 1.0 / total
                var = np.sum((d * Sd) ** 2, axis=1)
            rows = ok & np.isfinite(out[t]) & np.isfinite(var)
            out[f"{t}_std"] = out[f"{t}_std"].copy()
            out[f"{t}_std"][rows] = np.sqrt(out[f"{t}_std"][rows] ** 2 + var[rows])

    def amount_inputs(self, ds: xr.Dataset, edges: Sequence[str], dims: Sequence[str]
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The relative amounts of ``ds`` this model reads when given ``edges``.

        Returns
        -------
        (amounts, li_amount)
            :func:`amount_matrix` of :attr:`amount_edges_` when O K and all of
            them are among ``edges`` and in ``ds``, and the Li per O when O K and
            Li K are (models with ``li_amount_``); None otherwise.  Rows in the
            order of ``dims``.
        """
        edges = set(edges)
        amount_edges = list(getattr(self, "amount_edges_", []) or [])
        Am = Li = None
        if amount_edges and {"O_K", *amount_edges} <= edges \
                and all(f"amount_{e}" in ds for e in amount_edges):
            Am = amount_matrix(ds, amount_edges, dims)
        if getattr(self, "li_amount_", False) and {"O_K", "Li_K"} <= edges \
                and "amount_Li_K" in ds:
            Li = amount_matrix(ds, ["Li_K"], dims)[:, 0]
        return Am, Li

    def _amount_keep(self, present: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Rows whose amounts are usable: O K kept and no L2,3 edge the row has hidden."""
        j_o = self.edges_.index("O_K")
        js = [self.edges_.index(e) for e in self.amount_edges_]
        return mask[:, j_o] & np.all(mask[:, js] | ~present[:, js], axis=1)

    def _li_keep(self, mask: np.ndarray) -> np.ndarray:
        """Rows whose Li amount is usable: O K and Li K both kept."""
        return mask[:, self.edges_.index("O_K")] & mask[:, self.edges_.index("Li_K")]

    def _level1(self, F: np.ndarray) -> np.ndarray:
        """Late fusion: per-edge predictions of every target (NaN where the edge is absent)."""
        present = self._present(F)
        P = np.full((F.shape[0], len(self.edges_) * len(self.targets_)), np.nan)
        jobs, where = [], []
        for j, (e, cols) in enumerate(zip(self.edges_, self.columns_, strict=True)):
            rows = present[:, j]
            if not rows.any():
                continue
            for k, t in enumerate(self.targets_):
                est = self.edge_models_.get(f"{e}/{t}")
                if est is not None:
                    jobs.append((est, target_task(t), cols))
                    where.append((rows, j * len(self.targets_) + k))
        for (rows, c), p in zip(where, _predict_many(jobs, F), strict=True):
            P[rows, c] = p[rows]  # all rows were predicted at once; the edge's rows kept
        return self._fill_modelless(P)

    def _fill_modelless(self, P: np.ndarray) -> np.ndarray:
        """Level-1 columns of (edge, target) pairs without a per-edge model (an
        unlabelled target, e.g. phases in a set without them) are 0, not NaN: a
        column NaN in every training row is no input a tree can split on."""
        nt = len(self.targets_)
        for j, e in enumerate(self.edges_):
            for k, t in enumerate(self.targets_):
                if f"{e}/{t}" not in self.edge_models_:
                    P[:, j * nt + k] = 0.0
        return P

    # ---------------------------------------------------------------- fit
    def _threads(self):
        return threadpool_limits(limits=self.n_jobs) if self.n_jobs else nullcontext()

    def fit(self, ds: xr.Dataset, y=None):
        """Train on a simulated training set.

        Parameters
        ----------
        ds : xarray.Dataset
            Dim ``sample``; per-edge spectra; label variables for every target;
            coordinate ``structure_id`` (grouping for CV).  Use only the training
            split (see :func:`mmspec_widgets.learn.train.train_model`).
        y : ignored

        Returns
        -------
        self
        """
        with self._threads():
            return self._fit(ds)

    def _fit(self, ds: xr.Dataset):
        t0 = time.perf_counter()
        if self.fusion not in ("early", "late", "hybrid"):
            raise MMSpecError(f"fusion={self.fusion!r}: expected 'early', 'late' or 'hybrid'")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise MMSpecError(f"unknown targets {unknown}: expected some of {', '.join(TARGETS)}")
        requested = [get_edge(e).name for e in sorted(set(self.edges), key=EDGE_ORDER.index)]
        self.edges_ = [e for e in requested if e in ds and _n_complete(ds[e]) >= _MIN_SPECTRA]
        if not self.edges_:
            raise DataError(f"none of the edges {', '.join(requested)} has {_MIN_SPECTRA} "
                            "complete spectra in the training set")
        self.targets_ = list(self.targets)
        if "structure_id" not in ds.coords and "structure_id" not in ds:
            raise DataError("training set has no 'structure_id' coordinate (needed to group CV)")
        X, _ = dataset_to_matrix(ds, self.edges_)
        Y = target_matrix(ds, self.targets_)
        # relative amounts (atoms per O) of the L2,3 edges: EELS edge intensity
        # ratios to O K, known only where O K and the edge are both measured
        self.amount_edges_ = ([e for e in self.edges_ if f"amount_{e}" in ds
                               and get_edge(e).shell == "L23"]
                              if self.use_amounts and "O_K" in self.edges_ else [])
        if len(self.amount_edges_) < 2:
            self.amount_edges_ = []
        Am = amount_matrix(ds, self.amount_edges_, dims=("sample",)) \
            if self.amount_edges_ else None
        self.li_amount_ = bool(self.use_amounts and "O_K" in self.edges_
                               and "Li_K" in self.edges_ and "amount_Li_K" in ds)
        Li = amount_matrix(ds, ["Li_K"], dims=("sample",))[:, 0] if self.li_amount_ else None
        groups = np.asarray(ds["structure_id"].values).astype(str).ravel()
        if np.unique(groups).size < int(self.n_folds):
            raise DataError(f"training set has {np.unique(groups).size} structures; need at "
                            f"least n_folds={self.n_folds}")
        rng = np.random.default_rng(self.random_state)
        self.grids_ = {e: edge_grid(e) for e in self.edges_}
        X = self._to_resolution(X, ds)

        # spectral augmentation: extra perturbed copies of every spectrum
        Xs, Ys, Gs, As, Ls = [X], [Y], [groups], [Am], [Li]
        blocks = np.cumsum([0] + [self.grids_[e].size for e in self.edges_])
        augment = self.augment_params()
        for _ in range(int(self.augment_copies)):
            Xs.append(self._augmented(X, blocks, rng, augment))
            Ys.append(Y)
            Gs.append(groups)
            if Am is not None:  # k-factor and counting errors: multiplicative noise
                As.append(Am * np.exp(rng.normal(0.0, float(self.amount_noise), Am.shape)))
            if Li is not None:
                Ls.append(Li * np.exp(rng.normal(0.0, float(self.amount_noise), Li.shape)))
        Xall, Yall, Gall = np.concatenate(Xs), np.concatenate(Ys), np.concatenate(Gs)
        Aall = np.concatenate(As) if Am is not None else None
        Lall = np.concatenate(Ls) if Li is not None else None

        self.featurizer_ = FusedFeaturizer(self.edges_, tuple(self.kinds), self.settings).fit(X)
        F = self.featurizer_.transform(Xall)
        self.columns_ = self._edge_columns(self.featurizer_.feature_edges_)
        present = self._present(F)
        # out-of-distribution detection on the CDF of each edge (scale-free, 0..1):
        # described on the clean spectra; thresholds learnt, as a function of
        # each spectrum's noise, from held-out clean and noisy copies
        self.ood_featurizer_ = FusedFeaturizer(self.edges_, ("cdf",), {"n_points": 24}).fit(X)
        Xo, Go = [X], [groups]
        if self.ood_noise is not None:
            for _ in range(OOD_NOISE_COPIES):
                Xo.append(self._augmented(X, blocks, rng,
                                          {**augment, "noise": tuple(self.ood_noise)}))
                Go.append(groups)
        Xo = np.concatenate(Xo)
        self.ood_ = OODDetector(quantile=self.ood_quantile).fit(
            self.ood_featurizer_.transform(Xo), self.ood_featurizer_.feature_edges_,
            groups=np.concatenate(Go),
            noise=self._block_noise(Xo) if self.ood_noise is not None else None,
            fit_rows=np.arange(Xo.shape[0]) < X.shape[0])

        folds = list(GroupKFold(n_splits=int(self.n_folds)).split(F, groups=Gall))
        fold_of = np.empty(F.shape[0], dtype=int)
        for k, (_, test) in enumerate(folds):
            fold_of[test] = k

        P = None
        nt = len(self.targets_)
        pred_columns = [np.arange(j * nt, (j + 1) * nt) for j in range(len(self.edges_))]
        if self.fusion in ("late", "hybrid"):
            P = self._fit_level1(F, Yall, present, folds)  # out-of-fold per-edge predictions
        if self.fusion == "early":
            self.design_columns_ = self.columns_
        elif self.fusion == "late":
            self.design_columns_ = pred_columns
        else:
            self.design_columns_ = [np.concatenate([c, F.shape[1] + p])
                                    for c, p in zip(self.columns_, pred_columns, strict=True)]
        A = self._stage2_input(F, P)
        idx, mask = self._dropout(present, rng)
        G = None
        if self._n_amount_features():
            G = self._amount_features(
                None if Aall is None else Aall[idx],
                self._amount_keep(present[idx], mask) if self.amount_edges_
                else np.zeros(len(idx), bool),
                None if Lall is None else Lall[idx],
                self._li_keep(mask) if self.li_amount_ else None)
        D = self._design(A[idx], mask, G)
        S = self._specialists(P[idx], mask) if self._uses_specialists() else None
        B, has_base = self._baseline(G, D.shape[0], S)
        self.correction_scale_ = {}
        fold_rep = fold_of[idx]

        self.models_, self.sigma_models_, self.calibration_ = {}, {}, {}
        self.cv_report_ = {}
        self.not_learnt_ = {}
        untrained = []
        for k_t, t in enumerate(self.targets_):
            task = target_task(t)
            yt = Yall[idx, k_t] - B[:, k_t]  # trees learn the correction to the baseline
            ok = np.isfinite(yt)
            n_labelled = int(np.isfinite(Y[:, k_t]).sum())
            why = None
            if t in PHASE_TARGETS and t not in ds:
                why = "the training set records no structure phases"
            elif n_labelled < 2 * int(self.n_folds):
                why = f"{n_labelled} labelled samples in the training set"
            else:
                why = unvaried_reason(t, Y[:, k_t])
            if why is not None:
                # too few labelled samples (e.g. no Mn anywhere), or a label the set
                # does not vary (e.g. Mn4+ in nearly every region): a model could only
                # return the set's value whatever the spectra, so it is NaN instead
                self.models_[t] = []
                self.cv_report_[t] = {"all_rows": None, "all_edges": None}
                self.not_learnt_[t] = why
                untrained.append(t)
                continue
            oof = np.full(D.shape[0], np.nan)
            models = []
            for k in range(len(folds)):
                tr = ok & (fold_rep != k)
                te = ok & (fold_rep == k)
                if task == "classification" and np.unique(yt[tr]).size < 2:
                    continue  # this fold has only one class: no model from it
                est = make_estimator(self.estimator, task, self._params_for(t),
                                     self.random_state + k).fit(D[tr], yt[tr])
                models.append(est)
                if te.any():
                    oof[te] = predict_estimator(est, D[te], task)
            if not models:
                raise DataError(f"target {t!r}: every training fold has a single class; "
                                "need samples both with and without")
            if task == "regression":
                # the mean comes from one model on all rows; the folds served for
                # the out-of-fold residuals behind the uncertainty model
                models = [make_estimator(self.estimator, task, self._params_for(t),
                                         self.random_state).fit(D[ok], yt[ok])]
            self.models_[t] = models
            if task == "regression":
                # the trees' correction to a baseline, shrunk by the factor that
                # minimises the out-of-fold error where a baseline applies (0: the
                # baseline alone does best; 1: the correction as learnt)
                hb = ok & has_base[:, k_t] & np.isfinite(oof)
                den = float(np.sum(oof[hb] ** 2))
                if hb.sum() >= 10 and den > 0:
                    a = float(np.clip(np.sum(oof[hb] * yt[hb]) / den, 0.0, 1.0))
                    self.correction_scale_[t] = a
                    oof = np.where(has_base[:, k_t], a * oof, oof)
            full = np.zeros(D.shape[0], bool)
            full[: present.shape[0]] = True  # rows with all available edges
            self.cv_report_[t] = self._cv_scores(t, yt + B[:, k_t], oof + B[:, k_t], ok,
                                                 full & ok)
            if task == "regression":
                # residual model: |out-of-fold residual| from the same design; its
                # scale is calibrated on residual predictions that are themselves
                # out of fold (cross-fitted), so it is not fooled by its own fit
                r = np.abs(yt - oof)
                okr = ok & np.isfinite(r)
                sig_params = {"max_iter": 100, "learning_rate": 0.05, "max_leaf_nodes": 15,
                              "min_samples_leaf": max(5, int(okr.sum()) // 40)}
                floor = 1e-3 * max(float(np.nanstd(yt)), 1e-2 * float(np.nanmean(np.abs(yt))),
                                   1e-6)
                s_cv = np.full(D.shape[0], np.nan)
                for k in range(len(folds)):
                    tr = okr & (fold_rep != k)
                    te = okr & (fold_rep == k)
                    if tr.sum() >= 10 and te.any():
                        s_cv[te] = make_estimator("hgb", "regression", sig_params,
                                                  self.random_state).fit(D[tr], r[tr]).predict(D[te])
                use = okr & np.isfinite(s_cv)
                # one scale per number of edges a row is read from
                c1, by_edges, q90 = calibrate_by_edge_count(
                    r[use], np.maximum(s_cv[use], floor), mask.sum(axis=1)[use])
                self.sigma_models_[t] = make_estimator("hgb", "regression", sig_params,
                                                       self.random_state).fit(D[okr], r[okr])
                self.calibration_[t] = (c1, q90, floor, by_edges)
        # prediction-only compact trees: small bundles, identical predictions
        self.models_ = {t: [compact(m) for m in ms] for t, ms in self.models_.items()}
        self.sigma_models_ = {t: compact(m) for t, m in self.sigma_models_.items()}
        if self.fusion != "early":
            self.edge_models_ = {k: compact(m) for k, m in self.edge_models_.items()}
        self.metadata_ = {
            "n_samples": int(X.shape[0]),
            "n_structures": int(np.unique(groups).size),
            "n_training_rows": int(D.shape[0]),
            "n_features": int(F.shape[1]),
            "fit_seconds": round(time.perf_counter() - t0, 1),
            "edges_requested": requested,
            "untrained_targets": untrained,
            "training_data_sha256": training_data_hash(ds, self.edges_, self.targets_),
        }
        return self

    def _fit_level1(self, F, Yall, present, folds) -> np.ndarray:
        """Late fusion level 1: per-edge models; returns out-of-fold predictions."""
        nt = len(self.targets_)
        oof = np.full((F.shape[0], len(self.edges_) * nt), np.nan)
        self.edge_models_ = {}
        self.edge_weights_ = np.zeros((len(self.edges_), nt))
        for j, (e, cols) in enumerate(zip(self.edges_, self.columns_, strict=True)):
            rows = present[:, j]
            for k_t, t in enumerate(self.targets_):
                task = target_task(t)
                y = Yall[:, k_t]
                ok = rows & np.isfinite(y)
                if ok.sum() < 10 or (task == "classification" and np.unique(y[ok]).size < 2):
                    continue
                params = dict(self.edge_params if self.edge_params is not None else
                              _EDGE_MODEL_PARAMS if self.estimator == "hgb" else {})
                for k, (tr, te) in enumerate(folds):
                    tr = tr[ok[tr]]
                    te = te[ok[te]]
                    if task == "classification" and np.unique(y[tr]).size < 2:
                        continue
                    est = make_estimator(self.estimator, task, params, self.random_state + k)
                    est.fit(F[tr][:, cols], y[tr])
                    if te.size:
                        oof[te, j * nt + k_t] = predict_estimator(est, F[te][:, cols], task)
                self.edge_models_[f"{e}/{t}"] = make_estimator(
                    self.estimator, task, params, self.random_state).fit(F[ok][:, cols], y[ok])
                r = oof[ok, j * nt + k_t] - y[ok]
                if task == "regression" and np.isfinite(r).sum() >= 5:
                    # floor: a perfect specialist must not take an infinite weight
                    mse = max(float(np.nanmean(r ** 2)), 1e-6 * float(np.nanvar(y[ok])) + 1e-12)
                    self.edge_weights_[j, k_t] = 1.0 / mse
        return self._fill_modelless(oof)

    @staticmethod
    def _cv_scores(t, y, oof, ok, full) -> dict:
        from sklearn.metrics import r2_score, roc_auc_score
        out = {}
        for name, m in (("all_rows", ok & np.isfinite(oof)), ("all_edges", full & np.isfinite(oof))):
            if m.sum() < 3:
                out[name] = None
            elif np.ptp(y[m]) == 0:
                out[name] = None  # constant labels: nothing to score
            elif t in CLASSIFICATION_TARGETS:
                out[name] = float(roc_auc_score(y[m], oof[m])) if np.unique(y[m]).size > 1 \
                    else None
            else:
                out[name] = float(r2_score(y[m], oof[m]))
        return out

    # ---------------------------------------------------------------- predict
    def predict_arrays(self, X: np.ndarray, drop_ood_edges: float | None = None,
                       amounts: np.ndarray | None = None, li_amount: np.ndarray | None = None
                       ) -> dict[str, np.ndarray]:
        """Predictions for joined spectra rows (see :func:`dataset_to_matrix`).

        Parameters
        ----------
        X : ndarray, shape (n_rows, sum of the model's grid sizes)
            NaN blocks for absent edges.
        drop_ood_edges : float, optional
            Ignore, row by row, an edge whose OOD distance exceeds this multiple
            of its threshold (e.g. a weak edge that is only noise): the row is
            predicted from its other edges.  None: use every edge given.
        amounts : ndarray, shape (n_rows, len(amount_edges_)), optional
            Relative amounts, atoms per O atom (see :func:`amount_matrix` and
            :func:`mmspec_widgets.quantify.quantify`), of every L2,3 edge in
            ``amount_edges_`` (0 for an element measured absent); used in rows
            where O K is given and all are finite.  None: shapes only.
        li_amount : ndarray, shape (n_rows,), optional
            Li atoms per O atom (``amount_Li_K``), used where O K and Li K are
            given (models with ``li_amount_``).

        Returns
        -------
        dict
            ``target``, ``target_std`` (target units), ``ood`` (bool),
            ``ood_score`` (ratio to threshold; computed on all edges given) and
            ``n_edges`` (edges used), each shape (n_rows,).
        """
        check_is_fitted(self, "models_")
        with self._threads():
            return self._predict_arrays(np.asarray(X, dtype=float), drop_ood_edges, amounts,
                                        li_amount)

    def _augmented(self, X: np.ndarray, blocks: np.ndarray, rng, params: dict) -> np.ndarray:
        """A perturbed copy of the joined spectra ``X``, edge block by edge block
        (:func:`~mmspec_widgets.learn.features.augment_spectra` with ``params``)."""
        Xa = X.copy()
        for j, e in enumerate(self.edges_):
            sl = slice(blocks[j], blocks[j + 1])
            Xa[:, sl] = augment_spectra(X[:, sl], self.grids_[e], rng=rng, **params)
        return Xa

    def _block_noise(self, X: np.ndarray) -> np.ndarray:
        """Relative noise of each row's spectrum of each OOD edge, (rows, edges)."""
        blocks = self.featurizer_.blocks_
        return np.stack([relative_noise(X[:, blocks[e]]) for e in self.ood_edges], axis=1)

    def _row_noise(self, X: np.ndarray, F: np.ndarray) -> np.ndarray:
        """:meth:`_block_noise`, read from the featurizer's own ``<edge>_log_noise``
        columns where it has them (the same estimate: the noise relative to the
        row's maximum does not change when the row is scaled to unit area)."""
        names = [str(n) for n in getattr(self.featurizer_, "feature_names_", [])]
        cols = [names.index(f"{e}_log_noise") if f"{e}_log_noise" in names else None
                for e in self.ood_edges]
        from .features import NoiseFeaturizer

        def scaled_only(e):  # the noise featurizer saw the row only scaled
            return all(t.normalize in ("area", "max") and t.baseline == "none"
                       for t in self.featurizer_.transformers_.get(e, [])
                       if isinstance(t, NoiseFeaturizer))

        if any(c is None for c in cols) or not all(scaled_only(e) for e in self.ood_edges):
            return self._block_noise(X)
        return 10.0 ** F[:, cols]

    @property
    def ood_edges(self) -> list:
        """Edges of the OOD detector, in its order (those of its featurizer)."""
        return list(dict.fromkeys(self.ood_featurizer_.feature_edges_))

    def edge_ood_ratios(self, X: np.ndarray) -> np.ndarray:
        """Each edge's OOD distance over its threshold, as :meth:`predict` judges it.

        Parameters
        ----------
        X : numpy.ndarray
            Rows of joined edge spectra on the model's grids (the layout of
            :func:`dataset_to_matrix` with :attr:`edges_`).

        Returns
        -------
        numpy.ndarray
            ``(rows, len(ood_edges))``: > 1 where that edge is unlike the
            training spectra; NaN where the row lacks the edge; inf where it is
            noisier than any spectrum the thresholds were learnt on.
        """
        check_is_fitted(self, "ood_")
        X = np.asarray(X, dtype=float)
        F, Fo = fused_transform([self.featurizer_, self.ood_featurizer_], X)
        return self._ood(X, F, Fo)[1]

    def _ood(self, X: np.ndarray, F: np.ndarray, Fo: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """OOD score and per-edge ratios of rows ``X`` with features ``F``, ``Fo``."""
        noise = self._row_noise(X, F) if getattr(self.ood_, "noise_law_", None) else None
        score, ratios = self.ood_.score_and_ratios(Fo, noise)
        if noise is not None and self.ood_noise is not None:
            # noisier than any spectrum the thresholds were learnt on: mostly
            # noise, cannot be judged (ratio inf: flagged, and dropped by predict)
            too_noisy = noise > float(self.ood_noise[1])
            if too_noisy.any():
                ratios = np.where(too_noisy, np.inf, ratios)
                score = np.where(too_noisy.any(axis=1), np.inf, score)
        return score, ratios

    def _predict_arrays(self, X: np.ndarray, drop_ood_edges: float | None,
                        amounts: np.ndarray | None = None,
                        li_amount: np.ndarray | None = None,
                        with_used: bool = False) -> dict[str, np.ndarray]:
        # both featurizers at once: shared normalisation, shared CDF (same numbers)
        with stage("features"):
            F, Fo = fused_transform([self.featurizer_, self.ood_featurizer_], X)
        with stage("ood"):  # distances computed once for the score and the ratios
            score, ratios = self._ood(X, F, Fo)
        if drop_ood_edges is not None:
            for j, e in enumerate(self.ood_.edges_):
                bad = ratios[:, j] > float(drop_ood_edges)
                if bad.any():
                    F[np.ix_(bad, self.columns_[self.edges_.index(e)])] = np.nan
        present = self._present(F)
        P = self._level1(F) if self.fusion != "early" else None
        A = self._stage2_input(F, P)
        G = None
        if self._n_amount_features() and (amounts is not None or li_amount is not None):
            has_o = present[:, self.edges_.index("O_K")]
            G = self._amount_features(
                amounts if getattr(self, "amount_edges_", None) else None, has_o, li_amount,
                self._li_keep(present) if getattr(self, "li_amount_", False) else None)
        D = self._design(A, present, G)
        S = self._specialists(P, present) if self._uses_specialists() else None
        B, has_base = self._baseline(G, D.shape[0], S)
        scale = getattr(self, "correction_scale_", None) or {}
        usable = present.any(axis=1)
        n_edges = present.sum(axis=1)
        edge_group = edge_count_group(n_edges)  # which std scale each row takes
        # every tree model of every target in one pass over D
        jobs = [(m, target_task(t), None) for t in self.targets_ for m in self.models_[t]]
        jobs += [(self.sigma_models_[t], "regression", None) for t in self.targets_
                 if self.models_[t] and target_task(t) == "regression"]
        done = {id(job[0]): p for job, p in zip(jobs, _predict_many(jobs, D), strict=True)}
        out: dict[str, np.ndarray] = {}
        for t in self.targets_:
            task = target_task(t)
            if not self.models_[t]:  # untrained target
                out[t] = np.full(X.shape[0], np.nan)
                out[f"{t}_std"] = np.full(X.shape[0], np.nan)
                continue
            preds = np.stack([done[id(m)] for m in self.models_[t]])
            k_t = self.targets_.index(t)
            corr = preds.mean(axis=0)
            if scale.get(t, 1.0) != 1.0:
                corr = np.where(has_base[:, k_t], scale[t] * corr, corr)
            mean = corr + B[:, k_t]
            if task == "regression":
                cal = self.calibration_[t]
                c1, floor = cal[0], cal[2]
                if len(cal) > 3:  # a scale per number of edges the row is read from
                    c1 = np.asarray(cal[3])[edge_group]
                std = np.maximum(c1 * done[id(self.sigma_models_[t])], floor)
            else:  # the 0/1 outcome's std at probability p, with the folds' spread
                std = np.sqrt(np.clip(mean * (1 - mean), 0.0, None) + preds.var(axis=0))
            # beyond the training distribution the calibrated std no longer holds:
            # it grows with the OOD score (distance / threshold)
            std = std * np.where(np.isfinite(score), np.maximum(score, 1.0), 1.0)
            if task == "classification":  # no 0/1 quantity has a std above 0.5
                std = np.minimum(std, 0.5)
            mean[~usable] = np.nan
            std[~usable] = np.nan
            out[t] = mean
            out[f"{t}_std"] = std
        out["ood_score"] = score
        out["ood"] = (score > 1) | ~usable
        out["n_edges"] = n_edges
        if with_used:  # edges each row was predicted from, (rows, model edges)
            out["_used"] = present
        return out

    def _to_resolution(self, X: np.ndarray, ds: xr.Dataset) -> np.ndarray:
        """Broaden the EELS / soft-XAS blocks of ``X`` from the set's resolution
        to :attr:`resolution`; records ``resolution_fwhm_eV_`` per edge."""
        fwhm = ds.attrs.get("fwhm_eV", {})
        if isinstance(fwhm, str):
            fwhm = json.loads(fwhm)
        have = {e: float(fwhm.get(e, np.nan)) for e in self.edges_}
        self.resolution_fwhm_eV_ = dict(have)
        if self.resolution is None:
            return X
        r = float(self.resolution)
        if not (np.isfinite(r) and 0 < r <= 10):
            raise MMSpecError(f"resolution={self.resolution!r}: expected a FWHM in eV, 0 - 10")
        X = X.copy()
        start = 0
        for e in self.edges_:
            g = edge_grid(e)
            sl = slice(start, start + g.size)
            start += g.size
            if "hard-XAS" in get_edge(e).modality:
                continue  # K edges of hard XAS keep their own resolution
            f0 = have[e]
            if not np.isfinite(f0):
                raise DataError(f"training set: no fwhm_eV for {e} in its attrs; cannot "
                                f"broaden it to resolution={r}")
            if r < f0 - 1e-6:
                raise MMSpecError(f"resolution={r} eV is finer than the training set's {f0} eV "
                                  f"for {e}; spectra cannot be sharpened")
            extra = float(np.sqrt(max(r * r - f0 * f0, 0.0)))
            X[:, sl] = gaussian_broaden(X[:, sl], float(g[1] - g[0]), extra)
            self.resolution_fwhm_eV_[e] = r
        return X

    def resolution_check(self, ds: xr.Dataset, used: Sequence[str],
                         tolerance: float = 0.5) -> str | None:
        """A note when the data's recorded resolution (``resolution_fwhm_eV``
        in ``ds.attrs``) differs from the model's by more than ``tolerance``
        eV on an EELS / soft-XAS edge; None when they agree or either is unknown."""
        r = ds.attrs.get("resolution_fwhm_eV")
        try:
            r = float(r)
        except (TypeError, ValueError):
            return None
        own = getattr(self, "resolution_fwhm_eV_", {}) or {}
        if not own:  # bundles from before resolutions were recorded: the project's set
            from ..simulate.dataset import FWHM

            own = {e: float(FWHM[e]) for e in used if e in FWHM}
        off = {e: own[e] for e in used if e in own and np.isfinite(own[e])
               and "hard-XAS" not in get_edge(e).modality and abs(own[e] - r) > tolerance}
        if not off:
            return None
        return (f"the data's energy resolution ({r:.2f} eV, FWHM of its zero-loss peak) "
                f"differs from the model's ({', '.join(f'{e} {v:.2f} eV' for e, v in off.items())}"
                "): spectra of one chemistry look different at the two resolutions; train "
                f"with resolution={r:.1f} (mmspec train --resolution {r:.1f}) for these data")

    def predict(self, ds: xr.Dataset, edges: Sequence[str] | None = None, *,
                drop_ood_edges: float | None = DROP_OOD_EDGES,
                refuse_undetected: bool = True,
                calibration_error: bool = True) -> xr.Dataset:
        """Maps of every target, its standard deviation and an OOD flag.

        Parameters
        ----------
        ds : xarray.Dataset
            Per-edge spectra as returned by
            :func:`mmspec_widgets.extract.extract_edges` (or the training set):
            variables named by edge, energy dims ``energy_<edge>`` (eV), any
            leading dims (``("y", "x")``, ``("scan",)``, ``("sample",)`` or none).
        edges : sequence of str, optional
            Use only these edges (each must be in ``ds`` and in the model);
            default: every model edge found in ``ds``.
        drop_ood_edges : float or None
            Per pixel, ignore an edge whose OOD distance is more than this
            multiple of its threshold (a spectrum far from anything simulated,
            typically a weak edge that is only noise) and predict from the
            other edges; such pixels are flagged ``ood``.  None: use all edges.
        refuse_undetected : bool
            Where ``ds`` carries an edge's jump and its std (``jump_<edge>``,
            ``jump_<edge>_std`` of :func:`~mmspec_widgets.extract.extract_edges`),
            the edge is used only in pixels where it is detected (jump above
            :data:`mmspec_widgets.reasons.DETECTION_Z` std): a spectrum that is
            only noise informs nothing.
        calibration_error : bool
            Where ``ds`` carries the energy calibration's error
            (``calibration_covariance`` of
            :func:`mmspec_widgets.calibrate.calibrate`), add to every std the
            change of the prediction when the axis is off by one std of that
            error (each principal direction, in quadrature): two more passes
            of the model over every pixel of a small image, over every
            :data:`CALIBRATION_STRIDE`-th pixel of a large one (block by
            block, the RMS change added to each pixel of the block).

        Returns
        -------
        xarray.Dataset
            Same leading dims and coordinates as ``ds``; variables for each
            target, ``<target>_std`` (1 standard deviation, calibrated on
            held-out data), ``ood`` (bool), ``ood_score`` and ``n_edges``
            (edges used per pixel), ``used_<edge>`` (bool, per edge given),
            ``edges_used`` (bit mask of the model's edges, CF flag attributes),
            ``coverage_<edge>`` for each hard-XAS K edge given (fraction of its
            grid the scan covers; a partly covered edge widens the std of what
            it informs by the measured rule of
            :mod:`~mmspec_widgets.learn.coverage`, recorded in the history)
            and ``nan_reason`` (bit flags of :data:`mmspec_widgets.reasons.REASONS`:
            why values are NaN; 0 where none is); attrs ``edges``, ``edge_set``,
            ``model_id``, ``q90`` (90 % interval half-widths in units of std) and
            ``history``.

            A target tied to an element (its oxidation state) is NaN where no
            edge of that element is used; the TM fractions are NaN unless every
            TM (Mn, Co, Ni) is measured, and come from the edge jumps
            (``tm_fraction_<edge>`` of :func:`mmspec_widgets.quantify.quantify`)
            when ``ds`` has them, else from the model projected on the simplex
            (they sum to 1 either way); ``li_content`` is NaN where Li K is given
            but not detected (Li not measurable there).
        """
        check_is_fitted(self, "models_")
        layout = _layout(ds, self.edges_, edges)
        dims, shape, used = layout["dims"], layout["shape"], layout["edges"]
        n = int(np.prod(shape)) if shape else 1
        amount_edges = getattr(self, "amount_edges_", [])
        Am, Li = self.amount_inputs(ds, used, dims)
        detected = _detection(ds, used, dims) if refuse_undetected else {}
        # an undetected edge is only noise: not read (its rows are NaN in each block's
        # matrix; a partly covered K edge is blanked before its coverage is measured)
        partial_k = partial_edges(used)
        if any(e in partial_k for e in detected):
            ds = ds.copy()
            for e in partial_k:
                if e in detected:
                    ds[e] = _blank_rows(ds[e], detected[e], dims, shape)
        blank = [(self.featurizer_.blocks_[e], ~d) for e, d in detected.items()
                 if e not in partial_k and not d.all()]

        def unread(X, i0):  # NaN where an edge is not detected, rows i0 ...
            for sl, miss in blank:
                m = miss[i0:i0 + X.shape[0]]
                if m.any():
                    X[m, sl] = np.nan
            return X

        cal_shifts = self._calibration_shifts(ds, used) if calibration_error else []
        # K edges a XANES scan covers in part: checked now, std widened below
        cover = {e: coverage(ds[e], e, _energy_dim(ds[e], e), list(dims))
                 for e in partial_k}
        for e, c in cover.items():
            check_rows(e, c)
        threads = _prediction_threads()
        chunk = min(_CHUNK_ROWS, _BLOCK_ROWS)  # blocks whose arrays stay in the caches
        if threads > 1 and n >= 2 * _MIN_THREAD_ROWS:  # several blocks per thread
            chunk = min(chunk, max(_MIN_THREAD_ROWS, -(-n // (2 * threads))))
        if n <= chunk:
            with stage("blocks"):
                with stage("input"):
                    X = unread(dataset_to_matrix(ds, self.edges_, use=used)[0], 0)
                check_is_fitted(self, "models_")
                with self._threads():
                    out = self._predict_arrays(X, drop_ood_edges, Am, Li, with_used=True)
                    self._add_calibration_std(out, X, cal_shifts, drop_ood_edges, Am, Li)
        else:  # large spectrum images (possibly dask-backed): a block of pixels at a time
            rows = _row_blocks(ds, self.edges_, used, dims, n)

            def one(i):
                with single_threaded(), stage("blocks"):
                    with stage("input"):
                        X = unread(np.asarray(rows(i, i + chunk), dtype=float), i)
                    a = None if Am is None else Am[i:i + chunk]
                    li = None if Li is None else Li[i:i + chunk]
                    o = self._predict_arrays(X, drop_ood_edges, a, li, with_used=True)
                    self._add_calibration_std(o, X, cal_shifts, drop_ood_edges, a, li,
                                              stride=CALIBRATION_STRIDE)
                    return o

            check_is_fitted(self, "models_")
            with self._threads():
                if threads > 1:  # blocks side by side (the compiled parts release the GIL)
                    from concurrent.futures import ThreadPoolExecutor

                    with ThreadPoolExecutor(max_workers=threads) as pool:
                        parts = list(pool.map(one, range(0, n, chunk)))
                else:
                    parts = [one(i) for i in range(0, n, chunk)]
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if Am is not None and all(f"amount_{e}_std" in ds for e in amount_edges):
            self._add_share_std(out, Am, _std_matrix(ds, amount_edges, dims))
        used_mask = out.pop("_used")
        partial = widen(out, cover, {e: used_mask[:, self.edges_.index(e)] for e in cover})
        for t in CLASSIFICATION_TARGETS:  # after every widening: no 0/1 quantity has
            if f"{t}_std" in out:         # a std above 0.5
                out[f"{t}_std"] = np.minimum(out[f"{t}_std"], 0.5)
        extra = self._refuse(out, used_mask, ds, used, dims, detected, drop_ood_edges)
        extra.update(charge_balance(out, ds, dims))
        extra.update(phase_map(out))
        for e, c in cover.items():
            g = edge_grid(e)
            extra[f"coverage_{e}"] = (c["fraction"], {
                "long_name": f"fraction of the {e} grid ({g[0]:g} - {g[-1]:g} eV) the data "
                             "cover (0: edge absent)", "units": "1"})
        data = {}
        for name, v in out.items():
            base = name[:-4] if name.endswith("_std") else name
            attrs = {"units": _UNITS.get(base, "")}
            if name.endswith("_std"):
                attrs["long_name"] = f"standard deviation of {base}"
            elif name == "ood":
                attrs = {"long_name": "out of distribution (unlike the training spectra)"}
            elif name == "ood_score":
                attrs = {"long_name": "OOD distance / threshold (> 1: out of distribution; "
                                      "inf: an edge noisier than any spectrum judged)"}
            elif name == "n_edges":
                attrs = {"long_name": "number of edges used"}
            data[name] = xr.Variable(dims, v.reshape(shape), attrs)
        for name, (v, attrs) in extra.items():
            data[name] = xr.Variable(dims, v.reshape(shape), attrs)
        maps = xr.Dataset(data, coords=layout["coords"])
        history = ds.attrs.get("history", [])
        if isinstance(history, str):  # serialised upstream (netCDF attrs)
            try:
                history = json.loads(history)
            except ValueError:
                history = [history]
        history = list(history) if isinstance(history, list | tuple) else []
        history.append({"step": "learn.predict", "model_id": self.model_id,
                        "edges": list(used), "fusion": self.fusion,
                        "drop_ood_edges": drop_ood_edges,
                        "calibration_shifts_eV": [{e: round(float(v), 4) for e, v in d.items()}
                                                  for d in cal_shifts],
                        "amounts": ([f"amount_{e}" for e in amount_edges] if Am is not None
                                    else []) + (["amount_Li_K"] if Li is not None else [])})
        if partial:
            history[-1]["partial_coverage"] = partial
        note = self.resolution_check(ds, used)
        if note:
            warnings.warn(f"predict: {note}", stacklevel=2)
            history[-1]["resolution_note"] = note
        for t, why in (getattr(self, "not_learnt_", {}) or {}).items():
            for k in (t, f"{t}_std"):
                if k in maps:
                    maps[k].attrs["not_learnt"] = why
        maps.attrs = {"edges": list(used), "edge_set": edge_set_key(used),
                      "model_id": self.model_id,
                      "not_learnt": dict(getattr(self, "not_learnt_", {}) or {}),
                      **({"resolution_note": note} if note else {}),
                      "amounts_used": Am is not None or Li is not None,
                      "q90": {t: self.calibration_[t][1] for t in self.calibration_},
                      "history": history}
        return maps

    def _calibration_shifts(self, ds: xr.Dataset, used: Sequence[str]) -> list[dict]:
        """Energy shifts (eV, per used EELS / soft-XAS edge) along the principal
        directions of the calibration's ``(offset, scale)`` covariance
        (``calibration_covariance`` of :func:`mmspec_widgets.calibrate.calibrate`),
        each one standard deviation long; empty when ``ds`` has none."""
        cov = ds.attrs.get("calibration_covariance")
        if isinstance(cov, str):
            try:
                cov = json.loads(cov)
            except ValueError:
                return []
        if cov is None:
            return []
        c = np.asarray(cov, float)
        if c.shape != (2, 2) or not np.all(np.isfinite(c)):
            return []
        lam, vec = np.linalg.eigh(0.5 * (c + c.T))
        edges = [e for e in used if "hard-XAS" not in get_edge(e).modality]
        out = []
        for k in range(2):
            if not lam[k] > 0:
                continue
            d = {e: float(np.sqrt(lam[k]) * (vec[0, k] + vec[1, k] * edge_grid(e).mean()))
                 for e in edges}
            if max((abs(v) for v in d.values()), default=0.0) >= 1e-3:
                out.append(d)
        return out

    def _add_calibration_std(self, out: dict, X: np.ndarray, shifts: list[dict],
                             drop_ood_edges, amounts, li_amount, stride: int = 1) -> None:
        """Widen every ``<target>_std`` of ``out`` by the calibration's energy error:
        predictions on spectra shifted by one std along each principal direction
        of the calibration error, their differences added in quadrature.  With
        ``stride > 1`` (large images) the differences are computed on every
        ``stride``-th row and their RMS is added to every row of ``X``: the
        calibration error is one systematic shared by the whole block."""
        if not shifts:
            return
        if stride > 1 and X.shape[0] > stride:
            sub = np.arange(0, X.shape[0], int(stride))
            part = {t: out[t][sub] for t in self.targets_}
            part.update({f"{t}_std": np.zeros(sub.size) for t in self.targets_})
            self._add_calibration_std(part, X[sub], shifts, drop_ood_edges,
                                      None if amounts is None else amounts[sub],
                                      None if li_amount is None else li_amount[sub])
            for t in self.targets_:
                v = part[f"{t}_std"]
                rms = float(np.sqrt(np.mean(v[np.isfinite(v)] ** 2))) if np.isfinite(v).any() \
                    else 0.0
                out[f"{t}_std"] = np.sqrt(out[f"{t}_std"] ** 2 + rms ** 2)
            return
        n = X.shape[0]
        Xs = np.concatenate([X] * len(shifts))  # every shift's copy, one model pass
        for k, d in enumerate(shifts):
            for e, sl in self.featurizer_.blocks_.items():
                if e in d:  # the spectra as read with the axis off by d (ends held)
                    g = edge_grid(e)
                    Xs[k * n:(k + 1) * n, sl] = shift_resample(
                        X[:, sl], np.full(n, d[e] / float(g[1] - g[0])))

        def tiled(a):
            return None if a is None else np.concatenate([a] * len(shifts))

        # rows are predicted independently: the same numbers as one pass per shift,
        # without the per-pass fixed cost
        o = self._predict_arrays(Xs, drop_ood_edges, tiled(amounts), tiled(li_amount))
        extra = {t: np.zeros(n) for t in self.targets_}
        for k in range(len(shifts)):
            for t in self.targets_:
                diff = o[t][k * n:(k + 1) * n] - out[t]
                extra[t] += np.where(np.isfinite(diff), diff, 0.0) ** 2
        for t in self.targets_:
            out[f"{t}_std"] = np.sqrt(out[f"{t}_std"] ** 2 + extra[t])

    def _refuse(self, out: dict, used_mask: np.ndarray, ds: xr.Dataset, given: Sequence[str],
                dims: Sequence[str], detected: dict, drop_ood_edges) -> dict:
        """NaN, with a reason, for what the pixel's edges cannot inform.

        Modifies ``out`` in place (targets and their std); returns the extra
        per-pixel variables ``{name: (values, attrs)}``: ``used_<edge>``,
        ``edges_used`` and ``nan_reason``.
        """
        n = used_mask.shape[0]
        reason = np.zeros(n, np.int32)
        if "quantify_reason" in ds:
            reason |= np.asarray(ds["quantify_reason"].transpose(*dims).values,
                                 np.int32).ravel()
        col = {e: j for j, e in enumerate(self.edges_)}
        undetected = np.zeros(n, bool)
        for d in detected.values():
            undetected |= ~d
        reason[undetected] |= 32
        if drop_ood_edges is not None:
            for e in given:
                ok = detected.get(e, np.ones(n, bool))
                # given, detected and finite in the input, yet not used: ignored as OOD
                fin = np.isfinite(np.asarray(
                    ds[e].transpose(*dims, _energy_dim(ds[e], e)).values
                ).reshape(n, -1)).all(axis=1)
                reason[ok & fin & ~used_mask[:, col[e]]] |= 64
        usable = used_mask.any(axis=1)
        reason[~usable] |= 16
        if getattr(self, "not_learnt_", None):
            reason[usable] |= 4096

        def element_used(el):
            js = [col[e] for e in self.edges_ if get_edge(e).element == el]
            return used_mask[:, js].any(axis=1) if js else np.zeros(n, bool)

        for el in ("Ni", "Mn", "Co"):
            t = f"{el.lower()}_oxidation"
            bit = TARGET_REASONS[t][0]  # "no usable <el> edge"
            if t in out:
                miss = ~element_used(el)
                reason[miss & usable] |= bit
                for k in (t, f"{t}_std"):
                    out[k] = np.where(miss, np.nan, out[k])
        fr = [f"{get_edge(e).element.lower()}_fraction" for e in TM_EDGES]
        if all(t in out for t in fr):
            measured = all(f"tm_fraction_{e}" in ds for e in TM_EDGES)
            if measured:  # from the edge jumps: value and std of the measurement
                for e, t in zip(TM_EDGES, fr, strict=True):
                    out[t] = np.asarray(ds[f"tm_fraction_{e}"].transpose(*dims).values,
                                        float).ravel().copy()
                    s = ds.get(f"tm_fraction_{e}_std")
                    out[f"{t}_std"] = np.full(n, np.nan) if s is None else \
                        np.asarray(s.transpose(*dims).values, float).ravel().copy()
                miss = ~np.all([np.isfinite(out[t]) for t in fr], axis=0)
            else:  # the model's, where every TM has an edge, on the simplex
                miss = ~np.all([element_used(get_edge(e).element) for e in TM_EDGES], axis=0)
                v = np.stack([np.clip(out[t], 0.0, None) for t in fr])
                tot = v.sum(axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = v / tot
                miss |= ~(tot > 0)
                for t, vi in zip(fr, v, strict=True):
                    out[t] = vi
            reason[miss] |= TARGET_REASONS[fr[0]][0]  # not every TM measured
            for t in fr:
                out[t] = np.where(miss, np.nan, out[t])
                out[f"{t}_std"] = np.where(miss, np.nan, out[f"{t}_std"])
        if "li_content" in out and "Li_K" in detected:
            miss = ~detected["Li_K"]
            reason[miss] |= TARGET_REASONS["li_content"][0]  # Li K given, not detected
            out["li_content"] = np.where(miss, np.nan, out["li_content"])
            out["li_content_std"] = np.where(miss, np.nan, out["li_content_std"])
        extra = {}
        bits = np.zeros(n, np.int32)
        for e in self.edges_:
            bits |= np.where(used_mask[:, col[e]], 1 << col[e], 0).astype(np.int32)
        for e in given:
            extra[f"used_{e}"] = (used_mask[:, col[e]].copy(),
                                  {"long_name": f"{e} used in this pixel"})
        extra["edges_used"] = (bits, {
            "long_name": "edges used in this pixel (bit mask; 0: none)",
            "flag_masks": np.array([1 << col[e] for e in self.edges_], dtype=np.int32),
            "flag_meanings": " ".join(self.edges_)})
        extra["nan_reason"] = (reason, reason_attrs(
            "why values of this pixel are NaN or limited (bit flags; 0: none; "
            "mmspec_widgets.quantify.explain_reasons)"))
        return extra

    @property
    def model_id(self) -> str:
        """Short identifier: fusion, estimator and a hash of training data and settings."""
        check_is_fitted(self, "models_")
        h = hashlib.sha256(json.dumps(
            [self.metadata_.get("training_data_sha256"), self.edges_,
             {k: v for k, v in self.get_params().items()
              if k != "n_jobs" and not (k == "resolution" and v is None)}],
            sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"mmspec-{self.fusion}-{self.estimator}-{h}"

    def q90(self, target: str) -> float:
        """Half-width of the 90 % interval of ``target`` in units of its std."""
        check_is_fitted(self, "models_")
        return self.calibration_[target][1] if target in self.calibration_ else Z90


def training_data_hash(ds: xr.Dataset, edges: Sequence[str], targets: Sequence[str]) -> str:
    """SHA-256 of the spectra, labels and structure ids used for training."""
    h = hashlib.sha256()
    for name in list(edges) + list(targets) + ["structure_id"]:
        if name in ds:
            v = np.asarray(ds[name].values)
            h.update(name.encode())
            if v.dtype.kind in "fc":
                h.update(np.ascontiguousarray(v, dtype=float).tobytes())
            else:
                h.update("\n".join(map(str, v.ravel())).encode())
    return h.hexdigest()
