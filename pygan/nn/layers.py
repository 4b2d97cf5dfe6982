"""Layers: forward-only modules over ``pygan.nn.functional`` (the active backend's fused ops on
the tape). Weight initialisation happens on the host with a seeded NumPy generator
so that every backend starts from the same numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import _checks as C
from ..backend import get_backend
from . import functional as F
from ..autograd import Tensor, as_tensor, no_grad
from .module import Module, Parameter, make_rng, to_backend

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


class _Weighted(Module):
    """A layer with a weight ``w`` that :func:`spectral_norm` can reparametrise."""

    #: the axis of ``w`` that indexes output units
    out_axis = 0
    w: Parameter

    def weight(self) -> Tensor:
        """The weight the layer computes with: ``w``, or ``w / sigma(w)`` under spectral norm."""
        if "sn_u" not in self._buffers:
            return self.w
        return F.spectral_normalize(self.w, self.sn_u, self.out_axis)


#: power iterations that give a fresh ``sn_u`` its first estimate
SPECTRAL_NORM_WARMUP = 15


def spectral_norm(module: Module, seed: Seed = None) -> Module:
    """Spectral normalisation (Miyato et al. 2018) of every Dense, Conv2d and ConvTranspose2d in
    ``module``, in place: each computes with ``w / sigma(w)``, sigma the largest singular value of
    ``w`` as estimated by a vector ``sn_u`` (a buffer, so it is checkpointed) that starts from
    ``SPECTRAL_NORM_WARMUP`` power iterations and takes one more after every optimizer step
    (:func:`refresh_spectral_norm`, which ``pygan.GAN`` calls). Returns ``module``."""
    rng = make_rng(seed)
    for m in module.modules():
        if isinstance(m, _Weighted) and "sn_u" not in m._buffers:
            u = rng.normal(size=m.w.data.shape[m.out_axis])
            m.register_buffer("sn_u", to_backend((u / np.linalg.norm(u)).astype(m.w.data.dtype)))
            F.power_iteration(m.w.data, m.sn_u, m.out_axis, SPECTRAL_NORM_WARMUP)
    return module


def refresh_spectral_norm(module: Module) -> None:
    """One power iteration for every spectrally normalised layer of ``module`` (after its weights
    changed: an optimizer step)."""
    for m in module.modules():
        if isinstance(m, _Weighted) and "sn_u" in m._buffers:
            F.power_iteration(m.w.data, m.sn_u, m.out_axis)


class Dense(_Weighted):
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
        self.w = Parameter(to_backend(w))
        self.b = Parameter(to_backend(np.zeros(out_features, dtype=dtype))) if bias else None

    out_axis = 1

    def forward(self, x: Any) -> Tensor:
        return F.Dense.apply(x, self.weight(), self.b, act=self.act, slope=self.slope)  # act checked at construction

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, act={self.act!r}, bias={self.b is not None}"


class Activation(Module):
    """A standalone activation (use the ``act=`` argument of Dense/Conv to fuse it instead)."""

    def __init__(self, act: str, slope: float = 0.2) -> None:
        super().__init__()
        self.act, self.slope = C.check_activation(act, slope)

    def forward(self, x: Any) -> Tensor:
        return F.Activation.apply(x, act=self.act, slope=self.slope)

    def extra_repr(self) -> str:
        return repr(self.act)


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
    """Inverted dropout with drop probability ``p``; the identity in evaluation mode. Each call in
    training mode draws a fresh mask from the layer's own seeded generator (checkpointed).

    ``stream`` (0 unless set: a data-parallel rank) derives that rank's own mask seed from each
    draw, so the ranks' examples get independent masks while the generator stays the same on
    every rank (and in the checkpoint).
    """

    def __init__(self, p: float = 0.5, seed: Seed = None) -> None:
        super().__init__()
        self.p = C.check_prob("p", p, low_open=False, high_open=True)
        self._rng = make_rng(seed)
        self.stream = 0

    def forward(self, x: Any) -> Tensor:
        if not self.training or self.p == 0.0:
            return as_tensor(x)
        seed = int(self._rng.integers(2**63 - 1))
        if self.stream:
            seed = int(np.random.SeedSequence([seed, self.stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        return F.dropout(x, self.p, seed=seed)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Maxout(Module):
    """Maxout (Goodfellow et al. 2013) over groups of ``pieces`` adjacent features."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = C.check_int("pieces", pieces, 1)

    def forward(self, x: Any) -> Tensor:
        return F.maxout(x, self.pieces)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class _Conv(_Weighted):
    """What Conv2d and ConvTranspose2d share: weights, bias, the fused activation."""

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
        self.w = Parameter(to_backend(w))
        self.b = Parameter(to_backend(np.zeros(out_channels, dtype=dtype))) if bias else None
        self.out_axis = 1 if self.transposed else 0

    def forward(self, x: Any) -> Tensor:
        w = self.weight()
        if self.transposed:
            return F.ConvTranspose2d.apply(x, w, self.b, stride=self.stride, padding=self.padding,
                                           output_padding=self.output_padding, act=self.act, slope=self.slope)
        return F.Conv2d.apply(x, w, self.b, stride=self.stride, padding=self.padding, act=self.act,
                              slope=self.slope)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, act={self.act!r}")


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


