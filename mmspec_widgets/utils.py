"""Small pure-Python helpers shared across the package (no numerics, no
xarray): :func:`jsonable` turns parameters into JSON-ready values for the
``history`` attribute and plan signatures."""

from __future__ import annotations

import numpy as np


def jsonable(v):
    """``v`` with numpy scalars and arrays turned into Python numbers and
    lists, tuples into lists and dict keys into strings (recursively)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
