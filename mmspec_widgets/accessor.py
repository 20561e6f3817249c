"""``da.mmspec.<step>(...)``: a thin xarray face over the plain functions.

>>> import mmspec_widgets  # registers the accessor
>>> clean = si.mmspec.calibrate(zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5})
>>> edges = clean.mmspec.remove_spikes().mmspec.extract_edges(["O_K", "Mn_L23"])
"""

from __future__ import annotations

import xarray as xr

__all__ = ["MMSpecAccessor"]


@xr.register_dataarray_accessor("mmspec")
class MMSpecAccessor:
    """Processing steps of :mod:`mmspec_widgets` as methods of a DataArray."""

    def __init__(self, da: xr.DataArray):
        self._da = da

    def calibrate(self, zlp=None, references=None, **kw):
        from .calibrate import calibrate

        return calibrate(self._da, zlp=zlp, references=references, **kw)

    def align_zero_loss(self, zlp, **kw):
        from .calibrate import align_zero_loss

        return align_zero_loss(self._da, zlp, **kw)

    def remove_spikes(self, **kw):
        from .background import remove_spikes

        return remove_spikes(self._da, **kw)

    def mask_low_counts(self, **kw):
        from .background import mask_low_counts

        return mask_low_counts(self._da, **kw)

    def subtract_background(self, window, model="powerlaw", **kw):
        from .background import subtract_background

        return subtract_background(self._da, window=window, model=model, **kw)

    def normalize_xas(self, **kw):
        from .background import normalize_xas

        return normalize_xas(self._da, **kw)

    def extract_edges(self, edges=("O_K", "Mn_L23", "Co_L23", "Ni_L23"), **kw):
        from .extract import extract_edges

        return extract_edges(self._da, edges=edges, **kw)

    @property
    def history(self) -> list:
        """Processing steps applied so far (``attrs["history"]``)."""
        return list(self._da.attrs.get("history", []))
