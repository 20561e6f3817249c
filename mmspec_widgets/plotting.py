"""Map figures of predicted local structure, read at a glance.

One place for how a map of :meth:`MultimodalModel.predict` is shown, used by
``mmspec demo`` (``maps.png``), the notebooks and the widgets:

* human titles and colour-bar labels with units (:data:`TARGETS`);
* **one uncertainty convention**: every uncertainty shown is one standard
  deviation, written :data:`UNCERTAINTY` (``"± 1 std"``);
* blank (NaN) where a target does not apply: an element's oxidation state
  where that element's predicted fraction is below ``min_fraction``, every
  target where the model had no edge to read;
* a standard deviation larger than half the target's physical range (the
  largest any quantity confined to that range can have) carries no
  information and is shown capped at that bound, with the number of capped
  pixels in the panel's title;
* beside the targets, the out-of-distribution score (distance to the training
  spectra over its threshold; a diverging scale centred on 1, spanning the
  scores present) and the number of edges each pixel's prediction used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = [
    "TARGETS",
    "UNCERTAINTY",
    "MIN_FRACTION",
    "TargetInfo",
    "target_info",
    "display_values",
    "display_std",
    "ood_limits",
    "ood_palette",
    "edges_used_label",
    "plot_maps",
    "PHASE_COLOURS",
    "phase_names",
    "phase_counts",
]

#: The uncertainty convention of every figure, table and widget.
UNCERTAINTY = "± 1 std"

#: An element's oxidation state is left blank where its predicted fraction of
#: the transition metals is below this.
MIN_FRACTION = 0.03


@dataclass(frozen=True)
class TargetInfo:
    """How one target is shown."""

    title: str
    unit: str
    physical_range: tuple[float, float]
    #: colour scale at least this wide, so that a small scatter around a
    #: constant does not look dramatic
    min_span: float
    element_fraction: str | None = None  # blank where this fraction is ~0
    probability: bool = False

    @property
    def std_cap(self) -> float:
        """Largest standard deviation a quantity confined to the physical range can have."""
        lo, hi = self.physical_range
        return 0.5 * (hi - lo)


TARGETS: dict[str, TargetInfo] = {
    "li_content": TargetInfo("Li content x (LixMO2)", "Li per formula unit", (0.0, 1.0), 0.5),
    "ni_fraction": TargetInfo("Ni fraction", "fraction of TM", (0.0, 1.0), 0.5),
    "mn_fraction": TargetInfo("Mn fraction", "fraction of TM", (0.0, 1.0), 0.5),
    "co_fraction": TargetInfo("Co fraction", "fraction of TM", (0.0, 1.0), 0.5),
    "ni_oxidation": TargetInfo("Ni oxidation state", "formal oxidation state", (2.0, 4.0), 1.0,
                               element_fraction="ni_fraction"),
    "mn_oxidation": TargetInfo("Mn oxidation state", "formal oxidation state", (2.0, 4.0), 1.0,
                               element_fraction="mn_fraction"),
    "co_oxidation": TargetInfo("Co oxidation state", "formal oxidation state", (2.0, 4.0), 1.0,
                               element_fraction="co_fraction"),
    "o_vacancy": TargetInfo("O-vacancy probability", "probability", (0.0, 1.0), 1.0,
                            probability=True),
    "antisite": TargetInfo("Li/Ni antisite probability", "probability", (0.0, 1.0), 1.0,
                           probability=True),
    "li_rich": TargetInfo("Li-rich layered probability", "probability", (0.0, 1.0), 1.0,
                          probability=True),
    "rock_salt": TargetInfo("Rock-salt-like probability", "probability", (0.0, 1.0), 1.0,
                            probability=True),
    "spinel": TargetInfo("Spinel-like probability", "probability", (0.0, 1.0), 1.0,
                         probability=True),
}

#: colours of the ``phase`` map (layered, Li-rich, rock-salt, spinel)
PHASE_COLOURS = ("#4c72b0", "#55a868", "#c44e52", "#dd8452")

_OOD_LABEL = "OOD score (distance / threshold; > 1: unlike training)"


def target_info(name: str, maps: xr.Dataset | None = None) -> TargetInfo:
    """:class:`TargetInfo` of ``name``; for an unknown target, one built from
    the variable's ``long_name`` / ``units`` attributes when ``maps`` holds it."""
    if name in TARGETS:
        return TARGETS[name]
    attrs = maps[name].attrs if maps is not None and name in maps else {}
    title = str(attrs.get("long_name") or name.replace("_", " ")).split(":")[0]  # short name
    title = title[:1].upper() + title[1:]
    unit = str(attrs.get("units") or "value")
    return TargetInfo(title, unit, (-np.inf, np.inf), 0.0)


