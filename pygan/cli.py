"""The ``pygan`` command: ``pygan train`` trains a GAN and reports how well it does."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from . import data, metrics
from .backend import BACKENDS, _checks, backend_info, set_backend
from .gan import GAN
from .models import mlp_discriminator, mlp_generator
from .optim import Adam


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pygan`` command."""
    parser = argparse.ArgumentParser(prog="pygan", description="Train and evaluate small GANs.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a GAN (default: an MLP GAN on the ring of 8 Gaussians)")
    train.add_argument("--dataset", choices=data.TOY_DATASETS, default="ring8")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--samples-per-epoch", type=int, default=25600, help="toy data drawn per epoch")
    train.add_argument("--loss", choices=_checks.GENERATOR_LOSSES, default="non_saturating")
    train.add_argument("--d-steps", type=int, default=1)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--backend", choices=BACKENDS, default="cpu")
    train.add_argument("--seed", type=int, default=0)
    return parser


def train_toy(args: argparse.Namespace) -> dict[str, float]:
    """Train an MLP GAN on a toy mixture and return its mode coverage on 2,500 samples."""
    set_backend(args.backend)
    print(backend_info())
    means, sigma = data.toy_modes(args.dataset)
    dim = means.shape[1]
    latent = 16
    g = mlp_generator(latent, [128, 128], dim, seed=args.seed)
    d = mlp_discriminator(dim, [128, 128], seed=args.seed + 1)
    gan = GAN(
        g,
        d,
        Adam(g.parameters(), lr=args.lr),
        Adam(d.parameters(), lr=args.lr),
        latent_dim=latent,
        loss=args.loss,
        d_steps=args.d_steps,
        seed=args.seed,
    )
    start = time.perf_counter()
    for epoch in range(args.epochs):
        real = data.toy_samples(args.dataset, args.samples_per_epoch, seed=args.seed * 100_003 + epoch)
        for batch in data.minibatches(real, args.batch_size, seed=epoch):
            stats = gan.train_step(batch)
        cover = metrics.mode_coverage(np.asarray(gan.sample(2500, seed=12345)), means, sigma)
        print(
            f"epoch {epoch + 1}/{args.epochs}  d_loss {stats['d_loss']:.3f}  g_loss {stats['g_loss']:.3f}  "
            f"D(x) {stats['d_x']:.2f}  D(G(z)) {stats['d_g_z']:.2f}  "
            f"modes {cover['modes_covered']:.0f}/{cover['modes_total']:.0f}  "
            f"high-quality {100 * cover['high_quality']:.1f}%  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    return cover


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pygan`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train_toy(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
