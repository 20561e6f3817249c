"""Display plumbing of the widgets: state set before display reaches the page,
and values echoed back by the browser never overwrite newer state."""

from __future__ import annotations

import json

import numpy as np
from _widget_data import synthetic_si
from bokeh.models import BoxAnnotation

from mmspec_widgets.widgets import BackgroundSubtraction, Explorer
from mmspec_widgets.widgets.base import EchoGuard, ModelEcho


def _bundle_text(view) -> str:
    return json.dumps(view.render_bundle["docs_json"], default=str)


def test_state_set_before_display_is_in_the_rendered_bundle():
    ex = Explorer(synthetic_si(ny=2, nx=4))
    ex.pixel = (1, 3)
    ex.log_scale = True
    assert "row 1, col 3" not in _bundle_text(ex.plot)  # serialised at construction
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = _bundle_text(ex.plot)
    assert "Spectrum of pixel (row 1, col 3)" in text


def test_echo_guard():
    g = EchoGuard(tol=0.15)
    g.pushed((480.0, 520.0))
    assert g.is_echo((480.1, 519.9))
    assert not g.is_echo((479.0, 520.0))


def test_model_echo_sets_only_what_differs():
    box = BoxAnnotation(left=1.0, right=2.0)
    echo = ModelEcho()
    echo.set(box, "a", left=1.0, right=3.0)
    assert (box.left, box.right) == (1.0, 3.0)
    assert echo.is_echo("a", "right", 3.0)
    assert not echo.is_echo("a", "left", 1.0)  # never pushed: left did not change


def test_late_echoes_do_not_undo_a_drag():
    w = BackgroundSubtraction(synthetic_si(ny=1, nx=2), window=(480.0, 520.0))
    # Python moves the window: the band is updated, the browser will echo it later
    w.window = (490.0, 520.0)
    w.window = (495.0, 525.0)
    # the late echo of the first update arrives from the browser: ignored
    w.boxes[0].left = 490.0
    assert w.window == (495.0, 525.0)
    # a drag: new values, never pushed by Python, are taken
    w.boxes[0].left = 470.0
    assert w.window == (470.0, 525.0)
    # the slider's late echo of a value pushed during the drag: ignored
    w.boxes[0].right = 510.0
    assert w.window == (470.0, 510.0)
    w.window_slider.value = (470.0, 525.0)
    assert w.window == (470.0, 510.0)
    # a real slider move is taken
    w.window_slider.value = (460.0, 505.0)
    assert w.window == (460.0, 505.0)
    np.testing.assert_allclose((w.boxes[1].left, w.boxes[1].right), (460.0, 505.0))
