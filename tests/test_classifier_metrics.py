"""Classifier-based metrics (FID, KID, precision/recall, classifier score) against direct NumPy
computations on small data; the cross-entropy op; the shipped classifiers' integrity and accuracy."""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
import pytest

import pygan
from pygan import classifier, data, io, metrics
from pygan.losses import cross_entropy

from helpers import numerical_grad


# ----------------------------------------------------------------------------------- direct forms
def direct_fid(a, b):
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(sa sb): the eigenvalues of the (non-symmetric) product are real and non-negative
    ev = np.linalg.eigvals(sa @ sb)
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(np.clip(ev.real, 0, None)).sum())


def direct_mmd2(x, y):
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def direct_pr(real, fake, k):
    def radii(s):
        out = []
        for i in range(len(s)):
            d = sorted(np.linalg.norm(s[i] - s[j]) for j in range(len(s)) if j != i)
            out.append(d[k - 1])
        return np.array(out)

    rr, fr = radii(real), radii(fake)
    prec = np.mean([any(np.linalg.norm(f - real[j]) <= rr[j] for j in range(len(real))) for f in fake])
    rec = np.mean([any(np.linalg.norm(r - fake[j]) <= fr[j] for j in range(len(fake))) for r in real])
    return prec, rec


# ----------------------------------------------------------------------------------------- FID
@pytest.mark.parametrize("n, d", [(50, 3), (200, 17), (400, 64)])
def test_fid_matches_direct_computation(n, d):
    rng = np.random.default_rng(d)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    b = rng.standard_normal((n + 7, d)) * 1.5 + 0.3
    assert metrics.frechet_distance(a, b) == pytest.approx(direct_fid(a, b), rel=1e-7, abs=1e-8)


def test_fid_closed_form_and_identity():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 2)) * [1.0, 2.0]
    b = rng.standard_normal((20000, 2)) * [3.0, 0.5] + [1.0, -2.0]
    # diagonal Gaussians: |mu|^2 + sum (s_a - s_b)^2
    want = (1 + 4) + (1 - 3) ** 2 + (2 - 0.5) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(want, rel=0.03)
    assert abs(metrics.frechet_distance(a, a)) < 1e-8
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-9)


# ----------------------------------------------------------------------------------------- KID
def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 0.5
    r = metrics.kernel_inception_distance(a, b, subsets=1, subset_size=30)
    assert r.subset_size == 30 and r.subsets == 1
    assert r.mean == pytest.approx(direct_mmd2(a, b), rel=1e-9)
    assert math.isnan(r.stderr)


def test_kid_subsets_mean_and_stderr():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((60, 3)), rng.standard_normal((50, 3)) * 2
    r = metrics.kernel_inception_distance(a, b, subsets=5, subset_size=20, seed=7)
    sub = np.random.default_rng(7)
    vals = [direct_mmd2(a[sub.choice(60, 20, replace=False)], b[sub.choice(50, 20, replace=False)]) for _ in range(5)]
    assert r.mean == pytest.approx(np.mean(vals), rel=1e-9)
    assert r.stderr == pytest.approx(np.std(vals, ddof=1) / np.sqrt(5), rel=1e-9)


def test_kid_is_unbiased_for_one_distribution():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))
    r = metrics.kernel_inception_distance(a, b, subsets=50, subset_size=200)
    assert abs(r.mean) < 3 * r.stderr + 1e-4  # unbiased: zero within its error for equal laws
    far = metrics.kernel_inception_distance(a, b + 1.0, subsets=50, subset_size=200)
    assert far.mean > 20 * far.stderr


# ------------------------------------------------------------------------- precision and recall
@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_matches_brute_force(k):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((40, 3))
    fake = rng.standard_normal((35, 3)) * 0.5 + 0.8
    got = metrics.precision_recall(real, fake, k=k, block=7)
    want = direct_pr(real, fake, k)
    assert got["precision"] == pytest.approx(want[0]) and got["recall"] == pytest.approx(want[1])


