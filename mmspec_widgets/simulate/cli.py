"""``mmspec simulate``: run or resume a campaign, or assemble the data set.

Examples::

    mmspec simulate --structures 120 --edges O_K,Li_K,Ni_L23 --seed 1 --out data/sim
    mmspec simulate --assemble --out data/sim --dataset data/training_set.nc \
        --trends docs/simulation_trends.png

After a campaign run the data set is assembled into ``--dataset`` (default
``<out>/training_set.nc``) unless ``--no-assemble``.

Quiet by default: standard output carries only the JSON summary, standard
error a progress bar (and failures); the engines' output (FEFF, edrixs), the
Dask workers' and scheduler's messages and one line per job go to
``<out>/simulate.log``. ``--verbose`` shows all of it on standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

__all__ = ["register", "main"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate spectra of NMC structures (FEFF10 K edges, edrixs L2,3)",
        description="Run or resume a resumable simulation campaign, or assemble its data set.",
    )
    _add_arguments(p)
    p.set_defaults(func=_run)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--structures", type=int, default=None,
                   help="number of structures (balanced, interleaved)")
    p.add_argument("--edges", default=None,
                   help="comma-separated edge names (default: all), e.g. O_K,Li_K,Ni_L23")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--kinds", default=None,
                   help="structure kinds, in blocks of 20: 'all' (4 layered, 8 Li-rich, "
                        "4 rock-salt, 4 spinel), counts such as "
                        "'li_rich=10,rock_salt=5,spinel=5', or names for equal shares; "
                        "default: layered NMC (the shipped campaign)")
    p.add_argument("--out", default="data/sim", help="campaign store folder")
    p.add_argument("--scheduler", default=None,
                   help="address of a dask.distributed scheduler ('sync': no Dask)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes")
    p.add_argument("--fms", type=float, default=None, help="FEFF FMS radius in Angstrom")
    p.add_argument("--scf", type=float, default=None, metavar="R",
                   help="FEFF self-consistent potentials within R Angstrom (mixing 0.05, the "
                        "settings `mmspec validate` checks); default: none. Runs with "
                        "other settings are other jobs: use a separate --out store")
    p.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="engine, Dask and per-job messages on standard error "
                        "(default: to <out>/simulate.log)")
    p.add_argument("--assemble", action="store_true",
                   help="assemble the data set from the store (no simulation)")
    p.add_argument("--dataset", default=None,
                   help="data set file to write (default: <out>/training_set.nc)")
    p.add_argument("--no-assemble", action="store_true",
                   help="do not assemble the data set after simulating")
    p.add_argument("--l3-to-step", default=None, metavar="RATIO",
                   help="with --assemble: L3 maximum over edge step of the L2,3 spectra, one "
                        "number or EDGE=RATIO,... (e.g. Mn_L23=3.9,Co_L23=4.8); default: "
                        "the store's alignment (6)")
    p.add_argument("--trends", default=None, metavar="PNG",
                   help="with --assemble: also render the trends figure of the set to PNG "
                        "and print the rank correlation of each descriptor with its label")


#: loggers whose messages are chatter in quiet mode (they go to the log file)
_CHATTY = ("mmspec_widgets", "distributed", "dask", "tornado", "asyncio", "bokeh", "py.warnings")
_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class _KeepLevel(logging.StreamHandler):
    """A handler whose level stays NOTSET: starting a cluster, Dask sets the level
    of the handlers of its loggers to WARNING; the log file keeps their INFO lines."""

    def setLevel(self, level) -> None:  # noqa: N802 - logging's name
        return None


@contextlib.contextmanager
def _quiet(log_path: Path):
    """Send everything written to file descriptors 1 and 2 (engines, worker
    processes started meanwhile) and all log records to ``log_path``.

    Yields ``(out, err)``: text streams on the original standard output and
    error, for the JSON summary and the progress bar. ``sys.stderr`` points at
    ``err`` meanwhile (tqdm draws there), ``sys.stdout`` at the log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed below
    saved = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8")
    err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8")
    old_streams = sys.stdout, sys.stderr
    root = logging.getLogger()

    def to_log() -> logging.Handler:
        h = _KeepLevel(log)
        h.setFormatter(logging.Formatter(_FORMAT))
        return h

    old_root = root.handlers[:], root.level
    chatty = {}
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout, sys.stderr = log, err
        root.handlers[:] = [to_log()]
        root.setLevel(logging.INFO)
        import distributed  # noqa: F401  (installs its own handlers: send them to the log)

        for name in _CHATTY:
            lg = logging.getLogger(name)
            chatty[name] = lg.handlers[:], lg.propagate, lg.level
            lg.handlers[:] = [to_log()]
            lg.propagate = False
        # the per-job lines (a library may lower the root logger's level meanwhile)
        logging.getLogger("mmspec_widgets").setLevel(logging.INFO)
        logging.captureWarnings(True)
        log.write(f"--- mmspec simulate {' '.join(sys.argv[1:])}\n")
        yield out, err
    finally:
        logging.captureWarnings(False)
        for name, (handlers, prop, level) in chatty.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.propagate = prop
            lg.setLevel(level)
        root.handlers[:], lvl = old_root
        root.setLevel(lvl)
        sys.stdout, sys.stderr = old_streams
        log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        out.close()
        err.close()
        log.close()


