"""No silent wrong answer and no unbounded cost: aliased output buffers, dtypes equal to float32 but
not NumPy's object, denormals in the backward's activation branch, stride-independent adjoint
convolutions, one cap on threads, and a backend chosen per thread."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

import pygan
from pygan import _core, _loops
from pygan.backend import WRITES, get_backend, load_backend, set_backend, use_backend
from pygan.backend.cpu_backend import set_num_threads

from cupy_standin import StandIn, device
from pygan.backend import cupy as cupy_backend

f32 = np.float32
TINY = f32(np.finfo(f32).tiny)


def backends():
    return [load_backend("numpy"), load_backend("cpu")]


def rng_arrays(rng, *shapes):
    return [rng.standard_normal(s).astype(f32) for s in shapes]


def _alias_cases(rng):
    """For each op with output buffers: a call whose first written buffer is a view of each other
    argument in turn (the view has the written buffer's shape)."""
    x, w = rng_arrays(rng, (4, 6), (6, 6))
    y, dy = rng_arrays(rng, (4, 6), (4, 6))
    dense = dict(dy=dy, x=x, w=w, y=y)
    img, k = rng_arrays(rng, (2, 3, 5, 5), (3, 3, 3, 3))
    out, dout = rng_arrays(rng, (2, 3, 3, 3), (2, 3, 3, 3))
    conv = dict(dy=dout, x=img, w=k, y=out)
    convt = dict(dy=img, x=out, w=k, y=img.copy())
    p = rng_arrays(rng, (12,))[0]
    yield "dense_backward", dense, {}, "param_grads", ((6, 6), (6,))
    yield "conv2d_backward", conv, {}, "param_grads", ((3, 3, 3, 3), (3,))
    yield "conv_transpose2d_backward", convt, {}, "param_grads", ((3, 3, 3, 3), (3,))
    bn = dict(x=rng_arrays(rng, (8, 6))[0], gamma=np.ones(6, f32), beta=np.zeros(6, f32))
    yield "batch_norm_forward", bn, {}, "running_mean", (6,)
    flat = dict(grad=p)
    yield "sgd_update", flat, {"lr": 0.1, "momentum": 0.9}, "param", (12,)
    yield "adam_update", flat, {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "step": 1}, "param", (12,)
    yield "rmsprop_update", flat, {"lr": 0.1, "alpha": 0.9, "eps": 1e-8}, "param", (12,)


def _call(B, op, read, scalars, written):
    if op.endswith("_backward"):
        return getattr(B, op)(read["dy"], read["x"], read["w"], read["y"], param_grads=written["param_grads"])
    if op == "batch_norm_forward":
        return B.batch_norm_forward(read["x"], read["gamma"], read["beta"], written["running_mean"], written["running_var"])
    state = {"sgd_update": ("velocity",), "adam_update": ("m", "v"), "rmsprop_update": ("sq",)}[op]
    return getattr(B, op)(written["param"], read["grad"], *[written[s] for s in state], **scalars)


def _written(op, shapes, rng):
    if op.endswith("_backward"):
        return {"param_grads": tuple(np.zeros(s, f32) for s in shapes)}
    if op == "batch_norm_forward":
        return {"running_mean": np.zeros(6, f32), "running_var": np.ones(6, f32)}
    state = {"sgd_update": ("velocity",), "adam_update": ("m", "v"), "rmsprop_update": ("sq",)}[op]
    return {"param": rng.standard_normal(12).astype(f32), **{s: np.abs(rng.standard_normal(12)).astype(f32) for s in state}}


@pytest.mark.parametrize("B", backends(), ids=lambda b: b.name)
def test_every_output_buffer_that_overlaps_another_argument_is_refused(B):
    rng = np.random.default_rng(0)
    seen = set()
    for op, read, scalars, _, shapes in _alias_cases(rng):
        seen.add(op)
        written = _written(op, shapes, rng)
        names = list(written) if op != "batch_norm_forward" else ["running_mean", "running_var"]
        first = names[0]
        target = written[first][0] if isinstance(written[first], tuple) else written[first]
        others = [(k, v) for k, v in read.items()] + [(k, v) for k, v in written.items() if k != first]
        for other_name, other in others:
            pool = other if isinstance(other, tuple) else (other,)
            src = pool[0]
            if src.size < target.size:
                continue
            alias = src.reshape(-1)[: target.size].reshape(target.shape)
            bad = dict(written)
            bad[first] = (alias, *written[first][1:]) if isinstance(written[first], tuple) else alias
            with pytest.raises(ValueError, match=r"shares memory with"):
                _call(B, op, read, scalars, bad)
        # and the same call with separate buffers runs
        _call(B, op, read, scalars, _written(op, shapes, rng))
    assert seen == set(WRITES)


def test_two_gradient_buffers_that_overlap_are_refused():
    rng = np.random.default_rng(1)
    x, w, y = rng_arrays(rng, (3, 4), (4, 4), (3, 4))
    buf = np.zeros(20, f32)
    for B in backends():
        with pytest.raises(ValueError, match=r"^param_grads\[0\]: shares memory with param_grads\[1\]"):
            B.dense_backward(y, x, w, y.copy(), param_grads=(buf[:16].reshape(4, 4), buf[12:16]))


def test_the_cupy_backend_refuses_overlaps_too():
    B = cupy_backend.make_backend(cp=StandIn())
    p = device(np.zeros(8, f32))
    with pytest.raises(ValueError, match="^param: shares memory with grad"):
        B.sgd_update(p, p[::-1], device(np.zeros(8, f32)), 0.1, 0.9)
    with pytest.raises(ValueError, match="^m: shares memory with v"):
        m = device(np.zeros(16, f32))
        B.adam_update(p, device(np.ones(8, f32)), m[:8], m[4:12], 0.1, 0.9, 0.99, 1e-8, 1)


def test_a_pickled_float32_dtype_is_float32():
    dt = pickle.loads(pickle.dumps(np.dtype(f32)))  # equal to NumPy's float32, another object
    rng = np.random.default_rng(2)
    x, w = (a.astype(dt) for a in rng_arrays(rng, (5, 7), (7, 3)))
    cpu, ref = load_backend("cpu"), load_backend("numpy")
    np.testing.assert_allclose(cpu.dense_forward(x, w, None, "tanh"), ref.dense_forward(x, w, None, "tanh"), rtol=1e-5, atol=1e-6)
    img, k = (a.astype(dt) for a in rng_arrays(rng, (2, 3, 6, 6), (4, 3, 3, 3)))
    np.testing.assert_allclose(cpu.conv2d_forward(img, k, None, 1, 1), ref.conv2d_forward(img, k, None, 1, 1), rtol=1e-4, atol=1e-5)
    p = np.zeros(4, dt)
    cpu.adam_update(p, np.ones(4, dt), np.zeros(4, dt), np.zeros(4, dt), 0.1, 0.9, 0.99, 1e-8, 1)
    np.testing.assert_allclose(p, -0.1, rtol=1e-5)
    # a model that went through pickle runs
    model = pickle.loads(pickle.dumps(pygan.nn.Sequential(pygan.nn.Dense(7, 3, seed=0))))
    assert model(x).shape == (5, 3)


def test_a_big_endian_float32_is_refused_by_name():
    x = np.ones((2, 3), ">f4")
    with pytest.raises(TypeError, match="^x: expected dtype float32"):
        load_backend("cpu").dense_forward(x, np.ones((3, 2), f32), None)


@pytest.mark.parametrize("isa_name", _core.supported_isas())
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_denormal_outputs_take_the_references_branch_in_every_backward(isa, isa_name, act):
    """y = +denormal is y > 0 (and -denormal is not), on every SIMD path, as in the reference."""
    isa(isa_name)
    cpu, ref = load_backend("cpu"), load_backend("numpy")
    rng = np.random.default_rng(3)
    n, k, m = 37, 19, 41
    x, w = rng_arrays(rng, (n, k), (k, m))
    y = np.abs(rng.standard_normal((n, m))).astype(f32)
    y[:, ::3] = TINY / f32(4)
    y[:, 1::3] = -TINY / f32(4)
    y[0, 0], y[0, 1], y[0, 2] = np.inf, -np.inf, np.nan
    dy = np.ones((n, m), f32)
    got = cpu.dense_backward(dy, x, w, y, act, 0.25)
    want = ref.dense_backward(dy, x, w, y, act, 0.25)
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(g, wnt, rtol=2e-5, atol=1e-4)
    img = rng.standard_normal((2, 3, 6, 6)).astype(f32)
    kern = rng.standard_normal((5, 3, 3, 3)).astype(f32)
    yc = np.abs(rng.standard_normal((2, 5, 6, 6))).astype(f32)
    yc[..., ::2] = TINY / f32(8)
    got = cpu.conv2d_backward(np.ones_like(yc), img, kern, yc, 1, 1, act, 0.25)
    want = ref.conv2d_backward(np.ones_like(yc), img, kern, yc, 1, 1, act, 0.25)
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(g, wnt, rtol=2e-5, atol=1e-3)


@pytest.mark.parametrize("stride", [7, 1000, 1 << 20])
def test_adjoint_convolutions_cost_what_their_output_costs(stride):
    """A 1x1 input through conv_transpose2d with a huge stride, and conv2d's data gradient for a 1x1
    output, run in the time of their (small) outputs and equal the reference."""
    cpu, ref = load_backend("cpu"), load_backend("numpy")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 1, 1)).astype(f32)
    w = rng.standard_normal((9, 8, 3, 3)).astype(f32)
    t0 = time.perf_counter()
    got = cpu.conv_transpose2d_forward(x, w, None, stride, 0)
    assert time.perf_counter() - t0 < 5.0
    np.testing.assert_allclose(got, ref.conv_transpose2d_forward(x, w, None, stride, 0), rtol=1e-5, atol=1e-5)
    img = rng.standard_normal((2, 9, 3, 3)).astype(f32)
    k = rng.standard_normal((4, 9, 3, 3)).astype(f32)
    y = cpu.conv2d_forward(img, k, None, stride, 0)
    assert y.shape == (2, 4, 1, 1)
    got = cpu.conv2d_backward(np.ones_like(y), img, k, y, stride, 0)
    want = ref.conv2d_backward(np.ones_like(y), img, k, y, stride, 0)
    for g, wnt in zip(got, want):
        np.testing.assert_allclose(g, wnt, rtol=1e-5, atol=1e-4)


