"""Resumable simulation campaigns (FEFF10 K edges + edrixs L2,3) on Dask.

Layout of a campaign store (``out``)::

    out/structures/<structure id>.json   spec, region labels, sites, job keys
    out/spectra/<kk>/<job key>.npz        one finished spectrum (omega, mu, meta)
    out/failed/<job key>.json             one failed job (error text)
    out/campaign.json                     parameters of every run
    out/alignment.json                    per-edge energy shifts (dataset.py)

A job's key is a hash of everything that determines its result (the FEFF
input text and engine version; for edrixs the element, d-count, field
parameters and model constants), so an interrupted campaign resumes without
recomputing, and identical multiplet cases are computed once for all
structures. Every spectrum is written, atomically, by the worker that
computed it, as soon as it is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..edges import EDGE_ORDER, get_edge
from ..errors import MMSpecError
from .feff import FeffParams, FeffRunError, feff_input, feff_version
from .labels import DEFAULT_RADIUS, region_labels, select_sites, site_environment
from .structures import COMPOSITIONS, PHASES, StructureSpec

__all__ = ["CampaignStore", "make_specs", "make_phase_specs", "plan_structure", "run_campaign", "execute_job",
           "rekey_structures",
           "feff_job"]

log = logging.getLogger("mmspec_widgets.simulate")

#: Bumped when the meaning of stored results changes.
STORE_VERSION = 1


# --------------------------------------------------------------------------
# store
class CampaignStore:
    """Append-only store of a campaign (see module docstring for the layout).

    Parameters
    ----------
    root : path
        Folder of the store (created if missing).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for sub in ("structures", "spectra", "failed"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- spectra
    def spectrum_path(self, key: str) -> Path:
        return self.root / "spectra" / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.spectrum_path(key).exists()

    def put(self, key: str, omega: np.ndarray, mu: np.ndarray, meta: dict) -> Path:
        """Write one spectrum atomically."""
        p = self.spectrum_path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        os.close(fd)
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, omega=np.asarray(omega, float), mu=np.asarray(mu, float),
                                meta=np.array(json.dumps(meta, default=_jsonable)))
        os.replace(tmp, p)
        fp = self.root / "failed" / f"{key}.json"
        if fp.exists():
            fp.unlink()
        return p

    def get(self, key: str) -> dict:
        """Read one spectrum: dict with omega, mu, meta."""
        with np.load(self.spectrum_path(key), allow_pickle=False) as z:
            return {"omega": z["omega"], "mu": z["mu"], "meta": json.loads(str(z["meta"]))}

    def move(self, old_key: str, new_key: str) -> None:
        """Store the spectrum of ``old_key`` under ``new_key`` (recording
        ``rekeyed_from`` in its metadata) and remove the old file."""
        sp = self.get(old_key)
        self.put(new_key, sp["omega"], sp["mu"], {**sp["meta"], "rekeyed_from": old_key})
        self.spectrum_path(old_key).unlink()

    def keys(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "spectra").glob("*/*.npz"))

    # -- failures
    def fail(self, key: str, meta: dict) -> None:
        p = self.root / "failed" / f"{key}.json"
        p.write_text(json.dumps(meta, indent=1, default=_jsonable))

    def failures(self) -> dict[str, dict]:
        out = {}
        for p in sorted((self.root / "failed").glob("*.json")):
            try:
                out[p.stem] = json.loads(p.read_text())
            except ValueError:
                continue
        return out

    # -- runs
    def log_run(self, params: dict) -> None:
        """Append the parameters of one campaign run to ``campaign.json``."""
        p = self.root / "campaign.json"
        try:
            runs = json.loads(p.read_text()).get("runs", []) if p.exists() else []
        except ValueError:
            runs = []
        runs.append(params)
        p.write_text(json.dumps({"runs": runs}, indent=1, default=_jsonable))

    # -- structures
    def put_structure(self, manifest: dict) -> None:
        p = self.root / "structures" / f"{manifest['structure_id']}.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, default=_jsonable))
        os.replace(tmp, p)

    def manifest(self, structure_id: str) -> dict | None:
        """The stored manifest of one structure (None if it has none)."""
        p = self.root / "structures" / f"{structure_id}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def structures(self) -> list[dict]:
        """Structure manifests in campaign order."""
        out = []
        for p in (self.root / "structures").glob("*.json"):
            out.append(json.loads(p.read_text()))
        return sorted(out, key=lambda m: (m.get("order", 0), m["structure_id"]))


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=_jsonable).encode()).hexdigest()


