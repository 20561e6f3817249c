"""Fast, block-wise and out-of-core mapping of spectrum images: the public
names of :mod:`mmspec_widgets.chain` (whose docstring describes the split of
the standard chain into a plan fitted once and a per-pixel part), re-exported.

:func:`fit_plan` computes the global quantities once into a
:class:`ChainPlan`; :func:`extract_block` runs the per-pixel part on any block
of pixels; :func:`run_chain_fast` is the in-memory chain (same result as
:func:`mmspec_widgets.demo.run_chain`), and :func:`map_spectrum_image` streams
an SI of any size (numpy- or dask-backed) block by block into a Zarr store:
resumable, bounded memory, optionally on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

from .chain.fit import background_sample, fit_plan
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
    "background_sample",
    "extract_block",
    "run_chain_fast",
    "map_spectrum_image",
    "synthetic_si",
]
