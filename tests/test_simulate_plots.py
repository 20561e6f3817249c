"""Trend descriptors and the trends figure, on the committed training set."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmspec_widgets.errors import DataError  # noqa: E402
from mmspec_widgets.simulate.dataset import load_training_set  # noqa: E402
from mmspec_widgets.simulate.plots import (  # noqa: E402
    plot_trends,
    spectral_descriptors,
    trend_metrics,
)


@pytest.fixture(scope="module")
def ds():
    return load_training_set()


def test_descriptors_physical_units(ds):
    d = spectral_descriptors(ds)
    c = d["Ni_L3_centroid"]
    ok = np.isfinite(c)
    assert ok.any() and np.all((c[ok] > 851) & (c[ok] < 860))  # eV, inside the L3 window
    k = d["Ni_K_edge"][np.isfinite(d["Ni_K_edge"])]
    assert np.all((k > 8325) & (k < 8360))
    assert np.all(d["O_K_preedge"][np.isfinite(d["O_K_preedge"])] > 0)


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
