"""The standard chain in memory, fast: :func:`run_chain_fast`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import xarray as xr

from .fit import background_sample, fit_plan
from .labelled import chain_attrs, edges_dataset, extract_history
from .plan import DEFAULT_EDGES, REFERENCES, check_engine, check_si, low_count_threshold
from .predict import usable
from .rows import extract_block


def run_chain_fast(si: xr.DataArray, zlp: xr.DataArray | None = None, *, model=None,
                   edges: Sequence[str] = DEFAULT_EDGES,
                   references: Mapping[str, float] | None = None,
                   engine: str = "auto", predict: bool = True,
                   timings: dict | None = None, k_factors: Mapping[str, float] | None = None,
                   composition: Mapping[str, float] | None = None
                   ) -> tuple[xr.Dataset, xr.Dataset | None]:
    """The standard chain, fast: same inputs and results as
    :func:`mmspec_widgets.demo.run_chain`.

    Calibration uses every pixel (as :func:`~mmspec_widgets.calibrate.calibrate`);
    the per-pixel steps run fused in one pass per spectrum, on all cores.

    Parameters
    ----------
    si, zlp : xarray.DataArray
        Core-loss SI ``(y, x, energy)`` (counts, eV) and optional zero-loss SI.
    model : optional
        Model with ``predict(edges_dataset)``; default
        :func:`mmspec_widgets.learn.load_model`.
    edges : sequence of str
        Edges to extract.
    references : mapping, optional
        Calibration references; default :data:`REFERENCES` (as ``run_chain``).
    engine : {"auto", "numba", "numpy"}
        Per-pixel kernel (see :func:`extract_block`).
    predict : bool
        ``False``: stop after the edges (maps returned as ``None``).
    timings : dict, optional
        Filled with wall-clock seconds per stage: ``plan`` (zero loss and
        calibration), ``extract`` (shift, spikes, backgrounds, grids), ``predict``;
        with a :class:`~mmspec_widgets.learn.fusion.MultimodalModel` also
        ``predict_stages``: seconds summed over the prediction threads in
        ``input`` (edge spectra joined into rows), ``features``, ``ood``,
        ``trees`` and ``blocks`` (all of the prediction's pixel blocks).
    k_factors, composition : mapping, optional
        As for :func:`mmspec_widgets.demo.run_chain`: read each pixel's
        composition from its edge jumps, with these k-factors or with k-factors
        fitted on the whole image's known mean ``composition``.

    Returns
    -------
    (edges_ds, maps) : (xarray.Dataset, xarray.Dataset or None)
    """
    si = check_si(si, finite=False)  # fit_plan checks the values
    engine = check_engine(engine)
    record = timings is not None
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    # the background model error is measured in the extraction's own pass
    # (same rows, same arithmetic as fit_plan's, without reading them twice)
    plan, positions = fit_plan(si, zlp, references=dict(references or REFERENCES),
                               edges=edges, sample_pixels=None, mask_threshold=False,
                               engine=engine, background_error=False)
    t1 = time.perf_counter()
    y = np.asarray(si.data).reshape(-1, si.shape[-1])
    pos = None if positions is None else positions.reshape(-1)
    edges_d, totals, n_rep = extract_block(
        y, pos, plan, engine=engine,
        background_rows=background_sample(si.shape[:2], sample_pixels=None))
    plan.mask_threshold = low_count_threshold(totals)
    mask = usable(totals, plan.mask_threshold)
    t2 = time.perf_counter()
    nav = si.shape[:2]
    coords = {d: si[d] for d in si.dims[:2] if d in si.coords}
    attrs = chain_attrs(si.attrs, plan, n_rep)
    eds = edges_dataset({k: v.reshape(nav + v.shape[1:]) for k, v in edges_d.items()}, plan,
                         si.dims[:2], coords, attrs, mask.reshape(nav))
    eds = extract_history(eds, plan)
    from ..quantify import quantify_known

    eds = quantify_known(eds, k_factors=k_factors, composition=composition)
    timings.update(plan=t1 - t0, extract=t2 - t1)
    if not predict:
        return eds, None
    if model is None:
        from ..learn import load_model

        model = load_model()
    from ..learn.trees import recording_stages

    stages: dict = {}
    t3 = time.perf_counter()
    with recording_stages(stages) if record else nullcontext():
        maps = model.predict(eds)
    timings["predict"] = time.perf_counter() - t3
    if stages:
        timings["predict_stages"] = stages
    return eds, maps
