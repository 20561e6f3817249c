"""Energy calibration: zero-loss alignment, reference-feature correction of
the energy axis (offset and dispersion), and shift alignment of XAS scans.

A recorded EELS axis is usually wrong in two ways: the zero-loss peak is not at
0 eV (and drifts from pixel to pixel), and the dispersion is slightly off, so
edges far apart are off by different amounts. :func:`calibrate` fixes the
first with the zero-loss SI of the same scan (per pixel) and the second with
two or more reference features located automatically on the
background-subtracted summed spectrum: ``E_true = offset + scale * E``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from .background import (
    append_history,
    check_spectra,
    mask_low_counts,
    remove_spikes,
)
from .edges import FEATURES
from .errors import DataError, MMSpecError
from .kernels import shift_resample, window_indices

__all__ = [
    "check_same_scan",
    "zero_loss_positions",
    "zero_loss_fwhm",
    "align_zero_loss",
    "locate_feature",
    "calibration_uncertainty",
    "energy_std",
    "with_uncertainty",
    "fit_calibration",
    "apply_calibration",
    "calibrate",
    "align_scans",
]


# --------------------------------------------------------------------------
# zero loss


def _peak_positions(y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Sub-channel maximum position (eV) of every spectrum, 3-point parabola."""
    i = np.argmax(y, axis=-1)
    i = np.clip(i, 1, e.size - 2)
    ym = np.take_along_axis(y, (i - 1)[..., None], -1)[..., 0].astype(float)
    y0 = np.take_along_axis(y, i[..., None], -1)[..., 0].astype(float)
    yp = np.take_along_axis(y, (i + 1)[..., None], -1)[..., 0].astype(float)
    den = ym - 2 * y0 + yp
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(den < 0, 0.5 * (ym - yp) / den, 0.0)
    d = np.clip(d, -0.5, 0.5)
    de = np.gradient(e)[i]
    return e[i] + d * de


def check_same_scan(si: xr.DataArray, zlp: xr.DataArray) -> None:
    """Raise a DataError unless ``zlp`` has the navigation shape of ``si``
    (naming a transposed zero-loss SI when x and y are swapped)."""
    nav_si = {d: si.sizes[d] for d in si.dims[:-1]}
    nav_z = {d: zlp.sizes[d] for d in zlp.dims[:-1]}
    if nav_si != nav_z:
        swapped = set(nav_si) == set(nav_z) and len(nav_si) == 2 and \
            [nav_z[d] for d in nav_si] == list(nav_si.values())[::-1]
        hint = (" (x and y swapped: a transposed zero-loss SI? transpose it to "
                f"{tuple(nav_si)} first)") if swapped else ""
        raise DataError(f"zlp: navigation shape {nav_z} does not match the SI's {nav_si}"
                        f"{hint}; expected the zero-loss SI of the same scan")


def zero_loss_positions(zlp: xr.DataArray, window=(-20.0, 20.0)) -> xr.DataArray:
    """Position (eV) of the zero-loss peak in every pixel of a zero-loss SI.

    The maximum within ``window`` (eV on the recorded axis), refined to a
    fraction of a channel with a parabola through the three top channels.
    """
    zlp = check_spectra(zlp, "zlp")
    e = np.asarray(zlp["energy"].values, float)
    if e[0] > window[1] or e[-1] < window[0]:
        raise DataError(f"zlp: its energy axis ({e[0]:.1f} - {e[-1]:.1f} eV) holds no zero-loss "
                        f"peak (expected one within {window[0]:g} - {window[1]:g} eV); is it the "
                        "core-loss SI? expected the low-loss SI of the same scan")
    lo, hi = max(window[0], e[0]), min(window[1], e[-1])
    i1, i2 = window_indices(e, (lo, hi), "window")
    sub = zlp.isel(energy=slice(i1, i2))
    pos = xr.apply_ufunc(_peak_positions, sub, kwargs={"e": e[i1:i2]},
                         input_core_dims=[["energy"]], dask="parallelized",
                         output_dtypes=[float])
    pos.attrs = {"units": "eV", "long_name": "zero-loss position"}
    return pos.rename("zlp_position")


