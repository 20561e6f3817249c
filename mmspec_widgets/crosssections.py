"""Partial ionisation cross-sections of K and L2,3 edges (hydrogenic model).

The jump of an edge recorded by :func:`~mmspec_widgets.extract.extract_edges`
is the background-free signal averaged over a window past the edge; it equals
(incident electrons) x (atoms per area) x (the energy-differential
cross-section averaged over the same window) x (channel width).  The ratio of
two jumps, each divided by its cross-section, is therefore the ratio of the
atoms, with no standard needed.

Cross-sections follow R. F. Egerton's hydrogenic model (Egerton, *Electron
Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed., Springer 2011,
sections 3.6 and 4.5, programs SIGMAK and SIGMAL): the generalised oscillator
strength (GOS) of a hydrogen-like atom with a screened nuclear charge, with the
empirical correction of the L-shell GOS near threshold, integrated over the
scattering vectors that the collection angle admits (relativistic kinematics).
Egerton quotes an accuracy of about 5 - 10 % for K edges and 10 - 20 % for
L2,3 edges of 3d metals, where the white lines are not represented; the
relative systematic errors stated here are :data:`SYSTEMATIC`.

Only the model's physics is shared with the published programs; the code is
this project's (vectorised over energies and scattering vectors).
"""

from __future__ import annotations

import numpy as np

from .edges import get_edge
from .errors import MMSpecError

__all__ = ["SYSTEMATIC", "ELEMENTS", "incident_kinematics", "effective_collection_angle",
           "differential_cross_section", "window_cross_section"]

#: Rydberg energy (eV)
RYDBERG = 13.605693
#: electron rest energy (eV)
MC2 = 510998.95
#: 4 pi a0^2 in barn (a0 = Bohr radius)
FOUR_PI_A0SQ_BARN = 4 * np.pi * (0.529177210903e-10) ** 2 / 1e-28

#: Relative (1 std) systematic error of a hydrogenic partial cross-section, by
#: shell (Egerton's estimate of the model's accuracy for light-element K edges
#: and 3d-metal L2,3 edges integrated over a few tens of eV past the edge).
SYSTEMATIC = {"K": 0.10, "L23": 0.15}

#: Atomic number and shell onsets (eV) used by the model: K onset, or the L3
#: and L1 onsets of L2,3 edges (free-atom binding energies of EELS atlases).
ELEMENTS = {
    "Li": {"Z": 3, "K": 55.0},
    "O": {"Z": 8, "K": 532.0},
    "Mn": {"Z": 25, "L3": 640.0, "L1": 769.0},
    "Co": {"Z": 27, "L3": 779.0, "L1": 926.0},
    "Ni": {"Z": 28, "L3": 855.0, "L1": 1008.0},
}

#: Egerton's empirical exponents of the near-threshold correction of the
#: hydrogenic L GOS, for Z = 11 ... 36 (his program SIGMAL); 0.1 beyond.
_L_CORRECTION = (0.82, 0.52, 0.52, 0.42, 0.30, 0.29, 0.22, 0.30, 0.22, 0.16, 0.12, 0.13,
                 0.13, 0.14, 0.16, 0.18, 0.19, 0.22, 0.14, 0.11, 0.12, 0.12, 0.12, 0.10,
                 0.10, 0.10)

#: Gauss-Legendre nodes and weights on [-1, 1] for the integral over ln q^2
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)


def incident_kinematics(beam_energy_keV: float) -> tuple[float, float]:
    """Relativistic factor and effective incident energy of the beam.

    Parameters
    ----------
    beam_energy_keV : float
        Kinetic energy of the incident electrons (keV).

    Returns
    -------
    (gamma, T) : (float, float)
        Lorentz factor and ``T = m0 v^2 / 2`` in eV (the energy that replaces
        the kinetic energy in the non-relativistic Bethe formulae).
    """
    e0 = float(beam_energy_keV) * 1e3
    if not np.isfinite(e0) or e0 <= 0:
        raise MMSpecError(f"beam_energy_keV={beam_energy_keV!r}: expected a positive energy")
    gamma = 1.0 + e0 / MC2
    return gamma, 0.5 * MC2 * (1.0 - 1.0 / gamma ** 2)


