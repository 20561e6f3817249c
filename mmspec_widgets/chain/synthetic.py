"""Synthetic spectrum images of any size (benchmarks and tests):
:func:`synthetic_si`."""

from __future__ import annotations

import numpy as np
import xarray as xr


def synthetic_si(shape: tuple[int, int] = (256, 256), *, twin=None, chunks=None, seed: int = 0,
                 dtype=np.float32) -> tuple[xr.DataArray, xr.DataArray]:
    """A large NMC-like SI and its zero-loss SI, tiled from the digital twin.

    Pixel ``(i, j)`` takes the twin's pixel ``(i mod ny, j mod nx)`` (its
    counts, with their noise, spikes and energy-axis error) plus fresh
    Gaussian noise of Poisson size (``sqrt(counts)``), drawn from a fixed
    table at a random offset per pixel, which is cheap enough to generate an
    8 GiB SI lazily.

    Parameters
    ----------
    shape : (int, int)
        Pixels ``(ny, nx)``.
    twin : DigitalTwin, optional
        Default: :func:`mmspec_widgets.twin.load_digital_twin`.
    chunks : (int, int), optional
        Pixel chunks of a dask-backed result (generated block by block on
        demand); default: numpy arrays in memory.
    seed : int
        Noise seed (each chunk derives its own from it and its position).
    dtype : numpy dtype
        Data type of the counts.

    Returns
    -------
    (si, zlp) : (xarray.DataArray, xarray.DataArray)
        ``(y, x, energy)``, coordinates in nm and eV, attrs of the twin.
    """
    if twin is None:
        from ..twin import load_digital_twin

        twin = load_digital_twin()
    ny, nx = (int(s) for s in shape)
    base_si = np.asarray(twin.si.values, dtype)
    base_z = np.asarray(twin.zlp.values, dtype)
    table = np.random.default_rng(12345).standard_normal(1 << 20).astype(dtype)

    def make(base, ys, xs, key):
        ty, tx = base.shape[:2]
        n = base.shape[-1]
        ix = np.arange(xs.start, xs.stop) % tx
        out = np.empty((ys.stop - ys.start, ix.size, n), dtype)
        rng = np.random.default_rng([seed, key, ys.start, xs.start])
        offs = rng.integers(0, table.size - n, size=out.shape[:2])
        ramp = np.arange(n)
        step = max(1, (1 << 21) // max(ix.size * n, 1))  # ~16 MB of indices at a time
        for r0 in range(0, out.shape[0], step):
            r1 = min(r0 + step, out.shape[0])
            iy = np.arange(ys.start + r0, ys.start + r1) % ty
            mean = base[iy[:, None], ix[None, :]]
            noise = table[offs[r0:r1, :, None] + ramp]
            np.multiply(np.sqrt(np.clip(mean, 0, None)), noise, out=noise)
            np.add(mean, noise, out=out[r0:r1])
        np.clip(out, 0, None, out=out)
        return out

    def build(base, key):
        if chunks is None:
            return make(base, slice(0, ny), slice(0, nx), key)
        import dask.array as dsa

        cy, cx = chunks

        def gen(block_info=None):
            (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
            return make(base, slice(y0, y1), slice(x0, x1), key)

        return dsa.map_blocks(gen, dtype=dtype, chunks=((cy,) * (ny // cy) + ((ny % cy,) if ny % cy else ()),
                                                         (cx,) * (nx // cx) + ((nx % cx,) if nx % cx else ()),
                                                         (base.shape[-1],)))

    def wrap(src, data, key):
        step_y = float(src["y"][1] - src["y"][0]) if src.sizes["y"] > 1 else 1.0
        step_x = float(src["x"][1] - src["x"][0]) if src.sizes["x"] > 1 else 1.0
        return xr.DataArray(data, dims=("y", "x", "energy"), coords={
            "y": ("y", np.arange(ny) * step_y, dict(src["y"].attrs)),
            "x": ("x", np.arange(nx) * step_x, dict(src["x"].attrs)),
            "energy": ("energy", np.asarray(src["energy"].values, float),
                       dict(src["energy"].attrs))},
            attrs={**{k: v for k, v in src.attrs.items() if k != "history"},
                   "title": f"{src.attrs.get('title', 'SI')} tiled to {ny}x{nx}",
                   "history": [{"step": "synthetic_si", "params": {"shape": [ny, nx],
                                                                   "seed": seed}}]},
            name=key)

    return (wrap(twin.si, build(base_si, 0), "si"), wrap(twin.zlp, build(base_z, 1), "zlp"))
