"""Local labels of simulated regions, and which sites to simulate.

A *region* is every site within ``radius`` (Angstrom) of the structure's
region centre (an O vacancy, an antisite Ni, or a random TM site in
defect-free structures) - what one EELS pixel or XAS spot averages. Its
labels are computed from all its sites; its spectrum per edge estimates the
mean over all the region's atoms of that element from a few simulated sites,
one class at a time (defect atom / neighbour of a defect / the rest), each
class weighted by its share of the region (:func:`select_sites`).
"""

from __future__ import annotations

import numpy as np

from ..errors import MMSpecError

__all__ = [
    "LABELS",
    "PHASES",
    "PHASE_LABELS",
    "CLASSIFICATION_LABELS",
    "LI_RICH_MN",
    "REDUCED_PHASES",
    "li_rich_mn_rich",
    "reduced_surface",
    "phase_flags",
    "region_sites",
    "site_environment",
    "region_labels",
    "select_sites",
    "site_classes",
    "DEFAULT_RADIUS",
    "NEAR_DEFECT",
]

#: Region radius (Angstrom): the first two TM-O shells and the nearest TM/Li layers.
DEFAULT_RADIUS = 4.5

#: Sites closer than this (Angstrom) to an O vacancy or an antisite atom form
#: the "near" class of :func:`site_classes`: the first shell of neighbours.
NEAR_DEFECT = 3.0

#: Names of the label variables of the training set.
LABELS = (
    "li_content", "ni_fraction", "mn_fraction", "co_fraction",
    "ni_oxidation", "mn_oxidation", "co_oxidation",
    "o_vacancy", "antisite", "coordination",
)

#: Kinds of structure a region belongs to (``phase`` coordinate of the set):
#: layered NMC, Li-rich Mn-rich layered (Li excess in the TM layer), and the
#: reduced surface phases, rock-salt-like and spinel-like.
PHASES = ("layered", "li_rich", "rock_salt", "spinel")

#: 0/1 label variables of the set, one per phase other than layered NMC: the
#: model's phase targets (probability that a region is of that phase).
PHASE_LABELS = PHASES[1:]

#: labels read as count > 0 (defects) or 0/1 (phases): a model gives the
#: probability of the event, and maps are scored as classifications
CLASSIFICATION_LABELS = ("o_vacancy", "antisite") + PHASE_LABELS

#: Mn fraction of the TMs from which a Li-rich region counts as Li-rich Mn-rich
LI_RICH_MN = 0.6

#: the reduced surface phases
REDUCED_PHASES = ("rock_salt", "spinel")


def li_rich_mn_rich(phase, mn_fraction) -> np.ndarray:
    """Where a region is Li-rich with Mn >= :data:`LI_RICH_MN` of its TMs (NaN
    Mn fraction: no Mn)."""
    mn = np.nan_to_num(np.asarray(mn_fraction, float))
    return (np.asarray(phase).astype(str) == "li_rich") & (mn >= LI_RICH_MN)


def reduced_surface(phase) -> np.ndarray:
    """Where a region is of a reduced surface phase (:data:`REDUCED_PHASES`)."""
    return np.isin(np.asarray(phase).astype(str), REDUCED_PHASES)


def phase_flags() -> dict:
    """CF attributes of a map of phase codes: -1 ``unknown``, then the index
    into :data:`PHASES`."""
    return {"flag_values": np.arange(-1, len(PHASES), dtype=np.int8),
            "flag_meanings": " ".join(("unknown",) + tuple(PHASES))}

_TM = ("Ni", "Mn", "Co")


