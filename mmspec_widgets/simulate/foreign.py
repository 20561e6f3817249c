"""Simulated O K and Mn L2,3 spectra of Mn oxides that are not NMC.

A model trained on NMC regions should say when it is shown another material.
To test that, the spinel Mn3O4 (tetrahedral Mn2+, octahedral Mn3+), the
perovskite LaMnO3 (Jahn-Teller distorted Mn3+) and the spinel LiMn2O4
(Mn3.5+) are simulated here by the training set's own chain, so that the
only difference from the NMC spectra is the material:

* structures from :mod:`mmspec_widgets.simulate.references` (space group,
  literature lattice and positions); every crystallographically distinct
  O and Mn environment (:func:`~mmspec_widgets.simulate.references.absorber_sites`)
  weighted by its multiplicity;
* O K: FEFF10 on each O site with the campaign's settings
  (:data:`TRAINING_FEFF`: FMS 5 Angstrom, RPA core hole, no SCF), the input
  written by :func:`~mmspec_widgets.simulate.feff.feff_input`;
* Mn L2,3: edrixs on each Mn site at its formal oxidation state, O
  coordination and mean Mn-O distance
  (:func:`~mmspec_widgets.simulate.labels.site_environment`, the job of
  :func:`mmspec_widgets.simulate.campaign.edrixs_job`); a fractional state
  (LiMn2O4) is the two neighbouring integer states in proportion, the way an
  NMC region mixes its Mn3+ and Mn4+ sites; a tetrahedral site takes the
  tetrahedral field (:func:`~mmspec_widgets.simulate.multiplets.crystal_field`);
* the training set's energy shift per edge, L2,3 edge step and intensity
  scale, 0.8 eV Gaussian and standard grids
  (:func:`~mmspec_widgets.simulate.dataset.region_spectrum` with the
  ``data/sim/alignment.json`` the set was assembled with).

FEFF results (and the multiplet results) live in the ``data/validation``
campaign store beside the K-edge reference runs, keyed by their input, so
:func:`foreign_oxide_spectra` reads them without running an engine
(``compute=False``) and recreates them with ``compute=True``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

from ..edges import get_edge
from ..errors import DataError, MMSpecError
from .feff import FeffParams

__all__ = ["FOREIGN_OXIDES", "FOREIGN_EDGES", "TRAINING_FEFF", "foreign_oxide_jobs",
           "foreign_oxide_spectra"]

#: The non-NMC Mn oxides (names of ``references.REFERENCE_COMPOUNDS``).
FOREIGN_OXIDES = ("Mn3O4", "LaMnO3", "LiMn2O4")

#: Edges simulated for them (EELS edges of a Mn oxide).
FOREIGN_EDGES = ("O_K", "Mn_L23")

#: FEFF settings of the NMC training campaign (``run_campaign``'s default; the
#: training set's ``feff_params`` attribute), not the SCF settings of
#: :func:`mmspec_widgets.validate.feff_params`.
TRAINING_FEFF = FeffParams()

_TET_ANGLES = (95.0, 125.0)  # degrees: every O-M-O angle of a tetrahedron (109.5)


def _geometry(structure, site: int, env: dict) -> str:
    """"tetrahedral" for 4 O neighbours at tetrahedron angles, else "octahedral"."""
    if env["coordination"] != 4:
        return "octahedral"
    centre = structure[site].coords
    vecs = [n.coords - centre for n in structure.get_neighbors(structure[site], 2.5)
            if n.specie.symbol == "O"]
    angles = []
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            c = np.dot(vecs[i], vecs[j]) / np.linalg.norm(vecs[i]) / np.linalg.norm(vecs[j])
            angles.append(float(np.degrees(np.arccos(np.clip(c, -1, 1)))))
    lo, hi = _TET_ANGLES
    return "tetrahedral" if all(lo <= a <= hi for a in angles) else "octahedral"


def _mn_states(c, env: dict) -> list[tuple[int, float]]:
    """(integer oxidation state, share) of one Mn site of compound ``c``."""
    label = "tet" if env["coordination"] == 4 else "oct"
    ox = float(c.site_oxidation.get(label, c.oxidation))
    lo = int(np.floor(ox + 1e-9))
    w = ox - lo
    return [(lo, 1.0)] if w < 1e-6 else [(lo, 1.0 - w), (lo + 1, w)]


def foreign_oxide_jobs(name: str) -> dict[str, list[dict]]:
    """Jobs of one compound and their site records.

    Returns
    -------
    dict
        Edge -> list of site records ``{"site", "weight", "key", "job", ...}``
        (O K: ``n_neighbours``, ``mean_bond``; Mn L2,3: ``oxidation``,
        ``coordination``, ``mean_bond``, ``geometry``); weights of an edge sum
        to 1.
    """
    from .campaign import edrixs_job, feff_job
    from .feff import feff_input
    from .labels import site_environment
    from .references import REFERENCE_COMPOUNDS, absorber_sites, build_reference

    if name not in FOREIGN_OXIDES:
        raise MMSpecError(f"unknown foreign oxide {name!r}: expected one of "
                          f"{', '.join(FOREIGN_OXIDES)}")
    c = REFERENCE_COMPOUNDS[name]
    built = build_reference(name)
    s = built.structure
    out: dict[str, list[dict]] = {"O_K": [], "Mn_L23": []}
    for g in absorber_sites(name, built, "O"):
        inp = feff_input(built, g["site"], TRAINING_FEFF, title=f"foreign {name}")
        job = feff_job(inp, "O_K", TRAINING_FEFF, compound=name, site=int(g["site"]))
        out["O_K"].append({"site": int(g["site"]), "weight": g["weight"], "key": job["key"],
                           "n_neighbours": g["n_neighbours"], "mean_bond": g["mean_bond"],
                           "job": job})
    for g in absorber_sites(name, built, "Mn"):
        env = site_environment(built, g["site"])
        geometry = _geometry(s, g["site"], env)
        for ox, share in _mn_states(c, env):
            job = edrixs_job("Mn", ox, {**env, "geometry": geometry})
            out["Mn_L23"].append({"site": int(g["site"]), "weight": g["weight"] * share,
                                  "key": job["key"], "oxidation": ox,
                                  "coordination": int(env["coordination"]),
                                  "mean_bond": float(env["mean_bond"]), "geometry": geometry,
                                  "job": job})
    return out


def _alignment(alignment) -> dict:
    """The training set's per-edge shifts and L2,3 scales."""
    from ..paths import data_dir

    if isinstance(alignment, dict):
        return alignment
    p = Path(alignment) if alignment is not None else data_dir() / "sim" / "alignment.json"
    if not p.exists():
        raise DataError(f"{p}: no energy alignment of the training set found; pass "
                        "alignment=<alignment.json of the campaign store>")
    return json.loads(p.read_text())


