"""The edge table: names, reference energies, background windows and grids.

Every other module takes edge names from here (``"O_K"``, ``"Mn_L23"``,
``"Ni_K"`` ...), so a spectrum, a simulated training set and a model all agree
on what an edge is and on which energy grid it lives.

The O K, Mn/Co/Ni L2,3 grids are those of Jia et al. (ACS Nano 2026,
arXiv 2501.08919): O 528.9 - 562.1 eV, Mn 635.1 - 675.1 eV,
Co 775.1 - 815.1 eV, Ni 853.1 - 880.1 eV, all in 0.2 eV steps.
Reference energies are literature values for layered NMC oxides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import MMSpecError

__all__ = [
    "Edge",
    "EDGES",
    "EDGE_ORDER",
    "TM_EDGES",
    "DEFAULT_REFERENCES",
    "REFERENCE_CHOICES",
    "FEATURES",
    "get_edge",
    "edge_grid",
    "edge_set_key",
]


@dataclass(frozen=True)
class Edge:
    """One core-level edge.

    Attributes
    ----------
    name : str
        Public name, ``"<Element>_<shell>"`` (e.g. ``"Ni_L23"``).
    element : str
        Chemical symbol of the absorbing element.
    shell : str
        ``"K"`` or ``"L23"``.
    onset : float
        Tabulated edge onset in eV (the ionisation threshold of the free atom
        shell, as used by EELS atlases).
    reference : float
        Energy (eV) of the edge's main feature in NMC oxides: O K pre-edge
        peak, L3 white line, K-edge white line.
    grid : tuple of float
        ``(start, stop, step)`` of the standard grid in eV, stop included.
    pre_edge : tuple of float
        Default pre-edge window ``(lo, hi)`` in eV for background fitting.
    modality : tuple of str
        Where the edge is usually measured: ``"EELS"``, ``"soft-XAS"``,
        ``"hard-XAS"``.
    """

    name: str
    element: str
    shell: str
    onset: float
    reference: float
    grid: tuple[float, float, float]
    pre_edge: tuple[float, float]
    modality: tuple[str, ...] = field(default=("EELS",))

    @property
    def energy(self) -> np.ndarray:
        """The standard grid (eV) as a float64 array, end point included."""
        start, stop, step = self.grid
        n = int(round((stop - start) / step)) + 1
        return np.round(start + step * np.arange(n), 6)

    @property
    def n_points(self) -> int:
        return int(self.energy.size)


def _e(name, element, shell, onset, reference, grid, pre_edge, modality):
    return Edge(name, element, shell, onset, reference, grid, pre_edge, modality)


#: The edge table, in the canonical order used for edge-set keys
#: (``"O_K+Li_K+Mn_L23"`` ...).
EDGES: dict[str, Edge] = {
    e.name: e
    for e in [
        _e("O_K", "O", "K", 532.0, 530.0, (528.9, 562.1, 0.2), (485.0, 522.0),
           ("EELS", "soft-XAS")),
        _e("Li_K", "Li", "K", 55.0, 58.0, (52.0, 80.0, 0.2), (40.0, 50.0),
           ("EELS", "soft-XAS")),
        _e("Mn_L23", "Mn", "L23", 640.0, 642.5, (635.1, 675.1, 0.2), (590.0, 630.0),
           ("EELS", "soft-XAS")),
        _e("Co_L23", "Co", "L23", 779.0, 780.0, (775.1, 815.1, 0.2), (730.0, 770.0),
           ("EELS", "soft-XAS")),
        _e("Ni_L23", "Ni", "L23", 855.0, 853.5, (853.1, 880.1, 0.2), (815.0, 848.0),
           ("EELS", "soft-XAS")),
        _e("Mn_K", "Mn", "K", 6539.0, 6555.0, (6530.0, 6600.0, 0.5), (6380.0, 6510.0),
           ("hard-XAS",)),
        _e("Co_K", "Co", "K", 7709.0, 7727.0, (7700.0, 7770.0, 0.5), (7550.0, 7680.0),
           ("hard-XAS",)),
        _e("Ni_K", "Ni", "K", 8333.0, 8350.0, (8325.0, 8395.0, 0.5), (8180.0, 8305.0),
           ("hard-XAS",)),
    ]
}

EDGE_ORDER: tuple[str, ...] = tuple(EDGES)
#: Elements whose L2,3 shares form the TM fractions.
TM_EDGES: tuple[str, ...] = ("Mn_L23", "Co_L23", "Ni_L23")

#: Named spectral features usable as calibration references, in eV.
#: ``edge`` says which edge the feature belongs to and ``search`` is the
#: half-width (eV) of the window, around the recorded axis' nominal energy,
#: where the feature is looked for.
FEATURES: dict[str, dict] = {
    "O_K": {"edge": "O_K", "energy": 530.0, "kind": "peak"},
    "O_K_main": {"edge": "O_K", "energy": 541.0, "kind": "peak"},
    "Li_K": {"edge": "Li_K", "energy": 58.0, "kind": "peak"},
    "Mn_L3": {"edge": "Mn_L23", "energy": 642.5, "kind": "peak"},
    "Mn_L2": {"edge": "Mn_L23", "energy": 653.5, "kind": "peak"},
    "Co_L3": {"edge": "Co_L23", "energy": 780.0, "kind": "peak"},
    "Co_L2": {"edge": "Co_L23", "energy": 795.0, "kind": "peak"},
    "Ni_L3": {"edge": "Ni_L23", "energy": 853.5, "kind": "peak"},
    "Ni_L2": {"edge": "Ni_L23", "energy": 870.5, "kind": "peak"},
}

#: Default calibration references: O K and Co L3, whose positions barely move
#: in the simulated set (Co stays 3+) and are 250 eV apart, so the dispersion
#: extrapolates well to Ni L3. Not Ni L3: its position moves with the Ni
#: oxidation state (about 1 eV per unit), which is what the model reads; not
#: Mn L3 alone with O K: only 112 eV from O K, a small error in its position
#: tilts the axis by eV at Ni L3 (``benchmarks/twin_references.py`` measures
#: the choices; docs/calibration.md lists the reasonable ones).
DEFAULT_REFERENCES = {"O_K": 530.0, "Co_L3": 780.0}

#: Reasonable calibration choices for an NMC SI of O K + Mn/Co/Ni L2,3: their
#: features bracket the edges read (the axis is interpolated, not extrapolated
#: beyond its last feature by more than 80 eV). Predictions on the real SI with
#: each agree within their stated std (``tests/test_trust_uncertainty.py``,
#: ``python benchmarks/reference_choices.py``). Not listed: O K + Mn L3 alone,
#: 112 eV apart and extrapolated 210 eV to Ni L3 (on the real SI its scale
#: differs from O K + Co L3's by 1.2 %, 2.6 eV at Ni L3).
REFERENCE_CHOICES = {
    "O_K+Co_L3": {"O_K": 530.0, "Co_L3": 780.0},
    "O_K+Ni_L3": {"O_K": 530.0, "Ni_L3": 853.5},
    "O_K+Mn_L3+Co_L3": {"O_K": 530.0, "Mn_L3": 642.5, "Co_L3": 780.0},
}


def get_edge(name: str) -> Edge:
    """Return the :class:`Edge` called ``name``.

    Raises
    ------
    MMSpecError
        If ``name`` is not in the edge table; the message lists valid names.
    """
    try:
        return EDGES[name]
    except (KeyError, TypeError):
        raise MMSpecError(
            f"unknown edge {name!r}: expected one of {', '.join(EDGE_ORDER)}"
        ) from None


def edge_grid(name: str) -> np.ndarray:
    """Standard energy grid (eV) of edge ``name``."""
    return get_edge(name).energy


def edge_set_key(edges) -> str:
    """Canonical key of a set of edges: names joined by ``+`` in table order.

    >>> edge_set_key(["Ni_L23", "O_K"])
    'O_K+Ni_L23'
    """
    names = [get_edge(e).name for e in edges]
    return "+".join(sorted(set(names), key=EDGE_ORDER.index))
