"""Pre-edge background subtraction with a draggable fit window and live preview."""

from __future__ import annotations

import html
import warnings
from functools import partial

import ipywidgets as ipw
import numpy as np
import traitlets as tl
import xarray as xr
from bokeh.layouts import column, row

from ..edges import EDGE_ORDER, EDGES, get_edge
from ..errors import DataError, MMSpecError
from . import plots as P
from .base import EchoGuard, ModelEcho, WidgetBase
from .explorer import region_spectrum

__all__ = ["BackgroundSubtraction", "MODELS"]

#: Background models offered in the dropdown (passed to
#: :func:`mmspec_widgets.background.subtract_background`).
MODELS = ("powerlaw", "exponential", "polynomial")

_MODEL_LABELS = {"powerlaw": "Power law  A·E^-r", "exponential": "Exponential  A·exp(-bE)",
                 "polynomial": "Polynomial"}


def _subtract(spectrum: xr.DataArray, window, model: str, fit_kwargs: dict, *,
              with_background: bool = False):
    from ..background import subtract_background

    return subtract_background(spectrum, window=tuple(window), model=model,
                               return_background=with_background, **fit_kwargs)


def _format_params(params: xr.DataArray, model: str) -> str:
    vals = {str(k): float(v) for k, v in zip(params["param"].values, params.values, strict=True)}
    if model == "powerlaw" and "r" in vals:
        return f"exponent r = {vals['r']:.2f}"
    if model == "exponential" and "tau" in vals:
        return f"decay length tau = {vals['tau']:.1f} eV"
    return ""


def edges_in_range(energy: np.ndarray) -> list[str]:
    """Edges of the table whose pre-edge window and grid lie in ``energy`` (eV)."""
    lo, hi = float(np.min(energy)), float(np.max(energy))
    out = []
    for name in EDGE_ORDER:
        e = EDGES[name]
        if e.pre_edge[0] >= lo and e.grid[1] <= hi:
            out.append(name)
    return out


