"""mmspec_widgets.io.load on the real NMC files and on generated files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mmspec_widgets.errors import DataError
from mmspec_widgets.io import load, load_zlp_pair


def _common_attrs(da, path):
    assert Path(da.attrs["source_file"]).resolve() == path.resolve()
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


# ------------------------------------------------------------- synthetic XAS
def _edge(e, e0=532.0):
    """A smooth K-edge-like curve: step plus a pre-edge peak (arbitrary units)."""
    return 1.0 / (1.0 + np.exp(-(e - e0))) + 0.3 * np.exp(-((e - (e0 - 2)) ** 2))


E = np.round(np.arange(525.0, 560.0, 0.5), 6)


def _write(path, text):
    path.write_text(text)
    return path


def test_xas_csv_named_columns(tmp_path):
    mu = _edge(E)
    body = "\n".join(f"{e},{m:.8f},{0.0}" for e, m in zip(E, mu, strict=True))
    path = _write(tmp_path / "ok.csv", "Energy (eV),mu(E),other\n" + body + "\n")
    da = load(path)
    assert da.dims == ("energy",) and da.sizes["energy"] == E.size
    np.testing.assert_allclose(da.energy.values, E)
    np.testing.assert_allclose(da.values, mu, atol=1e-8)
    assert da.energy.attrs == {"units": "eV", "long_name": "Photon energy"}
    assert da.attrs["signal_type"] == "XAS"
    assert da.attrs["energy_column"] == "Energy (eV)" and da.attrs["mu_column"] == "mu(E)"
    assert da.attrs["dispersion_eV"] == pytest.approx(0.5)
    _common_attrs(da, path)


def test_xas_txt_header_kev_and_transmission(tmp_path):
    mu = _edge(E)
    i0 = 1e5 * (1 + 0.01 * np.sin(E))
    it = i0 * np.exp(-mu)
    body = "\n".join(f"{e / 1000:.7f}  {a:.4f}  {b:.4f}" for e, a, b in zip(E, i0, it, strict=True))
    path = _write(tmp_path / "scan.txt",
                  "# beamline export\n# sample: NMC622\n#  energy   I0   It\n" + body + "\n")
    da = load(path)
    np.testing.assert_allclose(da.energy.values, E, atol=1e-3)  # keV -> eV
    np.testing.assert_allclose(da.values, mu, atol=1e-6)  # ln(I0/It)
    assert da.attrs["energy_units_in_file"] == "keV"
    assert da.attrs["mu_source"] == "ln(I0/It)"


def test_xas_fluorescence_and_overrides(tmp_path):
    mu = _edge(E)
    i0 = np.full(E.size, 2.0e4)
    body = "\n".join(f"{e}\t{a}\t{a * m}\t{m * 3}" for e, a, m in zip(E, i0, mu, strict=True))
    path = _write(tmp_path / "fy.dat", "E\tI0\tTFY\tsomething\n" + body + "\n")
    da = load(path)
    np.testing.assert_allclose(da.values, mu, rtol=1e-6)
    assert da.attrs["mu_source"] == "TFY/I0"
    # explicit column choice by name and by index
    np.testing.assert_allclose(load(path, mu="something").values, 3 * mu, rtol=1e-6)
    np.testing.assert_allclose(load(path, energy=0, mu=3).values, 3 * mu, rtol=1e-6)


def test_xas_several_mu_columns(tmp_path):
    mu = _edge(E)
    body = "\n".join(f"{e} {m} {1.1 * m} {0.9 * m}" for e, m in zip(E, mu, strict=True))
    path = _write(tmp_path / "multi.xmu", "# energy mu1 mu2 mu3\n" + body + "\n")
    da = load(path)
    assert da.dims == ("scan", "energy") and da.shape == (3, E.size)
    assert list(da.scan_label.values) == ["mu1", "mu2", "mu3"]
    np.testing.assert_allclose(da.isel(scan=1).values, 1.1 * mu)


def test_xas_repeated_blocks_and_lazy(tmp_path):
    mu = _edge(E)
    block = "\n".join(f"{e} {m}" for e, m in zip(E, mu, strict=True))
    block2 = "\n".join(f"{e} {m + 0.01}" for e, m in zip(E, mu, strict=True))
    path = _write(tmp_path / "rep.nor", "# energy norm\n" + block + "\n\n# energy norm\n" + block2)
    da = load(path)
    assert da.dims == ("scan", "energy") and da.shape == (2, E.size)
    np.testing.assert_allclose((da.isel(scan=1) - da.isel(scan=0)).values, 0.01, atol=1e-12)
    lazy = load(path, lazy=True)
    assert lazy.chunks is not None
    xr.testing.assert_identical(lazy.compute(), da)


def test_xas_blocks_on_different_grids_are_interpolated(tmp_path):
    mu = _edge(E)
    e2 = E[2:] + 0.25
    block = "\n".join(f"{e} {m}" for e, m in zip(E, mu, strict=True))
    block2 = "\n".join(f"{e} {m}" for e, m in zip(e2, _edge(e2), strict=True))
    path = _write(tmp_path / "shift.dat", "energy mu\n" + block + "\n" + block2 + "\n")
    with pytest.warns(UserWarning, match="interpolated"):
        da = load(path)
    assert da.dims == ("scan", "energy")
    assert float(da.energy[0]) >= e2[0] and float(da.energy[-1]) <= E[-1]
    np.testing.assert_allclose(da.isel(scan=1).values, _edge(da.energy.values), atol=0.05)


def test_xdi(tmp_path):
    e = np.arange(8320.0, 8400.0, 0.5)
    mu = _edge(e, 8345.0)
    header = """# XDI/1.0 GSE/1.0
