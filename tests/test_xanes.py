"""Near-edge XAS: normalised XANES is used as it is (no pre-edge fit), and a
scan covering part of a K edge's grid (Ni K over 8330 - 8370 eV) is predicted
from what it covers, with a wider std; too little coverage is a clear error."""

import warnings

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets.background import normalize_xas
from mmspec_widgets.edges import edge_grid
from mmspec_widgets.errors import DataError
from mmspec_widgets.extract import extract_edges, normalized_input
from mmspec_widgets.learn import coverage as cov
from mmspec_widgets.learn.fusion import dataset_to_matrix
from mmspec_widgets.simulate import load_training_set

LO, HI = 8330.0, 8370.0  # the Ni K XANES range
GRID = edge_grid("Ni_K")
#: grid points 8330 - 8370 of the 141 of 8325 - 8395 eV; 50 missing beyond 8370
COVERED, TAIL = 81 / 141, 50 / 141


@pytest.fixture(scope="module")
def model():
    return mm.load_model()


@pytest.fixture(scope="module")
def held_out():
    """Held-out simulated regions (test split) with a Ni K spectrum."""
    ts = load_training_set()
    keep = (np.asarray(ts["split"].values).astype(str) == "test") & \
        np.isfinite(ts["Ni_K"]).all("energy_Ni_K").values
    return ts.isel(sample=np.flatnonzero(keep))


