"""Training: grouped CV never splits a structure, Optuna search, train_model."""

from __future__ import annotations

import numpy as np
import pytest

from mmspec_widgets.errors import DataError, MMSpecError
from mmspec_widgets.learn._synthetic import make_synthetic_training_set
from mmspec_widgets.learn.fusion import MultimodalModel
from mmspec_widgets.learn.train import (
    grouped_splits,
    split_dataset,
    train_model,
    tune,
    usable_edges,
)


@pytest.fixture(scope="module")
def toy():
    return make_synthetic_training_set(n_structures=14, sites=4, seed=5,
                                       edges=("O_K", "Ni_L23", "Ni_K"))


def test_grouped_splits_never_split_a_structure(toy):
    groups = toy.structure_id.values
    splits = grouped_splits(groups, n_splits=4)
    assert len(splits) == 4
    seen_test = np.concatenate([te for _, te in splits])
    assert np.array_equal(np.sort(seen_test), np.arange(len(groups)))  # each sample tested once
    for tr, te in splits:
        assert not set(groups[tr]) & set(groups[te])
        assert len(te) > 0 and len(tr) > 0
    with pytest.raises(DataError, match="cannot be split"):
        grouped_splits(groups[:8], n_splits=4)  # 2 structures


def test_model_folds_keep_structures_together(toy, monkeypatch):
    """Every grouped split made inside MultimodalModel.fit (on augmented and
    edge-dropout copies too) keeps a structure on one side."""
    from mmspec_widgets.learn import fusion

    seen = []
    real = fusion.GroupKFold.split

    def spy(self, X, y=None, groups=None):
        for tr, te in real(self, X, y, groups):
            seen.append((np.asarray(groups)[tr], np.asarray(groups)[te]))
            yield tr, te

    monkeypatch.setattr(fusion.GroupKFold, "split", spy)
    MultimodalModel(edges=("O_K", "Ni_K"), n_folds=3, dropout_copies=1, augment_copies=1,
                    params={"max_iter": 5}, settings={"n_points": 8, "n_windows": 2,
                                                      "n_peaks": 1}).fit(toy)
    # 3 folds for the models, more for the OOD thresholds: all grouped
    assert len(seen) >= 3
    for gtr, gte in seen:
        assert not set(gtr) & set(gte)


def test_split_and_usable_edges(toy):
    tr = split_dataset(toy, "train")
    te = split_dataset(toy, "test")
    assert tr.sizes["sample"] + te.sizes["sample"] == toy.sizes["sample"]
    assert not set(tr.structure_id.values) & set(te.structure_id.values)
    with pytest.raises(DataError, match="split == 'valid'"):
        split_dataset(toy, "valid")
    part = toy.copy(deep=True)
    part["Ni_K"][:-3] = np.nan
    assert usable_edges(part, min_spectra=5) == ["O_K", "Ni_L23"]


def test_tune_searches_within_bounds(toy):
    res = tune(split_dataset(toy, "train"), n_trials=2, targets=("li_content", "o_vacancy"),
               settings={"n_points": 8, "n_windows": 2, "n_peaks": 1}, n_folds=3)
    assert res["n_trials"] == 2 and np.isfinite(res["score"])
    p = res["params"]
    assert 0.03 <= p["learning_rate"] <= 0.3 and 50 <= p["max_iter"] <= 200
    assert 7 <= p["max_leaf_nodes"] <= 31 and 0.2 <= p["max_features"] <= 1.0
    assert max(v for v, _ in res["trials"]) == pytest.approx(res["score"])


