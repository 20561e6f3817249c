"""Mn/Co/Ni L2,3 XAS from atomic multiplets plus crystal field (edrixs).

One 2p -> 3d calculation per (element, d-count, coordination, field
parameters); there are few unique cases, so results are cached in memory
(and by the campaign store on disk).

Model
-----
* d-count from the formal oxidation state (Ni2+ d8, Ni3+ d7, Ni4+ d6, Co3+ d6,
  Mn4+ d3 ...). A fractional oxidation state is a linear mix of the two
  neighbouring integer states (:func:`l23_spectrum_mixed`).
* Slater integrals from edrixs' Hartree-Fock tables scaled to 80 %, valence
  and core (2p) spin-orbit from the same tables, isotropic polarisation,
  Boltzmann average over the low-lying states at 300 K.
* Monopole terms: F0_dd = U_dd + <F0 correction>, F0_pd = U_pd + <...> with
  U_pd - U_dd = 1.5 eV; the core-hole attraction exceeding the d-d
  repulsion is what moves the L3 edge up by ~1-1.5 eV per oxidation step
  (the chemical shift); no other per-state shift is applied. edrixs adds
  the core-valence monopole only in the intermediate state, so the closed
  2p6 shell's interaction with the n initial d electrons (6 n U_pd) is
  subtracted from the transition energies to put all d-counts on one scale.
* Crystal field: octahedral 10Dq from a table by (element, oxidation state)
  scaled by (r_ref / r)^5 with r the mean M-O distance; 5-fold (a vacancy in
  the octahedron) uses a square-pyramidal C4v field (Ds = 0.12 10Dq,
  Dt = 0.04 10Dq), 4-fold doubles these (an octahedron missing two O, what
  the NMC supercells hold). A true tetrahedron (``geometry="tetrahedral"``,
  e.g. the Mn2+ of spinel Mn3O4, the TM2+ of the spinel-like surface phase of
  ``simulate.phases``; never in the layered NMC set) takes the point-charge
  relation 10Dq_tet = -4/9 10Dq_oct, with the same bond-length scaling.
* Core-hole lifetime (Lorentzian half widths, from edrixs' tables): applied
  here; instrument (Gaussian) broadening is applied when the data set is
  assembled.
Energies are relative: one constant shift per edge (fixed in
:mod:`mmspec_widgets.simulate.dataset`) maps them to experiment.
"""

from __future__ import annotations

import contextlib
import io
import time
from functools import lru_cache

import numpy as np

from ..errors import MMSpecError

__all__ = [
    "d_count",
    "crystal_field",
    "l23_spectrum",
    "l23_spectrum_mixed",
    "edrixs_version",
    "TEN_DQ",
    "GEOMETRIES",
]

_Z_VALENCE = {"Mn": 7, "Co": 9, "Ni": 10}  # 3d + 4s electrons of the neutral atom

#: Octahedral 10Dq (eV) at the reference bond length, by (element, oxidation).
TEN_DQ: dict[tuple[str, int], float] = {
    ("Ni", 2): 1.1, ("Ni", 3): 1.9, ("Ni", 4): 2.3,
    ("Co", 2): 1.0, ("Co", 3): 2.1, ("Co", 4): 2.4,
    ("Mn", 2): 0.8, ("Mn", 3): 1.8, ("Mn", 4): 2.4,
}
# Mn2+ (MnO-type multiplet fits: 0.7 - 0.9 eV) is not reached by the layered
# NMC supercells; it serves the reduced surface phases (simulate.phases) and
# other Mn oxides (simulate.foreign). Every (element, state) the phases reach
# (Mn2+-4+, Co2+-4+, Ni2+-4+; 6-, 5-, 4-fold and tetrahedral) has an entry.

#: Crystal-field geometries: "octahedral" (6-, 5- and 4-fold by O count, see
#: the module docstring) and "tetrahedral".
GEOMETRIES = ("octahedral", "tetrahedral")

#: Model parameters of the multiplet calculation (recorded in every job's
#: parameters): on-site d-d Coulomb energy U_dd (eV) per element, U_pd - U_dd
#: (eV), the scaling of the atomic Slater integrals, and the energy step (eV)
#: of the computed spectrum.
U_DD = {"Mn": 5.0, "Co": 6.0, "Ni": 6.5}
DELTA_U_PD = 1.5  # U_pd - U_dd, eV
SLATER_SCALE = 0.8
DE = 0.05  # eV, energy step of the computed spectrum


