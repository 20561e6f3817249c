"""Simulations judged by measurements (``mmspec validate``).

Three comparisons, each reduced to numbers a test can hold:

1. **K edges of reference compounds**: the campaign's FEFF settings applied to
   MnO, Mn3O4, Mn2O3, MnO2 (Mn K), Ni(OH)2, NiO, LiNiO2 and Ni metal (Ni K),
   Co metal (Co K), built from their crystal structures
   (:mod:`mmspec_widgets.simulate.references`), against the measured XDI scans
   of the same compounds (:func:`mmspec_widgets.datasets.xas_references`):
   half-step energies and their shift per unit of oxidation state.
2. **The real particle**: the O K and Mn/Co/Ni L2,3 edges of the NMC particle
   in ``nmc-eels-si/TM`` (calibrated with its zero-loss SI and reference
   features, background-free, summed over the particle, post-edge
   normalised) against the simulated regions closest to its composition,
   broadened to the measured resolution (FWHM of its zero-loss peak): O K
   pre-edge, dip and first main band; L3 and L2 positions and L3 FWHM.
3. **Trends over a simulated set** (Spearman rank correlations): Ni K
   half-step vs Ni oxidation, O K pre-edge weight vs Li content, Ni L3
   centroid vs Ni oxidation, O K pre-edge weight vs O vacancies, and the Mn
   counterparts.

Definitions (shared by tests, docs and reports):

* simulated half-step, O K pre-edge weight, L3 centroid: one definition each,
  in :mod:`mmspec_widgets.simulate.descriptors` (:func:`half_step`,
  :func:`preedge_weight`, :func:`centroid`, re-exported here);
* measured half-step: the same on the scan after subtracting a line fitted
  before the edge and dividing by a line fitted after it
  (:data:`MEASURED_WINDOWS`, absolute eV).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .edges import get_edge
from .errors import DataError, MMSpecError
from .simulate.descriptors import centroid, half_step, preedge_weight

__all__ = [
    "K_EDGE_COMPOUNDS",
    "MEASURED_WINDOWS",
    "feff_params",
    "half_step",
    "preedge_weight",
    "centroid",
    "measured_half_steps",
    "reference_spectrum",
    "validate_k_edges",
    "particle_spectra",
    "particle_features",
    "simulated_particle_spectra",
    "reference_site_o_k",
    "validate_particle",
    "set_trends",
    "validate",
    "plot_validation",
    "register",
]

#: Compounds simulated for each K edge (names of
#: :data:`~mmspec_widgets.simulate.references.REFERENCE_COMPOUNDS`).
K_EDGE_COMPOUNDS = {
    "Mn_K": ("MnO", "Mn3O4", "Mn2O3", "MnO2"),
    "Ni_K": ("Ni_metal", "NiOH2", "NiO", "LiNiO2"),
    "Co_K": ("Co_metal",),
}

#: Measured file stem of each simulated compound that has a measured scan.
_MEASURED_NAME = {"MnO": "MnO", "Mn3O4": "Mn3O4", "Mn2O3": "Mn2O3", "MnO2": "MnO2",
                  "NiOH2": "NiOH2", "Ni_metal": "Ni_metal", "Co_metal": "co_metal"}

#: Pre-edge and post-edge line windows (absolute eV) of the measured scans.
MEASURED_WINDOWS = {
    "Mn": ((6520.0, 6532.0), (6580.0, 6630.0)),
    "Ni": ((8250.0, 8325.0), (8380.0, 8480.0)),
    "Co": ((7650.0, 7700.0), (7760.0, 7860.0)),
}

#: Gaussian FWHM (eV) applied to simulated K edges before the half-step is read
#: (hard-XAS resolution; the data set uses the same).
K_FWHM = 1.0


# --------------------------------------------------------------------------
# spectral numbers
def _gauss(y: np.ndarray, fwhm: float, step: float) -> np.ndarray:
    from .simulate.dataset import gaussian_broaden

    return gaussian_broaden(y, fwhm, step)


# --------------------------------------------------------------------------
# 1. K edges of reference compounds
def measured_half_steps() -> dict[str, dict]:
    """Half-step energies of the measured reference scans (mean over repeats).

    Returns
    -------
    dict
        File stem -> ``{"half_step_eV": mean, "scans": [per scan], "element"}``.
    """
    from .datasets import xas_references
    from .io import load

    out = {}
    for name, paths in xas_references().items():
        el = name[:2].capitalize()
        if el not in MEASURED_WINDOWS:
            continue
        (a, b), (c, d) = MEASURED_WINDOWS[el]
        vals = []
        for p in paths:
            da = load(p)
            e = np.asarray(da["energy"].values, float)
            y = np.asarray(da.values, float)
            m = (e >= a) & (e <= b)
            y = y - np.polyval(np.polyfit(e[m], y[m], 1), e)
            m = (e >= c) & (e <= d)
            post = np.polyval(np.polyfit(e[m], y[m], 1), e)
            keep = e >= a
            vals.append(_hs_normalised(e[keep], (y / post)[keep]))
        out[name] = {"element": el, "half_step_eV": float(np.mean(vals)),
                     "scans": [round(v, 3) for v in vals]}
    return out


def _hs_normalised(e, y):
    k = np.flatnonzero(y >= 0.5)
    if not k.size or k[0] == 0:
        return float("nan")
    j = int(k[0])
    return float(e[j - 1] + (0.5 - y[j - 1]) * (e[j] - e[j - 1]) / ((y[j] - y[j - 1]) or 1.0))


def _store(root, default: str):
    """Campaign store at ``root`` (default ``<project data>/<default>``)."""
    from .paths import data_dir
    from .simulate.campaign import CampaignStore

    return CampaignStore(root if root is not None else data_dir() / default)


def _reference_jobs(name: str, params) -> list[tuple[dict, float]]:
    from .simulate.campaign import feff_job
    from .simulate.feff import feff_input
    from .simulate.references import REFERENCE_COMPOUNDS, absorber_sites, build_reference

    c = REFERENCE_COMPOUNDS[name]
    built = build_reference(name)
    out = []
    for s in absorber_sites(name, built):
        inp = feff_input(built, s["site"], params, title=f"reference {name}")
        out.append((feff_job(inp, f"{c.element}_K", params, compound=name, site=s["site"]),
                    s["weight"]))
    return out


def reference_spectrum(name: str, params=None, store=None, compute: bool = True,
                       fwhm: float = K_FWHM) -> dict | None:
    """Simulated K edge of a reference compound (multiplicity-weighted sites).

    Parameters
    ----------
    name : str
        Compound (:data:`~mmspec_widgets.simulate.references.REFERENCE_COMPOUNDS`).
    params : FeffParams, optional
        FEFF settings (default :func:`feff_params`, the validated ones).
    store : path
        Campaign store holding finished runs (keyed by their input text).
    compute : bool
        Run FEFF for the sites not yet in the store (minutes per site with
        SCF); otherwise return None when any is missing.
    fwhm : float
        Gaussian broadening (eV) of the returned spectrum.

    Returns
    -------
    dict or None
        ``omega`` (eV, FEFF's absolute scale, 0.05 eV steps), ``mu``,
        ``half_step_eV``, ``wall_s`` (sum over the sites' runs), ``sites``.
    """
    from .simulate.campaign import execute_job

    params = params or feff_params()
    st = _store(store, "validation")
    jobs = _reference_jobs(name, params)
    parts = []
    wall = 0.0
    for job, w in jobs:
        if not st.has(job["key"]):
            if not compute:
                return None
            r = execute_job(job, str(st.root))
            if r["status"] != "done":
                raise DataError(f"FEFF failed on {name} site {job['site']}: {r.get('error')}")
        s = st.get(job["key"])
        wall += float(s["meta"].get("wall_s", 0.0))
        parts.append((np.asarray(s["omega"], float), np.asarray(s["mu"], float), w))
    lo = max(p[0][0] for p in parts)
    hi = min(p[0][-1] for p in parts)
    fine = np.arange(lo, hi, 0.05)
    mu = sum(w * np.interp(fine, om, y) for om, y, w in parts)
    mu = _gauss(mu, fwhm, 0.05)
    return {"omega": fine, "mu": mu, "half_step_eV": half_step(fine, mu), "wall_s": wall,
            "sites": [{"site": j["site"], "weight": w, "key": j["key"]} for j, w in jobs]}


def feff_params(**overrides):
    """The FEFF settings of the K-edge validation, with ``overrides``.

    Self-consistent potentials within 3 Angstrom (without them FEFF's Fermi
    level, hence the K-edge chemical shift, is only estimated), SCF mixing
    0.05 (with FEFF's default 0.2 the charge of MnO oscillates until FEFF
    stops), FMS 5 Angstrom, RPA core hole.
    """
    from dataclasses import replace

    from .simulate.feff import FeffParams

    base = FeffParams(scf=3.0, scf_mixing=0.05)
    return replace(base, **overrides) if overrides else base


def _slope(x, y):
    """Least-squares slope, None when fewer than two distinct points."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    m = np.isfinite(x) & np.isfinite(y)
    if m.sum() < 2 or np.ptp(x[m]) == 0:
        return None
    return round(float(np.polyfit(x[m], y[m], 1)[0]), 3)


def validate_k_edges(params=None, store=None, compute: bool = True,
                     progress: bool = False) -> dict:
    """Simulated against measured K-edge half-steps of the reference compounds.

    Returns
    -------
    dict
        Per edge (``Mn_K``, ``Ni_K``, ``Co_K``): ``simulated_half_step_eV`` and
        ``measured_half_step_eV`` by compound, ``simulated_eV_per_unit`` and
        ``measured_eV_per_unit`` (least-squares slope against the formal
        oxidation state over the oxides with a measurement), ``offset_eV`` (mean
        measured - simulated over those), ``monotonic`` (simulated half-steps
        rise with oxidation state), ``oxidation`` by compound.
    """
    from tqdm.auto import tqdm

    from .simulate.references import REFERENCE_COMPOUNDS

    params = params or feff_params()
    measured = measured_half_steps()
    out = {}
    names = [(edge, n) for edge, ns in K_EDGE_COMPOUNDS.items() for n in ns]
    sims = {}
    for _edge, n in tqdm(names, desc="reference compounds", disable=not progress):
        sims[n] = reference_spectrum(n, params, store, compute)
    for edge, ns in K_EDGE_COMPOUNDS.items():
        sim = {n: (round(sims[n]["half_step_eV"], 3) if sims[n] else None) for n in ns}
        meas = {n: round(measured[_MEASURED_NAME[n]]["half_step_eV"], 3)
                for n in ns if _MEASURED_NAME.get(n) in measured}
        ox = {n: REFERENCE_COMPOUNDS[n].oxidation for n in ns}
        oxides = [n for n in ns if ox[n] > 0]
        both = [n for n in oxides if n in meas and sim[n] is not None]
        simulated_oxides = [n for n in oxides if sim[n] is not None]
        srt = sorted(simulated_oxides, key=lambda n: ox[n])
        mono = all(sim[a] < sim[b] for a, b in zip(srt, srt[1:], strict=False) if ox[a] < ox[b])
        out[edge] = {
            "simulated_half_step_eV": sim,
            "measured_half_step_eV": meas,
            "oxidation": ox,
            "simulated_eV_per_unit": _slope([ox[n] for n in simulated_oxides],
                                            [sim[n] for n in simulated_oxides]),
            "measured_eV_per_unit": _slope([ox[n] for n in both], [meas[n] for n in both]),
            "offset_eV": (float(np.mean([meas[n] - sim[n] for n in both])) if both else None),
            "monotonic": bool(mono) if len(srt) > 1 else None,
            "cost_s": {n: round(sims[n]["wall_s"], 1) for n in ns if sims[n]},
        }
    out["feff"] = params.to_dict()
    return out


# --------------------------------------------------------------------------
# 2. the real particle
#: Windows (eV) of the particle comparison: wider than the model grids so the
#: Ni L3 line (at the start of its grid) and the background before each edge fit.
PARTICLE_WINDOWS = {"O_K": (525.0, 565.0), "Mn_L23": (632.0, 675.0),
                    "Co_L23": (772.0, 815.0), "Ni_L23": (845.0, 885.0)}
#: Post-edge windows (eV) where the spectra are normalised to 1.
_POST = {"O_K": (558.0, 562.0), "Mn_L23": (670.0, 675.0), "Co_L23": (810.0, 815.0),
         "Ni_L23": (877.0, 880.0)}
#: Calibration references of the particle comparison.
PARTICLE_REFERENCES = {"O_K": 530.0, "Ni_L3": 853.5}


def particle_spectra(references: dict | None = None) -> dict:
    """Particle-summed, background-free, post-edge-normalised spectra of the
    real TM SI, calibrated with its zero-loss SI.

    Returns
    -------
    dict
        ``energy`` (eV, 0.1 eV steps) and ``mu`` per edge, ``resolution_eV``
        (FWHM of the zero-loss peak), ``n_pixels`` (particle pixels),
        ``calibration``.
    """
    from .background import mask_low_counts, remove_spikes, subtract_background
    from .calibrate import calibrate, zero_loss_fwhm
    from .datasets import nmc_eels_si
    from .io import load

    refs = dict(references or PARTICLE_REFERENCES)
    si = load(nmc_eels_si("TM")["si"])
    zlp = load(nmc_eels_si("ZLP")["si"])
    cal = remove_spikes(calibrate(si, zlp=zlp, references=refs))
    mask = mask_low_counts(cal)
    summed = cal.where(mask).sum(dim=[d for d in cal.dims if d != "energy"])
    out = {"n_pixels": int(mask.sum()), "resolution_eV": float(zero_loss_fwhm(zlp)),
           "calibration": cal.attrs.get("calibration"), "references": refs}
    for edge, (lo, hi) in PARTICLE_WINDOWS.items():
        e = get_edge(edge)
        bg = subtract_background(summed, e.pre_edge)
        x = np.arange(lo, hi + 0.05, 0.1)
        y = np.interp(x, bg["energy"].values, bg.values)
        a, b = _POST[edge]
        y = y / float(np.mean(y[(x >= a) & (x <= b)]))
        out[edge] = {"energy": x, "mu": y}
    return out


def reference_site_o_k(params=None, store=None, compute: bool = False,
                       fwhm: float = 2.32) -> dict | None:
    """O K of one O site of the reference NMC622 structure (the set's
    alignment reference) with FEFF ``params``, broadened to ``fwhm`` and put
    with its pre-edge peak at 530.0 eV (the particle's calibration), post-edge
    (558 - 562 eV) normalised.

    Returns
    -------
    dict or None
        ``energy``, ``mu``, ``wall_s``, ``key``; None when the run is not in
        the store and ``compute`` is False.
    """
    from .simulate.campaign import execute_job, feff_job
    from .simulate.dataset import REFERENCE_SPEC
    from .simulate.feff import FeffParams, feff_input
    from .simulate.labels import DEFAULT_RADIUS, select_sites

    params = params or FeffParams(scf=3.0)
    st = _store(store, "validation")
    nmc = REFERENCE_SPEC.build()
    site = select_sites(nmc, DEFAULT_RADIUS, n_o=2)["O_K"][0]["site"]
    job = feff_job(feff_input(nmc, site, params), "O_K", params, site=int(site))
    if not st.has(job["key"]):
        if not compute:
            return None
        execute_job(job, str(st.root))
    s = st.get(job["key"])
    om, mu = np.asarray(s["omega"], float), np.asarray(s["mu"], float)
    g = np.arange(om[0], om[-1], 0.05)
    y = _gauss(np.interp(g, om, mu), fwhm, 0.05)
    m = g < g[0] + 8.0
    x = g - float(g[m][np.argmax(y[m])]) + 530.0
    post = (x >= 558.0) & (x <= 562.0)
    if post.any():
        y = y / float(np.mean(y[post]))
    return {"energy": x, "mu": y, "wall_s": float(s["meta"].get("wall_s", np.nan)),
            "key": job["key"]}


def _first_band(x, y, start, end, frac=0.6):
    m = (x >= start) & (x <= end)
    xs, ys = x[m], y[m]
    if xs.size < 3:
        return float("nan")
    thr = frac * ys.max()
    for i in range(1, xs.size - 1):
        if ys[i] >= thr and ys[i] >= ys[i - 1] and ys[i] > ys[i + 1]:
            return float(xs[i])
    return float(xs[int(np.argmax(ys))])


_L3_WINDOW = {"Mn_L23": (636.0, 650.0), "Co_L23": (774.0, 788.0), "Ni_L23": (848.0, 860.0)}
_L2_OFFSET = {"Mn_L23": (6.0, 16.0), "Co_L23": (10.0, 20.0), "Ni_L23": (12.0, 22.0)}


def particle_features(edge: str, x, y) -> dict:
    """Positions (eV) that the particle comparison reads from one spectrum.

    O K: ``pre_edge_eV`` (maximum 528 - 533.5 eV), ``main_band_eV`` (first
    local maximum from pre-edge + 4 eV on, at least 60 % of the highest one up
    to 562 eV), ``dip_eV`` (minimum between the two). L2,3: ``L3_eV``,
    ``L2_eV`` (maxima), ``L3_fwhm_eV`` (full width at half the L3 maximum,
    the right half-point sought before the L2 window).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if edge == "O_K":
        m = (x >= 528.0) & (x <= 533.5)
        pre = float(x[m][np.argmax(y[m])])
        main = _first_band(x, y, pre + 4.0, 562.0)
        m = (x > pre) & (x < main)
        dip = float(x[m][np.argmin(y[m])]) if m.any() else float("nan")
        return {"pre_edge_eV": pre, "dip_eV": dip, "main_band_eV": main}
    lo, hi = _L3_WINDOW[edge]
    m = (x >= lo) & (x <= hi)
    i3 = int(np.flatnonzero(m)[np.argmax(y[m])])
    l3 = float(x[i3])
    a, b = _L2_OFFSET[edge]
    m2 = (x >= l3 + a) & (x <= l3 + b)
    l2 = float(x[m2][np.argmax(y[m2])]) if m2.any() else float("nan")
    half = 0.5 * y[i3]
    left = i3
    while left > 0 and y[left] > half:
        left -= 1
    right = i3
    stop = int(np.searchsorted(x, l3 + a))
    while right < min(stop, x.size - 1) and y[right] > half:
        right += 1

    def cross(i, j):  # interpolate the half-point between points i and j
        return float(x[i] + (half - y[i]) * (x[j] - x[i]) / ((y[j] - y[i]) or 1.0))

    fwhm = cross(right - 1, right) - cross(left, left + 1)
    return {"L3_eV": l3, "L2_eV": l2, "L3_fwhm_eV": float(fwhm)}


def _tm_fractions(manifest):
    lab = manifest["labels"]
    return np.array([lab.get("ni_fraction", np.nan), lab.get("mn_fraction", np.nan),
                     lab.get("co_fraction", np.nan)], float)


def simulated_particle_spectra(store=None, composition=(0.13, 0.69, 0.18),
                               n: int = 20, fwhm: float = 2.3, alignment=None) -> dict:
    """Mean simulated spectra of the ``n`` regions closest in TM composition
    (Ni, Mn, Co fractions) to ``composition``, broadened to ``fwhm`` (eV).

    Returns
    -------
    dict
        Per edge: ``energy``, ``mu`` (mean), ``lo`` / ``hi`` (5 - 95 % band),
        ``n``; plus ``structures`` (ids) and ``composition`` (their mean).
    """
    from .simulate.dataset import region_spectrum, resolve_alignment

    st = _store(store, "sim")
    align = resolve_alignment(st, alignment)
    mans = [m for m in st.structures() if m["structure_id"] != align["reference"]]
    target = np.asarray(composition, float)
    d = [float(np.nansum((_tm_fractions(m) - target) ** 2)) for m in mans]
    chosen = [mans[i] for i in np.argsort(d)[:n]]
    out: dict = {"structures": [m["structure_id"] for m in chosen],
                 "composition": np.nanmean([_tm_fractions(m) for m in chosen], axis=0).tolist()}
    for edge, (lo, hi) in PARTICLE_WINDOWS.items():
        x = np.arange(lo, hi + 0.05, 0.1)
        ys = []
        for m in chosen:
            recs = m["sites"].get(edge, [])
            if not recs or edge not in align["shift"]:
                continue
            y = region_spectrum(st, recs, edge, align["shift"][edge],
                                align["l23_scale"].get(edge, 1.0), fwhm=fwhm, grid=x)
            if y is None:
                continue
            a, b = _POST[edge]
            ys.append(y / float(np.mean(y[(x >= a) & (x <= b)])))
        if ys:
            arr = np.array(ys)
            out[edge] = {"energy": x, "mu": arr.mean(0), "lo": np.percentile(arr, 5, 0),
                         "hi": np.percentile(arr, 95, 0), "n": len(ys), "all": arr}
    return out


def validate_particle(measured: dict | None = None, simulated: dict | None = None,
                      store=None) -> dict:
    """Positions read from the measured particle and from the simulated
    regions of its kind (mean spectrum), side by side.

    Returns
    -------
    dict
        ``{"O_K": {"main_band_eV": {"measured", "simulated", "simulated_5_95"},
        "dip_eV": ..., "pre_edge_eV": ...}, "Mn_L23": {"L3_eV", "L2_eV",
        "L3_fwhm_eV"}, ...}`` plus ``resolution_eV``, ``n_pixels``,
        ``n_regions``.
    """
    measured = measured or particle_spectra()
    simulated = simulated or simulated_particle_spectra(store, fwhm=measured["resolution_eV"])
    out: dict = {"resolution_eV": measured["resolution_eV"], "n_pixels": measured["n_pixels"],
                 "references": measured["references"],
                 "simulated_composition": simulated["composition"],
                 "n_regions": len(simulated["structures"])}
    for edge in PARTICLE_WINDOWS:
        if edge not in simulated:
            continue
        fm = particle_features(edge, measured[edge]["energy"], measured[edge]["mu"])
        fs = particle_features(edge, simulated[edge]["energy"], simulated[edge]["mu"])
        per = [particle_features(edge, simulated[edge]["energy"], y)
               for y in simulated[edge]["all"]]
        out[edge] = {}
        for k in fm:
            vals = np.array([p[k] for p in per], float)
            out[edge][k] = {"measured": round(fm[k], 2), "simulated": round(fs[k], 2),
                            "simulated_5_95": [round(float(np.nanpercentile(vals, 5)), 2),
                                               round(float(np.nanpercentile(vals, 95)), 2)]}
    return out


# --------------------------------------------------------------------------
# 3. trends
#: set_trends key -> (descriptor, label) of :func:`~.simulate.descriptors.trend_metrics`
TREND_KEYS = {
    "NiK_halfstep_vs_ni_oxidation": ("Ni_K_edge", "ni_oxidation"),
    "MnK_halfstep_vs_mn_oxidation": ("Mn_K_edge", "mn_oxidation"),
    "OK_preedge_vs_li_content": ("O_K_preedge", "li_content"),
    "OK_preedge_vs_o_vacancy": ("O_K_preedge", "o_vacancy"),
    "NiL3_centroid_vs_ni_oxidation": ("Ni_L3_centroid", "ni_oxidation"),
    "MnL3_centroid_vs_mn_oxidation": ("Mn_L3_centroid", "mn_oxidation"),
}


def set_trends(ds) -> dict[str, float]:
    """Spearman rank correlations (ties at their average rank) of spectral
    numbers with labels over a set, as
    :func:`~mmspec_widgets.simulate.descriptors.trend_metrics` computes them.

    Keys: those of :data:`TREND_KEYS` whose edge and label the set holds (NaN
    where the label does not vary), rounded to 0.001.
    """
    from .simulate.descriptors import trend_metrics

    rows = {(r["descriptor"], r["label"]): r["rho"] for r in trend_metrics(ds)}
    return {k: (round(rows[pair], 3) if np.isfinite(rows[pair]) else float("nan"))
            for k, pair in TREND_KEYS.items() if pair in rows}


# --------------------------------------------------------------------------
# all together
def validate(*, dataset=None, store=None, validation_store=None,
             compute: bool = False, params=None, particle: bool = True,
             progress: bool = False) -> dict:
    """The three comparisons (see module docstring) as one JSON-able dict:
    ``{"k_edges": ..., "particle": ..., "trends": ..., "date", "seconds"}``."""
    from .simulate.dataset import load_training_set

    t0 = time.perf_counter()
    params = params or feff_params()
    out: dict = {"k_edges": validate_k_edges(params, validation_store, compute, progress)}
    if params.scf is not None:
        # the same compounds without self-consistency, where the store has them
        out["k_edges_without_scf"] = validate_k_edges(feff_params(scf=None),
                                                      validation_store, False)
    if particle:
        out["particle"] = validate_particle(store=store)
    ds = load_training_set(dataset) if dataset else load_training_set()
    out["trends"] = set_trends(ds)
    out["trends_set"] = {"samples": int(ds.sizes["sample"]),
                         "path": str(dataset) if dataset else "default"}
    out["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def plot_validation(result: dict, folder, params=None, validation_store=None,
                    store=None) -> list[Path]:
    """Overlay figures: ``validation_k_edges.png`` (measured and simulated K
    edges of the reference compounds) and ``validation_particle.png``
    (the particle against the simulated regions of its kind)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .datasets import xas_references
    from .io import load

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    params = params or feff_params()
    refs = xas_references()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (edge, ns) in zip(axes, K_EDGE_COMPOUNDS.items(), strict=False):
        kr = result["k_edges"][edge]
        off = kr.get("offset_eV") or 0.0
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(ns)))
        for n, col in zip(ns, colors, strict=False):
            s = reference_spectrum(n, params, validation_store, compute=False)
            if s is not None:
                lvl = np.mean(s["mu"][-max(1, s["mu"].size // 10):])
                ax.plot(s["omega"] + off, s["mu"] / lvl, color=col, lw=1.6,
                        label=f"{n} simulated, shifted {off:+.1f} eV")
            mname = _MEASURED_NAME.get(n)
            if mname in refs:
                el = edge.split("_")[0]
                (a, b), (c, d) = MEASURED_WINDOWS[el]
                da = load(refs[mname][0])
                e = np.asarray(da["energy"].values, float)
                y = np.asarray(da.values, float)
                m = (e >= a) & (e <= b)
                y = y - np.polyval(np.polyfit(e[m], y[m], 1), e)
                m = (e >= c) & (e <= d)
                y = y / np.polyval(np.polyfit(e[m], y[m], 1), e)
                ax.plot(e, y, color=col, lw=1.0, ls="--", label=f"{mname} measured")
        hs = [v for v in kr["measured_half_step_eV"].values()]
        if hs:
            ax.set_xlim(min(hs) - 25, max(hs) + 45)
        ax.set_ylim(-0.1, 2.3)
        ax.axhline(0.5, color="0.7", lw=0.6)
        ax.set_xlabel("photon energy (eV)")
        ax.set_ylabel("normalised absorption")
        s_sl, m_sl = kr["simulated_eV_per_unit"], kr["measured_eV_per_unit"]
        title = edge.replace("_", " ")
        if s_sl is not None and m_sl is not None:
            title += f": simulated {s_sl:.2f} eV/unit, measured {m_sl:.2f} eV/unit"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6.5, loc="lower right")
    fig.suptitle("K edges of reference compounds: simulated (solid, shifted by the mean "
                 "offset) vs measured (dashed)", fontsize=10)
    fig.tight_layout()
    p = folder / "validation_k_edges.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    if "particle" in result:
        meas = particle_spectra()
        sim = simulated_particle_spectra(store, fwhm=meas["resolution_eV"])
        fig, axes = plt.subplots(1, 4, figsize=(17, 4.0))
        for ax, edge in zip(axes, PARTICLE_WINDOWS, strict=False):
            if edge in sim:
                s = sim[edge]
                ax.fill_between(s["energy"], s["lo"], s["hi"], color="C0", alpha=0.25,
                                label=f"simulated 5 - 95 % ({s['n']} regions)")
                ax.plot(s["energy"], s["mu"], color="C0", lw=1.5, label="simulated mean")
            ax.plot(meas[edge]["energy"], meas[edge]["mu"], color="k", lw=1.3,
                    label=f"measured particle ({meas['n_pixels']} px)")
            if edge == "O_K":
                scf = reference_site_o_k(store=validation_store, fwhm=meas["resolution_eV"])
                if scf is not None:
                    ax.plot(scf["energy"], scf["mu"], color="C3", lw=1.2, ls="--",
                            label="FEFF with SCF, one NMC622 O site")
            for k, v in result["particle"].get(edge, {}).items():
                if k.endswith("fwhm_eV"):
                    continue
                ax.axvline(v["measured"], color="k", lw=0.5, ls=":")
                ax.axvline(v["simulated"], color="C0", lw=0.5, ls=":")
            ax.set_xlim(*PARTICLE_WINDOWS[edge])
            ax.set_xlabel("energy loss (eV)")
            ax.set_ylabel("post-edge normalised intensity")
            ax.set_title(edge.replace("_", " "), fontsize=10)
            ax.legend(fontsize=7)
        fig.suptitle(f"Real particle vs simulated regions of its kind (broadened to the "
                     f"measured {meas['resolution_eV']:.2f} eV resolution)", fontsize=10)
        fig.tight_layout()
        p = folder / "validation_particle.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------
# command line
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate",
        help="compare the simulations with measured spectra (K-edge references, the real "
             "particle) and report trends of a simulated set",
        description="Simulations judged by measurements: K-edge half-steps of reference "
                    "compounds, the real particle's O K and L2,3 features, trends of a set.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    p.add_argument("--report", default=None, metavar="FOLDER",
                   help="also write validation.json and the overlay figures into FOLDER")
    p.add_argument("--compute", action="store_true",
                   help="run FEFF for reference sites missing from the validation store "
                        "(minutes per site)")
    p.add_argument("--dataset", default=None, help="simulated set for the trends "
                   "(default: the shipped training set)")
    p.add_argument("--store", default="data/sim", help="campaign store (particle comparison)")
    p.add_argument("--validation-store", default="data/validation",
                   help="store of the reference-compound runs")
    p.add_argument("--no-particle", action="store_true", help="skip the real-particle part")
    p.add_argument("--no-scf", action="store_true",
                   help="validate FEFF without self-consistent potentials instead")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import sys

    try:
        params = feff_params(scf=None) if args.no_scf else feff_params()
        res = validate(dataset=args.dataset, store=args.store,
                       validation_store=args.validation_store, compute=args.compute,
                       params=params, particle=not args.no_particle, progress=not args.json)
        if args.report:
            folder = Path(args.report)
            plot_validation(res, folder, params, args.validation_store, args.store)
            (folder / "validation.json").write_text(json.dumps(res, indent=1, default=float))
    except MMSpecError as exc:
        print(f"mmspec validate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=None if args.json else 1, default=float))
    return 0
