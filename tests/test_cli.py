"""The ``pygan`` command end to end in a temporary folder: train, resume, sample, eval, errors."""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest

from pygan import data, io, metrics, plot
from pygan.cli import UsageError, main, read_log

from helpers import cli_error, interrupt_run, tiny_mnist_folder


def read_png(path):
    """Decode a PNG pygan wrote with Pillow (independently of pygan's own reader)."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)


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
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert {"d_loss", "g_loss", "d_x", "d_g_z", "d_acc_real", "d_acc_fake", "modes_covered", "high_quality"} <= set(log[0])
    for e in (1, 2, 3):
        img = read_png(out / "samples" / f"epoch_{e:03d}.png")
        assert img.shape == (600, 600, 3) and (img == plot.SAMPLE_RGB).all(axis=2).any()
        assert (img == plot.TRUE_RGB).all(axis=2).sum() < (img == [255, 255, 255]).all(axis=2).sum()  # drawn, not blank
    final, _ = io.load(out / "checkpoint.safetensors")

    # the same run, interrupted by Ctrl-C in a subprocess and resumed, ends bit for bit where it did
    out2 = tmp_path / "run2"
    cmd = [sys.executable, "-m", "pygan", *args[:-4], "--out", str(out2), "--seed", "3"]
    code, rest = interrupt_run(cmd, "epoch 1/3", signal.SIGINT, tmp_path)
    assert code == 0, rest
    assert "interrupted: saved" in rest
    saved, meta = io.load(out2 / "checkpoint.safetensors")
    assert meta["epoch"] * 64 + meta["batch_in_epoch"] == meta["steps"] < 3 * 64
    assert main(["train", "--resume", "--out", str(out2)]) == 0
    assert "resumed from" in capsys.readouterr().out
    again, _ = io.load(out2 / "checkpoint.safetensors")
    for k in final:
        assert final[k].tobytes() == again[k].tobytes(), k
    assert [r["epoch"] for r in read_log(out2)] == [1, 2, 3]
    # the step rows of the interrupted and resumed run are those of the uninterrupted one, once each
    assert [r["steps"] for r in read_log(out2, "step")] == [r["steps"] for r in read_log(out, "step")]

    assert main(["sample", str(out / "checkpoint.safetensors"), "--n", "300", "--out", str(tmp_path / "s.png")]) == 0
    assert read_png(tmp_path / "s.png").shape == (600, 600, 3)
    assert main(["eval", str(out / "checkpoint.safetensors")]) == 0
    assert "modes covered" in capsys.readouterr().out


def test_mnist_models_on_a_tiny_idx_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYGAN_DATA", str(tiny_mnist_folder(tmp_path / "data", 64)))
    for model in ("paper-mlp", "cgan", "dcgan"):
        out = tmp_path / model
        bs = "20" if model == "paper-mlp" else "16"
        assert main(["train", "--model", model, "--dataset", "mnist", "--epochs", "1", "--batch-size", bs,
                     "--eval-samples", "200", "--out", str(out)]) == 0
        grid = read_png(out / "samples" / "epoch_001.png")
        if model == "cgan":  # the classes' columns are labelled: a drawn picture around the grid
            assert grid.ndim == 3 and grid.shape[0] > 10 * 30 * 2 + 4 and grid.shape[1] >= 10 * 30 * 2 + 4
        else:
            assert grid.shape == (10 * 30 * 2 + 4, 10 * 30 * 2 + 4)
            assert (grid[:4] == round(255 * plot.GRID_SEPARATOR)).all()  # grey separators, not black
    sgd = tmp_path / "paper-sgd"
    assert main(["train", "--model", "paper-mlp", "--optimizer", "sgd", "--dataset", "mnist", "--epochs", "2",
                 "--batch-size", "20", "--out", str(sgd)]) == 0
    assert main(["train", "--resume", "--epochs", "3", "--out", str(sgd)]) == 0  # the schedule survives a resume
    capsys.readouterr()
    js = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "dcgan"), "--samples", "50", "--test-size", "20", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    for row in ("Parzen log-likelihood", "FID", "KID", "precision", "recall", "classifier score", "real data"):
        assert row in text, row
    result = json.loads(js.read_text())
    assert result["checkpoint"].endswith("best.safetensors") and "50 samples against 20 test images" in result["protocol"]
    for side in ("model", "real"):
        assert {"parzen", "parzen_stderr", "fid", "kid", "kid_stderr", "precision", "recall", "classifier_score"} <= set(result[side])
        assert 0 <= result[side]["precision"] <= 1 and 1 <= result[side]["classifier_score"] <= 10
    log = read_log(tmp_path / "dcgan")
    assert "val_parzen" in log[0] and "diversity" in log[0] and log[0]["best_epoch"] == 1


def test_cli_errors(tmp_path, capsys):
    assert "missing" in cli_error(["train", "--dataset", "mnist", "--data", str(tmp_path), "--out", str(tmp_path / "o")], capsys, 1)
    (tmp_path / "junk.pygan").write_bytes(b"junk")
    assert "junk.pygan" in cli_error(["eval", str(tmp_path / "junk.pygan")], capsys, 1)
    assert "needs an image dataset" in cli_error(["train", "--model", "dcgan", "--dataset", "ring8"], capsys)
    assert "--resume: no checkpoint" in cli_error(["train", "--resume", "--out", str(tmp_path / "none")], capsys)
    assert "argument --model: invalid choice" in cli_error(["train", "--model", "unknown"], capsys)
    assert "paper-mlp's original schedule" in cli_error(["train", "--optimizer", "sgd"], capsys)


def test_grid_defaults_differ_from_the_rings():
    from pygan.cli import _train_config, build_parser

    grid = _train_config(build_parser().parse_args(["train", "--dataset", "grid25"]))
    ring = _train_config(build_parser().parse_args(["train"]))
    assert (grid["epochs"], grid["g_act"], grid["pack"], grid["d_steps"]) == (300, "leaky_relu", 4, 1)
    assert (ring["epochs"], ring["g_act"], ring["pack"], ring["d_steps"]) == (50, None, 2, 2)
    assert grid["batch_size"] is ring["batch_size"] is None  # the model's: 256 for both
    wgan = _train_config(build_parser().parse_args(["train", "--loss", "wgan"]))
    assert wgan["d_steps"] == 5  # the objective's own schedule wins over the toy default
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


def test_best_and_last_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--epochs", "4", "--train-size", "4096", "--out", str(out), "--seed", "1"]
    assert main(base) == 0
    log = read_log(out)
    scores = [r["modes_covered"] + r["high_quality"] for r in log]
    best_epoch = 1 + int(np.argmax(scores))  # the first epoch with the highest score
    assert [r["best_epoch"] for r in log][-1] == best_epoch
    assert all(r["best_epoch"] == 1 + int(np.argmax(scores[: r["epoch"]])) for r in log)
    _, best = io.load(out / "best.safetensors")
    _, last = io.load(out / "checkpoint.safetensors")
    assert best["epoch"] == best_epoch and last["epoch"] == 4
    assert best["run"]["best"]["score"] == pytest.approx(max(scores))
    assert last["run"]["best"]["epoch"] == best_epoch
    assert f"best: epoch {best_epoch}" in capsys.readouterr().out
    # a resumed run keeps the best so far: three more epochs only replace it with a better one
    assert main(["train", "--resume", "--epochs", "7", "--out", str(out)]) == 0
    log = read_log(out)
    scores = [r["modes_covered"] + r["high_quality"] for r in log]
    _, best = io.load(out / "best.safetensors")
    assert best["epoch"] == 1 + int(np.argmax(scores)) and best["run"]["best"]["score"] == pytest.approx(max(scores))
    # eval and sample take a run folder (its best checkpoint) or either file
    capsys.readouterr()
    assert main(["eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    assert "best.safetensors" in text and "modes covered" in text and "real data" in text
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["real"]["modes_covered"] == 8 and result["real"]["high_quality"] > 0.97  # 3 sigma in 2-D: 98.9%
    assert 0 <= result["model"]["high_quality"] <= 1
    assert main(["sample", str(out), "--n", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(out / "checkpoint.safetensors"), "--samples", "100"]) == 0
    assert "not a pygan run" in cli_error(["eval", str(tmp_path)], capsys)
    assert "--eval-every" in cli_error(["train", "--eval-every", "0", "--out", str(tmp_path / "x")], capsys)


def test_collapse_warning_on_a_collapsed_generator(tmp_path, capsys):
    from pygan.cli import BEST, Run, _Reporter, _train_config, build_parser, collapse_warnings

    config = _train_config(build_parser().parse_args(["train", "--train-size", "1024", "--epochs", "2"]))
    config["batch_size"] = 128
    run = Run(config)
    as_varied = metrics.diversity(run.x[:256], run.x[256:512])  # a generator as varied as the data
    assert 0.9 < as_varied < 1.1
    healthy = collapse_warnings({"d_acc_real": 0.6, "d_acc_fake": 0.7}, {"diversity": as_varied})
    assert healthy == []
    last = run.spec.generator.layers[-1]
    last.w.data[...] = 0.0  # every z gives the same point: a collapsed generator
    scores = run.evaluate(seed=0)
    assert scores["diversity"] < 1e-6
    assert any("vary" in w for w in collapse_warnings({}, scores))
    assert any("discriminator" in w for w in collapse_warnings({"d_acc_real": 1.0, "d_acc_fake": 0.995}, {}))
    reporter = _Reporter(run, tmp_path, 2, 8, 0.0, {}, 4)
    run.gan.epoch = 1
    summary = {k: 0.5 for k in ("d_loss", "g_loss", "d_x", "d_g_z")} | {"d_acc_real": 1.0, "d_acc_fake": 1.0}
    reporter.on_epoch_end(run.gan, summary)
    printed = capsys.readouterr().out
    assert printed.count("warning:") == 2 and "mode collapse" in printed
    (record,) = read_log(tmp_path)
    assert len(record["warnings"]) == 2 and (tmp_path / BEST).exists()


def test_parse_seeds():
    from pygan.cli import parse_seeds

    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5,1-2,2") == [5, 1, 2]
    for bad in ("", "a", "3-1", "-1", "0-99999"):
        with pytest.raises(UsageError, match="--seeds"):
            parse_seeds(bad)


def test_seeds_run_in_parallel_and_are_summarised(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["train", "--seeds", "0-1", "--epochs", "2", "--train-size", "2048", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["failed"] == []
    finals = []
    for s in (0, 1):
        rows = read_log(out / f"seed-{s}")
        assert len(rows) == 2
        _, meta = io.load(out / f"seed-{s}" / "checkpoint.safetensors")
        assert meta["config"]["seed"] == s and meta["config"]["epochs"] == 2 and meta["config"]["train_size"] == 2048
        finals.append(rows[-1]["high_quality"])
    hq = summary["last_high_quality"]
    assert hq["n"] == 2 and hq["mean"] == pytest.approx(np.mean(finals))
    assert hq["stderr"] == pytest.approx(np.std(finals, ddof=1) / np.sqrt(2))
    assert "last high_quality" in text and "standard error of 2 seeds" in text


def test_weight_average_defaults():
    from pygan.cli import _train_config, build_parser

    cfg = lambda *a: _train_config(build_parser().parse_args(["train", *a]))  # noqa: E731
    assert cfg("--model", "paper-mlp", "--dataset", "mnist")["ema"] == 0.999
    assert cfg("--model", "paper-mlp", "--dataset", "mnist", "--ema", "0.99")["ema"] == 0.99
    assert cfg()["ema"] is None and cfg("--model", "dcgan", "--dataset", "mnist")["ema"] is None
    with pytest.raises(SystemExit):  # argparse refuses them (tests/test_cli_errors.py checks the message)
        cfg("--ema", "1.5")
    with pytest.raises(SystemExit):
        cfg("--d-lr", "-1")


def test_histogram_of_samples_all_off_the_plot():
    """A young 1-D generator's samples can all fall outside the plotted range: an empty histogram."""
    means, sigma = data.toy_modes("gauss1d")
    img = plot.scatter(np.full((50, 1), 1e3), means, sigma)
    assert img.shape == (600, 600, 3) and (img == plot.TRUE_RGB).all(axis=2).any()
    assert (img == plot.BAR_RGB).all(axis=2).sum() < 400  # no sample bars: only the legend's swatch
    full = plot.scatter(np.random.default_rng(0).normal(means[0, 0], sigma, (500, 1)), means, sigma)
    assert (full == plot.BAR_RGB).all(axis=2).sum() > 2000
