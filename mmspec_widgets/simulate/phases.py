"""Li-rich and reduced surface phases on the layered parent lattice.

:meth:`StructureSpec.build` calls :func:`build_phase` for ``phase`` other than
``"layered"``. Every phase starts from the same R-3m supercell as the layered
structures (:func:`~.lattice.parent_supercell`, same lattice parameters) and is
reproducible from ``spec.seed``.

* ``"li_rich"``: Li1+y M1-y O2, y = ``li_excess`` (up to 0.2, Li1.2): y of the
  TM-layer sites hold Li, the composition is spread over the others. With
  ``honeycomb=True`` the TM-layer Li sit on one sublattice of the
  sqrt3 x sqrt3 superlattice of each TM layer (Li2MnO3-like honeycomb
  Li/Mn order: every such Li has 6 Mn in-plane neighbours), the sites
  nearest the region centre first, and Mn fills their neighbours first; the
  in-plane supercell must be a multiple of 3 (e.g. (6, 6, 1), 432 atoms).
  Without it the TM-layer Li are placed at random.
* ``"rock_salt"``: cation mixing (``mixing``: a fraction of the TMs exchange
  sites with the nearest Li-layer Li), TMs added on Li-layer sites
  (``tm_in_li``: a fraction of the Li-layer sites, empty ones first, else
  replacing Li; Li1-z M1+z O2, the TM-denser stoichiometry of a rock-salt
  MO-like layer) and O vacancies (``n_o_vacancy``, around the region centre).
* ``"spinel"``: a fraction ``mixing`` of the TMs migrates from the TM layer
  into the Li slab, leaving TM vacancies: a share ``tetrahedral`` into the
  tetrahedral site sharing a face with its old octahedron (8a-like; the three
  Li-layer octahedra sharing its other faces are emptied), the rest into the
  nearest empty Li-layer octahedral site (16c-like); plus optional extra TMs
  in the Li layer (``tm_in_li``, towards M3O4) and O vacancies.

Oxidation states by charge balance (start: Li+, O2-, Mn4+, Co3+, Ni2+):

* TMs on tetrahedral sites are 2+ (as the tetrahedral Mn2+ of Mn3O4);
* rock salt: an electron surplus first reduces the TMs on Li-layer sites,
  each down to 2+ (MO-like), nearest the region centre first;
* an electron surplus (left) reduces the TMs in the order Ni to 2+, Co 3+ -> 2+,
  Mn 4+ -> 3+, Mn 3+ -> 2+; within each step TMs on Li-layer octahedral
  sites first, then the TM layer nearest an O vacancy (then the region
  centre) first;
* holes go to the TM layer as in the layered structures (Ni 2+ -> 3+ -> 4+,
  then Co 3+ -> 4+, far from O vacancies first; TMs in the Li slab are not
  oxidised, as the Ni of Li/Ni antisites); holes no TM can take are ligand
  holes (``o_holes``), as in delithiated Li-rich oxides.

Sites carry ``layer`` ``"Li"``, ``"TM"``, ``"O"`` or ``"tet"`` (a tetrahedral
site of the Li slab); ``NMCStructure.info`` holds ``phase``,
``tm_vacancies`` (Cartesian positions of emptied TM-layer sites) and
``n_li_removed``.
"""

from __future__ import annotations

import numpy as np

from ..errors import MMSpecError
from .lattice import (
    NMCStructure,
    parent_supercell,
    pbc_dist,
    relax_oxygen,
    whole_sites,
)

__all__ = ["build_phase", "honeycomb_colour", "REDUCTION_ORDER"]

#: Order in which the TM layer takes surplus electrons: (element, from state).
REDUCTION_ORDER = (("Ni", 4), ("Ni", 3), ("Co", 4), ("Co", 3), ("Mn", 4), ("Mn", 3))

_BASE = {"Li": 1, "O": -2, "Mn": 4, "Co": 3, "Ni": 2}
_MIN_OX = {"Ni": 2, "Co": 2, "Mn": 2}


def honeycomb_colour(frac: np.ndarray, supercell) -> tuple[np.ndarray, np.ndarray]:
    """Sublattice (0, 1, 2) of the sqrt3 x sqrt3 superlattice and layer (0, 1,
    2) of TM-layer sites at fractional supercell coordinates ``frac`` (n, 3).

    TM sites of layer L sit at (i + 2L/3, j + L/3, L/3) of the hexagonal cell;
    (gamma = 120 deg: neighbours at +-(1, 0), +-(0, 1), +-(1, 1)) colour
    (i + j) mod 3 differs between in-plane nearest neighbours.
    """
    f = np.atleast_2d(frac)
    n1, n2, n3 = supercell
    lay = np.mod(np.rint(f[:, 2] * n3 * 3), 3).astype(int)
    i = np.rint(f[:, 0] * n1 - 2 * lay / 3).astype(int)
    j = np.rint(f[:, 1] * n2 - lay / 3).astype(int)
    return np.mod(i + j, 3), lay


