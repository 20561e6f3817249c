"""A digital twin with ground truth: a synthetic EELS spectrum image of an NMC
particle built from held-out simulated structures.

The twin is what ``mmspec demo`` runs on and what the end-to-end tests check
the whole chain against (load -> calibrate -> spikes -> background -> edges ->
model -> maps), because, unlike a real particle, every pixel's answer is known.

How a pixel's spectrum is made (counts per channel, energy-loss axis of the
real ``TM/`` SI: 440 eV + 0.3 eV x 2048 channels)::

    counts(E) = t * [ A * (E / 500 eV)^-r  +  sum_edge k_edge * n_edge * S_edge(E) ]

- ``S_edge`` is the simulated spectrum (O K, Mn/Co/Ni L2,3) of the held-out
  sample assigned to that pixel, scaled so its post-edge level is 1, continued
  beyond its grid by a continuum decaying like the background;
- ``n_edge`` is the amount of that element per formula unit in the sample
  (O: 2 less the vacancy share; TM: its fraction);
- ``A``, ``r`` (power-law background) and the edge-jump ratios ``k_edge`` are
  measured on the real SI (or taken from :data:`DEFAULT_PHYSICS`, which were);
- ``t`` is a thickness/current factor: vacuum on the left, rising over the
  particle's edge, at the real SI's count level in the bulk.

Then: Poisson noise, cosmic-ray spikes, an energy axis that is wrong by more
than a shift (``E_true = offset + dispersion * E_recorded``, plus a per-pixel
jitter of the zero-loss position), and a zero-loss SI of the same scan that
records that jitter.

The layout (all visible in ``truth["region"]``): vacuum | delithiated surface
layer | bulk, with an oxygen-vacancy-rich patch and an antisite-rich patch
inside the bulk. When the training set records structure phases and holds
held-out samples of them, two more regions: a reduced surface layer
(rock-salt-like and spinel-like regions) between the vacuum and the
delithiated layer, and a Li-rich Mn-rich patch (Mn >= 0.6 of the TMs) in the
bulk below the vacancy patch; the other regions then draw layered NMC only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .edges import get_edge
from .errors import DataError, MMSpecError
from .paths import data_dir
from .simulate.labels import PHASES, li_rich_mn_rich, phase_flags, reduced_surface

__all__ = [
    "DigitalTwin",
    "DEFAULT_PHYSICS",
    "TWIN_EDGES",
    "REGIONS",
    "TARGETS",
    "build_digital_twin",
    "save_digital_twin",
    "load_digital_twin",
]

#: edges present in the EELS range of the twin (440 - 1054 eV)
TWIN_EDGES = ("O_K", "Mn_L23", "Co_L23", "Ni_L23")

TARGETS = (
    "li_content", "ni_fraction", "mn_fraction", "co_fraction",
    "ni_oxidation", "mn_oxidation", "co_oxidation", "o_vacancy", "antisite",
    "li_rich", "rock_salt", "spinel",
)

#: region codes of ``truth["region"]`` (5 and 6 only with a set that records phases)
REGIONS = {0: "vacuum", 1: "delithiated surface", 2: "bulk", 3: "O-vacancy rich",
           4: "antisite rich", 5: "reduced surface (rock-salt / spinel)",
           6: "Li-rich Mn-rich"}

#: Physical constants of the twin. Background exponent, level and edge-jump
#: ratios (edge jump / background at the edge onset, per unit amount of the
#: element) as measured on the real NMC ``TM/`` SI by :func:`measure_physics`
#: when the real data are reachable; these defaults are the values it gave.
DEFAULT_PHYSICS = {
    "background_r": 3.0,
    "counts_per_channel_at_500eV": 4.3e4,
    "jump_ratio": {"O_K": 0.18, "Mn_L23": 0.48, "Co_L23": 0.50, "Ni_L23": 0.47},
}


@dataclass
class DigitalTwin:
    """A synthetic spectrum image with its zero-loss SI and ground truth.

    Attributes
    ----------
    si : xarray.DataArray
        Core-loss SI in counts, dims ``("y", "x", "energy")``, recorded
        (miscalibrated) energy axis in eV.
    zlp : xarray.DataArray
        Zero-loss SI of the same scan, same navigation shape.
    truth : xarray.Dataset
        Ground-truth maps ``(y, x)``: every target, ``region`` and
        ``sample_index`` (row of the training set used for that pixel).
    provenance : dict
        How the twin was made: parameters, seed, energy-axis error, sources.
    """

    si: xr.DataArray
    zlp: xr.DataArray
    truth: xr.Dataset
    provenance: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# layout and sample assignment


def _layout(shape: tuple[int, int], phases: bool = False) -> np.ndarray:
    ny, nx = shape
    region = np.full(shape, 2, dtype=np.int8)
    n_vac = max(2, nx // 10)
    n_red = max(2, nx // 12) if phases else 0
    n_surf = max(3, nx // 6)
    region[:, :n_vac] = 0
    region[:, n_vac:n_vac + n_red] = 5
    region[:, n_vac + n_red:n_vac + n_red + n_surf] = 1
    # vacancy-rich patch: upper middle; Li-rich patch below it; antisite patch: lower right
    x0 = n_vac + n_red + n_surf + max(1, nx // 12)
    w = max(3, nx // 4)
    h = max(2, ny // 2 - 1)
    region[:h, x0:x0 + w] = 3
    region[ny - h:, nx - w - 1: nx - 1] = 4
    if phases:
        region[ny - h:, x0:min(x0 + w, nx - w - 2)] = 6
    return region


def _has_phases(ts: xr.Dataset) -> bool:
    """Whether the set records phases and holds held-out reduced-surface and
    Li-rich Mn-rich samples (the twin's regions 5 and 6)."""
    if "phase" not in ts.coords and "phase" not in ts:
        return False
    test = np.asarray(ts["split"].values == "test")
    return bool((test & reduced_surface(ts["phase"].values)).any()
                and (test & li_rich_mn_rich(ts["phase"].values,
                                            ts["mn_fraction"].values)).any())


def _pools(ts: xr.Dataset, phases: bool = False) -> dict[int, np.ndarray]:
    """Indices of held-out samples suited to each region."""
    test = np.asarray(ts["split"].values == "test") if "split" in ts.coords or "split" in ts else None
    if test is None or not test.any():
        raise DataError("training_set: expected a 'split' coordinate with 'test' samples "
                        "(the twin is built from held-out structures only)")
    li = ts["li_content"].values
    vac = ts["o_vacancy"].values
    anti = ts["antisite"].values
    have = np.isfinite(ts["O_K"].values).all(axis=-1)  # every twin pixel needs O K
    clean = (vac == 0) & (anti == 0)
    if phases:
        have_layered = have & (np.asarray(ts["phase"].values).astype(str) == "layered")
    else:
        have_layered = have
    pools = {
        1: test & have_layered & clean & (li < 0.75),
        2: test & have_layered & clean & (li >= 0.75),
        3: test & have_layered & (vac > 0) & (anti == 0),
        4: test & have_layered & (anti > 0) & (vac == 0),
    }
    if phases:
        pools[5] = test & have & reduced_surface(ts["phase"].values)
        pools[6] = test & have & li_rich_mn_rich(ts["phase"].values, ts["mn_fraction"].values)
    out = {}
    for k, m in pools.items():
        idx = np.flatnonzero(m)
        if idx.size == 0 and k <= 4:  # fall back to the closest description available
            fallback = {1: test & have_layered & (li < 0.85), 2: test & have_layered & clean,
                        3: test & have_layered & (vac > 0),
                        4: test & have_layered & (anti > 0)}[k]
            idx = np.flatnonzero(fallback)
        if idx.size == 0:
            raise DataError(f"training_set: no held-out sample for the {REGIONS[k]!r} region")
        out[k] = idx
    return out


# --------------------------------------------------------------------------
# spectra


def _edge_shape(grid: np.ndarray, spec: np.ndarray, energy: np.ndarray,
                tail_r: float = 3.0) -> np.ndarray:
    """Edge spectrum on ``energy`` (true eV): post-edge level 1, continued
    beyond the grid by a continuum decaying as (E / E_end)^-tail_r (as the
    background does, so that the next edge's background stays a power law),
    zero below."""
    spec = np.nan_to_num(np.asarray(spec, float), nan=0.0)
    spec = np.clip(spec, 0.0, None)
    n_tail = max(3, grid.size // 10)
    level = spec[-n_tail:].mean()
    if level <= 0:
        level = max(spec.max(), 1e-12)
    shape = spec / level
    out = np.interp(energy, grid, shape, left=0.0, right=0.0)
    above = energy > grid[-1]
    out[above] = (energy[above] / grid[-1]) ** -tail_r
    return out


def _amounts(ts: xr.Dataset, i: int) -> dict[str, float]:
    """Atoms per formula unit (per TM) of each twin edge's element in sample ``i``.

    With the training set's ``amount_<edge>`` (atoms per O, vacancies included)
    the O per TM is ``1 / sum(amounts)``, exactly the composition the models
    are trained on; older sets fall back to 2 O per TM less the vacancies.
    """
    fr = {e: float(np.nan_to_num(ts[f"{get_edge(e).element.lower()}_fraction"].values[i]))
          for e in TWIN_EDGES if e != "O_K"}
    names = [f"amount_{e}" for e in fr]
    if all(n in ts for n in names):
        per_o = sum(float(np.nan_to_num(ts[n].values[i])) for n in names)
        o_per_tm = 1.0 / per_o if per_o > 0 else 2.0
    else:
        vac = float(ts["o_vacancy"].values[i])
        n_o_region = float(ts.attrs.get("region_n_oxygen", 24.0))
        o_per_tm = 2.0 * max(0.0, 1.0 - vac / n_o_region)
    return {"O_K": o_per_tm, **fr}


def _nominal(ts: xr.Dataset, idx: np.ndarray) -> dict[str, float]:
    """Mean composition (atoms per TM) of the twin's particle pixels: what a
    user would know of their sample (e.g. "NMC622") to fit k-factors."""
    am = [_amounts(ts, int(i)) for i in idx]
    return {get_edge(e).element: round(float(np.mean([a[e] for a in am])), 4)
            for e in TWIN_EDGES}


def twin_k_factors(physics: dict | None = None) -> dict[str, float]:
    """The k-factors the twin's physics implies (atoms per O = k * jump / jump_O_K).

    An edge's jump in the twin is ``jump_ratio * atoms * background at the
    edge onset`` (per unit thickness), so k = (jump_ratio_O * B(onset_O)) /
    (jump_ratio_e * B(onset_e)) with the power-law background B of exponent
    ``background_r``.  :func:`mmspec_widgets.quantify.fit_k_factors` on the
    twin should find these.
    """
    phys = {**DEFAULT_PHYSICS, **(physics or {})}
    r = float(phys["background_r"])

    def strength(e):
        return phys["jump_ratio"][e] * (get_edge(e).energy[0] / 500.0) ** (-r)

    return {e: (strength("O_K") / strength(e) if e != "O_K" else 1.0) for e in TWIN_EDGES}


def build_digital_twin(
    training_set: xr.Dataset | None = None,
    *,
    shape: tuple[int, int] = (12, 24),
    seed: int = 0,
    physics: dict | None = None,
    offset_eV: float = 3.0,
    dispersion: float = 1.004,
    zlp_jitter_eV: float = 0.15,
    spikes_per_pixel: float = 0.3,
    pixel_nm: float = 2.0,
) -> DigitalTwin:
    """Build a synthetic NMC spectrum image with known maps.

    Parameters
    ----------
    training_set : xarray.Dataset, optional
        Simulated set (:func:`mmspec_widgets.simulate.load_training_set`);
        only its ``split == "test"`` samples are used.
    shape : (int, int)
        Navigation shape ``(ny, nx)`` in pixels.
    seed : int
        Seed of every random choice (layout draws, noise, spikes, jitter).
    physics : dict, optional
        Background and edge-jump constants; default :data:`DEFAULT_PHYSICS`.
    offset_eV, dispersion : float
        Energy-axis error: ``E_true = offset_eV + dispersion * E_recorded``
        (before the per-pixel zero-loss jitter). The zero-loss peak therefore
        sits near ``-offset_eV / dispersion`` on the recorded axis.
    zlp_jitter_eV : float
        Standard deviation of the per-pixel zero-loss position (eV).
    spikes_per_pixel : float
        Mean number of cosmic-ray spikes per pixel.
    pixel_nm : float
        Pixel size in nm.

    Returns
    -------
    DigitalTwin
    """
    if training_set is None:
        from .simulate import load_training_set

        training_set = load_training_set()
    ts = training_set
    for name in ("O_K", "li_content", "o_vacancy", "antisite", "split"):
        if name not in ts and name not in ts.coords:
            raise DataError(f"training_set: missing variable {name!r}")
    ny, nx = (int(v) for v in shape)
    if ny < 4 or nx < 12:
        raise MMSpecError(f"shape={shape!r}: expected at least (4, 12) pixels")
    phys = {**DEFAULT_PHYSICS, **(physics or {})}
    rng = np.random.default_rng(seed)

    phases = _has_phases(ts)
    region = _layout((ny, nx), phases)
    pools = _pools(ts, phases)
    sample = np.full((ny, nx), -1, dtype=np.int64)
    for k, idx in pools.items():
        m = region == k
        sample[m] = rng.choice(idx, size=int(m.sum()), replace=True)

    # thickness: vacuum ~1 %, rising over ~4 pixels after the vacuum
    n_vac = int((region == 0).any(axis=0).sum())
    xs = np.arange(nx)
    ramp = np.clip((xs - n_vac + 1) / 4.0, 0.0, 1.0) * 0.35 + 0.65
    thick = np.where(xs < n_vac, 0.006, ramp)[None, :] * rng.uniform(0.97, 1.03, (ny, nx))

    # recorded axes
    e_rec = 440.0 + 0.3 * np.arange(2048)
    z_rec = -60.0 + 0.3 * np.arange(2048)
    jitter = rng.normal(0.0, zlp_jitter_eV, (ny, nx))

    r_pix = phys["background_r"] + rng.normal(0.0, 0.03, (ny, nx))
    a0 = phys["counts_per_channel_at_500eV"]
    data = np.empty((ny, nx, e_rec.size), np.float64)
    grids = {e: get_edge(e).energy for e in TWIN_EDGES}
    for iy in range(ny):
        for ix in range(nx):
            e_true = offset_eV + jitter[iy, ix] + dispersion * e_rec
            bkg = (e_true / 500.0) ** (-r_pix[iy, ix])
            sig = np.zeros_like(e_true)
            s = sample[iy, ix]
            if s >= 0:
                amounts = _amounts(ts, s)
                for e in TWIN_EDGES:
                    if e not in ts or amounts[e] <= 0:
                        continue
                    spec = ts[e].values[s]
                    if not np.isfinite(spec).any():
                        continue
                    onset = grids[e][0]
                    bkg_at_onset = (onset / 500.0) ** (-phys["background_r"])
                    sig += (phys["jump_ratio"][e] * amounts[e] * bkg_at_onset
                            * _edge_shape(grids[e], spec, e_true, phys["background_r"]))
            data[iy, ix] = a0 * thick[iy, ix] * (bkg + sig) * dispersion
    counts = rng.poisson(data).astype(np.float32)

    # cosmic-ray spikes: single channels, 5 - 30 x the local level
    n_spikes = rng.poisson(spikes_per_pixel * ny * nx)
    sy, sx = rng.integers(0, ny, n_spikes), rng.integers(0, nx, n_spikes)
    sc = rng.integers(0, e_rec.size, n_spikes)
    counts[sy, sx, sc] += (rng.uniform(5, 30, n_spikes) * np.maximum(data[sy, sx, sc], 50)).astype(np.float32)

    # zero-loss SI: ZLP (FWHM 1.1 eV) at true 0 + a plasmon near 24 eV
    zdata = np.empty((ny, nx, z_rec.size), np.float64)
    for iy in range(ny):
        for ix in range(nx):
            e_true = offset_eV + jitter[iy, ix] + dispersion * z_rec
            zlp = np.exp(-0.5 * (e_true / (1.1 / 2.355)) ** 2)
            plasmon = 0.15 * thick[iy, ix] / (1 + ((e_true - 24.0) / 7.0) ** 2)
            tail = 0.02 * np.exp(-np.abs(e_true) / 3.0)
            zdata[iy, ix] = 2.0e5 * (zlp + plasmon * (e_true > 3) + tail)
    zcounts = rng.poisson(zdata).astype(np.float32)

    def _nav(da_name, values, axis_name, long_name):
        da = xr.DataArray(
            values, dims=("y", "x", "energy"),
            coords={"y": ("y", np.arange(ny) * pixel_nm, {"units": "nm"}),
                    "x": ("x", np.arange(nx) * pixel_nm, {"units": "nm"}),
                    "energy": ("energy", axis_name, {"units": "eV", "long_name": long_name})},
            name=da_name,
        )
        da.attrs.update({
            "signal_type": "EELS", "title": da_name, "beam_energy_keV": 300.0,
            "collection_angle_mrad": 100.0, "dispersion_eV": 0.3,
            "dwell_time_s": 5.0 if da_name.startswith("Digital twin core") else 0.0005,
            "source_file": "", "history": [],
        })
        return da

    si = _nav("Digital twin core-loss SI", counts, e_rec, "Energy loss")
    zl = _nav("Digital twin zero-loss SI", zcounts, z_rec, "Energy loss")

    truth = xr.Dataset(coords={"y": si["y"], "x": si["x"]})
    valid = sample >= 0
    for t in TARGETS:
        if t not in ts:  # a set without phases: no phase truth
            continue
        vals = np.full((ny, nx), np.nan)
        vals[valid] = ts[t].values[sample[valid]]
        truth[t] = (("y", "x"), vals)
    if phases:
        code = {p: i for i, p in enumerate(PHASES)}
        ph = np.asarray(ts["phase"].values).astype(str)
        truth["phase"] = (("y", "x"), np.where(
            valid, [[code[ph[max(s, 0)]] for s in row] for row in sample], -1).astype(np.int8),
            {"long_name": "phase of the region", **phase_flags()})
    regions = {k: v for k, v in REGIONS.items() if (region == k).any() or k <= 4}
    truth["region"] = (("y", "x"), region, {"codes": json.dumps(regions)})
    truth["sample_index"] = (("y", "x"), sample)
    truth["structure_id"] = (("y", "x"), np.where(
        valid, np.asarray(ts["structure_id"].values)[np.maximum(sample, 0)].astype(str), ""))

    provenance = {
        "builder": "mmspec_widgets.twin.build_digital_twin",
        "seed": int(seed), "shape": [ny, nx], "pixel_nm": pixel_nm,
        "energy_error": {"offset_eV": offset_eV, "dispersion": dispersion,
                         "zlp_jitter_eV": zlp_jitter_eV,
                         "meaning": "E_true = offset_eV + jitter + dispersion * E_recorded"},
        "spikes": int(n_spikes), "physics": phys, "edges": list(TWIN_EDGES),
        "k_factors": twin_k_factors(phys),
        "nominal_composition": _nominal(ts, sample[valid]),
        "regions": {str(k): v for k, v in regions.items()},
        "training_set": {k: str(v) for k, v in ts.attrs.items()
                         if k in ("created", "git_revision", "n_structures", "content_hash")},
    }
    return DigitalTwin(si=si, zlp=zl, truth=truth, provenance=provenance)


# --------------------------------------------------------------------------
# physics from the real SI


def measure_physics(si: xr.DataArray, zlp: xr.DataArray | None = None, *,
                    assumed_amounts: dict | None = None) -> dict:
    """Background exponent, count level and edge-jump ratios of a real SI.

    The SI is calibrated (zero loss + the default references,
    :data:`mmspec_widgets.edges.DEFAULT_REFERENCES`) and summed over its
    particle pixels; a power law is fitted in each edge's pre-edge window; the
    edge jump is the background-subtracted post-edge level at the end of the
    edge's grid. Jump ratios are per atom: divided by the particle's
    composition (atoms per TM), measured by cross-sections
    (:func:`mmspec_widgets.quantify.quantify` without k-factors, on the summed
    spectrum with the SI's instrument attrs), so that a cross-section
    quantification of the twin, made with the same instrument, recovers its
    truth; ``assumed_amounts`` overrides it per edge.
    """
    from .background import fit_background, mask_low_counts, remove_spikes, subtract_background
    from .calibrate import calibrate
    from .edges import DEFAULT_REFERENCES, TM_EDGES
    from .extract import extract_edges
    from .quantify import quantify

    cal = calibrate(si, zlp=zlp, references=dict(DEFAULT_REFERENCES))
    mask = mask_low_counts(cal)
    n_pix = int(mask.sum())
    # despiked first: a cosmic-ray spike in a jump window would move a jump
    summed = remove_spikes(cal).where(mask).sum(("y", "x")) / n_pix
    summed.attrs = {k: v for k, v in cal.attrs.items() if k != "history"}
    q = quantify(extract_edges(summed, edges=list(TWIN_EDGES)))
    per_o = {e: float(q[f"amount_{e}"]) for e in TM_EDGES}
    tot = sum(per_o.values())
    if not (tot > 0 and all(np.isfinite(v) and v >= 0 for v in per_o.values())):
        raise DataError(f"measure_physics: the summed particle's TM amounts {per_o} (atoms "
                        "per O) are not all finite and >= 0; cannot place the twin's edges")
    amounts = {"O_K": round(1.0 / tot, 4), **{e: round(v / tot, 4) for e, v in per_o.items()}}
    amounts.update(assumed_amounts or {})
    e = summed["energy"].values
    r = float(fit_background(summed, get_edge("O_K").pre_edge).sel(param="r"))
    level = float(summed.sel(energy=slice(495.0, 505.0)).mean())
    ratios = {}
    for name in TWIN_EDGES:
        edge = get_edge(name)
        sub = subtract_background(summed, window=edge.pre_edge)
        g = edge.energy
        post = float(sub.sel(energy=slice(g[-1] - 0.1 * (g[-1] - g[0]), g[-1])).mean())
        # relative to the power law of the pre-O-K background extrapolated to the
        # onset, as build_digital_twin places it (the local background under a
        # TM edge also holds the tails of the edges before it)
        bkg_onset = level * (g[0] / 500.0) ** (-r)
        ratios[name] = round(max(post, 0.0) / bkg_onset / amounts[name], 4)
    return {"background_r": round(r, 3),
            "counts_per_channel_at_500eV": round(level, 1),
            "jump_ratio": ratios,
            "measured_on": str(si.attrs.get("source_file", "")),
            "particle_amounts_per_tm": amounts,
            "amounts_from": "cross-sections (quantify without k-factors)"
            if not assumed_amounts else "given",
            "energy_range_eV": [float(e[0]), float(e[-1])]}


# --------------------------------------------------------------------------
# files


def _to_hspy(da: xr.DataArray, path: Path) -> None:
    import hyperspy.api as hs

    s = hs.signals.Signal1D(np.asarray(da.values, np.float32))
    s.set_signal_type("EELS")
    nav = s.axes_manager.navigation_axes  # (x, y)
    for ax, dim in zip(nav, ("x", "y"), strict=True):
        c = da[dim].values
        ax.name, ax.units = dim, "nm"
        ax.offset, ax.scale = float(c[0]), float(c[1] - c[0]) if c.size > 1 else 1.0
    sig = s.axes_manager.signal_axes[0]
    e = da["energy"].values
    sig.name, sig.units, sig.offset, sig.scale = "Energy loss", "eV", float(e[0]), float(e[1] - e[0])
    s.metadata.General.title = da.attrs.get("title", da.name or "")
    s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", da.attrs["beam_energy_keV"])
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EELS.collection_angle",
                        da.attrs["collection_angle_mrad"])
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EELS.dwell_time",
                        da.attrs["dwell_time_s"])
    s.metadata.set_item("Signal.quantity", "Counts")
    s.save(path, overwrite=True, compression="gzip")


