"""``mmspec simulate``: run or resume a campaign, or assemble the data set.

Examples::

    mmspec simulate --structures 120 --edges O_K,Li_K,Ni_L23 --seed 1 --out data/sim
    mmspec simulate --assemble --out data/sim --dataset data/training_set.nc \
        --trends docs/simulation_trends.png

After a campaign run the data set is assembled into ``--dataset`` (default
``<out>/training_set.nc``) unless ``--no-assemble``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

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
    p.add_argument("--assemble", action="store_true",
                   help="assemble the data set from the store (no simulation)")
    p.add_argument("--dataset", default=None,
                   help="data set file to write (default: <out>/training_set.nc)")
    p.add_argument("--no-assemble", action="store_true",
                   help="do not assemble the data set after simulating")
    p.add_argument("--trends", default=None, metavar="PNG",
                   help="with --assemble: also render the trends figure of the set to PNG "
                        "and print the rank correlation of each descriptor with its label")


def _run(args) -> int:
    from ..errors import MMSpecError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        if args.assemble:
            from pathlib import Path

            from .dataset import assemble_training_set

            path = args.dataset or str(Path(args.out) / "training_set.nc")
            ds = assemble_training_set(args.out, path=path)
            out = {"path": path, "samples": int(ds.sizes["sample"])}
            if args.trends:
                out["trends"] = _trends(ds, args.trends)
            print(json.dumps(out))
            return 0
        if not args.structures:
            raise MMSpecError("--structures N is required (or --assemble)")
        from .campaign import run_campaign

        edges = [e.strip() for e in args.edges.split(",")] if args.edges else None
        feff = None
        if args.scf is not None:
            from .feff import FeffParams

            feff = FeffParams(scf=args.scf, scf_mixing=0.05)
        summary = run_campaign(
            args.structures, edges=edges, out=args.out, seed=args.seed,
            scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress,
            fms=args.fms, max_jobs=args.max_jobs, feff=feff,
        )
        summary.pop("failures", None)
        if not args.no_assemble:
            from pathlib import Path

            from ..errors import DataError
            from .dataset import assemble_training_set

            path = args.dataset or str(Path(args.out) / "training_set.nc")
            try:
                ds = assemble_training_set(args.out, path=path)
                summary["dataset"] = {"path": path, "samples": int(ds.sizes["sample"])}
            except DataError as exc:
                print(f"mmspec simulate: data set not assembled: {exc}", file=sys.stderr)
        print(json.dumps(summary))
        return 0
    except MMSpecError as exc:
        print(f"mmspec simulate: error: {exc}", file=sys.stderr)
        return 2


def _trends(ds, png: str) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import plot_trends, trend_metrics

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