@pytest.fixture(scope="module")
def nioh2():
    """The measured Ni(OH)2 reference (transmission), normalised (Athena-like)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = mm.datasets.xas_references()["NiOH2"][0]
        return normalize_xas(mm.load(path))


def _scans(spectra: np.ndarray, lo=LO, hi=HI, step=0.25, **attrs) -> xr.DataArray:
    """Scans on their own axis ``lo`` - ``hi`` eV, interpolated from grid spectra."""
    e = np.linspace(lo, hi, int(round((hi - lo) / step)) + 1)
    y = np.stack([np.interp(e, GRID, s) for s in np.atleast_2d(spectra)])
    return xr.DataArray(y, dims=("scan", "energy"),
                        coords={"energy": ("energy", e, {"units": "eV"})},
                        attrs={"signal_type": "XAS", "history": [], **attrs})


def _write(path, energy, values, column):
    np.savetxt(path, np.c_[energy, values], delimiter=",", header=f"energy,{column}",
               comments="")
    return path


def test_normalised_column_is_used_without_pre_edge_fit(tmp_path, held_out):
    # a normalised Ni K spectrum over a full scan range: flat pre-edge, edge, post-edge ~1
    e = np.arange(8150.0, 8500.0, 0.5)
    spec = held_out["Ni_K"].values[0]
    y = np.interp(e, GRID, spec, left=spec[0], right=spec[-1])
    norm = mm.load(_write(tmp_path / "ni_norm.csv", e, y, "norm"))
    assert norm.attrs["normalization"] == "edge_step"
    assert "norm" in norm.attrs["normalization_source"]
    assert normalized_input(norm) is not None
    ds = extract_edges(norm, edges=["Ni_K"])
    # used as it is: the grid values are the column's (no background, no rescaling)
    np.testing.assert_allclose(ds["Ni_K"].values, spec, atol=1e-9)
    params = ds.attrs["history"][-1]["params"]
    assert params["background"] is None and params["normalize"] is None
    assert "norm" in params["normalized"]
    assert ds["Ni_K"].attrs["background"] == "None"

    # the same numbers as "mu" are raw absorption: pre-edge fit and post-edge scaling
    raw = mm.load(_write(tmp_path / "ni_mu.csv", e, y, "mu"))
    assert "normalization" not in raw.attrs and normalized_input(raw) is None
    fitted = extract_edges(raw, edges=["Ni_K"])
    assert np.max(np.abs(fitted["Ni_K"].values - spec)) > 0.01
    assert fitted.attrs["history"][-1]["params"]["background"] == "powerlaw"
    # ... unless declared
    declared = extract_edges(raw, edges=["Ni_K"], normalized=True)
    np.testing.assert_allclose(declared["Ni_K"].values, spec, atol=1e-9)
    # normalize_xas output is recognised too
    assert normalize_xas(raw).attrs["normalization"] == "edge_step"


def test_partial_ni_k_of_simulated_spectra_predicted_with_wider_std(model, held_out):
    spectra = held_out["Ni_K"].values
    ds = extract_edges(_scans(spectra, normalization="edge_step"), edges=["Ni_K"],
                       mask=False)
    v = ds["Ni_K"].values
    assert np.isnan(v[:, GRID > HI]).all() and np.isfinite(v[:, (GRID >= LO) & (GRID <= HI)]).all()
    maps = model.predict(ds)
    full = model.predict(held_out[["Ni_K"]])
    t = "ni_oxidation"
    cut, s_cut = maps[t].values, maps[f"{t}_std"].values
    assert np.isfinite(cut).all() and np.isfinite(s_cut).all() and (s_cut > 0).all()
    np.testing.assert_allclose(maps["coverage_Ni_K"].values, COVERED)
    np.testing.assert_allclose(full["coverage_Ni_K"].values, 1.0)

    # the std is the model's own for the completed spectrum, widened by the measured rule
    X, _ = dataset_to_matrix(ds, model.edges_)
    own = model.predict_arrays(X)
    add = cov.extra_std("Ni_K", t, TAIL)
    assert add > 0.1
    np.testing.assert_allclose(s_cut, np.sqrt(own[f"{t}_std"] ** 2 + add ** 2), rtol=1e-9)
    assert np.isnan(ds["Ni_K"].values[:, GRID > HI]).all()  # completed on a copy
    # wider than the full-coverage std of the same spectra
    ratio = s_cut / full[f"{t}_std"].values
    assert np.median(ratio) > 1.1 and np.mean(ratio > 1) >= 0.75  # the rule widens on average, not every spectrum
    assert s_cut[0] > full[f"{t}_std"].values[0]
    # predicted from what it covers: near the full-grid prediction, within the widened std
    assert np.mean(np.abs(cut - full[t].values) <= 2 * s_cut) > 0.9
    # the other targets the edge informs are widened too; other elements' oxidation NaN
    assert (maps["li_content_std"].values > 0).all()
    assert np.isnan(maps["mn_oxidation"].values).all()
    h = maps.attrs["history"][-1]["partial_coverage"]
    assert h["Ni_K"]["rows"] == spectra.shape[0]
    assert h["Ni_K"]["min_coverage"] == pytest.approx(COVERED, abs=1e-4)


def test_partial_ni_k_of_measured_reference_through_the_cli(tmp_path, model, nioh2, capsys):
    from mmspec_widgets import cli

    out = {}
    for name, lo, hi in (("full", 8150.0, 8700.0), ("cut", LO, HI)):
        part = nioh2.sel(energy=slice(lo, hi))
        path = _write(tmp_path / f"nioh2_{name}.csv", part["energy"].values, part.values,
                      "norm")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cli.main(["predict", str(path), "--out", str(tmp_path / f"{name}.nc")]) == 0
        out[name] = xr.load_dataset(tmp_path / f"{name}.nc", engine="h5netcdf")
    text = capsys.readouterr().out
    assert "normalised XANES" in text and "cover part of the grid" in text
    full, cut = out["full"], out["cut"]
    assert float(full["coverage_Ni_K"]) == 1.0
    assert 0.5 < float(cut["coverage_Ni_K"]) < COVERED + 1e-9
    for ds in (full, cut):
        assert np.isfinite(float(ds["ni_oxidation"])) and np.isfinite(float(ds["ni_oxidation_std"]))
    assert float(cut["ni_oxidation_std"]) > float(full["ni_oxidation_std"])
    # the model's own std of the completed scan, widened by the measured rule
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = extract_edges(mm.load(tmp_path / "nioh2_cut.csv"), edges=["Ni_K"])
    own = model.predict_arrays(dataset_to_matrix(ds, model.edges_)[0])
    c = cov.coverage(ds["Ni_K"], "Ni_K", "energy_Ni_K", [])
    assert c["fraction"][0] == pytest.approx(float(cut["coverage_Ni_K"]))
    add = cov.extra_std("Ni_K", "ni_oxidation", c["missing_tail"])[0]
    assert add > 0.1
    assert float(cut["ni_oxidation_std"]) == pytest.approx(
        float(np.hypot(own["ni_oxidation_std"][0], add)), rel=1e-9)
    assert "partial_coverage" in cut.attrs["history"]
    # Ni(OH)2 is Ni2+: both read below the Ni3+ of the layered oxides
    assert float(full["ni_oxidation"]) < 2.9 and float(cut["ni_oxidation"]) < 3.0


@pytest.mark.parametrize("lo, hi", [(8330.0, 8350.0), (8340.0, 8395.0)])
def test_too_little_coverage_is_a_clear_error(model, held_out, lo, hi):
    scan = _scans(held_out["Ni_K"].values[:1], lo=lo, hi=hi, normalization="edge_step")
    with pytest.raises(DataError, match=rf"Ni_K: the scan covers {lo:.1f} - {hi:.1f} eV.*"
                                         r"at least 8333\.0 - 8355\.0 eV"):
        extract_edges(scan, edges=["Ni_K"])
    # a Dataset on the scan's own axis, given to the model directly: the same error
    da = scan.rename(energy="energy_Ni_K")
    with pytest.raises(DataError, match=r"Ni_K: .*at least 8333\.0 - 8355\.0 eV"):
        model.predict(xr.Dataset({"Ni_K": da}))
    # the minimum itself is enough
    ok = extract_edges(_scans(held_out["Ni_K"].values[:1], lo=8333.0, hi=8355.0,
                              normalization="edge_step"), edges=["Ni_K"])
    assert np.isfinite(model.predict(ok)["ni_oxidation_std"].values).all()


def test_raw_partial_scan_is_refused_with_a_hint(held_out):
    raw = _scans(held_out["Ni_K"].values[:1])  # nothing says normalised
    with pytest.raises(DataError, match=r"Ni_K: pre-edge window.*normalized=True"):
        extract_edges(raw, edges=["Ni_K"])


def test_completion_rule_and_other_edges_unchanged():
    spec = np.linspace(0.1, 1.5, GRID.size)
    row = np.where((GRID >= LO) & (GRID <= HI), spec, np.nan)[None]
    fill = np.full(GRID.size, 7.0)
    out = cov.complete_rows(row.copy(), "Ni_K", 0.2, fill)
    i0, i1 = np.flatnonzero(np.isfinite(row[0]))[[0, -1]]
    assert np.all(out[0, :i0] == spec[i0])  # flat pre-edge held
    assert np.all(out[0, i1 + 1:] == 7.0)  # beyond the scan: the completion spectrum
    np.testing.assert_array_equal(out[0, i0:i1 + 1], spec[i0:i1 + 1])
    # the shipped completion is the mean training spectrum: ends near the edge step
    fill = np.asarray(cov.load_rule()["fill"]["Ni_K"])
    assert fill.shape == GRID.shape and 0.8 < fill[-10:].mean() < 1.3
    # an L2,3 / O K spectrum missing 30 % of its grid still counts as missing
    g = edge_grid("O_K")
    e = g[: int(0.7 * g.size)]
    ds = xr.Dataset({"O_K": xr.DataArray(np.ones((1, e.size)), dims=("s", "energy_O_K"),
                                         coords={"energy_O_K": e})})
    X, _ = dataset_to_matrix(ds, ["O_K"])
    assert np.isnan(X).all()


def test_measured_rule_is_reproduced(model):
    """The shipped table is what the measurement gives for the shipped model."""
    rule = cov.load_rule()
    assert rule["model_id"] == model.model_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = cov.measure_rule(model, load_training_set(), edges=["Ni_K"])
    a, b = again["table"]["Ni_K"], rule["table"]["Ni_K"]
    assert a["missing_tail"] == b["missing_tail"]
    for t, s in b["extra_std"].items():
        np.testing.assert_allclose(a["extra_std"][t], s, atol=2e-6)
        assert np.all(np.diff(s) >= 0)  # non-decreasing in the missing fraction
    np.testing.assert_allclose(again["fill"]["Ni_K"], rule["fill"]["Ni_K"], atol=2e-6)
