"""A stand-in model and a mapping run in a child process (killed by tests).

``python _map_child.py INPUT.npz OUT.zarr BY BX`` loads an SI and its
zero-loss SI written by :func:`write_inputs`, prints ``ready`` and maps them
into ``OUT.zarr`` with :class:`StandInModel`.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import xarray as xr


class StandInModel:
    """predict(ds) -> maps, a fixed function of the spectra; counts its calls."""

    model_id = "stand-in-safety"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def predict(self, ds: xr.Dataset) -> xr.Dataset:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("stopped on purpose")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            o = ds["O_K"].mean("energy_O_K").astype(float)
            ni = ds["Ni_L23"].sum("energy_Ni_L23", skipna=False).astype(float)
        out = xr.Dataset({"o_level": o, "ni_area": ni, "ood": ~(o > 0.3)})
        out.attrs = {"model_id": self.model_id, "edges": list(ds.data_vars), "history": []}
        return out


def write_inputs(path, si: xr.DataArray, zlp: xr.DataArray) -> None:
    np.savez(path, si=si.values, zlp=zlp.values, e_si=si["energy"].values,
             e_zlp=zlp["energy"].values, y=si["y"].values, x=si["x"].values)


def read_inputs(path) -> tuple[xr.DataArray, xr.DataArray]:
    f = np.load(path)

    def da(data, e):
        return xr.DataArray(data, dims=("y", "x", "energy"),
                            coords={"y": ("y", f["y"], {"units": "nm"}),
                                    "x": ("x", f["x"], {"units": "nm"}),
                                    "energy": ("energy", e, {"units": "eV"})},
                            attrs={"signal_type": "EELS", "history": []})

    return da(f["si"], f["e_si"]), da(f["zlp"], f["e_zlp"])


if __name__ == "__main__":
    from mmspec_widgets import pipeline as pl

    src, out, by, bx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    si, zlp = read_inputs(src)
    print("ready", flush=True)
    pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=(by, bx),
                          progress=False)
    print("done", flush=True)
