"""Layers on the op table: each holds its parameters as arrays of the active backend and calls
that backend's fused ops. Weight initialisation happens on the host with a seeded NumPy generator
so that every backend starts from the same numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import _checks as C
from ..backend import get_backend
from .module import Module, Parameter, accumulate, grad_buffers, make_rng, to_backend

Seed = int | np.random.Generator | None


def _init_weight(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, init: str, std: float, dtype: Any
) -> np.ndarray:
    """``uniform``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); ``normal``: N(0, std) (DCGAN uses std 0.02);
    ``irange``: U(-std, std) (pylearn2's ``irange``, as the 2014 paper's models are configured)."""
    if init == "uniform":
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        w = rng.uniform(-bound, bound, size=shape)
    elif init == "normal":
        w = rng.normal(0.0, std, size=shape)
    elif init == "irange":
        w = rng.uniform(-std, std, size=shape)
    else:
        raise ValueError(f"init: unknown initialisation {init!r}; expected 'uniform', 'normal' or 'irange'")
    return w.astype(dtype)


class _WeightBias(Module):
    """A layer with a weight ``w`` and an optional bias ``b`` (Dense, Conv2d, ConvTranspose2d)."""

    w: Parameter
    b: Parameter | None

    def _param_grads(self, need_params: bool) -> dict[str, Any]:
        """The backward op's arguments that make it write w's and b's gradients into their buffers."""
        if not need_params:
            return {}
        buffers, add = grad_buffers(self.w, self.b)
        return {"param_grads": buffers, "accumulate": add}

    def parameters(self) -> list[Parameter]:
        return [self.w] + ([self.b] if self.b is not None else [])


class Dense(_WeightBias):
    """Fully connected layer with a fused activation: ``y = act(x @ w + b)``; w is ``(in, out)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        act: str = "identity",
        slope: float = 0.2,
        bias: bool = True,
        init: str = "uniform",
        std: float = 0.02,
        seed: Seed = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = C.check_int("in_features", in_features, 1)
        self.out_features = C.check_int("out_features", out_features, 1)
        self.act, self.slope = C.check_activation(act, slope)
        rng = make_rng(seed)
        w = _init_weight(rng, (in_features, out_features), in_features, init, std, dtype)
        self.w = Parameter(to_backend(w), "w")
        self.b = Parameter(to_backend(np.zeros(out_features, dtype=dtype)), "b") if bias else None
        self._x: Any = None
        self._y: Any = None

    def forward(self, x: Any) -> Any:
        B = get_backend()
        y = B.dense_forward(x, self.w.data, self.b.data if self.b else None, self.act, self.slope)
        self._x, self._y = x, y
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._y is None:
            raise RuntimeError("Dense.backward called before forward")
        B = get_backend()
        dx, _, _ = B.dense_backward(
            dy, self._x, self.w.data, self._y, self.act, self.slope, need_dx=need_dx, need_params=need_params,
            **self._param_grads(need_params),
        )
        return dx

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, act={self.act!r}, bias={self.b is not None})"


class Activation(Module):
    """A standalone activation (use the ``act=`` argument of Dense/Conv to fuse it instead)."""

    def __init__(self, act: str, slope: float = 0.2) -> None:
        super().__init__()
        self.act, self.slope = C.check_activation(act, slope)
        self._y: Any = None

    def forward(self, x: Any) -> Any:
        self._y = get_backend().activation_forward(x, self.act, self.slope)
        return self._y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        return get_backend().activation_backward(dy, self._y, self.act, self.slope) if need_dx else None

    def __repr__(self) -> str:
        return f"Activation({self.act!r})"


class ReLU(Activation):
    """``max(x, 0)``."""

    def __init__(self) -> None:
        super().__init__("relu")


class LeakyReLU(Activation):
    """``x if x > 0 else slope * x``."""

    def __init__(self, slope: float = 0.2) -> None:
        super().__init__("leaky_relu", slope)


class Tanh(Activation):
    """``tanh(x)``."""

    def __init__(self) -> None:
        super().__init__("tanh")


class Sigmoid(Activation):
    """``1 / (1 + exp(-x))``."""

    def __init__(self) -> None:
        super().__init__("sigmoid")


class Dropout(Module):
    """Inverted dropout with drop probability ``p``; the identity in evaluation mode."""

    def __init__(self, p: float = 0.5, seed: Seed = None) -> None:
        super().__init__()
        self.p = C.check_prob("p", p, low_open=False, high_open=True)
        self._rng = make_rng(seed)
        self._mask: Any = None

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        B = get_backend()
        seed = int(self._rng.integers(2**63 - 1))
        y, self._mask = B.dropout_forward(x, self.p, seed=seed)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if not need_dx:
            return None
        return dy if self._mask is None else get_backend().dropout_backward(dy, self._mask)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Maxout(Module):
    """Maxout (Goodfellow et al. 2013) over groups of ``pieces`` adjacent features."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = C.check_int("pieces", pieces, 1)
        self._index: Any = None

    def forward(self, x: Any) -> Any:
        y, self._index = get_backend().maxout_forward(x, self.pieces)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        return get_backend().maxout_backward(dy, self._index, self.pieces) if need_dx else None

    def __repr__(self) -> str:
        return f"Maxout(pieces={self.pieces})"


