"""Data-parallel training over MPI: the deterministic average, the two-rank run against the
single-process run of the same global batch, bit-identical repeats, exact resume, failures that
end every rank, Ctrl-C, and seeds dealt to ranks. Every MPI run is a real ``mpiexec -n N`` of
MPICH (the ``mpi`` extra) on this machine, bounded in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pygan import io
from pygan.cli import read_log

#: The launcher the mpich wheel installs beside the interpreter (the test extras bring it).
MPIEXEC = Path(sys.executable).with_name("mpiexec")
#: The float32 tolerance of a two-rank run against the single process of the same global batch:
#: the same arithmetic, the gradient sums taken in another order (measured: at most 6e-7 after
#: 64 Adam steps of the ring's MLP GAN).
ATOL, RTOL = 1e-5, 1e-4


def mpiexec(n: int, argv: list[str], cwd: Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """``mpiexec -n N ARGV`` (MPICH, loopback only), its output captured; ``check``: it must succeed."""
    env = {k: v for k, v in os.environ.items() if k != "PYGAN_NUM_THREADS"}
    proc = subprocess.run([str(MPIEXEC), "-n", str(n), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def pygan(*args: str) -> list[str]:
    return [sys.executable, "-m", "pygan", *args]


def tensors(run: Path) -> dict[str, np.ndarray]:
    return io.load(run / "checkpoint.safetensors")[0]


TOY = ["train", "--epochs", "2", "--train-size", "4096", "--eval-samples", "500", "--threads", "1"]


def test_the_average_is_the_rank_order_sum(tmp_path):
    """On 3 ranks (uneven chunks), float32 and float64: every rank gets exactly
    ``((b0 + b1) + b2) / 3`` element by element, and sends 2 (N - 1) / N of the buffer."""
    script = tmp_path / "avg.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from pygan.distributed import Group
        g = Group()
        for dtype, n in ((np.float32, 1001), (np.float64, 7), (np.float32, 2)):
            bufs = [np.random.default_rng(r).standard_normal(n).astype(dtype) for r in range(g.size)]
            want = bufs[0].copy()
            for b in bufs[1:]:
                want += b
            want /= dtype(g.size)
            got = bufs[g.rank].copy()
            sent = g.bytes_sent
            g.average(got)
            assert got.dtype == dtype and np.array_equal(got, want), (dtype, n, np.abs(got - want).max())
            chunk = n // g.size + (1 if g.rank < n % g.size else 0)
            assert g.bytes_sent - sent == (n - chunk + chunk * (g.size - 1)) * np.dtype(dtype).itemsize
        stats, stop = g.sync({"a": float(g.rank), "b": 1.0}, stop=g.rank == 2)
        assert stats == {"a": 1.0, "b": 1.0} and stop
        assert g.any(g.rank == 1) and not g.any(False)
        print(f"rank-{g.rank}-ok", flush=True)
    """))
    out = mpiexec(3, [sys.executable, str(script)], tmp_path).stdout
    assert all(out.count(f"rank-{r}-ok") == 1 for r in range(3)), out


EQUAL_SCRIPT = """
import sys
import numpy as np
import pygan
from pygan import data, models, objectives

loss, classes, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pygan.set_num_threads(1)
spec = models.build("mlp", (2,), num_classes=classes, pack=2, seed=0)
objective = {"non_saturating": None, "wgan-gp": objectives.WGANGP(), "hinge": objectives.Hinge(),
             "lsgan": objectives.LeastSquares()}[loss]
lr = 0.01 if loss == "wgan-gp" else 0.05  # rates that train without diverging
gan = pygan.GAN(spec.generator, spec.discriminator, pygan.SGD(spec.generator.parameters(), lr=lr, momentum=0.5),
                pygan.SGD(spec.discriminator.parameters(), lr=lr, momentum=0.5), latent_dim=spec.latent_dim,
                num_classes=classes, pack=2, seed=1, objective=objective, d_steps=2)
if "--distributed" in sys.argv:
    from pygan.distributed import Group
    group = Group()
    group.attach(gan)
x, labels = data.toy_labelled("ring8", 1024, seed=2)
g0 = gan.g_optimizer.flat.copy()
history = gan.fit(x, epochs=2, batch_size=128, labels=labels if classes else None, seed=3).history
if gan.group is None or gan.group.rank == 0:
    np.savez(out, g0=g0, g=gan.g_optimizer.flat, d=gan.d_optimizer.flat,
             stats=np.array([[h[k] for k in sorted(h)] for h in history]))
"""


