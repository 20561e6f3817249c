"""``mmspec bench``: how fast the chain runs on this machine.

One synthetic spectrum image (the digital twin tiled to the requested size,
with fresh noise; default 256 x 256 pixels x 2048 channels, float32) is used
for two measurements:

1. background removal, HyperSpy/exspy
   ``remove_background(signal_range=window, background_type="Power law",
   fast=True)`` against :func:`mmspec_widgets.background.subtract_background`
   with the same window: spectra per second of each, the ratio, and their
   agreement over the edge region above the window;
2. the whole chain (zero-loss alignment and calibration, spike removal,
   per-edge backgrounds and grids, features and prediction with the default
   model) through :func:`mmspec_widgets.pipeline.run_chain_fast`, in a fresh
   Python process so that its peak memory (``ru_maxrss``) is its own: spectra
   per second, per-stage times and peak RSS.

It also measures the bandwidth of a plain numpy copy, to put the chain's
speed next to the memory-bandwidth bound of the bytes it must move.

``--json`` prints one object whose first keys are
``hyperspy_bg_spectra_per_s``, ``ours_bg_spectra_per_s``, ``bg_speedup``,
``pipeline_spectra_per_s`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import MMSpecError

__all__ = [
    "parse_size",
    "bench_background",
    "bench_chain",
    "copy_bandwidth",
    "run_bench",
    "register",
]

DEFAULT_SIZE = (256, 256, 2048)
DEFAULT_WINDOW = (600.0, 632.0)


def parse_size(text: str) -> tuple[int, int, int]:
    """``"256x256x2048"`` -> ``(256, 256, 2048)`` (pixels y, x and channels).

    Raises
    ------
    MMSpecError
        If the text is not three positive integers joined by ``x``.
    """
    try:
        parts = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise MMSpecError(f"--size {text!r}: expected NYxNXxCHANNELS, e.g. 256x256x2048")
    return parts  # type: ignore[return-value]


def _twin_for(size: tuple[int, int, int]):
    from .twin import load_digital_twin

    twin = load_digital_twin()
    n_e = twin.si.sizes["energy"]
    if size[2] != n_e:
        raise MMSpecError(f"--size ...x{size[2]}: the synthetic SI is tiled from the digital "
                          f"twin, which has {n_e} channels; use ...x{n_e}")
    return twin


def _synthetic(size: tuple[int, int, int], seed: int = 0):
    from .chain.synthetic import synthetic_si

    return synthetic_si(size[:2], twin=_twin_for(size), seed=seed)


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_background(si, window=DEFAULT_WINDOW, *, repeat: int = 3) -> dict:
    """HyperSpy's fast power-law background removal against ours, same data.

    Parameters
    ----------
    si : xarray.DataArray
        ``(y, x, energy)`` counts, energy in eV (uniform axis).
    window : (float, float)
        Fit window (eV).
    repeat : int
        Runs of each, interleaved (the medians are reported).

    Returns
    -------
    dict
        ``hyperspy_bg_spectra_per_s``, ``ours_bg_spectra_per_s``, ``bg_speedup``
        (from the median times), every run's seconds, and ``bg_accuracy``:
        over the edge region (``window[1]`` to ``window[1] + 60`` eV) of the
        usable pixels, the largest ``|ours - hyperspy|`` as a fraction of
        that pixel's largest edge signal (worst pixel and median), and whether
        it is within 1 %.
    """
    import gc
    import logging
    import warnings

    import exspy
    import hyperspy

    from .background import mask_low_counts, subtract_background

    e = np.asarray(si["energy"].values, float)
    data = np.asarray(si.values)
    s = exspy.signals.EELSSpectrum(data)
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units, ax.name = float(e[0]), float(e[1] - e[0]), "eV", "Energy loss"
    n = int(np.prod(data.shape[:-1]))
    res: dict = {}
    t_hs, t_ours = [], []
    logging.getLogger("hyperspy").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(1, repeat)):  # interleaved: both see the same machine load
            gc.collect()  # the other's garbage is collected outside the timed calls
            t0 = time.perf_counter()
            hs = s.remove_background(signal_range=tuple(window), background_type="Power law",
                                     fast=True, show_progressbar=False)
            t_hs.append(time.perf_counter() - t0)
            del hs
            gc.collect()
            t0 = time.perf_counter()
            ours = subtract_background(si, window)
            t_ours.append(time.perf_counter() - t0)
            del ours
        hs = s.remove_background(signal_range=tuple(window), background_type="Power law",
                                 fast=True, show_progressbar=False).data
        ours = subtract_background(si, window).values
    hs_med, ours_med = float(np.median(t_hs)), float(np.median(t_ours))
    lo, hi = window[1], min(window[1] + 60.0, e[-1])
    sel = (e > lo) & (e <= hi)
    usable = mask_low_counts(si).values
    diff = np.abs(ours[..., sel] - hs[..., sel]).max(-1)[usable]
    signal = np.abs(hs[..., sel]).max(-1)[usable]
    rel = diff / signal
    res.update({
        "hyperspy_bg_spectra_per_s": n / hs_med,
        "ours_bg_spectra_per_s": n / ours_med,
        "bg_speedup": hs_med / ours_med,
        "bg_seconds": {"hyperspy": t_hs, "ours": t_ours},
        "bg_accuracy": {
            "edge_region_eV": [float(lo), float(hi)],
            "max_abs_diff_counts": float(diff.max()),
            "worst_pixel_fraction_of_edge_signal": float(rel.max()),
            "median_fraction_of_edge_signal": float(np.median(rel)),
            "within_1_percent": bool(rel.max() <= 0.01),
            "pixels": int(usable.sum()),
        },
        "hyperspy_version": hyperspy.__version__,
        "exspy_version": exspy.__version__,
    })
    return res


def copy_bandwidth(nbytes: int = 256 * 2**20, repeat: int = 5) -> dict:
    """Memory bandwidth of a plain ``numpy.copyto`` (one thread), GB/s.

    Counts the bytes read plus the bytes written; the best of ``repeat``
    copies (the least disturbed by other processes) and the median.
    """
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = _timed(lambda: np.copyto(dst, src), repeat)
    moved = 2 * src.nbytes / 1e9
    return {"copy_bandwidth_GBps": moved / min(times),
            "copy_bandwidth_median_GBps": moved / float(np.median(times)),
            "copy_bytes": int(src.nbytes)}


def bench_chain(size=DEFAULT_SIZE, *, model=None, model_path=None, engine: str = "auto",
                repeat: int = 1, seed: int = 0) -> dict:
    """The whole chain on the synthetic SI, in this process.

    A small warm-up run (the digital twin itself) loads the compiled kernels
    and the model first; then the chain runs ``repeat`` times on the SI.

    Parameters
    ----------
    size : (int, int, int)
        Pixels and channels of the synthetic SI.
    model : optional
        Model object with ``predict``; default: loaded from ``model_path``.
    model_path : path, optional
        Model bundle; default: the shipped model.
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel.
    repeat : int
        Runs of the chain (the median run is reported).
    seed : int
        Noise seed of the synthetic SI.

    Returns
    -------
    dict
        ``pipeline_spectra_per_s`` (median run), per-stage seconds and
        spectra per second, the rate without prediction, ``peak_rss_mb``
        (this process's ``ru_maxrss``), input size and model id.
    """
    import resource

    from .chain.inmemory import run_chain_fast
    from .learn import load_model
    from .twin import load_digital_twin

    model = load_model(model_path) if model is None else model
    twin = load_digital_twin()
    run_chain_fast(twin.si, twin.zlp, model=model, engine=engine)  # warm-up
    si, zlp = _synthetic(tuple(size), seed)
    n = int(si.shape[0] * si.shape[1])
    runs = []
    for _ in range(max(1, repeat)):
        t = {}
        t0 = time.perf_counter()
        eds, maps = run_chain_fast(si, zlp, model=model, engine=engine, timings=t)
        t["total"] = time.perf_counter() - t0
        runs.append(t)
        del eds, maps
    med = runs[int(np.argsort([r["total"] for r in runs])[len(runs) // 2])]
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = {
        "pipeline_spectra_per_s": n / med["total"],
        "peak_rss_mb": rss_kb / 1024.0,
        "pipeline_without_predict_spectra_per_s": n / (med["plan"] + med["extract"]),
        "stages_s": {k: med[k] for k in ("plan", "extract", "predict", "total")},
        "stage_spectra_per_s": {k: n / med[k] for k in ("plan", "extract", "predict")},
        "chain_runs_s": [r["total"] for r in runs],
        "input_mb": (si.nbytes + zlp.nbytes) / 2**20,
        "model_id": str(getattr(model, "model_id", "")),
        "engine": engine,
    }
    if "predict_stages" in med:  # the model's own stages, seconds summed over threads
        ps = med["predict_stages"]
        parts = {k: ps.get(k, 0.0) for k in ("input", "features", "ood", "trees")}
        parts["other"] = max(ps.get("blocks", 0.0) - sum(parts.values()), 0.0)
        res["predict_stages_thread_s"] = parts
        res["predict_us_per_spectrum"] = {k: 1e6 * v / n for k, v in parts.items()}
    return res


def _machine() -> dict:
    from .kernels import n_threads

    info = {"cpus": os.cpu_count(), "threads_used": n_threads(),
            "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:  # pragma: no cover
        info["numba"] = None
    try:
        import numexpr  # noqa: F401

        info["numexpr"] = True
    except ImportError:
        info["numexpr"] = False
    return info


def _chain_in_subprocess(size, model_path, engine, repeat, seed) -> dict:
    """Run :func:`bench_chain` in a fresh interpreter; return its result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "chain.json"
        args = {"size": list(size), "model_path": None if model_path is None else str(model_path),
                "engine": engine, "repeat": repeat, "seed": seed, "out": str(out)}
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
        proc = subprocess.run([sys.executable, "-m", "mmspec_widgets.bench", "--worker",
                               json.dumps(args)], env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines()]
            tail = [ln for ln in lines if ln.strip("^~ ")][-3:]
            raise MMSpecError("the chain benchmark failed in its subprocess: "
                              + " | ".join(tail))
        return json.loads(out.read_text())


def run_bench(size=DEFAULT_SIZE, *, window=DEFAULT_WINDOW, repeat: int = 3,
              chain_repeat: int = 1, model_path=None, engine: str = "auto",
              seed: int = 0) -> dict:
    """Both measurements and the machine's copy bandwidth (see the module doc).

    Parameters
    ----------
    size : (int, int, int)
        Pixels ``(ny, nx)`` and channels of the synthetic SI.
    window : (float, float)
        Background fit window (eV), for both HyperSpy and ours.
    repeat : int
        Interleaved runs of each background removal.
    chain_repeat : int
        Runs of the whole chain (median reported).
    model_path : path, optional
        Model bundle; default: the shipped model.
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel of the chain.
    seed : int
        Noise seed of the synthetic SI.

    Returns
    -------
    dict
        ``hyperspy_bg_spectra_per_s``, ``ours_bg_spectra_per_s``,
        ``bg_speedup``, ``pipeline_spectra_per_s``, ``peak_rss_mb``, then
        details: accuracy, stage times, bandwidth and the bound it puts on the
        chain, machine and load averages.
    """
    size = tuple(int(s) for s in size)
    _twin_for(size)  # check the size before starting anything
    load0 = os.getloadavg()
    chain = _chain_in_subprocess(size, model_path, engine, chain_repeat, seed)
    si, zlp = _synthetic(size, seed)
    bg = bench_background(si, window, repeat=repeat)
    del si, zlp
    bw = copy_bandwidth()
    load1 = os.getloadavg()
    n = size[0] * size[1]
    # bytes the chain must move per spectrum: read the core-loss spectrum, the
    # zero-loss window, write the edge grids and the maps
    from .chain.plan import DEFAULT_EDGES
    from .edges import get_edge

    itemsize = 4
    n_grid = sum(get_edge(e).n_points for e in DEFAULT_EDGES)
    zlp_window = int(round(40.0 / 0.3))
    per_spectrum = (size[2] + zlp_window + n_grid) * itemsize + 20 * 8
    result = {
        "hyperspy_bg_spectra_per_s": round(bg["hyperspy_bg_spectra_per_s"], 1),
        "ours_bg_spectra_per_s": round(bg["ours_bg_spectra_per_s"], 1),
        "bg_speedup": round(bg["bg_speedup"], 2),
        "pipeline_spectra_per_s": round(chain["pipeline_spectra_per_s"], 1),
        "peak_rss_mb": round(chain["peak_rss_mb"], 1),
        "size": list(size),
        "n_spectra": n,
        "dtype": "float32",
        "window_eV": list(map(float, window)),
        "bg_accuracy": bg["bg_accuracy"],
        "bg_seconds": bg["bg_seconds"],
        "pipeline_without_predict_spectra_per_s":
            round(chain["pipeline_without_predict_spectra_per_s"], 1),
        "stages_s": chain["stages_s"],
        "stage_spectra_per_s": chain["stage_spectra_per_s"],
        **{k: chain[k] for k in ("predict_stages_thread_s", "predict_us_per_spectrum")
           if k in chain},
        "chain_runs_s": chain["chain_runs_s"],
        "input_mb": chain["input_mb"],
        "model_id": chain["model_id"],
        "engine": chain["engine"],
        "copy_bandwidth_GBps": round(bw["copy_bandwidth_GBps"], 2),
        "copy_bandwidth_median_GBps": round(bw["copy_bandwidth_median_GBps"], 2),
        "bytes_per_spectrum": per_spectrum,
        "bandwidth_bound_spectra_per_s": round(bw["copy_bandwidth_GBps"] * 1e9 / per_spectrum),
        "hyperspy_version": bg["hyperspy_version"],
        "exspy_version": bg["exspy_version"],
        "machine": _machine(),
        "load_average_before": [round(v, 2) for v in load0],
        "load_average_after": [round(v, 2) for v in load1],
    }
    return result


def _cmd(args) -> int:
    size = parse_size(args.size)
    try:
        lo, hi = (float(v) for v in str(args.window).split(","))
    except ValueError:
        raise MMSpecError(f"--window {args.window!r}: expected LOW,HIGH in eV, e.g. 600,632") \
            from None
    if args.repeat < 1 or args.chain_repeat < 1:
        raise MMSpecError("--repeat and --chain-repeat: expected integers >= 1")
    res = run_bench(size, window=(lo, hi), repeat=args.repeat, chain_repeat=args.chain_repeat,
                    model_path=args.model, engine=args.engine, seed=args.seed)
    if args.json:
        print(json.dumps(res))
        return 0
    acc = res["bg_accuracy"]
    print(f"synthetic SI {res['size'][0]} x {res['size'][1]} x {res['size'][2]} float32, "
          f"load average {res['load_average_before'][0]:.1f} -> {res['load_average_after'][0]:.1f}")
    print(f"background, window {lo:g}-{hi:g} eV:  HyperSpy {res['hyperspy_bg_spectra_per_s']:,.0f}"
          f" spectra/s, ours {res['ours_bg_spectra_per_s']:,.0f} spectra/s, "
          f"x{res['bg_speedup']:.1f}; worst difference {100 * acc['worst_pixel_fraction_of_edge_signal']:.2g}"
          f" % of the edge signal")
    st = res["stages_s"]
    print(f"whole chain: {res['pipeline_spectra_per_s']:,.0f} spectra/s, peak RSS "
          f"{res['peak_rss_mb']:,.0f} MB (plan {st['plan']:.2f} s, extract {st['extract']:.2f} s, "
          f"predict {st['predict']:.2f} s); without prediction "
          f"{res['pipeline_without_predict_spectra_per_s']:,.0f} spectra/s")
    if "predict_stages_thread_s" in res:
        ps = res["predict_stages_thread_s"]
        print("prediction, seconds summed over threads: "
              + ", ".join(f"{k} {v:.2f}" for k, v in ps.items()))
    print(f"numpy copy {res['copy_bandwidth_GBps']:.1f} GB/s -> bound "
          f"{res['bandwidth_bound_spectra_per_s']:,} spectra/s "
          f"({res['bytes_per_spectrum']} bytes per spectrum)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure background removal and whole-chain speed",
                              description=__doc__,
                              formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)),
                   help="NYxNXxCHANNELS of the synthetic SI (default 256x256x2048)")
    p.add_argument("--window", default="600,632", help="background window LOW,HIGH in eV")
    p.add_argument("--repeat", type=int, default=3,
                   help="interleaved runs of each background removal (median reported)")
    p.add_argument("--chain-repeat", type=int, default=1, help="runs of the whole chain")
    p.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    p.add_argument("--engine", default="auto", choices=("auto", "numba", "numpy"),
                   help="per-pixel kernel of the chain")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the synthetic SI")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=_cmd)


def _worker(argv: list[str]) -> int:
    args = json.loads(argv[0])
    res = bench_chain(tuple(args["size"]), model_path=args["model_path"], engine=args["engine"],
                      repeat=args["repeat"], seed=args["seed"])
    Path(args["out"]).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":  # pragma: no cover - the chain benchmark's subprocess
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        raise SystemExit(_worker(sys.argv[2:]))
    raise SystemExit("usage: mmspec bench [--json] [--size NYxNXxCHANNELS]")
