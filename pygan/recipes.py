"""What a run is: the model a ``pygan train`` configuration names, rebuilt the same way by
``train --resume``, ``sample``, ``eval`` and :func:`load_generator`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import data, io, models
from .gan import TrainedGenerator
from .nn.layers import VirtualBatchNorm, spectral_norm


def data_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """One example's shape: a 1-D or 2-D point for toy data, ``(1, S, S)`` for images (S the run's
    ``image_size``, 28 unless set)."""
    if config["dataset"] in data.TOY_DATASETS:
        return (data.toy_modes(config["dataset"])[0].shape[1],)
    side = config.get("image_size") or 28
    return (1, side, side)


def num_classes(config: dict[str, Any]) -> int:
    """Label classes of a conditional run (0 unless the model is ``cgan``)."""
    if config["model"] != "cgan":
        return 0
    return len(data.toy_modes(config["dataset"])[0]) if config["dataset"] in data.TOY_DATASETS else 10


def _g_act(config: dict[str, Any]) -> str | None:
    """The toy generator's activation a run was trained with: configurations written before the
    ``g_act`` key existed come from runs whose toy generator used leaky ReLU."""
    if "g_act" in config:
        return config["g_act"]
    toy = config["dataset"] in data.TOY_DATASETS
    return "leaky_relu" if toy and config["model"] in ("mlp", "cgan") else None


def build_spec(config: dict[str, Any], marginals: np.ndarray | None = None) -> models.ModelSpec:
    """The two networks (freshly initialised) and how to train them, for a run configuration."""
    spec = models.build(
        config["model"], data_shape(config), num_classes=num_classes(config), pack=config["pack"],
        norm=config["norm"], seed=config["seed"], marginals=marginals,
        optimizer=None if config.get("optimizer") == "rmsprop" else config.get("optimizer"), g_act=_g_act(config),
        d_norm="layer" if config["loss"] == "wgan-gp" or config.get("r1") else "batch",
    )
    if config.get("spectral_norm"):
        spectral_norm(spec.discriminator, seed=config["seed"] + 1)
    return spec


def load_generator(path: str | os.PathLike[str]) -> TrainedGenerator:
    """A trained run's generator, ready for inference, from its checkpoint (either format): only the
    generator is restored (no discriminator state, no optimizers, no GAN), with its weight average
    when the run kept one (``ema``).

    ``sample(n, labels=None, seed=None)`` then gives ``n`` samples as a host array in data units
    (points for toy data; images in [0, 1] of shape ``(n, 1, 28, 28)``).
    """
    tensors, meta = io.load(path)
    config = meta.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise io.CheckpointError(f"{path}: the checkpoint has no run configuration (not written by pygan train)")
    spec = build_spec(config)
    g = spec.generator
    try:
        if meta["format_version"] == 1:  # flat parameters in order, buffers by module index
            flat = tensors["g_opt.params"]
            offset = 0
            for p in g.parameters():
                p.data[...] = flat[offset : offset + p.data.size].reshape(p.data.shape)
                offset += p.data.size
            if offset != flat.size:
                raise ValueError(f"g_opt.params holds {flat.size} values, the generator has {offset}")
            state = {n: p.data for n, p in g.named_parameters()}
            for i, (mname, m) in enumerate(g.named_modules()):
                for k in m._buffers:
                    state[f"{mname}.{k}" if mname else k] = tensors[f"g.{i}.{k}"]
            g.load_state_dict(state)
        else:
            state = {k[len("generator."):]: v for k, v in tensors.items()
                     if k.startswith("generator.") and not k.startswith(("generator.optimizer.", "generator.ema."))}
            # a run that kept a weight average samples with it
            state.update({k[len("generator.ema."):]: v for k, v in tensors.items() if k.startswith("generator.ema.")})
            g.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise io.CheckpointError(f"{path}: the generator does not fit its configuration: {e}") from None
    has_vbn = any(isinstance(m, VirtualBatchNorm) for m in g.modules())
    if has_vbn and "reference_z" not in tensors:
        raise io.CheckpointError(f"{path}: a virtual-batch-norm generator needs its reference batch (reference_z)")
    return TrainedGenerator(
        g, latent_dim=spec.latent_dim, prior=config.get("prior") or spec.prior, num_classes=num_classes(config),
        reference_z=tensors.get("reference_z") if has_vbn else None,
        unscale=None if config["dataset"] in data.TOY_DATASETS else spec.unscale,
        image_shape=None if config["dataset"] in data.TOY_DATASETS else data_shape(config),
    )
