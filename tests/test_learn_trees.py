"""Compact boosting trees predict exactly like the scikit-learn models they copy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from threadpoolctl import threadpool_limits

from mmspec_widgets.errors import MMSpecError
from mmspec_widgets.learn.trees import CompactBoosting, compact


@pytest.fixture(autouse=True)
def one_thread():
    # OpenMP threads only slow small fits down on a busy machine
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12))
    X[rng.random(X.shape) < 0.15] = np.nan  # missing features, as for absent edges
    y = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 + 0.3 * rng.normal(size=400)
    Xt = rng.normal(size=(300, 12))
    Xt[rng.random(Xt.shape) < 0.3] = np.nan
    Xt[:5, :] = np.nan  # rows with nothing at all
    return X, y, Xt


def test_regressor_predictions_are_identical(data):
    X, y, Xt = data
    est = HistGradientBoostingRegressor(max_iter=60, max_features=0.5, random_state=0).fit(X, y)
    c = compact(est)
    assert isinstance(c, CompactBoosting) and c.task_ == "regression"
    np.testing.assert_array_equal(c.predict(Xt), est.predict(Xt))
    np.testing.assert_array_equal(c.predict(X[:1]), est.predict(X[:1]))


def test_classifier_probabilities_are_identical(data):
    X, y, Xt = data
    est = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y > 1)
    c = compact(est)
    np.testing.assert_array_equal(c.predict_proba(Xt), est.predict_proba(Xt))
    np.testing.assert_array_equal(c.predict(Xt), est.predict(Xt))
    np.testing.assert_array_equal(c.classes_, est.classes_)


def test_unsupported_models_are_refused_or_left_alone(data):
    X, y, _ = data
    multi = HistGradientBoostingClassifier(max_iter=5).fit(np.nan_to_num(X), np.digitize(y, [0, 1]))
    with pytest.raises(MMSpecError, match="binary"):
        compact(multi)
    with pytest.raises(MMSpecError, match="loss"):
        compact(HistGradientBoostingRegressor(loss="absolute_error", max_iter=5).fit(X, y))
    rf = RandomForestRegressor(n_estimators=3).fit(np.nan_to_num(X), y)
    assert compact(rf) is rf
    c = CompactBoosting.from_estimator(
        HistGradientBoostingRegressor(max_iter=5).fit(X, y))
    with pytest.raises(MMSpecError, match="shape"):
        c.predict(X[:, :3])
