"""Fixtures shared by every test."""

from __future__ import annotations

import pytest

from pygan.backend import set_backend


@pytest.fixture(autouse=True)
def _restore_backend():
    """Every test starts and ends on the default backend."""
    set_backend("cpu")
    yield
    set_backend("cpu")
