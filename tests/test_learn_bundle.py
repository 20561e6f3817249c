"""Model bundles: skops round trip, trusted-type check, default location."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io as sio

from mmspec_widgets.errors import FileFormatError, MMSpecError
from mmspec_widgets.learn._synthetic import make_synthetic_training_set
from mmspec_widgets.learn.bundle import TRUSTED_TYPES, default_model_path, load_model, save_model
from mmspec_widgets.learn.fusion import MultimodalModel

SMALL = dict(params={"max_iter": 15}, edge_params={"max_iter": 15}, settings={"n_points": 8, "n_windows": 2, "n_peaks": 1},
             n_folds=3, dropout_copies=1, augment_copies=1)


class Intruder:
    """A type no bundle may contain."""

    def __init__(self):
        self.payload = "anything"


@pytest.fixture(scope="module")
def toy():
    return make_synthetic_training_set(n_structures=12, sites=3, seed=7,
                                       edges=("O_K", "Mn_L23", "Ni_L23", "Ni_K"))


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_round_trip_gives_identical_predictions(toy, tmp_path, fusion):
    model = MultimodalModel(fusion=fusion, **SMALL).fit(toy)
    before = model.predict(toy)
    path = save_model(model, tmp_path / "m.skops")
    assert path.exists() and path.stat().st_size < 5e6
    loaded = load_model(path)
    after = loaded.predict(toy)
    for name in before.data_vars:
        np.testing.assert_array_equal(before[name].values, after[name].values)
    sub = loaded.predict(toy, edges=["Ni_K"])
    np.testing.assert_array_equal(sub.li_content.values,
                                  model.predict(toy, edges=["Ni_K"]).li_content.values)
    assert loaded.model_id == model.model_id
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["edges"] == ["O_K", "Mn_L23", "Ni_L23", "Ni_K"]
    assert info["edge_grids_eV"]["O_K"] == [528.9, 562.1, 0.2]
    assert len(info["metadata"]["training_data_sha256"]) == 64
    assert {"numpy", "scikit-learn", "skops", "mmspec_widgets"} <= set(
        info["metadata"]["versions"])
    assert info["metadata"]["featurizer"]["settings"]["n_points"] == 8
    regression = {"li_content", "ni_fraction", "mn_fraction", "co_fraction", "ni_oxidation",
                  "mn_oxidation", "co_oxidation"}
    # every regression target has its std calibration, except those not learnt
    assert set(info["calibration"]) == regression - set(info["not_learnt"])
    assert set(info["not_learnt"]) == set(model.not_learnt_)
    for why in info["not_learnt"].values():
        assert "training set" in why


def test_untrusted_types_are_refused(tmp_path, toy):
    bad = tmp_path / "bad.skops"
    sio.dump({"model": Intruder()}, bad)
    with pytest.raises(FileFormatError, match="untrusted types"):
        load_model(bad)
    assert not any("Intruder" in t for t in TRUSTED_TYPES)
    plain = tmp_path / "plain.skops"
    sio.dump({"a": 1}, plain)
    with pytest.raises(FileFormatError, match="expected a MultimodalModel"):
        load_model(plain)
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(FileFormatError, match="not a skops"):
        load_model(junk)
    with pytest.raises(FileFormatError, match="not found"):
        load_model(tmp_path / "missing.skops")


def test_save_refuses_unfitted_models_and_other_suffixes(tmp_path, toy):
    with pytest.raises(MMSpecError, match="fitted"):
        save_model(MultimodalModel(), tmp_path / "m.skops")
    model = MultimodalModel(edges=("Ni_K",), **SMALL).fit(toy)
    with pytest.raises(MMSpecError, match=".skops"):
        save_model(model, tmp_path / "m.pkl")


def test_default_bundle_location_follows_data_dir(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("MMSPEC_DATA_DIR", str(tmp_path))
    assert default_model_path() == tmp_path / "models" / "default.skops"
    with pytest.raises(FileFormatError, match="mmspec train"):
        load_model()
    model = MultimodalModel(edges=("Ni_L23",), **SMALL).fit(toy)
    save_model(model)
    assert load_model().model_id == model.model_id
    import mmspec_widgets

    assert mmspec_widgets.load_model().model_id == model.model_id  # public lazy name
