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
    """Validate stride and padding (each at most ``MAX_GEOMETRY``)."""
    stride, padding = C.check_int("stride", stride, 1), C.check_int("padding", padding, 0)
    for name, v in (("stride", stride), ("padding", padding)):
        if v > C.MAX_GEOMETRY:
            raise ValueError(f"{name}: must be <= {C.MAX_GEOMETRY}, got {v}")
    return stride, padding


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
    n, c = x.shape[:2]
    C.check_elements("padding", (n, c, x.shape[2] + 2 * padding, x.shape[3] + 2 * padding), "the padded input")
    C.check_elements("x", (n, w.shape[0], ho, wo), "the output")
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
    C.check_elements("stride", (x.shape[0], w.shape[1], ho + 2 * padding, wo + 2 * padding), "the output")
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
# resampling, padding and normalisation over (N, C, H, W). Written against an array module ``xp``
# (NumPy here): the cupy backend runs these same expressions on the device.
# ---------------------------------------------------------------------------------------------
UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")


def _check_image(name: str, x: Array, xp: Any) -> None:
    C.check_array(name, x, ndim=4, dtypes=FLOATS, xp=xp)


def check_upsample_mode(mode: Any) -> str:
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode: unknown upsampling {mode!r}; expected one of {', '.join(UPSAMPLE_MODES)}")
    return mode


def _interleave(xp: Any, even: Array, odd: Array) -> Array:
    """``out[..., 2k] = even[..., k]``, ``out[..., 2k + 1] = odd[..., k]``."""
    return xp.stack([even, odd], axis=-1).reshape(*even.shape[:-1], 2 * even.shape[-1])


def _bilinear_last(xp: Any, x: Array) -> Array:
    """2x linear upsampling along the last axis, half-pixel centres, edges clamped: out[2k] =
    x[k] * 3/4 + x[k-1] / 4, out[2k+1] = x[k] * 3/4 + x[k+1] / 4."""
    t = x.dtype.type
    prev = xp.concatenate([x[..., :1], x[..., :-1]], axis=-1)
    nxt = xp.concatenate([x[..., 1:], x[..., -1:]], axis=-1)
    return _interleave(xp, t(0.75) * x + t(0.25) * prev, t(0.75) * x + t(0.25) * nxt)


def _bilinear_last_adjoint(xp: Any, dy: Array) -> Array:
    """The adjoint of :func:`_bilinear_last`."""
    t = dy.dtype.type
    even, odd = dy[..., 0::2], dy[..., 1::2]
    dx = t(0.75) * (even + odd)
    dx[..., :-1] += t(0.25) * even[..., 1:]
    dx[..., :1] += t(0.25) * even[..., :1]
    dx[..., 1:] += t(0.25) * odd[..., :-1]
    dx[..., -1:] += t(0.25) * odd[..., -1:]
    return dx


def check_upsample_grad(dy: Array, mode: Any, xp: Any = np) -> str:
    """``dy`` is the gradient of a 2x upsampling (even sides); returns the mode."""
    _check_image("dy", dy, xp)
    if dy.shape[2] % 2 or dy.shape[3] % 2:
        raise ValueError(f"dy: the output of a 2x upsampling has even sides, got shape {tuple(dy.shape)}")
    return check_upsample_mode(mode)


def upsample2x_forward(x: Array, mode: str = "nearest", xp: Any = np) -> Array:
    """2x upsampling of ``(N, C, H, W)`` to ``(N, C, 2H, 2W)``: ``nearest`` repeats each pixel,
    ``bilinear`` interpolates at half-pixel centres with clamped edges (PyTorch's
    ``align_corners=False``)."""
    _check_image("x", x, xp)
    if check_upsample_mode(mode) == "nearest":
        return xp.ascontiguousarray(xp.repeat(xp.repeat(x, 2, axis=2), 2, axis=3))
    rows = _bilinear_last(xp, x)
    return xp.ascontiguousarray(xp.swapaxes(_bilinear_last(xp, xp.swapaxes(rows, 2, 3)), 2, 3))


