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


def small_gan() -> GAN:
    g, d = mlp_generator(2, [4], 2, seed=0), mlp_discriminator(2, [4], seed=1)
    return GAN(g, d, Adam(g.parameters(), lr=1e-3), Adam(d.parameters(), lr=1e-3), latent_dim=2, seed=0)


def read_doc(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    _, hlen = struct.unpack_from("<IQ", blob, 8)
    base = -(-(20 + hlen + 4) // 64) * 64
    return json.loads(blob[20 : 20 + hlen]), blob[base:]


def write_doc(path: Path, header: bytes, body: bytes, version: int = io.FORMAT_VERSION) -> None:
    prefix = io.MAGIC + struct.pack("<IQ", version, len(header)) + header + struct.pack("<I", zlib.crc32(header))
    path.write_bytes(prefix + b"\0" * (-len(prefix) % 64) + body)


@pytest.fixture
def ckpt(tmp_path):
    gan = small_gan()
    gan.train_step(np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32))
    path = tmp_path / "a.ckpt"
    io.save_gan(path, gan, {"model": "toy"})
    return path


def craft(ckpt: Path, mutate) -> Path:
    doc, body = read_doc(ckpt)
    result = mutate(doc)
    header = result if isinstance(result, bytes) else json.dumps(doc).encode()
    out = ckpt.with_name("crafted.ckpt")
    write_doc(out, header, body)
    return out


def _set(path, value):
    def mutate(doc):
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


CRAFTED = {
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


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_are_refused_with_the_files_name(ckpt, case):
    mutate, message = CRAFTED[case]
    path = craft(ckpt, mutate)
    with pytest.raises(io.CheckpointError, match=f"^{path}: .*{message}"):
        io.load(path)


RESTORE = {
    "negative counter": (_set(["meta", "steps"], -1), "steps"),
    "float counter": (_set(["meta", "epoch"], 1.5), "epoch"),
    "negative lr": (_set(["meta", "optimizers", "generator", "lr"], -0.1), "lr"),
    "string lr": (_set(["meta", "optimizers", "generator", "lr"], "fast"), "lr"),
    "negative optimizer steps": (_set(["meta", "optimizers", "discriminator", "steps"], -5), "steps"),
    "no optimizer": (_set(["meta", "optimizers"], {}), "optimizer"),
    "bad random state": (_set(["meta", "rng"], {"bit_generator": "PCG64", "state": 7}), "random state"),
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


def test_nan_weights_are_refused(ckpt):
    doc, body = read_doc(ckpt)
    entry = next(e for e in doc["tensors"] if e["dtype"] == "float32" and e["nbytes"] >= 4)
    body = bytearray(body)
    body[entry["offset"] : entry["offset"] + 4] = np.float32(np.nan).tobytes()
    entry["crc32"] = zlib.crc32(bytes(body[entry["offset"] : entry["offset"] + entry["nbytes"]]))
    out = ckpt.with_name("nan.ckpt")
    write_doc(out, json.dumps(doc).encode(), bytes(body))
    with pytest.raises(io.CheckpointError, match=f"{entry['name']}.* contains NaN or Inf"):
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
