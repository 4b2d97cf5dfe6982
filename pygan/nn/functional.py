"""The ops as functions on tensors: each call runs the active backend's fused forward op and, when an
input requires a gradient, records a node whose backward is the op table's fused backward op.

Every function takes Tensors or plain arrays of the active backend and returns a Tensor. Double
backward (``create_graph=True``) is supported by every op here except ``batch_norm``, which raises
an error naming itself.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..autograd import WRITTEN, Function, Parameter, Tensor, as_tensor, grad_buffers
from ..backend import _checks as C
from ..backend import get_backend


def _act_grad_graph(g: Tensor, y: Tensor, act: str, slope: float) -> Tensor:
    """``g * act'(z)`` written with differentiable ops on the output ``y`` (for double backward)."""
    if act == "identity":
        return g
    if act in ("relu", "leaky_relu"):
        xp = get_backend().xp
        low = 0.0 if act == "relu" else slope
        return g * xp.where(y.data > 0, 1.0, low).astype(y.dtype)
    if act == "tanh":
        return g * (1 - y * y)
    return g * (y * (1 - y))


def _param_sinks(sinks: tuple[Parameter | None, ...], has_b: bool) -> Any:
    """The ``param_grads``/``accumulate`` arguments that make a backward op write the gradients of
    its weight (input 1) and bias (input 2) straight into their Parameters' buffers, or None when
    that cannot be done (some wanted parameter gradient has no buffer to go to). ``sinks`` holds
    a Parameter for each input whose gradient is wanted in its buffer (empty: none is)."""
    if not sinks or sinks[1] is None or (has_b and sinks[2] is None):
        return None
    buffers, add = grad_buffers(sinks[1], sinks[2] if has_b else None)
    return {"param_grads": buffers, "accumulate": add}


