"""Files from anywhere: the checkpoint loader reads regular files only, within the bounds its
header and the file give, and checks every header value; the IDX reader bounds what it inflates by
the claimed shape and the file's size; concurrent checkpoint writers never collide; written files
get ordinary permissions."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from pygan import data, io
from pygan.gan import GAN
from pygan.models import mlp_discriminator, mlp_generator
from pygan.optim import Adam

from helpers import read_legacy, read_safetensors, write_legacy, write_legacy_header, write_safetensors


def small_gan() -> GAN:
    g, d = mlp_generator(2, [4], 2, seed=0), mlp_discriminator(2, [4], seed=1)
    return GAN(g, d, Adam(g.parameters(), lr=1e-3), Adam(d.parameters(), lr=1e-3), latent_dim=2, seed=0)


@pytest.fixture
def ckpt(tmp_path):
    gan = small_gan()
    gan.train_step(np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32))
    path = tmp_path / "a.ckpt"
    io.save_gan(path, gan, {"model": "toy"})
    return path


@pytest.fixture
def legacy(ckpt):
    """The same checkpoint in the previous layout (format 2)."""
    tensors, meta = io.load(ckpt)
    meta.pop("format_version")
    path = ckpt.with_name("legacy.ckpt")
    write_legacy(path, tensors, meta, version=2)
    return path


def _set(path, value):
    def mutate(doc):
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


def _first(doc):
    """The name of the safetensors header's first tensor."""
    return next(k for k in doc if k != "__metadata__")


def _st(field, value):
    """Set ``field`` of the first tensor's safetensors entry."""
    return lambda doc: doc[_first(doc)].__setitem__(field, value)


def _info(key, value):
    return lambda doc: doc["__metadata__"].__setitem__(key, value)


def _meta(mutate):
    """Mutate the JSON text of the metadata's ``meta``."""
    def apply(doc):
        meta = json.loads(doc["__metadata__"]["meta"])
        mutate(meta)
        doc["__metadata__"]["meta"] = json.dumps(meta)
    return apply


def craft(ckpt: Path, mutate, seal: bool = True) -> Path:
    """``ckpt`` (safetensors) with its header changed by ``mutate`` (which may return raw header
    bytes), sealed with a fresh header CRC so that the checks behind the CRC are reached."""
    doc, body = read_safetensors(ckpt)
    result = mutate(doc)
    out = ckpt.with_name("crafted.ckpt")
    if isinstance(result, bytes):
        out.write_bytes(struct.pack("<Q", len(result)) + result + body)
    else:
        write_safetensors(out, doc, body, seal=seal)
    return out


def _overlap(doc):
    """Move the last tensor's bytes 4 bytes into the one before."""
    entry = max((e for k, e in doc.items() if k != "__metadata__"), key=lambda e: e["data_offsets"][0])
    entry["data_offsets"] = [entry["data_offsets"][0] - 4, entry["data_offsets"][1] - 4]


