"""The foundation on the real NMC spectrum image (TM/ core loss + ZLP/ zero loss)."""

from __future__ import annotations

import numpy as np
import pytest

import mmspec_widgets as mm


@pytest.fixture(scope="module")
def real(tm_si_path, zlp_si_path):
    return mm.load(tm_si_path), mm.load(zlp_si_path)


@pytest.fixture(scope="module")
def calibrated(real):
    si, zlp = real
    return mm.calibrate(si, zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5})


def _edge_max(cal, window, search):
    mask = mm.mask_low_counts(cal)
    summed = cal.where(mask).sum(("y", "x"))
    sub = mm.subtract_background(summed, window=window)
    seg = sub.sel(energy=slice(*search))
    return float(seg["energy"][int(np.argmax(seg.values))])


def test_mn_and_co_l3_land_on_reference_energies(calibrated):
    # edges NOT used as references: their position checks offset and dispersion
    assert 640.0 <= _edge_max(calibrated, (600, 632), (630, 652)) <= 646.0
    assert 778.0 <= _edge_max(calibrated, (740, 772), (770, 790)) <= 783.5


def test_calibration_is_more_than_a_shift_and_recorded(calibrated, real):
    a = calibrated.attrs
    assert abs(a["calibration_scale"] - 1.0) > 0.005  # the recorded dispersion is off
    assert set(a["calibration_references"]) == {"O_K", "Ni_L3"}
    for ref in a["calibration_references"].values():
        assert abs(ref["residual_eV"]) < 1e-6  # two references: exact fit
    steps = [h["step"] for h in a["history"]]
    assert steps == ["align_zero_loss", "apply_calibration"]
    # zero loss sits near -3 eV on the recorded axis, as the files show
    assert -3.6 < a["zlp_position_median_eV"] < -2.7
    # input untouched
    assert real[0].attrs["history"] == []
    assert float(real[0].energy[0]) == pytest.approx(440.0)


def test_third_reference_residual_is_small(real):
    si, zlp = real
    cal = mm.calibrate(si, zlp=zlp, references={"O_K": 530.0, "Mn_L3": 643.0,
                                                 "Ni_L3": 853.5})
    res = [abs(r["residual_eV"]) for r in cal.attrs["calibration_references"].values()]
    # the literature places Mn L3 anywhere in 641 - 644 eV: 643.0 is known to
    # +-1.5 eV, so a linear axis through O K and Ni L3 must meet it within that
    assert max(res) < 1.5


def test_other_features_and_a_larger_axis_error_give_the_same_axis(real, calibrated):
    si, zlp = real
    # L2 lines and the O K main peak, located from their edges' first features
    alt = mm.calibrate(si, zlp=zlp, references={"O_K_main": 541.0, "Ni_L2": 870.5})
    assert alt.attrs["calibration_scale"] == pytest.approx(
        calibrated.attrs["calibration_scale"], abs=3e-3)
    assert 640.0 <= _edge_max(alt, (600, 632), (630, 652)) <= 646.0
    # the recorded axis 6 eV further off (Ni L3 then ~22 eV from 853.5 eV)
    worse = si.assign_coords(energy=si["energy"] - 6.0)
    cal = mm.calibrate(worse, zlp=zlp, references={"O_K": 530.0, "Ni_L3": 853.5}, search=30.0)
    np.testing.assert_allclose(cal["energy"].values, calibrated["energy"].values, atol=0.05)


def test_vacuum_pixels_masked_not_garbage(calibrated):
    with pytest.warns(UserWarning, match="2 of 42 pixels have too few counts"):
        ds = mm.extract_edges(mm.remove_spikes(calibrated))
    counts = calibrated.sum("energy").values
    vac = counts < 0.05 * np.percentile(counts, 90)
    assert vac.any() and (~vac).any()
    for name in ds.attrs["edges"]:
        v = ds[name].values
        assert np.isnan(v[vac]).all()
        assert np.isnan(ds[f"jump_{name}"].values[vac]).all()
        assert (ds[f"jump_{name}_std"].values[~vac] > 0).all()
        ok = np.isfinite(v[~vac]).all(-1)
        # strong edges everywhere on the particle; the weak Co/Ni L edges of
        # single noisy pixels may have no positive post-edge level -> NaN
        assert ok.mean() >= (1.0 if name in ("O_K", "Mn_L23") else 0.8), name
        # post-edge normalised: edge step ~ 1 on particle pixels
        n = v.shape[-1]
        tail = v[~vac][ok][:, n - n // 10:].mean(-1)
        np.testing.assert_allclose(tail, 1.0, rtol=1e-4)


def test_default_references_and_where_the_other_l3_lines_land(real):
    """The default calibration (O K + Co L3): offset, scale and the Mn / Ni L3
    maxima quoted in README.md."""
    si, zlp = real
    cal = mm.calibrate(si, zlp=zlp, references=dict(mm.DEFAULT_REFERENCES))
    assert set(cal.attrs["calibration_references"]) == {"O_K", "Co_L3"}
    assert cal.attrs["calibration_offset_eV"] == pytest.approx(0.19, abs=0.02)
    assert cal.attrs["calibration_scale"] == pytest.approx(1.0161, abs=2e-4)
    assert _edge_max(cal, (600.0, 632.0), (635.0, 650.0)) == pytest.approx(643.7, abs=0.2)
    ni = _edge_max(cal, (820.0, 845.0), (848.0, 860.0))
    assert ni == pytest.approx(851.3, abs=0.2)  # 2.2 eV below the O K + Ni L3 calibration's
