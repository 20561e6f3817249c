"""Spike removal, low-count masks, pre-edge backgrounds and XAS normalisation.

All functions take labelled :class:`xarray.DataArray` objects with an
``"energy"`` dimension (eV) and any leading dimensions (``("y", "x")`` for a
spectrum image, ``("scan",)``, or none), numpy- or dask-backed. They are
vectorised over all pixels at once: no Python loop over pixels. Each returns a
new object (the input is never modified) whose ``attrs["history"]`` gains one
entry naming the step and its parameters.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import xarray as xr

from .errors import DataError, MMSpecError
from .kernels import (
    all_finite,
    despike,
    k_all_finite,
    k_powerlaw_f32,
    k_twoarea_rows,
    map_row_blocks,
    numba_available,
    window_indices,
    work_dtype,
)
from .utils import jsonable

__all__ = [
    "check_spectra",
    "append_history",
    "remove_spikes",
    "mask_low_counts",
    "subtract_background",
    "fit_background",
    "background_model",
    "normalize_xas",
]

BackgroundModel = Literal["powerlaw", "exponential", "polynomial"]


# --------------------------------------------------------------------------
# helpers shared by the processing modules


def check_spectra(da, name: str = "si", *, finite: bool = True,
                  usable: np.ndarray | None = None) -> xr.DataArray:
    """Validate a spectrum / SI argument and return it (energy last; dask
    data re-chunked to whole spectra).

    ``usable`` (boolean, the leading shape) limits the NaN/inf check to those
    pixels.

    Raises
    ------
    DataError
        If ``da`` is not a DataArray with an increasing ``"energy"`` dimension,
        or (``finite=True``, numpy-backed data only) holds NaN or inf.
    """
    if not isinstance(da, xr.DataArray):
        raise DataError(f"{name}: expected an xarray.DataArray with an 'energy' dimension "
                        f"(e.g. from mmspec_widgets.load), got {type(da).__name__}")
    if "energy" not in da.dims:
        raise DataError(f"{name}: expected an 'energy' dimension, got dims {da.dims}")
    if da.dims[-1] != "energy":
        da = da.transpose(..., "energy")
    e = np.asarray(da["energy"].values, float)
    if e.size < 3 or not np.all(np.diff(e) > 0):
        raise DataError(f"{name}: the energy coordinate must increase strictly "
                        f"({e.size} values)")
    if not isinstance(da.data, np.ndarray) and hasattr(da.data, "chunks") \
            and len(da.chunks[-1]) > 1:
        da = da.chunk({"energy": -1})  # the per-spectrum kernels need whole spectra
    if finite and isinstance(da.data, np.ndarray) and not (usable is None
                                                           and all_finite(da.data)):
        ok = np.isfinite(da.data)
        if usable is not None:
            ok |= ~np.asarray(usable, bool)[..., None]
        if not ok.all():
            bad = int((~ok).sum())
            where = " in usable pixels" if usable is not None else ""
            raise DataError(f"{name}: holds {bad} NaN/inf values{where}; expected finite "
                            "counts (mask the pixels or replace the values first)")
    return da


def append_history(da: xr.DataArray, step: str, **params) -> xr.DataArray:
    """Return ``da`` with a copy of its history plus ``{"step", "params"}``."""
    hist = list(da.attrs.get("history", []))
    hist.append({"step": step, "params": jsonable(params)})
    da.attrs = {**da.attrs, "history": hist}
    return da


def _pixel_mask(mask, si: xr.DataArray) -> xr.DataArray:
    """``mask`` as a boolean DataArray over the pixels (leading dims) of ``si``."""
    m = mask if isinstance(mask, xr.DataArray) else xr.DataArray(
        np.asarray(mask, bool), dims=si.dims[:-1])
    if m.shape != si.shape[:-1]:
        raise DataError(f"mask: expected shape {si.shape[:-1]} (the pixels of si), "
                        f"got {m.shape}")
    return m


def _apply(func, da: xr.DataArray, *, out_energy: bool = True, dtype=None, **kwargs):
    """Apply ``func(array[..., energy]) -> array`` over any leading dims, numpy or dask."""
    if out_energy:
        return xr.apply_ufunc(func, da, input_core_dims=[["energy"]],
                              output_core_dims=[["energy"]], dask="parallelized",
                              output_dtypes=[dtype or da.dtype], kwargs=kwargs,
                              keep_attrs=True)
    return xr.apply_ufunc(func, da, input_core_dims=[["energy"]], dask="parallelized",
                          output_dtypes=[dtype or float], kwargs=kwargs, keep_attrs=True)


# --------------------------------------------------------------------------
# spikes


def _despiked(y: np.ndarray, threshold: float, width: int) -> np.ndarray:
    return despike(y, threshold, width)[0]


def _positive(x) -> bool:
    """A finite number above zero (NaN, inf, strings and bools are not)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return False
    return bool(np.isfinite(x) and x > 0)


