"""Checkpoints: every tensor of a GAN (parameters, optimizer state, buffers) plus its counters and
RNG states, in one file written atomically and validated on load. No pickle.

The file is a safetensors file (format 3), readable by the ``safetensors`` package and the tools
built on it (little-endian)::

    u64          header length H
    H bytes      header: UTF-8 JSON, padded with spaces to a multiple of 8 bytes:
                 {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                  "__metadata__": {"format": "pygan", "format_version": "3", "meta": JSON text,
                                   "crc32": JSON text {name: CRC-32 of its bytes}, "header_crc32": "..."}}
    ...          the tensors' bytes, C order, back to back (widest dtypes first)

``meta`` holds the run's configuration, counters and RNG states; ``header_crc32`` is the CRC-32 of
the header (without that key) in canonical JSON, so a flipped bit anywhere in the file is found.

The previous layout (formats 1 and 2: magic ``PYGANCKP``, version, header, CRC, 64-byte aligned
tensors) still loads. A truncated file, a future version, an unknown dtype or a shape that
disagrees with the model each raise :class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write, open_regular, remove_stale_temps
from .backend import get_backend, to_numpy
from .backend._checks import check_real
from .gan import GAN, Player
from .nn.module import Module
from .optim import SGD, Optimizer

#: 3: safetensors; 2: pygan's own layout, tensors named by player and dotted module path
#: (``generator.0.w``, ``discriminator.optimizer.m.3.b``); 1: the flat optimizer buffers and
#: buffers by module index. 1 and 2 are still read.
FORMAT_VERSION = 3
#: The magic bytes of formats 1 and 2.
LEGACY_MAGIC = b"PYGANCKP"
_LEGACY_ALIGN = 64
#: numpy dtype name -> safetensors dtype code, for the dtypes a checkpoint may hold.
_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "int64": "I64", "uint8": "U8"}
_CODES = {code: name for name, code in _DTYPES.items()}
#: Refuse headers longer than this (a real one is a few kB per hundred tensors).
MAX_HEADER_BYTES = 64 << 20


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, of another version, or does not fit the model."""


def _canonical(doc: dict[str, Any]) -> bytes:
    """The header as the CRC covers it: sorted keys, no spaces, without ``header_crc32``."""
    meta = {k: v for k, v in doc.get("__metadata__", {}).items() if k != "header_crc32"}
    return json.dumps({**doc, "__metadata__": meta}, sort_keys=True, separators=(",", ":")).encode()


