"""Registry of the public NMC data of Jia et al. (ACS Nano 2026, arXiv 2501.08919).

The experimental files published with the paper (repository
``HailiJia/MultimodalEELS-XAS``, MIT licence) are listed with their SHA-256 in
``registry.txt``, pinned to one commit. :func:`fetch` returns a local path:

1. if ``$MMSPEC_DATA_MIRROR`` names a folder that holds the file (same layout as
   the keys, e.g. ``nmc-eels-si/TM/...``), the file is checked and returned in
   place, never copied;
2. otherwise it is downloaded with pooch into ``$MMSPEC_CACHE`` (default
   ``pooch.os_cache("mmspec_widgets")``) from ``$MMSPEC_DATA_URL`` (default the
   pinned GitHub commit) and checked.

Keys follow the local layout::

    nmc-eels-si/{TM,ZLP,Si}/<file>    <- Data/Exp_data/EELS/{TM,ZLP,Si}/<file>
    nmc-electrochem/<file>            <- Data/Exp_data/XAS/<file>

and, from the XAS Data Library (``XraySpectroscopy/XASDataLibrary``, public
domain), the measured K-edge XAS of the reference compounds that judge the
simulations (:func:`xas_references`)::

    xas-references/<file>             <- data/{Mn,Ni,Co}/<file>

Regenerate the registry from a folder holding the files with
``python -m mmspec_widgets.datasets <folder>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from .errors import DataError, MMSpecError

__all__ = [
    "REPOSITORY",
    "COMMIT",
    "DEFAULT_URL",
    "registry",
    "list_files",
    "remote_path",
    "url",
    "cache_dir",
    "file_hash",
    "fetch",
    "nmc_eels_si",
    "nmc_electrochem",
    "xas_references",
    "build_registry",
]

REPOSITORY = "HailiJia/MultimodalEELS-XAS"
COMMIT = "9911ede775948e3c444ef4310a52beed63bc6716"
DEFAULT_URL = f"https://github.com/{REPOSITORY}/raw/{COMMIT}/"

# local folder -> folder in the remote repository
_REMOTE_DIRS = {
    "nmc-eels-si/": "Data/Exp_data/EELS/",
    "nmc-electrochem/": "Data/Exp_data/XAS/",
}
#: Second source: measured K-edge XAS of reference compounds (public domain).
XAS_LIBRARY_URL = "https://github.com/XraySpectroscopy/XASDataLibrary/raw/master/"
_XAS_REF = "xas-references/"
_EELS_KINDS = ("TM", "ZLP", "Si")
_SKIP = {"README.md", ".DS_Store"}

# (path, size, mtime_ns) -> sha256 hex digest
_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_REGISTRY: dict[str, str] | None = None


# ---------------------------------------------------------------- registry
def _parse_registry(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        key, _, digest = ln.rpartition(" ")  # keys may hold spaces
        if not key or not digest.startswith("sha256:"):
            raise MMSpecError(f"registry.txt: malformed line {ln!r}; expected '<key> sha256:<hex>'")
        out[key.strip()] = digest
    return out


def registry() -> dict[str, str]:
    """All registered files.

    Returns
    -------
    dict
        ``{key: "sha256:<hex>"}``, keys in the local layout
        (``"nmc-eels-si/TM/TM+O EELS Spectrum Image.dm3"``).
    """
    global _REGISTRY
    if _REGISTRY is None:
        text = resources.files(__package__).joinpath("registry.txt").read_text("utf-8")
        _REGISTRY = _parse_registry(text)
    return dict(_REGISTRY)


def list_files() -> list[str]:
    """Sorted keys of all registered files."""
    return sorted(registry())


def _check_key(key: str) -> str:
    reg = registry()
    if not isinstance(key, str) or key not in reg:
        raise MMSpecError(
            f"unknown data file {key!r}; expected one of:\n  " + "\n  ".join(sorted(reg))
        )
    return reg[key]


def remote_path(key: str) -> str:
    """Path of ``key`` inside its remote repository (``Data/Exp_data/...``, or
    ``data/<element>/...`` for the XAS reference compounds)."""
    _check_key(key)
    if key.startswith(_XAS_REF):
        name = key[len(_XAS_REF):]
        if name.startswith("LICENSE"):
            return "LICENSE"
        element = name[:2].capitalize()
        return f"data/{element}/{name}"
    for local, remote in _REMOTE_DIRS.items():
        if key.startswith(local):
            return remote + key[len(local):]
    return key


def url(key: str) -> str:
    """Download URL of ``key``: ``$MMSPEC_DATA_URL`` (or :data:`DEFAULT_URL`)
    joined with the quoted remote path (the XAS reference compounds:
    ``$MMSPEC_XAS_URL`` or :data:`XAS_LIBRARY_URL`)."""
    if key.startswith(_XAS_REF):
        base = os.environ.get("MMSPEC_XAS_URL") or XAS_LIBRARY_URL
    else:
        base = os.environ.get("MMSPEC_DATA_URL") or DEFAULT_URL
    if not base.endswith("/"):
        base += "/"
    return base + quote(remote_path(key), safe="/")


def cache_dir() -> Path:
    """Download cache: ``$MMSPEC_CACHE`` or ``pooch.os_cache("mmspec_widgets")``."""
    env = os.environ.get("MMSPEC_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("mmspec_widgets"))


# ---------------------------------------------------------------- hashing
def file_hash(path: str | Path) -> str:
    """SHA-256 hex digest of a file, cached in memory by (path, size, mtime).

    Parameters
    ----------
    path : str or pathlib.Path
        File to hash (read only).

    Returns
    -------
    str
        Hex digest (64 characters).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        _HASH_CACHE[key] = digest
    return digest


