"""Checkpoints: round trip, validation of hostile files, bit-exact resume."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import pygan
from pygan import data, io, to_numpy
from pygan.gan import GAN
from pygan.models import mlp_discriminator, mlp_generator, paper_mlp_discriminator
from pygan.optim import SGD, Adam, Schedule


def make_gan(optim="adam", dropout=False, seed=0, pack=1):
    g = mlp_generator(4, [16], 2, seed=seed)
    if dropout:
        d = paper_mlp_discriminator(2 * pack, seed=seed + 1)
    else:
        d = mlp_discriminator(2 * pack, [16], seed=seed + 1)
    if optim == "adam":
        go, do = Adam(g.parameters(), lr=1e-3), Adam(d.parameters(), lr=1e-3)
    else:
        go, do = SGD(g.parameters(), lr=0.05, momentum=0.5), SGD(d.parameters(), lr=0.05, momentum=0.5)
    return GAN(g, d, go, do, latent_dim=4, seed=seed, pack=pack, d_max_norm=1.9 if dropout else None)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((3, 5)).astype(np.float32),
        "b": rng.standard_normal(7),
        "c": np.arange(4, dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(3.5, np.float32),
        "half": rng.standard_normal(3).astype(np.float16),
        "bytes": np.arange(5, dtype=np.uint8),
        "strided": rng.standard_normal((4, 6))[:, ::2],
    }
    meta = {"x": 1, "big": 2**100, "nested": {"s": "t"}}
    io.save(tmp_path / "c.safetensors", tensors, meta)
    got, m = io.load(tmp_path / "c.safetensors")
    assert m.pop("format_version") == io.FORMAT_VERSION == 3
    assert m == meta and list(got) == list(tensors)
    for k in tensors:
        assert got[k].dtype == tensors[k].dtype and got[k].shape == tensors[k].shape
        assert got[k].tobytes() == tensors[k].tobytes()
    assert not [p for p in tmp_path.iterdir() if p.name != "c.safetensors"], "temporary files left behind"


def test_the_safetensors_package_reads_a_checkpoint(tmp_path):
    """A run's checkpoint is a safetensors file: the reference reader gives the same tensors, by
    the state dicts' names, and the metadata pygan keeps (configuration, counters, RNG states)."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file

    from pygan import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--train-size", "512", "--out", str(out)]) == 0
    ours, meta = io.load(out / cli.CHECKPOINT)
    theirs = load_file(out / cli.CHECKPOINT)
    assert set(theirs) == set(ours) and "generator.0.w" in theirs and "discriminator.optimizer.m.0.w" in theirs
    for k, v in ours.items():
        assert theirs[k].dtype == v.dtype and theirs[k].shape == v.shape and theirs[k].tobytes() == v.tobytes(), k
    with safe_open(out / cli.CHECKPOINT, "np") as f:
        info = f.metadata()
    assert info["format"] == "pygan" and info["format_version"] == str(io.FORMAT_VERSION)
    header = json.loads(info["meta"])
    assert header["config"]["model"] == "mlp" and header["steps"] == meta["steps"] > 0
    assert header["rng"] == meta["rng"] and set(json.loads(info["crc32"])) == set(ours)


def test_save_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="tensors\\['o'\\]"):
        io.save(tmp_path / "x", {"o": np.array([object()])}, {})
    with pytest.raises(ValueError, match="__metadata__"):
        io.save(tmp_path / "x", {"__metadata__": np.zeros(1)}, {})


@pytest.fixture
def saved(tmp_path):
    gan = make_gan()
    gan.train_step(np.asarray(data.toy_samples("ring8", 32, seed=0)))
    path = tmp_path / "gan.safetensors"
    io.save_gan(path, gan, {"model": "test"})
    return path


