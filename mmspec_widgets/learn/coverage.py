"""K edges that a XANES scan covers only in part.

A near-edge scan often stops short of an edge's standard grid (Ni K: 8325 -
8395 eV; a scan over 8330 - 8370 eV covers 81 of its 141 points).  Such a
spectrum is still read, by one rule, measured rather than guessed:

placement
    the scan is put on the grid where it covers it (:func:`~mmspec_widgets.
    learn.fusion.dataset_to_matrix`); grid points outside are missing.
minimum
    the scan must reach down to the edge's tabulated onset (``Edge.onset``:
    the whole rise is covered, what lies below it on the grid is flat
    pre-edge) and up to ``WHITE_LINE_MARGIN`` eV past its white line
    (``Edge.reference``: the white line's maximum and its fall).  Less gives a
    :class:`~mmspec_widgets.errors.DataError` naming the edge, the range
    covered and this minimum (:func:`check_span`).
completion
    below the scan's first point the grid holds that first value (flat
    pre-edge); beyond its last point it holds the mean spectrum of the
    simulated training set (train split) over those channels: an
    uninformative completion that keeps the spectrum among the training
    spectra, so the prediction rests on what the scan covers
    (:func:`complete_rows`).  Holding the last value or the edge-step level 1
    instead was measured (``fill_comparison`` in the rule file; scans ending
    20 eV past the white line): 59 - 79 % of the cut held-out Mn K and Co K
    spectra then become out of distribution (and are ignored), none with the
    mean spectrum, and the Ni K oxidation state moves by 0.33 / 0.23 (RMS,
    against the full grid) instead of 0.17.
uncertainty
    the std of every target the edge informs is widened in quadrature,
    ``sqrt(std**2 + s(m)**2)``, ``m`` being the fraction of the grid missing
    beyond the scan's end.  ``s(m)`` is measured on held-out simulated
    spectra (test split), cut to the same ``m`` and completed as above, one
    edge alone (where it weighs most): ``s**2 = mean(std_full**2) +
    mean((pred_cut - pred_full)**2) - mean(std_cut**2)``, so that on average
    the widened variance of a cut spectrum is its full-grid variance plus the
    mean squared change the cut causes (the model's own std of a completed
    spectrum is often a little smaller than of the full one).  ``s`` is
    measured every 2.5 eV of scan end from the minimum to the grid's end,
    with the scan starting at the onset (the least pre-edge the minimum
    allows), made non-decreasing in ``m`` and interpolated linearly (0 at
    ``m = 0``).  Missing grid below the onset adds nothing: it is flat
    pre-edge (``start_check`` in the rule file: held-out predictions with the
    scan starting at the grid's start, 8 - 9 eV below the onset, or at the
    onset are identical).  The table,
    the completion spectra and the provenance (model id, date of the set)
    are in ``data/models/xanes_coverage.json``, written by
    ``python benchmarks/xanes_coverage.py`` (:func:`measure_rule`).

What the rule does on held-out spectra (median std and RMS error against the
truth, full grid and cut, per edge and scan end) is recorded for the shipped
model in the rule file's ``checks``; for Ni K over 8333 - 8370 eV (``m =
0.355``) the Ni oxidation state's median std grows from 0.22 to 0.27 while its
RMS error grows from 0.27 to 0.31.  Mn K and Co K are in the file likewise
(their oxidation states vary too little in the set to be learnt).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

from ..edges import edge_grid, get_edge
from ..errors import DataError

__all__ = ["WHITE_LINE_MARGIN", "partial_edges", "is_partial_edge", "minimum_span",
           "check_span", "check_rows", "covered_span", "coverage", "complete_rows", "load_rule",
           "rule_path", "extra_std", "widen", "measure_rule"]

#: eV past the white line (``Edge.reference``) a scan must reach
WHITE_LINE_MARGIN = 5.0
#: scan ends measured, every this many eV from the minimum to the grid's end
_END_STEP = 2.5


def is_partial_edge(edge: str) -> bool:
    """Whether ``edge`` may be covered in part (a hard-XAS K edge)."""
    e = get_edge(edge)
    return e.shell == "K" and "hard-XAS" in e.modality


def partial_edges(edges) -> list[str]:
    """The edges of ``edges`` a XANES scan may cover in part."""
    return [get_edge(e).name for e in edges if is_partial_edge(e)]


def minimum_span(edge: str) -> tuple[float, float]:
    """(highest first energy, lowest last energy) in eV a scan of ``edge`` needs:
    the tabulated onset and the white line plus :data:`WHITE_LINE_MARGIN`."""
    e = get_edge(edge)
    return float(e.onset), float(e.reference + WHITE_LINE_MARGIN)


def check_span(edge: str, lo: float, hi: float, n_rows: int = 1) -> None:
    """Raise :class:`DataError` unless a scan over ``lo`` - ``hi`` eV covers
    :func:`minimum_span` of ``edge`` (``n_rows``: how many spectra fall short,
    for the message)."""
    need_lo, need_hi = minimum_span(edge)
    g = edge_grid(edge)
    if lo <= need_lo + 1e-6 and hi >= need_hi - 1e-6:
        return
    what = f"{n_rows} spectra cover" if n_rows > 1 else "the scan covers"
    raise DataError(
        f"{edge}: {what} {lo:.1f} - {hi:.1f} eV, too little of its grid "
        f"{g[0]:.1f} - {g[-1]:.1f} eV; a partly covered {edge} is predicted when the scan "
        f"covers at least {need_lo:.1f} - {need_hi:.1f} eV (from the edge onset to "
        f"{WHITE_LINE_MARGIN:g} eV past the white line at {get_edge(edge).reference:.1f} eV: "
        "the rise and the white line)")


def check_rows(edge: str, cover: dict) -> None:
    """Raise :class:`DataError` (see :func:`check_span`) when a row of
    :func:`coverage` ``cover`` holds part of ``edge`` but less than its minimum."""
    need_lo, need_hi = minimum_span(edge)
    lo, hi = cover["lo"], cover["hi"]
    with np.errstate(invalid="ignore"):
        short = np.isfinite(lo) & ((lo > need_lo + 1e-6) | (hi < need_hi - 1e-6))
    if short.any():
        k = int(np.argmax(short))
        check_span(edge, float(lo[k]), float(hi[k]), int(short.sum()))


def covered_span(values: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last energy (eV) of the finite values of each row of
    ``values`` (``(n_rows, n_energy)`` on ``energy``); NaN for empty rows."""
    fin = np.isfinite(values)
    energy = np.asarray(energy, float)
    any_ = fin.any(axis=1)
    first = np.argmax(fin, axis=1)
    last = fin.shape[1] - 1 - np.argmax(fin[:, ::-1], axis=1)
    lo = np.where(any_, energy[first], np.nan)
    hi = np.where(any_, energy[last], np.nan)
    return lo, hi


