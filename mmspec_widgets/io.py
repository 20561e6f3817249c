"""Instrument files -> labelled :class:`xarray.DataArray`.

:func:`load` is the single entry point. Gatan ``.dm3``/``.dm4``, EMSA/MSA
``.msa``/``.emsa`` and HyperSpy ``.hspy``/``.hdf5`` files are read through
HyperSpy/RosettaSciIO; XAS column files (``.txt``, ``.dat``, ``.csv``,
``.xmu``, ``.nor``) and ``.xdi`` files are read by the project's own parsers.

What comes back, whatever the file:

* a spectrum image has dims ``("y", "x", "energy")`` (a 1-D line scan gets a
  ``y`` of length one), a single spectrum ``("energy",)``, several XAS scans
  ``("scan", "energy")``, an image (ADF survey) ``("y", "x")``;
* the ``energy`` coordinate is float64 in eV; ``x``/``y`` are in nm (or pixel
  index with ``units="px"`` when the file has no spatial calibration);
* ``attrs`` is flat (strings and numbers only, plus ``history``, a list of
  ``{"step": ..., "params": {...}}`` dicts that processing functions append to).

Files are opened read-only and never modified.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import DataError, FileFormatError, MMSpecError

__all__ = [
    "load",
    "load_zlp_pair",
    "save",
    "HYPERSPY_EXTENSIONS",
    "COLUMN_EXTENSIONS",
    "XDI_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
]

#: Extensions read through HyperSpy / RosettaSciIO.
HYPERSPY_EXTENSIONS: tuple[str, ...] = (".dm3", ".dm4", ".msa", ".emsa", ".hspy", ".hdf5")
#: Extensions read as XAS column text.
COLUMN_EXTENSIONS: tuple[str, ...] = (".txt", ".dat", ".csv", ".xmu", ".nor")
#: XAS Data Interchange files.
XDI_EXTENSIONS: tuple[str, ...] = (".xdi",)
SUPPORTED_EXTENSIONS: tuple[str, ...] = HYPERSPY_EXTENSIONS + COLUMN_EXTENSIONS + XDI_EXTENSIONS

# length units -> factor to nm
_LENGTH_TO_NM = {
    "nm": 1.0,
    "µm": 1e3, "μm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3,
    "å": 0.1, "a": 0.1, "angstrom": 0.1, "ang": 0.1,
    "pm": 1e-3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
}
# energy units -> factor to eV
_ENERGY_TO_EV = {"ev": 1.0, "kev": 1e3, "mev": 1e-3}
_UNDEFINED_UNITS = {"", "<undefined>", "undefined", "none", "px", "pixel", "pixels"}

_LONG_NAMES = {"EELS": "Energy loss", "XAS": "Photon energy"}


# ----------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------
def load(
    path: str | Path,
    *,
    signal: int | None = None,
    lazy: bool = False,
    energy: str | int | None = None,
    mu: str | int | Sequence[str | int] | None = None,
) -> xr.DataArray | list[xr.DataArray]:
    """Read an instrument file into a labelled DataArray.

    Parameters
    ----------
    path : str or pathlib.Path
        File to read. Supported: ``.dm3``, ``.dm4``, ``.msa``, ``.emsa``,
        ``.hspy``, ``.hdf5`` (through HyperSpy/RosettaSciIO), XAS column files
        ``.txt``, ``.dat``, ``.csv``, ``.xmu``, ``.nor`` and ``.xdi``.
    signal : int, optional
        For files holding several signals (a Gatan file with a spectrum, its
        background and the background-subtracted edge), return only the
        ``signal``-th one (0-based). By default all are returned as a list.
    lazy : bool, default False
        Return a dask-backed DataArray, chunked over navigation pixels (the
        energy axis is never split).
    energy : str or int, optional
        Column files only: name or 0-based index of the energy column.
        By default the column named like ``energy``/``E``/``eV`` or else the
        first column.
    mu : str, int or sequence of those, optional
        Column files only: name(s) or index(es) of the absorption column(s).
        By default ``mu``/``xmu``/``mu(E)`` columns, else ``norm``, ``flat``,
        else ``ln(I0/It)`` from ``I0`` and ``It``, else ``If/I0``.

    Returns
    -------
    xarray.DataArray or list of xarray.DataArray
        Dims ``("y", "x", "energy")`` for a spectrum image, ``("energy",)``
        for one spectrum, ``("scan", "energy")`` for several XAS scans and
        ``("y", "x")`` for an image. ``energy`` is in eV, ``x``/``y`` in nm
        (``units="px"`` when uncalibrated). ``attrs`` hold ``signal_type``,
        ``title``, ``source_file``, acquisition parameters where the file
        records them (``beam_energy_keV``, ``collection_angle_mrad``,
        ``convergence_angle_mrad``, ``dispersion_eV``, ``dwell_time_s``,
        ``acquisition_date``, ``acquisition_time``, ``microscope``,
        ``detector``; ``element``/``edge`` for XDI) and ``history=[]``.
        An absorption column named as normalised (``norm``, ``normalized``,
        ``nmu``, ``flat`` ...) sets ``normalization="edge_step"`` and
        ``normalization_source``: :func:`~mmspec_widgets.extract.extract_edges`
        then uses it without a pre-edge fit.
        A list when the file holds several signals and ``signal`` is None.

    Raises
    ------
    FileFormatError
        Missing, empty, truncated or corrupt file, unknown extension, or no
        energy axis / absorption column.
    DataError
        NaN/inf values in an XAS column, or ``signal`` out of range.
    """
    path = _check_path(path)
    if signal is not None and (isinstance(signal, bool) or not isinstance(signal, (int, np.integer))):
        raise MMSpecError(f"signal={signal!r}: expected a non-negative integer index or None")
    ext = path.suffix.lower()
    if ext in HYPERSPY_EXTENSIONS:
        if energy is not None or mu is not None:
            raise MMSpecError(
                f"energy=/mu= apply to XAS column files only, not to {path.name!r} ({ext})"
            )
        out = _load_hyperspy(path, lazy=lazy)
    elif ext in XDI_EXTENSIONS:
        out = [_load_columns(path, energy=energy, mu=mu, xdi=True)]
    else:
        out = [_load_columns(path, energy=energy, mu=mu, xdi=False)]
    if lazy and ext not in HYPERSPY_EXTENSIONS:
        out = [_chunk(da) for da in out]

    if signal is not None:
        if not 0 <= int(signal) < len(out):
            raise DataError(
                f"{path}: signal={signal} is out of range; the file holds {len(out)} "
                f"signal(s), expected an index in 0..{len(out) - 1}"
            )
        return out[int(signal)]
    if len(out) == 1:
        out[0].attrs.pop("signal_index", None)
        return out[0]
    return out


def load_zlp_pair(
    core_path: str | Path, zlp_path: str | Path, *, lazy: bool = False
) -> tuple[xr.DataArray, xr.DataArray]:
    """Load a core-loss spectrum image and the zero-loss SI of the same scan.

    Parameters
    ----------
    core_path, zlp_path : str or pathlib.Path
        Files of the core-loss and zero-loss (low-loss) spectrum images.
    lazy : bool, default False
        Passed to :func:`load`.

    Returns
    -------
    (core, zlp) : tuple of xarray.DataArray
        Both with dims ``("y", "x", "energy")``, energy in eV.

    Raises
    ------
    DataError
        If either file is not a single spectrum image, or their navigation
        shapes (``y`` x ``x`` pixels) differ.
    """
    pair = []
    for p in (core_path, zlp_path):
        da = load(p, lazy=lazy)
        if isinstance(da, list) or da.dims != ("y", "x", "energy"):
            dims = [d.dims for d in da] if isinstance(da, list) else da.dims
            raise DataError(
                f"{p}: expected one spectrum image with dims ('y', 'x', 'energy'), got {dims}"
            )
        pair.append(da)
    core, zlp = pair
    if (core.sizes["y"], core.sizes["x"]) != (zlp.sizes["y"], zlp.sizes["x"]):
        raise DataError(
            f"{zlp_path}: zero-loss SI has {zlp.sizes['y']}x{zlp.sizes['x']} (y x x) pixels but "
            f"the core-loss SI {core_path} has {core.sizes['y']}x{core.sizes['x']}; "
            "expected the same scan"
        )
    return core, zlp


# ----------------------------------------------------------------------------
# common helpers
# ----------------------------------------------------------------------------
def _check_path(path: str | Path) -> Path:
    if not isinstance(path, (str, Path)):
        raise FileFormatError(f"path={path!r}: expected a file path (str or pathlib.Path)")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileFormatError(f"{p}: no such file")
    if not p.is_file():
        raise FileFormatError(f"{p}: is not a regular file (expected a data file)")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise FileFormatError(
            f"{p}: unknown file extension {ext or '(none)'!r}; expected one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if p.stat().st_size == 0:
        raise FileFormatError(f"{p}: file is empty (0 bytes); expected {_describe(ext)}")
    return Path(os.path.abspath(p))


def _describe(ext: str) -> str:
    if ext in (".dm3", ".dm4"):
        return "a Gatan Digital Micrograph file"
    if ext in (".msa", ".emsa"):
        return "an EMSA/MSA spectrum"
    if ext in (".hspy", ".hdf5"):
        return "a HyperSpy HDF5 file"
    if ext == ".xdi":
        return "an XDI file (# XDI/1.0 header and numeric columns)"
    return "numeric columns (energy and absorption)"


def _clean(value: Any) -> Any:
    """Scalar suitable for netCDF attrs, or None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        s = value.strip()
        return s or None
    return None


