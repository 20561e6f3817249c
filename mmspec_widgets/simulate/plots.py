"""How simulated spectra change with Li content, defects and oxidation state.

:func:`trend_metrics` reduces each spectrum to one physical number (O K
pre-edge intensity, Ni L3 centroid, K-edge position ...) and reports its rank
correlation with the labels; :func:`plot_trends` shows the same trends
(matplotlib, notebook-ready).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import DataError

__all__ = ["spectral_descriptors", "trend_metrics", "plot_trends"]


def _grid(ds: xr.Dataset, edge: str) -> np.ndarray:
    return np.asarray(ds[f"energy_{edge}"].values, float)


def _window_mean(ds, edge, lo, hi):
    x = _grid(ds, edge)
    m = (x >= lo) & (x <= hi)
    return np.asarray(ds[edge].values[:, m], float).mean(axis=1)


def _centroid(ds, edge, lo, hi):
    x = _grid(ds, edge)
    m = (x >= lo) & (x <= hi)
    y = np.clip(np.asarray(ds[edge].values[:, m], float), 0, None)
    return (y * x[m]).sum(axis=1) / np.where(y.sum(axis=1) > 0, y.sum(axis=1), np.nan)


def _half_step(ds, edge):
    """Energy where the spectrum first reaches half its post-edge level (eV)."""
    x = _grid(ds, edge)
    y = np.asarray(ds[edge].values, float)
    ok = np.isfinite(y).all(axis=1)
    level = np.full(y.shape[0], np.nan)
    level[ok] = y[ok, -20:].mean(axis=1)
    out = np.full(y.shape[0], np.nan)
    for i in range(y.shape[0]):
        if not np.isfinite(level[i]):
            continue
        k = np.flatnonzero(y[i] >= 0.5 * level[i])
        if k.size and k[0] > 0:
            j = k[0]
            x0, x1, y0, y1 = x[j - 1], x[j], y[i, j - 1], y[i, j]
            out[i] = x0 + (0.5 * level[i] - y0) * (x1 - x0) / (y1 - y0 or 1.0)
    return out


def spectral_descriptors(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """One number per sample and edge, in physical units.

    Returns
    -------
    dict
        ``O_K_preedge`` (mean intensity 528.9 - 531.5 eV over mean 535 - 545
        eV), ``O_K_preedge_centroid`` (first moment over 528.9 - 531.5 eV),
        ``Ni_L3_centroid`` / ``Mn_L3_centroid`` / ``Co_L3_centroid``
        (first moment of the L3 region, eV), ``<TM>_K_edge`` (half-step
        energy, eV), ``Li_K_peak`` (energy of the Li K maximum, eV).
    """
    out = {}
    if "O_K" in ds:
        out["O_K_preedge"] = _window_mean(ds, "O_K", 528.9, 531.5) / _window_mean(
            ds, "O_K", 535.0, 545.0)
        out["O_K_preedge_centroid"] = _centroid(ds, "O_K", 528.9, 531.5)
    for el, (lo, hi) in {"Mn": (638.0, 648.0), "Co": (776.0, 786.0),
                         "Ni": (851.0, 860.0)}.items():
        if f"{el}_L23" in ds:
            out[f"{el}_L3_centroid"] = _centroid(ds, f"{el}_L23", lo, hi)
        if f"{el}_K" in ds:
            out[f"{el}_K_edge"] = _half_step(ds, f"{el}_K")
    if "Li_K" in ds:
        x = _grid(ds, "Li_K")
        y = np.nan_to_num(np.asarray(ds["Li_K"].values, float), nan=-np.inf)
        pk = x[np.argmax(y, axis=1)]
        pk[~np.isfinite(ds["Li_K"].values).all(axis=1)] = np.nan
        out["Li_K_peak"] = pk
    return out


def _spearman(a, b):
    """Spearman's rho with tied values at their average rank (labels tie a lot:
    most Mn regions are Mn4+), and the number of samples used."""
    from scipy.stats import rankdata

    m = np.isfinite(a) & np.isfinite(b)
    if m.sum() < 4 or np.ptp(a[m]) == 0 or np.ptp(b[m]) == 0:
        return float("nan"), int(m.sum())
    return float(np.corrcoef(rankdata(a[m]), rankdata(b[m]))[0, 1]), int(m.sum())


#: fewest regions of a label value for its mean to count in ``monotonic``
MIN_LEVEL = 3


def _levels(x, label, sign):
    """Mean descriptor per label value (oxidation states, to 0.25), and whether
    the means of the values held by at least :data:`MIN_LEVEL` regions follow
    the expected sign from each to the next."""
    m = np.isfinite(x) & np.isfinite(label)
    lab = np.round(label[m] * 4) / 4
    levels = [[float(v), int(np.sum(lab == v)), round(float(np.mean(x[m][lab == v])), 3)]
              for v in np.unique(lab)]
    means = np.array([lv[2] for lv in levels if lv[1] >= MIN_LEVEL])
    mono = bool(means.size > 1 and sign and np.all(np.sign(np.diff(means)) == sign))
    return levels, mono


#: (descriptor, label, sign expected from physics)
EXPECTED = [
    ("O_K_preedge", "li_content", -1),   # holes on O 2p - TM 3d on delithiation
    ("O_K_preedge_centroid", "li_content", +1),  # new low-energy pre-edge when charged
    ("O_K_preedge", "ni_oxidation", +1),
    ("O_K_preedge", "o_vacancy", -1),    # fewer TM-O bonds, reduced TMs
    ("Ni_L3_centroid", "ni_oxidation", +1),
    ("Co_L3_centroid", "co_oxidation", +1),
    ("Mn_L3_centroid", "mn_oxidation", +1),
    ("Ni_K_edge", "ni_oxidation", +1),
    ("Co_K_edge", "co_oxidation", +1),
    ("Mn_K_edge", "mn_oxidation", +1),
    ("Li_K_peak", "li_content", 0),
    ("Ni_L3_centroid", "antisite", -1),  # Ni2+ in the Li layer
]


def trend_metrics(ds: xr.Dataset) -> list[dict]:
    """Spearman rank correlation of each descriptor with its label.

    Returns
    -------
    list of dict
        descriptor, label, rho (Spearman, ties at their average rank), n
        (samples used), expected sign (+1, -1, or 0 for no firm expectation),
        ``agrees`` (sign of rho matches), ``pearson``; for oxidation-state
        labels also ``levels`` (``[state, n, mean descriptor]`` per state, to
        0.25) and ``monotonic`` (the means of the states of at least
        :data:`MIN_LEVEL` regions follow the expected sign from each to the
        next). A label most regions share (Mn4+) ties most ranks,
        which holds rho down however clean the trend: the levels show it.
    """
    desc = spectral_descriptors(ds)
    rows = []
    for d, lab, sign in EXPECTED:
        if d not in desc or lab not in ds:
            continue
        x, y = np.asarray(desc[d], float), np.asarray(ds[lab].values, float)
        rho, n = _spearman(x, y)
        ok = np.isfinite(x) & np.isfinite(y)
        r = (float(np.corrcoef(x[ok], y[ok])[0, 1])
             if ok.sum() >= 4 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0 else float("nan"))
        row = {"descriptor": d, "label": lab, "rho": rho, "n": n, "expected": sign,
               "agrees": bool(sign and np.isfinite(rho) and np.sign(rho) == sign),
               "pearson": r}
        if lab.endswith("_oxidation"):
            row["levels"], row["monotonic"] = _levels(x, y, sign)
        rows.append(row)
    return rows


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
        rho, n = _spearman(d, lab)
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
            "O K pre-edge position vs Li content", "centroid 528.9-531.5 eV (eV)")
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
