"""Bad input to the processing functions: clear errors naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.errors import DataError, MMSpecError
from tests._synth import eels_si


@pytest.fixture
def si():
    return eels_si(ny=2, nx=3)[0]


def test_window_outside_data(si):
    with pytest.raises(DataError, match=r"window=\(100, 200\) eV lies outside .*440"):
        mm.subtract_background(si, window=(100, 200))
    with pytest.raises(DataError, match="window"):
        mm.subtract_background(si, window=(630, 600))
    with pytest.raises(DataError, match="window"):
        mm.subtract_background(si, window=(600, 600.5))
    with pytest.raises(DataError, match="window"):
        mm.subtract_background(si, window="600-630")


def test_nan_and_inf_rejected(si):
    d = si.values.copy()
    d[0, 1, 100] = np.nan
    d[1, 1, 5] = np.inf
    with pytest.raises(DataError, match=r"si: holds 2 NaN/inf"):
        mm.subtract_background(si.copy(data=d), window=(560, 630))
    with pytest.raises(DataError, match="NaN/inf"):
        mm.calibrate(si.copy(data=d), references={"O_K": 530.0, "Ni_L3": 853.5})
    # a mask that drops (0, 1) but keeps (1, 1): still an error, for usable pixels
    keep = np.ones((2, 3), bool)
    keep[0, 1] = False
    with pytest.raises(DataError, match="si: holds 1 NaN/inf values in usable pixels"):
        mm.subtract_background(si.copy(data=d), window=(560, 630), mask=keep)
    keep[1, 1] = False
    out = mm.subtract_background(si.copy(data=d), window=(560, 630), mask=keep)
    assert np.isnan(out.values[~keep]).all() and np.isfinite(out.values[keep]).all()
    with pytest.raises(DataError, match=r"mask: expected shape \(2, 3\)"):
        mm.subtract_background(si, window=(560, 630), mask=np.ones((3, 2), bool))
    with pytest.raises(MMSpecError, match="mask='everything'"):
        mm.subtract_background(si, window=(560, 630), mask="everything")


def test_all_zero_pixels_give_nan_not_garbage(si):
    d = si.values.copy()
    d[1, 2] = 0
    with pytest.warns(UserWarning, match="1 pixel"):
        out = mm.subtract_background(si.copy(data=d), window=(560, 630))
    assert np.isnan(out.values[1, 2]).all()
    with pytest.warns(UserWarning, match="1 of 6 pixels have too few counts"):
        ds = mm.extract_edges(si.copy(data=d), edges=["Mn_L23"])
    assert np.isnan(ds["Mn_L23"].values[1, 2]).all()
    assert np.isfinite(ds["Mn_L23"].values[0, 0]).all()


def test_mismatched_zero_loss_shape(si):
    zlp = xr.DataArray(np.ones((3, 3, 100)), dims=("y", "x", "energy"),
                       coords={"energy": np.linspace(-10, 20, 100)})
    with pytest.raises(DataError, match=r"zlp: navigation shape .*'y': 3.* does not match .*'y': 2"):
        mm.calibrate(si, zlp=zlp)


def test_unknown_reference_and_edge(si):
    with pytest.raises(MMSpecError, match="unknown feature 'Fe_L3'"):
        mm.calibrate(si, references={"O_K": 530.0, "Fe_L3": 708.0})
    with pytest.raises(MMSpecError, match="unknown edge 'Fe_L23'"):
        mm.extract_edges(si, edges=["Fe_L23"])
    with pytest.raises(MMSpecError, match="references"):
        mm.calibrate(si, references={})
    with pytest.raises(MMSpecError, match="give zlp .*and/or references"):
        mm.calibrate(si)
    with pytest.raises(MMSpecError, match=r"references: 'O_K' -> 'low'"):
        mm.calibrate(si, references={"O_K": "low", "Ni_L3": 853.5})
    with pytest.raises(MMSpecError, match=r"window\['O_K'\]=\(540, 520\)"):
        mm.calibrate(si, references=["O_K", "Ni_L3"], window={"O_K": (540, 520)})
    with pytest.raises(MMSpecError, match="window: 'Mn_L3' is not one of the references"):
        mm.calibrate(si, references=["O_K", "Ni_L3"], window={"Mn_L3": (630, 650)})


def test_not_a_dataarray_or_no_energy():
    with pytest.raises(DataError, match="expected an xarray.DataArray"):
        mm.subtract_background(np.ones((3, 100)), window=(1, 2))
    da = xr.DataArray(np.ones((3, 4)), dims=("y", "x"))
    with pytest.raises(DataError, match="'energy' dimension"):
        mm.remove_spikes(da)


def test_grid_not_covered(si):
    with pytest.raises(DataError, match=r"energy_Ni_K: the standard grid 8325.*not covered"):
        mm.extract_edges(si, edges=["Ni_K"], background=None)


def test_bad_model_and_parameters(si):
    with pytest.raises(MMSpecError, match="model='gauss'"):
        mm.subtract_background(si, window=(560, 630), model="gauss")
    with pytest.raises(MMSpecError, match="threshold"):
        mm.remove_spikes(si, threshold=-1)
    with pytest.raises(MMSpecError, match="post_order=7"):
        mm.normalize_xas(si.isel(y=0), post_order=7)
    with pytest.raises(MMSpecError, match="search=0"):
        mm.calibrate(si, references={"O_K": 530.0, "Ni_L3": 853.5}, search=0)


def test_xas_windows_outside_the_scan():
    e = np.linspace(8300, 8400, 201)
    mu = xr.DataArray(0.5 + np.arctan((e - 8340) / 2) / np.pi, dims=("energy",),
                      coords={"energy": e})
    with pytest.raises(DataError, match="da: cannot place pre-edge .* post-edge"):
        mm.normalize_xas(mu, post=(200.0, 300.0))
    with pytest.raises(DataError, match="da: edge step .* expected > 0"):
        mm.normalize_xas(-mu, e0=8340.0)


def test_nan_pixels_allowed_only_where_masked(si):
    d = si.values.copy()
    d[0, 2, 300:310] = np.nan  # a pixel with a dead stretch
    bad = si.copy(data=d)
    # default mask: that pixel is unusable -> NaN edges, a warning, no error
    with pytest.warns(UserWarning, match="NaN/inf"):
        ds = mm.extract_edges(bad, edges=["Mn_L23"])
    assert np.isnan(ds["Mn_L23"].values[0, 2]).all()
    assert np.isfinite(ds["Mn_L23"].values[1, 2]).all()
    ref = mm.extract_edges(si, edges=["Mn_L23"])
    np.testing.assert_array_equal(ds["Mn_L23"].values[1], ref["Mn_L23"].values[1])
    # a mask that keeps the pixel, or no mask: DataError naming si
    keep = xr.DataArray(np.ones((2, 3), bool), dims=("y", "x"))
    with pytest.raises(DataError, match=r"si: 1 usable pixel\(s\) hold NaN/inf"):
        mm.extract_edges(bad, edges=["Mn_L23"], mask=keep)
    with pytest.raises(DataError, match="si: 1 usable pixel"):
        mm.extract_edges(bad, edges=["Mn_L23"], mask=False)


def test_extract_mask_of_the_wrong_shape_or_nothing_usable(si):
    with pytest.raises(DataError, match=r"mask: expected .*'y': 2.*got"):
        mm.extract_edges(si, edges=["Mn_L23"],
                         mask=xr.DataArray(np.ones((3, 3), bool), dims=("y", "x")))
    with pytest.raises(MMSpecError, match="mask='yes'"):
        mm.extract_edges(si, edges=["Mn_L23"], mask="yes")
    with pytest.raises(DataError, match="no usable pixel"), pytest.warns(UserWarning):
        mm.extract_edges(si * 0, edges=["Mn_L23"])
