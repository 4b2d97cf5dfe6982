"""Run management: a new run never overwrites a run folder (unless --overwrite), --resume refuses
flags that contradict the run and names them, SIGTERM saves a checkpoint like Ctrl-C, --config
gives any flag from a JSON or TOML file, and each run writes its full configuration."""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest

from pygan import io
from pygan.cli import main
from pygan.gan import GAN
from pygan.models import mlp_discriminator, mlp_generator
from pygan.optim import Adam

from helpers import cli_error, interrupt_run

QUICK = ["train", "--epochs", "1", "--train-size", "1024", "--batch-size", "128"]


def test_a_new_run_never_overwrites_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out)]) == 0
    first = (out / "checkpoint.safetensors").read_bytes()
    err = cli_error([*QUICK, "--seed", "5", "--out", str(out)], capsys)
    assert "already holds a run (checkpoint.safetensors)" in err and "--overwrite" in err
    assert (out / "checkpoint.safetensors").read_bytes() == first
    assert main([*QUICK, "--seed", "5", "--out", str(out), "--overwrite"]) == 0
    assert (out / "checkpoint.safetensors").read_bytes() != first
    assert "give one" in cli_error([*QUICK, "--out", str(out), "--resume", "--overwrite"], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*QUICK, "--out", str(empty)]) == 0  # an empty folder is no run
    seed_run = tmp_path / "s" / "seed-0"
    seed_run.mkdir(parents=True)
    (seed_run / "config.json").write_text("{}")
    assert "already holds runs (seed-0)" in cli_error([*QUICK, "--seeds", "0-1", "--out", str(tmp_path / "s")], capsys)


def test_resume_refuses_flags_that_contradict_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out), "--lr", "0.0005"]) == 0
    err = cli_error(["train", "--resume", "--out", str(out), "--lr", "0.001", "--pack", "4"], capsys)
    assert "--lr 0.001 (the run has 0.0005)" in err and "--pack 4 (the run has 2)" in err
    # the same values, and the flags a resumed run may change, are accepted
    assert main(["train", "--resume", "--out", str(out), "--lr", "0.0005", "--epochs", "2", "--threads", "1"]) == 0
    _, meta = io.load(out / "checkpoint.safetensors")
    assert meta["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def test_each_run_writes_its_full_configuration(tmp_path):
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out), "--loss", "lsgan"]) == 0
    config = json.loads((out / "config.json").read_text())
    _, meta = io.load(out / "checkpoint.safetensors")
    assert config == meta["config"]
    assert config["loss"] == "lsgan" and config["batch_size"] == 128 and config["model"] == "mlp" and "pack" in config
    assert (out / "config.json").stat().st_mode & 0o077 != 0  # not mkstemp's 0600


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_config_file_gives_flags_and_the_command_line_wins(tmp_path, kind):
    path = tmp_path / f"flags.{kind}"
    if kind == "json":
        path.write_text(json.dumps({"epochs": 1, "train-size": 1024, "batch_size": 128, "loss": "hinge", "lr": 0.0003}))
    else:
        path.write_text('epochs = 1\ntrain_size = 1024\nbatch-size = 128\nloss = "hinge"\nlr = 0.0003\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--lr", "0.0002"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == "hinge" and config["train_size"] == 1024 and config["lr"] == 0.0002
    assert config["spectral_norm"] is True  # hinge's default, resolved as on the command line


def test_bad_config_files_are_one_line(tmp_path, capsys):
    cases = {
        "a.json": ('{"epochs": 0}', "epochs: must be in 1 .."),
        "b.json": ('{"bogus": 1}', "bogus: not a flag of pygan train"),
        "c.json": ('{"loss": "nope"}', "loss: 'nope' is not one of"),
        "d.json": ("[1, 2]", "expected a table"),
        "e.json": ("{", "unreadable (JSON)"),
        "f.toml": ("epochs = ", "unreadable (TOML)"),
        "g.json": ('{"resume": 1}', "expected true or false for --resume"),
        "h.json": ('{"lr": [1]}', "expected one value for --lr"),
        "i.json": ('{"config": "x.json"}', "config: not a flag"),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        err = cli_error(["train", "--config", str(tmp_path / name)], capsys)
        assert words in err and name in err, (name, err)
    assert "not a file" in cli_error(["train", "--config", str(tmp_path / "missing.json")], capsys)


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pygan", "train", "--epochs", "50", "--train-size", "4096", "--batch-size", "128",
           "--out", str(out)]
    code, rest = interrupt_run(cmd, "epoch 1/50", signal.SIGTERM, tmp_path)
    assert code == 0, rest
    assert "interrupted: saved" in rest
    _, meta = io.load(out / "checkpoint.safetensors")
    assert 1 <= meta["epoch"] < 50


def test_an_evaluation_that_fails_loses_no_training(tmp_path, monkeypatch, capsys):
    """The epoch's last checkpoint is written before its evaluation: a run whose evaluation fails
    (a StyleGAN's 10,000-image draw once did) resumes from that epoch, not the one before."""
    from pygan import cli

    out = tmp_path / "run"
    evaluate = cli.Run.evaluate

    def fails_at_epoch_2(self, *a, **k):
        if self.gan.epoch == 2:
            raise MemoryError("no room for the samples")
        return evaluate(self, *a, **k)

    monkeypatch.setattr(cli.Run, "evaluate", fails_at_epoch_2)
    assert main(["train", "--epochs", "3", "--train-size", "1024", "--batch-size", "128", "--out", str(out)]) != 0
    assert "no room for the samples" in capsys.readouterr().err
    _, meta = io.load(out / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and meta["run"]["best"]["epoch"] == 1
    monkeypatch.setattr(cli.Run, "evaluate", evaluate)
    assert main(["train", "--resume", "--out", str(out)]) == 0
    _, meta = io.load(out / "checkpoint.safetensors")
    assert meta["epoch"] == 3


def test_fit_refuses_integer_images_with_the_range_it_expects():
    g, d = mlp_generator(2, [4], 4, seed=0), mlp_discriminator(4, [4], seed=1)
    gan = GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=2, seed=0)
    x = np.random.default_rng(0).integers(0, 256, (64, 4)).astype(np.uint8)
    with pytest.raises(TypeError, match=r"^data: uint8 values would reach the discriminator unscaled.*\[-1, 1\]"):
        gan.fit(x, 1, 32)
    result = gan.fit(x, 1, 32, transform=lambda b: b.astype(np.float32) / 127.5 - 1)  # scaled by a transform: fine
    assert not result.interrupted and gan.epoch == 1


def test_step_rows_about_fifty_an_epoch_and_epoch_rows(tmp_path):
    from pygan.cli import read_log

    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--train-size", "12800", "--batch-size", "128", "--out", str(out)]) == 0
    steps, epochs = read_log(out, "step"), read_log(out)
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert [r["steps"] for r in steps] == list(range(2, 201, 2))  # 100 batches an epoch: a row every 2 steps
    assert {"d_loss", "g_loss", "d_x", "d_g_z", "epoch", "batch", "seconds"} <= set(steps[0])
    for line in (out / "metrics.jsonl").read_text().splitlines():  # flat rows of scalars: a table as it is
        row = json.loads(line)
        assert isinstance(row, dict) and all(isinstance(v, (int, float, str, list)) for v in row.values())
    assert main(["train", "--epochs", "1", "--train-size", "1280", "--batch-size", "128", "--log-every", "3",
                 "--out", str(tmp_path / "b")]) == 0
    assert [r["steps"] for r in read_log(tmp_path / "b", "step")] == [3, 6, 9]