def upsample2x_backward(dy: Array, mode: str = "nearest", xp: Any = np) -> Array:
    """The gradient of :func:`upsample2x_forward` (its adjoint) from ``dy`` ``(N, C, 2H, 2W)``."""
    n, c, h2, w2 = dy.shape
    if check_upsample_grad(dy, mode, xp) == "nearest":
        return xp.ascontiguousarray(dy.reshape(n, c, h2 // 2, 2, w2 // 2, 2).sum(axis=(3, 5)))
    cols = _bilinear_last_adjoint(xp, dy)
    return xp.ascontiguousarray(xp.swapaxes(_bilinear_last_adjoint(xp, xp.swapaxes(cols, 2, 3)), 2, 3))


def check_avg_pool(x: Array, k: Any, xp: Any = np) -> int:
    """A k x k window fits in ``x``; returns k."""
    _check_image("x", x, xp)
    k = C.check_int("k", k, 1)
    if x.shape[2] // k == 0 or x.shape[3] // k == 0:
        raise ValueError(f"k: a {k}x{k} window does not fit in an image of shape {tuple(x.shape)}")
    return k


def check_avg_pool_grad(dy: Array, k: Any, height: Any, width: Any, xp: Any = np) -> tuple[int, int, int]:
    """``dy`` is the gradient of a k x k pooling of a ``height`` x ``width`` image; returns
    ``(k, height, width)``."""
    _check_image("dy", dy, xp)
    k = C.check_int("k", k, 1)
    height, width = C.check_int("height", height, 1), C.check_int("width", width, 1)
    n, c, ho, wo = dy.shape
    if (height // k, width // k) != (ho, wo):
        raise ValueError(f"dy: shape {tuple(dy.shape)} is not a {k}x{k} pooling of a {height}x{width} image")
    C.check_elements("height", (n, c, height, width), "the gradient")
    return k, height, width


def avg_pool2d_forward(x: Array, k: int = 2, xp: Any = np) -> Array:
    """Average pooling over k x k windows with stride k: ``(N, C, H, W) -> (N, C, H // k, W // k)``
    (rows and columns past the last whole window are dropped)."""
    k = check_avg_pool(x, k, xp)
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    win = x[:, :, : ho * k, : wo * k].reshape(n, c, ho, k, wo, k)
    return xp.ascontiguousarray(win.sum(axis=(3, 5)) * x.dtype.type(1.0 / (k * k)))


def avg_pool2d_backward(dy: Array, k: int, height: int, width: int, xp: Any = np) -> Array:
    """The gradient of :func:`avg_pool2d_forward` for an input of ``height`` x ``width``."""
    k, height, width = check_avg_pool_grad(dy, k, height, width, xp)
    n, c, ho, wo = dy.shape
    dx = xp.zeros((n, c, height, width), dtype=dy.dtype)
    share = dy * dy.dtype.type(1.0 / (k * k))
    dx[:, :, : ho * k, : wo * k] = xp.repeat(xp.repeat(share, k, axis=2), k, axis=3)
    return dx


def check_pixel_shuffle(x: Array, r: Any, xp: Any = np) -> int:
    """``x``'s channels split into groups of r^2 and the output fits; returns r."""
    _check_image("x", x, xp)
    r = C.check_int("r", r, 1)
    n, cr, h, w = x.shape
    if cr % (r * r):
        raise ValueError(f"x: {cr} channels do not split into groups of r^2 = {r * r}")
    C.check_elements("r", (n, cr // (r * r), h * r, w * r), "the output")
    return r


def check_pixel_shuffle_grad(dy: Array, r: Any, xp: Any = np) -> int:
    """``dy``'s sides are multiples of r; returns r."""
    _check_image("dy", dy, xp)
    r = C.check_int("r", r, 1)
    if dy.shape[2] % r or dy.shape[3] % r:
        raise ValueError(f"dy: sides of shape {tuple(dy.shape)} are not multiples of r = {r}")
    return r


def pixel_shuffle_forward(x: Array, r: int = 2, xp: Any = np) -> Array:
    """Sub-pixel convolution's rearrangement (Shi et al. 2016): ``(N, C r^2, H, W) -> (N, C, rH, rW)``,
    ``y[n, c, h r + i, w r + j] = x[n, c r^2 + i r + j, h, w]``."""
    r = check_pixel_shuffle(x, r, xp)
    n, cr, h, w = x.shape
    c = cr // (r * r)
    return xp.ascontiguousarray(x.reshape(n, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r))


def pixel_shuffle_backward(dy: Array, r: int = 2, xp: Any = np) -> Array:
    """The gradient of :func:`pixel_shuffle_forward` (its inverse rearrangement)."""
    r = check_pixel_shuffle_grad(dy, r, xp)
    n, c, hr, wr = dy.shape
    h, w = hr // r, wr // r
    return xp.ascontiguousarray(dy.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h, w))


def _check_pad(p: Any, h: int, w: int) -> int:
    p = C.check_int("padding", p, 0)
    if p >= h or p >= w:
        raise ValueError(f"padding: reflection padding {p} needs sides longer than it, got {h}x{w}")
    return p


def check_reflection_pad(x: Array, padding: Any, xp: Any = np) -> int:
    """Reflection padding of ``x`` by ``padding`` (shorter than its sides); returns it."""
    _check_image("x", x, xp)
    return _check_pad(padding, x.shape[2], x.shape[3])


def check_reflection_pad_grad(dy: Array, padding: Any, xp: Any = np) -> int:
    """``dy`` is the gradient of a reflection padding by ``padding``; returns it."""
    _check_image("dy", dy, xp)
    p = C.check_int("padding", padding, 0)
    return _check_pad(p, dy.shape[2] - 2 * p, dy.shape[3] - 2 * p)


def reflection_pad2d_forward(x: Array, padding: int = 1, xp: Any = np) -> Array:
    """Pad H and W by ``padding`` on each side with the mirror image of the border (the edge
    itself not repeated): ``(N, C, H, W) -> (N, C, H + 2p, W + 2p)``; ``padding < H, W``."""
    p = check_reflection_pad(x, padding, xp)
    return xp.ascontiguousarray(xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect"))


def _reflect_last_adjoint(xp: Any, dy: Array, p: int) -> Array:
    n = dy.shape[-1] - 2 * p
    dx = dy[..., p : p + n].copy()
    if p:
        dx[..., 1 : p + 1] += dy[..., :p][..., ::-1]
        dx[..., n - 1 - p : n - 1] += dy[..., n + p :][..., ::-1]
    return dx


def reflection_pad2d_backward(dy: Array, padding: int = 1, xp: Any = np) -> Array:
    """The gradient of :func:`reflection_pad2d_forward`: each padded entry's gradient goes back
    to the pixel it mirrors."""
    p = check_reflection_pad_grad(dy, padding, xp)
    cols = _reflect_last_adjoint(xp, dy, p)
    return xp.ascontiguousarray(xp.swapaxes(_reflect_last_adjoint(xp, xp.swapaxes(cols, 2, 3), p), 2, 3))


def check_group_norm(x: Array, gamma: Array, beta: Array, groups: int, xp: Any = np, finite: bool = True) -> int:
    """x ``(N, C)`` or ``(N, C, H, W)``; ``groups`` divides C; gamma and beta ``(C,)``, or
    ``(N, C)`` for a per-example affine (AdaIN); one dtype; gamma and beta finite unless
    ``finite=False`` (metadata only: a device backend's check without a sync). Returns ``groups``."""
    C.check_array("x", x, ndim=(2, 4), dtypes=FLOATS, xp=xp)
    groups = C.check_int("groups", groups, 1)
    n, c = x.shape[:2]
    if c % groups:
        raise ValueError(f"groups: {groups} groups do not divide {c} channels")
    for name, a in (("gamma", gamma), ("beta", beta)):
        C.check_array(name, a, ndim=(1, 2), dtypes=FLOATS, xp=xp)
        if tuple(a.shape) not in ((c,), (n, c)):
            raise ValueError(f"{name}: expected shape ({c},) or ({n}, {c}) for x of shape {tuple(x.shape)}, "
                             f"got {tuple(a.shape)}")
    if gamma.shape != beta.shape:
        raise ValueError(f"beta: shape {tuple(beta.shape)} differs from gamma's {tuple(gamma.shape)}")
    C.check_same_dtype(x=x, gamma=gamma, beta=beta)
    for name, a in (("gamma", gamma), ("beta", beta)) if finite else ():
        C.check_finite(name, a, xp)  # as batch norm's: a NaN/Inf affine means training diverged
    return groups


def _affine_shape(a: Array, x: Array) -> tuple[int, ...]:
    """How a ``(C,)`` or ``(N, C)`` affine vector broadcasts against x."""
    lead = (1, -1) if a.ndim == 1 else tuple(a.shape)
    return lead + (1,) * (x.ndim - 2)


def check_statistics_fit(mean: Array, invstd: Array, xp: Any = np) -> None:
    """A normalisation's statistics fit its dtype: a finite input whose spread makes ``1 / std``
    smaller than the dtype's smallest normal number (std beyond about 1e37 in float32) cannot be
    normalised faithfully (the kernels read such values as zero), so it is refused by name."""
    tiny = np.finfo(invstd.dtype).tiny
    if invstd.size and bool((xp.isfinite(mean) & (invstd < tiny)).any()):
        raise ValueError(f"x: a group's standard deviation is too large for {invstd.dtype} statistics "
                         "(1/std underflows); scale the input down")


def group_norm_forward(
    x: Array, gamma: Array, beta: Array, groups: int, eps: float = 1e-5, act: str = "identity", slope: float = 0.2,
    xp: Any = np,
) -> tuple[Array, Array, Array]:
    """Group normalisation (Wu & He 2018) then an activation: each example's channels split into
    ``groups`` groups, each group normalised by its own mean and variance (biased, two-pass, in
    float64), then ``act(xhat * gamma + beta)``. ``groups = C`` is instance norm (Ulyanov et al.
    2016), ``groups = 1`` layer norm with a per-channel affine (Ba et al. 2016); gamma and beta of
    shape ``(N, C)`` make it adaptive instance norm (AdaIN, Huang & Belongie 2017). There are no
    running statistics: training and evaluation compute the same. Returns ``(y, mean, invstd)``,
    the statistics ``(N, groups)``."""
    act, slope = C.check_activation(act, slope)
    groups = check_group_norm(x, gamma, beta, groups, xp)
    if not eps > 0:
        raise ValueError(f"eps: must be > 0, got {eps}")
    n = x.shape[0]
    xg = x.reshape(n, groups, x.size // max(n * groups, 1))
    if xg.shape[2] == 0:
        return x.copy(), xp.zeros((n, groups), x.dtype), xp.ones((n, groups), x.dtype)
    mean = xg.mean(axis=2, dtype=xp.float64)
    d = xg - mean[..., None]
    var = (d * d).mean(axis=2)
    invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
    check_statistics_fit(mean, invstd, xp)
    xhat = (d * invstd[..., None]).astype(x.dtype).reshape(x.shape)
    z = xhat * gamma.reshape(_affine_shape(gamma, x)) + beta.reshape(_affine_shape(beta, x))
    return xp.ascontiguousarray(_act(z, act, slope)), mean.astype(x.dtype), invstd


def check_group_norm_grad(dy: Array, x: Array, y: Array, gamma: Array, mean: Array, invstd: Array, groups: int,
                          xp: Any = np, finite: bool = True) -> int:
    """The arguments of :func:`group_norm_backward` fit together (``finite`` as in
    :func:`check_group_norm`); returns ``groups``."""
    groups = check_group_norm(x, gamma, gamma, groups, xp, finite)
    for name, a in (("dy", dy), ("y", y)):
        C.check_array(name, a, ndim=x.ndim, dtypes=FLOATS, xp=xp)
        C.check_shape(name, a, tuple(x.shape))
    for name, a in (("mean", mean), ("invstd", invstd)):
        C.check_array(name, a, ndim=2, dtypes=FLOATS, xp=xp)
        C.check_shape(name, a, (x.shape[0], groups))
    C.check_same_dtype(dy=dy, x=x, y=y, gamma=gamma, mean=mean, invstd=invstd)
    return groups


def group_norm_backward(
    dy: Array, x: Array, y: Array, gamma: Array, mean: Array, invstd: Array, groups: int, act: str = "identity",
    slope: float = 0.2, xp: Any = np,
) -> tuple[Array, Array, Array]:
    """``(dx, dgamma, dbeta)`` of :func:`group_norm_forward` (dgamma and dbeta shaped as gamma)."""
    act, slope = C.check_activation(act, slope)
    groups = check_group_norm_grad(dy, x, y, gamma, mean, invstd, groups, xp)
    n, c = x.shape[:2]
    dz = _act_grad(dy, y, act, slope)
    xg = x.reshape(n, groups, x.size // max(n * groups, 1))
    xhat_g = (xg - mean[..., None]) * invstd[..., None]
    xhat = xhat_g.reshape(x.shape)
    spatial = tuple(range(2, x.ndim))
    per_example_dg = (dz * xhat).sum(axis=spatial) if spatial else dz * xhat
    per_example_db = dz.sum(axis=spatial) if spatial else dz
    if gamma.ndim == 1:
        dgamma, dbeta = per_example_dg.sum(axis=0), per_example_db.sum(axis=0)
    else:
        dgamma, dbeta = per_example_dg, per_example_db
    dxhat = (dz * gamma.reshape(_affine_shape(gamma, x))).reshape(n, groups, x.size // max(n * groups, 1))
    m = dxhat.shape[2]
    if m == 0:
        return xp.zeros_like(x), dgamma.astype(x.dtype), dbeta.astype(x.dtype)
    mean_d = dxhat.mean(axis=2, keepdims=True, dtype=xp.float64).astype(x.dtype)
    mean_dx = (dxhat * xhat_g).mean(axis=2, keepdims=True, dtype=xp.float64).astype(x.dtype)
    dx = invstd[..., None] * (dxhat - mean_d - xhat_g * mean_dx)
    return (xp.ascontiguousarray(dx.reshape(x.shape)), xp.ascontiguousarray(dgamma.astype(x.dtype)),
            xp.ascontiguousarray(dbeta.astype(x.dtype)))


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


def check_sgd(lr: Any, momentum: Any) -> tuple[float, float]:
    """SGD's scalars: a learning rate >= 0 and a momentum in [0, 1]."""
    return C.check_real("lr", lr, 0.0), C.check_real("momentum", momentum, 0.0, 1.0)


def check_adam(lr: Any, beta1: Any, beta2: Any, eps: Any, step: Any) -> tuple[float, float, float, float, int]:
    """Adam's scalars: lr >= 0, betas in [0, 1), eps > 0, step >= 1."""
    return (C.check_real("lr", lr, 0.0), C.check_real("beta1", beta1, 0.0, 1.0, high_open=True),
            C.check_real("beta2", beta2, 0.0, 1.0, high_open=True), C.check_real("eps", eps, 0.0, low_open=True),
            C.check_int("step", step, 1))


def check_rmsprop(lr: Any, alpha: Any, eps: Any) -> tuple[float, float, float]:
    """RMSprop's scalars: lr >= 0, alpha in [0, 1], eps > 0."""
    return C.check_real("lr", lr, 0.0), C.check_real("alpha", alpha, 0.0, 1.0), C.check_real("eps", eps, 0.0, low_open=True)


def sgd_update(param: Array, grad: Array, velocity: Array, lr: float, momentum: float) -> None:
    """Classical momentum: ``v = momentum * v - lr * g``; ``p += v``."""
    check_flat_buffers(param=param, grad=grad, velocity=velocity)
    lr, momentum = check_sgd(lr, momentum)
    t = param.dtype.type
    velocity *= t(momentum)
    velocity -= t(lr) * grad
    param += velocity


def adam_update(
    param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float, beta2: float, eps: float, step: int
) -> None:
    """Adam with bias correction; ``step`` counts from 1."""
    check_flat_buffers(param=param, grad=grad, m=m, v=v)
    lr, beta1, beta2, eps, step = check_adam(lr, beta1, beta2, eps, step)
    t = param.dtype.type
    m *= t(beta1)
    m += t(1 - beta1) * grad
    v *= t(beta2)
    v += t(1 - beta2) * grad * grad
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    param -= t(lr / bc1) * m / (np.sqrt(v) * t(1 / np.sqrt(bc2)) + t(eps))


def rmsprop_update(param: Array, grad: Array, sq: Array, lr: float, alpha: float, eps: float) -> None:
    """RMSprop (Tieleman & Hinton 2012): ``sq = alpha * sq + (1 - alpha) * g^2``;
    ``p -= lr * g / (sqrt(sq) + eps)``."""
    check_flat_buffers(param=param, grad=grad, sq=sq)
    lr, alpha, eps = check_rmsprop(lr, alpha, eps)
    t = param.dtype.type
    sq *= t(alpha)
    sq += t(1 - alpha) * grad * grad
    param -= t(lr) * grad / (np.sqrt(sq) + t(eps))


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