def save(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and the JSON-serialisable ``meta`` to ``path`` atomically, as safetensors.

    The data goes to a temporary file in the same folder, is flushed and fsynced, and then
    renamed over ``path``; a crash at any moment leaves either the old file or the new one.
    """
    p = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("tensors: the name '__metadata__' is the safetensors header's own")
        a = np.asarray(to_numpy(t))
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"tensors[{name!r}]: dtype {a.dtype} cannot be checkpointed (allowed: {sorted(_DTYPES)})")
        arrays[name] = a.astype(a.dtype.newbyteorder("<"), order="C", copy=False)
    # the widest dtypes first keeps every tensor aligned to its itemsize after the 8-byte header
    layout = sorted(arrays, key=lambda n: -arrays[n].dtype.itemsize)
    doc: dict[str, Any] = {}
    offset = 0
    for name in layout:
        nbytes = arrays[name].nbytes
        doc[name] = {"dtype": _DTYPES[arrays[name].dtype.name], "shape": list(arrays[name].shape),
                     "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    doc = {name: doc[name] for name in arrays}  # the header lists them in the caller's order
    crcs = {name: zlib.crc32(a.reshape(-1).view(np.uint8)) for name, a in arrays.items()}
    doc["__metadata__"] = {"format": "pygan", "format_version": str(FORMAT_VERSION),
                           "meta": json.dumps(meta, sort_keys=True), "crc32": json.dumps(crcs, sort_keys=True)}
    doc["__metadata__"]["header_crc32"] = str(zlib.crc32(_canonical(doc)))
    header = json.dumps(doc, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    p.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(p, ".tmp")  # left by writers killed mid-write; a live writer's are kept
    with atomic_write(p, fsync=True) as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for name in layout:
            f.write(arrays[name].reshape(-1).view(np.uint8))
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


def _nat(v: Any, what: str, bad: Any, limit: int = 1 << 62) -> int:
    """A header integer: a JSON int (not a bool) in ``[0, limit]``."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
        raise bad(f"invalid header value: {what} = {v!r} (expected a whole number in 0 .. {limit})")
    return v


#: One tensor of a file: (name, dtype, shape, offset, nbytes, crc32).
_Entry = tuple[str, np.dtype, tuple[int, ...], int, int, int]


def _entry(name: Any, dtype: Any, shape: Any, offset: Any, nbytes: Any, crc: Any, bad: Any) -> _Entry:
    """One tensor entry, every value checked (dtype is a numpy dtype name)."""
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise bad(f"invalid tensor name {str(name)[:200]!r}")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise bad(f"tensor {name!r} has unsupported dtype {str(dtype)[:50]!r}")
    if not isinstance(shape, list) or len(shape) > 32:
        raise bad(f"tensor {name!r}: invalid shape {str(shape)[:200]}")
    dims = tuple(_nat(d, f"{name}.shape", bad) for d in shape)
    offset, nbytes = _nat(offset, f"{name}.offset", bad), _nat(nbytes, f"{name}.nbytes", bad)
    crc = _nat(crc, f"{name}.crc32", bad, 0xFFFFFFFF)
    dt = np.dtype(dtype).newbyteorder("<")
    if math.prod(dims) * dt.itemsize != nbytes:
        raise bad(f"tensor {name!r}: shape {dims} of {dtype} does not match its {nbytes} bytes")
    return name, dt, dims, offset, nbytes, crc


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON here")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError(f"a key appears twice: {next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))[:200]!r}")
    return out


def _json(text: bytes | str, what: str, bad: Any) -> Any:
    """Parse JSON text from a file: no NaN or Infinity, no key twice in one object."""
    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise bad(f"unreadable {what}: {type(e).__name__}: {str(e)[:200]}") from None


