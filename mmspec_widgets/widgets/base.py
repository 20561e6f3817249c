"""Display plumbing shared by the widgets (no science here)."""

from __future__ import annotations

import ipywidgets as ipw
import traitlets as tl

__all__ = ["WidgetBase", "load_bokehjs"]

_BOKEHJS_LOADED = False


def load_bokehjs(force: bool = False) -> None:
    """Load BokehJS into the notebook page (inline, works offline).

    The widgets call this the first time one is displayed in a kernel;
    call it with ``force=True`` after reloading the browser page.
    """
    global _BOKEHJS_LOADED
    if _BOKEHJS_LOADED and not force:
        return
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return
    if get_ipython() is None:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(INLINE, hide_banner=True)
    _BOKEHJS_LOADED = True


class WidgetBase(tl.HasTraits):
    """A traitlets object shown through its ipywidgets tree ``self.ui``.

    Bokeh figures are wrapped in ``jupyter_bokeh.BokehModel`` widgets listed
    in ``self._bokeh``; their content is re-serialised when the widget is
    displayed, so state set before display (data, ranges, visibility) is
    what the page shows.
    """

    ui: ipw.Widget

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._bokeh: list = []

    def _wrap(self, layout):
        from jupyter_bokeh.widgets import BokehModel

        view = BokehModel(layout)
        self._bokeh.append(view)
        return view

    def _repr_mimebundle_(self, **kwargs):
        load_bokehjs()
        for view in self._bokeh:
            view.update_from_model(view._model)
        return self.ui._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        """Close the widgets (frees the browser-side views)."""
        for view in self._bokeh:
            view.close()
        self.ui.close()


class EchoGuard:
    """Recognise a front-end widget echoing values that Python pushed to it.

    When Python sets a slider repeatedly (e.g. while a band is dragged in a
    plot), the browser may send each value back later, rounded to the
    slider's step.  A late echo of a stale value must not overwrite newer
    state, so values close (within ``tol``) to any of the last ``keep``
    pushed values are treated as echoes.
    """

    def __init__(self, tol: float, keep: int = 64) -> None:
        from collections import deque

        self.tol = float(tol)
        self._recent: deque = deque(maxlen=keep)

    def pushed(self, value) -> None:
        """Record a value about to be sent to the front end."""
        self._recent.append(tuple(float(v) for v in value))

    def is_echo(self, value) -> bool:
        """Whether ``value`` is (close to) one recently pushed."""
        v = tuple(float(x) for x in value)
        return any(len(r) == len(v) and all(abs(a - b) <= self.tol for a, b in zip(r, v, strict=True))
                   for r in self._recent)


class ModelEcho:
    """Recognise Bokeh model properties echoed back by the browser.

    The browser may send back, later, values that Python set on a Bokeh
    model (e.g. the edges of a band that follows another band being dragged).
    Those stale values must not be taken for user input.
    """

    def __init__(self, keep: int = 64) -> None:
        from collections import defaultdict, deque

        self._recent = defaultdict(lambda: deque(maxlen=keep))

    def set(self, model, key, **props) -> None:
        """Set ``props`` on ``model`` (those that differ), remembering them under ``key``."""
        for attr, value in props.items():
            if getattr(model, attr) != value:
                self._recent[(key, attr)].append(value)
                setattr(model, attr, value)

    def is_echo(self, key, attr, value) -> bool:
        return any(v == value for v in self._recent[(key, attr)])
