"""Ground floor: compiled kernels and plain-numpy helpers shared by the
processing modules.

Everything here works on numpy arrays (rows of spectra, energy axes in eV,
channel indices) and knows nothing of xarray; it imports nothing from the
package but :mod:`mmspec_widgets.errors`. The labelled API
(:mod:`~mmspec_widgets.background`, :mod:`~mmspec_widgets.calibrate`,
:mod:`~mmspec_widgets.extract`) and the fused chain
(:mod:`~mmspec_widgets.pipeline`) build on it, so each piece of arithmetic is
written once:

* threads: :func:`n_threads`, :func:`map_row_blocks`;
* plain numpy: :func:`work_dtype`, :func:`window_indices`,
  :func:`shift_resample`, :func:`interp_weights`, :func:`jump_std`,
  :func:`background_model_error`, :func:`jump_model_std`;
* compiled (numba, ``k_*``): selection and medians, zero-loss shift, spike
  removal (:func:`despike` runs it over rows), the float32 power law
  (:func:`k_powerlaw_f32`), one edge of a spectrum (:func:`k_edge`: two-area
  power law, grid, post-edge level; over rows by :func:`k_edges_rows` for
  :func:`mmspec_widgets.extract.extract_edges`), and the fused per-row chain
  (:func:`k_chain_rows`: shift, spikes, then :func:`k_edge`);
  :func:`numba_available` says whether they are compiled.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, MMSpecError

# --------------------------------------------------------------------------
# threads


def n_threads() -> int:
    """Threads used by the block-wise numpy kernels: the CPUs this process may
    run on, or ``MMSPEC_NUM_THREADS`` when set."""
    import os

    env = os.environ.get("MMSPEC_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise MMSpecError(f"MMSPEC_NUM_THREADS={env!r}: expected a positive integer") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def map_row_blocks(func, n_rows: int, rows_per_block: int, threads: int | None = None) -> None:
    """Call ``func(start, stop)`` over ``[0, n_rows)`` in blocks, on a thread
    pool (numpy releases the GIL inside its loops)."""
    starts = range(0, n_rows, max(1, rows_per_block))
    threads = n_threads() if threads is None else threads
    if threads <= 1 or n_rows <= rows_per_block:
        for s in starts:
            func(s, min(s + rows_per_block, n_rows))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for f in [pool.submit(func, s, min(s + rows_per_block, n_rows)) for s in starts]:
            f.result()


# --------------------------------------------------------------------------
# plain-numpy helpers


def work_dtype(dtype) -> np.dtype:
    """float32 for float32 data, float64 for anything else."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def window_indices(energy: np.ndarray, window, name: str = "window") -> tuple[int, int]:
    """Channel range ``[i1, i2)`` of the energy ``window`` (low, high) eV on
    ``energy``: nearest channels, at least 4.

    Raises
    ------
    DataError
        If the window is malformed, outside the energy range or too narrow.
    """
    try:
        lo, hi = (float(w) for w in window)
    except (TypeError, ValueError):
        raise DataError(f"{name}={window!r}: expected (low, high) energies in eV") from None
    if not hi > lo:
        raise DataError(f"{name}={window!r}: high must exceed low")
    if lo < energy[0] - 1e-9 or hi > energy[-1] + 1e-9:
        raise DataError(f"{name}=({lo:g}, {hi:g}) eV lies outside the data's energy range "
                        f"{energy[0]:g} - {energy[-1]:g} eV")
    i1 = int(np.argmin(np.abs(energy - lo)))
    i2 = int(np.argmin(np.abs(energy - hi))) + 1  # exclusive end
    if i2 - i1 < 4:
        raise DataError(f"{name}=({lo:g}, {hi:g}) eV covers only {i2 - i1} channels; "
                        "expected at least 4")
    return i1, i2