def effective_collection_angle(beam_energy_keV: float, energy_loss: float,
                               convergence_mrad: float, collection_mrad: float) -> float:
    """Collection angle equivalent to a convergent probe (Egerton, 3rd ed., sec. 4.5.2).

    With a convergence semi-angle ``alpha`` comparable to the collection
    semi-angle ``beta``, part of the scattering into ``beta`` is lost; the
    returned ``beta*`` collects, for a parallel beam and the Lorentzian angular
    distribution of characteristic energy ``theta_E``, the same fraction.

    Parameters
    ----------
    beam_energy_keV : float
        Incident energy (keV).
    energy_loss : float
        Energy loss (eV).
    convergence_mrad, collection_mrad : float
        Semi-angles (mrad).

    Returns
    -------
    float
        Effective collection semi-angle (mrad); ``collection_mrad`` when the
        convergence is 0.
    """
    a, b = float(convergence_mrad) * 1e-3, float(collection_mrad) * 1e-3
    if a <= 0:
        return float(collection_mrad)
    gamma, t = incident_kinematics(beam_energy_keV)
    th = float(energy_loss) / (2.0 * gamma * t)  # theta_E (rad)
    a2, b2, t2 = a * a, b * b, th * th
    # fraction of the Lorentzian 1 / (theta^2 + theta_E^2) that a disc of
    # radius beta collects when the incidence directions fill a disc of radius alpha
    e1 = np.sqrt((a2 + b2 + t2) ** 2 - 4 * a2 * b2) - a2 - b2 - t2
    e2 = 2 * b2 * np.log((np.sqrt((a2 + t2 - b2) ** 2 + 4 * b2 * t2) + a2 + t2 - b2) / (2 * t2))
    e3 = 2 * a2 * np.log((np.sqrt((b2 + t2 - a2) ** 2 + 4 * a2 * t2) + b2 + t2 - a2) / (2 * t2))
    eta = (e1 + e2 + e3) / (2 * a2 * np.log(1 + b2 / t2))
    if a > b:
        eta *= a2 / b2
    return float(th * np.sqrt((1 + b2 / t2) ** eta - 1) * 1e3)


def _screened(element: str, shell: str) -> tuple[int, float]:
    try:
        z = int(ELEMENTS[element]["Z"])
    except KeyError:
        raise MMSpecError(f"cross-section of {element}: no atomic data (known: "
                          f"{', '.join(ELEMENTS)})") from None
    if shell == "K":
        return z, (z - 0.5) if z > 1 else 1.0
    if shell == "L23":
        if z < 11:
            raise MMSpecError(f"{element} L2,3: the hydrogenic L model needs Z >= 11")
        return z, z - 0.35 * 7 - 1.7
    raise MMSpecError(f"shell {shell!r}: expected 'K' or 'L23'")


def _coulomb_factors(q, k2, kk, ladder):
    """``C / D`` of the hydrogenic GOS: the Coulomb factor of the ejected
    electron (``k2`` its scaled energy, ``kk`` = sqrt|k2|) for scaled ``q``;
    ``ladder`` = 1 for K (arguments 2k, q - k^2 + 1), 0.25 for L."""
    two = 2.0 if ladder == 1.0 else 1.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        above = k2 >= 0
        kkp = np.maximum(kk, 1e-2 if ladder == 1.0 else 1e-6)
        bp = np.arctan2(two * kkp, q - k2 + ladder)  # in (0, pi) as the angle it stands for
        c_above = np.exp(-2.0 / kkp * bp)
        d_above = 1.0 - np.exp(-2.0 * np.pi / kkp)
        num = q + ladder - k2 + two * kkp
        den = q + ladder - k2 - two * kkp
        c_below = np.exp(-1.0 / kkp * np.log(num / den))
    return np.where(above, c_above / d_above, c_below)


