"""The NumPy reference backend: the living definition of every op.

Plain, readable NumPy in float32 or float64. Every fast kernel (C++, Cython, CUDA) is verified
against these functions, and these functions are verified against finite differences in float64.

Conventions (the op contract, identical on every backend):
- arrays are C-contiguous, row-major, NCHW for images;
- dense weights are ``(in_features, out_features)`` so that ``y = act(x @ w + b)``;
- conv2d weights are ``(C_out, C_in, kh, kw)``; conv_transpose2d weights are ``(C_in, C_out, kh, kw)``;
- activation backward passes read the op's output ``y`` (never the pre-activation);
- the backward ops of layers with weights take ``param_grads=(dw_buf, db_buf | None)`` and
  ``accumulate``: the weight and bias gradients are written into those buffers (added to them when
  ``accumulate``) and returned in place of new arrays, so a layer's gradient lands in its
  parameter's buffer with no extra pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as C

Array = np.ndarray
FLOATS = (np.float32, np.float64)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------
def _sigmoid(z: Array) -> Array:
    return np.exp(-np.logaddexp(0.0, -z)).astype(z.dtype, copy=False)


def _act(z: Array, act: str, slope: float) -> Array:
    """Apply an activation to a pre-activation array (returns a new array or ``z`` itself)."""
    if act == "identity":
        return z
    if act == "relu":
        return np.maximum(z, 0)
    if act == "leaky_relu":
        return np.where(z > 0, z, z * z.dtype.type(slope))
    if act == "tanh":
        return np.tanh(z)
    return _sigmoid(z)


def _act_grad(dy: Array, y: Array, act: str, slope: float) -> Array:
    """Upstream gradient times the activation's derivative, written in terms of the output y."""
    if act == "identity":
        return dy
    if act == "relu":
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
    if act == "leaky_relu":
        return np.where(y > 0, dy, dy * dy.dtype.type(slope))
    if act == "tanh":
        return dy * (1 - y * y)
    return dy * y * (1 - y)


def activation_forward(x: Array, act: str, slope: float = 0.2) -> Array:
    """``y = act(x)`` elementwise."""
    act, slope = C.check_activation(act, slope)
    C.check_array("x", x, dtypes=FLOATS)
    return np.ascontiguousarray(_act(x, act, slope) if act != "identity" else x.copy())


def activation_backward(dy: Array, y: Array, act: str, slope: float = 0.2) -> Array:
    """Gradient of an activation from the upstream gradient and the forward output."""
    act, slope = C.check_activation(act, slope)
    C.check_array("dy", dy, dtypes=FLOATS)
    C.check_array("y", y, dtypes=FLOATS)
    C.check_shape("y", y, dy.shape)
    C.check_same_dtype(dy=dy, y=y)
    return np.ascontiguousarray(_act_grad(dy, y, act, slope))


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------
def check_dense(x: Array, w: Array, b: Array | None, act: str, slope: float, dtypes: Any = FLOATS) -> tuple[str, float]:
    """Validate dense-forward arguments (shared by every backend)."""
    act, slope = C.check_activation(act, slope)
    C.check_array("x", x, ndim=2, dtypes=dtypes)
    C.check_array("w", w, ndim=2, dtypes=dtypes)
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"w: expected {x.shape[1]} rows to match x's {x.shape[1]} features, got shape {w.shape}")
    if b is not None:
        C.check_array("b", b, ndim=1, dtypes=dtypes)
        C.check_shape("b", b, (w.shape[1],))
    C.check_same_dtype(x=x, w=w, b=b)
    C.check_finite("w", w)
    return act, slope


def check_dense_backward(
    dy: Array, x: Array, w: Array, y: Array, act: str, slope: float, dtypes: Any = FLOATS
) -> tuple[str, float]:
    """Validate dense-backward arguments (shared by every backend)."""
    act, slope = check_dense(x, w, None, act, slope, dtypes)
    C.check_array("dy", dy, ndim=2, dtypes=dtypes)
    C.check_array("y", y, ndim=2, dtypes=dtypes)
    C.check_shape("dy", dy, (x.shape[0], w.shape[1]))
    C.check_shape("y", y, dy.shape)
    C.check_same_dtype(x=x, dy=dy, y=y)
    return act, slope


