"""Training: grouped cross-validation, Optuna search, the default model.

Samples are local regions of simulated supercells; regions of one structure
share atoms and are strongly correlated, so every split here is grouped by
``structure_id``: a structure's regions are never on both sides of a split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from ..edges import EDGE_ORDER, get_edge
from ..errors import DataError
from .features import FusedFeaturizer
from .fusion import (
    CLASSIFICATION_TARGETS,
    DEFAULT_KINDS,
    TARGETS,
    MultimodalModel,
    dataset_to_matrix,
    make_estimator,
    predict_estimator,
    target_matrix,
    target_task,
)

__all__ = ["grouped_splits", "load_training_data", "split_dataset", "usable_edges", "tune",
           "train_model", "DEFAULT_SETTINGS"]

#: featurizer settings of the default model
DEFAULT_SETTINGS = {"n_points": 24, "n_windows": 4, "degree": 3, "n_peaks": 2,
                    "smooth": 0.4, "normalize": "area"}


def grouped_splits(groups: Sequence, n_splits: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold splits that never put one group on both sides.

    Parameters
    ----------
    groups : sequence
        Group label (``structure_id``) per sample.
    n_splits : int
        Number of folds (at most the number of groups).

    Returns
    -------
    list of (train_indices, test_indices)
    """
    groups = np.asarray(groups).astype(str)
    n_groups = np.unique(groups).size
    if n_groups < n_splits:
        raise DataError(f"{n_groups} structures cannot be split into {n_splits} folds")
    return list(GroupKFold(n_splits=n_splits).split(np.zeros(len(groups)), groups=groups))


def load_training_data(path: str | Path | None = None) -> xr.Dataset:
    """The simulated training set (default ``data_dir()/training_set.nc``)."""
    from ..simulate import load_training_set

    return load_training_set(path)


def split_dataset(ds: xr.Dataset, split: str) -> xr.Dataset:
    """Samples of ``ds`` whose ``split`` coordinate equals ``split``."""
    if "split" not in ds.coords and "split" not in ds:
        raise DataError("training set has no 'split' coordinate")
    sel = np.asarray(ds["split"].values).astype(str) == split
    if not sel.any():
        raise DataError(f"training set has no samples with split == {split!r}")
    return ds.isel(sample=np.flatnonzero(sel))


def usable_edges(ds: xr.Dataset, edges: Sequence[str] = EDGE_ORDER,
                 min_spectra: int = 10) -> list[str]:
    """Edges of ``ds`` with at least ``min_spectra`` complete spectra."""
    out = []
    for e in edges:
        e = get_edge(e).name
        if e in ds:
            v = np.asarray(ds[e].values, dtype=float)
            v = v.reshape(-1, v.shape[-1])
            if np.all(np.isfinite(v), axis=1).sum() >= min_spectra:
                out.append(e)
    return out


def _score(target: str, y: np.ndarray, p: np.ndarray) -> float:
    m = np.isfinite(y) & np.isfinite(p)
    if m.sum() < 3:
        return np.nan
    if target in CLASSIFICATION_TARGETS:
        if np.unique(y[m]).size < 2:
            return np.nan
        return 2 * roc_auc_score(y[m], p[m]) - 1  # Gini, on the R2 scale
    return r2_score(y[m], p[m])


