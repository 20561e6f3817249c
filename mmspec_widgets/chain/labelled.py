"""The chain's labelled results: the edges Dataset of
:func:`mmspec_widgets.extract.extract_edges` built from extracted rows, and
the attrs and history the plain chain leaves."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..background import append_history
from ..edges import get_edge
from ..extract import JUMP_MODEL_STD_NAME, JUMP_STD_NAME
from ..utils import jsonable
from .plan import ChainPlan


def edges_dataset(edges: dict, plan: ChainPlan, dims, coords: dict, attrs: dict,
                   mask: np.ndarray | None) -> xr.Dataset:
    """The Dataset :func:`mmspec_widgets.extract.extract_edges` returns (the
    arrays of ``edges`` are used as they are; pixels outside ``mask`` are set
    to NaN in them)."""
    ds = xr.Dataset()
    for name in plan.edges:
        edge = get_edge(name)
        dim = f"energy_{name}"
        v = edges[name]
        if mask is not None:  # the caller's fresh arrays, masked in place
            v[~mask] = np.nan
        ds[name] = xr.DataArray(v, dims=tuple(dims) + (dim,), attrs={
            "edge": name, "units": "normalised", "normalization": "post_edge",
            "background": "powerlaw", "pre_edge_window_eV": list(plan.windows[name])})
        ds = ds.assign_coords({dim: (dim, edge.energy, {"units": "eV", "long_name": "Energy"})})
        units = str(attrs.get("units", "counts"))
        for var, long_name in (
                (f"jump_{name}", f"{name} edge jump (background-free level over the last "
                                 "10 % of its grid)"),
                (f"jump_{name}_std", JUMP_STD_NAME.format(edge=name)),
                (f"jump_{name}_model_std", JUMP_MODEL_STD_NAME.format(edge=name))):
            v = edges.get(var)
            if v is None:
                continue
            v = np.asarray(v, np.float64)
            if mask is not None:
                v = np.where(mask, v, np.nan)
            at = {"long_name": long_name, "units": units}
            if var.endswith("_model_std"):
                at["background_model_rel_std"] = plan.background_error.get(name, {}).get(
                    "scatter", 0.0)
            ds[var] = xr.DataArray(v, dims=tuple(dims), attrs=at)
    ds = ds.assign_coords(coords)
    ds.attrs = {k: v for k, v in attrs.items() if k != "history"}
    ds.attrs["history"] = list(attrs.get("history", []))
    ds.attrs["edges"] = list(plan.edges)
    if plan.background_error:
        ds.attrs["background_model_error"] = json.dumps(plan.background_error)
    return ds


def chain_attrs(si_attrs: dict, plan: ChainPlan, n_replaced: int | None) -> dict:
    """The attrs and history the plain chain leaves on the calibrated, despiked SI."""
    attrs = dict(si_attrs)
    hist = list(attrs.get("history", []))
    if plan.zlp_median_eV is not None:
        attrs["zlp_position_median_eV"] = plan.zlp_median_eV
        attrs["zlp_position_std_eV"] = plan.zlp_std_eV
        hist.append({"step": "align_zero_loss",
                     "params": {"median_eV": plan.zlp_median_eV,
                                "spread_eV": plan.zlp_spread_eV}})
    if plan.calibration is not None:
        cal = plan.calibration
        attrs.update(calibration_offset_eV=float(cal["offset_eV"]),
                     calibration_scale=float(cal["scale"]),
                     calibration_references={k: dict(v) for k, v in
                                             cal.get("references", {}).items()})
        if cal.get("covariance") is not None:
            attrs["calibration_covariance"] = [list(r) for r in cal["covariance"]]
        hist.append({"step": "apply_calibration",
                     "params": jsonable({"offset_eV": cal["offset_eV"], "scale": cal["scale"],
                                         "references": cal.get("references", {})})})
    hist.append({"step": "remove_spikes",
                 "params": {"threshold": plan.spike_threshold, "width": plan.spike_width,
                            "n_replaced": n_replaced}})
    attrs["history"] = hist
    return attrs


def extract_history(ds: xr.Dataset, plan: ChainPlan, **extra) -> xr.Dataset:
    ds = append_history(ds, "extract_edges", edges=list(plan.edges), normalize="post_edge",
                        background="powerlaw",
                        windows={k: v for k, v in plan.windows.items()
                                 if list(get_edge(k).pre_edge) != list(v)})
    return append_history(ds, "pipeline", **extra) if extra else ds
