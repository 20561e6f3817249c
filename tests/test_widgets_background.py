"""BackgroundSubtraction widget: driven through traits and Bokeh models, no browser."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from _widget_data import spectrum_model, synthetic_si

from mmspec_widgets.background import subtract_background
from mmspec_widgets.edges import get_edge
from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.widgets import BackgroundSubtraction


@pytest.fixture(scope="module")
def si():
    return synthetic_si(ny=3, nx=5)


@pytest.fixture()
def w(si):
    return BackgroundSubtraction(si)


def test_defaults_follow_the_edge_table(w, si):
    assert w.edge == "O_K"
    assert w.window == get_edge("O_K").pre_edge
    assert w.edges == ["O_K", "Mn_L23", "Co_L23", "Ni_L23"]  # inside 440 - 1054 eV
    assert tuple(w.window_slider.value) == w.window
    for box in w.boxes:
        assert (box.left, box.right) == w.window
    # the plot is zoomed onto the edge: window start to beyond the O K grid
    assert w.pixel_fig.x_range.start < 485.0 and w.pixel_fig.x_range.end > 562.0
    assert w.pixel_fig.xaxis.axis_label == "Energy loss (eV)"


def test_preview_is_the_library_result(w, si):
    spec = si.isel(y=0, x=0)
    expected = subtract_background(spec, window=w.window, model="powerlaw")
    np.testing.assert_allclose(w.preview.values, expected.values)
    src = w.pixel_source.data
    np.testing.assert_allclose(src["data"], spec.values)
    shown = np.isfinite(src["signal"])
    np.testing.assert_allclose(np.asarray(src["signal"])[shown], expected.values[shown])
    # background + signal = data where shown; nothing shown below the window
    np.testing.assert_allclose(np.asarray(src["background"])[shown] + np.asarray(src["signal"])[shown],
                               spec.values[shown])
    assert not shown[si.energy.values < w.window[0]].any()
    # summed spectrum preview
    total = si.sum(("y", "x"))
    exp_sum = subtract_background(total, window=w.window, model="powerlaw")
    np.testing.assert_allclose(w.preview_sum.values, exp_sum.values, rtol=1e-6)


def test_noiseless_power_law_is_recovered():
    si = synthetic_si(ny=1, nx=2, noise=False)
    w = BackgroundSubtraction(si, window=(480.0, 520.0))
    assert "exponent r = 3.00" in w.pixel_fig.title.text
    e = si.energy.values
    bg, sig = spectrum_model(e, amp=0.5)
    inside = (e >= 480) & (e <= 520)
    # residual in the window is small (the edge tail is the only model error)
    res = np.asarray(w.pixel_source.data["residual"])[inside]
    assert np.nanmax(np.abs(res)) < 1.0  # percent
    after = (e > 560) & (e < 620)
    np.testing.assert_allclose(np.asarray(w.pixel_source.data["background"])[after], bg[after],
                               rtol=0.03)


def test_dragging_the_window_updates_everything(w, si):
    before = np.asarray(w.pixel_source.data["background"]).copy()
    # a drag in the browser changes the BoxAnnotation's left/right
    w.boxes[0].left = 470.0
    w.boxes[0].right = 515.0
    assert w.window == (470.0, 515.0)
    assert tuple(w.window_slider.value) == (470.0, 515.0)
    assert (w.boxes[1].left, w.boxes[1].right) == (470.0, 515.0)  # the other plots follow
    assert (w.boxes[2].left, w.boxes[2].right) == (470.0, 515.0)
    after = np.asarray(w.pixel_source.data["background"])
    assert not np.allclose(np.nan_to_num(before), np.nan_to_num(after))
    expected = subtract_background(si.isel(y=0, x=0), window=(470.0, 515.0))
    np.testing.assert_allclose(w.preview.values, expected.values)
    assert "470.0-515.0 eV" in w.status.value


def test_slider_model_and_order(w, si):
    w.window_slider.value = (480.0, 520.0)
    assert w.window == (480.0, 520.0)
    w.model_select.value = "polynomial"
    assert w.model == "polynomial" and w.order_slider.layout.display == ""
    w.order = 1
    expected = subtract_background(si.isel(y=0, x=0), window=(480.0, 520.0),
                                   model="polynomial", order=1)
    np.testing.assert_allclose(w.preview.values, expected.values)
    w.model = "exponential"
    assert w.order_slider.layout.display == "none"
    assert "tau" in w.pixel_fig.title.text


def test_pixel_click_and_edge_choice(w, si):
    w.grid_source.selected.indices = [2 * 5 + 4]
    assert w.pixel == (2, 4)
    np.testing.assert_allclose(w.pixel_source.data["data"], si.isel(y=2, x=4).values)
    w.window = (480.0, 520.0)
    w.edge_select.value = "Mn_L23"
    assert w.edge == "Mn_L23" and w.window == get_edge("Mn_L23").pre_edge
    assert w.pixel_fig.x_range.end > get_edge("Mn_L23").grid[1]
    w.window = (600.0, 632.0)
    # the window chosen per edge is kept, ready for extract_edges(windows=...)
    assert w.windows == {"O_K": (480.0, 520.0), "Mn_L23": (600.0, 632.0)}
    w.edge = "O_K"
    assert w.window == (480.0, 520.0)


def test_windows_feed_extract_edges(si):
    from mmspec_widgets.extract import extract_edges

    w = BackgroundSubtraction(si)
    w.window = (480.0, 520.0)
    w.edge = "Mn_L23"
    w.window = (600.0, 632.0)
    ds = extract_edges(si, edges=list(w.windows), windows=w.windows, background=w.model)
    assert set(ds.attrs["edges"]) == {"O_K", "Mn_L23"}
    assert {v for v in ds.data_vars if not str(v).startswith("jump_")} == {"O_K", "Mn_L23"}
    assert ds["O_K"].dims == ("y", "x", "energy_O_K")


def test_apply_to_si(w, si):
    w.window = (480.0, 520.0)
    out = w.apply()
    expected = subtract_background(si, window=(480.0, 520.0), model="powerlaw")
    xr.testing.assert_allclose(out, expected)
    assert w.result is out
    assert out.attrs["history"][-1]["step"] == "subtract_background"
    assert out.attrs["history"][-1]["params"]["window"] == [480.0, 520.0]
    assert (w.progress.value, w.progress.max) == (3, 3)
    assert w.progress.bar_style == "success"
    # a new window makes the result stale
    w.window = (485.0, 520.0)
    assert w.result is None


def test_apply_on_dask_backed_si(si):
    w = BackgroundSubtraction(si.chunk({"y": 1}), window=(480.0, 520.0))
    out = w.apply()
    assert isinstance(out.data, np.ndarray)
    np.testing.assert_allclose(out.values, subtract_background(si, window=(480.0, 520.0)).values)


def test_input_not_modified(si):
    before = si.copy(deep=True)
    w = BackgroundSubtraction(si)
    w.apply()
    xr.testing.assert_identical(si, before)


def test_bad_inputs(si):
    with pytest.raises(DataError, match="expected an xarray.DataArray"):
        BackgroundSubtraction(np.zeros((2, 2, 5)))
    with pytest.raises(DataError, match="Li_K"):
        BackgroundSubtraction(si, edge="Li_K")   # 52 - 80 eV is outside 440 - 1054 eV
    with pytest.raises(MMSpecError, match="unknown edge"):
        BackgroundSubtraction(si, edge="Xx_K")
    w = BackgroundSubtraction(si)
    with pytest.raises(DataError, match="window"):
        w.window = (300.0, 400.0)
    with pytest.raises(DataError, match="fewer than 3 channels"):
        w.window = (500.0, 500.2)
    with pytest.raises(MMSpecError, match="model"):
        w.model = "spline"
    with pytest.raises(DataError, match="pixel"):
        w.pixel = (3, 0)
    # a window dragged off the axis is refused and the band snaps back
    w.boxes[0].left = 100.0
    assert w.window == get_edge("O_K").pre_edge
    assert w.boxes[0].left == get_edge("O_K").pre_edge[0]
    assert "Window not moved" in w.status.value and "expected (lo, hi)" in w.status.value


def test_real_si_preview(tm_si_path):
    from mmspec_widgets.io import load

    si = load(tm_si_path)
    # uncalibrated axis: O K starts near 515 eV recorded, so fit below it
    w = BackgroundSubtraction(si, window=(470.0, 510.0), pixel=(1, 10))
    assert np.isfinite(w.preview.sel(energy=slice(515, 560)).values).all()
    r = float(w.pixel_fig.title.text.split("r = ")[1].split()[0])
    assert 2.0 < r < 5.0  # a physical EELS power-law exponent
    # the edge sits on top of the extrapolated background
    edge = w.preview.sel(energy=slice(525, 535)).mean()
    pre = w.preview.sel(energy=slice(475, 505)).mean()
    assert float(edge) > 10 * abs(float(pre))
