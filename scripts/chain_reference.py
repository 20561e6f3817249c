"""Record the whole chain's maps on the digital twin with the default model.

``tests/test_chain_reference.py`` compares every later run against this file,
so a change to any step's arithmetic (calibration, spikes, backgrounds,
grids, features, trees, OOD, uncertainty) shows as a changed map. Rerun after
the default model or the twin is rebuilt (``scripts/rebuild.sh`` does):

    python scripts/chain_reference.py [--out tests/data/chain_reference_twin.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmspec_widgets.learn import load_model  # noqa: E402
from mmspec_widgets.pipeline import run_chain_fast  # noqa: E402
from mmspec_widgets.twin import load_digital_twin  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "chain_reference_twin.npz"


def chain_maps():
    """(model id, twin id, maps) of the README chain on the twin, in memory."""
    model = load_model()
    twin = load_digital_twin()
    eds, maps = run_chain_fast(twin.si, twin.zlp, model=model)
    return str(model.model_id), twin_checksum(twin), eds, maps


def twin_checksum(twin) -> str:
    """SHA-1 (12 hex digits) of the twin's SI and zero-loss SI values."""
    h = hashlib.sha1(np.ascontiguousarray(twin.si.values).tobytes())
    h.update(np.ascontiguousarray(twin.zlp.values).tobytes())
    return h.hexdigest()[:12]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    model_id, twin_id, eds, maps = chain_maps()
    arrays = {f"maps/{v}": maps[v].values for v in maps.data_vars}
    arrays.update({f"edges/{v}": eds[v].values for v in eds.data_vars})
    np.savez_compressed(args.out, model_id=np.array(model_id), twin_id=np.array(twin_id),
                        calibration=np.array(str(eds.attrs.get("calibration", ""))),
                        **arrays)
    print(f"{args.out}: {len(arrays)} arrays, model {model_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