def _check_eps(eps: Any) -> float:
    if not eps > 0:
        raise ValueError(f"eps: must be > 0, got {eps}")
    return float(eps)


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
        self.eps = _check_eps(eps)
        self.gamma = Parameter(to_backend(np.ones(channels, dtype=dtype)))
        self.beta = Parameter(to_backend(np.zeros(channels, dtype=dtype)))
        self.register_buffer("running_mean", to_backend(np.zeros(channels, dtype=dtype)))
        self.register_buffer("running_var", to_backend(np.ones(channels, dtype=dtype)))

    def forward(self, x: Any) -> Tensor:
        return F.BatchNorm.apply(x, self.gamma, self.beta, self.running_mean, self.running_var,
                                 training=bool(self.training), momentum=self.momentum, eps=self.eps, act=self.act,
                                 slope=self.slope)

    def extra_repr(self) -> str:
        return f"{self.channels}, act={self.act!r}"


class VirtualBatchNorm(Module):
    """Virtual batch normalisation (Salimans et al. 2016).

    Each example is normalised with the statistics of a fixed reference batch joined with that
    example alone, so one example's output does not depend on the rest of its minibatch. A
    ``forward`` with ``recording = True`` (re)computes the reference statistics from the reference
    batch (which is itself normalised by its own statistics); ``pygan.GAN`` runs its fixed reference
    batch of z through the generator that way before every generator forward. The reference
    statistics are constants to the tape; the example's own share of the statistics is
    differentiated exactly (it is written with tensor ops).
    """

    def __init__(
        self, channels: int, act: str = "identity", slope: float = 0.2, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        super().__init__()
        self.channels = C.check_int("channels", channels, 1)
        self.act, self.slope = C.check_activation(act, slope)
        self.eps = _check_eps(eps)
        self.gamma = Parameter(to_backend(np.ones(channels, dtype=dtype)))
        self.beta = Parameter(to_backend(np.zeros(channels, dtype=dtype)))
        self.register_buffer("ref_sum", to_backend(np.zeros(channels, dtype=dtype)))
        self.register_buffer("ref_sqsum", to_backend(np.zeros(channels, dtype=dtype)))
        self.register_buffer("ref_count", to_backend(np.zeros(1, dtype=dtype)))
        self.recording = False

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        C.check_array("x", x.data, ndim=(2, 4), dtypes=(np.dtype(np.float32), np.dtype(np.float64)))
        if x.shape[1] != self.channels:
            raise ValueError(f"x: expected {self.channels} channels, got shape {x.shape}")
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        per_example = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if self.recording:
            with no_grad():
                xd = x.data
                self.ref_sum[...] = xd.sum(axis=axes)
                self.ref_sqsum[...] = (xd * xd).sum(axis=axes)
                self.ref_count[...] = x.shape[0] * per_example
                count = self.ref_count[0]
                mean: Any = (self.ref_sum / count).reshape(shape)
                var: Any = get_backend().xp.maximum(self.ref_sqsum.reshape(shape) / count - mean * mean, 0)
                x = x.detach()
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
            mean = (s + self.ref_sum) / total
            var = F.relu((q + self.ref_sqsum) / total - mean * mean)
            if x.ndim == 4:
                mean = mean.reshape(x.shape[0], self.channels, 1, 1)
                var = var.reshape(x.shape[0], self.channels, 1, 1)
        xhat = (x - mean) * (1 / (var + self.eps) ** 0.5)
        z = xhat * self.gamma.reshape(shape) + self.beta.reshape(shape)
        return F.activation(z, self.act, self.slope)

    def extra_repr(self) -> str:
        return f"{self.channels}, act={self.act!r}"


class Reshape(Module):
    """Reshape each example: ``(N, ...) -> (N, *shape)``."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = tuple(C.check_int(f"shape[{i}]", s, 1) for i, s in enumerate(shape))

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if int(np.prod(x.shape[1:])) != int(np.prod(self.shape)):
            raise ValueError(f"x: cannot reshape examples of shape {x.shape[1:]} to {self.shape}")
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return ", ".join(str(s) for s in self.shape)


class Flatten(Module):
    """``(N, C, H, W) -> (N, C*H*W)``."""

    def forward(self, x: Any) -> Tensor:
        return F.flatten(x)


class MinibatchStd(Module):
    """The minibatch standard deviation of progressive GANs (Karras et al. 2018), which StyleGAN's
    discriminator keeps: ``(N, C, H, W) -> (N, C + 1, H, W)``, the extra channel holding, for every
    example, the mean over features of each feature's standard deviation over the batch (one
    statistic for the whole batch, as in the 2018 paper; StyleGAN's groups of four are left out).
    A discriminator that sees it can tell a batch of near-copies from a real batch, which pushes a
    collapsing generator apart. Built from tape ops, so it has second derivatives (R1, WGAN-GP)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = _check_eps(eps)

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        if x.ndim != 4:
            raise ValueError(f"x: MinibatchStd takes (N, C, H, W) images, got shape {x.shape}")
        dev = x - x.mean(axis=0, keepdims=True)
        spread = ((dev * dev).mean(axis=0) + self.eps).sqrt().mean()
        plane = get_backend().xp.ones((x.shape[0], 1, *x.shape[2:]), dtype=x.data.dtype)
        return F.concat([x, spread * plane], axis=1)


class Upsample(Module):
    """2x upsampling, ``nearest`` or ``bilinear``."""

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__()
        from ..backend.reference import check_upsample_mode

        self.mode = check_upsample_mode(mode)

    def forward(self, x: Any) -> Tensor:
        return F.upsample2x(x, self.mode)

    def extra_repr(self) -> str:
        return repr(self.mode)


class AvgPool2d(Module):
    """Average pooling over k x k windows with stride k (downsampling by k)."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.k = C.check_int("k", k, 1)

    def forward(self, x: Any) -> Tensor:
        return F.avg_pool2d(x, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k}"


class PixelShuffle(Module):
    """Sub-pixel convolution's shuffle: ``(N, C r^2, H, W) -> (N, C, rH, rW)``."""

    def __init__(self, r: int = 2) -> None:
        super().__init__()
        self.r = C.check_int("r", r, 1)

    def forward(self, x: Any) -> Tensor:
        return F.pixel_shuffle(x, self.r)

    def extra_repr(self) -> str:
        return f"r={self.r}"


class ReflectionPad2d(Module):
    """Mirror padding of H and W by ``padding`` on each side."""

    def __init__(self, padding: int = 1) -> None:
        super().__init__()
        self.padding = C.check_int("padding", padding, 0)

    def forward(self, x: Any) -> Tensor:
        return F.reflection_pad2d(x, self.padding)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class GroupNorm(Module):
    """Group norm with a per-channel affine and a fused activation; ``groups = channels`` is
    instance norm, ``groups = 1`` layer norm. Training and evaluation compute the same."""

    def __init__(self, groups: int, channels: int, act: str = "identity", slope: float = 0.2, eps: float = 1e-5,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.groups = C.check_int("groups", groups, 1)
        self.channels = C.check_int("channels", channels, 1)
        if channels % groups:
            raise ValueError(f"groups: {groups} groups do not divide {channels} channels")
        self.act, self.slope = C.check_activation(act, slope)
        self.eps = _check_eps(eps)
        self.gamma = Parameter(to_backend(np.ones(channels, dtype=dtype)))
        self.beta = Parameter(to_backend(np.zeros(channels, dtype=dtype)))

    def forward(self, x: Any) -> Tensor:
        return F.GroupNorm.apply(x, self.gamma, self.beta, groups=self.groups, eps=self.eps, act=self.act,
                                 slope=self.slope)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, {self.channels}, act={self.act!r}"


class InstanceNorm(GroupNorm):
    """Instance norm (Ulyanov et al. 2016) with a per-channel affine and a fused activation."""

    def __init__(self, channels: int, act: str = "identity", slope: float = 0.2, eps: float = 1e-5,
                 dtype: Any = np.float32) -> None:
        super().__init__(channels, channels, act, slope, eps, dtype)


class LayerNorm(GroupNorm):
    """Layer norm over each example's (C, H, W) with a per-channel affine and a fused activation."""

    def __init__(self, channels: int, act: str = "identity", slope: float = 0.2, eps: float = 1e-5,
                 dtype: Any = np.float32) -> None:
        super().__init__(1, channels, act, slope, eps, dtype)