def _image(maps: xr.Dataset, name: str) -> np.ndarray:
    da = maps[name]
    if "y" in da.dims and "x" in da.dims:
        da = da.transpose("y", "x", ...)
    return np.asarray(da.values, dtype=float)


def _not_applicable(maps: xr.Dataset, name: str, min_fraction: float) -> np.ndarray | None:
    info = target_info(name, maps)
    frac = info.element_fraction
    if frac is None or frac not in maps:
        return None
    f = _image(maps, frac)
    with np.errstate(invalid="ignore"):
        # a measured fraction below the threshold: the element is absent; an
        # unknown (NaN) fraction says nothing, the target keeps its own NaNs
        return f < min_fraction


def display_values(maps: xr.Dataset, name: str, *,
                   min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """The map of ``name`` as shown: NaN where the target does not apply.

    Parameters
    ----------
    maps : xarray.Dataset
        Output of ``model.predict`` (dims ``("y", "x")``).
    name : str
        Target (``"ni_oxidation"``) or its std (``"ni_oxidation_std"``).
    min_fraction : float
        An oxidation state is blank where its element's predicted fraction
        of the transition metals is below this.

    Returns
    -------
    numpy.ndarray
        ``(y, x)`` float array.
    """
    base = name[:-4] if name.endswith("_std") else name
    img = _image(maps, name).copy()
    na = _not_applicable(maps, base, min_fraction)
    if na is not None:
        img[na] = np.nan
    return img


def display_std(maps: xr.Dataset, name: str, *,
                min_fraction: float = MIN_FRACTION) -> tuple[np.ndarray, float, int]:
    """The std map of target ``name`` as shown, capped at half its physical range.

    Returns
    -------
    (std, cap, n_capped) : (numpy.ndarray, float, int)
        The ``(y, x)`` std (NaN where the target does not apply), the cap
        (:attr:`TargetInfo.std_cap`, inf when the range is unknown) and the
        number of pixels whose stated std exceeded it.
    """
    std = display_values(maps, f"{name}_std", min_fraction=min_fraction)
    cap = target_info(name, maps).std_cap
    with np.errstate(invalid="ignore"):
        over = std > cap
    n = int(over.sum())
    if n:
        std = np.where(over, cap, std)
    return std, float(cap), n


def ood_limits(score) -> tuple[float, float]:
    """Colour limits of an OOD-score map: 0 to the largest finite score (at least 2)."""
    s = np.asarray(score, dtype=float)
    s = s[np.isfinite(s)]
    hi = float(s.max()) if s.size else 2.0
    return 0.0, max(2.0, hi)


def ood_palette(lo: float, hi: float, n: int = 256) -> list[str]:
    """Colours (hex) of an OOD-score scale from ``lo`` to ``hi``: blue below 1
    (like the training spectra), white at 1, red above; for linear mappers
    such as Bokeh's, which cannot centre a scale themselves."""
    from matplotlib import colormaps
    from matplotlib.colors import TwoSlopeNorm, to_hex

    hi = max(float(hi), 1.0 + 1e-6)
    lo = min(float(lo), 1.0 - 1e-6)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi)
    cmap = colormaps["RdBu_r"]
    return [to_hex(cmap(float(norm(v)))) for v in np.linspace(lo, hi, n)]


def edges_used_label(maps: xr.Dataset) -> str:
    """Colour-bar label of the ``n_edges`` map, naming the edges offered."""
    edges = list(maps.attrs.get("edges", []) or [])
    if not edges:
        return "edges used"
    names = ", ".join(str(e).replace("_L23", " L2,3").replace("_", " ") for e in edges)
    return f"edges used (of {len(edges)}: {names})"


