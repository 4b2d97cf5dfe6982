"""Checkpoints: every tensor of a GAN (parameters, optimizer state, buffers) plus its counters and
RNG states, in one file written atomically and validated on load. No pickle.

File layout (little-endian)::

    b"PYGANCKP"  magic (8 bytes)
    u32          format version (``FORMAT_VERSION``)
    u64          header length H
    H bytes      header: UTF-8 JSON {"meta": {...}, "tensors": [{name, dtype, shape, offset, nbytes, crc32}]}
    u32          CRC-32 of the header
    ...          tensor bytes, each at its ``offset`` (64-byte aligned), C order

Every tensor carries a CRC-32, so a flipped bit anywhere is found; a truncated file, a future
version, an unknown dtype or a shape that disagrees with the model each raise
:class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .backend import get_backend, to_numpy
from .gan import GAN, Player
from .nn.module import Module
from .optim import SGD, Optimizer

MAGIC = b"PYGANCKP"
#: 2: tensors named by player and dotted module path (``generator.0.w``, ``discriminator.optimizer.m.3.b``);
#: 1: the flat optimizer buffers and buffers by module index (still read)
FORMAT_VERSION = 2
_ALIGN = 64
_DTYPES = {"float16", "float32", "float64", "int64", "uint8"}
#: Refuse headers longer than this (a real one is a few kB per hundred tensors).
MAX_HEADER_BYTES = 64 << 20


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, of another version, or does not fit the model."""


def save(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed and fsynced, and then
    renamed over ``path``; a crash at any moment leaves either the old file or the new one.
    """
    p = Path(path)
    entries = []
    offset = 0
    arrays = []
    for name, t in tensors.items():
        a = np.asarray(to_numpy(t))
        a = a if a.flags.c_contiguous else a.copy(order="C")
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"tensors[{name!r}]: dtype {a.dtype} cannot be checkpointed (allowed: {sorted(_DTYPES)})")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        offset = -(-offset // _ALIGN) * _ALIGN
        raw = a.tobytes()
        entries.append(
            {"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset, "nbytes": len(raw), "crc32": zlib.crc32(raw)}
        )
        arrays.append((offset, raw))
        offset += len(raw)
    header = json.dumps({"meta": meta, "tensors": entries}, sort_keys=True).encode()
    prefix = MAGIC + struct.pack("<IQ", FORMAT_VERSION, len(header)) + header + struct.pack("<I", zlib.crc32(header))
    base = -(-len(prefix) // _ALIGN) * _ALIGN
    p.parent.mkdir(parents=True, exist_ok=True)
    for stale in p.parent.glob(f".{p.name}.*.tmp"):  # left by a writer that was killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(prefix)
            f.write(b"\0" * (base - len(prefix)))
            pos = 0
            for off, raw in arrays:
                f.write(b"\0" * (off - pos))
                f.write(raw)
                pos = off + len(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(p.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a checkpoint; returns ``(tensors, meta)`` (``meta["format_version"]`` is the file's format)."""
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read: {e.strerror or e}") from None

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{p}: {msg}")

    if len(blob) < 20 or blob[:8] != MAGIC:
        raise bad("not a pygan checkpoint (bad magic bytes)" if len(blob) >= 8 else "truncated: too short to be a checkpoint")
    version, hlen = struct.unpack_from("<IQ", blob, 8)
    if version > FORMAT_VERSION:
        raise bad(f"written in checkpoint format {version}, newer than this pygan reads ({FORMAT_VERSION}); upgrade pygan")
    if version < 1:
        raise bad(f"unknown checkpoint format version {version}")
    if hlen > MAX_HEADER_BYTES or 20 + hlen + 4 > len(blob):
        raise bad(f"truncated or corrupt: header of {hlen} bytes does not fit in the {len(blob)}-byte file")
    header = blob[20 : 20 + hlen]
    (crc,) = struct.unpack_from("<I", blob, 20 + hlen)
    if zlib.crc32(header) != crc:
        raise bad("corrupt header (CRC-32 mismatch)")
    try:
        doc = json.loads(header)
        meta, entries = doc["meta"], doc["tensors"]
    except (ValueError, KeyError, TypeError) as e:
        raise bad(f"unreadable header: {e}") from None
    if not isinstance(meta, dict):
        raise bad("unreadable header: meta is not an object")
    meta["format_version"] = version
    tensors: dict[str, np.ndarray] = {}
    for e in entries:
        try:
            name, dtype, shape = str(e["name"]), str(e["dtype"]), tuple(int(s) for s in e["shape"])
            offset, nbytes, tcrc = int(e["offset"]), int(e["nbytes"]), int(e["crc32"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"malformed tensor entry {e!r}") from None
        if dtype not in _DTYPES:
            raise bad(f"tensor {name!r} has unsupported dtype {dtype!r}")
        dt = np.dtype(dtype).newbyteorder("<")
        if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.float64)) * dt.itemsize != nbytes:
            raise bad(f"tensor {name!r}: shape {shape} of {dtype} does not match its {nbytes} bytes")
        start = -(-(20 + hlen + 4) // _ALIGN) * _ALIGN + offset
        if offset < 0 or start + nbytes > len(blob):
            raise bad(f"truncated: tensor {name!r} needs bytes {start}..{start + nbytes}, the file has {len(blob)}")
        raw = blob[start : start + nbytes]
        if zlib.crc32(raw) != tcrc:
            raise bad(f"tensor {name!r} is corrupt (CRC-32 mismatch)")
        tensors[name] = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)
    return tensors, meta


