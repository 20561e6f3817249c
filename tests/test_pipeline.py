"""The fast and out-of-core chain gives the plain chain's numbers.

The plain functions (calibrate, remove_spikes, extract_edges, run_chain) are
the reference; the fused kernel, the block-wise Zarr mapping, its resume and
the dask.distributed path are compared with them.  A small deterministic
stand-in model keeps these tests independent of the shipped model bundle.
"""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets import kernels
from mmspec_widgets import pipeline as pl
from mmspec_widgets.demo import run_chain
from mmspec_widgets.errors import DataError, MMSpecError


class StandInModel:
    """predict(ds) -> maps, a fixed function of the spectra; counts its calls."""

    model_id = "stand-in-1"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def predict(self, ds: xr.Dataset) -> xr.Dataset:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("stopped on purpose")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            o = ds["O_K"].mean("energy_O_K").astype(float)
            mn = ds["Mn_L23"].isel(energy_Mn_L23=slice(30, 60)).mean("energy_Mn_L23")
            ni = ds["Ni_L23"].sum("energy_Ni_L23", skipna=False).astype(float)
        out = xr.Dataset({"o_level": o, "mn_l3": mn.astype(float), "ni_area": ni,
                          "ood": ~(o > 0.3)})
        out.attrs = {"model_id": self.model_id, "edges": list(ds.data_vars), "history": []}
        return out