def _colour_limits(info: TargetInfo, *images: np.ndarray) -> tuple[float, float]:
    if info.probability:
        return info.physical_range
    vals = np.concatenate([np.ravel(i) for i in images])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return info.physical_range if np.isfinite(info.physical_range).all() else (0.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < info.min_span:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - info.min_span / 2, mid + info.min_span / 2
        plo, phi = info.physical_range
        if lo < plo:
            lo, hi = plo, plo + info.min_span
        elif hi > phi:
            lo, hi = phi - info.min_span, phi
    return lo, hi


def _truth_image(truth: xr.Dataset, name: str) -> np.ndarray:
    t = _image(truth, name).copy()
    if target_info(name, truth).probability:  # defect counts -> present / absent
        fin = np.isfinite(t)
        t = np.where(fin, (t > 0).astype(float), np.nan)
        if "li_content" in truth:  # outside the particle: no truth
            t[~np.isfinite(_image(truth, "li_content"))] = np.nan
    return t


def _not_learnt(maps: xr.Dataset, name: str) -> str | None:
    """Why the model did not learn ``name`` (its variable's ``not_learnt``
    attribute, else the maps' table, a dict or its JSON text from a file)."""
    why = maps[name].attrs.get("not_learnt") if name in maps else None
    if why:
        return str(why)
    table = maps.attrs.get("not_learnt") or {}
    if isinstance(table, str):
        try:
            table = json.loads(table)
        except ValueError:
            return None
    return str(table[name]) if isinstance(table, dict) and name in table else None


def phase_counts(da: xr.DataArray, where=None) -> dict[str, int]:
    """Pixels per code of a ``phase`` map (``"unknown"`` first), within the
    boolean mask ``where`` when given."""
    names = phase_names(da)
    code = np.asarray(da.values)
    if where is not None:
        code = code[np.asarray(where, bool)]
    return {names[k + 1]: int(np.sum(code == k)) for k in range(-1, len(names) - 1)}


def phase_names(da: xr.DataArray) -> list[str]:
    """Names of the codes of a ``phase`` map, from -1 (``"unknown"``) up."""
    from .simulate.labels import phase_flags

    return str(da.attrs.get("flag_meanings", phase_flags()["flag_meanings"])).split()


def _phase_row(fig, row, maps, truth, show, hatch=None) -> None:
    """The categorical ``phase`` map (truth left when given) and its probability."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    names = phase_names(maps["phase"])[1:]  # after "unknown" (-1, shown blank)
    cmap = ListedColormap(list(PHASE_COLOURS[:len(names)]))
    norm = BoundaryNorm(np.arange(-0.5, len(names)), len(names))

    def img(ds):
        v = _image(ds, "phase")
        return np.where(v >= 0, v, np.nan)

    col = 0
    if truth is not None:
        show(row[0], img(truth) if "phase" in truth else np.full(_image(maps, "phase").shape,
                                                                  np.nan),
             "Phase: truth", "", cmap=cmap, norm=norm)
        col = 1
    im = show(row[col], img(maps), "Phase: most probable", "", cmap=cmap, norm=norm)
    if hatch is not None:
        hatch(row[col], img(maps))
    cb = fig.colorbar(im, ax=list(row[:col + 1]), shrink=0.9, ticks=np.arange(len(names)))
    cb.ax.set_yticklabels([n.replace("_", "-") for n in names], fontsize=7)
    cb.set_label("phase", fontsize=8)
    ax_p = row[col + 1]
    if "phase_probability" in maps:
        ip = show(ax_p, _image(maps, "phase_probability"), "Phase: probability of the shown "
                  "phase", "probability", vmin=0.0, vmax=1.0, cmap="cividis")
        fig.colorbar(ip, ax=ax_p, shrink=0.9).set_label("probability", fontsize=8)
    else:
        ax_p.axis("off")


def plot_maps(maps: xr.Dataset, truth: xr.Dataset | None = None, *, targets=None,
              min_fraction: float = MIN_FRACTION, path: str | Path | None = None,
              dpi: int = 110, hatch_ood: bool = True):
    """One figure of every target's map, its uncertainty, the OOD score and the edges used.

    Parameters
    ----------
    maps : xarray.Dataset
        Output of ``model.predict`` on a spectrum image (dims ``("y", "x")``,
        coordinates in nm).
    truth : xarray.Dataset, optional
        Ground truth (e.g. the digital twin's): a *truth* column is drawn
        left of the prediction, on the same colour scale. Defect targets are
        shown as present (1) / absent (0).
    targets : sequence of str, optional
        Targets to show; default every map of ``maps`` (and of ``truth``,
        when given) but the bookkeeping: ``used_<edge>``, ``edges_used``,
        ``nan_reason``, ``coverage_<edge>`` (``n_edges`` and the OOD score
        have the last row).
    min_fraction : float
        Oxidation states are blank where the element's predicted fraction is
        below this.
    path : str or pathlib.Path, optional
        Also save the figure there (PNG, ``dpi``) and close it.
    hatch_ood : bool
        Hatch the pixels flagged out of distribution (``maps["ood"]``) on
        every predicted map, as the inference widget does: their values come
        from spectra unlike the training set's (their stds are widened by the
        OOD score), and the figure says so where the eye reads them.

    Returns
    -------
    matplotlib.figure.Figure
        Every image has a colour bar whose label names the quantity's unit.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, Normalize, TwoSlopeNorm

    if targets is None:
        # bookkeeping (edges used, reasons, coverage) is drawn in the last row
        # or read from the pixel table, not as maps of its own
        targets = [n for n in maps.data_vars if not str(n).endswith("_std")
                   and n not in ("ood", "ood_score", "n_edges", "phase_probability",
                                 "edges_used", "nan_reason")
                   and not str(n).startswith(("used_", "coverage_"))
                   and (truth is None or n in truth)]
    targets = [str(t) for t in targets]
    missing = [t for t in targets if t not in maps]
    if missing:
        raise KeyError(f"maps has no variable {', '.join(missing)}; "
                       f"it holds {', '.join(map(str, maps.data_vars))}")
    ncol = 3 if truth is not None else 2
    nrow = len(targets) + 1
    ny, nx = maps.sizes.get("y", 1), maps.sizes.get("x", 1)
    panel_h = float(np.clip(3.0 * ny / max(nx, 1), 0.9, 3.0))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.8, (panel_h + 0.75) * nrow + 0.5),
                             constrained_layout=True, squeeze=False)
    xs = np.asarray(maps["x"].values, float) if "x" in maps.coords else np.arange(nx, dtype=float)
    ys = np.asarray(maps["y"].values, float) if "y" in maps.coords else np.arange(ny, dtype=float)
    dx = float(xs[1] - xs[0]) if xs.size > 1 else 1.0
    dy = float(ys[1] - ys[0]) if ys.size > 1 else 1.0
    ext = [xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2]
    xu = str(maps["x"].attrs.get("units", "nm")) if "x" in maps.coords else "px"
    yu = str(maps["y"].attrs.get("units", "nm")) if "y" in maps.coords else "px"

    def show(ax, img, title, label, **kw):
        cmap = plt.get_cmap(kw.pop("cmap", "viridis")).with_extremes(bad="0.88")
        im = ax.imshow(img, extent=ext, aspect="equal", interpolation="nearest", cmap=cmap, **kw)
        ax.set_title(title, fontsize=9)
        return im

    ood = _image(maps, "ood") > 0 if (hatch_ood and "ood" in maps) else None
    xe = np.concatenate([xs - dx / 2, xs[-1:] + dx / 2])
    ye = np.concatenate([ys - dy / 2, ys[-1:] + dy / 2])

    def hatch(ax, img) -> None:
        """Hatch the out-of-distribution pixels that show a value, and say so
        in the panel's title."""
        if ood is None:
            return
        m = ood & np.isfinite(img)
        if m.any():
            ax.pcolor(xe, ye, np.ma.masked_where(~m, np.ones(m.shape)), hatch="////",
                      facecolor="none", edgecolor="0.35", linewidth=0.0)
            ax.set_title(ax.get_title() + "\nhatched: out of distribution", fontsize=9)

    for row, name in zip(axes[:-1], targets, strict=True):
        if name == "phase":
            _phase_row(fig, row, maps, truth, show, hatch)
            continue
        info = target_info(name, maps)
        pred = display_values(maps, name, min_fraction=min_fraction)
        col = 0
        images = [pred]
        if truth is not None:
            images.append(_truth_image(truth, name) if name in truth
                          else np.full_like(pred, np.nan))
        lo, hi = _colour_limits(info, *images)
        cmap = "inferno" if info.probability else "viridis"
        norm = Normalize(vmin=lo, vmax=hi)  # one scale, one colour bar for truth and prediction
        if truth is not None:
            show(row[0], images[1], f"{info.title}: truth"
                 + (" (present = 1)" if info.probability else ""), info.unit,
                 norm=norm, cmap=cmap)
            col = 1
        title = f"{info.title}: predicted"
        if not info.probability and np.isfinite(pred).any():
            title += f" (median {np.nanmedian(pred):.2f})"
        why = _not_learnt(maps, name)
        if why:  # say why the panel is blank
            title += "\nnot learnt: " + why.split(":")[0]
        im = show(row[col], pred, title, info.unit, norm=norm, cmap=cmap)
        hatch(row[col], pred)
        cb = fig.colorbar(im, ax=list(row[:col + 1]), shrink=0.9)
        cb.set_label(info.unit, fontsize=8)
        ax_s = row[col + 1]
        if f"{name}_std" in maps:
            std, cap, n_cap = display_std(maps, name, min_fraction=min_fraction)
            finite = std[np.isfinite(std)]
            s_hi = float(finite.max()) if finite.size else 1.0
            title = f"{info.title}: uncertainty ({UNCERTAINTY})"
            if n_cap:
                title += f"\n{n_cap} px > {cap:g} (capped: uninformative)"
            ims = show(ax_s, std, title, info.unit, vmin=0.0, vmax=max(s_hi, 1e-6),
                       cmap="cividis")
            cbs = fig.colorbar(ims, ax=ax_s, shrink=0.9,
                               extend="max" if n_cap else "neither")
            cbs.set_label(f"1 std ({info.unit})", fontsize=8)
        else:
            ax_s.axis("off")

    last = axes[-1]
    used = 0
    if "ood_score" in maps:
        score = _image(maps, "ood_score")
        score = np.where(np.isfinite(score), score, np.nan)
        lo, hi = ood_limits(score)
        n_ood = int(np.asarray(maps["ood"].values).sum()) if "ood" in maps else \
            int(np.nansum(score > 1))
        im = show(last[0], score, f"Out of distribution: {n_ood} of {score.size} px", _OOD_LABEL,
                  norm=TwoSlopeNorm(vcenter=1.0, vmin=lo, vmax=hi), cmap="RdBu_r")
        from matplotlib.ticker import MaxNLocator

        upper = [t for t in MaxNLocator(4).tick_values(1.0, hi) if 1.5 < t <= hi]
        ticks = [0.0, 1.0, *upper]
        cb = fig.colorbar(im, ax=last[0], shrink=0.9, ticks=ticks, format="%.3g")
        cb.set_label("OOD score\n(distance / threshold)", fontsize=8)
        used += 1
    if "n_edges" in maps:
        n_e = _image(maps, "n_edges")
        n_max = max(len(maps.attrs.get("edges", []) or []), int(np.nanmax(n_e)) if n_e.size else 1,
                    1)
        bounds = np.arange(-0.5, n_max + 1.0, 1.0)
        ax_e = last[used]
        offered = edges_used_label(maps)
        title = "Edges used per pixel"
        if "(of" in offered:
            title += "\n" + offered.split(": ", 1)[1].rstrip(")")
        im = show(ax_e, n_e, title, "edges used", cmap="Greens",
                  norm=BoundaryNorm(bounds, plt.get_cmap("Greens").N))
        cb = fig.colorbar(im, ax=ax_e, shrink=0.9, ticks=np.arange(0, n_max + 1),
                          format="%d")
        cb.set_label(offered.split(":")[0] + (")" if "(of" in offered else ""), fontsize=8)
        used += 1
    for ax in last[used:]:
        ax.axis("off")
    for ax in axes.ravel():
        if ax.images:
            ax.set_xlabel(f"x ({xu})", fontsize=8)
            ax.set_ylabel(f"y ({yu})", fontsize=8)
            ax.tick_params(labelsize=7)
    model_id = maps.attrs.get("model_id")
    fig.suptitle(f"{'Model ' + str(model_id) + '; ' if model_id else ''}uncertainties "
                 f"{UNCERTAINTY}\nblank: not applicable (no edge, or the element's "
                 f"fraction < {min_fraction:g})", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
    return fig
