"""FEFF10 input writer and a tiny real FEFF run."""

from __future__ import annotations

import numpy as np
import pytest

from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.simulate.feff import FeffParams, FeffRunError, feff_input, run_feff
from mmspec_widgets.simulate.structures import COMPOSITIONS, StructureSpec


@pytest.fixture(scope="module")
def nmc():
    return StructureSpec(composition=COMPOSITIONS["NMC622"], li=0.7, n_o_vacancy=1,
                         seed=2).build()


def _atoms(text):
    lines = text.splitlines()
    i = lines.index("ATOMS")
    rows = [ln.split() for ln in lines[i + 1:] if ln.strip() and ln.strip() != "END"]
    return [(float(r[0]), float(r[1]), float(r[2]), int(r[3]), r[4], float(r[5])) for r in rows]


def _potentials(text):
    lines = text.splitlines()
    i = lines.index("POTENTIALS")
    out = {}
    for ln in lines[i + 1:]:
        if not ln.strip():
            break
        ip, z, tag = ln.split()
        out[int(ip)] = (int(z), tag)
    return out


def test_input_cards_and_cluster(nmc):
    o = nmc.symbols.index("O")
    par = FeffParams(rfms=5.0, corehole="RPA")
    text = feff_input(nmc, o, par)
    for card in ("EDGE K", "COREHOLE RPA", "FMS 5.00 0", "XANES 4.00", "CONTROL 1 1 1 1 1 1"):
        assert card in text
    assert "SCF" not in text  # no self-consistency by default
    atoms = _atoms(text)
    pots = _potentials(text)
    # absorber: once, at the origin, potential 0 of oxygen
    assert pots[0] == (8, "O")
    assert [a[3] for a in atoms].count(0) == 1
    assert atoms[0][:3] == (0.0, 0.0, 0.0) and atoms[0][3] == 0
    # sorted by distance, all within the cluster radius, distances consistent
    d = np.array([a[5] for a in atoms])
    assert np.all(np.diff(d) >= -1e-6) and d.max() <= par.cluster_radius + 1e-6
    xyz = np.array([a[:3] for a in atoms])
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), d, atol=2e-5)
    # every other potential is used, its tag matches the atoms'
    for ip, (_z, tag) in pots.items():
        if ip:
            assert any(a[3] == ip and a[4] == tag for a in atoms)
    # the cluster includes periodic images: more atoms than the sphere could
    # hold from one cell image only, and no two atoms on top of each other
    assert len(atoms) > 100
    dmin = min(np.linalg.norm(xyz[i] - xyz[j]) for i in range(40) for j in range(i))
    assert dmin > 1.5


def test_input_options(nmc):
    ni = nmc.symbols.index("Ni")
    text = feff_input(nmc, ni, FeffParams(rfms=6.0, r_cluster=7.5, corehole="FSR", scf=3.5))
    assert "COREHOLE FSR" in text and "SCF 3.50" in text and "FMS 6.00" in text
    assert _potentials(text)[0] == (28, "Ni")
    assert max(a[5] for a in _atoms(text)) <= 7.5


def test_input_bad_args(nmc):
    with pytest.raises(MMSpecError, match="site"):
        feff_input(nmc, 10_000)
    with pytest.raises(MMSpecError, match="rfms"):
        FeffParams(rfms=50.0)
    with pytest.raises(MMSpecError, match="corehole"):
        FeffParams(corehole="half")


def test_tiny_real_feff_run(nmc, tmp_path):
    o = nmc.symbols.index("O")
    text = feff_input(nmc, o, FeffParams(rfms=3.0, r_cluster=4.5, corehole="FSR"))
    res = run_feff(text, tmp_path / "w", keep=True)
    om, mu = res["omega"], res["mu"]
    assert om.size > 30 and np.all(np.diff(om) > 0)
    assert 515.0 < om[0] < 545.0  # O K edge region, absolute eV
    assert np.all(np.isfinite(mu))
    # an absorption edge: low before, ~1 (FEFF normalisation) well above
    assert mu[:3].mean() < 0.3 * mu.max()
    assert 0.5 < mu[-5:].mean() < 1.5
    assert res["wall_s"] > 0 and "feff10" in res["engine"]
    assert (tmp_path / "w" / "xmu.dat").exists()


def test_feff_failure_is_reported(tmp_path):
    with pytest.raises(FeffRunError):
        run_feff("TITLE broken\nEDGE K\nPOTENTIALS\n 0 8 O\nATOMS\nEND\n", tmp_path / "bad")