def test_geometry_beyond_the_bound_is_refused_by_name():
    x, w = np.ones((1, 1, 2, 2), f32), np.ones((1, 1, 1, 1), f32)
    for B in backends()[:2]:
        with pytest.raises(ValueError, match="^stride: must be <="):
            B.conv2d_forward(x, w, None, 10**30, 0)
        with pytest.raises(ValueError, match="^padding: must be <="):
            B.conv_transpose2d_forward(x, w, None, 1, 2**40)


def test_one_cap_on_threads_everywhere():
    cap = _core.MAX_THREADS
    before = pygan.backend.cpu_backend.get_num_threads()
    try:
        for bad in (0, cap + 1, 10**30):
            with pytest.raises(ValueError, match="^n: "):
                set_num_threads(bad)
        cores = pygan.backend.cpu_backend.available_cores()
        with pytest.warns(RuntimeWarning, match=rf"^n: {cap} threads on {cores} cores; using {cores}$"):
            set_num_threads(cap)
        assert pygan.backend.cpu_backend.get_num_threads() == cores
    finally:
        set_num_threads(before)
    p = np.zeros(8, f32)
    for bad in (0, cap + 1, 10**30, 2.0):
        with pytest.raises(ValueError, match="^num_threads: must be an int in 1 .."):
            _loops.sgd_momentum(p, p.copy(), p.copy(), 0.1, 0.9, bad)


