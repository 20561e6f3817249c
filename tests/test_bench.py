"""``mmspec bench``: the measurements' plumbing and the JSON contract.

No timing is asserted (the machine is shared); the tests check that every
number is measured, finite and consistent, that the accuracy check compares
the right things, and that errors are clear.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmspec_widgets import bench
from mmspec_widgets.cli import main as cli_main
from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.pipeline import synthetic_si
from tests.test_pipeline import StandInModel

HEADLINE = ["hyperspy_bg_spectra_per_s", "ours_bg_spectra_per_s", "bg_speedup",
            "pipeline_spectra_per_s", "peak_rss_mb"]


def test_parse_size():
    assert bench.parse_size("64x32x2048") == (64, 32, 2048)
    assert bench.parse_size("256X256X2048") == (256, 256, 2048)
    for bad in ("64x64", "axbxc", "0x4x2048", "64x64x2048x2"):
        with pytest.raises(MMSpecError, match="--size"):
            bench.parse_size(bad)


def test_background_comparison_measures_both_and_agrees():
    si, _ = synthetic_si((8, 12), seed=4)
    res = bench.bench_background(si, (600.0, 632.0), repeat=2)
    for k in HEADLINE[:3]:
        assert np.isfinite(res[k]) and res[k] > 0
    assert res["bg_speedup"] == pytest.approx(
        res["ours_bg_spectra_per_s"] / res["hyperspy_bg_spectra_per_s"])
    assert len(res["bg_seconds"]["hyperspy"]) == len(res["bg_seconds"]["ours"]) == 2
    acc = res["bg_accuracy"]
    assert acc["edge_region_eV"] == [632.0, 692.0]
    assert 0 < acc["pixels"] <= 96
    # same two-area estimate: far inside the 1 % criterion, but not identical
    assert 0 < acc["worst_pixel_fraction_of_edge_signal"] < 1e-3
    assert acc["within_1_percent"] is True


def test_accuracy_check_catches_a_different_background(monkeypatch):
    si, _ = synthetic_si((4, 6), seed=5)
    from mmspec_widgets import background

    real = background.subtract_background

    def shifted(si, window, *a, **k):  # a background 5 % too low
        out = real(si, window, *a, **k)
        return out + 0.05 * (si - out)

    monkeypatch.setattr(background, "subtract_background", shifted)
    res = bench.bench_background(si, (600.0, 632.0), repeat=1)
    assert res["bg_accuracy"]["within_1_percent"] is False
    assert res["bg_accuracy"]["worst_pixel_fraction_of_edge_signal"] > 0.01


def test_chain_benchmark_reports_stages_and_memory():
    res = bench.bench_chain((16, 24, 2048), model=StandInModel(), repeat=2)
    assert res["pipeline_spectra_per_s"] > 0 and res["peak_rss_mb"] > 0
    st = res["stages_s"]
    assert set(st) == {"plan", "extract", "predict", "total"}
    assert all(v > 0 for v in st.values())
    assert st["total"] >= st["plan"] + st["extract"] + st["predict"]
    assert res["pipeline_without_predict_spectra_per_s"] > res["pipeline_spectra_per_s"]
    assert len(res["chain_runs_s"]) == 2
    assert res["input_mb"] == pytest.approx(2 * 16 * 24 * 2048 * 4 / 2**20)


def test_chain_benchmark_times_the_model_stages():
    res = bench.bench_chain((8, 12, 2048), repeat=1)  # the shipped model
    ps = res["predict_stages_thread_s"]
    assert set(ps) == {"input", "features", "ood", "trees", "other"}
    assert all(v >= 0 for v in ps.values())
    assert ps["features"] > 0 and ps["trees"] > 0 and ps["ood"] > 0
    us = res["predict_us_per_spectrum"]
    assert us["trees"] == pytest.approx(1e6 * ps["trees"] / 96)
    assert res["model_id"].startswith("mmspec-")


def test_copy_bandwidth_is_measured():
    bw = bench.copy_bandwidth(nbytes=16 * 2**20, repeat=2)
    assert bw["copy_bandwidth_GBps"] >= bw["copy_bandwidth_median_GBps"] > 0
    assert bw["copy_bytes"] == 16 * 2**20


def test_size_must_match_the_twin(capsys):
    assert cli_main(["bench", "--size", "8x8x1000", "--json"]) == 1
    assert "2048 channels" in capsys.readouterr().err


def test_subprocess_failure_is_reported(tmp_path):
    with pytest.raises(MMSpecError, match="model bundle not found"):
        bench._chain_in_subprocess((4, 4, 2048), tmp_path / "missing.skops", "auto", 1, 0)


def test_mmspec_bench_json_contract(capsys):
    """The command prints one JSON object that starts with the five agreed keys."""
    assert cli_main(["bench", "--json", "--size", "12x24x2048", "--repeat", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    res = json.loads(out[0])
    assert list(res)[:5] == HEADLINE
    assert all(np.isfinite(res[k]) and res[k] > 0 for k in HEADLINE)
    assert res["size"] == [12, 24, 2048] and res["n_spectra"] == 288
    assert res["bg_accuracy"]["within_1_percent"] is True
    assert res["model_id"].startswith("mmspec-")
    assert res["bandwidth_bound_spectra_per_s"] > res["pipeline_spectra_per_s"]
    assert len(res["load_average_before"]) == 3
