"""Energy calibration: zero-loss alignment, then reference features with draggable spans."""

from __future__ import annotations

import html
from functools import partial

import ipywidgets as ipw
import numpy as np
import traitlets as tl
import xarray as xr
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, LabelSet, Range1d, Span
from bokeh.palettes import RdBu11

from ..edges import FEATURES
from ..errors import DataError, MMSpecError
from . import plots as P
from .base import ModelEcho, WidgetBase

__all__ = ["Calibration", "suggest_references"]

_SEARCH = 20.0  # eV, the library's default search half-width


def suggest_references(energy: np.ndarray, search: float = _SEARCH) -> list[str]:
    """Features of :data:`~mmspec_widgets.edges.FEATURES` whose search window
    (``energy +- search`` eV) lies inside the axis ``energy`` (eV), in energy order."""
    lo, hi = float(np.min(energy)), float(np.max(energy))
    names = [n for n, f in FEATURES.items()
             if f["energy"] - search >= lo and f["energy"] + search <= hi]
    return sorted(names, key=lambda n: FEATURES[n]["energy"])


def _default_choice(names: list[str]) -> list[str]:
    """Two features far apart: the first and the last edge's main feature."""
    if len(names) <= 2:
        return list(names)
    first, last = names[0], names[-1]
    edge_last = FEATURES[last]["edge"]
    # prefer the L3 / pre-edge feature (lowest energy) of the last edge
    last = min((n for n in names if FEATURES[n]["edge"] == edge_last),
               key=lambda n: FEATURES[n]["energy"])
    return [first, last]


