"""``mmspec simulate`` is quiet by default: the JSON summary on stdout, a progress
bar on stderr, the engines' and Dask's messages in ``<out>/simulate.log``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _simulate(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Ni L2,3 only: edrixs, no FEFF, a few seconds a job; two local Dask workers
    cmd = [sys.executable, "-m", "mmspec_widgets.cli", "simulate", "--structures", "1",
           "--edges", "Ni_L23", "--seed", "7", "--out", str(out), "--workers", "2",
           "--no-assemble", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_simulate_is_quiet_and_logs_to_the_store(tmp_path):
    out = tmp_path / "store"
    r = _simulate(out)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout  # the JSON summary only
    summary = json.loads(lines[0])
    assert summary["done"] >= 1 and summary["failed"] == 0
    assert summary["log"] == str(out / "simulate.log")
    # stderr: the progress bar, no Dask or per-job chatter
    assert "spectra" in r.stderr
    for chatter in ("distributed.", "Scheduler", "Worker", "done Ni_L23"):
        assert chatter not in r.stderr, (chatter, r.stderr[-2000:])
    log = (out / "simulate.log").read_text()
    assert "done Ni_L23" in log  # one line per job
    assert "distributed.scheduler" in log  # the cluster's messages


def test_simulate_verbose_restores_the_chatter(tmp_path):
    out = tmp_path / "store"
    r = _simulate(out, "--verbose", "--max-jobs", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 1
    assert "done Ni_L23" in r.stderr
    assert "Scheduler" in r.stderr or "distributed" in r.stderr
    assert not (out / "simulate.log").exists()


def test_kinds_argument():
    from mmspec_widgets.errors import MMSpecError
    from mmspec_widgets.simulate.campaign import make_specs
    from mmspec_widgets.simulate.cli import _kinds

    assert _kinds(None) is None
    assert _kinds("all") == "all"
    assert _kinds("li_rich=10,rock_salt=5,spinel=5") == {"li_rich": 10, "rock_salt": 5,
                                                         "spinel": 5}
    assert _kinds("li_rich, spinel") == ["li_rich", "spinel"]
    for bad in ("li_rich=ten", "li_rich=10,spinel"):
        with pytest.raises(MMSpecError, match="--kinds"):
            _kinds(bad)
    specs = make_specs(20, seed=2, kinds=_kinds("li_rich=10,rock_salt=5,spinel=5"))
    assert sorted(s.phase for s in specs) == ["li_rich"] * 10 + ["rock_salt"] * 5 + \
        ["spinel"] * 5
    with pytest.raises(MMSpecError, match="summing to 20"):
        make_specs(20, seed=2, kinds=_kinds("li_rich=10,spinel=5"))