def coverage(da: xr.DataArray, edge: str, dim: str, lead: list) -> dict:
    """Per row (leading dims flattened in the order ``lead``): ``fraction`` of
    the grid points of ``edge`` inside the finite span of the spectrum,
    ``missing_tail`` (fraction of the grid beyond its end) and the span
    ``lo``/``hi`` (eV); 0 / NaN for rows without the edge."""
    g = edge_grid(edge)
    if dim not in da.coords and da.sizes[dim] != g.size:
        raise DataError(f"{edge}: {da.sizes[dim]} energies without coordinate; expected "
                        f"{g.size} (the standard grid of {edge})")
    vals = np.asarray(da.transpose(*lead, dim).values, dtype=float).reshape(-1, da.sizes[dim])
    e = np.asarray(da[dim].values, float) if dim in da.coords else g
    order = np.argsort(e)
    lo, hi = covered_span(vals[:, order], e[order])
    with np.errstate(invalid="ignore"):
        i0 = np.searchsorted(g, lo - 1e-6, side="left")
        i1 = np.searchsorted(g, hi + 1e-6, side="right")
        ok = np.isfinite(lo)
        n_in = np.where(ok, np.clip(i1 - i0, 0, g.size), 0)
        tail = np.where(ok, (g.size - np.clip(i1, 0, g.size)) / g.size, np.nan)
    return {"fraction": n_in / g.size, "missing_tail": tail, "lo": lo, "hi": hi}


