"""Interactive widgets (ipywidgets + Bokeh) for the steps of the pipeline.

Each widget is a small :class:`traitlets.HasTraits` object: its parameters are
observable traits, ``.result`` holds the labelled output the next notebook
cell uses, and ``.ui`` is the ipywidgets tree shown when the object is the
last expression of a cell.  The computation is done by the library functions
the widget calls, so anything a widget does can be repeated in a script.

- :class:`Explorer` - survey image, navigator map and linked spectrum.
- :class:`BackgroundSubtraction` - pre-edge window and model, live preview,
  apply to the whole spectrum image.
- :class:`Calibration` - zero-loss alignment and reference-feature energy
  calibration.
- :class:`Inference` - maps of the predicted local structure with
  uncertainty, out-of-distribution mask and explanations.
"""

from __future__ import annotations

import importlib

__all__ = ["Explorer", "BackgroundSubtraction", "Calibration", "Inference"]

_WHERE = {
    "Explorer": "explorer",
    "BackgroundSubtraction": "background",
    "Calibration": "calibration",
    "Inference": "inference",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'mmspec_widgets.widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