def _set(attrs: dict, key: str, value: Any) -> None:
    v = _clean(value)
    if v is not None:
        attrs[key] = v


def _round32(x: float) -> float:
    """Shortest decimal that round-trips through float32 (DM stores float32)."""
    return float(str(np.float32(x)))


def _chunk(da: xr.DataArray) -> xr.DataArray:
    chunks = {d: (-1 if d == "energy" else "auto") for d in da.dims}
    return da.chunk(chunks)


@contextlib.contextmanager
def _quiet_hyperspy():
    """Silence HyperSpy's log messages and deprecation chatter during a read."""
    loggers = [logging.getLogger(n) for n in ("hyperspy", "hyperspy.io", "rsciio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


# ----------------------------------------------------------------------------
# HyperSpy / RosettaSciIO
# ----------------------------------------------------------------------------
def _load_hyperspy(path: Path, *, lazy: bool) -> list[xr.DataArray]:
    ext = path.suffix.lower()
    with _quiet_hyperspy():
        import hyperspy.api as hs

        try:
            loaded = hs.load(str(path), lazy=lazy)
        except MMSpecError:
            raise
        except Exception as err:
            raise FileFormatError(
                f"{path}: could not be read as {_describe(ext)} "
                f"(truncated or corrupt file?): {type(err).__name__}: {err}"
            ) from err
    signals = loaded if isinstance(loaded, list) else [loaded]
    if not signals:
        raise FileFormatError(f"{path}: holds no signal; expected {_describe(ext)}")
    if ext in (".msa", ".emsa"):
        _check_msa_points(path, signals)
    out = []
    for i, sig in enumerate(signals):
        try:
            da = _from_signal(sig, path, lazy=lazy, dm=ext in (".dm3", ".dm4"))
        except MMSpecError:
            raise
        except Exception as err:  # data block unreadable (e.g. truncated memmap)
            raise FileFormatError(
                f"{path}: signal {i} could not be read (truncated or corrupt file?): "
                f"{type(err).__name__}: {err}"
            ) from err
        if ext in (".hspy", ".hdf5"):  # written by interop.to_hyperspy: its labels back
            from .interop import from_hyperspy

            da = from_hyperspy(sig, da)
        if len(signals) > 1:
            da.attrs["signal_index"] = i
        out.append(da)
    return out


def _check_msa_points(path: Path, signals) -> None:
    """The points read must be as many as the header's ``#NPOINTS`` says."""
    expected = None
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("latin-1").strip()
            if line and not line.startswith("#"):
                break
            key, _, value = line.lstrip("#").partition(":")
            if key.strip().upper() == "NPOINTS":
                try:
                    expected = int(float(value.strip()))
                except ValueError:
                    raise FileFormatError(f"{path}: header NPOINTS {value.strip()!r} is not a "
                                          "number; expected the count of data points") from None
                break
    if expected is None:
        return
    for sig in signals:
        n = int(sig.data.shape[-1]) if sig.data.ndim else 0
        if n != expected:
            raise FileFormatError(f"{path}: holds {n} data points but its header says NPOINTS "
                                  f"{expected}; truncated or corrupt file?")


def _meta(tree, dotted: str):
    try:
        return tree.get_item(dotted)
    except Exception:
        return None


def _dm_tag(om: dict, *keys: str):
    """Look up ``ImageList/TagGroup*/ImageTags/<keys>`` in DM original metadata."""
    il = om.get("ImageList") if isinstance(om, dict) else None
    if not isinstance(il, dict):
        return None
    for group in il.values():
        node = group.get("ImageTags") if isinstance(group, dict) else None
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                node = None
                break
            node = node[k]
        if node is not None and not isinstance(node, (dict, list, tuple)):
            return node
    return None


def _axis_values(ax, dm: bool) -> tuple[np.ndarray, float | None]:
    """Axis values in the file's units and the (uniform) step, or None."""
    size = int(ax.size)
    if getattr(ax, "is_uniform", True) and hasattr(ax, "scale"):
        scale, offset = float(ax.scale), float(ax.offset)
        if dm and scale > 0:
            # DM stores scale and origin (in channels) as float32 and the
            # offset is their product: keep the scale's float32 digits and
            # the offset to 1/1000 of a channel.
            scale = _round32(scale)
            offset = round(offset, max(0, math.ceil(-math.log10(scale)) + 3))
        vals = offset + scale * np.arange(size, dtype=np.float64)
        if dm:
            vals = np.round(vals, 9)
        return vals, scale
    vals = np.asarray(ax.axis, dtype=np.float64)
    return vals, None


def _units(ax) -> str:
    u = getattr(ax, "units", None)
    if u is None or not isinstance(u, str):
        return ""
    return u.strip()


def _spatial_coord(ax, dm: bool, dim: str, path: Path) -> xr.Variable:
    vals, _ = _axis_values(ax, dm)
    unit = _units(ax)
    factor = _LENGTH_TO_NM.get(unit.lower()) if unit else None
    if factor is None:
        if unit.lower() not in _UNDEFINED_UNITS:
            warnings.warn(
                f"{path.name}: axis {dim!r} is in {unit!r}, not a length; using pixel index",
                stacklevel=4,
            )
        return xr.Variable(dim, np.arange(ax.size, dtype=np.float64),
                           attrs={"units": "px", "long_name": dim})
    nm = vals * factor
    if dm:
        nm = np.round(nm, 9)
    return xr.Variable(dim, nm, attrs={"units": "nm", "long_name": dim})


def _energy_coord(ax, dm: bool, path: Path) -> tuple[np.ndarray, float]:
    unit = _units(ax)
    factor = _ENERGY_TO_EV.get(unit.lower())
    if factor is None:
        raise FileFormatError(
            f"{path}: the signal axis {ax.name!r} is in {unit or 'no units'!r}; expected an "
            "energy axis in eV (or keV/meV). Calibrate the energy axis before saving."
        )
    vals, step = _axis_values(ax, dm)
    vals = vals * factor
    if dm:
        vals = np.round(vals, 9)
    if step is None:
        step = float(np.median(np.diff(vals))) if vals.size > 1 else float("nan")
    else:
        step = step * factor
    return vals, step


def _from_signal(sig, path: Path, *, lazy: bool, dm: bool) -> xr.DataArray:
    am = sig.axes_manager
    md = sig.metadata
    om = sig.original_metadata.as_dictionary()
    data = sig.data
    if 0 in data.shape:
        raise FileFormatError(
            f"{path}: holds no data (empty signal); expected {_describe(path.suffix.lower())}"
        )
    # axes in array order
    axes = list(am._axes)
    sig_axes = [ax for ax in axes if not ax.navigate]
    nav_axes = [ax for ax in axes if ax.navigate]
    hs_type = (_meta(md, "Signal.signal_type") or "").strip()
    title = _clean(_meta(md, "General.title")) or path.stem

    coords: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    if len(sig_axes) == 1:
        signal_type = hs_type or "spectrum"
        energy, step = _energy_coord(sig_axes[0], dm, path)
        coords["energy"] = xr.Variable(
            "energy", energy,
            attrs={"units": "eV", "long_name": _LONG_NAMES.get(signal_type, "Energy")},
        )
        _set(attrs, "dispersion_eV", _round32(step) if dm else step)
        if len(nav_axes) > 2:
            raise FileFormatError(
                f"{path}: {len(nav_axes)} navigation axes; expected a single spectrum, a line "
                "scan or a 2-D spectrum image"
            )
        nav_dims = ["y", "x"][2 - len(nav_axes):]
        for ax, dim in zip(nav_axes, nav_dims, strict=True):
            coords[dim] = _spatial_coord(ax, dm, dim, path)
        dims = nav_dims + ["energy"]
        if len(nav_axes) == 1:  # line scan -> y of length one
            data = data[None, ...]
            coords["y"] = xr.Variable("y", np.zeros(1), attrs=dict(coords["x"].attrs, long_name="y"))
            dims = ["y", "x", "energy"]
        if energy.size > 1:
            d = np.diff(energy)
            if np.all(d < 0):
                data = data[..., ::-1]
                coords["energy"] = xr.Variable("energy", energy[::-1], attrs=coords["energy"].attrs)
            elif not np.all(d > 0):
                raise FileFormatError(f"{path}: energy axis is not monotonic; expected increasing energies")
    elif len(sig_axes) == 2:
        signal_type = "image" if hs_type in ("", "image", "Signal2D") else hs_type
        if len(nav_axes) > 1:
            raise FileFormatError(
                f"{path}: image stack with {len(nav_axes)} navigation axes; expected a single "
                "image or a 1-D stack"
            )
        dims = ["frame"] * len(nav_axes) + ["y", "x"]
        for ax, dim in zip(sig_axes, ["y", "x"], strict=True):
            coords[dim] = _spatial_coord(ax, dm, dim, path)
        if nav_axes:
            coords["frame"] = np.arange(nav_axes[0].size)
    else:
        raise FileFormatError(
            f"{path}: {len(sig_axes)} signal axes; expected a spectrum (one energy axis) or an "
            "image (two spatial axes)"
        )

    if lazy:
        import dask.array as dsa

        if not isinstance(data, dsa.Array):
            data = dsa.from_array(data)
        _probe_lazy(data, path)
        data = data.rechunk({i: (-1 if d == "energy" else "auto") for i, d in enumerate(dims)})

    attrs["signal_type"] = signal_type
    attrs["title"] = title
    attrs["source_file"] = str(path)
    attrs.update(_acquisition_attrs(md, om, sig_axes))
    _set(attrs, "quantity", _meta(md, "Signal.quantity"))
    attrs["history"] = []
    name = "intensity"
    return xr.DataArray(data, dims=tuple(dims), coords=coords, attrs=attrs, name=name)


def _probe_lazy(data, path: Path) -> None:
    """Read the first and last value of a lazily loaded array: a truncated or
    corrupt data block fails here, with a clear message, instead of at the
    first computation."""
    if 0 in data.shape:
        return
    try:
        for idx in ((0,) * data.ndim, (-1,) * data.ndim):
            np.asarray(data[idx].compute())
    except Exception as err:  # noqa: BLE001 - any read error means a damaged file
        raise FileFormatError(f"{path}: its data could not be read (truncated or corrupt "
                              f"file?): {type(err).__name__}: {err}") from err


def _acquisition_attrs(md, om: dict, sig_axes) -> dict:
    a: dict[str, Any] = {}
    tem = "Acquisition_instrument.TEM"
    beam = _clean(_meta(md, f"{tem}.beam_energy"))
    if beam is None:
        volt = _clean(_dm_tag(om, "Microscope Info", "Voltage"))
        beam = volt / 1e3 if isinstance(volt, float) else None
    if isinstance(beam, (int, float)) and beam > 1e4:
        beam = beam / 1e3  # Gatan MSA exports write BEAMKV in volts
    if isinstance(beam, (int, float)) and beam > 0:
        a["beam_energy_keV"] = float(beam)

    coll = _clean(_meta(md, f"{tem}.Detector.EELS.collection_angle"))
    if coll is None:
        coll = _clean(_dm_tag(om, "EELS", "Experimental Conditions", "Collection semi-angle (mrad)"))
    if isinstance(coll, (int, float)) and coll > 0:
        a["collection_angle_mrad"] = float(coll)

    conv = _clean(_meta(md, f"{tem}.convergence_angle"))
    if conv is None:
        conv = _clean(_dm_tag(om, "EELS", "Experimental Conditions", "Convergence semi-angle (mrad)"))
    # DM writes 0.0 when the angle was not entered: that means "unknown"
    if isinstance(conv, (int, float)) and conv > 0:
        a["convergence_angle_mrad"] = float(conv)

    dwell = _clean(_meta(md, f"{tem}.Detector.EELS.dwell_time"))
    if dwell is None:
        dwell = _clean(_meta(md, f"{tem}.dwell_time"))
    if dwell is None:
        dwell = _clean(_dm_tag(om, "SI", "Acquisition", "Pixel time (s)"))
    if dwell is None:
        dwell = _clean(_meta(md, f"{tem}.Detector.EELS.exposure"))
    if isinstance(dwell, (int, float)) and dwell > 0:
        a["dwell_time_s"] = float(dwell)
    frames = _clean(_meta(md, f"{tem}.Detector.EELS.frame_number"))
    if isinstance(frames, int) and frames > 0:
        a["n_frames"] = frames

    _set(a, "acquisition_date", _meta(md, "General.date"))
    _set(a, "acquisition_time", _meta(md, "General.time"))
    mic = _clean(_meta(md, f"{tem}.microscope")) or _clean(_dm_tag(om, "Microscope Info", "Name"))
    _set(a, "microscope", mic)
    det = _clean(_meta(md, f"{tem}.Detector.EELS.spectrometer"))
    if det is None:
        det = _clean(_dm_tag(om, "EELS Spectrometer", "Instrument name"))
    _set(a, "detector", det)
    _set(a, "acquisition_mode", _meta(md, f"{tem}.acquisition_mode"))
    ap = _clean(_meta(md, f"{tem}.Detector.EELS.aperture_size"))
    if isinstance(ap, (int, float)) and ap > 0:
        a["aperture_mm"] = float(ap)
    return a


# ----------------------------------------------------------------------------
# XAS column text and XDI
# ----------------------------------------------------------------------------
_COMMENT = ("#", "!", "%", ";")
_ENERGY_RE = re.compile(r"^(photon[ _]?)?(energy|ener|ene|en|e|ev|kev|mono[ _]?energy|e[ _]?mono)"
                        r"([ _]?(ev|kev))?$")
_MU_RE = re.compile(r"^x?mu([ _\-.]?[a-z0-9]*)?$")
_MU_MODE = {"mutrans": 0, "mu_trans": 0, "mut": 0, "mufluor": 1, "mu_fluor": 1, "mufluo": 1,
            "muf": 1, "mu_fluo": 1}
_NORM = {"norm", "normalized", "normalised", "nmu", "norm_mu", "normmu", "normtrans",
         "normfluor", "mu_norm", "mu_normalized"}
_FLAT = {"flat", "flattened", "flat_mu", "flatmu"}
_I0 = {"i0", "io", "izero", "i_0", "i_zero", "mon", "monitor"}
_IT = {"it", "i1", "itrans", "i_t", "itr", "itransmitted"}
_IYIELD = {"if": "If", "ifluor": "If", "ifl": "If", "fluo": "If", "fluor": "If", "ff": "If",
           "iff": "If", "fy": "FY", "tfy": "TFY", "pfy": "PFY", "tey": "TEY", "i_tey": "TEY",
           "drain": "TEY"}
_MAX_LISTED = 10


def _base_name(name: str) -> tuple[str, str]:
    """(lower-case name without a trailing unit bracket, unit inside it)."""
    n = name.strip().lower()
    m = re.match(r"^(.*?)\s*[\(\[]\s*([^\)\]]*)\s*[\)\]]\s*$", n)
    if m and m.group(1):
        return m.group(1).strip(), m.group(2).strip()
    return n, ""


def _known_name(name: str) -> bool:
    b = _base_name(name)[0]
    return bool(_ENERGY_RE.match(b) or _MU_RE.match(b) or b in _MU_MODE or b in _NORM
                or b in _FLAT or b in _I0 or b in _IT or b in _IYIELD)


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise FileFormatError(f"{path}: binary content; expected {_describe(path.suffix.lower())} "
                              "as text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    if not any(ln.strip() for ln in lines):
        raise FileFormatError(f"{path}: holds only blank lines; expected "
                              f"{_describe(path.suffix.lower())}")
    return lines


def _delimiter(lines: list[str]) -> str | None:
    body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(_COMMENT)]
    sample = body[-50:] if body else []
    for d in (",", ";", "\t"):
        if sample and sum(d in ln for ln in sample) >= 0.8 * len(sample):
            return d
    return None  # whitespace


def _split(line: str, delim: str | None) -> list[str]:
    if delim is None:
        return line.split()
    toks = [t.strip() for t in line.strip().split(delim)]
    while toks and toks[-1] == "":
        toks.pop()
    return toks


def _floats(tokens: list[str]) -> list[float] | None:
    if not tokens:
        return None
    try:
        return [float(t) for t in tokens]
    except ValueError:
        return None


def _parse_xdi_header(path: Path, lines: list[str]) -> tuple[dict, dict[int, tuple[str, str]], str | None]:
    if not lines or not re.match(r"^#\s*XDI/", lines[0].strip(), re.IGNORECASE):
        raise FileFormatError(f"{path}: expected '# XDI/1.0' on the first line of an XDI file")
    fields: dict[str, str] = {}
    columns: dict[int, tuple[str, str]] = {}
    label_line = None
    in_fields = True
    for ln in lines[1:]:
        s = ln.strip()
        if not s.startswith("#"):
            break
        body = s.lstrip("#").strip()
        if body.startswith("///"):
            in_fields = False
            continue
        if body.startswith("---"):
            in_fields = False
            label_line = ""
            continue
        if label_line == "":
            label_line = body
            continue
        if in_fields and ":" in body:
            key, _, value = body.partition(":")
            key, value = key.strip(), value.strip()
            fields[key.lower()] = value
            m = re.match(r"^column\.(\d+)$", key, re.IGNORECASE)
            if m:
                parts = value.split()
                if parts:
                    columns[int(m.group(1)) - 1] = (parts[0], parts[1] if len(parts) > 1 else "")
    return fields, columns, label_line or None


def _xdi_attrs(fields: dict) -> dict:
    a: dict[str, Any] = {}
    _set(a, "element", fields.get("element.symbol"))
    _set(a, "edge", fields.get("element.edge"))
    mapped = {"element.symbol", "element.edge", "mono.d_spacing", "sample.name",
              "beamline.name", "facility.name", "scan.start_time"}
    for key, value in fields.items():
        if key.startswith("column.") or key in mapped:
            continue
        name = "xdi_" + re.sub(r"[^a-z0-9]+", "_", key).strip("_")
        try:
            num = float(value.split()[0]) if len(value.split()) == 1 else None
        except ValueError:
            num = None
        _set(a, name, num if num is not None else value)
    if "mono.d_spacing" in fields:
        try:
            a["mono_d_spacing_A"] = float(fields["mono.d_spacing"].split()[0])
        except (ValueError, IndexError):
            pass
    _set(a, "title", fields.get("sample.name"))
    _set(a, "beamline", fields.get("beamline.name"))
    _set(a, "facility", fields.get("facility.name"))
    start = fields.get("scan.start_time")
    if start:
        date, _, time = start.replace(" ", "T", 1).partition("T")
        _set(a, "acquisition_date", date)
        _set(a, "acquisition_time", time)
    return a


def _lines_list(rows: list[int], path: Path) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    more = f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else ""
    return f"line{'s' if len(rows) > 1 else ''} {shown}{more} of {path.name}"


def _resolve_column(spec, names: list[str], path: Path, arg: str) -> int:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        idx = int(spec)
        if -len(names) <= idx < len(names):
            return idx % len(names)
    elif isinstance(spec, str):
        low = spec.strip().lower()
        for i, n in enumerate(names):
            if n.strip().lower() == low:
                return i
        for i, n in enumerate(names):
            if _base_name(n)[0] == _base_name(spec)[0]:
                return i
    raise MMSpecError(
        f"{path}: {arg}={spec!r} matches no column; expected a name or 0-based index among "
        f"{', '.join(f'{i}: {n!r}' for i, n in enumerate(names))}"
    )


def _blocks(e: np.ndarray) -> list[slice] | None:
    """Split rows into monotonic blocks (repeated scans start where the energy
    goes back); None if the column is not monotonic."""
    n = e.size
    if n < 2 or not np.all(np.isfinite(e)):
        return None
    d = np.diff(e)
    sign = np.sign(d[np.nonzero(d)[0][0]]) if np.any(d) else 0
    if sign == 0:
        return None
    breaks = np.nonzero(np.sign(d) != sign)[0] + 1
    edges = [0, *breaks.tolist(), n]
    blocks = [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    min_len = min(5, n)
    for b in blocks:
        db = np.diff(e[b])
        if b.stop - b.start < min_len or (db.size and not np.all(np.sign(db) == sign)):
            return None
    return blocks


def _where_not_increasing(e: np.ndarray, line_no: list[int]) -> str:
    """`` (first at line N: ...)`` where the energies stop increasing (or decreasing)."""
    d = np.diff(e)
    nz = np.nonzero(d)[0]
    if not nz.size:
        return ""
    sign = np.sign(d[nz[0]])
    bad = np.nonzero(np.sign(d) != sign)[0]
    if not bad.size:
        return ""
    k = int(bad[0]) + 1
    what = "repeats" if e[k] == e[k - 1] else "steps back from"
    return f" (first at line {line_no[k]}: {e[k]:g} {what} {e[k - 1]:g} at line {line_no[k - 1]})"


def _check_scan_breaks(e: np.ndarray, blocks: list[slice], line_no: list[int], path: Path,
                       name: str) -> None:
    """Where the energy stops increasing, a new scan must start (back near the
    first scan's start); a repeated energy or one that steps back a little is
    a damaged row, named by its line."""
    if len(blocks) < 2:
        return
    first = e[blocks[0]]
    lo, hi = min(first[0], first[-1]), max(first[0], first[-1])
    up = first[-1] > first[0]
    for b in blocks[1:]:
        k = b.start
        prev, cur = e[k - 1], e[k]
        restart = (cur <= lo + 0.25 * (hi - lo)) if up else (cur >= hi - 0.25 * (hi - lo))
        if cur == prev or not restart:
            what = "repeats" if cur == prev else "steps back from"
            raise FileFormatError(
                f"{path}: energy {cur:g} in column {name!r} at line {line_no[k]} {what} "
                f"{prev:g} at line {line_no[k - 1]}; expected increasing energies (a "
                "duplicated or swapped row?)")


def _load_columns(path: Path, *, energy, mu, xdi: bool) -> xr.DataArray:
    lines = _read_lines(path)
    attrs: dict[str, Any] = {}
    xdi_cols: dict[int, tuple[str, str]] = {}
    xdi_label = None
    if xdi:
        fields, xdi_cols, xdi_label = _parse_xdi_header(path, lines)
        attrs.update(_xdi_attrs(fields))
    delim = _delimiter(lines)

    rows: list[list[float]] = []
    line_no: list[int] = []
    header_candidates: list[tuple[str, bool]] = []  # (text, is_comment)
    garbled: list[int] = []
    for i, ln in enumerate(lines, start=1):
        s = ln.strip()
        if not s or (rows and s.startswith(_COMMENT)):
            continue
        if s.startswith(_COMMENT):
            header_candidates.append((s.lstrip("".join(_COMMENT)).strip(), True))
            continue
        toks = _split(s, delim)
        vals = _floats(toks)
        if vals is None:
            if not rows:
                header_candidates.append((s, False))
            elif _floats([t for t in toks if _floats([t]) is not None]) is not None:
                garbled.append(i)  # part numbers, part text: a damaged row
            continue  # after the data started: a repeated header between scans
        rows.append(vals)
        line_no.append(i)
    if not rows:
        raise FileFormatError(f"{path}: no numeric data rows; expected {_describe(path.suffix.lower())}")
    if garbled:
        raise FileFormatError(
            f"{path}: missing or non-numeric values at {_lines_list(garbled, path)}; expected "
            "numbers in every column (corrupt file?)"
        )
    counts = [len(r) for r in rows]
    ncol = max(set(counts), key=counts.count)
    bad = [line_no[k] for k, c in enumerate(counts) if c != ncol]
    if bad:
        raise FileFormatError(
            f"{path}: {_lines_list(bad, path)} do not have {ncol} values like the other rows "
            "(truncated or corrupt file?)"
        )
    if ncol < 2:
        raise FileFormatError(f"{path}: a single column; expected energy and absorption columns")
    table = np.asarray(rows, dtype=np.float64)

    # column names
    names: list[str] | None = None
    if xdi_cols:
        names = [xdi_cols.get(k, (f"col{k}", ""))[0] for k in range(ncol)]
    else:
        # the last line before the data that splits into ncol names; a comment
        # line must name at least one column we recognise (not a remark)
        cands = ([(xdi_label, True)] if xdi_label else []) + header_candidates[::-1]
        for cand, is_comment in cands:
            for splitter in (lambda t: _split(t, delim), str.split,
                             lambda t: [x for x in re.split(r"\t|\s{2,}", t.strip()) if x]):
                toks = splitter(cand)
                if len(toks) == ncol and _floats(toks) is None and (
                        not is_comment or any(_known_name(t) for t in toks)):
                    names = toks
                    break
            if names:
                break
    has_header = names is not None
    if names is None:
        names = [f"col{k}" for k in range(ncol)]
    bases = [_base_name(n) for n in names]
    units = [xdi_cols[k][1].lower() if k in xdi_cols and xdi_cols[k][1] else bases[k][1]
             for k in range(ncol)]

    # energy column
    if energy is not None:
        ie = _resolve_column(energy, names, path, "energy")
        blocks = _blocks(table[:, ie])
        if blocks is None:
            raise FileFormatError(
                f"{path}: column {names[ie]!r} (energy={energy!r}) is not monotonic; expected "
                "increasing (or decreasing) energies, optionally in repeated scan blocks"
            )
    else:
        named = [k for k, (b, _) in enumerate(bases) if _ENERGY_RE.match(b)]
        order = named + [k for k in range(ncol) if k not in named]
        ie, blocks = -1, None
        for k in order:
            nonfinite = ~np.isfinite(table[:, k])
            if k in named and nonfinite.any():
                raise DataError(f"{path}: NaN/inf energy at "
                                f"{_lines_list([line_no[r] for r in np.nonzero(nonfinite)[0]], path)}")
            blocks = _blocks(table[:, k])
            if blocks is not None:
                ie = k
                break
            if k in named:
                raise FileFormatError(
                    f"{path}: energy column {names[k]!r} is not monotonic"
                    f"{_where_not_increasing(table[:, k], line_no)}; expected increasing "
                    "energies (pass energy= to choose another column)"
                )
        if blocks is None:
            raise FileFormatError(
                f"{path}: no energy axis: no column is monotonic (columns "
                f"{', '.join(repr(n) for n in names)}); expected an energy column in eV or keV"
            )
    e_all = table[:, ie]
    _check_scan_breaks(e_all, blocks, line_no, path, names[ie])
    e_unit = units[ie]
    if e_unit and e_unit not in ("ev", "kev"):
        raise FileFormatError(f"{path}: energy column {names[ie]!r} is in {e_unit!r}, not an "
                              "energy unit; expected eV or keV")
    if e_unit in ("kev",) or bases[ie][0].endswith("kev"):
        factor, e_from = 1e3, "keV"
    elif e_unit in ("ev",) or bases[ie][0].endswith("ev"):
        factor, e_from = 1.0, "eV"
    elif np.nanmax(np.abs(e_all)) < 50.0:
        factor, e_from = 1e3, "keV"  # no edge of interest lies below 50 eV
    else:
        factor, e_from = 1.0, "eV"
    e_all = e_all * factor

    # absorption column(s)
    rest = [k for k in range(ncol) if k != ie]
    mu_cols: list[int] = []
    source = "column"
    derived = None
    if mu is not None:
        specs = [mu] if isinstance(mu, (str, int, np.integer)) else list(mu)
        if not specs:
            raise MMSpecError(f"{path}: mu={mu!r}: expected a column name/index or a list of them")
        mu_cols = [_resolve_column(sp, names, path, "mu") for sp in specs]
        if ie in mu_cols:
            raise MMSpecError(f"{path}: mu={mu!r} selects the energy column {names[ie]!r}")
    else:
        b = {k: bases[k][0] for k in rest}
        mus = [k for k in rest if _MU_RE.match(b[k]) and "ref" not in b[k]]
        generic = [k for k in mus if b[k] not in _MU_MODE]
        modes = sorted((k for k in mus if b[k] in _MU_MODE), key=lambda k: _MU_MODE[b[k]])
        i0 = next((k for k in rest if b[k] in _I0), None)
        itr = next((k for k in rest if b[k] in _IT), None)
        iy = next((k for k in rest if b[k] in _IYIELD), None)
        if generic:
            mu_cols = generic
        elif modes:
            mu_cols = modes[:1]
        elif any(b[k] in _NORM for k in rest):
            mu_cols = [next(k for k in rest if b[k] in _NORM)]
        elif any(b[k] in _FLAT for k in rest):
            mu_cols = [next(k for k in rest if b[k] in _FLAT)]
        elif i0 is not None and itr is not None:
            bad = np.nonzero(~((table[:, i0] > 0) & (table[:, itr] > 0)))[0]
            if bad.size:
                raise DataError(
                    f"{path}: cannot form mu = ln(I0/It): non-positive or NaN {names[i0]!r}/"
                    f"{names[itr]!r} at {_lines_list([line_no[r] for r in bad], path)}"
                )
            derived = np.log(table[:, i0] / table[:, itr])
            source = f"ln({names[i0]}/{names[itr]})"
            mu_cols = [itr]
        elif i0 is not None and iy is not None:
            bad = np.nonzero(~(np.abs(table[:, i0]) > 0))[0]
            if bad.size:
                raise DataError(
                    f"{path}: cannot form mu = {names[iy]}/{names[i0]}: zero or NaN "
                    f"{names[i0]!r} at {_lines_list([line_no[r] for r in bad], path)}"
                )
            derived = table[:, iy] / table[:, i0]
            source = f"{names[iy]}/{names[i0]}"
            mu_cols = [iy]
        elif len(rest) == 1:
            mu_cols = rest
        else:
            raise FileFormatError(
                f"{path}: cannot tell which column is the absorption among "
                f"{', '.join(repr(names[k]) for k in rest)}"
                f"{'' if has_header else ' (no header line)'}; expected a column named mu, xmu, "
                "norm, flat, or I0 with It/If; pass mu= to choose"
            )

    series = [derived] if derived is not None else [table[:, k] for k in mu_cols]
    labels = [source] if derived is not None else [names[k] for k in mu_cols]
    for lab, y in zip(labels, series, strict=True):
        bad = np.nonzero(~np.isfinite(y))[0]
        if bad.size:
            raise DataError(
                f"{path}: NaN/inf in absorption column {lab!r} at "
                f"{_lines_list([line_no[r] for r in bad], path)}; expected finite values"
            )

    # assemble (block x column) scans on one energy grid
    scans, scan_labels, grids = [], [], []
    for bi, blk in enumerate(blocks):
        eb = e_all[blk]
        flip = eb[-1] < eb[0]
        for lab, y in zip(labels, series, strict=True):
            yb = y[blk]
            scans.append(yb[::-1] if flip else yb)
            grids.append(eb[::-1] if flip else eb)
            scan_labels.append(lab if len(blocks) == 1 else f"{lab} #{bi}")
    grid = grids[0]
    same = all(g.size == grid.size and np.allclose(g, grid, rtol=0, atol=1e-6 * max(1.0, abs(grid[-1])))
               for g in grids)
    if not same:
        lo = max(g[0] for g in grids)
        hi = min(g[-1] for g in grids)
        keep = (grid >= lo) & (grid <= hi)
        if keep.sum() < 2:
            raise FileFormatError(f"{path}: the scans share no energy range; expected repeated "
                                  "scans over the same energies")
        warnings.warn(
            f"{path.name}: scans have different energy points; interpolated onto the first "
            f"scan's grid over {lo:g}-{hi:g} eV",
            stacklevel=3,
        )
        grid = grid[keep]
        scans = [np.interp(grid, g, y) for g, y in zip(grids, scans, strict=True)]
    coords: dict[str, Any] = {
        "energy": xr.Variable("energy", np.asarray(grid, dtype=np.float64),
                              attrs={"units": "eV", "long_name": "Photon energy"})
    }
    if len(scans) == 1:
        data = np.asarray(scans[0], dtype=np.float64)
        dims: tuple[str, ...] = ("energy",)
    else:
        data = np.vstack(scans).astype(np.float64)
        dims = ("scan", "energy")
        coords["scan"] = np.arange(len(scans))
        coords["scan_label"] = ("scan", np.asarray(scan_labels, dtype=str))

    out: dict[str, Any] = {"signal_type": "XAS"}
    out["title"] = attrs.pop("title", None) or path.stem
    out["source_file"] = str(path)
    out["energy_column"] = names[ie]
    if e_from != "eV":
        out["energy_units_in_file"] = e_from
    out["mu_column"] = ", ".join(labels) if derived is None else source
    out["mu_source"] = "column" if derived is None else source
    if derived is None and all(bases[k][0] in _NORM | _FLAT for k in mu_cols):
        # a normalised column (Athena's norm/flat ...): extract_edges uses it as
        # it is, without a pre-edge fit (extract.normalized_input)
        out["normalization"] = "edge_step"
        out["normalization_source"] = f"column {', '.join(repr(names[k]) for k in mu_cols)}"
    step = float(np.median(np.diff(grid))) if grid.size > 1 else None
    _set(out, "dispersion_eV", step)
    out.update(attrs)
    out["history"] = []
    return xr.DataArray(data, dims=dims, coords=coords, attrs=out, name="mu")


# --------------------------------------------------------------------------
# writing results


def _attr_safe(value: Any) -> Any:
    """netCDF/Zarr-storable form of an attribute: nested values as JSON text."""
    import json

    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value)
    ):
        return json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return ""
    return value


def _same_file(a: Path, b: Path) -> bool:
    """Same path, or the same file through a symlink or hard link (same inode)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output(path: str | Path, *, overwrite: bool = False, inputs=(),
                 what: str = "path", folder: bool = False) -> Path:
    """Refuse an output path that would destroy a user's data.

    ``path`` must not be one of ``inputs`` (same path, symlink or hard link),
    its folder must exist and be writable, and something already there (a
    file, or a folder that is not empty) is replaced only with
    ``overwrite=True``.  ``what`` names the argument in messages; ``folder``:
    the output is a folder (a Zarr store), else a file, and a folder at
    ``path`` is never replaced by a file.
    """
    path = Path(path).expanduser()
    for src in inputs:
        if src and _same_file(path, Path(src)):
            raise FileFormatError(f"{what} {path}: is the file these data were read from; "
                                  "expected a new file name (input files are never modified)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise MMSpecError(f"{what} {path}: folder {str(parent)!r} does not exist; expected "
                          "an existing folder (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MMSpecError(f"{what} {path}: folder {str(parent)!r} is not writable")
    if not folder and path.is_dir():
        raise MMSpecError(f"{what} {path}: is a folder; expected the name of a file to write")
    if path.is_symlink() or path.exists():
        empty_dir = path.is_dir() and not path.is_symlink() and not any(path.iterdir())
        if not empty_dir and not overwrite:
            kind = "a folder that is not empty" if path.is_dir() else "a file"
            raise MMSpecError(f"{what} {path}: already exists ({kind}); choose a new name or "
                              "pass overwrite=True (--overwrite) to replace it")
    return path


def _temporary(path: Path, kind: str = "tmp") -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{os.urandom(4).hex()}"


def replace_with(tmp: Path, path: Path) -> None:
    """Put the finished ``tmp`` (file or folder) in place of ``path``."""
    import shutil

    if tmp.is_dir():
        old = None
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            old = _temporary(path, "old")
            os.rename(path, old)
        os.rename(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)


def write_atomic(path: Path, writer) -> Path:
    """Call ``writer(tmp)`` on a temporary name beside ``path``, then rename
    it to ``path``: a reader never sees a half-written output, and the old
    content stays if writing fails."""
    import shutil

    tmp = _temporary(path)
    try:
        writer(tmp)
        replace_with(tmp, path)
    except OSError as err:
        raise MMSpecError(f"{path}: could not be written ({type(err).__name__}: {err})") \
            from err
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return path


def save(obj: xr.DataArray | xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a result (maps, spectra, edges) to netCDF (``.nc``) or Zarr (``.zarr``).

    Nested attributes (the processing history, calibration details) are
    stored as JSON text so that every step stays recorded in the file. The
    result is written under a temporary name and renamed when complete.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        What to write.
    path : str or pathlib.Path
        ``.nc`` or ``.zarr``, in an existing folder.
    overwrite : bool
        Replace an existing file (or a non-empty folder) at ``path``; by
        default that is refused. The file the data were read from (same
        path, symlink or hard link) is never replaced.

    Raises
    ------
    FileFormatError
        Unknown extension, or ``path`` is the file the data were read from.
    MMSpecError
        ``path`` exists (without ``overwrite``), its folder is missing or not
        writable, or writing failed.
    """
    if not isinstance(path, (str, Path)):
        raise MMSpecError(f"path={path!r}: expected a file path (str or pathlib.Path)")
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in (".nc", ".zarr"):
        raise FileFormatError(f"{path}: cannot write {ext or 'files without extension'!r}; "
                              "expected .nc (netCDF) or .zarr")
    src = {str(v.attrs.get("source_file"))
           for v in ([obj] if isinstance(obj, xr.DataArray) else [obj, *obj.data_vars.values()])
           if v.attrs.get("source_file")}
    check_output(path, overwrite=overwrite, inputs=sorted(src), what="save:",
                 folder=ext == ".zarr")
    out = obj.copy()
    out.attrs = {k: _attr_safe(v) for k, v in obj.attrs.items()}
    variables = out.variables if isinstance(out, xr.Dataset) else out.coords.variables
    for var in variables.values():
        var.attrs = {k: _attr_safe(v) for k, v in var.attrs.items()}
    if isinstance(out, xr.DataArray):
        attrs = dict(out.attrs)
        out = out.to_dataset(name=out.name or "data")
        out.attrs = attrs
    if ext == ".nc":
        return write_atomic(path, lambda tmp: out.to_netcdf(tmp, engine="h5netcdf"))
    return write_atomic(path, lambda tmp: out.to_zarr(tmp, mode="w"))
