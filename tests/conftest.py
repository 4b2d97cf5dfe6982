"""Fixtures shared by every test."""

from __future__ import annotations

import pytest

import pygan
from pygan.backend import cpu_backend, set_backend


@pytest.fixture(autouse=True)
def _restore_backend():
    """Every test starts and ends on the default backend."""
    set_backend("cpu")
    yield
    set_backend("cpu")


@pytest.fixture
def thread_count():
    """Lets a test change the native thread count; restores it afterwards."""
    before = pygan.get_num_threads()
    yield
    pygan.set_num_threads(before)


@pytest.fixture
def isa():
    """Lets a test force an ISA path; restores the one in use afterwards."""
    before = pygan._core.current_isa()
    yield cpu_backend.set_isa
    cpu_backend.set_isa(before)


def pytest_terminal_summary(terminalreporter):
    """Report how many fuzz cases ran (tests/test_robustness.py)."""
    import sys

    module = sys.modules.get("test_robustness")
    if module is not None and module.FUZZ_CASES["ops"]:
        counts = ", ".join(f"{k} {v}" for k, v in module.FUZZ_CASES.items())
        terminalreporter.write_line(f"fuzz cases: {counts}")