def complete_rows(out: np.ndarray, edge: str, max_missing: float,
                  fill: np.ndarray | None = None, copy: bool = False) -> np.ndarray:
    """Complete the partly covered rows of ``out`` (spectra of ``edge`` on its
    grid, modified in place and returned; on a copy with ``copy=True``, made
    only when a row needs completing) by the rule of this module.

    Gaps inside a row's covered span are interpolated when at most
    ``max_missing`` of the span is missing (the row is dropped, all NaN,
    otherwise); below the span the first value is held; beyond it, ``fill``
    (default: the completion spectrum of :func:`load_rule`).

    Raises
    ------
    DataError
        A row covers less than :func:`minimum_span`.
    """
    g = edge_grid(edge)
    fin = np.isfinite(out)
    partial = fin.any(axis=1) & ~fin.all(axis=1)
    if not partial.any():
        return out
    lo, hi = covered_span(out[partial], g)
    need_lo, need_hi = minimum_span(edge)
    short = (lo > need_lo + 1e-6) | (hi < need_hi - 1e-6)
    if short.any():
        k = int(np.argmax(short))
        check_span(edge, float(lo[k]), float(hi[k]), int(short.sum()))
    if fill is None and (~fin[partial][:, -1]).any():
        fill = np.asarray(load_rule()["fill"][edge], float)
    if copy:
        out = out.copy()
    for i in np.flatnonzero(partial):
        ok = fin[i]
        a = int(np.argmax(ok))
        b = ok.size - 1 - int(np.argmax(ok[::-1]))
        inner = ok[a:b + 1]
        if inner.mean() < 1 - max_missing:
            out[i] = np.nan
            continue
        if not inner.all():
            out[i, a:b + 1] = np.interp(g[a:b + 1], g[a:b + 1][inner], out[i, a:b + 1][inner])
        out[i, :a] = out[i, a]
        if b + 1 < ok.size:
            out[i, b + 1:] = fill[b + 1:]
    return out


# ------------------------------------------------------------------ the measured rule

def rule_path() -> Path:
    """``data/models/xanes_coverage.json`` (under :func:`mmspec_widgets.paths.data_dir`)."""
    from ..paths import data_dir

    return data_dir() / "models" / "xanes_coverage.json"


@lru_cache(maxsize=4)
def _read_rule(path: str, mtime: float) -> dict:
    return json.loads(Path(path).read_text())


def load_rule(path: str | Path | None = None) -> dict:
    """The measured rule (see the module's description): ``fill`` (edge ->
    completion spectrum on its grid), ``table`` (edge -> ``missing_tail`` and
    ``extra_std`` per target), provenance and checks.

    Raises
    ------
    DataError
        If the file is missing (``python benchmarks/xanes_coverage.py`` writes it).
    """
    p = Path(path) if path is not None else rule_path()
    if not p.is_file():
        raise DataError(f"{p}: the measured rule for partly covered K edges is missing; "
                        "python benchmarks/xanes_coverage.py writes it")
    return _read_rule(str(p), p.stat().st_mtime)


def extra_std(edge: str, target: str, missing_tail, rule: dict | None = None) -> np.ndarray:
    """Measured std (target units) added in quadrature for ``target`` when a
    spectrum of ``edge`` misses ``missing_tail`` of its grid (array-like);
    0 where nothing is missing or the rule has no entry for the target."""
    rule = load_rule() if rule is None else rule
    m = np.asarray(missing_tail, float)
    t = rule["table"].get(edge)
    if t is None or target not in t["extra_std"]:
        return np.zeros_like(m)
    x = np.concatenate([[0.0], t["missing_tail"]])
    y = np.concatenate([[0.0], t["extra_std"][target]])
    with np.errstate(invalid="ignore"):
        return np.where(m > 0, np.interp(m, x, y), 0.0)


def _informed(edge: str, target: str) -> bool:
    """Whether a spectrum of ``edge`` informs ``target`` (not the oxidation
    state of another element)."""
    if target.endswith("_oxidation"):
        return target.split("_")[0] == get_edge(edge).element.lower()
    return True


