"""Interleaved A/B of whole train steps between two installations of pygan.

Two persistent worker processes (each interpreter imports its own pygan) take turns: N steps of
``pygan.bench.step_cases(model, batch)["pygan"]`` each, for R rounds, so a drift in the machine's
speed reaches both alike. Prints each side's median step time and the median of per-round ratios::

    python benchmarks/interleave_steps.py --a OLD_VENV/bin/python --b NEW_VENV/bin/python mlp 64 50 30

The bench's convolution rows run the same way (``conv-forward``, ``conv-backward`` for the forward +
backward row, ``convT-forward``, ``convT-backward``: the DCGAN layers at batch 64, conv(64->128) on
64x64x14x14 and convT(128->64) on 64x128x7x7; the batch argument must be 64)::

    python benchmarks/interleave_steps.py --a OLD/bin/python --b NEW/bin/python convT-forward 64 10 12
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


CONV_ROWS = {f"{name}-{part}": (name == "convT", row) for name in ("conv", "convT")
             for part, row in (("forward", "forward"), ("backward", "forward+backward"))}


def worker(model: str, batch: int) -> None:
    """Answer each line ``N`` on stdin with the times (ms) of N train steps (or calls of a
    convolution row)."""
    from pygan import bench

    if model in CONV_ROWS:
        transposed, row = CONV_ROWS[model]
        step = bench.conv_cases(transposed, None)[row]["pygan"]
    else:
        step = bench.step_cases(model, batch, None)["pygan"]
    for _ in range(5):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e3)
        print(" ".join(f"{t:.4f}" for t in times), flush=True)


def main() -> None:
    """Parse the arguments, start both workers, run the rounds, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="interpreter of the 'before' installation")
    parser.add_argument("--b", required=True, help="interpreter of the 'after' installation")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("model", choices=("mlp", "dcgan", *CONV_ROWS))
    parser.add_argument("batch", type=int)
    parser.add_argument("steps", type=int, nargs="?", default=50, help="steps per turn")
    parser.add_argument("rounds", type=int, nargs="?", default=30)
    args = parser.parse_args()
    if args.model in CONV_ROWS and args.batch != 64:
        parser.error(f"batch: the {args.model} row is the DCGAN layer at batch 64, got {args.batch}")
    if args.worker:
        worker(args.model, args.batch)
        return
    cmd = [__file__, "--a", "-", "--b", "-", "--worker", args.model, str(args.batch)]
    procs = {side: subprocess.Popen([exe, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for side, exe in (("before", args.a), ("after", args.b))}
    for p in procs.values():
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("interleave_steps: error: a worker did not start")
    times: dict[str, list[float]] = {side: [] for side in procs}
    ratios = []
    for _ in range(args.rounds):
        medians = {}
        for side, p in procs.items():
            p.stdin.write(f"{args.steps}\n")
            p.stdin.flush()
            turn = [float(t) for t in p.stdout.readline().split()]
            times[side] += turn
            medians[side] = statistics.median(turn)
        ratios.append(medians["after"] / medians["before"])
    for p in procs.values():
        p.stdin.close()
        p.wait()
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"{args.model} batch {args.batch}: before {before:.3f} ms, after {after:.3f} ms, after/before "
          f"{after / before:.3f} (median of {args.rounds} per-round ratios {statistics.median(ratios):.3f}; "
          f"{len(times['before'])} steps each)")


if __name__ == "__main__":
    main()