def remove_spikes(si: xr.DataArray, threshold: float = 8.0, width: int = 2) -> xr.DataArray:
    """Replace single-channel cosmic-ray spikes by the local median.

    A channel is a spike when it exceeds the running median (``2*width+1``
    channels along energy) by more than ``threshold`` times the spectrum's
    noise (robust MAD of first differences). Spikes up to ``width`` channels
    wide are removed; edges and peaks broader than that are kept.

    Parameters
    ----------
    si : xarray.DataArray
        Spectra with an ``"energy"`` dimension (counts).
    threshold : float
        Detection threshold in units of the noise standard deviation.
    width : int
        Half-width of the running median in channels.

    Returns
    -------
    xarray.DataArray
        Despiked copy; ``attrs["history"]`` records the parameters and, for
        numpy-backed input, the number of channels replaced.
    """
    si = check_spectra(si, "si")
    if not _positive(threshold):
        raise MMSpecError(f"threshold={threshold!r}: expected a positive, finite number")
    if int(width) < 1:
        raise MMSpecError(f"width={width!r}: expected an integer >= 1")
    if isinstance(si.data, np.ndarray):
        clean, replaced = despike(si.data, float(threshold), int(width))
        out, n = si.copy(data=clean), int(replaced.sum())
    else:  # dask: block by block, the count unknown until computed
        out = _apply(_despiked, si, threshold=float(threshold), width=int(width),
                     dtype=work_dtype(si.dtype))
        n = None
    return append_history(out, "remove_spikes", threshold=threshold, width=width,
                          n_replaced=n)


# --------------------------------------------------------------------------
# masks


def mask_low_counts(si: xr.DataArray, fraction: float = 0.05) -> xr.DataArray:
    """Boolean map of usable pixels.

    A pixel is usable when its total counts are finite, positive and at least
    ``fraction`` of the 90th percentile of all pixels' totals (vacuum and
    all-zero pixels are not).

    Returns
    -------
    xarray.DataArray
        Boolean, the leading dims of ``si`` (``True`` = usable), named ``"mask"``.
    """
    si = check_spectra(si, "si", finite=False)
    if not 0 <= fraction < 1:
        raise MMSpecError(f"fraction={fraction!r}: expected a number in [0, 1)")
    total = si.sum("energy", skipna=False)
    tv = np.asarray(total.values, float)
    ok = np.isfinite(tv) & (tv > 0)
    if not ok.any():
        return xr.zeros_like(total, dtype=bool).rename("mask")
    ref = np.percentile(tv[ok], 90)
    mask = ok & (tv >= fraction * ref)
    return xr.DataArray(mask, dims=total.dims, coords=total.coords, name="mask",
                        attrs={"fraction": fraction, "reference_counts": float(ref)})


# --------------------------------------------------------------------------
# backgrounds


