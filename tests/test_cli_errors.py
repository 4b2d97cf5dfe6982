"""The command line never prints a traceback for a user's mistake: one line naming the flag or
file, exit status 2 for a mistake in the command line and 1 for a run that cannot go on;
``--debug`` shows the traceback instead."""

from __future__ import annotations

import os

import pytest

from pygan.cli import main

from helpers import cli_error

T = ["train", "--epochs", "1", "--train-size", "256"]

#: (arguments, exit status, words the one line must contain); {d} is a scratch folder.
CASES = [
    (T + ["--lr", "x"], 2, "argument --lr: expected a number"),
    (T + ["--lr", "nan"], 2, "argument --lr: must be a finite number"),
    (T + ["--lr", "-1"], 2, "argument --lr"),
    (T + ["--lr", "1e400"], 2, "argument --lr"),
    (T + ["--d-lr", "0"], 2, "argument --d-lr"),
    (T + ["--label-smoothing", "2"], 2, "argument --label-smoothing"),
    (T + ["--label-smoothing", "0"], 2, "argument --label-smoothing"),
    (T + ["--label-smoothing", "nan"], 2, "argument --label-smoothing"),
    (T + ["--d-steps", "0"], 2, "argument --d-steps: must be in 1 .. 100"),
    (T + ["--d-steps", "1e9"], 2, "argument --d-steps: expected a whole number"),
    (T + ["--d-steps", "99999999999999999999"], 2, "argument --d-steps"),
    (T + ["--seed", "-1"], 2, "argument --seed"),
    (T + ["--seed", "99999999999999999999999"], 2, "argument --seed"),
    (T + ["--out", "{d}/file.txt"], 2, "--out: {d}/file.txt is a file"),
    (T + ["--out", ""], 2, "--out: expected a folder name"),
    (T + ["--out", "{d}/file.txt/below"], 1, "NotADirectoryError"),
    (["train", "--resume", "--out", "{d}/empty"], 2, "--resume: no checkpoint"),
    (T + ["--batch-size", "0"], 2, "argument --batch-size"),
    (T + ["--batch-size", "100000000"], 2, "argument --batch-size"),
    (T + ["--epochs", "-1"], 2, "argument --epochs"),
    (T + ["--train-size", "0"], 2, "argument --train-size"),
    (["train", "--train-size", "10", "--out", "{d}/o"], 2, "--train-size: 10 examples are fewer than one batch"),
    (T + ["--threads", "0"], 2, "argument --threads"),
    (T + ["--threads", "100000"], 2, "argument --threads"),
    (T + ["--pack", "1000000"], 2, "argument --pack"),
    (T + ["--ema", "1"], 2, "argument --ema"),
    (T + ["--eval-samples", "1"], 2, "argument --eval-samples"),
    (T + ["--eval-every", "-1"], 2, "argument --eval-every"),
    (T + ["--clip", "-1"], 2, "argument --clip"),
    (T + ["--r1", "inf"], 2, "argument --r1"),
    (T + ["--gp-weight", "nan"], 2, "argument --gp-weight"),
    (T + ["--identity", "-1"], 2, "argument --identity"),
    (T + ["--image-size", "-32"], 2, "argument --image-size"),
    (T + ["--image-size", "30", "--model", "dcgan", "--dataset", "mnist"], 2, "--image-size"),
    (T + ["--jobs", "2"], 2, "--jobs is the number of parallel --seeds"),
    (T + ["--seeds", "0-1", "--jobs", "0"], 2, "argument --jobs"),
    (T + ["--seeds", "0-x"], 2, "--seeds"),
    (T + ["--model", "nope"], 2, "argument --model: invalid choice"),
    (T + ["--backend", "tpu"], 2, "argument --backend"),
    (T + ["--dataset", "mnist", "--data", "{d}/nowhere", "--out", "{d}/o"], 1, "missing"),
    (T + ["--dataset", "mnist", "--data", "{d}/file.txt", "--out", "{d}/o"], 1, "missing"),
    (["sample", "{d}/nope"], 1, "{d}/nope: cannot read"),
    (["sample", "{d}/junk.pygan"], 1, "{d}/junk.pygan"),
    (["sample", "{d}/fifo"], 1, "a named pipe, not a regular file"),
    (["sample", "{d}/empty"], 2, "not a pygan run"),
    (["sample", "{d}/file.txt"], 1, "too short to be a checkpoint"),
    (["sample", "{d}/file.txt", "--n", "0"], 2, "argument --n"),
    (["sample", "{d}/file.txt", "--truncation", "2"], 2, "argument --truncation"),
    (["sample", "{d}/file.txt", "--seed", "x"], 2, "argument --seed"),
    (["eval", "{d}/junk.pygan"], 1, "{d}/junk.pygan"),
    (["eval", "/dev/zero"], 1, "a character device, not a regular file"),
    (["eval", "{d}/file.txt", "--samples", "0"], 2, "argument --samples"),
    (["eval", "{d}/file.txt", "--test-size", "0"], 2, "argument --test-size"),
    (["eval", "{d}/file.txt", "--test-size", "100000"], 2, "argument --test-size"),
    (["frobnicate"], 2, "invalid choice"),
    ([], 2, "required: command"),
    (["train", "--nonsense"], 2, "unrecognized arguments: --nonsense"),
]


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "junk.pygan").write_bytes(b"PYGANCKP" + b"\0" * 40)
    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def test_every_mistake_is_one_line_with_the_right_status(scratch, capsys):
    for argv, status, words in CASES:
        argv = [a.format(d=scratch) for a in argv]
        err = cli_error(argv, capsys, status)
        assert words.format(d=scratch) in err, (argv, err)
    print(f"command-line cases: {len(CASES)}")


def test_debug_shows_the_traceback(scratch, capsys):
    with pytest.raises(ValueError, match="too short to be a checkpoint"):
        main(["sample", str(scratch / "file.txt"), "--debug"])
    with pytest.raises(Exception, match="is a file, not a folder"):
        main(["train", "--out", str(scratch / "file.txt"), "--debug"])
