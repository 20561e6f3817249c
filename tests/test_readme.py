"""The README's Python code runs as written.

Every ```` ```python ```` block of README.md is executed, in order, in one
namespace, in a temporary working folder (so that the files it writes do not
land in the repository). The real data come through the download registry,
pointed at the offline mirror by ``conftest.py`` (``MMSPEC_DATA_MIRROR``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

pytestmark = pytest.mark.slow


def python_blocks(text: str) -> list[str]:
    """Source of every fenced ``python`` block, in order."""
    return [m.group(1) for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text,
                                            flags=re.MULTILINE | re.DOTALL)]


def test_python_blocks_are_found():
    blocks = python_blocks(README.read_text("utf-8"))
    assert blocks, "README.md has no python code block"
    assert any("mm.load(" in b for b in blocks)
    # the tour reaches the files through the registry, not bare file names
    assert not re.search(r"load\(\s*[\"'][^\"']*\.dm[34]", "\n".join(blocks))


def test_readme_quick_tour_runs_as_written(tmp_path, monkeypatch, shared_data):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # vacuum pixels of the real SI
        for i, block in enumerate(python_blocks(README.read_text("utf-8"))):
            code = compile(block, f"README.md python block {i + 1}", "exec")
            exec(code, ns)  # noqa: S102 - the README's own code
    # what the tour promises: a saved map file of the real SI, in the temporary folder
    maps = xr.load_dataset(tmp_path / "maps.nc")
    assert {"ni_fraction", "ni_fraction_std", "ood"} <= set(maps.data_vars)
    si = ns["si"]
    assert maps.sizes["y"] == si.sizes["y"] and maps.sizes["x"] == si.sizes["x"]
    assert np.isfinite(maps["ni_fraction"].values).mean() > 0.5
    assert (tmp_path / "maps.png").stat().st_size > 10_000
    assert (tmp_path / "calibrated.hspy").exists()
    assert not list(REPO.glob("maps.nc")) and not list(REPO.glob("*.hspy"))
