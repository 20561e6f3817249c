"""Structure builder: composition, defects, reproducibility, charge balance, labels."""

from __future__ import annotations

import numpy as np
import pytest

from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.simulate.labels import (
    NEAR_DEFECT,
    region_labels,
    region_sites,
    select_sites,
    site_classes,
)
from mmspec_widgets.simulate.structures import (
    COMPOSITIONS,
    StructureSpec,
    bond_valence_sums,
    lattice_parameters,
    target_bond_length,
)


@pytest.mark.parametrize("name", ["NMC111", "NMC532", "NMC622", "NMC811"])
def test_composition_and_counts(name):
    spec = StructureSpec(composition=COMPOSITIONS[name], li=1.0, seed=3, relax=False)
    nmc = spec.build()
    c = nmc.composition_counts()
    n_tm = c["Ni"] + c["Mn"] + c["Co"]
    assert n_tm == 48 and c["Li"] == 48 and c["O"] == 96  # 4x4x1 hexagonal supercell
    for el, frac in zip(("Ni", "Mn", "Co"), COMPOSITIONS[name], strict=True):
        assert abs(c[el] / n_tm - frac) < 1.0 / n_tm  # whole sites, largest remainder


def test_delithiation_vacancies_antisites():
    spec = StructureSpec(composition=COMPOSITIONS["NMC811"], li=0.5, n_o_vacancy=2,
                         n_antisite=2, seed=11)
    nmc = spec.build()
    c = nmc.composition_counts()
    assert c["O"] == 96 - 2
    assert len(nmc.vacancies) == 2
    assert len(nmc.antisites) == 2
    layer = nmc.layer
    syms = nmc.symbols
    for ni_in_li, li_on_tm in nmc.antisites:
        assert syms[ni_in_li] == "Ni" and layer[ni_in_li] == "Li"
        assert syms[li_on_tm] == "Li" and layer[li_on_tm] == "TM"
        assert nmc.oxidation[ni_in_li] == 2.0  # Ni in the Li layer is Ni2+
    # 24 Li removed from the Li layer (x = 0.5 of 48), antisite Li kept
    assert nmc.info["n_li_removed"] == 24
    assert c["Li"] == 48 - 24
    # the vacancies sit in the region: labels see them
    lab = region_labels(nmc)
    assert lab["o_vacancy"] == 2
    assert lab["coordination"] < 6.0


def test_reproducible_from_seed():
    spec = StructureSpec(composition=(0.5, 0.3, 0.2), li=0.7, n_o_vacancy=1, seed=42,
                         ordering="clustered")
    a, b = spec.build(), StructureSpec.from_dict(spec.to_dict()).build()
    assert a.symbols == b.symbols
    np.testing.assert_allclose(a.structure.cart_coords, b.structure.cart_coords)
    np.testing.assert_array_equal(a.oxidation, b.oxidation)
    c = StructureSpec(**{**spec.to_dict(), "seed": 43, "composition": (0.5, 0.3, 0.2),
                         "supercell": (4, 4, 1)}).build()
    assert c.symbols != a.symbols
    assert spec.key == StructureSpec.from_dict(spec.to_dict()).key != c.spec.key


@pytest.mark.parametrize("li,n_vac,n_anti", [(1.0, 0, 0), (0.3, 0, 0), (0.6, 3, 1), (1.0, 2, 2)])
def test_charge_balance(li, n_vac, n_anti):
    nmc = StructureSpec(composition=COMPOSITIONS["NMC622"], li=li, n_o_vacancy=n_vac,
                        n_antisite=n_anti, seed=5).build()
    assert nmc.total_charge() == pytest.approx(0.0, abs=1e-9)
    syms, ox = nmc.symbols, nmc.oxidation
    assert all(ox[i] == 4 for i, s in enumerate(syms) if s == "Mn") or n_vac > 0
    assert all(2 <= ox[i] <= 4 for i, s in enumerate(syms) if s in ("Ni", "Co"))


def test_delithiation_oxidises_ni_first():
    full = StructureSpec(composition=COMPOSITIONS["NMC111"], li=1.0, seed=1).build()
    half = StructureSpec(composition=COMPOSITIONS["NMC111"], li=0.5, seed=1).build()
    deep = StructureSpec(composition=COMPOSITIONS["NMC111"], li=0.3, seed=1).build()

    def mean(nmc, el):
        return np.mean([o for o, s in zip(nmc.oxidation, nmc.symbols, strict=True) if s == el])

    assert mean(full, "Ni") == pytest.approx(2.0)
    assert mean(half, "Ni") > mean(full, "Ni")
    assert mean(half, "Co") == pytest.approx(3.0)  # Co untouched while Ni can take holes
    assert mean(deep, "Co") > 3.0  # Ni is all 4+: Co takes the rest


def test_vacancy_reduces_nearest_tm():
    nmc = StructureSpec(composition=COMPOSITIONS["NMC811"], li=0.6, n_o_vacancy=1, seed=2).build()
    s, ox = nmc.structure, nmc.oxidation
    vac = nmc.vacancies[0]
    ni = [i for i, x in enumerate(nmc.symbols) if x == "Ni" and nmc.layer[i] == "TM"]
    d = np.array([s.lattice.get_distance_and_image(
        s.lattice.get_fractional_coords(vac), s[i].frac_coords)[0] for i in ni])
    near = [ox[i] for i, di in zip(ni, d, strict=True) if di < 2.5]
    far = [ox[i] for i, di in zip(ni, d, strict=True) if di > 5.0]
    assert near and far
    assert np.mean(near) < np.mean(far)


