"""The ``cupy`` backend (GPU). Imported only when chosen.

Its CUDA kernels are not written yet; choosing it says so plainly instead of falling back to the CPU.
"""

from __future__ import annotations

from . import Backend


def make_backend() -> Backend:
    """Fail with a message that says what is missing."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        raise ImportError(
            "name: the 'cupy' backend needs CuPy and a CUDA GPU; install it with pip install 'pygan[gpu]'"
        ) from None
    raise NotImplementedError("name: the 'cupy' backend's kernels are not implemented yet; use 'cpu' or 'numpy'")