def _verify(path: Path, expected: str, key: str, where: str) -> Path:
    algo, _, hexd = expected.partition(":")
    actual = file_hash(path)
    if actual != hexd.lower():
        raise DataError(
            f"{path}: {algo} checksum mismatch for {key!r} ({where}): expected {hexd}, got "
            f"{actual}. The file is not the published one (damaged or replaced)."
        )
    return path


# ---------------------------------------------------------------- fetching
def _file_downloader(url_: str, output_file, pooch_obj=None) -> None:
    """pooch downloader for ``file://`` URLs (offline mirrors in the remote layout)."""
    src = Path(unquote(urlparse(url_).path))
    if not src.is_file():
        raise FileNotFoundError(f"{src} (from {url_})")
    if hasattr(output_file, "write"):
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, output_file)
    else:
        shutil.copyfile(src, output_file)


def fetch(key: str, *, progressbar: bool = False) -> Path:
    """Local path of a registered file, checked against its SHA-256.

    Parameters
    ----------
    key : str
        Registry key, e.g. ``"nmc-eels-si/TM/TM+O EELS Spectrum Image.dm3"``
        (see :func:`list_files`).
    progressbar : bool, default False
        Show a download progress bar (needs tqdm).

    Returns
    -------
    pathlib.Path
        The file in the mirror folder (``$MMSPEC_DATA_MIRROR``) when it holds
        it, returned in place, else the file in the download cache.

    Raises
    ------
    MMSpecError
        Unknown key (the message lists valid keys) or download failure.
    DataError
        The mirrored or downloaded file does not match its checksum.
    """
    expected = _check_key(key)
    mirror = os.environ.get("MMSPEC_DATA_MIRROR")
    if mirror:
        candidate = Path(mirror).expanduser() / key
        if candidate.is_file():
            return _verify(candidate.resolve(), expected, key, f"mirror {mirror}")

    import pooch

    src = url(key)
    target = cache_dir() / key
    downloader = _file_downloader if src.startswith("file://") else None
    try:
        got = pooch.retrieve(
            src,
            known_hash=expected,
            fname=target.name,
            path=target.parent,
            downloader=downloader,
            progressbar=progressbar,
        )
    except ValueError as err:
        if "hash" in str(err).lower():
            raise DataError(
                f"{target}: checksum mismatch for {key!r} downloaded from {src}: {err}"
            ) from err
        raise MMSpecError(f"could not download {key!r} from {src}: {err}") from err
    except Exception as err:
        raise MMSpecError(
            f"could not download {key!r} from {src}: {type(err).__name__}: {err}. "
            "Set MMSPEC_DATA_MIRROR to a folder holding the files to work offline."
        ) from err
    return Path(got)


