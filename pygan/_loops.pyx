# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Loop-level kernels that are not GEMMs: fused optimizer updates over flat float32 buffers, and
the row-wise log-sum-exp of the Parzen-window estimator.

Each update is one pass over the parameters (read grad and state, write state and parameter),
parallel over contiguous chunks with prange and free of the GIL. Shapes are checked by the
Python callers in pygan.optim; these functions check only that the buffers agree in length.
"""

from cython.parallel cimport prange
from libc.math cimport exp, log, sqrtf

from pygan._core import MAX_THREADS


def _threads(n):
    """The thread count checked against the one cap every kernel shares."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"num_threads: must be an int in 1 .. {MAX_THREADS}, got {n!r}")
    return n


def _same_length(Py_ssize_t n, **buffers):
    for name, buf in buffers.items():
        if buf.shape[0] != n:
            raise ValueError(f"{name}: length {buf.shape[0]} differs from param's {n}")


def sgd_momentum(float[::1] param, const float[::1] grad, float[::1] velocity,
                 float lr, float momentum, num_threads=1):
    """Classical momentum: ``v = momentum * v - lr * g``; ``p += v`` (in place)."""
    cdef int threads = _threads(num_threads)
    cdef Py_ssize_t i, n = param.shape[0]
    _same_length(n, grad=grad, velocity=velocity)
    with nogil:
        for i in prange(n, num_threads=threads, schedule="static"):
            velocity[i] = momentum * velocity[i] - lr * grad[i]
            param[i] = param[i] + velocity[i]


def adam(float[::1] param, const float[::1] grad, float[::1] m, float[::1] v,
         float lr, float beta1, float beta2, float eps, long step, num_threads=1):
    """Adam with bias correction (Kingma & Ba 2015), ``step`` counted from 1 (in place)."""
    cdef int threads = _threads(num_threads)
    cdef Py_ssize_t i, n = param.shape[0]
    cdef float g, mi, vi
    if step < 1:
        raise ValueError(f"step: must be >= 1, got {step}")
    _same_length(n, grad=grad, m=m, v=v)
    cdef float bc1 = 1.0 - beta1 ** step
    cdef float inv_sqrt_bc2 = 1.0 / sqrtf(1.0 - beta2 ** step)
    cdef float step_size = lr / bc1
    # float constants: a literal 1.0 in the loop would make its arithmetic double (half the SIMD width)
    cdef float one_m_beta1 = 1.0 - beta1
    cdef float one_m_beta2 = 1.0 - beta2
    with nogil:
        for i in prange(n, num_threads=threads, schedule="static"):
            g = grad[i]
            mi = beta1 * m[i] + one_m_beta1 * g
            vi = beta2 * v[i] + one_m_beta2 * g * g
            m[i] = mi
            v[i] = vi
            param[i] = param[i] - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps)


def rmsprop(float[::1] param, const float[::1] grad, float[::1] sq, float lr, float alpha, float eps,
            num_threads=1):
    """RMSprop: ``sq = alpha * sq + (1 - alpha) * g^2``; ``p -= lr * g / (sqrt(sq) + eps)`` (in place)."""
    cdef int threads = _threads(num_threads)
    cdef Py_ssize_t i, n = param.shape[0]
    cdef float g, s
    cdef float one_m_alpha = 1.0 - alpha
    _same_length(n, grad=grad, sq=sq)
    with nogil:
        for i in prange(n, num_threads=threads, schedule="static"):
            g = grad[i]
            s = alpha * sq[i] + one_m_alpha * g * g
            sq[i] = s
            param[i] = param[i] - lr * g / (sqrtf(s) + eps)


def parzen_lse(const float[:, ::1] cross, const float[::1] x_sq, const float[::1] c_sq,
               const double[::1] inv_two_var, double[:, ::1] out, num_threads=1):
    """For each row i and bandwidth s: ``out[i, s] = log sum_j exp(-d2[i, j] * inv_two_var[s])``.

    ``d2[i, j] = x_sq[i] + c_sq[j] - 2 * cross[i, j]`` (squared distances from a block of points to
    the kernel centres, with ``cross`` their dot products), clamped at 0. The sum is shifted by each
    row's smallest distance, so it never overflows and its largest term is exactly 1.
    """
    cdef Py_ssize_t i, j, s, r = cross.shape[0], m = cross.shape[1], ns = inv_two_var.shape[0]
    cdef int threads = _threads(num_threads)
    cdef double d, dmin, acc, w
    if x_sq.shape[0] != r or c_sq.shape[0] != m:
        raise ValueError(f"x_sq: lengths {x_sq.shape[0]}, {c_sq.shape[0]} do not match cross {r}x{m}")
    if out.shape[0] != r or out.shape[1] != ns:
        raise ValueError(f"out: expected shape ({r}, {ns}), got ({out.shape[0]}, {out.shape[1]})")
    if m == 0:
        raise ValueError("cross: no kernel centres")
    with nogil:
        for i in prange(r, num_threads=threads, schedule="static"):
            dmin = x_sq[i] + c_sq[0] - 2.0 * cross[i, 0]
            for j in range(1, m):
                d = x_sq[i] + c_sq[j] - 2.0 * cross[i, j]
                if d < dmin:
                    dmin = d
            if dmin < 0:
                dmin = 0
            for s in range(ns):
                w = inv_two_var[s]
                acc = 0
                for j in range(m):
                    d = x_sq[i] + c_sq[j] - 2.0 * cross[i, j]
                    if d < dmin:
                        d = dmin
                    acc = acc + exp(-(d - dmin) * w)
                out[i, s] = -dmin * w + log(acc)
