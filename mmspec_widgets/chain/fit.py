"""Fit the global part of the chain once: :func:`fit_plan`.

Zero-loss positions of every pixel and their median, the calibration from
the summed spectrum of all pixels or of a sample of pixel blocks, the
low-count threshold and the background model error, into a
:class:`~mmspec_widgets.chain.plan.ChainPlan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..background import check_spectra
from ..edges import get_edge
from ..errors import MMSpecError
from ..kernels import HOLDOUT_ROWS, despike, shift_resample, work_dtype
from .plan import (
    DEFAULT_EDGES,
    REFERENCES,
    ChainPlan,
    check_block,
    check_engine,
    check_si,
    edge_names,
    load_block,
    low_count_threshold,
    pixel_blocks,
    progress_bar,
)
from .rows import (
    accumulate_aligned,
    aligned_totals,
    background_columns,
    background_error,
    despiked_totals,
    edge_tables,
)


def _sample_blocks(shape2, block, sample_pixels: int | None):
    """Pixel regions the plan reads: all pixels as full-width slabs of ``block[0]``
    rows (pixels in C order, so sums accumulate in the plain chain's order), or
    evenly spread blocks holding at least ``sample_pixels``."""
    n = shape2[0] * shape2[1]
    if sample_pixels is None or sample_pixels >= n:
        return pixel_blocks(shape2, (block[0], shape2[1]))
    blocks = pixel_blocks(shape2, block)
    per = block[0] * block[1]
    k = max(1, min(len(blocks), -(-int(sample_pixels) // per)))
    idx = np.unique(np.linspace(0, len(blocks) - 1, k).round().astype(int))
    return [blocks[i] for i in idx]


def fit_plan(si: xr.DataArray, zlp: xr.DataArray | None = None, *,
             references: Mapping[str, float] | None = REFERENCES,
             edges: Sequence[str] = DEFAULT_EDGES, windows: Mapping | None = None,
             block: tuple[int, int] = (64, 64), sample_pixels: int | None = 65536,
             spike_threshold: float = 8.0, spike_width: int = 2,
             mask_threshold: bool = True, engine: str = "auto",
             progress: bool = False, background_error: bool = True) -> tuple[ChainPlan, np.ndarray | None]:
    """Fit the global part of the chain: zero-loss positions, calibration,
    low-count threshold.

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``(y, x, energy)``, counts, energy in eV; numpy- or
        dask-backed (chunked over pixels, never over energy).
    zlp : xarray.DataArray, optional
        Zero-loss SI of the same scan; every pixel's position is computed.
    references : mapping, optional
        Calibration features -> true energies (eV); ``None``: no calibration.
    edges : sequence of str
        Edges to extract later; their windows and grids are checked here.
    windows : mapping, optional
        Edge -> pre-edge window (eV) overriding the edge table.
    block : (int, int)
        Pixel block size used to read the SI.
    sample_pixels : int or None
        The calibration spectrum and the low-count threshold come from all
        pixels when the SI has at most this many, else from evenly spread
        blocks holding at least this many. ``None``: all pixels.
    spike_threshold, spike_width : float, int
        :func:`mmspec_widgets.background.remove_spikes` parameters.
    mask_threshold : bool
        Also compute the low-count threshold on the despiked totals of the
        sample (needed before any block is mapped; the in-memory chain
        computes it from all pixels afterwards instead).
    engine : {"auto", "numba", "numpy"}
        Kernel for the despiked totals.
    progress : bool
        Show a progress bar over the sampled blocks.
    background_error : bool
        Measure the background model error on the sampled rows here
        (``False``: left empty, for a caller that measures it on the same rows,
        :func:`background_sample`, in its own pass: :func:`extract_block` with
        ``background_rows``).

    Returns
    -------
    (ChainPlan, ndarray or None)
        The plan and the zero-loss position (eV) of every pixel (``None``
        without ``zlp``).
    """
    from ..background import remove_spikes
    from ..calibrate import (
        CALIBRATION_GROUPS,
        check_same_scan,
        fit_calibration,
        pixel_groups,
        with_uncertainty,
        zero_loss_positions,
    )

    si = check_si(si)
    block = check_block(block)
    engine = check_engine(engine)
    names = edge_names(edges)
    windows = {get_edge(k).name: [float(v[0]), float(v[1])] for k, v in dict(windows or {}).items()}
    wd = work_dtype(si.dtype)
    e = np.asarray(si["energy"].values, float)
    plan = ChainPlan(shape=tuple(int(s) for s in si.shape), dims=tuple(si.dims[:2]),
                     energy=e.tolist(), dtype=str(np.dtype(wd)), edges=names,
                     windows={n: list(windows.get(n, get_edge(n).pre_edge)) for n in names},
                     spike_threshold=float(spike_threshold), spike_width=int(spike_width))
    if not (np.isfinite(float(spike_threshold)) and spike_threshold > 0):
        raise MMSpecError(f"spike_threshold={spike_threshold!r}: expected a positive, finite "
                          "number")
    if int(spike_width) < 1:
        raise MMSpecError(f"spike_width={spike_width!r}: expected an integer >= 1")
    positions = None
    if zlp is not None:
        zlp = check_spectra(zlp, "zlp", finite=False)
        check_same_scan(si, zlp)
        positions = np.asarray(zero_loss_positions(zlp).transpose(*si.dims[:2]).values, float)
        plan.zlp_median_eV = float(np.median(positions))
        plan.zlp_spread_eV = float(np.ptp(positions))
        plan.zlp_std_eV = float(np.std(positions))
    shift = _shift_map(plan, positions)

    sample = _sample_blocks(si.shape[:2], block, sample_pixels)
    plan.sample_pixels = int(sum((b[2].stop - b[2].start) * (b[3].stop - b[3].start)
                                 for b in sample))
    need_cal = references is not None
    if need_cal or mask_threshold:
        bar = progress_bar(progress, len(sample) * (1 + need_cal), "plan")
        # pass 1: aligned totals (calibration mask) and despiked totals (vacuum mask)
        t_al, t_clean = [], []
        for _, _, ys, xs in sample:
            y = load_block(si, ys, xs, wd).reshape(-1, e.size)
            sh = shift[ys, xs].ravel()
            if need_cal:
                t_al.append(aligned_totals(y, sh, plan, engine))
            if mask_threshold:
                t_clean.append(despiked_totals(y, sh, plan, engine))
            bar.update(1)
        if mask_threshold:
            plan.mask_threshold = low_count_threshold(np.concatenate(t_clean))
        if need_cal:
            t_al = np.concatenate(t_al)
            thr = low_count_threshold(t_al)
            use = np.isfinite(t_al) & (t_al > 0) & (t_al >= (thr if thr is not None else np.inf))
            acc = np.zeros(e.size, wd)
            # disjoint random pixel groups: the location error of each feature
            n_groups = CALIBRATION_GROUPS if use.sum() >= 2 * CALIBRATION_GROUPS else 0
            gid = pixel_groups(use) if n_groups else np.full(use.shape, -1)
            acc_g = np.zeros((n_groups, e.size), wd)
            start = 0
            for _, _, ys, xs in sample:  # pass 2: summed aligned spectrum of usable pixels
                y = load_block(si, ys, xs, wd).reshape(-1, e.size)
                u = use[start:start + y.shape[0]]
                g = gid[start:start + y.shape[0]]
                start += y.shape[0]
                if u.any():
                    accumulate_aligned(acc, y, shift[ys, xs].ravel(), plan, u, engine,
                                        group=g, acc_group=acc_g)
                bar.update(1)

            def spectrum(a):
                return xr.DataArray(a, dims=("energy",),
                                    coords={"energy": ("energy", plan.aligned_energy,
                                                       dict(si["energy"].attrs))})

            summed = remove_spikes(spectrum(acc))
            plan.calibration = fit_calibration(summed, references)
            if n_groups:
                plan.calibration = with_uncertainty(plan.calibration,
                                                    [spectrum(a) for a in acc_g], references)
        bar.close()
    edge_tables(plan, wd)  # raise now if a window or grid lies outside the data
    if background_error:
        plan.background_error = _background_error(si, plan, sample, wd, shift)
    else:  # the caller measures it on the rows it despikes (extract_block's background_rows)
        plan.background_error = {}
    return plan, positions


def _background_blocks(sample) -> list:
    """The sampled blocks the background model error is measured on: evenly
    spread, about twice HOLDOUT_ROWS pixels."""
    sizes = [(b[2].stop - b[2].start) * (b[3].stop - b[3].start) for b in sample]
    n_blocks = min(len(sample), max(1, int(np.ceil(2 * HOLDOUT_ROWS / max(np.mean(sizes), 1)))))
    pick = np.unique(np.linspace(0, len(sample) - 1, n_blocks).round().astype(int))
    return [sample[i] for i in pick]


def background_sample(shape2, block: tuple[int, int] = (64, 64),
                      sample_pixels: int | None = 65536, *, sample=None) -> np.ndarray:
    """Flat pixel indices (C order over ``shape2``) of the rows on which
    :func:`fit_plan` with the same ``block`` and ``sample_pixels`` measures the
    background model error, in the order it reads them (block after block,
    each in C order)."""
    if sample is None:
        sample = _sample_blocks(shape2, check_block(block), sample_pixels)
    idx = []
    for _, _, ys, xs in _background_blocks(sample):
        yy, xx = np.meshgrid(np.arange(ys.start, ys.stop), np.arange(xs.start, xs.stop),
                             indexing="ij")
        idx.append(np.ravel_multi_index((yy.ravel(), xx.ravel()), tuple(shape2)))
    return np.concatenate(idx).astype(np.int64)


def _background_error(si, plan: ChainPlan, sample, wd, shift: np.ndarray) -> dict:
    """:func:`~mmspec_widgets.chain.rows.background_error` of each edge on the
    zero-loss aligned, despiked rows of :func:`background_sample` on the
    plan's calibrated axis, as the plain chain reads the calibrated SI
    (unaligned rows would count each pixel's energy drift, spikes a cosmic
    ray, as a background shape error)."""
    cols, _ = background_columns(plan)
    rows = []
    for _, _, ys, xs in _background_blocks(sample):
        y = load_block(si, ys, xs, wd).reshape(-1, len(plan.energy))
        if plan.zlp_median_eV is not None:
            y = shift_resample(y, shift[ys, xs].ravel())
        rows.append(despike(y, plan.spike_threshold, plan.spike_width)[0][:, cols])
    return background_error(np.concatenate(rows), plan)


def _shift_map(plan: ChainPlan, positions: np.ndarray | None) -> np.ndarray:
    if positions is None or plan.zlp_median_eV is None:
        return np.zeros(plan.shape[:2])
    return (np.asarray(positions, float) - plan.zlp_median_eV) / plan.channel_step
