"""Parzen-window estimator against a direct NumPy computation; the paper's protocol."""

from __future__ import annotations

import numpy as np
import pytest

from pygan import metrics


def direct_parzen(x, centres, sigma):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    c = np.asarray(centres, np.float64).reshape(len(centres), -1)
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    a = -d2 / (2 * sigma**2)
    mx = a.max(axis=1, keepdims=True)
    lse = (mx + np.log(np.exp(a - mx).sum(axis=1, keepdims=True)))[:, 0]
    return lse - np.log(len(c)) - 0.5 * x.shape[1] * np.log(2 * np.pi * sigma**2)


@pytest.mark.parametrize("n, m, d, block", [(1, 1, 1, 512), (7, 13, 5, 3), (61, 127, 17, 16), (300, 200, 784, 64)])
def test_parzen_matches_direct_computation(n, m, d, block):
    rng = np.random.default_rng(n + m + d)
    x = rng.random((n, d)).astype(np.float32)
    c = rng.random((m, d)).astype(np.float32)
    sigmas = np.array([0.05, 0.2, 1.0])
    got = metrics.parzen_log_density(x, c, sigmas, block=block)
    assert got.shape == (n, 3)
    for k, s in enumerate(sigmas):
        want = direct_parzen(x, c, s)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-4, atol=1e-3 * (1 + d / s**2 * 1e-4))
    single = metrics.parzen_log_density(x, c, 0.2, block=block)
    np.testing.assert_allclose(single, got[:, 1])


def test_parzen_is_finite_far_from_every_centre():
    x = np.full((2, 784), 1.0, np.float32)
    c = np.zeros((5, 784), np.float32)
    got = metrics.parzen_log_density(x, c, 0.1)
    np.testing.assert_allclose(got, direct_parzen(x, c, 0.1), rtol=1e-6)
    assert np.isfinite(got).all() and got.max() < -30000


def test_parzen_protocol_picks_the_best_bandwidth():
    rng = np.random.default_rng(0)
    centres = rng.random((400, 10)).astype(np.float32)
    val = centres[:50] + 0.2 * rng.standard_normal((50, 10)).astype(np.float32)
    test = centres[50:150] + 0.2 * rng.standard_normal((100, 10)).astype(np.float32)
    r = metrics.parzen_log_likelihood(centres, val, test)
    scores = r.validation
    assert r.sigma == max(scores, key=scores.get)
    ll = direct_parzen(test, centres, r.sigma)
    assert r.mean == pytest.approx(ll.mean(), rel=1e-5)
    assert r.stderr == pytest.approx(ll.std(ddof=1) / np.sqrt(100), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=np.zeros((0, 3)), centres=np.zeros((2, 3)), sigmas=0.1), "x"),
        (dict(x=np.zeros((2, 3)), centres=np.zeros((2, 4)), sigmas=0.1), "centres"),
        (dict(x=np.full((2, 3), np.nan), centres=np.zeros((2, 3)), sigmas=0.1), "x"),
        (dict(x=np.zeros((2, 3)), centres=np.zeros((2, 3)), sigmas=-1.0), "sigmas"),
        (dict(x=np.zeros((2, 3)), centres=np.zeros((2, 3)), sigmas=0.1, block=0), "block"),
    ],
)
def test_parzen_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        metrics.parzen_log_density(**kwargs)