def test_relaxation_moves_bonds_towards_targets():
    spec = StructureSpec(composition=COMPOSITIONS["NMC811"], li=0.3, seed=4)
    rigid = StructureSpec(**{**spec.to_dict(), "relax": False, "composition": spec.composition,
                             "supercell": spec.supercell}).build()
    relaxed = spec.build()

    def bond_err(nmc):
        s, ox, err = nmc.structure, nmc.oxidation, []
        for i, site in enumerate(s):
            if nmc.symbols[i] in ("Ni", "Co", "Mn"):
                for n in s.get_neighbors(site, 2.4):
                    if n.specie.symbol == "O":
                        err.append(n.nn_distance - target_bond_length(nmc.symbols[i], ox[i]))
        return np.sqrt(np.mean(np.square(err)))

    assert bond_err(relaxed) < 0.5 * bond_err(rigid)


def test_lattice_parameters_trends():
    a_ni, c_ni = lattice_parameters(1, 0, 0)
    a_co, _ = lattice_parameters(0, 0, 1)
    a_111, c_111 = lattice_parameters(1 / 3, 1 / 3, 1 / 3)
    assert 2.80 < a_co < a_111 < 2.90 and 14.0 < c_111 < 14.4
    a_half, c_half = lattice_parameters(1, 0, 0, li=0.5)
    assert a_half < a_ni and c_half > c_ni  # delithiation: a contracts, c expands


def test_region_and_site_selection():
    nmc = StructureSpec(composition=COMPOSITIONS["NMC622"], li=1.0, seed=9).build()
    sites = region_sites(nmc, 4.5)
    assert len({i for i, _ in sites}) == len(sites)
    assert all(d <= 4.5 + 1e-9 for _, d in sites)
    lab = region_labels(nmc)
    assert lab["li_content"] == pytest.approx(1.0)
    assert lab["ni_fraction"] + lab["mn_fraction"] + lab["co_fraction"] == pytest.approx(1.0)
    assert lab["o_vacancy"] == 0 and lab["antisite"] == 0 and lab["coordination"] == 6.0
    sel = select_sites(nmc, 4.5, n_o=2)
    assert len(sel["O_K"]) == 2 and len(sel["Li_K"]) == 1
    assert {r["site"] for r in sel["Ni_L23"]} == {i for i, _ in sites if nmc.symbols[i] == "Ni"}
    # defect-free: one class, the nearest sites, equal weights
    assert {r["class"] for r in sel["O_K"]} == {"bulk"}
    assert [r["weight"] for r in sel["O_K"]] == [0.5, 0.5]


@pytest.mark.parametrize("defects", [{"n_o_vacancy": 1}, {"n_antisite": 1},
                                     {"n_o_vacancy": 1, "n_antisite": 1}])
def test_site_weights_follow_the_region(defects):
    """A defect's neighbours weigh in a region spectrum by their share of the
    region's atoms, the antisite atom by 1 / (its element's count)."""
    nmc = StructureSpec(composition=COMPOSITIONS["NMC622"], li=0.8, seed=3, **defects).build()
    classes = site_classes(nmc, 4.5)
    sel = select_sites(nmc, 4.5, n_o=2)
    for edge, recs in sel.items():
        assert sum(r["weight"] for r in recs) == pytest.approx(1.0), edge
    for el, edge in (("O", "O_K"), ("Li", "Li_K"), ("Ni", "Ni_K")):
        total = sum(len(v) for v in classes[el].values())
        for c, members in classes[el].items():
            w = sum(r["weight"] for r in sel[edge] if r["class"] == c)
            assert w == pytest.approx(len(members) / total), (edge, c)
    if "n_antisite" in defects:
        li_on_tm = nmc.antisites[0][1]
        assert classes["Li"]["defect"] == [li_on_tm]
        n_li = sum(len(v) for v in classes["Li"].values())
        (rec,) = [r for r in sel["Li_K"] if r["class"] == "defect"]
        assert rec["site"] == li_on_tm and rec["weight"] == pytest.approx(1 / n_li) and n_li > 4
    if "n_o_vacancy" in defects:
        # every O within NEAR_DEFECT of the vacancy is "near", the rest "bulk"
        s = nmc.structure
        for i in classes["O"]["near"]:
            d = s.lattice.get_distance_and_image(
                s[i].frac_coords, s.lattice.get_fractional_coords(nmc.vacancies[0]))[0]
            assert d < NEAR_DEFECT or "n_antisite" in defects
        assert classes["O"]["bulk"]


@pytest.mark.parametrize("kwargs,word", [
    ({"composition": (0.5, 0.5, 0.5)}, "composition"),
    ({"li": 1.5}, "li"),
    ({"ordering": "striped"}, "ordering"),
    ({"n_o_vacancy": -1}, "defect"),
])
def test_bad_spec(kwargs, word):
    with pytest.raises(MMSpecError, match=word):
        StructureSpec(**kwargs)


def test_bond_valence_cross_check():
    nmc = StructureSpec(composition=COMPOSITIONS["NMC111"], li=0.4, seed=3).build()
    bvs = bond_valence_sums(nmc)
    syms, ox = nmc.symbols, nmc.oxidation
    ni = {o: np.mean([b for b, s, oo in zip(bvs, syms, ox, strict=True) if s == "Ni" and oo == o])
          for o in (3, 4)}
    assert ni[4] > ni[3] + 0.3  # shorter bonds for Ni4+ give larger bond-valence sums
    assert np.isnan(bvs[syms.index("O")])
