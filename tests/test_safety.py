"""Nothing lost, nothing mixed: map stores that know what they hold, writes
that never destroy a user's files, and arguments checked where they enter.

The fault tests kill a real child process (SIGKILL) while it maps, at
randomised moments around the creation of its Zarr store, and check that a
rerun gives exactly the maps of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import mmspec_widgets as mm
from mmspec_widgets import pipeline as pl
from mmspec_widgets.errors import MMSpecError

sys.path.insert(0, str(Path(__file__).parent))
from _map_child import StandInModel, read_inputs, write_inputs  # noqa: E402

CHILD = Path(__file__).parent / "_map_child.py"
PKG_ROOT = Path(mm.__file__).resolve().parent.parent
BLOCK = (3, 6)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An SI and zero-loss SI (6 x 12 px) on disk for child processes, and the
    same arrays as read back here."""
    folder = tmp_path_factory.mktemp("inputs")
    si, zlp = pl.synthetic_si((6, 12), seed=1)
    path = folder / "in.npz"
    write_inputs(path, si, zlp)
    si, zlp = read_inputs(path)
    return path, si, zlp


@pytest.fixture(scope="module")
def fresh(inputs, tmp_path_factory):
    """Maps of an uninterrupted run."""
    _, si, zlp = inputs
    out = tmp_path_factory.mktemp("fresh") / "m.zarr"
    return pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK,
                                 progress=False).load()


def _same_maps(res: xr.Dataset, ref: xr.Dataset) -> None:
    assert set(res.data_vars) == set(ref.data_vars)
    for v in ref.data_vars:
        np.testing.assert_array_equal(res[v].values, ref[v].values, err_msg=v)


def _state(out: Path) -> str:
    """What a killed run left: nothing, a temporary folder, or a store with
    some blocks done."""
    import zarr

    names = [p.name for p in out.parent.iterdir()]
    if out.name not in names:
        return "creating" if names else "nothing"
    try:
        done = np.asarray(zarr.open_group(str(out), mode="r")["block_done"][...])
    except Exception:  # noqa: BLE001 - a store cut short while being created
        return "incomplete store"
    return f"{int(done.sum())}/{done.size} blocks"


def test_kill_while_mapping_never_leaves_a_store_read_as_done(inputs, fresh, tmp_path):
    """SIGKILL at random moments from just before the store appears until
    blocks are being written; every rerun gives the uninterrupted maps."""
    src, si, zlp = inputs
    n = 4
    delays = np.random.default_rng().uniform(0.0, 1.5, n)  # randomised on every run
    # one kill the moment the store's folder appears: on a fast machine all four
    # blocks can be written before every random delay has passed
    delays[0] = 0.0
    env = {**os.environ, "PYTHONPATH": str(PKG_ROOT)}
    outs = [tmp_path / f"run{k}" / "m.zarr" for k in range(n)]
    states: list[str] = [""] * n

    def run(k: int) -> None:
        out = outs[k]
        out.parent.mkdir()
        proc = subprocess.Popen([sys.executable, str(CHILD), str(src), str(out),
                                 *map(str, BLOCK)], stdout=subprocess.PIPE, env=env)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            # the fragile moment: from the store's (temporary) folder appearing
            # until its blocks are written
            t_end = time.monotonic() + 60
            while not any(out.parent.iterdir()) and proc.poll() is None \
                    and time.monotonic() < t_end:
                time.sleep(0.002)
            time.sleep(delays[k])
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        states[k] = _state(out)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(states), states
    print("kill delays (s):", delays.round(2).tolist(), "left:", states)
    for out in outs:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no store of the old kind
            res = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK,
                                        progress=False)
        _same_maps(res, fresh)
        assert [p.name for p in out.parent.iterdir()] == ["m.zarr"]  # temporaries gone
    # the kills landed before the store was complete at least once
    assert any(s in ("nothing", "creating", "incomplete store")
               or s.split("/")[0] != s.split("/")[1].split()[0] for s in states), states


def test_store_without_fingerprint_is_rebuilt_not_read_as_done(inputs, fresh, tmp_path):
    """A store cut short while being created (or written before stores had a
    fingerprint) is built again, even if its blocks claim to be done."""
    import zarr

    _, si, zlp = inputs
    out = tmp_path / "m.zarr"
    pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK, progress=False)
    g = zarr.open_group(str(out), mode="r+")
    del g.attrs["mmspec_fingerprint"]
    g["o_level"][...] = np.nan
    g["block_done"][...] = 1
    with pytest.warns(UserWarning, match="without a complete fingerprint"):
        res = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK,
                                    progress=False)
    _same_maps(res, fresh)