def _gos_k(z: int, zs: float, e: np.ndarray, qa0sq: np.ndarray) -> np.ndarray:
    """df/dE (per eV per atom) of a hydrogenic K shell; ``qa0sq`` = q^2 a0^2."""
    rnk = 2.0 if z > 1 else 1.0
    q = qa0sq / zs ** 2
    k2 = e / (RYDBERG * zs ** 2) - 1.0
    kk = np.sqrt(np.abs(k2))
    cd = _coulomb_factors(q, k2, kk, 1.0)
    a = ((q - k2 + 1.0) ** 2 + 4.0 * k2) ** 3
    return 128.0 * rnk * e / (RYDBERG ** 2 * zs ** 4) * cd * (q + k2 / 3.0 + 1.0 / 3.0) / a


def _gos_l(z: int, zs: float, e: np.ndarray, qa0sq: np.ndarray, e_l3: float,
           e_l1: float) -> np.ndarray:
    """df/dE (per eV per atom) of a hydrogenic L2,3 (+ L1 above its onset) shell."""
    q = qa0sq / zs ** 2
    k2 = e / (RYDBERG * zs ** 2) - 0.25
    kk = np.sqrt(np.abs(k2))
    cd = _coulomb_factors(q, k2, kk, 0.25)
    below_l1 = e < e_l1
    g_low = (2.25 * q ** 4 - (0.75 + 3 * k2) * q ** 3
             + (0.59375 - 0.75 * k2 - 0.5 * k2 ** 2) * q ** 2
             + (0.11146 + 0.85417 * k2 + 1.8833 * k2 ** 2 + k2 ** 3) * q
             + 0.0035807 + k2 / 21.333 + k2 ** 2 / 4.5714 + k2 ** 3 / 2.4 + k2 ** 4 / 4)
    g_high = (q ** 3 - (5.0 / 3 * k2 + 11.0 / 12) * q ** 2
              + (k2 ** 2 / 3 + 1.5 * k2 + 65.0 / 48) * q
              + k2 ** 3 / 3 + 0.75 * k2 ** 2 + 23.0 / 48 * k2 + 5.0 / 64)
    base = (q - k2 + 0.25) ** 2 + k2
    ratio = np.where(below_l1, g_low / base ** 5, g_high / base ** 4)
    iz = z - 11
    u = _L_CORRECTION[iz] if 0 <= iz < len(_L_CORRECTION) else 0.1
    with np.errstate(invalid="ignore"):
        corr = np.clip((e + 0.1 - e_l3) / (1.8 * z * z), 0.0, None) ** u
    return corr * 32.0 * ratio * cd * e / (RYDBERG ** 2 * zs ** 4)


def _q_limits(e: np.ndarray, beam_energy_keV: float, beta_rad: float):
    """Smallest and largest q^2 a0^2 for energy losses ``e`` (eV) into a
    collection semi-angle ``beta_rad`` (exact relativistic kinematics)."""
    e0 = float(beam_energy_keV) * 1e3
    # (k a0)^2 = (p c)^2 / (2 m c^2 R), (p c)^2 = E_kin^2 + 2 E_kin m c^2
    scale = 1.0 / (2.0 * MC2 * RYDBERG)
    k0 = np.sqrt((e0 ** 2 + 2 * e0 * MC2) * scale)
    k1 = np.sqrt(((e0 - e) ** 2 + 2 * (e0 - e) * MC2) * scale)
    dk = e * (2 * e0 + 2 * MC2 - e) * scale / (k0 + k1)  # k0 - k1 without cancellation
    qmin = dk ** 2
    qmax = qmin + 4.0 * k0 * k1 * np.sin(beta_rad / 2.0) ** 2
    return qmin, qmax


