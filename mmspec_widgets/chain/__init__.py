"""The block chain: the standard chain split into a global part, fitted
once, and a per-pixel part run on any block of pixels.

The standard chain (:func:`mmspec_widgets.demo.run_chain`) is::

    calibrate (zero-loss alignment + reference features) -> remove_spikes
    -> extract_edges (power-law background per edge, standard grids,
    post-edge normalisation, low-count mask) -> model.predict

Two of its steps need the whole spectrum image: the median zero-loss position
(the common axis every pixel is shifted onto) and the calibration, fitted on
the spectrum summed over the usable pixels. Everything else is per pixel.

Modules, each importing only those listed before it:

``plan``
    :class:`~.plan.ChainPlan` (the global quantities), the chain's defaults,
    input checks, pixel blocks and the reading of one block.
``rows``
    Row drivers over the compiled kernels of :mod:`mmspec_widgets.kernels`
    and :func:`~.rows.extract_block` (the per-pixel part on a block).
``labelled``
    The edges Dataset and the attrs and history of the plain chain.
``predict``
    Model prediction on rows; usable rows; k-factors.
``fit``
    :func:`~.fit.fit_plan`: zero-loss positions, calibration, low-count
    threshold and background model error, once.
``inmemory``
    :func:`~.inmemory.run_chain_fast`: the in-memory chain.
``runners``
    The task of one pixel block, run in this process or on a
    ``dask.distributed`` cluster.
``store``
    :func:`~.store.map_spectrum_image`: a resumable Zarr map store.
``synthetic``
    :func:`~.synthetic.synthetic_si`: spectrum images of any size.

:mod:`mmspec_widgets.pipeline` re-exports the public names.
"""
