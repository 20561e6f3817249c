"""Shared test fixtures.

Real data are read in place from ``../shared/data`` (the project never copies
them). ``MMSPEC_SHARED_DATA`` overrides where that folder is.  The download
registry is pointed at the local mirror through ``MMSPEC_DATA_MIRROR`` so that
tests exercise the same path a user's download takes, without the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MMSPEC_SHARED_DATA", REPO.parent / "shared" / "data"))
EELS_DIR = SHARED_DATA / "nmc-eels-si"

# The registry reads this variable; set it before any test imports datasets.
os.environ.setdefault("MMSPEC_DATA_MIRROR", str(SHARED_DATA))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"real data file missing: {path} (set MMSPEC_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def tm_si_path() -> Path:
    return _require(EELS_DIR / "TM" / "TM+O EELS Spectrum Image.dm3")


@pytest.fixture(scope="session")
def zlp_si_path() -> Path:
    return _require(EELS_DIR / "ZLP" / "EELS Spectrum Image.dm3")


@pytest.fixture(scope="session")
def si_si_path() -> Path:
    return _require(EELS_DIR / "Si" / "Si EELS Spectrum Image.dm3")
