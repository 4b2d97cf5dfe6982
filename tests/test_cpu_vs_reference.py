"""Every native op of the cpu backend against the NumPy reference (float32, random shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pygan
from pygan.backend import load_backend
from pygan.backend._checks import ACTIVATIONS

from helpers import assert_close

REF = load_backend("numpy")
CPU = load_backend("cpu")
SIZES = [1, 3, 17, 61, 127]
sizes = st.sampled_from(SIZES)


def dense_case(rng, n, k, m, bias):
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    return x, w, b


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=sizes, k=sizes, m=sizes, act=st.sampled_from(ACTIVATIONS), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_dense_forward_backward(n, k, m, act, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = dense_case(rng, n, k, m, bias)
    y = CPU.dense_forward(x, w, b, act, 0.2)
    y_ref = REF.dense_forward(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64), act, 0.2)
    scale = np.abs(x) @ np.abs(w) + (0 if b is None else np.abs(b)) + 1e-6
    assert y.dtype == np.float32 and y.shape == (n, m)
    assert np.all(np.abs(y - y_ref) <= 1e-5 * scale + 1e-6)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    # backward from the same float32 output, so both see the same activation pattern
    dx, dw, db = CPU.dense_backward(dy, x, w, y, act, 0.2)
    ex, ew, eb = REF.dense_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), y.astype(np.float64), act, 0.2)
    dz = np.abs(REF.activation_backward(dy.astype(np.float64), y.astype(np.float64), act, 0.2))
    assert np.all(np.abs(dx - ex) <= 1e-5 * (dz @ np.abs(w.T)) + 1e-6)
    assert np.all(np.abs(dw - ew) <= 1e-5 * (np.abs(x.T) @ dz) + 1e-6)
    assert np.all(np.abs(db - eb) <= 1e-5 * dz.sum(0) + 1e-6)


def test_dense_backward_skips():
    rng = np.random.default_rng(1)
    x, w, b = dense_case(rng, 5, 7, 3, True)
    y = CPU.dense_forward(x, w, b, "tanh")
    dy = np.ones_like(y)
    dx, dw, db = CPU.dense_backward(dy, x, w, y, "tanh", need_params=False)
    assert dw is None and db is None and dx.shape == x.shape
    dx2, dw2, db2 = CPU.dense_backward(dy, x, w, y, "tanh", need_dx=False)
    assert dx2 is None and dw2.shape == w.shape and db2.shape == b.shape
    assert_close(dx, CPU.dense_backward(dy, x, w, y, "tanh")[0], 0, 0)


@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_dense_zero_sizes(shape):
    n, k, m = shape
    x, w = np.zeros((n, k), np.float32), np.zeros((k, m), np.float32)
    b = np.ones(m, np.float32)
    y = CPU.dense_forward(x, w, b, "relu")
    assert_close(y, REF.dense_forward(x, w, b, "relu"), 0, 0)
    dx, dw, db = CPU.dense_backward(np.ones_like(y), x, w, y, "relu")
    ex, ew, eb = REF.dense_backward(np.ones_like(y), x, w, y, "relu")
    for a, e in ((dx, ex), (dw, ew), (db, eb)):
        assert a.shape == e.shape
        assert_close(a, e, 0, 0)


@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("threads", [1, 2])
def test_sgd_matches_reference(n, threads, thread_count):
    pygan.set_num_threads(threads)
    rng = np.random.default_rng(n)
    p, g, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    p2, v2 = p.copy(), v.copy()
    for _ in range(3):
        CPU.sgd_update(p, g, v, 0.05, 0.7)
        REF.sgd_update(p2, g, v2, 0.05, 0.7)
    assert_close(p, p2, 1e-6, 1e-6)
    assert_close(v, v2, 1e-6, 1e-6)


@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("threads", [1, 2])
def test_adam_matches_reference(n, threads, thread_count):
    pygan.set_num_threads(threads)
    rng = np.random.default_rng(n)
    p, g = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    for step in range(1, 6):
        g = rng.standard_normal(n).astype(np.float32)
        CPU.adam_update(p, g, m, v, 1e-3, 0.5, 0.999, 1e-8, step)
        REF.adam_update(p2, g, m2, v2, 1e-3, 0.5, 0.999, 1e-8, step)
    assert_close(p, p2, 1e-5, 1e-6)
    assert_close(m, m2, 1e-5, 1e-7)
    assert_close(v, v2, 1e-5, 1e-7)


def test_backend_info_names_native_and_fallback_ops():
    pygan.set_backend("cpu")
    info = pygan.backend_info()
    native, fallback = info.split("native: ")[1].split("; reference fallback: ")
    assert "dense_forward" in native and "adam_update" in native and "conv2d_forward" in native
    assert "maxout_forward" in fallback and "conv2d_forward" not in fallback
    pygan.set_backend("numpy")
    assert "reference" in pygan.backend_info()


def _layer_backward_cases(rng):
    """(op name, positional arguments, shapes of w and b) for the three backward ops with weights."""
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 9)).astype(np.float32) * 0.3
    y = REF.dense_forward(x, w, None, "tanh")
    yield "dense_backward", (rng.standard_normal(y.shape).astype(np.float32), x, w, y, "tanh"), w.shape, (9,)
    # convolutions on both sides of the 16-channel line where the pixels move to the broadcast side
    for cin, cout in [(9, 10), (17, 18)]:
        xc = rng.standard_normal((2, cin, 6, 6)).astype(np.float32)
        wc = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.2
        yc = REF.conv2d_forward(xc, wc, None, 2, 1, "leaky_relu")
        yield ("conv2d_backward", (rng.standard_normal(yc.shape).astype(np.float32), xc, wc, yc, 2, 1, "leaky_relu"),
               wc.shape, (cout,))
        wt = rng.standard_normal((cin, cout + 1, 4, 4)).astype(np.float32) * 0.2
        yt = REF.conv_transpose2d_forward(xc, wt, None, 2, 1, 0, "relu")
        yield ("conv_transpose2d_backward",
               (rng.standard_normal(yt.shape).astype(np.float32), xc, wt, yt, 2, 1, 0, "relu"), wt.shape, (cout + 1,))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_backward_writes_or_adds_into_param_grads(backend):
    """With param_grads the weight and bias gradients land in the caller's buffers (returned in their
    place): overwritten, or added to with accumulate; dx is unaffected."""
    B = load_backend(backend)
    rng = np.random.default_rng(3)
    for name, args, wshape, bshape in _layer_backward_cases(rng):
        op = getattr(B, name)
        dx, dw, db = getattr(REF, name)(*(a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args))
        gw, gb = np.full(wshape, 5.0, np.float32), np.full(bshape, 5.0, np.float32)
        got = op(*args, param_grads=(gw, gb), accumulate=False)
        assert got[1] is gw and got[2] is gb, name
        assert_close(got[0], dx, 1e-4, 1e-4)
        assert_close(gw, dw, 1e-4, 1e-4)
        assert_close(gb, db, 1e-4, 1e-4)
        op(*args, param_grads=(gw, gb), accumulate=True)
        assert_close(gw, 2 * dw, 2e-4, 2e-4)
        assert_close(gb, 2 * db, 2e-4, 2e-4)
        gw2 = np.full(wshape, 1.0, np.float32)
        _, w_only, b_new = op(*args, param_grads=(gw2, None), accumulate=True)  # a layer without bias
        assert w_only is gw2 and b_new is not None
        assert_close(gw2, dw + 1.0, 1e-4, 1e-4)
        assert_close(b_new, db, 1e-4, 1e-4)


@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("threads", [1, 2])
def test_rmsprop_matches_reference(n, threads, thread_count):
    pygan.set_num_threads(threads)
    rng = np.random.default_rng(n)
    p = rng.standard_normal(n).astype(np.float32)
    s = np.zeros(n, np.float32)
    p2, s2 = p.copy(), s.copy()
    for _ in range(4):
        g = rng.standard_normal(n).astype(np.float32)
        CPU.rmsprop_update(p, g, s, 5e-3, 0.99, 1e-8)
        REF.rmsprop_update(p2, g, s2, 5e-3, 0.99, 1e-8)
    assert_close(p, p2, 1e-5, 1e-6)
    assert_close(s, s2, 1e-5, 1e-7)
