"""Per-edge extraction: background-free spectra cut onto the standard grids.

:func:`extract_edges` turns a calibrated spectrum image (or XAS scans) into an
:class:`xarray.Dataset` with one variable per edge, each on its own energy
dimension ``energy_<edge>`` (the grid of :mod:`mmspec_widgets.edges`), with the
leading dimensions kept. It is the input of the models, and the simulated
training set uses the same layout.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .background import append_history, check_spectra, mask_low_counts, subtract_background
from .edges import EDGE_ORDER, get_edge
from .errors import DataError, MMSpecError
from .kernels import (
    background_model_error,
    interp_weights,
    jump_model_std,
    jump_std,
    k_edges_rows,
    map_row_blocks,
    window_indices,
    work_dtype,
)
from .learn.coverage import check_span, is_partial_edge

__all__ = ["extract_edges", "normalize_edge", "resample_to_grid", "jump_window", "edge_tables",
           "powerlaw_edges",
           "normalized_input", "NORMALIZATIONS", "NORMALIZED_MARKS", "JUMP_STD_NAME",
           "JUMP_MODEL_STD_NAME"]

NORMALIZATIONS = ("post_edge", "area", "max", None)
#: long names of the jumps' two errors (the fused chain writes the same)
JUMP_STD_NAME = ("standard deviation of the {edge} jump from counting statistics (Poisson "
                 "counts + background extrapolation; the edge is detected above 3 of it)")
JUMP_MODEL_STD_NAME = ("standard deviation of the {edge} jump from the power-law "
                       "background's shape error, measured on these data by hold-out "
                       "extrapolation inside the pre-edge window")
#: values of ``attrs["normalization"]`` that mark normalised absorption (edge
#: step 1, pre-edge removed): set by :func:`mmspec_widgets.io.load` for a
#: ``norm``/``flat`` column and by :func:`~mmspec_widgets.background.normalize_xas`
NORMALIZED_MARKS = ("edge_step", "edge-step", "normalized", "normalised", "norm", "flat",
                    "flattened", "post_edge")
_HINT = ("; a normalised XANES scan needs no pre-edge window and may cover part of a K "
         "edge's grid (normalize_xas first, or declare it: normalized=True)")


def normalized_input(si: xr.DataArray) -> str | None:
    """Why ``si`` counts as normalised absorption (edge step 1, pre-edge removed),
    or None.

    Recognised: ``attrs["normalization"]`` among :data:`NORMALIZED_MARKS`
    (:func:`mmspec_widgets.io.load` sets it for a ``norm``/``flat`` column,
    :func:`~mmspec_widgets.background.normalize_xas` for its output), or a
    ``normalize_xas`` step in ``attrs["history"]``.

    Parameters
    ----------
    si : xarray.DataArray
        Spectra as given to :func:`extract_edges`.

    Returns
    -------
    str or None
        A short reason (for the history), None when nothing says normalised.
    """
    mark = si.attrs.get("normalization")
    if isinstance(mark, str) and mark.strip().lower() in NORMALIZED_MARKS:
        src = si.attrs.get("normalization_source")
        return f"attrs normalization={mark!r}" + (f" ({src})" if src else "")
    hist = si.attrs.get("history", [])
    if isinstance(hist, list | tuple) and any(
            isinstance(h, dict) and h.get("step") == "normalize_xas" for h in hist):
        return "history: normalize_xas"
    return None


def _resample_partial(da: xr.DataArray, grid: np.ndarray, dim: str) -> xr.DataArray:
    """:func:`resample_to_grid` on the grid points the data cover; NaN elsewhere."""
    e = np.asarray(da["energy"].values, float)
    inside = (grid >= e[0] - 1e-6) & (grid <= e[-1] + 1e-6)
    out = resample_to_grid(da, grid[inside], dim)
    return out.reindex({dim: grid}).assign_coords(
        {dim: (dim, grid, {"units": "eV", "long_name": "Energy"})})


def resample_to_grid(da: xr.DataArray, grid: np.ndarray, dim: str) -> xr.DataArray:
    """Linear interpolation of ``da`` along ``energy`` onto ``grid`` (eV),
    vectorised over all leading dimensions; the result's energy dim is ``dim``.

    Raises
    ------
    DataError
        If the grid reaches outside the data's energy range.
    """
    e = np.asarray(da["energy"].values, float)
    grid = np.asarray(grid, float)
    if grid[0] < e[0] - 1e-6 or grid[-1] > e[-1] + 1e-6:
        raise DataError(f"{dim}: the standard grid {grid[0]:.1f} - {grid[-1]:.1f} eV is not "
                        f"covered by the data ({e[0]:.1f} - {e[-1]:.1f} eV)")
    i0, w = interp_weights(e, grid)

    def f(y):
        wd = y.dtype if y.dtype == np.float32 else np.float64
        ww = w.astype(wd)
        return y[..., i0] * (1 - ww) + y[..., i0 + 1] * ww

    out = xr.apply_ufunc(f, da, input_core_dims=[["energy"]], output_core_dims=[[dim]],
                         dask="parallelized",
                         output_dtypes=[da.dtype if da.dtype == np.float32 else np.float64],
                         dask_gufunc_kwargs={"output_sizes": {dim: grid.size}},
                         exclude_dims={"energy"})
    return out.assign_coords({dim: (dim, grid, {"units": "eV", "long_name": "Energy"})})


def normalize_edge(da: xr.DataArray, edge: str, method: str | None = "post_edge",
                   dim: str | None = None) -> xr.DataArray:
    """Normalise edge spectra on a grid.

    Parameters
    ----------
    da : xarray.DataArray
        Spectra with an energy dimension (``dim``, default ``energy_<edge>``
        if present, else ``energy``).
    edge : str
        Edge name (for messages and the default dim).
    method : {"post_edge", "area", "max", None}
        ``post_edge``: divide by the mean of the last 10 % of the grid (edge
        step ~ 1, as in the simulated training set); ``area``: unit mean
        value; ``max``: unit maximum; ``None``: unchanged.

    Returns
    -------
    xarray.DataArray
        Normalised spectra; spectra whose norm is not positive become NaN.
    """
    get_edge(edge)
    if method not in NORMALIZATIONS:
        raise MMSpecError(f"normalize={method!r}: expected one of {NORMALIZATIONS}")
    if dim is None:
        dim = f"energy_{edge}" if f"energy_{edge}" in da.dims else "energy"
    if dim not in da.dims:
        raise DataError(f"{edge}: expected an energy dimension {dim!r}, got dims {da.dims}")
    if method is None:
        return da
    n = da.sizes[dim]
    if method == "post_edge":
        norm = da.isel({dim: slice(n - max(3, n // 10), None)}).mean(dim)
    elif method == "area":
        norm = da.mean(dim)
    else:
        norm = da.max(dim)
    out = da / norm.where(norm > 0)
    out.attrs = {**da.attrs, "normalization": method}
    return out


def jump_window(edge: str) -> tuple[float, float]:
    """Energy window (eV) over which an edge's jump is averaged.

    The last 10 % of the edge's standard grid (at least 3 points): the level
    that ``normalize="post_edge"`` divides by and :func:`extract_edges`
    records as ``jump_<edge>``; cross-sections for the composition
    (:mod:`mmspec_widgets.quantify`) are averaged over the same window.

    Parameters
    ----------
    edge : str
        Edge name.

    Returns
    -------
    (float, float)
        First and last grid energy of the window (eV).
    """
    grid = get_edge(edge).energy
    n = grid.size
    tail = grid[n - max(3, n // 10):]
    return float(tail[0]), float(tail[-1])


def edge_tables(energy: np.ndarray, names: Sequence[str], windows: dict | None = None,
                dtype=np.float32) -> dict:
    """Channel tables of the compiled per-edge kernel
    (:func:`mmspec_widgets.kernels.k_edge`) for ``names`` on the axis
    ``energy`` (eV): each edge's two-area halves of its pre-edge window (the
    table's, or ``windows[edge]``), the channels its background is subtracted
    over, its grid's left channels and weights, its post-edge tail; ``n_grid``,
    the edges' grids side by side.

    Raises
    ------
    DataError
        A pre-edge window or a grid outside ``energy``, or a window of fewer
        than 4 channels.
    """
    ec = np.asarray(energy, float)
    wd = np.dtype(dtype)
    windows = dict(windows or {})
    j1, j3, j4, xw, bk0, bk1, goff, gsize, gtail, gi0, gw = ([] for _ in range(11))
    off = 0
    for name in names:
        edge = get_edge(name)
        win = windows.get(name, list(edge.pre_edge))
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


def powerlaw_edges(si: xr.DataArray, names: Sequence[str], windows: dict | None = None,
                   post_norm: bool = True) -> tuple[dict, dict]:
    """Every edge of ``names`` cut from the raw spectra ``si`` by the compiled
    per-edge kernel (:func:`mmspec_widgets.kernels.k_edges_rows`, the fused
    chain's arithmetic): two-area power law fitted in the pre-edge window and
    subtracted, linear resampling onto the standard grid and, with
    ``post_norm``, division by the post-edge level; rows on threads, numpy-
    or dask-backed (chunked over pixels).

    Returns
    -------
    (edges, jumps) : (dict, dict)
        Edge name -> DataArray on ``energy_<edge>`` (working dtype), and edge
        name -> its jump (float64; NaN where the fit failed).
    """
    wd = work_dtype(si.dtype)
    e = np.asarray(si["energy"].values, float)
    t = edge_tables(e, names, windows, wd)
    n_grid, n_edge = t["n_grid"], len(names)

    def f(y):
        lead = y.shape[:-1]
        rows = np.ascontiguousarray(y, dtype=wd).reshape(-1, y.shape[-1])
        # the jumps ride along as the last columns (each is a value of the working dtype)
        out = np.empty((rows.shape[0], n_grid + n_edge), wd)
        jumps = np.empty((rows.shape[0], n_edge))

        def run(r0, r1):
            k_edges_rows(rows[r0:r1], t["j1"], t["j3"], t["j4"], t["xw"], t["bk0"], t["bk1"],
                         t["goff"], t["gsize"], t["gtail"], t["gi0"], t["gw"], t["gomw"],
                         t["loge"], t["grad"], bool(post_norm), out[r0:r1, :n_grid],
                         jumps[r0:r1])

        map_row_blocks(run, rows.shape[0], max(16, 262144 // max(y.shape[-1], 1)))
        out[:, n_grid:] = jumps
        return out.reshape(lead + (n_grid + n_edge,))

    both = xr.apply_ufunc(f, si, input_core_dims=[["energy"]], output_core_dims=[["_edges"]],
                          dask="parallelized", output_dtypes=[wd],
                          dask_gufunc_kwargs={"output_sizes": {"_edges": n_grid + n_edge}},
                          exclude_dims={"energy"})
    edges, jumps = {}, {}
    for k, name in enumerate(names):
        o, g = int(t["goff"][k]), int(t["gsize"][k])
        dim = f"energy_{name}"
        edges[name] = both.isel(_edges=slice(o, o + g)).rename({"_edges": dim}).assign_coords(
            {dim: (dim, get_edge(name).energy, {"units": "eV", "long_name": "Energy"})})
        jumps[name] = both.isel(_edges=n_grid + k).astype(np.float64)
    return edges, jumps


def _energy_slice(si: xr.DataArray, e: np.ndarray, lo: float, hi: float) -> xr.DataArray:
    """``si`` restricted to the channels covering ``[lo, hi]`` eV (plus one
    channel each side); the whole axis when it does not cover them (the
    callers then raise a clear error)."""
    if lo < e[0] - 1e-6 or hi > e[-1] + 1e-6:
        return si
    i0 = max(int(np.searchsorted(e, lo, side="right")) - 2, 0)
    i1 = min(int(np.searchsorted(e, hi, side="left")) + 2, e.size)
    return si.isel(energy=slice(i0, i1))


def _check_finite(si: xr.DataArray, m: xr.DataArray | None) -> xr.DataArray:
    """NaN/inf are allowed only in pixels that ``m`` excludes (numpy data);
    there they are set to 0 (those pixels come out NaN anyway)."""
    if not isinstance(si.data, np.ndarray):
        return si
    finite_px = np.isfinite(si.data).all(-1)
    if finite_px.all():
        return si
    usable = finite_px.copy()
    if m is not None:
        usable |= ~np.asarray(m.values, bool)
    if not usable.all():
        raise DataError(f"si: {int((~usable).sum())} usable pixel(s) hold NaN/inf values; "
                        "expected finite counts (mask those pixels or replace the values)")
    return si.where(np.isfinite(si), 0).astype(si.dtype)


def extract_edges(
    si: xr.DataArray,
    edges: Sequence[str] = ("O_K", "Mn_L23", "Co_L23", "Ni_L23"),
    *,
    normalize: str | None = "post_edge",
    background: str | None = "powerlaw",
    windows: dict | None = None,
    mask: xr.DataArray | None | bool = True,
    normalized: bool | None = None,
) -> xr.Dataset:
    """Cut each edge onto its standard grid, background-free and normalised.

    Parameters
    ----------
    si : xarray.DataArray
        Calibrated spectra ``(..., energy)``, eV, counts (EELS) or absorption.
    edges : sequence of str
        Edge names from :data:`mmspec_widgets.edges.EDGE_ORDER`.
    normalize : {"post_edge", "area", "max", None}
        See :func:`normalize_edge`. Default ``"post_edge"`` (edge step ~ 1),
        as the simulated training set.
    background : {"powerlaw", "exponential", "polynomial", None}
        Model subtracted per edge, fitted in the edge's pre-edge window (the
        edge table's, or ``windows[edge]``). ``None`` when the input is already
        background-free (e.g. normalised XAS).
    windows : dict, optional
        Edge -> ``(low, high)`` pre-edge window (eV) overriding the table.
    mask : bool or DataArray
        ``True`` (default): pixels below 5 % of the typical counts (vacuum,
        all-zero, or holding NaN/inf; :func:`~mmspec_widgets.background.mask_low_counts`)
        give NaN, with a warning saying how many; a boolean DataArray of the
        leading dims selects usable pixels; ``False``/``None``: no masking.
        NaN/inf values are accepted only in pixels the mask excludes.
    normalized : bool, optional
        Whether ``si`` is already normalised absorption (XANES with the
        pre-edge removed and an edge step of 1). ``None`` (default): recognised
        from its attrs (:func:`normalized_input`: a ``norm``/``flat`` column of
        the file, or :func:`~mmspec_widgets.background.normalize_xas`);
        ``True`` declares it; ``False`` treats it as raw. Normalised input is
        used as it is: no pre-edge background fit, no re-normalisation
        (``background`` and ``normalize`` are not applied; the history says
        why), and a hard-XAS K edge may be covered in part: the grid points
        the scan covers are filled, the others are NaN, and the model
        predicts from what it covers (:mod:`mmspec_widgets.learn.coverage`),
        provided the scan covers the edge's rise and white line.

    Returns
    -------
    xarray.Dataset
        One variable per edge on dim ``energy_<edge>`` (coordinate = the
        standard grid, eV), leading dims as ``si``, and ``jump_<edge>``: the
        edge's background-free level before normalisation (input units, e.g.
        counts; the same mean over the last 10 % of the grid that ``post_edge``
        divides by), whose ratios give the local composition
        (:func:`mmspec_widgets.quantify.quantify`), with, when a background is
        subtracted, ``jump_<edge>_std`` from counting statistics (what an edge's
        detection is judged against) and ``jump_<edge>_model_std`` from the
        power law's shape error (how far a power law fitted on the first 60 % of
        the pre-edge window misses the counts of its last 20 %, beyond counting
        statistics, across the usable pixels, scaled to the jump's lever:
        :func:`mmspec_widgets.kernels.background_model_error`; per edge in
        ``attrs["background_model_error"]``, JSON, with its ``bias`` common to
        all pixels); attrs carry the input's history plus this step, and
        ``edges``.

    Raises
    ------
    MMSpecError
        Unknown edge name, normalisation or mask argument.
    DataError
        A grid or pre-edge window outside the data's energy range (for
        normalised input: a K edge covered less than its rise and white line,
        or another edge's grid not covered), NaN/inf in usable pixels, or no
        usable pixel at all.

    Notes
    -----
    With the power law (the default), every edge comes from the compiled
    per-edge kernel the fused chain runs (:func:`powerlaw_edges`,
    :func:`mmspec_widgets.kernels.k_edge`): the same arithmetic, so the plain
    and the fused chain give the same edges from the same spectra. The other
    backgrounds use only the channels from the pre-edge window to the end of
    the grid (:func:`~mmspec_widgets.background.subtract_background` fitted
    per pixel in the window and evaluated there).
    """
    si = check_spectra(si, "si", finite=False)
    if isinstance(edges, str):
        edges = [edges]
    names = []
    for e in edges:
        names.append(get_edge(e).name)
    if not names:
        raise MMSpecError("edges: expected at least one edge name")
    names = sorted(set(names), key=EDGE_ORDER.index)
    if normalize not in NORMALIZATIONS:
        raise MMSpecError(f"normalize={normalize!r}: expected one of {NORMALIZATIONS}")
    windows = dict(windows or {})
    for k in windows:
        get_edge(k)
    if normalized not in (None, True, False):
        raise MMSpecError(f"normalized={normalized!r}: expected True, False or None (recognise)")
    why = normalized_input(si) if normalized is None else \
        ("declared (normalized=True)" if normalized else None)
    if why is not None:  # used as it is: no pre-edge fit, no re-normalisation
        background, normalize = None, None

    m = None
    if isinstance(mask, xr.DataArray):
        m = mask.astype(bool)
        if set(m.dims) == set(si.dims[:-1]):
            m = m.transpose(*si.dims[:-1])
        if dict(m.sizes) != {d: si.sizes[d] for d in si.dims[:-1]}:
            raise DataError(f"mask: expected a boolean map with dims/sizes "
                            f"{ {d: si.sizes[d] for d in si.dims[:-1]} } (the pixels of si), "
                            f"got {dict(m.sizes)}")
    elif mask is True and si.ndim > 1:
        m = mask_low_counts(si)
        n_bad = int((~m).sum())
        if n_bad:
            warnings.warn(f"extract_edges: {n_bad} of {m.size} pixels have too few counts "
                          "(vacuum, all-zero or NaN/inf); their edges are NaN", stacklevel=2)
        if n_bad == m.size:
            raise DataError("si: no usable pixel (all are vacuum, all-zero or NaN/inf)")
    elif mask not in (False, None, True):
        raise MMSpecError(f"mask={mask!r}: expected True, False, None or a boolean DataArray")
    si = _check_finite(si, m)
    e_all = np.asarray(si["energy"].values, float)
    out = xr.Dataset()
    model_error: dict = {}
    kernel = None
    if background == "powerlaw":  # the fused chain's compiled arithmetic, all edges in one pass
        for name in names:
            try:
                edge_tables(e_all, [name], windows)
            except DataError as err:
                raise DataError(f"{err}{_HINT if is_partial_edge(name) else ''}") from None
        kernel = powerlaw_edges(si, names, windows, post_norm=normalize == "post_edge")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="subtract_background: the fit failed")
        for name in names:
            edge = get_edge(name)
            grid = edge.energy
            dim = f"energy_{name}"
            win = windows.get(name, edge.pre_edge)
            # only the channels from the pre-edge window to the grid's end
            lo = min(grid[0], float(win[0])) if background is not None else grid[0]
            part = _energy_slice(si, e_all, lo, grid[-1])
            hint = _HINT if is_partial_edge(name) and why is None else ""
            covered = grid[0] >= e_all[0] - 1e-6 and grid[-1] <= e_all[-1] + 1e-6
            n = grid.size
            if kernel is not None:
                da, jump = kernel[0][name], kernel[1][name]
            else:
                sub = part
                if background is not None:
                    try:
                        sub = subtract_background(part, window=win, model=background, mask=m)
                    except DataError as err:
                        raise DataError(f"{name}: pre-edge window {tuple(win)} eV: "
                                        f"{err}{hint}") from None
                if not covered and why is not None and is_partial_edge(name):
                    check_span(name, float(e_all[0]), float(e_all[-1]))
                    da = _resample_partial(sub, grid, dim)
                else:
                    try:
                        da = resample_to_grid(sub, grid, dim)
                    except DataError as err:
                        raise DataError(f"{err}{hint}") from None
                with warnings.catch_warnings():  # a partly covered grid: no jump (NaN)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    jump = da.isel({dim: slice(n - max(3, n // 10), None)}).mean(dim)
            jstd = None
            if background is not None:
                tail = grid[n - max(3, n // 10):]
                counts = np.asarray(part.values)
                usable = counts if m is None else counts[np.asarray(m.values, bool)]
                err = background_model_error(usable, part["energy"].values, win,
                                             (tail[0], tail[-1]))
                model_error[name] = {k: (round(v, 5) if isinstance(v, float) else v)
                                     for k, v in err.items()}
                jstd = xr.DataArray(
                    jump_std(counts, part["energy"].values, win, (tail[0], tail[-1]),
                             jump.values), dims=jump.dims, coords=jump.coords)
                jmod = xr.DataArray(
                    jump_model_std(counts, part["energy"].values, (tail[0], tail[-1]),
                                   jump.values, err["scatter"]),
                    dims=jump.dims, coords=jump.coords)
            if kernel is None or normalize != "post_edge":  # the kernel divided already
                da = normalize_edge(da, name, normalize, dim=dim)
            if m is not None:
                da = da.where(m)
                jump = jump.where(m)
                if jstd is not None:
                    jstd = jstd.where(m)
                    jmod = jmod.where(m)
            da.attrs = {"edge": name,
                        "units": "normalised" if normalize or why else "counts",
                        "normalization": "edge_step (input)" if why else str(normalize),
                        "background": str(background),
                        "pre_edge_window_eV": list(win) if background else []}
            if why is not None:
                da.attrs["normalized_input"] = why
                if not covered:
                    da.attrs["covered_eV"] = [float(max(e_all[0], grid[0])),
                                              float(min(e_all[-1], grid[-1]))]
            out[name] = da
            jump.attrs = {"long_name": f"{name} edge jump (background-free level over the "
                                       "last 10 % of its grid)",
                          "units": str(si.attrs.get("units", "counts"))}
            out[f"jump_{name}"] = jump.astype(np.float64)
            if jstd is not None:
                jstd.attrs = {"long_name": JUMP_STD_NAME.format(edge=name),
                              "units": jump.attrs["units"]}
                out[f"jump_{name}_std"] = jstd.astype(np.float64)
                jmod.attrs = {"long_name": JUMP_MODEL_STD_NAME.format(edge=name),
                              "units": jump.attrs["units"],
                              "background_model_rel_std": model_error[name]["scatter"]}
                out[f"jump_{name}_model_std"] = jmod.astype(np.float64)
    out.attrs = {k: v for k, v in si.attrs.items() if k != "history"}
    out.attrs["history"] = list(si.attrs.get("history", []))
    out.attrs["edges"] = list(names)
    if model_error:
        out.attrs["background_model_error"] = json.dumps(model_error)
    return append_history(out, "extract_edges", edges=names, normalize=normalize,
                          background=background, windows=windows,
                          **({"normalized": why} if why else {}))
