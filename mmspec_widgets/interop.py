"""The way back to HyperSpy: calibrated spectrum images and maps as HyperSpy signals.

:func:`to_hyperspy` turns

* a spectrum image ``(y, x, energy)`` (or a line ``(x, energy)``, or one
  spectrum ``(energy,)``) into an exspy ``EELSSpectrum`` (a HyperSpy
  ``Signal1D`` for other signal types) with the energy axis as calibrated
  here (eV), navigation axes in nm, the acquisition parameters in HyperSpy's
  metadata and the processing history under ``metadata.mmspec``;
* maps (``model.predict``'s Dataset, dims ``(y, x)``) into a stack of
  ``Signal2D``: one image per map variable along a navigation axis, the
  variable names, units and the history under ``metadata.mmspec``.

``signal.save("file.hspy")`` writes them; :func:`mmspec_widgets.io.load` of
that file returns the same labelled object (coordinates, values, attributes,
history) through :func:`from_hyperspy`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from .errors import DataError

__all__ = ["to_hyperspy", "from_hyperspy"]

_KEY = "mmspec"  # metadata node
_LONG_NAME = {"EELS": "Energy loss", "XAS": "Photon energy"}


def _json(obj: Any) -> str:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.dumps(obj, default=default)


def _attrs_of(obj) -> dict:
    attrs = dict(obj.attrs)
    hist = attrs.get("history", [])
    if isinstance(hist, str):  # serialised upstream (netCDF attrs)
        try:
            hist = json.loads(hist)
        except ValueError:
            hist = [hist]
    attrs["history"] = list(hist) if isinstance(hist, list | tuple) else []
    return attrs


def _axis(values: np.ndarray, name: str, units: str, navigate: bool) -> dict:
    values = np.asarray(values, dtype=float)
    if values.size > 1:
        step = np.diff(values)
        if np.allclose(step, step[0], rtol=1e-7, atol=0.0) and step[0] != 0:
            return {"name": name, "size": values.size, "offset": float(values[0]),
                    "scale": float((values[-1] - values[0]) / (values.size - 1)),
                    "units": units, "navigate": navigate}
        return {"name": name, "axis": values, "units": units, "navigate": navigate}
    return {"name": name, "size": values.size, "offset": float(values[0]) if values.size else 0.0,
            "scale": 1.0, "units": units, "navigate": navigate}


def _coord(obj, dim: str) -> tuple[np.ndarray, str]:
    if dim in obj.coords:
        c = obj.coords[dim]
        return np.asarray(c.values, dtype=float), str(c.attrs.get("units", ""))
    return np.arange(obj.sizes[dim], dtype=float), "px"


def _set_acquisition(md, attrs: dict) -> None:
    tem = "Acquisition_instrument.TEM"
    pairs = [("beam_energy_keV", f"{tem}.beam_energy"),
             ("convergence_angle_mrad", f"{tem}.convergence_angle"),
             ("collection_angle_mrad", f"{tem}.Detector.EELS.collection_angle"),
             ("dwell_time_s", f"{tem}.Detector.EELS.dwell_time"),
             ("microscope", f"{tem}.microscope"),
             ("acquisition_date", "General.date"),
             ("acquisition_time", "General.time")]
    for key, item in pairs:
        v = attrs.get(key)
        if v is not None and not isinstance(v, dict | list):
            md.set_item(item, v)


def _si_to_hyperspy(da: xr.DataArray):
    import hyperspy.api as hs

    if "energy" not in da.dims:
        raise DataError(f"to_hyperspy: expected a DataArray with an 'energy' dim, got {da.dims}")
    nav = [d for d in ("y", "x") if d in da.dims]
    extra = [d for d in da.dims if d not in nav and d != "energy"]
    if extra:
        raise DataError(f"to_hyperspy: unexpected dims {extra}; expected some of "
                        "('y', 'x', 'energy')")
    da = da.transpose(*nav, "energy")
    attrs = _attrs_of(da)
    signal_type = str(attrs.get("signal_type", "EELS"))
    energy, e_units = _coord(da, "energy")
    if energy.size > 1 and not np.all(np.diff(energy) > 0):
        raise DataError("to_hyperspy: the energy coordinate is not increasing")
    axes = []
    for d in nav:
        vals, units = _coord(da, d)
        axes.append(_axis(vals, d, units, True))
    axes.append(_axis(energy, _LONG_NAME.get(signal_type.upper(), "Energy"), e_units or "eV",
                      False))
    data = da.data  # numpy or dask
    lazy = not isinstance(data, np.ndarray)
    if signal_type.upper() == "EELS":
        from exspy.signals import EELSSpectrum, LazyEELSSpectrum

        cls = LazyEELSSpectrum if lazy else EELSSpectrum
        sig = cls(data, axes=axes)
    else:
        sig = hs.signals.Signal1D(data, axes=axes)
        if lazy:
            sig = sig.as_lazy()
        sig.set_signal_type(signal_type if signal_type != "spectrum" else "")
    md = sig.metadata
    md.set_item("General.title", str(attrs.get("title", da.name or "spectrum image")))
    if attrs.get("quantity"):
        md.set_item("Signal.quantity", str(attrs["quantity"]))
    _set_acquisition(md, attrs)
    md.set_item(f"{_KEY}.kind", "spectrum_image")
    md.set_item(f"{_KEY}.name", str(da.name) if da.name is not None else "")
    md.set_item(f"{_KEY}.history", _json(attrs["history"]))
    md.set_item(f"{_KEY}.attrs", _json({k: v for k, v in attrs.items() if k != "history"}))
    md.set_item(f"{_KEY}.coords", _json({d: dict(da.coords[d].attrs) for d in da.dims
                                        if d in da.coords}))
    return sig


def _maps_to_hyperspy(ds: xr.Dataset):
    import hyperspy.api as hs

    names = [str(n) for n, v in ds.data_vars.items() if set(v.dims) == {"y", "x"}]
    if not names:
        raise DataError("to_hyperspy: the Dataset holds no (y, x) map; expected the output of "
                        f"model.predict, got variables {list(ds.data_vars)}")
    skipped = [str(n) for n in ds.data_vars if str(n) not in names]
    stack = np.stack([np.asarray(ds[n].transpose("y", "x").values, dtype=float) for n in names])
    axes = [{"name": "map", "size": len(names), "offset": 0.0, "scale": 1.0, "units": "",
             "navigate": True}]
    for d in ("y", "x"):
        vals, units = _coord(ds, d)
        axes.append(_axis(vals, d, units, False))
    sig = hs.signals.Signal2D(stack, axes=axes)
    attrs = _attrs_of(ds)
    md = sig.metadata
    md.set_item("General.title", str(attrs.get("title", "mmspec maps")))
    md.set_item(f"{_KEY}.kind", "maps")
    md.set_item(f"{_KEY}.variables", _json(names))
    md.set_item(f"{_KEY}.dtypes", _json([str(ds[n].dtype) for n in names]))
    md.set_item(f"{_KEY}.variable_attrs", _json([dict(ds[n].attrs) for n in names]))
    md.set_item(f"{_KEY}.coords", _json({d: dict(ds.coords[d].attrs) for d in ("y", "x")
                                        if d in ds.coords}))
    md.set_item(f"{_KEY}.history", _json(attrs["history"]))
    md.set_item(f"{_KEY}.attrs", _json({k: v for k, v in attrs.items() if k != "history"}))
    if skipped:
        md.set_item(f"{_KEY}.skipped", _json(skipped))
    return sig


def to_hyperspy(obj: xr.DataArray | xr.Dataset):
    """A HyperSpy signal of a spectrum image or of maps, axes and history kept.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A spectrum image (dims ``("y", "x", "energy")``, ``("x", "energy")``
        or ``("energy",)``, energy in eV, ``x``/``y`` in nm), e.g. the output
        of :func:`mmspec_widgets.calibrate.calibrate`; or maps (a Dataset of
        ``(y, x)`` variables, e.g. ``model.predict``'s).

    Returns
    -------
    hyperspy signal
        For a spectrum image: an exspy ``EELSSpectrum`` (``LazyEELSSpectrum``
        when dask-backed; a ``Signal1D`` when ``attrs["signal_type"]`` is not
        EELS) with navigation axes ``x``, ``y`` and the energy axis as in
        ``obj``; beam energy, angles and dwell time in HyperSpy's metadata.
        For maps: a ``Signal2D`` stack, one image per variable along the
        navigation axis ``map`` (booleans and integers as floats), the
        variable names in ``metadata.mmspec.variables``. In both, the
        processing history is in ``metadata.mmspec.history`` (JSON text) and
        every other attribute in ``metadata.mmspec.attrs``.

    Raises
    ------
    DataError
        Dims other than those above, a decreasing energy axis, or a Dataset
        without any ``(y, x)`` variable.
    """
    if isinstance(obj, xr.Dataset):
        return _maps_to_hyperspy(obj)
    if isinstance(obj, xr.DataArray):
        return _si_to_hyperspy(obj)
    raise DataError(f"to_hyperspy: expected an xarray.DataArray or Dataset, got "
                    f"{type(obj).__name__}")


def _loads(text, default):
    if text is None:
        return default
    try:
        return json.loads(str(text))
    except ValueError:
        return default


def from_hyperspy(sig, da: xr.DataArray) -> xr.DataArray | xr.Dataset:
    """Restore what :func:`to_hyperspy` stored, on the DataArray ``io.load`` read.

    Parameters
    ----------
    sig : hyperspy signal
        The signal read from the file.
    da : xarray.DataArray
        :func:`mmspec_widgets.io.load`'s reading of ``sig`` (axes and values).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        ``da`` unchanged when ``sig`` was not written by :func:`to_hyperspy`;
        else the spectrum image with its attributes and history, or the maps
        as a Dataset (one variable per map, original dtypes and attributes).
        ``source_file`` names the file read.
    """
    md = sig.metadata
    if not md.has_item(f"{_KEY}.kind"):
        return da
    kind = md.get_item(f"{_KEY}.kind")
    attrs = _loads(md.get_item(f"{_KEY}.attrs", None), {})
    attrs["history"] = _loads(md.get_item(f"{_KEY}.history", None), [])
    source = da.attrs.get("source_file")
    coord_attrs = _loads(md.get_item(f"{_KEY}.coords", None), {})
    if kind == "maps":
        names = _loads(md.get_item(f"{_KEY}.variables"), [])
        dtypes = _loads(md.get_item(f"{_KEY}.dtypes", None), ["float64"] * len(names))
        var_attrs = _loads(md.get_item(f"{_KEY}.variable_attrs", None), [{}] * len(names))
        lead = [d for d in da.dims if d not in ("y", "x")]
        if len(lead) != 1 or da.sizes[lead[0]] != len(names):
            return da
        coords = {d: da.coords[d] for d in ("y", "x") if d in da.coords}
        data = {}
        for i, (n, dt, va) in enumerate(zip(names, dtypes, var_attrs, strict=True)):
            v = np.asarray(da.isel({lead[0]: i}).transpose("y", "x").values)
            if np.dtype(dt).kind == "b":
                v = v > 0.5
            elif np.dtype(dt).kind in "iu":
                v = np.rint(v).astype(dt)
            else:
                v = v.astype(dt)
            data[n] = xr.Variable(("y", "x"), v, va)
        out = xr.Dataset(data, coords=coords)
    else:
        out = da.copy()
        name = md.get_item(f"{_KEY}.name", "")
        out.name = name or da.name
    for d, ca in coord_attrs.items():
        if d in out.coords:
            out.coords[d].attrs = dict(ca)
    if source:
        attrs["source_file"] = source
    out.attrs = attrs
    return out