class _Layer(Function):
    """What the ops with weights share: x, w, an optional b; the fused activation; a backward that
    writes parameter gradients into their buffers when it can."""

    act = "identity"
    slope = 0.2
    takes_sinks = True

    def _save(self, x: Any, w: Any, y: Any) -> None:
        if self.recording:
            self.x, self.w, self.y = x, w, y

    def _backward(self, op: Any, geometry: tuple[Any, ...], g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        has_b = self.inputs[2] is not None
        need_params = needs[1] or needs[2]
        direct = _param_sinks(sinks, has_b) if need_params else None
        dx, dw, db = op(g, self.x, self.w, self.y, *geometry, self.act, self.slope, need_dx=needs[0],
                        need_params=need_params, **(direct or {}))
        if direct is not None:
            return dx, WRITTEN, WRITTEN if has_b else None
        return dx, dw if needs[1] else None, db if needs[2] else None


class Dense(_Layer):
    """The dense op on the tape (``dense`` checks its arguments and calls it)."""

    name = "dense"

    def forward(self, x: Any, w: Any, b: Any, act: str, slope: float) -> Any:
        self.act, self.slope = act, slope
        y = get_backend().dense_forward(x, w, b, act, slope)
        self._save(x, w, y)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return self._backward(get_backend().dense_backward, (), g, needs, sinks)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        dz = _act_grad_graph(g, self.output_tensor(), self.act, self.slope)
        x, w = self.input_tensor(0), self.input_tensor(1)
        return (dz @ w.T if needs[0] else None, x.T @ dz if needs[1] else None,
                dz.sum(axis=0) if needs[2] else None)


def dense(x: Any, w: Any, b: Any = None, act: str = "identity", slope: float = 0.2) -> Tensor:
    """``act(x @ w + b)`` for x ``(N, in)``, w ``(in, out)``, b ``(out,)`` or None."""
    act, slope = C.check_activation(act, slope)
    return Dense.apply(x, w, b, act=act, slope=slope)


def _wgrad_output_padding(in_size: int, out_size: int, k: int, stride: int, pad: int) -> int:
    """The output padding that makes conv_transpose2d of an ``out_size`` map ``in_size`` long again."""
    return in_size - ((out_size - 1) * stride - 2 * pad + k)


class Conv2d(_Layer):
    """The conv2d op on the tape."""

    name = "conv2d"

    def forward(self, x: Any, w: Any, b: Any, stride: int, padding: int, act: str, slope: float) -> Any:
        self.act, self.slope, self.stride, self.padding = act, slope, stride, padding
        y = get_backend().conv2d_forward(x, w, b, stride, padding, act, slope)
        self._save(x, w, y)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return self._backward(get_backend().conv2d_backward, (self.stride, self.padding), g, needs, sinks)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        dz = _act_grad_graph(g, self.output_tensor(), self.act, self.slope)
        x, w = self.input_tensor(0), self.input_tensor(1)
        k, s, p = w.shape[2], self.stride, self.padding
        dx = dw = None
        if needs[0]:
            op = _wgrad_output_padding(x.shape[2], dz.shape[2], k, s, p)
            op2 = _wgrad_output_padding(x.shape[3], dz.shape[3], w.shape[3], s, p)
            if op != op2:
                raise RuntimeError("conv2d: double backward needs the same output padding on both axes")
            dx = conv_transpose2d(dz, w, None, s, p, op)
        if needs[1]:
            dw = _ConvWeightGrad.apply(x, dz, wshape=tuple(w.shape), stride=s, padding=p)
        return dx, dw, dz.sum(axis=(0, 2, 3)) if needs[2] else None


class _ConvWeightGrad(Function):
    """conv2d's weight gradient as a differentiable op of the image and the output gradient:
    ``dw = corr(image, dout)`` (bilinear; its own gradients are a conv and a transposed conv)."""

    name = "conv2d_weight_grad"

    def forward(self, image: Any, dout: Any, wshape: tuple[int, ...], stride: int, padding: int) -> Any:
        self.wshape, self.stride, self.padding = wshape, stride, padding
        B = get_backend()
        w = B.xp.zeros(wshape, dtype=image.dtype)
        _, dw, _ = B.conv2d_backward(dout, image, w, dout, stride, padding, "identity", need_dx=False, need_params=True)
        return dw

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return tuple(None if t is None else t.data for t in self.backward_graph(Tensor(g), needs))

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        image, dout = self.input_tensor(0), self.input_tensor(1)
        s, p = self.stride, self.padding
        di = dd = None
        if needs[0]:
            op = _wgrad_output_padding(image.shape[2], dout.shape[2], self.wshape[2], s, p)
            di = conv_transpose2d(dout, g, None, s, p, op)
        if needs[1]:
            dd = conv2d(image, g, None, s, p)
        return di, dd


def conv2d(x: Any, w: Any, b: Any = None, stride: int = 1, padding: int = 0, act: str = "identity",
           slope: float = 0.2) -> Tensor:
    """2-D convolution (NCHW) with a fused bias and activation; w is ``(C_out, C_in, k, k)``."""
    act, slope = C.check_activation(act, slope)
    return Conv2d.apply(x, w, b, stride=stride, padding=padding, act=act, slope=slope)


class ConvTranspose2d(_Layer):
    """The conv_transpose2d op on the tape."""

    name = "conv_transpose2d"

    def forward(self, x: Any, w: Any, b: Any, stride: int, padding: int, output_padding: int, act: str,
                slope: float) -> Any:
        self.act, self.slope = act, slope
        self.geometry = (stride, padding, output_padding)
        y = get_backend().conv_transpose2d_forward(x, w, b, stride, padding, output_padding, act, slope)
        self._save(x, w, y)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return self._backward(get_backend().conv_transpose2d_backward, self.geometry, g, needs, sinks)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        dz = _act_grad_graph(g, self.output_tensor(), self.act, self.slope)
        x, w = self.input_tensor(0), self.input_tensor(1)
        s, p, _ = self.geometry
        dx = conv2d(dz, w, None, s, p) if needs[0] else None
        dw = _ConvWeightGrad.apply(dz, x, wshape=tuple(w.shape), stride=s, padding=p) if needs[1] else None
        return dx, dw, dz.sum(axis=(0, 2, 3)) if needs[2] else None


def conv_transpose2d(x: Any, w: Any, b: Any = None, stride: int = 1, padding: int = 0, output_padding: int = 0,
                     act: str = "identity", slope: float = 0.2) -> Tensor:
    """Transposed 2-D convolution (the adjoint of conv2d) with a fused bias and activation; w is
    ``(C_in, C_out, k, k)``."""
    act, slope = C.check_activation(act, slope)
    return ConvTranspose2d.apply(x, w, b, stride=stride, padding=padding, output_padding=output_padding, act=act,
                                  slope=slope)


class BatchNorm(Function):
    """The batch-norm op on the tape (no double backward)."""

    name = "batch_norm"

    def forward(self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool,
                momentum: float, eps: float, act: str, slope: float) -> Any:
        y, mean, invstd = get_backend().batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                                           momentum, eps, act, slope)
        if self.recording:
            self.saved = (x, y, gamma, mean, invstd, training, act, slope)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        x, y, gamma, mean, invstd, training, act, slope = self.saved
        dx, dgamma, dbeta = get_backend().batch_norm_backward(g, x, y, gamma, mean, invstd, training, act, slope)
        return (dx if needs[0] else None, dgamma if needs[1] else None, dbeta if needs[2] else None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        raise RuntimeError("batch_norm: double backward (create_graph=True) is not supported; a critic that "
                           "needs a gradient penalty is built without batch norm (as WGAN-GP prescribes)")


def batch_norm(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5, act: str = "identity", slope: float = 0.2) -> Tensor:
    """Batch norm over (N, C) or (N, C, H, W) then an activation; in training mode the running
    statistics (arrays) are updated in place."""
    act, slope = C.check_activation(act, slope)
    return BatchNorm.apply(x, gamma, beta, running_mean, running_var, training=bool(training), momentum=momentum,
                            eps=eps, act=act, slope=slope)


class Activation(Function):
    """An activation op on the tape."""

    name = "activation"

    def forward(self, x: Any, act: str, slope: float) -> Any:
        y = get_backend().activation_forward(x, act, slope)
        self.act, self.slope = act, slope
        if self.recording:
            self.y = y
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().activation_backward(g, self.y, self.act, self.slope),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (_act_grad_graph(g, self.output_tensor(), self.act, self.slope),)


def activation(x: Any, act: str, slope: float = 0.2) -> Tensor:
    """An activation by name: identity, relu, leaky_relu (``slope``), tanh or sigmoid."""
    act, slope = C.check_activation(act, slope)
    return Activation.apply(x, act=act, slope=slope)


def relu(x: Any) -> Tensor:
    """``max(x, 0)``."""
    return activation(x, "relu")


def leaky_relu(x: Any, slope: float = 0.2) -> Tensor:
    """``x if x > 0 else slope * x``."""
    return activation(x, "leaky_relu", slope)


def tanh(x: Any) -> Tensor:
    """``tanh(x)``."""
    return activation(x, "tanh")


def sigmoid(x: Any) -> Tensor:
    """``1 / (1 + exp(-x))``."""
    return activation(x, "sigmoid")


class _Dropout(Function):
    name = "dropout"

    def forward(self, x: Any, p: float, seed: int | None, mask: Any) -> Any:
        y, self.mask = get_backend().dropout_forward(x, p, mask=mask, seed=seed)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().dropout_backward(g, self.mask),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g * self.mask,)


