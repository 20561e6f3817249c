from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.edges import edge_grid
from mmspec_widgets.extract import normalize_edge, resample_to_grid
from tests._synth import eels_si


def test_extract_layout_grid_and_normalisation():
    si, _, _ = eels_si(ny=2, nx=3, edge_at=640.0)
    ds = mm.extract_edges(si, edges=["Mn_L23", "O_K"])
    edges_vars = [v for v in ds.data_vars if not str(v).startswith("jump_")]
    assert edges_vars == ["O_K", "Mn_L23"]  # edge-table order
    # the jump is the level post_edge divided by, read from the unnormalised edge
    raw = mm.extract_edges(si, edges=["Mn_L23", "O_K"], normalize=None)
    m = raw["Mn_L23"].values
    k = m.shape[-1]
    np.testing.assert_allclose(ds["jump_Mn_L23"].values, m[..., k - max(3, k // 10):].mean(-1),
                               rtol=1e-6)
    assert ds["jump_Mn_L23"].dims == ("y", "x") and (ds["jump_Mn_L23"].values > 0).all()
    assert ds["Mn_L23"].dims == ("y", "x", "energy_Mn_L23")
    np.testing.assert_allclose(ds["energy_Mn_L23"].values, edge_grid("Mn_L23"))
    assert ds["energy_Mn_L23"].attrs["units"] == "eV"
    v = ds["Mn_L23"].values
    n = v.shape[-1]
    np.testing.assert_allclose(v[..., n - n // 10:].mean(-1), 1.0, rtol=1e-5)
    # white line ~ 4x the step, at 642 eV
    e = ds["energy_Mn_L23"].values
    assert abs(e[v[0, 0].argmax()] - 642.0) < 0.5
    assert ds.attrs["history"][-1]["step"] == "extract_edges"
    assert ds.attrs["edges"] == ["O_K", "Mn_L23"]


def test_leading_dims_scan_and_single():
    si, _, _ = eels_si(ny=1, nx=3)
    scans = si.isel(y=0).rename(x="scan")
    ds = mm.extract_edges(scans, edges=["Mn_L23"], mask=False)
    assert ds["Mn_L23"].dims == ("scan", "energy_Mn_L23")
    one = mm.extract_edges(si.isel(y=0, x=1), edges=["Mn_L23"])
    assert one["Mn_L23"].dims == ("energy_Mn_L23",)
    np.testing.assert_allclose(one["Mn_L23"].values, ds["Mn_L23"].values[1], rtol=1e-5)


def test_resample_is_linear_interpolation():
    e = np.linspace(600, 700, 201)
    da = xr.DataArray(np.stack([e, 2 * e]), dims=("scan", "energy"), coords={"energy": e})
    out = resample_to_grid(da, edge_grid("Mn_L23"), "energy_Mn_L23")
    np.testing.assert_allclose(out.values[1], 2 * edge_grid("Mn_L23"), rtol=1e-12)


def test_normalize_methods():
    g = edge_grid("O_K")
    da = xr.DataArray(np.linspace(1, 3, g.size), dims=("energy_O_K",), coords={"energy_O_K": g})
    assert float(normalize_edge(da, "O_K", "max").max()) == pytest.approx(1.0)
    assert float(normalize_edge(da, "O_K", "area").mean()) == pytest.approx(1.0)
    with pytest.raises(mm.MMSpecError, match="normalize"):
        normalize_edge(da, "O_K", "l2")


def test_accessor_is_the_same_chain():
    si, _, _ = eels_si(ny=2, nx=2)
    a = si.mmspec.subtract_background((560, 630))
    b = mm.subtract_background(si, window=(560, 630))
    xr.testing.assert_identical(a, b)
    ds = si.mmspec.remove_spikes().mmspec.extract_edges(["Mn_L23"])
    assert [h["step"] for h in ds.attrs["history"]] == ["remove_spikes", "extract_edges"]
    assert si.mmspec.history == [] and a.mmspec.history[-1]["step"] == "subtract_background"
    xr.testing.assert_identical(si.mmspec.fit_background((560, 630)),
                                mm.background.fit_background(si, (560, 630)))
    grid = ds["Mn_L23"]
    xr.testing.assert_identical(grid.mmspec.normalize_edge("Mn_L23", "max"),
                                normalize_edge(grid, "Mn_L23", "max"))
    scans = si.isel(y=0).rename(x="scan")
    aligned, shifts = scans.mmspec.align_scans(max_shift=2.0)
    ref_aligned, ref_shifts = mm.align_scans(scans, max_shift=2.0)
    xr.testing.assert_identical(aligned, ref_aligned)
    xr.testing.assert_identical(shifts, ref_shifts)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_the_compiled_edge_kernel_is_background_resampling_and_normalisation(dtype, tol):
    """extract_edges runs the fused chain's per-edge kernel; by hand, with the
    labelled steps on the whole axis (background, interpolation, post-edge
    level), the same numbers to the working dtype's resolution."""
    si, _, _ = eels_si(ny=2, nx=3, edge_at=640.0)
    si = si.astype(dtype)
    ds = mm.extract_edges(si, edges=["Mn_L23"], mask=False)
    sub = mm.subtract_background(si, window=(590.0, 630.0))
    grid = edge_grid("Mn_L23")
    by_hand = resample_to_grid(sub, grid, "energy_Mn_L23")
    jump = by_hand.isel(energy_Mn_L23=slice(grid.size - max(3, grid.size // 10), None)).mean(
        "energy_Mn_L23")
    by_hand = normalize_edge(by_hand, "Mn_L23", "post_edge")
    assert ds["Mn_L23"].dtype == np.dtype(dtype)
    scale = np.abs(by_hand.values).max()
    np.testing.assert_allclose(ds["Mn_L23"].values, by_hand.values, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(ds["jump_Mn_L23"].values, jump.values, rtol=10 * tol)
    # other normalisations divide the kernel's background-free grid
    area = mm.extract_edges(si, edges=["Mn_L23"], mask=False, normalize="area")["Mn_L23"]
    np.testing.assert_allclose(area.mean("energy_Mn_L23"), 1.0, rtol=10 * tol)


def test_the_edge_kernel_gives_the_same_bits_on_dask_blocks():
    """extract_edges on a dask-backed SI (pixel chunks) runs the same compiled
    per-edge kernel on each block: every variable equals the numpy result."""
    import warnings

    from mmspec_widgets.pipeline import synthetic_si

    si, _ = synthetic_si((12, 16), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # vacuum pixels
        a = mm.extract_edges(si)
        b = mm.extract_edges(si.chunk({"y": 5}))
        top = mm.extract_edges(si, normalize="max")
    assert not isinstance(b["O_K"].data, np.ndarray)  # still lazy
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=str(v))
    assert np.nanmax(top["O_K"].values) == pytest.approx(1.0)
    np.testing.assert_array_equal(top["jump_O_K"].values, a["jump_O_K"].values)