def region_sites(nmc, radius: float = DEFAULT_RADIUS, centre=None) -> list[tuple[int, float]]:
    """Sites within ``radius`` (Angstrom) of ``centre`` (default: the region
    centre), periodic images folded onto their site index.

    Returns
    -------
    list of (site index, distance in Angstrom), nearest first; sites at
    equal distance (to 1e-4 Angstrom) by index, whatever the last bits of
    their distances, so the sites a structure's spectra are simulated at do
    not depend on float rounding.
    """
    if radius <= 0:
        raise MMSpecError(f"radius={radius!r}: expected > 0 Angstrom")
    c = nmc.centre if centre is None else np.asarray(centre, dtype=float)
    best: dict[int, float] = {}
    for n in nmc.structure.get_sites_in_sphere(c, radius, include_index=True):
        i, d = int(n.index), float(n.nn_distance)
        if i not in best or d < best[i]:
            best[i] = d
    return sorted(best.items(), key=lambda t: (round(t[1], 4), t[0]))


def site_environment(nmc, site: int, cutoff: float = 2.5) -> dict:
    """O coordination and mean M-O distance (Angstrom) of one site."""
    s = nmc.structure
    nbs = [n for n in s.get_neighbors(s[site], cutoff) if n.specie.symbol == "O"]
    d = [float(n.nn_distance) for n in nbs]
    out = {"coordination": len(nbs), "mean_bond": float(np.mean(d)) if d else float("nan")}
    layer = s.site_properties.get("layer")
    if layer is not None and layer[site] == "tet" and len(nbs) == 4:
        out["geometry"] = "tetrahedral"  # a TM on a tetrahedral site (spinel phase)
    return out


def _count_within(points: np.ndarray, centre: np.ndarray, lattice, radius: float) -> int:
    if len(points) == 0:
        return 0
    f = lattice.get_fractional_coords(np.asarray(points)) - lattice.get_fractional_coords(centre)
    f -= np.round(f)
    return int(np.sum(np.linalg.norm(f @ lattice.matrix, axis=1) <= radius + 1e-6))


def region_labels(nmc, radius: float = DEFAULT_RADIUS) -> dict:
    """Labels of the region of ``nmc`` (all sites within ``radius``).

    Returns
    -------
    dict
        li_content (x in LixMO2 locally: Li atoms per Li-layer lattice site
        of the region; 1 for a pristine region), ni/mn/co_fraction (of TM, sum 1),
        ni/mn/co_oxidation (mean formal oxidation state; NaN when the element
        is absent), o_vacancy (O vacancies in the region), antisite (Li/Ni
        antisite pairs whose Ni lies in the region), coordination (mean O
        coordination of the region's TMs), n_sites, n_oxygen (O atoms
        present in the region).
    """
    s = nmc.structure
    sites = [i for i, _ in region_sites(nmc, radius)]
    syms = [s[i].specie.symbol for i in sites]
    oxi = nmc.oxidation
    n_tm = sum(e in _TM for e in syms)
    if n_tm == 0:
        raise MMSpecError(f"region of radius {radius} A holds no TM; use a larger radius")
    # Li per formula unit: Li atoms over Li-layer lattice sites (occupied or
    # emptied by delithiation) of the region, so a pristine region gives 1
    n_li_sites = sum(nmc.layer[i] == "Li" for i in sites) + _count_within(
        nmc.li_vacancies, nmc.centre, s.lattice, radius)
    out: dict = {"li_content": syms.count("Li") / max(n_li_sites, 1)}
    for e in _TM:
        out[f"{e.lower()}_fraction"] = syms.count(e) / n_tm
    for e in _TM:
        v = [oxi[i] for i, x in zip(sites, syms, strict=True) if x == e]
        out[f"{e.lower()}_oxidation"] = float(np.mean(v)) if v else float("nan")
    out["o_vacancy"] = _count_within(nmc.vacancies, nmc.centre, s.lattice, radius)
    ni_li = np.array([s[a].coords for a, _b in nmc.antisites]).reshape(-1, 3)
    out["antisite"] = _count_within(ni_li, nmc.centre, s.lattice, radius)
    coords = [site_environment(nmc, i)["coordination"] for i, x in zip(sites, syms, strict=True) if x in _TM]
    out["coordination"] = float(np.mean(coords))
    out["n_sites"] = len(sites)
    out["n_oxygen"] = syms.count("O")
    return out