CRAFTED = {
    "deep nesting": (lambda doc: b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}", "unreadable header"),
    "not an object": (lambda doc: b"{  ", "unreadable header"),
    "a key twice": (lambda doc: json.dumps(doc).replace("{", '{"__metadata__": {}, ', 1).encode(), "appears twice"),
    "no metadata": (lambda doc: doc.pop("__metadata__"), "without pygan's metadata"),
    "metadata not strings": (_info("crc32", {"a": 1}), "malformed metadata"),
    "no header CRC": (lambda doc: doc["__metadata__"].pop("header_crc32"), "malformed metadata"),
    "version not a number": (_info("format_version", "three"), "unknown checkpoint format version"),
    "old version in safetensors": (_info("format_version", "2"), "unknown checkpoint format version 2"),
    "Infinity in meta": (_info("meta", '{"steps": Infinity}'), "unreadable metadata meta"),
    "meta not an object": (_info("meta", "[1]"), "meta is not an object"),
    "crc32 not an object": (_info("crc32", "[1]"), "crc32 is not an object"),
    "a CRC missing": (lambda doc: doc["__metadata__"].__setitem__("crc32", "{}"), "has no CRC-32"),
    "a CRC of nothing": (lambda doc: doc["__metadata__"].__setitem__(
        "crc32", json.dumps({**json.loads(doc["__metadata__"]["crc32"]), "ghost": 1})), "tensors the file lacks"),
    "CRC out of range": (lambda doc: doc["__metadata__"].__setitem__(
        "crc32", json.dumps({k: 1 << 40 for k in json.loads(doc["__metadata__"]["crc32"])})), "invalid header value"),
    "entry not an object": (lambda doc: doc.__setitem__(_first(doc), "x"), "malformed tensor entry"),
    "extra entry key": (_st("crc", 1), "malformed tensor entry"),
    "huge shape": (_st("shape", [10**30, 10**30]), "invalid header value"),
    "shape nesting": (_st("shape", [[1]]), "invalid header value"),
    "float offset": (_st("data_offsets", [0.5, 64]), "invalid header value"),
    "bool offset": (_st("data_offsets", [True, 64]), "invalid header value"),
    "three offsets": (_st("data_offsets", [0, 1, 2]), "expected \\[begin, end\\]"),
    "end before begin": (_st("data_offsets", [64, 0]), "end before begin"),
    "unknown dtype": (_st("dtype", "BF16"), "unsupported dtype"),
    "dtype not a string": (_st("dtype", 7), "unsupported dtype"),
    "shape and bytes disagree": (_st("shape", [1]), "does not match its"),
    "overlapping bytes": (_overlap, "overlap another tensor"),
    "past the end": (lambda doc: [e.__setitem__("data_offsets", [e["data_offsets"][0] + 8, e["data_offsets"][1] + 8])
                                  for k, e in doc.items() if k != "__metadata__"], "gap|truncated"),
    "header CRC wrong": (_info("header_crc32", "0"), "corrupt header"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_are_refused_with_the_files_name(ckpt, case):
    mutate, message = CRAFTED[case]
    path = craft(ckpt, mutate, seal=case not in ("header CRC wrong", "no header CRC"))
    with pytest.raises(io.CheckpointError, match=f"^{path}: .*({message})"):
        io.load(path)


def craft_legacy(legacy: Path, mutate) -> Path:
    doc, body = read_legacy(legacy)
    result = mutate(doc)
    header = result if isinstance(result, bytes) else json.dumps(doc).encode()
    out = legacy.with_name("crafted.ckpt")
    write_legacy_header(out, header, body)
    return out


LEGACY_CRAFTED = {
    "deep nesting": (lambda doc: b"[" * 100000 + b"]" * 100000, "unreadable header"),
    "Infinity constant": (lambda doc: json.dumps(doc).replace('"steps": 1', '"steps": Infinity', 1).encode(), "unreadable header"),
    "tensors not a list": (_set(["tensors"], 5), "unreadable header"),
    "meta not an object": (_set(["meta"], [1]), "unreadable header"),
    "entry not an object": (_set(["tensors", 0], "x"), "malformed tensor entry"),
    "huge shape": (_set(["tensors", 0, "shape"], [10**30, 10**30]), "invalid header value"),
    "float offset": (_set(["tensors", 0, "offset"], 1.5), "invalid header value"),
    "bool nbytes": (_set(["tensors", 0, "nbytes"], True), "invalid header value"),
    "negative offset": (_set(["tensors", 0, "offset"], -64), "invalid header value"),
    "crc out of range": (_set(["tensors", 0, "crc32"], 1 << 40), "invalid header value"),
    "shape nesting": (_set(["tensors", 0, "shape"], [[1]]), "invalid header value"),
    "unknown dtype": (_set(["tensors", 0, "dtype"], "object"), "unsupported dtype"),
    "name not a string": (_set(["tensors", 0, "name"], {"a": 1}), "invalid tensor name"),
    "duplicate names": (lambda doc: doc["tensors"].__setitem__(1, dict(doc["tensors"][1], name=doc["tensors"][0]["name"])), "appears twice"),
    "overlapping bytes": (lambda doc: doc["tensors"][1].__setitem__("offset", doc["tensors"][0]["offset"]), "overlap"),
    "past the end": (_set(["tensors", 0, "offset"], 1 << 40), "truncated"),
}


@pytest.mark.parametrize("case", sorted(LEGACY_CRAFTED))
def test_crafted_headers_of_the_previous_format_are_refused(legacy, case):
    mutate, message = LEGACY_CRAFTED[case]
    path = craft_legacy(legacy, mutate)
    with pytest.raises(io.CheckpointError, match=f"^{path}: .*{message}"):
        io.load(path)


RESTORE = {
    "negative counter": (_meta(_set(["steps"], -1)), "steps"),
    "float counter": (_meta(_set(["epoch"], 1.5)), "epoch"),
    "negative lr": (_meta(_set(["optimizers", "generator", "lr"], -0.1)), "lr"),
    "string lr": (_meta(_set(["optimizers", "generator", "lr"], "fast")), "lr"),
    "negative optimizer steps": (_meta(_set(["optimizers", "discriminator", "steps"], -5)), "steps"),
    "no optimizer": (_meta(_set(["optimizers"], {})), "optimizer"),
    "bad random state": (_meta(_set(["rng"], {"bit_generator": "PCG64", "state": 7})), "random state"),
}


@pytest.mark.parametrize("case", sorted(RESTORE))
def test_invalid_training_state_is_refused_and_leaves_the_model_alone(ckpt, case):
    mutate, message = RESTORE[case]
    path = craft(ckpt, mutate)
    gan = small_gan()
    before = [p.data.copy() for p in gan.generator.parameters()]
    with pytest.raises(io.CheckpointError, match=f"^{path}: .*{message}"):
        io.restore_gan(path, gan)
    assert all(np.array_equal(b, p.data) for b, p in zip(before, gan.generator.parameters()))
    assert gan.steps == 0


@pytest.mark.parametrize("fmt", ["safetensors", "legacy"])
def test_nan_weights_are_refused(ckpt, legacy, fmt):
    out = ckpt.with_name("nan.ckpt")
    if fmt == "legacy":
        doc, body = read_legacy(legacy)
        entry = next(e for e in doc["tensors"] if e["dtype"] == "float32" and e["nbytes"] >= 4)
        name, start, end = entry["name"], entry["offset"], entry["offset"] + entry["nbytes"]
    else:
        doc, body = read_safetensors(ckpt)
        name = next(k for k, e in doc.items() if k != "__metadata__" and e["dtype"] == "F32" and e["shape"])
        start, end = doc[name]["data_offsets"]
    body = bytearray(body)
    body[start : start + 4] = np.float32(np.nan).tobytes()
    crc = zlib.crc32(bytes(body[start:end]))
    if fmt == "legacy":
        entry["crc32"] = crc
        write_legacy_header(out, json.dumps(doc).encode(), bytes(body))
    else:
        crcs = json.loads(doc["__metadata__"]["crc32"])
        crcs[name] = crc
        doc["__metadata__"]["crc32"] = json.dumps(crcs)
        write_safetensors(out, doc, bytes(body))
    with pytest.raises(io.CheckpointError, match=f"{name}.* contains NaN or Inf"):
        io.load(out)


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "pipe.ckpt"
    os.mkfifo(fifo)
    # in a child process, so that a loader that blocked would fail the test instead of hanging it
    code = "import sys\nfrom pygan import io, data\nfor f in (io.load, data.read_idx):\n    try:\n        f(sys.argv[1])\n    except ValueError as e:\n        print(e)\n"
    # (run in tmp_path, so that the installed pygan is imported, not the source tree's)
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("a named pipe, not a regular file") == 2
    with pytest.raises(io.CheckpointError, match="a folder, not a regular file"):
        io.load(tmp_path)
    with pytest.raises(io.CheckpointError, match="a character device, not a regular file"):
        io.load("/dev/zero")
    with pytest.raises(data.DataError, match="a character device, not a regular file"):
        data.read_idx("/dev/zero")


def test_a_corrupt_gzip_stream_names_the_file(tmp_path):
    good = gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 5000) + bytes(5000))
    bad = bytearray(good)
    bad[20:30] = b"\xff" * 10  # inside the deflate stream
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(bytes(bad))
    with pytest.raises(data.DataError, match=f"^{path}: corrupt gzip stream"):
        data.read_idx(path)


