"""Which fusion (and which training noise) should the default model use?

Trains each variant on the training split of the committed simulated set
with the settings of ``mmspec train`` (same seed, featurizers, folds,
dropout and augmentation copies; ``--trials`` Optuna trials), changing only
what the variant names:

* ``early``: the default (early fusion, shape and noise-level featurizers,
  training noise drawn per spectrum between 0.1 % and 10 % of its maximum);
* ``hybrid``: hybrid fusion, otherwise the default;
* ``early-clean``: the former default, shape featurizers only and 1 % training
  noise.

Then reports for each:

* held-out: per target, the best single edge, the best fused set and the
  paired-bootstrap verdict (``mmspec evaluate`` details);
* the digital twin through the demo chain (MAE, or ROC AUC for defects, and
  the fraction of pixels within 2 stated std);
* prediction speed: pixels per second of ``predict_arrays`` on the twin's
  extracted edges tiled to ``--pixels`` rows (one thread).

    python benchmarks/fusion_choice.py [--trials N] [--variants early hybrid early-clean] [--json]

Takes 3 - 5 minutes per variant on two cores.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from mmspec_widgets.demo import REFERENCES, run_chain, score_maps
from mmspec_widgets.learn.evaluate import evaluate_model
from mmspec_widgets.learn.fusion import dataset_to_matrix
from mmspec_widgets.learn.train import load_training_data, train_model
from mmspec_widgets.twin import load_digital_twin

#: what each variant changes from the ``mmspec train`` defaults
VARIANTS = {
    "early": {"fusion": "early"},
    "hybrid": {"fusion": "hybrid"},
    "early-clean": {"fusion": "early", "kinds": ("cdf", "poly", "peaks"),
                    "augment": {"shift": 0.5, "broadening": 0.5, "noise": 0.01}},
}


def _speed(model, edges_ds, n_pixels: int) -> float:
    X, _ = dataset_to_matrix(edges_ds, model.edges_, use=[e for e in model.edges_
                                                          if e in edges_ds])
    X = np.tile(X, (int(np.ceil(n_pixels / X.shape[0])), 1))[:n_pixels]
    model.predict_arrays(X[:256])  # warm-up (compiled kernels)
    t = time.perf_counter()
    model.predict_arrays(X)
    return n_pixels / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--trials", type=int, default=20,
                    help="Optuna trials per variant (default 20, as mmspec train)")
    ap.add_argument("--pixels", type=int, default=20000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    ds = load_training_data(None)
    twin = load_digital_twin()
    comp = twin.provenance.get("nominal_composition")
    out = {}
    for v in args.variants:
        t0 = time.perf_counter()
        # the settings of ``mmspec train`` (its defaults), except what the variant names
        m = train_model(ds, n_trials=args.trials, random_state=0, n_folds=4,
                        dropout_copies=3, augment_copies=3, **VARIANTS[v])
        fit_s = time.perf_counter() - t0
        res = evaluate_model(m, ds, details=True)
        held = {t: {k: (round(x, 3) if isinstance(x, float) else x)
                    for k, x in (r or {}).items() if k in ("single", "fused", "diff", "verdict")}
                for t, r in res["details"]["fused_vs_single"].items() if r}
        for t in held:
            by = res["targets"][t]["by_edges"]
            held[t]["single_score"] = round(by[held[t]["single"]], 3)
            held[t]["fused_score"] = round(by[held[t]["fused"]], 3)
        edges, maps = run_chain(twin.si, twin.zlp, model=m, references=REFERENCES,
                                composition=comp)
        s = score_maps(maps, twin.truth)
        twin_scores = {t: round(s[t]["roc_auc"] if "roc_auc" in s[t] else s[t]["value"], 3)
                       for t in s}
        twin_cover = {t: round(s[t]["within_2std"], 3) for t in s if "within_2std" in s[t]}
        out[v] = {"model_id": m.model_id, "fit_s": round(fit_s, 1), "held_out": held,
                  "twin": twin_scores, "twin_within_2std": twin_cover,
                  "pixels_per_s": round(_speed(m, edges, args.pixels))}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for v, r in out.items():
        print(f"== {v} ({r['model_id']}, fit {r['fit_s']} s, {r['pixels_per_s']} pixels/s)")
        for t, h in r["held_out"].items():
            print(f"  {t:13s} single {h['single']:7s} {h['single_score']:6.3f}  fused "
                  f"{h['fused_score']:6.3f} {h['verdict']:4s}  twin {r['twin'].get(t, '-')}"
                  f"  within 2 std {r['twin_within_2std'].get(t, '-')}")
        for t in ("mn_oxidation", "co_oxidation"):
            print(f"  {t:13s} twin {r['twin'].get(t, '-')}  within 2 std "
                  f"{r['twin_within_2std'].get(t, '-')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