def test_truncated_checkpoint(saved):
    blob = saved.read_bytes()
    for cut in (4, 30, len(blob) // 2, len(blob) - 1):
        saved.write_bytes(blob[:cut])
        with pytest.raises(io.CheckpointError, match="truncated") as err:
            io.load(saved)
        assert str(saved) in str(err.value)


def test_every_flipped_bit_is_caught(saved):
    """The header's CRC covers every header value, each tensor's CRC its bytes, and the padding
    is spaces, which no flipped bit leaves valid JSON whitespace: any flip anywhere is refused."""
    blob = bytearray(saved.read_bytes())
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    rng = np.random.default_rng(1)
    positions = list(rng.integers(0, len(blob), 60)) + list(range(8)) + [8 + hlen - 1, len(blob) - 1]
    for pos in positions:
        for bit in (int(rng.integers(8)), 5):
            bad = bytearray(blob)
            bad[pos] ^= 1 << bit
            saved.write_bytes(bytes(bad))
            with pytest.raises(io.CheckpointError) as err:
                io.load(saved)
            assert str(err.value).startswith(str(saved))


def test_future_version_and_foreign_files(saved):
    from helpers import read_safetensors, write_legacy_header, write_safetensors

    doc, body = read_safetensors(saved)
    doc["__metadata__"]["format_version"] = str(io.FORMAT_VERSION + 1)
    write_safetensors(saved, doc, body)
    with pytest.raises(io.CheckpointError, match="newer than this pygan reads"):
        io.load(saved)
    saved.write_bytes(b"NOTACKPT" + bytes(body))
    with pytest.raises(io.CheckpointError, match="not a checkpoint"):
        io.load(saved)
    del doc["__metadata__"]
    write_safetensors(saved, doc, body)  # a safetensors file of another program
    with pytest.raises(io.CheckpointError, match="without pygan's metadata"):
        io.load(saved)
    write_legacy_header(saved, b"{}", b"", version=3)
    with pytest.raises(io.CheckpointError, match="unknown checkpoint format version 3 in pygan's previous layout"):
        io.load(saved)
    write_legacy_header(saved, b"{}" * 40, b"", version=2)
    blob = bytearray(saved.read_bytes())
    struct.pack_into("<IQ", blob, 8, 1, 2**62)
    saved.write_bytes(bytes(blob))
    with pytest.raises(io.CheckpointError, match="header"):
        io.load(saved)


def test_shapes_that_disagree_with_the_model(saved):
    g, d = mlp_generator(4, [17], 2, seed=0), mlp_discriminator(2, [16], seed=1)
    other = GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=4)
    with pytest.raises(io.CheckpointError, match="'generator.0.w' is float32\\(16, 4\\)|generator.0.w") as err:
        io.restore_gan(saved, other)
    assert str(saved) in str(err.value)
    sgd = make_gan(optim="sgd")
    with pytest.raises(io.CheckpointError, match="missing tensors|Adam"):
        io.restore_gan(saved, sgd)


def _flat(gan):
    return np.concatenate([gan.g_optimizer.flat, gan.d_optimizer.flat])


@pytest.mark.parametrize("optim, dropout, pack", [("adam", False, 1), ("sgd", True, 2)])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_resume_is_bit_exact(tmp_path, backend, optim, dropout, pack):
    from pygan import set_backend

    set_backend(backend)
    x = data.toy_samples("grid25", 96, seed=4)
    sched = Schedule(1e-3, 3, lr_final=1e-4)
    straight = make_gan(optim, dropout, pack=pack)
    straight.fit(x, 3, 32, seed=9, schedule=sched)

    class StopAfter:
        def __init__(self, n):
            self.n = n

        def on_step(self, gan, stats):
            if gan.steps == self.n:
                io.save_gan(tmp_path / "mid.pygan", gan)

    first = make_gan(optim, dropout, pack=pack)
    first.fit(x, 2, 32, seed=9, schedule=sched, callbacks=[StopAfter(4)])  # mid-epoch 2
    resumed = make_gan(optim, dropout, seed=0, pack=pack)
    resumed.train_step(x[:32])  # perturb: restore must overwrite everything
    io.restore_gan(tmp_path / "mid.pygan", resumed)
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.steps) == (1, 1, 4)
    resumed.fit(x, 3, 32, seed=9, schedule=sched)
    assert resumed.steps == straight.steps == 9
    np.testing.assert_array_equal(_flat(resumed), _flat(straight))


