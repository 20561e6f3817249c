"""Ab initio simulation of multimodal spectra of NMC regions.

structures (pymatgen supercells with defects) -> feff (FEFF10 K edges) and
multiplets (edrixs L2,3) -> labels (local region labels) -> campaign
(resumable, Dask) -> dataset (aligned, broadened, gridded training set);
foreign: the same chain on non-NMC Mn oxides (out-of-distribution checks);
descriptors: the physical numbers read off spectra and their trends.

Public names are imported lazily (FEFF, edrixs and Dask load only when used).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "StructureSpec": "structures",
    "NMCStructure": "structures",
    "COMPOSITIONS": "structures",
    "PHASES": "structures",
    "FeffParams": "feff",
    "feff_input": "feff",
    "run_feff": "feff",
    "l23_spectrum": "multiplets",
    "l23_spectrum_mixed": "multiplets",
    "region_labels": "labels",
    "select_sites": "labels",
    "LABELS": "labels",
    "CampaignStore": "campaign",
    "make_specs": "campaign",
    "make_phase_specs": "campaign",
    "run_campaign": "campaign",
    "assemble_training_set": "dataset",
    "load_training_set": "dataset",
    "REFERENCE_SPEC": "dataset",
    "foreign_oxide_spectra": "foreign",
    "FOREIGN_OXIDES": "foreign",
    "plot_trends": "plots",
    "trend_metrics": "descriptors",
    "spectral_descriptors": "descriptors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'mmspec_widgets.simulate' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
