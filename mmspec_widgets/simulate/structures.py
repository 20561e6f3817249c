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
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import MMSpecError

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

# End members (a, c) in Angstrom.
_A_NI, _C_NI = 2.878, 14.19
_A_CO, _C_CO = 2.816, 14.05
_A_MN, _C_MN = 2.890, 14.29  # LiMn0.5Ni0.5O2
_O_Z = 0.258

#: Target TM-O (and Li-O) bond lengths in Angstrom by (element, oxidation).
#: Mn2+ (MnO, 2.22 A) never occurs in the layered NMC supercells (Mn stays 3+
#: or 4+); the reduced surface phases (:mod:`.phases`) reach it, and it is the
#: crystal-field reference length of Mn2+ sites of other oxides. Tetrahedral
#: sites (spinel phase) use these minus :data:`TET_SHORTENING`.
BOND_TARGETS: dict[tuple[str, int], float] = {
    ("Ni", 2): 2.07, ("Ni", 3): 1.96, ("Ni", 4): 1.88,
    ("Mn", 2): 2.22, ("Mn", 3): 2.02, ("Mn", 4): 1.91,
    ("Co", 2): 2.10, ("Co", 3): 1.92, ("Co", 4): 1.88,
    ("Li", 1): 2.10,
}

_OXI_RANGE = {"Ni": (2, 4), "Co": (2, 4), "Mn": (3, 4)}

#: Structure types of :class:`StructureSpec` (see :mod:`.phases`).
PHASES = ("layered", "li_rich", "rock_salt", "spinel")

#: Tetrahedral M-O bonds are shorter than octahedral ones by about the
#: difference of Shannon's IV- and VI-coordinate radii (Mn2+ 0.17, Co2+ 0.17,
#: Zn2+ 0.14 A).
TET_SHORTENING = 0.16


def lattice_parameters(ni: float, mn: float, co: float, li: float = 1.0) -> tuple[float, float]:
    """Hexagonal lattice parameters (a, c) in Angstrom of Li_x(Ni,Mn,Co)O2.

    Parameters
    ----------
    ni, mn, co : float
        Fractions of the transition-metal sites (sum 1).
    li : float
        Li content x in LixMO2 (0 - 1.2).

    Returns
    -------
    (a, c) : tuple of float
        Lattice parameters in Angstrom.
    """
    a = _A_NI + (_A_CO - _A_NI) * co + 2.0 * (_A_MN - _A_NI) * mn
    c = _C_NI + (_C_CO - _C_NI) * co + 2.0 * (_C_MN - _C_NI) * mn
    d = 1.0 - min(max(li, 0.0), 1.0)
    a -= 0.07 * d
    c += 0.60 * d if d <= 0.5 else 0.30 - 0.60 * (d - 0.5)
    return float(a), float(c)


def target_bond_length(element: str, oxidation: float) -> float:
    """Target M-O bond length (Angstrom) for ``element`` at ``oxidation``.

    Fractional oxidation states interpolate linearly between the tabulated
    integer ones; values outside the table are clipped.
    """
    keys = sorted(k[1] for k in BOND_TARGETS if k[0] == element)
    if not keys:
        raise MMSpecError(f"no bond-length target for element {element!r}")
    ox = float(np.clip(oxidation, keys[0], keys[-1]))
    lo = int(np.floor(ox))
    hi = min(lo + 1, keys[-1])
    if lo == hi or (element, hi) not in BOND_TARGETS:
        return BOND_TARGETS[(element, lo)]
    w = ox - lo
    return (1 - w) * BOND_TARGETS[(element, lo)] + w * BOND_TARGETS[(element, hi)]


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


@dataclass
class NMCStructure:
    """A built NMC supercell.

    Attributes
    ----------
    structure : pymatgen.core.Structure
        Periodic supercell. Site properties: ``"oxidation"`` (formal
        oxidation state), ``"layer"`` (``"Li"``, ``"TM"`` or ``"O"``: the
        sublattice the site sits on).
    spec : StructureSpec
    vacancies : numpy.ndarray
        (n, 3) Cartesian positions (Angstrom) of removed O.
    antisites : list of tuple of int
        (index of the Ni in the Li layer, index of the Li on the TM site).
    centre : numpy.ndarray
        Cartesian centre (Angstrom) of the simulated region.
    o_holes : float
        Holes per supercell no TM could take (ligand holes).
    li_vacancies : numpy.ndarray
        (n, 3) Cartesian positions (Angstrom) of Li removed by delithiation.
    """

    structure: object
    spec: StructureSpec
    vacancies: np.ndarray
    antisites: list
    centre: np.ndarray
    o_holes: float = 0.0
    li_vacancies: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    info: dict = field(default_factory=dict)

    @property
    def oxidation(self) -> np.ndarray:
        return np.asarray(self.structure.site_properties["oxidation"], dtype=float)

    @property
    def layer(self) -> list:
        return list(self.structure.site_properties["layer"])

    @property
    def symbols(self) -> list:
        return [s.specie.symbol for s in self.structure]

    def total_charge(self) -> float:
        """Sum of formal charges (0 for a charge-balanced structure, ligand
        holes counted)."""
        return float(self.oxidation.sum() + self.o_holes)

    def composition_counts(self) -> dict:
        """Counts of Li, Ni, Mn, Co, O in the supercell."""
        syms = self.symbols
        return {e: syms.count(e) for e in ("Li", "Ni", "Mn", "Co", "O")}


# --------------------------------------------------------------------------
def _pbc_dist(frac_a: np.ndarray, frac_b: np.ndarray, lattice) -> np.ndarray:
    """Minimum-image distances (Angstrom) between fractional points a (n,3) and b (3,)."""
    d = np.asarray(frac_a) - np.asarray(frac_b)
    d -= np.round(d)
    return np.linalg.norm(d @ lattice.matrix, axis=-1)


