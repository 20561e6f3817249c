"""Run the tutorial notebooks as tests (nbval, lax mode) in the normal test command.

``pytest`` (testpaths include ``notebooks``) collects every ``*.ipynb`` here
and runs it top to bottom in a fresh kernel; a cell fails the test if it
raises.  Outputs are not compared (``--nbval-lax`` behaviour), except in
cells marked ``# NBVAL_CHECK_OUTPUT``.  Passing ``--nbval`` or
``--nbval-lax`` explicitly hands collection back to nbval itself.

The kernels see the repository on ``PYTHONPATH`` (so the notebooks import
the working copy even when it is not installed) and the offline data mirror
``MMSPEC_DATA_MIRROR`` (``../shared/data`` next to the repository, when
present), like the unit tests.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_SHARED = Path(os.environ.get("MMSPEC_SHARED_DATA", REPO.parent / "shared" / "data"))

if _SHARED.is_dir():
    os.environ.setdefault("MMSPEC_DATA_MIRROR", str(_SHARED))
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if str(REPO) not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *_paths])
# Widgets print nothing useful to a headless kernel; keep plots from opening windows.
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if file_path.suffix != ".ipynb" or getattr(opt, "nbval", False) or \
            getattr(opt, "nbval_lax", False):
        return None
    from nbval.plugin import IPyNbFile

    nb_file = IPyNbFile.from_parent(parent, path=file_path)
    nb_file.compare_outputs = False  # lax: only errors fail, unless a cell asks
    return nb_file
