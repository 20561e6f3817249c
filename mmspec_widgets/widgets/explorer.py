"""Explore a spectrum image: survey image, navigator map and linked spectrum."""

from __future__ import annotations

import copy

import ipywidgets as ipw
import numpy as np
import traitlets as tl
import xarray as xr
from bokeh.layouts import column, row

from ..errors import DataError
from . import plots as P
from .base import EchoGuard, WidgetBase

__all__ = ["Explorer", "region_spectrum", "energy_calibration_note"]


def region_spectrum(si: xr.DataArray, rows: tuple[int, int], cols: tuple[int, int]) -> xr.DataArray:
    """Sum of the spectra of pixels ``rows[0]:rows[1]``, ``cols[0]:cols[1]``.

    Parameters
    ----------
    si : xarray.DataArray
        Spectrum image, dims ``("y", "x", "energy")``.
    rows, cols : tuple of int
        Half-open pixel index ranges along ``y`` and ``x``.

    Returns
    -------
    xarray.DataArray
        Dims ``("energy",)``, counts summed over the region; the energy
        coordinate and attrs of ``si`` are kept and the step is appended to
        ``attrs["history"]``.
    """
    ny, nx = si.sizes["y"], si.sizes["x"]
    r0, r1 = int(rows[0]), int(rows[1])
    c0, c1 = int(cols[0]), int(cols[1])
    if not (0 <= r0 < r1 <= ny and 0 <= c0 < c1 <= nx):
        raise DataError(
            f"region rows={rows}, cols={cols}: expected 0 <= start < stop <= "
            f"({ny}, {nx}) pixel indices")
    part = si.isel(y=slice(r0, r1), x=slice(c0, c1))
    if (r1 - r0) * (c1 - c0) == 1:
        out = part.isel(y=0, x=0, drop=True)
        step = {"step": "select_pixel", "params": {"row": r0, "col": c0}}
    else:
        out = part.sum(("y", "x"), keep_attrs=True)
        step = {"step": "sum_region", "params": {"rows": [r0, r1], "cols": [c0, c1],
                                                 "n_pixels": (r1 - r0) * (c1 - c0)}}
    out = out.compute() if hasattr(out.data, "dask") else out.copy()
    out.attrs = copy.deepcopy(dict(si.attrs))
    out.attrs["history"] = list(out.attrs.get("history", [])) + [step]
    return out


def energy_calibration_note(si: xr.DataArray) -> str:
    """What a viewer should know about the energy axis of ``si``, from its history.

    Returns ``""`` when a reference-feature calibration
    (:func:`mmspec_widgets.calibrate.apply_calibration`, run by
    :func:`~mmspec_widgets.calibrate.calibrate`) is recorded in
    ``attrs["history"]``; otherwise a sentence saying that the axis is the
    spectrometer's (only zero-loss aligned, or as recorded).
    """
    hist = si.attrs.get("history", [])
    if isinstance(hist, str):
        import json

        try:
            hist = json.loads(hist)
        except ValueError:
            hist = []
    steps = [h.get("step") for h in hist if isinstance(h, dict)] if isinstance(hist, list) else []
    if "apply_calibration" in steps:
        return ""
    fix = "calibrate with mmspec_widgets.calibrate or the Calibration widget"
    if "align_zero_loss" in steps:
        return ("Energy axis zero-loss aligned but not calibrated on reference features "
                f"(dispersion as recorded): {fix}.")
    return f"Energy axis as recorded by the spectrometer, not calibrated: {fix}."