def tune(ds: xr.Dataset, *, n_trials: int = 20, edges: Sequence[str] | None = None,
         targets: Sequence[str] = TARGETS, kinds: Sequence[str] = DEFAULT_KINDS,
         settings: dict | None = None, n_folds: int = 3, timeout: float | None = None,
         random_state: int = 0) -> dict:
    """Search gradient-boosting hyperparameters with Optuna (TPE).

    One hyperparameter set is shared by all targets; each trial is scored by
    grouped ``n_folds``-fold CV on the joined features of all ``edges``: the
    mean over targets of R2 (amounts) and 2 AUC - 1 (defects).

    Parameters
    ----------
    ds : xarray.Dataset
        Training split.
    n_trials : int
        Optuna trials (default 20; more gives a better search).
    edges, targets, kinds, settings
        As for :class:`~mmspec_widgets.learn.fusion.MultimodalModel`.
    n_folds : int
        Grouped CV folds per trial.
    timeout : float, optional
        Stop the search after this many seconds.
    random_state : int

    Returns
    -------
    dict
        ``{"params": best hyperparameters, "score": best CV score,
        "n_trials": trials run, "trials": [(score, params), ...]}``.
    """
    import optuna

    edges = list(edges) if edges is not None else usable_edges(ds)
    X, _ = dataset_to_matrix(ds, edges)
    Y = target_matrix(ds, targets)
    groups = np.asarray(ds["structure_id"].values).astype(str)
    F = FusedFeaturizer(edges, tuple(kinds), settings or DEFAULT_SETTINGS).fit(X).transform(X)
    splits = grouped_splits(groups, n_folds)
    targets = list(targets)
    order = list(targets)  # targets are scored in this order; pruning compares prefixes

    def objective(trial: optuna.Trial) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
            "max_iter": trial.suggest_int("max_iter", 50, 200, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 7, 31, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 3, 60, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10, log=True),
            "max_features": trial.suggest_float("max_features", 0.2, 1.0),
        }
        scores = []
        for k, t in enumerate(order):
            y = Y[:, targets.index(t)]
            pred = np.full(len(y), np.nan)
            for tr, te in splits:
                tr = tr[np.isfinite(y[tr])]
                if target_task(t) == "classification" and np.unique(y[tr]).size < 2:
                    continue
                est = make_estimator("hgb", target_task(t), params, random_state).fit(F[tr], y[tr])
                pred[te] = predict_estimator(est, F[te], target_task(t))
            s = _score(t, y, pred)
            if np.isfinite(s):
                scores.append(s)
            trial.report(float(np.mean(scores)) if scores else -1.0, k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores)) if scores else -1.0

    sampler = optuna.samplers.TPESampler(seed=random_state)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    with threadpool_limits(limits=1):
        study.optimize(objective, n_trials=int(n_trials), timeout=timeout)
    return {"params": dict(study.best_params), "score": float(study.best_value),
            "n_trials": len(study.trials),
            "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "trials": [(t.value, dict(t.params)) for t in study.trials if t.value is not None]}


def train_model(ds: xr.Dataset | None = None, *, n_trials: int = 20, split: str = "train",
                edges: Sequence[str] | None = None, min_spectra: int = 10,
                tune_timeout: float | None = None, verbose: bool = False,
                **model_params) -> MultimodalModel:
    """Train a :class:`~mmspec_widgets.learn.fusion.MultimodalModel`.

    Parameters
    ----------
    ds : xarray.Dataset, optional
        Training set; default: the project's simulated set
        (:func:`mmspec_widgets.simulate.load_training_set`).
    n_trials : int
        Optuna trials for the hyperparameters (0: defaults).
    split : str
        Samples used: those with this ``split`` value ("train"); the others
        are kept for held-out evaluation.  ``"all"`` uses every sample.
    edges : sequence of str, optional
        Edges to train on; default: every edge with at least ``min_spectra``
        complete spectra in the training split.
    min_spectra : int
        See ``edges``.
    tune_timeout : float, optional
        Seconds allowed for the search.
    verbose : bool
        Print progress.
    **model_params
        Passed to :class:`MultimodalModel` (``fusion``, ``kinds``,
        ``dropout_copies`` ...).

    Returns
    -------
    MultimodalModel
        Fitted; ``metadata_`` records the search and the training data.
    """
    if ds is None:
        ds = load_training_data()
    train = ds if split == "all" else split_dataset(ds, split)
    edges = list(edges) if edges is not None else usable_edges(train, min_spectra=min_spectra)
    if not edges:
        raise DataError(f"no edge has {min_spectra} complete spectra in the training split")
    model_params.setdefault("settings", DEFAULT_SETTINGS)
    search = None
    if n_trials:
        t0 = time.perf_counter()
        search = tune(train, n_trials=n_trials, edges=edges,
                      targets=model_params.get("targets", TARGETS),
                      kinds=model_params.get("kinds", DEFAULT_KINDS),
                      settings=model_params["settings"], timeout=tune_timeout,
                      random_state=model_params.get("random_state", 0))
        search["seconds"] = round(time.perf_counter() - t0, 1)
        if verbose:
            print(f"search: {search['n_trials']} trials, best CV score "
                  f"{search['score']:.3f} in {search['seconds']} s: {search['params']}")
        if model_params.get("params") is None:
            model_params["params"] = search["params"]
    model = MultimodalModel(edges=edges, **model_params)
    model.fit(train)
    model.metadata_["split"] = split
    model.metadata_["edges_available"] = usable_edges(train, min_spectra=1)
    if search is not None:
        model.metadata_["search"] = {k: v for k, v in search.items() if k != "trials"}
    if "title" in ds.attrs:
        model.metadata_["training_set_title"] = str(ds.attrs["title"])
    if verbose:
        print(f"trained {model.model_id} on {model.metadata_['n_samples']} samples "
              f"({model.metadata_['n_structures']} structures), edges {'+'.join(edges)}, "
              f"in {model.metadata_['fit_seconds']} s")
    return model
