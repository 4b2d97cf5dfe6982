"""Model builders: the MLP GAN, the 2014 paper's MNIST model, the conditional GAN and DCGAN.

``build(name, ...)`` returns a :class:`ModelSpec`: the two networks plus what a trainer needs to
know about them (latent size and prior, the range of the generator's output, the optimizers and
batch size their papers train with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .backend import _checks as C
from .nn import (
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LayerNorm,
    Maxout,
    MinibatchStd,
    Module,
    Reshape,
    Sequential,
    VirtualBatchNorm,
)
from .lapgan import LapDiscriminator, LapGenerator
from .nn.layers import Seed
from .stylegan import StyleGenerator
from .translation import CycleDiscriminators, CycleGenerators, SRGenerator
from .nn.module import make_rng

MODELS: tuple[str, ...] = ("mlp", "paper-mlp", "cgan", "dcgan", "lapgan", "stylegan", "srgan", "cyclegan")
#: Models that train on images only, and those among them that read images as flat vectors.
IMAGE_MODELS: tuple[str, ...] = ("paper-mlp", "dcgan", "lapgan", "stylegan", "srgan", "cyclegan")
#: Models whose generators map images to images (trained with latent_dim 0; pygan.translation).
TRANSLATION_MODELS: tuple[str, ...] = ("srgan", "cyclegan")
FLAT_MODELS: tuple[str, ...] = ("mlp", "paper-mlp", "cgan")
#: Models built for MNIST's 1x28x28 digits alone (not for other images).
DIGIT_MODELS: tuple[str, ...] = ("lapgan",) + TRANSLATION_MODELS
#: Models whose runs sample and evaluate with a moving average of the generator's weights unless
#: told otherwise (``pygan train --ema``): the paper model's Parzen estimate after 25 epochs rose
#: from 114.5 to 176.7 with it (README, "Results").
DEFAULT_EMA: dict[str, float] = {"paper-mlp": 0.999, "stylegan": 0.999}
#: The image side a model trains at unless told otherwise (MNIST's 28 for the others): StyleGAN's
#: MNIST setting pads the digits to 32x32.
DEFAULT_IMAGE_SIZE: dict[str, int] = {"stylegan": 32}


def mlp_generator(
    latent_dim: int,
    hidden: Sequence[int],
    out_features: int,
    act: str = "leaky_relu",
    out_act: str = "identity",
    slope: float = 0.2,
    seed: Seed = None,
    dtype: type = np.float32,
) -> Sequential:
    """An MLP ``latent_dim -> hidden... -> out_features`` with fused activations."""
    rng = make_rng(seed)
    sizes = [latent_dim, *hidden]
    layers = [Dense(a, b, act=act, slope=slope, seed=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], out_features, act=out_act, seed=rng, dtype=dtype))
    return Sequential(*layers)


def mlp_discriminator(
    in_features: int,
    hidden: Sequence[int],
    act: str = "leaky_relu",
    slope: float = 0.2,
    seed: Seed = None,
    dtype: type = np.float32,
) -> Sequential:
    """An MLP ``in_features -> hidden... -> 1`` that outputs logits."""
    rng = make_rng(seed)
    sizes = [in_features, *hidden]
    layers = [Dense(a, b, act=act, slope=slope, seed=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], 1, seed=rng, dtype=dtype))
    return Sequential(*layers)


def paper_mlp_generator(
    latent_dim: int = 100, out_features: int = 784, seed: Seed = None, marginals: np.ndarray | None = None
) -> Sequential:
    """Goodfellow et al. 2014, MNIST: ``z -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid`` (weights U(-0.05, 0.05)).

    ``marginals`` (the training pixels' means) sets the output bias to their logits, as the authors'
    configuration does, so the untrained generator already draws the average digit.
    """
    rng = make_rng(seed)
    out = Dense(1200, out_features, act="sigmoid", init="irange", std=0.05, seed=rng)
    if marginals is not None:
        m = np.clip(np.asarray(marginals, dtype=np.float64).reshape(-1), 1e-5, 1 - 1e-5)
        if m.shape != (out_features,):
            raise ValueError(f"marginals: expected {out_features} pixel means, got shape {m.shape}")
        out.b.data[...] = np.log(m / (1 - m)).astype(out.b.data.dtype)
    return Sequential(
        Dense(latent_dim, 1200, act="relu", init="irange", std=0.05, seed=rng),
        Dense(1200, 1200, act="relu", init="irange", std=0.05, seed=rng),
        out,
    )


def paper_mlp_discriminator(in_features: int = 784, seed: Seed = None) -> Sequential:
    """Goodfellow et al. 2014, MNIST: maxout 240x5 -> maxout 240x5 -> sigmoid (as logits here), with
    dropout keeping 0.8 of the input and 0.5 of each hidden layer (weights U(-0.005, 0.005))."""
    rng = make_rng(seed)
    return Sequential(
        Dropout(0.2, seed=rng),
        Dense(in_features, 240 * 5, init="irange", std=0.005, seed=rng),
        Maxout(5),
        Dropout(0.5, seed=rng),
        Dense(240, 240 * 5, init="irange", std=0.005, seed=rng),
        Maxout(5),
        Dropout(0.5, seed=rng),
        Dense(240, 1, init="irange", std=0.005, seed=rng),
    )


def _dcgan_plan(size: int) -> tuple[int, list[int]]:
    """The DCGAN's starting side and channel widths for ``size`` x ``size`` images: 28 starts at
    7x7 with widths 128, 64 (sized for MNIST); a power of two >= 8 starts at 4x4 and halves 64 *
    2^k channels with every doubling, down to 64."""
    size = C.check_int("size", size, 1)
    if size == 28:
        return 7, [128, 64]
    if size < 8 or size & (size - 1):
        raise ValueError(f"size: the DCGAN builds 28x28 images or a power of two >= 8, got {size}")
    ups = size.bit_length() - 3  # 4 -> size in that many doublings
    return 4, [64 * 2 ** (ups - 1 - i) for i in range(ups)]


def dcgan_generator(
    latent_dim: int = 100, channels: int = 1, norm: str = "batch", seed: Seed = None, size: int = 28
) -> Sequential:
    """DCGAN (Radford et al. 2016): ``z -> dense (w0, s, s) -> BN ReLU -> [convT(w, w/2, 4, 2, 1) ->
    BN ReLU]... -> convT(64, channels, 4, 2, 1) -> tanh``, no pooling; for 28x28 (MNIST) ``s = 7``
    and widths 128, 64; for a power-of-two ``size`` ``s = 4`` and the widths of ``_dcgan_plan``.

    ``norm="virtual"`` uses virtual batch norm (Salimans et al. 2016) instead of batch norm.
    """
    rng = make_rng(seed)
    if norm not in ("batch", "virtual"):
        raise ValueError(f"norm: expected 'batch' or 'virtual', got {norm!r}")
    Norm = BatchNorm if norm == "batch" else VirtualBatchNorm
    side, widths = _dcgan_plan(size)
    layers: list[Module] = [
        Dense(latent_dim, widths[0] * side * side, init="normal", std=0.02, bias=False, seed=rng),
        Norm(widths[0] * side * side, act="relu"),
        Reshape(widths[0], side, side),
    ]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [ConvTranspose2d(a, b, 4, 2, 1, bias=False, seed=rng), Norm(b, act="relu")]
    layers.append(ConvTranspose2d(widths[-1], channels, 4, 2, 1, act="tanh", seed=rng))
    return Sequential(*layers)


def dcgan_discriminator(channels: int = 1, seed: Seed = None, size: int = 28, norm: str = "batch",
                        minibatch_std: bool = False) -> Sequential:
    """DCGAN discriminator, the generator's mirror: ``conv(channels, 64, 4, 2, 1) -> LeakyReLU(0.2)
    -> [conv(w, 2w, 4, 2, 1) -> norm -> LeakyReLU(0.2)]... -> dense -> 1`` (logits); no pooling.
    For 28x28: widths 64, 128 down to 7x7. ``norm="layer"`` puts layer norm where batch norm was
    (a critic for a gradient penalty, which needs double backward: WGAN-GP's choice).
    ``minibatch_std`` adds the batch's spread as one more channel before the last layer
    (:class:`~pygan.nn.MinibatchStd`, StyleGAN's discriminator)."""
    rng = make_rng(seed)
    if norm not in ("batch", "layer"):
        raise ValueError(f"norm: expected 'batch' or 'layer', got {norm!r}")
    side, widths = _dcgan_plan(size)
    widths = widths[::-1]
    layers: list[Module] = [Conv2d(channels, widths[0], 4, 2, 1, act="leaky_relu", seed=rng)]
    for a, b in zip(widths[:-1], widths[1:]):
        layers.append(Conv2d(a, b, 4, 2, 1, bias=False, seed=rng))
        layers.append(BatchNorm(b, act="leaky_relu") if norm == "batch" else LayerNorm(b, act="leaky_relu"))
    if minibatch_std:
        layers.append(MinibatchStd())
    layers += [Flatten(), Dense((widths[-1] + int(minibatch_std)) * side * side, 1, init="normal", std=0.02, seed=rng)]
    return Sequential(*layers)


@dataclass
class ModelSpec:
    """Two networks and how to train them.

    ``output`` is the generator's output range: ``tanh`` ([-1, 1]), ``sigmoid`` ([0, 1]) or
    ``linear``; data must be scaled to match (``scale_data``). ``optimizer`` names ``adam`` or
    ``sgd`` with ``lr``, ``d_lr_scale`` (the discriminator's rate relative to it), and for the
    paper's SGD schedule ``momentum``, ``final_momentum``, ``momentum_epochs`` and ``lr_decay``. ``d_max_norm`` caps the norm of each discriminator unit's
    weight vector after each update (pylearn2's ``max_col_norm``). ``updates`` is the GAN's
    update order (``alternating`` or ``simultaneous``, see ``pygan.GAN``).
    """

    name: str
    generator: Module
    discriminator: Module
    latent_dim: int
    prior: str
    output: str
    batch_size: int
    optimizer: dict[str, Any] = field(default_factory=dict)
    d_max_norm: float | None = None
    updates: str = "alternating"
    #: the objective the model trains with: ``standard`` (any ``--loss``), or the model's own
    #: (``lapgan``, ``srgan``, ``cyclegan``)
    objective: str = "standard"
    #: the R1 penalty's gamma unless told otherwise
    r1: float = 0.0

    def scale_data(self, x: np.ndarray) -> np.ndarray:
        """Map images in [0, 1] to the generator's output range."""
        return x * 2 - 1 if self.output == "tanh" else x

    def unscale(self, x: np.ndarray) -> np.ndarray:
        """Map generator output back to images in [0, 1] (inverse of ``scale_data``)."""
        return (x + 1) / 2 if self.output == "tanh" else x


def build(
    name: str,
    data_shape: Sequence[int],
    num_classes: int = 0,
    pack: int = 1,
    norm: str = "batch",
    seed: int = 0,
    marginals: np.ndarray | None = None,
    optimizer: str | None = None,
    g_act: str | None = None,
    d_norm: str = "batch",
) -> ModelSpec:
    """Build model ``name`` (one of ``MODELS``) for examples of shape ``data_shape``.

    - ``mlp``: on flat toy data (a 1-D or 2-D point), G ``16 -> 256 x 4 -> d`` (tanh: saturating
      units map whole regions of z onto one mode, so few samples fall on the bridges between
      modes; with leaky ReLU 11% did on the ring of 8, with tanh 3%) and D ``d * pack -> 256 x 4
      -> 1`` (ReLU), Adam 1e-3 decaying to 1e-5, batch 256; on images, G ``100 -> 128 -> 256 -> 512 ->
      1024 -> 784`` (leaky ReLU 0.2, tanh) and D ``784 -> 512 -> 256 -> 1``, Adam 2e-4.
    - ``paper-mlp``: the 2014 paper's MNIST model as its authors' code trains it (uniform z of unit
      variance, simultaneous updates, dropout in D for both players' gradients), batch 100, but
      with Adam 2e-4 instead of the authors' SGD (images only).
    - ``cgan``: ``mlp`` conditioned on one-hot labels (``num_classes`` must be > 0).
    - ``dcgan``: the DCGAN (images only: 28x28, or any power-of-two side >= 8), Adam 2e-4, betas
      (0.5, 0.999); ``d_norm="layer"`` gives its discriminator layer norm in place of batch norm.
    - ``lapgan``: LAPGAN's pyramid 7 -> 14 -> 28 (``pygan.lapgan``), Adam 2e-4, batch 64.
    - ``srgan``: SRGAN's 7x7 -> 28x28 super-resolution (``pygan.translation``), Adam 1e-4 (0.9,
      0.999) as the paper, batch 64.
    - ``cyclegan``: CycleGAN's two generators and two PatchGANs (``pygan.translation``), Adam 2e-4,
      batch 16.
    - ``stylegan``: the StyleGAN generator at 32x32 (``pygan.stylegan``) against the 32x32 DCGAN
      discriminator with layer norm and the minibatch standard deviation, the non-saturating loss
      with R1 (gamma 1), Adam 2e-4 (0.5, 0.99), batch 64.

    ``pack`` widens the discriminator's input for PacGAN; ``num_classes`` adds label inputs;
    ``marginals`` (mean training image) initialises the paper model's output bias.
    ``optimizer="sgd"`` gives ``paper-mlp`` its authors' SGD schedule instead of Adam (lr 0.1,
    momentum 0.5 -> 0.7 over 250 epochs, lr / 1.000004 per step, the discriminator at half rate
    as their halved objective makes it); the other models train with Adam only. ``g_act``
    replaces the toy generator's hidden activation (tanh); the grid of 25 trains better with
    ``leaky_relu``.
    """
    if optimizer not in (None, "adam", "sgd"):
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    if g_act is not None:
        g_act = C.check_activation(g_act, 0.2)[0]
    if optimizer == "sgd" and name != "paper-mlp":
        raise ValueError(f"optimizer: 'sgd' is defined for paper-mlp (its authors' schedule), not {name!r}")
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; expected one of {', '.join(MODELS)}")
    shape = tuple(int(s) for s in data_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"data_shape: expected positive sizes, got {tuple(data_shape)}")
    num_classes = C.check_int("num_classes", num_classes, 0)
    pack = C.check_int("pack", pack, 1)
    if name == "cgan" and num_classes == 0:
        raise ValueError("num_classes: the cgan model needs labelled data (num_classes > 0)")
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    if g_act is not None and (name not in ("mlp", "cgan") or dim > 2):
        raise ValueError(f"g_act: only the toy mlp/cgan generator takes another activation, not {name!r} on {shape}")
    image = len(shape) == 3
    if name in ("mlp", "cgan"):
        if dim <= 2:
            latent = 16
            g = mlp_generator(latent + num_classes, [256] * 4, dim, act=g_act or "tanh", seed=rng)
            d = mlp_discriminator((dim + num_classes) * pack, [256] * 4, act="relu", seed=rng)
            return ModelSpec(name, g, d, latent, "normal", "linear", 256, {"kind": "adam", "lr": 1e-3, "lr_final": 1e-5})
        latent = 100
        g = mlp_generator(latent + num_classes, [128, 256, 512, 1024], dim, out_act="tanh", seed=rng)
        d = mlp_discriminator((dim + num_classes) * pack, [512, 256], seed=rng)
        return ModelSpec(name, g, d, latent, "normal", "tanh", 64, {"kind": "adam", "lr": 2e-4})
    if not image:
        raise ValueError(f"data_shape: the {name} model needs images (C, H, W), got {shape}")
    if name == "paper-mlp":
        g = paper_mlp_generator(100 + num_classes, dim, seed=rng, marginals=marginals)
        d = paper_mlp_discriminator((dim + num_classes) * pack, seed=rng)
        # The authors' SGD (lr 0.1, momentum 0.5 -> 0.7) collapsed to a single stroke within five
        # epochs in every run here; Adam trains the same model to varied digits. Their discriminator
        # objective is the mean of its two terms (half of ours), i.e. half the step under SGD: the
        # discriminator keeps half the generator's rate (at equal rates Adam collapses too).
        opt: dict[str, Any] = {"kind": "adam", "lr": 2e-4, "d_lr_scale": 0.5}
        if optimizer == "sgd":
            opt = {"kind": "sgd", "lr": 0.1, "d_lr_scale": 0.5, "momentum": 0.5, "final_momentum": 0.7,
                   "momentum_epochs": 250, "lr_decay": 1.000004}
        return ModelSpec(name, g, d, 100, "uniform", "sigmoid", 100, opt, updates="simultaneous")
    if name in TRANSLATION_MODELS:
        if shape != (1, 28, 28) or num_classes or pack > 1:
            raise ValueError(f"data_shape: the {name} model is built for unlabelled 1x28x28 digits, got {shape}"
                             + (" with labels or packing" if num_classes or pack > 1 else ""))
        if name == "srgan":
            return ModelSpec(name, SRGenerator(seed=rng), dcgan_discriminator(1, seed=rng), 0, "normal", "tanh", 64,
                             {"kind": "adam", "lr": 1e-4, "betas": (0.9, 0.999)}, objective="srgan")
        return ModelSpec(name, CycleGenerators(seed=rng), CycleDiscriminators(seed=rng), 0, "normal", "tanh", 16,
                         {"kind": "adam", "lr": 2e-4}, objective="cyclegan")
    if name == "lapgan":
        if shape != (1, 28, 28) or num_classes or pack > 1:
            raise ValueError(f"data_shape: the lapgan model is built for unconditional 1x28x28 images, got {shape}"
                             + (" with labels or packing" if num_classes or pack > 1 else ""))
        lg = LapGenerator(seed=rng)
        return ModelSpec(name, lg, LapDiscriminator(seed=rng), lg.latent_dim, "normal", "tanh", 64,
                         {"kind": "adam", "lr": 2e-4}, objective="lapgan")
    if name == "stylegan":
        if num_classes or shape[1] != shape[2]:
            raise ValueError(f"data_shape: the stylegan model is built for unconditional square images, got {shape}")
        sg = StyleGenerator(shape[1], channels=shape[0], seed=rng)
        d = dcgan_discriminator(shape[0] * pack, seed=rng, size=shape[1], norm="layer", minibatch_std=True)
        return ModelSpec(name, sg, d, sg.latent_dim, "normal", "tanh", 64,
                         {"kind": "adam", "lr": 2e-4, "betas": (0.5, 0.99)}, r1=1.0)
    if shape[1] != shape[2]:
        raise ValueError(f"data_shape: the dcgan model is built for square images, got {shape}")
    try:
        _dcgan_plan(shape[1])
    except ValueError as e:
        raise ValueError(f"data_shape: {str(e).split(': ', 1)[1]}") from None
    g = dcgan_generator(100 + num_classes, shape[0], norm=norm, seed=rng, size=shape[1])
    d = dcgan_discriminator((shape[0] + num_classes) * pack, seed=rng, size=shape[1], norm=d_norm)
    return ModelSpec(name, g, d, 100, "normal", "tanh", 64, {"kind": "adam", "lr": 2e-4})