def shift_resample(y: np.ndarray, shift_ch: np.ndarray) -> np.ndarray:
    """y_out[..., i] = y[..., i + shift] by linear interpolation.

    Channels that would need data beyond the ends take the end value. Float
    rows with finite shifts run through the compiled row kernel
    (:func:`k_align`, the one the chain's fused pass uses) on all cores, with
    no temporaries of the data's size; anything else, or without numba, the
    same arithmetic in numpy: the two give the same bits.
    """
    n = y.shape[-1]
    shift_ch = np.asarray(shift_ch, dtype=np.float64)
    if (_numba is not None and n >= 2 and y.dtype in (np.float32, np.float64)
            and np.all(np.isfinite(shift_ch))):
        rows = np.ascontiguousarray(y).reshape(-1, n)
        s = np.ascontiguousarray(np.broadcast_to(shift_ch, y.shape[:-1])).reshape(-1)
        out = np.empty_like(rows)

        def run(r0, r1):
            k_shift_rows(rows[r0:r1], s[r0:r1], out[r0:r1])

        map_row_blocks(run, rows.shape[0], max(16, 262144 // n))
        return out.reshape(y.shape)
    return shift_resample_numpy(y, shift_ch)


def shift_resample_numpy(y: np.ndarray, shift_ch: np.ndarray) -> np.ndarray:
    """:func:`shift_resample` in plain numpy (vectorised; temporaries of the
    data's size)."""
    n = y.shape[-1]
    idx = np.arange(n, dtype=np.float64) + shift_ch[..., None]
    idx = np.clip(idx, 0.0, n - 1.0)
    i0 = np.floor(idx).astype(np.intp)
    i0 = np.minimum(i0, n - 2)
    w = (idx - i0).astype(y.dtype if y.dtype == np.float32 else np.float64)
    y0 = np.take_along_axis(y, i0, -1)
    y1 = np.take_along_axis(y, i0 + 1, -1)
    return y0 + w * (y1 - y0)


def interp_weights(src: np.ndarray, dst: np.ndarray):
    """Left neighbour ``i0`` on ``src`` of every point of ``dst`` (clipped to
    ``[0, src.size - 2]``) and its weight ``w``: linear interpolation is
    ``y[i0] * (1 - w) + y[i0 + 1] * w``."""
    i0 = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, src.size - 2)
    w = (dst - src[i0]) / (src[i0 + 1] - src[i0])
    return i0, w


def jump_std(y: np.ndarray, energy: np.ndarray, window, post: tuple[float, float],
             jump: np.ndarray) -> np.ndarray:
    """Standard deviation of edge jumps from counting statistics.

    Two terms, per row of raw counts ``y`` (``(..., n_energy)`` on ``energy``,
    eV): the Poisson noise of the counts averaged over the post-edge window
    ``post``, and the error of the background extrapolated there from a power
    law fitted to Poisson counts in the pre-edge ``window`` (weighted least
    squares on ``ln y = a - r ln E``, weights ``y``, on log energies centred in
    the window so that float32 sums stay well conditioned; the variance of
    ``ln B(E)`` from the fit's covariance, fully correlated over the window).
    The background level over the post-edge window is the counts' mean there
    less the ``jump``.  Meaningful for raw counts (EELS); an approximation for
    the other background models.  Whether an edge is detected is judged
    against it; the power law's shape error is :func:`jump_model_std`.  Used
    by :func:`mmspec_widgets.extract.extract_edges` and the compiled chain
    (:mod:`mmspec_widgets.pipeline`).
    """
    e = np.asarray(energy, float)
    lead = y.shape[:-1]
    y = y.reshape(-1, e.size)
    w = np.flatnonzero((e >= float(window[0])) & (e <= float(window[1])))
    p = np.flatnonzero((e >= post[0]) & (e <= post[1]))
    if w.size < 2 or p.size < 1:
        return np.full(lead, np.nan)
    ln = np.log(e[w[0]:w[-1] + 1])
    mu = ln.mean()
    x = ln - mu
    dt = y.dtype if y.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    basis = np.stack([np.ones_like(x), x, x * x], axis=1).astype(dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        sums = (y[:, w[0]:w[-1] + 1] @ basis).astype(np.float64)  # one BLAS pass
        s0, s1, s2 = sums[:, 0], sums[:, 1], sums[:, 2]
        lc = np.log(e[p]).mean() - mu
        var_ln_b = (s2 - 2 * s1 * lc + s0 * lc * lc) / (s0 * s2 - s1 * s1)
        raw = (y[:, p[0]:p[-1] + 1] @ np.full(p.size, 1.0 / p.size, dt)).astype(np.float64)
        jump = np.asarray(jump, np.float64).reshape(-1)
        b = raw - jump
        out = np.sqrt(b * b * var_ln_b + np.clip(raw, 0.0, None) / p.size)
    return np.where(np.isfinite(out) & np.isfinite(jump), out, np.nan).reshape(lead)


def jump_model_std(y: np.ndarray, energy: np.ndarray, post: tuple[float, float],
                   jump: np.ndarray, rel: float) -> np.ndarray:
    """Error of edge jumps from the power law's shape: ``rel`` (the
    ``scatter`` of :func:`background_model_error`) times each row's background
    level over the post-edge window ``post`` (the counts' mean there less the
    ``jump``); NaN where the jump is."""
    e = np.asarray(energy, float)
    lead = y.shape[:-1]
    p = np.flatnonzero((e >= post[0]) & (e <= post[1]))
    jump = np.asarray(jump, np.float64).reshape(-1)
    if p.size < 1:
        return np.full(lead, np.nan)
    y = y.reshape(-1, e.size)
    dt = y.dtype if y.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    with np.errstate(invalid="ignore"):
        raw = (y[:, p[0]:p[-1] + 1] @ np.full(p.size, 1.0 / p.size, dt)).astype(np.float64)
        out = abs(float(rel)) * np.abs(raw - jump)
    return np.where(np.isfinite(out) & np.isfinite(jump), out, np.nan).reshape(lead)


#: share of the pre-edge window the hold-out fit uses, and the gap before the
#: part it is tested on (:func:`background_model_error`)
HOLDOUT_FIT, HOLDOUT_GAP = 0.6, 0.2
#: rows :func:`background_model_error` reads at most (evenly spread)
HOLDOUT_ROWS = 4096


def background_model_error(y: np.ndarray, energy: np.ndarray, window,
                           post: tuple[float, float]) -> dict:
    """How far a power law fitted in the pre-edge ``window`` misses the
    background beyond counting statistics, measured on the data themselves.

    Each usable row of raw counts ``y`` (finite, every window channel above
    zero, window counts at least 5 % of the rows' 90th percentile; at most
    :data:`HOLDOUT_ROWS`, evenly spread) gets the power law of
    :func:`jump_std` fitted on the first :data:`HOLDOUT_FIT` of the window and
    extrapolated over its last ``1 - HOLDOUT_FIT - HOLDOUT_GAP``, where the
    counts are known background: ``m`` = counts there / extrapolation - 1.
    What counting statistics cannot explain is the shape error: the spread
    of ``m`` over the rows beyond its Poisson variance (``scatter``; robust,
    1.4826 median absolute deviation, against the median Poisson variance;
    for fewer than 8 rows, the root mean square of ``m`` beyond its mean
    Poisson variance), and its median over the rows (``bias``, common to
    every row; the mean for fewer than 8). Both are scaled from the
    hold-out's lever (log-energy distance from the fitted part to the tested
    part) to the jump's (from the window to ``post``), linearly, as a slope
    error of ``ln B`` grows.

    Returns
    -------
    dict
        ``scatter`` and ``bias`` (relative to the background level over
        ``post``), ``rows`` used, ``lever`` (the jump's lever over the
        hold-out's); ``scatter`` 0.0 and ``rows`` 0 when no row is usable or
        the window has fewer than 10 channels.
    """
    e = np.asarray(energy, float)
    y = np.asarray(y).reshape(-1, e.size)
    return background_model_error_window(y[:, window_channels(e, window)], e, window, post)


def window_channels(energy: np.ndarray, window) -> np.ndarray:
    """Channels of ``energy`` inside ``window`` (low, high) eV, ends included:
    the pre-edge channels :func:`background_model_error` reads."""
    e = np.asarray(energy, float)
    return np.flatnonzero((e >= float(window[0])) & (e <= float(window[1])))


def background_model_error_window(yw: np.ndarray, energy: np.ndarray, window,
                                  post: tuple[float, float]) -> dict:
    """:func:`background_model_error` from the window's channels alone: ``yw``
    holds, per row, the counts at :func:`window_channels` of ``energy`` (the
    whole axis, eV), e.g. kept by the fused chain while it despikes."""
    e = np.asarray(energy, float)
    lo, hi = float(window[0]), float(window[1])
    w = window_channels(e, window)
    p = np.flatnonzero((e >= post[0]) & (e <= post[1]))
    none = {"scatter": 0.0, "bias": float("nan"), "rows": 0, "lever": float("nan")}
    if w.size < 10 or p.size < 1:
        return none
    yw = np.asarray(yw).reshape(-1, w.size)
    ew = e[w]
    fit = np.flatnonzero(ew <= lo + HOLDOUT_FIT * (hi - lo))
    test = np.flatnonzero(ew >= lo + (HOLDOUT_FIT + HOLDOUT_GAP) * (hi - lo))
    if fit.size < 3 or test.size < 2:
        return none
    y64 = np.asarray(yw, np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(y64).all(axis=1) & (y64 > 0).all(axis=1)
    if not ok.any():
        return none
    tot = y64[ok].sum(axis=1)
    rows = np.flatnonzero(ok)[tot >= 0.05 * np.percentile(tot, 90)]
    if rows.size > HOLDOUT_ROWS:
        rows = rows[np.linspace(0, rows.size - 1, HOLDOUT_ROWS).round().astype(np.int64)]
    yf = np.asarray(yw[rows][:, fit], np.float64)
    ln = np.log(ew[fit])
    mu = ln.mean()
    x = ln - mu
    s0, s1, s2 = yf.sum(1), yf @ x, yf @ (x * x)
    ly = np.log(yf)
    t0, t1 = (yf * ly).sum(1), (yf * ly) @ x
    det = s0 * s2 - s1 * s1
    slope = (s0 * t1 - s1 * t0) / det
    icpt = (t0 - slope * s1) / s0
    xt = np.log(ew[test]).mean() - mu
    counts = np.asarray(yw[rows][:, test], np.float64)
    m = counts.mean(1) / np.exp(icpt + slope * xt) - 1.0
    poisson = (s2 - 2 * s1 * xt + s0 * xt * xt) / det + 1.0 / counts.sum(1)
    if m.size >= 8:  # robust: a stray pixel does not widen every other's std
        centre = float(np.median(m))
        spread2 = (1.4826 * np.median(np.abs(m - centre))) ** 2
        excess = spread2 - float(np.median(poisson))
    else:
        centre = float(np.mean(m))
        excess = float(np.mean(m * m) - np.mean(poisson))
    lever = (np.log(e[p]).mean() - np.log(ew).mean()) / xt
    return {"scatter": float(np.sqrt(max(excess, 0.0)) * lever),
            "bias": float(centre * lever), "rows": int(rows.size), "lever": float(lever)}


# --------------------------------------------------------------------------
# compiled kernels (numba is installed with the package's dependencies; the
# "numpy" engine of the pipeline runs the plain functions instead)

try:  # numba comes with the package's dependencies (edrixs); without it the
    # "numpy" engine runs the plain functions instead
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None

# exact IEEE arithmetic where results are compared with the plain functions;
# fast-math only where the result cannot depend on it (counts, brackets,
# index arithmetic without rounding choices, totals compared with a threshold)
if _numba is not None:
    _jit = _numba.njit(nogil=True, cache=True, error_model="numpy")
    _fast = _numba.njit(nogil=True, cache=True, fastmath=True)
else:  # pragma: no cover
    def _jit(f):
        return f

    _fast = _jit


def numba_available() -> bool:
    """Whether the ``k_*`` kernels are compiled (numba is installed)."""
    return _numba is not None


@_jit
def k_select(buf, n, k):
    # k-th smallest of buf[:n] (reorders buf); Hoare partition with a
    # median-of-three pivot
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        a = buf[lo]
        b = buf[mid]
        c = buf[hi]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
        pivot = a if a > b else b
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return buf[k]


@_fast
def k_count_le(x, n, v):
    c = 0
    for i in range(n):
        c += x[i] <= v
    return c


@_fast
def k_count_lt(x, n, v):
    c = 0
    for i in range(n):
        c += x[i] < v
    return c


@_fast
def k_min_max(x, n):
    lo = x[0]
    hi = x[0]
    for i in range(n):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    return lo, hi


@_fast
def k_max_below(x, n, v):
    # largest value below v (-inf if none), as float64; a plain max reduction
    # (vectorised) over the values with those at or above v replaced by -inf
    ninf = x.dtype.type(-np.inf)
    m = ninf
    for i in range(n):
        xi = x[i]
        m = max(m, xi if xi < v else ninf)
    return np.float64(m)


@_fast
def k_compress(x, n, low, high, cand):
    # cand[:m] = values in (low, high], branch-free (cand holds n + 1 values)
    m = 0
    for i in range(n):
        xi = x[i]
        cand[m] = xi
        m += (xi > low) & (xi <= high)
    return m


@_fast
def k_total(x, lo, hi):
    s = 0.0
    for i in range(lo, hi):
        s += x[i]
    return s


@_fast
def k_mean_std(x, n):
    s = 0.0
    for i in range(n):
        s += x[i]
    mu = s / n
    v = 0.0
    for i in range(n):
        d = x[i] - mu
        v += d * d
    return mu, np.sqrt(v / n)


@_jit
def k_kth(x, n, k, cand):
    # k-th smallest of x[:n] (x unchanged; finite values). The median lies
    # within mean +- std: start there (else from min/max), shrink the bracket
    # with vectorised counts (interpolation steps, bisection when they
    # stall) until few candidates remain, then select among them.
    # Invariant: count(x <= low) = c_low <= k < count(x <= high) = c_high.
    mu, sd = k_mean_std(x, n)
    low = x.dtype.type(mu - 1.001 * sd) - x.dtype.type(1e-30)
    high = x.dtype.type(mu + 1.001 * sd) + x.dtype.type(1e-30)
    c_low = k_count_le(x, n, low)
    c_high = k_count_le(x, n, high)
    if not (c_low <= k and k < c_high):
        lo, hi = k_min_max(x, n)
        c_lo = k_count_le(x, n, lo)
        if c_lo > k:
            return lo
        low = lo
        high = hi
        c_low = c_lo
        c_high = n
    half = x.dtype.type(0.5)
    bisect = False
    while c_high - c_low > 32:
        if bisect:
            f = half
        else:
            f = x.dtype.type((k - c_low + 0.5) / (c_high - c_low))
        mid = low + (high - low) * f
        if not (mid > low and mid < high):
            mid = low + (high - low) * half
            if not (mid > low and mid < high):
                return high  # nothing strictly between: the answer is high
        c = k_count_le(x, n, mid)
        before = c_high - c_low
        if c > k:
            high = mid
            c_high = c
        else:
            low = mid
            c_low = c
        bisect = 2 * (c_high - c_low) > before  # interpolation stalled
    m = k_compress(x, n, low, high, cand)
    return k_select(cand, m, k - c_low)


@_jit
def k_median(x, n, cand):
    # numpy's median: the middle element, or the mean of the two middle ones
    k = n // 2
    upper = k_kth(x, n, k, cand)
    if n % 2:
        return upper
    if k_count_lt(x, n, upper) <= k - 1:
        lower = upper
    else:
        lower = k_max_below(x, n, upper)
    return (lower + upper) / x.dtype.type(2)


@_fast
def k_shift_index(n, s, i0s, ws):
    # source channel and weight of shift_resample (exact: no
    # rounding choices in these operations)
    top = n - 1.0
    for i in range(n):
        idx = min(max(i + s, 0.0), top)
        i0 = min(int(idx), n - 2)  # idx >= 0: truncation is floor
        i0s[i] = i0
        ws[i] = idx - i0


@_jit
def k_align(row, s, do_align, a, i0s, ws):
    n = row.size
    if not do_align:
        for i in range(n):
            a[i] = row[i]
        return
    k_shift_index(n, s, i0s, ws)
    for i in range(n):
        i0 = i0s[i]
        y0 = row[i0]
        a[i] = y0 + row.dtype.type(ws[i]) * (row[i0 + 1] - y0)


@_jit
def k_shift_rows(y, shift, out):
    # shift_resample of every row: out[r] = y[r] moved by shift[r] channels
    n = y.shape[1]
    i0s = np.empty(n, np.int64)
    ws = np.empty(n, np.float64)
    for r in range(y.shape[0]):
        k_align(y[r], shift[r], True, out[r], i0s, ws)


@_jit
def k_median_filter(a, med, width, win):
    # running median over 2*width+1 channels, 'nearest' ends
    # (scipy.ndimage.median_filter); width 2 by a min/max network
    n = a.size
    if width == 2 and n >= 5:
        for i in range(2, n - 2):
            s1 = min(a[i - 2], a[i - 1])
            l1 = max(a[i - 2], a[i - 1])
            s2 = min(a[i + 1], a[i + 2])
            l2 = max(a[i + 1], a[i + 2])
            lo = max(s1, s2)
            hi = min(l1, l2)
            med[i] = max(min(lo, hi), min(max(lo, hi), a[i]))
        edges = (0, 1, n - 2, n - 1)
    else:
        edges = (0, 0, 0, 0)
    nw = 2 * width + 1
    for i in range(n):
        if width == 2 and n >= 5 and i >= 2 and i < n - 2:
            continue
        for t in range(nw):
            q = i - width + t
            q = 0 if q < 0 else (n - 1 if q > n - 1 else q)
            win[t] = a[q]
        med[i] = k_select(win, nw, width)
    return edges


@_jit
def k_despike(a, med, c, buf, cand, win, threshold, width):
    """background._despike for one spectrum; returns channels replaced."""
    n = a.size
    k_median_filter(a, med, width, win)
    for i in range(n - 1):
        buf[i] = a[i + 1] - a[i]
    md = k_median(buf, n - 1, cand)
    for i in range(n - 1):
        buf[i] = abs(buf[i] - md)
    mad = k_median(buf, n - 1, cand)
    sig0 = np.float64(a.dtype.type(1.4826) * mad) / np.sqrt(2.0)
    zero = a.dtype.type(0)
    for i in range(n):
        buf[i] = max(med[i], zero)
    ref = k_median(buf, n, cand)
    nrep = 0
    for i in range(n):
        if ref > 0:
            rel = np.sqrt(buf[i] / ref)
        else:
            rel = a.dtype.type(1)
        sg = sig0 * max(rel, a.dtype.type(0.25))
        sg = max(sg, 1e-12)
        spike = (a[i] - med[i]) > threshold * sg
        c[i] = med[i] if spike else a[i]
        nrep += spike & (med[i] != a[i])
    return nrep


@_jit
def k_despike_rows(y, threshold, width, out, replaced):
    """:func:`k_despike` on every row of ``y`` into ``out``; a row with a NaN
    or inf is copied unchanged (0 replaced)."""
    m, n = y.shape
    med = np.empty(n, y.dtype)
    buf = np.empty(n, y.dtype)
    cand = np.empty(n + 1, y.dtype)
    win = np.empty(2 * width + 1, y.dtype)
    for p in range(m):
        row = y[p]
        finite = k_all_finite(y, p, p + 1)
        if not finite or n < 3:
            for i in range(n):
                out[p, i] = row[i]
            replaced[p] = 0
            continue
        replaced[p] = k_despike(row, med, out[p], buf, cand, win, threshold, width)


def despike(y: np.ndarray, threshold: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosmic-ray spikes of ``(..., energy)`` spectra replaced by the running
    median of ``2 * width + 1`` channels (the arithmetic of
    :func:`k_despike`, rows on threads).

    Returns
    -------
    clean : ndarray
        Same shape, in the working dtype (:func:`work_dtype`).
    replaced : ndarray of int64
        Channels replaced per spectrum (leading shape).
    """
    y = np.asarray(y)
    wd = work_dtype(y.dtype)
    lead, n = y.shape[:-1], y.shape[-1]
    rows = np.ascontiguousarray(y.reshape(-1, n), dtype=wd)
    out = np.empty_like(rows)
    replaced = np.zeros(rows.shape[0], np.int64)

    def run(r0, r1):
        k_despike_rows(rows[r0:r1], float(threshold), int(width), out[r0:r1], replaced[r0:r1])

    map_row_blocks(run, rows.shape[0], max(16, 262144 // max(n, 1)))
    return out.reshape(*lead, n), replaced.reshape(lead)


# float32 exp (Cephes expf: Cody-Waite reduction, degree-7 polynomial, 2^k
# built from its bits) written so that the loop vectorises; ~1e-7 relative
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (np.float32(c) for c in (
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))


@_jit
def k_powerlaw_f32(y, nr, big, dle, lsc, use_lsc, subtract, out):
    """Rows of ``big * exp(nr * dle + lsc)`` (float32), or ``y`` minus them.

    The power-law background of :func:`mmspec_widgets.background._powerlaw_f32`
    in one pass per spectrum: ``nr`` = -r and ``big`` (the background at the
    reference channel) per row, ``dle`` = ln E - ln E_ref per channel.
    """
    m, n = out.shape
    kbits = np.empty(n, np.int32)
    poly = np.empty(n, np.float32)
    two_k = kbits.view(np.float32)
    half = np.float32(0.5)
    one = np.float32(1.0)
    lo = np.float32(-87.0)
    hi = np.float32(88.0)
    for p in range(m):
        q = nr[p]
        b = big[p]
        if not (np.isfinite(q) and np.isfinite(b)):
            for i in range(n):
                out[p, i] = np.nan
            continue
        for i in range(n):
            u = q * dle[i]
            if use_lsc:
                u = u + lsc[i]
            u = min(max(u, lo), hi)
            kf = np.floor(u * _LOG2E + half)
            r = u - kf * _LN2_HI
            r = r - kf * _LN2_LO
            t = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
            poly[i] = t * (r * r) + r + one
            kbits[i] = (np.int32(kf) + np.int32(127)) << np.int32(23)
        if subtract:
            for i in range(n):
                out[p, i] = y[p, i] - poly[i] * two_k[i] * b
        else:
            for i in range(n):
                out[p, i] = poly[i] * two_k[i] * b


@_jit
def k_align_rows(y, shift, do_align, weights, acc, totals):
    """Aligned totals per row; acc += aligned row where weights[row]."""
    k_align_rows_grouped(y, shift, do_align, weights, np.full(y.shape[0], -1, np.int64), acc,
                         np.zeros((0, y.shape[1]), acc.dtype), totals)


@_jit
def k_align_rows_grouped(y, shift, do_align, weights, group, acc, acc_group, totals):
    """Aligned totals per row; acc += aligned row where weights[row], and
    ``acc_group[group[row]] += aligned row`` where ``group[row] >= 0`` (the sums
    of disjoint pixel groups in the same pass)."""
    m, n = y.shape
    a = np.empty(n, y.dtype)
    i0s = np.empty(n, np.int64)
    ws = np.empty(n)
    for p in range(m):
        k_align(y[p], shift[p], do_align, a, i0s, ws)
        totals[p] = k_total(a, 0, n)
        if weights[p]:
            for i in range(n):
                acc[i] += a[i]
        g = group[p]
        if g >= 0:
            for i in range(n):
                acc_group[g, i] += a[i]


@_jit
def k_twoarea(c, j1, j3, j4, x1, x2, x3, x4):
    """Two-area power law ``counts per channel = amp E^-r dE`` of one spectrum
    ``c``: the halves ``[j1, j3)`` and ``[j3, j4)`` of the window, their
    integrals the sums of counts (float64), end points ``x1 .. x4`` (eV; the
    channels' energies, ``x2 = x3``); returns ``(amp, r)``, NaN or inf where a
    half holds no counts. The one fit of the power law: :func:`k_edge` and
    :func:`mmspec_widgets.background.subtract_background` (through
    :func:`k_twoarea_rows`) both use it."""
    s1 = k_total(c, j1, j3)
    s2 = k_total(c, j3, j4)
    r = 2.0 * np.log(s1 / s2 * (x4 - x3) / (x2 - x1)) / np.log(x4 * x3 / (x2 * x1))
    kk = 1.0 - r
    a2 = kk * s2 / (x4 ** kk - x3 ** kk)
    a1 = kk * s1 / (x2 ** kk - x1 ** kk)
    amp = (a1 * s1 + a2 * s2) / (s1 + s2)
    return amp, r


@_jit
def k_twoarea_rows(y, j1, j3, j4, x1, x2, x3, x4, out):
    """:func:`k_twoarea` of every row of ``y``: ``out[row] = (amp, r)``."""
    for p in range(y.shape[0]):
        amp, r = k_twoarea(y[p], j1, j3, j4, x1, x2, x3, x4)
        out[p, 0] = amp
        out[p, 1] = r


@_jit
def k_edge(c, k, j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw, gomw, loge, grad,
           post_norm, sub, out):
    """Edge ``k`` of one spectrum ``c`` (counts per channel): the two-area
    power law fitted on the halves ``[j1, j3)`` and ``[j3, j4)`` of its
    pre-edge window (integrals = sums of counts, end points ``xw``), subtracted
    over channels ``[bk0, bk1)``, linearly resampled onto the edge's grid
    (``out[goff : goff + gsize]``, left channels ``gi0``, weights ``gw`` and
    ``gomw`` = 1 - ``gw``) and, with ``post_norm``, divided by the mean of its
    last ``gtail`` points; returns that mean (the edge jump; NaN, and the grid
    NaN, where the fit fails: no counts in a half of the window); normalising,
    a mean that is not positive leaves the grid NaN. The one arithmetic of the edges: the fused chain
    (:func:`k_chain_rows`) and :func:`mmspec_widgets.extract.extract_edges`
    (:func:`k_edges_rows`) both run it."""
    o = goff[k]
    g = gsize[k]
    amp, r = k_twoarea(c, j1[k], j3[k], j4[k], xw[k, 0], xw[k, 1], xw[k, 2], xw[k, 3])
    b0 = c.dtype.type(amp * np.exp(-r * loge[0]) * grad[0])
    if not np.isfinite(b0):
        for t in range(g):
            out[o + t] = np.nan
        return np.nan
    for i in range(bk0[k], bk1[k]):
        sub[i] = c[i] - c.dtype.type(amp * np.exp(-r * loge[i]) * grad[i])
    for t in range(g):
        i0 = gi0[o + t]
        out[o + t] = sub[i0] * gomw[o + t] + sub[i0 + 1] * gw[o + t]
    nt = gtail[k]
    norm = c.dtype.type(k_total(out, o + g - nt, o + g) / nt)
    if post_norm:
        if norm > 0:
            for t in range(g):
                out[o + t] = out[o + t] / norm
        else:
            for t in range(g):
                out[o + t] = np.nan
    return norm


@_jit
def k_edges_rows(y, j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw, gomw, loge, grad,
                 post_norm, out, jumps):
    """:func:`k_edge` for every edge of every row of ``y`` (spectra as they
    are: no zero-loss shift, no spike removal)."""
    m, n = y.shape
    sub = np.empty(n, y.dtype)
    for p in range(m):
        for k in range(j1.size):
            jumps[p, k] = k_edge(y[p], k, j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0,
                                 gw, gomw, loge, grad, post_norm, sub, out[p])


@_jit
def k_chain_rows(y, shift, do_align, threshold, width,
                 j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw, gomw,
                 loge, grad, out, totals, replaced, jumps, keep, kcols, kept):
    """Per row: zero-loss shift, spike removal, then every edge by
    :func:`k_edge` (post-edge normalised); ``jumps``: each edge's post-edge
    level (the normalisation's divisor). Rows with ``keep[row] >= 0`` also
    leave their aligned, despiked channels ``kcols`` in ``kept[keep[row]]`` (a
    row with a NaN or inf: aligned only, as :func:`despike` leaves it)."""
    m, n = y.shape
    a = np.empty(n, y.dtype)
    med = np.empty(n, y.dtype)
    c = np.empty(n, y.dtype)
    buf = np.empty(n, y.dtype)
    cand = np.empty(n + 1, y.dtype)
    sub = np.empty(n, y.dtype)
    win = np.empty(2 * width + 1, y.dtype)
    i0s = np.empty(n, np.int64)
    ws = np.empty(n)
    nedge = j1.size
    for p in range(m):
        row = y[p]
        finite = k_all_finite(y, p, p + 1)
        slot = keep[p]
        if not finite:
            totals[p] = np.nan
            replaced[p] = 0
            for k in range(out.shape[1]):
                out[p, k] = np.nan
            for k in range(nedge):
                jumps[p, k] = np.nan
            if slot >= 0:
                k_align(row, shift[p], do_align, a, i0s, ws)
                for j in range(kcols.size):
                    kept[slot, j] = a[kcols[j]]
            continue
        k_align(row, shift[p], do_align, a, i0s, ws)
        replaced[p] = k_despike(a, med, c, buf, cand, win, threshold, width)
        if slot >= 0:
            for j in range(kcols.size):
                kept[slot, j] = c[kcols[j]]
        totals[p] = k_total(c, 0, n)
        for k in range(nedge):
            jumps[p, k] = k_edge(c, k, j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw,
                                 gomw, loge, grad, True, sub, out[p])


@_jit  # exact IEEE: fast-math assumes no NaN/inf and would fold x - x to 0
def k_all_finite(y, r0, r1):
    # x - x is 0 for a finite value and NaN for NaN or inf; an OR of the
    # comparisons per row (vectorised, unlike a float sum's serial chain)
    for r in range(r0, r1):
        bad = 0
        for j in range(y.shape[1]):
            bad |= (y[r, j] - y[r, j]) != 0.0
        if bad:
            return False
    return True


def all_finite(data: np.ndarray) -> bool:
    """``np.isfinite(data).all()`` without the full-size mask, rows on threads."""
    data = np.asarray(data)
    y = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    if y.dtype not in (np.float32, np.float64) or not y.flags.c_contiguous:
        return bool(np.isfinite(data).all())
    bad = []
    map_row_blocks(lambda r0, r1: bad.append(not k_all_finite(y, r0, r1)), y.shape[0],
                   max(1, 2**20 // max(y.shape[1], 1)))
    return not any(bad)
