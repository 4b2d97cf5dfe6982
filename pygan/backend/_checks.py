"""Argument checks shared by every backend, so that bad input fails the same way everywhere.

Every check raises ``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong rank, shape,
layout, value or option) with a message that starts with the argument's name.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

ACTIVATIONS: tuple[str, ...] = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
GENERATOR_LOSSES: tuple[str, ...] = ("minimax", "non_saturating", "maximum_likelihood")


def check_activation(act: Any, slope: Any) -> tuple[str, float]:
    """Validate an activation name and its leaky-ReLU slope; return them normalised."""
    if not isinstance(act, str):
        raise TypeError(f"act: expected a string naming an activation, got {type(act).__name__}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act: unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    if isinstance(slope, bool) or not isinstance(slope, (int, float, np.floating, np.integer)):
        raise TypeError(f"slope: expected a number, got {type(slope).__name__}")
    slope = float(slope)
    if not math.isfinite(slope) or slope < 0.0:
        # The backward pass reads the sign of the input from the output, which needs slope >= 0.
        raise ValueError(f"slope: must be a finite number >= 0, got {slope}")
    return act, slope


def check_array(
    name: str,
    a: Any,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[Any] = (np.float32, np.float64),
    xp: Any = np,
) -> None:
    """Check that ``a`` is an array of the backend's array type, rank, dtype and C layout."""
    if not isinstance(a, xp.ndarray):
        raise TypeError(f"{name}: expected a {xp.__name__}.ndarray, got {type(a).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected a {want}-D array, got shape {tuple(a.shape)}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        want = ", ".join(np.dtype(d).name for d in dtypes)
        raise TypeError(f"{name}: expected dtype {want}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (row-major); pass np.ascontiguousarray({name})")
    if not getattr(a.flags, "aligned", True):
        raise ValueError(f"{name}: must be aligned to its element size; pass a copy")


def check_same_dtype(**arrays: Any) -> None:
    """All given arrays (None entries skipped) share one dtype."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = items[0]
    for k, v in items[1:]:
        if v.dtype != first.dtype:
            raise TypeError(f"{k}: dtype {v.dtype} differs from {first_name}'s {first.dtype}")


def check_shape(name: str, a: Any, shape: tuple[int, ...]) -> None:
    """The array has exactly this shape."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")


def check_finite(name: str, a: Any, xp: Any = np) -> None:
    """No NaN or Inf (used on weights, where a non-finite value means training has diverged)."""
    if a.size and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name}: contains NaN or Inf")


def check_int(name: str, v: Any, minimum: int) -> int:
    """A whole number no smaller than ``minimum``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    return int(v)


def check_prob(name: str, v: Any, low_open: bool, high_open: bool) -> float:
    """A probability-like number in [0, 1], optionally excluding the ends."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    lo_ok = v > 0.0 if low_open else v >= 0.0
    hi_ok = v < 1.0 if high_open else v <= 1.0
    if not (math.isfinite(v) and lo_ok and hi_ok):
        raise ValueError(f"{name}: must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {v}")
    return v


def conv_out_size(name: str, size: int, k: int, stride: int, pad: int) -> int:
    """Output length of a convolution along one axis; a clear error when it is not positive."""
    out = (size + 2 * pad - k) // stride + 1
    if size + 2 * pad - k < 0 or out <= 0:
        raise ValueError(
            f"{name}: kernel {k} with stride {stride} and padding {pad} does not fit an input of size {size}"
        )
    return out


def check_real(
    name: str, v: Any, low: float | None = None, high: float | None = None, low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (finite in float32 too, where kernels take it as one) within the bounds."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    try:
        v = float(v)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"{name}: must be a finite number, got an integer of {int(v).bit_length()} bits") from None
    ok = math.isfinite(v) and abs(v) <= float(np.finfo(np.float32).max)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        span = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name}: must be a finite number in {span}, got {v}")
    return v


def _buffers(name: str, value: Any) -> list[tuple[str, Any]]:
    """An argument's arrays: the value itself, or each entry of a tuple of them (None skipped)."""
    if isinstance(value, (tuple, list)):
        return [(f"{name}[{i}]", v) for i, v in enumerate(value) if v is not None and hasattr(v, "shape")]
    return [(name, value)] if value is not None and hasattr(value, "shape") else []


def check_disjoint(written: dict[str, Any], read: dict[str, Any], xp: Any = np) -> None:
    """No buffer an op writes in place shares memory with another one it writes or with one it reads.

    Kernels read their inputs while they write their outputs, so an overlap would give a wrong
    answer (and one that changes with the thread count); it is refused instead.
    """
    outs = [b for k, v in written.items() for b in _buffers(k, v)]
    ins = [b for k, v in read.items() for b in _buffers(k, v)]
    may_share = getattr(xp, "may_share_memory", np.may_share_memory)
    for i, (name, out) in enumerate(outs):
        for other, arr in outs[i + 1 :] + ins:
            if may_share(out, arr):
                raise ValueError(f"{name}: shares memory with {other}; an op's output buffer must be a separate array")


#: Largest stride, padding or output padding of a convolution (a geometry beyond it is a mistake).
MAX_GEOMETRY = 1 << 20

#: Largest number of elements of one array an op allocates (1 GiB of float32): a geometry that asks
#: for more is refused by name rather than left to exhaust memory.
MAX_ELEMENTS = 1 << 28


def check_elements(name: str, shape: Sequence[int], what: str) -> None:
    """An array of ``shape`` the op would allocate stays within ``MAX_ELEMENTS``."""
    # empty dimensions aside: an empty array whose other sides are astronomically long is a mistake too
    count = math.prod(max(int(d), 1) for d in shape)
    if count > MAX_ELEMENTS:
        raise ValueError(f"{name}: {what} of shape {tuple(int(d) for d in shape)} spans {count} elements, "
                         f"more than the {MAX_ELEMENTS} one op may allocate")