# ---------------------------------------------------------------------------------------------
# GAN state
# ---------------------------------------------------------------------------------------------
def _optimizer_slots(opt: Optimizer) -> dict[str, Any]:
    """The optimizer's per-parameter state buffers (flat, aligned with ``opt.flat``) by name."""
    return {slot: getattr(opt, slot) for slot in opt.slots}


def _optimizer_meta(opt: Optimizer) -> dict[str, Any]:
    meta: dict[str, Any] = {"kind": type(opt).__name__, "steps": opt.steps, "lr": opt.lr}
    if isinstance(opt, SGD):
        meta["momentum"] = opt.momentum
    return meta


def _param_names(player: Player) -> list[str]:
    """The name of each of the optimizer's parameters: its dotted path in the player's module."""
    names = {id(p): n for n, p in player.module.named_parameters()}
    return [names.get(id(p), f"param{i}") for i, p in enumerate(player.optimizer.params)]


def _module_rngs(module: Module) -> dict[str, np.random.Generator]:
    return {name: m._rng for name, m in module.named_modules() if isinstance(getattr(m, "_rng", None), np.random.Generator)}


def gan_state(gan: GAN) -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything needed to continue training ``gan`` bit for bit, by name: ``(tensors, meta)``.

    Each player's module state dict is stored under ``<player>.<dotted name>``, its optimizer's
    state per parameter under ``<player>.optimizer.<slot>.<dotted name>``, the generator's weight
    average (``ema``) under ``generator.ema.<dotted name>``.
    """
    tensors: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "steps": gan.steps, "epoch": gan.epoch, "batch_in_epoch": gan.batch_in_epoch,
        "rng": gan.rng.bit_generator.state, "module_rngs": {}, "optimizers": {},
    }
    for pname, player in gan.players.items():
        for key, value in player.module.state_dict().items():
            tensors[f"{pname}.{key}"] = value
        opt = player.optimizer
        names = _param_names(player)
        for slot, flat in _optimizer_slots(opt).items():
            offset = 0
            for name, p in zip(names, opt.params):
                size = int(p.data.size)
                tensors[f"{pname}.optimizer.{slot}.{name}"] = flat[offset : offset + size].reshape(p.data.shape)
                offset += size
        meta["optimizers"][pname] = _optimizer_meta(opt)
        if pname == "generator" and gan.ema is not None:  # the weight average, by parameter name
            offset = 0
            for name, p in zip(names, opt.params):
                size = int(p.data.size)
                tensors[f"generator.ema.{name}"] = gan.ema[offset : offset + size].reshape(p.data.shape)
                offset += size
        for name, rng in _module_rngs(player.module).items():
            meta["module_rngs"][f"{pname}.{name}"] = rng.bit_generator.state
    if gan.reference_z is not None:
        tensors["reference_z"] = gan.reference_z
    return tensors, meta


def _gan_state_v1(gan: GAN) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same state under format 1's names (flat optimizer buffers, buffers by module index), to
    read checkpoints of the previous release; ``meta`` maps format 1's keys to the players."""
    tensors: dict[str, Any] = {}
    rngs: dict[str, np.random.Generator] = {}
    optimizers: dict[str, str] = {}
    for prefix, pname in (("g", "generator"), ("d", "discriminator")):
        player = gan.players[pname]
        opt = player.optimizer
        tensors[f"{prefix}_opt.params"] = opt.flat
        optimizers[f"{prefix}_opt"] = pname
        for slot, flat in _optimizer_slots(opt).items():
            tensors[f"{prefix}_opt.{slot}"] = flat
        for i, module in enumerate(player.module.modules()):
            for k, v in module._buffers.items():
                tensors[f"{prefix}.{i}.{k}"] = v
            if isinstance(getattr(module, "_rng", None), np.random.Generator):
                rngs[f"{prefix}.{i}"] = module._rng
    if gan.reference_z is not None:
        tensors["reference_z"] = gan.reference_z
    return tensors, {"rngs": rngs, "optimizers": optimizers}


