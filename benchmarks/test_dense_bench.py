"""pytest-benchmark cases: dense forward+backward on every backend (run with ``pytest benchmarks``)."""

from __future__ import annotations

import numpy as np
import pytest

from pygan.backend import load_backend


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("batch,fan_in,fan_out", [(64, 1024, 784)])
def test_dense_forward_backward(benchmark, backend, batch, fan_in, fan_out):
    B = load_backend(backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, fan_in)).astype(np.float32)
    w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
    b = np.zeros(fan_out, np.float32)
    dy = rng.standard_normal((batch, fan_out)).astype(np.float32)

    def step():
        y = B.dense_forward(x, w, b, "leaky_relu", 0.2)
        return B.dense_backward(dy, x, w, y, "leaky_relu", 0.2)

    benchmark.group = f"dense {batch}x{fan_in}x{fan_out} fwd+bwd"
    benchmark.extra_info["flops"] = 3 * 2 * batch * fan_in * fan_out
    dx, dw, db = benchmark(step)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