def _well_conditioned(eds: xr.Dataset) -> np.ndarray:
    """Pixels whose edges all have a post-edge level of at least a tenth of their peak."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peaks = [np.nanmax(np.abs(eds[n].values), axis=-1) for n in eds.attrs["edges"]]
    return np.all([p <= 10 for p in peaks], axis=0)


@pytest.fixture(scope="module")
def small():
    return pl.synthetic_si((24, 36), seed=1)


@pytest.fixture(scope="module")
def plain(small):
    si, zlp = small
    eds, maps = run_chain(si, zlp, model=StandInModel())
    return eds, maps


# --------------------------------------------------------------------------
# the fused kernel against the plain functions


def test_fast_chain_equals_plain_chain(small, plain):
    si, zlp = small
    eds, maps = plain
    timings = {}
    fast, fmaps = pl.run_chain_fast(si, zlp, model=StandInModel(), timings=timings)
    assert set(timings) == {"plan", "extract", "predict"}
    # calibration fitted on the same summed spectrum (same pixels, same order)
    assert fast.attrs["calibration_offset_eV"] == pytest.approx(
        eds.attrs["calibration_offset_eV"], abs=1e-9)
    assert fast.attrs["calibration_scale"] == pytest.approx(eds.attrs["calibration_scale"],
                                                            abs=1e-12)
    assert fast.attrs["zlp_position_median_eV"] == eds.attrs["zlp_position_median_eV"]
    # every variable of the plain chain
    assert set(fast.data_vars) == set(eds.data_vars)
    for name in [v for v in fast.data_vars if str(v).endswith("_std")]:
        # counting errors from the raw rows (before the sub-channel shift and the
        # spike removal): the plain chain's within a few per cent
        a, b = eds[name].values, fast[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        ok = np.isfinite(a)
        assert ok.sum() > 200
        dev = np.abs(b[ok] / a[ok] - 1)
        assert np.median(dev) < 0.01, name
        assert np.mean(dev < 0.02) > 0.95, name  # a spike left in a window: a few more
    for name in [v for v in fast.data_vars if str(v).startswith("jump_")
                 and not str(v).endswith("_std")]:
        a, b = eds[name].values, fast[name].values  # the normalisation's divisor
        assert a.dtype == b.dtype == np.float64 and fast[name].dims == eds[name].dims
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.isfinite(a).sum() > 200
        # the same compiled shift, spike removal and per-edge kernel: the same bits
        np.testing.assert_array_equal(b, a)
        assert fast[name].attrs["units"] == eds[name].attrs["units"]
    for name in [v for v in fast.data_vars if not str(v).startswith("jump_")]:
        a, b = eds[name].values, fast[name].values
        assert a.dtype == b.dtype == np.float32
        assert np.isfinite(a[..., 0]).sum() > 200
        np.testing.assert_array_equal(b, a)  # NaN in the same places: same vacuum mask
        np.testing.assert_array_equal(fast[f"energy_{name}"].values,
                                      eds[f"energy_{name}"].values)
    assert [h["step"] for h in fast.attrs["history"]] == [h["step"] for h in
                                                          eds.attrs["history"]]
    rep = [h for h in fast.attrs["history"] if h["step"] == "remove_spikes"][0]
    rep_plain = [h for h in eds.attrs["history"] if h["step"] == "remove_spikes"][0]
    assert rep["params"]["n_replaced"] == rep_plain["params"]["n_replaced"] > 0
    good = _well_conditioned(eds)
    assert good.sum() > 200
    for v in ("o_level", "mn_l3", "ni_area"):
        np.testing.assert_array_equal(fmaps[v].values, maps[v].values)
    np.testing.assert_array_equal(fmaps["ood"].values, maps["ood"].values)


@pytest.mark.parametrize("dtype,width", [(np.float32, 2), (np.float64, 2), (np.float32, 3)])
def test_kernel_equals_plain_functions_on_the_same_plan(small, dtype, width):
    """Same plan: the fused kernel against remove_spikes + extract_edges
    (numpy engine), which run the same compiled spike removal and per-edge
    kernel: the same bits (totals are summed in another order)."""
    si, zlp = small
    si = si.astype(dtype)
    plan, pos = pl.fit_plan(si, zlp, sample_pixels=None, spike_width=width)
    y = si.values.copy()
    y[0, 0] = 0.0  # no counts: the background fit fails -> NaN, as in the plain chain
    y[1, 1, 700] += 5e5  # a cosmic-ray spike
    a, ta, na = pl.extract_block(y, pos, plan, engine="numba")
    b, tb, nb = pl.extract_block(y, pos, plan, engine="numpy")
    assert na == nb > 0
    np.testing.assert_allclose(ta, tb, rtol=1e-6)
    for name in plan.edges:
        assert a[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.isnan(a[name]), np.isnan(b[name]))
        assert np.isnan(a[name][0, 0]).all()
        np.testing.assert_array_equal(a[name], b[name])
        ja, jb = a[f"jump_{name}"], b[f"jump_{name}"]  # edge jumps, before normalisation
        assert ja.shape == y.shape[:2] and np.isnan(ja[0, 0]) and np.isnan(jb[0, 0])
        for var in (f"jump_{name}", f"jump_{name}_std", f"jump_{name}_model_std"):
            np.testing.assert_array_equal(a[var], b[var])


def test_median_kernel_is_numpys_median():
    rng = np.random.default_rng(3)
    cand = np.empty(4100, np.float32)
    cases = [rng.normal(0, 1, 2047), rng.normal(0, 1, 2048),
             rng.integers(0, 4, 2047), rng.integers(0, 4, 2048),  # many ties
             np.r_[rng.normal(0, 1, 2000), np.full(47, 1e6)],  # heavy tail
             np.full(100, 7.0), np.arange(5.0), rng.standard_cauchy(4099)]
    for x in cases:
        for dt in (np.float32, np.float64):
            v = np.ascontiguousarray(x, dtype=dt)
            c = np.empty(v.size + 1, dt) if dt == np.float64 else cand
            got = kernels.k_median(v, v.size, c)
            assert got == np.median(v), (x[:3], dt)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_background_path_is_the_general_one(small, dtype):
    si, _ = small
    si = si.astype(dtype)
    fast = mm.subtract_background(si, (600.0, 632.0))  # numpy-backed: row blocks
    lazy = mm.subtract_background(si.chunk({"y": 8}), (600.0, 632.0))  # general path
    np.testing.assert_array_equal(fast.values, lazy.values)
    assert fast.dtype == lazy.dtype == np.dtype(dtype)
    assert fast.attrs["history"][-1] == lazy.attrs["history"][-1]
    if dtype == np.float32:  # float32 evaluation: float32 resolution of the float64 one
        exact = mm.subtract_background(si.astype(np.float64), (600.0, 632.0)).values
        level = np.maximum(np.abs(si.values), np.abs(si.values - exact))
        assert np.nanmax(np.abs(fast.values - exact) / level) < 1e-6
    d = si.values.copy()
    d[2, 3] = 0
    with pytest.warns(UserWarning, match="1 pixel"):
        out = mm.subtract_background(si.copy(data=d), (600.0, 632.0))
    assert np.isnan(out.values[2, 3]).all() and np.isfinite(out.values[2, 4]).all()


# --------------------------------------------------------------------------
# out of core


def test_map_spectrum_image_equals_in_memory_chain(small, plain, tmp_path):
    si, zlp = small
    eds, maps = plain
    good = _well_conditioned(eds)
    res = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "m.zarr",
                                block=(10, 16), progress=False)  # ragged last blocks
    _, fmaps = pl.run_chain_fast(si, zlp, model=StandInModel())
    for v in ("o_level", "mn_l3", "ni_area"):
        np.testing.assert_array_equal(res[v].values, fmaps[v].values)  # same kernel, same plan
        ref = maps[v].values[good]
        np.testing.assert_allclose(res[v].values[good], ref, rtol=1e-4,
                                   atol=1e-3 * np.nanmax(np.abs(ref)))
    np.testing.assert_array_equal(res["ood"].values, maps["ood"].values)
    assert res["mask"].values.sum() == np.isfinite(maps["o_level"].values).sum()
    assert res["zlp_position"].attrs["units"] == "eV"
    assert res.attrs["model_id"] == "stand-in-1"
    assert [h["step"] for h in res.attrs["history"]][-2:] == ["learn.predict",
                                                              "map_spectrum_image"]
    # reading back with plain xarray, chunks = blocks
    back = xr.open_zarr(tmp_path / "m.zarr", consolidated=False)
    assert back["o_level"].chunks == ((10, 10, 4), (16, 16, 4))


def test_lazy_si_gives_the_same_maps(small, tmp_path):
    si, zlp = small
    lazy_si = si.copy(data=dsa.from_array(si.values, chunks=(8, 12, -1)))
    lazy_z = zlp.copy(data=dsa.from_array(zlp.values, chunks=(8, 12, -1)))
    a = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "a.zarr",
                              block=(8, 12), progress=False)
    b = pl.map_spectrum_image(lazy_si, lazy_z, model=StandInModel(), out=tmp_path / "b.zarr",
                              block=(8, 12), progress=False)
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_interrupted_run_resumes_without_recomputing(small, tmp_path):
    si, zlp = small
    out = tmp_path / "r.zarr"
    n_blocks = 3 * 3  # 24 x 36 px in 8 x 12 blocks
    # call 1 is the masked-pixel probe; then one call per block
    with pytest.raises(KeyboardInterrupt):
        pl.map_spectrum_image(si, zlp, model=StandInModel(fail_after=5), out=out,
                              block=(8, 12), progress=False)
    import zarr

    done = np.asarray(zarr.open_group(str(out), mode="r")["block_done"][...])
    assert done.sum() == 4
    again = StandInModel()
    res = pl.map_spectrum_image(si, zlp, model=again, out=out, block=(8, 12), progress=False)
    assert again.calls == 1 + (n_blocks - 4)  # probe + the unfinished blocks only
    fresh = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "f.zarr",
                                  block=(8, 12), progress=False)
    for v in fresh.data_vars:
        np.testing.assert_array_equal(res[v].values, fresh[v].values)
    # a finished store: nothing left to do
    idle = StandInModel()
    pl.map_spectrum_image(si, zlp, model=idle, out=out, block=(8, 12), progress=False)
    assert idle.calls == 1


def test_store_of_another_run_is_refused(small, tmp_path):
    si, zlp = small
    out = tmp_path / "s.zarr"
    pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=(12, 12),
                          progress=False)
    with pytest.raises(MMSpecError, match=r"different run \(block"):
        pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=(8, 8),
                              progress=False)
    with pytest.raises(MMSpecError, match=r"different run \(edges"):
        pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=(12, 12),
                              edges=["O_K", "Mn_L23"], progress=False)
    again = StandInModel()
    pl.map_spectrum_image(si, zlp, model=again, out=out, block=(8, 8), overwrite=True,
                          progress=False)
    assert again.calls == 1 + 3 * 5
    other = tmp_path / "not-a-store"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MMSpecError, match="not a map store"):
        pl.map_spectrum_image(si, zlp, model=StandInModel(), out=other, progress=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_distributed_cluster_gives_the_same_maps(small, tmp_path):
    from distributed import Client, LocalCluster

    si, zlp = small
    single = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "1.zarr",
                                   block=(8, 12), progress=False)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        multi = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "n.zarr",
                                      block=(8, 12), client=client, progress=False)
        ran_on = client.run(lambda: 1)
    assert len(ran_on) == 3
    for v in single.data_vars:
        np.testing.assert_array_equal(single[v].values, multi[v].values)


def test_sampled_plan_is_close_to_the_full_one():
    si, zlp = pl.synthetic_si((48, 48), seed=2, chunks=(16, 16))
    full, _ = pl.fit_plan(si, zlp, block=(16, 16), sample_pixels=None)
    part, _ = pl.fit_plan(si, zlp, block=(16, 16), sample_pixels=600)
    assert part.sample_pixels == 3 * 256 < full.sample_pixels == 48 * 48
    assert part.zlp_median_eV == full.zlp_median_eV  # positions come from every pixel
    # features found alike: located under 0.15 eV smoothing (unbiased on skewed
    # peaks), a sum of 768 noisy pixels and one of 2304 differ by up to 0.09 eV
    for name, ref in full.calibration["references"].items():
        assert part.calibration["references"][name]["measured_eV"] == pytest.approx(
            ref["measured_eV"], abs=0.1)
    np.testing.assert_allclose(part.calibrated_energy, full.calibrated_energy, atol=0.2)
    assert part.mask_threshold == pytest.approx(full.mask_threshold, rel=0.05)


def test_bad_arguments(small, tmp_path):
    si, zlp = small
    with pytest.raises(DataError, match=r"dims \(y, x, energy\)"):
        pl.map_spectrum_image(si.isel(y=0), model=StandInModel(), out=tmp_path / "x.zarr")
    with pytest.raises(MMSpecError, match="block="):
        pl.map_spectrum_image(si, zlp, model=StandInModel(), block=(0, 4),
                              out=tmp_path / "x.zarr")
    with pytest.raises(MMSpecError, match="engine="):
        pl.run_chain_fast(si, zlp, model=StandInModel(), engine="gpu")
    with pytest.raises(MMSpecError, match="unknown edge"):
        pl.fit_plan(si, zlp, edges=["Fe_L23"])
    with pytest.raises(DataError, match="zlp: navigation shape"):
        pl.fit_plan(si, zlp.isel(y=slice(0, 5)))
    plan, pos = pl.fit_plan(si, zlp)
    with pytest.raises(DataError, match="positions"):
        pl.extract_block(si.values[:2, :2], None, plan)
    with pytest.raises(DataError, match="2048 energy channels"):
        pl.extract_block(si.values[:2, :2, :100], pos[:2, :2], plan)
    with pytest.raises(DataError, match="Ni_L23: pre-edge window"):
        pl.fit_plan(si, zlp, edges=["Ni_L23"], windows={"Ni_L23": (1100.0, 1200.0)})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_kernel_sees_nan_and_inf(bad, dtype):
    from mmspec_widgets.kernels import all_finite

    a = np.ones((37, 301), dtype)
    assert all_finite(a)
    a[29, 300] = bad
    assert not all_finite(a)  # a fast-math build of the kernel folded x - x to 0 here


def test_fast_chain_refuses_nan_counts():
    from mmspec_widgets.pipeline import run_chain_fast, synthetic_si

    si, zlp = synthetic_si((6, 5), seed=1)
    si = si.copy(data=np.array(si.values))
    si.values[2, 3, 700] = np.nan
    with pytest.raises(DataError, match="NaN/inf"):
        run_chain_fast(si, zlp, predict=False)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_background_error_measured_in_the_extraction_pass_is_the_plans(small, engine):
    """The in-memory chain measures the background model error on the rows it
    despikes anyway (extract_block's background_rows): the same rows, the same
    numbers as fit_plan's own pass over them."""
    si, zlp = small
    plan, pos = pl.fit_plan(si, zlp, sample_pixels=None, engine=engine, block=(8, 8))
    quiet, pos2 = pl.fit_plan(si, zlp, sample_pixels=None, engine=engine, block=(8, 8),
                              background_error=False)
    assert quiet.background_error == {}
    rows = pl.background_sample(si.shape[:2], (8, 8), sample_pixels=None)
    assert rows.size == np.unique(rows).size and 0 < rows.size <= si.shape[0] * si.shape[1]
    pl.extract_block(si.values, pos2, quiet, engine=engine, background_rows=rows)
    assert quiet.background_error == plan.background_error
    n = si.shape[0] * si.shape[1]
    for bad in ([n], [-1], [0, 0], [0.5], []):
        with pytest.raises(DataError, match="background_rows: expected distinct row indices"):
            pl.extract_block(si.values, pos2, quiet, engine=engine,
                             background_rows=np.asarray(bad))
    assert all(v["rows"] > 0 for v in plan.background_error.values())


def test_chain_floor_benchmark_times_every_row_kernel():
    """benchmarks/chain_floor.py (the per-spectrum costs docs/performance.md
    quotes) runs the row kernels on the bench's synthetic SI; no timing is
    asserted, only that each kernel ran and the tables are the chain's."""
    import importlib.util
    from pathlib import Path

    from mmspec_widgets.edges import get_edge

    spec = importlib.util.spec_from_file_location(
        "chain_floor", Path(__file__).parents[1] / "benchmarks" / "chain_floor.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.row_kernels(512)
    assert res["rows"] == 512
    assert res["grid_points"] == sum(get_edge(e).n_points for e in pl.DEFAULT_EDGES)
    for k in ("shift", "despike", "edges", "chain_rows", "finite_check"):
        assert np.isfinite(res[k]) and res[k] > 0, k
