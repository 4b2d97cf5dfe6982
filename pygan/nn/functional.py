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


def flatten(x: Any) -> Tensor:
    """``(N, ...) -> (N, prod(...))``."""
    x = as_tensor(x)
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
