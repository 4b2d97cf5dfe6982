"""Data-parallel scaling on this machine: N ranks x 1 thread against 1 rank x 1 thread at a fixed
global batch, for whole train steps (one D step, one G step, Adam, non-saturating loss: the
step of ``pygan.bench``), interleaved round by round (the order reversed every other round); and a model of the efficiency on N machines.

    python benchmarks/distributed_scaling.py [--models dcgan mlp] [--batch 64] [--ranks 2] [--rounds 7] [--steps 8]

Each round runs the single process, then ``mpiexec -n N`` of the same global batch (each rank its
B / N share, the gradients averaged by ``pygan.distributed``), and N independent processes of
B / N each at once, with no communication: what N processes can do on this machine's shared cores,
caches and memory, the ceiling of the distributed run. Each reports the median of its timed steps
(after 3 warm-up steps; a barrier before each timed step of the distributed run; the slowest of the
independent processes). Printed per model: the medians over the rounds, the speedup and efficiency
(speedup / N) from the median of the per-round ratios, the same for the ceiling, the bytes each
rank sends per step, and the modelled efficiency on N machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: Link speeds of the model (bits per second) and a per-message latency (seconds) for each.
LINKS = {"10 Gbit/s": (10e9, 20e-6), "100 Gbit/s": (100e9, 5e-6)}
#: The efficiency the model asks of a per-machine batch.
TARGET = 0.9


def worker(model: str, batch: int, steps: int, distributed: bool) -> None:
    """Time ``steps`` train steps of ``model`` at global batch ``batch``; rank 0 prints a JSON line."""
    import numpy as np

    import pygan
    from pygan import models
    from pygan.gan import GAN
    from pygan.optim import Adam

    pygan.set_num_threads(1)
    group = None
    if distributed:
        from pygan.distributed import Group

        group = Group()
    size, rank = (1, 0) if group is None else (group.size, group.rank)
    shape = (1, 28, 28)
    spec = models.build(model, shape, seed=0)
    gan = GAN(spec.generator, spec.discriminator, Adam(spec.generator.parameters()),
              Adam(spec.discriminator.parameters()), latent_dim=spec.latent_dim, seed=0)
    if group is not None:
        group.attach(gan)
    real = np.random.default_rng(2).uniform(-1, 1, (batch, *shape)).astype(np.float32)
    if model == "mlp":
        real = real.reshape(batch, -1)
    local = np.ascontiguousarray(real[rank * batch // size : (rank + 1) * batch // size])
    times = []
    for i in range(3 + steps):
        if group is not None:
            group.barrier()
        t = time.perf_counter()
        gan.train_step(local)
        if i >= 3:
            times.append(time.perf_counter() - t)
    sent = 0 if group is None else group.bytes_sent
    if rank == 0:
        params = int(gan.g_optimizer.flat.size + gan.d_optimizer.flat.size)
        print(json.dumps({"median_s": statistics.median(times), "bytes_per_step": sent / (3 + steps),
                          "params": params}), flush=True)


def _run(cmd: list[str], copies: int = 1) -> list[dict]:
    """Run ``copies`` of ``cmd`` at once; each one's last JSON line."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(copies)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()[-500:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def model_efficiency(step_s: float, batch: int, grad_bytes: float, machines: int, link: tuple[float, float]) -> float:
    """Modelled efficiency of ``machines`` machines on one global batch: each computes its share in
    ``step_s * share / batch`` (compute linear in the batch, as measured per example here) and
    then exchanges ``2 (N - 1) / N`` of the gradients over the link, unoverlapped, with 2 (N - 1)
    messages of latency per player update (two updates a step)."""
    bandwidth, latency = link
    compute = step_s / machines
    comm = 2 * (machines - 1) / machines * grad_bytes * 8 / bandwidth + 2 * 2 * (machines - 1) * latency
    return compute / (compute + comm)


def batch_for(step_s: float, batch: int, grad_bytes: float, machines: int, link: tuple[float, float]) -> float:
    """The per-machine batch at which the modelled efficiency reaches ``TARGET``."""
    bandwidth, latency = link
    per_example = step_s / batch
    comm = 2 * (machines - 1) / machines * grad_bytes * 8 / bandwidth + 2 * 2 * (machines - 1) * latency
    return TARGET / (1 - TARGET) * comm / per_example


def main() -> None:
    """Parse the arguments, run the interleaved rounds, print the table and the model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dcgan", "mlp"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]), args.distributed)
        return
    me = [sys.executable, str(Path(__file__).resolve())]
    mpiexec = str(Path(sys.executable).with_name("mpiexec"))
    results = {}
    for model in args.models:
        job = ["--worker", model, str(args.batch), str(args.steps)]
        share = ["--worker", model, str(args.batch // args.ranks), str(args.steps)]
        one, many, ratios, ceiling = [], [], [], []
        for i in range(args.rounds):
            runs = {"one": lambda: _run(me + job)[0],
                    "many": lambda: _run([mpiexec, "-n", str(args.ranks)] + me + job + ["--distributed"])[0],
                    "alone": lambda: max(_run(me + share, copies=args.ranks), key=lambda r: r["median_s"])}
            order = list(runs) if i % 2 == 0 else list(runs)[::-1]  # no side always first
            got = {name: runs[name]() for name in order}
            a, b, alone = got["one"], got["many"], got["alone"]["median_s"]
            one.append(a["median_s"])
            many.append(b["median_s"])
            ratios.append(a["median_s"] / b["median_s"])
            ceiling.append(a["median_s"] / alone)
        speedup = statistics.median(ratios)
        step1 = statistics.median(one)
        r = {"batch": args.batch, "ranks": args.ranks, "rounds": args.rounds, "steps": args.steps,
             "step_1rank_ms": 1e3 * step1, "step_nranks_ms": 1e3 * statistics.median(many),
             "speedup": speedup, "efficiency": speedup / args.ranks, "speedup_range": [min(ratios), max(ratios)],
             "ceiling_speedup": statistics.median(ceiling), "ceiling_efficiency": statistics.median(ceiling) / args.ranks,
             "bytes_per_step_per_rank": b["bytes_per_step"], "params": b["params"]}
        grad_bytes = 4.0 * b["params"]
        r["model"] = {name: {str(n): {"efficiency": model_efficiency(step1, args.batch, grad_bytes, n, link),
                                      "batch_per_machine_for_90pct": batch_for(step1, args.batch, grad_bytes, n, link)}
                             for n in (2, 4, 8, 16, 64)} for name, link in LINKS.items()}
        results[model] = r
        print(f"{model}, global batch {args.batch}: 1 rank x 1 thread {r['step_1rank_ms']:.2f} ms, {args.ranks} ranks x "
              f"1 thread {r['step_nranks_ms']:.2f} ms; speedup {speedup:.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f}), "
              f"efficiency {100 * r['efficiency']:.1f}%; {args.ranks} independent processes of batch "
              f"{args.batch // args.ranks} (the ceiling): speedup {r['ceiling_speedup']:.3f}, efficiency "
              f"{100 * r['ceiling_efficiency']:.1f}%; {b['params']:,} parameters, "
              f"{r['bytes_per_step_per_rank'] / 1e6:.2f} MB sent per rank per step")
        for name, rows in r["model"].items():
            cells = "  ".join(f"N={n}: {100 * v['efficiency']:.0f}% (90% from batch {v['batch_per_machine_for_90pct']:.0f}"
                              "/machine)" for n, v in rows.items())
            print(f"  model, {name}, global batch {args.batch}: {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
