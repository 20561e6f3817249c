"""The checksummed registry of the published NMC data: mirror, cache, download."""

from __future__ import annotations

import re
import shutil

import pytest

from mmspec_widgets import datasets
from mmspec_widgets.errors import DataError, MMSpecError

SMALL = "nmc-eels-si/TM/Ni_edge.msa"
SI_KEY = "nmc-eels-si/TM/TM+O EELS Spectrum Image.dm3"
XLSX = "nmc-electrochem/NCM MW & TC.xlsx"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty mirror and a private cache: nothing is found locally."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("MMSPEC_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("MMSPEC_CACHE", str(cache))
    return mirror, cache


def _fake_remote(root, shared_data, keys):
    """A folder in the remote repository's layout holding copies of ``keys``."""
    for key in keys:
        dst = root / datasets.remote_path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / key, dst)
    return root


def test_registry_lists_the_published_files(shared_data):
    reg = datasets.registry()
    keys = datasets.list_files()
    assert keys == sorted(reg) and len(keys) == 24 + 22
    for kind in ("TM", "ZLP", "Si"):
        assert sum(k.startswith(f"nmc-eels-si/{kind}/") for k in keys) >= 4  # SI, survey, ADF, a spectrum
    assert sum(k.startswith("nmc-electrochem/") for k in keys) == 6
    assert sum(k.startswith("xas-references/") and k.endswith(".xdi") for k in keys) == 21
    for key, digest in reg.items():
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), key
        assert (shared_data / key).is_file(), key


def test_registry_matches_the_mirror(shared_data):
    # regenerating from the read-only mirror gives the shipped file
    shipped = (datasets.Path(datasets.__file__).parent / "registry.txt").read_text()
    assert datasets.build_registry(shared_data) == shipped


def test_remote_paths_and_urls(monkeypatch):
    monkeypatch.delenv("MMSPEC_DATA_URL", raising=False)
    assert datasets.remote_path(SI_KEY) == "Data/Exp_data/EELS/TM/TM+O EELS Spectrum Image.dm3"
    assert datasets.remote_path(XLSX) == "Data/Exp_data/XAS/NCM MW & TC.xlsx"
    assert datasets.url(XLSX) == (
        "https://github.com/HailiJia/MultimodalEELS-XAS/raw/"
        "9911ede775948e3c444ef4310a52beed63bc6716/Data/Exp_data/XAS/NCM%20MW%20%26%20TC.xlsx"
    )
    assert datasets.url(SI_KEY).endswith("/EELS/TM/TM%2BO%20EELS%20Spectrum%20Image.dm3")
    monkeypatch.setenv("MMSPEC_DATA_URL", "https://example.org/mirror")
    assert datasets.url(SMALL) == "https://example.org/mirror/Data/Exp_data/EELS/TM/Ni_edge.msa"


