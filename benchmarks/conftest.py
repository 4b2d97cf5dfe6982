"""Every benchmark runs pygan at 2 threads (PyTorch's column is set to the same count by the cases)."""

from __future__ import annotations

import pytest

import pygan

THREADS = 2


@pytest.fixture(autouse=True)
def _threads():
    before = pygan.get_num_threads()
    pygan.set_num_threads(THREADS)
    yield
    pygan.set_num_threads(before)