class Calibration(WidgetBase):
    """Calibrate the energy axis: zero-loss alignment, then reference features.

    1. With a zero-loss SI, every pixel is shifted so that its zero-loss peak
       sits at 0 eV (:func:`mmspec_widgets.calibrate.align_zero_loss`); the
       map of zero-loss positions shows the drift.
    2. Reference features (O K pre-edge, Mn/Co/Ni L3 ...) are suggested from
       :data:`mmspec_widgets.edges.FEATURES`; each is looked for inside its
       orange span on the summed spectrum (drag or resize a span if the
       feature lies outside it) by
       :func:`mmspec_widgets.calibrate.locate_feature`, and the axis is
       corrected as ``E_true = offset + scale * E``; the residual of each
       feature is plotted.

    :attr:`result` is the calibrated SI (always up to date).

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``("y", "x", "energy")``, counts, energy in eV.
    zlp : xarray.DataArray, optional
        Zero-loss SI of the same scan.
    references : sequence of str or mapping, optional
        Feature names to use, or ``{name: true energy (eV)}``; default: two
        features far apart among those in range.
    windows : mapping, optional
        ``{name: (lo, hi)}`` search windows (eV, on the zero-loss aligned
        axis); default ``true energy +- 20 eV``.

    Attributes
    ----------
    references : dict
        Feature -> true energy (eV) used in the fit (trait).
    windows : dict
        Feature -> search window (eV) (trait); follows span dragging.
    calibration : dict
        ``offset_eV``, ``scale`` and per feature ``measured_eV``,
        ``target_eV``, ``residual_eV`` (same layout as
        :func:`mmspec_widgets.calibrate.fit_calibration`).
    aligned : xarray.DataArray
        The zero-loss aligned SI (the input when no ``zlp`` is given).
    result : xarray.DataArray
        The calibrated SI.
    """

    references = tl.Dict()
    windows = tl.Dict()
    calibration = tl.Dict()
    result = tl.Instance(xr.DataArray, allow_none=True)

    def __init__(self, si: xr.DataArray, zlp: xr.DataArray | None = None, *,
                 references=None, windows=None) -> None:
        super().__init__()
        from ..background import mask_low_counts, remove_spikes
        from ..calibrate import align_zero_loss, zero_loss_positions

        self.si = P.check_si(si, "si")
        self.zlp = P.check_si(zlp, "zlp") if zlp is not None else None
        self._ready = False
        self._busy = False
        self._box_echo = ModelEcho()
        if self.zlp is not None:
            if (self.zlp.sizes["y"], self.zlp.sizes["x"]) != (self.si.sizes["y"],
                                                               self.si.sizes["x"]):
                raise DataError(f"zlp: {self.zlp.sizes['y']}x{self.zlp.sizes['x']} pixels but "
                                f"si has {self.si.sizes['y']}x{self.si.sizes['x']}; expected "
                                "the zero-loss SI of the same scan")
            self.zlp_positions = zero_loss_positions(self.zlp).compute()
            self.aligned = align_zero_loss(self.si, positions=self.zlp_positions)
        else:
            self.zlp_positions = None
            self.aligned = self.si
        if hasattr(self.aligned.data, "dask"):
            self.aligned = self.aligned.compute()
        # the spectrum the library searches: usable pixels summed, despiked
        self._mask = mask_low_counts(self.aligned)
        self.summed = remove_spikes(self.aligned.where(self._mask).sum(("y", "x")))
        self.energy = np.asarray(self.aligned.energy.values, dtype=float)
        self.candidates = suggest_references(self.energy)
        if not self.candidates:
            raise DataError(f"si: no reference feature of the edge table lies inside "
                            f"{self.energy[0]:.1f} - {self.energy[-1]:.1f} eV (with the "
                            f"+-{_SEARCH:.0f} eV search window); features: "
                            f"{', '.join(FEATURES)}")
        refs = self._normalise_refs(references)
        self._build()
        self.references = refs
        self.windows = {**{n: self._default_window(n) for n in refs}, **dict(windows or {})}
        self._ready = True
        self._fit()

    # --------------------------------------------------------------- helpers
    def _normalise_refs(self, references) -> dict:
        if references is None:
            names = _default_choice(self.candidates)
            return {n: float(FEATURES[n]["energy"]) for n in names}
        if isinstance(references, dict):
            return {str(k): float(v) for k, v in references.items()}
        return {str(n): float(FEATURES[n]["energy"]) if n in FEATURES else np.nan
                for n in references}

    def _default_window(self, name: str) -> tuple[float, float]:
        t = float(self.references.get(name, FEATURES[name]["energy"])) if self.references \
            else float(FEATURES[name]["energy"])
        lo = max(t - _SEARCH, float(self.energy[0]))
        hi = min(t + _SEARCH, float(self.energy[-1]))
        return (lo, hi)

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        x_label = P.energy_label(self.aligned)
        figs = []
        self.zlp_fig = self.zlp_map_fig = None
        if self.zlp is not None:
            pos = self.zlp_positions.transpose("y", "x")
            med = float(np.median(pos.values))
            spread = max(float(np.max(np.abs(pos.values - med))), 0.05)
            self.zlp_map_fig, _, mapper = P.image_figure(
                pos, title="Zero-loss peak position (recorded axis)", palette=RdBu11,
                colorbar_title="eV", width=380, max_height=160)
            mapper.low, mapper.high = med - spread, med + spread
            e_rec = np.asarray(self.zlp.energy.values, dtype=float)
            z_sum = self.zlp.sum(("y", "x"))
            z_sum = np.asarray(z_sum.compute().values if hasattr(z_sum.data, "dask")
                               else z_sum.values, dtype=float)
            from ..calibrate import align_zero_loss

            z_al = align_zero_loss(self.zlp, positions=self.zlp_positions).sum(("y", "x"))
            self.zlp_fig = P.spectrum_figure(title="Zero-loss peak: before and after alignment",
                                             x_label=x_label, width=420, height=230,
                                             x_range=Range1d(-8.0, 8.0))
            self.zlp_fig.line(e_rec, z_sum, color=P.SPECTRUM_COLORS[1], line_width=1.5,
                              legend_label="recorded")
            self.zlp_fig.line(np.asarray(z_al.energy.values), np.asarray(z_al.values),
                              color=P.SPECTRUM_COLORS[0], line_width=2,
                              legend_label="aligned")
            self.zlp_fig.add_layout(Span(location=0.0, dimension="height",
                                         line_color="#555", line_dash="dotted"))
            self.zlp_fig.legend.location = "top_left"
            self.zlp_fig.legend.background_fill_alpha = 0.7
            top = max(float(np.nanmax(z_sum)), float(np.nanmax(z_al.values)))
            self.zlp_fig.y_range.start, self.zlp_fig.y_range.end = 0.0, 1.08 * top
            figs.append(row(self.zlp_map_fig, self.zlp_fig))

        e0, e1 = float(self.energy[0]), float(self.energy[-1])
        y = np.asarray(self.summed.values, dtype=float)
        self.spectrum_fig = P.spectrum_figure(
            title="Summed spectrum (zero-loss aligned axis): features are looked for "
                  "inside the orange spans",
            x_label=x_label, width=860, height=280, x_range=Range1d(e0, e1, bounds=(e0, e1)))
        self.spectrum_fig.line(self.energy, y, color=P.SPECTRUM_COLORS[0], line_width=1.4)
        a, b = P.visible_y_range(self.energy, [y], e0, e1)
        self.spectrum_fig.y_range.start, self.spectrum_fig.y_range.end = a, b + 0.12 * (b - a)
        self.marker_source = ColumnDataSource({"x": [], "y": [], "name": []})
        self.spectrum_fig.scatter("x", "y", source=self.marker_source, marker="inverted_triangle",
                                  size=11, color=P.SPECTRUM_COLORS[1])
        self.spectrum_fig.add_layout(LabelSet(x="x", y="y", text="name",
                                              source=self.marker_source, y_offset=8,
                                              x_offset=-10, text_font_size="10px",
                                              text_color=P.SPECTRUM_COLORS[1]))
        self.boxes: dict = {}
        for name in self.candidates:
            box = P.window_box(self.spectrum_fig, (e0, e0 + 1.0))
            box.visible = False
            box.on_change("left", partial(self._on_box, name, "left"))
            box.on_change("right", partial(self._on_box, name, "right"))
            self.boxes[name] = box
        figs.append(self.spectrum_fig)

        self.residual_source = ColumnDataSource({"target": [], "residual": [], "name": []})
        self.residual_fig = P.spectrum_figure(
            title="Calibration residuals", x_label="True energy of the feature (eV)",
            y_label="residual (eV)", width=500, height=230,
            tools="pan,wheel_zoom,reset,save")
        self.residual_fig.add_layout(Span(location=0.0, dimension="width", line_color="#555",
                                          line_dash="dashed"))
        self.residual_fig.scatter("target", "residual", source=self.residual_source, size=10,
                                  color=P.SPECTRUM_COLORS[3])
        self.residual_fig.add_layout(LabelSet(x="target", y="residual", text="name",
                                              source=self.residual_source, x_offset=6,
                                              y_offset=4, text_font_size="10px"))
        self.fit_info = ipw.HTML(layout=ipw.Layout(width="340px"))
        self.residual_plot = self._wrap(self.residual_fig)
        self.layout = column(*figs)
        self.plot = self._wrap(self.layout)

        self.feature_boxes = {
            n: ipw.Checkbox(value=False, indent=False,
                            description=f"{n.replace('_', ' ')} ({FEATURES[n]['energy']:.1f} eV)",
                            layout=ipw.Layout(width="175px"))
            for n in self.candidates}
        for cb in self.feature_boxes.values():
            cb.observe(self._on_checkbox, "value")
        self.status = ipw.HTML()
        chooser = ipw.HBox([ipw.HTML("<b>Reference features:</b>&nbsp;"),
                            *self.feature_boxes.values()],
                           layout=ipw.Layout(flex_flow="row wrap", align_items="center"))
        self.spectrum_fig.name = "calibration-spectrum"
        self.ui = ipw.VBox([chooser, self.status, self.plot,
                            ipw.HBox([self.residual_plot, self.fit_info])])
        self.ui.add_class("mmspec-calibration")

    # ----------------------------------------------------------- validation
    @tl.validate("references")
    def _valid_refs(self, proposal):
        refs = dict(proposal["value"])
        for n, t in refs.items():
            if n not in FEATURES:
                raise MMSpecError(f"references: unknown feature {n!r}; expected one of "
                                  f"{', '.join(FEATURES)}")
            if n not in self.candidates:
                raise DataError(f"references: feature {n!r} ({FEATURES[n]['energy']:.1f} eV) "
                                f"is not inside the SI's energy range; usable: "
                                f"{', '.join(self.candidates)}")
            if not np.isfinite(t):
                raise MMSpecError(f"references[{n!r}]={t!r}: expected a true energy in eV")
        if not refs:
            raise MMSpecError("references: choose at least one feature")
        return refs

    @tl.validate("windows")
    def _valid_windows(self, proposal):
        out = {}
        e0, e1 = float(self.energy[0]), float(self.energy[-1])
        for n, w in dict(proposal["value"]).items():
            lo, hi = sorted(float(v) for v in w)
            if n not in self.candidates:
                raise MMSpecError(f"windows: unknown or out-of-range feature {n!r}")
            if not (e0 <= lo < hi <= e1) or hi - lo < 1.0:
                raise DataError(f"windows[{n!r}]=({lo:.1f}, {hi:.1f}): expected a window of at "
                                f"least 1 eV inside {e0:.1f} - {e1:.1f} eV")
            out[n] = (lo, hi)
        return out

    # ------------------------------------------------------------- observers
    @tl.observe("references")
    def _on_refs(self, change) -> None:
        refs = change["new"]
        self._busy = True
        try:
            for n, cb in self.feature_boxes.items():
                cb.value = n in refs
        finally:
            self._busy = False
        if self._ready:
            missing = {n: self._default_window(n) for n in refs if n not in self.windows}
            if missing:
                self.windows = {**self.windows, **missing}
            else:
                self._fit()

    @tl.observe("windows")
    def _on_windows(self, change) -> None:
        self._busy = True
        try:
            for n, box in self.boxes.items():  # only what differs: never fight a drag
                if n in change["new"]:
                    lo, hi = change["new"][n]
                    self._box_echo.set(box, n, left=lo, right=hi)
        finally:
            self._busy = False
        self._fit()

    def _on_checkbox(self, change) -> None:
        if self._busy:
            return
        chosen = {n: float(FEATURES[n]["energy"]) for n, cb in self.feature_boxes.items()
                  if cb.value}
        if not chosen:  # keep at least one feature
            change["owner"].value = True
            return
        self.references = {n: self.references.get(n, t) for n, t in chosen.items()}

    def _on_box(self, n: str, attr: str, _attr, _old, new) -> None:
        if self._busy or n not in self.windows or self._box_echo.is_echo(n, attr, new):
            return
        box = self.boxes[n]
        if (box.left, box.right) == tuple(self.windows[n]):
            return
        try:
            self.windows = {**self.windows, n: (box.left, box.right)}
        except MMSpecError as err:
            self._busy = True  # snap the span back, keep the fit as it was
            try:
                lo, hi = self.windows[n]
                self._box_echo.set(box, n, left=lo, right=hi)
            finally:
                self._busy = False
            self.status.value = (f"<span style='color:#b00'>Span not moved: "
                                 f"{html.escape(str(err))}</span>")

    # ---------------------------------------------------------------- compute
    def moved_windows(self) -> dict:
        """Search windows placed by hand (those differing from ``true energy +- 20 eV``)."""
        return {n: tuple(w) for n, w in self.windows.items()
                if n in self.references and tuple(w) != self._default_window(n)}

    def _fit(self) -> None:
        """Run :func:`mmspec_widgets.calibrate.calibrate` on the aligned SI."""
        if not self._ready:
            return
        from ..calibrate import calibrate

        names = list(self.references)
        try:
            out = calibrate(self.aligned, references=dict(self.references),
                            window=self.moved_windows() or None, mask=self._mask)
        except MMSpecError as err:
            self.status.value = f"<span style='color:#b00'>Fit failed: {html.escape(str(err))}</span>"
            return
        refs = out.attrs["calibration_references"]
        cal = {"offset_eV": float(out.attrs["calibration_offset_eV"]),
               "scale": float(out.attrs["calibration_scale"]),
               "references": {n: dict(refs[n]) for n in names}}
        self.calibration = cal
        self.result = out
        measured = np.array([refs[n]["measured_eV"] for n in names])
        targets = np.array([refs[n]["target_eV"] for n in names])
        resid = np.array([refs[n]["residual_eV"] for n in names])
        self._show(names, measured, targets, resid, cal["offset_eV"], cal["scale"])

    # ------------------------------------------------------------------ views
    def _show(self, names, measured, targets, resid, offset, scale) -> None:
        for n, box in self.boxes.items():
            box.visible = n in self.references
        y = np.asarray(self.summed.values, dtype=float)
        ym = np.interp(measured, self.energy, y)
        self.marker_source.data = {"x": list(measured), "y": list(ym),
                                   "name": [n.replace("_", " ") for n in names]}
        self.residual_source.data = {"target": list(targets), "residual": list(resid),
                                     "name": [n.replace("_", " ") for n in names]}
        m = max(float(np.max(np.abs(resid))) * 1.3, 0.5)
        self.residual_fig.y_range.start, self.residual_fig.y_range.end = -m, m
        lo, hi = float(np.min(targets)), float(np.max(targets))
        pad = max(20.0, 0.1 * (hi - lo))
        self.residual_fig.x_range.start, self.residual_fig.x_range.end = lo - pad, hi + pad
        step = float(np.median(np.diff(self.energy)))
        zl = ""
        if self.zlp_positions is not None:
            pos = np.asarray(self.zlp_positions.values, dtype=float)
            zl = (f"Zero-loss peak at {float(np.median(pos)):.2f} eV (median), "
                  f"spread {float(np.ptp(pos)):.2f} eV: aligned to 0 eV.<br>")
        rows = "".join(
            f"<tr><td>{html.escape(n.replace('_', ' '))}</td><td style='text-align:right'>"
            f"{mm:.2f}</td><td style='text-align:right'>{t:.2f}</td>"
            f"<td style='text-align:right'>{r:+.2f}</td></tr>"
            for n, mm, t, r in zip(names, measured, targets, resid, strict=True))
        self.fit_info.value = (
            f"<div style='line-height:1.4'>{zl}<b>E<sub>true</sub> = {offset:+.2f} eV + "
            f"{scale:.5f} &times; E</b><br>dispersion {step:.4f} &rarr; {step * scale:.4f} "
            f"eV/channel<table style='font-size:12px;margin-top:4px'><tr><th>feature</th>"
            f"<th>found at</th><th>true</th><th>residual</th></tr>{rows}</table>"
            f"<span style='color:#666'>(eV; residuals are 0 with two features: "
            f"add a third to check the fit)</span></div>")
        self.status.value = ("Drag or resize an orange span if its feature lies outside it; "
                             "<code>.result</code> holds the calibrated SI.")