def dense_forward(x: Array, w: Array, b: Array | None, act: str = "identity", slope: float = 0.2) -> Array:
    """``y = act(x @ w + b)`` for x ``(N, K)``, w ``(K, M)``, b ``(M,)`` or None."""
    act, slope = check_dense(x, w, b, act, slope)
    z = x @ w
    if b is not None:
        z = z + b
    return np.ascontiguousarray(_act(z, act, slope))


def store_param_grads(dw: Any, db: Any, param_grads: Any, accumulate: bool) -> tuple[Any, Any]:
    """Deliver a backward op's ``(dw, db)``: unchanged if ``param_grads`` is None, else each into its
    buffer of ``param_grads = (dw_buf, db_buf or None)`` (added to it if ``accumulate``), and the
    buffers returned in their place."""
    if param_grads is None or dw is None:
        return dw, db
    out = []
    for i, (g, buf) in enumerate(zip((dw, db), param_grads)):
        if buf is None:
            out.append(g)
            continue
        C.check_shape(f"param_grads[{i}]", buf, g.shape)
        C.check_same_dtype(**{"gradient": g, f"param_grads[{i}]": buf})
        if accumulate:
            buf += g
        else:
            buf[...] = g
        out.append(buf)
    return out[0], out[1]


def dense_backward(
    dy: Array,
    x: Array,
    w: Array,
    y: Array,
    act: str = "identity",
    slope: float = 0.2,
    need_dx: bool = True,
    need_params: bool = True,
    param_grads: tuple[Array, Array | None] | None = None,
    accumulate: bool = False,
) -> tuple[Array | None, Array | None, Array | None]:
    """Return ``(dx, dw, db)``; ``dx`` is None unless need_dx, ``dw``/``db`` None unless need_params
    (delivered into ``param_grads`` when given: see ``store_param_grads``)."""
    act, slope = check_dense_backward(dy, x, w, y, act, slope)
    dz = _act_grad(dy, y, act, slope)
    dx = np.ascontiguousarray(dz @ w.T) if need_dx else None
    dw = np.ascontiguousarray(x.T @ dz) if need_params else None
    db = dz.sum(axis=0) if need_params else None
    return (dx, *store_param_grads(dw, db, param_grads, accumulate))


# ---------------------------------------------------------------------------------------------
# convolution (im2col written out plainly)
# ---------------------------------------------------------------------------------------------
def _im2col(x: Array, kh: int, kw: int, stride: int, pad: int, ho: int, wo: int) -> Array:
    """Patches of x as an array ``(N, C, kh, kw, ho, wo)``."""
    n, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
    return cols


def _col2im(cols: Array, h: int, w: int, stride: int, pad: int) -> Array:
    """Adjoint of ``_im2col``: scatter-add patches back into an ``(N, C, h, w)`` image."""
    n, c, kh, kw, ho, wo = cols.shape
    # room for every patch position, including rows/columns that only padding reaches
    hp = max(h + 2 * pad, stride * (ho - 1) + kh)
    wp = max(w + 2 * pad, stride * (wo - 1) + kw)
    xp = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride] += cols[:, :, i, j]
    return np.ascontiguousarray(xp[:, :, pad : pad + h, pad : pad + w])


def check_conv_geometry(stride: Any, padding: Any) -> tuple[int, int]:
    """Validate stride and padding."""
    return C.check_int("stride", stride, 1), C.check_int("padding", padding, 0)


def conv2d_shapes(
    x: Array, w: Array, b: Array | None, stride: int, padding: int, dtypes: Any = FLOATS, check_weights: bool = True
) -> tuple[int, int]:
    """Validate a conv2d's arrays and return its output size ``(ho, wo)``.

    ``check_weights=False`` leaves the NaN/Inf check of ``w`` to a caller whose kernel makes it.
    """
    C.check_array("x", x, ndim=4, dtypes=dtypes)
    C.check_array("w", w, ndim=4, dtypes=dtypes)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"w: expects {w.shape[1]} input channels, x has {x.shape[1]} (x {x.shape}, w {w.shape})")
    if b is not None:
        C.check_array("b", b, ndim=1, dtypes=dtypes)
        C.check_shape("b", b, (w.shape[0],))
    C.check_same_dtype(x=x, w=w, b=b)
    if check_weights:
        C.check_finite("w", w)
    ho = C.conv_out_size("x", x.shape[2], w.shape[2], stride, padding)
    wo = C.conv_out_size("x", x.shape[3], w.shape[3], stride, padding)
    return ho, wo


