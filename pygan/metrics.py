"""Metrics, each with its protocol stated next to it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The 2014 paper's bandwidth grid for the Parzen-window estimate.
PARZEN_SIGMAS: np.ndarray = np.logspace(-1, 0, 10)


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


def _points(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 2 or a.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty batch of points (n, ...), got shape {a.shape}")
    a = np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return a


def parzen_log_density(
    x: np.ndarray, centres: np.ndarray, sigmas: np.ndarray | float, block: int = 512
) -> np.ndarray:
    """Log-density of each point of ``x`` under an isotropic Gaussian Parzen window on ``centres``.

    ``log p(x) = logsumexp_j(-|x - c_j|^2 / (2 s^2)) - log m - (d/2) log(2 pi s^2)`` for every
    bandwidth s of ``sigmas``; returns ``(n, len(sigmas))`` float64 (or ``(n,)`` for one float).
    The dot products of a block of ``x`` with all centres come from pygan's GEMM core; the
    shifted log-sum-exp over them runs in Cython (prange, no GIL), so nothing of size n x m is held.
    """
    from .backend import cpu_backend  # metrics run on the host, on the native kernels

    single = np.ndim(sigmas) == 0
    s = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if s.ndim != 1 or s.size == 0 or not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"sigmas: expected positive finite bandwidths, got {sigmas!r}")
    xs = _points("x", x)
    cs = _points("centres", centres)
    if xs.shape[1] != cs.shape[1]:
        raise ValueError(f"centres: dimension {cs.shape[1]} differs from x's {xs.shape[1]}")
    block = int(block)
    if block < 1:
        raise ValueError(f"block: must be >= 1, got {block}")
    d = xs.shape[1]
    m = cs.shape[0]
    out = cpu_backend.parzen_log_sum_exp(xs, cs, 1.0 / (2.0 * s * s), block)
    out -= math.log(m) + 0.5 * d * np.log(2 * np.pi * s * s)
    return out[:, 0] if single else out


@dataclass
class ParzenResult:
    """A Parzen-window log-likelihood estimate: mean and standard error over the test points."""

    mean: float
    stderr: float
    sigma: float
    validation: dict[float, float]


def parzen_log_likelihood(
    samples: np.ndarray,
    validation: np.ndarray,
    test: np.ndarray,
    sigmas: np.ndarray = PARZEN_SIGMAS,
) -> ParzenResult:
    """The 2014 paper's estimate: Gaussian Parzen window on generated ``samples`` (10,000 in the
    paper), bandwidth chosen from ``sigmas`` (logspace(-1, 0, 10)) by the mean log-likelihood of
    ``validation`` (1,000 held-out digits), then the mean and standard error (std / sqrt(n)) of
    the log-likelihood of ``test`` (the 10,000 test digits), all in the [0, 1] pixel scale."""
    val = parzen_log_density(validation, samples, sigmas).mean(axis=0)
    best = int(np.argmax(val))
    sigma = float(np.asarray(sigmas)[best])
    ll = parzen_log_density(test, samples, sigma)
    return ParzenResult(
        mean=float(ll.mean()),
        stderr=float(ll.std(ddof=1) / math.sqrt(len(ll))) if len(ll) > 1 else float("nan"),
        sigma=sigma,
        validation={float(a): float(b) for a, b in zip(np.asarray(sigmas), val)},
    )
