"""What the block chain knows about a whole spectrum image, and its inputs.

:class:`ChainPlan` holds the global quantities every pixel block needs (the
zero-loss median, the calibration, the vacuum threshold, the edges and their
windows); this module also holds the chain's defaults, the checks of its
inputs, the tiling of the pixels into blocks and the reading of one block.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

from ..background import check_spectra
from ..edges import DEFAULT_REFERENCES, EDGE_ORDER, get_edge
from ..errors import DataError, MMSpecError
from ..kernels import numba_available
from ..utils import jsonable

DEFAULT_EDGES = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")
#: calibration references of the standard chain (those of ``mmspec demo``)
REFERENCES = dict(DEFAULT_REFERENCES)
#: fraction of the 90th percentile of pixel totals below which a pixel is
#: vacuum (as :func:`mmspec_widgets.background.mask_low_counts`)
MASK_FRACTION = 0.05
_ENGINES = ("auto", "numba", "numpy")


@dataclass
class ChainPlan:
    """What the per-block chain needs to know about the whole SI.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx, n_energy)`` of the SI.
    dims : tuple of str
        The two navigation dims (``("y", "x")``).
    energy : list of float
        Recorded energy axis (eV).
    dtype : str
        Working dtype (``"float32"`` for float32 counts, else ``"float64"``).
    zlp_median_eV : float or None
        Median zero-loss position (eV); every pixel is shifted onto
        ``energy - zlp_median_eV``. ``None``: no zero-loss alignment.
    zlp_spread_eV, zlp_std_eV : float
        Peak-to-peak spread and standard deviation of the zero-loss
        positions (eV).
    calibration : dict or None
        ``offset_eV``, ``scale`` and ``references`` of
        :func:`mmspec_widgets.calibrate.fit_calibration`; ``None``: none.
    edges : list of str
        Edges extracted, in table order.
    windows : dict
        Edge -> pre-edge fit window ``[low, high]`` (eV, calibrated axis).
    spike_threshold, spike_width : float, int
        Parameters of :func:`mmspec_widgets.background.remove_spikes`.
    mask_threshold : float or None
        Pixels whose despiked total (counts) is below this are vacuum (NaN);
        ``MASK_FRACTION`` times the 90th percentile of the sampled totals.
        ``None`` until known.
    sample_pixels : int
        Pixels used for the calibration and the mask threshold.
    k_factors : dict or None
        Edge -> k-factor (:func:`mmspec_widgets.quantify.fit_k_factors`): the
        model also reads each pixel's composition from the edge jumps.
    background_error : dict
        Edge -> :func:`~mmspec_widgets.kernels.background_model_error` of the
        sampled pixels (its ``scatter`` enters every jump's std).
    """

    shape: tuple
    dims: tuple
    energy: list
    dtype: str
    zlp_median_eV: float | None = None
    zlp_spread_eV: float = 0.0
    zlp_std_eV: float = 0.0
    calibration: dict | None = None
    edges: list = field(default_factory=lambda: list(DEFAULT_EDGES))
    windows: dict = field(default_factory=dict)
    spike_threshold: float = 8.0
    spike_width: int = 2
    mask_threshold: float | None = None
    sample_pixels: int = 0
    k_factors: dict | None = None
    background_error: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- derived
    @property
    def aligned_energy(self) -> np.ndarray:
        """Energy axis after zero-loss alignment (eV)."""
        e = np.asarray(self.energy, float)
        return e if self.zlp_median_eV is None else e - self.zlp_median_eV

    @property
    def calibrated_energy(self) -> np.ndarray:
        """Energy axis after alignment and calibration (eV), as the plain chain."""
        e = self.aligned_energy
        if self.calibration is None:
            return e
        return self.calibration["offset_eV"] + self.calibration["scale"] * e

    @property
    def channel_step(self) -> float:
        return float(np.median(np.diff(np.asarray(self.energy, float))))

    def to_json(self) -> str:
        return json.dumps(jsonable(asdict(self)))

    @classmethod
    def from_json(cls, text: str) -> ChainPlan:
        d = json.loads(text)
        d["shape"] = tuple(d["shape"])
        d["dims"] = tuple(d["dims"])
        return cls(**d)

    def signature(self) -> str:
        """Hash of what determines the per-pixel results."""
        keys = {k: v for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(jsonable(keys), sort_keys=True).encode()).hexdigest()[:16]


def check_si(si, name: str = "si", finite: bool = True) -> xr.DataArray:
    si = check_spectra(si, name, finite=False)
    if si.ndim != 3:
        raise DataError(f"{name}: expected a spectrum image with dims (y, x, energy), got dims "
                        f"{si.dims}")
    if finite:
        check_spectra(si, name)  # the values, once the shape is known to be right
    return si


#: fractions of negative values in a core-loss SI above which it is refused
#: (DataError) or warned about (raw counts have none, or a few from the noise
#: of a dark reference)
NEGATIVE_REFUSE, NEGATIVE_WARN = 0.5, 0.01


def check_counts(si: xr.DataArray, name: str = "si") -> None:
    """Counts must be (mostly) non-negative: power-law backgrounds fitted on
    negative counts give meaningless edges (numpy-backed SIs only)."""
    if not isinstance(si.data, np.ndarray) or si.size == 0:
        return
    frac = float(np.count_nonzero(si.data < 0)) / si.size
    msg = (f"{name}: {100 * frac:.1f} % of the values are negative; expected the raw "
           "core-loss SI in counts (not background-subtracted or offset)")
    if frac > NEGATIVE_REFUSE:
        raise DataError(msg)
    if frac > NEGATIVE_WARN:
        warnings.warn(msg + "; the maps of pixels with negative counts are unreliable",
                      stacklevel=3)


def edge_names(edges) -> list[str]:
    if isinstance(edges, str):
        edges = [edges]
    if edges is None or not hasattr(edges, "__iter__"):
        raise MMSpecError(f"edges={edges!r}: expected a list of edge names, e.g. "
                          f"{list(DEFAULT_EDGES)}")
    names = [get_edge(e).name for e in edges]
    if not names:
        raise MMSpecError("edges: expected at least one edge name")
    return sorted(set(names), key=EDGE_ORDER.index)


def pixel_blocks(shape2: tuple[int, int], block: tuple[int, int]):
    """``(iy, ix, y slice, x slice)`` of every block of ``block`` pixels of a
    ``shape2`` navigation grid, row by row (edge blocks are smaller)."""
    by, bx = block
    ny, nx = shape2
    return [(iy, ix, slice(iy * by, min((iy + 1) * by, ny)), slice(ix * bx, min((ix + 1) * bx, nx)))
            for iy in range(-(-ny // by)) for ix in range(-(-nx // bx))]


def check_block(block) -> tuple[int, int]:
    """``block`` as ``(rows, columns)`` of positive ints, or MMSpecError."""
    try:
        by, bx = (int(b) for b in block)
    except (TypeError, ValueError):
        raise MMSpecError(f"block={block!r}: expected (rows, columns) of pixels, e.g. (64, 64)") \
            from None
    if by < 1 or bx < 1:
        raise MMSpecError(f"block={block!r}: expected positive sizes")
    return by, bx


def load_block(si: xr.DataArray, ys: slice, xs: slice, wd) -> np.ndarray:
    """The counts of one pixel block (read if dask-backed), C-contiguous in ``wd``."""
    data = si.data[ys, xs]
    if not isinstance(data, np.ndarray):
        data = data.compute() if hasattr(data, "compute") else np.asarray(data)
    return np.ascontiguousarray(data, dtype=wd)


def low_count_threshold(totals: np.ndarray) -> float | None:
    """``MASK_FRACTION`` times the 90th percentile of the positive, finite
    ``totals``; ``None`` when there are none."""
    ok = np.isfinite(totals) & (totals > 0)
    if not ok.any():
        return None
    return float(MASK_FRACTION * np.percentile(totals[ok], 90))


def check_engine(engine: str) -> str:
    """``"numba"`` or ``"numpy"``: the kernel ``engine`` names (``"auto"``:
    numba when installed)."""
    if engine not in _ENGINES:
        raise MMSpecError(f"engine={engine!r}: expected one of {_ENGINES}")
    if engine == "auto":
        return "numba" if numba_available() else "numpy"
    if engine == "numba" and not numba_available():  # pragma: no cover
        raise MMSpecError("engine='numba' needs the package numba (pip install numba)")
    return engine


def progress_bar(progress: bool, total: int, desc: str, initial: int = 0):
    """A tqdm bar over pixel blocks (disabled unless ``progress``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, unit="block")