def test_another_si_into_an_existing_store_is_refused(inputs, fresh, tmp_path):
    _, si, zlp = inputs
    other = si.copy(data=si.values[::-1].copy())  # same shape, other counts
    out = tmp_path / "m.zarr"
    pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK, progress=False)
    with pytest.raises(MMSpecError, match=r"different run \(si_data: the counts of si differ"):
        pl.map_spectrum_image(other, zlp, model=StandInModel(), out=out, block=BLOCK,
                              progress=False)
    z2 = zlp.copy(data=zlp.values[:, ::-1].copy())
    with pytest.raises(MMSpecError, match=r"different run \(zlp_data"):
        pl.map_spectrum_image(si, z2, model=StandInModel(), out=out, block=BLOCK,
                              progress=False)
    _same_maps(xr.open_zarr(out, consolidated=False).drop_vars("block_done"), fresh)
    # interrupted with one SI, resumed with another: refused, nothing mixed
    part = tmp_path / "p.zarr"
    with pytest.raises(KeyboardInterrupt):
        pl.map_spectrum_image(si, zlp, model=StandInModel(fail_after=2), out=part,
                              block=BLOCK, progress=False)
    with pytest.raises(MMSpecError, match="si_data"):
        pl.map_spectrum_image(other, zlp, model=StandInModel(), out=part, block=BLOCK,
                              progress=False)
    res = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=part, block=BLOCK,
                                progress=False)
    _same_maps(res, fresh)
    # asked to start over: the other SI's maps
    again = pl.map_spectrum_image(other, zlp, model=StandInModel(), out=part, block=BLOCK,
                                  progress=False, overwrite=True)
    ref = pl.map_spectrum_image(other, zlp, model=StandInModel(), out=tmp_path / "o.zarr",
                                block=BLOCK, progress=False)
    _same_maps(again, ref)


def test_new_references_on_a_rerun_are_detected(inputs, tmp_path):
    _, si, zlp = inputs
    out = tmp_path / "m.zarr"
    pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK, progress=False)
    refs = {**pl.REFERENCES}
    name = next(iter(refs))
    refs[name] = refs[name] + 1.5
    with pytest.raises(MMSpecError, match=r"different run \(references"):
        pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK,
                              references=refs, progress=False)
    res = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=out, block=BLOCK,
                                references=refs, progress=False, overwrite=True)
    ref = pl.map_spectrum_image(si, zlp, model=StandInModel(), out=tmp_path / "f.zarr",
                                block=BLOCK, references=refs, progress=False)
    _same_maps(res, ref)
    assert json.loads(res.attrs["mmspec_plan"])["calibration"]["references"][name][
        "target_eV"] == pytest.approx(refs[name])


# --------------------------------------------------------------------------
# writes never destroy what the user made


def _maps() -> xr.Dataset:
    return xr.Dataset({"li_content": (("y", "x"), np.arange(6.0).reshape(2, 3))},
                      attrs={"history": [{"step": "test"}]})


