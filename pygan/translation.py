"""Image-to-image GANs at MNIST scale: SRGAN (Ledig et al. 2017) and CycleGAN (Zhu et al. 2017).

Their generators map images, not noise (the :class:`pygan.GAN` that trains them has
``latent_dim=0``); each objective below builds the generator's inputs from the real batch.

- **SRGAN**: 7x7 -> 28x28 (x4). The low-resolution input is the 4x4 average of the digit. A
  residual generator (residual blocks with batch norm, a long skip, two conv + pixel-shuffle 2x
  stages) against the DCGAN discriminator; the generator's loss is the pixel MSE, plus the MSE
  between the MNIST classifier's features of the output and of the digit (in place of the
  paper's VGG features) weighted 0.1 (the paper scales its VGG term down too, by 1/12.75), plus
  1e-3 times the adversarial term.
- **CycleGAN**: two ResNet generators (reflection padding, instance norm, residual blocks) and two
  PatchGAN discriminators, the least-squares loss, cycle consistency (L1, lambda 10), an optional
  identity loss, and a pool of 50 past fakes per discriminator. A batch holds an A image in
  channel 0 and an unrelated B image in channel 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import losses
from .autograd import Tensor, as_tensor, no_grad
from .backend import _checks as C
from .backend import get_backend
from .nn import (BatchNorm, Conv2d, ConvTranspose2d, InstanceNorm, Module, PixelShuffle, ReflectionPad2d, ReLU,
                 Sequential)
from .nn import functional as F
from .nn.layers import Seed
from .nn.module import make_rng, to_backend
from .objectives import sigmoid_mean

#: SRGAN's upscaling factor and its low-resolution side
SR_FACTOR, SR_SIDE = 4, 7


# ---------------------------------------------------------------------------------------------
# SRGAN
# ---------------------------------------------------------------------------------------------
class _Residual(Module):
    """``x + body(x)``."""

    def __init__(self, body: Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Any) -> Tensor:
        return as_tensor(x) + self.body(x)


class SRGenerator(Module):
    """SRResNet at MNIST scale: conv 3x3 -> ``blocks`` residual blocks (conv BN ReLU conv BN) -> conv
    BN + the long skip -> 2x [conv to 4 * width, pixel shuffle 2, ReLU] -> conv 3x3 -> tanh."""

    def __init__(self, width: int = 32, blocks: int = 4, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        w = C.check_int("width", width, 1)
        self.head = Conv2d(1, w, 3, 1, 1, act="relu", seed=rng)
        self.blocks = Sequential(*[
            _Residual(Sequential(Conv2d(w, w, 3, 1, 1, bias=False, seed=rng), BatchNorm(w, act="relu"),
                                 Conv2d(w, w, 3, 1, 1, bias=False, seed=rng), BatchNorm(w)))
            for _ in range(C.check_int("blocks", blocks, 0))
        ])
        self.trunk = Sequential(Conv2d(w, w, 3, 1, 1, bias=False, seed=rng), BatchNorm(w))
        self.up = Sequential(Conv2d(w, 4 * w, 3, 1, 1, seed=rng), PixelShuffle(2), ReLU(),
                             Conv2d(w, 4 * w, 3, 1, 1, seed=rng), PixelShuffle(2), ReLU(),
                             Conv2d(w, 1, 3, 1, 1, act="tanh", seed=rng))

    def forward(self, x: Any) -> Tensor:
        h = self.head(x)
        return self.up(h + self.trunk(self.blocks(h)))


def downsample(hr: Any) -> Tensor:
    """The low-resolution input of a 28x28 digit: its 4x4 block means (7x7)."""
    return F.avg_pool2d(hr, SR_FACTOR)


class SRGAN:
    """The SRGAN objective: the discriminator's cross-entropy on real digits and super-resolved
    ones; the generator's ``MSE + feature_weight * feature MSE + adversarial_weight *
    non-saturating loss``. ``features`` maps images in [-1, 1] to feature vectors (the MNIST
    classifier's body, frozen); None drops the feature term."""

    def __init__(self, features: Module | None = None, feature_weight: float = 0.1,
                 adversarial_weight: float = 1e-3) -> None:
        self.features = features
        self.feature_weight = float(feature_weight)
        self.adversarial_weight = float(adversarial_weight)
        if features is not None:
            features.eval()

    def __call__(self, gan: Any, real: Any, labels: Any, wants: tuple) -> dict:
        hr = as_tensor(real)
        with no_grad():
            lr = downsample(hr).detach()
        out: dict[str, Any] = {}
        if "discriminator" in wants:
            with no_grad():
                sr = gan.generator(lr).detach()
            r, f = gan.discriminate(hr), gan.discriminate(sr)
            out["discriminator"] = losses.discriminator_loss(r, f)
            out["d_x"] = sigmoid_mean(r.data)
        if "generator" in wants:
            sr = gan.generator(lr)
            content = F.mse_loss(sr, hr.data)
            out["mse"] = content
            total = content
            if self.features is not None:
                with no_grad():
                    target = self.features(hr).data
                feat = F.mse_loss(self.features(sr), target)
                out["feature_mse"] = feat
                total = total + feat * self.feature_weight
            logit = gan.discriminate(sr)
            total = total + losses.generator_loss(logit, "non_saturating") * self.adversarial_weight
            out["d_g_z"] = sigmoid_mean(logit.data)
            out["generator"] = total
        return out


# ---------------------------------------------------------------------------------------------
# CycleGAN
# ---------------------------------------------------------------------------------------------
def resnet_generator(width: int = 16, blocks: int = 3, seed: Seed = None) -> Sequential:
    """CycleGAN's generator at 28x28: c7s1-w, d2w, d4w (stride-2 3x3 convs to 7x7), ``blocks``
    residual blocks of 4w (reflection pad, conv 3x3, instance norm), u2w, uw (transposed convs
    back to 28x28), c7s1-1 with tanh; instance norm and ReLU after every other convolution."""
    rng = make_rng(seed)
    w = C.check_int("width", width, 1)

    def block() -> Module:
        return _Residual(Sequential(ReflectionPad2d(1), Conv2d(4 * w, 4 * w, 3, bias=False, seed=rng),
                                    InstanceNorm(4 * w, act="relu"), ReflectionPad2d(1),
                                    Conv2d(4 * w, 4 * w, 3, bias=False, seed=rng), InstanceNorm(4 * w)))

    return Sequential(
        ReflectionPad2d(3), Conv2d(1, w, 7, bias=False, seed=rng), InstanceNorm(w, act="relu"),
        Conv2d(w, 2 * w, 3, 2, 1, bias=False, seed=rng), InstanceNorm(2 * w, act="relu"),
        Conv2d(2 * w, 4 * w, 3, 2, 1, bias=False, seed=rng), InstanceNorm(4 * w, act="relu"),
        *[block() for _ in range(C.check_int("blocks", blocks, 0))],
        ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False, seed=rng), InstanceNorm(2 * w, act="relu"),
        ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False, seed=rng), InstanceNorm(w, act="relu"),
        ReflectionPad2d(3), Conv2d(w, 1, 7, act="tanh", seed=rng),
    )