def test_load_generator_gives_the_runs_samples(tmp_path):
    """pygan.load_generator restores only the generator, from any checkpoint format, and samples
    exactly what the whole run would."""
    from helpers import write_legacy

    from pygan import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--train-size", "512", "--out", str(out)]) == 0
    run = cli._from_checkpoint(str(out / cli.CHECKPOINT), "cpu")
    gen = pygan.load_generator(out / cli.CHECKPOINT)
    np.testing.assert_array_equal(gen.sample(50, seed=3), run.samples(50, seed=3))
    assert gen.sample(4, seed=1).shape == (4, 2) and gen.sample(4, seed=1).dtype == np.float64
    # the previous release's formats: 2 (the same names) and 1 (flat optimizer buffers)
    tensors, meta = io.gan_state(run.gan)
    meta["config"] = run.config
    write_legacy(tmp_path / "v2.pygan", {k: to_numpy(v) for k, v in tensors.items()}, meta, version=2)
    np.testing.assert_array_equal(pygan.load_generator(tmp_path / "v2.pygan").sample(50, seed=3), run.samples(50, seed=3))
    v1, _ = io._gan_state_v1(run.gan)
    write_legacy(tmp_path / "v1.pygan", {k: to_numpy(v) for k, v in v1.items()},
                 {**meta, "g_opt": {"kind": "Adam", "steps": 1, "lr": 1e-3}, "d_opt": {"kind": "Adam", "steps": 1, "lr": 1e-3}},
                 version=1)
    np.testing.assert_array_equal(pygan.load_generator(tmp_path / "v1.pygan").sample(50, seed=3), run.samples(50, seed=3))
    with pytest.raises(io.CheckpointError, match="no run configuration"):
        io.save(tmp_path / "bare.safetensors", tensors, {})
        pygan.load_generator(tmp_path / "bare.safetensors")


