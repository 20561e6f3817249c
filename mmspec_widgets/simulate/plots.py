"""How simulated spectra change with Li content, defects and oxidation state.

:func:`plot_trends` draws the spectra binned by their labels and the
descriptors of :mod:`.descriptors` (O K pre-edge, Ni L3 centroid, K-edge
half-step ...) against the labels, with their rank correlations
(matplotlib, notebook-ready).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import DataError
from .descriptors import spearman, spectral_descriptors

__all__ = ["plot_trends"]


def _grid(ds: xr.Dataset, edge: str) -> np.ndarray:
    return np.asarray(ds[f"energy_{edge}"].values, float)


def _binned_means(ds, edge, label, bins):
    x = _grid(ds, edge)
    y = np.asarray(ds[edge].values, float)
    lab = np.asarray(ds[label].values, float)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        m = (lab >= lo) & (lab < hi) & np.isfinite(y).all(axis=1)
        if m.sum():
            out.append((lo, hi, int(m.sum()), y[m].mean(axis=0)))
    return x, out


def plot_trends(ds: xr.Dataset, fig=None):
    """Figure of the trends of simulated spectra with the labels.

    Panels: O K by Li content, O K with/without O vacancies, O K pre-edge vs
    Li content; Ni L2,3 by Ni oxidation state, Ni L3 centroid vs Ni
    oxidation, Li K by Li content; Ni K by Ni oxidation, Ni K edge position vs
    Ni oxidation, Ni L2,3 with/without antisites.

    Parameters
    ----------
    ds : xarray.Dataset
        Training set (:func:`~mmspec_widgets.simulate.load_training_set`).
    fig : matplotlib.figure.Figure, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    for v in ("O_K", "li_content", "ni_oxidation"):
        if v not in ds:
            raise DataError(f"plot_trends: data set lacks {v!r}")
    fig = fig or plt.figure(figsize=(15, 12))
    axs = fig.subplots(3, 3)
    cmap = plt.get_cmap("viridis")
    desc = spectral_descriptors(ds)

    def lines(ax, edge, label, bins, title, fmt="{:.2f}"):
        if edge not in ds:
            ax.set_axis_off()
            return
        x, groups = _binned_means(ds, edge, label, bins)
        for k, (lo, hi, n, y) in enumerate(groups):
            ax.plot(x, y, color=cmap(k / max(len(groups) - 1, 1)),
                    label=f"{label} {fmt.format(lo)}-{fmt.format(hi)} (n={n})")
        ax.set_title(title)
        ax.set_xlabel("energy (eV)")
        ax.legend(fontsize=7)

    def split(ax, edge, label, title):
        if edge not in ds:
            ax.set_axis_off()
            return
        x = _grid(ds, edge)
        y = np.asarray(ds[edge].values, float)
        lab = np.asarray(ds[label].values, float)
        ok = np.isfinite(y).all(axis=1)
        for m, name, c in ((lab == 0, "none", "k"), (lab > 0, f"{label} > 0", "C3")):
            if (m & ok).sum():
                ax.plot(x, y[m & ok].mean(axis=0), color=c, label=f"{name} (n={(m & ok).sum()})")
        ax.set_title(title)
        ax.set_xlabel("energy (eV)")
        ax.legend(fontsize=7)

    def scatter(ax, dname, label, title, ylabel):
        if dname not in desc:
            ax.set_axis_off()
            return
        lab = np.asarray(ds[label].values, float)
        d = desc[dname]
        c = np.asarray(ds["o_vacancy"].values, float) if "o_vacancy" in ds else None
        sc = ax.scatter(lab, d, c=c, cmap="coolwarm", s=14)
        rho, n = spearman(d, lab)
        ax.set_title(f"{title}\nSpearman rho = {rho:+.2f} (n={n})")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        if c is not None:
            fig.colorbar(sc, ax=ax, label="O vacancies in region")

    li_bins = [0.0, 0.45, 0.6, 0.75, 0.9, 1.3]
    ox_bins = [1.9, 2.4, 2.8, 3.2, 3.6, 4.1]
    lines(axs[0, 0], "O_K", "li_content", li_bins, "O K by local Li content")
    split(axs[0, 1], "O_K", "o_vacancy", "O K with / without O vacancies")
    scatter(axs[0, 2], "O_K_preedge_centroid", "li_content",
            "O K pre-edge position vs Li content", "centroid 528.9-532.0 eV (eV)")
    lines(axs[1, 0], "Ni_L23", "ni_oxidation", ox_bins, "Ni L2,3 by mean Ni oxidation state")
    scatter(axs[1, 1], "Ni_L3_centroid", "ni_oxidation", "Ni L3 centroid vs Ni oxidation",
            "L3 centroid (eV)")
    lines(axs[1, 2], "Li_K", "li_content", li_bins, "Li K by local Li content")
    lines(axs[2, 0], "Ni_K", "ni_oxidation", ox_bins, "Ni K by mean Ni oxidation state")
    scatter(axs[2, 1], "Ni_K_edge", "ni_oxidation", "Ni K edge (half step) vs Ni oxidation",
            "edge position (eV)")
    split(axs[2, 2], "Ni_L23", "antisite", "Ni L2,3 with / without Li/Ni antisites")
    for ax, e in ((axs[0, 0], "O_K"), (axs[1, 0], "Ni_L23"), (axs[2, 0], "Ni_K")):
        if e in ds:
            ax.axvline(get_edge(e).reference, color="0.7", lw=0.8, ls=":")
    fig.suptitle(f"Simulated spectra: trends with local structure ({ds.sizes['sample']} samples)")
    fig.tight_layout()
    return fig
