"""Small synthetic spectra with known answers, for unit tests."""

from __future__ import annotations

import numpy as np
import xarray as xr


def eels_si(ny=3, nx=4, e0=440.0, de=0.3, n=2048, A=4e12, r=3.0, seed=0, noise=True,
            edge_at=640.0, edge_height=2000.0, dtype=np.float32):
    """Power-law background + an arctan edge with a white line, Poisson noise."""
    rng = np.random.default_rng(seed)
    e = e0 + de * np.arange(n)
    bkg = A * e ** -r
    edge = edge_height / (1.0 + np.exp(-np.clip((e - edge_at) / 0.5, -60, 60)))
    edge += 3 * edge_height * np.exp(-0.5 * ((e - edge_at - 2) / 0.8) ** 2)
    lam = np.broadcast_to(bkg + edge, (ny, nx, n))
    data = rng.poisson(lam).astype(dtype) if noise else np.array(lam, dtype=dtype)
    return xr.DataArray(
        data, dims=("y", "x", "energy"),
        coords={"y": ("y", np.arange(ny) * 2.0, {"units": "nm"}),
                "x": ("x", np.arange(nx) * 2.0, {"units": "nm"}),
                "energy": ("energy", e, {"units": "eV"})},
        attrs={"signal_type": "EELS", "history": []},
    ), bkg, edge
