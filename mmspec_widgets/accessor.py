"""``da.mmspec.<step>(...)``: a thin xarray face over the plain functions.

Every method calls the function of the same name with the DataArray as its
first argument; see that function for parameters, units and errors.

>>> import mmspec_widgets  # registers the accessor
>>> clean = si.mmspec.calibrate(zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5})
>>> edges = clean.mmspec.remove_spikes().mmspec.extract_edges(["O_K", "Mn_L23"])
"""

from __future__ import annotations

import xarray as xr

__all__ = ["MMSpecAccessor", "MMSpecDatasetAccessor"]


@xr.register_dataarray_accessor("mmspec")
class MMSpecAccessor:
    """Processing steps of :mod:`mmspec_widgets` as methods of a DataArray."""

    def __init__(self, da: xr.DataArray):
        self._da = da

    # calibration ---------------------------------------------------------
    def calibrate(self, zlp=None, references=None, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.calibrate.calibrate`."""
        from .calibrate import calibrate

        return calibrate(self._da, zlp=zlp, references=references, **kw)

    def align_zero_loss(self, zlp=None, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.calibrate.align_zero_loss`."""
        from .calibrate import align_zero_loss

        return align_zero_loss(self._da, zlp, **kw)

    def zero_loss_positions(self, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.calibrate.zero_loss_positions` (on a zero-loss SI)."""
        from .calibrate import zero_loss_positions

        return zero_loss_positions(self._da, **kw)

    def locate_feature(self, feature: str, **kw) -> float:
        """:func:`mmspec_widgets.calibrate.locate_feature` (on one spectrum)."""
        from .calibrate import locate_feature

        return locate_feature(self._da, feature, **kw)

    def align_scans(self, reference=None, **kw):
        """:func:`mmspec_widgets.calibrate.align_scans` (on ``("scan", "energy")``)."""
        from .calibrate import align_scans

        return align_scans(self._da, reference, **kw)

    # background ----------------------------------------------------------
    def remove_spikes(self, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.background.remove_spikes`."""
        from .background import remove_spikes

        return remove_spikes(self._da, **kw)

    def mask_low_counts(self, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.background.mask_low_counts`."""
        from .background import mask_low_counts

        return mask_low_counts(self._da, **kw)

    def subtract_background(self, window, model="powerlaw", **kw):
        """:func:`mmspec_widgets.background.subtract_background`."""
        from .background import subtract_background

        return subtract_background(self._da, window=window, model=model, **kw)

    def fit_background(self, window, model="powerlaw", **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.background.fit_background`."""
        from .background import fit_background

        return fit_background(self._da, window, model, **kw)

    def normalize_xas(self, **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.background.normalize_xas`."""
        from .background import normalize_xas

        return normalize_xas(self._da, **kw)

    # extraction ----------------------------------------------------------
    def extract_edges(self, edges=("O_K", "Mn_L23", "Co_L23", "Ni_L23"), **kw) -> xr.Dataset:
        """:func:`mmspec_widgets.extract.extract_edges`."""
        from .extract import extract_edges

        return extract_edges(self._da, edges=edges, **kw)

    def normalize_edge(self, edge: str, method="post_edge", **kw) -> xr.DataArray:
        """:func:`mmspec_widgets.extract.normalize_edge`."""
        from .extract import normalize_edge

        return normalize_edge(self._da, edge, method, **kw)

    # interoperability ----------------------------------------------------
    def to_hyperspy(self):
        """:func:`mmspec_widgets.interop.to_hyperspy` (an exspy ``EELSSpectrum``)."""
        from .interop import to_hyperspy

        return to_hyperspy(self._da)

    @property
    def history(self) -> list:
        """Processing steps applied so far (``attrs["history"]``)."""
        return list(self._da.attrs.get("history", []))


@xr.register_dataset_accessor("mmspec")
class MMSpecDatasetAccessor:
    """``maps.mmspec.<method>()``: the same face for Datasets (maps, per-edge spectra)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def to_hyperspy(self):
        """:func:`mmspec_widgets.interop.to_hyperspy` (a ``Signal2D`` stack of the maps)."""
        from .interop import to_hyperspy

        return to_hyperspy(self._ds)

    def plot_maps(self, truth=None, **kw):
        """:func:`mmspec_widgets.plotting.plot_maps` (a matplotlib Figure)."""
        from .plotting import plot_maps

        return plot_maps(self._ds, truth, **kw)

    @property
    def history(self) -> list:
        """Processing steps applied so far (``attrs["history"]``)."""
        return list(self._ds.attrs.get("history", []))
