"""Reference compounds with measured K-edge XAS, built from their crystal structures.

The measured scans in ``../shared/data/xas-references`` (MnO, Mn3O4, Mn2O3,
MnO2, Ni(OH)2, Ni and Co foils) judge the simulation engines: a FEFF setting
is right for the K edges when it puts these compounds' edges in the measured
order and spacing. Each compound is built here with pymatgen from its space
group, lattice parameters and Wyckoff positions (room-temperature literature
values, rounded), so the same FEFF input writer as the NMC campaign
(:func:`mmspec_widgets.simulate.feff.feff_input`) applies.

Crystallographically distinct absorber sites are listed with their
multiplicities, so a compound's spectrum is the multiplicity-weighted mean of
its sites (Mn3O4: one tetrahedral Mn2+ to two octahedral Mn3+); O sites are
listed the same way (:func:`absorber_sites` with ``element="O"``).

Some compounds have no measured scan here (``files=''``): NiO and LiNiO2
(Ni K), and the non-NMC Mn oxides of :mod:`mmspec_widgets.simulate.foreign`
(perovskite LaMnO3, spinel LiMn2O4; with spinel Mn3O4 they are the
out-of-distribution materials of the model checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MMSpecError

__all__ = ["ReferenceCompound", "REFERENCE_COMPOUNDS", "build_reference", "absorber_sites"]


@dataclass(frozen=True)
class ReferenceCompound:
    """One reference compound.

    Attributes
    ----------
    name : str
        Short name, also the stem of the measured files (``MnO`` ->
        ``MnO_rt_0*.xdi``).
    formula : str
    spacegroup : str
        Hermann-Mauguin symbol as pymatgen reads it.
    lattice : tuple of float
        ``(a, b, c, alpha, beta, gamma)`` in Angstrom and degrees.
    species : tuple of str
    coords : tuple of tuple of float
        Fractional coordinates of the asymmetric unit, one per species entry.
    element : str
        Absorbing element (K edge).
    oxidation : float
        Mean formal oxidation state of the absorber.
    files : str
        Glob of the measured files in the XAS reference folder ('' when none).
    note : str
    site_oxidation : dict
        Formal oxidation state by absorber geometry (``"tet"``: 4 O
        neighbours, ``"oct"``: 6) where sites differ from ``oxidation``
        (Mn3O4) or where the mean is fractional (LiMn2O4: 3.5, half Mn3+ and
        half Mn4+); empty: every absorber at ``oxidation``.
    """

    name: str
    formula: str
    spacegroup: str
    lattice: tuple
    species: tuple
    coords: tuple
    element: str
    oxidation: float
    files: str = ""
    note: str = ""
    site_oxidation: dict = field(default_factory=dict)


def _hex(a, c):
    return (a, a, c, 90.0, 90.0, 120.0)


def _tet(a, c):
    return (a, a, c, 90.0, 90.0, 90.0)


def _cub(a):
    return (a, a, a, 90.0, 90.0, 90.0)


#: The compounds, in the order reports list them.
REFERENCE_COMPOUNDS: dict[str, ReferenceCompound] = {c.name: c for c in [
    ReferenceCompound("MnO", "MnO", "Fm-3m", _cub(4.445), ("Mn", "O"),
                      ((0, 0, 0), (0.5, 0.5, 0.5)), "Mn", 2.0, "MnO_rt_0*.xdi",
                      "rock salt"),
    # hausmannite, I4_1/amd in origin choice 1 (pymatgen's setting; the origin-2
    # positions 4a (0, 3/4, 1/8), 8d (0, 0, 1/2), 16h (0, 0.4716, 0.2589) shifted
    # by (0, -1/4, 1/8)): Mn2+ tetrahedral (4 x 2.04 A), Mn3+ octahedral
    # (4 x 1.93 + 2 x 2.28 A, Jahn-Teller elongated)
    ReferenceCompound("Mn3O4", "Mn3O4", "I4_1/amd", _tet(5.765, 9.442), ("Mn", "Mn", "O"),
                      ((0, 0.5, 0.25), (0, 0.75, 0.625), (0, 0.2216, 0.3839)), "Mn", 8 / 3,
                      "Mn3O4_rt_0*.xdi", "hausmannite (spinel, tetragonal)",
                      {"tet": 2.0, "oct": 3.0}),
    # bixbyite (cubic approximation of alpha-Mn2O3): Mn 8b and 24d
    ReferenceCompound("Mn2O3", "Mn2O3", "Ia-3", _cub(9.409), ("Mn", "Mn", "O"),
                      ((0.25, 0.25, 0.25), (0.2855, 0.0, 0.25), (0.3851, 0.1457, 0.3807)),
                      "Mn", 3.0, "Mn2O3_rt_0*.xdi", "bixbyite"),
    ReferenceCompound("MnO2", "MnO2", "P4_2/mnm", _tet(4.398, 2.873), ("Mn", "O"),
                      ((0, 0, 0), (0.3046, 0.3046, 0)), "Mn", 4.0, "MnO2_rt_0*.xdi",
                      "pyrolusite (rutile type)"),
    # orthorhombic (O') LaMnO3 at room temperature, Pnma setting of the Pbnm
    # data of Rodriguez-Carvajal et al., PRB 57, R3189 (1998): a 5.537,
    # b 5.747, c 7.693 A (Pbnm) -> Pnma (b, c, a), positions (x, y, z) -> (y, z, x);
    # Jahn-Teller distorted Mn3+ octahedra (2 x 1.91, 2 x 1.97, 2 x 2.18 A)
    ReferenceCompound("LaMnO3", "LaMnO3", "Pnma", (5.747, 7.693, 5.537, 90.0, 90.0, 90.0),
                      ("La", "Mn", "O", "O"),
                      ((0.0486, 0.25, 0.9921), (0.0, 0.0, 0.5), (0.4859, 0.25, 0.0735),
                       (0.3066, 0.0384, 0.7256)),
                      "Mn", 3.0, "", "perovskite (orthorhombic); no measured scan here"),
    # spinel LiMn2O4, a = 8.245 A, O x = 0.263 (origin choice 2), written in
    # origin choice 1 (pymatgen's setting; shifted by 1/8): Li 8a tetrahedral,
    # Mn 16d octahedral (6 x 1.96 A), one Mn3+ to one Mn4+ (not ordered at room
    # temperature: every Mn site is half of each)
    ReferenceCompound("LiMn2O4", "LiMn2O4", "Fd-3m", _cub(8.245), ("Li", "Mn", "O"),
                      ((0.25, 0.25, 0.25), (0.625, 0.625, 0.625), (0.388, 0.388, 0.388)),
                      "Mn", 3.5, "", "spinel (cubic); no measured scan here",
                      {"oct": 3.5}),
    ReferenceCompound("NiOH2", "Ni(OH)2", "P-3m1", _hex(3.126, 4.605), ("Ni", "O", "H"),
                      ((0, 0, 0), (1 / 3, 2 / 3, 0.2221), (1 / 3, 2 / 3, 0.4275)), "Ni", 2.0,
                      "NiOH2_rt_0*.xdi", "brucite type"),
    ReferenceCompound("NiO", "NiO", "Fm-3m", _cub(4.177), ("Ni", "O"),
                      ((0, 0, 0), (0.5, 0.5, 0.5)), "Ni", 2.0, "",
                      "rock salt; no measured scan here"),
    ReferenceCompound("LiNiO2", "LiNiO2", "R-3m", _hex(2.878, 14.19), ("Ni", "Li", "O"),
                      ((0, 0, 0), (0, 0, 0.5), (0, 0, 0.2589)), "Ni", 3.0, "",
                      "layered Ni3+ oxide (alpha-NaFeO2 type); no measured scan here"),
    ReferenceCompound("Ni_metal", "Ni", "Fm-3m", _cub(3.524), ("Ni",), ((0, 0, 0),),
                      "Ni", 0.0, "Ni_metal_rt_0*.xdi", "fcc foil"),
    ReferenceCompound("Co_metal", "Co", "P6_3/mmc", _hex(2.507, 4.069), ("Co",),
                      ((1 / 3, 2 / 3, 0.25),), "Co", 0.0, "co_metal_rt.xdi", "hcp foil"),
]}


class _Wrapped:
    """Minimal stand-in for NMCStructure (what feff_input reads: ``.structure``)."""

    def __init__(self, structure):
        self.structure = structure


def build_reference(name: str):
    """Periodic pymatgen structure of reference compound ``name``.

    Returns
    -------
    object
        With attribute ``structure`` (pymatgen Structure), accepted by :func:`~mmspec_widgets.simulate.feff.feff_input`.
    """
    from pymatgen.core import Lattice, Structure

    if name not in REFERENCE_COMPOUNDS:
        raise MMSpecError(f"unknown reference compound {name!r}: expected one of "
                          f"{', '.join(REFERENCE_COMPOUNDS)}")
    c = REFERENCE_COMPOUNDS[name]
    lat = Lattice.from_parameters(*c.lattice)
    s = Structure.from_spacegroup(c.spacegroup, lat, list(c.species),
                                  [list(x) for x in c.coords], tol=1e-3)
    return _Wrapped(s)


def absorber_sites(name: str, built=None, element: str | None = None) -> list[dict]:
    """Distinct absorber sites of a compound and their weights.

    Sites are grouped by their first shell (sorted distances to the
    neighbours of other elements within 3 Angstrom - O around a cation, the
    cations around O, H excluded either way - or to all neighbours in a metal,
    rounded to 0.01 Angstrom), which separates e.g. the tetrahedral and
    octahedral Mn of Mn3O4, or the apical and equatorial O of LaMnO3.

    Parameters
    ----------
    name : str
        Compound (:data:`REFERENCE_COMPOUNDS`).
    built : object, optional
        The compound built by :func:`build_reference` (built here when None).
    element : str, optional
        Absorbing element (default the compound's K-edge absorber, ``element``).

    Returns
    -------
    list of dict
        ``site`` (index of a representative), ``weight`` (share of the
        absorbers with this environment), ``n_neighbours``, ``mean_bond``
        (Angstrom, first shell).
    """
    c = REFERENCE_COMPOUNDS[name]
    element = element or c.element
    built = built or build_reference(name)
    s = built.structure
    if not any(site.specie.symbol == element for site in s):
        raise MMSpecError(f"{name} holds no {element!r}")
    groups: dict[tuple, list[int]] = {}
    for i, site in enumerate(s):
        if site.specie.symbol != element:
            continue
        nbs = s.get_neighbors(site, 3.0)
        if element == "O":
            partners = [n for n in nbs if n.specie.symbol not in ("O", "H")]
        else:
            partners = [n for n in nbs if n.specie.symbol == "O"]
        d = sorted(round(float(n.nn_distance), 2) for n in (partners or nbs))
        first = [x for x in d if x <= d[0] + 0.45] if d else []
        groups.setdefault((len(first), tuple(first)), []).append(i)
    n = sum(len(v) for v in groups.values())
    out = []
    for (nn, first), members in sorted(groups.items(), key=lambda kv: kv[1][0]):
        out.append({"site": int(members[0]), "weight": len(members) / n,
                    "n_neighbours": int(nn),
                    "mean_bond": float(np.mean(first)) if first else float("nan")})
    return out
