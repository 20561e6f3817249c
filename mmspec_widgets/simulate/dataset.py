"""From a campaign store to the training set (and back from disk).

Processing of every simulated spectrum (one convention for all samples):

1. **Energy alignment**: one constant shift per edge (never per spectrum, so
   chemical shifts survive). The shifts are fixed on the *reference
   structure* (pristine NMC622, x = 1, seed 0; :data:`REFERENCE_SPEC`): its
   region spectrum's main feature is put at ``edges.EDGES[edge].reference``
   (O K: the pre-edge peak; Li K, Mn/Co/Ni K: the strongest peak; L2,3: the L3
   maximum). They are stored with the store (``alignment.json``) and in the
   data set's attributes.
2. **Region average**: the spectra of the sites simulated for an edge are
   averaged on a fine common axis with their manifest weights (each class of
   sites - defect atom, defect neighbour, the rest - weighted by its share of
   the region's atoms; :func:`~mmspec_widgets.simulate.labels.select_sites`).
3. **Edge step** (L2,3 only; FEFF already gives it): multiplets give white
   lines only, so a double arctangent step (2/3 at L3, 1/3 at L2, 1 eV wide,
   at each site's L3 and L2 maxima) is added, and the multiplet intensity is
   scaled by one constant per element chosen so the reference region's L3
   maximum is :data:`L3_TO_STEP` times the step. White-line intensity
   therefore still follows the number of d holes.
4. **Broadening**: Gaussian instrument resolution, FWHM :data:`FWHM` (0.8 eV
   for EELS / soft-XAS edges, 1.0 eV for hard-XAS K edges). Core-hole
   lifetimes are already in the engines' spectra.
5. **Grid**: linear interpolation onto ``edges.edge_grid(edge)``; below the
   computed range the first value is held (flat pre-edge), above it the last.

Stored spectra are *edge-step normalised* (post-edge level ~1: FEFF
normalises at 50 eV above the edge, the L2,3 step is 1) but otherwise not
normalised: models normalise their input the same way for simulated and
experimental spectra.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import xarray as xr

from ..edges import EDGE_ORDER, get_edge
from ..errors import DataError, MMSpecError
from ..paths import data_dir
from .labels import LABELS, PHASE_LABELS, PHASES, li_rich_mn_rich, reduced_surface
from .structures import COMPOSITIONS, StructureSpec

__all__ = [
    "REFERENCE_SPEC",
    "FWHM",
    "gaussian_broaden",
    "L3_TO_STEP",
    "l3_to_step_of",
    "region_spectrum",
    "calibrate_alignment",
    "assemble_training_set",
    "load_training_set",
    "assign_split",
    "set_summary",
]

#: labels whose range :func:`set_summary` reports
SPAN_LABELS = ("li_content", "ni_oxidation", "mn_oxidation", "co_oxidation")

#: Structure whose spectra fix the per-edge energy shifts.
REFERENCE_SPEC = StructureSpec(composition=COMPOSITIONS["NMC622"], li=1.0, seed=0,
                               name="reference NMC622")

#: Gaussian instrument resolution (FWHM, eV) per edge.
FWHM = {e: (1.0 if get_edge(e).modality == ("hard-XAS",) else 0.8) for e in EDGE_ORDER}

#: L3 maximum over edge step of the reference region's L2,3 spectra.
L3_TO_STEP = 6.0

_FINE = 0.05  # eV
_STEP_WIDTH = 1.0  # eV, arctan step half width


# --------------------------------------------------------------------------
# one region
def _site_arrays(store, recs):
    """(omega, mu, weight) of the records' finished spectra, weights summing to 1
    (records of manifests written before weights existed count equally)."""
    out = []
    for r in recs:
        if store.has(r["key"]):
            s = store.get(r["key"])
            out.append((np.asarray(s["omega"], float), np.asarray(s["mu"], float),
                        float(r.get("weight", 1.0))))
    total = sum(w for *_, w in out)
    return [(om, mu, w / total) for om, mu, w in out]


def _l23_step(om: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Double arctan edge step (height 1) at the L3 and L2 maxima of ``mu``."""
    i3 = int(np.argmax(mu))
    p3 = om[i3]
    beyond = om > p3 + 5.0
    p2 = om[beyond][np.argmax(mu[beyond])] if beyond.any() else p3 + 10.0

    def at(p):
        return 0.5 + np.arctan((om - p) / _STEP_WIDTH) / np.pi

    return (2.0 / 3.0) * at(p3) + (1.0 / 3.0) * at(p2)


