"""Maps of the predicted local structure, with uncertainty, OOD mask and explanations."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as ipw
import numpy as np
import traitlets as tl
import xarray as xr
from bokeh.layouts import column, gridplot
from bokeh.models import LinearAxis, Range1d
from bokeh.palettes import Greens9, RdBu11

from .. import plotting as PL
from ..edges import EDGE_ORDER, get_edge
from ..errors import DataError, MMSpecError
from ..reasons import TARGET_REASONS, explain_reasons
from ..simulate.labels import PHASE_LABELS as PHASE_TARGETS
from . import plots as P
from .base import WidgetBase

__all__ = ["Inference", "TARGET_LABELS"]

#: Human-readable names of the model targets (:data:`mmspec_widgets.plotting.TARGETS`).
TARGET_LABELS = {name: info.title for name, info in PL.TARGETS.items()}
_OOD_TITLE = "OOD score"
_PROBABILITY = tuple(name for name, info in PL.TARGETS.items() if info.probability)
_ENERGY_LABEL = "Energy loss (eV)"


def _map_choices(model) -> list[tuple[str, str]]:
    """The Map dropdown: every target, then the phase map when the model has
    the phase targets."""
    opts = [(TARGET_LABELS.get(t, t), t) for t in model.targets_]
    if all(t in model.targets_ for t in PHASE_TARGETS):
        opts.append(("Phase (most probable)", "phase"))
    return opts


def _edge_label(name: str) -> str:
    e = get_edge(name)
    return f"{e.element} {e.shell.replace('L23', 'L2,3')}"


def _spatial(data: xr.Dataset, name: str) -> xr.DataArray:
    """A (y, x) template carrying the map coordinates of ``data``."""
    var = data[name]
    e_dim = f"energy_{name}"
    plane = var.isel({e_dim: 0}, drop=True) if e_dim in var.dims else var
    return plane.transpose("y", "x")


class Inference(WidgetBase):
    """Predict local structure maps from per-edge spectra and inspect them.

    Choose the model and the edges it may use (check boxes), or switch to
    "single edge" to see what one edge alone gives.  Three maps show the
    prediction of the chosen target, its uncertainty (1 standard deviation,
    calibrated on held-out simulations; capped at half the target's physical
    range, beyond which it carries no information) and the
    out-of-distribution score (> 1: the spectra look unlike any training
    spectrum; such pixels are hatched on the prediction map; the colour bar
    spans the scores present, white at 1). Oxidation states are blank where
    the element's predicted fraction is below
    :data:`mmspec_widgets.plotting.MIN_FRACTION`.  Click a pixel to see its spectra on
    each edge's grid, all its predictions, and, with "explain" on, the
    energies the model relies on for the target (permutation importance on
    the labelled set, :func:`mmspec_widgets.learn.energy_importance`).

    Parameters
    ----------
    data : xarray.Dataset
        Per-edge spectra of a spectrum image, as returned by
        :func:`mmspec_widgets.extract.extract_edges`: one variable per edge on
        dims ``("y", "x", "energy_<edge>")`` (eV).
    model : MultimodalModel, optional
        Fitted model; default :func:`mmspec_widgets.learn.load_model`.
    models : dict, optional
        Several models to choose from, ``{name: model or path of a saved
        bundle}``.
    edges : sequence of str, optional
        Edges used in fused mode; default all model edges found in ``data``.
    target : str
        Target shown (``"li_content"``, ``"o_vacancy"`` ...).
    mode : {"fused", "single"}
        Fused: the checked edges together; single: :attr:`single_edge` only.
    pixel : tuple of int
        Initial pixel ``(row, col)``.
    explain_data : xarray.Dataset, optional
        Labelled set for explanations; default the simulated training set
        (its ``test`` split is used), loaded when an explanation is asked for.
    explain_window : float
        Energy window width (eV) of the permutation importance.

    Attributes
    ----------
    result : xarray.Dataset
        The maps of the current model and edges (``model.predict``).
    explanation : xarray.Dataset or None
        Energy importance of the current target and edges, when shown.
    show_ood : bool
        Hatch the out-of-distribution pixels on the prediction map (trait).
    """

    model_name = tl.Unicode()
    edges = tl.List(tl.Unicode())
    mode = tl.Unicode("fused")
    single_edge = tl.Unicode()
    target = tl.Unicode("li_content")
    pixel = tl.Tuple(tl.Int(), tl.Int(), default_value=(0, 0))
    show_explanation = tl.Bool(False)
    show_ood = tl.Bool(True)
    result = tl.Instance(xr.Dataset, allow_none=True)
    explanation = tl.Instance(xr.Dataset, allow_none=True)

    def __init__(self, data: xr.Dataset, model=None, *, models: dict | None = None,
                 edges=None, target: str = "li_content", mode: str = "fused",
                 pixel: tuple[int, int] = (0, 0), explain_data: xr.Dataset | None = None,
                 explain_window: float = 2.0) -> None:
        super().__init__()
        self.data = self._check_data(data)
        if models is None:
            if model is None:
                from ..learn import load_model

                model = load_model()
            models = {str(getattr(model, "model_id", "model")): model}
        elif model is not None:
            models = {str(getattr(model, "model_id", "model")): model, **dict(models)}
        if not models:
            raise MMSpecError("models: expected at least one fitted model")
        self.models = {}
        for name, m in dict(models).items():
            if isinstance(m, (str, Path)):  # a saved bundle
                from ..learn import load_model

                m = load_model(m)
            if not hasattr(m, "predict") or not hasattr(m, "edges_"):
                raise MMSpecError(f"models[{name!r}]: expected a fitted MultimodalModel or the "
                                  f"path of a saved bundle, got {type(m).__name__}")
            self.models[str(name)] = m
        self.explain_data = explain_data
        self.explain_window = float(explain_window)
        self._explain_cache: dict = {}
        self._ready = False
        self._template = _spatial(self.data, self._data_edges()[0])
        first = next(iter(self.models))
        self.set_trait("model_name", first)
        self._build()
        self._reset_edge_choice(edges)
        self.target = target
        self.mode = mode
        self.pixel = tuple(pixel)
        self._ready = True
        self._predict()

    # ----------------------------------------------------------------- checks
    @staticmethod
    def _check_data(data) -> xr.Dataset:
        if not isinstance(data, xr.Dataset):
            raise DataError("data: expected an xarray.Dataset of per-edge spectra "
                            "(mmspec_widgets.extract.extract_edges), got "
                            f"{type(data).__name__}")
        names = [v for v in data.data_vars if v in EDGE_ORDER]
        if not names:
            raise DataError(f"data: no edge variables found (expected some of "
                            f"{', '.join(EDGE_ORDER)}; got {', '.join(map(str, data.data_vars))})")
        for v in names:
            need = {"y", "x", f"energy_{v}"}
            if set(data[v].dims) != need:
                raise DataError(f"data[{v!r}]: expected dims ('y', 'x', 'energy_{v}'), "
                                f"got {data[v].dims}")
        return data

    def _data_edges(self) -> list[str]:
        return [e for e in EDGE_ORDER if e in self.data.data_vars]

    @property
    def model(self):
        """The model currently selected."""
        return self.models[self.model_name]

    def available_edges(self) -> list[str]:
        """Edges both in the data and in the current model, in table order."""
        return [e for e in self.model.edges_ if e in self.data.data_vars]

    def active_edges(self) -> list[str]:
        """Edges the prediction uses now (checked edges, or the single edge)."""
        if self.mode == "single":
            return [self.single_edge] if self.single_edge else []
        return [e for e in self.available_edges() if e in self.edges]

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        tmpl = self._template
        ny, nx = tmpl.sizes["y"], tmpl.sizes["x"]
        line_scan = nx >= 3 * ny
        width = 560 if line_scan else 290
        self.pred_fig, self.pred_source, self.pred_mapper = P.image_figure(
            tmpl * 0.0, title="Prediction", colorbar_title="", width=width, max_height=300)
        self.std_fig, self.std_source, self.std_mapper = P.image_figure(
            tmpl * 0.0, title=f"Uncertainty ({PL.UNCERTAINTY})", palette="Cividis256",
            colorbar_title="", width=width, max_height=300)
        self.ood_fig, self.ood_source, self.ood_mapper = P.image_figure(
            tmpl * 0.0, title="Out-of-distribution score (> 1: unlike training)",
            palette=RdBu11, colorbar_title=_OOD_TITLE, width=width, max_height=300)
        self.ood_mapper.low, self.ood_mapper.high = 0.0, 2.0
        self.ood_mapper.palette = PL.ood_palette(0.0, 2.0)
        self.used_fig, self.used_source, self.used_mapper = P.image_figure(
            tmpl * 0.0, title="Edges used per pixel", palette=tuple(reversed(Greens9)),
            colorbar_title="edges used", width=width, max_height=300)
        for f in (self.std_fig, self.ood_fig, self.used_fig):
            f.x_range = self.pred_fig.x_range
            f.y_range = self.pred_fig.y_range
        self.grid_source = P.ColumnDataSource(P.map_sources(tmpl))
        for f in (self.pred_fig, self.std_fig, self.ood_fig, self.used_fig):
            P.add_pixel_grid(f, tmpl, source=self.grid_source, value_name="prediction",
                             value_format="0.000")
        self.hatch_source = P.ColumnDataSource({"x": [], "y": [], "w": [], "h": []})
        self.pred_fig.rect("x", "y", "w", "h", source=self.hatch_source, fill_alpha=0.0,
                           line_alpha=0.0, hatch_pattern="/", hatch_color="#ffffff",
                           hatch_alpha=0.55, hatch_scale=7.0, hatch_weight=1.0)
        self.outlines = [P.pixel_outline(f) for f in (self.pred_fig, self.std_fig, self.ood_fig,
                                                      self.used_fig)]
        self.grid_source.selected.on_change("indices", self._on_select)

        self.spec_figs: dict = {}
        self.spec_sources: dict = {}
        self.imp_sources: dict = {}
        self.imp_ranges: dict = {}
        for e in self._data_edges():
            grid = np.asarray(self.data[e][f"energy_{e}"].values, dtype=float)
            fig = P.spectrum_figure(title=_edge_label(e), x_label=_ENERGY_LABEL,
                                    y_label="Intensity (a.u.)", width=330, height=220,
                                    x_range=Range1d(float(grid.min()), float(grid.max())))
            src = P.ColumnDataSource({"energy": grid, "intensity": np.zeros_like(grid)})
            imp = P.ColumnDataSource({"energy": grid, "importance": np.zeros_like(grid)})
            rng = Range1d(0.0, 1.0)
            fig.extra_y_ranges = {"imp": rng}
            fig.add_layout(LinearAxis(y_range_name="imp", axis_label="importance (score drop)",
                                      axis_label_text_color="#CC79A7"), "right")
            fig.varea(x="energy", y1=0.0, y2="importance", source=imp, y_range_name="imp",
                      fill_color="#CC79A7", fill_alpha=0.35)
            fig.line("energy", "intensity", source=src, color=P.SPECTRUM_COLORS[0], line_width=1.6)
            self.spec_figs[e], self.spec_sources[e] = fig, src
            self.imp_sources[e], self.imp_ranges[e] = imp, rng

        self.maps_layout = column(self.pred_fig, self.std_fig, self.ood_fig, self.used_fig) \
            if line_scan else gridplot([[self.pred_fig, self.std_fig],
                                        [self.ood_fig, self.used_fig]],
                          toolbar_location="right")
        self.spectra_grid = gridplot(list(self.spec_figs.values()), ncols=2,
                                     toolbar_location="right")
        self.maps_plot = self._wrap(self.maps_layout)
        self.spectra_plot = self._wrap(self.spectra_grid)

        self.model_select = ipw.Dropdown(options=list(self.models), description="Model:",
                                         layout=ipw.Layout(width="420px"),
                                         style={"description_width": "55px"})
        self.edge_boxes = {e: ipw.Checkbox(value=True, description=_edge_label(e), indent=False,
                                           layout=ipw.Layout(width="95px"))
                           for e in self._data_edges()}
        self.mode_toggle = ipw.ToggleButtons(options=[("Fused edges", "fused"),
                                                      ("Single edge", "single")],
                                             style={"button_width": "105px"})
        self.single_select = ipw.Dropdown(options=[], description="Edge:",
                                          layout=ipw.Layout(width="170px"),
                                          style={"description_width": "40px"})
        self.target_select = ipw.Dropdown(options=_map_choices(self.model),
                                          description="Map:", layout=ipw.Layout(width="330px"),
                                          style={"description_width": "40px"})
        self.explain_box = ipw.Checkbox(value=False, indent=False,
                                        description="Explain (importance of energies)")
        self.status = ipw.HTML()
        self.pixel_table = ipw.HTML()
        self.model_select.observe(lambda ch: setattr(self, "model_name", ch["new"]), "value")
        for box in self.edge_boxes.values():
            box.observe(self._on_checkbox, "value")
        self.mode_toggle.observe(lambda ch: setattr(self, "mode", ch["new"]), "value")
        self.single_select.observe(self._on_single_select, "value")
        self.target_select.observe(lambda ch: setattr(self, "target", ch["new"]), "value")
        self.explain_box.observe(lambda ch: setattr(self, "show_explanation", ch["new"]),
                                 "value")
        row1 = ipw.HBox([self.model_select, self.target_select],
                        layout=ipw.Layout(flex_flow="row wrap"))
        row2 = ipw.HBox([self.mode_toggle, ipw.HTML("&nbsp;Edges:&nbsp;"),
                         *self.edge_boxes.values(), self.single_select],
                        layout=ipw.Layout(flex_flow="row wrap", align_items="center"))
        self.ood_box = ipw.Checkbox(value=True, indent=False,
                                    description="Hatch out-of-distribution pixels")
        self.ood_box.observe(lambda ch: setattr(self, "show_ood", ch["new"]), "value")
        row3 = ipw.HBox([self.explain_box, self.ood_box])
        self.pred_fig.name, self.std_fig.name = "inference-prediction", "inference-std"
        self.ood_fig.name = "inference-ood"
        self.pixel_table.layout = ipw.Layout(min_width="270px", max_width="280px")
        self.ui = ipw.VBox([row1, row2, row3, self.status, self.maps_plot,
                            ipw.HTML("<b>Spectra of the selected pixel</b> (shaded: energies "
                                     "the model relies on for the map shown, when "
                                     "<i>Explain</i> is on)"),
                            ipw.HBox([self.spectra_plot, self.pixel_table])])
        self.ui.add_class("mmspec-inference")

    # ----------------------------------------------------------- validation
    @tl.validate("model_name")
    def _valid_model(self, proposal):
        if proposal["value"] not in self.models:
            raise MMSpecError(f"model_name={proposal['value']!r}: expected one of "
                              f"{', '.join(self.models)}")
        return proposal["value"]

    @tl.validate("mode")
    def _valid_mode(self, proposal):
        if proposal["value"] not in ("fused", "single"):
            raise MMSpecError(f"mode={proposal['value']!r}: expected 'fused' or 'single'")
        return proposal["value"]

    @tl.validate("edges")
    def _valid_edges(self, proposal):
        avail = self.available_edges()
        out = []
        for e in proposal["value"]:
            name = get_edge(e).name
            if name not in avail:
                raise DataError(f"edges: {name!r} is not both in the data and in the model "
                                f"(usable: {', '.join(avail)})")
            out.append(name)
        return sorted(set(out), key=EDGE_ORDER.index)

    @tl.validate("single_edge")
    def _valid_single(self, proposal):
        e = proposal["value"]
        if e and e not in self.available_edges():
            raise DataError(f"single_edge={e!r}: expected one of "
                            f"{', '.join(self.available_edges())}")
        return e

    @tl.validate("target")
    def _valid_target(self, proposal):
        t = proposal["value"]
        names = [v for _, v in _map_choices(self.model)]
        if t not in names:
            raise MMSpecError(f"target={t!r}: expected one of {', '.join(names)}")
        return t

    @tl.validate("pixel")
    def _valid_pixel(self, proposal):
        r, c = proposal["value"]
        ny, nx = self._template.sizes["y"], self._template.sizes["x"]
        if not (0 <= r < ny and 0 <= c < nx):
            raise DataError(f"pixel={proposal['value']}: expected (row, col) within "
                            f"(0..{ny - 1}, 0..{nx - 1})")
        return (int(r), int(c))

    # ------------------------------------------------------------- observers
    def _reset_edge_choice(self, edges=None) -> None:
        avail = self.available_edges()
        if not avail:
            raise DataError(f"the model {self.model_name!r} uses {', '.join(self.model.edges_)}"
                            f" but the data hold {', '.join(self._data_edges())}")
        self.edges = list(avail if edges is None else edges)
        self.single_select.options = [(_edge_label(e), e) for e in avail]
        if self.single_edge not in avail:
            self.single_edge = avail[0]

    @tl.observe("model_name")
    def _on_model(self, change) -> None:
        if not self._ready:
            return
        self.model_select.value = change["new"]
        self._reset_edge_choice()
        opts = _map_choices(self.model)
        self.target_select.options = opts
        if self.target not in [v for _, v in opts]:
            self.target = self.model.targets_[0]
        self._predict()

    @tl.observe("edges")
    def _on_edges(self, change) -> None:
        for e, box in self.edge_boxes.items():
            box.value = e in change["new"]
        self._predict()

    @tl.observe("single_edge")
    def _on_single(self, change) -> None:
        if change["new"]:
            self.single_select.value = change["new"]
        if self.mode == "single":
            self._predict()

    @tl.observe("mode")
    def _on_mode(self, change) -> None:
        self.mode_toggle.value = change["new"]
        single = change["new"] == "single"
        self.single_select.disabled = not single
        for box in self.edge_boxes.values():
            box.disabled = single
        self._predict()

    @tl.observe("target")
    def _on_target(self, change) -> None:
        self.target_select.value = change["new"]
        self._show_maps()
        self._show_pixel()
        self._show_explanation()

    @tl.observe("pixel")
    def _on_pixel(self, change) -> None:
        self._show_pixel()

    @tl.observe("show_ood")
    def _on_show_ood(self, change) -> None:
        self.ood_box.value = change["new"]
        self._show_maps()

    @tl.observe("show_explanation")
    def _on_explain(self, change) -> None:
        self.explain_box.value = change["new"]
        self._show_explanation()

    def _on_checkbox(self, change) -> None:
        checked = [e for e, box in self.edge_boxes.items()
                   if box.value and e in self.available_edges()]
        if not checked:  # keep at least one edge
            change["owner"].value = True
            return
        self.edges = checked

    def _on_single_select(self, change) -> None:
        if change["new"]:
            self.single_edge = change["new"]

    def _on_select(self, _attr, _old, new) -> None:
        if new:
            k = int(new[-1])
            self.pixel = (int(self.grid_source.data["iy"][k]), int(self.grid_source.data["ix"][k]))

    # ---------------------------------------------------------------- compute
    def _predict(self) -> None:
        if not self._ready:
            return
        active = self.active_edges()
        if not active:
            return
        try:
            self.result = self.model.predict(self.data, edges=active)
        except MMSpecError as err:
            self.status.value = f"<span style='color:#b00'>Prediction failed: {html.escape(str(err))}</span>"
            return
        n_ood = int(np.asarray(self.result["ood"].values).sum())
        n = int(np.asarray(self.result["ood"].values).size)
        label = " + ".join(_edge_label(e) for e in active)
        how = "fused" if self.mode == "fused" and len(active) > 1 else "single edge" \
            if len(active) == 1 else "fused"
        jumps = (" with the composition from their jumps"
                 if self.result.attrs.get("amounts_used") else "")
        self.status.value = (f"<b>{html.escape(self.model_name)}</b>: {how} prediction from "
                             f"<b>{label}</b>{jumps}; {n_ood} of {n} pixels out of distribution "
                             "(hatched).")
        self._show_maps()
        self._show_pixel()
        self._show_explanation()

    def explain(self) -> xr.Dataset:
        """Energy importance of the current target for the current edges.

        Calls :func:`mmspec_widgets.learn.energy_importance` on the labelled
        set restricted to the active edges (so a single-edge explanation is
        that of the single-edge prediction); results are cached.
        """
        from ..learn import energy_importance

        if self.target == "phase":
            raise MMSpecError("the phase map joins three targets; explain one of them: "
                              f"choose {', '.join(TARGET_LABELS[t] for t in PHASE_TARGETS)}")
        active = tuple(self.active_edges())
        key = (self.model_name, self.target, active, self.explain_window)
        if key not in self._explain_cache:
            if self.explain_data is None:
                from ..learn.train import load_training_data

                self.explain_data = load_training_data()
            ds = self.explain_data
            drop = [e for e in EDGE_ORDER if e in ds.data_vars and e not in active]
            self._explain_cache[key] = energy_importance(
                self.model, ds.drop_vars(drop), window=self.explain_window,
                targets=[self.target], edges=list(active))
        return self._explain_cache[key]

    # ------------------------------------------------------------------ views
    def _image(self, name: str) -> np.ndarray:
        return np.asarray(self.result[name].transpose("y", "x").values, dtype=float)

    def _show_maps(self) -> None:
        if self.result is None or self.target not in self.result:
            return
        t = self.target
        maps = self.result.transpose("y", "x", ...)
        if t == "phase":
            # categorical: one colour per phase, blank where unknown; beside it
            # the probability of the shown phase
            code = self._image("phase")
            value = np.where(code >= 0, code, np.nan)
            std = (self._image("phase_probability") if "phase_probability" in self.result
                   else np.full_like(value, np.nan))
            cap, n_capped = 1.0, 0
        else:
            # as every figure shows them: blank where the target does not apply,
            # std capped at half the physical range (beyond it, no information)
            value = PL.display_values(maps, t)
            std, cap, n_capped = PL.display_std(maps, t)
        ood_score, ood = self._image("ood_score"), self._image("ood") > 0.5
        ood_score = np.where(np.isfinite(ood_score), ood_score, np.nan)
        self.pred_source.data = dict(self.pred_source.data, image=[value])
        self.std_source.data = dict(self.std_source.data, image=[std])
        self.ood_source.data = dict(self.ood_source.data, image=[ood_score])
        if "n_edges" in self.result:  # how many of the offered edges each pixel used
            n_e = self._image("n_edges").astype(float)
            self.used_source.data = dict(self.used_source.data, image=[n_e])
            n_max = max(len(self.result.attrs.get("edges", []) or []), 1)
            self.used_mapper.low, self.used_mapper.high = -0.5, n_max + 0.5
            self.used_fig.title.text = f"Edges used per pixel (of {n_max} offered)"
        o_lo, o_hi = PL.ood_limits(ood_score)  # the colour bar spans the scores present
        self.ood_mapper.low, self.ood_mapper.high = o_lo, o_hi
        self.ood_mapper.palette = PL.ood_palette(o_lo, o_hi)
        if t == "phase":
            names = PL.phase_names(self.result["phase"])[1:]
            self.pred_mapper.palette = list(PL.PHASE_COLOURS[:len(names)])
            self.pred_mapper.low, self.pred_mapper.high = -0.5, len(names) - 0.5
            self.std_mapper.low, self.std_mapper.high = 0.0, 1.0
            label = "Phase: " + ", ".join(f"{k} {n.replace('_', '-')}"
                                          for k, n in enumerate(names))
            self.pred_fig.title.text = f"{label} (hatched: OOD)"
            self.std_fig.title.text = "Probability of the shown phase"
            self.pred_fig.right[0].title = "phase"
            self.std_fig.right[0].title = "probability"
        else:
            info = PL.target_info(t, self.result)
            units = info.unit
            if t in _PROBABILITY:
                self.pred_mapper.palette = "Inferno256"
                lo, hi = 0.0, 1.0
            else:
                self.pred_mapper.palette = "Viridis256"
                lo, hi = self._limits(value)
            self.pred_mapper.low, self.pred_mapper.high = lo, hi
            s_lo, s_hi = self._limits(std)
            self.std_mapper.low, self.std_mapper.high = 0.0, max(s_hi, 1e-6)
            label = TARGET_LABELS.get(t, t)
            self.pred_fig.title.text = f"{label} (hatched: out of distribution)"
            capped = f"; {n_capped} px capped at {cap:g}" if n_capped else ""
            self.std_fig.title.text = f"Uncertainty of {label} ({PL.UNCERTAINTY}{capped})"
            self.pred_fig.right[0].title = units
            self.std_fig.right[0].title = f"1 std ({units})"
        self.grid_source.data = dict(self.grid_source.data, value=value.ravel())
        g = self.grid_source.data
        sel = ood.ravel()
        if not self.show_ood:
            sel = np.zeros_like(sel)
        self.hatch_source.data = {k: np.asarray(g[k])[sel] for k in ("x", "y", "w", "h")}

    @staticmethod
    def _limits(values: np.ndarray) -> tuple[float, float]:
        v = values[np.isfinite(values)]
        if v.size == 0:
            return 0.0, 1.0
        a, b = float(v.min()), float(v.max())
        return (a, b) if b > a else (a - 0.5, a + 0.5)

    def _show_pixel(self) -> None:
        if not self._ready or self.result is None:
            return
        r, c = self.pixel
        active = self.active_edges()
        tmpl = self._template
        for src in self.outlines:
            src.data = P.outline_data(tmpl, (r, r + 1), (c, c + 1))
        for e, fig in self.spec_figs.items():
            spec = np.asarray(self.data[e].isel(y=r, x=c).values, dtype=float)
            grid = np.asarray(self.spec_sources[e].data["energy"], dtype=float)
            self.spec_sources[e].data = dict(self.spec_sources[e].data, intensity=spec)
            fig.y_range.start, fig.y_range.end = P.visible_y_range(
                grid, [spec], float(grid.min()), float(grid.max()))
            used = e in active
            note = "" if used else " (not used)"
            if not np.isfinite(spec).any():
                note += " - no spectrum in this pixel (masked or absent edge)"
            fig.title.text = f"{_edge_label(e)}{note}"
            fig.renderers[-1].glyph.line_alpha = 1.0 if used else 0.3
        maps = self.result.transpose("y", "x", ...)
        rows = []
        for t in self.model.targets_:
            if t not in self.result:
                continue
            info = PL.target_info(t, self.result)
            v = float(PL.display_values(maps, t)[r, c])
            s = float(self.result[f"{t}_std"].transpose("y", "x").values[r, c])
            units = html.escape(info.unit)
            if not np.isfinite(v):
                raw = float(self.result[t].transpose("y", "x").values[r, c])
                txt = ("n/a (element absent)" if np.isfinite(raw)
                       else self._why_nan(t, r, c))
            elif np.isfinite(s) and s > info.std_cap:  # wider than the quantity can spread
                txt = f"{v:.2f} (std &gt; {info.std_cap:g}: no information)"
            elif t in _PROBABILITY:
                txt = f"{v:.2f} ± {s:.2f}"
            else:
                txt = f"{v:.3f} ± {s:.3f}"
            bold = "font-weight:bold;" if t == self.target else ""
            rows.append(f"<tr style='{bold}'><td style='padding:1px 6px 1px 0'>"
                        f"{html.escape(TARGET_LABELS.get(t, t))}<br>"
                        f"<span style='color:#777;font-size:11px;font-weight:normal'>{units}"
                        f"</span></td><td style='text-align:right;white-space:nowrap;"
                        f"padding:1px 0 1px 6px'>{txt}</td></tr>")
        if "phase" in self.result:  # the most probable phase and its probability
            names = PL.phase_names(self.result["phase"])
            code = int(self.result["phase"].transpose("y", "x").values[r, c])
            p = float(self.result["phase_probability"].transpose("y", "x").values[r, c]) \
                if "phase_probability" in self.result else np.nan
            ps = float(self.result["phase_probability_std"].transpose("y", "x").values[r, c]) \
                if "phase_probability_std" in self.result else np.nan
            pt = f"p {p:.2f}" + (f" ± {ps:.2f}" if np.isfinite(ps) else "")
            txt = (f"{names[code + 1].replace('_', '-')} ({pt})" if code >= 0
                   else self._why_nan("spinel", r, c) if "spinel" in self.result else "n/a")
            rows.append("<tr><td style='padding:1px 6px 1px 0'>Phase<br><span style='color:"
                        "#777;font-size:11px'>most probable</span></td><td style='text-align:"
                        f"right;white-space:nowrap;padding:1px 0 1px 6px'>{txt}</td></tr>")
        ood = bool(self.result["ood"].isel(y=r, x=c))
        score = float(self.result["ood_score"].isel(y=r, x=c))
        flag = ("<span style='color:#b2182b'><b>out of distribution</b></span>" if ood
                else "<span style='color:#2166ac'>in distribution</span>")
        self.pixel_table.value = (
            f"<div style='padding-left:12px;line-height:1.35'><b>Pixel (row {r}, col {c})</b>"
            f"<br>OOD score {score:.2f}: {flag}"
            "<table style='font-size:12px;border-collapse:collapse;margin-top:4px'>"
            "<tr style='border-bottom:1px solid #ccc'><th style='text-align:left'>target</th>"
            f"<th style='text-align:right;padding:1px 0 1px 6px'>value {PL.UNCERTAINTY}</th></tr>"
            + "".join(rows) + "</table></div>")

    def _why_nan(self, target: str, r: int, c: int) -> str:
        """Why ``target`` has no value in pixel (r, c), short, with the full
        reason as a tooltip (HTML)."""
        why = self.result[target].attrs.get("not_learnt")
        if why:
            short = str(why).split(":")[0]
            return (f"<span title='{html.escape(str(why), quote=True)}'>not learnt "
                    f"({html.escape(short)})</span>")
        if "nan_reason" not in self.result:
            return "—"
        code = int(self.result["nan_reason"].transpose("y", "x").values[r, c])
        bits = TARGET_REASONS.get(target, ()) + (16, 2, 1)  # then: no edge used at all
        for b in bits:
            if code & b:
                text = html.escape(explain_reasons(b)[0], quote=True)
                # wrapped in a narrow grey block, so a long reason never pushes
                # the value column out of the panel
                return (f"<span title='{text}' style='display:inline-block;max-width:105px;"
                        f"white-space:normal;font-size:11px;color:#777'>— ({text})</span>")
        return "—"

    def _show_explanation(self) -> None:
        if not self._ready:
            return
        if not self.show_explanation:
            self.explanation = None
            for src in self.imp_sources.values():
                src.data = dict(src.data, importance=np.zeros_like(src.data["energy"]))
            return
        try:
            imp = self.explain()
        except MMSpecError as err:
            self.status.value = (f"<span style='color:#b00'>Explanation failed: "
                                 f"{html.escape(str(err))}</span>")
            return
        self.explanation = imp
        for e, src in self.imp_sources.items():
            grid = np.asarray(src.data["energy"], dtype=float)
            vals = np.zeros_like(grid)
            if e in imp.data_vars:
                da = imp[e].sel(target=self.target)
                egrid = np.asarray(da[f"energy_{e}"].values, dtype=float)
                v = np.nan_to_num(np.asarray(da.values, dtype=float), nan=0.0).clip(0, None)
                vals = np.interp(grid, egrid, v, left=0.0, right=0.0)
            src.data = dict(src.data, importance=vals)
            top = float(vals.max()) if vals.size else 0.0
            self.imp_ranges[e].start, self.imp_ranges[e].end = 0.0, (top * 1.1 if top > 0 else 1.0)
