"""Out-of-core mapping: a spectrum image far larger than the memory budget.

Builds a lazy (dask) SI by tiling the digital twin with fresh noise (default
1024 x 1024 pixels x 2048 channels float32 = 8 GiB, plus its 8 GiB zero-loss
SI), generated block by block on demand, and maps it with
``mmspec_widgets.pipeline.map_spectrum_image`` into a Zarr store. Prints JSON:
wall time (plan and blocks), spectra per second, peak RSS of this process
(``ru_maxrss``), the store's size on disk, and the machine's load.

    python benchmarks/out_of_core.py [--size 1024x1024] [--block 64x64]
        [--out /tmp/mmspec-ooc.zarr] [--model PATH] [--scheduler local|ADDRESS]
        [--workers 2] [--resume]

``--scheduler local`` runs the blocks on a dask.distributed LocalCluster
(``--workers`` processes, one thread each); an address connects to a running
scheduler. Without ``--resume`` an existing store is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmspec_widgets.pipeline import map_spectrum_image, synthetic_si  # noqa: E402


def _pair(text: str) -> tuple[int, int]:
    a, b = (int(v) for v in text.lower().split("x"))
    return a, b


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1024x1024", help="pixels NYxNX (default 1024x1024)")
    p.add_argument("--block", default="64x64", help="pixel block NYxNX (default 64x64)")
    p.add_argument("--out", default="/tmp/mmspec-ooc.zarr", help="Zarr store to write")
    p.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    p.add_argument("--scheduler", default=None,
                   help="'local' for a LocalCluster, or a scheduler address")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--resume", action="store_true", help="resume an existing store")
    p.add_argument("--sample-pixels", type=int, default=65536,
                   help="pixels used for the calibration and vacuum threshold")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    from mmspec_widgets.learn import load_model

    size, block = _pair(args.size), _pair(args.block)
    out = Path(args.out)
    if out.exists() and not args.resume:
        shutil.rmtree(out)
    load0 = os.getloadavg()
    model = load_model(args.model)
    si, zlp = synthetic_si(size, chunks=block)
    client = cluster = None
    if args.scheduler:
        from distributed import Client, LocalCluster

        if args.scheduler == "local":
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, dashboard_address=":0")
            client = Client(cluster)
        else:
            client = Client(args.scheduler)
    timings: dict = {}
    t0 = time.perf_counter()
    try:
        maps = map_spectrum_image(si, zlp, model=model, out=out, block=block, client=client,
                                  progress=True, sample_pixels=args.sample_pixels,
                                  timings=timings)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    wall = time.perf_counter() - t0
    n = size[0] * size[1]
    done_px = timings["blocks_done"] * block[0] * block[1]
    result = {
        "size": [size[0], size[1], int(si.sizes["energy"])],
        "si_gib": si.nbytes / 2**30,
        "zlp_gib": zlp.nbytes / 2**30,
        "block": list(block),
        "wall_s": round(wall, 1),
        "plan_s": round(timings["plan"], 1),
        "blocks_s": round(timings["blocks"], 1),
        "blocks_done": timings["blocks_done"],
        "blocks_skipped": timings["blocks_skipped"],
        "spectra_per_s": round(n / wall, 1),
        "block_spectra_per_s": round(done_px / timings["blocks"], 1) if timings["blocks"] else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "store_mb": round(_du(out) / 2**20, 1),
        "usable_pixels": int(maps["mask"].sum().compute()),
        "model_id": str(getattr(model, "model_id", "")),
        "scheduler": args.scheduler or "this process",
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load0],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
