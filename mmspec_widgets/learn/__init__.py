"""Multimodal fusion models: spectra of any subset of edges -> local structure maps.

features  per-edge featurizers (grid, CDF, piecewise cubic, peaks, PCA), augmentation
fusion    joined spectra, early / late fusion with edge dropout, MultimodalModel
train     grouped CV, Optuna search, the default model
evaluate  held-out scores per target and edge set, report
uncertainty  calibrated std, coverage, out-of-distribution flags
coverage  K edges a XANES scan covers in part: minimum, completion, measured std widening
explain   permutation importance by edge and by energy window
bundle    safe skops bundles, load_model()
cli       mmspec train | evaluate | predict

Names are imported lazily so that ``import mmspec_widgets.learn`` stays light.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "GridFeaturizer": "features",
    "CDFFeaturizer": "features",
    "PolynomialFeaturizer": "features",
    "PeakFeaturizer": "features",
    "PCAFeaturizer": "features",
    "FusedFeaturizer": "features",
    "SpectrumAugmenter": "features",
    "augment_spectra": "features",
    "normalize_spectra": "features",
    "MultimodalModel": "fusion",
    "TARGETS": "fusion",
    "dataset_to_matrix": "fusion",
    "grouped_splits": "train",
    "tune": "train",
    "train_model": "train",
    "evaluate_model": "evaluate",
    "default_edge_sets": "evaluate",
    "write_report": "evaluate",
    "OODDetector": "uncertainty",
    "interval_coverage": "uncertainty",
    "edge_importance": "explain",
    "energy_importance": "explain",
    "plot_evaluation": "plots",
    "plot_importance": "plots",
    "save_model": "bundle",
    "load_model": "bundle",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'mmspec_widgets.learn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