def test_precision_recall_sees_a_collapse():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((500, 4))
    collapsed = rng.standard_normal((500, 4)) * 0.05  # all near one point of the real manifold
    pr = metrics.precision_recall(real, collapsed)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.2
    same = metrics.precision_recall(real, rng.standard_normal((500, 4)))
    assert same["precision"] > 0.6 and same["recall"] > 0.6


# ---------------------------------------------------------------------------- classifier score
def test_classifier_score_direct_and_extremes():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((100, 10)) * 3
    p = classifier.softmax(logits)
    got, se = metrics.classifier_score(p, splits=4)
    parts = np.array_split(p, 4)
    want = [np.exp(np.mean([np.sum(q * (np.log(q) - np.log(part.mean(0)))) for q in part])) for part in parts]
    assert got == pytest.approx(np.mean(want), rel=1e-10)
    assert se == pytest.approx(np.std(want, ddof=1) / 2, rel=1e-9)
    confident = np.eye(10)[np.arange(1000) % 10]
    assert metrics.classifier_score(confident)[0] == pytest.approx(10.0)
    assert metrics.classifier_score(np.full((1000, 10), 0.1))[0] == pytest.approx(1.0)
    one_class = np.eye(10)[np.zeros(1000, int)]
    assert metrics.classifier_score(one_class)[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3))), "a"),
        (lambda: metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4))), "b"),
        (lambda: metrics.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3))), "a"),
        (lambda: metrics.kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 3)), subsets=0), "subsets"),
        (lambda: metrics.kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 3)), subset_size=1), "subset_size"),
        (lambda: metrics.precision_recall(np.zeros((5, 3)), np.zeros((5, 3)), k=5), "k"),
        (lambda: metrics.precision_recall(np.zeros((5, 3)), np.zeros((5, 3)), block=0), "block"),
        (lambda: metrics.classifier_score(np.full((5, 3), 0.5)), "probabilities"),
        (lambda: metrics.classifier_score(np.full((5, 2), 0.5), splits=6), "splits"),
    ],
)
def test_metric_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=f"^{message}:"):
        call()


# ------------------------------------------------------------------------------ cross-entropy op
def test_cross_entropy_value_and_gradients():
    rng = np.random.default_rng(0)
    with pygan.use_backend("numpy"):
        logits = rng.standard_normal((7, 5)) * 4
        y = rng.integers(0, 5, 7)
        t = pygan.tensor(logits, requires_grad=True)
        loss = cross_entropy(t, y)
        lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        assert loss.item() == pytest.approx(np.mean(lse - logits[np.arange(7), y]), rel=1e-12)
        (g,) = pygan.grad(loss, [t], create_graph=True)
        probe = logits.copy()
        want = numerical_grad(lambda: cross_entropy(pygan.tensor(probe), y).item(), probe)
        np.testing.assert_allclose(g.data, want, rtol=1e-6, atol=1e-9)
        v = rng.standard_normal((7, 5))
        (hv,) = pygan.grad((g * pygan.tensor(v)).sum(), [t])  # a Hessian-vector product

        def grad_at(a):
            ta = pygan.tensor(a, requires_grad=True)
            return pygan.grad(cross_entropy(ta, y), [ta])[0].data

        eps = 1e-5
        np.testing.assert_allclose(hv.data, (grad_at(logits + eps * v) - grad_at(logits - eps * v)) / (2 * eps),
                                   rtol=1e-5, atol=1e-8)


