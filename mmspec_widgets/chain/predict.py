"""Model prediction on rows of extracted edges: usable rows, the model's
answer for a masked pixel, k-factors."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import MMSpecError
from .plan import ChainPlan


def null_maps(model, plan: ChainPlan) -> xr.Dataset:
    """The model's answer for a pixel without usable spectra (masked pixel)."""
    ds = xr.Dataset()
    for name in plan.edges:
        g = get_edge(name).energy
        ds[name] = xr.DataArray(np.full((1, g.size), np.nan, np.dtype(plan.dtype)),
                                dims=("pixel", f"energy_{name}"))
        ds = ds.assign_coords({f"energy_{name}": g})
    return model.predict(ds)


def k_dict(k_factors) -> dict | None:
    if not k_factors:
        return None
    k = {get_edge(e).name: float(v) for e, v in dict(k_factors).items()}
    bad = [e for e, v in k.items() if not np.isfinite(v) or v <= 0]
    if bad:
        raise MMSpecError(f"k_factors: expected positive numbers, got {[k[e] for e in bad]} "
                          f"for {bad}")
    return k


def predict_rows(model, edges: dict, plan: ChainPlan, rows: np.ndarray,
                  null: dict) -> dict[str, np.ndarray]:
    """Predict the rows where ``rows`` is true; the others take the values of
    ``null`` (name -> (value, dtype), the model's answer for a masked pixel)."""
    n = rows.size
    out = {v: np.full(n, val, dtype=dt) for v, (val, dt) in null.items()}
    idx = np.flatnonzero(rows)
    if idx.size == 0:
        return out
    ds = xr.Dataset()
    for name in plan.edges:
        a = edges[name].reshape(n, -1)[idx]
        ds[name] = xr.DataArray(a, dims=("pixel", f"energy_{name}"))
        ds = ds.assign_coords({f"energy_{name}": get_edge(name).energy})
    if plan.k_factors:  # atoms per O from the jumps, as quantify does for the plain chain
        from ..quantify import quantify

        for name in plan.edges:
            for var in (f"jump_{name}", f"jump_{name}_std", f"jump_{name}_model_std"):
                if var in edges:
                    ds[var] = xr.DataArray(np.asarray(edges[var]).reshape(n)[idx],
                                           dims=("pixel",))
        ds = quantify(ds, plan.k_factors)
    maps = model.predict(ds)
    for v in out:
        out[v][idx] = maps[v].values
    return out


def null_values(null: xr.Dataset) -> dict:
    return {str(v): (null[v].values.ravel()[0], null[v].dtype) for v in null.data_vars}


def usable(totals: np.ndarray, threshold: float | None) -> np.ndarray:
    ok = np.isfinite(totals) & (totals > 0)
    if threshold is None:
        return np.zeros_like(ok)
    return ok & (totals >= threshold)
