"""``mmspec train``, ``mmspec evaluate [--json]``, ``mmspec predict FILE``.

train
    fit the default fused model on the training split of the simulated set
    (Optuna search, grouped CV) and save it as a bundle (default
    ``data/models/default.skops``).
evaluate
    held-out scores for every target, single edges and fused edge sets;
    ``--json`` prints them as
    ``{"targets": {NAME: {"metric": "r2" | "roc_auc", "by_edges": {...}}}}``;
    ``--report DIR`` writes ``evaluation.md`` and ``evaluation.png``.
predict
    maps from a file of extracted edges (netCDF/HDF5 Dataset as written by
    ``extract_edges(...).to_netcdf``) or from an instrument file: loaded,
    calibrated (``--zlp``, reference features: ``--references``, default O K
    and Co L3 where covered), despiked, cut onto the grids of the model edges
    it covers, quantified by hydrogenic cross-sections (or ``--composition`` /
    ``--k-factors``) and mapped.  Normalised XANES (a ``norm``/``flat`` column,
    or ``--normalized``) is used without a pre-edge fit, and a scan covering
    part of a K edge's grid is predicted from what it covers, with a wider
    std (:mod:`mmspec_widgets.learn.coverage`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import FileFormatError, MMSpecError

__all__ = ["register"]


def _edges_arg(values) -> list[str] | None:
    if not values:
        return None
    out = []
    for v in values:
        out.extend(p for p in str(v).replace(",", " ").replace("+", " ").split() if p)
    return out


def _cmd_train(args) -> int:
    from .bundle import save_model
    from .train import load_training_data, train_model

    if args.folds < 2:
        raise MMSpecError(f"--folds {args.folds}: expected at least 2 grouped CV folds")
    if args.trials < 0:
        raise MMSpecError(f"--trials {args.trials}: expected 0 (no search) or more trials")
    for name in ("dropout_copies", "augment_copies"):
        if getattr(args, name) < 0:
            raise MMSpecError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected 0 "
                              "or more copies")
    if args.out is not None:  # a user's path (the default is the project's own model)
        from ..io import check_output

        check_output(args.out, overwrite=args.overwrite,
                     inputs=[args.training_set] if args.training_set else [], what="--out")
    ds = load_training_data(args.training_set)
    model = train_model(ds, n_trials=args.trials, fusion=args.fusion, estimator=args.estimator,
                        edges=_edges_arg(args.edges), dropout_copies=args.dropout_copies,
                        augment_copies=args.augment_copies, n_folds=args.folds,
                        resolution=args.resolution,
                        random_state=args.seed, verbose=not args.quiet)
    path = save_model(model, args.out)
    print(f"saved {model.model_id} -> {path}")
    if args.report:
        from .evaluate import evaluate_model, write_report

        result = evaluate_model(model, ds, details=True)
        md, png = write_report(result, args.report, model=model)
        print(f"report: {md}, {png}")
    return 0


def _cmd_evaluate(args) -> int:
    from .bundle import load_model
    from .evaluate import evaluate_model, write_report
    from .train import load_training_data

    model = load_model(args.model)
    ds = load_training_data(args.training_set)
    sets = None
    if args.edge_sets:
        sets = [_edges_arg([s]) for s in args.edge_sets]
    result = evaluate_model(model, ds, sets, require=args.require, details=bool(args.report))
    if args.report:
        extra = {}
        if args.explain is not None:
            from .explain import edge_importance, energy_importance

            targets = args.explain or ["li_content", "o_vacancy", "antisite"]
            # on all samples: what the model relies on (the test split alone is small)
            extra["edge_imp"] = edge_importance(model, ds, split=None, n_repeats=3)
            extra["energy_imp"] = energy_importance(model, ds, window=2.0, targets=targets,
                                                    split=None)
            extra["spectra"] = ds
        if args.cv:
            from .evaluate import cross_validate

            params = {k: v for k, v in model.get_params().items() if k != "edges"}
            extra["cv_result"] = cross_validate(ds, edges=model.edges_, cv_folds=args.cv,
                                                require=args.require,
                                                **params)
        if args.compare:
            from .evaluate import compare_configs

            common = {k: v for k, v in model.get_params().items()
                      if k not in ("fusion", "kinds", "dropout_copies")}
            common["edges"] = model.edges_
            extra["comparison"] = compare_configs(ds, cv_folds=args.cv or 5,
                                                  require=args.require, **common)
        md, png = write_report(result, args.report, model=model, **extra)
        if not args.json:
            print(f"report: {md}, {png}")
    if args.json:
        print(json.dumps({"targets": result["targets"]}, indent=2))
        return 0
    targets = result["targets"]
    keys = list(next(iter(targets.values()))["by_edges"])
    width = max(len(k) for k in keys) + 2
    print(f"model {model.model_id}: held-out scores (R2; ROC-AUC for defects and phases)")
    print(" " * width + "".join(f"{t[:11]:>12}" for t in targets))
    for k in keys:
        vals = [targets[t]["by_edges"][k] for t in targets]
        row = "".join(f"{'–' if v is None else format(v, '.3f'):>12}" for v in vals)
        print(f"{k:<{width}}{row}")
    return 0


def _references_arg(text, si):
    """``--references``: ``NAME=EV,...`` or ``NAME,...`` (edge-table energies), ``none``;
    default: the reference features of the standard chain that the file covers."""
    from ..edges import DEFAULT_REFERENCES as REFERENCES
    from ..edges import FEATURES

    if text is None:
        e = si["energy"].values
        lo, hi = float(e.min()) + 20.0, float(e.max()) - 20.0  # the features' search margin
        return {k: v for k, v in REFERENCES.items() if lo <= v <= hi}
    if str(text).strip().lower() == "none":
        return {}
    out = {}
    for item in str(text).replace(" ", ",").split(","):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in FEATURES:
            raise MMSpecError(f"--references {text!r}: unknown feature {name!r}; expected "
                              f"some of {', '.join(FEATURES)} (NAME or NAME=EV, comma-separated)")
        try:
            out[name] = float(value) if value else float(FEATURES[name]["energy"])
        except ValueError:
            raise MMSpecError(f"--references {text!r}: {item!r} is not NAME=EV") from None
    return out


def _covered_edges(si, candidates, normalized: bool = False) -> list[str]:
    """Edges of ``candidates`` whose pre-edge window and grid the energy axis
    covers; for normalised XANES (no pre-edge fit) the grid alone, and a
    hard-XAS K edge as soon as the scan overlaps its grid (extract_edges then
    says if it covers too little)."""
    from ..edges import get_edge
    from .coverage import is_partial_edge

    e = si["energy"].values
    lo, hi = float(e.min()), float(e.max())
    out = []
    for name in candidates:
        ed = get_edge(name)
        if normalized and is_partial_edge(name):
            ok = lo < ed.energy[-1] and hi > ed.energy[0]
        else:
            start = ed.energy[0] if normalized else min(ed.pre_edge[0], ed.energy[0])
            ok = lo <= start and ed.energy[-1] <= hi
        if ok:
            out.append(ed.name)
    return out


def _read_edges_file(path: Path, edges, args=None, model_edges=None):
    """Edges Dataset of ``path``: read as it is (netCDF of extracted edges), or
    (instrument file) loaded, calibrated, despiked, cut onto the edge grids and
    quantified by cross-sections unless k-factors are asked for."""
    import xarray as xr

    if not path.exists():
        raise FileFormatError(f"{path}: file not found")
    if path.suffix.lower() in (".nc", ".h5", ".hdf5", ".nc4", ".cdf"):
        try:
            return xr.load_dataset(path, engine="h5netcdf")
        except Exception as exc:
            raise FileFormatError(f"{path}: not a readable netCDF Dataset of edges ({exc})") \
                from exc
    try:
        from .. import extract, io
        from ..background import remove_spikes
        from ..calibrate import calibrate
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise FileFormatError(f"{path}: reading instrument files needs mmspec_widgets.io and "
                              f".extract ({exc}); pass a netCDF file of extracted edges") from exc
    si = io.load(path)
    zlp = None
    if args is not None and getattr(args, "zlp", None):
        zlp_path = Path(args.zlp)
        if not zlp_path.exists():
            raise FileFormatError(f"--zlp {zlp_path}: file not found")
        zlp = io.load(zlp_path)
    refs = _references_arg(getattr(args, "references", None), si)
    if zlp is not None or refs:
        si = calibrate(si, zlp=zlp, references=refs or None)
        print("calibrated: " + ", ".join(
            (["zero-loss peak"] if zlp is not None else [])
            + [f"{k} at {v:g} eV" for k, v in refs.items()]))
    else:
        why = "--references none" if getattr(args, "references", None) else \
            "no reference feature in the file's range"
        print(f"not calibrated: no --zlp and {why} (the model reads the recorded energy axis)")
    si = remove_spikes(si)
    declared = bool(getattr(args, "normalized", False))
    why = "declared (--normalized)" if declared else extract.normalized_input(si)
    if why:
        print(f"normalised XANES ({why}): used as it is, no pre-edge fit; a K edge may be "
              "covered in part")
    if edges is None:
        if model_edges is None:
            raise MMSpecError("predict: --edges is required for an instrument file (which "
                              "edges to cut from the spectrum)")
        edges = _covered_edges(si, model_edges, normalized=why is not None)
        if not edges:
            raise MMSpecError(f"predict: {path} covers none of the model's edges "
                              f"({', '.join(model_edges)}) with their pre-edge windows "
                              f"({float(si.energy.min()):.0f} - {float(si.energy.max()):.0f} "
                              "eV); pass --edges")
        left = [e for e in model_edges if e not in edges]
        print(f"edges (model edges the file covers): {', '.join(edges)}"
              + (f"; not covered (grid or pre-edge window outside "
                 f"{float(si.energy.min()):.0f} - {float(si.energy.max()):.0f} eV): "
                 f"{', '.join(left)}" if left else ""))
    return extract.extract_edges(si, edges=list(edges), normalized=True if declared else None)


def _serialisable_attrs(attrs: dict) -> dict:
    return {k: (int(v) if isinstance(v, bool) else v if isinstance(v, str | int | float)
                else json.dumps(v, default=str))
            for k, v in attrs.items()}


def _quantify_arg(ds, args, instrument_file: bool = False):
    """Apply ``--composition`` / ``--k-factors``, or (instrument files, or
    ``--cross-sections``) hydrogenic cross-sections: amounts from the edge jumps."""
    from ..quantify import (
        REFERENCE_EDGE,
        composition_from_fractions,
        fit_k_factors,
        quantify,
        summed_composition,
    )

    if args.composition and args.k_factors:
        raise MMSpecError("predict: give --composition or --k-factors, not both")
    if args.composition:
        try:
            ni, mn, co = (float(v) for v in args.composition.split(","))
        except ValueError:
            raise MMSpecError(f"--composition {args.composition!r}: expected the TM fractions "
                              "NI,MN,CO, e.g. 0.6,0.2,0.2") from None
        k = fit_k_factors(ds, composition_from_fractions(ni, mn, co))
        print("k-factors fitted on the mean composition: "
              + ", ".join(f"{e} {v:.4g}" for e, v in k.items()))
        return quantify(ds, k)
    if args.k_factors:
        k = {}
        for item in args.k_factors.split(","):
            name, _, value = item.partition("=")
            try:
                k[name.strip()] = float(value)
            except ValueError:
                raise MMSpecError(f"--k-factors {args.k_factors!r}: expected EDGE=VALUE pairs "
                                  "separated by commas, e.g. Mn_L23=0.56,Co_L23=5.3,"
                                  "Ni_L23=13") from None
        return quantify(ds, k)
    jumps = [str(v)[5:] for v in ds.data_vars
             if str(v).startswith("jump_") and not str(v).endswith("_std")]
    wanted = getattr(args, "cross_sections", False) or instrument_file
    if not wanted or REFERENCE_EDGE not in jumps or not any(
            e.endswith("_L23") or e == "Li_K" for e in jumps):
        return ds
    q = quantify(ds, beam_energy_keV=getattr(args, "beam_energy", None),
                 collection_mrad=getattr(args, "collection_angle", None),
                 convergence_mrad=getattr(args, "convergence_angle", None))
    h = q.attrs["history"][-1]["params"]
    print(f"quantified by hydrogenic cross-sections ({h['beam_energy_keV']:g} kV, collection "
          f"{h['collection_mrad']:g} mrad, convergence "
          f"{'not recorded (parallel beam assumed)' if h['convergence_mrad'] is None else format(h['convergence_mrad'], 'g') + ' mrad'})")
    try:
        mean = summed_composition(q)
    except Exception:  # noqa: BLE001 - a summary only
        return q
    if mean["fractions"]:
        print(f"summed jumps of {mean['n_pixels']} pixels, TM fractions: " + ", ".join(
            f"{el} {v:.3f} +- {s:.3f}" for el, (v, s) in mean["fractions"].items())
            + " (std: counting + cross-section systematic)")
    return q


def _check_predict_args(args) -> None:
    """Argument errors found before any work is done."""
    import math

    if args.composition and args.k_factors:
        raise MMSpecError("predict: give --composition or --k-factors, not both")
    if args.composition:
        try:
            _ni, _mn, _co = (float(v) for v in args.composition.split(","))
        except ValueError:
            raise MMSpecError(f"--composition {args.composition!r}: expected the TM fractions "
                              "NI,MN,CO, e.g. 0.6,0.2,0.2") from None
    f = args.drop_ood_edges
    if not args.keep_ood_edges and not (math.isfinite(f) and f > 0):
        raise MMSpecError(f"--drop-ood-edges {f!r}: expected a positive factor (times the "
                          "OOD threshold), e.g. 10; --keep-ood-edges to keep every edge")


def _cmd_predict(args) -> int:
    from ..io import check_output, write_atomic
    from .bundle import load_model

    edges = _edges_arg(args.edges)
    _check_predict_args(args)
    out = Path(args.out)
    if out.parent.is_dir():  # the input or a folder: refused before any work
        check_output(out, overwrite=True, inputs=[args.file], what="--out")
    model = load_model(args.model)
    path = Path(args.file)
    instrument = path.suffix.lower() not in (".nc", ".h5", ".hdf5", ".nc4", ".cdf")
    ds = _read_edges_file(path, edges, args, model_edges=list(model.edges_))
    ds = _quantify_arg(ds, args, instrument_file=instrument)
    maps = model.predict(ds, edges=edges,
                         drop_ood_edges=None if args.keep_ood_edges else args.drop_ood_edges)
    maps.attrs = _serialisable_attrs(maps.attrs)
    maps.attrs["source_file"] = str(args.file)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MMSpecError(f"--out {out}: cannot create its folder ({err})") from err
    check_output(out, overwrite=args.overwrite, inputs=[args.file], what="--out")
    write_atomic(out, lambda tmp: maps.to_netcdf(tmp, engine="h5netcdf"))
    n_ood = int(maps["ood"].values.sum())
    print(f"{maps.attrs['edge_set']} -> {out} ({maps['ood'].size} pixels, {n_ood} flagged OOD)")
    if "edges_used" in maps:
        import numpy as np

        counts = {e: int(maps[f"used_{e}"].values.sum()) for e in maps.attrs.get("edges", [])
                  if f"used_{e}" in maps} if isinstance(maps.attrs.get("edges"), list) else {}
        counts = counts or {str(v)[5:]: int(maps[v].values.sum()) for v in maps.data_vars
                            if str(v).startswith("used_")}
        print("pixels using each edge: " + ", ".join(f"{e} {c}" for e, c in counts.items())
              + f"; {int(np.sum(maps['nan_reason'].values != 0))} pixels with a NaN reason "
              "(nan_reason; mmspec_widgets.quantify.explain_reasons)")
    import numpy as np

    for v in maps.data_vars:
        if str(v).startswith("coverage_"):
            c = np.asarray(maps[v].values, float)
            part = int(np.sum((c > 0) & (c < 1)))
            if part:
                print(f"{str(v)[9:]}: {part} spectra cover part of the grid (lowest "
                      f"{100 * float(np.min(c[c > 0])):.0f} %): predicted from what they cover, "
                      "std widened by the measured rule (mmspec_widgets.learn.coverage)")
    if "phase" in maps:
        from ..plotting import phase_counts

        counts = phase_counts(maps["phase"])
        print("most probable phase (pixels): " + ", ".join(
            f"{n.replace('_', '-')} {c}" for n, c in counts.items() if c)
            + (" (unknown: a phase target not learnt, or no usable edge)"
               if counts.get("unknown") else ""))
    return 0


def register(subparsers) -> None:
    """Add the ``train``, ``evaluate`` and ``predict`` sub-commands."""
    p = subparsers.add_parser("train", help="train the default fused model on the simulated set",
                              description="Train the fused model (grouped CV, Optuna search) "
                                          "on the training split and save the bundle.")
    p.add_argument("--training-set", default=None,
                   help="training set netCDF (default: data/training_set.nc)")
    p.add_argument("--out", default=None, help="bundle path (default: data/models/default.skops)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file at --out (refused otherwise)")
    p.add_argument("--trials", type=int, default=20, help="Optuna trials (default 20; 0: none)")
    p.add_argument("--fusion", choices=("early", "late", "hybrid"), default="early")
    p.add_argument("--estimator", choices=("hgb", "rf"), default="hgb")
    p.add_argument("--edges", nargs="*", default=None,
                   help="edges to train on (default: every edge with data)")
    p.add_argument("--folds", type=int, default=4, help="grouped CV folds (default 4)")
    p.add_argument("--dropout-copies", type=int, default=3,
                   help="edge-dropout copies of the training rows (default 3)")
    p.add_argument("--augment-copies", type=int, default=3,
                   help="augmented copies of the training spectra (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=float, default=None, metavar="EV",
                   help="energy resolution (FWHM, eV) of the measurements the model is for: "
                        "the training spectra are broadened to it (default: the set's own, "
                        "0.8 eV); e.g. 2.3 for the NMC SI's zero-loss peak")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write the held-out evaluation report into DIR")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("evaluate", help="held-out scores for single edges and fused sets",
                              description="Score the model on the test split for every target "
                                          "and edge set.")
    p.add_argument("--model", default=None, help="bundle (default: data/models/default.skops)")
    p.add_argument("--training-set", default=None,
                   help="labelled set with a test split (default: data/training_set.nc)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write evaluation.md and evaluation.png into DIR")
    p.add_argument("--require", choices=("any", "all"), default="any",
                   help="test samples scored for an edge set: those with at least one of "
                        "its edges (default; an element absent from a region has no edge) "
                        "or only those with all of them")
    p.add_argument("--cv", type=int, default=0, metavar="K",
                   help="with --report: add K-fold grouped cross-validation per edge set on "
                        "the training split (retrains K models)")
    p.add_argument("--compare", action="store_true",
                   help="with --report: compare fusion variants by grouped CV (retrains "
                        "K models per variant)")
    p.add_argument("--explain", nargs="*", default=None, metavar="TARGET",
                   help="with --report: add permutation importance by edge (table) and by "
                        "energy window for these targets (importance.png; default "
                        "li_content o_vacancy antisite)")
    p.add_argument("--edge-sets", nargs="*", default=None,
                   help="edge sets to score, e.g. O_K Ni_K O_K+Ni_L23 (default: singles, "
                        "named fused sets, all edges)")
    p.set_defaults(func=_cmd_evaluate)

    p = subparsers.add_parser("predict", help="maps of structure from a file of spectra",
                              description="Predict maps (targets, their std, OOD flag).")
    p.add_argument("file", help="netCDF of extracted edges, or an instrument file (calibrated, "
                                "despiked, cut onto the edge grids and quantified by "
                                "cross-sections)")
    p.add_argument("--edges", nargs="*", default=None,
                   help="edges to use (default: every model edge in the file; for an "
                        "instrument file, every model edge its energy range covers)")
    p.add_argument("--zlp", default=None, metavar="FILE",
                   help="instrument file: zero-loss SI of the same scan (aligns the zero "
                        "loss of every pixel)")
    p.add_argument("--references", default=None, metavar="FEATURE[=EV],...",
                   help="instrument file: calibration reference features (e.g. "
                        "O_K=530,Co_L3=780; a name alone takes the edge table's energy; "
                        "'none': zero-loss alignment only); default: O_K and Co_L3 where "
                        "the file covers them")
    p.add_argument("--cross-sections", action="store_true",
                   help="netCDF of edges: quantify its jumps by hydrogenic cross-sections "
                        "(done by default for instrument files)")
    p.add_argument("--beam-energy", type=float, default=None, metavar="KEV",
                   help="beam energy (keV) for the cross-sections, when the file does not "
                        "record it")
    p.add_argument("--collection-angle", type=float, default=None, metavar="MRAD",
                   help="collection semi-angle (mrad), when the file does not record it")
    p.add_argument("--convergence-angle", type=float, default=None, metavar="MRAD",
                   help="convergence semi-angle (mrad), when the file does not record it")
    p.add_argument("--model", default=None, help="bundle (default: data/models/default.skops)")
    p.add_argument("--out", required=True, help="output netCDF of maps")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (refused otherwise)")
    p.add_argument("--drop-ood-edges", type=float, default=10.0, metavar="FACTOR",
                   help="per pixel, ignore an edge more than FACTOR times beyond its OOD "
                        "threshold (default 10)")
    p.add_argument("--composition", default=None, metavar="NI,MN,CO",
                   help="known mean TM fractions of the particle (e.g. 0.6,0.2,0.2): fit "
                        "k-factors on the whole file and read each pixel's composition from "
                        "its edge jumps (needs O K and the L2,3 edges)")
    p.add_argument("--k-factors", default=None, metavar="EDGE=K,...",
                   help="k-factors relative to O K (e.g. Mn_L23=0.56,Co_L23=5.3,Ni_L23=13) "
                        "instead of --composition")
    p.add_argument("--keep-ood-edges", action="store_true",
                   help="use every edge given, however unlike the training spectra")
    p.add_argument("--normalized", action="store_true",
                   help="instrument file: its absorption is normalised XANES (pre-edge "
                        "removed, edge step 1): no pre-edge fit, no re-normalisation, and a "
                        "K edge may be covered in part (recognised without this flag from a "
                        "norm/flat column)")
    p.set_defaults(func=_cmd_predict)
