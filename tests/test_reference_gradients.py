"""The NumPy reference against finite differences in float64: every op, and every loss (through the tape).

Each op's backward is checked through a random projection: with ``L = sum(r * y)`` for a fixed
random ``r``, the backward fed ``dy = r`` must equal the numerical gradient of ``L``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pygan import losses
from pygan.backend import reference as R
from pygan.backend._checks import ACTIVATIONS, GENERATOR_LOSSES

from helpers import assert_close, loss_and_grads, numerical_grad


def bce(logits, targets):
    """BCE-with-logits through the tape: ``(loss, dlogits)``."""
    return loss_and_grads(lambda l: losses.bce_with_logits(l, targets), logits)


def gen_loss(logits, kind):
    """A generator loss through the tape: ``(loss, dlogits)``."""
    return loss_and_grads(lambda l: losses.generator_loss(l, kind), logits)


def disc_loss(real, fake, real_target):
    """The discriminator loss through the tape: ``(loss, dreal, dfake)``."""
    return loss_and_grads(lambda r, f: losses.discriminator_loss(r, f, real_target), real, fake)

F64 = np.float64
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
dims = st.sampled_from([1, 2, 3, 5, 7])
acts = st.sampled_from(ACTIVATIONS)
seeds = st.integers(0, 2**31 - 1)


def away_from_kinks(a: np.ndarray, act: str) -> np.ndarray:
    """Keep pre-activations away from 0 for relu-type ops, where the derivative jumps."""
    if act in ("relu", "leaky_relu"):
        return np.where(np.abs(a) < 0.05, a + 0.1 * np.sign(a + 1e-12), a)
    return a


def check_grads(loss, arrays: dict[str, np.ndarray], analytic: dict[str, np.ndarray], tol: float = 1e-6) -> None:
    for name, arr in arrays.items():
        assert_close(analytic[name], numerical_grad(loss, arr), rtol=tol, atol=tol, what=name)


@SETTINGS
@given(n=dims, k=dims, m=dims, act=acts, bias=st.booleans(), seed=seeds)
def test_dense(n, k, m, act, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    b = rng.standard_normal(m) if bias else None
    r = rng.standard_normal((n, m))
    if act in ("relu", "leaky_relu"):
        z = x @ w + (b if b is not None else 0)
        if np.abs(z).min() < 1e-3:
            return  # a pre-activation sits on the kink; finite differences are meaningless there
    y = R.dense_forward(x, w, b, act, 0.1)
    dx, dw, db = R.dense_backward(r, x, w, y, act, 0.1)
    loss = lambda: float((R.dense_forward(x, w, b, act, 0.1) * r).sum())  # noqa: E731
    arrays = {"x": x, "w": w} | ({"b": b} if b is not None else {})
    check_grads(loss, arrays, {"x": dx, "w": dw, "b": db})


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), act=acts, seed=seeds)
def test_activation(shape, act, seed):
    rng = np.random.default_rng(seed)
    x = away_from_kinks(rng.standard_normal(shape), act)
    r = rng.standard_normal(shape)
    y = R.activation_forward(x, act, 0.3)
    dx = R.activation_backward(r, y, act, 0.3)
    check_grads(lambda: float((R.activation_forward(x, act, 0.3) * r).sum()), {"x": x}, {"x": dx})


conv_geom = st.tuples(
    st.integers(1, 2),  # batch
    st.integers(1, 3),  # c_in
    st.integers(1, 3),  # c_out
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(0, 4),  # extra image size beyond the kernel
)


@SETTINGS
@given(g=conv_geom, act=st.sampled_from(["identity", "tanh", "sigmoid"]), seed=seeds)
def test_conv2d(g, act, seed):
    n, ci, co, k, s, p, extra = g
    h = max(k + extra - 2 * p, 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci, h, h + 1))
    w = rng.standard_normal((co, ci, k, k))
    b = rng.standard_normal(co)
    try:
        y = R.conv2d_forward(x, w, b, s, p, act)
    except ValueError:
        return  # geometry leaves no output; covered by the bad-input tests
    r = rng.standard_normal(y.shape)
    dx, dw, db = R.conv2d_backward(r, x, w, y, s, p, act)
    loss = lambda: float((R.conv2d_forward(x, w, b, s, p, act) * r).sum())  # noqa: E731
    check_grads(loss, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


@SETTINGS
@given(g=conv_geom, op=st.integers(0, 2), act=st.sampled_from(["identity", "tanh", "sigmoid"]), seed=seeds)
def test_conv_transpose2d(g, op, act, seed):
    n, ci, co, k, s, p, extra = g
    op = op % s
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci, 1 + extra % 3, 2 + extra % 2))
    w = rng.standard_normal((ci, co, k, k))
    b = rng.standard_normal(co)
    try:
        y = R.conv_transpose2d_forward(x, w, b, s, p, op, act)
    except ValueError:
        return
    r = rng.standard_normal(y.shape)
    dx, dw, db = R.conv_transpose2d_backward(r, x, w, y, s, p, op, act)
    loss = lambda: float((R.conv_transpose2d_forward(x, w, b, s, p, op, act) * r).sum())  # noqa: E731
    check_grads(loss, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


@SETTINGS
@given(
    shape=st.sampled_from([(4, 3), (7, 1), (2, 3, 2, 3), (3, 2, 1, 1), (1, 2, 3, 3)]),
    training=st.booleans(),
    act=st.sampled_from(["identity", "tanh", "sigmoid"]),
    seed=seeds,
)
def test_batch_norm(shape, training, act, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    c = shape[1]
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    r = rng.standard_normal(shape)

    def fwd():
        return R.batch_norm_forward(x, gamma, beta, rm.copy(), rv.copy(), training, 0.1, 1e-5, act)

    y, mean, invstd = fwd()
    dx, dgamma, dbeta = R.batch_norm_backward(r, x, y, gamma, mean, invstd, training, act)
    loss = lambda: float((fwd()[0] * r).sum())  # noqa: E731
    check_grads(loss, {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dgamma, "beta": dbeta}, tol=1e-5)


def test_batch_norm_running_statistics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)) * 2 + 5
    rm, rv = np.zeros(3), np.ones(3)
    R.batch_norm_forward(x, np.ones(3), np.zeros(3), rm, rv, True, 0.25, 1e-5)
    assert_close(rm, 0.25 * x.mean(0), 1e-12, 1e-12)
    assert_close(rv, 0.75 + 0.25 * x.var(0, ddof=1), 1e-12, 1e-12)
    y, _, _ = R.batch_norm_forward(x, np.ones(3), np.zeros(3), rm, rv, False)
    assert_close(y, (x - rm) / np.sqrt(rv + 1e-5), 1e-12, 1e-12)


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), p=st.sampled_from([0.0, 0.2, 0.5]), seed=seeds)
def test_dropout(shape, p, seed):
    rng = np.random.default_rng(seed)
    x, r = rng.standard_normal(shape), rng.standard_normal(shape)
    y, mask = R.dropout_forward(x, p, seed=seed)
    assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - p)}
    y2, mask2 = R.dropout_forward(x, p, seed=seed)
    assert np.array_equal(mask, mask2) and np.array_equal(y, y2)
    dx = R.dropout_backward(r, mask)
    check_grads(lambda: float((R.dropout_forward(x, p, mask=mask)[0] * r).sum()), {"x": x}, {"x": dx})


def test_dropout_rate_is_p():
    x = np.ones((200, 500))
    _, mask = R.dropout_forward(x, 0.3, seed=1)
    assert abs((mask == 0).mean() - 0.3) < 0.01


@SETTINGS
@given(n=dims, units=dims, pieces=st.integers(1, 5), seed=seeds)
def test_maxout(n, units, pieces, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, units * pieces))
    r = rng.standard_normal((n, units))
    y, idx = R.maxout_forward(x, pieces)
    assert_close(y, x.reshape(n, units, pieces).max(axis=2), 0, 0)
    dx = R.maxout_backward(r, idx, pieces)
    check_grads(lambda: float((R.maxout_forward(x, pieces)[0] * r).sum()), {"x": x}, {"x": dx})


@SETTINGS
@given(n=dims, seed=seeds)
def test_bce_with_logits(n, seed):
    rng = np.random.default_rng(seed)
    logits, targets = rng.standard_normal((n, 1)) * 3, rng.uniform(0, 1, (n, 1))
    loss, grad = bce(logits, targets)
    p = 1 / (1 + np.exp(-logits))
    assert loss == pytest.approx(float(np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p)))), rel=1e-10)
    check_grads(lambda: bce(logits, targets)[0], {"l": logits}, {"l": grad})


def test_bce_is_stable_at_extreme_logits():
    for dtype in (np.float32, np.float64):
        logits = np.array([[100.0], [-100.0], [100.0], [-100.0]], dtype=dtype)
        targets = np.array([[1.0], [0.0], [0.0], [1.0]], dtype=dtype)
        loss, grad = bce(logits, targets)
        assert loss == pytest.approx(50.0)  # two exact answers (0) and two 100-nat mistakes
        assert np.all(np.isfinite(grad))
        assert_close(grad.ravel(), [0, 0, 0.25, -0.25], 0, 1e-7)


@SETTINGS
@given(n=dims, kind=st.sampled_from(GENERATOR_LOSSES), seed=seeds)
def test_generator_losses(n, kind, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, 1)) * 2
    loss, grad = gen_loss(logits, kind)
    d = 1 / (1 + np.exp(-logits))
    expected = {
        "minimax": np.mean(np.log(1 - d)),
        "non_saturating": np.mean(-np.log(d)),
        "maximum_likelihood": -0.5 * np.mean(d / (1 - d)),  # exp(logit) = D / (1 - D)
    }[kind]
    assert loss == pytest.approx(float(expected), rel=1e-9)
    check_grads(lambda: gen_loss(logits, kind)[0], {"l": logits}, {"l": grad})


def test_generator_loss_signs():
    """Pin each sign: the generator's gradient must push fake logits up (D(G(z)) towards 1)."""
    logits = np.zeros((4, 1))
    for kind in GENERATOR_LOSSES:
        _, grad = gen_loss(logits, kind)
        assert np.all(grad < 0), kind  # gradient descent on the loss raises the logits


