"""Trend descriptors and the trends figure, on the committed training set."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmspec_widgets.errors import DataError  # noqa: E402
from mmspec_widgets.simulate.dataset import load_training_set  # noqa: E402
from mmspec_widgets.simulate.descriptors import (  # noqa: E402
    spectral_descriptors,
    trend_metrics,
)
from mmspec_widgets.simulate.plots import plot_trends  # noqa: E402


@pytest.fixture(scope="module")
def ds():
    return load_training_set()


def test_descriptors_physical_units(ds):
    d = spectral_descriptors(ds)
    c = d["Ni_L3_centroid"]
    ok = np.isfinite(c)
    assert ok.any() and np.all((c[ok] > 853.1) & (c[ok] < 862))  # eV, inside the L3 window
    k = d["Ni_K_edge"][np.isfinite(d["Ni_K_edge"])]
    assert np.all((k > 8325) & (k < 8360))
    w = d["O_K_preedge"][np.isfinite(d["O_K_preedge"])]
    assert np.all((w > 0) & (w < 1))  # a share of the 528.9 - 550 eV area


def test_ni_l3_follows_ni_oxidation(ds):
    rows = {(r["descriptor"], r["label"]): r for r in trend_metrics(ds)}
    r = rows[("Ni_L3_centroid", "ni_oxidation")]
    assert r["n"] >= 5
    assert r["rho"] > 0.5 and r["agrees"]


def test_plot_trends_renders(ds, tmp_path):
    fig = plot_trends(ds)
    assert len(fig.axes) >= 9
    titles = " ".join(ax.get_title() for ax in fig.axes)
    for word in ("O K", "Ni L2,3", "Li K", "Ni K", "antisites", "vacancies"):
        assert word in titles
    fig.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_plot_trends_needs_labels(ds):
    with pytest.raises(DataError, match="li_content"):
        plot_trends(ds.drop_vars("li_content"))


def test_ties_take_their_average_rank_and_levels_show_the_trend():
    from mmspec_widgets.simulate.descriptors import levels as _levels
    from mmspec_widgets.simulate.descriptors import spearman as _spearman

    # 90 regions share one label; the descriptor follows the label exactly
    rng = np.random.default_rng(0)
    label = np.r_[np.full(90, 4.0), 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.5, 3.5, 3.5, 3.5]
    x = 640.0 + 0.75 * (label - 2.0) + rng.normal(0, 0.02, label.size)
    rho, n = _spearman(x, label)
    assert n == 100
    # average ranks: the tie block counts as one rank; ordinal ranks would give
    # a different value depending on the order of the tied rows
    perm = rng.permutation(label.size)
    assert _spearman(x[perm], label[perm])[0] == pytest.approx(rho)
    assert 0.4 < rho < 0.8  # held down by the tie, however clean the trend
    levels, mono = _levels(x, label, +1)
    assert [lv[0] for lv in levels] == [2.0, 3.0, 3.5, 4.0]
    assert [lv[1] for lv in levels] == [3, 3, 4, 90]
    assert mono and np.corrcoef(x, label)[0, 1] > 0.99
    assert not _levels(x, label, -1)[1]


def test_oxidation_trends_carry_levels(ds):
    rows = {(r["descriptor"], r["label"]): r for r in trend_metrics(ds)}
    r = rows[("Ni_L3_centroid", "ni_oxidation")]
    assert r["monotonic"] and r["pearson"] > 0.9
    assert sum(lv[1] for lv in r["levels"]) == r["n"]
    assert "levels" not in rows[("O_K_preedge", "li_content")]


def test_one_definition_of_each_trend(ds):
    """``mmspec validate``'s trends are trend_metrics' rho, the descriptors the
    validation's functions (one definition each)."""
    from mmspec_widgets import validate as V

    d = spectral_descriptors(ds)
    e, y = ds["energy_O_K"].values, ds["O_K"].values
    np.testing.assert_allclose(d["O_K_preedge"], V.preedge_weight(e, y))
    e, y = ds["energy_Mn_L23"].values, ds["Mn_L23"].values
    np.testing.assert_allclose(d["Mn_L3_centroid"], V.centroid("Mn_L23", e, y))
    e, y = ds["energy_Ni_K"].values, ds["Ni_K"].values
    i = int(np.flatnonzero(np.isfinite(y).all(axis=1))[0])
    assert d["Ni_K_edge"][i] == V.half_step(e, y[i])
    t = V.set_trends(ds)
    rows = {(r["descriptor"], r["label"]): r["rho"] for r in trend_metrics(ds)}
    for key, pair in V.TREND_KEYS.items():
        assert t[key] == pytest.approx(rows[pair], abs=5e-4), key
