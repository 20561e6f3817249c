from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.background import fit_background
from tests._synth import eels_si

# pre-edge fit window and edge region (eV, calibrated axis) of each edge of the real SI
REAL_EDGES = {"O_K": ((485.0, 522.0), (525.0, 565.0)),
              "Mn_L23": ((600.0, 632.0), (635.0, 680.0)),
              "Co_L23": ((740.0, 772.0), (775.0, 815.0)),
              "Ni_L23": ((815.0, 848.0), (850.0, 885.0))}


@pytest.fixture(scope="module")
def real_calibrated(tm_si_path, zlp_si_path):
    si, zlp = mm.load(tm_si_path), mm.load(zlp_si_path)
    cal = mm.calibrate(si, zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5})
    return cal, mm.mask_low_counts(cal).values


def _eels(da):
    """The same spectra as an exspy EELSSpectrum (uniform axis)."""
    import exspy

    e = da["energy"].values
    s = exspy.signals.EELSSpectrum(np.asarray(da.values))
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units = float(e[0]), float(np.mean(np.diff(e))), "eV"
    assert np.ptp(np.diff(e)) < 1e-9 * ax.scale  # the calibrated axis is uniform
    return s


@pytest.mark.parametrize("method", ["two_area", "lstsq"])
def test_powerlaw_recovers_known_background(method):
    si, bkg, edge = eels_si(noise=False, dtype=np.float64)
    out = mm.subtract_background(si, window=(560.0, 630.0), method=method)
    e = si.energy.values
    m = (e > 600) & (e < 700)
    # what remains after the background is the edge (to 0.5 % of the edge)
    err = np.abs(out.values[..., m] - edge[m]).max()
    assert err < 0.005 * edge[m].max()
    p = fit_background(si, (560.0, 630.0), method=method)
    np.testing.assert_allclose(p.sel(param="r").values, 3.0, atol=2e-3)


def test_polynomial_and_exponential_models():
    e = np.linspace(100, 200, 501)
    poly = 5 + 0.1 * e - 2e-4 * e**2
    da = xr.DataArray(np.tile(poly, (2, 1)), dims=("scan", "energy"), coords={"energy": e})
    out = mm.subtract_background(da, window=(100, 150), model="polynomial", order=2)
    np.testing.assert_allclose(out.values, 0.0, atol=1e-8)
    expo = 1e4 * np.exp(-e / 37.0)
    da = xr.DataArray(expo, dims=("energy",), coords={"energy": e})
    out = mm.subtract_background(da, window=(100, 150), model="exponential")
    np.testing.assert_allclose(out.values, 0.0, atol=1e-6 * expo.max())


def test_vectorised_equals_pixel_by_pixel_and_dask():
    si, _, _ = eels_si(ny=4, nx=5)
    full = mm.subtract_background(si, window=(560.0, 630.0))
    one = mm.subtract_background(si.isel(y=2, x=3), window=(560.0, 630.0))
    np.testing.assert_allclose(full.isel(y=2, x=3).values, one.values, rtol=1e-5, atol=1e-2)
    lazy = si.copy(data=dsa.from_array(si.values, chunks=(2, 2, -1)))
    out = mm.subtract_background(lazy, window=(560.0, 630.0))
    assert isinstance(out.data, dsa.Array)
    np.testing.assert_allclose(out.values, full.values, rtol=1e-5, atol=1e-2)


def test_dask_chunked_along_energy_and_auto_mask():
    si, _, _ = eels_si(ny=2, nx=4)
    d = si.values.copy()
    d[1, 3] *= 0.001  # vacuum
    d[0, 0, 700:705] = np.nan  # a broken pixel
    si = si.copy(data=d)
    with pytest.warns(UserWarning, match="2 of 8 pixel"):
        full = mm.subtract_background(si, window=(560.0, 630.0), mask="auto")
    assert np.isnan(full.values[1, 3]).all() and np.isnan(full.values[0, 0]).all()
    assert np.isfinite(full.values[0, 1:]).all()
    lazy = si.chunk({"y": 1, "energy": 512})
    with pytest.warns(UserWarning, match="2 of 8 pixel"):
        out = mm.subtract_background(lazy, window=(560.0, 630.0), mask="auto",
                                     method="lstsq")
    assert isinstance(out.data, dsa.Array)
    ref = mm.subtract_background(si.fillna(1.0), window=(560.0, 630.0), method="lstsq")
    np.testing.assert_allclose(out.values[0, 1:], ref.values[0, 1:], rtol=1e-5)
    assert np.isnan(out.values[0, 0]).all()