def conv_transpose2d_shapes(
    x: Array, w: Array, b: Array | None, stride: int, padding: int, output_padding: int, dtypes: Any = FLOATS,
    check_weights: bool = True,
) -> tuple[int, int]:
    """Validate a conv_transpose2d's arrays and return its output size ``(ho, wo)`` (``check_weights``
    as for :func:`conv2d_shapes`)."""
    C.check_array("x", x, ndim=4, dtypes=dtypes)
    C.check_array("w", w, ndim=4, dtypes=dtypes)
    output_padding = C.check_int("output_padding", output_padding, 0)
    if output_padding >= stride:
        raise ValueError(f"output_padding: must be smaller than stride ({stride}), got {output_padding}")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"w: expects {w.shape[0]} input channels, x has {x.shape[1]} (x {x.shape}, w {w.shape})")
    if b is not None:
        C.check_array("b", b, ndim=1, dtypes=dtypes)
        C.check_shape("b", b, (w.shape[1],))
    C.check_same_dtype(x=x, w=w, b=b)
    if check_weights:
        C.check_finite("w", w)
    ho = (x.shape[2] - 1) * stride - 2 * padding + w.shape[2] + output_padding
    wo = (x.shape[3] - 1) * stride - 2 * padding + w.shape[3] + output_padding
    if ho <= 0 or wo <= 0:
        raise ValueError(f"padding: {padding} leaves no output for input {x.shape[2:]} and kernel {w.shape[2:]}")
    return ho, wo


def conv2d_forward(
    x: Array, w: Array, b: Array | None, stride: int = 1, padding: int = 0, act: str = "identity", slope: float = 0.2
) -> Array:
    """``y = act(conv2d(x, w) + b)``: x ``(N, C_in, H, W)``, w ``(C_out, C_in, kh, kw)``."""
    act, slope = C.check_activation(act, slope)
    stride, padding = check_conv_geometry(stride, padding)
    ho, wo = conv2d_shapes(x, w, b, stride, padding)
    cols = _im2col(x, w.shape[2], w.shape[3], stride, padding, ho, wo)
    z = np.einsum("ocij,ncijhw->nohw", w, cols, optimize=True)
    if b is not None:
        z = z + b[None, :, None, None]
    return np.ascontiguousarray(_act(z, act, slope))


def conv2d_backward(
    dy: Array,
    x: Array,
    w: Array,
    y: Array,
    stride: int = 1,
    padding: int = 0,
    act: str = "identity",
    slope: float = 0.2,
    need_dx: bool = True,
    need_params: bool = True,
    param_grads: tuple[Array, Array | None] | None = None,
    accumulate: bool = False,
) -> tuple[Array | None, Array | None, Array | None]:
    """Return ``(dx, dw, db)`` of a conv2d (None where not asked for; ``param_grads``: as for dense)."""
    act, slope = C.check_activation(act, slope)
    stride, padding = check_conv_geometry(stride, padding)
    ho, wo = conv2d_shapes(x, w, None, stride, padding)
    out_shape = (x.shape[0], w.shape[0], ho, wo)
    for name, a in (("dy", dy), ("y", y)):
        C.check_array(name, a, ndim=4, dtypes=FLOATS)
        C.check_shape(name, a, out_shape)
    C.check_same_dtype(x=x, dy=dy, y=y)
    dz = _act_grad(dy, y, act, slope)
    dx = dw = db = None
    if need_dx:
        dcols = np.einsum("ocij,nohw->ncijhw", w, dz, optimize=True)
        dx = _col2im(dcols, x.shape[2], x.shape[3], stride, padding)
    if need_params:
        cols = _im2col(x, w.shape[2], w.shape[3], stride, padding, ho, wo)
        dw = np.ascontiguousarray(np.einsum("nohw,ncijhw->ocij", dz, cols, optimize=True))
        db = dz.sum(axis=(0, 2, 3))
    return (dx, *store_param_grads(dw, db, param_grads, accumulate))


