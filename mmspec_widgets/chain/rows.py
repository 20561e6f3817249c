"""The per-pixel part of the chain on rows of spectra.

Row drivers over the compiled kernels of :mod:`mmspec_widgets.kernels`
(zero-loss shift, spike removal, per-edge background, resampling onto the
edge grids and normalisation, fused into one pass per spectrum, threads over
pixels) and their reference engine on the plain functions;
:func:`extract_block` runs them on any block of pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import DataError, MMSpecError
from ..extract import edge_tables as extract_tables
from ..kernels import (
    background_model_error_window,
    jump_model_std,
    jump_std,
    k_align_rows,
    k_align_rows_grouped,
    k_chain_rows,
    map_row_blocks,
    shift_resample,
    window_channels,
)
from .plan import ChainPlan, check_engine


def _row_chunk(n_energy: int) -> int:
    return max(16, 262144 // max(n_energy, 1))


def aligned_totals(y: np.ndarray, shift: np.ndarray, plan: ChainPlan, engine: str):
    """Total counts of every zero-loss aligned row of ``y``."""
    align = plan.zlp_median_eV is not None
    if engine == "numpy":
        a = shift_resample(y, shift) if align else y
        return a.sum(-1, dtype=np.float64)
    tot = np.empty(y.shape[0])
    flags = np.zeros(y.shape[0], np.bool_)
    acc = np.zeros(y.shape[1], y.dtype)

    def run(r0, r1):
        k_align_rows(y[r0:r1], shift[r0:r1], align, flags[r0:r1], acc, tot[r0:r1])

    map_row_blocks(run, y.shape[0], _row_chunk(y.shape[1]))
    return tot


def accumulate_aligned(acc: np.ndarray, y: np.ndarray, shift: np.ndarray, plan: ChainPlan,
                        use: np.ndarray, engine: str, group: np.ndarray | None = None,
                        acc_group: np.ndarray | None = None) -> None:
    """``acc += aligned row`` for the rows where ``use``, one after the other in
    the working dtype: the order and precision of ``SI.where(mask).sum()``;
    with ``group``, also ``acc_group[group[row]] += aligned row`` where
    ``group[row] >= 0`` (the pixel groups of the calibration's location errors)."""
    align = plan.zlp_median_eV is not None
    has_groups = group is not None and acc_group is not None and acc_group.shape[0] > 0
    if engine == "numpy":
        a = shift_resample(y, shift) if align else y
        for row in a[np.asarray(use, bool)]:
            acc += row
        if has_groups:
            for k in range(acc_group.shape[0]):
                for row in a[np.asarray(group) == k]:
                    acc_group[k] += row
        return
    tot = np.empty(y.shape[0])
    if has_groups:
        k_align_rows_grouped(y, shift, align, np.asarray(use, np.bool_),
                             np.asarray(group, np.int64), acc, acc_group, tot)
    else:
        k_align_rows(y, shift, align, np.asarray(use, np.bool_), acc, tot)


def despiked_totals(y, shift, plan, engine) -> np.ndarray:
    empty = ChainPlan(**{**asdict(plan), "edges": []})
    return _run_rows(y, shift, empty, engine)[1]


def edge_tables(plan: ChainPlan, wd) -> dict:
    """:func:`mmspec_widgets.extract.edge_tables` on the plan's calibrated axis."""
    return extract_tables(plan.calibrated_energy, plan.edges, plan.windows, wd)


def background_columns(plan: ChainPlan) -> tuple[np.ndarray, dict[str, slice]]:
    """Channels of the plan's calibrated axis in each edge's pre-edge window
    (:func:`~mmspec_widgets.kernels.window_channels`), side by side, and each
    edge's slice of them: what :func:`background_error` reads of a row."""
    e = plan.calibrated_energy
    cols, where, off = [], {}, 0
    for name in plan.edges:
        w = window_channels(e, plan.windows.get(name, list(get_edge(name).pre_edge)))
        cols.append(w)
        where[name] = slice(off, off + w.size)
        off += w.size
    return (np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)), where


