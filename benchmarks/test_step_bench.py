"""pytest-benchmark cases for the conv-layer and whole-train-step rows of ``python -m pygan.bench``:
conv(64->128, 4x4, s2, p1) on 64x64x14x14 and convT(128->64) on 64x128x7x7, forward and
forward+backward; one D step + one G step (Adam, non-saturating loss) of the MLP GAN at batch 64 and
256 and of the DCGAN at batch 64, per column (numpy, pygan, torch if importable, cupy where a GPU is: timed with a synchronisation per call)."""

from __future__ import annotations

import pytest

from pygan import bench

THREADS = 2  # as in conftest.py
TORCH = bench.load_torch(THREADS)
COLUMNS = ["numpy", "pygan"] + (["torch"] if TORCH is not None else []) + ["cupy"]


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("op", ["forward", "forward+backward"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "convT"])
def test_conv_layer(benchmark, gpu_for, column, op, transposed):
    fn = bench.conv_cases(transposed, TORCH, gpu_for(column))[op][column]
    benchmark.group = f"{'convT' if transposed else 'conv'} {op}"
    benchmark.extra_info["flops"] = (1 if op == "forward" else 3) * 2.0 * 64 * 128 * 64 * 16 * 7 * 7
    assert benchmark(fn) is not None


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("name,batch", [("mlp", 64), ("mlp", 256), ("dcgan", 64)])
def test_train_step(benchmark, gpu_for, column, name, batch):
    fn = bench.step_cases(name, batch, TORCH, gpu_for(column))[column]
    benchmark.group = f"train step {name} batch {batch}"
    benchmark.extra_info["flops"] = bench.step_flops(name, batch)
    assert benchmark.pedantic(fn, rounds=5, warmup_rounds=1) is not None
