"""Simulation throughput: spectra per core-hour for each engine and edge.

Reads the wall time every stored spectrum recorded in a campaign store
(default ``data/sim``); with ``--fresh`` it also times a small fresh run
(one O K FEFF site at the default settings and one Ni L2,3 multiplet case)
in this process. Prints JSON.

    python benchmarks/bench_simulate.py [--store data/sim] [--fresh]

Each worker is one process on one core, so spectra per core-hour is
3600 / (mean wall time per spectrum). On a shared machine the numbers are
lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmspec_widgets.simulate.campaign import CampaignStore  # noqa: E402


def from_store(root: str) -> dict:
    store = CampaignStore(root)
    rows: dict[tuple[str, str], list[float]] = {}
    for key in store.keys():
        meta = store.get(key)["meta"]
        engine = "feff" if key.startswith("f") else "edrixs"
        rows.setdefault((engine, meta.get("edge", "?")), []).append(float(meta.get("wall_s", np.nan)))
    out = {}
    for (engine, edge), w in sorted(rows.items()):
        w = np.asarray(w)
        out[f"{engine}:{edge}"] = {
            "n": int(w.size),
            "mean_wall_s": round(float(np.nanmean(w)), 2),
            "median_wall_s": round(float(np.nanmedian(w)), 2),
            "spectra_per_core_hour": round(3600.0 / float(np.nanmean(w)), 1),
        }
    fails = store.failures()
    return {"store": str(root), "per_engine_edge": out, "failures": len(fails)}


def fresh() -> dict:
    from mmspec_widgets.simulate.dataset import REFERENCE_SPEC
    from mmspec_widgets.simulate.feff import FeffParams, feff_input, run_feff
    from mmspec_widgets.simulate.multiplets import d_count, l23_cached

    nmc = REFERENCE_SPEC.build()
    o = nmc.symbols.index("O")
    t0 = time.perf_counter()
    run_feff(feff_input(nmc, o, FeffParams()))
    t_feff = time.perf_counter() - t0
    l23_cached.cache_clear()
    t0 = time.perf_counter()
    l23_cached("Ni", d_count("Ni", 3), 1.9, 0.0, 0.0)
    t_edrixs = time.perf_counter() - t0
    return {"feff:O_K (FMS 5, RPA)": {"wall_s": round(t_feff, 2),
                                      "spectra_per_core_hour": round(3600 / t_feff, 1)},
            "edrixs:Ni_L23 (Ni3+ Oh)": {"wall_s": round(t_edrixs, 2),
                                        "spectra_per_core_hour": round(3600 / t_edrixs, 1)}}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=str(Path(__file__).resolve().parents[1] / "data" / "sim"))
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args(argv)
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_count": os.cpu_count(),
           "load_average": os.getloadavg()}
    out["store"] = from_store(args.store)
    if args.fresh:
        out["fresh"] = fresh()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
