"""The ``pygan`` command end to end in a temporary folder: train, resume, sample, eval, errors."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from pygan import data, io, plot
from pygan.cli import main


def read_png(path):
    """Decode the PNGs pygan writes (8-bit grey or RGB, filter 0) to check them independently."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        tag, body = blob[pos + 4 : pos + 8], blob[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", blob[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(tag + body)
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    ch = 3 if colour == 2 else 1
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * ch)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, ch) if ch == 3 else raw[:, 1:]


def test_png_writer_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    plot.write_png(tmp_path / "a.png", img)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), img)
    grid = plot.image_grid(np.random.default_rng(1).random((7, 1, 4, 4)), columns=3, pad=1, scale=1)
    assert grid.shape == (3 * 5 + 1, 3 * 5 + 1)
    with pytest.raises(ValueError, match="^image"):
        plot.write_png(tmp_path / "b.png", np.zeros((2, 2), np.float32))


def test_train_resume_sample_eval_on_toy_data(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "3", "--train-size", "8192", "--batch-size", "128", "--out", str(out), "--seed", "3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "backend cpu" in text and "epoch 3/3" in text and "modes" in text
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert {"d_loss", "g_loss", "d_x", "d_g_z", "d_acc_real", "d_acc_fake", "modes_covered", "high_quality"} <= set(log[0])
    for e in (1, 2, 3):
        img = read_png(out / "samples" / f"epoch_{e:03d}.png")
        assert img.shape == (512, 512, 3) and (img == [20, 40, 160]).all(axis=2).any()
    final, _ = io.load(out / "checkpoint.pygan")

    # the same run, interrupted by Ctrl-C in a subprocess and resumed, ends bit for bit where it did
    out2 = tmp_path / "run2"
    cmd = [sys.executable, "-m", "pygan", *args[:-4], "--out", str(out2), "--seed", "3"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest
    assert "interrupted: saved" in rest
    saved, meta = io.load(out2 / "checkpoint.pygan")
    assert meta["epoch"] * 64 + meta["batch_in_epoch"] == meta["steps"] < 3 * 64
    assert main(["train", "--resume", "--out", str(out2)]) == 0
    assert "resumed from" in capsys.readouterr().out
    again, _ = io.load(out2 / "checkpoint.pygan")
    for k in final:
        assert final[k].tobytes() == again[k].tobytes(), k
    assert [json.loads(x)["epoch"] for x in (out2 / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]

    assert main(["sample", str(out / "checkpoint.pygan"), "--n", "300", "--out", str(tmp_path / "s.png")]) == 0
    assert read_png(tmp_path / "s.png").shape == (512, 512, 3)
    assert main(["eval", str(out / "checkpoint.pygan")]) == 0
    assert "modes covered" in capsys.readouterr().out


def test_mnist_models_on_a_tiny_idx_folder(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    imgs = (rng.random((64, 28, 28)) * 255).astype(np.uint8)
    labels = rng.integers(0, 10, 64).astype(np.uint8)
    for split in ("train", "t10k"):
        data.write_idx(folder / f"{split}-images-idx3-ubyte.gz", imgs)
        data.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("PYGAN_DATA", str(folder))
    for model in ("paper-mlp", "cgan", "dcgan"):
        out = tmp_path / model
        bs = "20" if model == "paper-mlp" else "16"
        assert main(["train", "--model", model, "--dataset", "mnist", "--epochs", "1", "--batch-size", bs, "--out", str(out)]) == 0
        grid = read_png(out / "samples" / "epoch_001.png")
        assert grid.shape == (10 * 30 * 2 + 4, 10 * 30 * 2 + 4)
    sgd = tmp_path / "paper-sgd"
    assert main(["train", "--model", "paper-mlp", "--optimizer", "sgd", "--dataset", "mnist", "--epochs", "2",
                 "--batch-size", "20", "--out", str(sgd)]) == 0
    assert main(["train", "--resume", "--epochs", "3", "--out", str(sgd)]) == 0  # the schedule survives a resume
    assert main(["eval", str(tmp_path / "paper-mlp" / "checkpoint.pygan"), "--samples", "50", "--test-size", "20"]) == 0
    assert "Parzen window log-likelihood on 20 mnist test images" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "junk.pygan").write_bytes(b"junk")
    assert main(["eval", str(tmp_path / "junk.pygan")]) == 2
    assert "junk.pygan" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--model", "dcgan", "--dataset", "ring8"])
    with pytest.raises(SystemExit):
        main(["train", "--resume", "--out", str(tmp_path / "none")])
    with pytest.raises(SystemExit):
        main(["train", "--model", "unknown"])
    with pytest.raises(SystemExit, match="paper-mlp's original schedule"):
        main(["train", "--optimizer", "sgd"])


def test_grid_defaults_differ_from_the_rings():
    from pygan.cli import _train_config, build_parser

    grid = _train_config(build_parser().parse_args(["train", "--dataset", "grid25"]))
    ring = _train_config(build_parser().parse_args(["train"]))
    assert (grid["epochs"], grid["batch_size"], grid["g_act"]) == (300, 256, "leaky_relu")
    assert (ring["epochs"], ring["batch_size"], ring["g_act"]) == (50, None, None)
    mine = _train_config(build_parser().parse_args(["train", "--dataset", "grid25", "--epochs", "3", "--batch-size", "64"]))
    assert (mine["epochs"], mine["batch_size"]) == (3, 64)


def test_checkpoints_from_before_the_g_act_key_rebuild_their_leaky_generator():
    """A toy run's configuration without ``g_act`` (older checkpoints) used a leaky-ReLU generator."""
    from pygan.cli import Run, _train_config, build_parser
    from pygan.recipes import _g_act

    config = _train_config(build_parser().parse_args(["train", "--train-size", "256"]))
    assert Run(config, load_data=False).spec.generator.layers[0].act == "tanh"
    del config["g_act"]
    assert Run(config, load_data=False).spec.generator.layers[0].act == "leaky_relu"
    assert _g_act({"model": "dcgan", "dataset": "mnist"}) is None  # image models keep their own generator