class Explorer(WidgetBase):
    """Look at a spectrum image: survey image, navigator map, linked spectrum.

    Click a pixel of the navigator map (or set :attr:`pixel`) to show its
    spectrum; draw a box (box-select tool, or set :attr:`region`) to show the
    summed spectrum of a region.  The navigator shows the counts integrated
    over the energy range shown in the spectrum plot, so zooming onto an
    edge turns it into an elemental map.

    Parameters
    ----------
    si : xarray.DataArray
        Spectrum image, dims ``("y", "x", "energy")``; ``x``/``y`` in nm,
        ``energy`` in eV (may be dask-backed).
    survey : xarray.DataArray, optional
        Survey image (ADF/HAADF), dims ``("y", "x")`` in nm.
    si_area : tuple of float, optional
        ``(x0, y0, x1, y1)`` of the spectrum-image area on the survey image,
        in the survey's coordinate units (nm); drawn as a rectangle.
    pixel : tuple of int
        Initial pixel ``(row, col)``.
    log_scale : bool
        Logarithmic counts axis.
    energy_range : tuple of float, optional
        Initial energy zoom ``(lo, hi)`` in eV; the whole axis by default.

    Attributes
    ----------
    pixel : tuple of int
        Selected pixel ``(row, col)`` (trait).
    region : tuple of int or None
        ``(row0, row1, col0, col1)`` half-open region whose spectra are
        summed, or ``None`` for the single :attr:`pixel` (trait).
    log_scale : bool
        Log counts axis (trait).
    energy_range : tuple of float
        Shown energy range in eV (trait); follows zooming in the plot.
    result : xarray.DataArray
        The spectrum shown, dims ``("energy",)``, with its history.
    """

    pixel = tl.Tuple(tl.Int(), tl.Int(), default_value=(0, 0))
    region = tl.Tuple(tl.Int(), tl.Int(), tl.Int(), tl.Int(), allow_none=True,
                      default_value=None)
    log_scale = tl.Bool(False)
    energy_range = tl.Tuple(tl.Float(), tl.Float(), default_value=(0.0, 1.0))
    result = tl.Instance(xr.DataArray, allow_none=True)

    def __init__(self, si: xr.DataArray, survey: xr.DataArray | None = None, *,
                 si_area: tuple[float, float, float, float] | None = None,
                 pixel: tuple[int, int] = (0, 0), log_scale: bool = False,
                 energy_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.si = P.check_si(si, "si")
        if survey is not None:
            survey = P.check_si(survey, "survey", dims=("y", "x"))
        self.survey = survey
        self.energy = np.asarray(self.si.coords["energy"].values, dtype=float)
        self._e_full = (float(self.energy.min()), float(self.energy.max()))
        self._busy = False
        self._slider_echo = EchoGuard(tol=0.5 * float(abs(self.energy[1] - self.energy[0])))
        self._build(si_area)
        self.set_trait("log_scale", bool(log_scale))
        self.energy_range = tuple(energy_range) if energy_range is not None else self._e_full
        self.pixel = tuple(pixel)
        self._show()
        self._apply_scale()

    # ------------------------------------------------------------------ build
    def _build(self, si_area) -> None:
        self.calibration_note = energy_calibration_note(self.si)
        x_label = P.energy_label(self.si)
        if self.calibration_note:
            x_label = x_label.replace(")", ", uncalibrated)") if x_label.endswith(")") \
                else x_label + " (uncalibrated)"
        total = self._map(*self._e_full)
        self.map_fig, self.map_source, self.map_mapper = P.image_figure(
            total, title="Spectrum image: counts in shown energy range",
            colorbar_title="Counts", width=320 if self.survey is not None else 560)
        self.grid_source = P.add_pixel_grid(self.map_fig, total)
        self.outline_source = P.pixel_outline(self.map_fig)
        self.grid_source.selected.on_change("indices", self._on_select)

        figs = [self.map_fig]
        self.survey_fig = None
        if self.survey is not None:
            self.survey_fig, _, _ = P.image_figure(
                self.survey, title=str(self.survey.attrs.get("title", "Survey image")),
                palette="Greys256", colorbar_title="Intensity", width=250)
            if si_area is not None:
                x0, y0, x1, y1 = (float(v) for v in si_area)
                self.survey_fig.rect(x=[(x0 + x1) / 2], y=[(y0 + y1) / 2],
                                     width=[abs(x1 - x0)], height=[abs(y1 - y0)],
                                     fill_alpha=0.0, line_color="#ff3b30", line_width=2,
                                     legend_label="spectrum image")
                self.survey_fig.legend.location = "bottom_right"
                self.survey_fig.legend.background_fill_alpha = 0.6
            figs.insert(0, self.survey_fig)

        self.spectrum_source = P.ColumnDataSource(
            {"energy": self.energy, "counts": np.zeros_like(self.energy),
             "counts_log": np.full_like(self.energy, np.nan)})
        e0, e1 = self._e_full
        self.lin_fig = P.spectrum_figure(title="Spectrum", x_label=x_label, width=760,
                                         x_range=P.Range1d(e0, e1, bounds=(e0, e1)))
        self.log_fig = P.spectrum_figure(title="Spectrum (log scale)", x_label=x_label,
                                         y_axis_type="log", x_range=self.lin_fig.x_range,
                                         width=760)
        self.lin_fig.line("energy", "counts", source=self.spectrum_source,
                          color=P.SPECTRUM_COLORS[0], line_width=1.5)
        self.log_fig.line("energy", "counts_log", source=self.spectrum_source,
                          color=P.SPECTRUM_COLORS[0], line_width=1.5)
        self.lin_fig.x_range.on_change("start", self._on_x_range)
        self.lin_fig.x_range.on_change("end", self._on_x_range)

        top = row(*figs)
        self.layout = column(top, self.lin_fig, self.log_fig)
        self.plot = self._wrap(self.layout)

        lo, hi = self._e_full
        step = float(abs(self.energy[1] - self.energy[0]))
        self.scale_toggle = ipw.ToggleButtons(options=["linear", "log"], value="linear",
                                              description="Counts axis:",
                                              style={"button_width": "70px"})
        self.range_slider = ipw.FloatRangeSlider(
            value=(lo, hi), min=lo, max=hi, step=step, description="Energy (eV):",
            continuous_update=False, readout_format=".1f",
            layout=ipw.Layout(width="520px"), style={"description_width": "90px"})
        self.whole_button = ipw.Button(description="Sum whole SI", icon="plus-square",
                                       tooltip="Show the sum of all pixels' spectra")
        self.info = ipw.HTML()
        self.scale_toggle.observe(self._on_toggle, "value")
        self.range_slider.observe(self._on_slider, "value")
        self.whole_button.on_click(lambda _b: self.select_all())
        controls = ipw.HBox([self.scale_toggle, self.range_slider, self.whole_button],
                            layout=ipw.Layout(flex_flow="row wrap", align_items="center"))
        self.map_fig.name, self.lin_fig.name = "explorer-map", "explorer-spectrum"
        self.log_fig.name = "explorer-spectrum-log"
        self.ui = ipw.VBox([controls, self.info, self.plot])
        self.ui.add_class("mmspec-explorer")

    def _map(self, lo: float, hi: float) -> xr.DataArray:
        part = self.si.sel(energy=slice(min(lo, hi), max(lo, hi)))
        if part.sizes["energy"] == 0:
            part = self.si
        out = part.sum("energy")
        return out.compute() if hasattr(out.data, "dask") else out

    # -------------------------------------------------------------- public API
    def select_all(self) -> None:
        """Show the summed spectrum of the whole spectrum image."""
        self.region = (0, self.si.sizes["y"], 0, self.si.sizes["x"])

    def select_xy(self, x: float, y: float) -> None:
        """Select the pixel nearest to position ``(x, y)`` (coordinate units, nm)."""
        ix = int(np.abs(self.si.coords["x"].values - x).argmin())
        iy = int(np.abs(self.si.coords["y"].values - y).argmin())
        self.region = None
        self.pixel = (iy, ix)

    # ----------------------------------------------------------- trait logic
    @tl.validate("pixel")
    def _valid_pixel(self, proposal):
        r, c = proposal["value"]
        ny, nx = self.si.sizes["y"], self.si.sizes["x"]
        if not (0 <= r < ny and 0 <= c < nx):
            raise DataError(f"pixel={proposal['value']}: expected (row, col) within "
                            f"(0..{ny - 1}, 0..{nx - 1})")
        return (int(r), int(c))

    @tl.validate("region")
    def _valid_region(self, proposal):
        reg = proposal["value"]
        if reg is None:
            return None
        r0, r1, c0, c1 = reg
        ny, nx = self.si.sizes["y"], self.si.sizes["x"]
        if not (0 <= r0 < r1 <= ny and 0 <= c0 < c1 <= nx):
            raise DataError(f"region={reg}: expected (row0, row1, col0, col1) half-open "
                            f"within {ny} rows and {nx} columns")
        return tuple(int(v) for v in reg)

    @tl.validate("energy_range")
    def _valid_range(self, proposal):
        lo, hi = sorted(float(v) for v in proposal["value"])
        lo, hi = max(lo, self._e_full[0]), min(hi, self._e_full[1])
        if hi <= lo:
            raise DataError(f"energy_range={proposal['value']}: expected (lo, hi) in eV "
                            f"overlapping {self._e_full}")
        return (lo, hi)

    @tl.observe("pixel", "region")
    def _on_selection_trait(self, _change) -> None:
        self._show()

    @tl.observe("log_scale")
    def _on_log(self, change) -> None:
        self.scale_toggle.value = "log" if change["new"] else "linear"
        self._apply_scale()

    @tl.observe("energy_range")
    def _on_energy_range(self, change) -> None:
        lo, hi = change["new"]
        if not self._busy:
            self._busy = True
            try:
                self.lin_fig.x_range.start, self.lin_fig.x_range.end = lo, hi
            finally:
                self._busy = False
        if tuple(self.range_slider.value) != (lo, hi):
            self._slider_echo.pushed((lo, hi))
            self.range_slider.value = (lo, hi)
        self._update_map()
        self._rescale_y()

    # ------------------------------------------------------ browser callbacks
    def _on_select(self, _attr, _old, new) -> None:
        if not new:
            return
        iy = np.asarray(self.grid_source.data["iy"])[list(new)]
        ix = np.asarray(self.grid_source.data["ix"])[list(new)]
        if len(new) == 1:
            self.region = None
            self.pixel = (int(iy[0]), int(ix[0]))
        else:
            self.region = (int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1)

    def _on_x_range(self, _attr, _old, _new) -> None:
        if self._busy:
            return
        start, end = self.lin_fig.x_range.start, self.lin_fig.x_range.end
        if start is None or end is None:
            return
        self._busy = True
        try:
            self.energy_range = (float(start), float(end))
        finally:
            self._busy = False

    def _on_toggle(self, change) -> None:
        self.log_scale = change["new"] == "log"

    def _on_slider(self, change) -> None:
        # ignore the slider's (possibly late) echo of ranges set by zooming the plot
        if self._slider_echo.is_echo(change["new"]):
            return
        self.energy_range = tuple(change["new"])

    # ------------------------------------------------------------------ views
    def _selection(self) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.region is not None:
            r0, r1, c0, c1 = self.region
            return (r0, r1), (c0, c1)
        r, c = self.pixel
        return (r, r + 1), (c, c + 1)

    def _show(self) -> None:
        rows, cols = self._selection()
        spec = region_spectrum(self.si, rows, cols)
        self.result = spec
        counts = np.asarray(spec.values, dtype=float)
        self.spectrum_source.data = {
            "energy": self.energy, "counts": counts,
            "counts_log": np.where(counts > 0, counts, np.nan)}
        total_map = self._map(*self._e_full)
        self.outline_source.data = P.outline_data(total_map, rows, cols)
        n = (rows[1] - rows[0]) * (cols[1] - cols[0])
        xu = P.coord_units(self.si, "x", "px")
        x = self.si.coords["x"].values[cols[0]:cols[1]]
        y = self.si.coords["y"].values[rows[0]:rows[1]]
        if n == 1:
            what = (f"pixel (row {rows[0]}, col {cols[0]}) at x = {x[0]:.1f} {xu}, "
                    f"y = {y[0]:.1f} {xu}")
            title = f"Spectrum of pixel (row {rows[0]}, col {cols[0]})"
        else:
            what = (f"sum of {n} pixels: rows {rows[0]}-{rows[1] - 1}, "
                    f"cols {cols[0]}-{cols[1] - 1}")
            title = f"Summed spectrum of {n} pixels"
        self.lin_fig.title.text = title
        self.log_fig.title.text = title + " (log scale)"
        note = (f"<br><span style='color:#b35806'>&#9888; {self.calibration_note}</span>"
                if self.calibration_note else "")
        self.info.value = (f"<b>Shown:</b> {what} &nbsp;|&nbsp; total "
                           f"{np.nansum(counts):.3g} counts{note}")
        self._rescale_y()

    def _update_map(self) -> None:
        lo, hi = self.energy_range
        m = self._map(lo, hi)
        vals = np.asarray(m.values, dtype=float)
        self.map_source.data = dict(self.map_source.data, image=[vals])
        finite = vals[np.isfinite(vals)]
        if finite.size:
            a, b = float(finite.min()), float(finite.max())
            self.map_mapper.low, self.map_mapper.high = a, (b if b > a else a + 1.0)
        self.grid_source.data = dict(self.grid_source.data, value=vals.ravel())
        self.map_fig.title.text = f"Counts in {lo:.1f}-{hi:.1f} eV (click a pixel, box-select a region)"

    def _apply_scale(self) -> None:
        self.lin_fig.visible = not self.log_scale
        self.log_fig.visible = self.log_scale
        self._rescale_y()

    def _rescale_y(self) -> None:
        if not hasattr(self, "spectrum_source"):
            return
        lo, hi = self.energy_range
        counts = np.asarray(self.spectrum_source.data["counts"], dtype=float)
        fig = self.log_fig if self.log_scale else self.lin_fig
        a, b = P.visible_y_range(self.energy, [counts], lo, hi, log=self.log_scale)
        fig.y_range.start, fig.y_range.end = a, b
