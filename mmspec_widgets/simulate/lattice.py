"""The lattice machinery shared by every structure type: end-member lattice
parameters, bond-length targets, the built supercell (:class:`NMCStructure`),
minimum-image distances, whole-site rounding, the R-3m parent cell and the
relaxation of O positions towards the bond-length targets.

:mod:`.structures` (layered NMC) and :mod:`.phases` (Li-rich, rock-salt,
spinel) both build on it; it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MMSpecError

__all__ = ["BOND_TARGETS", "TET_SHORTENING", "NMCStructure", "lattice_parameters",
           "target_bond_length", "pbc_dist", "whole_sites", "parent_structure",
           "parent_supercell",
           "relax_oxygen", "bond_valence_sums"]

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
    spec: object  # the StructureSpec it was built from
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


def pbc_dist(frac_a: np.ndarray, frac_b: np.ndarray, lattice) -> np.ndarray:
    """Minimum-image distances (Angstrom) between fractional points a (n,3) and b (3,)."""
    d = np.asarray(frac_a) - np.asarray(frac_b)
    d -= np.round(d)
    return np.linalg.norm(d @ lattice.matrix, axis=-1)


def whole_sites(fractions, n: int) -> list[int]:
    """Largest-remainder rounding of ``fractions`` (sum 1) to ``n`` whole sites."""
    raw = np.asarray(fractions, dtype=float) * n
    out = np.floor(raw + 1e-9).astype(int)
    for k in np.argsort(-(raw - out), kind="stable")[: n - int(out.sum())]:
        out[k] += 1
    return [int(v) for v in out]


def parent_structure(a: float, c: float):
    from pymatgen.core import Lattice, Structure

    lat = Lattice.hexagonal(a, c)
    return Structure.from_spacegroup(
        "R-3m", lat, ["Li", "Ni", "O"], [[0, 0, 0.5], [0, 0, 0], [0, 0, _O_Z]]
    )


def parent_supercell(spec):
    """The R-3m parent cell of ``spec``'s composition and Li content made into
    its supercell, with each site's species and sublattice.

    Returns
    -------
    (structure, a, c, frac, sym, layer)
        The pymatgen supercell, its lattice parameters (Angstrom), fractional
        coordinates, species (object array, to be edited by the builder) and
        sublattice of every site (``"Li"``, ``"TM"`` or ``"O"``).
    """
    ni, mn, co = spec.composition
    a, c = lattice_parameters(ni, mn, co, spec.li)
    s = parent_structure(a, c)
    s.make_supercell(list(spec.supercell))
    frac = np.array(s.frac_coords)
    sym = np.array([x.specie.symbol for x in s], dtype=object)
    layer = np.where(sym == "Li", "Li", np.where(sym == "O", "O", "TM")).astype(object)
    return s, a, c, frac, sym, layer


def relax_oxygen(s, n_iter: int = 40, step: float = 0.3, cutoff: float = 2.5) -> float:
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