def widen(out: dict, cover: dict, used: dict, rule: dict | None = None) -> dict:
    """Widen, in place, the std of the targets in ``out`` (flat arrays, as
    :meth:`MultimodalModel.predict` holds them) where a K edge was partly
    covered and used.  ``cover``: edge -> :func:`coverage`; ``used``: edge ->
    bool rows where the edge was used.  Returns a summary per edge (rows,
    lowest coverage) for the history."""
    summary = {}
    partial = {e: c for e, c in cover.items()
               if np.any(used[e] & (c["fraction"] > 0) & (c["missing_tail"] > 0))}
    if not partial:
        return summary
    rule = load_rule() if rule is None else rule
    targets = [k[:-4] for k in out if k.endswith("_std") and k[:-4] in out]
    for e, c in partial.items():
        rows = used[e] & (c["fraction"] > 0) & (c["missing_tail"] > 0)
        for t in targets:
            if not _informed(e, t):
                continue
            s = np.where(rows, extra_std(e, t, np.nan_to_num(c["missing_tail"]), rule), 0.0)
            out[f"{t}_std"] = np.sqrt(out[f"{t}_std"] ** 2 + s * s)
        summary[e] = {"rows": int(rows.sum()),
                      "min_coverage": round(float(np.min(c["fraction"][rows])), 4),
                      "max_missing_tail": round(float(np.max(c["missing_tail"][rows])), 4)}
    summary["rule"] = {"file": rule_path().name, "measured_on": rule.get("model_id")}
    return summary