def conv_transpose2d_forward(
    x: Array,
    w: Array,
    b: Array | None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    act: str = "identity",
    slope: float = 0.2,
) -> Array:
    """Transposed convolution (the adjoint of conv2d in its input): w ``(C_in, C_out, kh, kw)``."""
    act, slope = C.check_activation(act, slope)
    stride, padding = check_conv_geometry(stride, padding)
    ho, wo = conv_transpose2d_shapes(x, w, b, stride, padding, output_padding)
    cols = np.einsum("ocij,nohw->ncijhw", w, x, optimize=True)
    z = _col2im(cols, ho, wo, stride, padding)
    if b is not None:
        z = z + b[None, :, None, None]
    return np.ascontiguousarray(_act(z, act, slope))


def conv_transpose2d_backward(
    dy: Array,
    x: Array,
    w: Array,
    y: Array,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    act: str = "identity",
    slope: float = 0.2,
    need_dx: bool = True,
    need_params: bool = True,
    param_grads: tuple[Array, Array | None] | None = None,
    accumulate: bool = False,
) -> tuple[Array | None, Array | None, Array | None]:
    """Return ``(dx, dw, db)`` of a conv_transpose2d (None where not asked for; ``param_grads``: as for dense)."""
    act, slope = C.check_activation(act, slope)
    stride, padding = check_conv_geometry(stride, padding)
    ho, wo = conv_transpose2d_shapes(x, w, None, stride, padding, output_padding)
    out_shape = (x.shape[0], w.shape[1], ho, wo)
    for name, a in (("dy", dy), ("y", y)):
        C.check_array(name, a, ndim=4, dtypes=FLOATS)
        C.check_shape(name, a, out_shape)
    C.check_same_dtype(x=x, dy=dy, y=y)
    dz = _act_grad(dy, y, act, slope)
    cols = _im2col(dz, w.shape[2], w.shape[3], stride, padding, x.shape[2], x.shape[3])
    dx = dw = db = None
    if need_dx:
        dx = np.ascontiguousarray(np.einsum("ocij,ncijhw->nohw", w, cols, optimize=True))
    if need_params:
        dw = np.ascontiguousarray(np.einsum("nohw,ncijhw->ocij", x, cols, optimize=True))
        db = dz.sum(axis=(0, 2, 3))
    return (dx, *store_param_grads(dw, db, param_grads, accumulate))


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------
def check_batch_norm(
    x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array, dtypes: Any = FLOATS
) -> tuple[int, ...]:
    """Validate batch-norm arrays; return the axes reduced over."""
    C.check_array("x", x, ndim=(2, 4), dtypes=dtypes)
    ch = x.shape[1]
    if ch == 0:
        raise ValueError(f"x: batch norm needs at least one channel, got shape {x.shape}")
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        C.check_array(name, a, ndim=1, dtypes=dtypes)
        C.check_shape(name, a, (ch,))
    C.check_same_dtype(x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        C.check_finite(name, a)  # parameters and statistics: a NaN/Inf here means training diverged
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _bcast(v: Array, ndim: int) -> Array:
    return v if ndim == 2 else v[None, :, None, None]


def batch_norm_statistics(
    x: Array, running_mean: Array, running_var: Array, training: bool, momentum: float, eps: float,
    batch_stats: Any, xp: Any,
) -> tuple[Array, Array]:
    """The statistics every backend's batch norm normalises with: ``(mean, invstd)``.

    Training mode takes the batch's ``(mean, biased variance)`` from ``batch_stats(x)`` and updates
    the running statistics in place (momentum, unbiased variance); evaluation mode uses the running
    ones and changes nothing.
    """
    momentum = C.check_prob("momentum", momentum, low_open=False, high_open=False)
    if not eps > 0:
        raise ValueError(f"eps: must be > 0, got {eps}")
    count = x.size // x.shape[1]
    if training:
        if count < 2:
            raise ValueError(f"x: batch norm in training mode needs more than one value per channel, got shape {tuple(x.shape)}")
        mean, var = batch_stats(x)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (count / (count - 1))
    else:
        mean, var = running_mean.copy(), running_var
    return mean, (1.0 / xp.sqrt(var + eps)).astype(x.dtype)


def batch_norm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    running_mean: Array,
    running_var: Array,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    act: str = "identity",
    slope: float = 0.2,
) -> tuple[Array, Array, Array]:
    """Batch norm then activation; returns ``(y, mean, invstd)`` for the backward pass.

    Training mode normalises with the batch's statistics (biased variance) and updates the running
    statistics in place: ``running = (1 - momentum) * running + momentum * batch`` with the unbiased
    batch variance. Evaluation mode normalises with the running statistics and changes nothing.
    """
    act, slope = C.check_activation(act, slope)
    axes = check_batch_norm(x, gamma, beta, running_mean, running_var)

    def two_pass(x: Array) -> tuple[Array, Array]:
        mean = x.mean(axis=axes)
        return mean, ((x - _bcast(mean, x.ndim)) ** 2).mean(axis=axes)  # two-pass: stable

    mean, invstd = batch_norm_statistics(x, running_mean, running_var, training, momentum, eps, two_pass, np)
    xhat = (x - _bcast(mean, x.ndim)) * _bcast(invstd, x.ndim)
    z = xhat * _bcast(gamma, x.ndim) + _bcast(beta, x.ndim)
    return np.ascontiguousarray(_act(z, act, slope)), mean.astype(x.dtype), invstd