# Column.1: energy eV
# Column.2: i0
# Column.3: itrans
# Column.4: mutrans
# Element.symbol: Ni
# Element.edge: K
# Mono.d_spacing: 3.13555
# Mono.name: Si 111
# Scan.start_time: 2021-06-26T22:27:31
# Sample.name: NMC811 pristine
# ///
# synthetic scan
#----
# energy i0 itrans mutrans
"""
    body = "\n".join(f"{a:.2f} 100000.0 {1e5 * np.exp(-m):.4f} {m:.7f}" for a, m in zip(e, mu, strict=True))
    path = _write(tmp_path / "ni.xdi", header + body + "\n")
    da = load(path)
    assert da.dims == ("energy",)
    np.testing.assert_allclose(da.energy.values, e)
    np.testing.assert_allclose(da.values, mu, atol=1e-6)
    a = da.attrs
    assert (a["element"], a["edge"]) == ("Ni", "K")
    assert a["mono_d_spacing_A"] == pytest.approx(3.13555)
    assert a["xdi_mono_name"] == "Si 111"
    assert a["title"] == "NMC811 pristine"
    assert (a["acquisition_date"], a["acquisition_time"]) == ("2021-06-26", "22:27:31")
    assert a["mu_column"] == "mutrans"
    _common_attrs(da, path)
    # a second absorption column -> scans
    two = load(path, mu=["mutrans", 3])
    assert two.dims == ("scan", "energy") and two.sizes["scan"] == 2


def test_xas_file_unchanged(tmp_path):
    path = _write(tmp_path / "u.csv", "energy,mu\n" + "\n".join(f"{e},{m}" for e, m in
                                                               zip(E, _edge(E), strict=True)))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    load(path)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_electrochem_csv_is_not_xas(shared_data):
    # cycling tables are registry data, not spectra: a clear error, not garbage
    from mmspec_widgets.errors import FileFormatError

    with pytest.raises(FileFormatError, match="622.csv"):
        load(shared_data / "nmc-electrochem" / "622.csv")


def test_save_keeps_history_as_json_and_refuses_the_input_file(tmp_path, tm_si_path):
    import json

    import mmspec_widgets as mm
    from mmspec_widgets.errors import FileFormatError

    si = mm.load(tm_si_path)
    sub = mm.subtract_background(si, window=(600, 632))
    out = mm.save(sub.rename("signal"), tmp_path / "sub.nc")
    back = xr.load_dataset(out, engine="h5netcdf")
    hist = json.loads(back.attrs["history"])
    assert hist[-1]["step"] == "subtract_background"
    np.testing.assert_allclose(back["signal"].values, sub.values)
    src = si.assign_attrs(source_file=str(tmp_path / "mine.nc"))
    with pytest.raises(FileFormatError, match="read from"):
        mm.save(src, tmp_path / "mine.nc")
    with pytest.raises(FileFormatError, match="expected .nc"):
        mm.save(si, tmp_path / "x.h5")
