"""FEFF10 K-edge XANES of one absorbing site (O K, Li K, Mn/Co/Ni K).

:func:`feff_input` writes a ``feff.inp`` for a site of an
:class:`~mmspec_widgets.simulate.structures.NMCStructure`: a cluster cut
from the periodic supercell (all periodic images within ``r_cluster`` of the
absorber, so the cluster never sees a truncated cell), one unique potential per
element (the absorber is potential 0), XANES with full multiple scattering
(FMS) within ``rfms``, a core hole (RPA screened by default) and no
self-consistency unless asked for. :func:`run_feff` runs it with the
``feff10-rs`` bindings in a scratch folder and returns the spectrum.

Defaults come from the convergence study in ``docs/simulation.md``
(``benchmarks/feff_convergence.py``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import MMSpecError

__all__ = ["FeffParams", "feff_input", "run_feff", "feff_version", "FeffRunError"]

_Z = {"H": 1, "Li": 3, "O": 8, "Mn": 25, "Co": 27, "Ni": 28, "La": 57}
_POT_ORDER = ("O", "Li", "Mn", "Co", "Ni", "H", "La")
_K_ABSORBERS = ("Li", "O", "Mn", "Co", "Ni")


class FeffRunError(RuntimeError):
    """FEFF failed on one site (the campaign records it and goes on)."""


@dataclass(frozen=True)
class FeffParams:
    """FEFF settings of a K-edge XANES run.

    Parameters
    ----------
    rfms : float
        Full-multiple-scattering radius (Angstrom).
    r_cluster : float or None
        Radius (Angstrom) of the ATOMS list; ``rfms + 2`` when None.
    corehole : {"RPA", "FSR", "none"}
        Core-hole treatment.
    scf : float or None
        Self-consistency radius (Angstrom); None: overlapped atomic potentials
        (no self-consistency: the Fermi level, hence absolute edge energies
        and chemical shifts, are then only estimates).
    scf_iterations : int
        Maximum number of SCF iterations (FEFF ``nscmt``).
    scf_mixing : float
        Mixing (convergence accelerator) factor of the SCF loop (FEFF ``ca``).
    scf_nmix : int
        Iterations of simple mixing before Broyden mixing starts (FEFF ``nmix``).
    xanes_kmax : float
        Upper end of the XANES calculation in 1/Angstrom (4 ~ 60 eV).
    exchange : int
        FEFF EXCHANGE model (0: Hedin-Lundqvist).
    """

    rfms: float = 5.0
    r_cluster: float | None = None
    corehole: str = "RPA"
    scf: float | None = None
    xanes_kmax: float = 4.0
    exchange: int = 0
    scf_iterations: int = 30
    scf_mixing: float = 0.2
    scf_nmix: int = 1

    def __post_init__(self):
        if not 2.0 <= float(self.rfms) <= 12.0:
            raise MMSpecError(f"FeffParams.rfms={self.rfms!r}: expected 2 - 12 Angstrom")
        if self.corehole not in ("RPA", "FSR", "none"):
            raise MMSpecError(
                f"FeffParams.corehole={self.corehole!r}: expected 'RPA', 'FSR' or 'none'"
            )
        if self.scf is not None and not 1.5 <= float(self.scf) <= 8.0:
            raise MMSpecError(f"FeffParams.scf={self.scf!r}: expected None or 1.5 - 8 Angstrom")
        if not 1 <= int(self.scf_iterations) <= 100:
            raise MMSpecError(f"FeffParams.scf_iterations={self.scf_iterations!r}: "
                              "expected 1 - 100")
        if not 0.0 < float(self.scf_mixing) <= 1.0:
            raise MMSpecError(f"FeffParams.scf_mixing={self.scf_mixing!r}: expected 0 - 1")
        if not 0 <= int(self.scf_nmix) <= 100:
            raise MMSpecError(f"FeffParams.scf_nmix={self.scf_nmix!r}: expected 0 - 100")

    @property
    def cluster_radius(self) -> float:
        return float(self.r_cluster) if self.r_cluster else float(self.rfms) + 2.0

    def to_dict(self) -> dict:
        return asdict(self)


def feff_version() -> str:
    """Version string of the feff10-rs bindings (``"unavailable"`` if absent)."""
    try:
        import feff10

        return f"feff10-rs {feff10.__version__} (FEFF 10.0.0)"
    except Exception:  # pragma: no cover - environment without FEFF
        return "unavailable"


def _canonical(atom) -> tuple:
    """Sort key of a cluster atom (see :func:`_cluster`)."""
    sym, x, y, z, r, _idx = atom
    rank = _POT_ORDER.index(sym) if sym in _POT_ORDER else len(_POT_ORDER)
    return (_snap(r, 4), rank, sym, _snap(x, 4), _snap(y, 4), _snap(z, 4))


def _snap(v: float, ndigits: int) -> float:
    """``v`` rounded to ``ndigits`` decimals after snapping it to 1e-8.

    Coordinates of symmetric cells often sit exactly half-way between two
    5-decimal values (a / 2 with a given to 5 decimals); a direct round then
    goes either way with the last bit of the float, which differs between
    numerical libraries and CPUs. Snapping first makes the result depend on
    the geometry only, to 1e-8 Angstrom.
    """
    return round(round(v, 8), ndigits)


def _coordinate(v: float) -> float:
    """A coordinate as written in ``feff.inp``: 5 decimals, never ``-0.00000``."""
    return _snap(v, 5) + 0.0


def _cluster(nmc, site: int, radius: float):
    """Atoms within ``radius`` (Angstrom) of ``site``, periodic images included.

    Returns a list of (symbol, dx, dy, dz, distance, site_index), absorber first,
    in a canonical order: distance, then element, then position, each rounded
    to 1e-4 Angstrom, so that atoms at equal distance (symmetry-equivalent
    shells) are listed the same way whatever the last bits of their
    coordinates; the input text, hence the job's key, depends only on the
    cluster's physics.
    """
    s = nmc.structure
    centre = s[site].coords
    nbs = s.get_sites_in_sphere(centre, radius, include_index=True)
    out = []
    for n in nbs:
        d = n.coords - centre
        out.append((n.specie.symbol, float(d[0]), float(d[1]), float(d[2]),
                    float(np.linalg.norm(d)), int(n.index)))
    out.sort(key=_canonical)
    if not out or out[0][4] > 1e-4:
        raise MMSpecError(f"site {site}: absorber not found in its own cluster")
    return out


def feff_input(nmc, site: int, params: FeffParams | None = None, title: str = "") -> str:
    """Text of a ``feff.inp`` for the K edge of site ``site`` of ``nmc``.

    Parameters
    ----------
    nmc : NMCStructure
        Built structure.
    site : int
        Index of the absorbing site in ``nmc.structure``.
    params : FeffParams, optional
        FEFF settings (defaults: FMS 5 Angstrom, RPA core hole, no SCF).
    title : str
        Free text for the TITLE card.

    Returns
    -------
    str
        The input file content (coordinates in Angstrom, absorber at origin).
    """
    params = params or FeffParams()
    s = nmc.structure
    if not 0 <= int(site) < len(s):
        raise MMSpecError(f"site={site!r}: expected an index in 0..{len(s) - 1}")
    absorber = s[site].specie.symbol
    if absorber not in _K_ABSORBERS:
        raise MMSpecError(f"site {site}: element {absorber!r} has no K-edge setup")
    atoms = _cluster(nmc, int(site), params.cluster_radius)
    unknown = sorted({a[0] for a in atoms} - set(_Z))
    if unknown:
        raise MMSpecError(f"site {site}: no FEFF potential set up for {', '.join(unknown)}")
    present = [e for e in _POT_ORDER if any(a[0] == e for a in atoms[1:])]
    ipot = {e: k + 1 for k, e in enumerate(present)}
    lines = [
        f"TITLE {title or 'mmspec_widgets'} {absorber} K site {site}",
        "EDGE K",
        "S02 1.0",
        "CONTROL 1 1 1 1 1 1",
        "PRINT 0 0 0 0 0 0",
        f"EXCHANGE {params.exchange} 0.0 0.0 0",
    ]
    if params.corehole != "none":
        lines.append(f"COREHOLE {params.corehole}")
    else:
        lines.append("COREHOLE none")
    if params.scf:
        lines.append(f"SCF {params.scf:.2f} 0 {int(params.scf_iterations)} "
                     f"{float(params.scf_mixing):.3g} {int(params.scf_nmix)}")
    lines += [
        f"FMS {params.rfms:.2f} 0",
        f"XANES {params.xanes_kmax:.2f} 0.07 0.0",
        "",
        "POTENTIALS",
        f"   0 {_Z[absorber]:3d} {absorber}",
    ]
    for e in present:
        lines.append(f"   {ipot[e]} {_Z[e]:3d} {e}")
    lines += ["", "ATOMS"]
    for k, (sym, x, y, z, r, _idx) in enumerate(atoms):
        p = 0 if k == 0 else ipot[sym]
        x, y, z, r = (_coordinate(v) for v in (x, y, z, r))
        lines.append(f"  {x:11.5f} {y:11.5f} {z:11.5f} {p:2d} {sym:3s} {r:9.5f}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def run_feff(inp: str, workdir: str | Path | None = None, keep: bool = False,
             stage_timeout: float | None = 1800.0) -> dict:
    """Run FEFF10 on input text ``inp`` and return the XANES.

    Parameters
    ----------
    inp : str
        ``feff.inp`` content (from :func:`feff_input`).
    workdir : path, optional
        Scratch folder; a temporary one when None.
    keep : bool
        Keep the scratch folder (default: removed).
    stage_timeout : float or None
        Seconds after which a hanging FEFF stage is stopped (a failure).

    Returns
    -------
    dict
        ``omega`` (absolute photon energy, eV), ``e`` (energy relative to the
        Fermi level, eV), ``mu`` (absorption normalised by FEFF at 50 eV
        above the edge), ``wall_s`` (seconds) and ``engine`` (version).

    Raises
    ------
    FeffRunError
        If FEFF fails or writes no usable ``xmu.dat``.
    """
    import feff10

    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mmspec_feff_"))
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        try:
            cfg = feff10.FeffConfig(str(tmp), feff10.FeffInput.parse(inp),
                                    stage_timeout=stage_timeout)
            res = feff10.FeffPipeline(cfg).run()
            table = res.read_xmu()
        except Exception as exc:  # FeffError subclasses, IO errors
            raise FeffRunError(f"FEFF failed: {type(exc).__name__}: {exc}") from exc
        cols = np.array(table.columns, dtype=float)
        if cols.ndim != 2 or cols.shape[0] < 4 or cols.shape[1] < 5:
            raise FeffRunError(f"FEFF wrote an unusable xmu.dat (shape {cols.shape})")
        mu = cols[3]
        if not np.all(np.isfinite(mu)) or np.allclose(mu, 0):
            raise FeffRunError("FEFF xmu.dat has non-finite or all-zero mu")
        return {
            "omega": cols[0],
            "e": cols[1],
            "mu": mu,
            "wall_s": time.perf_counter() - t0,
            "engine": feff_version(),
        }
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
