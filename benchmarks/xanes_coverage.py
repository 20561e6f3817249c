"""Measure the rule for K edges that a XANES scan covers only in part.

Held-out simulated spectra (test split of ``data/training_set.nc``) of each K
edge of the default model are cut at scan ends every 2.5 eV from the minimum
(:func:`mmspec_widgets.learn.coverage.minimum_span`) to the grid's end,
completed by the rule, and predicted (one edge alone); the root-mean-square
change against their full-grid prediction, per target, is the std added in
quadrature (see :mod:`mmspec_widgets.learn.coverage`).  Writes
``data/models/xanes_coverage.json`` and prints the table.

Two checks behind the rule's choices are printed and stored with it:
``fill_comparison`` (completion beyond the scan's end by the mean training
spectrum, by the last value held, or by the edge-step level 1: share of cut
held-out spectra newly flagged out of distribution, and the RMS change of
the element's oxidation state) and ``start_check`` (largest change of any
prediction when the scan starts at the grid's start rather than at the
onset: the grid below the onset is flat pre-edge).

    python benchmarks/xanes_coverage.py            # measure and write
    python benchmarks/xanes_coverage.py --dry-run  # measure and print only
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from mmspec_widgets.edges import edge_grid, get_edge
from mmspec_widgets.learn import load_model
from mmspec_widgets.learn.coverage import complete_rows, measure_rule, minimum_span, rule_path
from mmspec_widgets.learn.fusion import DROP_OOD_EDGES
from mmspec_widgets.simulate import load_training_set

#: scan end for the checks, eV past the white line (the Ni K case: 8370 eV)
CHECK_END = 20.0


def _checks(model, ts, rule) -> tuple[dict, dict]:
    split = np.asarray(ts["split"].values).astype(str)
    starts = np.cumsum([0, *[edge_grid(e).size for e in model.edges_]])
    fills, start_check = {}, {}
    for edge in rule["table"]:
        g = edge_grid(edge)
        k = model.edges_.index(edge)
        v = np.asarray(ts[edge].values, float)[split == "test"]
        v = v[np.isfinite(v).all(axis=1)]

        def predict(spectra, k=k):
            X = np.full((spectra.shape[0], starts[-1]), np.nan)
            X[:, starts[k]:starts[k + 1]] = spectra
            return model.predict_arrays(X, drop_ood_edges=DROP_OOD_EDGES)

        full = predict(v)
        ox = f"{get_edge(edge).element.lower()}_oxidation"
        end = get_edge(edge).reference + CHECK_END
        onset = g[np.searchsorted(g, minimum_span(edge)[0] + 1e-6, side="right") - 1]
        keep = (g >= onset - 1e-6) & (g <= end + 1e-6)
        last = int(np.flatnonzero(keep)[-1])
        mean = np.asarray(rule["fill"][edge])
        fills[edge] = {"end_eV": float(end)}
        for name in ("mean", "hold", "one"):
            cut = np.where(keep, v, np.nan)
            if name == "mean":
                done = complete_rows(cut, edge, 0.2, mean)
            else:
                done = complete_rows(cut, edge, 0.2, np.ones(g.size))
                if name == "hold":
                    done[:, last + 1:] = done[:, [last]]
            p = predict(done)
            d = p[ox] - full[ox]
            fills[edge][name] = {
                "new_ood_fraction": round(float(np.mean(p["ood"] & ~full["ood"])), 3),
                f"rms_change_{ox}": round(float(np.sqrt(np.nanmean(d * d))), 4)}
        a = predict(complete_rows(np.where(keep, v, np.nan), edge, 0.2, mean))
        b = predict(complete_rows(np.where(g <= end + 1e-6, v, np.nan), edge, 0.2, mean))
        start_check[edge] = {
            "starts_eV": [float(g[0]), float(onset)], "end_eV": float(end),
            "max_abs_change": {t: round(float(np.nanmax(np.abs(a[t] - b[t]))), 6)
                               for t in model.targets_ if np.isfinite(a[t]).any()}}
    return fills, start_check


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the rule")
    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, ts = load_model(), load_training_set()
        rule = measure_rule(model, ts)
        rule["fill_comparison"], rule["start_check"] = _checks(model, ts, rule)
    for edge, t in rule["table"].items():
        print(f"{edge}: {t['n_spectra']} held-out spectra, scan from {t['scan_start_eV']:g} eV")
        names = list(t["extra_std"])
        print("  end eV  missing  " + "  ".join(f"{n:>13s}" for n in names) + "  new OOD")
        for i, m in enumerate(t["missing_tail"]):
            print(f"  {t['end_eV'][i]:7.1f}  {m:7.3f}  "
                  + "  ".join(f"{t['extra_std'][n][i]:13.4f}" for n in names)
                  + f"  {t['new_ood_fraction'][i]:7.3f}")
        print("  checks:", json.dumps(rule["checks"][edge], indent=None))
        print("  completion beyond the end:", json.dumps(rule["fill_comparison"][edge]))
        print("  scan start at the grid's start vs the onset:",
              json.dumps(rule["start_check"][edge]))
    if not args.dry_run:
        path = rule_path()
        path.write_text(json.dumps(rule, indent=1) + "\n")
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