def gaussian_broaden(y: np.ndarray, fwhm: float, step: float) -> np.ndarray:
    """``y`` (on a grid of spacing ``step`` eV) convolved with a unit-area
    Gaussian of FWHM ``fwhm`` eV, ends held; unchanged when its sigma is under
    0.3 steps."""
    s = fwhm / 2.3548 / step
    if s < 0.3:
        return y
    k = np.arange(-int(4 * s) - 1, int(4 * s) + 2)
    w = np.exp(-0.5 * (k / s) ** 2)
    w /= w.sum()
    pad = len(k) // 2
    return np.convolve(np.pad(y, pad, mode="edge"), w, mode="valid")


def region_spectrum(store, recs: list[dict], edge: str, shift: float = 0.0,
                    l23_scale: float = 1.0, fwhm: float | None = None,
                    grid: np.ndarray | None = None) -> np.ndarray | None:
    """Region spectrum of one edge from its site records.

    Parameters
    ----------
    store : CampaignStore
    recs : list of dict
        Site records of the structure manifest (``manifest["sites"][edge]``).
    edge : str
        Edge name.
    shift : float
        Energy shift (eV) added to the engine's energies.
    l23_scale : float
        Multiplet intensity scale (L2,3 edges).
    fwhm : float, optional
        Gaussian FWHM in eV (default :data:`FWHM`).
    grid : numpy.ndarray, optional
        Target energies (eV); default the edge's standard grid.

    Returns
    -------
    numpy.ndarray or None
        Spectrum on ``grid``; None if no site spectrum is in the store.
    """
    e = get_edge(edge)
    arrays = _site_arrays(store, recs)
    if not arrays:
        return None
    lo = min(a[0][0] for a in arrays)
    hi = max(a[0][-1] for a in arrays)
    fine = np.arange(lo, hi + _FINE / 2, _FINE)
    acc = np.zeros_like(fine)
    for om, mu, w in arrays:
        if e.shell == "L23":
            mu = l23_scale * mu + _l23_step(om, mu)
        acc += w * np.interp(fine, om, mu, left=mu[0], right=mu[-1])
    acc = gaussian_broaden(acc, FWHM[edge] if fwhm is None else fwhm, _FINE)
    g = e.energy if grid is None else np.asarray(grid, float)
    return np.interp(g, fine + shift, acc, left=acc[0], right=acc[-1])


def _main_feature(edge: str, x: np.ndarray, y: np.ndarray) -> float:
    """Energy of the edge's main feature in a broadened spectrum."""
    if edge == "O_K":
        # pre-edge peak: first local maximum above 20 % of the global maximum
        thr = 0.2 * y.max()
        for i in range(1, len(y) - 1):
            if y[i] >= thr and y[i] >= y[i - 1] and y[i] > y[i + 1]:
                return float(x[i])
    return float(x[int(np.argmax(y))])


# --------------------------------------------------------------------------
# alignment
def l3_to_step_of(edge: str, l3_to_step=None) -> float:
    """The L3 maximum over edge step of ``edge`` (:data:`L3_TO_STEP`, or a
    number for all L2,3 edges, or ``{edge: number}`` overriding it)."""
    if l3_to_step is None:
        return float(L3_TO_STEP)
    if isinstance(l3_to_step, dict):
        return float(l3_to_step.get(edge, L3_TO_STEP))
    return float(l3_to_step)


def _check_l3_to_step(l3_to_step) -> None:
    if l3_to_step is None:
        return
    items = l3_to_step.items() if isinstance(l3_to_step, dict) else [("every L2,3 edge",
                                                                      l3_to_step)]
    for edge, v in items:
        if isinstance(l3_to_step, dict) and (edge not in EDGE_ORDER
                                             or get_edge(edge).shell != "L23"):
            raise MMSpecError(f"l3_to_step: {edge!r} is not an L2,3 edge; expected some of "
                              f"{', '.join(e for e in EDGE_ORDER if get_edge(e).shell == 'L23')}")
        try:
            ok = float(v) > 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MMSpecError(f"l3_to_step for {edge}: {v!r}; expected a number above 1 "
                              "(the L3 maximum over the edge step, which is 1)")