def load(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a checkpoint; returns ``(tensors, meta)`` (``meta["format_version"]`` is the file's format).

    Only a regular file is read, and only the bytes its header accounts for (the header at most
    ``MAX_HEADER_BYTES``, each tensor's bytes checked against the file's size before they are read),
    so memory follows the file. Every header value is checked (types, ranges, unique names,
    byte ranges), every tensor's CRC-32 too, and float tensors must be finite.
    """
    p = Path(path)

    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{p}: {msg}")

    try:
        f, size = open_regular(p)
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read: {e.strerror or e}") from None
    with f:
        try:
            head = f.read(8)
            if len(head) < 8:
                raise bad("truncated: too short to be a checkpoint")
            if head == LEGACY_MAGIC:
                meta, entries, base = _read_legacy_header(f, size, bad)
            else:
                meta, entries, base = _read_safetensors_header(f, struct.unpack("<Q", head)[0], size, bad)
            return _read_tensors(f, size, base, entries, bad), meta
        except OSError as e:
            raise bad(f"cannot read: {e.strerror or e}") from None


def _read_safetensors_header(f: Any, hlen: int, size: int, bad: Any) -> tuple[dict[str, Any], list[_Entry], int]:
    if hlen > MAX_HEADER_BYTES:
        raise bad(f"not a checkpoint: neither safetensors (a header of {hlen} bytes) nor pygan's previous format")
    if 8 + hlen > size:
        raise bad(f"truncated: a header of {hlen} bytes does not fit in the {size}-byte file")
    header = f.read(hlen)
    if len(header) != hlen:
        raise bad("truncated: the file ends inside its header")
    if not header.startswith(b"{"):
        raise bad("not a checkpoint: neither safetensors (its header is not a JSON object) nor pygan's previous format")
    doc = _json(header, "header", bad)
    if not isinstance(doc, dict):
        raise bad("unreadable header: expected a JSON object")
    info = doc.get("__metadata__")
    if not isinstance(info, dict) or info.get("format") != "pygan":
        raise bad("a safetensors file without pygan's metadata (not written by pygan)")
    if not all(isinstance(v, str) for v in info.values()) or not {"format_version", "meta", "crc32", "header_crc32"} <= set(info):
        raise bad("malformed metadata: expected the strings format_version, meta, crc32 and header_crc32")
    version = info["format_version"]
    if not version.isdigit() or len(version) > 9:
        raise bad(f"unknown checkpoint format version {version[:20]!r}")
    if int(version) > FORMAT_VERSION:
        raise bad(f"written in checkpoint format {version}, newer than this pygan reads ({FORMAT_VERSION}); upgrade pygan")
    if int(version) < 3:
        raise bad(f"unknown checkpoint format version {version} in a safetensors file")
    crcs = _json(info["crc32"], "metadata crc32", bad)
    if not isinstance(crcs, dict):
        raise bad("malformed metadata: crc32 is not an object")
    entries = []
    for name, e in doc.items():
        if name == "__metadata__":
            continue
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"malformed tensor entry {name[:200]!r}: {str(e)[:200]}")
        span = e["data_offsets"]
        if not isinstance(span, list) or len(span) != 2:
            raise bad(f"invalid header value: {name}.data_offsets = {str(span)[:100]} (expected [begin, end])")
        begin, end = (_nat(v, f"{name}.data_offsets", bad) for v in span)
        if end < begin:
            raise bad(f"invalid header value: {name}.data_offsets = {span} (end before begin)")
        if name not in crcs:
            raise bad(f"tensor {name!r} has no CRC-32 in the metadata")
        code = e["dtype"]
        dtype = _CODES.get(code) if isinstance(code, str) else None
        if dtype is None:
            raise bad(f"tensor {name!r} has unsupported dtype {str(code)[:50]!r}")
        entries.append(_entry(name, dtype, e["shape"], begin, end - begin, crcs[name], bad))
    if set(crcs) != {e[0] for e in entries}:
        raise bad(f"malformed metadata: CRC-32s of tensors the file lacks: {sorted(set(crcs) - {e[0] for e in entries})[:5]}")
    pos = 0  # safetensors: the tensors tile the data section with neither gaps nor overlaps
    for name, _, _, offset, nbytes, _ in sorted(entries, key=lambda t: (t[3], t[4])):
        if offset != pos:
            raise bad(f"tensor {name!r}: its bytes {'overlap another tensor' if offset < pos else 'leave a gap'}")
        pos = offset + nbytes
    if 8 + hlen + pos > size:
        raise bad(f"truncated: the tensors need {8 + hlen + pos} bytes, the file has {size}")
    if 8 + hlen + pos < size:
        raise bad(f"corrupt: {size - 8 - hlen - pos} bytes after the last tensor")
    if str(zlib.crc32(_canonical(doc))) != info["header_crc32"]:
        raise bad("corrupt header (CRC-32 mismatch)")
    meta = _json(info["meta"], "metadata meta", bad)
    if not isinstance(meta, dict):
        raise bad("malformed metadata: meta is not an object")
    meta["format_version"] = int(version)
    return meta, entries, 8 + hlen


def _read_legacy_header(f: Any, size: int, bad: Any) -> tuple[dict[str, Any], list[_Entry], int]:
    """Formats 1 and 2: magic, u32 version, u64 header length, JSON header, its CRC-32, tensors
    64-byte aligned after it."""
    rest = f.read(12)
    if len(rest) < 12:
        raise bad("truncated: too short to be a checkpoint")
    version, hlen = struct.unpack("<IQ", rest)
    if version not in (1, 2):
        raise bad(f"unknown checkpoint format version {version} in pygan's previous layout (it had 1 and 2)")
    if hlen > MAX_HEADER_BYTES or 20 + hlen + 4 > size:
        raise bad(f"truncated or corrupt: header of {hlen} bytes does not fit in the {size}-byte file")
    header = f.read(hlen)
    crc_bytes = f.read(4)
    if len(header) != hlen or len(crc_bytes) != 4:
        raise bad("truncated: the file ends inside its header")
    if zlib.crc32(header) != struct.unpack("<I", crc_bytes)[0]:
        raise bad("corrupt header (CRC-32 mismatch)")
    doc = _json(header, "header", bad)
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("tensors"), list):
        raise bad("unreadable header: expected an object with 'meta' (an object) and 'tensors' (a list)")
    entries, names = [], set()
    for e in doc["tensors"]:
        if not isinstance(e, dict) or not {"name", "dtype", "shape", "offset", "nbytes", "crc32"} <= set(e):
            raise bad(f"malformed tensor entry {str(e)[:200]}")
        entry = _entry(e["name"], e["dtype"], e["shape"], e["offset"], e["nbytes"], e["crc32"], bad)
        if entry[0] in names:
            raise bad(f"tensor {entry[0]!r} appears twice")
        names.add(entry[0])
        entries.append(entry)
    end = 0
    for name, _, _, offset, nbytes, _ in sorted(entries, key=lambda t: t[3]):
        if offset < end:
            raise bad(f"tensor {name!r}: its bytes overlap another tensor's")
        end = offset + nbytes
    meta = doc["meta"]
    meta["format_version"] = version
    return meta, entries, -(-(20 + hlen + 4) // _LEGACY_ALIGN) * _LEGACY_ALIGN


def _read_tensors(f: Any, size: int, base: int, entries: list[_Entry], bad: Any) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for name, dt, shape, offset, nbytes, tcrc in entries:
        start = base + offset
        if start + nbytes > size:
            raise bad(f"truncated: tensor {name!r} needs bytes {start}..{start + nbytes}, the file has {size}")
        f.seek(start)
        raw = f.read(nbytes)
        if len(raw) != nbytes or zlib.crc32(raw) != tcrc:
            raise bad(f"tensor {name!r} is corrupt (CRC-32 mismatch)")
        a = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=True).reshape(shape)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise bad(f"tensor {name!r} contains NaN or Inf")
        tensors[name] = a
    return tensors


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
    # every value is checked before anything changes, so a bad file leaves the model as it was
    counters = {k: _nat(meta.get(k), k, bad) for k in ("steps", "epoch", "batch_in_epoch")}
    optimizers: dict[str, tuple[int, float, float | None]] = {}
    for pname, player in gan.players.items():
        m = opt_meta.get(pname) if isinstance(opt_meta, dict) else None
        if not isinstance(m, dict):
            raise bad(f"malformed training state (format {version}): no optimizer state for the {pname}")
        if m.get("kind") != type(player.optimizer).__name__:
            raise bad(f"the {pname}'s optimizer was a {str(m.get('kind'))[:50]}, the model has {type(player.optimizer).__name__}")
        try:
            lr = check_real(f"{pname} optimizer lr", m.get("lr"), 0.0)
            momentum = check_real(f"{pname} optimizer momentum", m.get("momentum"), 0.0, 1.0) if isinstance(player.optimizer, SGD) else None
        except (TypeError, ValueError) as e:
            raise bad(f"invalid header value: {e}") from None
        optimizers[pname] = (_nat(m.get("steps"), f"{pname} optimizer steps", bad), lr, momentum)
    states = {"rng": (gan.rng, meta.get("rng"))}
    module_rngs = meta.get("module_rngs")
    for key, rng in rng_targets.items():
        states[key] = (rng, module_rngs.get(key) if isinstance(module_rngs, dict) else None)
    for key, (rng, state) in states.items():
        try:  # on a scratch generator of the same kind first
            type(rng.bit_generator)().state = state
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise bad(f"malformed training state (format {version}): random state {key!r}: {type(e).__name__}: {e}") from None
    xp = get_backend().xp
    for name, target in expected.items():
        target[...] = xp.asarray(tensors[name])
    for pname, player in gan.players.items():
        opt = player.optimizer
        opt.steps, opt.lr, momentum = optimizers[pname]
        if momentum is not None:
            opt.momentum = momentum  # type: ignore[attr-defined]
    gan.steps, gan.epoch, gan.batch_in_epoch = counters["steps"], counters["epoch"], counters["batch_in_epoch"]
    for rng, state in states.values():
        rng.bit_generator.state = state
    config = meta.get("config", {})
    return config if isinstance(config, dict) else {}
