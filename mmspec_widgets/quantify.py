"""Local composition from edge jumps (EELS quantification).

The jump of an ionisation edge - its background-free level past the edge -
is proportional to the number of atoms of that element in the probed column
times the element's partial cross-section for the instrument (beam energy,
collection angle, integration window).  The ratio of two jumps therefore
measures the ratio of the atoms, up to a constant per edge pair, the
*k-factor*:

    n_e / n_O = k_e * J_e / J_O

:func:`~mmspec_widgets.extract.extract_edges` records every edge's jump
(``jump_<edge>``).  :func:`fit_k_factors` finds the k-factors on a region of
known composition (the usual standard-based way: the bulk of a particle whose
nominal composition is known, e.g. NMC622), and :func:`quantify` turns the
jumps of every pixel into relative amounts ``amount_<edge>``, atoms of the
edge's element per O atom: the quantity the simulated training set carries
for each region and the fusion models read alongside the spectra's shapes.

Without a standard, :func:`quantify` computes the k-factors itself: each is
the ratio of two partial cross-sections (hydrogenic model,
:mod:`mmspec_widgets.crosssections`) for the instrument recorded in the
attrs (beam energy, collection and convergence angles), averaged over the
window each jump averages over (:func:`~mmspec_widgets.extract.jump_window`).
The standard deviations then add, to the counting and background errors of
the jumps, a stated systematic error of the cross-sections.

Either way the TM fractions ``tm_fraction_<edge>`` (each L2,3 element's share
of the L2,3 amounts, on the simplex: they sum to 1) come with their std, and
``detected_<edge>`` records whether the jump stands above its noise
(:data:`DETECTION_Z` std); ``quantify_reason`` says, per pixel, why a value
is missing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from .background import append_history
from .edges import EDGE_ORDER, TM_EDGES, get_edge
from .errors import DataError, MMSpecError
from .reasons import DETECTION_Z, REASONS, explain_reasons, reason_attrs

__all__ = ["REFERENCE_EDGE", "DETECTION_Z", "REASONS", "TM_EDGES", "explain_reasons", "fit_k_factors",
           "quantify", "quantify_known",
           "composition_from_fractions", "cross_section_k_factors", "edge_detection",
           "summed_composition"]

#: Edge every amount is relative to.
REFERENCE_EDGE = "O_K"


def _jump(edges: xr.Dataset, edge: str, arg: str = "edges") -> xr.DataArray:
    name = f"jump_{edge}"
    if name not in edges:
        have = [str(v) for v in edges.data_vars if str(v).startswith("jump_")]
        raise DataError(f"{arg}: no variable {name!r} (the edge jumps recorded by "
                        f"extract_edges; found {', '.join(have) or 'none'}); extract "
                        f"{edge} together with {REFERENCE_EDGE}")
    return edges[name]


def _amount_edges(edges: xr.Dataset, which) -> list[str]:
    if which is None:
        which = [e for e in EDGE_ORDER
                 if f"jump_{e}" in edges and e != REFERENCE_EDGE
                 and (get_edge(e).shell == "L23" or e == "Li_K")]
    out = [get_edge(e).name for e in which]
    if not out:
        raise DataError("edges: no L2,3 or Li K edge jump to quantify against O K (extract "
                        "O_K and some of Li_K, Mn_L23, Co_L23, Ni_L23 from the same spectrum "
                        "image)")
    return out


def composition_from_fractions(ni: float, mn: float, co: float,
                               o_per_tm: float = 2.0) -> dict[str, float]:
    """Atoms per formula unit of Li(Ni,Mn,Co)O2 from TM fractions.

    Parameters
    ----------
    ni, mn, co : float
        TM fractions (e.g. NMC622: 0.6, 0.2, 0.2); normalised to sum 1.
    o_per_tm : float
        O atoms per TM atom (2 for the stoichiometric layered oxide).

    Returns
    -------
    dict
        ``{"Ni": ..., "Mn": ..., "Co": ..., "O": ...}``.
    """
    tot = float(ni) + float(mn) + float(co)
    if not np.isfinite(tot) or tot <= 0 or min(ni, mn, co) < 0:
        raise MMSpecError(f"composition_from_fractions: ni={ni}, mn={mn}, co={co}; expected "
                          "non-negative fractions with a positive sum")
    return {"Ni": ni / tot, "Mn": mn / tot, "Co": co / tot, "O": float(o_per_tm)}


def fit_k_factors(edges: xr.Dataset, composition: Mapping[str, float], *,
                  mask: xr.DataArray | None = None, which=None) -> dict[str, float]:
    """k-factors from a region of known composition.

    Parameters
    ----------
    edges : xarray.Dataset
        Output of :func:`~mmspec_widgets.extract.extract_edges` holding
        ``jump_O_K`` and the L2,3 jumps (any leading dims: pixels, scans).
    composition : mapping
        Element symbol -> atoms in the reference region (any common scale,
        e.g. ``{"Ni": 0.6, "Mn": 0.2, "Co": 0.2, "O": 2}`` for NMC622; see
        :func:`composition_from_fractions`).  Must give O and every element
        quantified.
    mask : xarray.DataArray of bool, optional
        Pixels of the reference region (default: every pixel with a positive
        O K jump and finite jumps of the other edges).
    which : sequence of str, optional
        Edges to calibrate (default: every L2,3 jump in ``edges``, and Li K when
        ``composition`` gives Li).

    Returns
    -------
    dict
        Edge -> k such that atoms per O = k * jump / jump_O_K; plus the
        reference edge with k = 1.

    Raises
    ------
    MMSpecError
        Composition without O, or an element missing / not positive.
    DataError
        Missing jumps, or no pixel with a positive jump of every edge.
    """
    comp = {str(k): float(v) for k, v in dict(composition).items()}
    if comp.get("O", 0.0) <= 0:
        raise MMSpecError(f"composition={composition!r}: expected O atoms > 0 (amounts are "
                          "relative to O)")
    if which is None and comp.get("Li", 0.0) <= 0:  # Li K calibrated only with a Li amount
        which = [e for e in _amount_edges(edges, None) if e != "Li_K"] or None
    names = _amount_edges(edges, which)
    j_o = _jump(edges, REFERENCE_EDGE)
    sel = (j_o > 0) & np.isfinite(j_o)
    for e in names:
        el = get_edge(e).element
        if comp.get(el, 0.0) <= 0:
            raise MMSpecError(f"composition: expected a positive amount of {el} (to calibrate "
                              f"{e}), got {comp.get(el)!r}")
        sel = sel & np.isfinite(_jump(edges, e))  # zero / noisy jumps count (unbiased sums)
    if mask is not None:
        sel = sel & mask.astype(bool)
    n = int(sel.sum())
    if n == 0:
        raise DataError("edges: no pixel has a positive O K jump and finite jumps of "
                        f"{', '.join(names)} (inside the mask)")
    for e in names:
        if float(_jump(edges, e).where(sel).sum()) <= 0:
            raise DataError(f"edges: the summed {e} jump is not positive; the reference "
                            f"region shows no {get_edge(e).element} edge to calibrate on")
    total_o = float(j_o.where(sel).sum())
    out = {REFERENCE_EDGE: 1.0}
    for e in names:
        total = float(_jump(edges, e).where(sel).sum())
        ratio_true = comp[get_edge(e).element] / comp["O"]
        out[e] = ratio_true / (total / total_o)
    return out


def _instrument(edges: xr.Dataset, beam_energy_keV, collection_mrad, convergence_mrad):
    """Beam energy, collection and convergence angles: arguments first, then attrs."""
    a = edges.attrs
    e0 = beam_energy_keV if beam_energy_keV is not None else a.get("beam_energy_keV")
    beta = collection_mrad if collection_mrad is not None else a.get("collection_angle_mrad")
    alpha = convergence_mrad if convergence_mrad is not None else \
        a.get("convergence_angle_mrad")
    missing = [n for n, v in (("beam_energy_keV", e0), ("collection_angle_mrad", beta))
               if v is None or not np.isfinite(float(v)) or float(v) <= 0]
    if missing:
        raise DataError(f"edges: no {' or '.join(missing)} in attrs (the instrument file "
                        "did not record it): pass beam_energy_keV= / collection_mrad= to "
                        "quantify, or k_factors from a standard")
    alpha = None if alpha is None or not np.isfinite(float(alpha)) else float(alpha)
    return float(e0), float(beta), alpha


def cross_section_k_factors(edges, *, beam_energy_keV: float, collection_mrad: float,
                            convergence_mrad: float | None = None) -> dict[str, float]:
    """k-factors from hydrogenic partial cross-sections (no standard).

    Parameters
    ----------
    edges : sequence of str
        Edges to quantify (O K is added as the reference).
    beam_energy_keV : float
        Incident energy (keV).
    collection_mrad : float
        Collection semi-angle (mrad).
    convergence_mrad : float, optional
        Convergence semi-angle (mrad); None: parallel illumination.

    Returns
    -------
    dict
        Edge -> ``sigma_O / sigma_edge``, the cross-sections averaged over each
        edge's jump window (:func:`~mmspec_widgets.extract.jump_window`), so that
        atoms per O = k * jump / jump_O_K; O K itself with k = 1.
    """
    from .crosssections import window_cross_section
    from .extract import jump_window

    def sig(e):
        return window_cross_section(e, jump_window(e), beam_energy_keV=beam_energy_keV,
                                    collection_mrad=collection_mrad,
                                    convergence_mrad=convergence_mrad)

    s_o = sig(REFERENCE_EDGE)
    out = {REFERENCE_EDGE: 1.0}
    for e in edges:
        e = get_edge(e).name
        if e != REFERENCE_EDGE:
            out[e] = s_o / sig(e)
    return out


def _jump_error(edges: xr.Dataset, e: str) -> xr.DataArray | None:
    """Std of ``jump_<e>``: counting statistics (``jump_<e>_std``) and, where
    the data carry it, the background's shape error (``jump_<e>_model_std``),
    in quadrature; None without ``jump_<e>_std``."""
    s = edges.get(f"jump_{e}_std")
    m = edges.get(f"jump_{e}_model_std")
    if s is None or m is None:
        return s
    return np.sqrt(s ** 2 + m.fillna(0.0) ** 2)


def edge_detection(edges: xr.Dataset, z: float = DETECTION_Z) -> dict[str, xr.DataArray]:
    """Whether each edge's jump stands above its noise, per pixel.

    Parameters
    ----------
    edges : xarray.Dataset
        With ``jump_<edge>`` and ``jump_<edge>_std`` (counts).
    z : float
        Detected where ``jump > z * std``.

    Returns
    -------
    dict
        Edge -> boolean DataArray (False where the jump is missing, negative,
        below ``z`` std or NaN); only edges with both variables.
    """
    out = {}
    for v in edges.data_vars:
        v = str(v)
        if not v.startswith("jump_") or v.endswith("_std") or f"{v}_std" not in edges:
            continue
        e = v[5:]
        j, s = edges[v], edges[f"{v}_std"]
        out[e] = (np.isfinite(j) & np.isfinite(s) & (j > z * s)).rename(f"detected_{e}")
    return out


def quantify(edges: xr.Dataset, k_factors: Mapping[str, float] | None = None, *,
             which=None, beam_energy_keV: float | None = None,
             collection_mrad: float | None = None, convergence_mrad: float | None = None,
             systematic: Mapping[str, float] | None = None) -> xr.Dataset:
    """Relative amounts (atoms per O atom) and TM fractions of every pixel.

    Parameters
    ----------
    edges : xarray.Dataset
        Output of :func:`~mmspec_widgets.extract.extract_edges` with
        ``jump_O_K`` and L2,3 (or Li K) jumps, ideally with their
        ``jump_<edge>_std``.
    k_factors : mapping, optional
        Edge -> k-factor (:func:`fit_k_factors`, from a standard).  None:
        computed from hydrogenic cross-sections for the instrument
        (:func:`cross_section_k_factors`), with a systematic error.
    which : sequence of str, optional
        Edges to quantify (default: the L2,3 edges in ``k_factors``, or with
        cross-sections every L2,3 and Li K jump of ``edges``).
    beam_energy_keV, collection_mrad, convergence_mrad : float, optional
        Instrument for the cross-sections (keV, mrad, mrad); default: the
        attrs ``beam_energy_keV``, ``collection_angle_mrad`` and
        ``convergence_angle_mrad`` that :func:`mmspec_widgets.io.load` records.
        Without a convergence angle the illumination is taken as parallel
        (stated in the attrs; for a convergence well below the collection
        angle the effect is a few %).
    systematic : mapping, optional
        Relative std of each cross-section by shell (``{"K": ..., "L23": ...}``);
        default :data:`mmspec_widgets.crosssections.SYSTEMATIC`.  Ignored with
        ``k_factors`` (their error is the standard's, not known here).

    Returns
    -------
    xarray.Dataset
        A copy of ``edges`` with, per quantified edge, ``amount_<edge>``
        (atoms per O; NaN where the O K jump is not positive, or where the O K
        edge is not detected when jump std are given; negative noise clipped
        to 0) and ``amount_<edge>_std`` (counting + background of both jumps,
        and with cross-sections their systematic error) where the jumps carry
        their std; ``tm_fraction_<edge>`` and ``tm_fraction_<edge>_std`` of the
        L2,3 edges when at least two are quantified (each element's share of
        their atoms, summing to 1; independent of O K); ``detected_<edge>``
        (jump above :data:`DETECTION_Z` std); ``quantify_reason`` (per pixel,
        bit flags of :data:`REASONS` saying why values are NaN; 0 where none is); the step in
        ``attrs["history"]``.  Li K is declared unmeasurable (NaN, with a
        reason) where its jump is not detected: the Li K edge sits on the TM
        M2,3 edges, which a pre-edge background does not remove.  The input is
        not modified.
    """
    from .crosssections import SYSTEMATIC

    mode = "k_factors" if k_factors is not None else "cross_sections"
    if k_factors is None:
        if which is None:
            which = [e for e in EDGE_ORDER if f"jump_{e}" in edges and e != REFERENCE_EDGE
                     and (get_edge(e).shell == "L23" or e == "Li_K")]
        names = _amount_edges(edges, which)
        e0, beta, alpha = _instrument(edges, beam_energy_keV, collection_mrad,
                                      convergence_mrad)
        k = cross_section_k_factors(names, beam_energy_keV=e0, collection_mrad=beta,
                                    convergence_mrad=alpha)
        sys_rel = dict(SYSTEMATIC if systematic is None else systematic)
        rel = {e: float(sys_rel.get(get_edge(e).shell, 0.0)) for e in [REFERENCE_EDGE, *names]}
    else:
        k = {get_edge(e).name: float(v) for e, v in dict(k_factors).items()}
        if which is None:
            which = [e for e in k if e != REFERENCE_EDGE and f"jump_{e}" in edges
                     and (get_edge(e).shell == "L23" or e == "Li_K")]
        names = _amount_edges(edges, which)
        rel = {e: 0.0 for e in [REFERENCE_EDGE, *names]}
    for e in names:
        if e not in k or not np.isfinite(k[e]) or k[e] <= 0:
            raise MMSpecError(f"k_factors: expected a positive k-factor for {e}, got "
                              f"{k.get(e)!r}")
    det = edge_detection(edges)
    j_o = _jump(edges, REFERENCE_EDGE)
    ok_o = (j_o > 0) & np.isfinite(j_o)
    reason = xr.zeros_like(j_o, dtype=np.int32)
    if REFERENCE_EDGE in det:
        vac = ok_o & ~det[REFERENCE_EDGE]
        ok_o = ok_o & det[REFERENCE_EDGE]
        reason = reason | xr.where(vac, 2, 0)
    reason = reason | xr.where(~np.isfinite(j_o), 1, 0)
    reason = reason | xr.where(np.isfinite(j_o) & (j_o <= 0), 2, 0)
    denom = j_o.where(ok_o)
    out = edges.copy()
    std_o = _jump_error(edges, REFERENCE_EDGE)
    # per edge: x = k * J (proportional to atoms) and its variance
    x, var_x = {}, {}
    for e in names:
        j = _jump(edges, e)
        x[e] = k[e] * j
        std_e = _jump_error(edges, e)
        var_x[e] = None if std_e is None else (k[e] * std_e) ** 2 + (x[e] * rel[e]) ** 2
        a = (x[e] / denom).clip(min=0.0)
        if e == "Li_K" and e in det:
            a = a.where(det[e])
            reason = reason | xr.where(np.isfinite(j) & ~det[e], 4, 0)
        a.attrs = {"long_name": f"{get_edge(e).element} atoms per O atom",
                   "units": "atoms per O", "k_factor": k[e], "method": mode}
        out[f"amount_{e}"] = a
        if var_x[e] is not None and std_o is not None:
            # first-order propagation through k * J_e / J_O (cross-section errors as
            # relative errors of k_e and of the O K cross-section)
            var_xo = std_o ** 2 + (j_o * rel[REFERENCE_EDGE]) ** 2
            s = np.sqrt(var_x[e] + (x[e] / denom) ** 2 * var_xo) / denom
            if e == "Li_K" and e in det:
                s = s.where(det[e])
            if mode == "k_factors":
                what = ("counting statistics and background shape error of the two jumps; "
                        "k-factor error not included")
            else:
                what = ("counting statistics, background extrapolation and background shape "
                        "error of the two jumps, and the cross-sections' systematic error "
                        f"({rel[e]:.0%} for {e}, {rel[REFERENCE_EDGE]:.0%} for "
                        f"{REFERENCE_EDGE})")
            s.attrs = {"long_name": f"standard deviation of amount_{e} ({what})",
                       "units": "atoms per O"}
            out[f"amount_{e}_std"] = s
    for e, d in det.items():
        d.attrs = {"long_name": f"{e} edge detected (jump above {DETECTION_Z:g} std)"}
        out[f"detected_{e}"] = d
    tm = [e for e in names if get_edge(e).shell == "L23"]
    if len(tm) >= 2:
        xs = {e: x[e].clip(min=0.0) for e in tm}
        total = sum(xs.values())
        usable = np.isfinite(total) & (total > 0)
        if all(e in det for e in tm):
            any_tm = sum(det[e].astype(int) for e in tm) > 0
            reason = reason | xr.where(usable & ~any_tm, 8, 0)
            usable = usable & any_tm
        reason = reason | xr.where(np.isfinite(total) & ~(total > 0), 8, 0)
        tot = total.where(usable)
        have_var = all(var_x[e] is not None for e in tm)
        for e in tm:
            f = xs[e] / tot
            f.attrs = {"long_name": f"{get_edge(e).element} fraction of the TM atoms "
                                    f"({', '.join(get_edge(t).element for t in tm)}) from the "
                                    "L2,3 jumps", "units": "fraction of TM", "method": mode}
            out[f"tm_fraction_{e}"] = f
            if have_var:
                # d f_e / d x_j = (delta_ej - f_e) / total, independent x_j
                var = sum(((1.0 if t == e else 0.0) - f) ** 2 * var_x[t] for t in tm) / tot ** 2
                s = np.sqrt(var)
                s.attrs = {"long_name": f"standard deviation of tm_fraction_{e} (counting, "
                                        "background and, with cross-sections, their "
                                        "systematic error)", "units": "fraction of TM"}
                out[f"tm_fraction_{e}_std"] = s
    reason = reason.astype(np.int32)
    reason.attrs = reason_attrs("why quantities of this pixel are NaN or limited (bit flags; "
                                "0: none; mmspec_widgets.quantify.explain_reasons)")
    out["quantify_reason"] = reason
    out.attrs = dict(edges.attrs)
    out.attrs["history"] = list(edges.attrs.get("history", []))
    out.attrs["quantify_method"] = mode
    extra = {}
    if mode == "cross_sections":
        out.attrs["cross_section_systematic"] = {sh: float(v) for sh, v in sys_rel.items()}
        extra = {"beam_energy_keV": e0, "collection_mrad": beta,
                 "convergence_mrad": alpha, "systematic": sys_rel}
        if alpha is None:
            out.attrs["quantify_note"] = ("no convergence angle recorded: cross-sections for "
                                          "parallel illumination")
    return append_history(out, "quantify", k_factors={e: k[e] for e in names},
                          reference=REFERENCE_EDGE, method=mode, **extra)


def summed_composition(q: xr.Dataset, mask: xr.DataArray | None = None) -> dict:
    """TM fractions and atoms per O of a region, from its summed jumps.

    The classical quantification of a region: jumps summed over the region's
    pixels (as for its summed spectrum), then divided by the cross-sections
    (or multiplied by the k-factors) recorded by :func:`quantify`.

    Parameters
    ----------
    q : xarray.Dataset
        Output of :func:`quantify` (needs ``jump_<edge>``, ``jump_<edge>_std``
        and the ``k_factor`` attrs of ``amount_<edge>``).
    mask : xarray.DataArray of bool, optional
        Pixels of the region (default: every pixel with a finite
        ``amount_<edge>`` of the TM edges).

    Returns
    -------
    dict
        ``{"fractions": {element: (value, std)}, "per_o": {element: (value, std)},
        "n_pixels": int}``; std from counting and the background's shape
        scatter (``jump_<edge>_model_std``, summed over the pixels as
        independent; the shape error's ``bias``, common to every pixel, in
        ``q.attrs["background_model_error"]``, is not included) and the
        cross-section systematic recorded in ``q.attrs`` (0 with k-factors).
    """
    from .crosssections import SYSTEMATIC

    names = [str(v)[7:] for v in q.data_vars
             if str(v).startswith("amount_") and not str(v).endswith("_std")]
    if not names:
        raise DataError("q: no amount_<edge> variables (run quantify first)")
    sys_rel = q.attrs.get("cross_section_systematic")
    if q.attrs.get("quantify_method") == "cross_sections":
        sys_rel = dict(sys_rel) if isinstance(sys_rel, Mapping) else dict(SYSTEMATIC)
    else:
        sys_rel = {}
    sel = np.isfinite(q[f"amount_{names[0]}"])
    for e in names:
        if e != "Li_K":
            sel = sel & np.isfinite(q[f"amount_{e}"])
    if mask is not None:
        sel = sel & mask.astype(bool)
    n = int(sel.sum())
    if n == 0:
        raise DataError("q: no pixel with finite amounts (inside the mask)")
    x, var = {}, {}
    for e in [REFERENCE_EDGE, *names]:
        kf = 1.0 if e == REFERENCE_EDGE else float(q[f"amount_{e}"].attrs["k_factor"])
        j = float(q[f"jump_{e}"].where(sel).sum())
        err = _jump_error(q, e)
        v = float((err ** 2).where(sel).sum()) if err is not None else 0.0
        x[e] = kf * j
        var[e] = kf * kf * v + (x[e] * sys_rel.get(get_edge(e).shell, 0.0)) ** 2
    per_o = {}
    for e in names:
        a = x[e] / x[REFERENCE_EDGE]
        s = np.sqrt(var[e] + a * a * var[REFERENCE_EDGE]) / x[REFERENCE_EDGE]
        per_o[get_edge(e).element] = (a, float(s))
    tm = [e for e in names if get_edge(e).shell == "L23"]
    fr = {}
    total = sum(max(x[e], 0.0) for e in tm)
    for e in tm:
        f = max(x[e], 0.0) / total
        s = np.sqrt(sum(((1.0 if t == e else 0.0) - f) ** 2 * var[t] for t in tm)) / total
        fr[get_edge(e).element] = (f, float(s))
    return {"fractions": fr, "per_o": per_o, "n_pixels": n}


def quantify_known(edges: xr.Dataset, *, k_factors: Mapping[str, float] | None = None,
                   composition: Mapping[str, float] | None = None) -> xr.Dataset:
    """:func:`quantify` with k-factors given or fitted on a known mean composition.

    Parameters
    ----------
    edges : xarray.Dataset
        Output of :func:`~mmspec_widgets.extract.extract_edges`.
    k_factors : mapping, optional
        Edge -> k-factor; used as they are.
    composition : mapping, optional
        Mean composition of the whole of ``edges`` (see :func:`fit_k_factors`),
        used when no ``k_factors`` are given.

    Returns
    -------
    xarray.Dataset
        ``edges`` quantified, or ``edges`` itself when neither is given.
    """
    if k_factors is None and composition is None:
        return edges
    if k_factors is None:
        k_factors = fit_k_factors(edges, composition)
    return quantify(edges, k_factors)
