"""``mmspec demo``: the whole chain on the embedded digital twin.

file -> calibrate (zero-loss SI + two reference features) -> spike removal ->
per-edge background subtraction and extraction -> default fused model ->
maps, compared with the twin's ground truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

from .edges import DEFAULT_REFERENCES

__all__ = ["run_chain", "score_maps", "run_demo", "register"]

#: Calibration references of the demo chain (:data:`mmspec_widgets.edges.DEFAULT_REFERENCES`).
REFERENCES = dict(DEFAULT_REFERENCES)


def run_chain(si: xr.DataArray, zlp: xr.DataArray | None = None, *, model=None,
              edges=("O_K", "Mn_L23", "Co_L23", "Ni_L23"),
              references: dict | None = None, k_factors: dict | None = None,
              composition: dict | None = None,
              cross_sections: bool = False) -> tuple[xr.Dataset, xr.Dataset]:
    """Run the standard chain on a spectrum image.

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``(y, x, energy)`` in counts, energy in eV.
    zlp : xarray.DataArray, optional
        Zero-loss SI of the same scan.
    model : optional
        A loaded model bundle; default :func:`mmspec_widgets.learn.load_model`.
    edges : sequence of str
        Edges to extract and feed to the model.
    references : dict, optional
        Calibration references; default :data:`REFERENCES`.
    k_factors : dict, optional
        Edge -> k-factor for :func:`mmspec_widgets.quantify.quantify`, so the
        model also reads the local composition from the edge jumps.
    composition : dict, optional
        Known mean composition of the particle (e.g.
        ``quantify.composition_from_fractions(0.6, 0.2, 0.2)``): k-factors are
        fitted on the whole image (:func:`~mmspec_widgets.quantify.fit_k_factors`).
        Neither given: the model reads the spectra's shapes only, unless
        ``cross_sections``.
    cross_sections : bool
        Without ``k_factors`` or ``composition``: quantify every pixel by
        hydrogenic cross-sections (:func:`mmspec_widgets.quantify.quantify`,
        instrument from the SI's attrs), the composition measured, not assumed.

    Returns
    -------
    (edges_ds, maps) : (xarray.Dataset, xarray.Dataset)
        The per-edge spectra on their standard grids and the predicted maps.
    """
    from .background import remove_spikes
    from .calibrate import calibrate
    from .extract import extract_edges
    from .learn import load_model
    from .quantify import quantify, quantify_known

    cal = calibrate(si, zlp=zlp, references=dict(references or REFERENCES))
    clean = remove_spikes(cal)
    eds = extract_edges(clean, edges=list(edges))
    if cross_sections and k_factors is None and composition is None:
        eds = quantify(eds)
    else:
        eds = quantify_known(eds, k_factors=k_factors, composition=composition)
    model = model if model is not None else load_model()
    maps = model.predict(eds)
    return eds, maps


def score_maps(maps: xr.Dataset, truth: xr.Dataset) -> dict:
    """Compare predicted maps with ground truth, pixel by pixel.

    For amounts: mean absolute error and the fraction of pixels whose truth lies
    within 2 stated standard deviations; for ``o_vacancy`` / ``antisite`` and
    the phase probabilities: the accuracy of ``probability > 0.5`` against
    ``count > 0``, the balanced accuracy (mean of the hit rates on positive and
    negative pixels: 0.5 for a map that says "no defect" everywhere) and the
    ROC AUC of the probability; for the ``phase`` map: the share of pixels whose
    most probable phase is the true one (``unknown`` counted as wrong).
    """
    from sklearn.metrics import roc_auc_score

    from .simulate.labels import CLASSIFICATION_LABELS

    out = {}
    valid = np.isfinite(truth["li_content"].values)
    if "phase" in maps and "phase" in truth:
        pred = np.asarray(maps["phase"].values)
        true = np.asarray(truth["phase"].values)
        m = valid & (true >= 0)
        if m.any():
            out["phase"] = {"metric": "accuracy", "value": float(np.mean(pred[m] == true[m])),
                            "n_pixels": int(m.sum()), "n_unknown": int((pred[m] < 0).sum())}
    for name in maps.data_vars:
        if name == "phase":
            continue
        if name.endswith("_std") or name == "ood" or name not in truth:
            continue
        pred = np.asarray(maps[name].values, float)
        true = np.asarray(truth[name].values, float)
        m = valid & np.isfinite(pred) & np.isfinite(true)
        if not m.any():
            continue
        if name in CLASSIFICATION_LABELS:
            hit, pos = pred[m] > 0.5, true[m] > 0
            acc = float(np.mean(hit == pos))
            entry = {"metric": "accuracy", "value": acc, "n_pixels": int(m.sum()),
                     "n_defect_pixels": int(pos.sum())}
            if 0 < pos.sum() < pos.size:
                entry["balanced_accuracy"] = float(0.5 * (hit[pos].mean() + (~hit[~pos]).mean()))
                entry["roc_auc"] = float(roc_auc_score(pos, pred[m]))
            out[name] = entry
        else:
            err = np.abs(pred[m] - true[m])
            entry = {"metric": "mae", "value": float(err.mean()), "n_pixels": int(m.sum())}
            if f"{name}_std" in maps:
                std = np.asarray(maps[f"{name}_std"].values, float)[m]
                entry["within_2std"] = float(np.mean(err <= 2 * std))
                entry["mean_std"] = float(np.nanmean(std))
            out[name] = entry
    return out


def plot_maps(maps: xr.Dataset, truth: xr.Dataset, path: Path) -> Path:
    """Truth, prediction and uncertainty of every target, with the OOD score
    and the edges used, saved as PNG (:func:`mmspec_widgets.plotting.plot_maps`)."""
    import matplotlib

    matplotlib.use("Agg")
    from .plotting import plot_maps as _plot

    _plot(maps, truth, path=path)
    return Path(path)


def _earlier_demo(out: Path) -> bool:
    """Whether ``out`` holds the outputs of an earlier demo run (its summary)."""
    try:
        s = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(s, dict) and "scores" in s
            and str(s.get("input", "")).startswith("mmspec_widgets.twin"))


def run_demo(out: str | Path = "mmspec-demo", *, twin_folder=None, model_path=None,
             overwrite: bool = False) -> dict:
    """Run the chain on the shipped digital twin; write maps and a summary.

    ``maps.nc``, ``maps.png`` and ``summary.json`` already in ``out`` are
    replaced only with ``overwrite=True``, or when they are an earlier demo
    run's (its ``summary.json`` says so).
    """
    from .errors import MMSpecError
    from .io import check_output, save
    from .learn import load_model
    from .twin import load_digital_twin

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MMSpecError(f"--out {out}: cannot create the output folder ({err})") from err
    # an earlier demo's own outputs (its summary.json says so) are replaced, so
    # that `bash scripts/demo.sh` can be run again; anything else only when asked
    own = _earlier_demo(out)
    for name in ("maps.nc", "maps.png", "summary.json"):
        check_output(out / name, overwrite=overwrite or own, what="--out")
    t0 = time.perf_counter()
    twin = load_digital_twin(twin_folder)
    model = load_model(model_path)
    # the local composition is measured per pixel by cross-sections (no k-factors,
    # no assumed composition), as `mmspec predict` does on an instrument file
    eds, maps = run_chain(twin.si, twin.zlp, model=model, cross_sections=True)
    elapsed = time.perf_counter() - t0
    scores = score_maps(maps, twin.truth)
    save(maps, out / "maps.nc", overwrite=overwrite or own)
    png = plot_maps(maps, twin.truth, out / "maps.png")
    summary = {
        "input": str(twin.provenance.get("builder", "digital twin")),
        "n_pixels": int(twin.si.sizes["y"] * twin.si.sizes["x"]),
        "seconds": round(elapsed, 2),
        "scores": scores,
        "maps": str(out / "maps.nc"),
        "figure": str(png),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _cmd(args) -> int:
    summary = run_demo(args.out, twin_folder=args.twin, model_path=args.model,
                       overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Digital twin: {summary['n_pixels']} pixels mapped in {summary['seconds']} s")
    print(f"{'target':<14}{'metric':<10}{'value':>8}{'within 2 std':>14}")
    for name, s in summary["scores"].items():
        w = s.get("within_2std")
        extra = ""
        if "balanced_accuracy" in s:
            extra = (f"   balanced accuracy {s['balanced_accuracy']:.2f}, "
                     f"ROC AUC {s['roc_auc']:.2f} ({s['n_defect_pixels']} defect pixels)")
        print(f"{name:<14}{s['metric']:<10}{s['value']:>8.3f}"
              f"{'' if w is None else f'{w:>14.2f}'}{extra}")
    print(f"maps: {summary['maps']}\nfigure: {summary['figure']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole chain on the embedded digital twin and score it",
        description=__doc__)
    p.add_argument("--out", default="mmspec-demo", help="output folder (default: mmspec-demo)")
    p.add_argument("--twin", default=None, help="folder of a digital twin (default: shipped one)")
    p.add_argument("--model", default=None, help="model bundle (default: shipped one)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--overwrite", action="store_true",
                   help="replace maps.nc, maps.png and summary.json already in --out")
    p.set_defaults(func=_cmd)
