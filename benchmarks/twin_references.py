"""Which calibration references recover the digital twin best?

Runs the demo chain (calibrate -> spikes -> edges -> quantify -> default
model) on the shipped digital twin with several sets of calibration
references and prints the per-target scores (MAE and the fraction of pixels
within 2 stated std; accuracy for the defects), with and without the
composition read from the edge jumps. First, for each reference feature,
where the calibration's locator finds it on the twin's summed SI (on the
twin's true energy axis, known from its provenance) against where the
simulations behind the twin's pixels place it (their mean spectrum's main
feature, as the training set's alignment defines it): a difference here
moves every spectrum of that edge off the training set.

    python benchmarks/twin_references.py [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from mmspec_widgets.demo import run_chain, score_maps
from mmspec_widgets.learn import load_model
from mmspec_widgets.simulate import load_training_set
from mmspec_widgets.twin import load_digital_twin

CANDIDATES = {
    "O_K+Mn_L3": {"O_K": 530.0, "Mn_L3": 642.5},
    "O_K+Co_L3": {"O_K": 530.0, "Co_L3": 780.0},
    "O_K+Mn_L3+Co_L3": {"O_K": 530.0, "Mn_L3": 642.5, "Co_L3": 780.0},
    "O_K+Ni_L3": {"O_K": 530.0, "Ni_L3": 853.5},
}


FEATURE_EDGES = {"O_K": "O_K", "Mn_L3": "Mn_L23", "Co_L3": "Co_L23", "Ni_L3": "Ni_L23"}


def feature_offsets(twin, training_set) -> dict:
    """Per reference feature: located on the twin (true eV) minus simulated (eV)."""
    from mmspec_widgets.calibrate import align_zero_loss, locate_feature, mask_low_counts
    from mmspec_widgets.edges import FEATURES, get_edge
    from mmspec_widgets.simulate.dataset import _main_feature

    err = twin.provenance["energy_error"]
    # after zero-loss alignment the twin's axis is E_true / dispersion
    al = align_zero_loss(twin.si, twin.zlp)
    summed = al.where(mask_low_counts(al)).sum(tuple(al.dims[:-1])).compute()
    idx = twin.truth["sample_index"].values
    idx = idx[idx >= 0]
    out = {}
    for f, e in FEATURE_EDGES.items():
        ref = FEATURES[f]["energy"]
        found = err["dispersion"] * locate_feature(summed, f, expected=ref / err["dispersion"],
                                                   anchor=True)
        sim = _main_feature(e, get_edge(e).energy, np.nanmean(training_set[e].values[idx], 0))
        out[f] = {"twin_eV": round(found, 2), "simulated_eV": round(sim, 2),
                  "difference_eV": round(found - sim, 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    twin = load_digital_twin()
    model = load_model()
    comp = twin.provenance.get("nominal_composition")
    offsets = feature_offsets(twin, load_training_set())
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
        print(json.dumps({"model_id": model.model_id, "feature_offsets": offsets,
                          "results": out}, indent=1))
        return 0
    print("feature located on the twin (true eV) vs simulated main feature (eV):")
    for f, v in offsets.items():
        print(f"  {f:6s} {v['twin_eV']:8.2f} {v['simulated_eV']:8.2f}  {v['difference_eV']:+.2f}")
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
