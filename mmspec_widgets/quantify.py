"""Local composition from edge jumps (EELS quantification with k-factors).

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
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from .background import append_history
from .edges import EDGE_ORDER, get_edge
from .errors import DataError, MMSpecError

__all__ = ["REFERENCE_EDGE", "fit_k_factors", "quantify", "quantify_known",
           "composition_from_fractions"]

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


def quantify(edges: xr.Dataset, k_factors: Mapping[str, float], *,
             which=None) -> xr.Dataset:
    """Relative amounts (atoms per O atom) of every pixel from its edge jumps.

    Parameters
    ----------
    edges : xarray.Dataset
        Output of :func:`~mmspec_widgets.extract.extract_edges` with
        ``jump_O_K`` and L2,3 jumps.
    k_factors : mapping
        Edge -> k-factor (:func:`fit_k_factors`).
    which : sequence of str, optional
        Edges to quantify (default: the L2,3 edges in ``k_factors`` found in
        ``edges``).

    Returns
    -------
    xarray.Dataset
        A copy of ``edges`` with ``amount_<edge>`` (atoms per O; NaN where
        the O K jump is not positive; negative noise clipped to 0),
        ``amount_<edge>_std`` where the jumps carry their standard deviations
        (``jump_<edge>_std`` of :func:`~mmspec_widgets.extract.extract_edges`)
        and the step in ``attrs["history"]``.  The input is not modified.
    """
    k = {get_edge(e).name: float(v) for e, v in dict(k_factors).items()}
    if which is None:
        which = [e for e in k if e != REFERENCE_EDGE and f"jump_{e}" in edges
                 and (get_edge(e).shell == "L23" or e == "Li_K")]
    names = _amount_edges(edges, which)
    for e in names:
        if e not in k or not np.isfinite(k[e]) or k[e] <= 0:
            raise MMSpecError(f"k_factors: expected a positive k-factor for {e}, got "
                              f"{k.get(e)!r}")
    j_o = _jump(edges, REFERENCE_EDGE)
    denom = j_o.where((j_o > 0) & np.isfinite(j_o))
    out = edges.copy()
    std_o = edges.get(f"jump_{REFERENCE_EDGE}_std")
    for e in names:
        j = _jump(edges, e)
        a = (k[e] * j / denom).clip(min=0.0)
        a.attrs = {"long_name": f"{get_edge(e).element} atoms per O atom",
                   "units": "atoms per O", "k_factor": k[e]}
        out[f"amount_{e}"] = a
        std_e = edges.get(f"jump_{e}_std")
        if std_e is not None and std_o is not None:
            # first-order propagation of the two jumps' errors through k * J_e / J_O
            s = k[e] * np.sqrt(std_e ** 2 + (j * std_o / denom) ** 2) / denom
            s.attrs = {"long_name": f"standard deviation of amount_{e} (counting statistics "
                                    "of the two jumps; k-factor error not included)",
                       "units": "atoms per O"}
            out[f"amount_{e}_std"] = s
    out.attrs = dict(edges.attrs)
    out.attrs["history"] = list(edges.attrs.get("history", []))
    return append_history(out, "quantify", k_factors={e: k[e] for e in names},
                          reference=REFERENCE_EDGE)


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