def background_error(kept: np.ndarray, plan: ChainPlan) -> dict:
    """Each edge's :func:`~mmspec_widgets.kernels.background_model_error`
    (the power law's shape error, tested over the tail of the edge's grid) from
    rows of zero-loss aligned, despiked spectra reduced to
    :func:`background_columns`."""
    _, where = background_columns(plan)
    out = {}
    for name in plan.edges:
        grid = get_edge(name).energy
        tail = grid[grid.size - max(3, grid.size // 10):]
        err = background_model_error_window(
            kept[:, where[name]], plan.calibrated_energy,
            plan.windows.get(name, list(get_edge(name).pre_edge)), (tail[0], tail[-1]))
        out[name] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in err.items()}
    return out


def _run_rows(y: np.ndarray, shift: np.ndarray, plan: ChainPlan, engine: str,
              threads: int | None = None, keep: np.ndarray | None = None):
    """Edges (rows, sum of grid sizes), despiked totals, spikes replaced, edge
    jumps (rows, edges) and, for the rows listed in ``keep`` (in its order),
    their aligned, despiked :func:`background_columns` (None without ``keep``)."""
    wd = np.dtype(plan.dtype)
    y = np.ascontiguousarray(y, dtype=wd)
    cols = background_columns(plan)[0]
    if engine == "numpy":
        return _run_rows_numpy(y, shift, plan, keep, cols)
    t = edge_tables(plan, wd)
    m = y.shape[0]
    out = np.empty((m, t["n_grid"]), wd)
    totals = np.empty(m)
    replaced = np.empty(m, np.int64)
    jumps = np.empty((m, len(plan.edges)))
    align = plan.zlp_median_eV is not None
    sh = np.ascontiguousarray(shift, dtype=np.float64)
    slot = np.full(m, -1, np.int64)
    kept = None
    if keep is not None:
        keep = np.asarray(keep, np.int64)
        slot[keep] = np.arange(keep.size)
        kept = np.empty((keep.size, cols.size), wd)
    buf = kept if kept is not None else np.empty((0, cols.size), wd)

    def run(r0, r1):
        k_chain_rows(y[r0:r1], sh[r0:r1], align, float(plan.spike_threshold),
                     int(plan.spike_width), t["j1"], t["j3"], t["j4"], t["xw"], t["bk0"],
                     t["bk1"], t["goff"], t["gsize"], t["gtail"], t["gi0"], t["gw"],
                     t["gomw"], t["loge"], t["grad"], out[r0:r1], totals[r0:r1],
                     replaced[r0:r1], jumps[r0:r1], slot[r0:r1], cols, buf)

    map_row_blocks(run, m, _row_chunk(y.shape[1]), threads)
    return out, totals, replaced, jumps, kept


def _run_rows_numpy(y: np.ndarray, shift: np.ndarray, plan: ChainPlan,
                    keep: np.ndarray | None = None, cols: np.ndarray | None = None):
    """The same step with the plain functions (reference engine)."""
    from ..background import remove_spikes
    from ..extract import extract_edges

    a = shift_resample(y, shift) if plan.zlp_median_eV is not None else y
    da = xr.DataArray(a, dims=("pixel", "energy"),
                      coords={"energy": ("energy", plan.calibrated_energy)})
    clean = remove_spikes(da, threshold=plan.spike_threshold, width=plan.spike_width)
    totals = clean.sum("energy").values.astype(float)
    replaced = (clean.values != a).sum(-1)
    kept = None if keep is None else clean.values[np.asarray(keep, np.int64)][:, cols]
    if not plan.edges:
        return (np.zeros((y.shape[0], 0), y.dtype), totals, replaced,
                np.zeros((y.shape[0], 0)), kept)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="subtract_background: the fit failed")
        ds = extract_edges(clean, edges=plan.edges, mask=False,
                           windows={k: tuple(v) for k, v in plan.windows.items()})
    out = np.concatenate([ds[n].values for n in plan.edges], axis=1)
    jumps = np.stack([ds[f"jump_{n}"].values for n in plan.edges], axis=1)
    return out, totals, replaced, jumps, kept