def test_save_over_a_users_folder_or_file_is_refused(tmp_path):
    mine = tmp_path / "u.zarr"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(MMSpecError, match=r"already exists .*overwrite=True"):
        mm.save(_maps(), mine)
    assert (mine / "notes.txt").read_text() == "mine"
    f = tmp_path / "u.nc"
    f.write_text("my own file")
    with pytest.raises(MMSpecError, match="already exists"):
        mm.save(_maps(), f)
    assert f.read_text() == "my own file"
    # asked: replaced, and nothing temporary left beside it
    mm.save(_maps(), mine, overwrite=True)
    mm.save(_maps(), f, overwrite=True)
    assert not (mine / "notes.txt").exists()
    np.testing.assert_array_equal(xr.open_zarr(mine)["li_content"].values, _maps()["li_content"])
    np.testing.assert_array_equal(xr.load_dataset(f)["li_content"].values, _maps()["li_content"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.nc", "u.zarr"]
    # an empty folder is no one's data
    empty = tmp_path / "e.zarr"
    empty.mkdir()
    mm.save(_maps(), empty)
    assert (empty / "zarr.json").exists()


def test_save_refuses_the_input_through_a_link(tmp_path):
    src = tmp_path / "in.nc"
    mm.save(_maps(), src)
    before = src.read_bytes()
    data = _maps().assign_attrs(source_file=str(src))
    hard = tmp_path / "hard.nc"
    os.link(src, hard)
    soft = tmp_path / "soft.nc"
    soft.symlink_to(src)
    for target in (src, hard, soft):
        with pytest.raises(MMSpecError, match="read from"):
            mm.save(data, target, overwrite=True)
    assert src.read_bytes() == before


def test_save_into_a_missing_or_read_only_folder_is_a_clean_error(tmp_path):
    with pytest.raises(MMSpecError, match="does not exist"):
        mm.save(_maps(), tmp_path / "missing" / "m.nc")
    d = tmp_path / "d.nc"
    d.mkdir()
    with pytest.raises(MMSpecError, match="is a folder"):
        mm.save(_maps(), d, overwrite=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        with pytest.raises(MMSpecError, match="not writable"):
            mm.save(_maps(), ro / "m.nc")
    finally:
        ro.chmod(0o755)


@pytest.fixture(scope="module")
def edges_file(inputs, tmp_path_factory):
    """Extracted edges of a few synthetic pixels, as ``mmspec predict`` reads."""
    si = inputs[1].isel(y=slice(0, 2), x=slice(0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eds = mm.extract_edges(si, edges=list(pl.DEFAULT_EDGES))
    return mm.save(eds, tmp_path_factory.mktemp("edges") / "edges.nc")


def test_predict_out_never_replaces_a_users_file_or_the_input(edges_file, tmp_path, capsys):
    from mmspec_widgets import cli

    before = edges_file.read_bytes()
    mine = tmp_path / "existing.nc"
    mine.write_text("my notes")
    assert cli.main(["predict", str(edges_file), "--out", str(mine)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert mine.read_text() == "my notes"
    hard = tmp_path / "hard.nc"
    os.link(edges_file, hard)
    assert cli.main(["predict", str(edges_file), "--out", str(hard), "--overwrite"]) == 1
    assert "read from" in capsys.readouterr().err
    assert edges_file.read_bytes() == before
    folder = tmp_path / "adir"
    folder.mkdir()
    assert cli.main(["predict", str(edges_file), "--out", str(folder), "--overwrite"]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert folder.is_dir()
    for bad in ("-5", "nan", "0"):
        assert cli.main(["predict", str(edges_file), "--out", str(tmp_path / "n.nc"),
                         "--drop-ood-edges", bad]) == 1
        assert "--drop-ood-edges" in capsys.readouterr().err
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    assert cli.main(["predict", str(edges_file), "--out", str(blocked / "m.nc")]) == 1
    assert "cannot create its folder" in capsys.readouterr().err
    assert cli.main(["predict", str(edges_file), "--out", str(mine), "--overwrite"]) == 0
    assert xr.load_dataset(mine)["ood"].size == 6
    assert edges_file.read_bytes() == before
    assert not (tmp_path / "n.nc").exists()


def test_demo_out_never_replaces_a_users_files(tmp_path, capsys):
    from mmspec_widgets import cli

    (tmp_path / "maps.png").write_bytes(b"my figure")
    (tmp_path / "other.txt").write_text("mine")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "maps.png").read_bytes() == b"my figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.png", "other.txt"]
    f = tmp_path / "a-file"
    f.write_text("x")
    assert cli.main(["demo", "--out", str(f)]) == 1
    assert "cannot create" in capsys.readouterr().err and f.read_text() == "x"


# --------------------------------------------------------------------------
# arguments checked where they enter


def test_calibration_never_reverses_or_overstretches_the_axis(inputs, monkeypatch):
    import importlib

    cal = importlib.import_module("mmspec_widgets.calibrate")  # the module, not the function
    _, si, zlp = inputs
    with pytest.raises(MMSpecError, match=r"stretches .* bound 0.9 - 1.1"):
        mm.calibrate(si, zlp=zlp, references={"O_K": 530.0, "Ni_L3": 620.0})
    # features found where a wrong reference list puts them: in the opposite
    # order of their reference energies, or 11.7 % too close together
    found = {"O_K": 530.2, "O_K_main": 539.1, "Ni_L3": 530.0 + 70.0 / 1.117}
    monkeypatch.setattr(cal, "locate_feature", lambda spectrum, n, **kw: found[n])
    summed = si.sum(("y", "x"))
    with pytest.raises(MMSpecError, match="reverses the energy axis"):
        cal.fit_calibration(summed, {"O_K": 531.0, "O_K_main": 530.5})
    found["O_K"] = 530.0
    with pytest.raises(MMSpecError, match=r"stretches the energy axis by 1.117"):
        cal.fit_calibration(summed, {"O_K": 530.0, "Ni_L3": 600.0})
    monkeypatch.undo()
    for bad in (float("nan"), float("inf"), -530.0):
        with pytest.raises(MMSpecError, match="finite, positive energy"):
            mm.calibrate(si, zlp=zlp, references={"O_K": bad})
    good = mm.calibrate(si, zlp=zlp, references=pl.REFERENCES)  # the standard chain's
    assert 0.9 <= good.attrs["calibration_scale"] <= 1.1


@pytest.mark.parametrize("order", [-1, 7, 50, 2.5, True])
def test_impossible_polynomial_orders_are_refused(order):
    from _synth import eels_si

    from mmspec_widgets.background import fit_background

    si, _, _ = eels_si(ny=1, nx=2, n=400)
    with pytest.raises(MMSpecError, match=f"order={order!r}"):
        mm.subtract_background(si, (500.0, 530.0), model="polynomial", order=order)
    with pytest.raises(MMSpecError, match="order="):
        fit_background(si, (500.0, 530.0), model="polynomial", order=order)


def test_polynomial_order_needs_enough_window_points():
    from _synth import eels_si

    si, _, _ = eels_si(ny=1, nx=2, n=400, de=1.0)
    with pytest.raises(MMSpecError, match="holds 6 points"):
        mm.subtract_background(si, (500.0, 505.0), model="polynomial", order=6)
    out = mm.subtract_background(si, (500.0, 530.0), model="polynomial", order=3)
    assert np.isfinite(out.values).all()


def test_msa_cut_at_a_line_boundary_is_refused(tmp_path):
    from mmspec_widgets.errors import FileFormatError

    e = 450.8 + 0.3 * np.arange(200)
    y = 1000.0 * np.exp(-(e - 480.0) ** 2 / 50.0) + 10.0
    header = ["#FORMAT      : EMSA/MAS Spectral Data File", "#VERSION     : 1.0",
              "#TITLE       : test", "#NPOINTS     : 200", "#NCOLUMNS    : 1",
              "#XUNITS      : eV", "#YUNITS      : Counts", "#DATATYPE    : XY",
              "#XPERCHAN    : 0.3", "#OFFSET      : 450.8", "#SIGNALTYPE  : ELS",
              "#SPECTRUM    : Spectral Data Starts Here"]
    rows = [f"{a:.6e}, {b:.6e}" for a, b in zip(e, y, strict=True)]
    whole = tmp_path / "whole.msa"
    whole.write_text("\n".join(header + rows + ["#ENDOFDATA   : End Of Data and File"]) + "\n")
    assert mm.load(whole).sizes["energy"] == 200
    cut = tmp_path / "cut.msa"
    cut.write_text("\n".join(header + rows[:100]) + "\n")
    with pytest.raises(FileFormatError, match=r"cut.msa: holds 100 data points but its header "
                                              r"says NPOINTS 200"):
        mm.load(cut)


# --------------------------------------------------------------------------
# a killed campaign leaves no FEFF worker running

_CAMPAIGN = """
import sys
from mmspec_widgets.simulate.campaign import run_campaign
from mmspec_widgets.simulate.structures import COMPOSITIONS, StructureSpec
spec = StructureSpec(composition=COMPOSITIONS["NMC622"], li=0.8, n_o_vacancy=1, seed=7)
run_campaign([spec], edges=["O_K"], out=sys.argv[1], n_workers=1, progress=False, max_jobs=1)
"""


def test_feff_worker_stops_soon_after_its_campaign_is_killed(tmp_path):
    """Killed while a FEFF stage runs (one that has run for 3.5 s: a long
    one, its job has seconds to go), the campaign leaves no process behind."""
    psutil = pytest.importorskip("psutil")
    env = {**os.environ, "PYTHONPATH": str(PKG_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _CAMPAIGN, str(tmp_path / "store")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        t_end = time.monotonic() + 120
        stage = None
        while stage is None and time.monotonic() < t_end and proc.poll() is None:
            for c in parent.children(recursive=True):
                try:
                    if "feff10._worker" in " ".join(c.cmdline()) \
                            and time.time() - c.create_time() > 3.5:
                        stage = c
                except psutil.Error:
                    pass
            time.sleep(0.05)
        assert stage is not None, "no long FEFF stage seen"
        left = parent.children(recursive=True)
    finally:
        proc.kill()
        proc.wait()
    gone, alive = psutil.wait_procs(left, timeout=2.0)

    def running(p):  # an exited process that nobody has reaped yet (zombie) has stopped
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    alive = [p for p in alive if running(p)]
    names = []
    for p in alive:  # leave nothing behind, whatever the outcome
        try:
            names.append(" ".join(p.cmdline()[-2:]))
            p.kill()
        except psutil.Error:
            pass
    assert not alive, f"still running 2 s after the campaign was killed: {names}"


# --------------------------------------------------------------------------
# the weaker cases: clear errors (or warnings) instead of nonsense or tracebacks


def _xas_rows(e: np.ndarray) -> str:
    mu = 1.0 / (1.0 + np.exp(-(e - 532.0)))
    return "\n".join(f"{a:.2f},{b:.6f}" for a, b in zip(e, mu, strict=True))


@pytest.mark.parametrize("kind", ["duplicate", "swapped"])
def test_csv_with_a_duplicated_or_swapped_energy_names_the_line(tmp_path, kind):
    from mmspec_widgets.errors import FileFormatError

    e = np.arange(520.0, 560.0, 0.5)
    k = 40
    if kind == "duplicate":
        e[k] = e[k - 1]
    else:
        e[[k, k + 1]] = e[[k + 1, k]]
    path = tmp_path / f"{kind}.csv"
    path.write_text("energy,mu\n" + _xas_rows(e) + "\n")
    # line 1 is the header: row k is on line k + 2
    line = k + 2 if kind == "duplicate" else k + 3
    with pytest.raises(FileFormatError, match=rf"{kind}.csv.*line {line}\b"):
        mm.load(path)
    ok = tmp_path / "two-scans.csv"  # a second scan starting again is still read
    e2 = np.arange(520.0, 560.0, 0.5)
    ok.write_text("energy,mu\n" + _xas_rows(e2) + "\n" + _xas_rows(e2) + "\n")
    assert mm.load(ok).sizes["scan"] == 2


def test_xdi_energy_in_furlongs_is_refused(tmp_path):
    from mmspec_widgets.errors import FileFormatError

    e = np.arange(520.0, 560.0, 0.5)
    head = ("# XDI/1.0\n# Column.1: energy furlongs\n# Column.2: mu\n"
            "# Element.symbol: O\n# Element.edge: K\n# ///\n#----\n# energy mu\n")
    path = tmp_path / "f.xdi"
    path.write_text(head + _xas_rows(e).replace(",", " ") + "\n")
    with pytest.raises(FileFormatError, match=r"f.xdi.*'furlongs', not an energy unit"):
        mm.load(path)
    path.write_text(head.replace("furlongs", "eV") + _xas_rows(e).replace(",", " ") + "\n")
    assert mm.load(path)["energy"].values[0] == pytest.approx(520.0)


def test_corrupt_hspy_loaded_lazily_is_a_clear_error(tmp_path):
    import hyperspy.api as hs

    from mmspec_widgets.errors import FileFormatError

    s = hs.signals.Signal1D(np.random.default_rng(0).random((20, 30, 400)).astype("float32"))
    ax = s.axes_manager.signal_axes[0]
    ax.units, ax.offset, ax.scale = "eV", 400.0, 0.5
    path = tmp_path / "c.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(path)
    raw = bytearray(path.read_bytes())
    k = int(0.5 * len(raw))
    raw[k:k + 4000] = b"\x55" * 4000  # a damaged data block, the header intact
    path.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="c.hspy: .*corrupt"):
        mm.load(path, lazy=True)


def test_negative_counts_are_refused_or_warned(inputs, tmp_path):
    _, si, zlp = inputs
    with pytest.raises(MMSpecError, match=r"si: 100.0 % of the values are negative"):
        pl.map_spectrum_image(-si - 1.0, zlp, model=StandInModel(), out=tmp_path / "a.zarr",
                              block=BLOCK, progress=False)
    some = si.copy(data=si.values.copy())
    some.values[:2] = -5.0  # a third of the pixels
    with pytest.warns(UserWarning, match="% of the values are negative"), \
            pytest.raises(KeyboardInterrupt):  # the model stops it: the warning is what counts
        pl.map_spectrum_image(some, zlp, model=StandInModel(fail_after=0),
                              out=tmp_path / "b.zarr", block=BLOCK, progress=False)
    assert not (tmp_path / "a.zarr").exists()


def test_zero_loss_mixups_are_named(inputs):
    _, si, zlp = inputs
    with pytest.raises(MMSpecError, match="holds no zero-loss peak.*core-loss SI"):
        pl.fit_plan(si, si)
    with pytest.raises(MMSpecError, match="holds no zero-loss peak.*core-loss SI"):
        mm.calibrate(si, zlp=si)
    flipped = xr.DataArray(np.ascontiguousarray(zlp.values.transpose(1, 0, 2)),
                           dims=("y", "x", "energy"), coords={"energy": zlp["energy"]})
    for f in (lambda: pl.fit_plan(si, flipped), lambda: mm.calibrate(si, zlp=flipped)):
        with pytest.raises(MMSpecError, match="x and y swapped: a transposed zero-loss SI"):
            f()


def test_bad_arguments_are_clear_errors(inputs, tmp_path, capsys):
    from mmspec_widgets import cli
    from mmspec_widgets.learn import load_model

    _, si, zlp = inputs
    for edges in (None, 5):
        with pytest.raises(MMSpecError, match=r"edges=.*expected a list of edge names"):
            pl.map_spectrum_image(si, zlp, model=StandInModel(), edges=edges,
                                  out=tmp_path / "e.zarr", progress=False)
    for t in (float("nan"), float("inf"), -1.0):
        with pytest.raises(MMSpecError, match="threshold="):
            mm.remove_spikes(si, threshold=t)
        with pytest.raises(MMSpecError, match="spike_threshold="):
            pl.fit_plan(si, zlp, spike_threshold=t)
    with pytest.raises(MMSpecError, match=r"load_model: path=123"):
        load_model(123)
    for args, what in ((["--folds", "0"], "--folds 0"), (["--trials", "-3"], "--trials -3"),
                       (["--folds", "1"], "--folds 1")):
        assert cli.main(["train", "--out", str(tmp_path / "m.skops"), *args]) == 1
        assert what in capsys.readouterr().err
    assert not (tmp_path / "m.skops").exists()


def test_model_whose_grids_disagree_with_the_edge_table_is_refused(tmp_path):
    from mmspec_widgets.errors import FileFormatError
    from mmspec_widgets.learn import load_model, save_model

    model = load_model()
    edge = model.edges_[0]
    model.grids_[edge] = np.asarray(model.grids_[edge]) + 2.0  # trained on a shifted grid
    path = save_model(model, tmp_path / "shifted.skops")
    with pytest.raises(FileFormatError, match=rf"shifted.skops: the model's grid for {edge}"):
        load_model(path)


def test_store_reached_through_a_symlink_is_resumed_in_place(inputs, fresh, tmp_path):
    _, si, zlp = inputs
    real = tmp_path / "scratch" / "m.zarr"
    real.parent.mkdir()
    real.mkdir()
    link = tmp_path / "m.zarr"
    link.symlink_to(real)
    with pytest.raises(KeyboardInterrupt):
        pl.map_spectrum_image(si, zlp, model=StandInModel(fail_after=2), out=link, block=BLOCK,
                              progress=False)
    again = StandInModel()
    res = pl.map_spectrum_image(si, zlp, model=again, out=link, block=BLOCK, progress=False)
    assert again.calls < 1 + 4  # the blocks written before the stop are kept
    _same_maps(res, fresh)
    assert link.is_symlink() and (real / "zarr.json").exists()


def test_train_out_never_replaces_a_users_file(tmp_path, capsys):
    from mmspec_widgets.cli import main

    mine = tmp_path / "my_model.skops"
    mine.write_bytes(b"a model the user trained last week")
    assert main(["train", "--out", str(mine), "--trials", "0"]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert mine.read_bytes() == b"a model the user trained last week"


def test_demo_runs_again_over_its_own_outputs_only(tmp_path):
    from mmspec_widgets import cli

    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 0
    first = (out / "summary.json").read_text()
    assert cli.main(["demo", "--out", str(out)]) == 0  # its own outputs: replaced
    assert (out / "summary.json").read_text() != "" and "scores" in first
    # a user's summary.json of another kind makes the folder theirs again
    (out / "summary.json").write_text('{"my": "notes"}')
    assert cli.main(["demo", "--out", str(out)]) == 1
    assert (out / "summary.json").read_text() == '{"my": "notes"}'
