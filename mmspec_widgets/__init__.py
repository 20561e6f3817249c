"""mmspec_widgets: local structure from fused core-level spectra.

Data flow, one module per arrow::

    file --io.load--> labelled SI --calibrate--> calibrated
         --background.remove_spikes / subtract_background--> background-free
         --extract.extract_edges--> per-edge grids (xarray.Dataset)
         --quantify.quantify--> + local composition from the edge jumps
         --learn (features, fusion, model)--> labelled maps

Public names are imported lazily so that ``import mmspec_widgets`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    # name: module
    "load": "io",
    "load_zlp_pair": "io",
    "save": "io",
    "calibrate": "calibrate",
    "DEFAULT_REFERENCES": "edges",
    "REFERENCE_CHOICES": "edges",
    "align_zero_loss": "calibrate",
    "align_scans": "calibrate",
    "remove_spikes": "background",
    "subtract_background": "background",
    "mask_low_counts": "background",
    "normalize_xas": "background",
    "extract_edges": "extract",
    "quantify": "quantify",
    "fit_k_factors": "quantify",
    "load_model": "learn",
    "to_hyperspy": "interop",
    "plot_maps": "plotting",
    "MMSpecError": "errors",
    "FileFormatError": "errors",
    "DataError": "errors",
}

_SUBMODULES = {"edges", "errors", "io", "calibrate", "background", "extract",
               "datasets", "simulate", "learn", "widgets", "cli", "paths", "accessor", "pipeline", "bench", "twin",
               "chain", "demo", "quantify", "interop", "plotting", "kernels", "reasons", "utils"}

__all__ = sorted(_LAZY) + ["__version__"]

# ``calibrate`` is both a submodule and its main function; bind the function
# now so that importing the submodule later cannot shadow it.
from . import accessor  # noqa: E402, F401  (registers da.mmspec)
from .calibrate import calibrate  # noqa: E402, F401
from .quantify import quantify  # noqa: E402, F401  (same: module and function)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mmspec_widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
