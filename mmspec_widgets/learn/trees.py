"""Compact, prediction-only form of fitted histogram gradient boosting models.

A fitted :class:`~sklearn.ensemble.HistGradientBoostingRegressor` or binary
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` keeps one Python
object per tree plus the training bin edges; a fused model holds dozens of
them, thousands of trees, which makes a bundle large and slow to load.
:class:`CompactBoosting` keeps the same trees as a handful of flat arrays
(feature, threshold, NaN direction, children, leaf value) and predicts with
the same rules, adding tree outputs in the same order, so its predictions are
identical to the original model's.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ..errors import MMSpecError

__all__ = ["CompactBoosting", "compact"]

_CHUNK = 2048


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
        n = X.shape[0]
        raw = np.full(n, self.baseline_)
        if self.roots_.size == 0 or n == 0:
            return raw
        # leaves point to themselves, so every row can take depth_ steps
        leaf = self.is_leaf_
        idx = np.arange(leaf.size)
        children = np.stack([np.where(leaf, idx, self.right_), np.where(leaf, idx, self.left_)],
                            axis=1).ravel()  # [2 i]: right child, [2 i + 1]: left child
        feature = np.where(leaf, 0, self.feature_)
        threshold = np.where(leaf, np.inf, self.threshold_)
        missing_left = self.missing_left_ | leaf
        for start in range(0, n, _CHUNK):
            Xc = X[start:start + _CHUNK]
            node = np.tile(self.roots_, (Xc.shape[0], 1))  # (rows, trees)
            rows = np.arange(Xc.shape[0])[:, None]
            for _ in range(self.depth_):
                x = Xc[rows, feature[node]]
                with np.errstate(invalid="ignore"):
                    go_left = np.where(np.isnan(x), missing_left[node], x <= threshold[node])
                node = children[2 * node + go_left]
            values = self.value_[node]
            out = raw[start:start + _CHUNK]
            for t in range(values.shape[1]):  # same summation order as scikit-learn
                out += values[:, t]
        return raw

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