def save_gan(
    path: str | os.PathLike[str], gan: GAN, config: dict[str, Any] | None = None, run: dict[str, Any] | None = None
) -> None:
    """Checkpoint ``gan`` (and a JSON ``config`` describing how to rebuild it) atomically; ``run``
    is the trainer's own JSON state (the best validation score so far), stored as ``meta["run"]``."""
    tensors, meta = gan_state(gan)
    meta["config"] = config or {}
    meta["run"] = run or {}
    save(path, tensors, meta)


def restore_gan(path: str | os.PathLike[str], gan: GAN) -> dict[str, Any]:
    """Load a checkpoint into ``gan`` (built the same way as the one saved) by tensor name; returns
    its config. Checkpoints of format 1 (the previous release) load too.

    Every tensor's shape and dtype must match the model's, and the optimizers must be of the
    saved kinds; otherwise :class:`CheckpointError` names the file and the first mismatch.
    """
    tensors, meta = load(path)
    version = meta["format_version"]

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{path}: {msg}")

    if version == 1:
        expected, v1 = _gan_state_v1(gan)
        opt_meta = {pname: meta.get(key) for key, pname in v1["optimizers"].items()}
        rng_targets = v1["rngs"]
    else:
        expected, _ = gan_state(gan)
        opt_meta = meta.get("optimizers", {})
        rng_targets = {f"{p}.{n}": r for p, player in gan.players.items() for n, r in _module_rngs(player.module).items()}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise bad(f"(format {version}) does not fit this model: missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    for name, target in expected.items():
        src = tensors[name]
        if tuple(src.shape) != tuple(target.shape) or src.dtype != np.dtype(target.dtype):
            raise bad(
                f"(format {version}) tensor {name!r} is {src.dtype}{tuple(src.shape)} in the file, the model has "
                f"{np.dtype(target.dtype)}{tuple(target.shape)}"
            )
    try:
        for pname, player in gan.players.items():
            m = opt_meta[pname]
            if m["kind"] != type(player.optimizer).__name__:
                raise bad(f"the {pname}'s optimizer was a {m['kind']}, the model has {type(player.optimizer).__name__}")
        xp = get_backend().xp
        for name, target in expected.items():
            target[...] = xp.asarray(tensors[name])
        for pname, player in gan.players.items():
            m, opt = opt_meta[pname], player.optimizer
            opt.steps = int(m["steps"])
            opt.lr = float(m["lr"])
            if isinstance(opt, SGD):
                opt.momentum = float(m["momentum"])
        gan.steps = int(meta["steps"])
        gan.epoch = int(meta["epoch"])
        gan.batch_in_epoch = int(meta["batch_in_epoch"])
        gan.rng.bit_generator.state = meta["rng"]
        for key, rng in rng_targets.items():
            rng.bit_generator.state = meta["module_rngs"][key]
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise bad(f"malformed training state (format {version}): {type(e).__name__}: {e}") from None
    config = meta.get("config", {})
    return config if isinstance(config, dict) else {}
