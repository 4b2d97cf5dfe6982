"""The GAN objectives of the literature, each a callable ``objective(gan, real, labels, wants)`` for
:class:`pygan.GAN` (see ``pygan.gan.Objective``), and the regularisers that add to them.

- :class:`GAN2014`: the 2014 paper's cross-entropy game (Goodfellow et al. 2014);
- :class:`Wasserstein`: the WGAN critic with weight clipping (Arjovsky et al. 2017);
- :class:`WGANGP`: the critic with a gradient penalty on interpolates (Gulrajani et al. 2017);
- :class:`Hinge`: the hinge loss (Lim & Ye 2017; Miyato et al. 2018 train it with spectral norm,
  :func:`pygan.nn.spectral_norm`);
- :class:`LeastSquares`: the least-squares GAN (Mao et al. 2017, a-b-c = 0-1-1);
- ``r1=gamma`` on any of them: ``gamma / 2 * E||grad_x D(x)||^2`` on real data (Mescheder et al. 2018).

Every objective asked for the discriminator alone generates without recording (the generator gets
no gradient from that step); asked for both players at once (simultaneous updates) one generated
batch and one discriminator forward serve both losses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import losses
from .autograd import Tensor, grad, no_grad, tensor
from .backend import _checks as C
from .backend import get_backend
from .nn import functional as F

#: what ``pygan train --loss`` accepts beyond the 2014 generator losses (``GENERATOR_LOSSES``)
OBJECTIVES: tuple[str, ...] = ("wgan", "wgan-gp", "hinge", "lsgan")


#: what ``pygan train --loss`` sets unless told otherwise: the papers' optimizers and critic steps
PRESETS: dict[str, dict[str, Any]] = {
    "wgan": {"optimizer": "rmsprop", "lr": 5e-5, "d_steps": 5},
    "wgan-gp": {"optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.9), "d_steps": 5},
}


def _nonnegative(name: str, v: Any) -> float:
    v = float(v)
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {v}")
    return v


def _squared_norms(g: Tensor) -> Tensor:
    """Each example's squared gradient norm, ``(N,)``."""
    flat = g.reshape(g.shape[0], -1)
    return (flat * flat).sum(axis=1)


class Objective:
    """A two-player objective: the discriminator's loss from its outputs on a real and a generated
    batch (:meth:`d_loss`), the generator's from its outputs on a generated one (:meth:`g_loss`),
    plus the R1 penalty on real data when ``r1 > 0``. Subclasses define the two losses and may add
    a penalty (:meth:`penalty`) and statistics (:meth:`stats`)."""

    def __init__(self, r1: float = 0.0) -> None:
        self.r1 = _nonnegative("r1", r1)

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """The discriminator's loss from its outputs on real and generated samples."""
        raise NotImplementedError

    def g_loss(self, fake: Tensor) -> Tensor:
        """The generator's loss from the discriminator's outputs on generated samples."""
        raise NotImplementedError

    def stats(self, real: Any, fake: Any) -> dict[str, Any]:
        """Statistics of a discriminator step from its outputs (arrays) on both batches."""
        return {}

    def g_stats(self, fake: Any) -> dict[str, Any]:
        """Statistics of a generator step from the discriminator's outputs (an array) on its batch."""
        return {}

    def penalty(self, gan: Any, real: Any, fake: Tensor, labels: Any) -> dict[str, Tensor]:
        """Extra terms of the discriminator's loss: ``{name: weighted term}`` (none by default)."""
        return {}

    def after_step(self, gan: Any, player: str) -> None:
        """Called after ``player``'s optimizer stepped (weight clipping hooks in here)."""

    def __call__(self, gan: Any, real: Any, labels: Any, wants: tuple) -> dict:
        n = int(real.shape[0])
        out: dict[str, Any] = {}
        if "discriminator" in wants:
            if "generator" in wants:
                fake, fake_labels = gan.generate_fake(n)
            else:
                with no_grad():
                    fake, fake_labels = gan.generate_fake(n)
            real_out = gan.discriminate(real, labels)
            fake_out = gan.discriminate(fake, fake_labels)
            loss = self.d_loss(real_out, fake_out)
            terms = dict(self.penalty(gan, real, fake, labels))
            if self.r1 > 0:
                x = tensor(real.data if isinstance(real, Tensor) else real, requires_grad=True)
                (g,) = grad(gan.discriminate(x, labels).sum(), [x], create_graph=True)
                terms["r1"] = _squared_norms(g).mean() * (self.r1 / 2)
            for name, term in terms.items():
                loss = loss + term
                out[name] = term
            out["discriminator"] = loss
            out.update(self.stats(real_out.data, fake_out.data))
        if "generator" in wants:
            if "discriminator" not in wants:  # same samples, same dropout masks when simultaneous
                fake, fake_labels = gan.generate_fake(n)
                fake_out = gan.discriminate(fake, fake_labels)
            out["generator"] = self.g_loss(fake_out)
            out.update(self.g_stats(fake_out.data))
        return out

    def describe(self) -> str:
        """A short name with its settings, for logs."""
        return type(self).__name__ + (f" + R1 {self.r1:g}" if self.r1 else "")


