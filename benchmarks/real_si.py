"""A model on the real NMC spectrum image: how much of the particle it knows.

Runs the README chain (``TM/`` SI with its ``ZLP/`` SI, default calibration
references, spikes, the four EELS edges, composition from the edge jumps by
hydrogenic cross-sections) and predicts with a model bundle. Reports, over the
particle pixels (O K used):

- the share in distribution (``ood`` false) and the median OOD score;
- the share using all four edges, and how many use each edge;
- the mean of every target over the particle, with the median std;
- the phase map: pixels per most probable phase (models that learnt phases);
- each EELS edge's median OOD ratio (distance / threshold, > 1: unlike the
  training spectra), and with ``--shifts`` the same after moving that edge's
  measured spectra by -3 ... +3 eV: whether a position or a shape sets it apart;
- the power-law background's shape error measured on the SI (scatter and
  bias, relative to the background under each edge) and how neighbouring
  thick pixels' TM fractions differ over their stated std, with and without
  that error in the jumps' std.

With ``--png`` it also draws every map (``plot_maps``) to look at.

    MMSPEC_DATA_MIRROR=../shared/data python benchmarks/real_si.py \
        [--model data/models/default.skops] [--png maps.png] [--shifts] [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

import mmspec_widgets as mm
from mmspec_widgets import datasets
from mmspec_widgets.edges import get_edge
from mmspec_widgets.plotting import phase_counts

EDGES = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")


def real_si_edges():
    """The README chain on the real ``TM/`` SI up to the quantified edges."""
    tm, zl = datasets.nmc_eels_si("TM"), datasets.nmc_eels_si("ZLP")
    si, zlp = mm.load(tm["si"]), mm.load(zl["si"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = mm.calibrate(si, zlp=zlp, references=mm.DEFAULT_REFERENCES)
        return mm.quantify(mm.extract_edges(mm.remove_spikes(cal), edges=list(EDGES)))


def real_si_maps(model_path=None):
    """The README chain on the real ``TM/`` SI; returns the maps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mm.load_model(model_path).predict(real_si_edges())


def edge_ood(model, edges, shifts=(0.0,)) -> dict:
    """Median OOD ratio of each EELS edge over the particle pixels (O K
    present), with that edge's spectra moved up by each of ``shifts`` (eV)."""
    from mmspec_widgets.learn.fusion import dataset_to_matrix

    X, _ = dataset_to_matrix(edges, model.edges_)
    X = X[np.isfinite(X[:, :get_edge("O_K").n_points]).all(axis=1)]
    start = np.cumsum([0] + [get_edge(e).n_points for e in model.edges_])
    names = model.ood_edges
    out = {}
    for e in EDGES:
        if e not in model.edges_ or e not in names:
            continue
        j, g = model.edges_.index(e), get_edge(e).energy
        cols = slice(start[j], start[j + 1])
        row = {}
        for s in shifts:
            Xs = X.copy()
            if s:
                Xs[:, cols] = np.array([np.interp(g - s, g, y) for y in X[:, cols]])
            r = model.edge_ood_ratios(Xs)[:, names.index(e)]
            r = r[np.isfinite(r)]
            row[f"{s:+.1f}"] = round(float(np.median(r)), 2) if r.size else None
        out[e] = row
    return out


def neighbour_z(values, std, where) -> tuple[int, float]:
    """Pairs of neighbouring pixels (both in ``where``, both finite) and the
    robust spread (1.4826 MAD) of their difference over its stated std: about
    1 where the stds describe how pixels scatter (less if the stds hold an
    error common to all pixels, more if they understate)."""
    d, sd = [], []
    for ax in (0, 1):
        a, b, t = (np.moveaxis(np.asarray(x), ax, 0) for x in (values, std, where))
        ok = t[1:] & t[:-1] & np.isfinite(a[1:]) & np.isfinite(a[:-1])
        d.append((a[1:] - a[:-1])[ok])
        sd.append(np.hypot(b[1:], b[:-1])[ok])
    z = np.concatenate(d) / np.concatenate(sd)
    return int(z.size), float(1.4826 * np.median(np.abs(z - np.median(z)))) if z.size else None