def _in_plane_neighbours(frac, idx, site, lat, a):
    """Sites of ``idx`` in the same layer as ``site`` at about ``a`` (in-plane)."""
    d = pbc_dist(frac[idx], frac[site], lat)
    return [int(k) for k, dk in zip(idx, d, strict=True) if 0.5 * a < dk < 1.2 * a]


def build_phase(spec) -> NMCStructure:
    """Build a ``li_rich``, ``rock_salt`` or ``spinel`` structure (see module doc)."""
    rng = np.random.default_rng(spec.seed)
    ni, mn, co = spec.composition
    s, a, c, frac, sym, layer = parent_supercell(spec)
    lat = s.lattice
    tm_idx = np.flatnonzero(layer == "TM")
    li_idx = np.flatnonzero(layer == "Li")
    o_idx = np.flatnonzero(layer == "O")
    n_tm = tm_idx.size
    empty: set[int] = set()  # sites without atom (Li or TM vacancies)
    tm_vac: list[int] = []

    centre_site = int(rng.choice(tm_idx))
    centre_frac = frac[centre_site].copy()
    d_centre = pbc_dist(frac, centre_frac, lat)

    # -- TM layer: Li excess and composition --------------------------------
    n_ex = int(round(spec.li_excess * n_tm))
    free = list(tm_idx)
    fixed_mn: list[int] = []
    if n_ex and spec.honeycomb:
        colour, lay = honeycomb_colour(frac[tm_idx], spec.supercell)
        pick = rng.integers(0, 3, size=3)  # honeycomb sublattice of each layer
        alpha = tm_idx[colour == pick[lay]]
        # fill the centre's layer first, then the next ones: compact Li2MnO3-like domains
        c_lay = honeycomb_colour(centre_frac, spec.supercell)[1][0]
        rank = np.mod(lay[colour == pick[lay]] - c_lay, 3)
        li_sites = alpha[np.argsort(100.0 * rank + d_centre[alpha]
                                    + rng.random(alpha.size) * 1e-3)][:n_ex]
        for i in li_sites:
            for k in sorted(_in_plane_neighbours(frac, tm_idx, int(i), lat, a),
                            key=lambda k: d_centre[k]):
                if k not in fixed_mn:
                    fixed_mn.append(k)
        n_ni, n_mn, n_co = whole_sites((ni, mn, co), n_tm - n_ex)
        if len(fixed_mn) > n_mn:
            raise MMSpecError(
                f"spec {spec.key}: honeycomb order of {n_ex} Li needs {len(fixed_mn)} Mn, "
                f"the composition gives {n_mn}")
    elif n_ex:
        li_sites = rng.choice(tm_idx, size=n_ex, replace=False)
        n_ni, n_mn, n_co = whole_sites((ni, mn, co), n_tm - n_ex)
    else:
        li_sites = np.array([], dtype=int)
        n_ni, n_mn, n_co = whole_sites((ni, mn, co), n_tm)
    for i in li_sites:
        sym[i] = "Li"
    for k in fixed_mn:
        sym[k] = "Mn"
    taken = set(int(i) for i in li_sites) | set(fixed_mn)
    free = np.array([i for i in tm_idx if int(i) not in taken], dtype=int)
    labels = ["Mn"] * (n_mn - len(fixed_mn)) + ["Co"] * n_co + ["Ni"] * n_ni
    if spec.ordering == "random":
        order = rng.permutation(free)
    else:  # clustered: Mn then Co nearest a random point
        p = rng.random(3)
        p[2] = frac[tm_idx[0], 2]
        d = pbc_dist(frac[free], p, lat) + rng.normal(0, 0.3, free.size)
        order = free[np.argsort(d)]
    for i, e in zip(order, labels, strict=True):
        sym[i] = e

    def is_tm(i):
        return sym[i] in ("Ni", "Mn", "Co") and int(i) not in empty

    # -- delithiation of the Li layer --------------------------------------
    n_remove = int(round((1.0 - spec.li) * li_idx.size))
    if n_remove:
        li_layer_li = np.array([i for i in li_idx if sym[i] == "Li"])
        for i in rng.choice(li_layer_li, size=min(n_remove, li_layer_li.size), replace=False):
            empty.add(int(i))
    removed_li_extra = 0

    # -- cation mixing (rock salt) / TM migration (spinel) -----------------
    pos = frac.copy()
    antisites: list[tuple[int, int]] = []
    n_move = int(round(spec.mixing * n_tm))
    if n_move:
        movers = rng.choice(np.array([i for i in tm_idx if is_tm(i)]), size=n_move,
                            replace=False)
        n_tet = int(round(spec.tetrahedral * n_move)) if spec.phase == "spinel" else 0
        used: set[int] = set()
        for m, t in enumerate(movers):
            t = int(t)
            if m < n_tet and _to_tetrahedral(t, pos, sym, layer, li_idx, o_idx, empty, lat,
                                             used):
                tm_vac.append(t)
                continue
            dl = pbc_dist(frac[li_idx], frac[t], lat) + rng.random(li_idx.size) * 0.1
            cands = [int(li_idx[j]) for j in np.argsort(dl) if int(li_idx[j]) not in used]
            if spec.phase == "rock_salt":  # exchange with the nearest Li
                j = next((k for k in cands if k not in empty and sym[k] == "Li"), None)
                if j is None:  # no Li left to exchange with
                    break
                sym[t], sym[j] = "Li", sym[t]
                antisites.append((j, t))
            else:  # spinel: into the nearest empty Li-layer site, leaving a TM vacancy
                near_empty = [k for k in cands[:6] if k in empty]
                j = near_empty[0] if near_empty else cands[0]
                if j not in empty:
                    removed_li_extra += 1
                empty.discard(j)
                sym[j] = sym[t]
                empty.add(t)
                tm_vac.append(t)
            used.add(j)

    # -- extra TMs in the Li layer (rock-salt / M3O4-like densification) ----
    n_extra = int(round(spec.tm_in_li * li_idx.size))
    if n_extra:
        # never into the Li-layer octahedra emptied for a tetrahedral TM (face sharing)
        blocked = set(used) if n_move else set()
        li_free = [int(i) for i in li_idx
                   if layer[i] == "Li" and sym[i] == "Li" and int(i) not in blocked]
        vac = [i for i in li_free if i in empty]
        occ = [i for i in li_free if i not in empty]
        vac = list(rng.permutation(vac)) if vac else []
        occ = list(rng.permutation(occ)) if occ else []
        sites = (vac + occ)[:n_extra]
        counts = whole_sites((ni, mn, co), len(sites))
        els = rng.permutation(["Ni"] * counts[0] + ["Mn"] * counts[1] + ["Co"] * counts[2])
        for i, e in zip(sites, els, strict=True):
            empty.discard(int(i))
            sym[i] = str(e)

    # -- O vacancies around the centre (never an O of a tetrahedral TM) -----
    vacancies = []
    if spec.n_o_vacancy:
        tet = [i for i in range(len(sym)) if layer[i] == "tet"]
        bonded = set()
        for i in tet:
            dd = pbc_dist(pos[o_idx], pos[i], lat)
            bonded |= {int(k) for k in o_idx[dd < 2.4]}
        do = pbc_dist(frac[o_idx], centre_frac, lat) + rng.random(o_idx.size) * 0.1
        vac = [int(k) for k in o_idx[np.argsort(do)] if int(k) not in bonded][
            : spec.n_o_vacancy]
        vacancies = [frac[i] @ lat.matrix for i in vac]
        empty |= set(vac)

    # -- oxidation states ------------------------------------------------
    keep = np.array([i for i in range(len(sym)) if i not in empty], dtype=int)
    oxi, o_holes = _charge_balance(spec, sym, layer, keep, pos, lat, vacancies, centre_frac, rng)

    from pymatgen.core import Structure

    new = Structure(lat, [sym[i] for i in keep], pos[keep], coords_are_cartesian=False,
                    site_properties={"oxidation": [float(oxi[i]) for i in keep],
                                     "layer": [str(layer[i]) for i in keep]})
    old_to_new = {int(o): n for n, o in enumerate(keep)}
    antisites = [(old_to_new[x], old_to_new[y]) for x, y in antisites]
    if spec.relax:
        relax_oxygen(new)
    li_vac = [frac[i] @ lat.matrix for i in sorted(empty) if layer[i] == "Li"]
    return NMCStructure(
        structure=new,
        spec=spec,
        vacancies=np.array(vacancies, dtype=float).reshape(-1, 3),
        antisites=antisites,
        centre=np.asarray(centre_frac @ lat.matrix, dtype=float),
        o_holes=o_holes,
        li_vacancies=np.array(li_vac, dtype=float).reshape(-1, 3),
        info={"a": a, "c": c, "n_li_removed": n_remove + removed_li_extra,
              "phase": spec.phase,
              "tm_vacancies": np.array([frac[i] @ lat.matrix for i in tm_vac],
                                       dtype=float).reshape(-1, 3)},
    )


