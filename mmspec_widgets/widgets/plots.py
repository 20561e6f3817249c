"""Bokeh building blocks shared by the widgets.

Everything here is presentation: figures, colour maps, the mapping from a
click (nm) to a pixel index, the data a plot shows.  Processing lives in the
library modules (:mod:`mmspec_widgets.calibrate`, :mod:`mmspec_widgets.background`
...), which the widgets call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from bokeh.layouts import column
from bokeh.models import (
    BasicTickFormatter,
    BoxAnnotation,
    ColorBar,
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.plotting import figure

from ..errors import DataError

__all__ = [
    "SPECTRUM_COLORS",
    "check_si",
    "coord_units",
    "energy_label",
    "image_figure",
    "map_sources",
    "pixel_outline",
    "spectrum_figure",
    "visible_y_range",
    "window_box",
]

#: Colour-blind safe line colours (Okabe & Ito).
SPECTRUM_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def counts_formatter() -> NumeralTickFormatter:
    """Tick labels for counts: ``60,000`` (never ``6.000e+4`` nor numbro's ``60k``)."""
    return NumeralTickFormatter(format="0,0")


def coord_units(da: xr.DataArray, dim: str, default: str) -> str:
    """Units of coordinate ``dim`` of ``da`` (``default`` when none is set)."""
    if dim in da.coords:
        return str(da.coords[dim].attrs.get("units", default))
    return default


def energy_label(da: xr.DataArray, dim: str = "energy") -> str:
    """Axis label of an energy coordinate, e.g. ``"Energy loss (eV)"``."""
    quantity = "Energy loss" if str(da.attrs.get("signal_type", "EELS")).upper().startswith(
        "EELS") else "Energy"
    if dim in da.coords:
        quantity = da.coords[dim].attrs.get("long_name", quantity)
    return f"{quantity} ({coord_units(da, dim, 'eV')})"


def check_si(si, name: str = "si", *, dims: Sequence[str] = ("y", "x", "energy")) -> xr.DataArray:
    """Check that ``si`` is a labelled spectrum image with the expected dims.

    Raises
    ------
    DataError
        Naming ``name`` and the dims that were expected.
    """
    if not isinstance(si, xr.DataArray):
        raise DataError(
            f"{name}: expected an xarray.DataArray with dims {tuple(dims)}, "
            f"got {type(si).__name__}")
    if set(si.dims) != set(dims):
        raise DataError(f"{name}: expected dims {tuple(dims)}, got {si.dims}")
    for d in dims:
        if si.sizes[d] < 1:
            raise DataError(f"{name}: dimension {d!r} is empty")
    if "energy" in dims and si.sizes["energy"] < 2:
        raise DataError(f"{name}: needs at least two energy channels")
    return si.transpose(*dims)


def _axis(da: xr.DataArray, dim: str) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da.coords[dim].values, dtype=float)
    return np.arange(da.sizes[dim], dtype=float)


def _step(values: np.ndarray) -> float:
    return float(values[1] - values[0]) if values.size > 1 else 1.0