def background_error(edges) -> dict:
    """The power law's shape error on this SI (``attrs["background_model_error"]``)
    and, over the thick particle pixels (O K jump above half its maximum), how
    neighbouring pixels' TM fractions differ over their stated std, with the
    shape error in the jumps' std and without it (counting statistics only)."""
    err = json.loads(edges.attrs.get("background_model_error", "{}"))
    o = np.asarray(edges["jump_O_K"].values, float)
    thick = o / np.nanmax(o) > 0.5
    counting = mm.quantify(edges.drop_vars([v for v in edges.data_vars
                                            if str(v).endswith("_model_std")]))
    out = {"scatter": {e: err[e]["scatter"] for e in err},
           "bias": {e: err[e]["bias"] for e in err}, "neighbour_z": {}}
    for e in EDGES[1:]:
        v = f"tm_fraction_{e}"
        n, with_shape = neighbour_z(edges[v].values, edges[f"{v}_std"].values, thick)
        _, counting_only = neighbour_z(counting[v].values, counting[f"{v}_std"].values, thick)
        f = np.asarray(edges[v].values, float)[thick]
        f = f[np.isfinite(f)]
        out["neighbour_z"][e] = {
            "pairs": n, "with_shape_error": round(with_shape, 2),
            "counting_only": round(counting_only, 2),
            "median_std": round(float(np.nanmedian(edges[f"{v}_std"].values[thick])), 3),
            "pixel_spread": round(float(1.4826 * np.median(np.abs(f - np.median(f)))), 3)}
    return out


def summarise(maps) -> dict:
    """Numbers over the particle pixels (O K used)."""
    particle = np.asarray(maps["used_O_K"].values, bool)
    n = int(particle.sum())
    used = {e: int(np.asarray(maps[f"used_{e}"].values, bool)[particle].sum())
            for e in EDGES if f"used_{e}" in maps}
    all_four = np.all([np.asarray(maps[f"used_{e}"].values, bool) for e in EDGES], axis=0)
    ood = np.asarray(maps["ood"].values, bool)
    score = np.asarray(maps["ood_score"].values, float)
    out = {
        "model_id": str(maps.attrs.get("model_id", "")),
        "particle_pixels": n,
        "in_distribution": round(float(np.mean(~ood[particle])), 3) if n else None,
        "median_ood_score": round(float(np.median(score[particle])), 2) if n else None,
        "all_four_edges": round(float(np.mean(all_four[particle])), 3) if n else None,
        "pixels_using": used,
        "not_learnt": sorted((maps.attrs.get("not_learnt") or {}).keys()),
        "targets": {},
    }
    for t in mm.learn.TARGETS:
        if t not in maps:
            continue
        v = np.asarray(maps[t].values, float)[particle]
        s = np.asarray(maps[f"{t}_std"].values, float)[particle]
        ok = np.isfinite(v)
        out["targets"][t] = ({"mean": round(float(v[ok].mean()), 3),
                              "median_std": round(float(np.median(s[ok & np.isfinite(s)])), 3)
                              if (ok & np.isfinite(s)).any() else None,
                              "pixels": int(ok.sum())} if ok.any() else None)
    if "phase" in maps:
        out["phase_pixels"] = {n: c for n, c in phase_counts(maps["phase"], particle).items()
                               if c}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model bundle (default: the shipped one)")
    ap.add_argument("--png", default=None, help="also draw the maps to this PNG")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--shifts", action="store_true",
                    help="also each edge's OOD ratio with its spectra moved by -3 ... +3 eV")
    args = ap.parse_args(argv)
    model = mm.load_model(args.model)
    edges = real_si_edges()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = model.predict(edges)
    res = summarise(maps)
    shifts = tuple(np.arange(-3.0, 3.01, 0.5)) if args.shifts else (0.0,)
    res["edge_ood_ratio"] = edge_ood(model, edges, shifts)
    res["background_error"] = background_error(edges)
    if args.png:
        mm.plot_maps(maps, path=args.png)
        res["png"] = args.png
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