def edrixs_version() -> str:
    """Version string of edrixs."""
    try:
        from importlib.metadata import version

        return f"edrixs {version('edrixs')}"
    except Exception:  # pragma: no cover
        return "edrixs unknown"


def d_count(element: str, oxidation: int) -> int:
    """Number of 3d electrons of ``element`` at integer ``oxidation``."""
    if element not in _Z_VALENCE:
        raise MMSpecError(f"element={element!r}: expected one of Mn, Co, Ni")
    n = _Z_VALENCE[element] - int(oxidation)
    if not 1 <= n <= 9:
        raise MMSpecError(f"{element}{oxidation}+ gives d{n}: outside d1 - d9")
    return n


def crystal_field(element: str, oxidation: float, coordination: int = 6,
                  mean_bond: float | None = None,
                  geometry: str = "octahedral") -> tuple[float, float, float]:
    """Crystal-field parameters (10Dq, Ds, Dt) in eV for one TM site.

    Parameters
    ----------
    element : {"Mn", "Co", "Ni"}
    oxidation : float
        Formal oxidation state (rounded for the table).
    coordination : int
        Number of O neighbours (6: Oh; 5: square pyramid; 4: twice the C4v terms).
    mean_bond : float, optional
        Mean M-O distance (Angstrom); scales 10Dq by (r_ref / r)^5.
    geometry : {"octahedral", "tetrahedral"}
        "tetrahedral" (4 O at the corners of a tetrahedron): 10Dq = -4/9 of the
        octahedral value (negative: e below t2), no tetragonal terms.

    Returns
    -------
    (ten_dq, ds, dt) : tuple of float
        eV; 10Dq rounded to 0.1 eV, Ds and Dt to 0.05 eV (few unique cases).
    """
    from .structures import target_bond_length

    if geometry not in GEOMETRIES:
        raise MMSpecError(f"geometry={geometry!r}: expected one of {', '.join(GEOMETRIES)}")
    if geometry == "tetrahedral" and int(coordination) != 4:
        raise MMSpecError(f"geometry='tetrahedral' needs coordination 4, got {coordination!r}")
    ox = int(round(oxidation))
    key = (element, ox)
    if key not in TEN_DQ:
        raise MMSpecError(f"no crystal-field entry for {element}{ox}+")
    tdq = TEN_DQ[key]
    if mean_bond:
        r_ref = target_bond_length(element, ox)
        tdq *= float(np.clip((r_ref / mean_bond) ** 5, 0.7, 1.4))
    ds = dt = 0.0
    if geometry == "tetrahedral":
        tdq *= -4.0 / 9.0
    elif coordination < 6:
        f = 1.0 if coordination == 5 else 2.0
        ds, dt = 0.12 * tdq * f, 0.04 * tdq * f

    def q(v, step):
        return float(np.round(np.round(v / step) * step, 3))

    return q(tdq, 0.1), q(ds, 0.05), q(dt, 0.05)