def _fit_params(y: np.ndarray, energy: np.ndarray, i1: int, i2: int, model: str,
                order: int, method: str) -> np.ndarray:
    """Background parameters for every spectrum of ``y`` (..., energy).

    powerlaw -> (A, r) with counts/channel = A * E**-r * dE (two-area) or
    A * E**-r (lstsq); exponential -> (A, tau); polynomial -> coefficients.
    """
    wd = np.float64
    e = energy[i1:i2].astype(wd)
    if model == "powerlaw" and method == "two_area":
        # two equal halves [j1, j3) and [j3, j4) of the window, integrals = sums
        # of counts; the halves' end points are the channels' energies
        j1 = i1
        j4 = i2 - 1  # channel nearest the window's high end
        if (j4 - j1) % 2:
            j4 -= 1
        j3 = (j1 + j4) // 2
        # the compiled fit every power law of the package uses (kernels.k_twoarea)
        y = np.asarray(y)
        lead = y.shape[:-1]
        rows = y.reshape(-1, y.shape[-1])
        if rows.dtype not in (np.float32, np.float64):
            rows = rows.astype(wd)
        rows = np.ascontiguousarray(rows)
        out = np.empty((rows.shape[0], 2))
        k_twoarea_rows(rows, int(j1), int(j3), int(j4), float(energy[j1]), float(energy[j3]),
                       float(energy[j3]), float(energy[j4]), out)
        return out.reshape(lead + (2,))
    seg = np.asarray(y[..., i1:i2], dtype=wd)
    if model in ("powerlaw", "exponential"):
        with np.errstate(divide="ignore", invalid="ignore"):
            ly = np.log(np.where(seg > 0, seg, np.nan))
        x = np.log(e) if model == "powerlaw" else e
        # weighted (by counts, ~1/var of log y) linear fit, closed form, all pixels
        w = np.where(np.isfinite(ly), np.clip(seg, 0, None), 0.0)
        ly = np.nan_to_num(ly)
        sw = w.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mx = (w * x).sum(-1) / sw
            my = (w * ly).sum(-1) / sw
            sxx = (w * (x - mx[..., None]) ** 2).sum(-1)
            sxy = (w * (x - mx[..., None]) * (ly - my[..., None])).sum(-1)
            slope = sxy / sxx
        intercept = my - slope * mx
        if model == "powerlaw":
            return np.stack([np.exp(intercept), -slope], axis=-1)
        return np.stack([np.exp(intercept), -1.0 / slope], axis=-1)
    if model == "polynomial":
        xc = (e - e.mean()) / max(e.std(), 1e-12)
        v = np.vander(xc, order + 1)
        pinv = np.linalg.pinv(v)  # (order+1, n)
        return seg @ pinv.T
    raise MMSpecError(f"model={model!r}: expected 'powerlaw', 'exponential' or 'polynomial'")