def test_cross_entropy_cpu_matches_reference_and_checks_labels():
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((33, 10)) * 5).astype(np.float32)
    y = rng.integers(0, 10, 33)
    outs = {}
    for b in ("numpy", "cpu"):
        with pygan.use_backend(b):
            t = pygan.tensor(logits, requires_grad=True)
            loss = cross_entropy(t, y)
            loss.backward()
            outs[b] = (loss.item(), t.grad.copy())
    assert outs["cpu"][0] == pytest.approx(outs["numpy"][0], rel=1e-6)
    np.testing.assert_allclose(outs["cpu"][1], outs["numpy"][1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="^labels:"):
        cross_entropy(logits, y[:-1])
    with pytest.raises(ValueError, match="^labels:"):
        cross_entropy(logits, np.full(33, 10))
    with pytest.raises(ValueError, match="^labels:"):
        cross_entropy(logits, y.astype(np.float32))
    with pytest.raises(ValueError, match="^logits:"):
        cross_entropy(logits[0], y[:1])


# ------------------------------------------------------------------------- the shipped classifiers
def test_shipped_classifiers_are_intact():
    assert classifier.WEIGHTS.exists()
    assert classifier.WEIGHTS.stat().st_size < 2 << 20  # one small file
    digest = hashlib.sha256(classifier.WEIGHTS.read_bytes()).hexdigest()
    assert digest == classifier.WEIGHTS_SHA256
    tensors, meta = io.load(classifier.WEIGHTS)  # CRC-32 of every tensor checked
    assert {k.split(".")[0] for k in tensors} == set(classifier.CLASSIFIER_DATASETS)
    assert meta["accuracy"]["mnist"] >= 0.99 and meta["accuracy"]["fashion-mnist"] >= 0.90
    for name in classifier.CLASSIFIER_DATASETS:
        net = classifier.load(name)
        assert not net.training
        f = net.features(np.zeros((3, 1, 28, 28), np.float32))
        assert f.shape == (3, classifier.FEATURES) and (f >= 0).all()
        np.testing.assert_allclose(net.head_logits(f), net.logits(np.zeros((3, 784), np.float32)), rtol=1e-5, atol=1e-5)


def test_classifier_inputs_are_checked():
    net = classifier.load("mnist")
    with pytest.raises(ValueError, match="^images:"):
        net.features(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(TypeError, match="^images:.*255"):
        net.features(np.zeros((2, 1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="^dataset:"):
        classifier.load("cifar10")


def _real(name, split, n):
    if not os.environ.get("PYGAN_DATA"):
        pytest.skip("PYGAN_DATA is not set: no real MNIST folder to read")
    x, y = data.load_images(name, split)
    return x[:n], y[:n]


@pytest.mark.parametrize("name, floor", [("mnist", 0.985), ("fashion-mnist", 0.88)])
def test_shipped_classifier_accuracy_on_a_test_subset(name, floor):
    x, y = _real(name, "test", 2000)
    assert classifier.load(name).accuracy(x, y) >= floor


def test_image_metrics_real_floor_and_a_degenerate_generator():
    x, _ = _real("mnist", "test", 2000)
    real, other = x[:1000], x[1000:2000]
    floor = metrics.image_metrics(other, real, "mnist")
    blurred = np.repeat(real.mean(axis=0, keepdims=True), 1000, axis=0)  # one grey blob
    bad = metrics.image_metrics(blurred + 0.01 * np.random.default_rng(0).random(blurred.shape, np.float32), real, "mnist")
    assert floor["fid"] < 0.1 * bad["fid"] and floor["kid"] < 0.1 * bad["kid"]
    assert floor["precision"] > 0.6 and floor["recall"] > 0.6 and bad["recall"] < 0.05
    assert floor["classifier_score"] > 8.0 and bad["classifier_score"] < 2.0


def test_classifier_training_learns_a_subset():
    x, y = _real("mnist", "train", 3000)
    tx, ty = _real("mnist", "test", 1000)
    net = classifier.train_classifier(x, y, epochs=2, batch_size=64, shift=1, flip=False, seed=1)
    assert net.accuracy(tx, ty) > 0.7  # chance is 0.1; 3,000 digits seen twice give about 0.84