@pytest.mark.parametrize("loss,classes", [("non_saturating", 0), ("non_saturating", 8), ("wgan-gp", 0), ("hinge", 0),
                                          ("lsgan", 8)])
def test_two_ranks_equal_one_process_of_the_global_batch(tmp_path, loss, classes):
    """Same global batch, same data, same noise, labels and interpolates: after 16 SGD iterations
    of both players (2 critic steps each) the two-rank run is within float32 tolerance of the
    single process, epoch statistics too; a repeat of the two-rank run is bit-identical. (SGD, so
    that the comparison sees the arithmetic: Adam's first steps are lr * sign(g), which a gradient
    entry at rounding level, e.g. of a dead unit, flips either way.)"""
    script = tmp_path / "equal.py"
    script.write_text(EQUAL_SCRIPT)
    args = [str(script), loss, str(classes)]
    single = subprocess.run([sys.executable, *args, "one.npz"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    for name in ("two.npz", "again.npz"):
        mpiexec(2, [sys.executable, *args, name, "--distributed"], tmp_path)
    one, two, again = (np.load(tmp_path / name) for name in ("one.npz", "two.npz", "again.npz"))
    for k in ("g", "d", "stats"):
        assert np.array_equal(two[k], again[k]), f"{k}: two repeats of the two-rank run differ"
        np.testing.assert_allclose(two[k], one[k], rtol=RTOL, atol=ATOL, err_msg=k)
    assert np.abs(one["g"] - one["g0"]).max() > 100 * ATOL  # it trained, beyond the tolerance


def test_two_rank_command_line_runs_repeat_bit_for_bit(tmp_path):
    """``pygan train --distributed`` (Adam, the CLI's defaults) twice: the same checkpoint to the
    bit; the logged statistics are the ranks' average, within rounding of the single process's."""
    single = subprocess.run(pygan(*TOY, "--out", "one"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    for out in ("two", "again"):
        mpiexec(2, pygan(*TOY, "--distributed", "--out", out), tmp_path)
    two, again = tensors(tmp_path / "two"), tensors(tmp_path / "again")
    assert all(np.array_equal(two[k], again[k]) for k in two)
    first = [read_log(tmp_path / d, "step")[0] for d in ("one", "two")]
    assert first[0]["steps"] == first[1]["steps"]
    for key in ("d_loss", "g_loss", "d_x", "d_g_z"):
        assert abs(first[0][key] - first[1][key]) < 1e-5, key
    assert io.load(tmp_path / "two" / "checkpoint.safetensors")[1]["run"]["ranks"] == 2


def test_resume_on_two_ranks_is_exact(tmp_path):
    mpiexec(2, pygan(*TOY, "--distributed", "--out", "straight"), tmp_path)
    mpiexec(2, pygan(*TOY, "--distributed", "--epochs", "1", "--out", "resumed"), tmp_path)
    out = mpiexec(2, pygan("train", "--resume", "--epochs", "2", "--distributed", "--out", "resumed"), tmp_path).stdout
    assert "resumed from" in out and "note:" not in out
    a, b = tensors(tmp_path / "straight"), tensors(tmp_path / "resumed")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_command_line_mistakes_under_mpiexec_are_one_line(tmp_path):
    for argv, words, status in ((["--batch-size", "100", "--pack", "4"], "times the 2 ranks", 2),
                                (["--model", "lapgan", "--dataset", "mnist"], "--distributed trains", 2),
                                (["--dataset", "mnist", "--model", "dcgan", "--data", str(tmp_path / "none")], "missing", 1)):
        proc = mpiexec(2, pygan("train", "--distributed", "--out", "r", *argv), tmp_path, check=False)
        assert proc.returncode == status, (argv, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (argv, proc.stderr)


def test_without_mpi4py_distributed_is_one_line(tmp_path, capsys, monkeypatch):
    from helpers import cli_error

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    err = cli_error(["train", "--distributed", "--out", str(tmp_path / "r")], capsys, 1)
    assert "pip install 'pygan[mpi]'" in err
    assert "give one" in cli_error(["train", "--distributed", "--seeds", "0-1", "--out", str(tmp_path / "s")], capsys)


def test_a_failing_rank_ends_every_rank_with_its_message(tmp_path):
    """Rank 1 alone fails mid-run (rank 0 waits in a collective): the job ends at once, with the
    failure's message naming the rank, and a non-zero status."""
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        import sys
        from pygan import cli
        from pygan.gan import GAN
        if cli.distributed.launched_size() > 1 and int(__import__("os").environ["PMI_RANK"]) == 1:
            step = GAN.train_step
            def failing(self, *a, **k):
                if self.steps == 3:
                    raise ValueError("injected failure")
                return step(self, *a, **k)
            GAN.train_step = failing
        sys.exit(cli.main(sys.argv[1:]))
    """))
    start = time.perf_counter()
    proc = mpiexec(2, [sys.executable, str(script), *TOY, "--epochs", "1000", "--distributed", "--out", "r"],
                   tmp_path, timeout=60, check=False)
    assert proc.returncode != 0 and time.perf_counter() - start < 60
    assert "injected failure" in proc.stderr and "(rank 1 of 2)" in proc.stderr


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not (path.exists() and path.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < end, "the run did not start"
        time.sleep(0.1)


def _ranks(marker: str) -> dict[int, int]:
    """pid of each rank whose command line holds ``marker`` (not the launcher), by rank."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmd and not cmd[0].endswith(b"mpiexec"):
            rank = next((int(e.split(b"=", 1)[1]) for e in env if e.startswith(b"PMI_RANK=")), None)
            if rank is not None:
                found[rank] = int(pid)
    return found


def test_a_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", *pygan(*TOY, "--epochs", "1000", "--distributed", "--out", str(out))],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(out / "metrics.jsonl", proc)
        ranks = _ranks(str(out))
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "BAD TERMINATION" in text and "signal 9" in text.lower()


def test_ctrl_c_stops_every_rank_at_one_step(tmp_path):
    """SIGINT to mpiexec (Ctrl-C) reaches every rank; they agree on a step, rank 0 saves it, and
    --resume continues from it."""
    out = tmp_path / "stopped"
    proc = subprocess.Popen([str(MPIEXEC), "-n", "2", *pygan(*TOY, "--epochs", "1000", "--distributed", "--out", str(out))],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(out / "metrics.jsonl", proc)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "interrupted: saved" in text, text[-2000:]
    steps = io.load(out / "checkpoint.safetensors")[1]["steps"]
    resumed = mpiexec(2, pygan("train", "--resume", "--epochs", str(1 + steps // 32), "--distributed", "--out",
                               str(out)), tmp_path).stdout
    assert f"(step {steps})" in resumed


def test_seeds_are_dealt_to_the_ranks(tmp_path):
    proc = mpiexec(2, pygan("train", "--seeds", "0-2", "--epochs", "1", "--train-size", "1024", "--eval-samples", "300",
                            "--out", "sweep"), tmp_path)
    assert "rank 0 of 2: seeds 0, 2" in proc.stdout and "rank 1 of 2: seeds 1" in proc.stdout
    summary = json.loads((tmp_path / "sweep" / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["last_modes_covered"]["n"] == 3
    # the same seed alone gives the same run
    single = subprocess.run(pygan("train", "--epochs", "1", "--train-size", "1024", "--eval-samples", "300",
                                  "--seed", "1", "--threads", "1", "--out", "alone"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    a, b = tensors(tmp_path / "alone"), tensors(tmp_path / "sweep" / "seed-1")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_dropout_streams():
    """A rank's dropout masks come from its own stream; the layer's generator advances alike."""
    from pygan.nn import Dropout

    x = np.ones((4, 64), np.float32)
    masks, states = [], []
    for stream in (0, 1, 0):
        d = Dropout(0.5, seed=3)
        d.stream = stream
        masks.append(d(x).data.copy())
        states.append(d._rng.bit_generator.state)
    assert np.array_equal(masks[0], masks[2]) and not np.array_equal(masks[0], masks[1])
    assert states[0] == states[1]
