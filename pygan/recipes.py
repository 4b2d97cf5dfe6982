"""What a run is: the model a ``pygan train`` configuration names, rebuilt the same way by
``train --resume``, ``sample``, ``eval`` and :func:`load_generator`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import data, io, models
from ._files import atomic_write
from .backend import to_numpy
from .gan import TrainedGenerator
from .nn.layers import VirtualBatchNorm, spectral_norm


#: A run folder's last checkpoint, rewritten each epoch (and on Ctrl-C or SIGTERM).
CHECKPOINT = "checkpoint.safetensors"
#: The checkpoint of the epoch with the best validation score so far (``--eval-every``).
BEST = "best.safetensors"
#: The names runs of pygan's previous checkpoint format used: still read, and converted by --resume.
LEGACY_NAMES = {CHECKPOINT: "checkpoint.pygan", BEST: "best.pygan"}


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is not a folder; a run folder's best checkpoint, else its last (either
    format); :class:`~pygan.io.CheckpointError` for a folder without one."""
    p = Path(path)
    if not p.is_dir():
        return p
    for name in (BEST, CHECKPOINT, LEGACY_NAMES[BEST], LEGACY_NAMES[CHECKPOINT]):
        if (p / name).is_file():
            return p / name
    raise io.CheckpointError(f"{p}: a folder without {BEST} or {CHECKPOINT} (not a pygan run)")


def data_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """One example's shape: a 1-D or 2-D point for toy data, ``(C, S, S)`` for images (S the run's
    ``image_size``, 28 unless set; C its ``channels``: 1 unless a folder of colour images)."""
    if config["dataset"] in data.TOY_DATASETS:
        return (data.toy_modes(config["dataset"])[0].shape[1],)
    side = config.get("image_size") or 28
    return (config.get("channels") or 1, side, side)


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


#: The formats ``pygan export`` writes a generator in.
EXPORT_FORMATS = ("safetensors", "npz")
#: ``meta["contents"]`` of a file holding a generator alone (``pygan export``), not a whole run.
GENERATOR_ONLY = "generator"


def restore_generator(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any], g: Any) -> None:
    """Load the generator's weights (its weight average when the run kept one) and buffers from a
    checkpoint's ``tensors`` (any format, or a generator alone) into the module ``g``; raises
    :class:`~pygan.io.CheckpointError` naming ``path`` if they do not fit."""
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


def run_config(path: str | os.PathLike[str], meta: dict[str, Any]) -> dict[str, Any]:
    """The run configuration of a checkpoint's ``meta``; :class:`~pygan.io.CheckpointError`
    naming ``path`` for a file pygan train did not write."""
    config = meta.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise io.CheckpointError(f"{path}: the checkpoint has no run configuration (not written by pygan train)")
    return config


def load_generator(path: str | os.PathLike[str]) -> TrainedGenerator:
    """A trained run's generator, ready for inference, from its checkpoint (any format; a run
    folder: its best checkpoint, else its last) or from a generator exported alone (``pygan
    export``): only the generator is restored (no discriminator state, no optimizers, no GAN), with
    its weight average when the run kept one.

    ``sample(n, labels=None, seed=None)`` then gives ``n`` samples as a host array in data units
    (points for toy data; images in [0, 1] of shape ``(n, 1, 28, 28)``).
    """
    path = checkpoint_file(path)
    return _trained(path, *io.load(path))


def _trained(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> TrainedGenerator:
    config = run_config(path, meta)
    spec = build_spec(config)
    g = spec.generator
    restore_generator(path, tensors, meta, g)
    has_vbn = any(isinstance(m, VirtualBatchNorm) for m in g.modules())
    return TrainedGenerator(
        g, latent_dim=spec.latent_dim, prior=config.get("prior") or spec.prior, num_classes=num_classes(config),
        reference_z=reference_batch(path, tensors) if has_vbn else None,
        unscale=None if config["dataset"] in data.TOY_DATASETS else spec.unscale,
        image_shape=None if config["dataset"] in data.TOY_DATASETS else data_shape(config),
    )


def reference_batch(path: str | os.PathLike[str], tensors: dict[str, np.ndarray],
                    shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A virtual-batch-norm generator's reference batch from a checkpoint's ``tensors`` (of
    ``shape`` when given); :class:`~pygan.io.CheckpointError` naming ``path`` if it is not there."""
    ref = tensors.get("reference_z")
    if ref is None or (shape is not None and ref.shape != tuple(shape)):
        raise io.CheckpointError(f"{path}: a virtual-batch-norm generator needs its reference batch (reference_z)")
    return ref


def folder_images(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``folder:PATH`` run's images at its size and channels (the folder's when unset) as
    (training, validation, test): :func:`pygan.data.split_folder`."""
    folder = data.folder_path(config["dataset"])
    if folder is None:
        raise ValueError(f"config: dataset {config['dataset']!r} is not a folder:PATH")
    return data.split_folder(data.load_folder(folder, data_shape(config)[1], config.get("channels")))


def export_generator(path: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str = "safetensors") -> dict[str, Any]:
    """Write the generator of the checkpoint at ``path`` alone to ``out``: the weights it samples
    with (its weight average when the run kept one), its buffers, a virtual-batch-norm reference
    batch, and the run's configuration; returns the file's metadata.

    ``fmt="safetensors"``: tensors named ``generator.<dotted name>``, the configuration and counters
    in the header's metadata; :func:`load_generator`, ``pygan sample`` and ``pygan eval`` read it.
    ``fmt="npz"``: the same arrays by name for ``numpy.load``, the metadata as JSON text in
    ``__meta__`` (a string array, so ``allow_pickle`` stays off).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    tensors, meta = io.load(path)
    config = run_config(path, meta)
    gen = _trained(path, tensors, meta)
    state = {f"generator.{k}": to_numpy(v) for k, v in gen.generator.state_dict().items()}
    if gen.reference_z is not None:
        state["reference_z"] = to_numpy(gen.reference_z)
    info = {"config": config, "contents": GENERATOR_ONLY,
            **{k: meta[k] for k in ("steps", "epoch") if k in meta}}
    target = Path(out)
    if fmt == "safetensors":
        io.save(target, state, info)
    else:
        with atomic_write(target) as f:
            np.savez(f, __meta__=np.array(json.dumps(info, sort_keys=True)), **state)
    return info