def _run(args) -> int:
    if getattr(args, "verbose", False) or args.assemble:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                            stream=sys.stderr)
        return _main(args, sys.stdout, sys.stderr)
    log_path = Path(args.out) / "simulate.log"
    with _quiet(log_path) as (out, err):
        return _main(args, out, err, log_path)


def _main(args, stdout, stderr, log_path: Path | None = None) -> int:
    from ..errors import MMSpecError

    try:
        if args.assemble:
            from .dataset import assemble_training_set, set_summary

            path = args.dataset or str(Path(args.out) / "training_set.nc")
            ds = assemble_training_set(args.out, path=path,
                                       l3_to_step=_l3_to_step(args.l3_to_step))
            out = {"path": path, "samples": int(ds.sizes["sample"]), **set_summary(ds)}
            if args.trends:
                out["trends"] = _trends(ds, args.trends)
            print(json.dumps(out), file=stdout)
            return 0
        if not args.structures:
            raise MMSpecError("--structures N is required (or --assemble)")
        if args.l3_to_step is not None:
            raise MMSpecError("--l3-to-step applies to --assemble only")
        from .campaign import run_campaign

        edges = [e.strip() for e in args.edges.split(",")] if args.edges else None
        feff = None
        if args.scf is not None:
            from .feff import FeffParams

            feff = FeffParams(scf=args.scf, scf_mixing=0.05)
        summary = run_campaign(
            args.structures, edges=edges, out=args.out, seed=args.seed,
            kinds=_kinds(args.kinds),
            scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress,
            fms=args.fms, max_jobs=args.max_jobs, feff=feff,
        )
        summary.pop("failures", None)
        if not args.no_assemble:
            from ..errors import DataError
            from .dataset import assemble_training_set, set_summary

            path = args.dataset or str(Path(args.out) / "training_set.nc")
            try:
                ds = assemble_training_set(args.out, path=path)
                summary["dataset"] = {"path": path, "samples": int(ds.sizes["sample"]),
                                      **set_summary(ds)}
            except DataError as exc:
                print(f"mmspec simulate: data set not assembled: {exc}", file=stderr)
        if log_path is not None:
            summary["log"] = str(log_path)
        print(json.dumps(summary), file=stdout)
        return 0
    except MMSpecError as exc:
        print(f"mmspec simulate: error: {exc}", file=stderr)
        if log_path is not None:
            print(f"mmspec simulate: details in {log_path}", file=stderr)
        return 2


def _kinds(text):
    """``--kinds`` -> None, "all", a list of names or a dict of counts."""
    from ..errors import MMSpecError

    if text is None:
        return None
    text = text.strip()
    if text == "all":
        return "all"
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if all("=" in p for p in parts):
        try:
            return {k.strip(): int(v) for k, v in (p.split("=", 1) for p in parts)}
        except ValueError:
            raise MMSpecError(f"--kinds {text!r}: expected KIND=COUNT,... with integer "
                              "counts, e.g. li_rich=10,rock_salt=5,spinel=5") from None
    if any("=" in p for p in parts):
        raise MMSpecError(f"--kinds {text!r}: give every kind a count, or none")
    return parts


def _l3_to_step(text):
    """``--l3-to-step`` -> None, one number or ``{edge: number}``."""
    from ..errors import MMSpecError

    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if len(parts) == 1 and "=" not in parts[0]:
            return float(parts[0])
        return {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
    except ValueError:
        raise MMSpecError(f"--l3-to-step {text!r}: expected a number or EDGE=NUMBER,..., "
                          "e.g. Mn_L23=3.9,Co_L23=4.8") from None


def _trends(ds, png: str) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .descriptors import trend_metrics
    from .plots import plot_trends

    fig = plot_trends(ds)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
            for r in trend_metrics(ds)]


def main(argv=None) -> int:
    """Entry point of ``python -m mmspec_widgets.simulate.cli``."""
    parser = argparse.ArgumentParser(prog="mmspec")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
