"""Small synthetic labelled data for the widget tests (no files involved)."""

from __future__ import annotations

import numpy as np
import xarray as xr

EDGE_LINES = {  # onset (eV), white-line position (eV, = edges.FEATURES), relative strength
    "O": (528.0, 530.0, 1.0),
    "Mn": (639.0, 642.5, 1.6),
    "Co": (777.0, 780.0, 0.3),
    "Ni": (851.0, 853.5, 0.4),
}


def spectrum_model(energy: np.ndarray, amp: float = 1.0, r: float = 3.0,
                   a: float = 5e12) -> tuple[np.ndarray, np.ndarray]:
    """Power-law background and edge signal (counts) on ``energy`` (eV)."""
    background = a * energy ** (-r)
    signal = np.zeros_like(energy)
    for onset, peak, strength in EDGE_LINES.values():
        step = 1.0 / (1.0 + np.exp(-(energy - onset) / 1.0)) * np.exp(-(energy - onset).clip(0) / 150)
        line = np.exp(-0.5 * ((energy - peak) / 1.2) ** 2)
        signal += amp * strength * 2000.0 * (step + 1.5 * line)
    return background, signal


def synthetic_si(ny: int = 3, nx: int = 5, e0: float = 440.0, n: int = 2048,
                 step: float = 0.3, seed: int = 0, noise: bool = True,
                 true_axis=None) -> xr.DataArray:
    """EELS spectrum image with dims ("y", "x", "energy"), 2 nm pixels, eV axis.

    The edge amplitude grows along x so that pixels differ; the background is
    a power law ``A E^-3``.  ``true_axis(E_recorded, iy, ix)`` gives the true
    energy of each recorded channel (a miscalibrated spectrometer); default
    the recorded axis is right.
    """
    energy = e0 + step * np.arange(n)
    rng = np.random.default_rng(seed)
    data = np.empty((ny, nx, n))
    for iy in range(ny):
        for ix in range(nx):
            e_true = energy if true_axis is None else true_axis(energy, iy, ix)
            bg, sig = spectrum_model(e_true, amp=0.5 + ix / max(nx - 1, 1) + 0.1 * iy)
            data[iy, ix] = bg + sig
    if noise:
        data = rng.poisson(data).astype(float)
    return xr.DataArray(
        data,
        dims=("y", "x", "energy"),
        coords={
            "y": ("y", 2.0 * np.arange(ny), {"units": "nm"}),
            "x": ("x", 2.0 * np.arange(nx), {"units": "nm"}),
            "energy": ("energy", energy, {"units": "eV"}),
        },
        attrs={"signal_type": "EELS", "title": "synthetic SI", "history": []},
        name="counts",
    )


def synthetic_survey(n: int = 64, pixel: float = 1.0) -> xr.DataArray:
    """ADF-like survey image, dims ("y", "x") in nm."""
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.exp(-((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (0.15 * n * n)) * 1000.0
    return xr.DataArray(
        img, dims=("y", "x"),
        coords={"y": ("y", pixel * np.arange(n), {"units": "nm"}),
                "x": ("x", pixel * np.arange(n), {"units": "nm"})},
        attrs={"title": "ADF survey", "history": []},
    )


def synthetic_zlp(positions: np.ndarray, e0: float = -60.0, n: int = 2048,
                  step: float = 0.3) -> xr.DataArray:
    """Zero-loss SI: a Gaussian (FWHM 1 eV) at ``positions[iy, ix]`` eV plus a plasmon."""
    energy = e0 + step * np.arange(n)
    ny, nx = positions.shape
    data = np.empty((ny, nx, n))
    for iy in range(ny):
        for ix in range(nx):
            p = positions[iy, ix]
            data[iy, ix] = 1e5 * np.exp(-0.5 * ((energy - p) / 0.42) ** 2) + \
                2e3 * np.exp(-0.5 * ((energy - p - 22.0) / 6.0) ** 2) + 5.0
    return xr.DataArray(
        data, dims=("y", "x", "energy"),
        coords={"y": ("y", 2.0 * np.arange(ny), {"units": "nm"}),
                "x": ("x", 2.0 * np.arange(nx), {"units": "nm"}),
                "energy": ("energy", energy, {"units": "eV"})},
        attrs={"signal_type": "EELS", "title": "synthetic zero-loss SI", "history": []})