def test_an_idx_header_claiming_more_than_the_file_holds_is_refused_before_reading(tmp_path):
    claim = b"\0\0\x08\x03" + struct.pack(">III", 60000, 200, 150)  # 1.8 GB in a few bytes
    for name, payload in (("raw-idx3-ubyte", claim + bytes(100)), ("bomb-idx3-ubyte.gz", gzip.compress(claim + bytes(10000)))):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(data.DataError, match="more than the .*-byte file can hold"):
            data.read_idx(path)


def test_concurrent_writers_to_one_checkpoint_never_collide(tmp_path):
    path = tmp_path / "shared.ckpt"
    code = (
        "import sys, numpy as np\nfrom pygan import io\n"
        "for i in range(40):\n    io.save(sys.argv[1], {'w': np.full(50000, i, np.float32)}, {'writer': sys.argv[2], 'i': i})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(k)], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for k in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    tensors, meta = io.load(path)
    assert meta["i"] == 39 and np.all(tensors["w"] == 39)
    assert not list(tmp_path.glob(".shared.ckpt.*")), "a writer left its temporary file"


def test_stale_temporary_files_of_dead_writers_go_and_live_ones_stay(tmp_path):
    path = tmp_path / "a.ckpt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".a.ckpt.{dead}.x1.tmp"
    live = tmp_path / f".a.ckpt.{os.getppid()}.x2.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    io.save(path, {"w": np.zeros(3, np.float32)}, {})
    assert not stale.exists() and live.exists()


def test_written_files_get_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        io.save(tmp_path / "p.ckpt", {"w": np.zeros(3, np.float32)}, {})
    finally:
        os.umask(mask)
    assert (tmp_path / "p.ckpt").stat().st_mode & 0o777 == 0o644