def save_digital_twin(twin: DigitalTwin, folder: str | Path) -> Path:
    """Write ``si.hspy``, ``zlp.hspy``, ``truth.nc`` and ``provenance.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _to_hspy(twin.si, folder / "si.hspy")
    _to_hspy(twin.zlp, folder / "zlp.hspy")
    truth = twin.truth.copy()
    truth.attrs["provenance"] = json.dumps(twin.provenance)
    truth.to_netcdf(folder / "truth.nc", engine="h5netcdf")
    (folder / "provenance.json").write_text(json.dumps(twin.provenance, indent=2) + "\n")
    return folder


def load_digital_twin(folder: str | Path | None = None, *, lazy: bool = False) -> DigitalTwin:
    """Load the twin shipped in ``data/digital_twin`` (or ``folder``) through
    :func:`mmspec_widgets.io.load`, as a user would load their own files."""
    from .io import load

    folder = Path(folder) if folder is not None else data_dir() / "digital_twin"
    if not (folder / "si.hspy").exists():
        raise MMSpecError(f"{folder}: no digital twin here (expected si.hspy, zlp.hspy, truth.nc); "
                          "build one with `python -m mmspec_widgets.twin --out FOLDER`")
    si = load(folder / "si.hspy", lazy=lazy)
    zl = load(folder / "zlp.hspy", lazy=lazy)
    truth = xr.load_dataset(folder / "truth.nc", engine="h5netcdf")
    prov = json.loads((folder / "provenance.json").read_text())
    return DigitalTwin(si=si, zlp=zl, truth=truth, provenance=prov)


def main(argv=None) -> int:
    """``python -m mmspec_widgets.twin --out data/digital_twin``: rebuild the twin
    from the held-out part of the simulated set and the real SI's physics."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m mmspec_widgets.twin", description=main.__doc__)
    p.add_argument("--out", default=str(data_dir() / "digital_twin"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", default="12x24", help="ny x nx pixels (default 12x24)")
    p.add_argument("--no-real", action="store_true",
                   help="use DEFAULT_PHYSICS instead of measuring the real SI")
    args = p.parse_args(argv)
    ny, nx = (int(v) for v in args.shape.lower().split("x"))
    physics = None
    if not args.no_real:
        from . import datasets
        from .io import load

        files = datasets.nmc_eels_si("TM")
        zfiles = datasets.nmc_eels_si("ZLP")
        physics = measure_physics(load(files["si"]), load(zfiles["si"]))
        print("physics measured on the real SI:", json.dumps(physics))
    twin = build_digital_twin(shape=(ny, nx), seed=args.seed, physics=physics)
    out = save_digital_twin(twin, args.out)
    print(f"digital twin written to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
