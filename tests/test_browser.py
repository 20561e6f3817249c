"""The widgets in a real browser: JupyterLab + headless Chromium (Playwright).

A small gallery notebook (real data where the library supports it) is written
to a temporary folder, JupyterLab is started on a free localhost port with a
token, Chromium runs the notebook through the menu ("Run All Cells"), and the
test checks that the Bokeh canvases and the ipywidgets render and that mouse
interactions reach Python and change what is shown (a click on a map pixel,
a drag of the background window).

Screenshots of each widget are taken on every run into ``test-artifacts/``
(ignored by git), and what each shows (the model id, the calibration, the
numbers of the selected pixel) is compared with what the committed screenshots
in ``docs/screenshots/`` show, recorded beside them in ``shown.json``: a
committed screenshot that no longer matches the code or the shipped model
fails the test.  ``MMSPEC_UPDATE_SCREENSHOTS=1`` copies the fresh screenshots
and their ``shown.json`` to ``docs/screenshots/``.

Needs Chromium (``/usr/bin/chromium`` or ``chromium`` on PATH);
``scripts/test.sh`` installs it.  Set ``MMSPEC_SKIP_BROWSER=1`` to skip
explicitly on a machine without one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"
SHOWN = "shown.json"  # what each screenshot shows (beside the PNGs)
_UPDATE = os.environ.get("MMSPEC_UPDATE_SCREENSHOTS") == "1"
TOKEN = "mmspec-browser-test"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def _chromium() -> str:
    if os.environ.get("MMSPEC_SKIP_BROWSER") == "1":
        pytest.skip("MMSPEC_SKIP_BROWSER=1")
    for cand in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and Path(cand).exists():
            return cand
    pytest.fail("Chromium not found (install Debian 'chromium', or run scripts/test.sh); "
                "set MMSPEC_SKIP_BROWSER=1 to skip the browser test")


GALLERY = [
    ("md", "# Widget gallery (browser test)"),
    ("code", """
import numpy as np, xarray as xr
from mmspec_widgets import datasets
from mmspec_widgets.io import load
from mmspec_widgets.widgets import Explorer, Inference
files = datasets.nmc_eels_si("TM")
si = load(files["si"])
survey = load(files["survey"])
"""),
    ("code", """
explorer = Explorer(si, survey, energy_range=(500.0, 900.0))
explorer
"""),
    ("code", """
from mmspec_widgets.widgets import BackgroundSubtraction, Calibration
zlp = load(datasets.nmc_eels_si("ZLP")["si"])
calibration = Calibration(si, zlp, references=["O_K", "Mn_L3", "Ni_L3"])
calibration
"""),
    ("code", """
background = BackgroundSubtraction(calibration.result, pixel=(1, 10))
background
"""),
    ("code", """
import mmspec_widgets as mm
from mmspec_widgets.learn import load_model
from mmspec_widgets.twin import load_digital_twin
twin = load_digital_twin()
# the README chain: default references, composition from the edge jumps
twin_edges = mm.quantify(mm.extract_edges(
    mm.remove_spikes(mm.calibrate(twin.si, zlp=twin.zlp, references=mm.DEFAULT_REFERENCES)),
    edges=["O_K", "Mn_L23", "Co_L23", "Ni_L23"]))
