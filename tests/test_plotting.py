"""Map figures: labelled colour bars, blanks where a target does not apply, capped std."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from mmspec_widgets import plotting  # noqa: E402


def _maps(ny=4, nx=6, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    y = np.arange(ny) * 2.0
    x = np.arange(nx) * 2.0
    shape = (ny, nx)
    data = {}
    for t in ("ni_fraction", "mn_fraction", "ni_oxidation", "mn_oxidation", "o_vacancy"):
        lo, hi = plotting.TARGETS[t].physical_range
        pad = 0.1 * (hi - lo)
        data[t] = (("y", "x"), rng.uniform(lo + pad, hi - pad, shape))
        data[f"{t}_std"] = (("y", "x"), rng.uniform(0.01, 0.1, shape))
    data["mn_fraction"][1][0, :] = 0.0  # no Mn in the first row
    data["ni_fraction_std"][1][1, 2] = 0.547  # more than half the range of a fraction
    score = rng.uniform(0.2, 3.0, shape)
    score[2, 3] = 16.0
    score[0, 0] = np.inf  # a pixel without any usable edge
    data["ood_score"] = (("y", "x"), score)
    data["ood"] = (("y", "x"), score > 1)
    data["n_edges"] = (("y", "x"), rng.integers(1, 5, shape))
    ds = xr.Dataset(data, coords={"y": ("y", y, {"units": "nm"}), "x": ("x", x, {"units": "nm"})})
    ds.attrs = {"edges": ["O_K", "Mn_L23", "Co_L23", "Ni_L23"], "model_id": "mmspec-test-model"}
    return ds


def _colorbars(fig):
    """The colour bar of every image: its own, or that of an image sharing its scale."""
    images = [im for ax in fig.axes for im in ax.images]
    by_norm = {id(im.norm): im.colorbar for im in images if im.colorbar is not None}
    return [im.colorbar or by_norm.get(id(im.norm)) for im in images]


@pytest.mark.parametrize("with_truth", [False, True])
def test_every_map_has_a_labelled_colour_bar(with_truth):
    maps = _maps()
    truth = maps[["ni_fraction", "mn_fraction", "o_vacancy"]].copy() if with_truth else None
    fig = plotting.plot_maps(maps, truth)
    try:
        bars = _colorbars(fig)
        assert len(bars) >= 5
        for cb in bars:
            assert cb is not None, "an image without colour bar"
            label = cb.ax.get_ylabel() or cb.ax.get_xlabel()
            assert label.strip(), "a colour bar without label"
        labels = {cb.ax.get_ylabel() for cb in bars}
        assert "fraction of TM" in labels and "probability" in labels
        titles = [ax.get_title() for ax in fig.axes if ax.images]
        # human titles, never raw keys; the OOD map and the edges used beside the targets
        assert not any("ni_fraction" in t or "o_vacancy" in t for t in titles), titles
        assert any(t.startswith("Out of distribution") for t in titles)
        assert any(t.startswith("Edges used") for t in titles)
        assert "± 1 std" in fig._suptitle.get_text()
        if with_truth:
            assert any(t.endswith(": truth") for t in titles)
    finally:
        plt.close(fig)


def test_oxidation_blank_where_the_element_is_absent():
    maps = _maps()
    mn = plotting.display_values(maps, "mn_oxidation")
    assert np.isnan(mn[0]).all()  # Mn fraction 0 in row 0
    assert np.isfinite(mn[1:]).all()
    std, _, _ = plotting.display_std(maps, "mn_oxidation")
    assert np.isnan(std[0]).all()
    # fractions themselves and other elements' oxidation states are untouched
    assert np.isfinite(plotting.display_values(maps, "mn_fraction")).all()
    assert np.isfinite(plotting.display_values(maps, "ni_oxidation")).all()


def test_std_beyond_the_physical_range_is_capped_and_counted():
    maps = _maps()
    std, cap, n = plotting.display_std(maps, "ni_fraction")
    assert cap == pytest.approx(0.5) and n == 1
    assert std[1, 2] == pytest.approx(0.5)
    assert np.nanmax(std) <= 0.5
    fig = plotting.plot_maps(maps, targets=["ni_fraction"])
    try:
        assert any("1 px > 0.5" in ax.get_title() for ax in fig.axes)
    finally:
        plt.close(fig)


def test_ood_colour_bar_spans_the_scores():
    maps = _maps()
    assert plotting.ood_limits(maps["ood_score"].values) == (0.0, 16.0)
    assert plotting.ood_limits(np.array([0.1, 0.5])) == (0.0, 2.0)
    fig = plotting.plot_maps(maps, targets=["ni_fraction"])
    try:
        ood_ax = next(ax for ax in fig.axes if ax.get_title().startswith("Out of distribution"))
        norm = ood_ax.images[0].norm
        assert norm.vmax == pytest.approx(16.0) and norm.vcenter == pytest.approx(1.0)
    finally:
        plt.close(fig)


def test_plot_maps_saves_a_png(tmp_path):
    path = tmp_path / "maps.png"
    fig = plotting.plot_maps(_maps(), path=path)
    assert path.stat().st_size > 10_000
    assert not plt.fignum_exists(fig.number)  # closed once saved


def test_unknown_target_is_named():
    with pytest.raises(KeyError, match="li_content"):
        plotting.plot_maps(_maps(), targets=["li_content"])


def test_phase_map_is_categorical_with_named_phases(tmp_path):
    from mmspec_widgets.learn.fusion import phase_map

    maps = _maps()
    rng = np.random.default_rng(2)
    probs = {t: rng.uniform(0, 0.6, (4, 6)).ravel() for t in ("li_rich", "rock_salt", "spinel")}
    probs["spinel"][0] = np.nan  # one pixel without phase
    for name, (v, attrs) in phase_map(probs).items():
        maps[name] = (("y", "x"), v.reshape(4, 6), attrs)
    truth = maps[["phase"]].copy()
    fig = plotting.plot_maps(maps, truth, targets=["phase"], path=tmp_path / "phase.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert "Phase: truth" in titles
    assert "Phase: most probable\nhatched: out of distribution" in titles
    assert any(t.startswith("Phase: probability") for t in titles)
    ticks = [[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes]
    assert ["layered", "li-rich", "rock-salt", "spinel"] in ticks
    img = next(ax for ax in fig.axes
               if ax.get_title().startswith("Phase: most probable")).images[0]
    a = np.ma.filled(img.get_array().astype(float), np.nan)
    assert np.isnan(a[0, 0]) and np.isfinite(a).sum() == 23  # unknown is blank
    assert (tmp_path / "phase.png").stat().st_size > 5000
    # by default the phase row is drawn, its probability not as a row of its own
    fig = plotting.plot_maps(maps)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("Phase: most probable") for t in titles)
    assert not any(t.startswith("Phase probability") or "phase_probability" in t for t in titles)


def test_bookkeeping_variables_are_not_drawn_as_maps():
    maps = _maps()
    for name in ("used_O_K", "edges_used", "nan_reason", "coverage_Ni_K"):
        maps[name] = (("y", "x"), np.ones((4, 6)))
    fig = plotting.plot_maps(maps)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    for name in ("used_O_K", "edges_used", "nan_reason", "coverage_Ni_K", "Edges used (bit"):
        assert name not in titles
    assert "Ni fraction: predicted" in titles


def test_not_learnt_reason_read_from_a_saved_file(tmp_path):
    """Maps read back from netCDF carry the not-learnt table as JSON text."""
    import json

    maps = _maps()
    maps["o_vacancy"][:] = np.nan
    maps.attrs["not_learnt"] = json.dumps({"o_vacancy": "the training set does not vary it: "
                                                        "3 of 200 labelled samples positive"})
    fig = plotting.plot_maps(maps, targets=["o_vacancy", "ni_fraction"])
    titles = [ax.get_title() for ax in fig.axes]
    assert any("not learnt: the training set does not vary it" in t for t in titles)
    assert not any("not learnt" in t and "Ni fraction" in t for t in titles)


def test_out_of_distribution_pixels_are_hatched_on_predicted_maps():
    """Each OOD pixel that shows a value is hatched on the predicted map (one
    hatched cell per such pixel, nothing on in-distribution ones), and the
    title says so; hatch_ood=False draws none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    maps = _maps()
    fig = plotting.plot_maps(maps, targets=["ni_fraction"])
    try:
        ax = next(a for a in fig.axes if a.get_title().startswith("Ni fraction: predicted"))
        assert "hatched: out of distribution" in ax.get_title()
        hatched = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_hatch()]
        assert len(hatched) == 1
        n_ood = int((maps["ood"].values & np.isfinite(maps["ni_fraction"].values)).sum())
        assert 0 < n_ood < maps["ood"].size
        assert len(hatched[0].get_paths()) == n_ood
    finally:
        plt.close(fig)
    fig = plotting.plot_maps(maps, targets=["ni_fraction"], hatch_ood=False)
    try:
        assert not any(c.get_hatch() for a in fig.axes for c in a.collections
                       if isinstance(c, PolyCollection))
    finally:
        plt.close(fig)
