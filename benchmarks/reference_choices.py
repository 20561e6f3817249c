"""Are the real particle's maps stable across reasonable calibration references?

For each choice in :data:`mmspec_widgets.edges.REFERENCE_CHOICES`, the real NMC
SI (``TM/`` with its ``ZLP/`` SI, through the download registry) is
calibrated, despiked, its O K and Mn/Co/Ni L2,3 edges extracted, quantified
by cross-sections and mapped with the default model; printed per choice: the
calibration (scale, each feature's location std), and per target the mean
over the particle pixels with the mean stated std (the std of a particle mean
when the pixels' errors are shared, as a calibration's are), the fraction of
pixels flagged OOD and the median charge-balance residual.

    python benchmarks/reference_choices.py [--json]
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

import mmspec_widgets as mm
from mmspec_widgets import datasets
from mmspec_widgets.edges import REFERENCE_CHOICES

TARGETS = ("ni_fraction", "mn_fraction", "co_fraction", "li_content", "ni_oxidation",
           "mn_oxidation", "co_oxidation", "o_vacancy", "antisite")


def particle_means(si, zlp, references, model) -> dict:
    cal = mm.calibrate(si, zlp=zlp, references=references)
    eds = mm.quantify(mm.extract_edges(mm.remove_spikes(cal),
                                       edges=["O_K", "Mn_L23", "Co_L23", "Ni_L23"]))
    maps = model.predict(eds)
    part = np.isfinite(eds["amount_Mn_L23"].values)
    out = {"scale": round(cal.attrs["calibration_scale"], 5),
           "location_std_eV": {k: round(v.get("location_std_eV", float("nan")), 3)
                               for k, v in cal.attrs["calibration_references"].items()},
           "n_pixels": int(part.sum()),
           "ood_fraction": round(float(np.mean(maps["ood"].values[part])), 3)}
    if "charge_balance" in maps:
        out["charge_balance_median"] = round(float(np.nanmedian(
            maps["charge_balance"].values[part])), 3)
    for t in TARGETS:
        v, s = maps[t].values[part], maps[f"{t}_std"].values[part]
        ok = np.isfinite(v) & np.isfinite(s)
        out[t] = [round(float(v[ok].mean()), 3), round(float(s[ok].mean()), 3)] \
            if ok.any() else [None, None]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    si = mm.load(datasets.nmc_eels_si("TM")["si"])
    zlp = mm.load(datasets.nmc_eels_si("ZLP")["si"])
    model = mm.load_model()
    res = {name: particle_means(si, zlp, refs, model) for name, refs in REFERENCE_CHOICES.items()}
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"model {model.model_id}")
    for name, r in res.items():
        print(f"\n{name}: scale {r['scale']}, location std {r['location_std_eV']} eV, "
              f"{r['n_pixels']} px, OOD {r['ood_fraction']:.0%}, "
              f"charge balance {r.get('charge_balance_median')}")
        for t in TARGETS:
            m, s = r[t]
            print(f"  {t:14s} " + ("-" if m is None else f"{m:.3f} +- {s:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
