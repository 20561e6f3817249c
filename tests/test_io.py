"""mmspec_widgets.io.load on the real NMC files and on generated files."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets.errors import DataError
from mmspec_widgets.io import load, load_zlp_pair


def _common_attrs(da, path):
    assert da.attrs["source_file"] == str(path.resolve())
    assert da.attrs["history"] == []
    assert isinstance(da.attrs["title"], str) and da.attrs["title"]
    for key, value in da.attrs.items():
        if key != "history":
            assert isinstance(value, (str, int, float)), (key, value)
    assert json.loads(json.dumps({k: v for k, v in da.attrs.items()}))


# ---------------------------------------------------------------- real EELS
def test_tm_si(tm_si_path):
    si = load(tm_si_path)
    assert isinstance(si, xr.DataArray)
    assert si.dims == ("y", "x", "energy")
    assert si.sizes == {"y": 2, "x": 21, "energy": 2048}
    e = si["energy"]
    assert e.dtype == np.float64
    assert e.attrs["units"] == "eV" and e.attrs["long_name"] == "Energy loss"
    assert abs(float(e[0]) - 440.0) < 0.3 and abs(float(e[-1]) - 1054.1) < 0.3
    assert np.allclose(np.diff(e.values), 0.3, atol=1e-6)
    for dim in ("x", "y"):
        assert si[dim].attrs["units"] == "nm"
    assert np.allclose(np.diff(si["x"].values), 2.0459, atol=1e-3)
    assert np.allclose(np.diff(si["y"].values), 2.0459, atol=1e-3)
    a = si.attrs
    assert a["signal_type"] == "EELS"
    assert a["beam_energy_keV"] == pytest.approx(300.0)
    assert a["collection_angle_mrad"] == pytest.approx(100.0)
    assert a["dispersion_eV"] == pytest.approx(0.3)
    assert a["dwell_time_s"] == pytest.approx(5.0)
    assert a["acquisition_date"] == "2017-12-19"
    assert a["acquisition_time"] == "12:02:18"
    assert "Tecnai" in a["microscope"]
    assert a["detector"] == "GIF Quantum ER"
    # DM records 0 mrad when the convergence angle was not entered: left out
    assert "convergence_angle_mrad" not in a
    _common_attrs(si, tm_si_path)
    # vacuum at the start of the line scan, particle further on
    totals = si.sum("energy").values
    assert totals[0, 0] < 0.01 * totals[:, 10:].min()


def test_tm_si_data_match_hyperspy(tm_si_path):
    import hyperspy.api as hs

    s = hs.load(str(tm_si_path))
    si = load(tm_si_path)
    np.testing.assert_array_equal(si.values, s.data)
    ax = s.axes_manager.signal_axes[0]
    np.testing.assert_allclose(si["energy"].values, ax.axis, atol=1e-4)


def test_zlp_si(zlp_si_path):
    si = load(zlp_si_path)
    assert si.sizes == {"y": 2, "x": 21, "energy": 2048}
    assert float(si.energy[0]) == pytest.approx(-60.0, abs=1e-3)
    assert si.attrs["dwell_time_s"] == pytest.approx(5e-4)
    # the zero-loss peak sits a few eV below 0 (uncalibrated axis)
    peak = si.isel(y=0, x=10).idxmax("energy")
    assert -6.0 < float(peak) < 1.0


def test_si_si(si_si_path):
    si = load(si_si_path)
    assert si.sizes == {"y": 2, "x": 28, "energy": 2048}
    assert float(si.energy[0]) == pytest.approx(35.0, abs=0.3)
    assert np.allclose(np.diff(si["x"].values), 1.491, atol=1e-3)
    assert si.attrs["dwell_time_s"] == pytest.approx(0.05)


def test_zlp_pair(tm_si_path, zlp_si_path, si_si_path):
    core, zlp = load_zlp_pair(tm_si_path, zlp_si_path)
    assert core.sizes["x"] == zlp.sizes["x"] == 21
    assert float(zlp.energy[0]) < 0 < float(core.energy[0])
    with pytest.raises(DataError, match="same scan"):
        load_zlp_pair(si_si_path, zlp_si_path)


def test_three_signal_file(shared_data):
    path = shared_data / "nmc-eels-si" / "Si" / "(1) Spectrum of EELS Spectrum Image.dm3"
    out = load(path)
    assert isinstance(out, list) and len(out) == 3
    assert [d.attrs["signal_index"] for d in out] == [0, 1, 2]
    titles = [d.attrs["title"] for d in out]
    assert titles[1] == "Bkgd Spectrum" and titles[2] == "Edge Spectrum"
    for d in out:
        assert d.dims == ("energy",) and d.sizes["energy"] == 2048
        _common_attrs(d, path)
    # the edge spectrum is the spectrum minus the background where both exist
    one = load(path, signal=2)
    assert isinstance(one, xr.DataArray) and one.attrs["title"] == "Edge Spectrum"
    np.testing.assert_array_equal(one.values, out[2].values)


def test_msa(shared_data):
    path = shared_data / "nmc-eels-si" / "TM" / "Extracted Spectrum 1.msa"
    sp = load(path)
    assert sp.dims == ("energy",) and sp.sizes["energy"] == 2048
    assert float(sp.energy[0]) == pytest.approx(440.0)
    assert sp.attrs["signal_type"] == "EELS"
    assert sp.attrs["dispersion_eV"] == pytest.approx(0.3)
    # Gatan writes BEAMKV in volts; the loader reports kV
    assert sp.attrs["beam_energy_keV"] == pytest.approx(300.0)
    _common_attrs(sp, path)
    # msa values agree with the column text in the file
    rows = [ln for ln in path.read_text().splitlines() if ln[:1].isdigit()]
    first = [float(v) for v in rows[0].split(",")]
    assert float(sp.energy[0]) == pytest.approx(first[0])
    assert float(sp[0]) == pytest.approx(first[1])


def test_survey_image(shared_data):
    path = shared_data / "nmc-eels-si" / "TM" / "TM ADF Image (SI Survey).dm3"
    img = load(path)
    assert img.dims == ("y", "x") and img.shape == (512, 512)
    assert img.attrs["signal_type"] == "image"
    assert img.x.attrs["units"] == "nm"
    assert float(img.x[1] - img.x[0]) == pytest.approx(0.32417, abs=1e-4)
    assert "energy" not in img.coords
    _common_attrs(img, path)


def test_adf_image_um_to_nm(shared_data):
    img = load(shared_data / "nmc-eels-si" / "TM" / "ADF Image.dm3")
    assert img.shape == (2, 21)
    # the file says 0.0020459 µm per pixel
    assert float(img.x[1]) == pytest.approx(2.0459, abs=1e-3)


def test_lazy_equals_eager(tm_si_path):
    import dask.array as dsa

    eager = load(tm_si_path)
    lazy = load(tm_si_path, lazy=True)
    assert isinstance(lazy.data, dsa.Array)
    assert lazy.data.chunks[-1] == (2048,)  # never split over energy
    assert lazy.dims == eager.dims
    xr.testing.assert_identical(lazy.compute(), eager)


def test_load_does_not_modify_file(tm_si_path):
    before = (tm_si_path.read_bytes(), os.stat(tm_si_path).st_mtime_ns)
    load(tm_si_path)
    load(tm_si_path, lazy=True).compute()
    assert (tm_si_path.read_bytes(), os.stat(tm_si_path).st_mtime_ns) == before


# ----------------------------------------------------------- hspy round trip
def _hs_signal(shape, units_nav="µm", units_sig="eV", scale_sig=0.25, offset_sig=520.0):
    import hyperspy.api as hs

    rng = np.random.default_rng(0)
    data = rng.random(shape).astype(np.float32)
    s = hs.signals.Signal1D(data)
    for ax in s.axes_manager.navigation_axes:
        ax.units, ax.scale = units_nav, 0.0015
    sax = s.axes_manager.signal_axes[0]
    sax.units, sax.scale, sax.offset, sax.name = units_sig, scale_sig, offset_sig, "Energy loss"
    s.set_signal_type("EELS")
    s.metadata.General.title = "synthetic SI"
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EELS.collection_angle", 25.0)
    s.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", 21.4)
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EELS.dwell_time", 0.01)
    return s


def test_hspy_round_trip(tmp_path):
    s = _hs_signal((3, 4, 50))
    path = tmp_path / "si.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(path)
    da = load(path)
    assert da.dims == ("y", "x", "energy") and da.shape == (3, 4, 50)
    np.testing.assert_array_equal(da.values, s.data)
    np.testing.assert_allclose(da.energy.values, 520.0 + 0.25 * np.arange(50))
    np.testing.assert_allclose(da.x.values, 1.5 * np.arange(4))  # µm -> nm
    a = da.attrs
    assert a["title"] == "synthetic SI" and a["signal_type"] == "EELS"
    assert a["beam_energy_keV"] == 200.0 and a["collection_angle_mrad"] == 25.0
    assert a["convergence_angle_mrad"] == 21.4 and a["dwell_time_s"] == 0.01
    assert a["dispersion_eV"] == pytest.approx(0.25)
    lazy = load(path, lazy=True)
    xr.testing.assert_identical(lazy.compute(), da)


def test_hspy_kev_axis_line_scan_and_uncalibrated(tmp_path):
    s = _hs_signal((5, 40), units_nav="<undefined>", units_sig="keV", scale_sig=0.001,
                   offset_sig=0.5)
    s.axes_manager.navigation_axes[0].scale = 1.0
    path = tmp_path / "line.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(path)
    da = load(path)
    # one navigation axis -> y of length one
    assert da.dims == ("y", "x", "energy") and da.shape == (1, 5, 40)
    np.testing.assert_allclose(da.energy.values, 500.0 + np.arange(40))
    assert da.x.attrs["units"] == "px"
    np.testing.assert_array_equal(da.x.values, np.arange(5))
    np.testing.assert_array_equal(da.values[0], s.data)