def _defect_distance(nmc, sites: list[int]) -> np.ndarray:
    """Distance (Angstrom, periodic) from each site to the nearest defect: an
    O vacancy or either atom of a Li/Ni antisite pair (0 for those atoms)."""
    s = nmc.structure
    pts = [np.asarray(v, float) for v in nmc.vacancies]
    pts += [s[i].coords for pair in nmc.antisites for i in pair]
    if not pts or not sites:
        return np.full(len(sites), np.inf)
    lat = s.lattice
    f = lat.get_fractional_coords(np.array([s[i].coords for i in sites]))[:, None, :] \
        - lat.get_fractional_coords(np.array(pts))[None, :, :]
    f -= np.round(f)
    return np.linalg.norm(f @ lat.matrix, axis=2).min(axis=1)


def site_classes(nmc, radius: float = DEFAULT_RADIUS) -> dict[str, dict[str, list[int]]]:
    """The region's sites of each element, in classes by their distance to a defect.

    ``"defect"``: the atom of an antisite pair itself; ``"near"``: within
    :data:`NEAR_DEFECT` of an O vacancy or an antisite atom; ``"bulk"``: the
    rest (every site of a defect-free region). Sites nearest the region centre
    first.

    Returns
    -------
    dict
        Element -> class -> site indices (empty classes left out).
    """
    s = nmc.structure
    sites = [i for i, _ in region_sites(nmc, radius)]
    d = dict(zip(sites, _defect_distance(nmc, sites), strict=True))
    out: dict[str, dict[str, list[int]]] = {}
    for i in sites:
        c = "defect" if d[i] < 0.5 else "near" if d[i] < NEAR_DEFECT else "bulk"
        out.setdefault(s[i].specie.symbol, {}).setdefault(c, []).append(i)
    return out


def select_sites(nmc, radius: float = DEFAULT_RADIUS, n_o: int = 2) -> dict[str, list[dict]]:
    """Sites to simulate for each edge of the region, and their weights.

    The region spectrum of an edge is the mean over *all* the region's atoms
    of its element; it is estimated class by class (:func:`site_classes`):
    each class is represented by its sites nearest the region centre, weighted
    by the class's share of the region's atoms, so a defect's neighbours count
    as much as they are numerous and no more. K edges: ``n_o`` sites (O K) or
    one site (Li, Mn/Co/Ni K) for the class holding the site nearest the
    centre, one for each other class; a defect-free region has one class,
    i.e. its nearest sites. Mn/Co/Ni L2,3: every TM site of the region
    (multiplet calculations are cheap), equal weights. An element absent from
    the region gets no site (its edges are missing for this sample).

    Returns
    -------
    dict
        Edge name -> list of ``{"site", "class", "weight"}`` (weights of an
        edge sum to 1).
    """
    classes = site_classes(nmc, radius)
    order = {i: k for k, (i, _d) in enumerate(region_sites(nmc, radius))}
    out: dict[str, list[dict]] = {}

    def sampled(el: str, n_first: int) -> list[dict]:
        by_class = classes[el]
        total = sum(len(v) for v in by_class.values())
        first = min(by_class, key=lambda c: order[by_class[c][0]])
        recs = []
        for c in ("defect", "near", "bulk"):
            members = by_class.get(c)
            if not members:
                continue
            take = members[: (n_first if c == first else 1)]
            recs += [{"site": int(i), "class": c, "weight": len(members) / total / len(take)}
                     for i in take]
        return recs

    if "O" in classes:
        out["O_K"] = sampled("O", n_o)
    if "Li" in classes:
        out["Li_K"] = sampled("Li", 1)
    for e in _TM:
        if e in classes:
            out[f"{e}_K"] = sampled(e, 1)
            tm = sorted((i for v in classes[e].values() for i in v), key=order.__getitem__)
            out[f"{e}_L23"] = [{"site": int(i), "class": "all", "weight": 1.0 / len(tm)}
                               for i in tm]
    return out