@pytest.mark.parametrize("args", [["--model", "mlp"], ["--model", "dcgan", "--norm", "virtual", "--ema", "0.9"]])
def test_export_writes_the_generator_alone(tmp_path, capsys, args):
    """pygan export: the generator's sampling weights (the average, with --ema) and buffers, and a
    virtual-batch-norm reference batch; load_generator, pygan sample and numpy read the exports,
    and they sample exactly what the whole checkpoint does."""
    import json

    from safetensors.numpy import load_file

    from helpers import tiny_mnist_folder

    from pygan import cli

    out = tmp_path / "run"
    folder = tiny_mnist_folder(tmp_path / "mnist", n=128)
    image = args[1] == "dcgan"
    train = ["train", "--epochs", "1", "--out", str(out), *args]
    train += ["--dataset", "mnist", "--data", str(folder), "--train-size", "64", "--batch-size", "32", "--eval-samples", "64"] if image else ["--train-size", "512"]
    assert cli.main(train) == 0
    whole = pygan.load_generator(out)
    expected = whole.sample(20, seed=4)
    assert cli.main(["export", str(out)]) == 0
    exported = out / "generator.safetensors"
    assert f"to {exported}" in capsys.readouterr().out
    names = set(load_file(exported))
    assert names and all(n.startswith("generator.") or n == "reference_z" for n in names)
    assert ("reference_z" in names) == image and not any(".optimizer." in n or ".ema." in n for n in names)
    np.testing.assert_array_equal(pygan.load_generator(exported).sample(20, seed=4), expected)
    _, meta = io.load(exported)
    assert meta["contents"] == "generator" and meta["config"] == io.load(out / cli.CHECKPOINT)[1]["config"]
    # pygan sample reads the export and draws what it draws from the run
    assert cli.main(["sample", str(exported), "--n", "20", "--out", str(tmp_path / "a.png")]) == 0
    assert cli.main(["sample", str(out / cli.CHECKPOINT), "--n", "20", "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    npz = tmp_path / "g.npz"
    assert cli.main(["export", str(out), "--format", "npz", "--out", str(npz)]) == 0
    with np.load(npz) as f:
        assert set(f.files) == names | {"__meta__"}
        assert json.loads(str(f["__meta__"]))["config"]["model"] == args[1]
        st = load_file(exported)
        for n in names:
            np.testing.assert_array_equal(f[n], st[n])
    if image:  # the weight average differs from the live weights, and the export holds the average
        live, _ = io.load(out / cli.CHECKPOINT)
        assert not np.array_equal(live["generator.0.w"], st["generator.0.w"])
        np.testing.assert_array_equal(live["generator.ema.0.w"], st["generator.0.w"])


def test_export_refuses_to_overwrite_its_source(tmp_path, capsys):
    from helpers import cli_error

    from pygan import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--train-size", "512", "--out", str(out)]) == 0
    ckpt = str(out / cli.CHECKPOINT)
    assert "is the checkpoint being exported" in cli_error(["export", ckpt, "--out", ckpt], capsys)
    assert "is a folder" in cli_error(["export", ckpt, "--out", str(out)], capsys)
    assert "invalid choice" in cli_error(["export", ckpt, "--format", "pickle"], capsys)


def test_a_run_of_the_previous_format_resumes_bit_for_bit(tmp_path, capsys):
    """--resume on a run folder from before safetensors converts its checkpoint.pygan and
    best.pygan to the current format, and the run goes on exactly as one never converted."""
    from helpers import write_legacy

    from pygan import cli

    import shutil

    base = ["train", "--train-size", "512", "--seed", "3"]
    new_run, old = tmp_path / "new", tmp_path / "old"
    assert cli.main([*base, "--epochs", "2", "--out", str(new_run)]) == 0
    shutil.copytree(new_run, old)
    for new, legacy in cli.LEGACY_NAMES.items():
        tensors, meta = io.load(old / new)
        meta.pop("format_version")
        write_legacy(old / legacy, tensors, meta, version=2)
        (old / new).unlink()
    assert cli.checkpoint_path(str(old)) == old / "best.pygan"
    assert cli.main(["sample", str(old), "--n", "10", "--out", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    for run in (new_run, old):
        assert cli.main([*base, "--epochs", "3", "--out", str(run), "--resume"]) == 0
    said = capsys.readouterr().out
    assert f"converted {old / 'checkpoint.pygan'} (format 2) to {old / cli.CHECKPOINT}" in said
    assert f"converted {old / 'best.pygan'} (format 2) to {old / cli.BEST}" in said
    assert not (old / "checkpoint.pygan").exists() and not (old / "best.pygan").exists()
    for name in (cli.CHECKPOINT, cli.BEST):
        a, meta_a = io.load(old / name)
        b, meta_b = io.load(new_run / name)
        assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a) and meta_a == meta_b


def _as_format_1(path, gan):
    """Write ``gan``'s state as the previous release wrote it (format 1's names and meta)."""
    from helpers import write_legacy

    v1, extra = io._gan_state_v1(gan)
    _, meta = io.gan_state(gan)
    meta["module_rngs"] = {key: rng.bit_generator.state for key, rng in extra["rngs"].items()}
    for key, player in extra["optimizers"].items():
        meta[key] = meta["optimizers"][player]
    write_legacy(path, {k: to_numpy(v) for k, v in v1.items()}, meta, version=1)


def test_format_1_checkpoints_resume_bit_for_bit(tmp_path):
    """A checkpoint in the previous release's format (flat optimizer buffers, buffers and dropout
    generators by module index) restores every tensor and RNG, so training continues identically."""
    real = np.asarray(data.toy_samples("ring8", 32, seed=0))
    gan = make_gan(dropout=True)
    gan.train_step(real)
    _as_format_1(tmp_path / "old.pygan", gan)
    resumed = make_gan(dropout=True, seed=5)
    io.restore_gan(tmp_path / "old.pygan", resumed)
    for g in (gan, resumed):
        g.train_step(real)
    np.testing.assert_array_equal(_flat(resumed), _flat(gan))
    with pytest.raises(io.CheckpointError, match="format 1.*d_opt.params"):
        io.restore_gan(tmp_path / "old.pygan", make_gan())  # another discriminator