def differential_cross_section(edge: str, energy, *, beam_energy_keV: float,
                               collection_mrad: float,
                               convergence_mrad: float | None = None) -> np.ndarray:
    """Energy-differential partial cross-section of an edge, hydrogenic model.

    Parameters
    ----------
    edge : str
        Edge name of the edge table with a K or L2,3 shell (``"O_K"``,
        ``"Mn_L23"`` ...).
    energy : array_like
        Energy losses (eV); 0 below the edge onset.
    beam_energy_keV : float
        Incident energy (keV).
    collection_mrad : float
        Collection semi-angle (mrad).
    convergence_mrad : float, optional
        Convergence semi-angle (mrad); the collection angle is replaced by
        :func:`effective_collection_angle` at each energy.  None or 0: parallel
        illumination.

    Returns
    -------
    ndarray
        dsigma/dE in barn per eV per atom, same shape as ``energy``.
    """
    ed = get_edge(edge)
    if ed.shell not in ("K", "L23"):
        raise MMSpecError(f"{edge}: cross-sections are modelled for K and L2,3 edges only")
    z, zs = _screened(ed.element, ed.shell)
    onset = ELEMENTS[ed.element]["K" if ed.shell == "K" else "L3"]
    e = np.atleast_1d(np.asarray(energy, float))
    if not (np.isfinite(collection_mrad) and collection_mrad > 0):
        raise MMSpecError(f"collection_mrad={collection_mrad!r}: expected a positive angle")
    gamma, t = incident_kinematics(beam_energy_keV)
    beta = np.array([effective_collection_angle(beam_energy_keV, ei, convergence_mrad or 0.0,
                                                collection_mrad) for ei in e]) * 1e-3
    out = np.zeros(e.shape)
    on = e > onset
    if not on.any():
        return out.reshape(np.shape(energy))
    ee, bb = e[on], beta[on]
    qmin, qmax = _q_limits(ee, beam_energy_keV, bb)
    lo, hi = np.log(qmin), np.log(qmax)
    # Gauss-Legendre in ln(q^2 a0^2): (n_energy, n_nodes)
    lnq = 0.5 * (hi - lo)[:, None] * _GL_X[None, :] + 0.5 * (hi + lo)[:, None]
    qq = np.exp(lnq)
    E = np.broadcast_to(ee[:, None], qq.shape)
    if ed.shell == "K":
        f = _gos_k(z, zs, E, qq)
    else:
        f = _gos_l(z, zs, E, qq, ELEMENTS[ed.element]["L3"], ELEMENTS[ed.element]["L1"])
    integral = 0.5 * (hi - lo) * (f * _GL_W[None, :]).sum(axis=1)
    out[on] = FOUR_PI_A0SQ_BARN * (RYDBERG / ee) * (RYDBERG / t) * integral
    return out.reshape(np.shape(energy)) if np.ndim(energy) else out


def window_cross_section(edge: str, window: tuple[float, float], *, beam_energy_keV: float,
                         collection_mrad: float, convergence_mrad: float | None = None,
                         n: int = 9) -> float:
    """Mean of :func:`differential_cross_section` over an energy window.

    Parameters
    ----------
    edge : str
        Edge name.
    window : (float, float)
        Energy-loss window (eV), e.g. the one an edge jump averages over.
    beam_energy_keV, collection_mrad, convergence_mrad : float
        Instrument (see :func:`differential_cross_section`).
    n : int
        Energies sampled evenly over the window.

    Returns
    -------
    float
        Mean dsigma/dE over the window (barn per eV per atom).
    """
    lo, hi = float(window[0]), float(window[1])
    e = np.linspace(lo, hi, max(int(n), 2))
    return float(np.mean(differential_cross_section(
        edge, e, beam_energy_keV=beam_energy_keV, collection_mrad=collection_mrad,
        convergence_mrad=convergence_mrad)))