def dropout(x: Any, p: float = 0.5, seed: int | None = None, training: bool = True, mask: Any = None) -> Tensor:
    """Inverted dropout with drop probability ``p`` (the identity when not ``training`` or p = 0);
    ``seed`` fixes the draw, ``mask`` reuses one."""
    p = C.check_prob("p", p, low_open=False, high_open=True)
    if not training or (p == 0.0 and mask is None):
        return as_tensor(x)
    return _Dropout.apply(x, p=p, seed=seed, mask=mask)


class _Maxout(Function):
    name = "maxout"

    def forward(self, x: Any, pieces: int) -> Any:
        y, self.index = get_backend().maxout_forward(x, pieces)
        self.pieces = pieces
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().maxout_backward(g, self.index, self.pieces),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (_MaxoutRoute.apply(g, index=self.index, pieces=self.pieces),)


class _MaxoutRoute(Function):
    """Maxout's backward as an op: each unit's gradient goes to its winning piece (linear in g;
    its gradient picks the winners' entries)."""

    name = "maxout_backward"

    def forward(self, g: Any, index: Any, pieces: int) -> Any:
        self.index, self.pieces = index, pieces
        return get_backend().maxout_backward(g, index, pieces)

    def backward(self, gg: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        n, u = self.index.shape
        picked = xp.take_along_axis(gg.reshape(n, u, self.pieces), self.index[..., None].astype(xp.intp), axis=2)
        return (xp.ascontiguousarray(picked[..., 0]),)

    def backward_graph(self, gg: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (_MaxoutPick.apply(gg, index=self.index, pieces=self.pieces),)


class _MaxoutPick(Function):
    """The winners' entries of a ``(N, U * pieces)`` array (the adjoint of ``_MaxoutRoute``)."""

    name = "maxout_pick"

    def forward(self, a: Any, index: Any, pieces: int) -> Any:
        self.index, self.pieces = index, pieces
        xp = get_backend().xp
        n, u = index.shape
        return xp.ascontiguousarray(
            xp.take_along_axis(a.reshape(n, u, pieces), index[..., None].astype(xp.intp), axis=2)[..., 0])

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().maxout_backward(g, self.index, self.pieces),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (_MaxoutRoute.apply(g, index=self.index, pieces=self.pieces),)


def maxout(x: Any, pieces: int) -> Tensor:
    """Maxout (Goodfellow et al. 2013) over groups of ``pieces`` adjacent features."""
    return _Maxout.apply(x, pieces=C.check_int("pieces", pieces, 1))


class _Concat(Function):
    name = "concat"

    def forward(self, *arrays: Any, axis: int) -> Any:
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return get_backend().xp.concatenate(arrays, axis=axis)

    def _pieces(self, g: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        out, start = [], 0
        for n, size in zip(needs, self.sizes):
            index = (slice(None),) * (self.axis % g.ndim) + (slice(start, start + size),)
            out.append(g[index] if n else None)
            start += size
        return tuple(out)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        return tuple(None if p is None else xp.ascontiguousarray(p) for p in self._pieces(g, needs))

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return self._pieces(g, needs)


def concat(tensors: Sequence[Any], axis: int = 1) -> Tensor:
    """Join tensors along ``axis`` (the other sizes must agree)."""
    items = list(tensors)
    if not items:
        raise ValueError("tensors: concat needs at least one tensor")
    shapes = [tuple(t.shape) for t in items]
    nd = len(shapes[0])
    if any(len(s) != nd for s in shapes) or not -nd <= axis < nd:
        raise ValueError(f"tensors: cannot join shapes {shapes} along axis {axis}")
    ax = axis % nd
    if any(s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:] for s in shapes):
        raise ValueError(f"tensors: shapes {shapes} differ off axis {axis}")
    return _Concat.apply(*items, axis=ax)


class _Softplus(Function):
    name = "softplus"

    def forward(self, x: Any) -> Any:
        xp = get_backend().xp
        if self.recording:
            self.x = x
        return xp.logaddexp(x.dtype.type(0), x)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g * get_backend().activation_forward(get_backend().xp.ascontiguousarray(self.x), "sigmoid"),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g * sigmoid(self.input_tensor(0)),)


def softplus(x: Any) -> Tensor:
    """``log(1 + exp(x))``, finite for every finite x (its gradient is the sigmoid)."""
    return _Softplus.apply(x)


def binary_cross_entropy_with_logits(logits: Any, targets: Any) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1]:
    ``softplus(l) - l * t`` (finite for any finite logit)."""
    from ..losses import bce_with_logits

    return bce_with_logits(logits, targets)


def mse_loss(a: Any, b: Any) -> Tensor:
    """Mean squared difference."""
    d = as_tensor(a) - b
    return (d * d).mean()


def l1_loss(a: Any, b: Any) -> Tensor:
    """Mean absolute difference."""
    return (as_tensor(a) - b).abs().mean()


def _unit(xp: Any, a: Any, eps: float = 1e-12) -> Any:
    return a / (xp.sqrt((a * a).sum()) + a.dtype.type(eps))


def _as_matrix(w: Any, out_axis: int) -> tuple[Any, Any]:
    """``w`` moved so its output axis leads, and that as an ``(out, rest)`` matrix."""
    moved = get_backend().xp.moveaxis(w, out_axis, 0)
    return moved, moved.reshape(moved.shape[0], -1)


def _check_u(w: Any, u: Any, out_axis: int) -> None:
    if not -w.ndim <= out_axis < w.ndim:
        raise ValueError(f"out_axis: {out_axis} is not an axis of a weight of shape {tuple(w.shape)}")
    if tuple(u.shape) != (w.shape[out_axis],) or u.dtype != w.dtype:
        raise ValueError(f"u: expected a {w.dtype} vector of shape ({w.shape[out_axis]},) for a weight of shape "
                         f"{tuple(w.shape)}, got {u.dtype} {tuple(u.shape)}")


def power_iteration(w: Any, u: Any, out_axis: int = 0, steps: int = 1) -> None:
    """``steps`` power iterations on ``u`` (in place), the running left singular vector of ``w``
    (an array) viewed as an ``(out, rest)`` matrix along ``out_axis``."""
    _check_u(w, u, out_axis)
    xp = get_backend().xp
    _, mat = _as_matrix(w, out_axis)
    for _ in range(C.check_int("steps", steps, 1)):
        u[...] = _unit(xp, mat @ _unit(xp, mat.T @ u))


def spectral_normalize(w: Any, u: Any, out_axis: int = 0) -> Tensor:
    """``w / sigma``, ``sigma = u^T W v`` the largest singular value of ``w`` viewed as an
    ``(out, rest)`` matrix along ``out_axis`` as estimated by the vector ``u`` (``(out,)``, an
    array; :func:`power_iteration` refines it) and ``v = W^T u / |W^T u|`` (Miyato et al. 2018).
    The vectors are constants to the tape; sigma is differentiated (twice, too)."""
    w = as_tensor(w)
    _check_u(w.data, u, out_axis)
    xp = get_backend().xp
    moved, mat = _as_matrix(w.data, out_axis)
    v = _unit(xp, mat.T @ u)
    uv = xp.moveaxis((u[:, None] * v[None, :]).reshape(moved.shape), 0, out_axis)
    return w / (w * xp.ascontiguousarray(uv)).sum()


def flatten(x: Any) -> Tensor:
    """``(N, ...) -> (N, prod(...))``."""
    x = as_tensor(x)
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))


# ---------------------------------------------------------------------------------------------
# resampling and padding: linear ops whose backward is their adjoint op (and whose double
# backward is the forward op again)
# ---------------------------------------------------------------------------------------------
class _LinearMap:
    """A linear op of the table as a pair of calls: ``forward`` and its adjoint (``adjoint``)."""

    def __init__(self, name: str, forward: Any, adjoint: Any) -> None:
        self.name, self.forward, self.adjoint = name, forward, adjoint

    def transposed(self) -> "_LinearMap":
        """The adjoint as a linear map (whose adjoint is this one)."""
        return _LinearMap(self.name + "_adjoint", self.adjoint, self.forward)


class _Linear(Function):
    name = "linear_map"

    def forward(self, x: Any, op: _LinearMap) -> Any:
        self.op, self.name = op, op.name
        return op.forward(x)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (self.op.adjoint(g),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (_Linear.apply(g, op=self.op.transposed()),)


def _image(name: str, x: Any) -> Tensor:
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an (N, C, H, W) tensor, got shape {x.shape}")
    return x


def upsample2x(x: Any, mode: str = "nearest") -> Tensor:
    """``(N, C, H, W) -> (N, C, 2H, 2W)``: ``nearest`` or ``bilinear`` (half-pixel centres, edges
    clamped, as PyTorch's ``align_corners=False``)."""
    from ..backend.reference import check_upsample_mode

    check_upsample_mode(mode)
    op = _LinearMap("upsample2x", lambda a: get_backend().upsample2x_forward(a, mode),
                    lambda g: get_backend().upsample2x_backward(g, mode))
    return _Linear.apply(_image("x", x), op=op)


def avg_pool2d(x: Any, k: int = 2) -> Tensor:
    """Average pooling over k x k windows, stride k: ``(N, C, H, W) -> (N, C, H // k, W // k)``."""
    x = _image("x", x)
    k = C.check_int("k", k, 1)
    h, w = x.shape[2], x.shape[3]
    op = _LinearMap("avg_pool2d", lambda a: get_backend().avg_pool2d_forward(a, k),
                    lambda g: get_backend().avg_pool2d_backward(g, k, h, w))
    return _Linear.apply(x, op=op)


def pixel_shuffle(x: Any, r: int = 2) -> Tensor:
    """Sub-pixel convolution's shuffle (Shi et al. 2016): ``(N, C r^2, H, W) -> (N, C, rH, rW)``."""
    r = C.check_int("r", r, 1)
    op = _LinearMap("pixel_shuffle", lambda a: get_backend().pixel_shuffle_forward(a, r),
                    lambda g: get_backend().pixel_shuffle_backward(g, r))
    return _Linear.apply(_image("x", x), op=op)


def reflection_pad2d(x: Any, padding: int = 1) -> Tensor:
    """Mirror-pad H and W by ``padding`` (< H, W) on each side, the edge pixel not repeated."""
    p = C.check_int("padding", padding, 0)
    op = _LinearMap("reflection_pad2d", lambda a: get_backend().reflection_pad2d_forward(a, p),
                    lambda g: get_backend().reflection_pad2d_backward(g, p))
    return _Linear.apply(_image("x", x), op=op)


# ---------------------------------------------------------------------------------------------
# group / instance / layer norm and AdaIN (one op; double backward supported)
# ---------------------------------------------------------------------------------------------
class GroupNorm(Function):
    """The group-norm op on the tape."""

    name = "group_norm"

    def forward(self, x: Any, gamma: Any, beta: Any, groups: int, eps: float, act: str, slope: float) -> Any:
        y, mean, invstd = get_backend().group_norm_forward(x, gamma, beta, groups, eps, act, slope)
        self.groups, self.eps, self.act, self.slope = groups, eps, act, slope
        if self.recording:
            self.saved = (x, y, gamma, mean, invstd)
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        x, y, gamma, mean, invstd = self.saved
        dx, dgamma, dbeta = get_backend().group_norm_backward(g, x, y, gamma, mean, invstd, self.groups, self.act,
                                                              self.slope)
        return (dx if needs[0] else None, dgamma if needs[1] else None, dbeta if needs[2] else None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        x, gamma = self.input_tensor(0), self.input_tensor(1)
        dz = _act_grad_graph(g, self.output_tensor(), self.act, self.slope)
        n, groups = x.shape[0], self.groups
        xg = x.reshape(n, groups, -1)
        d = xg - xg.mean(axis=2, keepdims=True)
        r = ((d * d).mean(axis=2, keepdims=True) + self.eps) ** -0.5
        xhat_g = d * r
        xhat = xhat_g.reshape(*x.shape)
        spatial = tuple(range(2, x.ndim))
        lead = (1, x.shape[1]) if gamma.ndim == 1 else (n, x.shape[1])
        over = ((0,) if gamma.ndim == 1 else ()) + spatial

        def reduce(t: Tensor) -> Tensor:
            return t.sum(axis=over) if over else t

        dgamma = reduce(dz * xhat) if needs[1] else None
        dbeta = reduce(dz) if needs[2] else None
        dx = None
        if needs[0]:
            dxhat = (dz * gamma.reshape(*lead, *(1,) * len(spatial))).reshape(n, groups, -1)
            dx = (r * (dxhat - dxhat.mean(axis=2, keepdims=True)
                       - xhat_g * (dxhat * xhat_g).mean(axis=2, keepdims=True))).reshape(*x.shape)
        return dx, dgamma, dbeta


def group_norm(x: Any, groups: int, gamma: Any, beta: Any, eps: float = 1e-5, act: str = "identity",
               slope: float = 0.2) -> Tensor:
    """Group norm (Wu & He 2018) over ``(N, C)`` or ``(N, C, H, W)`` then ``act``: each example's
    channels in ``groups`` groups, each group normalised by its own statistics, then the affine
    ``gamma``, ``beta`` (``(C,)``, or ``(N, C)`` per example). No running statistics."""
    act, slope = C.check_activation(act, slope)
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps: must be a number > 0, got {eps!r}")
    return GroupNorm.apply(x, gamma, beta, groups=C.check_int("groups", groups, 1), eps=float(eps), act=act,
                           slope=slope)


def instance_norm(x: Any, gamma: Any, beta: Any, eps: float = 1e-5, act: str = "identity", slope: float = 0.2) -> Tensor:
    """Instance norm (Ulyanov et al. 2016): each example's each channel normalised on its own."""
    return group_norm(x, as_tensor(x).shape[1], gamma, beta, eps, act, slope)


def layer_norm(x: Any, gamma: Any, beta: Any, eps: float = 1e-5, act: str = "identity", slope: float = 0.2) -> Tensor:
    """Layer norm (Ba et al. 2016) over all of an example's features, per-channel affine (as
    WGAN-GP's critics use in place of batch norm)."""
    return group_norm(x, 1, gamma, beta, eps, act, slope)


def adain(x: Any, scale: Any, shift: Any, eps: float = 1e-5, act: str = "identity", slope: float = 0.2) -> Tensor:
    """Adaptive instance norm (Huang & Belongie 2017; StyleGAN's style injection): instance norm
    whose affine comes per example from ``scale`` and ``shift``, both ``(N, C)``."""
    s = as_tensor(scale)
    if s.ndim != 2:
        raise ValueError(f"scale: expected an (N, C) tensor, got shape {s.shape}")
    return instance_norm(x, s, shift, eps, act, slope)
