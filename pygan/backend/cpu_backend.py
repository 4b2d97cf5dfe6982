"""The ``cpu`` backend: pygan's native kernels (C++ through ``pygan._core``, Cython loops).

Native ops validate their arguments with the same checks as the reference (float32 only) and then
call the kernel with the GIL released. Ops without a native kernel yet are the reference functions,
and ``backend_info()`` names each of them.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from .. import _core, _loops
from . import OPS, Backend
from . import _checks as C
from . import reference as ref

F32 = (np.float32,)
ACT_CODES: dict[str, int] = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}


def set_isa(name: str) -> None:
    """Force the GEMM core's instruction-set path: ``avx512``, ``avx2`` or ``generic``.

    Raises ValueError for an unknown name or one this CPU cannot run.
    """
    if not isinstance(name, str):
        raise TypeError(f"isa: expected a string, got {type(name).__name__}")
    _core.set_isa(name)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API on this system
        return max(1, os.cpu_count() or 1)


def capped_threads(n: int, name: str = "n") -> int:
    """``n`` threads capped at the cores this process may run on, with a RuntimeWarning naming ``name``
    when it is cut: a thread beyond the cores only waits, and makes every barrier wait for it."""
    cores = available_cores()
    if n > cores:
        warnings.warn(f"{name}: {n} threads on {cores} cores; using {cores}", RuntimeWarning, stacklevel=3)
        return cores
    return n


def set_num_threads(n: int) -> None:
    """Threads for the GEMM core and the Cython loops (results do not depend on it), at most the
    cores this process may run on (more are cut, with a RuntimeWarning)."""
    n = C.check_int("n", n, 1)
    if n > _core.MAX_THREADS:
        raise ValueError(f"n: the number of threads must be in 1 .. {_core.MAX_THREADS}, got {n}")
    _core.set_num_threads(capped_threads(n))


def get_num_threads() -> int:
    """Threads the native kernels use."""
    return int(_core.num_threads())


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, act: str = "identity", slope: float = 0.2) -> np.ndarray:
    """Fused ``y = act(x @ w + b)`` in C++ (float32).

    The extension checks the arrays itself (dtype, rank, shape, C layout, and NaN/Inf in ``w`` while
    packing it), so no Python-side pass over the data is needed.
    """
    act, slope = C.check_activation(act, slope)
    return _core.dense_forward(x, w, b, ACT_CODES[act], slope)


def dense_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    y: np.ndarray,
    act: str = "identity",
    slope: float = 0.2,
    need_dx: bool = True,
    need_params: bool = True,
    param_grads: tuple[np.ndarray, np.ndarray | None] | None = None,
    accumulate: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Fused dense backward in C++: ``(dx, dw, db)``, None where not asked for (arguments checked in
    C++); the kernel writes (or adds) dw and db straight into ``param_grads``'s buffers."""
    act, slope = C.check_activation(act, slope)
    dw_out, db_out = param_grads if param_grads is not None else (None, None)
    return tuple(_core.dense_backward(dy, x, w, y, ACT_CODES[act], slope, bool(need_dx), bool(need_params),
                                      dw_out, db_out, bool(accumulate)))


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0, act: str = "identity",
    slope: float = 0.2,
) -> np.ndarray:
    """conv2d with bias and activation fused, on the GEMM core (image patches packed straight into its B panels)."""
    act, slope = C.check_activation(act, slope)
    stride, padding = ref.check_conv_geometry(stride, padding)
    ref.conv2d_shapes(x, w, b, stride, padding, dtypes=F32, check_weights=False)
    return _core.conv_forward(x, w, b, stride, padding, 0, ACT_CODES[act], slope, False)


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, y: np.ndarray, stride: int = 1, padding: int = 0,
    act: str = "identity", slope: float = 0.2, need_dx: bool = True, need_params: bool = True,
    param_grads: tuple[np.ndarray, np.ndarray | None] | None = None, accumulate: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(dx, dw, db)`` of conv2d: dz and db in one sweep, dw (gathered patches) and dx (one GEMM per
    stride phase) on the GEMM core; dw and db written (or added) straight into ``param_grads``."""
    act, slope = C.check_activation(act, slope)
    stride, padding = ref.check_conv_geometry(stride, padding)
    ref.conv2d_shapes(x, w, None, stride, padding, dtypes=F32, check_weights=False)
    dw_out, db_out = param_grads if param_grads is not None else (None, None)
    return tuple(_core.conv_backward(dy, x, w, y, stride, padding, 0, ACT_CODES[act], slope, bool(need_dx),
                                     bool(need_params), False, dw_out, db_out, bool(accumulate)))


def conv_transpose2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0, output_padding: int = 0,
    act: str = "identity", slope: float = 0.2,
) -> np.ndarray:
    """conv_transpose2d (conv2d's data gradient): one GEMM per stride phase with bias and activation in its
    epilogue (GEMM then col2im below 8 output channels)."""
    act, slope = C.check_activation(act, slope)
    stride, padding = ref.check_conv_geometry(stride, padding)
    ref.conv_transpose2d_shapes(x, w, b, stride, padding, output_padding, dtypes=F32, check_weights=False)
    return _core.conv_forward(x, w, b, stride, padding, output_padding, ACT_CODES[act], slope, True)


def conv_transpose2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, y: np.ndarray, stride: int = 1, padding: int = 0,
    output_padding: int = 0, act: str = "identity", slope: float = 0.2, need_dx: bool = True, need_params: bool = True,
    param_grads: tuple[np.ndarray, np.ndarray | None] | None = None, accumulate: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``(dx, dw, db)`` of conv_transpose2d: conv2d's gathered-patch GEMMs on dz = dy * act'(y); dw
    and db written (or added) straight into ``param_grads``."""
    act, slope = C.check_activation(act, slope)
    stride, padding = ref.check_conv_geometry(stride, padding)
    ref.conv_transpose2d_shapes(x, w, None, stride, padding, output_padding, dtypes=F32, check_weights=False)
    dw_out, db_out = param_grads if param_grads is not None else (None, None)
    return tuple(_core.conv_backward(dy, x, w, y, stride, padding, output_padding, ACT_CODES[act], slope,
                                     bool(need_dx), bool(need_params), True, dw_out, db_out, bool(accumulate)))


def batch_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
    training: bool = True, momentum: float = 0.1, eps: float = 1e-5, act: str = "identity", slope: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch norm + activation: two-pass statistics, then one fused normalise-scale-shift-activate sweep."""
    act, slope = C.check_activation(act, slope)
    ref.check_batch_norm(x, gamma, beta, running_mean, running_var, dtypes=F32)
    mean, invstd = ref.batch_norm_statistics(x, running_mean, running_var, training, momentum, eps, _core.bn_stats, np)
    return _core.bn_apply(x, mean, invstd, gamma, beta, ACT_CODES[act], slope), mean, invstd


def batch_norm_backward(
    dy: np.ndarray, x: np.ndarray, y: np.ndarray, gamma: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
    training: bool = True, act: str = "identity", slope: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)``: per-channel reductions and dx in one pass per channel."""
    act, slope = C.check_activation(act, slope)
    C.check_array("x", x, ndim=(2, 4), dtypes=F32)
    return tuple(_core.bn_backward(dy, x, y, gamma, mean, invstd, bool(training), ACT_CODES[act], slope))


def upsample2x_forward(x: np.ndarray, mode: str = "nearest") -> np.ndarray:
    """2x nearest or bilinear upsampling, one pass per plane in C++ (float32)."""
    C.check_array("x", x, ndim=4, dtypes=F32)
    return _core.upsample(x, ref.check_upsample_mode(mode) == "bilinear", False)


def upsample2x_backward(dy: np.ndarray, mode: str = "nearest") -> np.ndarray:
    """Its adjoint, one pass per plane in C++."""
    C.check_array("dy", dy, ndim=4, dtypes=F32)
    return _core.upsample(dy, ref.check_upsample_mode(mode) == "bilinear", True)


def group_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5, act: str = "identity",
    slope: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group / instance / layer norm and AdaIN + activation: each group's two-pass statistics over its
    contiguous block, then one fused scale-shift-activate sweep per plane (the ISA's row kernels)."""
    act, slope = C.check_activation(act, slope)
    groups = ref.check_group_norm(x, gamma, beta, groups)
    C.check_array("x", x, ndim=(2, 4), dtypes=F32)
    if not eps > 0:
        raise ValueError(f"eps: must be > 0, got {eps}")
    if x.size == 0:
        return ref.group_norm_forward(x, gamma, beta, groups, eps, act, slope)
    y, mean, invstd = _core.gn_forward(x, gamma, beta, groups, float(eps), ACT_CODES[act], slope)
    ref.check_statistics_fit(mean, invstd)
    return y, mean, invstd


def group_norm_backward(
    dy: np.ndarray, x: np.ndarray, y: np.ndarray, gamma: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
    groups: int, act: str = "identity", slope: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)``: per-plane gradient sums, then dx per plane (the ISA's row kernels)."""
    act, slope = C.check_activation(act, slope)
    C.check_array("x", x, ndim=(2, 4), dtypes=F32)
    groups = ref.check_group_norm(x, gamma, gamma, groups)
    if x.size == 0:
        return ref.group_norm_backward(dy, x, y, gamma, mean, invstd, groups, act, slope)
    return tuple(_core.gn_backward(dy, x, y, gamma, mean, invstd, groups, ACT_CODES[act], slope))


def sgd_update(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float) -> None:
    """Classical momentum over flat float32 buffers (Cython, in place)."""
    ref.check_flat_buffers(dtypes=F32, param=param, grad=grad, velocity=velocity)
    lr, momentum = ref.check_sgd(lr, momentum)
    _loops.sgd_momentum(param, grad, velocity, lr, momentum, get_num_threads())


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
) -> None:
    """Adam with bias correction over flat float32 buffers (Cython, in place)."""
    ref.check_flat_buffers(dtypes=F32, param=param, grad=grad, m=m, v=v)
    lr, beta1, beta2, eps, step = ref.check_adam(lr, beta1, beta2, eps, step)
    _loops.adam(param, grad, m, v, lr, beta1, beta2, eps, step, get_num_threads())


def rmsprop_update(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, lr: float, alpha: float, eps: float) -> None:
    """RMSprop over flat float32 buffers (Cython, in place)."""
    ref.check_flat_buffers(dtypes=F32, param=param, grad=grad, sq=sq)
    lr, alpha, eps = ref.check_rmsprop(lr, alpha, eps)
    _loops.rmsprop(param, grad, sq, lr, alpha, eps, get_num_threads())


def parzen_log_sum_exp(x: np.ndarray, centres: np.ndarray, inv_two_var: np.ndarray, block: int = 512) -> np.ndarray:
    """``out[i, s] = log sum_j exp(-|x_i - c_j|^2 * inv_two_var[s])`` for float32 points (host only).

    Blocks of ``x`` meet all centres in one GEMM-core call (their dot products); the shifted
    log-sum-exp over each row runs in Cython. Memory stays at one block x centres.
    """
    out = np.empty((x.shape[0], inv_two_var.shape[0]), dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", centres, centres, dtype=np.float64).astype(np.float32)
    threads = get_num_threads()
    for start in range(0, x.shape[0], block):
        xb = x[start : start + block]
        cross = _core.gemm(xb, centres, False, True)
        x_sq = np.einsum("ij,ij->i", xb, xb, dtype=np.float64).astype(np.float32)
        _loops.parzen_lse(cross, x_sq, c_sq, inv_two_var, out[start : start + len(xb)], threads)
    return out


NATIVE: dict[str, Any] = {
    "dense_forward": dense_forward,
    "dense_backward": dense_backward,
    "conv2d_forward": conv2d_forward,
    "conv2d_backward": conv2d_backward,
    "conv_transpose2d_forward": conv_transpose2d_forward,
    "conv_transpose2d_backward": conv_transpose2d_backward,
    "batch_norm_forward": batch_norm_forward,
    "batch_norm_backward": batch_norm_backward,
    "upsample2x_forward": upsample2x_forward,
    "upsample2x_backward": upsample2x_backward,
    "group_norm_forward": group_norm_forward,
    "group_norm_backward": group_norm_backward,
    "sgd_update": sgd_update,
    "adam_update": adam_update,
    "rmsprop_update": rmsprop_update,
}


def _configure_from_environment() -> None:
    """Apply PYGAN_ISA and PYGAN_NUM_THREADS, with errors that name the variable."""
    isa = os.environ.get("PYGAN_ISA")
    if isa:
        try:
            set_isa(isa)
        except ValueError as e:
            raise ValueError(f"PYGAN_ISA: {e}") from None
    threads = os.environ.get("PYGAN_NUM_THREADS")
    if threads:
        if not threads.isdigit() or not 1 <= int(threads) <= _core.MAX_THREADS:
            raise ValueError(f"PYGAN_NUM_THREADS: expected a whole number in 1 .. {_core.MAX_THREADS}, got {threads!r}")
        _core.set_num_threads(capped_threads(int(threads), "PYGAN_NUM_THREADS"))


class CpuBackend(Backend):
    """The cpu backend; its description reads the ISA and thread count at the time it is asked."""

    def info(self) -> str:
        line = super().info()
        blk = _core.gemm_blocking()
        caches = f"L1d {blk['l1d'] // 1024} KiB, L2 {blk['l2'] // 1024} KiB" if blk["l1d"] and blk["l2"] else "cache sizes unknown"
        head = (
            f"backend cpu; GEMM core ISA {_core.current_isa()} (this CPU runs: {', '.join(_core.supported_isas())}), "
            f"tile {blk['mr']}x{blk['nr']}, blocks KC {blk['kc']} NB {blk['nb']} MB {blk['mb']} ({caches}), "
            f"{get_num_threads()} threads"
        )
        return line.replace("backend cpu", head, 1)


def make_backend() -> Backend:
    """The cpu backend object for the registry."""
    _configure_from_environment()
    ops = {op: NATIVE.get(op, getattr(ref, op)) for op in OPS}
    return CpuBackend(name="cpu", xp=np, ops=ops, native=frozenset(NATIVE))
