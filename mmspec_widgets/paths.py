"""Where the project's own data live (simulated set, default model, digital twin)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir"]


def data_dir() -> Path:
    """Folder holding the data this project produced.

    ``$MMSPEC_DATA_DIR`` if set, else ``data/`` beside the package (the
    repository layout used by ``pip install -e .``).
    """
    env = os.environ.get("MMSPEC_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"
