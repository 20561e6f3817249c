"""Bad files and bad arguments give a clear MMSpecError naming the file."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from mmspec_widgets.errors import DataError, FileFormatError, MMSpecError
from mmspec_widgets.io import load

E = np.arange(525.0, 545.0, 0.5)


def _good_rows(mu=None):
    mu = np.linspace(0.1, 1.0, E.size) if mu is None else mu
    return [f"{e},{m}" for e, m in zip(E, mu, strict=True)]


def _assert_clear(excinfo, path, *words):
    msg = str(excinfo.value)
    assert os.path.basename(str(path)) in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    assert "Traceback" not in msg


def test_nonexistent_path(tmp_path):
    path = tmp_path / "missing.dm3"
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "no such file")


def test_directory_is_not_a_file(tmp_path):
    d = tmp_path / "folder.dm3"
    d.mkdir()
    with pytest.raises(FileFormatError) as ei:
        load(d)
    _assert_clear(ei, d, "not a regular file")


def test_bad_path_type():
    with pytest.raises(FileFormatError, match="expected a file path"):
        load(12)


def test_unknown_extension(tmp_path):
    path = tmp_path / "spectrum.xyz"
    path.write_text("1 2\n3 4\n")
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "unknown file extension", ".dm3", ".xdi")


@pytest.mark.parametrize("name", ["empty.dm3", "empty.msa", "empty.hspy", "empty.csv",
                                  "empty.xdi"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "empty", "expected")


def test_blank_text_file(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n  \n\n")
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "blank")


@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_dm3(tmp_path, tm_si_path, lazy):
    raw = tm_si_path.read_bytes()
    path = tmp_path / "half.dm3"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError) as ei:
        da = load(path, lazy=lazy)
        da.values  # noqa: B018 - a lazy read may fail only when computed
    _assert_clear(ei, path, "truncated or corrupt")
    assert isinstance(ei.value, MMSpecError)


def test_corrupt_dm3(tmp_path):
    path = tmp_path / "noise.dm3"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "could not be read", "Digital Micrograph")


def test_corrupt_hspy(tmp_path):
    path = tmp_path / "noise.hspy"
    path.write_bytes(b"not an HDF5 file at all" * 100)
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "HyperSpy")


def test_garbage_msa(tmp_path):
    path = tmp_path / "garbage.msa"
    path.write_text("this is not\nan EMSA file\n")
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "expected", "MSA")


def test_binary_bytes_in_column_file(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "binary")


def test_hspy_without_energy_axis(tmp_path):
    import hyperspy.api as hs

    s = hs.signals.Signal1D(np.ones((3, 40), dtype=np.float32))
    ax = s.axes_manager.signal_axes[0]
    ax.units, ax.name, ax.scale = "nm", "distance", 0.5
    path = tmp_path / "profile.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.save(path)
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "energy axis", "nm")


def test_column_file_without_monotonic_column(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "random.csv"
    path.write_text("a,b,c\n" + "\n".join(",".join(f"{v}" for v in r) for r in rng.random((30, 3))))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "no energy axis", "monotonic")


def test_named_energy_column_not_monotonic(tmp_path):
    path = tmp_path / "shuffled.dat"
    e = E.copy()
    e[[3, 10]] = e[[10, 3]]
    path.write_text("energy mu\n" + "\n".join(f"{a} {b}" for a, b in zip(e, E, strict=True)))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "not monotonic", "energy")


def test_nan_and_inf_in_mu(tmp_path):
    rows = _good_rows()
    rows[4] = f"{E[4]},nan"
    rows[7] = f"{E[7]},inf"
    path = tmp_path / "holes.csv"
    path.write_text("energy,mu\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as ei:
        load(path)
    # data rows 4 and 7 sit on file lines 6 and 9 (after the header)
    _assert_clear(ei, path, "NaN/inf", "lines 6, 9", "'mu'")


def test_nonpositive_transmission(tmp_path):
    rows = [f"{e} 1000 {500 if k != 5 else 0}" for k, e in enumerate(E)]
    path = tmp_path / "trans.txt"
    path.write_text("# energy I0 It\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError) as ei:
        load(path)
    _assert_clear(ei, path, "ln(I0/It)", "line 7")


def test_short_row(tmp_path):
    rows = [f"{e} {m} {m}" for e, m in zip(E, np.linspace(0, 1, E.size), strict=True)]
    rows[-1] = f"{E[-1]} 0.5"
    path = tmp_path / "cut.dat"
    path.write_text("energy mu1 mu2\n" + "\n".join(rows))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, f"line {E.size + 1}", "3 values")


def test_text_inside_numbers(tmp_path):
    rows = _good_rows()
    rows[3] = f"{E[3]},0.3x"
    path = tmp_path / "typo.csv"
    path.write_text("energy,mu\n" + "\n".join(rows))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "line 5")


def test_no_absorption_column(tmp_path):
    path = tmp_path / "ambiguous.txt"
    path.write_text("\n".join(f"{e} 1 2" for e in E))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "absorption", "mu=")


def test_unknown_column_override(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("energy,mu\n" + "\n".join(_good_rows()))
    with pytest.raises(MMSpecError) as ei:
        load(path, mu="xmu_missing")
    _assert_clear(ei, path, "xmu_missing", "'energy'", "'mu'")
    with pytest.raises(MMSpecError, match="energy=7"):
        load(path, energy=7)


def test_xdi_without_header(tmp_path):
    path = tmp_path / "plain.xdi"
    path.write_text("\n".join(f"{e} {m}" for e, m in zip(E, E, strict=True)))
    with pytest.raises(FileFormatError) as ei:
        load(path)
    _assert_clear(ei, path, "XDI/1.0")


def test_signal_out_of_range(shared_data, tm_si_path):
    three = shared_data / "nmc-eels-si" / "Si" / "(1) Spectrum of EELS Spectrum Image.dm3"
    with pytest.raises(DataError) as ei:
        load(three, signal=3)
    _assert_clear(ei, three, "signal=3", "3 signal", "0..2")
    with pytest.raises(DataError) as ei:
        load(tm_si_path, signal=1)
    _assert_clear(ei, tm_si_path, "signal=1", "0..0")
    with pytest.raises(MMSpecError, match="signal="):
        load(tm_si_path, signal="first")


def test_column_options_on_instrument_file(tm_si_path):
    with pytest.raises(MMSpecError, match="column files only"):
        load(tm_si_path, mu="mu")


def test_failed_load_leaves_file_alone(tmp_path):
    path = tmp_path / "holes.csv"
    rows = _good_rows()
    rows[2] = f"{E[2]},nan"
    path.write_text("energy,mu\n" + "\n".join(rows))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    with pytest.raises(DataError):
        load(path)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