def sigmoid_mean(logits: Any) -> Any:
    """Mean of ``sigmoid(logits)`` in float64 (D(x) of the 2014 game), on the device."""
    xp = get_backend().xp
    return xp.exp(-xp.logaddexp(0.0, -logits.astype(xp.float64))).mean()


def _accuracy(real: Any, fake: Any, threshold: float) -> dict[str, Any]:
    return {"d_acc_real": (real > threshold).mean(), "d_acc_fake": (fake < threshold).mean()}


class GAN2014(Objective):
    """The 2014 family: the discriminator's binary cross-entropy on real and generated batches
    (real target ``real_target``: one-sided label smoothing below 1) and the generator's ``loss``
    (minimax, non-saturating or maximum-likelihood), on logits."""

    def __init__(self, loss: str = "non_saturating", real_target: float = 1.0, r1: float = 0.0) -> None:
        super().__init__(r1)
        if loss not in C.GENERATOR_LOSSES:
            raise ValueError(f"loss: unknown generator loss {loss!r}; expected one of {', '.join(C.GENERATOR_LOSSES)}")
        self.loss = loss
        self.real_target = C.check_prob("real_target", real_target, low_open=True, high_open=False)

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return losses.discriminator_loss(real, fake, self.real_target)

    def g_loss(self, fake: Tensor) -> Tensor:
        return losses.generator_loss(fake, self.loss)

    def stats(self, real: Any, fake: Any) -> dict[str, Any]:
        return {"d_x": sigmoid_mean(real), **_accuracy(real, fake, 0.0)}

    def g_stats(self, fake: Any) -> dict[str, Any]:
        return {"d_g_z": sigmoid_mean(fake)}


class Wasserstein(Objective):
    """The WGAN critic (Arjovsky et al. 2017): it maximises ``E D(x) - E D(G(z))`` and the generator
    minimises ``-E D(G(z))``; after every critic update each of its parameters is clipped to
    ``[-clip, clip]`` (``clip=0`` turns clipping off, as WGAN-GP does). The paper trains it with
    RMSprop at 5e-5 and 5 critic steps per generator step. ``critic_gap`` is the estimate of the
    Wasserstein distance, ``E D(x) - E D(G(z))``."""

    def __init__(self, clip: float = 0.01, r1: float = 0.0) -> None:
        super().__init__(r1)
        self.clip = _nonnegative("clip", clip)

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.mean() - real.mean()

    def g_loss(self, fake: Tensor) -> Tensor:
        return -fake.mean()

    def stats(self, real: Any, fake: Any) -> dict[str, Any]:
        return {"critic_gap": real.mean() - fake.mean()}

    def after_step(self, gan: Any, player: str) -> None:
        if player == "discriminator" and self.clip > 0:
            flat = gan.d_optimizer.flat
            flat.clip(-self.clip, self.clip, out=flat)