def batch_norm_backward(
    dy: Array,
    x: Array,
    y: Array,
    gamma: Array,
    mean: Array,
    invstd: Array,
    training: bool = True,
    act: str = "identity",
    slope: float = 0.2,
) -> tuple[Array, Array, Array]:
    """Return ``(dx, dgamma, dbeta)``; ``mean`` and ``invstd`` are what the forward returned."""
    act, slope = C.check_activation(act, slope)
    C.check_array("x", x, ndim=(2, 4), dtypes=FLOATS)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    for name, a in (("gamma", gamma), ("mean", mean), ("invstd", invstd)):
        C.check_array(name, a, ndim=1, dtypes=FLOATS)
        C.check_shape(name, a, (x.shape[1],))
    for name, a in (("dy", dy), ("y", y)):
        C.check_array(name, a, ndim=x.ndim, dtypes=FLOATS)
        C.check_shape(name, a, x.shape)
    C.check_same_dtype(x=x, dy=dy, y=y, gamma=gamma, mean=mean, invstd=invstd)
    dz = _act_grad(dy, y, act, slope)
    xhat = (x - _bcast(mean, x.ndim)) * _bcast(invstd, x.ndim)
    dbeta = dz.sum(axis=axes)
    dgamma = (dz * xhat).sum(axis=axes)
    scale = _bcast(gamma * invstd, x.ndim)
    if training:
        count = x.size // x.shape[1]
        dx = scale * (dz - _bcast(dbeta / count, x.ndim) - xhat * _bcast(dgamma / count, x.ndim))
    else:
        dx = scale * dz
    return np.ascontiguousarray(dx), dgamma, dbeta


# ---------------------------------------------------------------------------------------------
# dropout and maxout
# ---------------------------------------------------------------------------------------------
def dropout_forward(x: Array, p: float, mask: Array | None = None, seed: int | None = None) -> tuple[Array, Array]:
    """Inverted dropout with drop probability ``p``; returns ``(y, mask)``.

    ``mask`` holds 0 for dropped units and ``1 / (1 - p)`` for kept ones; pass one in to reuse it,
    or give ``seed`` for a reproducible draw.
    """
    C.check_array("x", x, dtypes=FLOATS)
    p = C.check_prob("p", p, low_open=False, high_open=True)
    if mask is None:
        rng = np.random.default_rng(seed)
        mask = ((rng.random(x.shape) >= p) / (1.0 - p)).astype(x.dtype)
    else:
        C.check_array("mask", mask, dtypes=FLOATS)
        C.check_shape("mask", mask, x.shape)
        C.check_same_dtype(x=x, mask=mask)
    return x * mask, mask