def test_train_model_uses_the_training_split_only(toy):
    model = train_model(toy, n_trials=0, n_folds=3, dropout_copies=1, augment_copies=0,
                        params={"max_iter": 20},
                        settings={"n_points": 8, "n_windows": 2, "n_peaks": 1})
    n_train = int((toy.split.values == "train").sum())
    assert model.metadata_["n_samples"] == n_train
    assert model.metadata_["split"] == "train"
    assert model.edges_ == ["O_K", "Ni_L23", "Ni_K"]
    assert len(model.metadata_["training_data_sha256"]) == 64
    other = toy.copy(deep=True)
    other["li_content"][0] += 0.1
    from mmspec_widgets.learn.fusion import training_data_hash

    assert training_data_hash(other, model.edges_, model.targets_) != \
        training_data_hash(toy, model.edges_, model.targets_)


def test_a_target_without_labels_is_predicted_as_nan(toy):
    ds = toy.copy(deep=True)
    ds["mn_oxidation"][:] = np.nan  # e.g. a set without Mn
    model = MultimodalModel(edges=("Ni_K",), targets=("li_content", "mn_oxidation"), n_folds=3,
                            dropout_copies=0, augment_copies=0, params={"max_iter": 10},
                            settings={"n_points": 8, "n_windows": 2, "n_peaks": 1}).fit(ds)
    assert model.metadata_["untrained_targets"] == ["mn_oxidation"]
    maps = model.predict(ds)
    assert np.isnan(maps.mn_oxidation.values).all() and np.isnan(maps.mn_oxidation_std).all()
    has_ni_k = np.isfinite(ds.Ni_K.values).all(axis=1)
    assert np.isfinite(maps.li_content.values[has_ni_k]).all()


def test_a_target_the_set_does_not_vary_is_not_learnt(toy):
    """A label nearly constant in the set (the NMC set's Mn4+) would be returned
    whatever the spectra: NaN with the reason instead of the set's value."""
    ds = toy.copy(deep=True)
    y = np.where(np.isfinite(ds["mn_oxidation"].values), 4.0, np.nan)
    y[np.flatnonzero(np.isfinite(y))[:1]] = 3.0  # one region of another state
    ds["mn_oxidation"][:] = y
    model = MultimodalModel(edges=("Ni_K",), targets=("li_content", "mn_oxidation"), n_folds=3,
                            dropout_copies=0, augment_copies=0, params={"max_iter": 10},
                            settings={"n_points": 8, "n_windows": 2, "n_peaks": 1}).fit(ds)
    assert list(model.not_learnt_) == ["mn_oxidation"]
    assert "does not vary" in model.not_learnt_["mn_oxidation"]
    maps = model.predict(ds)
    assert np.isnan(maps.mn_oxidation.values).all()
    assert "mn_oxidation" in maps.attrs["not_learnt"]
    assert maps.mn_oxidation.attrs["not_learnt"] == model.not_learnt_["mn_oxidation"]
    used = maps.n_edges.values > 0
    assert np.all(maps.nan_reason.values[used] & 4096)
    # one more state in 20 % of the regions: learnt
    y2 = y.copy()
    fin = np.flatnonzero(np.isfinite(y2))
    y2[fin[: len(fin) // 5]] = 3.5
    ds["mn_oxidation"][:] = y2
    assert not model.fit(ds).not_learnt_


def test_xgboost_is_optional(toy):
    params = dict(edges=("O_K", "Ni_K"), targets=("li_content", "antisite"), n_folds=3,
                  dropout_copies=1, augment_copies=0, estimator="xgb",
                  params={"n_estimators": 20, "max_depth": 3},
                  settings={"n_points": 8, "n_windows": 2, "n_peaks": 1})
    try:
        import xgboost  # noqa: F401
    except ImportError:
        with pytest.raises(MMSpecError, match="xgboost"):
            MultimodalModel(**params).fit(toy)
        return
    model = MultimodalModel(**params).fit(toy)
    maps = model.predict(toy, edges=["Ni_K"])
    ok = np.isfinite(toy.Ni_K.values).all(axis=1)
    assert np.isfinite(maps.li_content.values[ok]).all()
    p = maps.antisite.values[ok]
    assert (p >= 0).all() and (p <= 1).all()