def patch_discriminator(width: int = 32, seed: Seed = None) -> Sequential:
    """CycleGAN's PatchGAN at 28x28: C-w (no norm), C-2w, C-4w (4x4 convs, LeakyReLU 0.2; the first
    two stride 2, instance norm after the second and third), then a 4x4 conv to one score per
    overlapping patch: ``(N, 1, 6, 6)`` scores of 22x22 receptive fields."""
    rng = make_rng(seed)
    w = C.check_int("width", width, 1)
    return Sequential(
        Conv2d(1, w, 4, 2, 1, act="leaky_relu", seed=rng),
        Conv2d(w, 2 * w, 4, 2, 1, bias=False, seed=rng), InstanceNorm(2 * w, act="leaky_relu"),
        Conv2d(2 * w, 4 * w, 4, 1, 1, bias=False, seed=rng), InstanceNorm(4 * w, act="leaky_relu"),
        Conv2d(4 * w, 1, 4, 1, 1, seed=rng),
    )


class CycleGenerators(Module):
    """G_AB and G_BA; ``forward(x)`` with x ``(N, 2, H, W)`` (A in channel 0, B in 1) gives
    ``(G_AB(a), G_BA(b))`` stacked the same way."""

    def __init__(self, width: int = 16, blocks: int = 3, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.ab = resnet_generator(width, blocks, rng)
        self.ba = resnet_generator(width, blocks, rng)

    def forward(self, x: Any) -> Tensor:
        x = as_tensor(x)
        return F.concat([self.ab(x[:, 0:1]), self.ba(x[:, 1:2])], axis=1)


class CycleDiscriminators(Module):
    """D_A and D_B, and each one's pool of past generated images (buffers, so checkpoints keep
    them): ``pool_a`` holds past G_BA(b) for D_A, ``pool_b`` past G_AB(a) for D_B."""

    def __init__(self, width: int = 32, pool: int = 50, side: int = 28, seed: Seed = None) -> None:
        super().__init__()
        rng = make_rng(seed)
        self.a = patch_discriminator(width, rng)
        self.b = patch_discriminator(width, rng)
        self.pool_size = C.check_int("pool", pool, 0)
        for name in ("pool_a", "pool_b"):
            self.register_buffer(name, to_backend(np.zeros((max(self.pool_size, 1), 1, side, side), np.float32)))
        self.register_buffer("pool_count", to_backend(np.zeros(2, np.float32)))

    def from_pool(self, which: int, fake: Any, rng: np.random.Generator) -> Any:
        """The image pool of Shrivastava et al. 2017 as CycleGAN uses it: while the pool fills, each
        new fake goes in and is used; after that each is used with probability 1/2, or else swapped
        with a random stored one (which is used instead). Returns the batch for the discriminator."""
        if self.pool_size == 0:
            return fake
        pool = self.pool_a if which == 0 else self.pool_b
        xp = get_backend().xp
        out = fake.copy()
        count = int(self.pool_count[which])
        for i in range(fake.shape[0]):
            if count < self.pool_size:
                pool[count] = fake[i]
                count += 1
            elif rng.random() < 0.5:
                j = int(rng.integers(self.pool_size))
                out[i] = pool[j]
                pool[j] = fake[i]
        self.pool_count[which] = count
        return xp.ascontiguousarray(out)


class CycleGAN:
    """The CycleGAN objective (least-squares GAN losses): each discriminator scores its domain's
    real images against generated ones (from the pool); the generators' loss is the two
    adversarial terms + ``cycle`` * (|G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|) (L1 means) +
    ``identity`` * ``cycle`` * (|G_AB(b) - b| + |G_BA(a) - a|). The paper: cycle 10, identity 0.5
    where colour must be kept (0 here by default: the digit task changes every pixel's value)."""

    def __init__(self, cycle: float = 10.0, identity: float = 0.0) -> None:
        self.cycle = float(cycle)
        self.identity = float(identity)
        if not (np.isfinite(self.cycle) and self.cycle >= 0 and np.isfinite(self.identity) and self.identity >= 0):
            raise ValueError(f"cycle, identity: must be finite numbers >= 0, got {cycle}, {identity}")

    def __call__(self, gan: Any, real: Any, labels: Any, wants: tuple) -> dict:
        g: CycleGenerators = gan.generator
        d: CycleDiscriminators = gan.discriminator
        x = as_tensor(real)
        a, b = x[:, 0:1].detach(), x[:, 1:2].detach()
        a_data, b_data = get_backend().xp.ascontiguousarray(a.data), get_backend().xp.ascontiguousarray(b.data)
        out: dict[str, Any] = {}
        if "generator" in wants:
            fake_b, fake_a = g.ab(a_data), g.ba(b_data)
            adv = 0.5 * (((d.b(fake_b) - 1) ** 2).mean() + ((d.a(fake_a) - 1) ** 2).mean())
            cyc = F.l1_loss(g.ba(fake_b), a_data) + F.l1_loss(g.ab(fake_a), b_data)
            total = adv + cyc * self.cycle
            if self.identity > 0:
                idt = F.l1_loss(g.ab(b_data), b_data) + F.l1_loss(g.ba(a_data), a_data)
                total = total + idt * (self.identity * self.cycle)
                out["identity"] = idt
            out.update(generator=total, adversarial=adv, cycle=cyc)
        if "discriminator" in wants:
            with no_grad():
                fake_a, fake_b = g.ba(b_data).data, g.ab(a_data).data
            pool_a, pool_b = d.from_pool(0, fake_a, gan.rng), d.from_pool(1, fake_b, gan.rng)
            loss = 0.0
            for net, real_x, fake_x in ((d.a, a_data, pool_a), (d.b, b_data, pool_b)):
                loss = loss + 0.5 * (((net(real_x) - 1) ** 2).mean() + (net(fake_x) ** 2).mean())
            out["discriminator"] = loss
        return out


# ---------------------------------------------------------------------------------------------
# running and scoring the trained translators (host arrays of images in [0, 1])
# ---------------------------------------------------------------------------------------------
#: CycleGAN's digit tasks: domain B is domain A's images under a known map, or Fashion-MNIST
CYCLE_TASKS: tuple[str, ...] = ("invert", "fashion")


def translate(gan: Any, fn: Any, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """``fn`` (a generator, or a part of one) on images ``x`` in [0, 1], in evaluation mode with the
    generator's weight average when kept, in batches; returns images in [0, 1] (float64)."""
    from .backend import from_numpy, to_numpy

    x = np.asarray(x, np.float32)
    gen = gan.generator
    out = []
    with gan.averaged_weights():
        gen.eval()
        try:
            with no_grad():
                for i in range(0, len(x), batch):
                    y = as_tensor(fn(from_numpy(np.ascontiguousarray(x[i : i + batch] * 2 - 1))))
                    out.append(to_numpy(y.data).astype(np.float64))
        finally:
            gen.train()
    return (np.concatenate(out) + 1) / 2 if out else np.zeros((0,) + x.shape[1:])


def low_resolution(hr: np.ndarray) -> np.ndarray:
    """SRGAN's 7x7 inputs of 28x28 digits in [0, 1] (4x4 block means)."""
    from .backend import reference as R

    return R.avg_pool2d_forward(np.ascontiguousarray(hr, np.float64), SR_FACTOR)


def sr_scores(gan: Any, hr: np.ndarray, labels: np.ndarray | None = None, classifier: Any = None) -> dict[str, float]:
    """PSNR and SSIM (dB; [0, 1] pixels) of the super-resolved 7x7 inputs of ``hr`` against ``hr``,
    beside bicubic upsampling of the same inputs; with ``labels`` and a classifier, its accuracy
    on both and on ``hr`` itself."""
    from . import metrics

    lr = low_resolution(hr)
    out = {"sr": translate(gan, gan.generator, lr), "bicubic": metrics.bicubic_upsample(lr, SR_FACTOR)}
    scores: dict[str, float] = {}
    for name, x in out.items():
        p = metrics.psnr(x, hr)
        scores[f"{name}_psnr"] = float(p.mean())
        scores[f"{name}_psnr_stderr"] = float(p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else 0.0
        scores[f"{name}_ssim"] = float(metrics.ssim(x, hr).mean())
        if labels is not None and classifier is not None:
            scores[f"{name}_accuracy"] = classifier.accuracy(x, labels)
    if labels is not None and classifier is not None:
        scores["hr_accuracy"] = classifier.accuracy(hr, labels)
    return scores


def sr_picture(gan: Any, hr: np.ndarray) -> np.ndarray:
    """Rows of 10 digits: the 7x7 input (pixels repeated), bicubic, super-resolved, the original."""
    from . import metrics, plot

    hr = hr[:10]
    lr = low_resolution(hr)
    rows = [np.repeat(np.repeat(lr, SR_FACTOR, axis=2), SR_FACTOR, axis=3), metrics.bicubic_upsample(lr, SR_FACTOR),
            translate(gan, gan.generator, lr), hr]
    return plot.image_grid(np.concatenate(rows), columns=len(hr))


def true_map(task: str, a: np.ndarray) -> np.ndarray | None:
    """The known A -> B map of a CycleGAN task (None where there is none)."""
    return 1.0 - a if task == "invert" else None


def cycle_scores(gan: Any, task: str, a: np.ndarray) -> dict[str, float]:
    """Mean L1 and PSNR of G_AB(a) against the true map of ``a``, beside the identity baseline
    (``a`` itself), and the cycle reconstruction's L1 (every task)."""
    from . import metrics

    g = gan.generator
    fake_b = translate(gan, g.ab, a)
    scores = {"cycle_l1": float(np.abs(translate(gan, g.ba, fake_b) - a).mean())}
    target = true_map(task, a)
    if target is not None:
        scores.update(
            l1=float(np.abs(fake_b - target).mean()), identity_l1=float(np.abs(a - target).mean()),
            psnr=float(metrics.psnr(fake_b, target).mean()), identity_psnr=float(metrics.psnr(a, target).mean()),
            ba_l1=float(np.abs(translate(gan, g.ba, target) - a).mean()))
    return scores


def cycle_picture(gan: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of 10: a, G_AB(a), G_BA(G_AB(a)); b, G_BA(b), G_AB(G_BA(b))."""
    from . import plot

    g = gan.generator
    a, b = a[:10], b[:10]
    fb, fa = translate(gan, g.ab, a), translate(gan, g.ba, b)
    rows = [a, fb, translate(gan, g.ba, fb), b, fa, translate(gan, g.ab, fa)]
    return plot.image_grid(np.concatenate(rows), columns=len(a))


def cycle_domains(task: str, folder: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two unpaired training domains of a task and the held-out A images: A = MNIST training
    digits 0-29,999, B = digits 30,000-59,999 colour-inverted (``invert``) or Fashion-MNIST's
    training images 30,000-59,999 (``fashion``); validation = A's first 1,000 (their images under
    the map are not in B). Returns ``(A, B, validation)`` in [0, 1]."""
    from . import data

    if task not in CYCLE_TASKS:
        raise ValueError(f"task: unknown CycleGAN task {task!r}; expected one of {', '.join(CYCLE_TASKS)}")
    x, _ = data.load_images("mnist", "train", folder)
    half = len(x) // 2
    a = x[:half]
    b = 1.0 - x[half:] if task == "invert" else data.load_images("fashion-mnist", "train", folder)[0][half:]
    n = min(len(a), len(b))
    return a[:n], b[:n], a[: max(1, min(1000, n // 5))]
