"""The project's set-up files agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _env_pip(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r for r in pip if not r.startswith("-e")}


def test_environment_files_match_pyproject():
    deps = {_name(r): r for r in _pyproject()["project"]["dependencies"]}
    for path in (REPO / "environment.yml", REPO / "binder" / "environment.yml"):
        pip = _env_pip(path)
        extra = set(pip) - set(deps) - {"jupyterlab"}
        missing = set(deps) - set(pip)
        assert not missing, f"{path.name} lacks {sorted(missing)}"
        assert not extra, f"{path.name} has {sorted(extra)} not in pyproject.toml"
        for name, req in deps.items():
            assert pip[name] == req, f"{path}: {pip[name]!r} != pyproject {req!r}"


def test_binder_installs_the_package_and_notebook_server():
    post = (REPO / "binder" / "postBuild").read_text()
    assert "pip install" in post and "-e ." in post
    assert "jupyterlab" in _env_pip(REPO / "binder" / "environment.yml")


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/demo.sh" in readme
    assert "scripts/test.sh" in ci


def test_console_script_points_at_cli():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts["mmspec"] == "mmspec_widgets.cli:main"
    from mmspec_widgets import cli

    parser = cli.build_parser()
    assert parser.prog == "mmspec"
