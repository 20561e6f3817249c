"""The whole chain on the digital twin gives the maps recorded by
``scripts/chain_reference.py``: any change to a step's arithmetic shows here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "chain_reference_twin.npz"


def _script():
    spec = importlib.util.spec_from_file_location("chain_reference",
                                                  ROOT / "scripts" / "chain_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def now():
    return _script().chain_maps()


def test_reference_is_of_the_shipped_model_and_twin(now):
    ref = np.load(REF)
    model_id, twin_id, _eds, _maps = now
    assert str(ref["model_id"]) == model_id, \
        "the default model changed: rerun python scripts/chain_reference.py"
    assert str(ref["twin_id"]) == twin_id, \
        "the digital twin changed: rerun python scripts/chain_reference.py"


def test_chain_maps_equal_the_reference(now):
    ref = np.load(REF)
    _m, _t, eds, maps = now
    names = {k.split("/", 1)[1] for k in ref.files if k.startswith("maps/")}
    assert names == set(maps.data_vars)
    assert str(ref["calibration"]) == str(eds.attrs.get("calibration", ""))
    checked = 0
    for kind, ds in (("maps", maps), ("edges", eds)):
        for v in ds.data_vars:
            a, b = ds[v].values, ref[f"{kind}/{v}"]
            assert a.shape == b.shape, v
            if a.dtype.kind == "f":
                # equal up to the last bits a freshly compiled or cached kernel may
                # differ by; the jumps' counting stds are float32 sums whose order
                # the compiler picks per CPU (1.5e-7 of the value between two
                # machines of this project's kind)
                rtol = 1e-6 if v.startswith("jump_") and v.endswith("_std") else 1e-9
                np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True,
                                           err_msg=f"{kind}/{v}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{kind}/{v}")
            checked += 1
    assert checked == len([k for k in ref.files if "/" in k]) >= 39