def _to_tetrahedral(t, pos, sym, layer, li_idx, o_idx, empty, lat, used) -> bool:
    """Move the TM at site ``t`` into the tetrahedral site of the Li slab that
    shares a face with its octahedron (above or below, whichever is free of
    other tetrahedral TMs); empty the Li-layer octahedra sharing its other
    faces. Returns False when no such site is free."""
    m = lat.matrix
    d = pbc_dist(pos[o_idx], pos[t], lat)
    octa = o_idx[np.argsort(d)[:6]]
    for side in (1, -1):
        dz = [((pos[k] - pos[t]) - np.round(pos[k] - pos[t])) @ m for k in octa]
        face = [k for k, v in zip(octa, dz, strict=True) if side * v[2] > 0]
        if len(face) != 3:
            continue
        fc = np.mean([pos[t] + ((pos[k] - pos[t]) - np.round(pos[k] - pos[t])) for k in face],
                     axis=0)
        # apex: the O of the next O layer straight across the face
        da = pbc_dist(pos[o_idx], fc, lat)
        apex = [int(o_idx[j]) for j in np.argsort(da)[:8] if int(o_idx[j]) not in face]
        apex = [k for k in apex
                if side * (((pos[k] - fc) - np.round(pos[k] - fc)) @ m)[2] > 0.5]
        if not apex:
            continue
        ap = fc + ((pos[apex[0]] - fc) - np.round(pos[apex[0]] - fc))
        site = (3 * fc + ap) / 4.0  # centroid of the O4 tetrahedron
        # cations too close to the new site: only Li-layer octahedra may be emptied
        dc = pbc_dist(pos, site, lat)
        clash = [i for i in np.flatnonzero(dc < 2.3) if i != t and layer[i] != "O"
                 and int(i) not in empty]
        if any(layer[i] != "Li" or int(i) in used or sym[i] != "Li" for i in clash):
            continue
        for i in clash:
            empty.add(int(i))
        # face-sharing Li-layer octahedra stay empty, whether emptied now or before
        used |= {int(i) for i in np.flatnonzero(dc < 2.3) if layer[i] == "Li"}
        pos[t] = np.mod(site, 1.0)
        layer[t] = "tet"
        return True
    return False