def nmc_eels_si(kind: str = "TM") -> dict:
    """Paths of one STEM-EELS acquisition of the Si-doped NMC particle.

    Parameters
    ----------
    kind : {"TM", "ZLP", "Si"}
        ``"TM"``: core-loss SI 440 - 1054 eV (O K, Mn/Co/Ni L2,3);
        ``"ZLP"``: zero-loss SI of the same line scan (-60 - 554 eV);
        ``"Si"``: SI 35 - 649 eV (Li K, Si L2,3, O K). Case-insensitive.

    Returns
    -------
    dict
        ``{"si": Path, "survey": Path, "adf": Path, "spectra": {name: Path}}``:
        the spectrum image, the ADF survey image of the area, the ADF signal
        recorded with the SI, and the spectra saved alongside (``.msa`` and
        other single-spectrum files), keyed by file name without extension.
    """
    kinds = {k.lower(): k for k in _EELS_KINDS}
    if not isinstance(kind, str) or kind.lower() not in kinds:
        raise MMSpecError(f"kind={kind!r}: expected one of {', '.join(_EELS_KINDS)}")
    folder = f"nmc-eels-si/{kinds[kind.lower()]}/"
    out: dict = {"spectra": {}}
    for key in list_files():
        if not key.startswith(folder):
            continue
        name = key[len(folder):]
        if name.endswith("(SI Survey).dm3"):
            out["survey"] = fetch(key)
        elif name == "ADF Image.dm3":
            out["adf"] = fetch(key)
        elif name.endswith("Spectrum Image.dm3") and not name.startswith("("):
            out["si"] = fetch(key)
        else:
            out["spectra"][Path(name).stem] = fetch(key)
    return out


def nmc_electrochem() -> dict[str, Path]:
    """Paths of the galvanostatic cycling tables (NMC622, 712, 811, Al-doped)
    and of the molar-mass/theoretical-capacity sheet, keyed by file stem."""
    folder = "nmc-electrochem/"
    return {Path(k).stem: fetch(k) for k in list_files() if k.startswith(folder)}


def xas_references() -> dict[str, list[Path]]:
    """Paths of the measured K-edge XAS of the reference compounds (XDI files).

    Returns
    -------
    dict
        Compound name (file stem without ``_rt_0N``: ``"MnO"``, ``"Mn3O4"``,
        ``"Mn2O3"``, ``"MnO2"``, ``"NiOH2"``, ``"Ni2O3"``, ``"Ni_metal"``,
        ``"co_metal"``) -> sorted list of its repeat scans.
    """
    out: dict[str, list[Path]] = {}
    for key in list_files():
        if key.startswith(_XAS_REF) and key.endswith(".xdi"):
            stem = Path(key).stem
            name = stem.split("_rt")[0]
            out.setdefault(name, []).append(fetch(key))
    return {k: sorted(v) for k, v in sorted(out.items())}


# ---------------------------------------------------------------- building
def build_registry(root: str | Path) -> str:
    """Registry text for the files under ``root`` (local layout).

    Parameters
    ----------
    root : str or pathlib.Path
        Folder holding ``nmc-eels-si/``, ``nmc-electrochem/`` and
        ``xas-references/``.

    Returns
    -------
    str
        ``<key> sha256:<hex>`` lines, sorted; the files are only read.
    """
    root = Path(root)
    lines = []
    for local in [*_REMOTE_DIRS, _XAS_REF]:
        base = root / local
        if not base.is_dir():
            raise MMSpecError(f"{base}: not a folder; expected the {local} data folder")
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.name not in _SKIP:
                lines.append(f"{p.relative_to(root).as_posix()} sha256:{file_hash(p)}")
    header = [
        f"# SHA-256 of the experimental data of {REPOSITORY} (MIT licence)",
        f"# at commit {COMMIT}, and of the XAS Data Library reference compounds",
        "# (xas-references/, public domain); keys in the local layout (see datasets.py).",
        "# Regenerate: python -m mmspec_widgets.datasets <folder>",
    ]
    return "\n".join(header + sorted(lines)) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(build_registry(sys.argv[1] if len(sys.argv) > 1 else "."))