# --------------------------------------------------------------------------
# specs
_DEFECT_BLOCK = ["none"] * 6 + ["vacancy"] * 6 + ["antisite"] * 5 + ["both"] * 3
_COMP_BLOCK = ["NMC111", "NMC532", "NMC622", "NMC811", "random"] * 4


#: Kinds per block of 20 of :func:`make_specs` with ``kinds="all"``.
PHASE_BLOCK = {"layered": 4, "li_rich": 8, "rock_salt": 4, "spinel": 4}


def _random_composition(rng) -> tuple[float, float, float]:
    """(Ni, Mn, Co) of a "random" spec: Ni 0.33 - 0.9, the rest split at random."""
    ni = rng.uniform(0.33, 0.9)
    w = rng.uniform(0.15, 0.85)
    return (ni, (1 - ni) * w, (1 - ni) * (1 - w))


def _defect_counts(rng, defect: str) -> tuple[int, int]:
    """(O vacancies, antisites) of a spec of defect class ``defect``."""
    n_vac = int(rng.integers(1, 4)) if defect in ("vacancy", "both") else 0
    n_anti = int(rng.integers(1, 3)) if defect in ("antisite", "both") else 0
    return n_vac, n_anti


def make_specs(n: int, seed: int = 0, supercell=(4, 4, 1), kinds=None) -> list[StructureSpec]:
    """A balanced, interleaved list of ``n`` structure specs.

    Specs come in blocks of 20 that each hold every composition (NMC111, 532,
    622, 811, random) 4 times, the defect classes 6 none / 6 O vacancy /
    5 antisite / 3 both, and Li contents stratified over 0.3 - 1; so any
    prefix of the list is already close to balanced.

    Parameters
    ----------
    n : int
        Number of structures.
    seed : int
        Master seed; spec ``i`` gets seed ``seed * 100003 + i``.
    supercell : tuple of int
        Supercell of every spec (Li2MnO3-like honeycomb specs round the
        in-plane repetitions up to multiples of 3: (4, 4, 1) -> (6, 6, 1)).
    kinds : None, "all", sequence of str or dict, optional
        None: layered NMC only, the list above (unchanged: the shipped
        campaign). Otherwise the structure kinds (``"layered"``, ``"li_rich"``,
        ``"rock_salt"``, ``"spinel"``; :mod:`.phases`) drawn in blocks of 20:
        a dict gives the count of each kind per block (summing to 20), a
        sequence equal shares, ``"all"`` :data:`PHASE_BLOCK`; see
        :func:`make_phase_specs`.
    """
    if n < 1:
        raise MMSpecError(f"n={n!r}: expected at least one structure")
    if kinds is not None:
        return make_phase_specs(n, seed, supercell, kinds)
    specs = []
    for b in range((n + 19) // 20):
        rng = np.random.default_rng([seed, b])
        defects = rng.permutation(_DEFECT_BLOCK)
        comps = rng.permutation(_COMP_BLOCK)
        li_bins = rng.permutation(20)
        for j in range(20):
            i = 20 * b + j
            if i >= n:
                break
            cname = str(comps[j])
            comp = _random_composition(rng) if cname == "random" else COMPOSITIONS[cname]
            k = int(li_bins[j])
            li = 1.0 if k >= 18 else round(0.3 + 0.7 * (k + rng.random()) / 18, 3)
            n_vac, n_anti = _defect_counts(rng, str(defects[j]))
            specs.append(StructureSpec(
                composition=tuple(float(round(c, 4)) for c in comp),
                li=float(li),
                n_o_vacancy=n_vac,
                n_antisite=n_anti,
                li_excess=0.04 if rng.random() < 0.1 else 0.0,
                ordering="clustered" if rng.random() < 0.25 else "random",
                supercell=tuple(supercell),
                seed=int(seed * 100003 + i),
                name=cname,
            ))
    return specs


def _phase_block(kinds) -> list[str]:
    if isinstance(kinds, str):
        if kinds != "all":
            raise MMSpecError(f"kinds={kinds!r}: expected 'all', a sequence or a dict")
        kinds = PHASE_BLOCK
    if not isinstance(kinds, dict):
        kinds = list(kinds)
        if not kinds:
            raise MMSpecError("kinds: expected at least one kind")
        kinds = {k: 20 // len(kinds) + (j < 20 % len(kinds)) for j, k in enumerate(kinds)}
    bad = [k for k in kinds if k not in PHASES]
    if bad or sum(kinds.values()) != 20 or min(kinds.values()) < 0:
        raise MMSpecError(f"kinds={kinds!r}: expected counts of {', '.join(PHASES)} "
                          "summing to 20")
    return [k for k, m in kinds.items() for _ in range(int(m))]


def make_phase_specs(n: int, seed: int = 0, supercell=(4, 4, 1),
                     kinds="all") -> list[StructureSpec]:
    """``n`` specs of layered, Li-rich and reduced surface phases, in blocks of 20.

    Each block holds the kinds in fixed counts (``kinds``, see
    :func:`make_specs`) in random order, each kind with Li contents
    stratified over its range, so any prefix is close to balanced. Per kind:

    * ``layered``: as :func:`make_specs` (NMC111/532/622/811/random, 0 - 3 O
      vacancies, 0 - 2 antisites, x = 0.3 - 1);
    * ``li_rich``: Mn 0.6 - 0.8 of the TMs (Ni:Co 0.3 - 0.7 of the rest),
      Li excess 0.1 - 0.2 of the TM sites (up to Li1.2 M0.8 O2), half of them
      with Li2MnO3-like honeycomb order, Li-layer x = 0.3 - 1, an O vacancy in
      a quarter of them;
    * ``rock_salt``: NMC111/532/622/811 or Mn-rich (Mn 0.6 - 0.8), cation
      mixing 0.1 - 0.5, TMs on 30 - 80 % of the Li-layer sites, 0 - 3 O
      vacancies, x = 0.5 - 1;
    * ``spinel``: the same compositions, 10 - 30 % of the TMs migrated into
      the Li slab (0 - 100 % of them tetrahedral), TMs added on 0 - 25 % of
      the Li-layer sites, 0 - 2 O vacancies, x = 0.3 - 0.7.

    Spec ``i`` gets seed ``seed * 100003 + i``; the draws use their own random
    stream, so these lists never repeat :func:`make_specs`' layered ones.
    """
    if n < 1:
        raise MMSpecError(f"n={n!r}: expected at least one structure")
    block = _phase_block(kinds)
    sc = tuple(int(s) for s in supercell)
    sc3 = (-(-sc[0] // 3) * 3, -(-sc[1] // 3) * 3, sc[2])
    comp_names = ["NMC111", "NMC532", "NMC622", "NMC811", "mn_rich"]
    specs = []
    for b in range((n + 19) // 20):
        rng = np.random.default_rng([seed, b, 14])
        order = rng.permutation(block)
        strata = {k: list(rng.permutation(block.count(k))) for k in sorted(set(block))}
        for j in range(20):
            i = 20 * b + j
            if i >= n:
                break
            kind = str(order[j])
            k = int(strata[kind].pop())
            u = (k + rng.random()) / block.count(kind)  # stratified in [0, 1)

            def mn_rich(rng=rng):
                m = rng.uniform(0.6, 0.8)
                w = rng.uniform(0.3, 0.7)
                return (1 - m) * w, m, (1 - m) * (1 - w)

            common = {"seed": int(seed * 100003 + i), "supercell": sc}
            if kind == "layered":
                cname = comp_names[int(rng.integers(4))] if rng.random() < 0.8 else "random"
                comp = _random_composition(rng) if cname == "random" else COMPOSITIONS[cname]
                n_vac, n_anti = _defect_counts(rng, str(rng.choice(_DEFECT_BLOCK)))
                kw = {"li": 1.0 if u > 0.9 else 0.3 + 0.7 * u / 0.9,
                      "n_o_vacancy": n_vac, "n_antisite": n_anti,
                      "ordering": "clustered" if rng.random() < 0.25 else "random"}
            elif kind == "li_rich":
                cname, comp = "mn_rich", mn_rich()
                honey = bool(rng.random() < 0.5)
                kw = {"li": 1.0 if u > 0.85 else 0.3 + 0.7 * u / 0.85,
                      "li_excess": float(round(rng.uniform(0.1, 0.2), 3)),
                      "honeycomb": honey,
                      "n_o_vacancy": int(rng.random() < 0.25)}
                if honey:
                    common["supercell"] = sc3
            else:
                cname = comp_names[int(rng.integers(5))]
                comp = mn_rich() if cname == "mn_rich" else COMPOSITIONS[cname]
                if kind == "rock_salt":
                    kw = {"li": 0.5 + 0.5 * u, "mixing": rng.uniform(0.1, 0.5),
                          "tm_in_li": rng.uniform(0.3, 0.8),
                          "n_o_vacancy": int(rng.integers(0, 4))}
                else:
                    kw = {"li": 0.3 + 0.4 * u, "mixing": rng.uniform(0.1, 0.3),
                          "tetrahedral": rng.uniform(0.0, 1.0),
                          "tm_in_li": rng.uniform(0.0, 0.25),
                          "n_o_vacancy": int(rng.integers(0, 3))}
            kw = {k_: (float(round(v, 3)) if isinstance(v, float) else v)
                  for k_, v in kw.items()}
            specs.append(StructureSpec(
                composition=tuple(float(round(c, 4)) for c in comp),
                phase=kind, name=f"{kind}:{cname}", **common, **kw))
    return specs


# --------------------------------------------------------------------------
# planning
def edrixs_job(element: str, oxidation: float, env: dict) -> dict:
    """The multiplet (edrixs) job of an L2,3 edge: ``element`` at ``oxidation``
    in the site environment ``env`` (geometry, crystal field)."""
    from . import multiplets as M

    ox = int(round(oxidation))
    geometry = env.get("geometry", "octahedral")
    tdq, ds, dt = M.crystal_field(element, ox, env["coordination"], env["mean_bond"], geometry)
    params = {"element": element, "oxidation": ox, "coordination": min(int(env["coordination"]), 6),
              "ten_dq": tdq, "ds": ds, "dt": dt,
              "model": {"slater_scale": M.SLATER_SCALE, "delta_u_pd": M.DELTA_U_PD,
                        "u_dd": M.U_DD[element], "de": M.DE},
              "engine": M.edrixs_version()}
    if geometry != "octahedral":  # NMC sites (octahedral) keep their keys
        params["geometry"] = geometry
    return {"engine": "edrixs", "key": "x" + _hash(params)[:23], "params": params,
            "edge": f"{element}_L23"}


def feff_job(inp: str, edge: str, params: FeffParams, **meta) -> dict:
    """A FEFF job: its input text, keyed by everything that fixes its result
    (input text, engine version, store version)."""
    key = "f" + _hash({"inp": inp, "engine": feff_version(), "v": STORE_VERSION})[:23]
    return {"engine": "feff", "key": key, "edge": edge, "inp": inp,
            "params": params.to_dict(), **meta}


def plan_structure(spec: StructureSpec, edges=None, feff: FeffParams | None = None,
                   radius: float = DEFAULT_RADIUS, n_o: int = 2, order: int = 0,
                   sites: dict | None = None):
    """Build ``spec``, pick its sites, and list its jobs.

    ``sites`` (edge -> list of ``{"site", "class", "weight"}``, as in a stored
    manifest) keeps the sites already chosen for the structure instead of
    picking them again: a structure's sites are part of its record.

    Returns
    -------
    (manifest, jobs) : (dict, list of dict)
        ``manifest`` (JSON-able: spec, region labels, per-edge sites with their
        job keys) and the jobs (FEFF jobs carry their input text).
    """
    feff = feff or FeffParams()
    edges = list(edges or EDGE_ORDER)
    nmc = spec.build()
    labels = region_labels(nmc, radius)
    if sites is None:
        sites = select_sites(nmc, radius, n_o=n_o)
    else:
        sites = {e: [{k: r[k] for k in ("site", "class", "weight") if k in r} for r in recs]
                 for e, recs in sites.items()}
    sid = spec.key
    s = nmc.structure
    oxi = nmc.oxidation
    jobs: list[dict] = []
    per_edge: dict[str, list[dict]] = {}
    for edge in edges:
        e = get_edge(edge)
        for pick in sites.get(edge, []):
            site = pick["site"]
            env = site_environment(nmc, site)
            rec = {"site": int(site),  # class and weight: as picked or as recorded
                   **{k: pick[k] for k in ("class", "weight") if k in pick},
                   "element": e.element, "oxidation": float(oxi[site]),
                   "coordination": env["coordination"], "mean_bond": env["mean_bond"],
                   "distance": float(np.linalg.norm(s[site].coords - nmc.centre))}
            if e.shell == "K":
                inp = feff_input(nmc, site, feff, title=f"{sid}")
                job = feff_job(inp, edge, feff, structure_id=sid, site=int(site))
            else:
                job = edrixs_job(e.element, oxi[site], env)
            rec["key"] = job["key"]
            per_edge.setdefault(edge, []).append(rec)
            jobs.append(job)
    manifest = {
        "structure_id": sid,
        "order": order,
        "spec": spec.to_dict(),
        "defect": spec.defect,
        "phase": spec.phase,
        "labels": labels,
        "radius": radius,
        "centre": nmc.centre.tolist(),
        "n_atoms": len(s),
        "counts": nmc.composition_counts(),
        "o_holes": nmc.o_holes,
        "lattice": {"a": nmc.info["a"], "c": nmc.info["c"]},
        "sites": per_edge,
        "feff": feff.to_dict(),
        "store_version": STORE_VERSION,
    }
    return manifest, jobs


# --------------------------------------------------------------------------
# execution
def execute_job(job: dict, root: str) -> dict:
    """Run one job and store its result (or its failure) in ``root``.

    Returns a small status dict: key, engine, edge, status ("done", "failed",
    "skipped"), wall_s, error.
    """
    store = CampaignStore(root)
    key = job["key"]
    base = {"key": key, "engine": job["engine"], "edge": job["edge"]}
    if store.has(key):
        return {**base, "status": "skipped", "wall_s": 0.0}
    t0 = time.perf_counter()
    try:
        if job["engine"] == "feff":
            from .feff import run_feff

            res = run_feff(job["inp"])
            meta = {"engine": res["engine"], "edge": job["edge"], "params": job["params"],
                    "structure_id": job.get("structure_id"), "site": job.get("site"),
                    "wall_s": res["wall_s"], "e": np.asarray(res["e"]).tolist(),
                    "inp": job["inp"]}  # the exact input: provenance beyond the key
        else:
            p = job["params"]
            res = _edrixs_run(p)
            meta = {"engine": res["engine"], "edge": job["edge"], "params": p,
                    "wall_s": res["wall_s"]}
        meta["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        store.put(key, res["omega"], res["mu"], meta)
        return {**base, "status": "done", "wall_s": time.perf_counter() - t0}
    except (FeffRunError, MMSpecError, Exception) as exc:  # one site never stops a campaign
        err = f"{type(exc).__name__}: {exc}"
        store.fail(key, {**base, "error": err, "wall_s": time.perf_counter() - t0,
                         "structure_id": job.get("structure_id"), "site": job.get("site"),
                         "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return {**base, "status": "failed", "wall_s": time.perf_counter() - t0, "error": err}


def _edrixs_run(p: dict) -> dict:
    """edrixs run from stored field parameters (bypasses the bond-length scaling)."""
    from . import multiplets as M

    n = M.d_count(p["element"], p["oxidation"])
    t0 = time.perf_counter()
    om, mu = M.l23_cached(p["element"], n, p["ten_dq"], p["ds"], p["dt"])
    return {"omega": om, "mu": mu, "wall_s": time.perf_counter() - t0,
            "engine": M.edrixs_version()}


def run_campaign(
    specs=None,
    edges=None,
    out: str | os.PathLike = "data/sim",
    seed: int = 0,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    n_structures: int | None = None,
    feff: FeffParams | None = None,
    fms: float | None = None,
    radius: float = DEFAULT_RADIUS,
    n_o: int = 2,
    max_jobs: int | None = None,
    kinds=None,
) -> dict:
    """Run (or resume) a simulation campaign.

    Parameters
    ----------
    specs : list of StructureSpec or int, optional
        Structures to simulate, or a number of structures for
        :func:`make_specs` (also accepted as ``n_structures``).
    edges : list of str, optional
        Edge names (default: all of the edge table).
    out : path
        Campaign store folder.
    seed : int
        Master seed for :func:`make_specs`.
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler; ``"sync"`` runs
        the jobs one after the other in this process (no Dask).
    n_workers : int, optional
        Worker processes of the local Dask cluster (default: CPU count);
        0 means ``"sync"``.
    progress : bool
        Show a tqdm progress bar.
    feff : FeffParams, optional
        FEFF settings; ``fms`` overrides its FMS radius (Angstrom).
    radius : float
        Region radius in Angstrom.
    n_o : int
        O sites simulated per region.
    max_jobs : int, optional
        Stop after this many computed jobs (for tests and short sessions).
    kinds : None, "all", sequence or dict, optional
        Structure kinds when ``specs`` is a number (see :func:`make_specs`;
        None: layered NMC, the shipped campaign).

    Returns
    -------
    dict
        Summary: n_structures, n_jobs, done, skipped, failed, failures
        (list of (key, error)), wall_s.
    """
    t_start = time.perf_counter()
    if specs is None:
        specs = n_structures
    if specs is None:
        raise MMSpecError("run_campaign: give specs (a list of StructureSpec) or n_structures")
    if isinstance(specs, int | np.integer):
        specs = make_specs(int(specs), seed=seed, kinds=kinds)
    specs = list(specs)
    feff = feff or FeffParams()
    if fms is not None:
        feff = replace(feff, rfms=float(fms))
    edges = list(edges or EDGE_ORDER)
    for e in edges:
        get_edge(e)
    store = CampaignStore(out)
    store.log_run({
        "n_structures": len(specs), "first_structure": specs[0].key if specs else None,
        "kinds": kinds,
        "edges": edges, "seed": seed, "feff": feff.to_dict(), "radius": radius, "n_o": n_o,
        "store_version": STORE_VERSION, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })

    def planned():
        """Plan structures lazily, yielding their jobs in campaign order."""
        seen: set[str] = set()
        for order, spec in enumerate(specs):
            old = store.manifest(spec.key)
            try:
                manifest, jobs = plan_structure(spec, edges, feff, radius, n_o, order,
                                                sites=_stored_sites(old, edges))
            except MMSpecError as exc:
                log.warning("structure %s skipped: %s", spec.key, exc)
                store.fail(f"s{spec.key}", {"structure": spec.to_dict(), "error": str(exc)})
                continue
            _check_same_settings(store, manifest, old)
            store.put_structure(manifest)
            for job in jobs:
                if job["key"] in seen or store.has(job["key"]):
                    continue
                seen.add(job["key"])
                yield job

    summary = {"n_structures": len(specs), "n_jobs": 0, "done": 0, "skipped": 0, "failed": 0,
               "failures": []}

    def record(r):
        summary["n_jobs"] += 1
        summary[r["status"]] = summary.get(r["status"], 0) + 1
        if r["status"] == "failed":
            summary["failures"].append((r["key"], r.get("error", "")))
        log.info("%s %s %s %.1fs", r["status"], r["edge"], r["key"], r.get("wall_s", 0.0))

    bar = _bar(progress)
    sync = scheduler == "sync" or n_workers == 0
    watchdog = _start_watchdog()
    try:
        if sync:
            for job in planned():
                if max_jobs is not None and summary["done"] + summary["failed"] >= max_jobs:
                    break
                record(execute_job(job, str(store.root)))
                bar.update(1)
        else:
            _run_dask(planned(), store, scheduler, n_workers, record, bar, max_jobs, summary)
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
    bar.close()
    summary["wall_s"] = time.perf_counter() - t_start
    fails = store.failures()
    summary["failures_in_store"] = len(fails)
    if summary["failures"]:
        msg = "\n".join(f"  {k}: {e}" for k, e in summary["failures"][:20])
        print(f"{summary['failed']} job(s) failed:\n{msg}", file=sys.stderr)
    return summary


def _stored_sites(manifest: dict | None, edges) -> dict | None:
    """The sites a stored structure (its ``manifest``) was planned with, for
    ``edges`` (None if the structure is new or lacks one of them)."""
    sites = (manifest or {}).get("sites", {})
    return {e: sites[e] for e in edges} if manifest and set(edges) <= set(sites) else None


def _same_labels(a: dict, b: dict) -> bool:
    """Region labels equal to 1e-9 (NaN equal to NaN), strings exactly."""
    if set(a) != set(b):
        return False
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, str) or isinstance(vb, str) or va is None or vb is None:
            if va != vb:
                return False
        elif not np.allclose(np.asarray(va, float), np.asarray(vb, float), rtol=0, atol=1e-9,
                             equal_nan=True):
            return False
    return True


def _same_sites(a: dict, b: dict) -> bool:
    """The sites of two manifests hold the same atoms in the same local
    geometry: element, oxidation state, O coordination and mean M-O distance
    (to 1e-6 Angstrom) of every recorded site."""
    if set(a) != set(b):
        return False
    for e in a:
        if len(a[e]) != len(b[e]):
            return False
        for ra, rb in zip(a[e], b[e], strict=True):
            if any(ra.get(k) != rb.get(k) for k in ("site", "element", "coordination")):
                return False
            if not np.allclose([ra.get("oxidation", np.nan), ra.get("mean_bond", np.nan)],
                               [rb.get("oxidation", np.nan), rb.get("mean_bond", np.nan)],
                               rtol=0, atol=1e-6, equal_nan=True):
                return False
    return True


def rekey_structures(root: str | os.PathLike, progress: bool = False) -> dict:
    """Re-plan every stored structure with its own sites and settings and move
    each stored spectrum whose job key changed to the new key.

    A FEFF job's key hashes its input text. Text that depended on float
    rounding (the order of equidistant atoms, the sign of a zero coordinate)
    is now canonical (:func:`~mmspec_widgets.simulate.feff.feff_input`), so
    the keys of spectra computed before change while their physics does not:
    same structure (its spec, region labels and composition, and every
    recorded site's element, oxidation state, O coordination and mean M-O
    distance are checked against the manifest), same site, same settings.
    Each moved spectrum keeps its data and records ``rekeyed_from`` in its
    metadata (:meth:`CampaignStore.move`); the
    manifest is rewritten with the new keys. Structures whose rebuild differs
    from the record in any of these are left alone and reported.

    Returns
    -------
    dict
        ``structures``, ``moved``, ``unchanged``, ``missing`` (old key not in
        the store), ``mismatched`` (structure ids whose rebuild differs).
    """
    from tqdm.auto import tqdm

    store = CampaignStore(root)
    out = {"structures": 0, "moved": 0, "unchanged": 0, "missing": 0, "mismatched": []}
    for m in tqdm(store.structures(), disable=not progress, desc="rekey"):
        spec = StructureSpec.from_dict(m["spec"])
        edges = list(m["sites"])
        new, _jobs = plan_structure(spec, edges, FeffParams(**m["feff"]), m["radius"],
                                    order=m.get("order", 0), sites=m["sites"])
        same = (_same_labels(new["labels"], m["labels"]) and new["counts"] == m["counts"]
                and _same_sites(new["sites"], m["sites"]))
        if not same:
            out["mismatched"].append(m["structure_id"])
            continue
        out["structures"] += 1
        for e in edges:
            for old_rec, rec in zip(m["sites"][e], new["sites"][e], strict=True):
                old_key, key = old_rec["key"], rec["key"]
                if old_key == key or store.has(key):
                    out["unchanged"] += 1
                elif not store.has(old_key):
                    out["missing"] += 1
                else:
                    store.move(old_key, key)
                    out["moved"] += 1
        store.put_structure(new)
    return out


def _check_same_settings(store: CampaignStore, manifest: dict, old: dict | None) -> None:
    """Refuse to re-plan a structure of the store (``old``: its stored
    manifest) with other FEFF settings or another region definition (its
    manifest would then point at spectra of two different simulations)."""
    if old is None:
        return
    for field in ("feff", "radius"):
        if field in old and old[field] != manifest[field]:
            raise MMSpecError(
                f"{store.root}: structure {manifest['structure_id']} was simulated with "
                f"{field}={old[field]!r}, this run asks for {manifest[field]!r}; simulate "
                "into another store (--out) so the two never mix")


# Watches a campaign process; when it is gone (killed), kills the processes it
# had started (Dask workers, FEFF stages), which would otherwise run on for the
# rest of their job. Kept to the standard library and psutil: starts at once.
_WATCHDOG = """
import os, sys, time
import psutil
me = os.getpid()
try:
    campaign = psutil.Process(int(sys.argv[1]))
except psutil.Error:
    sys.exit(0)
seen = {}
while True:
    try:
        if campaign.status() == psutil.STATUS_ZOMBIE:
            break
        for c in campaign.children(recursive=True):
            if c.pid != me:
                seen[c.pid] = c
    except psutil.Error:
        break
    time.sleep(0.2)
for c in seen.values():
    try:
        if c.is_running():
            c.kill()
    except psutil.Error:
        pass
"""


def _start_watchdog():
    """A small process that stops this campaign's workers and FEFF stages
    soon after this process is killed (None without psutil)."""
    import subprocess

    try:
        import psutil  # noqa: F401 - comes with dask.distributed
    except ImportError:  # pragma: no cover
        return None
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _bar(progress: bool):
    from tqdm.auto import tqdm

    return tqdm(desc="spectra", unit="job", disable=not progress,
                mininterval=1.0 if sys.stderr.isatty() else 60.0)


def _run_dask(jobs, store, scheduler, n_workers, record, bar, max_jobs, summary):
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        n_cap = max(2 * len(client.scheduler_info().get("workers", {})), 2) + 2
        ac = as_completed()
        it = iter(jobs)
        inflight = 0
        prio = 0

        def submit_next():
            nonlocal inflight, prio
            job = next(it, None)
            if job is None:
                return False
            fut = client.submit(execute_job, job, str(store.root), key=f"job-{job['key']}",
                                priority=-prio, pure=False)
            prio += 1
            ac.add(fut)
            inflight += 1
            return True

        # keep a short queue so planning (structure building) overlaps computing
        while inflight < n_cap and submit_next():
            pass
        for fut in ac:
            inflight -= 1
            try:
                r = fut.result()
            except Exception as exc:  # worker died: record and go on
                r = {"key": fut.key, "engine": "?", "edge": "?", "status": "failed",
                     "error": f"{type(exc).__name__}: {exc}"}
            record(r)
            bar.update(1)
            if max_jobs is not None and summary["done"] + summary["failed"] >= max_jobs:
                break
            while inflight < n_cap and submit_next():
                pass
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
