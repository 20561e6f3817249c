"""The way back to HyperSpy: to_hyperspy, save as .hspy, load returns the same object."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.errors import DataError


@pytest.fixture(scope="module")
def calibrated(tm_si_path, zlp_si_path):
    si = mm.load(tm_si_path)
    zlp = mm.load(zlp_si_path)
    return mm.calibrate(si, zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5})


def _maps(ny=3, nx=5) -> xr.Dataset:
    rng = np.random.default_rng(1)
    shape = (ny, nx)
    score = rng.uniform(0.1, 4.0, shape)
    score[0, 0] = np.inf
    frac = rng.uniform(0, 1, shape)
    frac[0, 0] = np.nan
    ds = xr.Dataset(
        {"ni_fraction": (("y", "x"), frac, {"units": "fraction of TM"}),
         "ni_fraction_std": (("y", "x"), rng.uniform(0, 0.1, shape),
                             {"units": "fraction of TM", "long_name": "standard deviation"}),
         "ood_score": (("y", "x"), score),
         "ood": (("y", "x"), score > 1),
         "n_edges": (("y", "x"), rng.integers(0, 5, shape))},
        coords={"y": ("y", np.arange(ny) * 2.0459, {"units": "nm", "long_name": "y"}),
                "x": ("x", np.arange(nx) * 2.0459, {"units": "nm", "long_name": "x"})})
    ds.attrs = {"model_id": "mmspec-test", "edges": ["O_K", "Ni_L23"], "amounts_used": True,
                "history": [{"step": "learn.predict", "edges": ["O_K", "Ni_L23"]}]}
    return ds


def test_calibrated_si_becomes_an_eels_spectrum(calibrated):
    from exspy.signals import EELSSpectrum

    sig = mm.to_hyperspy(calibrated)
    assert isinstance(sig, EELSSpectrum)
    assert sig.data.shape == calibrated.shape  # (y, x, energy)
    e_ax = sig.axes_manager.signal_axes[0]
    energy = calibrated["energy"].values
    assert e_ax.units == "eV"
    np.testing.assert_allclose(e_ax.axis, energy, rtol=0, atol=1e-9)
    # the calibrated axis, not the recorded one (the O K pre-edge lands at 530 eV)
    assert e_ax.scale == pytest.approx(float(np.diff(energy).mean()), rel=1e-9)
    x_ax, y_ax = sig.axes_manager.navigation_axes
    assert (x_ax.name, y_ax.name) == ("x", "y")
    assert x_ax.units == "nm" and y_ax.units == "nm"
    np.testing.assert_allclose(x_ax.axis, calibrated["x"].values, atol=1e-9)
    hist = json.loads(sig.metadata.mmspec.history)
    assert [h["step"] for h in hist] == [h["step"] for h in calibrated.attrs["history"]]
    assert "apply_calibration" in [h["step"] for h in hist]
    assert sig.metadata.Acquisition_instrument.TEM.beam_energy == \
        calibrated.attrs["beam_energy_keV"]
    # the accessor gives the same signal
    assert calibrated.mmspec.to_hyperspy().axes_manager.signal_axes[0].offset == e_ax.offset


def test_calibrated_si_round_trips_through_hspy(calibrated, tmp_path):
    path = tmp_path / "calibrated.hspy"
    mm.to_hyperspy(calibrated).save(path)
    back = mm.load(path)
    assert isinstance(back, xr.DataArray)
    assert back.dims == calibrated.dims
    for d in calibrated.dims:
        np.testing.assert_allclose(back[d].values, calibrated[d].values, rtol=0, atol=1e-9)
        assert back[d].attrs.get("units") == calibrated[d].attrs.get("units")
    np.testing.assert_array_equal(back.values, calibrated.values)
    assert back.attrs["history"] == json.loads(json.dumps(calibrated.attrs["history"]))
    for k in ("beam_energy_keV", "signal_type", "title", "dispersion_eV"):
        assert back.attrs[k] == calibrated.attrs[k], k
    assert back.attrs["source_file"] == str(path)
    # and it goes on through the chain like the original
    assert back.mmspec.history == back.attrs["history"]


def test_maps_become_a_signal2d_stack_and_round_trip(tmp_path):
    import hyperspy.api as hs

    maps = _maps()
    sig = maps.mmspec.to_hyperspy()
    assert isinstance(sig, hs.signals.Signal2D)
    assert sig.axes_manager.navigation_shape == (len(maps.data_vars),)
    assert [a.units for a in sig.axes_manager.signal_axes] == ["nm", "nm"]
    assert json.loads(sig.metadata.mmspec.variables) == list(maps.data_vars)
    k = list(maps.data_vars).index("ni_fraction")
    np.testing.assert_array_equal(sig.inav[k].data, maps["ni_fraction"].values)

    path = tmp_path / "maps.hspy"
    sig.save(path)
    back = mm.load(path)
    assert isinstance(back, xr.Dataset)
    assert list(back.data_vars) == list(maps.data_vars)
    for n in maps.data_vars:
        assert back[n].dtype == maps[n].dtype, n
        np.testing.assert_array_equal(back[n].values, maps[n].values)
        assert back[n].attrs == maps[n].attrs, n
    for d in ("y", "x"):
        np.testing.assert_allclose(back[d].values, maps[d].values, atol=1e-12)
        assert back[d].attrs["units"] == "nm"
    assert back.attrs["history"] == maps.attrs["history"]
    assert back.attrs["model_id"] == "mmspec-test"
    assert back.attrs["edges"] == ["O_K", "Ni_L23"]


def test_plain_hspy_files_load_as_before(tmp_path):
    import hyperspy.api as hs

    sig = hs.signals.Signal1D(np.arange(12.0).reshape(3, 4))
    sig.axes_manager.signal_axes[0].units = "eV"
    sig.save(tmp_path / "plain.hspy")
    da = mm.load(tmp_path / "plain.hspy")
    assert da.dims == ("y", "x", "energy") and da.attrs["history"] == []


def test_bad_input_is_named():
    with pytest.raises(DataError, match="energy"):
        mm.to_hyperspy(xr.DataArray(np.zeros((2, 3)), dims=("y", "x")))
    with pytest.raises(DataError, match=r"\(y, x\)"):
        mm.to_hyperspy(xr.Dataset({"a": ("t", np.zeros(3))}))
