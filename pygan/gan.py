"""The GAN: generator, discriminator, loss, optimizers, and Algorithm 1 of Goodfellow et al. 2014."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import _checks as C
from .backend import get_backend
from .nn.module import Module
from .optim import Optimizer

PRIORS: tuple[str, ...] = ("normal", "uniform")


class GAN:
    """A generator/discriminator pair trained with k discriminator steps per generator step.

    The discriminator outputs logits ``(N, 1)``. The generator step back-propagates through the
    discriminator's backward (asking it for the input gradient only), so the discriminator's
    parameters and gradients stay untouched.
    """

    def __init__(
        self,
        generator: Module,
        discriminator: Module,
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        latent_dim: int,
        loss: str = "non_saturating",
        d_steps: int = 1,
        prior: str = "normal",
        real_target: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.latent_dim = C.check_int("latent_dim", latent_dim, 1)
        if loss not in C.GENERATOR_LOSSES:
            raise ValueError(f"loss: unknown generator loss {loss!r}; expected one of {', '.join(C.GENERATOR_LOSSES)}")
        self.loss = loss
        self.d_steps = C.check_int("d_steps", d_steps, 1)
        if prior not in PRIORS:
            raise ValueError(f"prior: unknown prior {prior!r}; expected one of {', '.join(PRIORS)}")
        self.prior = prior
        self.real_target = C.check_prob("real_target", real_target, low_open=True, high_open=False)
        self.rng = np.random.default_rng(seed)
        self.dtype = g_optimizer.flat.dtype

    def noise(self, n: int, rng: np.random.Generator | None = None) -> Any:
        """``n`` latent vectors from the prior (N(0, 1), or U(-1, 1)), on the active backend."""
        rng = self.rng if rng is None else rng
        if self.prior == "normal":
            z = rng.standard_normal((n, self.latent_dim))
        else:
            z = rng.uniform(-1.0, 1.0, (n, self.latent_dim))
        return get_backend().xp.asarray(z.astype(self.dtype))

    def train_step(self, real: Any) -> dict[str, float]:
        """One iteration of Algorithm 1: ``d_steps`` discriminator updates, then one generator update.

        Returns the last discriminator loss, the generator loss, the means of D(x) and D(G(z)) and
        the discriminator's accuracy on the real and the generated batch.
        """
        B = get_backend()
        xp = B.xp
        n = real.shape[0]
        G, D = self.generator, self.discriminator
        stats: dict[str, float] = {}
        for _ in range(self.d_steps):
            fake = G.forward(self.noise(n))
            self.d_optimizer.zero_grad()
            real_logits = D.forward(real)
            loss_r, d_real = B.bce_with_logits(real_logits, xp.full_like(real_logits, self.real_target))
            D.backward(d_real, need_dx=False)
            fake_logits = D.forward(fake)
            loss_f, d_fake = B.bce_with_logits(fake_logits, xp.zeros_like(fake_logits))
            D.backward(d_fake, need_dx=False)
            self.d_optimizer.step()
            stats["d_loss"] = loss_r + loss_f
            stats["d_x"] = float(_sigmoid_mean(real_logits))
            stats["d_acc_real"] = float((real_logits > 0).mean())
            stats["d_acc_fake"] = float((fake_logits < 0).mean())
        fake = G.forward(self.noise(n))
        logits = D.forward(fake)
        g_loss, d_logits = B.generator_loss(logits, self.loss)
        d_fake_input = D.backward(d_logits, need_dx=True, need_params=False)
        self.g_optimizer.zero_grad()
        G.backward(d_fake_input, need_dx=False)
        self.g_optimizer.step()
        stats["g_loss"] = g_loss
        stats["d_g_z"] = float(_sigmoid_mean(logits))
        return stats

    def sample(self, n: int, seed: int | None = None) -> Any:
        """``n`` generated samples, with the generator in evaluation mode."""
        n = C.check_int("n", n, 1)
        rng = None if seed is None else np.random.default_rng(seed)
        self.generator.eval()
        try:
            return self.generator.forward(self.noise(n, rng))
        finally:
            self.generator.train()


def _sigmoid_mean(logits: Any) -> float:
    l64 = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.exp(-np.logaddexp(0.0, -l64))))
