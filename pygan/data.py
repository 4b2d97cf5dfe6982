"""Data: the toy distributions of the GAN literature and seeded minibatches."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .backend import _checks as C

TOY_DATASETS: tuple[str, ...] = ("ring8", "grid25", "gauss1d")


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """Mode centres and per-mode standard deviation of a toy mixture.

    ``ring8``: 8 Gaussians with means on the unit circle, sigma 0.01; ``grid25``: 25 Gaussians with
    means {-4,-2,0,2,4}^2, sigma 0.05 (both as the PacGAN paper defines them); ``gauss1d``: the 1-D
    Gaussian N(4, 0.5) of the 2014 paper's Figure 1 style illustrations (one mode).
    """
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01
    if name == "grid25":
        g = np.arange(-4.0, 5.0, 2.0)
        return np.array([(a, b) for a in g for b in g]), 0.05
    if name == "gauss1d":
        return np.array([[4.0]]), 0.5
    raise ValueError(f"name: unknown toy dataset {name!r}; expected one of {', '.join(TOY_DATASETS)}")


def toy_samples(name: str, n: int, seed: int | None = None, dtype: type = np.float32) -> np.ndarray:
    """``n`` samples of a toy mixture, modes picked uniformly."""
    n = C.check_int("n", n, 0)
    means, sigma = toy_modes(name)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(means), size=n)
    return (means[which] + sigma * rng.standard_normal((n, means.shape[1]))).astype(dtype)


def minibatches(data: np.ndarray, batch_size: int, seed: int | None = None, drop_last: bool = True) -> Iterator[np.ndarray]:
    """One epoch of shuffled minibatches (contiguous copies), reproducible from ``seed``."""
    batch_size = C.check_int("batch_size", batch_size, 1)
    order = np.random.default_rng(seed).permutation(len(data))
    stop = len(data) - (len(data) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield np.ascontiguousarray(data[order[start : start + batch_size]])
