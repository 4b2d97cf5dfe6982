"""pytest-benchmark cases for the rows of ``python -m pygan.bench``: GEMM 2048^3 and every MLP-GAN
layer at batch 64 and 256, forward and forward+backward, per column (numpy, pygan, torch if importable, cupy where a GPU is: timed with a synchronisation per call).

Run with ``pytest benchmarks`` (add ``--benchmark-json out.json`` to save them).
"""

from __future__ import annotations

import pytest

from pygan import bench

THREADS = 2  # as in conftest.py
TORCH = bench.load_torch(THREADS)
COLUMNS = ["numpy", "pygan"] + (["torch"] if TORCH is not None else []) + ["cupy"]
LAYERS = [("G", *layer) for layer in bench.GENERATOR_LAYERS] + [("D", *layer) for layer in bench.DISCRIMINATOR_LAYERS]


@pytest.mark.parametrize("column", COLUMNS)
def test_gemm_2048(benchmark, gpu_for, column):
    fn = bench.gemm_cases(2048, TORCH, gpu_for(column))[column]
    benchmark.group = "gemm 2048^3"
    benchmark.extra_info["flops"] = 2.0 * 2048**3
    assert benchmark.pedantic(fn, rounds=5, warmup_rounds=1).shape == (2048, 2048)


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("op", ["forward", "forward+backward"])
@pytest.mark.parametrize("batch", bench.BATCHES)
@pytest.mark.parametrize("side,fan_in,fan_out,act", LAYERS)
def test_dense_layer(benchmark, gpu_for, column, op, batch, side, fan_in, fan_out, act):
    fn = bench.dense_cases(batch, fan_in, fan_out, act, TORCH, gpu_for(column))[op][column]
    benchmark.group = f"dense {op} {side} {batch}x{fan_in}x{fan_out} {act}"
    benchmark.extra_info["flops"] = (1 if op == "forward" else 3) * 2.0 * batch * fan_in * fan_out
    assert benchmark(fn) is not None