def test_history_and_input_untouched():
    si, _, _ = eels_si()
    before = si.values.copy()
    out = mm.subtract_background(si, window=(560.0, 630.0), return_background=True)
    assert set(out) == {"signal", "background", "params"}
    assert out["signal"].attrs["history"][-1]["step"] == "subtract_background"
    assert out["signal"].attrs["history"][-1]["params"]["window"] == [560.0, 630.0]
    assert si.attrs["history"] == []
    np.testing.assert_array_equal(si.values, before)


def test_spikes_removed_edges_kept():
    si, _, edge = eels_si(seed=3)
    spiky = si.copy(data=si.values.copy())
    rng = np.random.default_rng(1)
    pos = rng.integers(50, 2000, size=(si.sizes["y"], si.sizes["x"]))
    for (iy, ix), c in np.ndenumerate(pos):
        spiky.values[iy, ix, c] += 30 * np.sqrt(spiky.values[iy, ix, c]) + 500
    clean = mm.remove_spikes(spiky)
    for (iy, ix), c in np.ndenumerate(pos):
        assert abs(clean.values[iy, ix, c] - si.values[iy, ix, c]) < 6 * np.sqrt(si.values[iy, ix, c])
    # the white line (2 eV wide) is no spike: the edge region is nearly untouched
    e = si.energy.values
    m = (e > 630) & (e < 660)
    changed = (clean.values[..., m] != spiky.values[..., m]).mean()
    assert changed < 0.01
    assert clean.attrs["history"][-1]["params"]["n_replaced"] >= pos.size
    # one arithmetic: lazy (dask) spectra are despiked by the same kernel
    lazy = mm.remove_spikes(spiky.chunk({"y": 1}))
    assert lazy.attrs["history"][-1]["params"]["n_replaced"] is None  # unknown until computed
    np.testing.assert_array_equal(lazy.values, clean.values)
    # the count is the channels that changed
    assert clean.attrs["history"][-1]["params"]["n_replaced"] == int(
        (clean.values != spiky.values.astype(clean.dtype)).sum())


def test_low_count_mask_flags_vacuum_and_zero_pixels():
    si, _, _ = eels_si(ny=2, nx=5)
    d = si.values.copy()
    d[0, 0] *= 0.01  # vacuum
    d[1, 4] = 0  # all zero
    si = si.copy(data=d)
    mask = mm.mask_low_counts(si)
    assert not mask.values[0, 0] and not mask.values[1, 4]
    assert mask.values.sum() == 8
    with pytest.warns(UserWarning, match="fit failed"):
        out = mm.subtract_background(si, window=(560.0, 630.0))
    assert np.isnan(out.values[1, 4]).all()
    out = mm.subtract_background(si, window=(560.0, 630.0), mask=mask)
    assert np.isnan(out.values[0, 0]).all() and np.isfinite(out.values[1, 1]).all()


def test_xas_normalisation_gives_unit_step():
    e = np.linspace(8200, 8500, 601)
    mu = 0.2 + 1e-4 * (e - 8200) + 1.7 * (0.5 + np.arctan((e - 8340) / 2) / np.pi)
    scans = xr.DataArray(np.stack([mu, 2 * mu]), dims=("scan", "energy"), coords={"energy": e})
    out = mm.normalize_xas(scans)
    assert out.attrs["e0"] == pytest.approx([8340.0, 8340.0], abs=1.0)
    post = out.sel(energy=slice(8420, 8480)).values
    np.testing.assert_allclose(post, 1.0, atol=0.02)
    pre = out.sel(energy=slice(8210, 8300)).values
    np.testing.assert_allclose(pre, 0.0, atol=0.02)