@lru_cache(maxsize=256)
def l23_cached(element: str, n: int, ten_dq: float, ds: float, dt: float):
    import edrixs

    info = edrixs.get_atom_data(element, "3d", n, edge="L23")
    s = SLATER_SCALE
    si = dict(info["slater_i"])
    sn = dict(info["slater_n"])
    f2_i, f4_i = s * si["F2_11"], s * si["F4_11"]
    f2_n, f4_n = s * sn["F2_11"], s * sn["F4_11"]
    f2_pd, g1, g3 = s * sn["F2_12"], s * sn["G1_12"], s * sn["G3_12"]
    u_dd = U_DD[element]
    u_pd = u_dd + DELTA_U_PD
    f0_i = u_dd + edrixs.get_F0("d", f2_i, f4_i)
    f0_n = u_dd + edrixs.get_F0("d", f2_n, f4_n)
    f0_pd = u_pd + edrixs.get_F0("dp", g1, g3)
    slater = ([f0_i, f2_i, f4_i], [f0_n, f2_n, f4_n, f0_pd, f2_pd, g1, g3])
    v_soc = (info["v_soc_i"][0], info["v_soc_n"][0])
    c_soc = info["c_soc"]
    d1, d3 = 3 * ds - 5 * dt, 4 * ds + 5 * dt
    cf = edrixs.cf_tetragonal_d(ten_dq, d1, d3)
    with contextlib.redirect_stdout(io.StringIO()):
        eval_i, eval_n, trans_op = edrixs.ed_1v1c_py(
            ("d", "p"), shell_level=(0.0, 0.0), v_soc=v_soc, c_soc=c_soc, v_noccu=n,
            slater=slater, v_cfmat=cf,
        )
    # closed-shell 2p6 - 3d^n monopole energy of the initial state (see module doc)
    eval_i = eval_i + 6.0 * n * u_pd
    e_all = eval_n[:, None] - eval_i[None, :4]
    lo = float(np.min(eval_n) - eval_i[0]) - 5.0
    om = np.arange(lo, lo + 45.0 + DE / 2, DE)
    # L3 / L2 lifetimes (HWHM, eV): edrixs gives [L2, L3]
    g_l2, g_l3 = info["gamma_c"]
    l3_end = float(np.min(e_all)) + 1.5 * c_soc + 2.0
    gamma = np.where(om < l3_end, g_l3, g_l2)
    nlow = int(np.sum(eval_i - eval_i[0] < 0.1)) + 4
    with contextlib.redirect_stdout(io.StringIO()):
        xas = edrixs.xas_1v1c_py(
            eval_i, eval_n, trans_op, om, gamma_c=gamma, thin=np.pi / 2, phi=0,
            pol_type=[("isotropic", 0)], gs_list=list(range(min(nlow, len(eval_i)))),
            temperature=300,
        )
    return om, np.asarray(xas[:, 0], dtype=float)


def l23_spectrum(element: str, oxidation: int, coordination: int = 6,
                 mean_bond: float | None = None, geometry: str = "octahedral") -> dict:
    """L2,3 absorption of one TM site at integer ``oxidation``.

    Parameters
    ----------
    element : {"Mn", "Co", "Ni"}
    oxidation : int
        Formal oxidation state.
    coordination : int
        O neighbours (6, 5 or 4).
    mean_bond : float, optional
        Mean M-O bond length in Angstrom (scales 10Dq).
    geometry : {"octahedral", "tetrahedral"}
        See :func:`crystal_field`.

    Returns
    -------
    dict
        ``omega`` (relative energy, eV, 0.05 eV steps), ``mu`` (arbitrary
        units, isotropic), ``params`` (d-count and field), ``wall_s``,
        ``engine``.
    """
    n = d_count(element, int(oxidation))
    tdq, ds, dt = crystal_field(element, oxidation, coordination, mean_bond, geometry)
    t0 = time.perf_counter()
    om, mu = l23_cached(element, n, tdq, ds, dt)
    return {
        "omega": om.copy(),
        "mu": mu.copy(),
        "params": {"element": element, "d": n, "ten_dq": tdq, "ds": ds, "dt": dt,
                   "coordination": int(coordination), "geometry": geometry},
        "wall_s": time.perf_counter() - t0,
        "engine": edrixs_version(),
    }


def l23_spectrum_mixed(element: str, oxidation: float, coordination: int = 6,
                       mean_bond: float | None = None, geometry: str = "octahedral") -> dict:
    """L2,3 absorption at a fractional oxidation state.

    Linear mix of the two neighbouring integer states (weights by distance),
    on the union energy axis (0.05 eV steps). Same return as
    :func:`l23_spectrum`.
    """
    lo = int(np.floor(oxidation))
    w = float(oxidation - lo)
    a = l23_spectrum(element, lo, coordination, mean_bond, geometry)
    if w < 1e-6:
        return a
    b = l23_spectrum(element, lo + 1, coordination, mean_bond, geometry)
    om = np.arange(min(a["omega"][0], b["omega"][0]),
                   max(a["omega"][-1], b["omega"][-1]) + DE / 2, DE)
    mu = (1 - w) * np.interp(om, a["omega"], a["mu"], left=0, right=a["mu"][-1]) \
        + w * np.interp(om, b["omega"], b["mu"], left=0, right=b["mu"][-1])
    return {"omega": om, "mu": mu, "params": {"mix": [a["params"], b["params"]], "w": w},
            "wall_s": a["wall_s"] + b["wall_s"], "engine": a["engine"]}
