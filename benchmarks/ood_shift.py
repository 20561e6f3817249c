"""What the OOD score flags: held-out NMC, foreign Mn oxides, shifted spectra.

Reads with a model bundle (default: the shipped model), from O K + Mn L2,3:

- the held-out test regions of the training set that hold Mn: the share
  flagged out of distribution and the 90th percentile of their OOD scores;
- the same spectra moved by +1, +2 and +3 eV on their energy axis: the share
  flagged and the median score;
- the simulated foreign oxides (Mn3O4, LaMnO3, LiMn2O4;
  ``simulate.foreign``): OOD score, Mn oxidation and its std against the
  formal value.

    python benchmarks/ood_shift.py [--model BUNDLE] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMAL = {"Mn3O4": 8 / 3, "LaMnO3": 3.0, "LiMn2O4": 3.5}
EDGES = ["O_K", "Mn_L23"]


def shifted(ds, shift_eV: float):
    """Copy of ``ds`` whose EDGES spectra are moved by ``shift_eV`` (eV)."""
    out = ds.copy(deep=True)
    for e in EDGES:
        x = out[f"energy_{e}"].values
        out[e].values[:] = [np.interp(x - shift_eV, x, y) for y in out[e].values]
    return out


def measure(model_path=None) -> dict:
    from mmspec_widgets.learn import load_model
    from mmspec_widgets.learn.train import split_dataset
    from mmspec_widgets.simulate import load_training_set
    from mmspec_widgets.simulate.foreign import foreign_oxide_spectra

    model = load_model(model_path)
    test = split_dataset(load_training_set(), "test")
    test = test.isel(sample=np.flatnonzero(np.isfinite(test["Mn_L23"].values).all(axis=1)))
    nmc = model.predict(test, edges=EDGES)
    res = {"model_id": model.model_id, "edges": EDGES,
           "held_out": {"regions": int(nmc.sizes["sample"]),
                        "flagged": int(nmc["ood"].values.sum()),
                        "score_q90": round(float(np.quantile(nmc["ood_score"].values, 0.9)), 3),
                        "score_max": round(float(nmc["ood_score"].values.max()), 3)},
           "shifted": {}}
    for s in (1.0, 2.0, 3.0):
        off = model.predict(shifted(test, s), edges=EDGES)
        res["shifted"][f"+{s:g} eV"] = {
            "flagged_share": round(float(off["ood"].values.mean()), 3),
            "median_score": round(float(np.median(off["ood_score"].values)), 3)}
    ox = foreign_oxide_spectra()
    out = model.predict(ox, edges=EDGES)
    res["foreign"] = {}
    for i, name in enumerate(ox["compound"].values.tolist()):
        v, sd = float(out["mn_oxidation"].values[i]), float(out["mn_oxidation_std"].values[i])
        res["foreign"][name] = {"ood_score": round(float(out["ood_score"].values[i]), 3),
                                "mn_oxidation": round(v, 3), "std": round(sd, 3),
                                "formal": round(FORMAL[name], 3),
                                "off_in_std": round(abs(v - FORMAL[name]) / sd, 2)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    ap.add_argument("--json", action="store_true", help="one JSON object on standard output")
    args = ap.parse_args(argv)
    res = measure(args.model)
    if args.json:
        print(json.dumps(res))
        return 0
    h = res["held_out"]
    print(f"model {res['model_id']}, edges {' + '.join(EDGES)}")
    print(f"held-out NMC regions: {h['flagged']} of {h['regions']} flagged, "
          f"OOD score q90 {h['score_q90']}, max {h['score_max']}")
    for k, v in res["shifted"].items():
        print(f"  shifted {k}: {100 * v['flagged_share']:.0f} % flagged, "
              f"median score {v['median_score']}")
    for name, v in res["foreign"].items():
        print(f"{name}: OOD score {v['ood_score']}, Mn oxidation {v['mn_oxidation']} "
              f"+- {v['std']} (formal {v['formal']}, {v['off_in_std']} std off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