def test_fetch_from_mirror_in_place(shared_data, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MMSPEC_DATA_MIRROR", str(shared_data))
    monkeypatch.setenv("MMSPEC_CACHE", str(cache))
    path = datasets.fetch(SI_KEY)
    assert path == (shared_data / SI_KEY).resolve()
    assert not cache.exists()  # nothing copied


def test_unknown_key_lists_valid_keys():
    with pytest.raises(MMSpecError) as ei:
        datasets.fetch("nmc-eels-si/TM/nope.dm3")
    msg = str(ei.value)
    assert "nope.dm3" in msg and SI_KEY in msg and XLSX in msg


def test_hash_is_cached_by_path_size_mtime(tmp_path, monkeypatch):
    f = tmp_path / "blob.bin"
    f.write_bytes(b"abc" * 1000)
    first = datasets.file_hash(f)
    import hashlib

    assert first == hashlib.sha256(b"abc" * 1000).hexdigest()

    def boom(*a, **k):
        raise AssertionError("rehashed")

    monkeypatch.setattr(datasets.hashlib, "sha256", boom)
    assert datasets.file_hash(f) == first  # served from the cache
    f.write_bytes(b"abcd" * 1000)  # new size and mtime -> must rehash
    with pytest.raises(AssertionError, match="rehashed"):
        datasets.file_hash(f)


def test_mirror_with_wrong_file(tmp_path, monkeypatch, shared_data):
    mirror = tmp_path / "mirror"
    bad = mirror / SMALL
    bad.parent.mkdir(parents=True)
    data = bytearray((shared_data / SMALL).read_bytes())
    data[100] ^= 0x01  # one flipped bit
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("MMSPEC_DATA_MIRROR", str(mirror))
    with pytest.raises(DataError) as ei:
        datasets.fetch(SMALL)
    msg = str(ei.value)
    assert "Ni_edge.msa" in msg and "checksum mismatch" in msg


def test_download_from_file_url(tmp_path, monkeypatch, shared_data, offline):
    _, cache = offline
    remote = _fake_remote(tmp_path / "remote", shared_data, [SMALL, XLSX])
    monkeypatch.setenv("MMSPEC_DATA_URL", remote.as_uri())
    path = datasets.fetch(XLSX)
    assert path == cache / XLSX
    assert path.read_bytes() == (shared_data / XLSX).read_bytes()
    # a second fetch uses the cache: the remote may disappear
    shutil.rmtree(remote)
    assert datasets.fetch(XLSX) == path


def test_download_with_wrong_content(tmp_path, monkeypatch, shared_data, offline):
    remote = _fake_remote(tmp_path / "remote", shared_data, [SMALL])
    (remote / datasets.remote_path(SMALL)).write_text("replaced\n")
    monkeypatch.setenv("MMSPEC_DATA_URL", remote.as_uri())
    with pytest.raises(DataError) as ei:
        datasets.fetch(SMALL)
    assert "Ni_edge.msa" in str(ei.value) and "checksum" in str(ei.value)


def test_download_failure_is_clear(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("MMSPEC_DATA_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(MMSpecError) as ei:
        datasets.fetch(SMALL)
    msg = str(ei.value)
    assert "could not download" in msg and "MMSPEC_DATA_MIRROR" in msg


def test_https_download_path(monkeypatch, shared_data, offline):
    """The default https route, with pooch's HTTP downloader replaced by a local copy."""
    import pooch

    monkeypatch.delenv("MMSPEC_DATA_URL", raising=False)
    seen = []

    def fake_call(self, url, output_file, pooch_obj, check_only=False):
        seen.append(url)
        src = shared_data / datasets.list_files()[
            [datasets.url(k) for k in datasets.list_files()].index(url)]
        with open(output_file, "wb") as fh:
            fh.write(src.read_bytes())

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", fake_call)
    path = datasets.fetch(SI_KEY)
    assert seen == [datasets.DEFAULT_URL + "Data/Exp_data/EELS/TM/"
                    "TM%2BO%20EELS%20Spectrum%20Image.dm3"]
    assert path.name == "TM+O EELS Spectrum Image.dm3"
    assert datasets.file_hash(path) == datasets.registry()[SI_KEY].split(":")[1]


@pytest.mark.parametrize("kind,n_x", [("TM", 21), ("zlp", 21), ("Si", 28)])
def test_nmc_eels_si(kind, n_x):
    from mmspec_widgets.io import load

    files = datasets.nmc_eels_si(kind)
    assert set(files) == {"si", "survey", "adf", "spectra"}
    assert "(SI Survey)" in files["survey"].name and files["adf"].name == "ADF Image.dm3"
    assert files["spectra"] and all(p.is_file() for p in files["spectra"].values())
    si = load(files["si"])
    assert si.dims == ("y", "x", "energy") and si.sizes["x"] == n_x
    assert load(files["adf"]).shape == (2, n_x)


def test_nmc_eels_si_bad_kind():
    with pytest.raises(MMSpecError, match="TM, ZLP, Si"):
        datasets.nmc_eels_si("XAS")


def test_nmc_electrochem():
    files = datasets.nmc_electrochem()
    assert set(files) == {"622", "712", "712-Al", "811", "811-Al", "NCM MW & TC"}
    assert files["622"].suffix == ".csv"


def test_xas_references_by_compound_and_their_remote_paths(monkeypatch):
    monkeypatch.delenv("MMSPEC_XAS_URL", raising=False)
    refs = datasets.xas_references()
    assert {"MnO", "Mn3O4", "Mn2O3", "MnO2", "NiOH2", "Ni_metal", "co_metal"} <= set(refs)
    assert len(refs["MnO"]) == 3 and all(p.suffix == ".xdi" for p in refs["MnO"])
    assert datasets.remote_path("xas-references/MnO_rt_01.xdi") == "data/Mn/MnO_rt_01.xdi"
    assert datasets.remote_path("xas-references/co_metal_rt.xdi") == "data/Co/co_metal_rt.xdi"
    assert datasets.url("xas-references/NiOH2_rt_01.xdi").startswith(datasets.XAS_LIBRARY_URL)
