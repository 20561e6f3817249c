"""A toy training set with the schema of the simulated one, for tests.

NOT simulated data: spectra are sums of Lorentzians and arctan steps whose
positions and weights follow hand-set rules of thumb (oxidation shifts the TM
edges, holes raise the O K pre-edge, vacancies reduce it and leave Mn3+,
antisites leave Ni2+ and a Li K shoulder).  It exists so that the learning code
can be exercised quickly on a Dataset with exactly the layout of
``mmspec_widgets.simulate.load_training_set()``; it says nothing about NMC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..edges import EDGE_ORDER, edge_grid, get_edge

TARGETS = ("li_content", "ni_fraction", "mn_fraction", "co_fraction",
           "ni_oxidation", "mn_oxidation", "co_oxidation", "o_vacancy", "antisite")

_COMPOSITIONS = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.6, 0.2, 0.2],
                          [0.8, 0.1, 0.1]])  # Ni, Mn, Co


def _lor(e, c, w):
    return (0.5 * w) ** 2 / ((e - c) ** 2 + (0.5 * w) ** 2)


def _step(e, c, w):
    return 0.5 + np.arctan((e - c) / w) / np.pi


#: toy signatures of the phases: an extra peak (edge, eV, weight) per phase
_PHASE_PEAKS = {"li_rich": ("O_K", 531.8, 0.25), "rock_salt": ("O_K", 532.6, 0.3),
                "spinel": ("Mn_L23", 639.2, 0.4)}


def _spectrum(edge: str, e: np.ndarray, s: dict) -> np.ndarray:
    out = _base_spectrum(edge, e, s)
    ph = _PHASE_PEAKS.get(s.get("phase", "layered"))
    if ph is not None and ph[0] == edge:
        out = out + ph[2] * _lor(e, ph[1], 1.0)
    return out


def _base_spectrum(edge: str, e: np.ndarray, s: dict) -> np.ndarray:
    ni, mn, co = s["ni_fraction"], s["mn_fraction"], s["co_fraction"]
    nio, mno, coo = s["ni_oxidation"], s["mn_oxidation"], s["co_oxidation"]
    li, vac, anti = s["li_content"], s["o_vacancy"], s["antisite"]
    ref = get_edge(edge).reference
    if edge == "O_K":
        holes = ni * (nio - 2) + co * (coo - 3) + 0.3 * mn * (mno - 3)
        return (0.25 * (0.4 + holes) * _lor(e, 529.6 + 0.6 * mn, 1.2)
                + 0.15 * co * _lor(e, 531.0, 1.0) - 0.04 * vac * _lor(e, 530.0, 2.0)
                + 0.4 * _lor(e, 536 + 2 * ni, 6.0) + 0.5 * _lor(e, 541.5, 5.0)
                + 0.05 * anti * _lor(e, 533.5, 1.5) + 0.3 * _step(e, 536, 2.0))
    if edge == "Li_K":
        return (0.3 + 0.7 * li) * _lor(e, 58.5 - 0.2 * vac, 2.0) + 0.12 * anti * _lor(e, 61.5, 2.0) \
            + 0.4 * _step(e, 60.0, 3.0) + 0.2 * _lor(e, 64 + ni, 5.0)
    if edge.endswith("_L23"):
        ox = {"Mn_L23": mno, "Co_L23": coo, "Ni_L23": nio}[edge]
        ox0 = {"Mn_L23": 4.0, "Co_L23": 3.0, "Ni_L23": 3.0}[edge]
        split = {"Mn_L23": 11.0, "Co_L23": 15.0, "Ni_L23": 17.0}[edge]
        low = max(0.0, 3.3 - ox) if edge == "Mn_L23" else max(0.0, ox0 + 0.6 - ox)
        l3 = ref + 0.6 * (ox - ox0)
        return (_lor(e, l3, 1.4) + 0.5 * low * _lor(e, l3 - 1.6, 1.2)
                + 0.35 * (ox - 2) * _lor(e, l3 + 1.8, 1.6)
                + 0.45 * _lor(e, l3 + split, 2.0) + 0.15 * _step(e, l3, 1.0))
    ox = {"Mn_K": mno, "Co_K": coo, "Ni_K": nio}[edge]
    ox0 = {"Mn_K": 4.0, "Co_K": 3.0, "Ni_K": 3.0}[edge]
    e0 = ref - 10 + 1.8 * (ox - ox0)
    return (_step(e, e0, 1.5) + 0.6 * _lor(e, e0 + 8 - 0.5 * li, 6.0)
            + 0.05 * (ox - 1.5) * _lor(e, e0 - 12, 1.5) + 0.1 * _lor(e, e0 + 30 + 4 * ni, 12.0))


def make_synthetic_training_set(n_structures: int = 24, sites: int = 8,
                                edges: Sequence[str] = EDGE_ORDER, *, missing: float = 0.05,
                                noise: float = 0.01, test_fraction: float = 0.25,
                                seed: int = 0, phases: bool = False) -> xr.Dataset:
    """A toy Dataset laid out like the simulated training set.

    Parameters
    ----------
    n_structures : int
        Number of structures; each gives ``sites`` samples.
    sites : int
        Samples (absorbing-site regions) per structure.
    edges : sequence of str
        Edges to include (variables ``O_K`` ... on dims ``energy_<edge>``).
    missing : float
        Fraction of (sample, edge) spectra set to NaN (edge not simulated).
    noise : float
        Gaussian noise relative to each spectrum's maximum.
    test_fraction : float
        Fraction of structures whose samples have ``split == "test"``.
    seed : int
        Random seed.
    phases : bool
        Give half of the structures a phase other than layered (Li-rich,
        rock-salt, spinel, with toy spectral signatures): a ``phase``
        coordinate and the 0/1 variables ``li_rich``, ``rock_salt``, ``spinel``.

    Returns
    -------
    xarray.Dataset
        Dim ``sample``; per-edge spectra; label variables; coordinates
        ``structure_id`` and ``split``; ``attrs["source"]`` says it is synthetic.
    """
    rng = np.random.default_rng(seed)
    n = n_structures * sites
    struct = np.repeat(np.arange(n_structures), sites)
    comp_s = _COMPOSITIONS[rng.integers(0, len(_COMPOSITIONS), n_structures)]
    comp = np.stack([rng.dirichlet(60 * c + 0.5) for c in comp_s[struct]])
    soc = rng.uniform(0.25, 1.0, n_structures)
    li = np.clip(soc[struct] + rng.normal(0, 0.12, n), 0.05, 1.0)
    vac = rng.poisson(0.5, n)
    anti = rng.poisson(0.45, n)
    mno = np.clip(4.0 - 0.35 * vac * rng.uniform(0.5, 1.5, n), 3.0, 4.0)
    coo = np.clip(3.0 + 0.6 * np.clip(0.5 - li, 0, None), 3.0, 4.0)
    charge = 4 - li - 0.5 * vac * 0.125 * 2
    nio = (charge - comp[:, 1] * mno - comp[:, 2] * coo) / comp[:, 0] - 0.3 * anti
    nio = np.clip(nio + rng.normal(0, 0.05, n), 2.0, 4.0)
    labels = {"li_content": li, "ni_fraction": comp[:, 0], "mn_fraction": comp[:, 1],
              "co_fraction": comp[:, 2], "ni_oxidation": nio, "mn_oxidation": mno,
              "co_oxidation": coo, "o_vacancy": vac.astype(float), "antisite": anti.astype(float)}
    kinds = ("layered", "layered", "layered", "li_rich", "rock_salt", "spinel")
    phase = (np.array(kinds)[rng.integers(0, len(kinds), n_structures)][struct] if phases
             else np.full(n, "layered"))
    data = {}
    for edge in edges:
        e = edge_grid(edge)
        spec = np.empty((n, e.size))
        for i in range(n):
            spec[i] = _spectrum(edge, e, {**{k: v[i] for k, v in labels.items()},
                                          "phase": phase[i]})
        spec += rng.normal(0, noise, spec.shape) * spec.max(axis=1, keepdims=True)
        spec[rng.random(n) < missing] = np.nan
        data[edge] = xr.DataArray(spec, dims=("sample", f"energy_{edge}"),
                                  coords={f"energy_{edge}": (f"energy_{edge}", e, {"units": "eV"})})
    for k, v in labels.items():
        data[k] = xr.DataArray(v, dims=("sample",))
    test_structs = rng.permutation(n_structures)[:max(1, int(round(test_fraction * n_structures)))]
    split = np.where(np.isin(struct, test_structs), "test", "train")
    coords = {"structure_id": ("sample", [f"toy-{s:04d}" for s in struct]),
              "split": ("sample", split)}
    if phases:
        coords["phase"] = ("sample", phase)
        for ph in ("li_rich", "rock_salt", "spinel"):
            data[ph] = xr.DataArray((phase == ph).astype(np.int64), dims=("sample",))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs["source"] = "synthetic toy spectra (mmspec_widgets.learn._synthetic), not simulated"
    return ds
