"""Test helpers: finite differences, tolerances, CLI runs, checkpoint files written by hand."""

from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Fourth-order central difference of the scalar ``f()`` w.r.t. every element of ``x`` (in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for step in (2 * h, h, -h, -2 * h):
            flat[i] = old + step
            vals.append(f())
        flat[i] = old
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def assert_close(actual, expected, rtol: float, atol: float, what: str = "") -> None:
    """allclose with a message."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=what)


def loss_and_grads(fn: Callable, *arrays: np.ndarray, backend: str = "numpy") -> tuple:
    """``(value, gradient of each array)`` of the loss ``fn(*tensors)`` through the tape."""
    import pygan

    with pygan.use_backend(backend):
        ts = [pygan.tensor(a, requires_grad=True) for a in arrays]
        loss = fn(*ts)
        grads = pygan.grad(loss, ts)
    return (float(loss.item()), *(g.numpy() for g in grads))


def tiny_mnist_folder(folder, n: int = 64, seed: int = 0):
    """A folder of random uint8 digits in the standard MNIST file names (train and test alike)."""
    from pygan import data

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    imgs = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for split in ("train", "t10k"):
        data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", imgs)
        data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def cli_error(argv: list[str], capsys, status: int = 2) -> str:
    """Run ``pygan ARGV`` in-process; it must fail with ``status`` and one line on stderr (no
    traceback), which is returned."""
    from pygan.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == status, (argv, code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    return err


def interrupt_run(cmd: list[str], when: str, sig: int, cwd) -> tuple[int, str]:
    """Start ``cmd`` (a ``python -m pygan ...`` line), send it ``sig`` once a line of its output
    starts with ``when``, and return its exit status and the rest of its output."""
    import os
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=cwd)
    for line in proc.stdout:
        if line.startswith(when):
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, rest


LEGACY_MAGIC = b"PYGANCKP"


def write_legacy_header(path, header: bytes, body: bytes, version: int = 2) -> None:
    """A checkpoint in the layout of formats 1 and 2: magic, version, header length, JSON header,
    its CRC-32, then ``body`` (the tensors, offsets relative to the 64-byte aligned base)."""
    import struct
    import zlib

    prefix = LEGACY_MAGIC + struct.pack("<IQ", version, len(header)) + header + struct.pack("<I", zlib.crc32(header))
    path.write_bytes(prefix + b"\0" * (-len(prefix) % 64) + body)


def write_legacy(path, tensors: dict, meta: dict, version: int = 2) -> None:
    """``tensors`` and ``meta`` as pygan wrote checkpoints before safetensors (formats 1 and 2),
    so that the tests can check those files still load."""
    import json
    import zlib

    entries, body = [], b""
    for name, a in tensors.items():
        a = np.ascontiguousarray(np.asarray(a))
        body += b"\0" * (-len(body) % 64)
        raw = a.tobytes()
        entries.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": len(body),
                        "nbytes": len(raw), "crc32": zlib.crc32(raw)})
        body += raw
    write_legacy_header(path, json.dumps({"meta": meta, "tensors": entries}, sort_keys=True).encode(), body, version)


def read_legacy(path) -> tuple[dict, bytes]:
    """A format 1/2 file's header (parsed) and its tensor bytes."""
    import json
    import struct

    blob = path.read_bytes()
    _, hlen = struct.unpack_from("<IQ", blob, 8)
    return json.loads(blob[20 : 20 + hlen]), blob[-(-(20 + hlen + 4) // 64) * 64 :]


def read_safetensors(path) -> tuple[dict, bytes]:
    """A safetensors file's header (parsed) and its data section."""
    import json
    import struct

    blob = path.read_bytes()
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    return json.loads(blob[8 : 8 + hlen]), blob[8 + hlen :]


def write_safetensors(path, doc: dict, body: bytes, seal: bool = True) -> None:
    """A safetensors file of header ``doc`` and data ``body``; ``seal``: with the header CRC pygan
    would write for ``doc`` (so that the checks behind it are reached)."""
    import json
    import struct
    import zlib

    from pygan import io

    if seal and "__metadata__" in doc:
        doc["__metadata__"]["header_crc32"] = str(zlib.crc32(io._canonical(doc)))
    header = json.dumps(doc).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)
