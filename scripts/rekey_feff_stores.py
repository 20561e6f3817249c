"""Move stored FEFF spectra to the keys of the canonical ``feff.inp`` text.

FEFF job keys hash the input text. Coordinates and distances are written
rounded to 5 decimals, and equidistant atoms are ordered by values rounded
to 4; a value exactly half-way between two such decimals (a / 2 of a lattice
constant given to 5 decimals) used to round either way with its last bit,
which differs between numerical libraries and CPUs, so a structure could get
other keys on another machine. Values are now snapped to 1e-8 before
rounding (``simulate.feff._snap``). This script moves the spectra computed
before to their new keys, without running FEFF again:

* the campaign store (``data/sim``): every structure is re-planned with the
  sites and settings of its manifest, checked against the manifest's labels
  and composition, and its spectra moved
  (:func:`mmspec_widgets.simulate.campaign.rekey_structures`);
* the validation store (``data/validation``): every FEFF job of
  ``mmspec validate``, ``benchmarks/feff_scf.py`` and the foreign oxides is
  written twice, the old way and the snapped way, and the spectrum stored
  under the old text's key is moved to the new one. A spectrum stored under
  a key that neither way gives on this machine (its half-way values rounded
  the other way where it was computed) is not moved: run that job again.

Each moved spectrum records ``rekeyed_from`` (its old key) in its metadata.

    python scripts/rekey_feff_stores.py [--sim data/sim] [--validation data/validation]
    python scripts/rekey_feff_stores.py --verify   # FEFF again on two moved spectra
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmspec_widgets.simulate import feff as F  # noqa: E402
from mmspec_widgets.simulate.campaign import (  # noqa: E402
    CampaignStore,
    feff_job,
    rekey_structures,
)

_canonical_input = F.feff_input


@contextlib.contextmanager
def _old_text():
    """feff.inp written as before: values rounded without snapping."""
    keep = F._snap
    F._snap = round
    try:
        yield
    finally:
        F._snap = keep


def _moving_input(store: CampaignStore, moved: dict):
    def feff_input(nmc, site, params=None, title=""):
        new = _canonical_input(nmc, site, params, title)
        with _old_text():
            old = _canonical_input(nmc, site, params, title)
        p = params or F.FeffParams()
        k_new, k_old = feff_job(new, "", p)["key"], feff_job(old, "", p)["key"]
        if k_new != k_old and store.has(k_old) and not store.has(k_new):
            store.move(k_old, k_new)
            moved[k_old] = k_new
        return new
    return feff_input


def rekey_validation(root) -> dict:
    from mmspec_widgets import validate as V
    from mmspec_widgets.simulate import foreign

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import feff_scf

    store = CampaignStore(root)
    moved: dict = {}
    F.feff_input = _moving_input(store, moved)
    try:
        for params in [V.feff_params(), V.feff_params(scf=None)] + \
                [V.feff_params(**kw) for kw in feff_scf.MN_K_CASES.values()]:
            for name in (n for ns in V.K_EDGE_COMPOUNDS.values() for n in ns):
                V.reference_spectrum(name, params, store.root, compute=False)
        for kw in feff_scf.O_K_CASES.values():
            V.reference_site_o_k(F.FeffParams(**kw), store.root, compute=False)
        for name in foreign.FOREIGN_OXIDES:
            foreign.foreign_oxide_jobs(name)
    finally:
        F.feff_input = _canonical_input
    left = [k for k in store.keys() if k.startswith("f") and
            "rekeyed_from" not in store.get(k)["meta"]]
    return {"moved": len(moved), "feff_spectra_not_moved": left}


def verify(root, edges=("Ni_K", "Li_K"), skip: int = 3) -> list[dict]:
    """Run FEFF again on one moved spectrum per edge (its canonical input) and
    compare with the stored result: the move is right when they agree to
    FEFF's numerical noise."""
    import tempfile

    import numpy as np

    from mmspec_widgets.simulate.campaign import execute_job, plan_structure
    from mmspec_widgets.simulate.structures import StructureSpec

    store = CampaignStore(root)
    out = []
    for m in store.structures()[skip:]:
        spec = StructureSpec.from_dict(m["spec"])
        todo = [e for e in edges if e in m["sites"] and e not in {r["edge"] for r in out}]
        if not todo:
            continue
        _man, jobs = plan_structure(spec, list(m["sites"]), F.FeffParams(**m["feff"]),
                                    m["radius"], sites=m["sites"])
        for e in todo:
            job = next((j for j in jobs if j["edge"] == e and store.has(j["key"])
                        and "rekeyed_from" in store.get(j["key"])["meta"]), None)
            if job is None:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                r = execute_job(job, tmp)
                again = CampaignStore(tmp).get(job["key"])
            kept = store.get(job["key"])
            y0, y1 = np.asarray(kept["mu"]), np.asarray(again["mu"])
            out.append({"edge": e, "structure_id": m["structure_id"], "site": job["site"],
                        "status": r["status"],
                        "max_abs_difference_over_max": float(np.max(np.abs(y0 - y1))
                                                             / np.max(np.abs(y0)))})
        if len(out) == len(edges):
            break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", default="data/sim", help="campaign store")
    ap.add_argument("--validation", default="data/validation", help="validation store")
    ap.add_argument("--verify", action="store_true",
                    help="only run FEFF again on one moved Ni K and Li K spectrum and compare")
    args = ap.parse_args(argv)
    if args.verify:
        print(json.dumps(verify(args.sim), indent=1))
        return 0
    out = {"validation": rekey_validation(args.validation),
           "sim": rekey_structures(args.sim, progress=True)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
