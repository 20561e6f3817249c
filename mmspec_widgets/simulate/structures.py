"""Layered Li(Ni,Mn,Co)O2 supercells with defects, reproducible from a seed.

A :class:`StructureSpec` describes one structure (composition, Li content,
transition-metal ordering, O vacancies, Li/Ni antisite pairs, Li excess and
the random seed); :meth:`StructureSpec.build` returns a :class:`NMCStructure`:
a periodic pymatgen ``Structure`` with per-site oxidation states, the defect
positions and the centre of the region whose spectra will be simulated.

Model (approximations, stated plainly)
--------------------------------------
* R-3m alpha-NaFeO2 cell (hexagonal setting, 3 formula units): Li on 3b
  (0, 0, 1/2), TM on 3a (0, 0, 0), O on 6c (0, 0, z), z ~ 0.258.
* Lattice parameters by Vegard's law between LiNiO2 (a 2.878, c 14.19 A),
  LiCoO2 (2.816, 14.05 A) and LiMn0.5Ni0.5O2 (2.890, 14.29 A); delithiation
  contracts a (about -0.07 A at x = 0) and expands c up to x = 0.5
  (+0.30 A), then partly collapses (H2 -> H3) below x = 0.5.
* Oxidation states by charge balance: Li+, O2-, Mn4+, Co3+, Ni2+ to start;
  the missing positive charge is added to Ni (2+ -> 3+ on all Ni, then
  3+ -> 4+), then to Co (3+ -> 4+); Ni in the Li layer stays Ni2+. Holes go
  first to the TMs farthest from O vacancies, so TMs next to a vacancy stay
  reduced; a surplus of electrons (many vacancies) reduces the TMs nearest the
  vacancies (Mn4+ -> 3+, Co3+ -> 2+, Ni3+ -> 2+). Holes that no TM can take are
  recorded as ``o_holes`` (ligand holes).
* Optional geometric adjustment (no DFT relaxation is available here): O
  positions are moved by a few steepest-descent steps towards bond lengths
  fixed by the TM oxidation state (Ni2+ 2.07, Ni3+ 1.96, Ni4+ 1.88, Mn3+ 2.02,
  Mn4+ 1.91, Co2+ 2.10, Co3+ 1.92, Co4+ 1.88, Li+ 2.10 A), so that spectra
  respond to oxidation state through geometry. This is a crude stand-in for a
  relaxation, not a substitute.
* ``phase`` other than ``"layered"`` (Li-rich Mn-rich, rock-salt-like and
  spinel-like surface phases) is built by :mod:`.phases` on the same parent
  lattice, with its own charge-balance rule that reaches Mn2+ and Co2+; the
  fields these phases add are left out of ``to_dict`` at their defaults, so
  layered specs keep their keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import MMSpecError
from .lattice import (
    NMCStructure,
    bond_valence_sums,
    lattice_parameters,
    parent_supercell,
    pbc_dist,
    relax_oxygen,
    target_bond_length,
    whole_sites,
)

__all__ = [
    "COMPOSITIONS",
    "PHASES",
    "StructureSpec",
    "NMCStructure",
    "lattice_parameters",
    "target_bond_length",
    "bond_valence_sums",
]

#: Named compositions: (Ni, Mn, Co) fractions of the transition metals.
COMPOSITIONS: dict[str, tuple[float, float, float]] = {
    "NMC111": (1 / 3, 1 / 3, 1 / 3),
    "NMC532": (0.5, 0.3, 0.2),
    "NMC622": (0.6, 0.2, 0.2),
    "NMC811": (0.8, 0.1, 0.1),
}

_OXI_RANGE = {"Ni": (2, 4), "Co": (2, 4), "Mn": (3, 4)}

#: Structure types of :class:`StructureSpec` (see :mod:`.phases`).
PHASES = ("layered", "li_rich", "rock_salt", "spinel")

@dataclass(frozen=True)
class StructureSpec:
    """Recipe of one NMC supercell; :meth:`build` makes it, from ``seed``.

    Parameters
    ----------
    composition : tuple of float
        (Ni, Mn, Co) fractions of the TM sites; rounded to whole sites of the
        supercell (the built structure reports the actual fractions).
    li : float
        Li content x in LixMO2 of the Li layer before defects (0.3 - 1).
    n_o_vacancy : int
        Number of O vacancies (placed next to each other, around the region
        centre).
    n_antisite : int
        Number of Li/Ni antisite pairs (a Ni moved into the Li layer and the
        Li it replaces moved onto the Ni's TM site), around the region centre.
    li_excess : float
        Extra Li on TM sites, as a fraction of TM sites (Li1+y M1-y O2).
    ordering : {"random", "clustered"}
        TM ordering: random, or Mn and Co clustered around a random point.
    supercell : tuple of int
        Repetition of the 12-atom hexagonal cell; (4, 4, 1) = 192 atoms.
    seed : int
        Seed of every random choice.
    relax : bool
        Apply the bond-length driven adjustment of O positions.
    name : str
        Free label (e.g. ``"NMC622"``).
    """

    composition: tuple[float, float, float] = COMPOSITIONS["NMC622"]
    li: float = 1.0
    n_o_vacancy: int = 0
    n_antisite: int = 0
    li_excess: float = 0.0
    ordering: str = "random"
    supercell: tuple[int, int, int] = (4, 4, 1)
    seed: int = 0
    relax: bool = True
    name: str = ""
    phase: str = "layered"
    honeycomb: bool = False
    mixing: float = 0.0
    tm_in_li: float = 0.0
    tetrahedral: float = 0.0

    def __post_init__(self):
        comp = tuple(float(c) for c in self.composition)
        if len(comp) != 3 or min(comp) < 0 or not np.isclose(sum(comp), 1.0, atol=1e-3):
            raise MMSpecError(
                f"StructureSpec.composition={self.composition!r}: expected three "
                "non-negative (Ni, Mn, Co) fractions summing to 1"
            )
        object.__setattr__(self, "composition", comp)
        if not 0.0 <= float(self.li) <= 1.0:
            raise MMSpecError(f"StructureSpec.li={self.li!r}: expected 0 <= li <= 1")
        if self.n_o_vacancy < 0 or self.n_antisite < 0:
            raise MMSpecError("StructureSpec: defect counts must be >= 0")
        if not 0.0 <= self.li_excess <= 0.2:
            raise MMSpecError(f"StructureSpec.li_excess={self.li_excess!r}: expected 0 - 0.2")
        if self.ordering not in ("random", "clustered"):
            raise MMSpecError(
                f"StructureSpec.ordering={self.ordering!r}: expected 'random' or 'clustered'"
            )
        sc = tuple(int(s) for s in self.supercell)
        if len(sc) != 3 or min(sc) < 1:
            raise MMSpecError(f"StructureSpec.supercell={self.supercell!r}: expected 3 ints >= 1")
        object.__setattr__(self, "supercell", sc)
        if self.phase not in PHASES:
            raise MMSpecError(
                f"StructureSpec.phase={self.phase!r}: expected one of {', '.join(PHASES)}")
        if self.phase == "layered" and (self.honeycomb or self.mixing or self.tm_in_li
                                        or self.tetrahedral):
            raise MMSpecError("StructureSpec: honeycomb, mixing, tm_in_li and tetrahedral "
                              "need phase 'li_rich', 'rock_salt' or 'spinel'")
        if self.honeycomb and (self.phase != "li_rich" or sc[0] % 3 or sc[1] % 3
                               or self.li_excess <= 0):
            raise MMSpecError(
                "StructureSpec.honeycomb: needs phase 'li_rich', li_excess > 0 and an "
                f"in-plane supercell of multiples of 3 (sqrt3 x sqrt3 order), got {sc}")
        for name, hi in (("mixing", 0.5), ("tm_in_li", 0.8), ("tetrahedral", 1.0)):
            if not 0.0 <= float(getattr(self, name)) <= hi:
                raise MMSpecError(f"StructureSpec.{name}={getattr(self, name)!r}: "
                                  f"expected 0 - {hi}")
        if self.tetrahedral and self.phase != "spinel":
            raise MMSpecError("StructureSpec.tetrahedral: only for phase 'spinel'")

    @property
    def defect(self) -> str:
        """Defect class: ``"none"``, ``"vacancy"``, ``"antisite"`` or ``"both"``."""
        if self.n_o_vacancy and self.n_antisite:
            return "both"
        if self.n_o_vacancy:
            return "vacancy"
        if self.n_antisite:
            return "antisite"
        return "none"

    def to_dict(self) -> dict:
        """JSON-able provenance of this spec."""
        d = asdict(self)
        d["composition"] = list(self.composition)
        d["supercell"] = list(self.supercell)
        # fields added with the surface / Li-rich phases are left out at their
        # defaults, so the keys (structure ids) of layered specs never change
        for k, v in _PHASE_DEFAULTS.items():
            if d[k] == v:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StructureSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["composition"] = tuple(d["composition"])
        d["supercell"] = tuple(d["supercell"])
        return cls(**d)

    @property
    def key(self) -> str:
        """Short stable hash of the spec (12 hex digits), the structure id."""
        s = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(s.encode()).hexdigest()[:12]

    def build(self) -> NMCStructure:
        """Build the structure (deterministic for a given spec)."""
        if self.phase == "layered":
            return _build(self)
        from .phases import build_phase

        return build_phase(self)


#: Defaults of the fields of the non-layered phases (left out of ``to_dict``).
_PHASE_DEFAULTS = {"phase": "layered", "honeycomb": False, "mixing": 0.0, "tm_in_li": 0.0,
                   "tetrahedral": 0.0}


# --------------------------------------------------------------------------
def _build(spec: StructureSpec) -> NMCStructure:
    rng = np.random.default_rng(spec.seed)
    ni, mn, co = spec.composition
    s, a, c, frac, sym, layer = parent_supercell(spec)
    lat = s.lattice
    tm_idx = np.flatnonzero(layer == "TM")
    li_idx = np.flatnonzero(layer == "Li")
    o_idx = np.flatnonzero(layer == "O")
    n_tm = tm_idx.size

    # -- transition-metal counts and ordering ------------------------------
    n_ni, n_mn, n_co = whole_sites((ni, mn, co), n_tm)
    if spec.ordering == "random":
        order = rng.permutation(tm_idx)
        labels = ["Mn"] * n_mn + ["Co"] * n_co + ["Ni"] * n_ni
    else:  # clustered: Mn then Co nearest a random point, Ni elsewhere
        p = rng.random(3)
        p[2] = frac[tm_idx[0], 2]
        d = pbc_dist(frac[tm_idx], p, lat) + rng.normal(0, 0.3, n_tm)
        order = tm_idx[np.argsort(d)]
        labels = ["Mn"] * n_mn + ["Co"] * n_co + ["Ni"] * n_ni
    for i, e in zip(order, labels, strict=True):
        sym[i] = e

    # -- region centre and defects ------------------------------------------
    removed: list[int] = []
    vacancies = []
    antisites = []
    if spec.n_o_vacancy:
        first = int(rng.choice(o_idx))
        centre_frac = frac[first].copy()
    elif spec.n_antisite:
        cand = [i for i in tm_idx if sym[i] == "Ni"]
        if not cand:
            raise MMSpecError(f"spec {spec.key}: antisites need Ni, composition has none")
        centre_frac = frac[int(rng.choice(cand))].copy()
    else:
        centre_frac = frac[int(rng.choice(tm_idx))].copy()

    if spec.n_antisite:
        ni_sites = np.array([i for i in tm_idx if sym[i] == "Ni"])
        if ni_sites.size < spec.n_antisite:
            raise MMSpecError(
                f"spec {spec.key}: {spec.n_antisite} antisites need as many Ni "
                f"(structure has {ni_sites.size})"
            )
        dn = pbc_dist(frac[ni_sites], centre_frac, lat) + rng.random(ni_sites.size) * 0.1
        used_li: set[int] = set()
        for ni_site in ni_sites[np.argsort(dn)][: spec.n_antisite]:
            dl = pbc_dist(frac[li_idx], frac[ni_site], lat) + rng.random(li_idx.size) * 0.1
            for j in np.argsort(dl):
                if int(li_idx[j]) not in used_li:
                    li_site = int(li_idx[j])
                    break
            used_li.add(li_site)
            # swap the species: Ni goes to the Li layer, Li to the TM layer
            sym[ni_site], sym[li_site] = "Li", "Ni"
            antisites.append((li_site, int(ni_site)))  # (Ni in Li layer, Li on TM site)

    if spec.li_excess > 0:
        n_ex = int(round(spec.li_excess * n_tm))
        cand = np.array([i for i in tm_idx if sym[i] != "Li"])
        # Li excess replaces TMs in proportion: take random TM sites
        for i in rng.choice(cand, size=min(n_ex, cand.size), replace=False):
            sym[i] = "Li"

    # delithiation of the Li layer (antisite Ni and its neighbourhood untouched)
    n_remove = int(round((1.0 - spec.li) * li_idx.size))
    li_layer_li = np.array([i for i in li_idx if sym[i] == "Li"])
    if n_remove:
        removed.extend(int(i) for i in rng.choice(li_layer_li, size=min(n_remove, li_layer_li.size),
                                                   replace=False))

    if spec.n_o_vacancy:
        do = pbc_dist(frac[o_idx], centre_frac, lat) + rng.random(o_idx.size) * 0.1
        vac = o_idx[np.argsort(do)][: spec.n_o_vacancy]
        vacancies = [frac[i] @ lat.matrix for i in vac]
        removed.extend(int(i) for i in vac)

    # -- oxidation states by charge balance -------------------------------
    keep = np.setdiff1d(np.arange(len(sym)), np.array(removed, dtype=int))
    oxi = np.zeros(len(sym))
    base = {"Li": 1, "O": -2, "Mn": 4, "Co": 3, "Ni": 2}
    for i in keep:
        oxi[i] = base[sym[i]]
    holes = -oxi[keep].sum()
    vac_frac = np.array([frac[i] for i in removed if layer[i] == "O"])

    def dvac(i):
        if vac_frac.size == 0:
            return np.inf
        return float(np.min(pbc_dist(vac_frac, frac[i], lat)))

    tms = [i for i in keep if layer[i] == "TM" and sym[i] in ("Ni", "Mn", "Co")]
    jitter = {i: rng.random() * 1e-3 for i in tms}
    far_first = sorted(tms, key=lambda i: (-dvac(i), jitter[i]))
    near_first = far_first[::-1]
    if holes < 0:
        # electron surplus: reduce the TMs nearest the vacancies
        # (Mn4+ -> 3+, Co3+ -> 2+, Ni takes no extra electron below 2+)
        for i in near_first:
            if holes >= 0:
                break
            lo = _OXI_RANGE[sym[i]][0]
            if oxi[i] > lo:
                oxi[i] -= 1
                holes += 1
    # holes: Ni 2+ -> 3+ (all), then Ni 3+ -> 4+, then Co 3+ -> 4+, far from vacancies first
    for target_el, frm in (("Ni", 2), ("Ni", 3), ("Co", 3)):
        for i in far_first:
            if holes <= 0:
                break
            if sym[i] == target_el and oxi[i] == frm:
                oxi[i] += 1
                holes -= 1
    # Mn3+ left from vacancy reduction can be re-oxidised if holes remain
    for i in far_first:
        if holes <= 0:
            break
        if sym[i] == "Mn" and oxi[i] < 4:
            oxi[i] += 1
            holes -= 1
    o_holes = float(max(holes, 0.0))
    if holes < 0:
        raise MMSpecError(
            f"spec {spec.key}: {-holes:g} electrons left after reducing every TM; "
            "too many O vacancies for this composition"
        )

    # -- assemble pymatgen structure -------------------------------------
    from pymatgen.core import Structure

    species = [sym[i] for i in keep]
    new = Structure(lat, species, frac[keep], coords_are_cartesian=False,
                    site_properties={"oxidation": [float(oxi[i]) for i in keep],
                                     "layer": [str(layer[i]) for i in keep]})
    old_to_new = {int(o): n for n, o in enumerate(keep)}
    antisites = [(old_to_new[a_], old_to_new[b_]) for a_, b_ in antisites]
    if spec.relax:
        relax_oxygen(new)
    centre = centre_frac @ lat.matrix
    return NMCStructure(
        structure=new,
        spec=spec,
        vacancies=np.array(vacancies, dtype=float).reshape(-1, 3),
        antisites=antisites,
        centre=np.asarray(centre, dtype=float),
        o_holes=o_holes,
        li_vacancies=np.array([frac[i] @ lat.matrix for i in removed if layer[i] == "Li"],
                              dtype=float).reshape(-1, 3),
        info={"a": a, "c": c, "n_li_removed": n_remove},
    )