def extract_block(si_block, positions=None, plan: ChainPlan | None = None, *,
                  engine: str = "auto", threads: int | None = None,
                  background_rows: np.ndarray | None = None,
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Run the per-pixel part of the chain on a block of pixels.

    Parameters
    ----------
    si_block : array-like, shape (..., n_energy)
        Raw counts of some pixels of the SI the plan was fitted on.
    positions : array-like, shape (...), optional
        Their zero-loss positions (eV); required when the plan aligns.
    plan : ChainPlan
        From :func:`fit_plan`.
    engine : {"auto", "numba", "numpy"}
        Compiled fused kernel, or the plain functions (same numbers).
    threads : int, optional
        Threads over pixels (default: all CPUs of this process, see
        :func:`mmspec_widgets.kernels.n_threads`).
    background_rows : array of int, optional
        Rows of this block (flat indices, in the order the plan's sample reads
        them: :func:`~mmspec_widgets.chain.fit.background_sample`) on which to
        measure the plan's ``background_error`` in this same pass, for a plan
        fitted with ``background_error=False``; fills ``plan.background_error``.

    Returns
    -------
    (edges, totals, n_replaced)
        ``edges``: edge name -> array ``(..., n_grid)`` on the edge's standard
        grid, background-free and post-edge normalised (not yet masked), and
        ``"jump_<edge>"`` -> array ``(...)``: the edge's background-free level
        before normalisation (input units; as
        :func:`mmspec_widgets.extract.extract_edges`);
        ``totals``: despiked total counts per pixel (for the low-count mask);
        ``n_replaced``: number of channels replaced as spikes.
    """
    if plan is None:
        raise MMSpecError("extract_block: give the plan from fit_plan(si, zlp)")
    engine = check_engine(engine)
    y = np.asarray(si_block)
    n_e = len(plan.energy)
    if y.shape[-1] != n_e:
        raise DataError(f"si_block: expected {n_e} energy channels (the plan's), got {y.shape[-1]}")
    lead = y.shape[:-1]
    y2 = y.reshape(-1, n_e)
    if plan.zlp_median_eV is not None:
        if positions is None:
            raise DataError("positions: the plan aligns the zero loss; give the block's "
                            "zero-loss positions (eV)")
        pos = np.asarray(positions, float).reshape(-1)
        if pos.size != y2.shape[0]:
            raise DataError(f"positions: expected {y2.shape[0]} values, got {pos.size}")
        shift = (pos - plan.zlp_median_eV) / plan.channel_step
    else:
        shift = np.zeros(y2.shape[0])
    if background_rows is not None:
        background_rows = np.asarray(background_rows)
        if (background_rows.ndim != 1 or background_rows.dtype.kind not in "iu"
                or background_rows.size == 0 or background_rows.min() < 0
                or background_rows.max() >= y2.shape[0]
                or np.unique(background_rows).size != background_rows.size):
            raise DataError(f"background_rows: expected distinct row indices in [0, "
                            f"{y2.shape[0]}) (the block's pixels, flat), got "
                            f"{background_rows.size} values")
    out, totals, replaced, jumps, kept = _run_rows(y2, shift, plan, engine, threads,
                                                   background_rows)
    if kept is not None:
        plan.background_error = background_error(kept, plan)
    stds, model_stds = _jump_stds(y2, plan, jumps)
    edges, off = {}, 0
    for k, name in enumerate(plan.edges):
        g = get_edge(name).n_points
        edges[name] = out[:, off:off + g].reshape(lead + (g,))
        edges[f"jump_{name}"] = np.ascontiguousarray(jumps[:, k]).reshape(lead)
        edges[f"jump_{name}_std"] = np.ascontiguousarray(stds[:, k]).reshape(lead)
        edges[f"jump_{name}_model_std"] = np.ascontiguousarray(model_stds[:, k]).reshape(lead)
        off += g
    return edges, totals.reshape(lead), int(replaced.sum())


def _jump_stds(y: np.ndarray, plan: ChainPlan, jumps: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Counting-statistics std (:func:`mmspec_widgets.kernels.jump_std`) and
    background-shape std (:func:`mmspec_widgets.kernels.jump_model_std`, with
    the plan's ``background_error``) of each edge jump, from the raw rows on
    the plan's calibrated axis (before the sub-channel zero-loss shift and
    spike removal, which change these sums negligibly)."""
    out = np.full((y.shape[0], len(plan.edges)), np.nan)
    model = np.full_like(out, np.nan)
    e = plan.calibrated_energy
    for k, name in enumerate(plan.edges):
        grid = get_edge(name).energy
        post = (grid[grid.size - max(3, grid.size // 10)], grid[-1])
        win = plan.windows.get(name, list(get_edge(name).pre_edge))
        out[:, k] = jump_std(y, e, win, post, jumps[:, k])
        rel = plan.background_error.get(name, {}).get("scatter", 0.0)
        model[:, k] = jump_model_std(y, e, post, jumps[:, k], rel)
    return out, model