inference = Inference(twin_edges, load_model(), target="o_vacancy", pixel=(3, 20))
inference.show_explanation = True
inference
"""),
    ("code", 'print("GALLERY" + " DONE")'),
]

# JavaScript: screen geometry of the Bokeh figure whose model has this name.
_GEOMETRY_JS = """
(name) => {
  let found = null;
  const walk = (v) => {
    if (!v || found) return;
    if (v.model && v.model.name === name && v.frame) { found = v; return; }
    for (const c of (v.child_views || [])) walk(c);
  };
  for (const v of Object.values((window.Bokeh && window.Bokeh.index) || {})) walk(v);
  if (!found) return null;
  const r = found.canvas_view.el.getBoundingClientRect();
  const f = found.frame.bbox;
  const m = found.model;
  return {left: r.left + f.left, top: r.top + f.top, width: f.width, height: f.height,
          x0: m.x_range.start, x1: m.x_range.end, y0: m.y_range.start, y1: m.y_range.end};
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_gallery(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md"
                else nbformat.v4.new_code_cell(src.strip()) for kind, src in GALLERY]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "gallery.ipynb"
    nbformat.write(nb, path)
    return path


def _lab_settings(folder: Path) -> Path:
    """User settings: no news pop-up, no windowed (virtual) notebook rendering."""
    settings = folder / "settings"
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            '{"fetchNews": "false", "checkForUpdates": false}',
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
            '{"windowingMode": "none"}',
    }
    for rel, text in files.items():
        p = settings / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return settings


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on localhost serving the gallery notebook; stopped afterwards."""
    work = tmp_path_factory.mktemp("lab")
    _write_gallery(work)
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(_lab_settings(work)),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        "MPLBACKEND": "Agg",
    })
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={work}", "--LabApp.extension_manager=readonly",
           "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited early:\n{(work / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 60 s")
                time.sleep(0.3)
        yield {"url": url, "work": work}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 2400})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(f"{lab['url']}/lab/tree/gallery.ipynb?token={TOKEN}&reset", timeout=90_000)
        pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        # wait for the kernel to be idle, then run all cells from the menu
        pg.wait_for_function("() => document.body.innerText.includes('| Idle')",
                             timeout=60_000)
        pg.wait_for_timeout(500)
        pg.get_by_role("menuitem", name="Run", exact=True).click()
        pg.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            pg.get_by_text("GALLERY DONE", exact=True).wait_for(timeout=120_000)
        except Exception:
            pg.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
        pg.wait_for_timeout(1500)  # let Bokeh finish its first layout
        pg.errors = errors
        try:
            yield pg
        finally:
            pg.screenshot(path=str(ARTIFACTS / "browser_notebook.png"), full_page=True)
            browser.close()


def _geometry(pg, name: str) -> dict:
    geo = pg.evaluate(_GEOMETRY_JS, name)
    assert geo is not None, f"Bokeh figure {name!r} not rendered"
    assert geo["width"] > 50 and geo["height"] > 20
    return geo


def _to_screen(geo: dict, x: float, y: float) -> tuple[float, float]:
    fx = (x - geo["x0"]) / (geo["x1"] - geo["x0"])
    fy = (y - geo["y0"]) / (geo["y1"] - geo["y0"])
    return geo["left"] + fx * geo["width"], geo["top"] + (1.0 - fy) * geo["height"]


def _shot(locator, name: str, *, docs: bool = True, shows: dict | None = None) -> bytes:
    """Screenshot into test-artifacts/; for the documented ones, check (or with
    MMSPEC_UPDATE_SCREENSHOTS=1 record) that the committed one shows the same."""
    png = locator.screenshot(path=str(ARTIFACTS / name))
    if not docs:
        return png
    shows = dict(shows or {})
    fresh = ARTIFACTS / SHOWN
    record = json.loads(fresh.read_text()) if fresh.exists() else {}
    record[name] = shows
    fresh.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    if _UPDATE:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)
        committed_path = SCREENSHOTS / SHOWN
        committed = json.loads(committed_path.read_text()) if committed_path.exists() else {}
        committed[name] = shows
        committed_path.write_text(json.dumps(committed, indent=1, sort_keys=True) + "\n")
        return png
    committed = json.loads((SCREENSHOTS / SHOWN).read_text()) \
        if (SCREENSHOTS / SHOWN).exists() else {}
    assert (SCREENSHOTS / name).exists(), f"docs/screenshots/{name} missing"
    assert committed.get(name) == shows, (
        f"docs/screenshots/{name} is stale: it shows {committed.get(name)}, the widget now "
        f"shows {shows}; rerun this test with MMSPEC_UPDATE_SCREENSHOTS=1 and commit "
        "docs/screenshots/")
    return png


def _find(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in: {text[:800]}"
    return m.group(0)


def _canvas_png(pg, name: str) -> bytes:
    """Screenshot of the canvas of figure ``name`` only."""
    geo = _geometry(pg, name)
    clip = {"x": geo["left"], "y": geo["top"], "width": geo["width"], "height": geo["height"]}
    return pg.screenshot(clip=clip)


def test_widgets_render(page):
    for cls in ("mmspec-explorer", "mmspec-calibration", "mmspec-background",
                "mmspec-inference"):
        widget = page.locator(f".{cls}")
        widget.wait_for(timeout=30_000)
        assert widget.locator(".bk-Canvas, canvas").count() >= 1, f"{cls}: no Bokeh canvas"
    # the ipywidgets controls are there and labelled
    ex = page.locator(".mmspec-explorer")
    assert ex.get_by_text("Counts axis:").count() == 1
    assert ex.get_by_role("button", name="Sum whole SI").count() == 1
    inf = page.locator(".mmspec-inference")
    assert inf.get_by_text("Fused edges").count() == 1
    for name in ("explorer-map", "explorer-spectrum", "calibration-spectrum",
                 "background-pixel", "inference-prediction"):
        _geometry(page, name)
    assert not page.errors, f"JavaScript errors: {page.errors}"


def test_explorer_click_on_map_selects_pixel(page):
    ex = page.locator(".mmspec-explorer")
    ex.scroll_into_view_if_needed()
    _shot(ex, "explorer_initial.png", docs=False)
    before = _canvas_png(page, "explorer-spectrum")
    info = ex.locator(".widget-html-content").first
    assert "row 0, col 0" in info.inner_text()
    geo = _geometry(page, "explorer-map")
    # pixel (row 1, col 15): centre at x = 15 * 2.046 nm, y = 2.046 nm
    sx, sy = _to_screen(geo, 15 * 2.0459, 2.0459)
    page.mouse.click(sx, sy)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mmspec-explorer .widget-html-content')]"
        ".some(e => e.innerText.includes('row 1, col 15'))", timeout=15_000)
    page.wait_for_timeout(800)
    after = _canvas_png(page, "explorer-spectrum")
    assert before != after, "the spectrum plot did not change after the click"
    text = ex.inner_text()
    _shot(ex, "explorer.png", shows={
        "pixel": _find(r"row 1, col 15", text),
        "total": _find(r"total [0-9.e+]+ counts", text),
        "energy axis": "uncalibrated" if "not calibrated" in text else "calibrated"})


def test_inference_click_shows_pixel_panel(page):
    inf = page.locator(".mmspec-inference")
    inf.scroll_into_view_if_needed()
    assert "Pixel (row 3, col 20)" in inf.inner_text()
    geo = _geometry(page, "inference-prediction")
    # pixel (row 6, col 9) of the twin (2 nm pixels, coordinates from 0)
    sx, sy = _to_screen(geo, 2.0 * 9, 2.0 * 6)
    page.mouse.click(sx, sy)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mmspec-inference .widget-html-content')]"
        ".some(e => e.innerText.includes('Pixel (row 6, col 9)'))", timeout=15_000)
    page.wait_for_timeout(800)
    text = inf.inner_text()
    model_id = _find(r"mmspec-[a-z]+-[a-z0-9]+-[0-9a-f]{12}", text)
    from mmspec_widgets.learn import load_model

    assert model_id == load_model().model_id  # the shipped default model
    png = _shot(inf, "inference.png", shows={
        "model": model_id,
        "pixel": _find(r"Pixel \(row 6, col 9\)", text),
        "ood score": _find(r"OOD score [0-9.]+", text),
        "uncertainty": _find(r"value ± 1 std", text)})
    assert len(png) > 10_000
    # the explanation overlay was drawn: the spectra panel is not blank
    pixels = np.frombuffer(png, dtype=np.uint8)
    assert pixels.size > 0


def test_calibration_renders_fit(page):
    cal = page.locator(".mmspec-calibration")
    cal.scroll_into_view_if_needed()
    text = cal.inner_text()
    assert "E" in text and "eV/channel" in text and "Mn L3" in text
    _shot(cal, "calibration.png", shows={
        "zero loss": _find(r"Zero-loss peak at [-0-9.]+ eV \(median\), spread [0-9.]+ eV",
                           text),
        "axis": _find(r"= [-+0-9.]+ eV \+ [0-9.]+ × E", text),
        "dispersion": _find(r"dispersion [0-9.]+ → [0-9.]+ eV/channel", text)})


def test_background_window_drag(page):
    bg = page.locator(".mmspec-background")
    bg.scroll_into_view_if_needed()
    status = bg.locator(".widget-html-content").first
    assert "485.0-522.0 eV" in status.inner_text()
    before = _canvas_png(page, "background-pixel")
    geo = _geometry(page, "background-pixel")
    x0, y0 = _to_screen(geo, 503.5, 0.5 * (geo["y0"] + geo["y1"]))
    x1 = x0 - 0.1 * geo["width"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y0)
    page.mouse.up()
    page.wait_for_function(
        "() => { const e = document.querySelector('.mmspec-background .widget-html-content');"
        " return e && !e.innerText.includes('485.0-522.0 eV'); }", timeout=15_000)
    # the slider, the status and the plots agree once the drag has settled
    # (under load the last drag step may reach one before the other)
    for _ in range(40):
        page.wait_for_timeout(500)
        text = status.inner_text()
        lo, hi = (float(v) for v in text.split(" background fitted in ")[1].split(" eV")[0]
                  .split("-"))
        readout = bg.locator(".widget-readout").first.inner_text()
        if readout.replace(" ", "") == f"{lo:.1f}–{hi:.1f}":
            break
    assert 440.0 < lo < 485.0, text  # the window moved to lower energy
    assert hi - lo == pytest.approx(37.0, abs=0.7), text  # moved, not resized
    assert readout.replace(" ", "") == f"{lo:.1f}–{hi:.1f}", (readout, text)
    assert _canvas_png(page, "background-pixel") != before
    # the window after a drag varies a little from run to run: not compared
    _shot(bg, "background.png", shows={"widget": "background subtraction, window dragged"})
