"""A train step on cores another process wants: the DCGAN's step at batch 64 (one D step, one G
step, Adam: the step of ``pygan.bench``) alone and beside one busy process (a Python loop that
never sleeps), under OpenMP wait policies, interleaved round by round (the order reversed every
other round).

    python benchmarks/shared_cores.py [--model dcgan] [--batch 64] [--rounds 3] [--seconds 3]

Policies: libgomp's own default (its threads spin 300,000 rounds before they sleep), 3,000 rounds,
OMP_WAIT_POLICY=PASSIVE (they sleep at once), and one thread (nothing to wait for). Each cell is a
fresh process timing steps for ``--seconds`` after 5 warm-up steps; printed: the median over the
rounds of each process's median step, idle and loaded, and loaded / idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: name -> (environment, threads)
POLICIES = {
    "libgomp default (spin 300000)": ({}, 2),
    "GOMP_SPINCOUNT=3000": ({"GOMP_SPINCOUNT": "3000"}, 2),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "1 thread": ({}, 1),
}


def worker(model: str, batch: int, threads: int, seconds: float) -> None:
    """Print the median step time (ms) of ``model`` at ``batch`` on ``threads`` threads."""
    import numpy as np

    import pygan
    from pygan.bench import step_cases

    pygan.set_num_threads(threads)
    step = step_cases(model, batch, None, columns=("pygan",))["pygan"]
    for _ in range(5):
        step()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(f"{float(np.median(times)) * 1e3:.3f}")


def cell(args: argparse.Namespace, env: dict[str, str], threads: int, loaded: bool) -> float:
    """One process's median step (ms), beside a busy process when ``loaded``."""
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "PYGAN_NUM_THREADS")}
    base["OPENBLAS_NUM_THREADS"] = "1"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", args.model, str(args.batch), str(threads),
                              str(args.seconds)], env={**base, **env}, check=True, capture_output=True, text=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return float(out.stdout.split()[-1])


def main() -> None:
    """Run the rounds (or, with --worker, one timed process) and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        model, batch, threads, seconds = sys.argv[2:6]
        worker(model, int(batch), int(threads), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dcgan", choices=["dcgan", "mlp"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[tuple[str, bool], list[float]] = {}
    order = [(name, loaded) for name in POLICIES for loaded in (False, True)]
    for r in range(args.rounds):
        for name, loaded in order if r % 2 == 0 else order[::-1]:
            env, threads = POLICIES[name]
            results.setdefault((name, loaded), []).append(cell(args, env, threads, loaded))
    print(f"{args.model} step at batch {args.batch}, median of {args.rounds} rounds (ms)")
    print(f"{'policy':32s} {'idle':>9s} {'loaded':>9s} {'loaded/idle':>12s}")
    for name in POLICIES:
        idle, busy = statistics.median(results[(name, False)]), statistics.median(results[(name, True)])
        print(f"{name:32s} {idle:9.1f} {busy:9.1f} {busy / idle:12.2f}")


if __name__ == "__main__":
    main()