def measure_rule(model, training_set: xr.Dataset, *, edges=None, end_step: float = _END_STEP,
                 drop_ood_edges: float | None = None) -> dict:
    """Measure the rule on the held-out simulated spectra (see the module's
    description).

    Parameters
    ----------
    model : MultimodalModel
        Fitted model whose K edges are measured.
    training_set : xarray.Dataset
        The simulated set (``split`` coordinate ``train``/``test``).
    edges : sequence of str, optional
        K edges to measure; default every hard-XAS K edge of the model.
    end_step : float
        Scan ends measured every ``end_step`` eV.
    drop_ood_edges : float, optional
        As in :meth:`~MultimodalModel.predict`; default its default.

    Returns
    -------
    dict
        ``fill``, ``table``, ``checks`` and provenance, JSON-ready.
    """
    from .uncertainty import DROP_OOD_EDGES

    drop = DROP_OOD_EDGES if drop_ood_edges is None else drop_ood_edges
    split = np.asarray(training_set["split"].values).astype(str)
    train = training_set.isel(sample=np.flatnonzero(split == "train"))
    test = training_set.isel(sample=np.flatnonzero(split == "test"))
    sizes = [edge_grid(e).size for e in model.edges_]
    starts = np.cumsum([0, *sizes])
    rule = {"model_id": model.model_id,
            "model_training_data_sha256": getattr(model, "metadata_", {}).get(
                "training_data_sha256"),
            "training_set_date": str(training_set.attrs.get("date", "")),
            "white_line_margin_eV": WHITE_LINE_MARGIN, "end_step_eV": end_step,
            "drop_ood_edges": drop, "fill": {}, "table": {}, "checks": {}}
    for edge in partial_edges(model.edges_ if edges is None else edges):
        g = edge_grid(edge)
        k = model.edges_.index(edge)
        tr = np.asarray(train[edge].values, float)
        tr = tr[np.isfinite(tr).all(axis=1)]
        v = np.asarray(test[edge].values, float)
        ok = np.isfinite(v).all(axis=1)
        if tr.shape[0] < 5 or ok.sum() < 5:
            continue
        v = v[ok]
        fill = tr.mean(axis=0)
        rule["fill"][edge] = [round(float(x), 6) for x in fill]

        def predict(spectra, k=k):
            X = np.full((spectra.shape[0], starts[-1]), np.nan)
            X[:, starts[k]:starts[k + 1]] = spectra
            return model.predict_arrays(X, drop_ood_edges=drop)

        full = predict(v)
        targets = [t for t in model.targets_ if _informed(edge, t)
                   and np.isfinite(full[t]).sum() >= 5]
        need_lo, need_hi = minimum_span(edge)
        start = g[np.searchsorted(g, need_lo + 1e-6, side="right") - 1]
        ends = np.arange(need_hi, g[-1] - 1e-6, end_step)
        miss, shifts, ood = [], {t: [] for t in targets}, []
        for end in ends:
            cut = np.where((g >= start - 1e-6) & (g <= end + 1e-6), v, np.nan)
            p = predict(complete_rows(cut, edge, 0.2, fill))
            miss.append(float((g > end + 1e-6).mean()))
            ood.append(float(np.mean(p["ood"] & ~full["ood"])))
            for t in targets:
                d = p[t] - full[t]
                sf, sc = full[f"{t}_std"], p[f"{t}_std"]
                f = np.isfinite(d) & np.isfinite(sf) & np.isfinite(sc)
                if not f.any():
                    shifts[t].append((np.nan, np.nan))
                    continue
                # the variance a cut spectrum should carry, on average: the full
                # grid's plus the mean squared change; s**2 is what its own std lacks
                need = np.mean(sf[f] ** 2) + np.mean(d[f] ** 2) - np.mean(sc[f] ** 2)
                shifts[t].append((float(np.sqrt(np.mean(d[f] ** 2))),
                                  float(np.sqrt(max(need, 0.0)))))
        order = np.argsort(miss)
        m_sorted = np.asarray(miss)[order]
        table = {"missing_tail": [round(float(x), 6) for x in m_sorted],
                 "end_eV": [float(x) for x in np.asarray(ends)[order]],
                 "scan_start_eV": float(start), "n_spectra": int(ok.sum()),
                 "new_ood_fraction": [round(x, 4) for x in np.asarray(ood)[order]],
                 "measured_rms_shift": {}, "measured_extra_std": {},
                 "extra_std": {}}
        for t in targets:
            rms, s = np.nan_to_num(np.asarray(shifts[t])[order]).T
            table["measured_rms_shift"][t] = [round(float(x), 6) for x in rms]
            table["measured_extra_std"][t] = [round(float(x), 6) for x in s]
            table["extra_std"][t] = [round(float(x), 6) for x in np.maximum.accumulate(s)]
        rule["table"][edge] = table
        # the check: within one widened std of the truth, full grid against cut
        chk = {}
        for end in (need_hi, get_edge(edge).reference + 20.0):
            if end >= g[-1]:
                continue
            cut = np.where((g >= start - 1e-6) & (g <= end + 1e-6), v, np.nan)
            p = predict(complete_rows(cut, edge, 0.2, fill))
            m = float((g > end + 1e-6).mean())
            row = {}
            for t in targets:
                if t not in training_set or not t.endswith(("_content", "_oxidation")):
                    continue
                y = np.asarray(test[t].values, float)[ok]
                s_full = full[f"{t}_std"]
                s_cut = np.sqrt(p[f"{t}_std"] ** 2 + extra_std(edge, t, m, rule) ** 2)
                f = np.isfinite(y) & np.isfinite(full[t]) & np.isfinite(p[t])
                if f.sum() < 5 or np.nanmax(np.abs(y[f] - y[f].mean())) == 0:
                    continue
                row[t] = {"within_1std_full": round(float(np.mean(
                              np.abs(full[t][f] - y[f]) <= s_full[f])), 3),
                          "within_1std_cut": round(float(np.mean(
                              np.abs(p[t][f] - y[f]) <= s_cut[f])), 3),
                          "median_std_full": round(float(np.median(s_full[f])), 4),
                          "median_std_cut": round(float(np.median(s_cut[f])), 4),
                          "rmse_full": round(float(np.sqrt(np.mean((full[t][f] - y[f]) ** 2))), 4),
                          "rmse_cut": round(float(np.sqrt(np.mean((p[t][f] - y[f]) ** 2))), 4)}
            chk[f"{start:g}-{end:g}"] = {"missing_tail": round(m, 4), **row}
        rule["checks"][edge] = chk
    return rule