class WGANGP(Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): the Wasserstein critic without clipping, plus
    ``weight * E(||grad D(x_hat)|| - 1)^2`` at ``x_hat = e x + (1 - e) G(z)``, e ~ U(0, 1) per
    example (drawn from the GAN's generator, so a resumed run draws the same). The paper's
    settings: weight 10, 5 critic steps, Adam 1e-4 with betas (0.5, 0.9) (``pygan train --loss
    wgan-gp``'s defaults). A conditional critic sees each interpolate with the real example's label.
    The critic must support double backward (no batch norm: layer norm instead)."""

    def __init__(self, weight: float = 10.0, r1: float = 0.0) -> None:
        super().__init__(clip=0.0, r1=r1)
        self.weight = _nonnegative("weight", weight)

    def penalty(self, gan: Any, real: Any, fake: Tensor, labels: Any) -> dict[str, Tensor]:
        xp = get_backend().xp
        r = real.data if isinstance(real, Tensor) else real
        n = int(r.shape[0])
        e = xp.asarray(gan.draw_rows(n, lambda m: gan.rng.uniform(size=(m,) + (1,) * (r.ndim - 1))).astype(r.dtype))
        mix = tensor(e * r + (1 - e) * fake.data, requires_grad=True)
        (g,) = grad(gan.discriminate(mix, labels).sum(), [mix], create_graph=True)
        norms = (_squared_norms(g) + 1e-12) ** 0.5
        gp = ((norms - 1) ** 2).mean()
        return {"gp": gp * self.weight}


class Hinge(Objective):
    """The hinge loss: the discriminator minimises ``E relu(1 - D(x)) + E relu(1 + D(G(z)))``, the
    generator ``-E D(G(z))`` (Lim & Ye 2017; SNGAN and BigGAN train it with spectral norm)."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake: Tensor) -> Tensor:
        return -fake.mean()

    def stats(self, real: Any, fake: Any) -> dict[str, Any]:
        return _accuracy(real, fake, 0.0)


class LeastSquares(Objective):
    """The least-squares GAN (Mao et al. 2017), targets a = 0 (generated), b = 1 (real), c = 1:
    the discriminator minimises ``(E(D(x) - 1)^2 + E D(G(z))^2) / 2``, the generator
    ``E(D(G(z)) - 1)^2 / 2``; the discriminator's output is a score, not a logit."""

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return (((real - 1) ** 2).mean() + (fake * fake).mean()) * 0.5

    def g_loss(self, fake: Tensor) -> Tensor:
        return ((fake - 1) ** 2).mean() * 0.5

    def stats(self, real: Any, fake: Any) -> dict[str, Any]:
        return _accuracy(real, fake, 0.5)


def make_objective(loss: str, real_target: float = 1.0, r1: float = 0.0, clip: float = 0.01,
                   gp_weight: float = 10.0) -> Objective:
    """The objective ``pygan train --loss`` names: a 2014 generator loss (minimax, non_saturating,
    maximum_likelihood) or one of ``OBJECTIVES``."""
    if loss in C.GENERATOR_LOSSES:
        return GAN2014(loss, real_target, r1=r1)
    if real_target != 1.0:
        raise ValueError(f"real_target: label smoothing belongs to the 2014 losses, not {loss!r}")
    if loss == "wgan":
        return Wasserstein(clip=clip, r1=r1)
    if loss == "wgan-gp":
        return WGANGP(weight=gp_weight, r1=r1)
    if loss == "hinge":
        return Hinge(r1=r1)
    if loss == "lsgan":
        return LeastSquares(r1=r1)
    raise ValueError(f"loss: unknown loss {loss!r}; expected one of {', '.join(C.GENERATOR_LOSSES + OBJECTIVES)}")
