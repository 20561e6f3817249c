"""Run pixel blocks: the task of one block (extract, mask, predict), and the
drivers that run the tasks in this process or on a ``dask.distributed``
cluster."""

from __future__ import annotations

import numpy as np

from .plan import ChainPlan, load_block
from .predict import predict_rows, usable
from .rows import extract_block


def block_task(y: np.ndarray, pos: np.ndarray | None, plan_json: str, model, engine: str,
                null: dict):
    """Everything a pixel block needs, as one picklable function (workers)."""
    plan = ChainPlan.from_json(plan_json)
    nav = y.shape[:2]
    threads = None
    try:  # on a dask worker the cluster's threads already share the cores
        from distributed import get_worker

        get_worker()
        threads = 1
    except (ImportError, ValueError):
        pass
    edges, totals, n_rep = extract_block(y, pos, plan, engine=engine, threads=threads)
    rows = usable(totals.ravel(), plan.mask_threshold)
    flat = {k: edges[k].reshape(-1, edges[k].shape[-1]) for k in plan.edges}
    flat.update({k: v.reshape(-1) for k, v in edges.items() if k.startswith("jump_")})
    maps = predict_rows(model, flat, plan, rows, null)
    res = {k: v.reshape(nav) for k, v in maps.items()}
    res["total_counts"] = totals.reshape(nav)
    res["mask"] = rows.reshape(nav)
    return res, n_rep


def run_local(si, todo, plan, plan_json, model, engine, nulls, pos_of, write) -> None:
    """Blocks one after the other in this process; the next block is read while
    the current one is computed."""
    from concurrent.futures import ThreadPoolExecutor

    wd = np.dtype(plan.dtype)
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(load_block, si, todo[0][2], todo[0][3], wd)
        for k, b in enumerate(todo):
            y = nxt.result()
            if k + 1 < len(todo):
                nxt = reader.submit(load_block, si, todo[k + 1][2], todo[k + 1][3], wd)
            res, _ = block_task(y, pos_of(b[2], b[3]), plan_json, model, engine, nulls)
            write(b, res)


def run_distributed(client, si, todo, plan_json, model, engine, nulls, pos_of, write) -> None:
    """One task per block on a dask.distributed cluster; results written here
    as they arrive."""
    import dask
    from distributed import as_completed

    data = si.data
    if isinstance(data, np.ndarray):
        import dask.array as dsa

        data = dsa.from_array(data, chunks=(64, 64, -1))
    dmodel = dask.delayed(model, pure=True)
    dplan = dask.delayed(plan_json, pure=True)
    dnull = dask.delayed(nulls, pure=True)
    tasks = []
    for b in todo:
        _, _, ys, xs = b
        tasks.append(dask.delayed(block_task, pure=True)(
            data[ys, xs], pos_of(ys, xs), dplan, dmodel, engine, dnull))
    futures = client.compute(tasks)
    index = {f.key: b for f, b in zip(futures, todo, strict=True)}
    for fut in as_completed(futures):
        res, _ = fut.result()
        write(index[fut.key], res)
        fut.release()
