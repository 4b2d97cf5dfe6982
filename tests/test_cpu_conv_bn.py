"""The cpu backend's native conv2d, conv_transpose2d and batch norm against the float64 reference:
random geometry (kernel 1..5, stride 1..3, padding 0..2, odd image sizes, batch 1, channel counts on
both sides of the data gradient's phase-GEMM threshold), every ISA path,
thread counts 1 and 2 (bit-identical), the adjoint identity, bad geometry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pygan
from pygan.backend import load_backend

from helpers import assert_close

REF = load_backend("numpy")
CPU = load_backend("cpu")
ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid"]


def f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def within(got, want, scale, what):
    err = np.abs(got - want)
    assert np.all(err <= 2e-5 * scale + 1e-5), f"{what}: max error {err.max()} (scale {scale.max()})"


geometry = st.fixed_dictionaries({
    "n": st.sampled_from([1, 2, 3]), "c_in": st.sampled_from([1, 3, 4, 9, 16, 17]), "c_out": st.sampled_from([1, 2, 5, 9, 16, 33]),
    "h": st.integers(4, 11), "w": st.integers(4, 11), "k": st.integers(1, 5), "stride": st.integers(1, 3),
    "pad": st.integers(0, 2), "act": st.sampled_from(ACTS), "bias": st.booleans(), "seed": st.integers(0, 2**31),
})


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(g=geometry)
def test_conv2d_against_float64(isa, isa_name, g):
    isa(isa_name)
    if g["k"] > g["h"] + 2 * g["pad"] or g["k"] > g["w"] + 2 * g["pad"]:
        return
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c_in"], g["h"], g["w"])).astype(np.float32)
    w = rng.standard_normal((g["c_out"], g["c_in"], g["k"], g["k"])).astype(np.float32)
    b = rng.standard_normal(g["c_out"]).astype(np.float32) if g["bias"] else None
    s, p, act = g["stride"], g["pad"], g["act"]
    y = CPU.conv2d_forward(x, w, b, s, p, act)
    want = REF.conv2d_forward(*f64(x, w, b), s, p, act)
    scale = REF.conv2d_forward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), None, s, p) + (0 if b is None else np.abs(b)[None, :, None, None])
    within(y, want, scale, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = CPU.conv2d_backward(dy, x, w, y, s, p, act)
    ex, ew, eb = REF.conv2d_backward(*f64(dy, x, w, y), s, p, act)
    dz = np.abs(REF.activation_backward(*f64(dy, y), act))
    sx, sw, _ = REF.conv2d_backward(dz, np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.zeros_like(dz), s, p)
    within(dx, ex, sx, "dx")
    within(dw, ew, sw, "dw")
    within(db, eb, dz.sum(axis=(0, 2, 3)), "db")


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(g=geometry, op=st.integers(0, 2))
def test_conv_transpose2d_against_float64(isa, isa_name, g, op):
    isa(isa_name)
    s, p, act = g["stride"], g["pad"], g["act"]
    op = min(op, s - 1)
    ho = (g["h"] - 1) * s - 2 * p + g["k"] + op
    if ho <= 0 or (g["w"] - 1) * s - 2 * p + g["k"] + op <= 0:
        return
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c_in"], g["h"], g["w"])).astype(np.float32)
    w = rng.standard_normal((g["c_in"], g["c_out"], g["k"], g["k"])).astype(np.float32)
    b = rng.standard_normal(g["c_out"]).astype(np.float32) if g["bias"] else None
    y = CPU.conv_transpose2d_forward(x, w, b, s, p, op, act)
    want = REF.conv_transpose2d_forward(*f64(x, w, b), s, p, op, act)
    scale = REF.conv_transpose2d_forward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), None, s, p, op) + (0 if b is None else np.abs(b)[None, :, None, None])
    within(y, want, scale, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = CPU.conv_transpose2d_backward(dy, x, w, y, s, p, op, act)
    ex, ew, eb = REF.conv_transpose2d_backward(*f64(dy, x, w, y), s, p, op, act)
    dz = np.abs(REF.activation_backward(*f64(dy, y), act))
    sx, sw, _ = REF.conv_transpose2d_backward(dz, np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.zeros_like(dz), s, p, op)
    within(dx, ex, sx, "dx")
    within(dw, ew, sw, "dw")
    within(db, eb, dz.sum(axis=(0, 2, 3)), "db")


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@pytest.mark.parametrize("n", [1, 5])
def test_dcgan_geometry_against_float64(isa, isa_name, n):
    """The DCGAN's k4 s2 p1 layers with enough channels for the phase GEMMs, whose patch rows are
    runs of consecutive pixels (loaded as vectors, across image boundaries) rather than gathers."""
    isa(isa_name)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 16, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    y = CPU.conv2d_forward(x, w, b, 2, 1, "leaky_relu")
    assert_close(y, REF.conv2d_forward(*f64(x, w, b), 2, 1, "leaky_relu"), 1e-4, 1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(CPU.conv2d_backward(dy, x, w, y, 2, 1, "leaky_relu"),
                         REF.conv2d_backward(*f64(dy, x, w, y), 2, 1, "leaky_relu")):
        assert_close(got, want, 1e-4, 1e-4)
    u = rng.standard_normal((n, 24, 7, 7)).astype(np.float32)  # convT(24 -> 16): 7x7 -> 14x14
    wt = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    bt = rng.standard_normal(16).astype(np.float32)
    yt = CPU.conv_transpose2d_forward(u, wt, bt, 2, 1, 0, "relu")
    assert_close(yt, REF.conv_transpose2d_forward(*f64(u, wt, bt), 2, 1, 0, "relu"), 1e-4, 1e-4)
    dyt = rng.standard_normal(yt.shape).astype(np.float32)
    for got, want in zip(CPU.conv_transpose2d_backward(dyt, u, wt, yt, 2, 1, 0, "relu"),
                         REF.conv_transpose2d_backward(*f64(dyt, u, wt, yt), 2, 1, 0, "relu")):
        assert_close(got, want, 1e-4, 1e-4)


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
def test_convolutions_over_several_chunks_against_float64(isa, isa_name, thread_count):
    """Batches the kernels split into chunks of images (about 8,192 output pixels each), with odd
    channel counts past 16 (the pixels on the broadcast side, C tiles cut in every lane position),
    a stride with a remainder and a transposed conv with output padding; at 1 and 2 threads."""
    isa(isa_name)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 17, 47, 45)).astype(np.float32)
    w = (rng.standard_normal((33, 17, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    wt = (rng.standard_normal((17, 19, 5, 5)) * 0.1).astype(np.float32)
    bt = rng.standard_normal(19).astype(np.float32)
    results = []
    for t in (1, 2):
        pygan.set_num_threads(t)
        y = CPU.conv2d_forward(x, w, b, 1, 1, "leaky_relu")
        dy = np.random.default_rng(8).standard_normal(y.shape).astype(np.float32)
        yt = CPU.conv_transpose2d_forward(x, wt, bt, 3, 2, 1, "tanh")
        dyt = np.random.default_rng(9).standard_normal(yt.shape).astype(np.float32)
        results.append([y, *CPU.conv2d_backward(dy, x, w, y, 1, 1, "leaky_relu"), yt,
                        *CPU.conv_transpose2d_backward(dyt, x, wt, yt, 3, 2, 1, "tanh")])
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)
    y, dx, dw, db, yt, dxt, dwt, dbt = results[0]
    assert_close(y, REF.conv2d_forward(*f64(x, w, b), 1, 1, "leaky_relu"), 1e-4, 1e-4)
    for got, want in zip((dx, dw, db), REF.conv2d_backward(*f64(dy, x, w, y), 1, 1, "leaky_relu")):
        assert_close(got, want, 1e-4, 1e-4)
    assert_close(yt, REF.conv_transpose2d_forward(*f64(x, wt, bt), 3, 2, 1, "tanh"), 1e-4, 1e-4)
    for got, want in zip((dxt, dwt, dbt), REF.conv_transpose2d_backward(*f64(dyt, x, wt, yt), 3, 2, 1, "tanh")):
        assert_close(got, want, 1e-4, 2e-4)


def test_conv_transpose_is_the_adjoint_of_conv():
    rng = np.random.default_rng(0)
    for n, c, h, cout, k, s, p in [(2, 3, 9, 4, 3, 2, 1), (1, 1, 7, 2, 5, 3, 2), (3, 2, 14, 5, 4, 2, 1)]:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((cout, c, k, k)).astype(np.float32)
        y = CPU.conv2d_forward(x, w, None, s, p)
        u = rng.standard_normal(y.shape).astype(np.float32)
        op = h - ((y.shape[2] - 1) * s - 2 * p + k)
        back = CPU.conv_transpose2d_forward(u, w, None, s, p, op)
        assert back.shape == x.shape
        lhs, rhs = float((y.astype(np.float64) * u).sum()), float((x.astype(np.float64) * back).sum())
        assert abs(lhs - rhs) <= 1e-4 * (np.abs(y) * np.abs(u)).sum()


def test_conv_results_do_not_depend_on_thread_count(thread_count):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 64, 14, 14)).astype(np.float32)
    w = rng.standard_normal((128, 64, 4, 4)).astype(np.float32) * 0.05
    out = []
    for t in (1, 2):
        pygan.set_num_threads(t)
        y = CPU.conv2d_forward(x, w, None, 2, 1, "leaky_relu")
        grads = CPU.conv2d_backward(np.ones_like(y), x, w, y, 2, 1, "leaky_relu")
        yt = CPU.conv_transpose2d_forward(y, w, None, 2, 1)
        gt = CPU.conv_transpose2d_backward(np.ones_like(yt), y, w, yt, 2, 1)
        out.append([y, *grads, yt, *gt])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@pytest.mark.parametrize("shape", [(64, 6272), (64, 1000), (64, 128, 7, 7)])
def test_batch_norm_results_do_not_depend_on_thread_count(isa, isa_name, thread_count, shape):
    isa(isa_name)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    out = []
    for t in (1, 2):
        pygan.set_num_threads(t)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y, mean, invstd = CPU.batch_norm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5, "leaky_relu")
        out.append([y, mean, invstd, rm, rv, *CPU.batch_norm_backward(dy, x, y, gamma, mean, invstd, True, "leaky_relu")])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa_name", pygan._core.supported_isas())
@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (1, 3, 5, 7), (3, 2, 4, 4), (2, 3, 13, 11), (64, 128, 7, 7), (64, 1000)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "tanh"])
def test_batch_norm_against_float64(isa, isa_name, shape, training, act):
    isa(isa_name)
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)  # an offset mean: the two-pass variance matters
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    rm64, rv64 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, invstd = CPU.batch_norm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5, act)
    ye, me, ie = REF.batch_norm_forward(*f64(x, gamma, beta), rm64, rv64, training, 0.1, 1e-5, act)
    np.testing.assert_allclose(y, ye, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rm, rm64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rv, rv64, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(shape).astype(np.float32)
    got = CPU.batch_norm_backward(dy, x, y, gamma, mean, invstd, training, act)
    want = REF.batch_norm_backward(*f64(dy, x, y, gamma), me, ie, training, act)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-4 * np.sqrt(x.size / c))


@pytest.mark.parametrize("shape", [(3, 2, 5, 7), (4, 3, 13, 11), (2, 2, 20, 20), (16, 128, 7, 7), (5, 3, 1, 1)])
@pytest.mark.parametrize("act", ACTS)
def test_batch_norm_same_bits_on_every_isa(isa, shape, act):
    """The vector row kernels keep the portable kernels' summation order and operations, so every ISA
    gives the portable path's bits: statistics, running statistics and the whole backward (fed the
    same y). The forward's y too, except after tanh and sigmoid (a vector exp, close but not libm's).
    Planes of 35, 143 and 400 pixels: partial vectors, and sums across 128-term blocks."""
    rng = np.random.default_rng(shape[2] * 100 + shape[3])
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = {}
    y_shared = None
    for name in pygan._core.supported_isas():  # generic first
        isa(name)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y, mean, invstd = CPU.batch_norm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5, act)
        y_shared = y if y_shared is None else y_shared
        back = CPU.batch_norm_backward(dy, x, y_shared, gamma, mean, invstd, True, act)
        results[name] = (y, [mean, invstd, rm, rv, *back])
    y0, exact0 = results["generic"]
    for name, (y, exact) in results.items():
        for a, b in zip(exact, exact0):
            np.testing.assert_array_equal(a, b, err_msg=name)
        if act in ("tanh", "sigmoid"):
            np.testing.assert_allclose(y, y0, rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(y, y0, err_msg=name)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: CPU.conv2d_forward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 2, 5, 5), np.float32), None), "^x: kernel 5"),
        (lambda: CPU.conv2d_forward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((1, 3, 1, 1), np.float32), None), "^w: expects 3 input"),
        (lambda: CPU.conv2d_forward(np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 1, 1)), None), "^x: expected dtype float32"),
        (lambda: CPU.conv_transpose2d_forward(np.zeros((1, 2, 1, 1), np.float32), np.zeros((2, 1, 1, 1), np.float32), None, 1, 2), "^padding"),
        (lambda: CPU.conv_transpose2d_forward(np.zeros((1, 2, 3, 3), np.float32), np.zeros((2, 1, 3, 3), np.float32), None, 2, 1, 2), "^output_padding"),
        (lambda: CPU.conv2d_forward(np.zeros((1, 1, 3, 3), np.float32), np.full((1, 1, 1, 1), np.nan, np.float32), None), "^w: contains NaN"),
        (lambda: CPU.batch_norm_forward(np.zeros((1, 3), np.float32), *[np.ones(3, np.float32) for _ in range(4)]), "^x: batch norm in training"),
        (lambda: CPU.batch_norm_forward(np.zeros((4, 3), np.float32), *[np.ones(2, np.float32) for _ in range(4)]), "^gamma"),
    ],
)
def test_conv_and_batch_norm_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