@pytest.mark.parametrize("B", backends(), ids=lambda b: b.name)
def test_optimizer_scalars_are_checked_by_name(B):
    p = np.zeros(4, f32)
    fresh = lambda: [p.copy() for _ in range(4)]  # noqa: E731
    cases = [
        (lambda: B.sgd_update(*fresh()[:3], "0.1", 0.9), TypeError, "lr"),
        (lambda: B.sgd_update(*fresh()[:3], -1.0, 0.9), ValueError, "lr"),
        (lambda: B.sgd_update(*fresh()[:3], 0.1, 1.5), ValueError, "momentum"),
        (lambda: B.adam_update(*fresh(), 1e300, 0.9, 0.99, 1e-8, 1), ValueError, "lr"),
        (lambda: B.adam_update(*fresh(), 0.1, 1.0, 0.99, 1e-8, 1), ValueError, "beta1"),
        (lambda: B.adam_update(*fresh(), 0.1, 0.9, float("nan"), 1e-8, 1), ValueError, "beta2"),
        (lambda: B.adam_update(*fresh(), 0.1, 0.9, 0.99, 0.0, 1), ValueError, "eps"),
        (lambda: B.rmsprop_update(*fresh()[:3], 0.1, None, 1e-8), TypeError, "alpha"),
    ]
    for call, exc, name in cases:
        with pytest.raises(exc, match=f"^{name}:"):
            call()


def test_use_backend_is_per_thread():
    set_backend("cpu")
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with use_backend("numpy"):
            entered.set()
            release.wait(5)
            seen["inside"] = get_backend().name

    t = threading.Thread(target=worker)
    t.start()
    assert entered.wait(5)
    seen["main"] = get_backend().name  # while the other thread is inside its block
    release.set()
    t.join(5)
    assert seen == {"main": "cpu", "inside": "numpy"}
    with use_backend("numpy") as b:
        assert b.name == "numpy" and get_backend() is b
    assert get_backend().name == "cpu"
