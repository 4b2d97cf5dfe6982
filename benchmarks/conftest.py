"""Every benchmark runs pygan at 2 threads (PyTorch's column is set to the same count by the cases)."""

from __future__ import annotations

import pytest

import pygan
from pygan import bench

THREADS = 2
#: pygan's cupy backend where CuPy and a CUDA device exist, else None
GPU = bench.load_gpu()


@pytest.fixture(autouse=True)
def _threads():
    before = pygan.get_num_threads()
    pygan.set_num_threads(THREADS)
    yield
    pygan.set_num_threads(before)


@pytest.fixture
def gpu_for():
    """``gpu_for(column)``: the cupy backend for the cupy column, which skips, saying so, where no
    GPU is (None for the CPU columns)."""

    def pick(column: str):
        if column == "cupy" and GPU is None:
            pytest.skip("no GPU: the cupy column needs CuPy and a CUDA device")
        return GPU if column == "cupy" else None

    return pick
