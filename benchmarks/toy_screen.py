"""Screen toy-data training configurations over several seeds: the quality counterpart of the A/B tools.

Each seed trains ``pygan train``'s run for the given flags (the same configuration, data and schedule,
without pictures or checkpoints) in its own process, one thread each, two at a time, then scores its
last epoch on 10,000 samples: mode coverage and the high-quality share (PacGAN's measure), and where
the samples that miss lie (the share within 1, 2, 3, 4, 6 and 10 sigma of the nearest mode, and the
clusters' radial and tangential spread in sigma). Prints one line per configuration, mean +- standard
error over the seeds, and a line per seed::

    python benchmarks/toy_screen.py 0-5 -- --d-steps 2 --pack 2
    python benchmarks/toy_screen.py 0-1 -- --dataset grid25 --epochs 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from multiprocessing import Pool
from typing import Any

import numpy as np

SIGMAS = (1, 2, 3, 4, 6, 10)


def _one(job: tuple[int, list[str]]) -> dict[str, Any]:
    """Train one seed of the configuration and score its last epoch."""
    seed, flags = job
    from pygan import _core, cli, metrics
    from pygan.backend import set_backend

    set_backend("cpu")
    _core.set_num_threads(1)
    config = cli._train_config(cli.build_parser().parse_args(["train", "--seed", str(seed), *flags]))
    run = cli.Run(config)
    batch = config["batch_size"] or run.spec.batch_size
    run.gan.fit(run.x, config["epochs"], batch, labels=run.labels, seed=config["seed"], transform=run.transform,
                schedule=run.schedule, d_schedule=run.d_schedule)
    points = run.samples(10000, 7)
    score = metrics.mode_coverage(points, run.means, run.sigma)
    dist = np.sqrt(((points[:, None, :] - run.means[None]) ** 2).sum(-1))
    near, d = dist.argmin(1), dist.min(1) / run.sigma
    rel = points - run.means[near]
    angle = np.arctan2(run.means[near][:, 1], run.means[near][:, 0])
    radial = rel[:, 0] * np.cos(angle) + rel[:, 1] * np.sin(angle)
    tangential = -rel[:, 0] * np.sin(angle) + rel[:, 1] * np.cos(angle)
    inside = d < 6
    return {"seed": seed, "modes": score["modes_covered"], "hq": score["high_quality"],
            "within": [float(np.mean(d < s)) for s in SIGMAS],
            "spread": (float(radial[inside].std() / run.sigma), float(tangential[inside].std() / run.sigma))}


def main() -> None:
    """Parse the seeds and the flags, train the seeds, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", help="seeds as pygan train --seeds takes them (0-5, 0,3,7)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel seeds (default: one per core)")
    parser.epilog = "after --: pygan train flags (toy data only)"
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, flags = parser.parse_args(argv[:cut]), argv[cut + 1:]
    from pygan import cli

    with Pool(max(1, args.jobs)) as pool:
        results = pool.map(_one, [(s, flags) for s in cli.parse_seeds(args.seeds)], chunksize=1)
    hq = [100 * r["hq"] for r in results]
    err = statistics.stdev(hq) / len(hq) ** 0.5 if len(hq) > 1 else float("nan")
    print(f"{' '.join(flags) or '(defaults)'}: high-quality {statistics.mean(hq):.1f} +- {err:.1f}%, modes "
          f"{statistics.mean(r['modes'] for r in results):.2f} (seeds {args.seeds}, 10,000 samples each)")
    for r in results:
        within = ", ".join(f"{100 * w:.1f}" for w in r["within"])
        print(f"  seed {r['seed']}: {r['modes']:.0f} modes, {100 * r['hq']:.1f}%; within {SIGMAS} sigma: {within}%; "
              f"spread radial {r['spread'][0]:.2f}, tangential {r['spread'][1]:.2f} sigma")


if __name__ == "__main__":
    main()