def image_extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(x0, y0, dw, dh)`` of an image whose pixel centres are the coords."""
    x, y = _axis(da, "x"), _axis(da, "y")
    dx, dy = abs(_step(x)), abs(_step(y))
    return (float(x.min()) - dx / 2, float(y.min()) - dy / 2,
            dx * da.sizes["x"], dy * da.sizes["y"])


def image_figure(
    image: xr.DataArray,
    *,
    title: str,
    palette: str = "Viridis256",
    colorbar_title: str = "Counts",
    width: int = 420,
    min_height: int = 90,
    max_height: int = 420,
    tools: str = _TOOLS,
):
    """A map of a 2-D (``"y"``, ``"x"``) DataArray with true aspect and a colour bar.

    Row 0 is drawn at the top, as microscopes show it.  The frame height
    follows the aspect ratio of the field of view, clamped to
    ``[min_height, max_height]`` pixels so that a thin line scan stays
    clickable.

    Returns
    -------
    fig, source, mapper
        The figure, the ``ColumnDataSource`` holding the image (column
        ``"image"``) and its ``LinearColorMapper``.
    """
    img = image.transpose("y", "x")
    x0, y0, dw, dh = image_extent(img)
    xu, yu = coord_units(img, "x", "px"), coord_units(img, "y", "px")
    height = int(np.clip(width * dh / dw if dw > 0 else width, min_height, max_height))
    fig = figure(
        title=title,
        frame_width=width,
        frame_height=height,
        x_range=Range1d(x0, x0 + dw, bounds=(x0, x0 + dw)),
        y_range=Range1d(y0 + dh, y0, bounds=(y0, y0 + dh)),
        x_axis_label=f"x ({xu})",
        y_axis_label=f"y ({yu})",
        tools=tools,
        toolbar_location="right",
    )
    values = np.asarray(img.values, dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.5))) \
        if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    mapper = LinearColorMapper(palette=palette, low=lo, high=hi, nan_color="#d9d9d9")
    source = ColumnDataSource({"image": [values], "x": [x0], "y": [y0], "dw": [dw], "dh": [dh]})
    fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source,
              color_mapper=mapper, level="image")
    bar = ColorBar(color_mapper=mapper, title=colorbar_title, width=10,
                   label_standoff=6, title_standoff=6)
    if colorbar_title in ("Counts", "Intensity") and hi >= 1e6:
        bar.formatter = BasicTickFormatter(use_scientific=True, power_limit_high=5, precision=1)
    elif colorbar_title in ("Counts", "Intensity") and hi >= 1000:
        bar.formatter = counts_formatter()
    fig.add_layout(bar, "right")
    for axis, dim in ((fig.xaxis, "x"), (fig.yaxis, "y")):
        centres = _axis(img, dim)
        if centres.size <= 8:
            axis.ticker = FixedTicker(ticks=[float(v) for v in centres])
            axis.major_label_overrides = {float(v): f"{v:.3g}" for v in centres}
    fig.grid.visible = False
    fig.toolbar.logo = None
    return fig, source, mapper


def map_sources(image: xr.DataArray, values: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Columns of the pixel grid that carries taps, box selections and hover.

    One row per pixel, in C order (``k = iy * nx + ix``): centres ``x``, ``y``
    (coordinate units), widths ``w``, ``h``, indices ``ix``, ``iy`` and the
    shown ``value``.
    """
    img = image.transpose("y", "x")
    x, y = _axis(img, "x"), _axis(img, "y")
    yy, xx = np.meshgrid(y, x, indexing="ij")
    iy, ix = np.meshgrid(np.arange(y.size), np.arange(x.size), indexing="ij")
    vals = np.asarray(img.values if values is None else values, dtype=float).ravel()
    n = vals.size
    return {
        "x": xx.ravel(), "y": yy.ravel(),
        "w": np.full(n, abs(_step(x))), "h": np.full(n, abs(_step(y))),
        "ix": ix.ravel(), "iy": iy.ravel(), "value": vals,
    }


def add_pixel_grid(fig, image: xr.DataArray, *, value_name: str = "Counts",
                   value_format: str = "0,0", source: ColumnDataSource | None = None):
    """Add an invisible, selectable rectangle per pixel (tap / box select / hover).

    Returns the ``ColumnDataSource`` (``source`` if given, so several maps
    can share one selection); its ``selected.indices`` are the selected
    pixels in C order.
    """
    from bokeh.models import BoxSelectTool, TapTool

    if source is None:
        source = ColumnDataSource(map_sources(image))
    rects = fig.rect("x", "y", "w", "h", source=source, fill_alpha=0.0, line_alpha=0.0,
                     selection_fill_alpha=0.0, selection_line_alpha=0.0,
                     nonselection_fill_alpha=0.0, nonselection_line_alpha=0.0)
    xu = coord_units(image, "x", "px")
    fig.add_tools(
        TapTool(renderers=[rects]),
        BoxSelectTool(renderers=[rects]),
        HoverTool(renderers=[rects], tooltips=[
            ("pixel (row, col)", "(@iy, @ix)"),
            (f"position ({xu})", "(@x{0.0}, @y{0.0})"),
            (value_name, f"@value{{{value_format}}}"),
        ]),
    )
    fig.toolbar.active_tap = fig.select_one(TapTool)
    return source


