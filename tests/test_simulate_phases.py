"""Li-rich Mn-rich and reduced surface phases (simulate.phases), and that the
layered specs of the shipped campaign keep their keys and structures."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.simulate.campaign import PHASE_BLOCK, make_specs, plan_structure
from mmspec_widgets.simulate.labels import region_labels, region_sites, site_environment
from mmspec_widgets.simulate.multiplets import crystal_field
from mmspec_widgets.simulate.phases import honeycomb_colour
from mmspec_widgets.simulate.structures import StructureSpec, bond_valence_sums

ROOT = Path(__file__).resolve().parents[1]
_TM = ("Ni", "Mn", "Co")

LI_RICH = StructureSpec(composition=(0.1625, 0.675, 0.1625), li_excess=0.2, phase="li_rich",
                        honeycomb=True, supercell=(6, 6, 1), seed=1)
LI_RICH_RANDOM = StructureSpec(composition=(0.125, 0.75, 0.125), li=0.3, li_excess=0.2,
                               phase="li_rich", seed=2)
ROCK_SALT = StructureSpec(composition=(0.6, 0.2, 0.2), li=0.8, mixing=0.3, tm_in_li=0.4,
                          n_o_vacancy=2, phase="rock_salt", seed=3)
SPINEL = StructureSpec(composition=(0.2, 0.6, 0.2), li=0.6, mixing=0.25, tetrahedral=0.5,
                       tm_in_li=0.2, n_o_vacancy=1, phase="spinel", seed=4)
PHASE_SPECS = [LI_RICH, LI_RICH_RANDOM, ROCK_SALT, SPINEL]


def _hash(nmc) -> str:
    # fractional coordinates snapped to 1e-8 and wrapped into [0, 1): a
    # coordinate of 1 - 1e-16 on one machine is 0 on another (the same site)
    frac = np.round(np.round(nmc.structure.frac_coords, 8) % 1.0, 5) % 1.0
    blob = json.dumps([nmc.symbols, frac.tolist(),
                       nmc.oxidation.tolist(), nmc.layer])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# -- the shipped layered campaign is untouched ---------------------------------
def test_shipped_campaign_keys_unchanged():
    specs = make_specs(240, seed=1)
    manifests = [json.loads(p.read_text())
                 for p in (ROOT / "data" / "sim" / "structures").glob("*.json")]
    # the campaign store ships with the repository (data/sim, 241 manifests)
    assert len(manifests) >= 240, "data/sim/structures: the shipped campaign store is missing"
    ids = {m["structure_id"] for m in manifests}
    assert {s.key for s in specs} <= ids
    for m in manifests:  # a stored spec rebuilds its id
        assert StructureSpec.from_dict(m["spec"]).key == m["structure_id"]
    # the layered campaign's specs name no phase (their keys predate phases)
    assert all("phase" not in m["spec"] for m in manifests if m["structure_id"] in
               {s.key for s in specs})


# hashes of the layered structures the campaign was simulated on (species,
# positions, oxidation states, sublattices), unchanged since before the
# surface phases (taken again when the hash became machine-independent)
_OLD = {0: ("683ab5a5e8cc", "b2cfa49b3a8e9f4f"), 20: ("1c329a7723c4", "0f4c0f71e3d398ec"),
        57: ("02f536bb01a9", "c551a456c9ccfc75"), 239: ("252f872978a3", "53f2b8db321ca8c7")}


@pytest.mark.parametrize("i", sorted(_OLD))
def test_layered_structures_unchanged(i):
    spec = make_specs(i + 1, seed=1)[i]
    assert spec.phase == "layered"
    assert (spec.key, _hash(spec.build())) == _OLD[i]


# -- spec -----------------------------------------------------------------------
@pytest.mark.parametrize("spec", PHASE_SPECS, ids=lambda s: s.phase)
def test_phase_reproducible_from_seed(spec):
    a = spec.build()
    b = StructureSpec.from_dict(spec.to_dict()).build()
    assert StructureSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["phase"] == spec.phase
    assert _hash(a) == _hash(b)
    c = StructureSpec.from_dict({**spec.to_dict(), "seed": spec.seed + 1}).build()
    assert _hash(c) != _hash(a) and c.spec.key != spec.key
    assert a.info["phase"] == spec.phase


@pytest.mark.parametrize("kwargs,word", [
    ({"phase": "olivine"}, "phase"),
    ({"mixing": 0.2}, "need phase"),
    ({"phase": "li_rich", "li_excess": 0.2, "honeycomb": True}, "multiples of 3"),
    ({"phase": "rock_salt", "mixing": 0.7}, "mixing"),
    ({"phase": "rock_salt", "tetrahedral": 0.5}, "tetrahedral"),
])
def test_bad_phase_spec(kwargs, word):
    with pytest.raises(MMSpecError, match=word):
        StructureSpec(**kwargs)


# -- chemistry and geometry ------------------------------------------------------
@pytest.mark.parametrize("spec", PHASE_SPECS, ids=lambda s: f"{s.phase}-{s.seed}")
def test_phase_charge_and_geometry(spec):
    nmc = spec.build()
    assert nmc.total_charge() == pytest.approx(0.0, abs=1e-9)
    s = nmc.structure
    syms = np.array(nmc.symbols)
    dm = s.distance_matrix
    np.fill_diagonal(dm, np.inf)
    cat = syms != "O"
    tm = np.isin(syms, _TM)
    assert dm[np.ix_(cat, cat)].min() > 2.3  # cation - cation
    assert dm[np.ix_(tm, ~cat)].min() > 1.6  # TM - O
    assert dm[np.ix_(~cat, ~cat)].min() > 2.2  # O - O
    ox = nmc.oxidation
    for el, (lo, hi) in {"Ni": (2, 4), "Co": (2, 4), "Mn": (2, 4)}.items():
        assert all(lo <= o <= hi for o, e in zip(ox, syms, strict=True) if e == el)
    bvs = bond_valence_sums(nmc)
    assert np.all((bvs[tm] > 0.7) & (bvs[tm] < 4.5))
    # every L2,3 case the region holds is one the multiplet engine accepts
    for i, _d in region_sites(nmc):
        if syms[i] in _TM:
            env = site_environment(nmc, i)
            crystal_field(syms[i], ox[i], env["coordination"], env["mean_bond"],
                          env.get("geometry", "octahedral"))


def test_li_rich_honeycomb_order():
    nmc = LI_RICH.build()
    s, syms, layer = nmc.structure, nmc.symbols, nmc.layer
    tm_layer = [i for i in range(len(s)) if layer[i] == "TM"]
    li_tm = [i for i in tm_layer if syms[i] == "Li"]
    assert len(li_tm) == round(0.2 * 108)  # Li1.2 M0.8 O2 in the TM layer
    colour, lay = honeycomb_colour(s.frac_coords[li_tm], LI_RICH.supercell)
    for i in li_tm:
        nbs = [n for n in s.get_neighbors(s[i], 3.3)
               if layer[n.index] == "TM" and abs(n.coords[2] - s[i].coords[2]) < 0.3]
        assert len(nbs) == 6 and all(syms[n.index] == "Mn" for n in nbs)
    for L in set(lay.tolist()):  # one honeycomb sublattice per layer
        assert len(set(colour[lay == L].tolist())) == 1
    c = nmc.composition_counts()
    assert c["Mn"] / (c["Ni"] + c["Mn"] + c["Co"]) == pytest.approx(0.675, abs=0.01)
    assert region_labels(nmc)["mn_fraction"] >= 0.6
    # the random variant: as many TM-layer Li, not ordered; delithiated: Co4+, Ni4+, O holes
    rnd = LI_RICH_RANDOM.build()
    assert sum(e == "Li" and la == "TM" for e, la in zip(rnd.symbols, rnd.layer,
                                                        strict=True)) == round(0.2 * 48)
    ox = dict(Counter(zip(rnd.symbols, rnd.oxidation, strict=True)))
    assert ox.get(("Co", 4.0)) and ox.get(("Ni", 4.0)) and rnd.o_holes > 0


def test_rock_salt_mixing_reduces():
    nmc = ROCK_SALT.build()
    syms, layer, ox = nmc.symbols, nmc.layer, nmc.oxidation
    in_li = [i for i, (e, la) in enumerate(zip(syms, layer, strict=True)) if e in _TM and la == "Li"]
    li_in_tm = [i for i, (e, la) in enumerate(zip(syms, layer, strict=True))
                if e == "Li" and la == "TM"]
    assert len(li_in_tm) == round(0.3 * 48) == len(nmc.antisites)
    assert len(in_li) == len(li_in_tm) + round(0.4 * 48)  # exchanged + added
    assert np.mean(ox[in_li] == 2) >= 0.8  # reduced first, MO-like
    tm_layer = [ox[i] for i, (e, la) in enumerate(zip(syms, layer, strict=True))
                if e in _TM and la == "TM"]
    layered = StructureSpec(composition=ROCK_SALT.composition, li=ROCK_SALT.li,
                            n_o_vacancy=2, seed=3).build()
    lay_ox = [o for o, e in zip(layered.oxidation, layered.symbols, strict=True) if e in _TM]
    assert np.mean(ox[in_li]) < np.mean(tm_layer)
    all_tm = [i for i, e in enumerate(syms) if e in _TM]
    assert np.mean(ox[all_tm]) < np.mean(lay_ox) - 0.2  # the phase is reduced
    assert {("Co", 2.0), ("Mn", 2.0)} <= set(zip(syms, ox, strict=True))
    assert len(nmc.vacancies) == 2 and region_labels(nmc)["o_vacancy"] == 2


def test_spinel_tms_in_li_slab():
    nmc = SPINEL.build()
    s, syms, layer, ox = nmc.structure, nmc.symbols, nmc.layer, nmc.oxidation
    tet = [i for i, la in enumerate(layer) if la == "tet"]
    oct_li = [i for i, (e, la) in enumerate(zip(syms, layer, strict=True)) if e in _TM and la == "Li"]
    n_move = round(0.25 * 48)
    assert len(tet) == round(0.5 * n_move)
    assert len(oct_li) == n_move - len(tet) + round(0.2 * 48)
    assert len(nmc.info["tm_vacancies"]) == n_move
    for i in tet:
        env = site_environment(nmc, i)
        assert env["coordination"] == 4 and env["geometry"] == "tetrahedral"
        assert syms[i] in _TM and ox[i] == 2
        nbs = s.get_neighbors(s[i], 2.5)
        assert all(n.specie.symbol == "O" for n in nbs)
    mn = {o for o, e, la in zip(ox, syms, layer, strict=True) if e == "Mn" and la != "tet"}
    assert mn == {3.0, 4.0}  # octahedral Mn3+/Mn4+, tetrahedral TM2+
    manifest, jobs = plan_structure(SPINEL, ["Mn_L23", "Ni_L23", "Co_L23"])
    assert manifest["phase"] == "spinel" and manifest["spec"]["phase"] == "spinel"
    geo = {j["params"].get("geometry", "octahedral") for j in jobs}
    assert geo <= {"octahedral", "tetrahedral"}


# -- planned set -----------------------------------------------------------------
def test_make_specs_kinds():
    assert [s.key for s in make_specs(40, seed=3, kinds=None)] == \
        [s.key for s in make_specs(40, seed=3)]
    specs = make_specs(40, seed=3, kinds="all")
    assert [s.key for s in specs] == [s.key for s in make_specs(40, seed=3, kinds="all")]
    assert Counter(s.phase for s in specs[:20]) == PHASE_BLOCK
    assert Counter(s.phase for s in make_specs(20, 0, kinds=("li_rich", "spinel"))) == \
        {"li_rich": 10, "spinel": 10}
    honey = [s for s in specs if s.honeycomb]
    assert honey and all(s.supercell == (6, 6, 1) for s in honey)
    with pytest.raises(MMSpecError, match="kinds"):
        make_specs(5, kinds={"li_rich": 5})


def test_planned_set_counts_and_spans():
    """160 planned structures: >= 40 Li-rich Mn-rich, >= 40 with a reduced
    surface phase, region Mn oxidation over 2.5 - 4 and Co over 2 - 3.5."""
    rows = [(s.phase, region_labels(s.build())) for s in make_specs(160, seed=1, kinds="all")]
    li_rich_mn = sum(p == "li_rich" and lab["mn_fraction"] >= 0.6 for p, lab in rows)
    reduced = sum(p in ("rock_salt", "spinel") for p, _ in rows)
    assert li_rich_mn >= 40 and reduced >= 40
    mn = np.array([lab["mn_oxidation"] for _, lab in rows])
    co = np.array([lab["co_oxidation"] for _, lab in rows])
    assert np.nanmin(mn) <= 2.5 and np.nanmax(mn) >= 4.0
    assert np.nanmin(co) <= 2.0 and np.nanmax(co) >= 3.5
    # not just the extremes: a few regions in each half-unit band
    for lo, hi in ((2.0, 3.0), (3.0, 3.75), (3.75, 4.01)):
        assert np.sum((mn >= lo) & (mn < hi)) >= 5, (lo, hi)