def _whole_sites(fractions, n: int) -> list[int]:
    """Largest-remainder rounding of ``fractions`` (sum 1) to ``n`` whole sites."""
    raw = np.asarray(fractions, dtype=float) * n
    out = np.floor(raw + 1e-9).astype(int)
    for k in np.argsort(-(raw - out), kind="stable")[: n - int(out.sum())]:
        out[k] += 1
    return [int(v) for v in out]


def _parent(a: float, c: float):
    from pymatgen.core import Lattice, Structure

    lat = Lattice.hexagonal(a, c)
    return Structure.from_spacegroup(
        "R-3m", lat, ["Li", "Ni", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, _O_Z]]
    )


def _build(spec: StructureSpec) -> NMCStructure:
    rng = np.random.default_rng(spec.seed)
    ni, mn, co = spec.composition
    a, c = lattice_parameters(ni, mn, co, spec.li)
    s = _parent(a, c)
    s.make_supercell(list(spec.supercell))
    lat = s.lattice
    frac = np.array(s.frac_coords)
    sym = np.array([x.specie.symbol for x in s], dtype=object)
    layer = np.where(sym == "Li", "Li", np.where(sym == "O", "O", "TM")).astype(object)
    tm_idx = np.flatnonzero(layer == "TM")
    li_idx = np.flatnonzero(layer == "Li")
    o_idx = np.flatnonzero(layer == "O")
    n_tm = tm_idx.size

    # -- transition-metal counts and ordering ------------------------------
    n_ni, n_mn, n_co = _whole_sites((ni, mn, co), n_tm)
    if spec.ordering == "random":
        order = rng.permutation(tm_idx)
        labels = ["Mn"] * n_mn + ["Co"] * n_co + ["Ni"] * n_ni
    else:  # clustered: Mn then Co nearest a random point, Ni elsewhere
        p = rng.random(3)
        p[2] = frac[tm_idx[0], 2]
        d = _pbc_dist(frac[tm_idx], p, lat) + rng.normal(0, 0.3, n_tm)
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
        dn = _pbc_dist(frac[ni_sites], centre_frac, lat) + rng.random(ni_sites.size) * 0.1
        used_li: set[int] = set()
        for ni_site in ni_sites[np.argsort(dn)][: spec.n_antisite]:
            dl = _pbc_dist(frac[li_idx], frac[ni_site], lat) + rng.random(li_idx.size) * 0.1
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
        do = _pbc_dist(frac[o_idx], centre_frac, lat) + rng.random(o_idx.size) * 0.1
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
        return float(np.min(_pbc_dist(vac_frac, frac[i], lat)))

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
        _relax_oxygen(new)
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


def _relax_oxygen(s, n_iter: int = 40, step: float = 0.3, cutoff: float = 2.5) -> float:
    """Move O positions towards oxidation-state bond-length targets (in place).

    Steepest descent on sum_bonds (r - r_target)^2 over cation-O bonds within
    ``cutoff`` Angstrom, cations fixed. Returns the final RMS bond error (A).
    """
    oxi = s.site_properties["oxidation"]
    syms = [x.specie.symbol for x in s]
    centers, neighbors, images, _ = s.get_neighbor_list(cutoff)
    pairs = [(i, j, img) for i, j, img in zip(centers, neighbors, images, strict=True)
             if syms[i] != "O" and syms[j] == "O"]
    if not pairs:
        return 0.0
    ci = np.array([p[0] for p in pairs])
    oj = np.array([p[1] for p in pairs])
    img = np.array([p[2] for p in pairs], dtype=float)
    target = np.array([target_bond_length(syms[i], oxi[i]) for i in ci])
    layer = s.site_properties.get("layer")
    if layer is not None and "tet" in layer:  # TMs on tetrahedral sites (spinel phase)
        target = target - TET_SHORTENING * np.array([layer[i] == "tet" for i in ci])
    weight = np.array([0.3 if syms[i] == "Li" else 1.0 for i in ci])
    m = s.lattice.matrix
    frac = np.array(s.frac_coords)
    rms = 0.0
    for _ in range(n_iter):
        vec = (frac[oj] + img - frac[ci]) @ m  # cation -> O
        r = np.linalg.norm(vec, axis=1)
        err = r - target
        rms = float(np.sqrt(np.mean(err[weight == 1.0] ** 2))) if np.any(weight == 1.0) else 0.0
        g = (weight * err)[:, None] * vec / r[:, None]
        grad = np.zeros((len(s), 3))
        np.add.at(grad, oj, g)
        frac -= step * (grad @ np.linalg.inv(m))
    for k in np.unique(oj):
        s.replace(int(k), s[int(k)].specie, frac[k], properties=s[int(k)].properties)
    return rms


def bond_valence_sums(nmc: NMCStructure, cutoff: float = 2.6) -> np.ndarray:
    """Bond-valence sums (valence units) of the TM sites; NaN elsewhere.

    A cross-check of the geometry against the formal oxidation states, with
    pymatgen's bond-valence parameters (one parameter set per element, so the
    absolute values run low for Ni3+/Ni4+; the ordering is what is checked).

    Parameters
    ----------
    nmc : NMCStructure
    cutoff : float
        Neighbour cutoff in Angstrom.
    """
    from pymatgen.analysis.bond_valence import calculate_bv_sum

    s = nmc.structure
    out = np.full(len(s), np.nan)
    for i, site in enumerate(s):
        if site.specie.symbol in ("Ni", "Mn", "Co"):
            nbs = [n for n in s.get_neighbors(site, cutoff) if n.specie.symbol == "O"]
            out[i] = calculate_bv_sum(site, nbs)
    return out
