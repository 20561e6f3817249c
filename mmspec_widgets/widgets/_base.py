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
