"""edrixs L2,3 multiplets: chemical shift with oxidation, crystal field, mixing."""

from __future__ import annotations

import numpy as np
import pytest

from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.simulate.multiplets import (
    crystal_field,
    d_count,
    l23_spectrum,
    l23_spectrum_mixed,
)


def _l3(r):
    om, mu = r["omega"], r["mu"]
    i = int(np.argmax(mu))
    l3 = om < om[i] + 6.0  # L3 region: up to 6 eV above the L3 maximum
    return om[i], float(np.sum(om[l3] * mu[l3]) / np.sum(mu[l3]))


@pytest.fixture(scope="module")
def ni():
    return {ox: l23_spectrum("Ni", ox) for ox in (2, 3, 4)}


def test_ni_l3_moves_up_with_oxidation(ni):
    peak = {ox: _l3(r)[0] for ox, r in ni.items()}
    centroid = {ox: _l3(r)[1] for ox, r in ni.items()}
    assert centroid[2] < centroid[3] < centroid[4]
    assert peak[2] < peak[3] and peak[2] < peak[4]
    assert 0.5 < centroid[4] - centroid[2] < 6.0  # eV, a chemical shift, not a jump


def test_ni_l23_spin_orbit_and_holes(ni):
    for r in ni.values():
        om, mu = r["omega"], r["mu"]
        i3 = int(np.argmax(mu))
        after = om > om[i3] + 10
        i2 = np.flatnonzero(after)[np.argmax(mu[after])]
        assert 15.0 < om[i2] - om[i3] < 20.0  # Ni L3-L2 splitting ~17 eV
        assert np.all(mu >= -1e-9)
    # white-line intensity grows with the number of 3d holes (d8 -> d6)
    area = {ox: np.trapezoid(r["mu"], r["omega"]) for ox, r in ni.items()}
    assert area[2] < area[3] < area[4]
    assert area[4] / area[2] == pytest.approx(2.0, rel=0.15)


def test_crystal_field_and_coordination():
    tdq6, ds6, dt6 = crystal_field("Ni", 3, 6)
    tdq5, ds5, dt5 = crystal_field("Ni", 3, 5)
    assert ds6 == dt6 == 0.0 and ds5 > 0 and dt5 > 0
    short, _, _ = crystal_field("Ni", 3, 6, mean_bond=1.90)
    long_, _, _ = crystal_field("Ni", 3, 6, mean_bond=2.02)
    assert short > tdq6 > long_
    r5 = l23_spectrum("Ni", 2, coordination=5)
    r6 = l23_spectrum("Ni", 2, coordination=6)
    assert r5["params"]["coordination"] == 5
    assert not np.allclose(np.interp(r6["omega"], r5["omega"], r5["mu"]), r6["mu"], atol=1e-3)


def test_mixed_is_between(ni):
    mix = l23_spectrum_mixed("Ni", 2.5)
    c2, c3 = _l3(ni[2])[1], _l3(ni[3])[1]
    cm = _l3(mix)[1]
    assert min(c2, c3) < cm < max(c2, c3)
    assert l23_spectrum_mixed("Ni", 3.0)["params"]["d"] == 7


def test_bad_input():
    assert d_count("Mn", 4) == 3 and d_count("Co", 3) == 6 and d_count("Ni", 2) == 8
    with pytest.raises(MMSpecError, match="element"):
        d_count("Fe", 3)
    with pytest.raises(MMSpecError, match="crystal-field"):
        crystal_field("Mn", 5)
    with pytest.raises(MMSpecError, match="geometry"):
        crystal_field("Mn", 2, 6, geometry="tetrahedral")
    with pytest.raises(MMSpecError, match="geometry"):
        crystal_field("Mn", 2, 4, geometry="cubic")