@SETTINGS
@given(n=dims, smooth=st.sampled_from([1.0, 0.9]), seed=seeds)
def test_discriminator_loss_and_label_smoothing(n, smooth, seed):
    rng = np.random.default_rng(seed)
    lr, lf = rng.standard_normal((n, 1)), rng.standard_normal((n, 1))
    loss, gr, gf = disc_loss(lr, lf, smooth)
    er, egr = bce(lr, np.full_like(lr, smooth))
    ef, egf = bce(lf, np.zeros_like(lf))
    assert loss == pytest.approx(er + ef)
    assert_close(gr, egr, 0, 0)
    assert_close(gf, egf, 0, 0)  # one-sided: fake targets stay 0
    check_grads(lambda: disc_loss(lr, lf, smooth)[0], {"r": lr, "f": lf}, {"r": gr, "f": gf})


@pytest.mark.parametrize("size,output_padding", [(9, 0), (10, 1)])
def test_conv_transpose_is_adjoint_of_conv(size, output_padding):
    """<conv(x), u> == <x, convT(u)> with the same weights, stride 2, padding 1."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, size, size))
    w = rng.standard_normal((4, 3, 3, 3))
    y = R.conv2d_forward(x, w, None, 2, 1)
    u = rng.standard_normal(y.shape)
    xt = R.conv_transpose2d_forward(u, w, None, 2, 1, output_padding=output_padding)
    assert xt.shape == x.shape
    assert float((y * u).sum()) == pytest.approx(float((x * xt).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_references(dtype):
    """The reference updates against the textbook formulas written out here."""
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(10).astype(dtype), rng.standard_normal(10).astype(dtype)
    p, v = p0.copy(), np.zeros(10, dtype)
    R.sgd_update(p, g, v, 0.1, 0.5)
    R.sgd_update(p, g, v, 0.1, 0.5)
    assert_close(p, p0 - 0.1 * g - (0.5 * 0.1 * g + 0.1 * g), 1e-6, 1e-6)
    p, m, s = p0.copy(), np.zeros(10, dtype), np.zeros(10, dtype)
    R.adam_update(p, g, m, s, 0.01, 0.9, 0.999, 1e-8, 1)
    assert_close(p, p0 - 0.01 * np.sign(g) * np.abs(g) / (np.abs(g) + 1e-8), 1e-5, 1e-6)
