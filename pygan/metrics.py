"""Metrics, each with its protocol stated next to it."""

from __future__ import annotations

import numpy as np


def mode_coverage(samples: np.ndarray, means: np.ndarray, sigma: float) -> dict[str, float]:
    """Modes covered and fraction of high-quality samples on a toy mixture (VEEGAN/PacGAN protocol).

    A sample is high quality when it lies within 3 sigma of its nearest mode; a mode is covered
    when it is the nearest mode of at least one high-quality sample. The papers use 2,500 samples.
    """
    samples = np.asarray(samples, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    if samples.ndim != 2 or means.ndim != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(f"samples: expected (n, {means.shape[-1]}) points, got shape {samples.shape}")
    if len(samples) == 0:
        raise ValueError("samples: empty")
    d2 = ((samples[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    nearest = d2.argmin(axis=1)
    good = np.sqrt(d2[np.arange(len(samples)), nearest]) <= 3 * sigma
    return {
        "modes_covered": float(len(np.unique(nearest[good]))),
        "modes_total": float(len(means)),
        "high_quality": float(good.mean()),
    }