def dropout_backward(dy: Array, mask: Array) -> Array:
    """``dx = dy * mask``."""
    C.check_array("dy", dy, dtypes=FLOATS)
    C.check_array("mask", mask, dtypes=FLOATS)
    C.check_shape("mask", mask, dy.shape)
    C.check_same_dtype(dy=dy, mask=mask)
    return dy * mask


def maxout_forward(x: Array, pieces: int) -> tuple[Array, Array]:
    """Maxout over groups of ``pieces`` adjacent features: x ``(N, U*pieces)`` -> y ``(N, U)``.

    Returns ``(y, index)`` where ``index`` (int32) is the winning piece of each unit.
    """
    C.check_array("x", x, ndim=2, dtypes=FLOATS)
    pieces = C.check_int("pieces", pieces, 1)
    if x.shape[1] % pieces:
        raise ValueError(f"x: {x.shape[1]} features do not split into groups of pieces={pieces}")
    g = x.reshape(x.shape[0], x.shape[1] // pieces, pieces)
    if g.shape[1] == 0:
        return np.zeros((x.shape[0], 0), x.dtype), np.zeros((x.shape[0], 0), np.int32)
    idx = g.argmax(axis=2).astype(np.int32)
    y = np.take_along_axis(g, idx[..., None].astype(np.intp), axis=2)[..., 0]
    return np.ascontiguousarray(y), idx


def maxout_backward(dy: Array, index: Array, pieces: int) -> Array:
    """Route each unit's gradient to its winning piece."""
    C.check_array("dy", dy, ndim=2, dtypes=FLOATS)
    C.check_array("index", index, ndim=2, dtypes=(np.int32,))
    C.check_shape("index", index, dy.shape)
    pieces = C.check_int("pieces", pieces, 1)
    if index.size and (index.min() < 0 or index.max() >= pieces):
        raise ValueError(f"index: entries must lie in [0, {pieces})")
    dx = np.zeros((dy.shape[0], dy.shape[1], pieces), dtype=dy.dtype)
    np.put_along_axis(dx, index[..., None].astype(np.intp), dy[..., None], axis=2)
    return dx.reshape(dy.shape[0], dy.shape[1] * pieces)


# ---------------------------------------------------------------------------------------------
# optimizer updates over flat parameter buffers (in place)
# ---------------------------------------------------------------------------------------------
def check_flat_buffers(dtypes: Any = FLOATS, **buffers: Array) -> None:
    """All buffers are 1-D, contiguous, of one dtype and of the same length as ``param``."""
    n = buffers["param"].shape[0] if isinstance(buffers.get("param"), np.ndarray) and buffers["param"].ndim == 1 else None
    for name, a in buffers.items():
        C.check_array(name, a, ndim=1, dtypes=dtypes)
        if not a.flags.writeable and name != "grad":
            raise ValueError(f"{name}: must be writeable (it is updated in place)")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"{name}: length {a.shape[0]} differs from param's {n}")
    C.check_same_dtype(**buffers)


def sgd_update(param: Array, grad: Array, velocity: Array, lr: float, momentum: float) -> None:
    """Classical momentum: ``v = momentum * v - lr * g``; ``p += v``."""
    check_flat_buffers(param=param, grad=grad, velocity=velocity)
    t = param.dtype.type
    velocity *= t(momentum)
    velocity -= t(lr) * grad
    param += velocity


def adam_update(
    param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float, beta2: float, eps: float, step: int
) -> None:
    """Adam with bias correction; ``step`` counts from 1."""
    check_flat_buffers(param=param, grad=grad, m=m, v=v)
    step = C.check_int("step", step, 1)
    t = param.dtype.type
    m *= t(beta1)
    m += t(1 - beta1) * grad
    v *= t(beta2)
    v += t(1 - beta2) * grad * grad
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    param -= t(lr / bc1) * m / (np.sqrt(v) * t(1 / np.sqrt(bc2)) + t(eps))


def make_backend() -> Any:
    """The reference backend object for the registry."""
    import sys

    from . import OPS, Backend

    module = sys.modules[__name__]
    return Backend(
        name="numpy",
        xp=np,
        ops={op: getattr(module, op) for op in OPS},
        native=frozenset(),
        details="NumPy " + np.__version__,
    )
