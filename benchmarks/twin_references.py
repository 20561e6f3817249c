"""Which calibration references recover the digital twin best?

Runs the demo chain (calibrate -> spikes -> edges -> quantify -> default
model) on the shipped digital twin with several sets of calibration
references and prints the per-target scores (MAE and the fraction of pixels
within 2 stated std; accuracy for the defects), with and without the
composition read from the edge jumps.

    python benchmarks/twin_references.py [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from mmspec_widgets.demo import run_chain, score_maps
from mmspec_widgets.learn import load_model
from mmspec_widgets.twin import load_digital_twin

CANDIDATES = {
    "O_K+Mn_L3": {"O_K": 530.0, "Mn_L3": 642.5},
    "O_K+Co_L3": {"O_K": 530.0, "Co_L3": 780.0},
    "O_K+Mn_L3+Co_L3": {"O_K": 530.0, "Mn_L3": 642.5, "Co_L3": 780.0},
    "O_K+Ni_L3": {"O_K": 530.0, "Ni_L3": 853.5},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    twin = load_digital_twin()
    model = load_model()
    comp = twin.provenance.get("nominal_composition")
    out = {}
    for name, refs in CANDIDATES.items():
        for label, c in (("shapes", None), ("shapes+amounts", comp)):
            if label == "shapes+amounts" and c is None:
                continue
            _, maps = run_chain(twin.si, twin.zlp, model=model, references=refs, composition=c)
            s = score_maps(maps, twin.truth)
            out[f"{name} ({label})"] = {
                k: {"value": round(v["value"], 3),
                    **({"within_2std": round(v["within_2std"], 2)} if "within_2std" in v else {})}
                for k, v in s.items()}
    if args.json:
        print(json.dumps({"model_id": model.model_id, "results": out}, indent=1))
        return 0
    targets = list(next(iter(out.values())))
    print(f"model {model.model_id}; MAE (within 2 std) or accuracy")
    print(f"{'references':32s}" + "".join(f"{t[:12]:>14s}" for t in targets))
    for name, s in out.items():
        cells = []
        for t in targets:
            v = s.get(t, {})
            w = v.get("within_2std", np.nan)
            cells.append(f"{v.get('value', np.nan):7.3f}" + (f" ({w:.2f})" if np.isfinite(w) else "       "))
        print(f"{name:32s}" + "".join(f"{c:>14s}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
