"""Binder set-up and tutorial notebooks agree: what the notebooks import is
installed on mybinder, the package is installed by postBuild, and the notebooks
are committed clean (numbered, outputs stripped, Python 3 kernel)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# import name -> distribution name where they differ
_DIST = {"sklearn": "scikit-learn", "skops": "skops", "feff10": "feff10-rs",
         "jupyter_bokeh": "jupyter-bokeh", "yaml": "pyyaml", "IPython": "ipython"}
# installed with the listed distributions (dependencies of them)
_IMPLIED = {"IPython": "ipywidgets", "traitlets": "ipywidgets", "pandas": "xarray",
            "dask": "dask", "distributed": "distributed"}


def _binder_packages() -> set[str]:
    env = yaml.safe_load((REPO / "binder" / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for req in items:
            names.add(re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()
                      .replace("_", "-"))
    return names


def _imports(nb) -> set[str]:
    mods = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        src = "\n".join(line for line in cell.source.splitlines()
                        if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods


def test_tutorials_exist_and_are_numbered():
    names = [p.stem for p in NOTEBOOKS]
    assert names, "no notebooks"
    numbers = [int(n[:2]) for n in names]
    assert numbers == list(range(1, len(names) + 1)), names
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+", n) for n in names), names


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, \
                    f"{path.name}: outputs not stripped"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
            f"{path.name}: should open with a title"


def test_notebook_imports_are_installed_on_binder():
    available = _binder_packages()
    stdlib = set(sys.stdlib_module_names)
    for path in NOTEBOOKS:
        for mod in _imports(nbformat.read(path, as_version=4)):
            if mod in stdlib or mod == "mmspec_widgets":
                continue
            dist = _DIST.get(mod, mod).lower().replace("_", "-")
            implied = _IMPLIED.get(mod, "").lower()
            assert dist in available or implied in available, \
                f"{path.name} imports {mod!r}, which binder/environment.yml does not install"


def test_binder_installs_widget_frontend_and_package():
    pkgs = _binder_packages()
    for needed in ("jupyterlab", "ipywidgets", "jupyter-bokeh", "bokeh"):
        assert needed in pkgs, f"binder/environment.yml lacks {needed}"
    post = (REPO / "binder" / "postBuild").read_text()
    assert re.search(r"pip install .*-e \.", post), "postBuild must install the package"
    assert (REPO / "binder" / "postBuild").stat().st_mode & 0o111, "postBuild not executable"
