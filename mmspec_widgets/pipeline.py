"""Fast, block-wise and out-of-core mapping of spectrum images.

The standard chain (:func:`mmspec_widgets.demo.run_chain`) is::

    calibrate (zero-loss alignment + reference features) -> remove_spikes
    -> extract_edges (power-law background per edge, standard grids,
    post-edge normalisation, low-count mask) -> model.predict

Two of its steps need the whole spectrum image: the median zero-loss position
(the common axis every pixel is shifted onto) and the calibration, fitted on
the spectrum summed over the usable pixels. Everything else is per pixel.
This module therefore splits the chain in two:

1. :func:`fit_plan` computes the global quantities once (zero-loss positions of
   every pixel, their median, the calibration from the summed spectrum of all
   pixels or of a sample of pixel blocks, the low-count threshold) into a
   :class:`ChainPlan`;
2. :func:`extract_block` runs the per-pixel part on any block of pixels:
   zero-loss shift, spike removal, per-edge background, resampling onto the
   edge grids and normalisation, fused into one pass per spectrum (a compiled
   kernel, threads over pixels), with exactly the arithmetic of the plain
   functions (the tests compare them).

:func:`run_chain_fast` is the in-memory chain built from these pieces (same
result as ``run_chain``), and :func:`map_spectrum_image` streams an SI of any
size (numpy- or dask-backed) block by block into a Zarr store: resumable,
bounded memory, optionally on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .background import append_history, check_spectra
from .edges import DEFAULT_REFERENCES, EDGE_ORDER, get_edge
from .errors import DataError, MMSpecError
from .extract import JUMP_MODEL_STD_NAME, JUMP_STD_NAME
from .kernels import (
    HOLDOUT_ROWS,
    background_model_error,
    despike,
    interp_weights,
    jump_model_std,
    jump_std,
    k_align_rows,
    k_align_rows_grouped,
    k_chain_rows,
    map_row_blocks,
    numba_available,
    shift_resample,
    window_indices,
    work_dtype,
)
from .utils import jsonable

__all__ = [
    "DEFAULT_EDGES",
    "REFERENCES",
    "ChainPlan",
    "fit_plan",
    "extract_block",
    "run_chain_fast",
    "map_spectrum_image",
    "synthetic_si",
]

DEFAULT_EDGES = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")
#: calibration references of the standard chain (those of ``mmspec demo``)
REFERENCES = dict(DEFAULT_REFERENCES)
#: fraction of the 90th percentile of pixel totals below which a pixel is
#: vacuum (as :func:`mmspec_widgets.background.mask_low_counts`)
MASK_FRACTION = 0.05
_ENGINES = ("auto", "numba", "numpy")


# --------------------------------------------------------------------------
# the plan: global quantities, fitted once


@dataclass
class ChainPlan:
    """What the per-block chain needs to know about the whole SI.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx, n_energy)`` of the SI.
    dims : tuple of str
        The two navigation dims (``("y", "x")``).
    energy : list of float
        Recorded energy axis (eV).
    dtype : str
        Working dtype (``"float32"`` for float32 counts, else ``"float64"``).
    zlp_median_eV : float or None
        Median zero-loss position (eV); every pixel is shifted onto
        ``energy - zlp_median_eV``. ``None``: no zero-loss alignment.
    zlp_spread_eV, zlp_std_eV : float
        Peak-to-peak spread and standard deviation of the zero-loss
        positions (eV).
    calibration : dict or None
        ``offset_eV``, ``scale`` and ``references`` of
        :func:`mmspec_widgets.calibrate.fit_calibration`; ``None``: none.
    edges : list of str
        Edges extracted, in table order.
    windows : dict
        Edge -> pre-edge fit window ``[low, high]`` (eV, calibrated axis).
    spike_threshold, spike_width : float, int
        Parameters of :func:`mmspec_widgets.background.remove_spikes`.
    mask_threshold : float or None
        Pixels whose despiked total (counts) is below this are vacuum (NaN);
        ``MASK_FRACTION`` times the 90th percentile of the sampled totals.
        ``None`` until known.
    sample_pixels : int
        Pixels used for the calibration and the mask threshold.
    k_factors : dict or None
        Edge -> k-factor (:func:`mmspec_widgets.quantify.fit_k_factors`): the
        model also reads each pixel's composition from the edge jumps.
    background_error : dict
        Edge -> :func:`~mmspec_widgets.kernels.background_model_error` of the
        sampled pixels (its ``scatter`` enters every jump's std).
    """

    shape: tuple
    dims: tuple
    energy: list
    dtype: str
    zlp_median_eV: float | None = None
    zlp_spread_eV: float = 0.0
    zlp_std_eV: float = 0.0
    calibration: dict | None = None
    edges: list = field(default_factory=lambda: list(DEFAULT_EDGES))
    windows: dict = field(default_factory=dict)
    spike_threshold: float = 8.0
    spike_width: int = 2
    mask_threshold: float | None = None
    sample_pixels: int = 0
    k_factors: dict | None = None
    background_error: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- derived
    @property
    def aligned_energy(self) -> np.ndarray:
        """Energy axis after zero-loss alignment (eV)."""
        e = np.asarray(self.energy, float)
        return e if self.zlp_median_eV is None else e - self.zlp_median_eV

    @property
    def calibrated_energy(self) -> np.ndarray:
        """Energy axis after alignment and calibration (eV), as the plain chain."""
        e = self.aligned_energy
        if self.calibration is None:
            return e
        return self.calibration["offset_eV"] + self.calibration["scale"] * e

    @property
    def channel_step(self) -> float:
        return float(np.median(np.diff(np.asarray(self.energy, float))))

    def to_json(self) -> str:
        return json.dumps(jsonable(asdict(self)))

    @classmethod
    def from_json(cls, text: str) -> ChainPlan:
        d = json.loads(text)
        d["shape"] = tuple(d["shape"])
        d["dims"] = tuple(d["dims"])
        return cls(**d)

    def signature(self) -> str:
        """Hash of what determines the per-pixel results."""
        keys = {k: v for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(jsonable(keys), sort_keys=True).encode()).hexdigest()[:16]


def _check_si(si, name: str = "si", finite: bool = True) -> xr.DataArray:
    si = check_spectra(si, name, finite=False)
    if si.ndim != 3:
        raise DataError(f"{name}: expected a spectrum image with dims (y, x, energy), got dims "
                        f"{si.dims}")
    if finite:
        check_spectra(si, name)  # the values, once the shape is known to be right
    return si


#: fractions of negative values in a core-loss SI above which it is refused
#: (DataError) or warned about (raw counts have none, or a few from the noise
#: of a dark reference)
NEGATIVE_REFUSE, NEGATIVE_WARN = 0.5, 0.01


def _check_counts(si: xr.DataArray, name: str = "si") -> None:
    """Counts must be (mostly) non-negative: power-law backgrounds fitted on
    negative counts give meaningless edges (numpy-backed SIs only)."""
    if not isinstance(si.data, np.ndarray) or si.size == 0:
        return
    frac = float(np.count_nonzero(si.data < 0)) / si.size
    msg = (f"{name}: {100 * frac:.1f} % of the values are negative; expected the raw "
           "core-loss SI in counts (not background-subtracted or offset)")
    if frac > NEGATIVE_REFUSE:
        raise DataError(msg)
    if frac > NEGATIVE_WARN:
        warnings.warn(msg + "; the maps of pixels with negative counts are unreliable",
                      stacklevel=3)


def _edge_names(edges) -> list[str]:
    if isinstance(edges, str):
        edges = [edges]
    if edges is None or not hasattr(edges, "__iter__"):
        raise MMSpecError(f"edges={edges!r}: expected a list of edge names, e.g. "
                          f"{list(DEFAULT_EDGES)}")
    names = [get_edge(e).name for e in edges]
    if not names:
        raise MMSpecError("edges: expected at least one edge name")
    return sorted(set(names), key=EDGE_ORDER.index)


def _blocks(shape2: tuple[int, int], block: tuple[int, int]):
    by, bx = block
    ny, nx = shape2
    return [(iy, ix, slice(iy * by, min((iy + 1) * by, ny)), slice(ix * bx, min((ix + 1) * bx, nx)))
            for iy in range(-(-ny // by)) for ix in range(-(-nx // bx))]


def _check_block(block) -> tuple[int, int]:
    try:
        by, bx = (int(b) for b in block)
    except (TypeError, ValueError):
        raise MMSpecError(f"block={block!r}: expected (rows, columns) of pixels, e.g. (64, 64)") \
            from None
    if by < 1 or bx < 1:
        raise MMSpecError(f"block={block!r}: expected positive sizes")
    return by, bx


def _load_block(si: xr.DataArray, ys: slice, xs: slice, wd) -> np.ndarray:
    data = si.data[ys, xs]
    if not isinstance(data, np.ndarray):
        data = data.compute() if hasattr(data, "compute") else np.asarray(data)
    return np.ascontiguousarray(data, dtype=wd)


def _sample_blocks(shape2, block, sample_pixels: int | None):
    """Pixel regions the plan reads: all pixels as full-width slabs of ``block[0]``
    rows (pixels in C order, so sums accumulate in the plain chain's order), or
    evenly spread blocks holding at least ``sample_pixels``."""
    n = shape2[0] * shape2[1]
    if sample_pixels is None or sample_pixels >= n:
        return _blocks(shape2, (block[0], shape2[1]))
    blocks = _blocks(shape2, block)
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
             progress: bool = False) -> tuple[ChainPlan, np.ndarray | None]:
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

    Returns
    -------
    (ChainPlan, ndarray or None)
        The plan and the zero-loss position (eV) of every pixel (``None``
        without ``zlp``).
    """
    from .background import remove_spikes
    from .calibrate import (
        CALIBRATION_GROUPS,
        fit_calibration,
        pixel_groups,
        with_uncertainty,
        zero_loss_positions,
    )

    si = _check_si(si)
    block = _check_block(block)
    engine = _engine(engine)
    names = _edge_names(edges)
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
        nav_si = {d: si.sizes[d] for d in si.dims[:-1]}
        nav_z = {d: zlp.sizes[d] for d in zlp.dims[:-1]}
        if nav_si != nav_z:
            swapped = set(nav_si) == set(nav_z) and len(nav_si) == 2 and \
                [nav_z[d] for d in nav_si] == list(nav_si.values())[::-1]
            hint = (" (x and y swapped: a transposed zero-loss SI? transpose it to "
                    f"{tuple(nav_si)} first)") if swapped else ""
            raise DataError(f"zlp: navigation shape {nav_z} does not match the SI's {nav_si}"
                            f"{hint}; expected the zero-loss SI of the same scan")
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
        bar = _bar(progress, len(sample) * (1 + need_cal), "plan")
        # pass 1: aligned totals (calibration mask) and despiked totals (vacuum mask)
        t_al, t_clean = [], []
        for _, _, ys, xs in sample:
            y = _load_block(si, ys, xs, wd).reshape(-1, e.size)
            sh = shift[ys, xs].ravel()
            if need_cal:
                t_al.append(_aligned_totals(y, sh, plan, engine))
            if mask_threshold:
                t_clean.append(_despiked_totals(y, sh, plan, engine))
            bar.update(1)
        if mask_threshold:
            plan.mask_threshold = _threshold(np.concatenate(t_clean))
        if need_cal:
            t_al = np.concatenate(t_al)
            thr = _threshold(t_al)
            use = np.isfinite(t_al) & (t_al > 0) & (t_al >= (thr if thr is not None else np.inf))
            acc = np.zeros(e.size, wd)
            # disjoint random pixel groups: the location error of each feature
            n_groups = CALIBRATION_GROUPS if use.sum() >= 2 * CALIBRATION_GROUPS else 0
            gid = pixel_groups(use) if n_groups else np.full(use.shape, -1)
            acc_g = np.zeros((n_groups, e.size), wd)
            start = 0
            for _, _, ys, xs in sample:  # pass 2: summed aligned spectrum of usable pixels
                y = _load_block(si, ys, xs, wd).reshape(-1, e.size)
                u = use[start:start + y.shape[0]]
                g = gid[start:start + y.shape[0]]
                start += y.shape[0]
                if u.any():
                    _accumulate_aligned(acc, y, shift[ys, xs].ravel(), plan, u, engine,
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
    _edge_tables(plan, wd)  # raise now if a window or grid lies outside the data
    plan.background_error = _background_error(si, plan, sample, wd, shift)
    return plan, positions


def _background_error(si, plan: ChainPlan, sample, wd, shift: np.ndarray) -> dict:
    """:func:`~mmspec_widgets.kernels.background_model_error` of each edge on
    the zero-loss aligned, despiked rows of sampled blocks (evenly spread,
    about twice HOLDOUT_ROWS pixels) on the plan's calibrated axis, as the
    plain chain reads the calibrated SI (unaligned rows would count each
    pixel's energy drift, spikes a cosmic ray, as a background shape error)."""
    sizes = [(b[2].stop - b[2].start) * (b[3].stop - b[3].start) for b in sample]
    n_blocks = min(len(sample), max(1, int(np.ceil(2 * HOLDOUT_ROWS / max(np.mean(sizes), 1)))))
    pick = np.unique(np.linspace(0, len(sample) - 1, n_blocks).round().astype(int))
    rows = []
    for i in pick:
        ys, xs = sample[i][2], sample[i][3]
        y = _load_block(si, ys, xs, wd).reshape(-1, len(plan.energy))
        if plan.zlp_median_eV is not None:
            y = shift_resample(y, shift[ys, xs].ravel())
        rows.append(despike(y, plan.spike_threshold, plan.spike_width)[0])
    y = np.concatenate(rows)
    out = {}
    for name in plan.edges:
        grid = get_edge(name).energy
        tail = grid[grid.size - max(3, grid.size // 10):]
        err = background_model_error(y, plan.calibrated_energy, plan.windows[name],
                                     (tail[0], tail[-1]))
        out[name] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in err.items()}
    return out


def _threshold(totals: np.ndarray) -> float | None:
    ok = np.isfinite(totals) & (totals > 0)
    if not ok.any():
        return None
    return float(MASK_FRACTION * np.percentile(totals[ok], 90))


def _shift_map(plan: ChainPlan, positions: np.ndarray | None) -> np.ndarray:
    if positions is None or plan.zlp_median_eV is None:
        return np.zeros(plan.shape[:2])
    return (np.asarray(positions, float) - plan.zlp_median_eV) / plan.channel_step


def _engine(engine: str) -> str:
    if engine not in _ENGINES:
        raise MMSpecError(f"engine={engine!r}: expected one of {_ENGINES}")
    if engine == "auto":
        return "numba" if numba_available() else "numpy"
    if engine == "numba" and not numba_available():  # pragma: no cover
        raise MMSpecError("engine='numba' needs the package numba (pip install numba)")
    return engine


def _row_chunk(n_energy: int) -> int:
    return max(16, 262144 // max(n_energy, 1))


def _aligned_totals(y: np.ndarray, shift: np.ndarray, plan: ChainPlan, engine: str):
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


def _accumulate_aligned(acc: np.ndarray, y: np.ndarray, shift: np.ndarray, plan: ChainPlan,
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


def _despiked_totals(y, shift, plan, engine) -> np.ndarray:
    empty = ChainPlan(**{**asdict(plan), "edges": []})
    return _run_rows(y, shift, empty, engine)[1]


# --------------------------------------------------------------------------
# per-block extraction


def _edge_tables(plan: ChainPlan, wd) -> dict:
    ec = plan.calibrated_energy
    j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw = ([] for _ in range(11))
    off = 0
    for name in plan.edges:
        edge = get_edge(name)
        win = plan.windows.get(name, list(edge.pre_edge))
        try:
            i1, i2 = window_indices(ec, win)
        except DataError as err:
            raise DataError(f"{name}: pre-edge window {tuple(win)} eV: {err}") from None
        a, d = i1, i2 - 1
        if (d - a) % 2:
            d -= 1
        c = (a + d) // 2
        grid = edge.energy
        if grid[0] < ec[0] - 1e-6 or grid[-1] > ec[-1] + 1e-6:
            raise DataError(f"energy_{name}: the standard grid {grid[0]:.1f} - {grid[-1]:.1f} eV "
                            f"is not covered by the data ({ec[0]:.1f} - {ec[-1]:.1f} eV)")
        i0, w = interp_weights(ec, grid)
        j1.append(a)
        j3.append(c)
        j4.append(d)
        xw.append([ec[a], ec[c], ec[c], ec[d]])
        bk0.append(int(i0.min()))
        bk1.append(int(i0.max()) + 2)
        goff.append(off)
        gsize.append(grid.size)
        gtail.append(max(3, grid.size // 10))
        gi0.append(i0)
        gw.append(w)
        off += grid.size
    ww = np.concatenate(gw).astype(wd) if gw else np.zeros(0, wd)
    return {
        "j1": np.asarray(j1, np.int64), "j3": np.asarray(j3, np.int64),
        "j4": np.asarray(j4, np.int64), "xw": np.asarray(xw, float).reshape(-1, 4),
        "bk0": np.asarray(bk0, np.int64), "bk1": np.asarray(bk1, np.int64),
        "goff": np.asarray(goff, np.int64), "gsize": np.asarray(gsize, np.int64),
        "gtail": np.asarray(gtail, np.int64),
        "gi0": np.concatenate(gi0).astype(np.int64) if gi0 else np.zeros(0, np.int64),
        "gw": ww, "gomw": (1 - ww).astype(wd),
        "loge": np.log(ec), "grad": np.gradient(ec), "n_grid": off,
    }


def _run_rows(y: np.ndarray, shift: np.ndarray, plan: ChainPlan, engine: str,
              threads: int | None = None):
    """Edges (rows, sum of grid sizes), despiked totals, spikes replaced and
    edge jumps (rows, edges)."""
    wd = np.dtype(plan.dtype)
    y = np.ascontiguousarray(y, dtype=wd)
    if engine == "numpy":
        return _run_rows_numpy(y, shift, plan)
    t = _edge_tables(plan, wd)
    m = y.shape[0]
    out = np.empty((m, t["n_grid"]), wd)
    totals = np.empty(m)
    replaced = np.empty(m, np.int64)
    jumps = np.empty((m, len(plan.edges)))
    align = plan.zlp_median_eV is not None
    sh = np.ascontiguousarray(shift, dtype=np.float64)

    def run(r0, r1):
        k_chain_rows(y[r0:r1], sh[r0:r1], align, float(plan.spike_threshold),
                     int(plan.spike_width), t["j1"], t["j3"], t["j4"], t["xw"], t["bk0"],
                     t["bk1"], t["goff"], t["gsize"], t["gtail"], t["gi0"], t["gw"],
                     t["gomw"], t["loge"], t["grad"], out[r0:r1], totals[r0:r1],
                     replaced[r0:r1], jumps[r0:r1])

    map_row_blocks(run, m, _row_chunk(y.shape[1]), threads)
    return out, totals, replaced, jumps


def _run_rows_numpy(y: np.ndarray, shift: np.ndarray, plan: ChainPlan):
    """The same step with the plain functions (reference engine)."""
    from .background import remove_spikes
    from .extract import extract_edges

    a = shift_resample(y, shift) if plan.zlp_median_eV is not None else y
    da = xr.DataArray(a, dims=("pixel", "energy"),
                      coords={"energy": ("energy", plan.calibrated_energy)})
    clean = remove_spikes(da, threshold=plan.spike_threshold, width=plan.spike_width)
    totals = clean.sum("energy").values.astype(float)
    replaced = (clean.values != a).sum(-1)
    if not plan.edges:
        return np.zeros((y.shape[0], 0), y.dtype), totals, replaced, np.zeros((y.shape[0], 0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="subtract_background: the fit failed")
        ds = extract_edges(clean, edges=plan.edges, mask=False,
                           windows={k: tuple(v) for k, v in plan.windows.items()})
    out = np.concatenate([ds[n].values for n in plan.edges], axis=1)
    jumps = np.stack([ds[f"jump_{n}"].values for n in plan.edges], axis=1)
    return out, totals, replaced, jumps


def extract_block(si_block, positions=None, plan: ChainPlan | None = None, *,
                  engine: str = "auto", threads: int | None = None,
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
    engine = _engine(engine)
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
    out, totals, replaced, jumps = _run_rows(y2, shift, plan, engine, threads)
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


def _edges_dataset(edges: dict, plan: ChainPlan, dims, coords: dict, attrs: dict,
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


def _chain_attrs(si_attrs: dict, plan: ChainPlan, n_replaced: int | None) -> dict:
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


def _extract_history(ds: xr.Dataset, plan: ChainPlan, **extra) -> xr.Dataset:
    ds = append_history(ds, "extract_edges", edges=list(plan.edges), normalize="post_edge",
                        background="powerlaw",
                        windows={k: v for k, v in plan.windows.items()
                                 if list(get_edge(k).pre_edge) != list(v)})
    return append_history(ds, "pipeline", **extra) if extra else ds


# --------------------------------------------------------------------------
# prediction helpers


def _null_maps(model, plan: ChainPlan) -> xr.Dataset:
    """The model's answer for a pixel without usable spectra (masked pixel)."""
    ds = xr.Dataset()
    for name in plan.edges:
        g = get_edge(name).energy
        ds[name] = xr.DataArray(np.full((1, g.size), np.nan, np.dtype(plan.dtype)),
                                dims=("pixel", f"energy_{name}"))
        ds = ds.assign_coords({f"energy_{name}": g})
    return model.predict(ds)


def _k_dict(k_factors) -> dict | None:
    if not k_factors:
        return None
    k = {get_edge(e).name: float(v) for e, v in dict(k_factors).items()}
    bad = [e for e, v in k.items() if not np.isfinite(v) or v <= 0]
    if bad:
        raise MMSpecError(f"k_factors: expected positive numbers, got {[k[e] for e in bad]} "
                          f"for {bad}")
    return k


def _predict_rows(model, edges: dict, plan: ChainPlan, rows: np.ndarray,
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
        from .quantify import quantify

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


def _null_values(null: xr.Dataset) -> dict:
    return {str(v): (null[v].values.ravel()[0], null[v].dtype) for v in null.data_vars}


def _usable(totals: np.ndarray, threshold: float | None) -> np.ndarray:
    ok = np.isfinite(totals) & (totals > 0)
    if threshold is None:
        return np.zeros_like(ok)
    return ok & (totals >= threshold)


# --------------------------------------------------------------------------
# in-memory chain


def run_chain_fast(si: xr.DataArray, zlp: xr.DataArray | None = None, *, model=None,
                   edges: Sequence[str] = DEFAULT_EDGES,
                   references: Mapping[str, float] | None = None,
                   engine: str = "auto", predict: bool = True,
                   timings: dict | None = None, k_factors: Mapping[str, float] | None = None,
                   composition: Mapping[str, float] | None = None
                   ) -> tuple[xr.Dataset, xr.Dataset | None]:
    """The standard chain, fast: same inputs and results as
    :func:`mmspec_widgets.demo.run_chain`.

    Calibration uses every pixel (as :func:`~mmspec_widgets.calibrate.calibrate`);
    the per-pixel steps run fused in one pass per spectrum, on all cores.

    Parameters
    ----------
    si, zlp : xarray.DataArray
        Core-loss SI ``(y, x, energy)`` (counts, eV) and optional zero-loss SI.
    model : optional
        Model with ``predict(edges_dataset)``; default
        :func:`mmspec_widgets.learn.load_model`.
    edges : sequence of str
        Edges to extract.
    references : mapping, optional
        Calibration references; default :data:`REFERENCES` (as ``run_chain``).
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel (see :func:`extract_block`).
    predict : bool
        ``False``: stop after the edges (maps returned as ``None``).
    timings : dict, optional
        Filled with wall-clock seconds per stage: ``plan`` (zero loss and
        calibration), ``extract`` (shift, spikes, backgrounds, grids), ``predict``;
        with a :class:`~mmspec_widgets.learn.fusion.MultimodalModel` also
        ``predict_stages``: seconds summed over the prediction threads in
        ``input`` (edge spectra joined into rows), ``features``, ``ood``,
        ``trees`` and ``blocks`` (all of the prediction's pixel blocks).
    k_factors, composition : mapping, optional
        As for :func:`mmspec_widgets.demo.run_chain`: read each pixel's
        composition from its edge jumps, with these k-factors or with k-factors
        fitted on the whole image's known mean ``composition``.

    Returns
    -------
    (edges_ds, maps) : (xarray.Dataset, xarray.Dataset or None)
    """
    si = _check_si(si, finite=False)  # fit_plan checks the values
    engine = _engine(engine)
    record = timings is not None
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    plan, positions = fit_plan(si, zlp, references=dict(references or REFERENCES),
                               edges=edges, sample_pixels=None, mask_threshold=False,
                               engine=engine)
    t1 = time.perf_counter()
    y = np.asarray(si.data).reshape(-1, si.shape[-1])
    pos = None if positions is None else positions.reshape(-1)
    edges_d, totals, n_rep = extract_block(y, pos, plan, engine=engine)
    plan.mask_threshold = _threshold(totals)
    mask = _usable(totals, plan.mask_threshold)
    t2 = time.perf_counter()
    nav = si.shape[:2]
    coords = {d: si[d] for d in si.dims[:2] if d in si.coords}
    attrs = _chain_attrs(si.attrs, plan, n_rep)
    eds = _edges_dataset({k: v.reshape(nav + v.shape[1:]) for k, v in edges_d.items()}, plan,
                         si.dims[:2], coords, attrs, mask.reshape(nav))
    eds = _extract_history(eds, plan)
    from .quantify import quantify_known

    eds = quantify_known(eds, k_factors=k_factors, composition=composition)
    timings.update(plan=t1 - t0, extract=t2 - t1)
    if not predict:
        return eds, None
    if model is None:
        from .learn import load_model

        model = load_model()
    from .learn.trees import recording_stages

    stages: dict = {}
    t3 = time.perf_counter()
    with recording_stages(stages) if record else nullcontext():
        maps = model.predict(eds)
    timings["predict"] = time.perf_counter() - t3
    if stages:
        timings["predict_stages"] = stages
    return eds, maps


# --------------------------------------------------------------------------
# out of core


def _bar(progress: bool, total: int, desc: str, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, unit="block")


def _block_task(y: np.ndarray, pos: np.ndarray | None, plan_json: str, model, engine: str,
                null: dict):
    """Everything a pixel block needs, as one picklable function (workers)."""
    plan = ChainPlan.from_json(plan_json)
    nav = y.shape[:2]
    threads = None
    try:  # on a dask worker the cluster's threads already share the cores
        from distributed import get_worker

        get_worker()
        threads = 1
    except (ImportError, ValueError):
        pass
    edges, totals, n_rep = extract_block(y, pos, plan, engine=engine, threads=threads)
    rows = _usable(totals.ravel(), plan.mask_threshold)
    flat = {k: edges[k].reshape(-1, edges[k].shape[-1]) for k in plan.edges}
    flat.update({k: v.reshape(-1) for k, v in edges.items() if k.startswith("jump_")})
    maps = _predict_rows(model, flat, plan, rows, null)
    res = {k: v.reshape(nav) for k, v in maps.items()}
    res["total_counts"] = totals.reshape(nav)
    res["mask"] = rows.reshape(nav)
    return res, n_rep


def _store_attrs(store) -> dict:
    import zarr

    try:
        g = zarr.open_group(str(store), mode="r")
    except Exception:  # noqa: BLE001 - anything unreadable is "not ours"
        return {}
    return dict(g.attrs)


#: version of the store fingerprint (``mmspec_fingerprint`` attribute)
_FP_VERSION = 1
#: pixel blocks hashed for the fingerprint of a dask-backed SI (a numpy-backed
#: SI is hashed whole)
_FP_BLOCKS = 16


def _data_fingerprint(da: xr.DataArray | None, block) -> str | None:
    """SHA-256 (hex, 16 digits) of an SI's shape, dtype, axes and counts.

    A numpy-backed SI is hashed whole; a dask-backed one through
    ``_FP_BLOCKS`` evenly spread pixel blocks (reading all of a large SI
    twice would double the cost of mapping it).
    """
    if da is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps([list(da.dims), [int(s) for s in da.shape], str(da.dtype)]).encode())
    for d in da.dims:
        if d in da.coords:
            h.update(np.ascontiguousarray(np.asarray(da[d].values, float)).tobytes())
    data = da.data
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        step = max(1, (1 << 22) // max(flat.shape[1] * flat.itemsize, 1))
        for r in range(0, flat.shape[0], step):
            h.update(np.ascontiguousarray(flat[r:r + step]).tobytes())
    else:
        blocks = _blocks(da.shape[:2], block)
        idx = np.unique(np.linspace(0, len(blocks) - 1, min(_FP_BLOCKS, len(blocks)))
                        .round().astype(int))
        for i in idx:
            _, _, ys, xs = blocks[i]
            h.update(np.ascontiguousarray(_load_block(da, ys, xs, da.dtype)).tobytes())
    return h.hexdigest()[:16]


def _fingerprint(si, zlp, *, references, names, block, sample_pixels, model_id,
                 k_factors) -> dict:
    """What a map store is a store of: the inputs and every plan parameter."""
    refs = None if references is None else jsonable(
        {str(k): (None if v is None else float(v)) for k, v in
         (references.items() if isinstance(references, Mapping)
          else ((n, None) for n in references))})
    return {
        "version": _FP_VERSION,
        "block": list(block),
        "edges": list(names),
        "model_id": model_id,
        "references": refs,
        "sample_pixels": None if sample_pixels is None else int(sample_pixels),
        "k_factors": _k_dict(k_factors),
        "shape": [int(s) for s in si.shape],
        "dims": list(si.dims[:2]),
        "zlp": zlp is not None,
        "si_data": _data_fingerprint(si, block),
        "zlp_data": _data_fingerprint(zlp, block),
    }


_FP_WHAT = {"si_data": "the counts of si differ from those mapped into it",
            "zlp_data": "the counts of zlp differ from those mapped into it",
            "shape": "si has another shape", "zlp": "a zero-loss SI given in one run only"}


def _compare_fingerprint(out: Path, have: dict, want: dict) -> None:
    for key in want:
        if key == "version" or have.get(key) == want[key]:
            continue
        if key in _FP_WHAT:
            shown = f"{_FP_WHAT[key]}: {have.get(key)!r} stored, {want[key]!r} now"
        else:
            shown = f"{have.get(key)!r} stored, {want[key]!r} now"
        raise MMSpecError(f"out={str(out)!r} holds maps of a different run ({key}: {shown}); "
                          "choose another path, or overwrite=True to start over")


def _is_map_store(attrs: dict) -> bool:
    return any(k in attrs for k in ("mmspec_plan", "mmspec_signature", "mmspec_fingerprint"))


def _sibling(out: Path, kind: str) -> Path:
    import os

    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{time.monotonic_ns()}"


def _clear_stale(out: Path) -> None:
    """Remove temporary folders that killed runs left beside ``out``."""
    import os
    import re
    import shutil

    pat = re.compile(rf"^\.{re.escape(out.name)}\.(creating|old)-(\d+)-\d+$")
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pat.match(p.name)
        if not m:
            continue
        pid = int(m.group(2))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def _create_store(out: Path, plan: ChainPlan, si: xr.DataArray, null: xr.Dataset,
                  block, positions, model_attrs: dict, fingerprint: dict) -> None:
    """Build the store under a temporary name beside ``out``, write its
    fingerprint last, then rename it to ``out``: a store at ``out`` is always
    complete (an interrupted creation leaves only the temporary folder, which
    the next run removes)."""
    import os
    import shutil

    import dask.array as dsa
    import zarr

    ny, nx = plan.shape[:2]
    by, bx = block
    nby, nbx = -(-ny // by), -(-nx // bx)
    dims = plan.dims
    data = {}
    for v in null.data_vars:
        dt = null[v].dtype
        fill = False if dt == np.bool_ else np.nan
        data[v] = xr.Variable(dims, dsa.full((ny, nx), fill, dtype=dt, chunks=(by, bx)),
                              dict(null[v].attrs))
    data["total_counts"] = xr.Variable(dims, dsa.full((ny, nx), np.nan, chunks=(by, bx)),
                                       {"units": "counts",
                                        "long_name": "despiked total counts"})
    data["mask"] = xr.Variable(dims, dsa.zeros((ny, nx), dtype=bool, chunks=(by, bx)),
                               {"long_name": "usable pixel (not vacuum)"})
    if positions is not None:
        data["zlp_position"] = xr.Variable(dims, dsa.from_array(positions, chunks=(by, bx)),
                                           {"units": "eV", "long_name": "zero-loss position"})
    data["block_done"] = xr.Variable(("block_y", "block_x"),
                                     dsa.zeros((nby, nbx), dtype=np.int8, chunks=(1, 1)),
                                     {"long_name": "1 where the pixel block is written"})
    coords = {d: si[d] for d in dims if d in si.coords}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {**model_attrs, "mmspec_plan": plan.to_json(), "mmspec_block": [by, bx],
                "mmspec_signature": plan.signature()}
    tmp = _sibling(out, "creating")
    try:
        ds.to_zarr(str(tmp), mode="w", compute=False, consolidated=False)
        g = zarr.open_group(str(tmp), mode="r+")
        if positions is not None:  # small: write it now
            g["zlp_position"][...] = positions
        g.attrs["mmspec_fingerprint"] = json.dumps(fingerprint)  # last: the store is complete
        old = None
        if out.exists() or out.is_symlink():
            if out.is_dir() and not out.is_symlink():
                old = _sibling(out, "old")
                os.rename(out, old)
            else:
                out.unlink()
        try:
            os.rename(tmp, out)
        except OSError as err:
            raise MMSpecError(f"out={str(out)!r}: could not put the new store in place "
                              f"({err}); another run writing there?") from err
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def map_spectrum_image(
    si: xr.DataArray,
    zlp: xr.DataArray | None = None,
    *,
    model=None,
    references: Mapping[str, float] | None = REFERENCES,
    edges: Sequence[str] = DEFAULT_EDGES,
    out: str | Path = "maps.zarr",
    block: tuple[int, int] = (64, 64),
    client=None,
    progress: bool = True,
    sample_pixels: int | None = 65536,
    engine: str = "auto",
    overwrite: bool = False,
    timings: dict | None = None,
    k_factors: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Map a spectrum image of any size block by block into a Zarr store.

    The chain is :func:`mmspec_widgets.demo.run_chain`'s: the calibration and
    the vacuum threshold are fitted once (:func:`fit_plan`, on all pixels or a
    spread sample of blocks), then every pixel block is aligned, despiked,
    cut into edges, predicted and written to its region of the store. The SI
    is read one block at a time, so memory is bounded by the block size, not
    the SI size.

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``(y, x, energy)`` in counts, energy in eV; numpy- or
        dask-backed (e.g. ``mmspec_widgets.load(path, lazy=True)``).
    zlp : xarray.DataArray, optional
        Zero-loss SI of the same scan.
    model : optional
        Model with ``predict(edges_dataset)``; default
        :func:`mmspec_widgets.learn.load_model`.
    references : mapping or None
        Calibration features -> energies (eV); ``None``: no calibration.
    edges : sequence of str
        Edges fed to the model.
    out : path
        Zarr store (a folder) to write. The store carries a fingerprint of
        the SI and zero-loss SI (their counts and axes) and of every plan
        parameter (references, edges, block, sample_pixels, model,
        k-factors). A store written by an earlier, interrupted run of the
        same job is resumed: blocks already written are skipped. A store
        is created under a temporary name and renamed when complete, so a
        run killed while creating it leaves nothing at ``out``.
    block : (int, int)
        Pixels per block (rows, columns); also the store's chunks.
    client : dask.distributed.Client, optional
        Run the blocks on this cluster (each worker reads its blocks and
        predicts; results are written here). Default: this process, all cores.
    progress : bool
        Show a progress bar (tqdm).
    sample_pixels : int or None
        Pixels used to fit the calibration and the vacuum threshold (all when
        the SI has fewer; ``None``: all).
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel.
    overwrite : bool
        Replace whatever is at ``out`` (another run's store, any folder or
        file) instead of resuming or refusing.
    timings : dict, optional
        Filled with ``plan`` and ``blocks`` (wall seconds), ``blocks_done``
        (written by this call) and ``blocks_skipped`` (found written).

    k_factors : mapping, optional
        Edge -> k-factor (:func:`mmspec_widgets.quantify.fit_k_factors`, e.g.
        fitted on a region of known composition with :func:`run_chain_fast`):
        each pixel's composition is read from its edge jumps as well.

    Returns
    -------
    xarray.Dataset
        The store opened lazily: one map per model output (``li_content``,
        ``li_content_std`` ... ``ood``), ``total_counts``, ``mask`` and
        ``zlp_position``; attrs hold the plan, the model id and the history.

    Raises
    ------
    MMSpecError
        If ``out`` holds something else (maps of another SI or zero-loss SI,
        other references, model, block size, edges or k-factors, or not a
        map store) and ``overwrite`` is false.
    """
    import zarr

    si = _check_si(si)
    _check_counts(si)
    block = _check_block(block)
    engine = _engine(engine)
    names = _edge_names(edges)
    out = Path(out)
    if model is None:
        from .learn import load_model

        model = load_model()
    model_id = str(getattr(model, "model_id", type(model).__name__))

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    plan = None
    positions = None
    fp = _fingerprint(si, zlp, references=references, names=names, block=block,
                      sample_pixels=sample_pixels, model_id=model_id, k_factors=k_factors)
    if out.is_symlink() and out.is_dir():  # a store kept elsewhere: work there
        out = out.resolve()
    _clear_stale(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        if not overwrite:
            raise MMSpecError(f"out={str(out)!r} exists and is not a map store (a folder) "
                              "written by map_spectrum_image; choose another path or "
                              "overwrite=True")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        attrs = _store_attrs(out)
        if not _is_map_store(attrs):
            raise MMSpecError(f"out={str(out)!r} exists and is not a map store written by "
                              "map_spectrum_image; choose another path or overwrite=True")
        try:
            have = json.loads(attrs["mmspec_fingerprint"])
            stored = ChainPlan.from_json(attrs["mmspec_plan"])
            if have.get("version") != _FP_VERSION:
                raise ValueError("fingerprint version")
        except (KeyError, TypeError, ValueError):
            # written before stores carried a fingerprint, or a creation cut
            # short: nothing in it can be trusted, build it again
            warnings.warn(f"out={str(out)!r}: map store without a complete fingerprint "
                          "(interrupted while being created, or written by an older "
                          "version); building it again", stacklevel=2)
        else:
            _compare_fingerprint(out, have, fp)
            plan = stored
            if zlp is not None:
                positions = np.asarray(zarr.open_group(str(out), mode="r")["zlp_position"][...])
    if plan is None:
        plan, positions = fit_plan(si, zlp, references=references, edges=names, block=block,
                                   sample_pixels=sample_pixels, engine=engine,
                                   progress=progress)
        if plan.mask_threshold is None:
            raise DataError("si: no pixel has positive counts; nothing to map")
        plan.k_factors = _k_dict(k_factors)
        null = _null_maps(model, plan)
        nulls = _null_values(null)
        hist = _chain_attrs(si.attrs, plan, None)["history"]
        hist.append({"step": "extract_edges", "params": {"edges": names,
                                                          "normalize": "post_edge",
                                                          "background": "powerlaw"}})
        hist.append({"step": "learn.predict", "model_id": model_id, "edges": names})
        hist.append({"step": "map_spectrum_image",
                     "params": {"block": list(block), "sample_pixels": plan.sample_pixels,
                                "mask_threshold_counts": plan.mask_threshold}})
        mattrs = {k: jsonable(v) for k, v in null.attrs.items() if k != "history"}
        mattrs["model_id"] = model_id
        mattrs["history"] = jsonable(hist)
        _create_store(out, plan, si, null, block, positions, mattrs, fp)
    else:
        nulls = _null_values(_null_maps(model, plan))

    g = zarr.open_group(str(out), mode="r+")
    done = np.asarray(g["block_done"][...])
    todo = [b for b in _blocks(plan.shape[:2], block) if not done[b[0], b[1]]]
    plan_json = plan.to_json()
    bar = _bar(progress, done.size, "blocks", initial=int(done.sum()))
    t1 = time.perf_counter()
    timings.update(plan=t1 - t0, blocks_skipped=int(done.sum()), blocks_done=0)

    def write(b, res):
        iy, ix, ys, xs = b
        for name, arr in res.items():
            g[name][ys, xs] = arr
        g["block_done"][iy, ix] = 1
        timings["blocks_done"] += 1
        bar.update(1)

    def pos_of(ys, xs):
        return None if positions is None else np.asarray(positions[ys, xs])

    try:
        if client is None:
            _run_local(si, todo, plan, plan_json, model, engine, nulls, pos_of, write)
        else:
            _run_distributed(client, si, todo, plan_json, model, engine, nulls, pos_of, write)
    finally:
        bar.close()
        timings["blocks"] = time.perf_counter() - t1
    res = xr.open_zarr(str(out), consolidated=False)
    return res.drop_vars("block_done")


def _run_local(si, todo, plan, plan_json, model, engine, nulls, pos_of, write) -> None:
    """Blocks one after the other in this process; the next block is read while
    the current one is computed."""
    from concurrent.futures import ThreadPoolExecutor

    wd = np.dtype(plan.dtype)
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(_load_block, si, todo[0][2], todo[0][3], wd)
        for k, b in enumerate(todo):
            y = nxt.result()
            if k + 1 < len(todo):
                nxt = reader.submit(_load_block, si, todo[k + 1][2], todo[k + 1][3], wd)
            res, _ = _block_task(y, pos_of(b[2], b[3]), plan_json, model, engine, nulls)
            write(b, res)


def _run_distributed(client, si, todo, plan_json, model, engine, nulls, pos_of, write) -> None:
    """One task per block on a dask.distributed cluster; results written here
    as they arrive."""
    import dask
    from distributed import as_completed

    data = si.data
    if isinstance(data, np.ndarray):
        import dask.array as dsa

        data = dsa.from_array(data, chunks=(64, 64, -1))
    dmodel = dask.delayed(model, pure=True)
    dplan = dask.delayed(plan_json, pure=True)
    dnull = dask.delayed(nulls, pure=True)
    tasks = []
    for b in todo:
        _, _, ys, xs = b
        tasks.append(dask.delayed(_block_task, pure=True)(
            data[ys, xs], pos_of(ys, xs), dplan, dmodel, engine, dnull))
    futures = client.compute(tasks)
    index = {f.key: b for f, b in zip(futures, todo, strict=True)}
    for fut in as_completed(futures):
        res, _ = fut.result()
        write(index[fut.key], res)
        fut.release()


# --------------------------------------------------------------------------
# synthetic spectrum images of any size (benchmarks and tests)


def synthetic_si(shape: tuple[int, int] = (256, 256), *, twin=None, chunks=None, seed: int = 0,
                 dtype=np.float32) -> tuple[xr.DataArray, xr.DataArray]:
    """A large NMC-like SI and its zero-loss SI, tiled from the digital twin.

    Pixel ``(i, j)`` takes the twin's pixel ``(i mod ny, j mod nx)`` (its
    counts, with their noise, spikes and energy-axis error) plus fresh
    Gaussian noise of Poisson size (``sqrt(counts)``), drawn from a fixed
    table at a random offset per pixel, which is cheap enough to generate an
    8 GiB SI lazily.

    Parameters
    ----------
    shape : (int, int)
        Pixels ``(ny, nx)``.
    twin : DigitalTwin, optional
        Default: :func:`mmspec_widgets.twin.load_digital_twin`.
    chunks : (int, int), optional
        Pixel chunks of a dask-backed result (generated block by block on
        demand); default: numpy arrays in memory.
    seed : int
        Noise seed (each chunk derives its own from it and its position).
    dtype : numpy dtype
        Data type of the counts.

    Returns
    -------
    (si, zlp) : (xarray.DataArray, xarray.DataArray)
        ``(y, x, energy)``, coordinates in nm and eV, attrs of the twin.
    """
    if twin is None:
        from .twin import load_digital_twin

        twin = load_digital_twin()
    ny, nx = (int(s) for s in shape)
    base_si = np.asarray(twin.si.values, dtype)
    base_z = np.asarray(twin.zlp.values, dtype)
    table = np.random.default_rng(12345).standard_normal(1 << 20).astype(dtype)

    def make(base, ys, xs, key):
        ty, tx = base.shape[:2]
        n = base.shape[-1]
        ix = np.arange(xs.start, xs.stop) % tx
        out = np.empty((ys.stop - ys.start, ix.size, n), dtype)
        rng = np.random.default_rng([seed, key, ys.start, xs.start])
        offs = rng.integers(0, table.size - n, size=out.shape[:2])
        ramp = np.arange(n)
        step = max(1, (1 << 21) // max(ix.size * n, 1))  # ~16 MB of indices at a time
        for r0 in range(0, out.shape[0], step):
            r1 = min(r0 + step, out.shape[0])
            iy = np.arange(ys.start + r0, ys.start + r1) % ty
            mean = base[iy[:, None], ix[None, :]]
            noise = table[offs[r0:r1, :, None] + ramp]
            np.multiply(np.sqrt(np.clip(mean, 0, None)), noise, out=noise)
            np.add(mean, noise, out=out[r0:r1])
        np.clip(out, 0, None, out=out)
        return out

    def build(base, key):
        if chunks is None:
            return make(base, slice(0, ny), slice(0, nx), key)
        import dask.array as dsa

        cy, cx = chunks

        def gen(block_info=None):
            (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
            return make(base, slice(y0, y1), slice(x0, x1), key)

        return dsa.map_blocks(gen, dtype=dtype, chunks=((cy,) * (ny // cy) + ((ny % cy,) if ny % cy else ()),
                                                         (cx,) * (nx // cx) + ((nx % cx,) if nx % cx else ()),
                                                         (base.shape[-1],)))

    def wrap(src, data, key):
        step_y = float(src["y"][1] - src["y"][0]) if src.sizes["y"] > 1 else 1.0
        step_x = float(src["x"][1] - src["x"][0]) if src.sizes["x"] > 1 else 1.0
        return xr.DataArray(data, dims=("y", "x", "energy"), coords={
            "y": ("y", np.arange(ny) * step_y, dict(src["y"].attrs)),
            "x": ("x", np.arange(nx) * step_x, dict(src["x"].attrs)),
            "energy": ("energy", np.asarray(src["energy"].values, float),
                       dict(src["energy"].attrs))},
            attrs={**{k: v for k, v in src.attrs.items() if k != "history"},
                   "title": f"{src.attrs.get('title', 'SI')} tiled to {ny}x{nx}",
                   "history": [{"step": "synthetic_si", "params": {"shape": [ny, nx],
                                                                   "seed": seed}}]},
            name=key)

    return (wrap(twin.si, build(base_si, 0), "si"), wrap(twin.zlp, build(base_z, 1), "zlp"))
