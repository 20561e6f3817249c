"""shift_resample: the compiled row kernel and the numpy arithmetic give the
same bits, for every shape and dtype the chain and the labelled face use."""

from __future__ import annotations

import numpy as np
import pytest

from mmspec_widgets import kernels as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 300), (3, 5, 257), (300,)])
def test_compiled_shift_equals_numpy(dtype, shape):
    rng = np.random.default_rng(1)
    y = (rng.gamma(3.0, 100.0, shape)).astype(dtype)
    shift = rng.uniform(-40, 40, shape[:-1]) if len(shape) > 1 else np.float64(3.37)
    if len(shape) > 1:  # whole-channel shifts, zero, and shifts past either end
        shift.flat[0], shift.flat[1] = 0.0, -2.0
        shift.flat[-1] = shape[-1] + 5.0
    out = K.shift_resample(y, shift)
    ref = K.shift_resample_numpy(y, shift)
    assert out.dtype == ref.dtype == y.dtype and out.shape == y.shape
    assert np.array_equal(out, ref)
    if len(shape) > 1:
        assert np.array_equal(out.reshape(-1, shape[-1])[0], y.reshape(-1, shape[-1])[0])
        # beyond the end every channel takes the end value
        assert np.all(out.reshape(-1, shape[-1])[-1] == y.reshape(-1, shape[-1])[-1][-1])


def test_nan_counts_and_integer_counts_give_the_numpy_bits():
    y = np.arange(20.0).reshape(2, 10)
    y[1, 3] = np.nan
    a = K.shift_resample(y, np.array([0.5, 0.5]))
    assert np.array_equal(a, K.shift_resample_numpy(y, np.array([0.5, 0.5])), equal_nan=True)
    counts = np.arange(20).reshape(2, 10)
    b = K.shift_resample(counts, np.array([0.25, -1.0]))
    assert b.dtype == np.float64
    assert np.array_equal(b, K.shift_resample_numpy(counts, np.array([0.25, -1.0])))