def test_xas_normalisation_of_many_scans_at_once_equals_one_by_one():
    e = np.linspace(8200, 8500, 601)
    rng = np.random.default_rng(2)
    e0s = 8335 + 10 * rng.random(6)
    mu = np.stack([0.3 + 2e-4 * (e - 8200) + (1 + k) * (0.5 + np.arctan((e - x) / 2) / np.pi)
                   + 0.05 * np.exp(-(((e - x - 60) / 25) ** 2)) + rng.normal(0, 0.003, e.size)
                   for k, x in enumerate(e0s)])
    scans = xr.DataArray(mu, dims=("scan", "energy"), coords={"energy": e})
    out = mm.normalize_xas(scans, post=(40.0, 140.0))
    np.testing.assert_allclose(out.attrs["e0"], e0s, atol=1.0)
    np.testing.assert_allclose(out.attrs["edge_step"], 1 + np.arange(6), rtol=0.05)
    for k in range(6):
        one = mm.normalize_xas(scans.isel(scan=k), post=(40.0, 140.0))
        np.testing.assert_allclose(out.values[k], one.values, rtol=1e-9, atol=1e-12)
        assert one.attrs["e0"] == out.attrs["e0"][k]
    above = e > e0s.max() + 40
    np.testing.assert_allclose(out.values[:, above], 1.0, atol=0.05)


@pytest.mark.parametrize("edge", list(REAL_EDGES))
def test_powerlaw_agrees_with_exspy_fast_on_real_si(real_calibrated, edge):
    """Per particle pixel: max |ours - exspy| in the edge region <= 1 % of the
    pixel's largest background-subtracted edge signal."""
    cal, mask = real_calibrated
    window, region = REAL_EDGES[edge]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _eels(cal).remove_background(signal_range=window, background_type="Power law",
                                           fast=True, show_progressbar=False).data
    ours = mm.subtract_background(cal, window=window).values
    e = cal["energy"].values
    m = (e >= region[0]) & (e <= region[1])
    a, b = ref[..., m][mask], ours[..., m][mask]
    assert a.shape[0] == mask.sum() >= 30
    rel = np.abs(a - b).max(-1) / np.abs(a).max(-1)
    assert rel.max() <= 0.01, (edge, float(rel.max()))


def test_powerlaw_agrees_with_exspy_on_the_raw_file(tm_si_path):
    """exspy reading the file itself (recorded axis, window before Mn L3 there)."""
    import hyperspy.api as hs

    si = mm.load(tm_si_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = hs.load(tm_si_path).remove_background(
            signal_range=(590.0, 622.0), background_type="Power law", fast=True,
            show_progressbar=False).data
    ours = mm.subtract_background(si, window=(590.0, 622.0)).values
    e = si["energy"].values
    m = (e >= 622.0) & (e <= 670.0)
    mask = mm.mask_low_counts(si).values
    a, b = ref[..., m][mask], ours[..., m][mask]
    assert (np.abs(a - b).max(-1) / np.abs(a).max(-1)).max() <= 0.01


@pytest.mark.parametrize("edge", list(REAL_EDGES))
def test_lstsq_agrees_with_exspy_full_fit_on_the_summed_spectrum(real_calibrated, edge):
    """The count-weighted log-log fit is close to exspy's non-linear
    least-squares power law (fast=False) where the counts are high."""
    cal, mask = real_calibrated
    window, region = REAL_EDGES[edge]
    summed = cal.where(xr.DataArray(mask, dims=("y", "x"))).sum(("y", "x"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _eels(summed).remove_background(signal_range=window, background_type="Power law",
                                              fast=False, show_progressbar=False).data
    ours = mm.subtract_background(summed, window=window, method="lstsq").values
    e = cal["energy"].values
    m = (e >= region[0]) & (e <= region[1])
    assert np.abs(ref[m] - ours[m]).max() <= 0.01 * np.abs(ref[m]).max()
