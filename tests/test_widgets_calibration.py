"""Calibration widget: driven through traits and Bokeh models, no browser."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from _widget_data import synthetic_si, synthetic_zlp

from mmspec_widgets.calibrate import calibrate
from mmspec_widgets.edges import FEATURES
from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.widgets import Calibration
from mmspec_widgets.widgets.calibration import suggest_references

OFFSET, SCALE = 1.5, 1.01  # E_true = OFFSET + SCALE * (E_recorded - zero-loss position)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(1)
    zpos = -3.0 + rng.uniform(-0.3, 0.3, size=(2, 6))
    si = synthetic_si(ny=2, nx=6, noise=False,
                      true_axis=lambda e, iy, ix: OFFSET + SCALE * (e - zpos[iy, ix]))
    return si, synthetic_zlp(zpos)


@pytest.fixture(scope="module")
def real(tm_si_path, zlp_si_path):
    from mmspec_widgets.io import load

    return load(tm_si_path), load(zlp_si_path)


def test_suggested_features_are_those_in_range():
    e = 440.0 + 0.3 * np.arange(2048)
    assert suggest_references(e) == sorted(FEATURES, key=lambda n: FEATURES[n]["energy"])[1:]
    assert "Li_K" not in suggest_references(e)
    assert suggest_references(np.linspace(600, 700, 100)) == ["Mn_L3", "Mn_L2"]


def test_recovers_offset_and_dispersion(pair):
    si, zlp = pair
    w = Calibration(si, zlp)
    assert w.references == {"O_K": 530.0, "Ni_L3": 853.5}
    assert w.windows == {"O_K": (510.0, 550.0), "Ni_L3": (833.5, 873.5)}
    cal = w.calibration
    assert cal["scale"] == pytest.approx(SCALE, abs=0.002)
    assert cal["offset_eV"] == pytest.approx(OFFSET, abs=1.0)
    # the calibrated axis puts the white lines where they belong
    res = w.result
    for name in ("O_K", "Mn_L3", "Ni_L3"):
        true = FEATURES[name]["energy"]
        seg = res.sum(("y", "x")).sel(energy=slice(true - 3, true + 3))
        assert float(seg.idxmax()) == pytest.approx(true, abs=0.4), name
    # zero-loss alignment happened first and is recorded
    steps = [h["step"] for h in res.attrs["history"]]
    assert steps == ["align_zero_loss", "apply_calibration"]
    assert np.median(w.zlp_positions.values) == pytest.approx(-3.0, abs=0.1)


def test_same_numbers_as_the_library(real):
    si, zlp = real
    w = Calibration(si, zlp)
    lib = calibrate(si, zlp=zlp, references=w.references)
    assert w.calibration["offset_eV"] == pytest.approx(lib.attrs["calibration_offset_eV"],
                                                       abs=1e-9)
    assert w.calibration["scale"] == pytest.approx(lib.attrs["calibration_scale"], abs=1e-12)
    np.testing.assert_allclose(w.result.energy.values, lib.energy.values)
    np.testing.assert_allclose(w.result.values, lib.values)


def test_checkbox_adds_a_feature_and_residuals_show(real):
    si, zlp = real
    w = Calibration(si, zlp)
    assert len(w.residual_source.data["target"]) == 2
    w.feature_boxes["Mn_L3"].value = True
    assert list(w.references) == ["O_K", "Mn_L3", "Ni_L3"]
    assert w.windows["Mn_L3"] == (622.5, 662.5)
    assert w.boxes["Mn_L3"].visible and not w.boxes["Co_L3"].visible
    resid = w.residual_source.data["residual"]
    assert len(resid) == 3 and max(abs(r) for r in resid) > 0.05
    lib = calibrate(si, zlp=zlp, references=w.references)
    assert w.calibration["scale"] == pytest.approx(lib.attrs["calibration_scale"], abs=1e-12)
    assert "E<sub>true</sub>" in w.fit_info.value and "Mn L3" in w.fit_info.value
    # the last feature cannot be unchecked away
    w.references = {"O_K": 530.0}
    w.feature_boxes["O_K"].value = False
    assert w.references == {"O_K": 530.0} and w.feature_boxes["O_K"].value
    assert w.calibration["scale"] == 1.0


def test_dragging_a_span_moves_the_search_window(real):
    si, zlp = real
    refs = ["O_K", "O_K_main", "Mn_L3", "Ni_L3"]
    w = Calibration(si, zlp, references=refs)
    assert w.moved_windows() == {}
    first = w.calibration["references"]["O_K_main"]["measured_eV"]
    # drag the O K main-peak span to 535 - 560 eV (the aligned axis)
    w.boxes["O_K_main"].left = 535.0
    w.boxes["O_K_main"].right = 560.0
    assert w.windows["O_K_main"] == (535.0, 560.0)
    assert w.moved_windows() == {"O_K_main": (535.0, 560.0)}
    moved = w.calibration["references"]["O_K_main"]["measured_eV"]
    assert 535.0 <= moved <= 560.0 and moved != first
    assert w.marker_source.data["x"][1] == pytest.approx(moved)
    # the same numbers as the library given that hand-placed window
    lib = calibrate(si, zlp=zlp, references=refs, window={"O_K_main": (535.0, 560.0)})
    assert w.calibration["scale"] == pytest.approx(lib.attrs["calibration_scale"], abs=1e-12)
    np.testing.assert_allclose(w.result.energy.values, lib.energy.values)
    # a span dragged off the axis is refused and snaps back
    w.boxes["O_K_main"].right = 2000.0
    assert w.windows["O_K_main"] == (535.0, 560.0)
    assert w.boxes["O_K_main"].right == 560.0
    assert "Span not moved" in w.status.value and "windows" in w.status.value


def test_without_zero_loss_si(pair):
    si, _ = pair
    w = Calibration(si, references={"O_K": 530.0, "Mn_L3": 642.5})
    assert w.zlp_fig is None and w.aligned is w.si
    assert [h["step"] for h in w.result.attrs["history"]] == ["apply_calibration"]
    assert w.calibration["scale"] == pytest.approx(SCALE, abs=0.01)


def test_input_not_modified(pair):
    si, zlp = pair
    before = si.copy(deep=True)
    Calibration(si, zlp)
    xr.testing.assert_identical(si, before)


def test_bad_inputs(pair):
    si, zlp = pair
    with pytest.raises(DataError, match="zlp"):
        Calibration(si, zlp.isel(x=slice(0, 3)))
    with pytest.raises(MMSpecError, match="unknown feature"):
        Calibration(si, zlp, references=["Fe_L3"])
    with pytest.raises(DataError, match="Li_K"):
        Calibration(si, zlp, references={"Li_K": 58.0})
    with pytest.raises(DataError, match="no reference feature"):
        Calibration(si.sel(energy=slice(440, 470)))
    w = Calibration(si, zlp)
    with pytest.raises(DataError, match="windows"):
        w.windows = {"O_K": (300.0, 320.0)}