def zero_loss_fwhm(zlp: xr.DataArray, window=(-20.0, 20.0)) -> float:
    """Energy resolution (eV): FWHM of the zero-loss peak of a zero-loss SI.

    Every pixel's peak is aligned on its maximum (the drift between pixels
    would otherwise widen the sum), the aligned spectra are summed, and the
    full width at half maximum is read with linear interpolation between
    channels on both flanks.

    Parameters
    ----------
    zlp : xarray.DataArray
        Zero-loss SI ``(..., energy)`` or one spectrum, energy in eV.
    window : (float, float)
        Where the zero-loss peak is looked for (eV on the recorded axis).

    Returns
    -------
    float
        FWHM in eV.

    Raises
    ------
    DataError
        No peak that falls below half its maximum on both sides in ``window``.
    """
    zlp = check_spectra(zlp, "zlp")
    e = np.asarray(zlp["energy"].values, float)
    lo, hi = max(window[0], e[0]), min(window[1], e[-1])
    i1, i2 = window_indices(e, (lo, hi), "window")
    y = np.asarray(zlp.isel(energy=slice(i1, i2)).values, float).reshape(-1, i2 - i1)
    ee = e[i1:i2]
    y = y[np.isfinite(y).all(axis=1) & (y.max(axis=1) > 0)]
    if not y.size:
        raise DataError("zlp: no finite, positive spectrum in the zero-loss window")
    pos = _peak_positions(y, ee)
    step = float(np.median(np.diff(ee)))
    rel = np.arange(-(ee.size // 2), ee.size // 2 + 1) * step / 4.0
    acc = np.zeros(rel.size)
    for row, p in zip(y, pos, strict=False):
        acc += np.interp(rel + p, ee, row, left=np.nan, right=np.nan)
    k = int(np.nanargmax(acc))  # NaN: outside the window for some pixel
    half = 0.5 * acc[k]
    left = np.flatnonzero(acc[:k] < half)
    right = np.flatnonzero(acc[k:] < half)
    if not left.size or not right.size:
        raise DataError(f"zlp: the zero-loss peak does not fall to half its maximum within "
                        f"{lo:.1f} - {hi:.1f} eV; expected a zero-loss SI")
    a, b = int(left[-1]), k + int(right[0])

    def cross(i, j):
        return rel[i] + (half - acc[i]) * (rel[j] - rel[i]) / (acc[j] - acc[i])

    return float(cross(b - 1, b) - cross(a, a + 1))


def align_zero_loss(si: xr.DataArray, zlp: xr.DataArray | None = None, *,
                    positions: xr.DataArray | None = None) -> xr.DataArray:
    """Shift every pixel so that its zero-loss peak sits at 0 eV.

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``(..., energy)``.
    zlp : xarray.DataArray
        Zero-loss SI of the same scan (same navigation shape).
    positions : xarray.DataArray, optional
        Precomputed zero-loss positions (eV), instead of ``zlp``.

    Returns
    -------
    xarray.DataArray
        The SI resampled (linear interpolation) onto one common axis, the
        recorded axis minus the median zero-loss position; attrs record the
        median and spread of the zero-loss positions and, when ``zlp`` is
        given, the energy resolution ``resolution_fwhm_eV`` (FWHM of the
        zero-loss peak, :func:`zero_loss_fwhm`), which models compare
        simulations at.
    """
    si = check_spectra(si, "si")
    if positions is None:
        if zlp is None:
            raise MMSpecError("align_zero_loss: give zlp (a zero-loss SI) or positions")
        zlp = check_spectra(zlp, "zlp")
        check_same_scan(si, zlp)
        positions = zero_loss_positions(zlp)
    pos = np.asarray(positions.values, float)
    if pos.shape != si.shape[:-1]:
        raise DataError(f"positions: expected shape {si.shape[:-1]}, got {pos.shape}")
    e = np.asarray(si["energy"].values, float)
    de = float(np.median(np.diff(e)))
    z_med = float(np.median(pos))
    shift_ch = xr.DataArray((pos - z_med) / de, dims=si.dims[:-1])
    out = xr.apply_ufunc(shift_resample, si, shift_ch, input_core_dims=[["energy"], []],
                         output_core_dims=[["energy"]], dask="parallelized",
                         output_dtypes=[si.dtype if si.dtype == np.float32 else np.float64],
                         keep_attrs=True)
    out = out.assign_coords(energy=("energy", e - z_med, dict(si["energy"].attrs)))
    out.attrs = {**si.attrs, "zlp_position_median_eV": z_med,
                 "zlp_position_std_eV": float(np.std(pos))}
    res = {}
    if zlp is not None:
        try:
            res["resolution_fwhm_eV"] = round(zero_loss_fwhm(zlp), 3)
        except DataError:  # a zero-loss SI whose peak is cut: no resolution recorded
            pass
    out.attrs.update(res)
    return append_history(out, "align_zero_loss", median_eV=z_med,
                          spread_eV=float(np.ptp(pos)), **res)


# --------------------------------------------------------------------------
# reference features


def _smooth(y: np.ndarray, sigma_ch: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(y, sigma_ch, mode="nearest") if sigma_ch > 0 else y


def _powerlaw_fit_sub(e: np.ndarray, y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    m = (e >= lo) & (e <= hi) & (y > 0)
    if m.sum() < 5:
        raise DataError(f"background window ({lo:.1f}, {hi:.1f}) eV: too few positive channels")
    p = np.polyfit(np.log(e[m]), np.log(y[m]), 1)
    return y - np.exp(np.polyval(p, np.log(e)))


def _edge_features(feature: str) -> list[str]:
    """Features of the same edge as ``feature``, in energy order."""
    edge = FEATURES[feature]["edge"]
    return sorted((n for n, f in FEATURES.items() if f["edge"] == edge),
                  key=lambda n: FEATURES[n]["energy"])


def _parabola_peak(seg: np.ndarray, k: int) -> float:
    """Sub-channel offset (channels, within +-0.5) of the maximum at ``seg[k]``."""
    k = int(np.clip(k, 1, seg.size - 2))
    ym, y0, yp = seg[k - 1], seg[k], seg[k + 1]
    den = ym - 2 * y0 + yp
    return float(np.clip(0.5 * (ym - yp) / den, -0.5, 0.5)) if den < 0 else 0.0


def _first_rise(e: np.ndarray, y: np.ndarray, lo: float, hi: float,
                rise_fraction: float) -> float:
    """Energy (eV) of the steepest point of the first strong rise in ``[lo, hi]``.

    The rise is measured on the logarithmic derivative of the spectrum
    smoothed over 1 eV, less its median in the window (the falling background
    then sits near 0): the first run of channels above ``rise_fraction`` of
    the window's largest rise is the edge onset of the first feature.
    """
    from scipy.ndimage import gaussian_filter1d

    de = float(np.median(np.diff(e)))
    ys = gaussian_filter1d(y, 1.0 / de, mode="nearest")
    tiny = max(float(np.abs(ys).max()) * 1e-12, 1e-300)
    d = np.gradient(np.log(np.clip(ys, tiny, None)), e)
    idx = np.flatnonzero((e >= lo) & (e <= hi))
    dw = d[idx] - np.median(d[idx])
    top = dw.max()
    if not top > 0:
        return float("nan")
    above = dw >= rise_fraction * top
    k0 = int(np.argmax(above))
    k1 = k0 + int(np.argmin(above[k0:])) if not above[k0:].all() else above.size
    kr = k0 + int(np.argmax(dw[k0:k1]))
    return float(e[idx[kr]])


def _first_feature(e: np.ndarray, y: np.ndarray, name: str, lo: float, hi: float,
                   min_fraction: float, rise_fraction: float):
    """Locate the first feature of an edge in ``[lo, hi]`` (eV).

    Returns the feature energy, the background-free spectrum smoothed under
    ``_CHOOSE_SIGMA_EV`` and unsmoothed, and the rise energy.
    """
    e_rise = _first_rise(e, y, lo, hi, rise_fraction)
    if not np.isfinite(e_rise):
        raise DataError(f"references: no edge rise found for {name!r} in "
                        f"{lo:.1f} - {hi:.1f} eV")
    # power-law background 4 - 34 eV below the rise (clipped to the data)
    lo_b, hi_b = max(e[0], e_rise - 34.0), e_rise - 4.0
    sig = _powerlaw_fit_sub(e, y, lo_b, hi_b) if hi_b - lo_b >= 5.0 else y - y.min()
    de = float(np.median(np.diff(e)))
    sm = _smooth(sig, _CHOOSE_SIGMA_EV / de)
    m = np.flatnonzero((e >= max(lo, e_rise)) & (e <= min(hi, e_rise + 15.0)))
    if m.size < 3:
        raise DataError(f"references: the {name!r} edge rise at {e_rise:.1f} eV leaves no "
                        f"room for its peak inside {lo:.1f} - {hi:.1f} eV; widen the search")
    pos = _first_peak(e, sm, m, min_fraction, de, sig)
    if pos is None:
        raise DataError(f"references: no {name!r} feature found near {e_rise:.1f} eV "
                        "(no signal above the background)")
    return pos, sm, sig, e_rise


#: Gaussian smoothing (sigma, eV) under which peaks are *chosen*: robust to
#: noise, but it moves the maximum of an asymmetric peak (a steep rise and a
#: slow tail, as L3 lines and the O K pre-edge have) by 0.2 - 0.3 eV towards
#: the tail; the chosen peak is then *located* under :data:`_LOCATE_SIGMA_EV`.
_CHOOSE_SIGMA_EV = 0.5
#: Gaussian smoothing (sigma, eV) under which a chosen peak is located:
#: light enough that the shift of an asymmetric peak stays below 0.05 eV.
_LOCATE_SIGMA_EV = 0.15


def _locate_peak(e: np.ndarray, sig: np.ndarray, x: float, de: float) -> float:
    """The local maximum of the lightly smoothed ``sig`` nearest to ``x`` (a peak
    chosen on the heavily smoothed signal) within ``2 * _CHOOSE_SIGMA_EV``,
    refined by a parabola; ``x`` itself when there is none."""
    light = _smooth(sig, _LOCATE_SIGMA_EV / de)
    m = np.flatnonzero(np.abs(e - x) <= 2.0 * _CHOOSE_SIGMA_EV + de)
    seg = light[m]
    cand = [k for k in range(1, seg.size - 1) if seg[k] >= seg[k - 1] and seg[k] > seg[k + 1]]
    if not cand:
        return x
    k = min(cand, key=lambda c: abs(e[m[c]] - x))
    return float(e[m[k]] + _parabola_peak(seg, k) * de)


def _first_peak(e: np.ndarray, sm: np.ndarray, m: np.ndarray, min_fraction: float,
                de: float, sig: np.ndarray | None = None) -> float | None:
    """Energy of the first local maximum of ``sm[m]`` at least ``min_fraction``
    of its largest (else the largest), refined by a parabola and, given the
    unsmoothed ``sig``, located on it (:func:`_locate_peak`); None without
    positive signal."""
    seg = sm[m]
    top = seg.max()
    if not top > 0:
        return None
    cand = [k for k in range(1, seg.size - 1)
            if seg[k] >= seg[k - 1] and seg[k] >= seg[k + 1] and seg[k] >= min_fraction * top]
    k = cand[0] if cand else int(np.argmax(seg))
    x = float(e[m[k]] + _parabola_peak(seg, k) * de)
    return x if sig is None else _locate_peak(e, sig, x, de)


def _peak_in_window(e: np.ndarray, y: np.ndarray, name: str, lo: float, hi: float,
                    min_fraction: float) -> float:
    """First local maximum in ``[lo, hi]`` at least ``min_fraction`` of the
    largest, after a power law fitted 3 - 33 eV below the window."""
    lo_b, hi_b = max(e[0], lo - 33.0), lo - 3.0
    sig = _powerlaw_fit_sub(e, y, lo_b, hi_b) if hi_b - lo_b > 5 else y - y.min()
    de = float(np.median(np.diff(e)))
    sm = _smooth(sig, _CHOOSE_SIGMA_EV / de)
    pos = _first_peak(e, sm, np.flatnonzero((e >= lo) & (e <= hi)), min_fraction, de, sig)
    if pos is None:
        raise DataError(f"references: no {name!r} feature found in {lo:.1f} - {hi:.1f} eV "
                        "(no signal above the background)")
    return pos


def locate_feature(spectrum: xr.DataArray, feature: str, *, expected: float | None = None,
                   search: float = 20.0, min_fraction: float = 0.3,
                   anchor: bool = False, rise_fraction: float = 0.35) -> float:
    """Energy (eV, on the spectrum's axis) of a named reference feature.

    The edge onset is located first: the first strong rise of the logarithmic
    derivative (spectrum smoothed over 1 eV) within ``expected +- search``.
    A power law fitted 4 - 34 eV below that rise is subtracted, the remainder
    is smoothed (0.5 eV) and the feature is the first local maximum above the
    rise, within 15 eV of it, whose height is at least ``min_fraction`` of the
    largest value there; it is refined to a fraction of a channel by a
    parabola. This finds an edge's first feature (the O K pre-edge peak before
    the stronger main peak, an L3 line on the tail of other edges) even when
    the recorded axis is off by a large part of ``search``.

    Features after the first of their edge (``"O_K_main"``, ``"Mn_L2"`` ...)
    are found, with ``anchor=True``, from that first feature located the same
    way (window moved down by their tabulated spacing): the highest local
    maximum within ``max(2, 0.15 * spacing)`` eV of ``first + spacing``.
    With ``anchor=False`` (a window placed by hand around the wanted feature)
    they are found like a first feature, i.e. the first feature whose edge
    rises inside the window; when no edge rises inside the window, the first
    local maximum of at least ``min_fraction`` of the largest in the window
    (after a power law fitted 3 - 33 eV below the window) is taken.

    Parameters
    ----------
    spectrum : xarray.DataArray
        One spectrum ``("energy",)`` (e.g. the SI summed over particle pixels),
        counts, energy in eV.
    feature : str
        A name of :data:`mmspec_widgets.edges.FEATURES` (``"O_K"``,
        ``"Ni_L3"`` ...).
    expected : float, optional
        Where to look (eV); default the feature's reference energy.
    search : float
        Half-width of the search window (eV).
    min_fraction : float
        Smallest peak height kept, as a fraction of the largest (0 - 1).
    anchor : bool
        Locate a later feature of an edge from the edge's first feature.
    rise_fraction : float
        Smallest rise that counts as the edge onset, as a fraction of the
        largest rise in the window (0 - 1).

    Returns
    -------
    float
        The feature's energy (eV) on the spectrum's axis.

    Raises
    ------
    MMSpecError
        Unknown feature name.
    DataError
        Window outside the spectrum, or no feature found.
    """
    if feature not in FEATURES:
        raise MMSpecError(f"references: unknown feature {feature!r}; expected one of "
                          f"{', '.join(FEATURES)}")
    spectrum = check_spectra(spectrum, "spectrum")
    if spectrum.ndim != 1:
        raise DataError(f"spectrum: expected one spectrum ('energy',), got dims {spectrum.dims}")
    if not search > 0:
        raise MMSpecError(f"search={search!r}: expected a positive half-width in eV")
    e = np.asarray(spectrum["energy"].values, float)
    y = np.asarray(spectrum.values, float)
    x0 = float(FEATURES[feature]["energy"] if expected is None else expected)
    first = _edge_features(feature)[0]
    spacing = float(FEATURES[feature]["energy"] - FEATURES[first]["energy"])
    x_first = x0 - spacing if anchor else x0
    if x_first - search < e[0] or x0 + search > e[-1]:
        raise DataError(f"references: feature {feature!r} near {x0:.1f} eV lies outside the "
                        f"spectrum's range {e[0]:.1f} - {e[-1]:.1f} eV")
    try:
        pos, sm, sig, _ = _first_feature(e, y, feature, x_first - search, x_first + search,
                                    min_fraction, rise_fraction)
    except DataError:
        if anchor and spacing != 0:
            raise
        # no edge rises inside the window (e.g. a window placed by hand on
        # a feature above its edge's onset): first strong peak in the window
        pos = _peak_in_window(e, y, feature, x0 - search, x0 + search, min_fraction)
        return pos
    if not anchor or spacing == 0:
        return pos
    tol = max(2.0, 0.15 * spacing)
    m = np.flatnonzero((e >= pos + spacing - tol) & (e <= pos + spacing + tol))
    seg = sm[m]
    cand = [k for k in range(1, seg.size - 1) if seg[k] >= seg[k - 1] and seg[k] >= seg[k + 1]]
    if not cand:
        raise DataError(f"references: no {feature!r} peak within {tol:.1f} eV of "
                        f"{pos + spacing:.1f} eV ({first!r} found at {pos:.1f} eV)")
    k = max(cand, key=lambda c: seg[c])
    de = float(np.median(np.diff(e)))
    return _locate_peak(e, sig, float(e[m[k]] + _parabola_peak(seg, k) * de), de)


def _references(references) -> dict[str, float]:
    """Feature -> true energy (eV); a list of names, or ``None`` values, take
    the table's energies."""
    if isinstance(references, str) or not isinstance(references, (Mapping, list, tuple)) \
            or len(references) == 0:
        raise MMSpecError(f"references={references!r}: expected a mapping of feature names to "
                          f"energies (or a list of names), e.g. {{'O_K': 530.0, 'Ni_L3': 853.5}}"
                          f"; names: {', '.join(FEATURES)}")
    items = references.items() if isinstance(references, Mapping) else \
        [(n, None) for n in references]
    out = {}
    for n, v in items:
        if n not in FEATURES:
            raise MMSpecError(f"references: unknown feature {n!r}; expected one of "
                              f"{', '.join(FEATURES)}")
        try:
            out[n] = float(FEATURES[n]["energy"] if v is None else v)
        except (TypeError, ValueError):
            raise MMSpecError(f"references: {n!r} -> {v!r}: expected an energy in eV") from None
        if not (np.isfinite(out[n]) and out[n] > 0):
            raise MMSpecError(f"references: {n!r} -> {v!r}: expected a finite, positive energy "
                              "in eV")
    return out


def _search_windows(windows, names) -> dict[str, tuple[float, float]]:
    if windows is None:
        return {}
    if not isinstance(windows, Mapping):
        raise MMSpecError(f"window={windows!r}: expected a mapping feature -> (low, high) eV")
    out = {}
    for n, w in windows.items():
        if n not in names:
            raise MMSpecError(f"window: {n!r} is not one of the references {names}")
        try:
            lo, hi = (float(v) for v in w)
        except (TypeError, ValueError):
            raise MMSpecError(f"window[{n!r}]={w!r}: expected (low, high) in eV") from None
        if not hi > lo:
            raise MMSpecError(f"window[{n!r}]={w!r}: high must exceed low")
        out[n] = (lo, hi)
    return out


#: accepted dispersion correction (scale) of a calibration: a spectrometer's
#: dispersion is known to a few per cent, never reversed
SCALE_BOUNDS = (0.9, 1.1)


def _check_scale(scale, names, measured, targets) -> None:
    pairs = ", ".join(f"{n} found at {m:.2f} eV -> {t:.2f} eV"
                      for n, m, t in zip(names, measured, targets, strict=True))
    if not scale > 0:
        raise DataError(f"references: the fit reverses the energy axis (scale {scale:.4g}): "
                        f"{pairs}; expected references in the order of their features")
    lo, hi = SCALE_BOUNDS
    if not lo <= scale <= hi:
        raise DataError(f"references: the fit stretches the energy axis by {scale:.4g}, "
                        f"outside the physical bound {lo:g} - {hi:g}: {pairs}; check the "
                        "reference energies")


def fit_calibration(spectrum: xr.DataArray, references, *, search: float = 20.0,
                    window: Mapping[str, tuple[float, float]] | None = None) -> dict:
    """Fit ``E_true = offset + scale * E`` from reference features.

    Parameters
    ----------
    spectrum : xarray.DataArray
        A summed spectrum ``("energy",)``, counts, energy in eV.
    references : mapping or list
        Feature name -> true energy (eV), e.g. ``{"O_K": 530.0, "Ni_L3": 853.5}``
        (names from :data:`mmspec_widgets.edges.FEATURES`; a value overrides
        the table's energy, ``None`` or a plain list of names keeps it). One
        reference fixes the offset only (scale 1). A fit that reverses the
        axis or a scale outside :data:`SCALE_BOUNDS` (0.9 - 1.1) is refused
        (:class:`DataError`).
    search : float
        Half-width (eV) of the window around each true energy where the
        feature is looked for (:func:`locate_feature`, ``anchor=True``).
    window : mapping, optional
        Feature -> ``(low, high)`` eV on the spectrum's axis: a window placed
        by hand, searched as it is (``anchor=False``).

    Returns
    -------
    dict
        ``offset_eV``, ``scale``, and per reference ``measured_eV``,
        ``target_eV``, ``residual_eV`` (meaningful with three or more).
    """
    refs = _references(references)
    names = list(refs)
    wins = _search_windows(window, names)
    targets = np.array([refs[n] for n in names])
    measured = _locate_all(spectrum, refs, wins, search)
    if len(names) == 1:
        scale, offset = 1.0, float(targets[0] - measured[0])
    else:
        if np.ptp(measured) < 1.0:
            raise DataError("references: the features are less than 1 eV apart; expected "
                            "features far apart in energy to fit the dispersion")
        scale, offset = np.polyfit(measured, targets, 1)
        _check_scale(scale, names, measured, targets)
    resid = targets - (offset + scale * measured)
    return {
        "offset_eV": float(offset),
        "scale": float(scale),
        "references": {n: {"measured_eV": float(m), "target_eV": float(t),
                           "residual_eV": float(r)}
                       for n, m, t, r in zip(names, measured, targets, resid, strict=True)},
    }


def _locate_all(spectrum: xr.DataArray, refs: Mapping[str, float], wins: Mapping,
                search: float) -> np.ndarray:
    """Measured energy of every reference feature on ``spectrum``."""
    measured = []
    for n, t in refs.items():
        if n in wins:
            lo, hi = wins[n]
            measured.append(locate_feature(spectrum, n, expected=0.5 * (lo + hi),
                                           search=0.5 * (hi - lo)))
        else:
            measured.append(locate_feature(spectrum, n, expected=t, search=search, anchor=True))
    return np.array(measured, dtype=float)


#: pixel groups whose sums give the scatter of each feature's location
CALIBRATION_GROUPS = 8
#: smallest location std (eV) recorded: sub-channel peak positions are not
#: trusted beyond this
MIN_LOCATION_STD = 0.02


def calibration_uncertainty(groups, calibration: Mapping, references, *,
                            search: float = 20.0,
                            window: Mapping[str, tuple[float, float]] | None = None
                            ) -> dict | None:
    """How well the reference features are located, and what it does to the axis.

    The usable pixels are split into ``len(groups)`` disjoint random groups;
    each feature is located on every group's summed spectrum, and the std of
    those locations over ``sqrt(len(groups))`` is the location error of the
    feature on the whole sum (floored at :data:`MIN_LOCATION_STD`).
    Propagated through the fit (first order) they give the covariance of
    ``(offset, scale)``, so the energy error anywhere on the axis is
    ``sqrt(var_offset + 2 E cov + E**2 var_scale)`` (:func:`energy_std`).

    Parameters
    ----------
    groups : sequence of xarray.DataArray
        Summed spectra ``("energy",)`` of disjoint pixel groups.
    calibration : mapping
        :func:`fit_calibration`'s result on the whole sum.
    references, search, window
        As for :func:`fit_calibration`.

    Returns
    -------
    dict or None
        ``location_std_eV`` (feature -> eV), ``covariance`` (2 x 2 list for
        offset, scale) and ``n_groups`` (groups in which every feature was
        found); None when fewer than 3 groups locate every feature (too few
        counts per group: the error is then unknown, not zero).
    """
    refs = _references(references)
    names = list(refs)
    wins = _search_windows(window, names)
    locs = []
    for g in groups:
        try:
            locs.append(_locate_all(remove_spikes(g), refs, wins, search))
        except DataError:
            continue
    if len(locs) < 3:
        return None
    locs = np.array(locs)
    sd = np.maximum(locs.std(axis=0, ddof=1) / np.sqrt(len(locs)), MIN_LOCATION_STD)
    measured = np.array([calibration["references"][n]["measured_eV"] for n in names])
    targets = np.array([refs[n] for n in names])
    if len(names) == 1:
        cov = np.array([[float(sd[0] ** 2), 0.0], [0.0, 0.0]])
    else:
        # first-order propagation: the (offset, scale) fit's derivatives with
        # respect to each measured position, by central differences
        def fit(m):
            scale, offset = np.polyfit(m, targets, 1)
            return np.array([offset, scale])

        h = 1e-3
        J = np.stack([(fit(measured + h * e) - fit(measured - h * e)) / (2 * h)
                      for e in np.eye(len(names))], axis=1)  # (2, n_features)
        cov = J @ np.diag(sd ** 2) @ J.T
    return {"location_std_eV": {n: float(v) for n, v in zip(names, sd, strict=True)},
            "covariance": [[float(v) for v in row] for row in cov],
            "n_groups": len(locs)}


def with_uncertainty(calibration: Mapping, groups, references, *, search: float = 20.0,
                     window: Mapping[str, tuple[float, float]] | None = None) -> dict:
    """``calibration`` with the location error of each feature
    (``references[name]["location_std_eV"]``) and the ``covariance`` of
    :func:`calibration_uncertainty` measured on ``groups``; unchanged when the
    error cannot be measured."""
    unc = calibration_uncertainty(groups, calibration, references, search=search, window=window)
    if unc is None:
        return dict(calibration)
    return {**calibration, "covariance": unc["covariance"],
            "references": {n: {**r, "location_std_eV": unc["location_std_eV"][n]}
                           for n, r in calibration["references"].items()}}


def energy_std(covariance, energy) -> np.ndarray:
    """Energy error (eV, 1 std) of a calibrated axis at ``energy`` from the
    ``(offset, scale)`` covariance that :func:`calibrate` records
    (``calibration_covariance``)."""
    c = np.asarray(covariance, float)
    e = np.asarray(energy, float)
    return np.sqrt(np.maximum(c[0, 0] + 2 * e * c[0, 1] + e * e * c[1, 1], 0.0))


def pixel_groups(mask: np.ndarray, n_groups: int = CALIBRATION_GROUPS, seed: int = 0
               ) -> np.ndarray:
    """Random disjoint groups (0 .. n_groups - 1) of the True pixels of ``mask``;
    -1 elsewhere."""
    mask = np.asarray(mask, bool)
    gid = np.full(mask.shape, -1, np.int64)
    idx = np.flatnonzero(mask.ravel())
    perm = np.random.default_rng(seed).permutation(idx.size)
    flat = gid.ravel()
    flat[idx[perm]] = np.arange(idx.size) % n_groups
    return flat.reshape(mask.shape)


def apply_calibration(si: xr.DataArray, calibration: Mapping) -> xr.DataArray:
    """Relabel the energy axis with ``offset + scale * E`` (no resampling)."""
    si = check_spectra(si, "si", finite=False)
    e = np.asarray(si["energy"].values, float)
    new = calibration["offset_eV"] + calibration["scale"] * e
    out = si.assign_coords(energy=("energy", new, dict(si["energy"].attrs)))
    out.attrs = {**si.attrs,
                 "calibration_offset_eV": float(calibration["offset_eV"]),
                 "calibration_scale": float(calibration["scale"]),
                 "calibration_references": {k: dict(v) for k, v in
                                            calibration.get("references", {}).items()}}
    if calibration.get("covariance") is not None:
        out.attrs["calibration_covariance"] = [list(r) for r in calibration["covariance"]]
    else:
        out.attrs.pop("calibration_covariance", None)
    return append_history(out, "apply_calibration", offset_eV=calibration["offset_eV"],
                          scale=calibration["scale"],
                          references=calibration.get("references", {}))


def calibrate(si: xr.DataArray, zlp: xr.DataArray | None = None,
              references: Mapping[str, float] | None = None, *, search: float = 20.0,
              window: Mapping[str, tuple[float, float]] | None = None,
              mask: xr.DataArray | None = None) -> xr.DataArray:
    """Calibrate the energy axis of a spectrum image.

    1. With ``zlp`` (the zero-loss SI of the same scan): per-pixel zero-loss
       alignment (:func:`align_zero_loss`).
    2. With ``references``: each feature is located on the SI summed over its
       usable (non-vacuum) pixels (despiked), after a local power-law background, and the
       axis is corrected as ``E_true = offset + scale * E``
       (:func:`fit_calibration`).

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI or spectrum, counts, energy in eV.
    zlp : xarray.DataArray, optional
        Zero-loss SI with the same navigation shape.
    references : mapping or list, optional
        Feature -> true energy (eV), e.g. ``{"O_K": 530.0, "Ni_L3": 853.5}``;
        names from :data:`mmspec_widgets.edges.FEATURES` (a list of names,
        or ``None`` values, use the table's energies).
    search : float
        Half-width (eV) of the window where each feature is looked for, around
        its true energy on the (zero-loss aligned) axis. The recorded axis may
        be off by up to about ``search - 3`` eV at each feature.
    window : mapping, optional
        Feature -> ``(low, high)`` search window (eV, zero-loss aligned axis)
        placed by hand, overriding ``search`` for that feature.
    mask : xarray.DataArray, optional
        Pixels to sum for locating features; default :func:`mask_low_counts`.

    Raises
    ------
    MMSpecError
        Neither ``zlp`` nor ``references``; unknown feature names; bad windows.
    DataError
        NaN/inf in ``si``; ``zlp`` of another navigation shape (both shapes
        named); a feature not found or outside the data.

    Returns
    -------
    xarray.DataArray
        Calibrated copy; attrs ``calibration_offset_eV``, ``calibration_scale``,
        ``calibration_references`` (measured / target / residual per feature)
        and a history entry per step.
    """
    si = check_spectra(si, "si")
    if zlp is None and references is None:
        raise MMSpecError("calibrate: give zlp (the zero-loss SI of the same scan) and/or "
                          "references (e.g. {'O_K': 530.0, 'Ni_L3': 853.5})")
    out = si if zlp is None else align_zero_loss(si, zlp)
    if references is None:
        return out
    if mask is None and out.ndim > 1:
        mask = mask_low_counts(out)
    summed = out.where(mask).sum(tuple(out.dims[:-1])) if out.ndim > 1 else out
    # a cosmic-ray spike in one pixel survives in the sum as a one-channel
    # bump that could outshine a weak edge: despike the sum before searching
    summed = remove_spikes(summed.compute())
    cal = fit_calibration(summed, references, search=search, window=window)
    if out.ndim > 1:  # the location error of each feature, from disjoint pixel groups
        nav = tuple(out.dims[:-1])
        m = np.ones(out.shape[:-1], bool) if mask is None else \
            np.asarray(mask.transpose(*nav).values, bool)
        if m.sum() >= 2 * CALIBRATION_GROUPS:
            gid = xr.DataArray(pixel_groups(m), dims=nav, name="group")
            sums = out.groupby(gid).sum().compute()  # every group in one pass
            cal = with_uncertainty(cal, [sums.sel(group=g) for g in range(CALIBRATION_GROUPS)],
                                   references, search=search, window=window)
    return apply_calibration(out, cal)


# --------------------------------------------------------------------------
# XAS scans


def align_scans(scans, reference: xr.DataArray | None = None, *, max_shift: float = 10.0):
    """Shift XAS scans onto a reference spectrum by cross-correlation.

    The derivative of each scan (interpolated onto the reference grid) is
    cross-correlated with the reference's; the best shift is refined to a
    fraction of a step with a parabola.

    Parameters
    ----------
    scans : xarray.DataArray or list of DataArray
        ``("scan", "energy")`` or a list of ``("energy",)`` spectra.
    reference : xarray.DataArray, optional
        ``("energy",)``; default the first scan.
    max_shift : float
        Largest shift considered (eV).

    Returns
    -------
    (aligned, shifts) : (xarray.DataArray, xarray.DataArray)
        Scans on the reference grid, ``("scan", "energy")``, and the shift
        (eV) added to each scan's energy axis.
    """
    if isinstance(scans, xr.DataArray):
        scans = check_spectra(scans, "scans")
        items = [scans] if scans.ndim == 1 else [scans.isel(scan=i) for i in range(scans.sizes["scan"])]
    else:
        items = [check_spectra(s, f"scans[{i}]") for i, s in enumerate(scans)]
    if not items:
        raise DataError("scans: expected at least one scan")
    ref = check_spectra(reference, "reference") if reference is not None else items[0]
    e = np.asarray(ref["energy"].values, float)
    de = float(np.median(np.diff(e)))
    grid = np.arange(e[0], e[-1] + de / 2, de)
    r = np.gradient(np.interp(grid, e, np.asarray(ref.values, float)))
    r = (r - r.mean()) / (r.std() + 1e-30)
    nmax = int(round(max_shift / de))
    shifts, aligned = [], []
    for s in items:
        es = np.asarray(s["energy"].values, float)
        ys = np.asarray(s.values, float)
        best, score = 0.0, []
        lags = np.arange(-nmax, nmax + 1)
        for lag in lags:
            y = np.gradient(np.interp(grid - lag * de, es, ys))
            y = (y - y.mean()) / (y.std() + 1e-30)
            score.append(float(np.dot(y, r)))
        score = np.array(score)
        k = int(np.argmax(score))
        if 0 < k < score.size - 1:
            den = score[k - 1] - 2 * score[k] + score[k + 1]
            frac = 0.5 * (score[k - 1] - score[k + 1]) / den if den < 0 else 0.0
        else:
            frac = 0.0
        best = (lags[k] + frac) * de  # add to the scan's axis
        shifts.append(best)
        aligned.append(np.interp(e, es + best, ys))
    out = xr.DataArray(np.array(aligned), dims=("scan", "energy"),
                       coords={"energy": ("energy", e, dict(ref["energy"].attrs))},
                       attrs=dict(items[0].attrs))
    out = append_history(out, "align_scans", shifts_eV=[float(x) for x in shifts])
    return out, xr.DataArray(np.array(shifts), dims=("scan",), name="shift",
                             attrs={"units": "eV"})
