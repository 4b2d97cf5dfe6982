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


# ---------------------------------------------------------------------------------------------
# classifier-based metrics, in the feature space of pygan's own classifiers (pygan.classifier)
# ---------------------------------------------------------------------------------------------
def _features(name: str, f: np.ndarray, minimum: int = 2) -> np.ndarray:
    a = np.asarray(f)
    if a.ndim != 2 or a.shape[0] < minimum or a.shape[1] == 0:
        raise ValueError(f"{name}: expected (n >= {minimum}, d) feature vectors, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    return a


def _pair(a: np.ndarray, b: np.ndarray, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    fa, fb = _features("a", a, minimum), _features("b", b, minimum)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"b: feature dimension {fb.shape[1]} differs from a's {fa.shape[1]}")
    return fa, fb


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, covariances with ``n - 1``.

    ``tr (S_a S_b)^(1/2)`` is the sum of the square roots of the eigenvalues of the symmetric
    ``S_a^(1/2) S_b S_a^(1/2)`` (same spectrum), computed with symmetric eigendecompositions only.
    """
    fa, fb = _pair(a, b)
    mu = fa.mean(axis=0) - fb.mean(axis=0)
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.linalg.eigvalsh(root @ sb @ root)
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum())


@dataclass
class KIDResult:
    """Kernel inception distance: the mean of the unbiased MMD^2 over subsets, its standard error."""

    mean: float
    stderr: float
    subsets: int
    subset_size: int


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> KIDResult:
    """KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD between the feature
    sets with the kernel ``k(x, y) = (x.y / d + 1)^3``, on ``subsets`` random subsets of
    ``subset_size`` vectors from each set (drawn without replacement within a subset; capped at
    the smaller set's size); returns the mean over the subsets and its standard error
    (``std / sqrt(subsets)``)."""
    fa, fb = _pair(a, b)
    subsets, m = int(subsets), min(int(subset_size), len(fa), len(fb))
    if subsets < 1:
        raise ValueError(f"subsets: must be >= 1, got {subsets}")
    if int(subset_size) < 2:
        raise ValueError(f"subset_size: must be >= 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = fa[rng.choice(len(fa), m, replace=False)]
        y = fb[rng.choice(len(fb), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        values[s] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2.0 * kxy.mean()
    stderr = float(values.std(ddof=1) / math.sqrt(subsets)) if subsets > 1 else float("nan")
    return KIDResult(mean=float(values.mean()), stderr=stderr, subsets=subsets, subset_size=m)


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def _knn_radii(f: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance of each vector to its k-th nearest other vector of the same set."""
    out = np.empty(len(f))
    for i in range(0, len(f), block):
        d = _squared_distances(f[i : i + block], f)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf  # not its own neighbour
        out[i : i + block] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def _covered(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> np.ndarray:
    """Which points lie within some centre's radius (a ball of the k-NN manifold estimate)."""
    out = np.empty(len(points), dtype=bool)
    for i in range(0, len(points), block):
        out[i : i + block] = (_squared_distances(points[i : i + block], centres) <= radii[None, :]).any(axis=1)
    return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, block: int = 1000) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union
    of balls around its vectors, each reaching its k-th nearest neighbour (k = 3); precision is
    the fraction of ``fake`` inside the real manifold, recall the fraction of ``real`` inside
    the generated one."""
    fr, ff = _pair(real, fake, minimum=2)
    k = int(k)
    if not 1 <= k < min(len(fr), len(ff)):
        raise ValueError(f"k: must be in [1, {min(len(fr), len(ff)) - 1}] for these sets, got {k}")
    block = int(block)
    if block < 1:
        raise ValueError(f"block: must be >= 1, got {block}")
    real_r, fake_r = _knn_radii(fr, k, block), _knn_radii(ff, k, block)
    return {
        "precision": float(_covered(ff, fr, real_r, block).mean()),
        "recall": float(_covered(fr, ff, fake_r, block).mean()),
    }


def classifier_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """The Inception score's protocol on a classifier's ``p(y | x)``: ``exp(E_x KL(p(y|x) || p(y)))``
    on each of ``splits`` equal parts of the samples, returning the mean over the parts and its
    standard error. It ranges from 1 to the number of classes (10 for confident, balanced samples)."""
    p = _features("probabilities", probabilities, minimum=1)
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("probabilities: rows must be distributions (non-negative, summing to 1)")
    splits = int(splits)
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits: must be in [1, {len(p)}], got {splits}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    s = np.asarray(scores)
    return float(s.mean()), (float(s.std(ddof=1) / math.sqrt(splits)) if splits > 1 else float("nan"))


def image_metrics(
    fake: np.ndarray, real: np.ndarray, dataset: str, k: int = 3, seed: int = 0, classifier: object = None
) -> dict[str, float]:
    """FID, KID (mean and standard error), precision and recall (k = 3) and the classifier score of
    images ``fake`` against ``real`` (both in [0, 1], ``(n, 1, 28, 28)``), in the feature space of
    pygan's ``dataset`` classifier (or ``classifier`` when given)."""
    from . import classifier as clf

    net = classifier if classifier is not None else clf.load(dataset)
    ff, fr = net.features(fake), net.features(real)  # type: ignore[attr-defined]
    kid = kernel_inception_distance(fr, ff, seed=seed)
    pr = precision_recall(fr, ff, k=k)
    score, score_se = classifier_score(clf.softmax(net.head_logits(ff)))  # type: ignore[attr-defined]
    return {
        "fid": frechet_distance(fr, ff),
        "kid": kid.mean,
        "kid_stderr": kid.stderr,
        "precision": pr["precision"],
        "recall": pr["recall"],
        "classifier_score": score,
        "classifier_score_stderr": score_se,
    }


def diversity(samples: np.ndarray, reference: np.ndarray) -> float:
    """Mean pairwise Euclidean distance within ``samples`` over the same within ``reference``
    (e.g. 256 generated and 256 real examples): about 1 for a generator as varied as the data,
    near 0 for one that has collapsed to a few outputs. A cheap per-epoch collapse statistic."""
    def spread(name: str, a: np.ndarray) -> float:
        f = _features(name, np.asarray(a).reshape(len(a), -1))
        return float(np.sqrt(_squared_distances(f, f)).sum() / (len(f) * (len(f) - 1)))

    ref = spread("reference", reference)
    if ref == 0.0:
        raise ValueError("reference: all examples are identical")
    return spread("samples", samples) / ref


# ---------------------------------------------------------------------------------------------
# image-to-image figures: PSNR, SSIM, and the bicubic baseline
# ---------------------------------------------------------------------------------------------
def _image_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim < 3:
        raise ValueError(f"images: expected two batches of one shape (n, ..., H, W), got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("images: contain NaN or Inf")
    return x.reshape(len(x), *x.shape[-2:]), y.reshape(len(y), *y.shape[-2:])


def psnr(images: np.ndarray, targets: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Each image's peak signal-to-noise ratio against its target, ``10 log10(range^2 / MSE)`` in
    dB (infinite for an exact match). Single-channel batches ``(n, [1,] H, W)``."""
    x, y = _image_pair(images, targets)
    mse = ((x - y) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


def _gaussian_filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filtering of ``(n, H, W)`` with a 1-D window, 'valid' region only."""
    k = len(window)
    rows = sum(window[i] * x[:, i : x.shape[1] - k + 1 + i, :] for i in range(k))
    return sum(window[i] * rows[:, :, i : x.shape[2] - k + 1 + i] for i in range(k))


def ssim(images: np.ndarray, targets: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Each image's structural similarity to its target (Wang et al. 2004): their protocol's 11x11
    Gaussian window (sigma 1.5) over the valid region, K1 = 0.01, K2 = 0.03, the mean of the map."""
    x, y = _image_pair(images, targets)
    if min(x.shape[1:]) < 11:
        raise ValueError(f"images: SSIM's 11x11 window needs sides >= 11, got {x.shape[1:]}")
    t = np.arange(11) - 5.0
    window = np.exp(-(t**2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _gaussian_filter_valid(x, window), _gaussian_filter_valid(y, window)
    sxx = _gaussian_filter_valid(x * x, window) - mx * mx
    syy = _gaussian_filter_valid(y * y, window) - my * my
    sxy = _gaussian_filter_valid(x * y, window) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return smap.mean(axis=(1, 2))


def _cubic_weights(n_in: int, factor: int, a: float = -0.5) -> np.ndarray:
    """The ``(n_in * factor, n_in)`` matrix of bicubic (Keys, a = -0.5) upsampling along one axis,
    half-pixel centres, edge pixels repeated."""
    out = np.zeros((n_in * factor, n_in))
    for i in range(n_in * factor):
        src = (i + 0.5) / factor - 0.5
        base = math.floor(src)
        for tap in range(base - 1, base + 3):
            d = abs(src - tap)
            w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a if d < 2 else 0.0
            out[i, min(max(tap, 0), n_in - 1)] += w
    return out


def bicubic_upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic upsampling by an integer ``factor`` of ``(n, C, H, W)`` images (Keys' kernel, a =
    -0.5 as MATLAB's imresize; half-pixel centres; edges repeated), clipped to [0, 1]: the
    super-resolution baseline."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4:
        raise ValueError(f"images: expected (n, C, H, W), got shape {x.shape}")
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor: must be >= 1, got {factor}")
    wh, ww = _cubic_weights(x.shape[2], factor), _cubic_weights(x.shape[3], factor)
    return np.clip(np.einsum("ih,nchw,jw->ncij", wh, x, ww), 0.0, 1.0)
