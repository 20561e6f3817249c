"""Compact, prediction-only form of fitted histogram gradient boosting models.

A fitted :class:`~sklearn.ensemble.HistGradientBoostingRegressor` or binary
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` keeps one Python
object per tree plus the training bin edges; a fused model holds dozens of
them, thousands of trees, which makes a bundle large and slow to load.
:class:`CompactBoosting` keeps the same trees as a handful of flat arrays
(feature, threshold, NaN direction, children, leaf value) and predicts with
the same rules, adding tree outputs in the same order, so its predictions are
identical to the original model's.

Prediction is a compiled traversal (:func:`raw_scores`), which also evaluates
many models on the same rows in one pass.  Rows are grouped by which columns
are missing; within a group, every column that is constant there (missing
features of an absent edge, presence indicators) is decided once for the whole
group, so the trees shrink to the splits the group's rows can still take.  The
remaining splits are walked for eight rows at a time, without branches on the
data, on threads over row blocks.  Each leaf reached is the one the scikit-learn
rules reach, and tree outputs are added to the baseline in the trees' order:
the results are bit-identical to the original model's.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Sequence
from contextlib import contextmanager

import numba
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ..errors import MMSpecError

__all__ = ["CompactBoosting", "compact", "raw_scores", "single_threaded", "recording_stages",
           "stage"]

#: rows handled by one task of the thread pool
_BLOCK_ROWS = 4096
#: rows sharing their missing-column pattern that get trees specialised to it
_MIN_GROUP = 128
#: specialised copies of a stack's trees kept for reuse (groups recur from block
#: to block: the same absent edges, the same presence indicators)
_SPECIALISED_MAX = 8


class CompactBoosting(BaseEstimator):
    """Prediction-only copy of a fitted histogram gradient boosting model.

    Build it with :meth:`from_estimator` (or :func:`compact`).  Numerical
    features only; squared-error regression or binary log-loss classification.

    Attributes
    ----------
    task_ : {"regression", "classification"}
    classes_ : ndarray
        Classification only: the two class labels.
    n_features_in_ : int
    baseline_ : float
        Raw prediction before the first tree.
    roots_ : ndarray of int
        Index of each tree's root in the node arrays.
    feature_, threshold_, missing_left_, left_, right_, is_leaf_, value_ : ndarray
        Node arrays of all trees, children as global indices.
    depth_ : int
        Largest tree depth.
    """

    @classmethod
    def from_estimator(cls, est) -> CompactBoosting:
        """Copy the trees of a fitted HistGradientBoosting model.

        Raises
        ------
        MMSpecError
            For categorical features, multiclass problems or losses other than
            squared error / binary log loss.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        check_is_fitted(est)
        if isinstance(est, HistGradientBoostingClassifier):
            if len(est.classes_) != 2:
                raise MMSpecError("CompactBoosting: only binary classification is supported")
            task = "classification"
        elif isinstance(est, HistGradientBoostingRegressor):
            if est.loss != "squared_error":
                raise MMSpecError(f"CompactBoosting: loss {est.loss!r} is not supported")
            task = "regression"
        else:
            raise MMSpecError(f"CompactBoosting: cannot compact {type(est).__name__}")
        if est.is_categorical_ is not None and np.any(est.is_categorical_):
            raise MMSpecError("CompactBoosting: categorical features are not supported")
        new = cls()
        nodes = [it[0].nodes for it in est._predictors]
        sizes = np.array([len(n) for n in nodes])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        allnodes = np.concatenate(nodes) if nodes else np.zeros(0, dtype=[("value", "f8")])
        shift = np.repeat(offsets, sizes)
        new.task_ = task
        if task == "classification":
            new.classes_ = np.asarray(est.classes_)
        new.n_features_in_ = int(est.n_features_in_)
        new.baseline_ = float(np.asarray(est._baseline_prediction).ravel()[0])
        new.roots_ = offsets.astype(np.int64)
        new.feature_ = allnodes["feature_idx"].astype(np.int64)
        new.threshold_ = allnodes["num_threshold"].astype(np.float64)
        new.missing_left_ = allnodes["missing_go_to_left"].astype(bool)
        new.is_leaf_ = allnodes["is_leaf"].astype(bool)
        new.left_ = (allnodes["left"].astype(np.int64) + shift)
        new.right_ = (allnodes["right"].astype(np.int64) + shift)
        new.value_ = allnodes["value"].astype(np.float64)
        new.depth_ = int(allnodes["depth"].max()) if allnodes.size else 0
        return new

    def _raw(self, X) -> np.ndarray:
        if not hasattr(self, "roots_"):
            raise NotFittedError("CompactBoosting: build it with from_estimator(fitted_model)")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise MMSpecError(f"CompactBoosting: X has shape {X.shape}, expected "
                              f"(n, {self.n_features_in_})")
        return raw_scores([self], X)[:, 0]

    def predict(self, X) -> np.ndarray:
        """Regression: predicted values; classification: predicted class labels."""
        raw = self._raw(X)
        if self.task_ == "regression":
            return raw
        return self.classes_[(expit(raw) > 0.5).astype(int)]

    def predict_proba(self, X) -> np.ndarray:
        """Classification: class probabilities, shape (n, 2)."""
        if self.task_ != "classification":
            raise MMSpecError("CompactBoosting: predict_proba needs a classifier")
        p1 = expit(self._raw(X))
        return np.stack([1 - p1, p1], axis=1)


