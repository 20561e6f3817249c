"""Fast, block-wise and out-of-core mapping of spectrum images.

The standard chain (:func:`mmspec_widgets.demo.run_chain`) is::

    calibrate (zero-loss alignment + reference features) -> remove_spikes
    -> extract_edges (power-law background per edge, standard grids,
    post-edge normalisation, low-count mask) -> model.predict

Two of its steps need the whole spectrum image: the median zero-loss position
(the common axis every pixel is shifted onto) and the calibration, fitted on
the spectrum summed over the usable pixels. Everything else is per pixel.
The chain is therefore split in two:

1. :func:`fit_plan` computes the global quantities once (zero-loss positions of
   every pixel, their median, the calibration from the summed spectrum of all
   pixels or of a sample of pixel blocks, the low-count threshold) into a
   :class:`ChainPlan`;
2. :func:`extract_block` runs the per-pixel part on any block of pixels:
   zero-loss shift, spike removal, per-edge background, resampling onto the
   edge grids and normalisation, fused into one pass per spectrum (a compiled
   kernel, threads over pixels), with exactly the arithmetic of the plain
   functions (the tests compare them).

:func:`run_chain_fast` is the in-memory chain built from these pieces (same
result as ``run_chain``), and :func:`map_spectrum_image` streams an SI of any
size (numpy- or dask-backed) block by block into a Zarr store: resumable,
bounded memory, optionally on a ``dask.distributed`` cluster.

The code lives in the subpackage :mod:`mmspec_widgets.chain`, one module per
concern; this module re-exports its public names.
"""

from __future__ import annotations

from .chain.fit import fit_plan
from .chain.inmemory import run_chain_fast
from .chain.plan import DEFAULT_EDGES, REFERENCES, ChainPlan
from .chain.plan import MASK_FRACTION as MASK_FRACTION  # public constants, not in __all__
from .chain.plan import NEGATIVE_REFUSE as NEGATIVE_REFUSE
from .chain.plan import NEGATIVE_WARN as NEGATIVE_WARN
from .chain.rows import extract_block
from .chain.store import map_spectrum_image
from .chain.synthetic import synthetic_si

__all__ = [
    "DEFAULT_EDGES",
    "REFERENCES",
    "ChainPlan",
    "fit_plan",
    "extract_block",
    "run_chain_fast",
    "map_spectrum_image",
    "synthetic_si",
]
