"""Figures of the learning module (matplotlib): evaluation heat map, importance on spectra."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import MMSpecError

__all__ = ["plot_evaluation", "plot_importance"]


def _plt():
    # matplotlib picks a non-interactive backend by itself on headless machines
    import matplotlib.pyplot as plt

    return plt


def plot_evaluation(result: dict, *, ax=None):
    """Heat map of held-out scores: targets (rows) x edge sets (columns).

    Parameters
    ----------
    result : dict
        Output of :func:`mmspec_widgets.learn.evaluate.evaluate_model`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    targets = result["targets"]
    names = list(targets)
    keys = list(next(iter(targets.values()))["by_edges"])
    M = np.array([[np.nan if targets[t]["by_edges"][k] is None else targets[t]["by_edges"][k]
                   for k in keys] for t in names], dtype=float)
    # common colour scale: R2 as is, AUC mapped to 2 AUC - 1 (0 = chance, 1 = perfect)
    C = M.copy()
    for i, t in enumerate(names):
        if targets[t]["metric"] == "roc_auc":
            C[i] = 2 * M[i] - 1
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(keys), 1.2 + 0.42 * len(names)),
                               constrained_layout=True)
    else:
        fig = ax.figure
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    im = ax.imshow(np.clip(C, 0, 1), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i in range(len(names)):
        for j in range(len(keys)):
            v = M[i, j]
            txt = "–" if not np.isfinite(v) else f"{v:.2f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(C[i, j]) and C[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([k.replace("+", "+\n") for k in keys], fontsize=6.5)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{t} ({targets[t]['metric'].replace('roc_auc', 'AUC')})"
                        for t in names], fontsize=8)
    nsingle = sum("+" not in k for k in keys)
    if 0 < nsingle < len(keys):
        ax.axvline(nsingle - 0.5, color="white", lw=2)
    ax.set_title("held-out test split: single edges | fused sets", fontsize=9)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label("R2  /  2 AUC - 1 (clipped to 0 - 1)", fontsize=8)
    return fig


def plot_importance(importance: xr.Dataset, target: str, *, spectra: xr.Dataset | None = None,
                    edges: Sequence[str] | None = None, axes=None):
    """Energy-resolved importance of ``target`` drawn under each edge's spectrum.

    Parameters
    ----------
    importance : xarray.Dataset
        Output of :func:`mmspec_widgets.learn.explain.energy_importance`.
    target : str
        Target to show.
    spectra : xarray.Dataset, optional
        Spectra (dim ``sample`` or any leading dims) whose mean is drawn for
        orientation.
    edges : sequence of str, optional
        Edges to show; default all in ``importance``.
    axes : sequence of matplotlib Axes, optional
        One per edge.

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    edges = list(edges) if edges is not None else [str(v) for v in importance.data_vars]
    if target not in importance.coords.get("target", xr.DataArray([])).values:
        raise MMSpecError(f"plot_importance: no target {target!r} in the importance Dataset")
    if axes is None:
        fig, axes = plt.subplots(1, len(edges), figsize=(3.2 * len(edges), 2.6),
                                 constrained_layout=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, e in zip(axes, edges, strict=True):
        imp = importance[e].sel(target=target)
        dim = imp.dims[-1]
        energy = imp[dim].values
        ax.fill_between(energy, 0, np.clip(imp.values, 0, None), color="tab:orange", alpha=0.6,
                        step="mid", label="importance")
        ax.set_ylim(bottom=0, top=max(1e-3, 1.1 * float(np.nanmax(np.r_[imp.values, 0]))))
        ax.set_xlabel(f"{e} energy (eV)", fontsize=8)
        ax.set_ylabel("score drop", fontsize=8)
        ax.tick_params(labelsize=7)
        if spectra is not None and e in spectra:
            s = spectra[e]
            sdim = [d for d in s.dims if str(d).startswith("energy")][0]
            mean = s.mean([d for d in s.dims if d != sdim], skipna=True)
            ax2 = ax.twinx()
            ax2.plot(s[sdim].values, mean.values, color="k", lw=1)
            ax2.set_yticks([])
        ax.set_title(f"{target}: {e}", fontsize=9)
    return fig
