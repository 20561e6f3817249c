"""Where one spectrum's time goes in the chain, on one core.

Times each compiled per-row kernel of the extraction on rows of the
synthetic SI of ``mmspec bench`` (one thread, best of three):

- ``shift``: the zero-loss shift and resampling (``kernels.k_shift_rows``);
- ``despike``: spike removal (``kernels.k_despike_rows``: running median of 5
  channels and three exact medians per spectrum);
- ``edges``: every edge's power law, grid and post-edge level
  (``kernels.k_edges_rows``, the arithmetic ``extract_edges`` shares);
- ``chain_rows``: all of it fused (``kernels.k_chain_rows``);
- ``finite_check``: the NaN/inf check of a row (``kernels.k_all_finite``);

then, with ``--predict``, the whole chain once (``bench.bench_chain``) for the
prediction's stages in microseconds of one core per spectrum. A target of N
spectra/s on C cores leaves ``C / N`` seconds of one core per spectrum
(40 us for 50 000 spectra/s on 2 cores).

    python benchmarks/chain_floor.py [--rows 8192] [--predict] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _best(fn, repeat: int = 3) -> float:
    fn()  # compiled and warm
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def row_kernels(n_rows: int = 8192) -> dict:
    """Microseconds of one core per spectrum of each row kernel."""
    from mmspec_widgets import kernels as K
    from mmspec_widgets.bench import _synthetic
    from mmspec_widgets.chain.fit import fit_plan
    from mmspec_widgets.chain.rows import background_columns, edge_tables

    nx = 256
    ny = max(1, -(-int(n_rows) // nx))
    si, zlp = _synthetic((ny, nx, 2048), 0)
    plan, pos = fit_plan(si, zlp, sample_pixels=None, mask_threshold=False,
                         background_error=False)
    y = np.ascontiguousarray(si.values.reshape(-1, si.shape[-1]))
    m = y.shape[0]
    sh = (pos.reshape(-1) - plan.zlp_median_eV) / plan.channel_step
    t = edge_tables(plan, y.dtype)
    cols = background_columns(plan)[0]
    out = np.empty((m, t["n_grid"]), y.dtype)
    totals, replaced = np.empty(m), np.empty(m, np.int64)
    jumps = np.empty((m, len(plan.edges)))
    keep, kept = np.full(m, -1, np.int64), np.empty((0, cols.size), y.dtype)
    work = np.empty_like(y)
    tabs = (t["j1"], t["j3"], t["j4"], t["xw"], t["bk0"], t["bk1"], t["goff"], t["gsize"],
            t["gtail"], t["gi0"], t["gw"], t["gomw"], t["loge"], t["grad"])
    runs = {
        "shift": lambda: K.k_shift_rows(y, sh, work),
        "despike": lambda: K.k_despike_rows(y, plan.spike_threshold, plan.spike_width, work,
                                            replaced),
        "edges": lambda: K.k_edges_rows(y, *tabs, True, out, jumps),
        "chain_rows": lambda: K.k_chain_rows(y, sh, True, plan.spike_threshold,
                                             plan.spike_width, *tabs, out, totals, replaced,
                                             jumps, keep, cols, kept),
        "finite_check": lambda: K.k_all_finite(y, 0, m),
    }
    res = {k: 1e6 * _best(f) / m for k, f in runs.items()}
    res["rows"] = m
    res["grid_points"] = int(t["n_grid"])
    res["background_channels"] = int((t["bk1"] - t["bk0"]).sum())
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8192, help="spectra timed (default 8192)")
    p.add_argument("--predict", action="store_true",
                   help="also run the whole chain once for the prediction's stages")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    res = {"us_per_spectrum_one_core": row_kernels(args.rows)}
    if args.predict:
        from mmspec_widgets.bench import bench_chain

        ch = bench_chain()
        res["predict_us_per_spectrum"] = ch.get("predict_us_per_spectrum")
        res["stages_s"] = ch["stages_s"]
    if args.json:
        print(json.dumps(res))
        return 0
    r = res["us_per_spectrum_one_core"]
    print(f"{r['rows']} spectra of 2048 channels, one core, us per spectrum: "
          + ", ".join(f"{k} {r[k]:.2f}" for k in ("shift", "despike", "edges", "chain_rows",
                                                  "finite_check")))
    if "predict_us_per_spectrum" in res and res["predict_us_per_spectrum"]:
        pr = res["predict_us_per_spectrum"]
        print("prediction, us of one core per spectrum: "
              + ", ".join(f"{k} {v:.2f}" for k, v in pr.items())
              + f" (sum {sum(pr.values()):.1f})")
        st = res["stages_s"]
        print("chain stages, s: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
