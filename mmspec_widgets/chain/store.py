"""Out of core: :func:`map_spectrum_image` streams an SI block by block into
a Zarr map store, with a fingerprint of its inputs and parameters so that an
interrupted run resumes and a store of another run is refused."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, MMSpecError
from ..utils import jsonable
from .fit import fit_plan
from .labelled import chain_attrs
from .plan import (
    DEFAULT_EDGES,
    REFERENCES,
    ChainPlan,
    check_block,
    check_counts,
    check_engine,
    check_si,
    edge_names,
    load_block,
    pixel_blocks,
    progress_bar,
)
from .predict import k_dict, null_maps, null_values
from .runners import run_distributed, run_local


def _store_attrs(store) -> dict:
    import zarr

    try:
        g = zarr.open_group(str(store), mode="r")
    except Exception:  # noqa: BLE001 - anything unreadable is "not ours"
        return {}
    return dict(g.attrs)


#: version of the store fingerprint (``mmspec_fingerprint`` attribute)
_FP_VERSION = 1
#: pixel blocks hashed for the fingerprint of a dask-backed SI (a numpy-backed
#: SI is hashed whole)
_FP_BLOCKS = 16


def _data_fingerprint(da: xr.DataArray | None, block) -> str | None:
    """SHA-256 (hex, 16 digits) of an SI's shape, dtype, axes and counts.

    A numpy-backed SI is hashed whole; a dask-backed one through
    ``_FP_BLOCKS`` evenly spread pixel blocks (reading all of a large SI
    twice would double the cost of mapping it).
    """
    if da is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps([list(da.dims), [int(s) for s in da.shape], str(da.dtype)]).encode())
    for d in da.dims:
        if d in da.coords:
            h.update(np.ascontiguousarray(np.asarray(da[d].values, float)).tobytes())
    data = da.data
    if isinstance(data, np.ndarray):
        flat = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
        step = max(1, (1 << 22) // max(flat.shape[1] * flat.itemsize, 1))
        for r in range(0, flat.shape[0], step):
            h.update(np.ascontiguousarray(flat[r:r + step]).tobytes())
    else:
        blocks = pixel_blocks(da.shape[:2], block)
        idx = np.unique(np.linspace(0, len(blocks) - 1, min(_FP_BLOCKS, len(blocks)))
                        .round().astype(int))
        for i in idx:
            _, _, ys, xs = blocks[i]
            h.update(np.ascontiguousarray(load_block(da, ys, xs, da.dtype)).tobytes())
    return h.hexdigest()[:16]


def _fingerprint(si, zlp, *, references, names, block, sample_pixels, model_id,
                 k_factors) -> dict:
    """What a map store is a store of: the inputs and every plan parameter."""
    refs = None if references is None else jsonable(
        {str(k): (None if v is None else float(v)) for k, v in
         (references.items() if isinstance(references, Mapping)
          else ((n, None) for n in references))})
    return {
        "version": _FP_VERSION,
        "block": list(block),
        "edges": list(names),
        "model_id": model_id,
        "references": refs,
        "sample_pixels": None if sample_pixels is None else int(sample_pixels),
        "k_factors": k_dict(k_factors),
        "shape": [int(s) for s in si.shape],
        "dims": list(si.dims[:2]),
        "zlp": zlp is not None,
        "si_data": _data_fingerprint(si, block),
        "zlp_data": _data_fingerprint(zlp, block),
    }


_FP_WHAT = {"si_data": "the counts of si differ from those mapped into it",
            "zlp_data": "the counts of zlp differ from those mapped into it",
            "shape": "si has another shape", "zlp": "a zero-loss SI given in one run only"}


def _compare_fingerprint(out: Path, have: dict, want: dict) -> None:
    for key in want:
        if key == "version" or have.get(key) == want[key]:
            continue
        if key in _FP_WHAT:
            shown = f"{_FP_WHAT[key]}: {have.get(key)!r} stored, {want[key]!r} now"
        else:
            shown = f"{have.get(key)!r} stored, {want[key]!r} now"
        raise MMSpecError(f"out={str(out)!r} holds maps of a different run ({key}: {shown}); "
                          "choose another path, or overwrite=True to start over")


def _is_map_store(attrs: dict) -> bool:
    return any(k in attrs for k in ("mmspec_plan", "mmspec_signature", "mmspec_fingerprint"))


def _sibling(out: Path, kind: str) -> Path:
    import os

    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{time.monotonic_ns()}"


def _clear_stale(out: Path) -> None:
    """Remove temporary folders that killed runs left beside ``out``."""
    import os
    import re
    import shutil

    pat = re.compile(rf"^\.{re.escape(out.name)}\.(creating|old)-(\d+)-\d+$")
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pat.match(p.name)
        if not m:
            continue
        pid = int(m.group(2))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def _create_store(out: Path, plan: ChainPlan, si: xr.DataArray, null: xr.Dataset,
                  block, positions, model_attrs: dict, fingerprint: dict) -> None:
    """Build the store under a temporary name beside ``out``, write its
    fingerprint last, then rename it to ``out``: a store at ``out`` is always
    complete (an interrupted creation leaves only the temporary folder, which
    the next run removes)."""
    import os
    import shutil

    import dask.array as dsa
    import zarr

    ny, nx = plan.shape[:2]
    by, bx = block
    nby, nbx = -(-ny // by), -(-nx // bx)
    dims = plan.dims
    data = {}
    for v in null.data_vars:
        dt = null[v].dtype
        fill = False if dt == np.bool_ else np.nan
        data[v] = xr.Variable(dims, dsa.full((ny, nx), fill, dtype=dt, chunks=(by, bx)),
                              dict(null[v].attrs))
    data["total_counts"] = xr.Variable(dims, dsa.full((ny, nx), np.nan, chunks=(by, bx)),
                                       {"units": "counts",
                                        "long_name": "despiked total counts"})
    data["mask"] = xr.Variable(dims, dsa.zeros((ny, nx), dtype=bool, chunks=(by, bx)),
                               {"long_name": "usable pixel (not vacuum)"})
    if positions is not None:
        data["zlp_position"] = xr.Variable(dims, dsa.from_array(positions, chunks=(by, bx)),
                                           {"units": "eV", "long_name": "zero-loss position"})
    data["block_done"] = xr.Variable(("block_y", "block_x"),
                                     dsa.zeros((nby, nbx), dtype=np.int8, chunks=(1, 1)),
                                     {"long_name": "1 where the pixel block is written"})
    coords = {d: si[d] for d in dims if d in si.coords}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {**model_attrs, "mmspec_plan": plan.to_json(), "mmspec_block": [by, bx],
                "mmspec_signature": plan.signature()}
    tmp = _sibling(out, "creating")
    try:
        ds.to_zarr(str(tmp), mode="w", compute=False, consolidated=False)
        g = zarr.open_group(str(tmp), mode="r+")
        if positions is not None:  # small: write it now
            g["zlp_position"][...] = positions
        g.attrs["mmspec_fingerprint"] = json.dumps(fingerprint)  # last: the store is complete
        old = None
        if out.exists() or out.is_symlink():
            if out.is_dir() and not out.is_symlink():
                old = _sibling(out, "old")
                os.rename(out, old)
            else:
                out.unlink()
        try:
            os.rename(tmp, out)
        except OSError as err:
            raise MMSpecError(f"out={str(out)!r}: could not put the new store in place "
                              f"({err}); another run writing there?") from err
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def map_spectrum_image(
    si: xr.DataArray,
    zlp: xr.DataArray | None = None,
    *,
    model=None,
    references: Mapping[str, float] | None = REFERENCES,
    edges: Sequence[str] = DEFAULT_EDGES,
    out: str | Path = "maps.zarr",
    block: tuple[int, int] = (64, 64),
    client=None,
    progress: bool = True,
    sample_pixels: int | None = 65536,
    engine: str = "auto",
    overwrite: bool = False,
    timings: dict | None = None,
    k_factors: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Map a spectrum image of any size block by block into a Zarr store.

    The chain is :func:`mmspec_widgets.demo.run_chain`'s: the calibration and
    the vacuum threshold are fitted once (:func:`fit_plan`, on all pixels or a
    spread sample of blocks), then every pixel block is aligned, despiked,
    cut into edges, predicted and written to its region of the store. The SI
    is read one block at a time, so memory is bounded by the block size, not
    the SI size.

    Parameters
    ----------
    si : xarray.DataArray
        Core-loss SI ``(y, x, energy)`` in counts, energy in eV; numpy- or
        dask-backed (e.g. ``mmspec_widgets.load(path, lazy=True)``).
    zlp : xarray.DataArray, optional
        Zero-loss SI of the same scan.
    model : optional
        Model with ``predict(edges_dataset)``; default
        :func:`mmspec_widgets.learn.load_model`.
    references : mapping or None
        Calibration features -> energies (eV); ``None``: no calibration.
    edges : sequence of str
        Edges fed to the model.
    out : path
        Zarr store (a folder) to write. The store carries a fingerprint of
        the SI and zero-loss SI (their counts and axes) and of every plan
        parameter (references, edges, block, sample_pixels, model,
        k-factors). A store written by an earlier, interrupted run of the
        same job is resumed: blocks already written are skipped. A store
        is created under a temporary name and renamed when complete, so a
        run killed while creating it leaves nothing at ``out``.
    block : (int, int)
        Pixels per block (rows, columns); also the store's chunks.
    client : dask.distributed.Client, optional
        Run the blocks on this cluster (each worker reads its blocks and
        predicts; results are written here). Default: this process, all cores.
    progress : bool
        Show a progress bar (tqdm).
    sample_pixels : int or None
        Pixels used to fit the calibration and the vacuum threshold (all when
        the SI has fewer; ``None``: all).
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel.
    overwrite : bool
        Replace whatever is at ``out`` (another run's store, any folder or
        file) instead of resuming or refusing.
    timings : dict, optional
        Filled with ``plan`` and ``blocks`` (wall seconds), ``blocks_done``
        (written by this call) and ``blocks_skipped`` (found written).

    k_factors : mapping, optional
        Edge -> k-factor (:func:`mmspec_widgets.quantify.fit_k_factors`, e.g.
        fitted on a region of known composition with :func:`run_chain_fast`):
        each pixel's composition is read from its edge jumps as well.

    Returns
    -------
    xarray.Dataset
        The store opened lazily: one map per model output (``li_content``,
        ``li_content_std`` ... ``ood``), ``total_counts``, ``mask`` and
        ``zlp_position``; attrs hold the plan, the model id and the history.

    Raises
    ------
    MMSpecError
        If ``out`` holds something else (maps of another SI or zero-loss SI,
        other references, model, block size, edges or k-factors, or not a
        map store) and ``overwrite`` is false.
    """
    import zarr

    si = check_si(si)
    check_counts(si)
    block = check_block(block)
    engine = check_engine(engine)
    names = edge_names(edges)
    out = Path(out)
    if model is None:
        from ..learn import load_model

        model = load_model()
    model_id = str(getattr(model, "model_id", type(model).__name__))

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    plan = None
    positions = None
    fp = _fingerprint(si, zlp, references=references, names=names, block=block,
                      sample_pixels=sample_pixels, model_id=model_id, k_factors=k_factors)
    if out.is_symlink() and out.is_dir():  # a store kept elsewhere: work there
        out = out.resolve()
    _clear_stale(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        if not overwrite:
            raise MMSpecError(f"out={str(out)!r} exists and is not a map store (a folder) "
                              "written by map_spectrum_image; choose another path or "
                              "overwrite=True")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        attrs = _store_attrs(out)
        if not _is_map_store(attrs):
            raise MMSpecError(f"out={str(out)!r} exists and is not a map store written by "
                              "map_spectrum_image; choose another path or overwrite=True")
        try:
            have = json.loads(attrs["mmspec_fingerprint"])
            stored = ChainPlan.from_json(attrs["mmspec_plan"])
            if have.get("version") != _FP_VERSION:
                raise ValueError("fingerprint version")
        except (KeyError, TypeError, ValueError):
            # written before stores carried a fingerprint, or a creation cut
            # short: nothing in it can be trusted, build it again
            warnings.warn(f"out={str(out)!r}: map store without a complete fingerprint "
                          "(interrupted while being created, or written by an older "
                          "version); building it again", stacklevel=2)
        else:
            _compare_fingerprint(out, have, fp)
            plan = stored
            if zlp is not None:
                positions = np.asarray(zarr.open_group(str(out), mode="r")["zlp_position"][...])
    if plan is None:
        plan, positions = fit_plan(si, zlp, references=references, edges=names, block=block,
                                   sample_pixels=sample_pixels, engine=engine,
                                   progress=progress)
        if plan.mask_threshold is None:
            raise DataError("si: no pixel has positive counts; nothing to map")
        plan.k_factors = k_dict(k_factors)
        null = null_maps(model, plan)
        nulls = null_values(null)
        hist = chain_attrs(si.attrs, plan, None)["history"]
        hist.append({"step": "extract_edges", "params": {"edges": names,
                                                          "normalize": "post_edge",
                                                          "background": "powerlaw"}})
        hist.append({"step": "learn.predict", "model_id": model_id, "edges": names})
        hist.append({"step": "map_spectrum_image",
                     "params": {"block": list(block), "sample_pixels": plan.sample_pixels,
                                "mask_threshold_counts": plan.mask_threshold}})
        mattrs = {k: jsonable(v) for k, v in null.attrs.items() if k != "history"}
        mattrs["model_id"] = model_id
        mattrs["history"] = jsonable(hist)
        _create_store(out, plan, si, null, block, positions, mattrs, fp)
    else:
        nulls = null_values(null_maps(model, plan))

    g = zarr.open_group(str(out), mode="r+")
    done = np.asarray(g["block_done"][...])
    todo = [b for b in pixel_blocks(plan.shape[:2], block) if not done[b[0], b[1]]]
    plan_json = plan.to_json()
    bar = progress_bar(progress, done.size, "blocks", initial=int(done.sum()))
    t1 = time.perf_counter()
    timings.update(plan=t1 - t0, blocks_skipped=int(done.sum()), blocks_done=0)

    def write(b, res):
        iy, ix, ys, xs = b
        for name, arr in res.items():
            g[name][ys, xs] = arr
        g["block_done"][iy, ix] = 1
        timings["blocks_done"] += 1
        bar.update(1)

    def pos_of(ys, xs):
        return None if positions is None else np.asarray(positions[ys, xs])

    try:
        if client is None:
            run_local(si, todo, plan, plan_json, model, engine, nulls, pos_of, write)
        else:
            run_distributed(client, si, todo, plan_json, model, engine, nulls, pos_of, write)
    finally:
        bar.close()
        timings["blocks"] = time.perf_counter() - t1
    res = xr.open_zarr(str(out), consolidated=False)
    return res.drop_vars("block_done")