def pixel_outline(fig, color: str = "#ff3b30"):
    """An outline marking the selected pixel or region; returns its source.

    The source has one rectangle (columns ``x``, ``y``, ``w``, ``h``)."""
    source = ColumnDataSource({"x": [0.0], "y": [0.0], "w": [0.0], "h": [0.0]})
    fig.rect("x", "y", "w", "h", source=source, fill_alpha=0.0, line_color=color,
             line_width=2.5)
    return source


def outline_data(image: xr.DataArray, rows: tuple[int, int], cols: tuple[int, int]) -> dict:
    """Rectangle around pixels ``rows[0]:rows[1]``, ``cols[0]:cols[1]`` (half-open)."""
    img = image.transpose("y", "x")
    x, y = _axis(img, "x"), _axis(img, "y")
    dx, dy = abs(_step(x)), abs(_step(y))
    xs = x[cols[0]:cols[1]]
    ys = y[rows[0]:rows[1]]
    return {"x": [float(xs.mean())], "y": [float(ys.mean())],
            "w": [float(abs(xs[-1] - xs[0]) + dx)], "h": [float(abs(ys[-1] - ys[0]) + dy)]}


def spectrum_figure(
    *,
    title: str,
    x_label: str,
    y_label: str = "Counts",
    width: int = 640,
    height: int = 260,
    y_axis_type: str = "linear",
    x_range=None,
    tools: str = "xpan,xwheel_zoom,box_zoom,reset,save",
    frame_height: int | None = None,
):
    """An empty spectrum figure (energy on x) with labelled axes.

    ``frame_height`` (pixels of the plotting area) instead of ``height``
    keeps the data area fixed when a legend is placed above it.
    """
    kwargs = {"x_range": x_range} if x_range is not None else {}
    if frame_height is not None:
        kwargs["frame_height"] = int(frame_height)
    else:
        kwargs["height"] = int(height)
    y_range = Range1d(0.1, 10.0) if y_axis_type == "log" else Range1d(0.0, 1.0)
    fig = figure(
        y_range=y_range,
        title=title,
        width=width,
        x_axis_label=x_label,
        y_axis_label=y_label,
        y_axis_type=y_axis_type,
        tools=tools,
        active_scroll="xwheel_zoom" if "xwheel_zoom" in tools else None,
        toolbar_location="right",
        **kwargs,
    )
    fig.toolbar.logo = None
    if y_axis_type == "linear" and y_label.startswith("Counts"):
        fig.yaxis.formatter = counts_formatter()
    return fig


def window_box(fig, window: tuple[float, float], *, color: str = "#E69F00",
               editable: bool = True) -> BoxAnnotation:
    """A vertical band ``window = (lo, hi)`` (x data units) the user can drag.

    Dragging or resizing it in the browser changes its ``left`` / ``right``
    properties, which the widgets observe.
    """
    box = BoxAnnotation(left=float(window[0]), right=float(window[1]),
                        fill_color=color, fill_alpha=0.18, line_color=color,
                        line_alpha=0.9, line_width=1.5, editable=editable,
                        resizable="x", movable="x")
    fig.add_layout(box)
    return box


def visible_y_range(energy: np.ndarray, curves: Sequence[np.ndarray],
                    lo: float, hi: float, *, log: bool = False,
                    pad: float = 0.05) -> tuple[float, float]:
    """y limits that fit ``curves`` within ``lo <= energy <= hi``.

    With ``log=True`` only positive values count and the padding is applied
    in decades.
    """
    sel = (energy >= min(lo, hi)) & (energy <= max(lo, hi))
    vals = [np.asarray(c, dtype=float)[sel] for c in curves if c is not None]
    v = np.concatenate(vals) if vals else np.array([])
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
        if v.size == 0:
            return 0.1, 10.0
        a, b = np.log10(v.min()), np.log10(v.max())
        span = max(b - a, 0.1)
        return float(10 ** (a - pad * span)), float(10 ** (b + pad * span))
    if v.size == 0:
        return 0.0, 1.0
    a, b = float(v.min()), float(v.max())
    span = b - a if b > a else max(abs(a), 1.0)
    return a - pad * span, b + pad * span


def stack(*items):
    """Vertical Bokeh layout of the non-``None`` items."""
    return column(*[i for i in items if i is not None])