def compact(est):
    """``CompactBoosting`` copy of a HistGradientBoosting model; other models unchanged."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if isinstance(est, HistGradientBoostingRegressor | HistGradientBoostingClassifier):
        return CompactBoosting.from_estimator(est)
    return est


# --------------------------------------------------------------------------- compiled traversal
#
# Node tables of a stack of models (all trees of all models, global indices):
#   meta[i]  = feature << 1 | nan_right    (nan_right: a missing value goes right)
#   thr[i]   = split threshold (x <= thr goes left); +inf for a leaf
#   left[i], right[i] = children; a leaf points to itself on both sides
#   value[i] = leaf value (0 for split nodes)
# A specialised copy (``_k_specialise``) keeps, tree by tree, only the nodes the
# rows of one group can reach, breadth first with the two children of a node
# side by side.  Node s takes two 8-byte words, ``smeta[2 s] = 2 first_child << 32
# | feature << 1 | nan_right`` and its threshold (a float64 view of the same
# buffer at 2 s + 1), so that one cache line holds both and the next node's word
# is ``2 first_child + 2 go_right``.  A leaf's first child is itself and its
# threshold +inf: a row that reached it stays there, so every row of a tree can
# take the same number of steps (the specialised tree's depth) without testing
# for leaves.

_jit = numba.njit(nogil=True, cache=True)


@_jit
def _k_goes_right(x, thr, meta):
    # scikit-learn's rule: missing -> the node's missing side, else x <= thr -> left
    if x != x:
        return (meta & 1) == 1
    return not x <= thr


@_jit
def _k_specialise(roots, meta, thr, left, right, value, cmask, cval,
                  sroots, sdepth, smeta, sthr, sval, queue, qdepth):
    """Copy of the trees without the splits on columns constant in a group."""
    n_out = 0
    for t in range(roots.size):
        j = roots[t]
        while left[j] != j and cmask[meta[j] >> 1]:  # split decided for the whole group
            j = right[j] if _k_goes_right(cval[meta[j] >> 1], thr[j], meta[j]) else left[j]
        sroots[t] = n_out
        queue[0] = j
        qdepth[0] = 0
        head, tail = 0, 1
        n_out += 1
        deepest = 0
        while head < tail:
            j = queue[head]
            d = qdepth[head]
            s = sroots[t] + head
            head += 1
            if left[j] == j:  # leaf: stays where it is
                sthr[2 * s + 1] = np.inf
                smeta[2 * s] = np.uint64(2 * s) << _U32
                sval[s] = value[j]
                if d > deepest:
                    deepest = d
                continue
            sthr[2 * s + 1] = thr[j]
            sval[s] = 0.0
            smeta[2 * s] = np.uint64(2 * (sroots[t] + tail)) << _U32 | np.uint64(meta[j])
            for side in range(2):
                c = left[j] if side == 0 else right[j]
                while left[c] != c and cmask[meta[c] >> 1]:
                    c = right[c] if _k_goes_right(cval[meta[c] >> 1], thr[c], meta[c]) \
                        else left[c]
                queue[tail] = c
                qdepth[tail] = d + 1
                tail += 1
                n_out += 1
        sdepth[t] = deepest
    return n_out


_U1 = np.uint64(1)
_U32 = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)


@_jit
def _k_step(X, r, node, smeta, sthr, missing):
    # ``node``: word index (2 s) of a specialised node; unsigned indices avoid
    # negative-index handling in the innermost loop
    m = smeta[node]
    x = X[r, (m & _LOW) >> _U1]
    if missing is None:  # no missing value among the columns still tested
        # (a None argument: this branch is chosen when the kernel is compiled)
        right = x > sthr[node + _U1]
    else:  # x > thr, or missing with nan_right: no branch on the data
        right = (x > sthr[node + _U1]) | ((x != x) & ((m & _U1) == _U1))
    return (m >> _U32) + (np.uint64(right) << _U1)


@_jit
def _k_traverse(X, rows, sroots, sdepth, smeta, sthr, sval, tree_model, baseline, out,
                missing):
    """out[rows[i], k] = baseline[k] + leaf values of model k's trees, in tree order.

    Sixteen rows at a time walk each tree side by side (independent chains the
    processor overlaps; the last group is padded with its last row).
    ``missing``: None where the tested columns hold no missing value, else True.
    """
    n = rows.size
    n_models = baseline.size
    for i0 in range(0, n, 16):
        nb = min(16, n - i0)
        r0 = np.uint64(rows[i0 + min(0, nb - 1)])
        r1 = np.uint64(rows[i0 + min(1, nb - 1)])
        r2 = np.uint64(rows[i0 + min(2, nb - 1)])
        r3 = np.uint64(rows[i0 + min(3, nb - 1)])
        r4 = np.uint64(rows[i0 + min(4, nb - 1)])
        r5 = np.uint64(rows[i0 + min(5, nb - 1)])
        r6 = np.uint64(rows[i0 + min(6, nb - 1)])
        r7 = np.uint64(rows[i0 + min(7, nb - 1)])
        r8 = np.uint64(rows[i0 + min(8, nb - 1)])
        r9 = np.uint64(rows[i0 + min(9, nb - 1)])
        r10 = np.uint64(rows[i0 + min(10, nb - 1)])
        r11 = np.uint64(rows[i0 + min(11, nb - 1)])
        r12 = np.uint64(rows[i0 + min(12, nb - 1)])
        r13 = np.uint64(rows[i0 + min(13, nb - 1)])
        r14 = np.uint64(rows[i0 + min(14, nb - 1)])
        r15 = np.uint64(rows[i0 + min(15, nb - 1)])
        for k in range(n_models):
            for lane in range(nb):
                out[rows[i0 + lane], k] = baseline[k]
        for t in range(sroots.size):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.uint64(2 * sroots[t])
            a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = a0
            for _ in range(sdepth[t]):
                a0 = _k_step(X, r0, a0, smeta, sthr, missing)
                a1 = _k_step(X, r1, a1, smeta, sthr, missing)
                a2 = _k_step(X, r2, a2, smeta, sthr, missing)
                a3 = _k_step(X, r3, a3, smeta, sthr, missing)
                a4 = _k_step(X, r4, a4, smeta, sthr, missing)
                a5 = _k_step(X, r5, a5, smeta, sthr, missing)
                a6 = _k_step(X, r6, a6, smeta, sthr, missing)
                a7 = _k_step(X, r7, a7, smeta, sthr, missing)
                a8 = _k_step(X, r8, a8, smeta, sthr, missing)
                a9 = _k_step(X, r9, a9, smeta, sthr, missing)
                a10 = _k_step(X, r10, a10, smeta, sthr, missing)
                a11 = _k_step(X, r11, a11, smeta, sthr, missing)
                a12 = _k_step(X, r12, a12, smeta, sthr, missing)
                a13 = _k_step(X, r13, a13, smeta, sthr, missing)
                a14 = _k_step(X, r14, a14, smeta, sthr, missing)
                a15 = _k_step(X, r15, a15, smeta, sthr, missing)
            k = tree_model[t]
            out[r0, k] += sval[a0 >> _U1]
            if nb > 1:
                out[r1, k] += sval[a1 >> _U1]
            if nb > 2:
                out[r2, k] += sval[a2 >> _U1]
            if nb > 3:
                out[r3, k] += sval[a3 >> _U1]
            if nb > 4:
                out[r4, k] += sval[a4 >> _U1]
            if nb > 5:
                out[r5, k] += sval[a5 >> _U1]
            if nb > 6:
                out[r6, k] += sval[a6 >> _U1]
            if nb > 7:
                out[r7, k] += sval[a7 >> _U1]
            if nb > 8:
                out[r8, k] += sval[a8 >> _U1]
            if nb > 9:
                out[r9, k] += sval[a9 >> _U1]
            if nb > 10:
                out[r10, k] += sval[a10 >> _U1]
            if nb > 11:
                out[r11, k] += sval[a11 >> _U1]
            if nb > 12:
                out[r12, k] += sval[a12 >> _U1]
            if nb > 13:
                out[r13, k] += sval[a13 >> _U1]
            if nb > 14:
                out[r14, k] += sval[a14 >> _U1]
            if nb > 15:
                out[r15, k] += sval[a15 >> _U1]


@_jit
def _k_missing_keys(X, r0, r1, cols):
    """Per row, a 64-bit hash of which of ``cols`` are missing (FNV-1a over bits)."""
    keys = np.empty(r1 - r0, np.int64)
    for r in range(r0, r1):
        h = np.uint64(14695981039346656037)
        word = np.uint64(0)
        nbits = 0
        for c in cols:
            x = X[r, c]
            word = (word << np.uint64(1)) | np.uint64(x != x)
            nbits += 1
            if nbits == 64:
                h = (h ^ word) * np.uint64(1099511628211)
                word = np.uint64(0)
                nbits = 0
        h = (h ^ word) * np.uint64(1099511628211)
        keys[r - r0] = np.int64(h)
    return keys


@_jit
def _k_constant_columns(X, rows, cols, cmask, cval):
    """cmask[c]: column c holds the same value (or is missing) in every row;
    returns whether the other columns are free of missing values."""
    r_first = rows[0]
    missing = np.zeros(cols.size, np.bool_)
    same = np.ones(cols.size, np.bool_)
    for j in range(cols.size):
        cval[cols[j]] = X[r_first, cols[j]]
    for i in range(rows.size):  # row by row: the row's values are contiguous
        r = rows[i]
        for j in range(cols.size):
            x = X[r, cols[j]]
            v = cval[cols[j]]
            if x != x:
                missing[j] = True
                if v == v:
                    same[j] = False
            elif x != v:
                same[j] = False
    finite = True
    for j in range(cols.size):
        cmask[cols[j]] = same[j]
        if missing[j] and not same[j]:
            finite = False
    return finite


class _Stack:
    """Node tables of several models, with their columns mapped into one X."""

    def __init__(self, models: Sequence[CompactBoosting], columns):
        metas, thrs, lefts, rights, values, roots, tree_model, base = [], [], [], [], [], [], [], []
        offset = 0
        largest = 1
        n_cols = 0
        for k, m in enumerate(models):
            leaf = m.is_leaf_
            n = leaf.size
            own = np.arange(n, dtype=np.int64)
            feat = np.where(leaf, 0, m.feature_).astype(np.int64)
            cols = None if columns is None else columns[k]
            if cols is not None:
                cols = np.asarray(cols, dtype=np.int64)
                if cols.size != m.n_features_in_:
                    raise MMSpecError(f"raw_scores: model {k} reads {m.n_features_in_} "
                                      f"features, {cols.size} columns given")
                feat = cols[feat] if n else feat
                n_cols = max(n_cols, int(cols.max()) + 1 if cols.size else 0)
            else:
                n_cols = max(n_cols, int(m.n_features_in_))
            metas.append(feat << 1 | (~m.missing_left_ & ~leaf).astype(np.int64))
            thrs.append(np.where(leaf, np.inf, m.threshold_))
            lefts.append(np.where(leaf, own, m.left_) + offset)
            rights.append(np.where(leaf, own, m.right_) + offset)
            values.append(np.where(leaf, m.value_, 0.0))
            roots.append(m.roots_ + offset)
            tree_model.append(np.full(m.roots_.size, k, dtype=np.int64))
            base.append(m.baseline_)
            sizes = np.diff(np.append(m.roots_, n))
            largest = max(largest, int(sizes.max()) if sizes.size else 1)
            offset += n

        def cat(parts, dtype):
            return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype)

        self.meta = cat(metas, np.int64)
        self.thr = cat(thrs, np.float64)
        self.left = cat(lefts, np.int64)
        self.right = cat(rights, np.int64)
        self.value = cat(values, np.float64)
        self.roots = cat(roots, np.int64)
        self.tree_model = cat(tree_model, np.int64)
        self.baseline = np.asarray(base, dtype=np.float64)
        self.largest_tree = largest
        self.n_columns = n_cols
        split = ~(self.left == np.arange(self.left.size))
        self.used = np.unique(self.meta[split] >> 1).astype(np.int64)
        self._specialised: dict = {}
        self._lock = threading.Lock()

    def specialised(self, cmask: np.ndarray, cval: np.ndarray):
        """The trees specialised to the constant columns ``cmask`` (values ``cval``),
        kept for the next groups with the same constants."""
        used = self.used
        c = cmask[used]
        v = cval[used][c]
        key = c.tobytes() + np.where(np.isnan(v), 0.0, v).tobytes() + np.isnan(v).tobytes()
        with self._lock:
            hit = self._specialised.pop(key, None)
            if hit is not None:
                self._specialised[key] = hit  # most recent last
                return hit
        hit = self.specialise(cmask, cval)
        with self._lock:
            while len(self._specialised) >= _SPECIALISED_MAX:
                self._specialised.pop(next(iter(self._specialised)))
            self._specialised[key] = hit
        return hit

    def specialise(self, cmask: np.ndarray, cval: np.ndarray):
        n_nodes, n_trees = self.thr.size, self.roots.size
        sroots = np.empty(n_trees, np.int64)
        sdepth = np.empty(n_trees, np.int64)
        smeta = np.empty(2 * n_nodes, np.uint64)  # node i: meta at 2 i, threshold at 2 i + 1
        sthr = smeta.view(np.float64)
        sval = np.empty(n_nodes, np.float64)
        queue = np.empty(self.largest_tree, np.int64)
        qdepth = np.empty(self.largest_tree, np.int64)
        _k_specialise(self.roots, self.meta, self.thr, self.left, self.right, self.value,
                      cmask, cval, sroots, sdepth, smeta, sthr, sval, queue, qdepth)
        return sroots, sdepth, smeta, sthr, sval

    def evaluate(self, X: np.ndarray, r0: int, r1: int, out: np.ndarray) -> None:
        """Raw scores of rows ``r0:r1`` of ``X`` into ``out`` (same rows)."""
        if r1 <= r0:
            return
        keys = _k_missing_keys(X, r0, r1, self.used)
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        big = counts >= _MIN_GROUP
        groups = [np.flatnonzero(inverse == g) + r0 for g in np.flatnonzero(big)]
        rest = np.flatnonzero(~big[inverse]) + r0
        if rest.size:
            groups.append(rest)
        cmask = np.zeros(X.shape[1], dtype=bool)
        cval = np.zeros(X.shape[1], dtype=np.float64)
        for rows in groups:
            rows = rows.astype(np.int64)
            finite = _k_constant_columns(X, rows, self.used, cmask, cval)
            sroots, sdepth, smeta, sthr, sval = self.specialised(cmask, cval)
            _k_traverse(X, rows, sroots, sdepth, smeta, sthr, sval, self.tree_model,
                        self.baseline, out, None if finite else True)


_STACKS: dict = {}
_STACKS_LOCK = threading.Lock()
_STACKS_MAX = 8


def _stack_for(models, columns) -> _Stack:
    """The node tables of ``models`` (cached while the models live)."""
    key = (tuple(id(m) for m in models),
           None if columns is None else tuple(
               None if c is None else np.asarray(c, dtype=np.int64).tobytes() for c in columns))
    with _STACKS_LOCK:
        for k in [k for k, (refs, _) in _STACKS.items() if any(r() is None for r in refs)]:
            del _STACKS[k]  # models gone: their tables go too
        hit = _STACKS.get(key)
        if hit is not None and all(r() is m for r, m in zip(hit[0], models, strict=True)):
            return hit[1]
    stack = _Stack(models, columns)
    with _STACKS_LOCK:
        if len(_STACKS) >= _STACKS_MAX:
            _STACKS.pop(next(iter(_STACKS)))
        _STACKS[key] = ([weakref.ref(m) for m in models], stack)
    return stack


_LOCAL = threading.local()
_STAGES: dict | None = None
_STAGES_LOCK = threading.Lock()


@contextmanager
def recording_stages(into: dict):
    """Within this block, prediction stages timed by :func:`stage` add their
    seconds to ``into`` (summed over threads; for benchmarks)."""
    global _STAGES
    _STAGES = into
    try:
        yield into
    finally:
        _STAGES = None


@contextmanager
def stage(name: str):
    """Time a prediction stage while :func:`recording_stages` is active."""
    if _STAGES is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        with _STAGES_LOCK:
            if _STAGES is not None:
                _STAGES[name] = _STAGES.get(name, 0.0) + dt



@contextmanager
def single_threaded():
    """Within this block (in this thread), :func:`raw_scores` uses one thread:
    for callers that already run several predictions side by side."""
    before = getattr(_LOCAL, "single", False)
    _LOCAL.single = True
    try:
        yield
    finally:
        _LOCAL.single = before


def prediction_threads() -> int:
    """Threads for prediction: :func:`~mmspec_widgets.kernels.n_threads`, or 1
    inside :func:`single_threaded` or on a dask worker (whose threads already
    share the cores)."""
    from ..kernels import n_threads

    if getattr(_LOCAL, "single", False):
        return 1
    if "distributed" in sys.modules:  # on a dask worker the cluster's threads share the cores
        try:
            from distributed import get_worker

            get_worker()
            return 1
        except ValueError:
            pass
    return n_threads()


def raw_scores(models: Sequence[CompactBoosting], X: np.ndarray,
               columns: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Raw predictions (before the link function) of several models on the same rows.

    Parameters
    ----------
    models : sequence of CompactBoosting
        Fitted compact models.
    X : ndarray, shape (n_rows, n_columns)
        Features (any units; NaN for missing values).
    columns : sequence of (ndarray of int or None), optional
        Per model, the column of ``X`` holding each of its features (a model
        fitted on a subset of the columns); None: ``X``'s columns in order.

    Returns
    -------
    ndarray, shape (n_rows, len(models))
        Regression: the predictions; classification: the log-odds of the
        second class.  Identical to each model's own scikit-learn prediction.
    """
    from ..kernels import map_row_blocks

    models = list(models)
    for m in models:
        if not isinstance(m, CompactBoosting) or not hasattr(m, "roots_"):
            raise MMSpecError("raw_scores: expected fitted CompactBoosting models")
    if columns is not None and len(columns) != len(models):
        raise MMSpecError(f"raw_scores: {len(columns)} column maps for {len(models)} models")
    X = np.ascontiguousarray(X, dtype=np.float64)
    stack = _stack_for(models, columns)
    if X.ndim != 2 or X.shape[1] < stack.n_columns:
        raise MMSpecError(f"raw_scores: X has shape {X.shape}, expected (n, >= {stack.n_columns})")
    n = X.shape[0]
    out = np.empty((n, len(models)), dtype=np.float64)
    if not models:
        return out
    if stack.roots.size == 0:
        out[:] = stack.baseline
        return out
    threads = prediction_threads()
    # one thread: one block (rows grouped and trees specialised once per group)
    block = n if threads == 1 else max(_MIN_GROUP, min(_BLOCK_ROWS, -(-n // threads)))
    map_row_blocks(lambda r0, r1: stack.evaluate(X, r0, r1, out), n, block, threads)
    return out