def _charge_balance(spec, sym, layer, keep, pos, lat, vacancies, centre_frac, rng):
    """Formal oxidation states (see module doc) and ligand holes."""
    oxi = np.zeros(len(sym))
    for i in keep:
        oxi[i] = _BASE[sym[i]]
    holes = -oxi[keep].sum()
    vac_frac = (lat.get_fractional_coords(np.asarray(vacancies)) if len(vacancies)
                else np.zeros((0, 3)))
    tms = [int(i) for i in keep if sym[i] in ("Ni", "Mn", "Co")]
    jitter = {i: rng.random() * 1e-3 for i in tms}
    # distances to 1e-4 A: equal ones are ordered by the seeded jitter, not by float rounding
    dcen = {i: round(float(pbc_dist(pos[i][None], centre_frac, lat)[0]), 4) for i in tms}

    def dvac(i):
        if vac_frac.size == 0:
            return np.inf
        return round(float(np.min(pbc_dist(vac_frac, pos[i], lat))), 4)

    for i in tms:  # TMs on tetrahedral sites are 2+
        if layer[i] == "tet":
            holes += oxi[i] - 2
            oxi[i] = 2
    main = [i for i in tms if layer[i] == "TM"]
    # electrons: Li-layer TMs first, then the TM layer nearest the vacancies
    near_first = sorted((i for i in tms if layer[i] != "tet"),
                        key=lambda i: (layer[i] == "TM", dvac(i), dcen[i], jitter[i]))
    far_first = sorted(main, key=lambda i: (-dvac(i), dcen[i], jitter[i]))
    if holes < 0 and spec.phase == "rock_salt":  # MO-like: Li-layer TMs to 2+ first
        for i in near_first:
            while holes < 0 and layer[i] == "Li" and oxi[i] > _MIN_OX[sym[i]]:
                oxi[i] -= 1
                holes += 1
    if holes < 0:
        for el, frm in REDUCTION_ORDER:
            for i in near_first:
                if holes >= 0:
                    break
                if sym[i] == el and oxi[i] == frm and oxi[i] > _MIN_OX[el]:
                    oxi[i] -= 1
                    holes += 1
        if holes < 0:
            raise MMSpecError(f"spec {spec.key}: {-holes:g} electrons left after reducing "
                              "every TM to 2+")
    for el, frm in (("Ni", 2), ("Ni", 3), ("Co", 3), ("Mn", 2), ("Mn", 3)):
        for i in far_first:
            if holes <= 0:
                break
            if sym[i] == el and oxi[i] == frm:
                oxi[i] += 1
                holes -= 1
    return oxi, float(max(holes, 0.0))
