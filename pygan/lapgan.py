"""LAPGAN (Denton et al. 2015) at MNIST scale: a Laplacian pyramid 7 -> 14 -> 28.

A GAN draws the 7x7 image; at 14x14 and at 28x28 a conditional GAN draws the band-pass residual
given the 2x (bilinear) upsampling of the coarser image, with its own noise plane as an extra
input channel. Each level trains on the real pyramid (its conditioning is the real coarser image);
sampling chains the levels. The three generators form one module, and the three discriminators
another, so :class:`pygan.GAN` trains them as two players with one optimizer each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import losses
from .autograd import Tensor, as_tensor, no_grad
from .nn import BatchNorm, Conv2d, Dense, Dropout, Flatten, Module, Reshape, Sequential
from .nn import functional as F
from .nn.layers import Seed
from .nn.module import make_rng
from .objectives import GAN2014, sigmoid_mean

#: the coarsest image's side, and the noise vector the coarsest generator takes
BASE, BASE_LATENT = 7, 100
SIDES: tuple[int, ...] = (7, 14, 28)


def pyramid(x: Any) -> tuple[list[Any], list[Any]]:
    """The Laplacian pyramid of 28x28 images (arrays or tensors): ``(coarse, residuals)`` with
    ``coarse[k]`` the 2^k-times average-pooled image (7x7 last) and ``residuals[k] = coarse[k] -
    up(coarse[k + 1])`` for the two finer levels, finest first."""
    x = as_tensor(x)
    coarse = [x, F.avg_pool2d(x, 2)]
    coarse.append(F.avg_pool2d(coarse[1], 2))
    residuals = [coarse[k] - F.upsample2x(coarse[k + 1], "bilinear") for k in range(2)]
    return coarse, residuals


def _level_generator(width: int, rng: np.random.Generator) -> Sequential:
    """(coarse upsampled, noise plane) -> residual: three 3x3 convolutions, BN ReLU between."""
    return Sequential(
        Conv2d(2, width, 3, 1, 1, bias=False, seed=rng), BatchNorm(width, act="relu"),
        Conv2d(width, width, 3, 1, 1, bias=False, seed=rng), BatchNorm(width, act="relu"),
        Conv2d(width, 1, 3, 1, 1, seed=rng),
    )


def _level_discriminator(side: int, width: int, rng: np.random.Generator) -> Sequential:
    """(residual, coarse upsampled) -> logit: two strided 4x4 convolutions then a dense layer."""
    return Sequential(
        Conv2d(2, width, 4, 2, 1, act="leaky_relu", seed=rng),
        Conv2d(width, 2 * width, 4, 2, 1, act="leaky_relu", seed=rng),
        Flatten(), Dropout(0.3, seed=rng),
        Dense(2 * width * (side // 4) ** 2, 1, init="normal", std=0.02, seed=rng),
    )


class LapGenerator(Module):
    """The three generators; ``forward(z)`` samples the pyramid top-down (``z`` = the coarsest
    level's 100 numbers, then a 14x14 and a 28x28 noise plane: 1080 in all)."""

    latent_dim = BASE_LATENT + 14 * 14 + 28 * 28

    def __init__(self, width: int = 32, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.base = Sequential(
            Dense(BASE_LATENT, 600, act="relu", seed=rng), Dense(600, 600, act="relu", seed=rng),
            Dense(600, BASE * BASE, act="tanh", seed=rng), Reshape(1, BASE, BASE),
        )
        self.level14 = _level_generator(width, rng)
        self.level28 = _level_generator(width, rng)

    def split(self, z: Any) -> tuple[Tensor, Tensor, Tensor]:
        """The latent's three parts: ``(z_base (N, 100), noise14 (N, 1, 14, 14), noise28 (N, 1, 28, 28))``."""
        z = as_tensor(z)
        n = z.shape[0]
        a, b = BASE_LATENT, BASE_LATENT + 196
        return z[:, :a], z[:, a:b].reshape(n, 1, 14, 14), z[:, b:].reshape(n, 1, 28, 28)

    def residual(self, level: int, coarse_up: Any, noise: Any) -> Tensor:
        """Level ``level``'s (14 or 28) residual given the upsampled coarser image and a noise plane."""
        net = self.level14 if level == 14 else self.level28
        return net(F.concat([coarse_up, noise], axis=1))

    def forward(self, z: Any) -> Tensor:
        zb, n14, n28 = self.split(z)
        image = self.base(zb)
        for level, noise in ((14, n14), (28, n28)):
            up = F.upsample2x(image, "bilinear")
            image = up + self.residual(level, up, noise)
        return image


class LapDiscriminator(Module):
    """The three discriminators: an MLP on the 7x7 image, conditional convnets on the residuals."""

    def __init__(self, width: int = 32, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.base = Sequential(Flatten(), Dense(BASE * BASE, 256, act="leaky_relu", seed=rng), Dropout(0.3, seed=rng),
                               Dense(256, 256, act="leaky_relu", seed=rng), Dense(256, 1, seed=rng))
        self.level14 = _level_discriminator(14, width, rng)
        self.level28 = _level_discriminator(28, width, rng)

    def level(self, side: int, residual_or_image: Any, coarse_up: Any = None) -> Tensor:
        """The logits of level ``side`` (7: the image alone; 14, 28: a residual and its condition)."""
        if side == BASE:
            return self.base(residual_or_image)
        net = self.level14 if side == 14 else self.level28
        return net(F.concat([residual_or_image, coarse_up], axis=1))


class LAPGAN(GAN2014):
    """The LAPGAN objective: each level's 2014 game (cross-entropy, the non-saturating generator
    loss) on the real pyramid, the levels' losses summed per player (the levels share no
    parameters, so this trains each as its own GAN). Statistics: each level's D(x) and D(G(z))."""

    def __call__(self, gan: Any, real: Any, labels: Any, wants: tuple) -> dict:
        g: LapGenerator = gan.generator
        d: LapDiscriminator = gan.discriminator
        n = int(real.shape[0])
        with no_grad():
            coarse, res = pyramid(real)
            ups = [F.upsample2x(coarse[k + 1], "bilinear").detach() for k in range(2)]
        z = as_tensor(gan.noise(n))
        zb, n14, n28 = g.split(z)

        def fakes() -> list[Tensor]:  # the generated image at 7x7, the residuals at 14 and 28
            return [g.base(zb), g.residual(14, ups[1], n14), g.residual(28, ups[0], n28)]

        levels = [(BASE, coarse[2], None), (14, res[1], ups[1]), (28, res[0], ups[0])]
        out: dict[str, Any] = {}
        if "discriminator" in wants:
            if "generator" in wants:
                fake = fakes()
            else:
                with no_grad():
                    fake = fakes()
            total = None
            for (side, real_part, cond), f in zip(levels, fake):
                r_logit, f_logit = d.level(side, real_part, cond), d.level(side, f, cond)
                loss = losses.discriminator_loss(r_logit, f_logit, self.real_target)
                total = loss if total is None else total + loss
                out[f"d_x_{side}"] = sigmoid_mean(r_logit.data)
            out["discriminator"] = total
        if "generator" in wants:
            if "discriminator" not in wants:
                fake = fakes()
            total = None
            for (side, _, cond), f in zip(levels, fake):
                logit = d.level(side, f, cond)
                loss = losses.generator_loss(logit, self.loss)
                total = loss if total is None else total + loss
                out[f"d_g_z_{side}"] = sigmoid_mean(logit.data)
            out["generator"] = total
        return out