class BackgroundSubtraction(WidgetBase):
    """Choose a pre-edge window and model, preview, then subtract on the whole SI.

    The fit window is the orange band on the spectra: drag it or its edges
    (or set :attr:`window`).  The preview fits the selected pixel and the
    summed spectrum with :func:`mmspec_widgets.background.subtract_background`
    and shows the data, the fitted background extrapolated under the edge,
    the background-subtracted signal and the fit residual in the window.
    "Apply to SI" runs the same function on every pixel, row by row, with a
    progress bar; :attr:`result` then holds the background-subtracted SI.

    Parameters
    ----------
    si : xarray.DataArray
        Spectrum image, dims ``("y", "x", "energy")``, energy in eV.
    window : tuple of float, optional
        Fit window ``(lo, hi)`` in eV; by default the pre-edge window of
        ``edge``.
    model : {"powerlaw", "exponential", "polynomial"}
        Background model.
    edge : str, optional
        Edge to prepare (``"O_K"``, ``"Mn_L23"`` ...): sets the default
        window and the energy range shown.  Default: the first edge of the
        table inside the SI's energy range.
    pixel : tuple of int
        Pixel ``(row, col)`` previewed.
    order : int
        Degree of the polynomial background.
    fit_kwargs : dict, optional
        Extra keyword arguments for ``subtract_background`` (e.g.
        ``method="lstsq"`` for a least-squares power law).

    Attributes
    ----------
    window : tuple of float
        Fit window in eV (trait).
    model : str
        Background model (trait).
    order : int
        Degree of the polynomial model (trait).
    edge : str
        Edge being prepared (trait); changing it moves the window to the
        window last chosen for that edge, else the edge's default pre-edge
        window.
    windows : dict
        ``{edge: (lo, hi)}``, the window chosen for each edge visited (trait):
        pass it to :func:`mmspec_widgets.extract.extract_edges` as
        ``windows=`` to cut every edge with the backgrounds checked here.
    pixel : tuple of int
        Previewed pixel (trait).
    preview : xarray.DataArray
        Background-subtracted spectrum of the previewed pixel.
    preview_sum : xarray.DataArray
        Background-subtracted summed spectrum.
    result : xarray.DataArray or None
        Background-subtracted SI after :meth:`apply`; ``None`` before, and
        again after the window or model change (the result would be stale).
    """

    window = tl.Tuple(tl.Float(), tl.Float(), default_value=(0.0, 1.0))
    windows = tl.Dict()
    model = tl.Unicode("powerlaw")
    order = tl.Int(2)
    edge = tl.Unicode("")
    pixel = tl.Tuple(tl.Int(), tl.Int(), default_value=(0, 0))
    result = tl.Instance(xr.DataArray, allow_none=True)
    preview = tl.Instance(xr.DataArray, allow_none=True)
    preview_sum = tl.Instance(xr.DataArray, allow_none=True)

    def __init__(self, si: xr.DataArray, window: tuple[float, float] | None = None,
                 model: str = "powerlaw", *, edge: str | None = None,
                 pixel: tuple[int, int] = (0, 0), order: int = 2,
                 fit_kwargs: dict | None = None) -> None:
        super().__init__()
        self.si = P.check_si(si, "si")
        self.energy = np.asarray(self.si.coords["energy"].values, dtype=float)
        self.fit_kwargs = dict(fit_kwargs or {})
        if "order" in self.fit_kwargs or "return_background" in self.fit_kwargs:
            raise MMSpecError("fit_kwargs: pass the polynomial degree as order=..., "
                              "and not return_background")
        self._e_full = (float(self.energy.min()), float(self.energy.max()))
        self._busy = False
        self._error: str | None = None
        self._pixel_note = self._sum_note = ""
        self._box_echo = ModelEcho()
        self._dragging = False
        self._slider_echo = EchoGuard(tol=0.5 * float(abs(self.energy[1] - self.energy[0])))
        self.edges = edges_in_range(self.energy)
        if edge is None:
            edge = self.edges[0] if self.edges else ""
        elif edge not in self.edges:
            get_edge(edge)  # unknown names raise with the list of valid ones
            raise DataError(
                f"edge={edge!r}: its pre-edge window and grid are not inside the SI energy "
                f"range {self._e_full[0]:.1f}-{self._e_full[1]:.1f} eV; edges inside: "
                f"{', '.join(self.edges) or 'none'}")
        self._sum = region_spectrum(self.si, (0, self.si.sizes["y"]), (0, self.si.sizes["x"]))
        self._ready = False
        self._build()
        self.model = model
        self.order = order
        self.pixel = tuple(pixel)
        self.edge = edge
        if window is not None:
            self.window = tuple(window)
        elif not edge:
            lo, hi = self._e_full
            self.window = (lo + 0.05 * (hi - lo), lo + 0.2 * (hi - lo))
        self._ready = True
        self._zoom_to_edge()
        self._refresh()

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        x_label = P.energy_label(self.si)
        total = self._sum_map()
        self.map_fig, _, _ = P.image_figure(total, title="Click a pixel to preview it",
                                            colorbar_title="Counts", width=380, max_height=200)
        self.grid_source = P.add_pixel_grid(self.map_fig, total)
        self.outline_source = P.pixel_outline(self.map_fig)
        self.grid_source.selected.on_change("indices", self._on_select)

        e0, e1 = self._e_full
        xr_ = P.Range1d(e0, e1, bounds=(e0, e1))
        empty = {"energy": self.energy, "data": np.zeros_like(self.energy),
                 "background": np.full_like(self.energy, np.nan),
                 "signal": np.full_like(self.energy, np.nan),
                 "residual": np.full_like(self.energy, np.nan)}
        self.pixel_source = P.ColumnDataSource(dict(empty))
        self.sum_source = P.ColumnDataSource(dict(empty))
        self.pixel_fig = P.spectrum_figure(title="Pixel", x_label=x_label, width=760,
                                           frame_height=190, x_range=xr_)
        self.sum_fig = P.spectrum_figure(title="Sum of all pixels", x_label=x_label, width=760,
                                         frame_height=190, x_range=xr_)
        self.residual_fig = P.spectrum_figure(title="Fit residual in the window",
                                              x_label=x_label,
                                              y_label="(data - fit) / fit (%)",
                                              width=760, frame_height=120, x_range=xr_)
        c = P.SPECTRUM_COLORS
        for fig, src in ((self.pixel_fig, self.pixel_source), (self.sum_fig, self.sum_source)):
            fig.line("energy", "data", source=src, color=c[0], line_width=1.3,
                     legend_label="data")
            fig.line("energy", "background", source=src, color=c[1], line_width=2,
                     line_dash="dashed", legend_label="background fit")
            fig.line("energy", "signal", source=src, color=c[2], line_width=1.3,
                     legend_label="data - background")
            fig.legend.click_policy = "hide"
            fig.legend.orientation = "horizontal"
            fig.legend.padding, fig.legend.margin, fig.legend.spacing = 2, 2, 12
            fig.legend.border_line_alpha = 0.0
            fig.legend.location = "top_right"
            fig.add_layout(fig.legend[0], "above")
        self.residual_fig.line("energy", "residual", source=self.pixel_source, color=c[0],
                               legend_label="pixel")
        self.residual_fig.line("energy", "residual", source=self.sum_source, color=c[3],
                               line_width=2, legend_label="sum")
        self.residual_fig.legend.orientation = "horizontal"
        self.residual_fig.legend.location = "top_right"
        self.residual_fig.legend.background_fill_alpha = 0.7
        # one band is dragged (on the pixel spectrum); the others follow it
        self.boxes = [P.window_box(self.pixel_fig, (e0, e0 + 1)),
                      P.window_box(self.sum_fig, (e0, e0 + 1), editable=False),
                      P.window_box(self.residual_fig, (e0, e0 + 1), editable=False)]
        self.boxes[0].on_change("left", partial(self._on_box, 0, "left"))
        self.boxes[0].on_change("right", partial(self._on_box, 0, "right"))
        xr_.on_change("start", self._on_x_range)
        xr_.on_change("end", self._on_x_range)

        self.layout = column(row(self.map_fig), self.pixel_fig, self.sum_fig, self.residual_fig)
        self.plot = self._wrap(self.layout)

        step = float(abs(self.energy[1] - self.energy[0]))
        self.edge_select = ipw.Dropdown(
            options=[(f"{EDGES[n].element} {EDGES[n].shell.replace('L23', 'L2,3')}", n)
                     for n in self.edges] or [("(none)", "")],
            description="Edge:", layout=ipw.Layout(width="190px"),
            style={"description_width": "45px"})
        self.model_select = ipw.Dropdown(
            options=[(_MODEL_LABELS[m], m) for m in MODELS], description="Model:",
            layout=ipw.Layout(width="270px"), style={"description_width": "50px"})
        self.order_slider = ipw.BoundedIntText(value=2, min=0, max=6, description="Degree:",
                                               layout=ipw.Layout(width="130px",
                                                                 display="none"),
                                               style={"description_width": "50px"})
        self.window_slider = ipw.FloatRangeSlider(
            min=self._e_full[0], max=self._e_full[1], step=step, value=self._e_full,
            description="Window (eV):", continuous_update=False, readout_format=".1f",
            layout=ipw.Layout(width="480px"), style={"description_width": "90px"})
        self.apply_button = ipw.Button(description="Apply to SI", button_style="primary",
                                       icon="play",
                                       tooltip="Subtract this background from every pixel")
        self.progress = ipw.IntProgress(value=0, min=0, max=self.si.sizes["y"],
                                        description="Progress:",
                                        layout=ipw.Layout(width="300px"))
        self.status = ipw.HTML()
        self.edge_select.observe(lambda ch: setattr(self, "edge", ch["new"]), "value")
        self.model_select.observe(lambda ch: setattr(self, "model", ch["new"]), "value")
        self.order_slider.observe(lambda ch: setattr(self, "order", ch["new"]), "value")
        self.window_slider.observe(self._on_slider, "value")
        self.apply_button.on_click(lambda _b: self.apply())
        controls = ipw.HBox([self.edge_select, self.model_select, self.order_slider,
                             self.window_slider],
                            layout=ipw.Layout(flex_flow="row wrap", align_items="center"))
        run = ipw.HBox([self.apply_button, self.progress],
                       layout=ipw.Layout(align_items="center"))
        self.map_fig.name, self.pixel_fig.name = "background-map", "background-pixel"
        self.sum_fig.name, self.residual_fig.name = "background-sum", "background-residual"
        self.ui = ipw.VBox([controls, run, self.status, self.plot])
        self.ui.add_class("mmspec-background")

    def _sum_map(self) -> xr.DataArray:
        m = self.si.sum("energy")
        return m.compute() if hasattr(m.data, "dask") else m

    # ----------------------------------------------------------- validation
    @tl.validate("model")
    def _valid_model(self, proposal):
        m = proposal["value"]
        if m not in MODELS:
            raise MMSpecError(f"model={m!r}: expected one of {', '.join(MODELS)}")
        return m

    @tl.validate("window")
    def _valid_window(self, proposal):
        lo, hi = (float(v) for v in proposal["value"])
        if lo > hi:
            lo, hi = hi, lo
        e0, e1 = self._e_full
        if not (e0 <= lo < hi <= e1):
            raise DataError(f"window={proposal['value']}: expected (lo, hi) in eV with "
                            f"{e0:.1f} <= lo < hi <= {e1:.1f} (the SI energy axis)")
        if int(((self.energy >= lo) & (self.energy <= hi)).sum()) < 3:
            raise DataError(f"window={proposal['value']}: fewer than 3 channels inside; "
                            "widen it")
        return (lo, hi)

    @tl.validate("pixel")
    def _valid_pixel(self, proposal):
        r, c = proposal["value"]
        ny, nx = self.si.sizes["y"], self.si.sizes["x"]
        if not (0 <= r < ny and 0 <= c < nx):
            raise DataError(f"pixel={proposal['value']}: expected (row, col) within "
                            f"(0..{ny - 1}, 0..{nx - 1})")
        return (int(r), int(c))

    @tl.validate("edge")
    def _valid_edge(self, proposal):
        e = proposal["value"]
        if e and e not in self.edges:
            raise DataError(f"edge={e!r}: expected one of {', '.join(self.edges) or 'none'} "
                            "(edges inside the SI energy range)")
        return e

    # ------------------------------------------------------------- observers
    @tl.observe("window")
    def _on_window(self, change) -> None:
        lo, hi = change["new"]
        if self.edge:
            self.windows = {**self.windows, self.edge: (lo, hi)}
        self._busy = True
        try:
            for i, box in enumerate(self.boxes):  # only what differs: never fight a drag
                self._box_echo.set(box, i, left=lo, right=hi)
            if not self._near(self.window_slider.value, (lo, hi)):
                self._slider_echo.pushed((lo, hi))
                self.window_slider.value = (lo, hi)
            xr_ = self.pixel_fig.x_range  # keep the whole window in view
            margin = 0.1 * (hi - lo)
            if self._ready and not self._dragging and \
                    (lo - margin < xr_.start or hi + margin > xr_.end):
                span = xr_.end - xr_.start
                start = max(self._e_full[0], min(lo - margin, xr_.start))
                xr_.start, xr_.end = start, min(self._e_full[1], max(start + span, hi + margin))
        finally:
            self._busy = False
        self.result = None
        self._refresh()

    @tl.observe("model")
    def _on_model(self, change) -> None:
        self.model_select.value = change["new"]
        self.order_slider.layout.display = "" if change["new"] == "polynomial" else "none"
        self.result = None
        self._refresh()

    @tl.validate("order")
    def _valid_order(self, proposal):
        o = int(proposal["value"])
        if not 0 <= o <= 6:
            raise MMSpecError(f"order={proposal['value']!r}: expected a polynomial degree 0 - 6")
        return o

    @tl.observe("order")
    def _on_order(self, change) -> None:
        self.order_slider.value = change["new"]
        if self.model == "polynomial":
            self.result = None
            self._refresh()

    def _kwargs(self) -> dict:
        kw = dict(self.fit_kwargs)
        if self.model == "polynomial":
            kw["order"] = self.order
        return kw

    @tl.observe("pixel")
    def _on_pixel(self, change) -> None:
        self._refresh(which="pixel")

    @tl.observe("edge")
    def _on_edge(self, change) -> None:
        if change["new"]:
            self.edge_select.value = change["new"]
            self.window = self.windows.get(change["new"], get_edge(change["new"]).pre_edge)
            self._zoom_to_edge()

    # ------------------------------------------------------ browser callbacks
    def _on_box(self, i: int, attr: str, _attr, _old, new) -> None:
        if self._busy or self._box_echo.is_echo(i, attr, new):
            return
        box = self.boxes[i]
        if (box.left, box.right) == tuple(self.window):
            return
        self._dragging = True  # the band moves under the mouse: do not pan the view
        try:
            self.window = (box.left, box.right)
        except MMSpecError as err:
            self._busy = True  # snap the band back, keep the preview as it was
            try:
                lo, hi = self.window
                for j, b in enumerate(self.boxes):
                    self._box_echo.set(b, j, left=lo, right=hi)
            finally:
                self._busy = False
            self.status.value = (f"<span style='color:#b00'>Window not moved: "
                                 f"{html.escape(str(err))}</span>")
        finally:
            self._dragging = False

    def _near(self, a, b) -> bool:
        """Within half a channel (the slider rounds to its step)."""
        half = 0.5 * float(abs(self.energy[1] - self.energy[0]))
        return all(abs(float(u) - float(v)) <= half for u, v in zip(a, b, strict=True))

    def _on_slider(self, change) -> None:
        # ignore the slider's (possibly late) echo of windows set from Python or a drag
        if self._busy or self._near(change["new"], self.window) or \
                self._slider_echo.is_echo(change["new"]):
            return
        self.window = tuple(change["new"])

    def _on_select(self, _attr, _old, new) -> None:
        if new:
            k = int(new[-1])
            self.pixel = (int(self.grid_source.data["iy"][k]), int(self.grid_source.data["ix"][k]))

    def _on_x_range(self, _attr, _old, _new) -> None:
        if not self._busy:
            self._rescale_y()

    # ---------------------------------------------------------------- public
    def apply(self) -> xr.DataArray:
        """Subtract the background with the current window and model from every pixel.

        Runs :func:`mmspec_widgets.background.subtract_background` one row of
        pixels at a time so that the progress bar moves.

        Returns
        -------
        xarray.DataArray
            The background-subtracted SI, also stored in :attr:`result`; its
            ``attrs["history"]`` records the step and its parameters.
        """
        ny = self.si.sizes["y"]
        self.progress.max = ny
        self.progress.value = 0
        self.progress.bar_style = ""
        self.apply_button.disabled = True
        parts = []
        try:
            for i in range(ny):
                part = _subtract(self.si.isel(y=slice(i, i + 1)), self.window, self.model,
                                 self._kwargs())
                if hasattr(part.data, "dask"):
                    part = part.compute()
                parts.append(part)
                self.progress.value = i + 1
        except MMSpecError as err:
            self.progress.bar_style = "danger"
            self.status.value = f"<span style='color:#b00'>Apply failed: {html.escape(str(err))}</span>"
            raise
        finally:
            self.apply_button.disabled = False
        out = parts[0] if ny == 1 else xr.concat(parts, dim="y", combine_attrs="override")
        self.progress.bar_style = "success"
        lo, hi = self.window
        self.status.value = (f"Applied <b>{self.model}</b> background, window "
                             f"{lo:.1f}-{hi:.1f} eV, to {ny * self.si.sizes['x']} pixels: "
                             "<code>.result</code> holds the background-subtracted SI.")
        self.result = out
        return out

    # ------------------------------------------------------------------ views
    def _zoom_to_edge(self) -> None:
        lo, hi = self.window
        e0, e1 = self._e_full
        if self.edge:
            end = get_edge(self.edge).grid[1] + 15.0
        else:
            end = hi + 2.5 * (hi - lo)
        start = max(e0, lo - 0.15 * (hi - lo))
        self._busy = True
        try:
            for fig in (self.pixel_fig,):
                fig.x_range.start, fig.x_range.end = start, min(e1, end)
        finally:
            self._busy = False
        self._rescale_y()

    def _preview_one(self, spectrum: xr.DataArray) -> tuple[xr.DataArray, dict, str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # failed fit: reported below
            fit = _subtract(spectrum, self.window, self.model, self._kwargs(),
                            with_background=True)
        sub = fit["signal"]
        data = np.asarray(spectrum.values, dtype=float)
        signal = np.asarray(sub.values, dtype=float)
        background = np.asarray(fit["background"].values, dtype=float)
        note = _format_params(fit["params"], self.model) if np.isfinite(background).any() \
            else "fit failed (no counts in the window)"
        lo, hi = self.window
        show_bg = self.energy >= lo
        inside = (self.energy >= lo) & (self.energy <= hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.where(inside & (background != 0), 100.0 * signal / background, np.nan)
        cols = {"energy": self.energy, "data": data,
                "background": np.where(show_bg, background, np.nan),
                "signal": np.where(show_bg, signal, np.nan),
                "residual": residual}
        return sub, cols, note

    def _refresh(self, which: str = "both") -> None:
        if not self._ready:
            return
        r, c = self.pixel
        try:
            if which in ("both", "pixel"):
                spec = region_spectrum(self.si, (r, r + 1), (c, c + 1))
                self.preview, cols, self._pixel_note = self._preview_one(spec)
                self.pixel_source.data = cols
            if which == "both":
                self.preview_sum, cols, self._sum_note = self._preview_one(self._sum)
                self.sum_source.data = cols
        except MMSpecError as err:
            self._error = str(err)
            self.status.value = f"<span style='color:#b00'>Fit failed: {html.escape(str(err))}</span>"
            return
        self._error = None
        self.outline_source.data = P.outline_data(self._sum_map(), (r, r + 1), (c, c + 1))
        lo, hi = self.window
        self.sum_fig.title.text = "Sum of all pixels" + (
            f": {self._sum_note}" if self._sum_note else "")
        self.pixel_fig.title.text = f"Pixel (row {r}, col {c})" + (
            f": {self._pixel_note}" if self._pixel_note else "")
        if self.result is None:
            self.status.value = (f"Preview: <b>{self.model}</b> background fitted in "
                                 f"{lo:.1f}-{hi:.1f} eV (drag the orange band or its edges "
                                 "to move the window). Press <i>Apply to SI</i> to subtract "
                                 "it from every pixel.")
        self._rescale_y()

    def _rescale_y(self) -> None:
        if not self._ready:
            return
        start, end = self.pixel_fig.x_range.start, self.pixel_fig.x_range.end
        for fig, src in ((self.pixel_fig, self.pixel_source), (self.sum_fig, self.sum_source)):
            d = src.data
            a, b = P.visible_y_range(self.energy, [d["data"], d["signal"]], start, end)
            fig.y_range.start, fig.y_range.end = a, b
        res = [self.pixel_source.data["residual"], self.sum_source.data["residual"]]
        a, b = P.visible_y_range(self.energy, res, start, end)
        m = max(abs(a), abs(b), 1.0)
        self.residual_fig.y_range.start, self.residual_fig.y_range.end = -m, m