def foreign_oxide_spectra(names=FOREIGN_OXIDES, store=None, compute: bool = False,
                          alignment=None) -> xr.Dataset:
    """O K and Mn L2,3 spectra of non-NMC Mn oxides, made like the training set's.

    Parameters
    ----------
    names : str or sequence of str
        Compounds (:data:`FOREIGN_OXIDES`); one sample each, in this order.
    store : path or CampaignStore, optional
        Store of the engine runs (default ``data/validation``).
    compute : bool
        Run FEFF / edrixs for jobs missing from the store (tens of seconds per
        O site) and store them; False: read the store only.
    alignment : dict or path, optional
        Energy shifts and L2,3 scales (default the training set's,
        ``data/sim/alignment.json``).

    Returns
    -------
    xarray.Dataset
        dim ``sample``; ``O_K`` (``sample``, ``energy_O_K``) and ``Mn_L23``
        (``sample``, ``energy_Mn_L23``) on the standard grids, edge-step
        normalised like the training set; labels where they are defined
        (``mn_oxidation``, TM fractions, ``coordination``, ``o_vacancy``,
        ``antisite``, ``amount_Mn_L23``; ``li_content`` and the Ni/Co
        oxidation states NaN); coords ``structure_id`` (``foreign-<name>``),
        ``split`` (``"foreign"``), ``defect``, ``composition`` (the name) and
        ``compound``; attrs as the training set's (engines, FEFF settings,
        alignment, ``fwhm_eV``, normalisation) plus ``compounds`` (JSON:
        structure, sites, job keys, engine wall times).

    Raises
    ------
    DataError
        If a job is missing from the store and ``compute`` is False, or an
        engine fails.
    """
    from ..paths import data_dir
    from .campaign import STORE_VERSION, CampaignStore, execute_job
    from .dataset import FWHM, git_revision, region_spectrum
    from .feff import feff_version
    from .multiplets import edrixs_version
    from .references import REFERENCE_COMPOUNDS, build_reference

    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise MMSpecError("names: expected at least one compound")
    if not isinstance(store, CampaignStore):
        store = CampaignStore(store if store is not None else data_dir() / "validation")
    align = _alignment(alignment)
    spectra = {e: [] for e in FOREIGN_EDGES}
    info = {}
    labels = {k: [] for k in ("mn_oxidation", "coordination", "amount_Mn_L23")}
    for name in names:
        plan = foreign_oxide_jobs(name)
        missing = [r["job"] for recs in plan.values() for r in recs
                   if not store.has(r["key"])]
        if missing and not compute:
            raise DataError(
                f"{store.root}: {len(missing)} run(s) of {name} not in the store "
                f"({', '.join(j['engine'] + ' ' + j['edge'] for j in missing)}); "
                "foreign_oxide_spectra(..., compute=True) runs them")
        for job in {j["key"]: j for j in missing}.values():
            r = execute_job(job, str(store.root))
            if r["status"] != "done":
                raise DataError(f"{job['engine']} failed on {name} ({job['edge']}): "
                                f"{r.get('error')}")
        sites = {}
        for edge in FOREIGN_EDGES:
            recs = plan[edge]
            y = region_spectrum(store, recs, edge, align["shift"][edge],
                                align["l23_scale"].get(edge, 1.0))
            spectra[edge].append(y)
            sites[edge] = [{**{k: v for k, v in r.items() if k != "job"},
                            "wall_s": round(float(store.get(r["key"])["meta"]
                                                  .get("wall_s", np.nan)), 2)}
                           for r in recs]
        c = REFERENCE_COMPOUNDS[name]
        counts = build_reference(name).structure.composition
        labels["mn_oxidation"].append(float(c.oxidation))
        labels["coordination"].append(float(sum(r["weight"] * r["coordination"]
                                                for r in plan["Mn_L23"])))
        labels["amount_Mn_L23"].append(float(counts["Mn"] / counts["O"]))
        info[name] = {"formula": c.formula, "structure": c.note, "spacegroup": c.spacegroup,
                      "lattice": list(c.lattice), "species": list(c.species),
                      "coords": [list(x) for x in c.coords], "oxidation": c.oxidation,
                      "site_oxidation": c.site_oxidation, "sites": sites}
    n = len(names)
    data_vars = {}
    for edge in FOREIGN_EDGES:
        data_vars[edge] = xr.Variable(("sample", f"energy_{edge}"), np.array(spectra[edge]),
                                      {"long_name": f"{edge} spectrum of the compound",
                                       "units": "edge-step normalised"})
    nan = np.full(n, np.nan)
    data_vars.update({
        "li_content": xr.Variable("sample", nan.copy(),
                                  {"long_name": "undefined outside the layered oxide"}),
        "ni_fraction": xr.Variable("sample", np.zeros(n)),
        "mn_fraction": xr.Variable("sample", np.ones(n)),
        "co_fraction": xr.Variable("sample", np.zeros(n)),
        "ni_oxidation": xr.Variable("sample", nan.copy()),
        "mn_oxidation": xr.Variable("sample", np.array(labels["mn_oxidation"])),
        "co_oxidation": xr.Variable("sample", nan.copy()),
        "o_vacancy": xr.Variable("sample", np.zeros(n, np.int64), {"units": "count"}),
        "antisite": xr.Variable("sample", np.zeros(n, np.int64), {"units": "count"}),
        "coordination": xr.Variable("sample", np.array(labels["coordination"])),
        "amount_Mn_L23": xr.Variable("sample", np.array(labels["amount_Mn_L23"]),
                                     {"long_name": "Mn atoms per O atom (formula)",
                                      "units": "atoms per O"}),
    })
    coords = {f"energy_{e}": (f"energy_{e}", get_edge(e).energy, {"units": "eV"})
              for e in FOREIGN_EDGES}
    coords.update({
        "structure_id": ("sample", np.array([f"foreign-{x}" for x in names])),
        "split": ("sample", np.array(["foreign"] * n)),
        "defect": ("sample", np.array(["none"] * n)),
        "composition": ("sample", np.array(names)),
        "compound": ("sample", np.array(names)),
    })
    attrs = {
        "title": "mmspec_widgets simulated spectra of non-NMC Mn oxides (OOD checks)",
        "engines": json.dumps({"feff": feff_version(), "edrixs": edrixs_version()}),
        "feff_params": json.dumps(TRAINING_FEFF.to_dict()),
        "alignment": json.dumps(align),
        "fwhm_eV": json.dumps(FWHM),
        "normalisation": "edge-step normalised (post-edge ~1); not area/max normalised",
        "store": str(store.root.name),
        "store_version": STORE_VERSION,
        "compounds": json.dumps(info),
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "history": json.dumps([{"step": "foreign_oxide_spectra",
                                "parameters": {"names": names, "compute": bool(compute)}}]),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
