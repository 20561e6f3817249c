"""The whole chain on the shipped digital twin, scored against its ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets import cli
from mmspec_widgets.demo import run_demo
from mmspec_widgets.twin import load_digital_twin


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out)


@pytest.fixture(scope="module")
def summary(demo_dir):
    return demo_dir[1]


#: errors this small count as recovered whatever the stated std (charge units
#: or atoms per TM: far below any step a microscopist reads). It matters only
#: for Mn and Co oxidation, whose training labels are nearly constant (176 of
#: 178 Mn4+, 185 of 187 Co3+), so their stated std is tiny as well.
RESOLUTION = 0.02


def test_demo_maps_every_target_with_uncertainty(demo_dir):
    out, summary = demo_dir
    maps = xr.open_dataset(out / "maps.nc")
    twin = load_digital_twin()
    scores = summary["scores"]
    assert set(scores) >= {"li_content", "ni_fraction", "mn_fraction", "co_fraction",
                           "ni_oxidation", "o_vacancy", "antisite"}
    n_particle = int(np.isfinite(twin.truth["li_content"].values).sum())
    for name, s in scores.items():
        if name.endswith("_oxidation"):  # undefined where the element is absent
            n = int(np.isfinite(twin.truth[name].values).sum())
            # and refused (NaN, with a reason) where its edge is not read in the pixel
            # (below 3 std); given in every pixel of the element whose edge is read
            used = maps[f"used_{name.split('_')[0].capitalize()}_L23"].values
            read = int((np.isfinite(twin.truth[name].values) & used).sum())
            assert s["n_pixels"] >= read >= 0.5 * n, name
        else:
            assert s["n_pixels"] >= 0.9 * n_particle, name


@pytest.mark.parametrize("target", [
    "li_content",
    "ni_fraction", "mn_fraction", "co_fraction", "ni_oxidation", "mn_oxidation",
    "co_oxidation"])
def test_twin_recovered_within_stated_uncertainty(demo_dir, target):
    out, summary = demo_dir
    maps = xr.open_dataset(out / "maps.nc")
    if target in maps.attrs.get("not_learnt", ""):  # NaN everywhere, with the reason
        assert np.isnan(maps[target].values).all() and target not in summary["scores"]
        return
    s = summary["scores"][target]
    truth = load_digital_twin().truth[target].values
    spread = np.nanstd(truth) + np.nanmean(np.abs(truth - np.nanmean(truth))) + 0.05
    maps = xr.open_dataset(out / "maps.nc")
    err = np.abs(maps[target].values - truth)
    ok = np.isfinite(err)
    recovered = err[ok] <= np.maximum(2 * maps[f"{target}_std"].values[ok], RESOLUTION)
    # the truth lies within 2 stated standard deviations on most pixels ...
    assert recovered.mean() >= 0.85, (recovered.mean(), s)
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

    from mmspec_widgets.demo import run_chain

    twin = load_digital_twin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, shapes_only = run_chain(twin.si, twin.zlp)
        _, fused_maps = run_chain(twin.si, twin.zlp,
                                  composition=twin.provenance["nominal_composition"])
    for t in ("ni_fraction", "mn_fraction", "co_fraction"):
        fused = summary["scores"][t]["value"]
        assert fused < 0.1, (t, fused)
        # shapes alone give fractions only where every TM edge is read: compare there
        truth = twin.truth[t].values
        e_alone = np.abs(shapes_only[t].values - truth)
        e_fused = np.abs(fused_maps[t].values - truth)
        both = np.isfinite(e_alone) & np.isfinite(e_fused)
        assert both.sum() >= 20
        assert e_fused[both].mean() < 0.75 * e_alone[both].mean(), t


@pytest.mark.parametrize("target,min_auc", [("o_vacancy", 0.8), ("antisite", 0.65)])
def test_twin_defect_patches_are_found(summary, target, min_auc):
    """The defect probabilities rank the twin's defect patch above the rest of
    the particle (pixel ROC AUC; 0.5 is chance)."""
    s = summary["scores"][target]
    assert s["n_defect_pixels"] >= 20
    assert s["roc_auc"] > min_auc, s


def test_demo_figure_reads_at_a_glance(demo_dir):
    """maps.png: every image with a labelled colour bar, the OOD and edges-used maps,
    oxidation states blank where the twin's model says the element is absent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmspec_widgets import plotting

    out, _ = demo_dir
    assert (out / "maps.png").stat().st_size > 50_000
    maps = xr.open_dataset(out / "maps.nc")
    fig = plotting.plot_maps(maps, load_digital_twin().truth)
    try:
        images = [im for ax in fig.axes for im in ax.images]
        bars = {id(im.norm): im.colorbar for im in images if im.colorbar is not None}
        for im in images:
            cb = im.colorbar or bars.get(id(im.norm))
            assert cb is not None and cb.ax.get_ylabel().strip(), im.axes.get_title()
        titles = [ax.get_title() for ax in fig.axes if ax.images]
        assert any(t.startswith("Out of distribution") for t in titles)
        assert any(t.startswith("Edges used") for t in titles)
        assert not any("_" in t for t in titles), titles  # no raw keys
    finally:
        plt.close(fig)
    mn_ox = plotting.display_values(maps, "mn_oxidation")
    absent = maps["mn_fraction"].values < plotting.MIN_FRACTION
    assert np.isnan(mn_ox[absent]).all()


def test_score_maps_scores_the_phase_map_and_probabilities():
    from mmspec_widgets.demo import score_maps

    li = np.array([[np.nan, 0.5, 0.6, 0.7]])
    truth = xr.Dataset({"li_content": (("y", "x"), li),
                        "phase": (("y", "x"), np.array([[-1, 0, 2, 3]], np.int8)),
                        "rock_salt": (("y", "x"), np.array([[np.nan, 0, 1, 0]]))})
    maps = xr.Dataset({"li_content": (("y", "x"), li),
                       "phase": (("y", "x"), np.array([[0, 0, 2, -1]], np.int8)),
                       "rock_salt": (("y", "x"), np.array([[0.9, 0.2, 0.8, 0.6]]))})
    s = score_maps(maps, truth)
    # the vacuum pixel is not scored; the unknown one counts as wrong
    assert s["phase"] == {"metric": "accuracy", "value": pytest.approx(2 / 3), "n_pixels": 3,
                          "n_unknown": 1}
    assert s["rock_salt"]["metric"] == "accuracy"
    assert s["rock_salt"]["value"] == pytest.approx(2 / 3)
    assert s["rock_salt"]["balanced_accuracy"] == pytest.approx(0.75)
