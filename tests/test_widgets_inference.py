"""Inference widget: driven through its traits and Bokeh models, no browser.

A small model is trained on the toy set of ``mmspec_widgets.learn._synthetic``
(the shipped default model is not required for these tests).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.plotting import PHASE_COLOURS
from mmspec_widgets.widgets import Inference

EDGES = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")


@pytest.fixture(scope="module")
def trained():
    from mmspec_widgets.learn import MultimodalModel
    from mmspec_widgets.learn._synthetic import make_synthetic_training_set

    ds = make_synthetic_training_set(n_structures=16, edges=EDGES, missing=0.0, seed=3)
    model = MultimodalModel(edges=EDGES, params={"max_iter": 40, "min_samples_leaf": 3},
                            n_folds=2, dropout_copies=1, augment_copies=0)
    model.fit(ds)
    return ds, model


@pytest.fixture(scope="module")
def maps_data(trained):
    """24 labelled samples laid out as a 4 x 6 pixel map (dims y, x, energy_<edge>)."""
    ds, _ = trained
    sub = ds.isel(sample=slice(0, 24))
    data = {e: xr.DataArray(sub[e].values.reshape(4, 6, -1), dims=("y", "x", f"energy_{e}"),
                            coords={f"energy_{e}": sub[f"energy_{e}"]}) for e in EDGES}
    return xr.Dataset(data, coords={"y": ("y", 2.0 * np.arange(4), {"units": "nm"}),
                                    "x": ("x", 2.0 * np.arange(6), {"units": "nm"})})


@pytest.fixture()
def w(trained, maps_data):
    ds, model = trained
    return Inference(maps_data, model, explain_data=ds)


def test_initial_maps_are_the_fused_prediction(w, trained, maps_data):
    _, model = trained
    expected = model.predict(maps_data, edges=list(EDGES))
    assert w.result.attrs["edge_set"] == "O_K+Mn_L23+Co_L23+Ni_L23"
    np.testing.assert_allclose(w.result["li_content"].values, expected["li_content"].values)
    np.testing.assert_allclose(w.pred_source.data["image"][0],
                               expected["li_content"].transpose("y", "x").values)
    np.testing.assert_allclose(w.std_source.data["image"][0],
                               expected["li_content_std"].transpose("y", "x").values)
    np.testing.assert_allclose(w.ood_source.data["image"][0],
                               expected["ood_score"].transpose("y", "x").values)
    # hatched rectangles exactly on the OOD pixels
    n_ood = int(expected["ood"].values.sum())
    assert len(w.hatch_source.data["x"]) == n_ood
    assert f"{n_ood} of 24 pixels out of distribution" in w.status.value
    w.ood_box.value = False
    assert w.show_ood is False and len(w.hatch_source.data["x"]) == 0
    w.show_ood = True
    assert len(w.hatch_source.data["x"]) == n_ood
    assert w.pred_fig.xaxis.axis_label == "x (nm)"


def test_single_edge_mode_predicts_from_that_edge_only(w, trained, maps_data):
    _, model = trained
    w.mode = "single"
    w.single_edge = "Ni_L23"
    assert w.result.attrs["edge_set"] == "Ni_L23"
    expected = model.predict(maps_data, edges=["Ni_L23"])
    np.testing.assert_allclose(w.result["ni_fraction"].values, expected["ni_fraction"].values)
    assert w.mode_toggle.value == "single"
    assert all(box.disabled for box in w.edge_boxes.values())
    assert w.spec_figs["O_K"].title.text.endswith("(not used)")
    fused = model.predict(maps_data, edges=list(EDGES))
    assert not np.allclose(w.result["ni_fraction"].values, fused["ni_fraction"].values)
    w.mode_toggle.value = "fused"
    assert w.result.attrs["edge_set"] == "O_K+Mn_L23+Co_L23+Ni_L23"


def test_edge_checkboxes_choose_the_fused_edges(w):
    w.edge_boxes["Mn_L23"].value = False
    w.edge_boxes["Co_L23"].value = False
    assert w.edges == ["O_K", "Ni_L23"]
    assert w.result.attrs["edge_set"] == "O_K+Ni_L23"
    w.edges = ["Mn_L23"]
    assert [b.value for b in w.edge_boxes.values()] == [False, True, False, False]
    # the last checked edge cannot be unchecked
    w.edge_boxes["Mn_L23"].value = False
    assert w.edge_boxes["Mn_L23"].value is True and w.edges == ["Mn_L23"]


def test_click_pixel_shows_its_spectra_and_predictions(w, maps_data):
    w.grid_source.selected.indices = [2 * 6 + 5]
    assert w.pixel == (2, 5)
    for e in EDGES:
        np.testing.assert_allclose(w.spec_sources[e].data["intensity"],
                                   maps_data[e].isel(y=2, x=5).values)
    v = float(w.result["li_content"].isel(y=2, x=5))
    assert "Pixel (row 2, col 5)" in w.pixel_table.value
    assert f"{v:.3f}" in w.pixel_table.value
    assert w.outlines[0].data["x"] == [pytest.approx(10.0)]


def test_target_choice_changes_the_map(w):
    w.target_select.value = "o_vacancy"
    assert w.target == "o_vacancy"
    np.testing.assert_allclose(w.pred_source.data["image"][0],
                               w.result["o_vacancy"].transpose("y", "x").values)
    assert (w.pred_mapper.low, w.pred_mapper.high) == (0.0, 1.0)
    assert "vacancy" in w.pred_fig.title.text


def test_explanation_overlay(w):
    assert w.explanation is None
    w.target = "mn_oxidation"
    w.explain_box.value = True
    imp = w.explanation
    assert set(imp.data_vars) == set(EDGES)
    da = imp["Mn_L23"].sel(target="mn_oxidation")
    shown = np.asarray(w.imp_sources["Mn_L23"].data["importance"])
    np.testing.assert_allclose(shown, np.nan_to_num(da.values, nan=0.0).clip(0, None))
    assert shown.max() > 0
    # single edge: the explanation is that of the single-edge prediction
    w.mode = "single"
    w.single_edge = "O_K"
    assert list(w.explanation.data_vars) == ["O_K"]
    assert np.all(np.asarray(w.imp_sources["Mn_L23"].data["importance"]) == 0)
    w.show_explanation = False
    assert np.all(np.asarray(w.imp_sources["O_K"].data["importance"]) == 0)


def test_model_choice(trained, maps_data, tmp_path):
    from mmspec_widgets.learn import save_model

    ds, model = trained
    path = save_model(model, tmp_path / "toy.skops")
    w = Inference(maps_data, models={"toy A": model, "toy B (file)": path})
    assert list(w.model_select.options) == ["toy A", "toy B (file)"]
    w.model_select.value = "toy B (file)"
    assert w.model_name == "toy B (file)" and w.result is not None
    np.testing.assert_allclose(w.result["li_content"].values,
                               model.predict(maps_data)["li_content"].values)
    with pytest.raises(MMSpecError, match="models"):
        Inference(maps_data, models={"bad": object()})


def test_bad_inputs(trained, maps_data):
    _, model = trained
    with pytest.raises(DataError, match="expected an xarray.Dataset"):
        Inference(maps_data["O_K"], model)
    with pytest.raises(DataError, match="no edge variables"):
        Inference(xr.Dataset({"foo": ("y", [1.0])}), model)
    bad = maps_data.isel(y=0)
    with pytest.raises(DataError, match="expected dims"):
        Inference(bad, model)
    w = Inference(maps_data, model)
    with pytest.raises(MMSpecError, match="target"):
        w.target = "nonsense"
    with pytest.raises(DataError, match="edges"):
        w.edges = ["Li_K"]
    with pytest.raises(DataError, match="pixel"):
        w.pixel = (9, 9)
    with pytest.raises(MMSpecError, match="mode"):
        w.mode = "both"


def test_maps_follow_the_plotting_conventions(w):
    """One uncertainty convention, an OOD colour bar spanning the scores, capped std,
    oxidation states blank where the element is absent."""
    from mmspec_widgets import plotting

    score = w.result["ood_score"].values
    assert w.ood_mapper.high == pytest.approx(plotting.ood_limits(score)[1])
    assert w.ood_mapper.high >= np.nanmax(np.where(np.isfinite(score), score, np.nan))
    assert "± 1 std" in w.std_fig.title.text
    assert w.pred_fig.right[0].title and w.std_fig.right[0].title.startswith("1 std")
    assert "value ± 1 std" in w.pixel_table.value and "90 %" not in w.pixel_table.value
    # a std wider than half the physical range is shown capped, and said so in the table
    res = w.result.copy(deep=True)
    res["li_content_std"][:] = 0.9
    w.result = res
    w.target = "li_content"
    w._show_maps()
    w._show_pixel()
    assert np.nanmax(w.std_source.data["image"][0]) <= 0.5
    assert "capped" in w.std_fig.title.text
    assert "no information" in w.pixel_table.value
    if "ni_oxidation" in w.model.targets_:
        res = w.result.copy(deep=True)
        res["ni_fraction"][:] = 0.0
        w.result = res
        w.target = "ni_oxidation"
        w._show_maps()
        assert np.isnan(w.pred_source.data["image"][0]).all()


def test_edges_used_map_beside_the_ood_map(w):
    w._show_maps()
    shown = np.asarray(w.used_source.data["image"][0], float)
    n_e = w.result["n_edges"].transpose("y", "x").values.astype(float)
    assert np.array_equal(np.nan_to_num(shown, nan=-1), np.nan_to_num(n_e, nan=-1))
    offered = len(w.result.attrs["edges"])
    assert w.used_mapper.high == pytest.approx(offered + 0.5)
    assert f"of {offered}" in w.used_fig.title.text
    assert w.used_fig.right[0].title == "edges used"


def test_pixel_table_says_why_a_value_is_missing(w):
    res = w.result.copy()
    t = "ni_oxidation" if "ni_oxidation" in res else next(
        k for k in w.model.targets_ if k.endswith("_oxidation"))
    el_bit = {"ni_oxidation": 128, "mn_oxidation": 256, "co_oxidation": 512}[t]
    v = res[t].values.copy()
    v[1, 2] = np.nan
    res[t] = (res[t].dims, v, dict(res[t].attrs))
    code = res["nan_reason"].values.copy()
    code[1, 2] |= el_bit
    res["nan_reason"] = (res["nan_reason"].dims, code, dict(res["nan_reason"].attrs))
    w.result = res
    w.grid_source.selected.indices = [1 * 6 + 2]
    assert f"no usable {t[:2].capitalize()} edge" in w.pixel_table.value
    # a target the training set does not vary: says so, with the reason as a tooltip
    res = res.copy()
    res[t].attrs["not_learnt"] = "the training set does not vary it: 2 of 142 differ"
    w.result = res
    w.grid_source.selected.indices = [0]
    w.grid_source.selected.indices = [1 * 6 + 2]
    assert "not learnt" in w.pixel_table.value
    assert "2 of 142 differ" in w.pixel_table.value


def test_pixel_table_names_the_most_probable_phase(w):
    res = w.result.copy()
    ny, nx = res.sizes["y"], res.sizes["x"]
    dims = res["ood"].transpose("y", "x").dims
    code = np.full((ny, nx), 2, np.int8)  # rock_salt
    code[0, 0] = -1
    res["phase"] = (dims, code, {"flag_meanings": "unknown layered li_rich rock_salt spinel"})
    res["phase_probability"] = (dims, np.full((ny, nx), 0.74))
    w.result = res
    w.grid_source.selected.indices = [1 * nx + 2]
    assert "rock-salt (p 0.74)" in w.pixel_table.value
    # the model of this widget was trained on a set without phases: says so
    w.grid_source.selected.indices = [0]
    if "spinel" in res:
        assert "not learnt" in w.pixel_table.value


def test_phase_map_is_a_choice_with_one_colour_per_phase(w):
    assert ("Phase (most probable)", "phase") in list(w.target_select.options)
    res = w.result.copy()
    ny, nx = res.sizes["y"], res.sizes["x"]
    dims = res["ood"].transpose("y", "x").dims
    code = np.tile(np.arange(-1, 4, dtype=np.int8), ny * nx)[:ny * nx].reshape(ny, nx)
    res["phase"] = (dims, code, {"flag_meanings": "unknown layered li_rich rock_salt spinel"})
    res["phase_probability"] = (dims, np.where(code >= 0, 0.6, np.nan))
    w.result = res
    w.target = "phase"
    w._show_maps()
    shown = np.asarray(w.pred_source.data["image"][0], float)
    assert np.isnan(shown[code < 0]).all()
    np.testing.assert_array_equal(shown[code >= 0], code[code >= 0])
    assert (w.pred_mapper.low, w.pred_mapper.high) == (-0.5, 3.5)
    assert list(w.pred_mapper.palette) == list(PHASE_COLOURS)
    assert "rock-salt" in w.pred_fig.title.text
    assert "Probability of the shown phase" in w.std_fig.title.text
    with pytest.raises(MMSpecError, match="explain one of them"):
        w.explain()
    w.target = "li_content"
