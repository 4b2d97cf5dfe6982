"""StyleGAN's generator (Karras et al. 2019) at MNIST scale.

A mapping network turns z (pixel-normalised) into a style w; the synthesis network starts from a
learned 4x4 constant and doubles the side up to the image size, two 3x3 convolutions per
resolution (the first after a bilinear 2x upsampling, none at 4x4 for the first layer), each
followed by a per-pixel noise input scaled per channel, leaky ReLU, and adaptive instance norm
whose scale and shift come from w through a learned affine map; a 1x1 convolution writes the image.

- **Noise inputs** are part of the latent vector (z, a second z for style mixing, then one noise
  plane per layer), so a seeded draw fixes a sample completely and ``pygan.GAN`` draws them.
- **Style mixing regularisation**: in training mode, with probability ``mixing`` (0.9), the layers
  from a random crossover point on take the style of the second z (the generator's own seeded
  generator, which checkpoints keep, picks both).
- **Truncation**: training mode tracks the mean style ``w_avg`` (a buffer); in evaluation mode
  ``truncation = psi < 1`` pulls every style towards it: ``w_avg + psi (w - w_avg)``.

The mapping network takes the paper's learning-rate multiplier 0.01 and He's gain (:class:`MappingDense`);
the discriminator (``pygan.models``) ends with the minibatch standard deviation. Left out at this
scale: the equalised learning rate of the synthesis network and the blur in up/downsampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .autograd import Tensor, as_tensor, no_grad
from .backend import _checks as C
from .nn import Conv2d, Dense, Module, Parameter, Sequential
from .nn import functional as F
from .nn.layers import Seed
from .nn.module import make_rng, to_backend

#: the constant's side
START = 4


def widths(size: int) -> list[int]:
    """Channels per resolution from 4x4 up to ``size``: ``min(128, 1024 / side)``, i.e. 128, 128,
    64, 32 for 32x32."""
    size = C.check_int("size", size, 8)
    if size & (size - 1):
        raise ValueError(f"size: the StyleGAN generator builds power-of-two sides >= 8, got {size}")
    sides = [START * 2**k for k in range(size.bit_length() - 2)]
    return [min(128, 1024 // s) for s in sides]


#: the mapping network's learning-rate multiplier (the paper's 0.01)
MAPPING_LR = 0.01


class MappingDense(Module):
    """A mapping-network layer with the paper's learning-rate multiplier: the stored weights are
    N(0, 1 / MAPPING_LR) and the layer computes with ``w * MAPPING_LR * sqrt(2 / fan_in)`` (He's
    gain for the leaky ReLU that follows, as the paper's code has it) and ``b * MAPPING_LR``, so each
    Adam step moves the effective weights ``MAPPING_LR`` times as far (equalised learning rate,
    Karras et al. 2018, restricted to the mapping network). With a gain of 1 instead, each layer
    halves the variance of w across latents, and four layers leave styles that hardly depend on z."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.w = Parameter(to_backend((rng.standard_normal((in_features, out_features)) / MAPPING_LR).astype(np.float32)))
        self.b = Parameter(to_backend(np.zeros(out_features, np.float32)))
        self.scale = float(MAPPING_LR * np.sqrt(2.0 / in_features))

    def forward(self, x: Any) -> Tensor:
        return F.dense(x, self.w * self.scale, self.b * MAPPING_LR, act="leaky_relu")


class StyleLayer(Module):
    """[upsample 2x] -> [3x3 conv] -> + noise * per-channel scale -> leaky ReLU -> AdaIN(w)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool, conv: bool,
                 rng: np.random.Generator) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = Conv2d(in_channels, out_channels, 3, 1, 1, seed=rng) if conv else None
        self.noise_scale = Parameter(to_backend(np.zeros((1, out_channels, 1, 1), np.float32)))
        self.style = Dense(w_dim, 2 * out_channels, seed=rng)
        self.style.b.data[:out_channels] = 1.0  # the style's scale starts at 1, its shift at 0
        self.channels = out_channels

    def forward(self, x: Any, w: Any, noise: Any) -> Tensor:
        x = as_tensor(x)
        if self.upsample:
            x = F.upsample2x(x, "bilinear")
        if self.conv is not None:
            x = self.conv(x)
        x = F.leaky_relu(x + noise * self.noise_scale)
        s = self.style(w)
        c = self.channels
        return F.adain(x, s[:, :c], s[:, c:])


class StyleGenerator(Module):
    """The StyleGAN generator for ``size`` x ``size`` single-channel images with outputs in
    [-1, 1] (tanh). ``forward(latent)``: latent ``(N, latent_dim)`` = z, z2 (``z_dim`` each),
    then the layers' noise planes."""

    def __init__(self, size: int = 32, z_dim: int = 64, w_dim: int = 128, mapping_layers: int = 4,
                 channels: int = 1, mixing: float = 0.9, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.size, self.z_dim, self.w_dim = size, C.check_int("z_dim", z_dim, 1), C.check_int("w_dim", w_dim, 1)
        self.mixing = C.check_prob("mixing", mixing, low_open=False, high_open=False)
        chans = widths(size)
        dims = [z_dim] + [w_dim] * C.check_int("mapping_layers", mapping_layers, 1)
        self.mapping = Sequential(*[MappingDense(a, b, rng) for a, b in zip(dims[:-1], dims[1:])])
        self.const = Parameter(to_backend(np.ones((1, chans[0], START, START), np.float32)))
        layers: list[StyleLayer] = []
        self.sides: list[int] = []
        for i, c in enumerate(chans):
            prev = chans[max(i - 1, 0)]
            layers.append(StyleLayer(prev, c, w_dim, upsample=i > 0, conv=i > 0, rng=rng))
            layers.append(StyleLayer(c, c, w_dim, upsample=False, conv=True, rng=rng))
            self.sides += [START * 2**i] * 2
        self.layers = Sequential(*layers)
        self.to_image = Conv2d(chans[-1], channels, 1, act="tanh", seed=rng)
        self.register_buffer("w_avg", to_backend(np.zeros(w_dim, np.float32)))
        #: psi of the truncation trick in evaluation mode (1: none)
        self.truncation = 1.0
        self._rng = make_rng(rng.integers(2**63 - 1))

    @property
    def latent_dim(self) -> int:
        """z, z2 and one noise plane per layer."""
        return 2 * self.z_dim + sum(s * s for s in self.sides)

    def styles(self, z: Any) -> Tensor:
        """w = mapping(pixel-normalised z)."""
        z = as_tensor(z)
        z = z * (1 / ((z * z).mean(axis=1, keepdims=True) + 1e-8) ** 0.5)
        return self.mapping(z)

    def synthesis(self, ws: list[Any], noise: list[Any]) -> Tensor:
        """The image from one style per layer and one noise plane per layer."""
        x: Any = self.const  # (1, C, 4, 4): the first layer's noise broadcasts it over the batch
        for layer, w, nz in zip(self.layers, ws, noise):
            x = layer(x, w, nz)
        return self.to_image(x)

    def split(self, latent: Any) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(z, z2, noise planes)`` of a latent batch."""
        latent = as_tensor(latent)
        n, k = latent.shape[0], self.z_dim
        if latent.ndim != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"latent: expected shape (N, {self.latent_dim}), got {latent.shape}")
        planes, start = [], 2 * k
        for s in self.sides:
            planes.append(latent[:, start : start + s * s].reshape(n, 1, s, s))
            start += s * s
        return latent[:, :k], latent[:, k : 2 * k], planes

    def forward(self, latent: Any) -> Tensor:
        z, z2, noise = self.split(latent)
        w = self.styles(z)
        ws = [w] * len(self.sides)
        if self.training:
            with no_grad():  # the mean style, for the truncation trick
                self.w_avg[...] = w.data.mean(axis=0) + (self.w_avg - w.data.mean(axis=0)) * np.float32(0.995)
            if self._rng.random() < self.mixing:
                cut = int(self._rng.integers(1, len(self.sides)))
                w2 = self.styles(z2)
                ws = [w] * cut + [w2] * (len(self.sides) - cut)
        elif self.truncation != 1.0:
            ws = [self.w_avg + (w - self.w_avg) * float(self.truncation)] * len(self.sides)
        return self.synthesis(ws, noise)

    def mixed(self, latent_a: Any, latent_b: Any, cut: int) -> Tensor:
        """Images whose layers before ``cut`` take the styles of ``latent_a`` and the rest those
        of ``latent_b`` (noise from ``latent_b``): the style-mixing picture's cells."""
        cut = C.check_int("cut", cut, 0)
        za = self.split(latent_a)[0]
        zb, _, noise = self.split(latent_b)
        wa, wb = self.styles(za), self.styles(zb)
        if self.truncation != 1.0:
            wa, wb = (self.w_avg + (w - self.w_avg) * float(self.truncation) for w in (wa, wb))
        ws = [wa] * min(cut, len(self.sides)) + [wb] * max(len(self.sides) - cut, 0)
        return self.synthesis(ws, noise)
