"""Checkpoints: round trip, validation of hostile files, bit-exact resume."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import pygan
from pygan import data, io
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
    }
    meta = {"x": 1, "big": 2**100, "nested": {"s": "t"}}
    io.save(tmp_path / "c.pygan", tensors, meta)
    got, m = io.load(tmp_path / "c.pygan")
    assert m.pop("format_version") == io.FORMAT_VERSION
    assert m == meta and list(got) == list(tensors)
    for k in tensors:
        assert got[k].dtype == tensors[k].dtype and got[k].shape == tensors[k].shape
        assert got[k].tobytes() == tensors[k].tobytes()
    assert not [p for p in tmp_path.iterdir() if p.name != "c.pygan"], "temporary files left behind"


def test_save_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="tensors\\['o'\\]"):
        io.save(tmp_path / "x", {"o": np.array([object()])}, {})


@pytest.fixture
def saved(tmp_path):
    gan = make_gan()
    gan.train_step(np.asarray(data.toy_samples("ring8", 32, seed=0)))
    path = tmp_path / "gan.pygan"
    io.save_gan(path, gan, {"model": "test"})
    return path


def test_truncated_checkpoint(saved):
    blob = saved.read_bytes()
    for cut in (4, 30, len(blob) // 2, len(blob) - 1):
        saved.write_bytes(blob[:cut])
        with pytest.raises(io.CheckpointError, match="truncated") as err:
            io.load(saved)
        assert str(saved) in str(err.value)


def test_every_flipped_bit_region_is_caught(saved):
    blob = bytearray(saved.read_bytes())
    rng = np.random.default_rng(1)
    for pos in list(rng.integers(20, len(blob), 40)) + [len(blob) - 1]:
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(rng.integers(8))
        saved.write_bytes(bytes(bad))
        try:
            io.load(saved)
        except io.CheckpointError as e:
            assert str(saved) in str(e)
        else:  # only the zero padding between header and data is unprotected
            (hlen,) = struct.unpack_from("<Q", blob, 12)
            assert 20 + hlen + 4 <= pos < -(-(20 + hlen + 4) // 64) * 64 or _in_tensor_padding(blob, pos)


def _in_tensor_padding(blob, pos):
    import json

    (hlen,) = struct.unpack_from("<Q", blob, 12)
    header = json.loads(blob[20 : 20 + hlen])
    base = -(-(20 + hlen + 4) // 64) * 64
    return not any(base + e["offset"] <= pos < base + e["offset"] + e["nbytes"] for e in header["tensors"])


def test_future_version_and_bad_magic(saved):
    blob = bytearray(saved.read_bytes())
    struct.pack_into("<I", blob, 8, io.FORMAT_VERSION + 1)
    saved.write_bytes(bytes(blob))
    with pytest.raises(io.CheckpointError, match="newer than this pygan reads"):
        io.load(saved)
    saved.write_bytes(b"NOTACKPT" + bytes(blob[8:]))
    with pytest.raises(io.CheckpointError, match="bad magic"):
        io.load(saved)
    blob2 = bytearray(blob)
    struct.pack_into("<IQ", blob2, 8, 1, 2**62)
    saved.write_bytes(bytes(blob2))
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
    """pygan.load_generator restores only the generator, from either checkpoint format, and samples
    exactly what the whole run would."""
    from pygan import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--train-size", "512", "--out", str(out)]) == 0
    run = cli._from_checkpoint(str(out / cli.CHECKPOINT), "cpu")
    gen = pygan.load_generator(out / cli.CHECKPOINT)
    np.testing.assert_array_equal(gen.sample(50, seed=3), run.samples(50, seed=3))
    assert gen.sample(4, seed=1).shape == (4, 2) and gen.sample(4, seed=1).dtype == np.float64
    # the previous release's format: the same tensors under format 1's names
    tensors, meta = io.gan_state(run.gan)
    v1, _ = io._gan_state_v1(run.gan)
    legacy = tmp_path / "v1.pygan"
    io.save(legacy, v1, {**meta, "config": run.config, "g_opt": {"kind": "Adam", "steps": 1, "lr": 1e-3},
                          "d_opt": {"kind": "Adam", "steps": 1, "lr": 1e-3}})
    blob = bytearray(legacy.read_bytes())
    struct.pack_into("<I", blob, 8, 1)  # format 1 in the header (its CRC covers only the JSON)
    legacy.write_bytes(bytes(blob))
    np.testing.assert_array_equal(pygan.load_generator(legacy).sample(50, seed=3), run.samples(50, seed=3))
    with pytest.raises(io.CheckpointError, match="no run configuration"):
        io.save(tmp_path / "bare.pygan", tensors, {})
        pygan.load_generator(tmp_path / "bare.pygan")


def _as_format_1(path, gan):
    """Write ``gan``'s state as the previous release wrote it (format 1's names and meta)."""
    v1, extra = io._gan_state_v1(gan)
    _, meta = io.gan_state(gan)
    meta["module_rngs"] = {key: rng.bit_generator.state for key, rng in extra["rngs"].items()}
    for key, player in extra["optimizers"].items():
        meta[key] = meta["optimizers"][player]
    io.save(path, v1, meta)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<I", blob, 8, 1)  # the header's version field (its CRC covers only the JSON)
    path.write_bytes(bytes(blob))


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
