"""Model bundles: safe saving and loading (skops, never pickle).

A bundle is a ``.skops`` file holding the fitted
:class:`~mmspec_widgets.learn.fusion.MultimodalModel` plus a JSON sidecar
(same name, ``.json``) with its provenance for humans: edge grids, featurizer
settings, hyperparameters, training data hash, grouped-CV scores, uncertainty
calibration and package versions.  The same metadata travel inside the model
(``model.metadata_``).

Loading refuses any object type outside :data:`TRUSTED_TYPES` (skops resolves
nothing it was not told to trust), so a bundle cannot run arbitrary code.
"""

from __future__ import annotations

import json
import platform
import zipfile
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, MMSpecError
from ..paths import data_dir
from .uncertainty import EDGE_COUNT_GROUPS

__all__ = ["TRUSTED_TYPES", "default_model_path", "save_model", "load_model", "bundle_info"]

#: Types a bundle may contain beyond those skops trusts by default.
TRUSTED_TYPES = frozenset({
    "mmspec_widgets.learn.fusion.MultimodalModel",
    "mmspec_widgets.learn.features.FusedFeaturizer",
    "mmspec_widgets.learn.features.GridFeaturizer",
    "mmspec_widgets.learn.features.CDFFeaturizer",
    "mmspec_widgets.learn.features.PolynomialFeaturizer",
    "mmspec_widgets.learn.features.PeakFeaturizer",
    "mmspec_widgets.learn.features.PCAFeaturizer",
    "mmspec_widgets.learn.features.NoiseFeaturizer",
    "mmspec_widgets.learn.uncertainty.OODDetector",
    "mmspec_widgets.learn.trees.CompactBoosting",
})

DEFAULT_NAME = "default.skops"


def default_model_path() -> Path:
    """Path of the default bundle: ``data_dir()/models/default.skops``."""
    return data_dir() / "models" / DEFAULT_NAME


def _versions() -> dict:
    import sklearn
    import skops
    import xarray

    from .. import __version__

    return {"mmspec_widgets": __version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "skops": skops.__version__,
            "xarray": xarray.__version__, "python": platform.python_version()}


def bundle_info(model) -> dict:
    """JSON-serialisable description of a fitted model (the sidecar's content)."""
    from ..edges import get_edge

    return {
        "model_id": model.model_id,
        "class": f"{type(model).__module__}.{type(model).__name__}",
        "edges": list(model.edges_),
        "edge_grids_eV": {e: list(get_edge(e).grid) for e in model.edges_},
        "targets": list(model.targets_),
        "params": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in model.get_params().items()},
        "cv": model.cv_report_,
        "calibration": {t: {"std_scale": c[0], "q90_in_std": c[1],
                            **({"std_scale_by_edge_count": {
                                (f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 100 else f"{lo}+"):
                                v for (lo, hi), v in zip(EDGE_COUNT_GROUPS, c[3], strict=True)}}
                               if len(c) > 3 else {})}
                        for t, c in model.calibration_.items()},
        "not_learnt": dict(getattr(model, "not_learnt_", {}) or {}),
        "metadata": model.metadata_,
    }


def save_model(model, path: str | Path | None = None) -> Path:
    """Write a fitted model as a skops bundle plus a JSON sidecar.

    Parameters
    ----------
    model : MultimodalModel
        Fitted model (estimator ``"hgb"`` or ``"rf"``; XGBoost models are not
        bundled).
    path : path, optional
        ``.skops`` file; default :func:`default_model_path`.

    Returns
    -------
    Path
        The bundle written.
    """
    import skops.io as sio

    from .fusion import MultimodalModel

    if not isinstance(model, MultimodalModel) or not hasattr(model, "models_"):
        raise MMSpecError("save_model: expected a fitted MultimodalModel")
    if model.estimator == "xgb":
        raise MMSpecError("save_model: XGBoost models cannot be bundled safely; "
                          "train with estimator='hgb' or 'rf'")
    path = Path(path) if path is not None else default_model_path()
    if path.suffix != ".skops":
        raise MMSpecError(f"save_model: {path}: expected a file name ending in .skops")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.metadata_["versions"] = _versions()
    model.metadata_["featurizer"] = {"kinds": list(model.kinds),
                                     "settings": dict(model.settings or {})}
    sio.dump(model, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    info = bundle_info(model)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=_json_default) + "\n")
    return path


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def load_model(path: str | Path | None = None):
    """Load a model bundle, refusing untrusted object types.

    Parameters
    ----------
    path : path, optional
        ``.skops`` bundle; default: the shipped model
        (``data_dir()/models/default.skops``).

    Returns
    -------
    MultimodalModel
        Ready for ``model.predict(ds)``.

    Raises
    ------
    FileFormatError
        If the file is missing, not a skops bundle, or contains a type outside
        :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    from .fusion import MultimodalModel

    if path is not None and not isinstance(path, (str, Path)):
        raise MMSpecError(f"load_model: path={path!r}: expected the path of a .skops bundle "
                          "(str or pathlib.Path) or None for the shipped model")
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        hint = " (train it with 'mmspec train')" if path == default_model_path() else ""
        raise FileFormatError(f"{path}: model bundle not found{hint}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise FileFormatError(f"{path}: not a skops model bundle ({exc})") from exc
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise FileFormatError(f"{path}: bundle contains untrusted types {refused}; "
                              "expected only mmspec_widgets.learn and scikit-learn objects")
    try:
        model = sio.load(path, trusted=sorted(untrusted))
    except Exception as exc:
        raise FileFormatError(f"{path}: could not read the model bundle ({exc})") from exc
    if not isinstance(model, MultimodalModel):
        raise FileFormatError(f"{path}: expected a MultimodalModel, found {type(model).__name__}")
    _check_grids(model, path)
    return model


def _check_grids(model, path: Path) -> None:
    """The model's edge grids must be those of the edge table it will be fed."""
    from ..edges import edge_grid

    for e, g in dict(getattr(model, "grids_", None) or {}).items():
        try:
            want = edge_grid(e)
        except MMSpecError:
            raise FileFormatError(f"{path}: the model was trained on edge {e!r}, which the edge "
                                  "table does not know") from None
        g = np.asarray(g, float)
        if g.shape != want.shape or not np.allclose(g, want, rtol=0, atol=1e-6):
            raise FileFormatError(
                f"{path}: the model's grid for {e} ({g.size} points, {g[0]:.2f} - "
                f"{g[-1]:.2f} eV) differs from the edge table's ({want.size} points, "
                f"{want[0]:.2f} - {want[-1]:.2f} eV); expected a model trained with this "
                "version's edge table (retrain it)")
