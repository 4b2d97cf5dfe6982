"""The op table: one set of op names, three implementations, and the registry that picks one.

``numpy`` is the reference (plain NumPy, float32 and float64), ``cpu`` runs pygan's native C++
and Cython kernels (float32), ``cupy`` runs on an NVIDIA GPU and is imported only when chosen.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator

#: Every op of the contract; each backend provides all of them under these names.
OPS: tuple[str, ...] = (
    "activation_forward",
    "activation_backward",
    "dense_forward",
    "dense_backward",
    "conv2d_forward",
    "conv2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "batch_norm_forward",
    "batch_norm_backward",
    "dropout_forward",
    "dropout_backward",
    "maxout_forward",
    "maxout_backward",
    "upsample2x_forward",
    "upsample2x_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "pixel_shuffle_forward",
    "pixel_shuffle_backward",
    "reflection_pad2d_forward",
    "reflection_pad2d_backward",
    "group_norm_forward",
    "group_norm_backward",
    "sgd_update",
    "adam_update",
    "rmsprop_update",
)

BACKENDS: tuple[str, ...] = ("numpy", "cpu", "cupy")

#: The ops that write into buffers they are given: ``op -> (arguments written, arguments read)``.
#: Every backend's op is wrapped so that a written buffer overlapping any other argument is refused
#: (a kernel reads its inputs while it writes, so an overlap would be a silent wrong answer).
WRITES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dense_backward": (("param_grads",), ("dy", "x", "w", "y")),
    "conv2d_backward": (("param_grads",), ("dy", "x", "w", "y")),
    "conv_transpose2d_backward": (("param_grads",), ("dy", "x", "w", "y")),
    "batch_norm_forward": (("running_mean", "running_var"), ("x", "gamma", "beta")),
    "sgd_update": (("param", "velocity"), ("grad",)),
    "adam_update": (("param", "m", "v"), ("grad",)),
    "rmsprop_update": (("param", "sq"), ("grad",)),
}


def _guarded(op: str, fn: Callable[..., Any], xp: Any) -> Callable[..., Any]:
    """``fn`` behind the aliasing check of ``WRITES[op]`` (arguments found by name or position)."""
    from ._checks import check_disjoint

    written, read = WRITES[op]
    names = list(inspect.signature(fn).parameters)
    where = {n: names.index(n) for n in written + read}

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        def arg(n: str) -> Any:
            return args[where[n]] if where[n] < len(args) else kwargs.get(n)

        check_disjoint({n: arg(n) for n in written}, {n: arg(n) for n in read}, xp)
        return fn(*args, **kwargs)

    guarded.__pygan_guarded__ = True  # type: ignore[attr-defined]
    return guarded


@dataclass(frozen=True)
class Backend:
    """A backend: its name, its array module, its op functions and which of them are native."""

    name: str
    xp: types.ModuleType
    ops: dict[str, Callable[..., Any]]
    native: frozenset[str]
    details: str = ""

    def __post_init__(self) -> None:
        for op in WRITES:
            fn = self.ops.get(op)
            if fn is not None and not getattr(fn, "__pygan_guarded__", False):
                self.ops[op] = _guarded(op, fn, self.xp)

    def __getattr__(self, op: str) -> Callable[..., Any]:
        try:
            return self.ops[op]
        except KeyError:
            raise AttributeError(f"backend {self.name!r} has no op {op!r}") from None

    def info(self) -> str:
        """One line naming the backend, its details, and which ops are native and which fall back."""
        fallback = [op for op in OPS if op not in self.native]
        native = [op for op in OPS if op in self.native]
        parts = [f"backend {self.name}"]
        if self.details:
            parts.append(self.details)
        if self.name == "numpy":
            parts.append("all ops are the NumPy reference")
        else:
            parts.append("native: " + (", ".join(native) or "none"))
            parts.append("reference fallback: " + (", ".join(fallback) or "none"))
        return "; ".join(parts)


_MODULES = {"numpy": "reference", "cpu": "cpu_backend", "cupy": "cupy"}
_cache: dict[str, Backend] = {}
_current: list[Backend] = []  # the process-wide backend (set_backend)
_local: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("pygan_backend", default=None)


def load_backend(name: str) -> Backend:
    """Build (once) and return the backend called ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a backend name (str), got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"name: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name not in _cache:
        module = importlib.import_module(f"pygan.backend.{_MODULES[name]}")
        _cache[name] = module.make_backend()
    return _cache[name]


def set_backend(name: str) -> Backend:
    """Make ``name`` ("numpy", "cpu" or "cupy") the process-wide backend and return it (a thread
    inside a :func:`use_backend` block keeps that block's backend)."""
    backend = load_backend(name)
    _current[:] = [backend]
    return backend


def get_backend() -> Backend:
    """The active backend: the innermost :func:`use_backend` of this thread (or task), else the
    process-wide one (``cpu`` unless changed)."""
    local = _local.get()
    if local is not None:
        return local
    if not _current:
        set_backend("cpu")
    return _current[0]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run a block with another backend active in this thread (a context variable: other threads
    keep theirs); the previous one is restored afterwards."""
    token = _local.set(load_backend(name))
    try:
        yield _local.get()  # type: ignore[misc]
    finally:
        _local.reset(token)


def backend_info() -> str:
    """A line describing the active backend: what is native and what falls back to the reference."""
    return get_backend().info()


def to_numpy(a: Any) -> Any:
    """A host NumPy array from an array of any backend (device arrays are copied to the host)."""
    import numpy as np

    if isinstance(a, np.ndarray):
        xp = get_backend().xp
        return xp.asnumpy(a) if hasattr(xp, "asnumpy") else a  # a stand-in device module counts these
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def from_numpy(a: Any) -> Any:
    """An array of the active backend from a host array (a device copy on ``cupy``)."""
    return get_backend().xp.asarray(a)


def from_dlpack(obj: Any) -> Any:
    """An array of the active backend viewing ``obj`` (anything with ``__dlpack__``) without a copy
    where the device allows, e.g. a torch tensor on the CPU backends or a CUDA array on ``cupy``."""
    return get_backend().xp.from_dlpack(obj)
