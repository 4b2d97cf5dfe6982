"""The cpu kernels treat denormal floats as zero (FTZ/DAZ) while they run, and leave the caller's
floating-point mode as they found it: NumPy in the same thread still produces denormals afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import pygan
from pygan.backend import load_backend

CPU = load_backend("cpu")
TINY = np.float32(np.finfo(np.float32).tiny)  # smallest normal float32


def numpy_makes_denormals() -> bool:
    a = np.full(64, TINY, np.float32)
    return bool(np.all((a * np.float32(0.25)) > 0))  # a quarter of the smallest normal is denormal


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_leave_the_callers_fp_mode_alone(isa, isa_name, threads):
    isa(isa_name)
    pygan.set_num_threads(threads)
    assert numpy_makes_denormals(), "the test process already flushes denormals"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 300)).astype(np.float32)
    w = rng.standard_normal((300, 200)).astype(np.float32)
    y = CPU.dense_forward(x, w, None, "sigmoid")
    CPU.dense_backward(np.ones_like(y), x, w, y, "sigmoid")
    img = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
    CPU.conv2d_forward(img, rng.standard_normal((5, 3, 3, 3)).astype(np.float32), None, 1, 1)
    assert numpy_makes_denormals(), "a kernel left flush-to-zero on in the calling thread"


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
def test_denormal_operands_are_read_as_zero(isa, isa_name):
    """Products of denormal inputs are flushed, on every thread, so results equal those with zeros there."""
    isa(isa_name)
    pygan.set_num_threads(2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 257)).astype(np.float32)
    x[:, ::2] = TINY * np.float32(0.5)  # denormal in every other column
    w = np.full((257, 129), 2.0**100, np.float32)  # denormal * 2^100 would be ~6e-9 without DAZ
    y = CPU.dense_forward(x, w, None, "identity")
    x0 = x.copy()
    x0[:, ::2] = 0
    want = x0.astype(np.float64) @ w.astype(np.float64)
    scale = np.abs(x0).astype(np.float64) @ np.abs(w).astype(np.float64)
    assert np.all(np.abs(y - want) <= 1e-5 * scale + 1e-30)
    only_denormal = np.full((64, 257), TINY * np.float32(0.5), np.float32)
    assert not np.any(CPU.dense_forward(only_denormal, w, None, "identity")), "a denormal input was not read as zero"
