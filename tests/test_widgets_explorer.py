"""Explorer widget: driven through its traits and Bokeh models, no browser."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from _widget_data import synthetic_si, synthetic_survey

from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.widgets import Explorer
from mmspec_widgets.widgets.explorer import region_spectrum


@pytest.fixture(scope="module")
def si():
    return synthetic_si(ny=3, nx=5)


@pytest.fixture()
def ex(si):
    return Explorer(si, synthetic_survey(), si_area=(10.0, 10.0, 20.0, 14.0))


def test_initial_spectrum_is_pixel_zero(ex, si):
    np.testing.assert_allclose(ex.spectrum_source.data["counts"], si.isel(y=0, x=0).values)
    np.testing.assert_allclose(ex.spectrum_source.data["energy"], si.energy.values)
    assert ex.result.dims == ("energy",)
    assert ex.result.energy.attrs["units"] == "eV"
    assert ex.result.attrs["history"][-1] == {"step": "select_pixel",
                                              "params": {"row": 0, "col": 0}}


def test_tap_on_map_selects_pixel(ex, si):
    # a tap in the browser sets the selection indices of the pixel grid
    k = 1 * si.sizes["x"] + 3
    ex.grid_source.selected.indices = [k]
    assert ex.pixel == (1, 3)
    assert ex.region is None
    np.testing.assert_allclose(ex.spectrum_source.data["counts"], si.isel(y=1, x=3).values)
    np.testing.assert_allclose(ex.result.values, si.isel(y=1, x=3).values)
    # the red outline moves to that pixel's centre (nm)
    assert ex.outline_source.data["x"] == [pytest.approx(float(si.x[3]))]
    assert ex.outline_source.data["y"] == [pytest.approx(float(si.y[1]))]
    assert "row 1, col 3" in ex.info.value


def test_box_select_sums_region(ex, si):
    nx = si.sizes["x"]
    ex.grid_source.selected.indices = [0 * nx + 1, 0 * nx + 2, 1 * nx + 1, 1 * nx + 2]
    assert ex.region == (0, 2, 1, 3)
    expected = si.isel(y=slice(0, 2), x=slice(1, 3)).sum(("y", "x")).values
    np.testing.assert_allclose(ex.spectrum_source.data["counts"], expected)
    step = ex.result.attrs["history"][-1]
    assert step["step"] == "sum_region" and step["params"]["n_pixels"] == 4
    assert ex.outline_source.data["w"] == [pytest.approx(4.0)]  # two 2-nm pixels


def test_select_all_and_select_xy(ex, si):
    ex.select_all()
    np.testing.assert_allclose(ex.result.values, si.sum(("y", "x")).values)
    ex.select_xy(x=float(si.x[4]) + 0.4, y=float(si.y[2]) - 0.3)
    assert ex.pixel == (2, 4) and ex.region is None
    np.testing.assert_allclose(ex.result.values, si.isel(y=2, x=4).values)


def test_energy_zoom_from_plot_updates_trait_slider_and_map(ex, si):
    ex.lin_fig.x_range.start = 600.0
    ex.lin_fig.x_range.end = 700.0
    assert ex.energy_range == (600.0, 700.0)
    assert tuple(ex.range_slider.value) == (600.0, 700.0)
    expected_map = si.sel(energy=slice(600, 700)).sum("energy").values
    np.testing.assert_allclose(ex.map_source.data["image"][0], expected_map)
    np.testing.assert_allclose(ex.grid_source.data["value"], expected_map.ravel())
    # y axis fits the data shown in the window
    shown = si.isel(y=0, x=0).sel(energy=slice(600, 700)).values
    assert ex.lin_fig.y_range.start <= shown.min() < shown.max() <= ex.lin_fig.y_range.end
    assert ex.lin_fig.y_range.end < si.isel(y=0, x=0).values.max()


def test_energy_range_trait_drives_plot(ex):
    ex.energy_range = (820.0, 900.0)
    assert (ex.lin_fig.x_range.start, ex.lin_fig.x_range.end) == (820.0, 900.0)
    ex.range_slider.value = (500.0, 560.0)
    assert ex.energy_range == (500.0, 560.0)
    assert "500.0-560.0 eV" in ex.map_fig.title.text


def test_log_toggle(ex, si):
    assert ex.lin_fig.visible and not ex.log_fig.visible
    ex.scale_toggle.value = "log"
    assert ex.log_scale is True
    assert ex.log_fig.visible and not ex.lin_fig.visible
    assert ex.log_fig.y_range.start > 0
    ex.log_scale = False
    assert ex.scale_toggle.value == "linear" and ex.lin_fig.visible


def test_log_column_masks_nonpositive():
    si = synthetic_si(ny=1, nx=2, noise=False)
    si[0, 0, :10] = 0.0
    ex = Explorer(si)
    logc = np.asarray(ex.spectrum_source.data["counts_log"])
    assert np.isnan(logc[:10]).all() and np.isfinite(logc[10:]).all()


def test_survey_and_si_area_drawn(ex):
    assert ex.survey_fig is not None
    assert ex.survey_fig.xaxis.axis_label == "x (nm)"
    assert ex.lin_fig.xaxis.axis_label == "Energy loss (eV, uncalibrated)"  # as recorded
    # one image + the SI-area rectangle
    assert len(ex.survey_fig.renderers) == 2


def test_works_with_dask_backed_si(si):
    lazy = si.chunk({"y": 1})
    ex = Explorer(lazy, pixel=(2, 1))
    np.testing.assert_allclose(ex.result.values, si.isel(y=2, x=1).values)
    assert isinstance(ex.result.data, np.ndarray)


def test_input_si_is_not_modified(si):
    before = si.copy(deep=True)
    ex = Explorer(si)
    ex.select_all()
    ex.energy_range = (600.0, 700.0)
    xr.testing.assert_identical(si, before)


def test_bad_inputs_raise_clear_errors(si):
    with pytest.raises(DataError, match="si: expected an xarray.DataArray"):
        Explorer(si.values)
    with pytest.raises(DataError, match="expected dims"):
        Explorer(si.isel(y=0))
    ex = Explorer(si)
    with pytest.raises(MMSpecError, match="pixel"):
        ex.pixel = (5, 0)
    with pytest.raises(MMSpecError, match="region"):
        ex.region = (0, 9, 0, 1)
    with pytest.raises(MMSpecError, match="energy_range"):
        ex.energy_range = (2000.0, 3000.0)
    with pytest.raises(DataError, match="region rows"):
        region_spectrum(si, (2, 1), (0, 1))


def test_real_si_and_survey(tm_si_path):
    from mmspec_widgets.io import load

    si = load(tm_si_path)
    survey = load(tm_si_path.parent / "TM ADF Image (SI Survey).dm3")
    ex = Explorer(si, survey)
    ex.grid_source.selected.indices = [si.sizes["x"] + 10]  # row 1, col 10: inside the particle
    assert ex.pixel == (1, 10)
    np.testing.assert_allclose(ex.result.values, si.isel(y=1, x=10).values)
    # the first pixels are nearly vacuum: far fewer counts than the particle
    vacuum = float(ex.map_source.data["image"][0][0, 0])
    inside = float(ex.map_source.data["image"][0][1, 10])
    assert inside > 20 * vacuum


def test_uncalibrated_energy_axis_is_said(si):
    from mmspec_widgets.widgets.explorer import energy_calibration_note

    raw = si.copy()
    raw.attrs["history"] = []
    ex = Explorer(raw)
    assert "not calibrated" in ex.calibration_note
    assert "not calibrated" in ex.info.value
    assert "uncalibrated" in ex.lin_fig.xaxis[0].axis_label
    aligned = si.copy()
    aligned.attrs["history"] = [{"step": "align_zero_loss", "params": {}}]
    assert "zero-loss aligned" in energy_calibration_note(aligned)
    cal = si.copy()
    cal.attrs["history"] = [{"step": "align_zero_loss", "params": {}},
                            {"step": "apply_calibration", "params": {"offset_eV": 1.0}}]
    ex = Explorer(cal)
    assert ex.calibration_note == ""
    assert "calibrated" not in ex.info.value
    assert "uncalibrated" not in ex.lin_fig.xaxis[0].axis_label


def test_real_calibrated_si_is_not_flagged(tm_si_path, zlp_si_path):
    import mmspec_widgets as mm
    from mmspec_widgets.widgets.explorer import energy_calibration_note

    si = mm.load(tm_si_path)
    assert energy_calibration_note(si)
    cal = mm.calibrate(si, zlp=mm.load(zlp_si_path),
                       references={"O_K": 530.0, "Ni_L3": 853.5})
    assert energy_calibration_note(cal) == ""