def calibrate_alignment(store, manifest: dict | None = None, l3_to_step=None,
                        write: bool = True) -> dict:
    """Per-edge energy shifts and L2,3 intensity scales from the reference.

    Parameters
    ----------
    store : CampaignStore
    manifest : dict, optional
        Manifest of the reference structure (default: the store's manifest of
        :data:`REFERENCE_SPEC`).
    l3_to_step : float or dict, optional
        L3 maximum over edge step of the reference region's L2,3 spectra:
        one number, or ``{edge: number}``; default :data:`L3_TO_STEP`.
    write : bool
        Write the result to ``<store>/alignment.json`` (the store's alignment).

    Returns
    -------
    dict
        ``{"shift": {edge: eV}, "l23_scale": {edge: factor}, "reference": id,
        "l3_to_step": ...}``.
    """
    _check_l3_to_step(l3_to_step)
    if manifest is None:
        p = store.root / "structures" / f"{REFERENCE_SPEC.key}.json"
        if not p.exists():
            raise DataError(
                f"{p}: the reference structure was not simulated; run "
                "run_campaign([REFERENCE_SPEC], out=...) first"
            )
        manifest = json.loads(p.read_text())
    shifts, scales = {}, {}
    for edge, recs in manifest["sites"].items():
        e = get_edge(edge)
        arrays = _site_arrays(store, recs)
        if not arrays:
            continue
        scale = 1.0
        if e.shell == "L23":
            # choose the multiplet scale so that L3 max / step = l3_to_step
            raw = region_spectrum(store, recs, edge, 0.0, 1.0, grid=_axis(arrays))
            step_only = region_spectrum(store, recs, edge, 0.0, 0.0, grid=_axis(arrays))
            wl = raw - step_only
            i3 = int(np.argmax(wl))
            scale = (l3_to_step_of(edge, l3_to_step) - step_only[i3]) / max(wl[i3], 1e-12)
            scales[edge] = float(scale)
        x = _axis(arrays)
        y = region_spectrum(store, recs, edge, 0.0, scale, grid=x)
        shifts[edge] = float(e.reference - _main_feature(edge, x, y))
    out = {"shift": shifts, "l23_scale": scales, "reference": manifest["structure_id"],
           "reference_spec": manifest["spec"], "fwhm": FWHM,
           "l3_to_step": L3_TO_STEP if l3_to_step is None else l3_to_step,
           "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if write:
        (store.root / "alignment.json").write_text(json.dumps(out, indent=1))
    return out


def _axis(arrays) -> np.ndarray:
    lo = min(a[0][0] for a in arrays)
    hi = max(a[0][-1] for a in arrays)
    return np.arange(lo, hi + _FINE / 2, _FINE)


# --------------------------------------------------------------------------
# the data set
def assign_split(manifests: list[dict], every: int = 5) -> dict[str, str]:
    """Fixed, stratified train/test split by structure.

    Within each phase (:func:`structure_phase`) and defect class, in campaign
    order, every ``every``-th structure (the 3rd, 8th, 13th ...) is held out:
    ~20 % test in every class, and the assignment of a structure never
    changes as the campaign grows.
    """
    count: dict[tuple, int] = {}
    out = {}
    for m in sorted(manifests, key=lambda m: (m.get("order", 0), m["structure_id"])):
        d = (structure_phase(m), m.get("defect", "none"))
        k = count.get(d, 0)
        out[m["structure_id"]] = "test" if k % every == 2 else "train"
        count[d] = k + 1
    return out


def structure_phase(manifest: dict) -> str:
    """``"layered"``, ``"li_rich"``, ``"rock_salt"`` or ``"spinel"``: the kind of
    structure a manifest records (layered NMC when it names none)."""
    return str(manifest.get("phase") or manifest.get("spec", {}).get("phase") or "layered")


def git_revision() -> str:
    """Commit of the package's git checkout (``"unknown"`` outside one), for provenance."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # pragma: no cover
        return "unknown"


def resolve_alignment(store, alignment=None, l3_to_step=None) -> dict:
    """Alignment to use: given, the store's, calibrated on the store's
    reference structure, or the project's default (``data/sim``). With
    ``l3_to_step`` (see :func:`calibrate_alignment`): calibrated now on the
    store's reference with that ratio, the store's own file left as it is."""
    if l3_to_step is not None:
        if alignment is not None:
            raise MMSpecError("give either alignment or l3_to_step, not both (l3_to_step "
                              "calibrates the alignment on the store's reference)")
        if not (store.root / "structures" / f"{REFERENCE_SPEC.key}.json").exists():
            raise DataError(f"{store.root}: l3_to_step needs the reference structure "
                            "REFERENCE_SPEC simulated into this store")
        return {**calibrate_alignment(store, l3_to_step=l3_to_step, write=False),
                "source": "store (calibrated now with l3_to_step)"}
    if isinstance(alignment, dict):
        return {**alignment, "source": alignment.get("source", "argument")}
    if alignment is not None:
        p = Path(alignment)
        if not p.exists():
            raise MMSpecError(f"alignment={str(p)!r}: file not found")
        return {**json.loads(p.read_text()), "source": str(p)}
    own = store.root / "alignment.json"
    if own.exists():
        return {**json.loads(own.read_text()), "source": "store"}
    if (store.root / "structures" / f"{REFERENCE_SPEC.key}.json").exists():
        return {**calibrate_alignment(store), "source": "store (calibrated now)"}
    default = data_dir() / "sim" / "alignment.json"
    if default.exists():
        return {**json.loads(default.read_text()), "source": "project default data/sim"}
    raise DataError(
        f"{store.root}: no energy alignment: simulate REFERENCE_SPEC into this store, "
        "or pass alignment=<alignment.json>"
    )


def assemble_training_set(store, path: str | Path | None = None, edges=None,
                          min_edges: int = 1, alignment=None,
                          l3_to_step=None) -> xr.Dataset:
    """Assemble the training set from a campaign store.

    Parameters
    ----------
    store : CampaignStore or path
        The campaign store (``data/sim``).
    path : path, optional
        Where to write the netCDF file (h5netcdf); not written when None.
    edges : list of str, optional
        Edges to include (default: all of the edge table).
    min_edges : int
        Skip structures with fewer finished edges. Structures whose jobs are
        not all finished (done or failed) are left out until they are.
    alignment : dict or path, optional
        Per-edge shifts (``alignment.json``); default: the store's own, else
        calibrated on the store's reference structure, else the project's.
    l3_to_step : float or dict, optional
        L3 maximum over edge step of the L2,3 spectra (one number, or
        ``{edge: number}``): the alignment is calibrated on the store's
        reference with it (see :func:`calibrate_alignment`); default
        :data:`L3_TO_STEP` through the store's alignment.

    Returns
    -------
    xarray.Dataset
        dim ``sample``; one variable per edge on ``energy_<edge>`` (eV);
        label variables; coords ``structure_id``, ``split``, ``defect``,
        ``phase`` (:func:`structure_phase`), ``composition``; provenance in
        attrs.
    """
    from .campaign import STORE_VERSION, CampaignStore
    from .feff import feff_version
    from .multiplets import edrixs_version

    if not isinstance(store, CampaignStore):
        store = CampaignStore(store)
    edges = list(edges or EDGE_ORDER)
    align = resolve_alignment(store, alignment, l3_to_step)
    manifests = [m for m in store.structures()
                 if m["structure_id"] != align["reference"] and m.get("order", 0) >= 0]
    if not manifests:
        raise DataError(f"{store.root}: no simulated structures in the store")
    failed = set(store.failures())
    rows = []
    n_pending = 0
    for m in manifests:
        keys = {r["key"] for recs in m["sites"].values() for r in recs}
        if not all(store.has(k) or k in failed for k in keys):
            n_pending += 1  # still being simulated: enters the set when complete
            continue
        spectra = {}
        for edge in edges:
            recs = m["sites"].get(edge, [])
            y = None
            if recs and edge in align["shift"]:
                y = region_spectrum(store, recs, edge, align["shift"][edge],
                                    align["l23_scale"].get(edge, 1.0))
            spectra[edge] = y
        if sum(v is not None for v in spectra.values()) < min_edges:
            continue
        rows.append((m, spectra))
    if not rows:
        raise DataError(f"{store.root}: no structure has {min_edges} finished edge(s)")
    split = assign_split(manifests)  # all planned structures: stable as they complete
    n = len(rows)
    data_vars = {}
    for edge in edges:
        g = get_edge(edge).energy
        arr = np.full((n, g.size), np.nan)
        for i, (_m, sp) in enumerate(rows):
            if sp[edge] is not None:
                arr[i] = sp[edge]
        data_vars[edge] = xr.Variable(("sample", f"energy_{edge}"), arr,
                                      {"long_name": f"{edge} region spectrum",
                                       "units": "edge-step normalised"})
    for lab in LABELS:
        vals = np.array([float(m["labels"][lab]) for m, _ in rows])
        if lab in ("o_vacancy", "antisite"):
            data_vars[lab] = xr.Variable("sample", vals.astype(np.int64), {"units": "count"})
        else:
            data_vars[lab] = xr.Variable("sample", vals)
    phase = np.array([structure_phase(m) for m, _ in rows])
    unknown = sorted(set(phase) - set(PHASES))
    if unknown:
        raise DataError(f"{store.root}: structures of unknown phase {unknown}; expected "
                        f"one of {', '.join(PHASES)}")
    for ph in PHASE_LABELS:
        data_vars[ph] = xr.Variable("sample", (phase == ph).astype(np.int64),
                                    {"long_name": f"1 where the region's structure is {ph}",
                                     "units": "1"})
    # relative amounts: atoms of each L2,3 element per O atom, what k-factor-scaled
    # edge-jump ratios to O K measure (``mmspec_widgets.quantify``): an EELS edge's
    # intensity is proportional to its atoms. A pixel integrates a column, not the
    # small sphere of the region, so the O per TM is the layered oxide's 2, less the
    # region's share of vacancies (the sphere's own TM/O ratio depends on whether it
    # is centred on a TM or an O site and would tell vacancy from pristine falsely).
    for edge in edges:
        if get_edge(edge).shell != "L23":
            continue
        frac = f"{get_edge(edge).element.lower()}_fraction"
        vals = []
        for m, _ in rows:
            lab = m["labels"]
            n_o = float(lab.get("n_oxygen") or np.nan)
            o_per_tm = 2.0 * (1.0 - float(lab["o_vacancy"]) / (n_o + float(lab["o_vacancy"])))
            vals.append(float(lab[frac]) / o_per_tm)
        data_vars[f"amount_{edge}"] = xr.Variable(
            "sample", np.array(vals),
            {"long_name": f"{get_edge(edge).element} atoms per O atom (layered-oxide column "
                          "with the region's vacancies)", "units": "atoms per O"})
    if "Li_K" in edges:  # Li per O: x Li per TM over the same O per TM
        vals = []
        for m, _ in rows:
            lab = m["labels"]
            n_o = float(lab.get("n_oxygen") or np.nan)
            o_per_tm = 2.0 * (1.0 - float(lab["o_vacancy"]) / (n_o + float(lab["o_vacancy"])))
            vals.append(float(lab["li_content"]) / o_per_tm)
        data_vars["amount_Li_K"] = xr.Variable(
            "sample", np.array(vals),
            {"long_name": "Li atoms per O atom (layered-oxide column with the region's "
                          "vacancies)", "units": "atoms per O"})
    data_vars["seed"] = xr.Variable("sample", np.array([m["spec"]["seed"] for m, _ in rows]))
    data_vars["li_structure"] = xr.Variable(
        "sample", np.array([m["spec"]["li"] for m, _ in rows]),
        {"long_name": "Li content x of the whole supercell (spec)"})
    coords = {f"energy_{e}": (f"energy_{e}", get_edge(e).energy, {"units": "eV"}) for e in edges}
    coords.update({
        "structure_id": ("sample", np.array([m["structure_id"] for m, _ in rows])),
        "split": ("sample", np.array([split[m["structure_id"]] for m, _ in rows])),
        "defect": ("sample", np.array([m["defect"] for m, _ in rows])),
        "phase": ("sample", phase),
        "composition": ("sample", np.array([m["spec"].get("name") or "custom" for m, _ in rows])),
    })
    first = rows[0][0]
    n_o = [m["labels"].get("n_oxygen", np.nan) for m, _ in rows]
    attrs = {
        "title": "mmspec_widgets simulated multimodal spectra of NMC regions",
        "engines": json.dumps({"feff": feff_version(), "edrixs": edrixs_version()}),
        "feff_params": json.dumps(first.get("feff", {})),
        "region_radius_angstrom": float(first.get("radius", np.nan)),
        "alignment": json.dumps(align),
        "fwhm_eV": json.dumps(FWHM),
        "normalisation": "edge-step normalised (post-edge ~1); not area/max normalised",
        "store": str(store.root.name),
        "store_version": STORE_VERSION,
        "n_structures": n,
        "n_structures_pending": n_pending,
        "git_revision": git_revision(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "history": json.dumps([{"step": "assemble_training_set",
                                "parameters": {"edges": edges, "min_edges": min_edges}}]),
    }
    n_o = np.array(n_o, dtype=float)
    if np.isfinite(n_o).any():
        attrs["region_n_oxygen"] = float(np.nanmean(n_o))
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        ds.to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(path)
    return ds


def set_summary(ds: xr.Dataset) -> dict:
    """What chemistry a training set holds: structures per phase, Li-rich Mn-rich
    and reduced-surface structures, and the span of each oxidation label.

    Parameters
    ----------
    ds : xarray.Dataset
        Training set (:func:`assemble_training_set`).

    Returns
    -------
    dict
        ``structures`` (distinct ``structure_id``), ``phases`` (structures per
        phase; all layered for a set that records none), ``li_rich_mn_rich``
        (Li-rich structures with a region of Mn >= :data:`~.labels.LI_RICH_MN` of the
        TMs), ``reduced_surface`` (rock-salt- or spinel-like structures) and
        ``spans`` (``[min, max]`` of each of :data:`SPAN_LABELS` over the
        regions where it is defined, None where it is nowhere).
    """
    sid = np.asarray(ds["structure_id"].values).astype(str)
    phase = (np.asarray(ds["phase"].values).astype(str) if "phase" in ds.variables
             else np.full(sid.size, "layered"))
    phases = {p: len(set(sid[phase == p])) for p in PHASES if (phase == p).any()}
    spans = {}
    for lab in SPAN_LABELS:
        v = np.asarray(ds[lab].values, float) if lab in ds else np.array([])
        v = v[np.isfinite(v)]
        spans[lab] = [round(float(v.min()), 4), round(float(v.max()), 4)] if v.size else None
    return {
        "structures": len(set(sid)),
        "phases": phases,
        "li_rich_mn_rich": len(set(sid[li_rich_mn_rich(phase, ds["mn_fraction"].values)])),
        "reduced_surface": len(set(sid[reduced_surface(phase)])),
        "spans": spans,
    }


def load_training_set(path: str | Path | None = None) -> xr.Dataset:
    """Load the simulated training set.

    Parameters
    ----------
    path : path, optional
        netCDF file; default ``data_dir() / "training_set.nc"``.

    Returns
    -------
    xarray.Dataset
        See :func:`assemble_training_set`.
    """
    p = Path(path) if path is not None else data_dir() / "training_set.nc"
    if not p.exists():
        raise MMSpecError(
            f"{p}: training set not found; expected a netCDF file written by "
            "'mmspec simulate --assemble'"
        )
    try:
        ds = xr.load_dataset(p, engine="h5netcdf")
    except Exception as exc:
        raise MMSpecError(f"{p}: not a readable netCDF training set ({exc})") from exc
    if "sample" not in ds.dims:
        raise MMSpecError(f"{p}: expected a 'sample' dimension, got {tuple(ds.dims)}")
    return ds
