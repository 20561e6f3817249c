"""Explanation: which edges, and which energies of each edge, drive a prediction.

Both functions are permutation importances measured on a labelled set (the
held-out split of the simulated set): the drop in score (R2, or ROC-AUC for
defects) when part of the input is shuffled between samples.

:func:`edge_importance`
    one edge's whole spectrum shuffled -> importance per (target, edge);
:func:`energy_importance`
    one energy window of one edge shuffled -> importance per target on each
    edge's energy grid, so it can be drawn under the spectra
    (:func:`mmspec_widgets.learn.plots.plot_importance`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import DataError
from .evaluate import target_score
from .fusion import dataset_to_matrix, label_values

__all__ = ["edge_importance", "energy_importance"]


def _prepare(model, ds, split, targets):
    if split is not None and "split" in ds.coords:
        sel = np.asarray(ds["split"].values).astype(str) == split
        if sel.any():
            ds = ds.isel(sample=np.flatnonzero(sel))
    X, layout = dataset_to_matrix(ds, model.edges_)
    targets = list(targets) if targets is not None else list(model.targets_)
    Y = {t: label_values(ds, t).ravel() for t in targets}
    blocks = np.cumsum([0] + [get_edge(e).n_points for e in model.edges_])
    slices = {e: slice(blocks[j], blocks[j + 1]) for j, e in enumerate(model.edges_)}
    return X, Y, targets, slices, layout


def _which(split, n: int) -> str:
    return f"{n} {split} samples" if split is not None else \
        f"all {n} samples, training ones included: what the model relies on"


def _nanmean(drops) -> np.ndarray:
    """Mean over repeats; NaN (no warning) where a target could not be scored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(drops, float), axis=0)


def _scores(model, X, Y, targets) -> dict:
    pred = model.predict_arrays(X)
    return {t: target_score(t, Y[t], pred[t], 5) for t in targets}


def edge_importance(model, ds: xr.Dataset, *, targets: Sequence[str] | None = None,
                    split: str | None = "test", n_repeats: int = 3,
                    random_state: int = 0) -> xr.DataArray:
    """Permutation importance of each edge for each target.

    Parameters
    ----------
    model : MultimodalModel
    ds : xarray.Dataset
        Labelled set; samples with ``split == split`` are used if present.
    targets : sequence of str, optional
    split : str or None
    n_repeats : int
        Shuffles averaged per edge.
    random_state : int

    Returns
    -------
    xarray.DataArray
        Dims ``("target", "edge")``: mean score drop (R2 or ROC-AUC units).
    """
    rng = np.random.default_rng(random_state)
    X, Y, targets, slices, _ = _prepare(model, ds, split, targets)
    base = _scores(model, X, Y, targets)
    out = np.full((len(targets), len(slices)), np.nan)
    for j, sl in enumerate(slices.values()):
        rows = np.flatnonzero(np.all(np.isfinite(X[:, sl]), axis=1))
        if rows.size < 5:
            continue
        drops = []
        for _ in range(int(n_repeats)):
            Xp = X.copy()
            Xp[rows, sl] = X[rng.permutation(rows), sl]
            s = _scores(model, Xp, Y, targets)
            drops.append([np.nan if base[t] is None or s[t] is None else base[t] - s[t]
                          for t in targets])
        out[:, j] = _nanmean(drops)
    return xr.DataArray(out, dims=("target", "edge"),
                        coords={"target": targets, "edge": list(slices)},
                        attrs={"long_name": "permutation importance (score drop)",
                               "model_id": model.model_id,
                               "samples": _which(split, X.shape[0])})


def energy_importance(model, ds: xr.Dataset, *, window: float = 2.0,
                      targets: Sequence[str] | None = None, edges: Sequence[str] | None = None,
                      split: str | None = "test", n_repeats: int = 1,
                      random_state: int = 0) -> xr.Dataset:
    """Permutation importance of energy windows, mapped onto each edge's grid.

    Parameters
    ----------
    model : MultimodalModel
    ds : xarray.Dataset
        Labelled set; samples with ``split == split`` are used if present.
    window : float
        Window width, eV; each window of each edge is shuffled between
        samples in turn, and its score drop assigned to all grid points in it.
    targets : sequence of str, optional
    edges : sequence of str, optional
        Default: the model's edges present in ``ds``.
    split : str or None
    n_repeats : int
    random_state : int

    Returns
    -------
    xarray.Dataset
        One variable per edge, dims ``("target", "energy_<edge>")`` (eV), the
        score drop (R2 or ROC-AUC units).
    """
    if window <= 0:
        raise DataError(f"window={window!r} eV: expected a positive width")
    rng = np.random.default_rng(random_state)
    X, Y, targets, slices, _ = _prepare(model, ds, split, targets)
    base = _scores(model, X, Y, targets)
    edges = [get_edge(e).name for e in edges] if edges is not None else \
        [e for e in model.edges_ if e in ds]
    data = {}
    for e in edges:
        sl = slices[e]
        grid = get_edge(e).energy
        rows = np.flatnonzero(np.all(np.isfinite(X[:, sl]), axis=1))
        imp = np.full((len(targets), grid.size), np.nan)
        if rows.size >= 5:
            edges_w = np.arange(grid[0], grid[-1] + window, window)
            for lo in edges_w[:-1]:
                cols = np.flatnonzero((grid >= lo) & (grid < lo + window))
                if cols.size == 0:
                    continue
                drops = []
                for _ in range(int(n_repeats)):
                    Xp = X.copy()
                    absolute = sl.start + cols
                    Xp[np.ix_(rows, absolute)] = X[np.ix_(rng.permutation(rows), absolute)]
                    s = _scores(model, Xp, Y, targets)
                    drops.append([np.nan if base[t] is None or s[t] is None else base[t] - s[t]
                                  for t in targets])
                imp[:, cols] = _nanmean(drops)[:, None]
        dim = f"energy_{e}"
        data[e] = xr.DataArray(imp, dims=("target", dim),
                               coords={"target": targets,
                                       dim: (dim, grid, {"units": "eV"})})
    out = xr.Dataset(data)
    out.attrs = {"long_name": "energy-window permutation importance (score drop)",
                 "window_eV": float(window), "model_id": model.model_id,
                 "samples": _which(split, X.shape[0])}
    return out
