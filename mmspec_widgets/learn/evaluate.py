"""Held-out evaluation: every target, every single edge, fused edge sets.

:func:`evaluate_model` scores a model on the test split of the simulated set
(structures never seen in training): R2 for amounts and oxidation states,
ROC-AUC for ``o_vacancy`` / ``antisite`` (probability of >= 1 against
count > 0).  Each edge set is scored on the test samples that have at least
one of its edges, predicting from the set's edges they have (``require="all"``:
only samples with every edge of the set).

:func:`write_report` turns the result into ``evaluation.md`` and a heat map
``evaluation.png`` (targets x edge sets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from sklearn.metrics import r2_score, roc_auc_score

from ..edges import EDGE_ORDER, edge_set_key, get_edge
from ..errors import DataError
from .fusion import CLASSIFICATION_TARGETS, dataset_to_matrix, label_values
from .uncertainty import interval_coverage

__all__ = ["default_edge_sets", "evaluate_model", "cross_validate", "compare_configs",
           "summarize", "write_report", "NAMED_SETS", "FUSION_VARIANTS"]

#: model variants compared by :func:`compare_configs` (``mmspec evaluate --compare``)
FUSION_VARIANTS = {
    "early fusion, CDF + cubic + peaks": {"fusion": "early"},
    "late fusion, CDF + cubic + peaks": {"fusion": "late"},
    "hybrid fusion, CDF + cubic + peaks": {"fusion": "hybrid"},
    "early fusion, CDF only": {"fusion": "early", "kinds": ("cdf",)},
    "early fusion, no edge dropout": {"fusion": "early", "dropout_copies": 0},
}

#: named fused sets: (label, edges)
NAMED_SETS = (
    ("O K + Ni L", ("O_K", "Ni_L23")),
    ("O K + Mn L", ("O_K", "Mn_L23")),
    ("TM L2,3", ("Mn_L23", "Co_L23", "Ni_L23")),
    ("EELS", ("O_K", "Mn_L23", "Co_L23", "Ni_L23")),
    ("EELS + Li K", ("O_K", "Li_K", "Mn_L23", "Co_L23", "Ni_L23")),
    ("TM K (hard XAS)", ("Mn_K", "Co_K", "Ni_K")),
    ("all K edges", ("O_K", "Li_K", "Mn_K", "Co_K", "Ni_K")),
)


def default_edge_sets(edges: Sequence[str]) -> list[tuple[str, ...]]:
    """Every single edge, the named fused sets within ``edges``, and all of ``edges``."""
    edges = [get_edge(e).name for e in edges]
    sets: dict[str, tuple[str, ...]] = {}
    for e in sorted(edges, key=EDGE_ORDER.index):
        sets[e] = (e,)
    for _, s in NAMED_SETS:
        if all(e in edges for e in s):
            sets[edge_set_key(s)] = tuple(s)
    sets[edge_set_key(edges)] = tuple(sorted(edges, key=EDGE_ORDER.index))
    return list(sets.values())


def _metric(target: str) -> str:
    return "roc_auc" if target in CLASSIFICATION_TARGETS else "r2"


def target_score(target: str, y: np.ndarray, p: np.ndarray, min_samples: int) -> float | None:
    """ROC AUC (classification targets) or R2 of ``p`` against ``y`` on the finite
    pairs; ``None`` with fewer than ``min_samples`` of them, a single class or
    a constant ``y``."""
    m = np.isfinite(y) & np.isfinite(p)
    if m.sum() < min_samples:
        return None
    if target in CLASSIFICATION_TARGETS:
        yb = y[m] > 0
        if yb.all() or not yb.any():
            return None
        return float(roc_auc_score(yb, p[m]))
    if np.ptp(y[m]) == 0:
        return None
    return float(r2_score(y[m], p[m]))


def bootstrap_scores(target: str, y: np.ndarray, p: np.ndarray, counts: np.ndarray,
                     min_samples: int) -> np.ndarray:
    """:func:`target_score` of every bootstrap resample at once.

    Parameters
    ----------
    target : str
    y, p : ndarray, shape (n,)
        Truth and prediction.
    counts : ndarray, shape (n_boot, n)
        How often each sample is drawn in each resample.
    min_samples : int

    Returns
    -------
    ndarray, shape (n_boot,)
        R2 (weighted by the counts, which is R2 of the resample) or ROC AUC
        (Mann-Whitney with ties counted half, the area under the resample's
        ROC curve); NaN where :func:`target_score` gives None.
    """
    y, p = np.asarray(y, float), np.asarray(p, float)
    m = np.isfinite(y) & np.isfinite(p)
    c = counts * m[None, :]
    n = c.sum(axis=1)
    yv, pv = np.where(m, y, 0.0), np.where(m, p, 0.0)
    out = np.full(c.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if target in CLASSIFICATION_TARGETS:
            pos = (yv > 0) & m
            neg = ~(yv > 0) & m
            cp, cn = c * pos[None, :], c * neg[None, :]
            s = (pv[:, None] > pv[None, :]) + 0.5 * (pv[:, None] == pv[None, :])
            wp, wn = cp.sum(axis=1), cn.sum(axis=1)
            auc = np.einsum("bi,ij,bj->b", cp, s, cn) / (wp * wn)
            ok = (n >= min_samples) & (wp > 0) & (wn > 0)
            out[ok] = auc[ok]
            return out
        mean = (c * yv).sum(axis=1) / n
        ss_tot = (c * (yv[None, :] - mean[:, None]) ** 2).sum(axis=1)
        ss_res = (c * (yv - pv)[None, :] ** 2).sum(axis=1)
        # a constant truth in the resample: no R2 (as target_score's ptp == 0)
        lo = np.where(c > 0, yv[None, :], np.inf).min(axis=1)
        hi = np.where(c > 0, yv[None, :], -np.inf).max(axis=1)
        ok = (n >= min_samples) & (hi > lo)
        out[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
    return out


def evaluate_model(model, ds: xr.Dataset, edge_sets: Iterable[Sequence[str]] | None = None, *,
                   split: str | None = "test", min_samples: int = 5, require: str = "any",
                   details: bool = False) -> dict:
    """Held-out scores of ``model`` for every target and edge set.

    Parameters
    ----------
    model : MultimodalModel
        Fitted model.
    ds : xarray.Dataset
        Labelled set (the simulated training set); only samples with
        ``split == split`` are used (``split=None``: all samples).
    edge_sets : iterable of sequences of str, optional
        Default :func:`default_edge_sets` of the model's edges.
    min_samples : int
        Fewer test samples for a set: its score is ``None``.
    require : {"any", "all"}
        Samples scored for an edge set: those having at least one of its edges,
        predicted from the set's edges they have (default; an element absent
        from a region has no edge), or only those having all of them.
    details : bool
        Add ``"details"``: test sample count per set and, per regression
        target, coverage of +-1 std and of the 90 % interval.

    Returns
    -------
    dict
        ``{"targets": {name: {"metric": "r2" | "roc_auc",
        "by_edges": {edge_set_key: score or None}}}}`` (+ ``"details"``).
    """
    if split is not None:
        sel = np.asarray(ds["split"].values).astype(str) == split
        if not sel.any():
            raise DataError(f"no samples with split == {split!r} to evaluate on")
        ds = ds.isel(sample=np.flatnonzero(sel))
    sets = list(edge_sets) if edge_sets is not None else default_edge_sets(model.edges_)
    preds, rows_of = _predict_sets(model, ds, sets, require)
    result = {t: {"metric": _metric(t), "by_edges": {}} for t in model.targets_}
    info = {"n_test": {}, "coverage": {}, "require": require}
    for s in sets:
        key = edge_set_key(s)
        rows = rows_of[key]
        info["n_test"][key] = int(rows.sum())
        if key not in preds:
            for t in model.targets_:
                result[t]["by_edges"][key] = None
            continue
        pred = preds[key]
        cov = {}
        for t in model.targets_:
            y = label_values(ds, t)[rows]
            result[t]["by_edges"][key] = target_score(t, y, pred[t], min_samples)
            if t not in CLASSIFICATION_TARGETS:
                cov[t] = interval_coverage(y, pred[t], pred[f"{t}_std"], model.q90(t))
        info["coverage"][key] = cov
    out = {"targets": result}
    if details:
        info["fused_vs_single"] = {
            t: _fused_vs_single(t, result[t]["by_edges"], preds, rows_of,
                                label_values(ds, t), min_samples)
            for t in model.targets_}
        out["details"] = info
    return out


def _best_pair(by_edges: dict) -> tuple[str, str] | None:
    """(best single edge, best fused set) among the scored sets; None if either is missing."""
    singles = {k: v for k, v in by_edges.items() if "+" not in k and v is not None}
    fused = {k: v for k, v in by_edges.items() if "+" in k and v is not None}
    if not singles or not fused:
        return None
    return max(singles, key=singles.get), max(fused, key=fused.get)


def _fused_vs_single(target: str, by_edges: dict, preds: dict, rows_of: dict, y: np.ndarray,
                     min_samples: int, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """Best fused set against the best single edge, with a paired bootstrap.

    Both are scored again on the test samples they share, and those samples
    are resampled with replacement ``n_boot`` times (one sample per held-out
    structure, so structures are the resampled unit); the 95 % interval of
    the score difference says whether the fused set is better (interval above
    0), worse (below 0) or indistinguishable on this test split (``"tie"``).
    """
    pair = _best_pair(by_edges)
    if pair is None:
        return None
    ks, kf = pair
    both = rows_of[ks] & rows_of[kf]
    ps = preds[ks][target][both[rows_of[ks]]]
    pf = preds[kf][target][both[rows_of[kf]]]
    yy = y[both]
    diff = None if (a := target_score(target, yy, pf, min_samples)) is None \
        or (b := target_score(target, yy, ps, min_samples)) is None else a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, yy.size, (int(n_boot), yy.size))
    # resamples as counts per sample: every resample scored at once
    counts = np.zeros((int(n_boot), yy.size))
    np.add.at(counts, (np.repeat(np.arange(int(n_boot)), yy.size), idx.ravel()), 1.0)
    d = bootstrap_scores(target, yy, pf, counts, min_samples) - \
        bootstrap_scores(target, yy, ps, counts, min_samples)
    d = d[np.isfinite(d)]
    if diff is None or len(d) < n_boot // 2:
        return {"single": ks, "fused": kf, "n": int(both.sum()), "diff": diff, "ci95": None,
                "verdict": "yes" if by_edges[kf] > by_edges[ks] else "no"}
    lo, hi = (float(v) for v in np.percentile(d, [2.5, 97.5]))
    verdict = "yes" if lo > 0 else "no" if hi < 0 else "tie"
    return {"single": ks, "fused": kf, "n": int(both.sum()), "diff": float(diff),
            "ci95": [lo, hi], "verdict": verdict}


def _predict_sets(model, ds: xr.Dataset, sets, require: str = "any") -> tuple[dict, dict]:
    """Predictions of ``model`` for each edge set.

    ``require="all"``: on the samples having every edge of the set;
    ``require="any"``: on the samples having at least one, from those of the
    set's edges they have (in a simulated region without, say, Mn there is no
    Mn edge to measure).
    """
    if require not in ("any", "all"):
        raise DataError(f"require={require!r}: expected 'any' or 'all'")
    X_all, _ = dataset_to_matrix(ds, model.edges_, use=[e for e in model.edges_ if e in ds])
    blocks = np.cumsum([0] + [get_edge(e).n_points for e in model.edges_])
    present = {e: np.all(np.isfinite(X_all[:, blocks[j]:blocks[j + 1]]), axis=1)
               for j, e in enumerate(model.edges_)}
    none = np.zeros(X_all.shape[0], bool)
    preds, rows_of = {}, {}
    for s in sets:
        key = edge_set_key(s)
        have = [present.get(e, none) for e in s]
        rows = np.all(have, axis=0) if require == "all" else np.any(have, axis=0)
        rows_of[key] = rows
        if not rows.any():
            continue
        X = X_all[rows].copy()
        for j, e in enumerate(model.edges_):
            if e not in s:
                X[:, blocks[j]:blocks[j + 1]] = np.nan
        Am, Li = model.amount_inputs(ds, s, ("sample",))
        preds[key] = model.predict_arrays(X, amounts=None if Am is None else Am[rows],
                                          li_amount=None if Li is None else Li[rows])
    return preds, rows_of


def cross_validate(ds: xr.Dataset, edge_sets: Iterable[Sequence[str]] | None = None, *,
                   split: str | None = "train", cv_folds: int = 5, min_samples: int = 5,
                   require: str = "any", **model_params) -> dict:
    """Grouped cross-validated scores per target and edge set.

    A model is trained on all but one fold of structures and scored on the
    held-out fold, fold after fold; the out-of-fold predictions of all folds
    are scored together.  More samples enter each score than with a single
    test split, which matters for small simulated sets.

    Parameters
    ----------
    ds : xarray.Dataset
        Labelled set; samples with ``split == split`` (``None``: all).
    edge_sets : iterable of sequences of str, optional
        Default :func:`default_edge_sets` of the trained edges.
    cv_folds : int
        Folds, grouped by ``structure_id``.
    min_samples : int
    require : {"any", "all"}
        See :func:`evaluate_model`.
    **model_params
        Passed to :class:`~mmspec_widgets.learn.fusion.MultimodalModel`.

    Returns
    -------
    dict
        Same layout as :func:`evaluate_model`, with ``details.n_test`` the
        number of out-of-fold samples per set and ``details.fused_vs_single``
        the best fused set against the best single edge, per target, with the
        paired-bootstrap verdict of :func:`evaluate_model`.
    """
    from .fusion import MultimodalModel
    from .train import grouped_splits

    if split is not None:
        ds = ds.isel(sample=np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split))
    groups = np.asarray(ds["structure_id"].values).astype(str)
    splits = grouped_splits(groups, cv_folds)
    sets = None if edge_sets is None else list(edge_sets)
    oof: dict[str, dict[str, np.ndarray]] = {}
    targets = None
    for tr, te in splits:
        model = MultimodalModel(**model_params).fit(ds.isel(sample=tr))
        if sets is None:
            sets = default_edge_sets(model.edges_)
        targets = model.targets_
        preds, rows_of = _predict_sets(model, ds.isel(sample=te), sets, require)
        for key, p in preds.items():
            store = oof.setdefault(key, {t: np.full(len(groups), np.nan) for t in targets})
            for t in targets:
                store[t][te[rows_of[key]]] = p[t]
    result = {t: {"metric": _metric(t), "by_edges": {}} for t in targets}
    n = {}
    for s in sets:
        key = edge_set_key(s)
        for t in targets:
            p = oof.get(key, {}).get(t)
            y = label_values(ds, t)
            result[t]["by_edges"][key] = None if p is None else target_score(t, y, p, min_samples)
        n[key] = int(np.isfinite(oof[key][targets[0]]).sum()) if key in oof else 0
    # fused against the best single edge on the out-of-fold predictions, with
    # the paired bootstrap of the held-out evaluation (one sample per structure)
    rows_of = {k: np.isfinite(p[targets[0]]) for k, p in oof.items()}
    preds = {k: {t: p[t][rows_of[k]] for t in targets} for k, p in oof.items()}
    vs = {t: _fused_vs_single(t, result[t]["by_edges"], preds, rows_of,
                              label_values(ds, t), min_samples)
          for t in targets}
    return {"targets": result, "details": {"n_test": n, "require": require,
                                           "fused_vs_single": vs}}


def summarize(result: dict) -> dict:
    """Per target: mean and best single-edge score, EELS-set score, all-edges score.

    Parameters
    ----------
    result : dict
        Output of :func:`evaluate_model` or :func:`cross_validate`.

    Returns
    -------
    dict
        ``{target: {"single_mean", "single_best", "single_best_edge", "eels", "all"}}``
        (``None`` where not scored).
    """
    out = {}
    for t, r in result["targets"].items():
        by = r["by_edges"]
        keys = list(by)
        singles = {k: v for k, v in by.items() if "+" not in k and v is not None}
        best = max(singles, key=singles.get) if singles else None
        eels = edge_set_key(("O_K", "Mn_L23", "Co_L23", "Ni_L23"))
        out[t] = {"single_mean": float(np.mean(list(singles.values()))) if singles else None,
                  "single_best": singles.get(best) if best else None,
                  "single_best_edge": best, "eels": by.get(eels),
                  "all": by.get(keys[-1]) if "+" in keys[-1] else None}
    return out


def compare_configs(ds: xr.Dataset, configs: dict | None = None, *, cv_folds: int = 5,
                    split: str | None = "train", require: str = "any", **common) -> dict:
    """Grouped-CV comparison of model variants (fusion strategy, featurizers ...).

    Parameters
    ----------
    ds : xarray.Dataset
        Labelled set.
    configs : dict, optional
        Name -> MultimodalModel parameters; default :data:`FUSION_VARIANTS`.
    cv_folds : int
    split : str or None
    require : {"any", "all"}
        See :func:`evaluate_model`.
    **common
        Parameters shared by all variants (e.g. ``edges``, ``params``).

    Returns
    -------
    dict
        Name -> :func:`summarize` of its :func:`cross_validate` result.
    """
    configs = dict(FUSION_VARIANTS if configs is None else configs)
    return {name: summarize(cross_validate(ds, split=split, cv_folds=cv_folds, require=require,
                                           **{**common, **params}))
            for name, params in configs.items()}


def _model_description(model) -> list[str]:
    st = dict(model.settings or {})
    kinds = {"cdf": f"the cumulative distribution of the spectrum ({st.get('n_points', 40)} "
                    "points)",
             "poly": f"piecewise cubic coefficients ({st.get('n_windows', 6)} windows)",
             "peaks": f"the {st.get('n_peaks', 3)} most prominent peaks (position, height, "
                      "width)",
             "grid": "the normalised spectrum", "pca": "PCA scores",
             "noise": "its noise level (robust, from second differences)"}
    fusion = {
        "early": "early fusion: one gradient-boosting model per target on the joined "
                 "features of all edges plus edge-presence indicators",
        "late": "late fusion: per-edge models predict every target from one edge, and a "
                "stacking model per target combines their (out-of-fold) predictions with "
                "edge-presence indicators",
        "hybrid": "hybrid fusion: per-edge models predict every target from one edge, and "
                  "one gradient-boosting model per target combines the joined features, "
                  "those (out-of-fold) predictions and edge-presence indicators",
    }[model.fusion]
    return ["How it works: every spectrum is normalised to unit area and described by "
            + ", ".join(kinds.get(k, k) for k in model.kinds) + f"; {fusion}. Training "
            f"repeats each sample {model.dropout_copies} more times with random subsets of "
            "its edges hidden (edge dropout; one edge alone in about a third of the copies), "
            "so one model serves any subset of edges, and adds "
            f"{model.augment_copies} cop{'y' if model.augment_copies == 1 else 'ies'} with "
            + _augment_text(model) + ". "
            + _amounts_text(model) + _baseline_text(model) +
            "Standard deviations of amounts come from a residual model fitted to grouped "
            "out-of-fold residuals and scaled, on those residuals and its own cross-fitted "
            "predictions of them, separately "
            "for rows read from 1, 2 - 3 and 4 or more edges (so that in each 1 std "
            "covers 68 % and 1.645 std 90 % of them); a defect probability p carries the std of "
            "its 0/1 event, sqrt(p (1 - p)), with the spread of the grouped-CV fold models. "
            "The OOD flag compares each edge's features with the training set (Mahalanobis "
            "distance in PCA space, 99 % threshold"
            + (", learnt as a function of each spectrum's noise from noisy copies "
               if getattr(model, "ood_noise", None) else "") + "); beyond it every std "
            "grows with the OOD score." + _not_learnt_text(model), ""]


def _not_learnt_text(model) -> str:
    nl = getattr(model, "not_learnt_", {}) or {}
    if not nl:
        return ""
    return " Not learnt (NaN in every map, `–` below): " + "; ".join(
        f"{t}, {why}" for t, why in nl.items()) + "."


def _augment_text(model) -> str:
    a = model.augment_params()
    noise = a.get("noise", 0.01)
    if np.ndim(noise):
        lo, hi = (float(x) for x in noise)
        noise_text = (f"noise of a level drawn per spectrum between {100 * lo:g} % and "
                      f"{100 * hi:g} % of its maximum")
    else:
        noise_text = f"noise of {100 * float(noise):g} % of its maximum"
    return (f"energy shifts (up to {a.get('shift', 0.5):g} eV), broadening (up to "
            f"{a.get('broadening', 0.5):g} eV) and {noise_text}")


def _amounts_text(model) -> str:
    edges = list(getattr(model, "amount_edges_", []) or [])
    li = ("Where O K and Li K are given it reads Li per O, and Li per TM where the L2,3 "
          "amounts are known too: the baseline of li_content. "
          if getattr(model, "li_amount_", False) else "")
    if not edges:
        return li
    return li + ("Where O K and all of " + ", ".join(edges) + " are given, the model also reads "
            "the relative amounts (atoms per O atom, from the edge jumps; "
            "`mmspec_widgets.quantify`): each element's share of the L2,3 amounts, which is "
            "the baseline of its TM fraction (the trees learn the correction), and TM per O; "
            f"training copies carry {100 * float(model.amount_noise):.0f} % log-normal noise "
            "on the amounts. ")


def _baseline_text(model) -> str:
    out = ""
    if model.fusion != "early" and getattr(model, "specialist_baseline", False):
        out += ("Elsewhere a regression target starts from the per-edge predictions of the "
                "edges given, weighted by their out-of-fold precision (a strong single-edge "
                "specialist carries through), and the trees learn the correction. ")
    scale = getattr(model, "correction_scale_", None) or {}
    if scale:
        out += ("The trees' correction to a baseline is scaled by a factor fitted on the "
                "out-of-fold predictions (" + ", ".join(
                    f"{t} {a:.2f}" for t, a in scale.items()) + "; 0 would mean the "
                "baseline alone). ")
    return out


_REQUIRE_TEXT = {
    "any": "Each edge set is scored on the test samples having at least one of its edges, "
           "the model seeing the set's edges each sample has (a region without, say, Mn has "
           "no Mn edge), and nothing else.",
    "all": "Each edge set is scored on the test samples having all of its edges, the model "
           "seeing only those edges.",
}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _verdict_lines(targets: dict, vs: dict) -> list[str]:
    """Markdown table: per target, best single edge against best fused set."""
    lines = ["| target | best single edge | score | best fused set | score | n | difference "
             "(95 % interval) | fused better |",
             "|---|---|---|---|---|---|---|---|"]
    for t, r in targets.items():
        by = r["by_edges"]
        pair = _best_pair(by)
        if pair is None:
            lines.append(f"| {t} | – | – | – | – | – | – | – |")
            continue
        ks, kf = pair
        v = vs.get(t) or {}
        if v.get("ci95"):
            lo, hi = v["ci95"]
            diff = f"{v['diff']:+.3f} ({lo:+.3f} to {hi:+.3f})"
        else:
            diff = "–"
        verdict = v.get("verdict", "yes" if by[kf] > by[ks] else "no")
        lines.append(f"| {t} | {ks} | {by[ks]:.3f} | {kf} | {by[kf]:.3f} | {v.get('n', '–')} | "
                     f"{diff} | {verdict} |")
    return lines


def write_report(result: dict, out_dir: str | Path = "docs", *, model=None,
                 title: str = "Held-out evaluation", edge_imp=None,
                 energy_imp=None, spectra=None, cv_result: dict | None = None,
                 comparison: dict | None = None) -> tuple[Path, Path]:
    """Write ``evaluation.md`` and ``evaluation.png`` from :func:`evaluate_model` output.

    Parameters
    ----------
    result : dict
        Output of :func:`evaluate_model` with ``details=True``.
    out_dir : path
        Folder for both files.
    model : MultimodalModel, optional
        Adds the model's id, edges, grouped-CV scores and provenance.
    title : str
    edge_imp : xarray.DataArray, optional
        :func:`~mmspec_widgets.learn.explain.edge_importance` output: a table.
    energy_imp : xarray.Dataset, optional
        :func:`~mmspec_widgets.learn.explain.energy_importance` output: a
        figure ``importance.png`` (one row per target, one panel per edge).
    spectra : xarray.Dataset, optional
        Spectra whose mean is drawn in the importance figure.
    cv_result : dict, optional
        :func:`cross_validate` output: a second table (and heat map
        ``evaluation_cv.png``) of grouped-CV scores on the training split.
    comparison : dict, optional
        :func:`compare_configs` output: a table of model variants.

    Returns
    -------
    (md_path, png_path)
    """
    from .plots import plot_evaluation

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "evaluation.png"
    fig = plot_evaluation(result)
    fig.savefig(png, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    targets = result["targets"]
    keys = list(next(iter(targets.values()))["by_edges"])
    singles = [k for k in keys if "+" not in k]
    details = result.get("details", {})
    lines = [f"# {title}", "",
             "Generated by `mmspec evaluate --report docs` from the held-out test split of the "
             "simulated training set (structures never seen in training). R2 for amounts and "
             "oxidation states, ROC-AUC for O-vacancy and antisite presence (probability of "
             "at least one, against count > 0) and for the phases (li_rich, rock_salt, "
             "spinel: probability that the region's structure is of that phase). "
             + _REQUIRE_TEXT[details.get("require", "any")]
             + " `–`: too few test samples (or a single class) to score.", ""]
    if model is not None:
        md = model.metadata_
        lines += [f"Model `{model.model_id}`: fusion `{model.fusion}`, estimator "
                  f"`{model.estimator}`, featurizers {', '.join(model.kinds)}, edges "
                  f"{', '.join(model.edges_)}; trained on {md.get('n_samples')} samples from "
                  f"{md.get('n_structures')} structures (training data SHA-256 "
                  f"`{str(md.get('training_data_sha256'))[:16]}…`).", ""]
    if model is not None:
        lines += _model_description(model)
    if details.get("n_test"):
        lines += ["Test samples per edge set: " + ", ".join(
            f"{k} {n}" for k, n in details["n_test"].items()) + ".", ""]
    lines += ["![targets x edge sets](evaluation.png)", "", "## Scores", ""]
    head = "| target | metric | " + " | ".join(keys) + " |"
    lines += [head, "|" + "---|" * (len(keys) + 2)]
    for t, r in targets.items():
        lines.append(f"| {t} | {r['metric']} | " + " | ".join(
            _fmt(r["by_edges"][k]) for k in keys) + " |")
    lines += ["", "## Fused against the best single edge", "",
              "Difference = fused minus single, both scored on the test samples they share "
              "(n); 95 % interval from 2000 paired bootstrap resamples of those samples "
              "(one per held-out structure). Fused better: `yes` when the whole interval is "
              "above 0, `no` when below, `tie` when it holds 0 (indistinguishable on this "
              "test split).", ""]
    lines += _verdict_lines(targets, details.get("fused_vs_single", {}))
    cov = details.get("coverage", {})
    if cov:
        lines += ["", "## Uncertainty calibration on the test split", "",
                  "Fraction of test samples whose true value lies within +-1 stated standard "
                  "deviation (nominal 0.68) and within the stated 90 % interval (nominal "
                  "0.90): with all edges, and pooled over the single-edge predictions.", "",
                  "| target | all edges: n | within 1 std | within 90 % | mean std "
                  "| single edges: n | within 1 std | within 90 % | mean std |",
                  "|---|---|---|---|---|---|---|---|---|"]
        all_key = keys[-1]
        for t in targets:
            row = [t]
            for group in ([all_key], singles):
                cs = [cov[k][t] for k in group if k in cov and t in cov[k] and cov[k][t]["n"]]
                n = sum(c["n"] for c in cs)
                if not n:
                    row += ["0", "–", "–", "–"]
                    continue
                w = [c["n"] / n for c in cs]
                row += [str(n)] + [f"{sum(wi * c[q] for wi, c in zip(w, cs, strict=True)):.2f}"
                                   for q in ("within_1std", "within_90")]
                row.append(f"{sum(wi * c['mean_std'] for wi, c in zip(w, cs, strict=True)):.3g}")
            lines.append("| " + " | ".join(row) + " |")
    if model is not None:
        lines += ["", "## Grouped cross-validation on the training split", "",
                  "Out-of-fold scores of the fold models (folds grouped by structure): rows "
                  "with every available edge, and all rows including the edge-dropout copies.",
                  "", "| target | all edges | with dropout copies |", "|---|---|---|"]
        for t, c in model.cv_report_.items():
            lines.append(f"| {t} | {_fmt(c.get('all_edges'))} | {_fmt(c.get('all_rows'))} |")
    if cv_result is not None:
        fig = plot_evaluation(cv_result)
        fig.axes[0].set_title("grouped CV on the training split: single edges | fused sets",
                              fontsize=9)
        fig.savefig(out_dir / "evaluation_cv.png", dpi=120)
        plt.close(fig)
        ct = cv_result["targets"]
        ckeys = list(next(iter(ct.values()))["by_edges"])
        n = cv_result.get("details", {}).get("n_test", {})
        lines += ["", "## Grouped cross-validation per edge set (training split)", "",
                  "Out-of-fold scores: models retrained with the same settings on all but one "
                  "fold of structures, scored on the held-out fold, all folds pooled. More "
                  "samples per score than the test split; same metrics.", "",
                  "Out-of-fold samples per edge set: " + ", ".join(
                      f"{k} {n.get(k, 0)}" for k in ckeys) + ".", "",
                  "![grouped CV](evaluation_cv.png)", "",
                  "| target | metric | " + " | ".join(ckeys) + " |",
                  "|" + "---|" * (len(ckeys) + 2)]
        for t, r in ct.items():
            lines.append(f"| {t} | {r['metric']} | " + " | ".join(
                _fmt(r["by_edges"][k]) for k in ckeys) + " |")
        cvs = cv_result.get("details", {}).get("fused_vs_single")
        if cvs:
            lines += ["", "Fused against the best single edge on these out-of-fold "
                      "predictions (same paired bootstrap as above, one sample per "
                      "structure; training-split structures, none of the test split):", ""]
            lines += _verdict_lines(ct, cvs)
    if comparison:
        lines += ["", "## Fusion strategies compared (grouped CV, training split)", "",
                  "Per target: mean and best single-edge score, the EELS set "
                  "(O_K+Mn_L23+Co_L23+Ni_L23) and all edges, each variant retrained in every "
                  "fold.", "",
                  "| variant | target | single mean | best single | EELS | all edges |",
                  "|---|---|---|---|---|---|"]
        for name, summ in comparison.items():
            for t, v in summ.items():
                best = "–" if v["single_best"] is None else \
                    f"{v['single_best']:.2f} ({v['single_best_edge']})"
                lines.append(f"| {name} | {t} | {_fmt(v['single_mean'])} | {best} | "
                             f"{_fmt(v['eels'])} | {_fmt(v['all'])} |")
    if edge_imp is not None:
        edges = [str(e) for e in edge_imp.edge.values]
        lines += ["", "## Which edges matter: permutation importance", "",
                  "Drop of the score when one edge's spectra are shuffled between samples "
                  f"(all edges given; {edge_imp.attrs.get('samples', 'test samples')}).", "",
                  "| target | " + " | ".join(edges) + " |", "|---|" + "---|" * len(edges)]
        for t in edge_imp.target.values:
            vals = edge_imp.sel(target=t).values
            lines.append(f"| {t} | " + " | ".join(
                "–" if not np.isfinite(v) else f"{v:.2f}" for v in vals) + " |")
    if energy_imp is not None:
        from .plots import plot_importance

        targets_e = [str(t) for t in energy_imp.target.values]
        edges_e = [str(e) for e in energy_imp.data_vars]
        fig, axes = plt.subplots(len(targets_e), len(edges_e),
                                 figsize=(2.6 * len(edges_e), 2.1 * len(targets_e)),
                                 constrained_layout=True, squeeze=False)
        for row, t in zip(axes, targets_e, strict=True):
            plot_importance(energy_imp, t, spectra=spectra, edges=edges_e, axes=list(row))
        fig.savefig(out_dir / "importance.png", dpi=100)
        plt.close(fig)
        lines += ["", "## Which energies matter", "",
                  f"Score drop when a {energy_imp.attrs.get('window_eV', 2.0):g} eV window of "
                  "one edge is shuffled between samples "
                  f"({energy_imp.attrs.get('samples', 'test samples')}; orange), under the "
                  "mean spectrum (black).", "", "![energy-resolved importance](importance.png)"]
    md_path = out_dir / "evaluation.md"
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, png