class _Conv(_WeightBias):
    """What Conv2d and ConvTranspose2d share: weights, bias, the fused activation, the backward."""

    transposed = False

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, output_padding: int,
        act: str, slope: float, bias: bool, init: str, std: float, seed: Seed, dtype: Any,
    ) -> None:
        super().__init__()
        self.in_channels = C.check_int("in_channels", in_channels, 1)
        self.out_channels = C.check_int("out_channels", out_channels, 1)
        self.kernel_size = k = C.check_int("kernel_size", kernel_size, 1)
        self.stride = C.check_int("stride", stride, 1)
        self.padding = C.check_int("padding", padding, 0)
        self.output_padding = C.check_int("output_padding", output_padding, 0)
        self.act, self.slope = C.check_activation(act, slope)
        shape = (in_channels, out_channels, k, k) if self.transposed else (out_channels, in_channels, k, k)
        w = _init_weight(make_rng(seed), shape, in_channels * k * k, init, std, dtype)
        self.w = Parameter(to_backend(w), "w")
        self.b = Parameter(to_backend(np.zeros(out_channels, dtype=dtype)), "b") if bias else None
        self._x: Any = None
        self._y: Any = None

    def _geometry(self) -> tuple[int, ...]:
        return (self.stride, self.padding, self.output_padding) if self.transposed else (self.stride, self.padding)

    def forward(self, x: Any) -> Any:
        B = get_backend()
        op = B.conv_transpose2d_forward if self.transposed else B.conv2d_forward
        y = op(x, self.w.data, self.b.data if self.b else None, *self._geometry(), self.act, self.slope)
        self._x, self._y = x, y
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._y is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        B = get_backend()
        op = B.conv_transpose2d_backward if self.transposed else B.conv2d_backward
        dx, _, _ = op(dy, self._x, self.w.data, self._y, *self._geometry(), self.act, self.slope,
                      need_dx=need_dx, need_params=need_params, **self._param_grads(need_params))
        return dx

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, k={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, act={self.act!r})"
        )