def _powerlaw_f32(a: np.ndarray, r: np.ndarray, loge: np.ndarray, scale: np.ndarray,
                  jref: int, dle: np.ndarray, lsc: np.ndarray | None,
                  y: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Two-area power law ``a E^-r dE`` evaluated in float32 as
    ``B exp(-r (ln E - ln E_ref))``, ``B`` the float64 background at channel
    ``jref`` (the window's middle): the exponent stays small, so the result is
    within a few 1e-7 of the float64 evaluation (float32 resolution).
    With ``y`` (rows of float32 counts), returns ``y`` minus the background
    (into ``out``, C-contiguous float32 rows, when given).
    One compiled pass per spectrum when numba is available (every path uses
    it, so they give the same numbers), numpy otherwise."""
    with np.errstate(over="ignore", invalid="ignore"):
        big = (a * np.exp(-r * loge[jref]) * scale[jref]).astype(np.float32)
    nr = (-r).astype(np.float32)
    lead = big.shape[:-1]
    if numba_available():
        if out is None:
            out = np.empty(lead + dle.shape, np.float32)
        rows = out.reshape(-1, dle.size)
        yy = rows if y is None else np.ascontiguousarray(y, np.float32).reshape(rows.shape)
        k_powerlaw_f32(yy, nr.reshape(-1), big.reshape(-1), dle,
                       lsc if lsc is not None else dle, lsc is not None, y is not None, rows)
        return out
    with np.errstate(over="ignore", invalid="ignore"):  # pragma: no cover (no numba)
        t = np.multiply(nr, dle)
        if lsc is not None:
            np.add(t, lsc, out=t)
        np.exp(t, out=t)
        np.multiply(t, big, out=t)
    return t if y is None else np.subtract(y, t, out=out)


def _f32_tables(e: np.ndarray, jref: int):
    """``ln E - ln E_ref`` and, for a non-uniform axis, ``ln(dE / dE_ref)`` (float32)."""
    loge = np.log(e)
    scale = np.gradient(e)
    dle = (loge - loge[jref]).astype(np.float32)
    lsc = np.log(scale / scale[jref])
    return loge, scale, dle, (lsc.astype(np.float32) if np.abs(lsc).max() > 1e-7 else None)


def _evaluate(params: np.ndarray, energy: np.ndarray, model: str, method: str,
              window_e: np.ndarray, dtype) -> np.ndarray:
    e = energy.astype(np.float64)
    if model == "powerlaw" and method == "two_area" and np.dtype(dtype) == np.float32:
        jref = int(np.searchsorted(e, window_e[(window_e.size - 1) // 2]))
        loge, scale, dle, lsc = _f32_tables(e, jref)
        return _powerlaw_f32(params[..., :1], params[..., 1:2], loge, scale, jref, dle, lsc)
    if model == "powerlaw":
        a, r = params[..., :1], params[..., 1:2]
        scale = np.gradient(e) if method == "two_area" else 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            out = a * np.exp(-r * np.log(e)) * scale
    elif model == "exponential":
        a, tau = params[..., :1], params[..., 1:2]
        with np.errstate(over="ignore", invalid="ignore"):
            out = a * np.exp(-e / tau)
    else:
        xc = (e - window_e.mean()) / max(window_e.std(), 1e-12)
        v = np.vander(xc, params.shape[-1])
        out = params @ v.T
    return out.astype(dtype, copy=False)


def background_model(energy, params, model: BackgroundModel = "powerlaw", *,
                     method: str = "two_area", window=None) -> np.ndarray:
    """Evaluate fitted background parameters on an energy axis (eV)."""
    energy = np.asarray(energy, float)
    win = np.asarray(window if window is not None else energy, float)
    if model == "polynomial" and window is not None:
        i1, i2 = window_indices(energy, window)
        win = energy[i1:i2]
    return _evaluate(np.asarray(params, float), energy, model, method, win, np.float64)


def fit_background(si: xr.DataArray, window, model: BackgroundModel = "powerlaw", *,
                   order: int = 2, method: str = "two_area") -> xr.DataArray:
    """Fit a background model in ``window`` for every spectrum.

    Returns
    -------
    xarray.DataArray
        Parameters with the leading dims of ``si`` and a ``"param"`` dim
        (``("A", "r")`` for a power law, ``("A", "tau")`` exponential,
        ``("c0", ... )`` polynomial, highest power first).
    """
    si = check_spectra(si, "si")
    e = np.asarray(si["energy"].values, float)
    i1, i2 = window_indices(e, window)
    model = _check_model(model, method)
    order = _check_order(order, model, i2 - i1)
    npar = 2 if model != "polynomial" else int(order) + 1
    names = {"powerlaw": ["A", "r"], "exponential": ["A", "tau"]}.get(
        model, [f"c{i}" for i in range(npar)])

    def f(y):
        return _fit_params(y, e, i1, i2, model, int(order), method)

    out = xr.apply_ufunc(f, si, input_core_dims=[["energy"]], output_core_dims=[["param"]],
                         dask="parallelized", output_dtypes=[np.float64],
                         dask_gufunc_kwargs={"output_sizes": {"param": npar}})
    return out.assign_coords(param=names).rename("background_params")


#: highest polynomial degree accepted for a background (higher degrees are
#: ill-conditioned over a pre-edge window and overshoot under the edge)
MAX_POLY_ORDER = 6


def _check_order(order, model: str, n_points: int) -> int:
    """The polynomial degree, checked against the points of the fit window."""
    if model != "polynomial":
        return 2 if order is None else order
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise MMSpecError(f"order={order!r}: expected an integer polynomial degree 0 - "
                          f"{MAX_POLY_ORDER}")
    order = int(order)
    if not 0 <= order <= MAX_POLY_ORDER:
        raise MMSpecError(f"order={order}: expected a polynomial degree 0 - {MAX_POLY_ORDER}")
    if order + 1 > n_points:
        raise MMSpecError(f"order={order}: the fit window holds {n_points} points; a degree-"
                          f"{order} polynomial needs at least {order + 1}")
    return order


def _check_model(model, method):
    aliases = {"powerlaw": "powerlaw", "power law": "powerlaw", "power_law": "powerlaw",
               "exponential": "exponential", "exp": "exponential",
               "polynomial": "polynomial", "poly": "polynomial"}
    m = aliases.get(str(model).lower())
    if m is None:
        raise MMSpecError(f"model={model!r}: expected 'powerlaw', 'exponential' or 'polynomial'")
    if method not in ("two_area", "lstsq"):
        raise MMSpecError(f"method={method!r}: expected 'two_area' or 'lstsq'")
    return m


def subtract_background(
    si: xr.DataArray,
    window,
    model: BackgroundModel = "powerlaw",
    *,
    order: int = 2,
    method: Literal["two_area", "lstsq"] = "two_area",
    mask: xr.DataArray | np.ndarray | None = None,
    return_background: bool = False,
):
    """Subtract a pre-edge background fitted in ``window``, pixel by pixel.

    Parameters
    ----------
    si : xarray.DataArray
        Spectra (counts) with an ``"energy"`` dimension in eV and any leading
        dimensions; numpy- or dask-backed.
    window : (float, float)
        Fit window ``(low, high)`` in eV, inside the energy range.
    model : {"powerlaw", "exponential", "polynomial"}
        Background model. Power law ``A E^-r`` (EELS), exponential
        ``A exp(-E/tau)``, polynomial of degree ``order``.
    order : int
        Polynomial degree.
    method : {"two_area", "lstsq"}
        Power law only: the two-area estimate (Egerton; the same estimate as
        HyperSpy's ``fast=True``), or a count-weighted least-squares fit in
        log-log space. Exponential and polynomial always use least squares.
    mask : boolean DataArray or array, or "auto", optional
        Usable pixels (leading dims of ``si``); others come out NaN, and may
        hold NaN/inf. ``"auto"``: :func:`mask_low_counts` (vacuum, all-zero and
        NaN/inf pixels NaN), with a warning saying how many. ``None``
        (default): every pixel is fitted; pixels whose fit fails (no counts in
        the window) are NaN and a warning says how many.
    return_background : bool
        Also return the background and the fitted parameters.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The background-subtracted spectra (same dims and dtype family), or a
        Dataset with ``signal``, ``background`` and ``params`` when
        ``return_background`` is true.

    Raises
    ------
    DataError
        ``window`` outside the energy range or narrower than 4 channels;
        NaN/inf in a pixel the mask keeps (every pixel without a mask;
        numpy-backed data; dask-backed data are not scanned, non-finite
        pixels then come out NaN); a mask of the wrong shape.
    MMSpecError
        Unknown ``model`` or ``method``.
    """
    si = check_spectra(si, "si", finite=False)
    mask = _resolve_mask(si, mask)
    model = _check_model(model, method)
    fast = model == "powerlaw" and method == "two_area" and not return_background \
        and not _lazy(si)
    if not fast:  # the fast path checks each block of rows while it holds it in cache
        si = check_spectra(si, "si", usable=None if mask is None else mask.values)
    e = np.asarray(si["energy"].values, float)
    i1, i2 = window_indices(e, window)
    order = _check_order(order, model, i2 - i1)
    wd = work_dtype(si.dtype)
    window_e = e[i1:i2]
    if fast:
        return _subtract_powerlaw_fast(si, e, i1, i2, wd, window, mask)

    def _bkg(y):
        p = _fit_params(y, e, i1, i2, model, int(order), method)
        return _evaluate(p, e, model, method, window_e, wd)

    bkg = _apply(_bkg, si, dtype=wd)
    out = (si.astype(wd) - bkg)
    out.attrs = dict(si.attrs)
    valid = np.isfinite(bkg.isel(energy=0)) if not _lazy(bkg) else None
    if mask is not None:
        m = _pixel_mask(mask, si)
        out = out.where(m)
        bkg = bkg.where(m)
    elif valid is not None and not bool(valid.all()):
        n_bad = int((~valid).sum())
        warnings.warn(f"subtract_background: the fit failed on {n_bad} pixel(s) "
                      "(no counts in the window); they are NaN", stacklevel=2)
        out = out.where(valid)
    out = append_history(out, "subtract_background", window=[float(window[0]), float(window[1])],
                         model=model, order=int(order) if model == "polynomial" else None,
                         method=method if model == "powerlaw" else "lstsq")
    if not return_background:
        return out
    params = fit_background(si, window, model, order=order, method=method)
    return xr.Dataset({"signal": out, "background": bkg, "params": params}, attrs=out.attrs)


def _resolve_mask(si: xr.DataArray, mask) -> xr.DataArray | None:
    """``mask`` as a boolean DataArray with the leading dims of ``si`` (or None)."""
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "auto":
            raise MMSpecError(f"mask={mask!r}: expected a boolean map, 'auto' or None")
        m = mask_low_counts(si)
        n_bad = int((~m.values).sum())
        if n_bad:
            warnings.warn(f"subtract_background: {n_bad} of {m.size} pixel(s) have too few "
                          "counts (vacuum, all-zero or NaN/inf); they are NaN", stacklevel=3)
        return m
    m = mask if isinstance(mask, xr.DataArray) else xr.DataArray(
        np.asarray(mask, bool), dims=si.dims[:-1])
    if set(m.dims) == set(si.dims[:-1]):
        m = m.transpose(*si.dims[:-1])
    if m.shape != si.shape[:-1]:
        raise DataError(f"mask: expected shape {si.shape[:-1]} (the pixels of si), "
                        f"got {m.shape}")
    return m.astype(bool)


def _lazy(da: xr.DataArray) -> bool:
    return not isinstance(da.data, np.ndarray)


# --------------------------------------------------------------------------
# fast path: two-area power law on numpy-backed spectra, in row blocks


def _subtract_powerlaw_fast(si: xr.DataArray, e: np.ndarray, i1: int, i2: int, wd,
                            window, mask) -> xr.DataArray:
    """The general path's two-area power law (same numbers, float32 data
    evaluated by :func:`_powerlaw_f32` on both paths), in cache-sized row blocks
    on threads, without full-size temporaries. The NaN/inf check of
    :func:`check_spectra` runs on each block while it is in cache (one pass
    over the data, not two); a block that fails it sends the whole SI
    through :func:`check_spectra`, which raises (or, where the mask drops
    those pixels, lets them through, NaN)."""
    y = np.ascontiguousarray(si.data)
    y2 = y.reshape(-1, e.size)
    check = y2.dtype in (np.float32, np.float64)
    nonfinite: list = []
    out = np.empty(y2.shape, dtype=wd)
    bkg0 = np.empty(y2.shape[0], dtype=wd)
    single = wd == np.float32
    jref = (i1 + i2 - 1) // 2  # the window's middle channel
    loge, scale, dle, lsc = _f32_tables(e, jref)
    # ~1 MB of float64 (2 MB of float32) work per block: fits the L2 cache
    rows = max(1, 131072 // e.size) * (4 if single else 1)

    def block(r0, r1):
        if check and not k_all_finite(y2, r0, r1):
            nonfinite.append(r0)
        p = _fit_params(y2[r0:r1], e, i1, i2, "powerlaw", 0, "two_area")
        a, r = p[:, :1], p[:, 1:2]
        with np.errstate(over="ignore", invalid="ignore"):
            b0 = (a * np.exp(-r * loge[0]) * scale[0]).astype(wd)[:, 0]
            if single:
                _powerlaw_f32(a, r, loge, scale, jref, dle, lsc, y=y2[r0:r1], out=out[r0:r1])
            else:
                t = np.multiply(-r, loge)
                np.exp(t, out=t)
                np.multiply(a, t, out=t)
                np.multiply(t, scale, out=t)
                np.subtract(y2[r0:r1].astype(wd, copy=False), t, out=out[r0:r1])
        bkg0[r0:r1] = b0

    map_row_blocks(block, y2.shape[0], rows)
    if nonfinite:
        check_spectra(si, "si", usable=None if mask is None else _pixel_mask(mask, si).values)
    res = si.copy(data=out.reshape(si.shape))
    res.attrs = dict(si.attrs)
    if mask is not None:
        m = _pixel_mask(mask, si)
        res = res.where(m)
    else:
        bad = ~np.isfinite(bkg0)
        if bad.any():
            warnings.warn(f"subtract_background: the fit failed on {int(bad.sum())} pixel(s) "
                          "(no counts in the window); they are NaN", stacklevel=3)
            out[bad] = np.nan
    return append_history(res, "subtract_background", window=[float(window[0]), float(window[1])],
                          model="powerlaw", order=None, method="two_area")


# --------------------------------------------------------------------------
# XAS


def _e0(mu: np.ndarray, e: np.ndarray) -> np.ndarray:
    d = np.gradient(mu, e, axis=-1)
    # ignore the first/last 5 % (noise at the ends)
    n = e.size
    lo, hi = int(0.05 * n), max(int(0.95 * n), int(0.05 * n) + 2)
    return e[lo + np.argmax(d[..., lo:hi], axis=-1)]


def _masked_polyfit(x: np.ndarray, y: np.ndarray, w: np.ndarray, order: int) -> np.ndarray:
    """Least-squares polynomials (highest power first) of every row, over the
    channels where ``w`` is 1: normal equations solved for all rows at once."""
    pw = np.arange(2 * order + 1)
    xp = x[..., None] ** pw  # (rows, n, 2 order + 1)
    moments = np.einsum("rn,rnq->rq", w, xp)
    a = moments[:, order - np.arange(order + 1)[:, None] + order - np.arange(order + 1)]
    b = np.einsum("rn,rnq->rq", w * y, xp[..., order::-1])
    return np.linalg.solve(a, b[..., None])[..., 0]


def _polyval_rows(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for k in range(c.shape[-1]):  # Horner over the (few) coefficients
        out = out * x + c[:, k:k + 1]
    return out


def normalize_xas(da: xr.DataArray, pre=None, post=None, e0: float | None = None,
                  post_order: int = 2) -> xr.DataArray:
    """Pre-/post-edge normalisation of XAS scans (edge step = 1), Athena-like.

    A line fitted in ``pre`` (eV, relative to ``e0``) is subtracted; the
    edge step is the value at ``e0`` of a polynomial (degree ``post_order``)
    fitted in ``post`` (relative to ``e0``) to the pre-edge-subtracted scan;
    the result is divided by it, then the post-edge curvature is flattened
    (above ``e0``, the post-edge polynomial's departure from the step is
    removed). All scans are fitted at once (no loop over scans).

    Parameters
    ----------
    da : xarray.DataArray
        ``("energy",)`` or ``("scan", "energy")`` absorption (any leading
        dims), energy in eV.
    pre, post : (float, float), optional
        Windows relative to ``e0`` (eV); default ``(-150, -30)`` and
        ``(50, end)`` clipped to the data (``(0.4 (end - e0), end)`` for short
        scans). A pre-edge window with fewer than 2 points falls back to all
        points 5 eV or more below ``e0``.
    e0 : float, optional
        Edge energy (eV); default: maximum of the derivative of each scan
        (ignoring the first and last 5 % of the points).
    post_order : int
        Degree of the post-edge polynomial (0 - 3).

    Returns
    -------
    xarray.DataArray
        Normalised scans; attrs ``e0`` (eV), ``edge_step`` (per scan, the
        input's units), ``normalization="edge_step"`` (so that
        :func:`~mmspec_widgets.extract.extract_edges` uses them without a
        pre-edge fit) and a history entry.

    Raises
    ------
    DataError
        NaN/inf values, windows that cannot be placed inside the data, or an
        edge step that is not positive.
    """
    da = check_spectra(da, "da")
    if int(post_order) not in (0, 1, 2, 3):
        raise MMSpecError(f"post_order={post_order!r}: expected 0, 1, 2 or 3")
    post_order = int(post_order)
    e = np.asarray(da["energy"].values, float)
    y = np.asarray(da.values, float)
    e0s = np.full(y.shape[:-1], float(e0)) if e0 is not None else _e0(y, e)
    flat_y = y.reshape(-1, e.size)
    ek = np.atleast_1d(e0s).reshape(-1)[:, None]  # (rows, 1)
    x = e[None, :] - ek  # energy relative to each scan's e0
    if pre is not None:
        mp = (x >= float(pre[0])) & (x <= float(pre[1]))
    else:
        mp = (x >= np.maximum(-150.0, e[0] - ek)) & (x <= -30.0)
    if post is not None:
        mq = (x >= float(post[0])) & (x <= float(post[1]))
    else:
        mq = (x >= np.minimum(50.0, 0.4 * (e[-1] - ek))) & (x <= e[-1] - ek)
    few = mp.sum(-1) < 2
    mp[few] = x[few] <= -5.0
    bad = (mq.sum(-1) < post_order + 1) | (mp.sum(-1) < 2)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"da: cannot place pre-edge {pre} / post-edge {post} windows "
                        f"around e0={ek[k, 0]:.1f} eV within {e[0]:.1f} - {e[-1]:.1f} eV")
    pl = _masked_polyfit(x, flat_y, mp.astype(float), 1)
    line = _polyval_rows(pl, x)
    pq = _masked_polyfit(x, flat_y - line, mq.astype(float), post_order)
    step = pq[:, -1]  # the polynomial at x = 0 (e0)
    if not (step > 0).all():
        k = int(np.argmax(~(step > 0)))
        raise DataError(f"da: edge step at e0={ek[k, 0]:.1f} eV is {step[k]:.3g}; "
                        "expected > 0")
    norm = (flat_y - line) / step[:, None]
    flat = np.where(x >= 0, norm - (_polyval_rows(pq, x) - step[:, None]) / step[:, None],
                    norm)
    res = da.copy(data=flat.reshape(y.shape))
    steps = step.reshape(y.shape[:-1])
    res.attrs = {**da.attrs, "e0": np.round(e0s, 3).tolist(), "edge_step": steps.tolist(),
                 "normalization": "edge_step"}
    return append_history(res, "normalize_xas", pre=pre, post=post, e0=e0,
                          post_order=post_order)