class Conv2d(_Conv):
    """2-D convolution (NCHW) with a fused activation; w is ``(out_channels, in_channels, k, k)``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        act: str = "identity", slope: float = 0.2, bias: bool = True, init: str = "normal", std: float = 0.02,
        seed: Seed = None, dtype: Any = np.float32,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, 0, act, slope, bias, init, std, seed, dtype)


class ConvTranspose2d(_Conv):
    """Transposed 2-D convolution (the adjoint of Conv2d); w is ``(in_channels, out_channels, k, k)``."""

    transposed = True

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        output_padding: int = 0, act: str = "identity", slope: float = 0.2, bias: bool = True, init: str = "normal",
        std: float = 0.02, seed: Seed = None, dtype: Any = np.float32,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, act, slope, bias,
                         init, std, seed, dtype)


class BatchNorm(Module):
    """Batch normalisation over (N, C) or (N, C, H, W) with a fused activation and running statistics."""

    def __init__(
        self,
        channels: int,
        act: str = "identity",
        slope: float = 0.2,
        momentum: float = 0.1,
        eps: float = 1e-5,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.channels = C.check_int("channels", channels, 1)
        self.act, self.slope = C.check_activation(act, slope)
        self.momentum = C.check_prob("momentum", momentum, low_open=False, high_open=False)
        if not eps > 0:
            raise ValueError(f"eps: must be > 0, got {eps}")
        self.eps = float(eps)
        self.gamma = Parameter(to_backend(np.ones(channels, dtype=dtype)), "gamma")
        self.beta = Parameter(to_backend(np.zeros(channels, dtype=dtype)), "beta")
        self.running_mean = to_backend(np.zeros(channels, dtype=dtype))
        self.running_var = to_backend(np.ones(channels, dtype=dtype))
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        y, mean, invstd = get_backend().batch_norm_forward(
            x, self.gamma.data, self.beta.data, self.running_mean, self.running_var, self.training,
            self.momentum, self.eps, self.act, self.slope,
        )
        self._cache = (x, y, mean, invstd, self.training)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._cache is None:
            raise RuntimeError("BatchNorm.backward called before forward")
        x, y, mean, invstd, training = self._cache
        dx, dgamma, dbeta = get_backend().batch_norm_backward(
            dy, x, y, self.gamma.data, mean, invstd, training, self.act, self.slope
        )
        if need_params:
            accumulate(self.gamma, dgamma)
            accumulate(self.beta, dbeta)
        return dx if need_dx else None

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]

    def buffers(self) -> dict[str, Any]:
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def __repr__(self) -> str:
        return f"BatchNorm({self.channels}, act={self.act!r})"


class VirtualBatchNorm(Module):
    """Virtual batch normalisation (Salimans et al. 2016).

    Each example is normalised with the statistics of a fixed reference batch joined with that
    example alone, so one example's output does not depend on the rest of its minibatch. A
    ``forward`` with ``recording = True`` (re)computes the reference statistics from the reference
    batch (which is itself normalised by its own statistics); ``pygan.GAN`` runs its fixed reference
    batch of z through the generator that way before every generator forward. The reference
    statistics are treated as constants in the backward pass; the example's own share of the
    statistics is differentiated exactly.
    """

    def __init__(
        self, channels: int, act: str = "identity", slope: float = 0.2, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        super().__init__()
        self.channels = C.check_int("channels", channels, 1)
        self.act, self.slope = C.check_activation(act, slope)
        if not eps > 0:
            raise ValueError(f"eps: must be > 0, got {eps}")
        self.eps = float(eps)
        self.gamma = Parameter(to_backend(np.ones(channels, dtype=dtype)), "gamma")
        self.beta = Parameter(to_backend(np.zeros(channels, dtype=dtype)), "beta")
        self.ref_sum = to_backend(np.zeros(channels, dtype=dtype))
        self.ref_sqsum = to_backend(np.zeros(channels, dtype=dtype))
        self.ref_count = to_backend(np.zeros(1, dtype=dtype))
        self.recording = False
        self._cache: Any = None

    def _check(self, x: Any) -> tuple[int, ...]:
        C.check_array("x", x, ndim=(2, 4), dtypes=(np.dtype(np.float32), np.dtype(np.float64)))
        if x.shape[1] != self.channels:
            raise ValueError(f"x: expected {self.channels} channels, got shape {tuple(x.shape)}")
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def forward(self, x: Any) -> Any:
        xp = get_backend().xp
        axes = self._check(x)
        per_example = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if self.recording:
            self.ref_sum[...] = x.sum(axis=axes)
            self.ref_sqsum[...] = (x * x).sum(axis=axes)
            self.ref_count[...] = x.shape[0] * per_example
            count = self.ref_count[0]
            mean = (self.ref_sum / count).reshape(shape)
            var = xp.maximum(self.ref_sqsum.reshape(shape) / count - mean * mean, 0)
            self._cache = None
        else:
            if not float(self.ref_count[0]) > 0:
                raise RuntimeError(
                    "VirtualBatchNorm: no reference statistics yet; run the reference batch through it once with "
                    "recording = True (pygan.GAN does this before every generator forward)"
                )
            inner = tuple(a for a in axes if a != 0)
            s = x.sum(axis=inner) if inner else x
            q = (x * x).sum(axis=inner) if inner else x * x
            total = self.ref_count[0] + per_example
            mean = (self.ref_sum + s) / total
            var = xp.maximum((self.ref_sqsum + q) / total - mean * mean, 0)
            if x.ndim == 4:
                mean, var = mean[:, :, None, None], var[:, :, None, None]
        invstd = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        xhat = (x - mean) * invstd
        z = xhat * self.gamma.data.reshape(shape) + self.beta.data.reshape(shape)
        y = get_backend().activation_forward(xp.ascontiguousarray(z), self.act, self.slope)
        if not self.recording:
            self._cache = (xhat, invstd, y, total, axes)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._cache is None:
            raise RuntimeError("VirtualBatchNorm.backward called before a (non-reference) forward")
        xhat, invstd, y, total, axes = self._cache
        dz = get_backend().activation_backward(dy, y, self.act, self.slope)
        if need_params:
            accumulate(self.gamma, (dz * xhat).sum(axis=axes))
            accumulate(self.beta, dz.sum(axis=axes))
        if not need_dx:
            return None
        shape = (1, -1) if dz.ndim == 2 else (1, -1, 1, 1)
        g = dz * self.gamma.data.reshape(shape)
        inner = tuple(a for a in axes if a != 0)
        sum_g = g.sum(axis=inner, keepdims=True) if inner else g
        sum_gx = (g * xhat).sum(axis=inner, keepdims=True) if inner else g * xhat
        return invstd * (g - (sum_g + xhat * sum_gx) / total)

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta]

    def buffers(self) -> dict[str, Any]:
        return {"ref_sum": self.ref_sum, "ref_sqsum": self.ref_sqsum, "ref_count": self.ref_count}

    def __repr__(self) -> str:
        return f"VirtualBatchNorm({self.channels}, act={self.act!r})"


class Reshape(Module):
    """Reshape each example: ``(N, ...) -> (N, *shape)``."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = tuple(C.check_int(f"shape[{i}]", s, 1) for i, s in enumerate(shape))
        self._in_shape: tuple[int, ...] | None = None

    def forward(self, x: Any) -> Any:
        n = x.shape[0]
        if int(np.prod(x.shape[1:])) != int(np.prod(self.shape)):
            raise ValueError(f"x: cannot reshape examples of shape {tuple(x.shape[1:])} to {self.shape}")
        self._in_shape = tuple(x.shape)
        return get_backend().xp.ascontiguousarray(x).reshape((n, *self.shape))

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._in_shape is None:
            raise RuntimeError("Reshape.backward called before forward")
        return dy.reshape(self._in_shape) if need_dx else None

    def __repr__(self) -> str:
        return f"Reshape{self.shape}"


class Flatten(Module):
    """``(N, C, H, W) -> (N, C*H*W)``."""

    def __init__(self) -> None:
        super().__init__()
        self._in_shape: tuple[int, ...] | None = None

    def forward(self, x: Any) -> Any:
        self._in_shape = tuple(x.shape)
        return get_backend().xp.ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._in_shape is None:
            raise RuntimeError("Flatten.backward called before forward")
        return dy.reshape(self._in_shape) if need_dx else None

    def __repr__(self) -> str:
        return "Flatten()"
