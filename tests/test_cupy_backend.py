"""The cupy backend without a GPU: its Python logic against the NumPy reference on a stand-in
device (each launch checked against the .cu signature, then run from the kernel's own source compiled
for the CPU and checked against a NumPy emulation), transfer counts in a train step, and errors. The
same comparisons run on a real GPU in test_cupy_gpu.py when one exists."""

from __future__ import annotations

import numpy as np
import pytest
from cupy_standin import SIGNATURES, StandIn, device, host
from helpers import loss_and_grads

import pygan
from pygan import backend as registry
from pygan import losses
from pygan.backend import cupy as cupy_backend
from pygan.backend import reference as ref
from pygan.gan import GAN
from pygan.models import mlp_discriminator, mlp_generator
from pygan.optim import SGD, Adam

ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid"]


@pytest.fixture
def standin():
    fake = StandIn()
    registry._cache["cupy"] = cupy_backend.make_backend(cp=fake)
    yield fake
    registry._cache.pop("cupy", None)


@pytest.fixture
def ops(standin):
    return registry._cache["cupy"]


def r(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def close(a, b, tol=2e-5):
    np.testing.assert_allclose(host(a), np.asarray(b), rtol=tol, atol=tol)


def test_every_kernel_has_a_parsed_signature():
    names = {n for names in cupy_backend._KERNELS.values() for n in names}
    assert names == set(SIGNATURES)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (3, 17, 61), (64, 100, 127)])
def test_dense(ops, standin, act, n, k, m):
    rng = np.random.default_rng(n + k + m)
    x, w, b, dy = r(rng, n, k), r(rng, k, m), r(rng, m), r(rng, n, m)
    y = ops.dense_forward(device(x), device(w), device(b), act)
    close(y, ref.dense_forward(x, w, b, act))
    got = ops.dense_backward(device(dy), device(x), device(w), y, act)
    want = ref.dense_backward(dy, x, w, host(y), act)
    for g, e in zip(got, want):
        close(g, e, 1e-4)
    dx, dw, db = ops.dense_backward(device(dy), device(x), device(w), y, act, need_params=False)
    assert dw is None and db is None
    gw, gb = device(np.ones((k, m), np.float32)), device(np.ones(m, np.float32))  # gradients into buffers
    _, dw, db = ops.dense_backward(device(dy), device(x), device(w), y, act, param_grads=(gw, gb), accumulate=True)
    assert dw is gw and db is gb
    close(gw, want[1] + 1, 1e-4)
    close(gb, want[2] + 1, 1e-4)
    close(ops.dense_forward(device(x), device(w), None, act), ref.dense_forward(x, w, None, act))
    assert {name for name, *_ in standin.launches} <= {"bias_act", "act_grad_bias_grad", "act_grad_bias_grad_rows"}


@pytest.mark.parametrize(
    "n, c, h, w, cout, k, stride, pad",
    [(1, 1, 5, 5, 1, 1, 1, 0), (2, 3, 7, 6, 4, 3, 2, 1), (3, 2, 9, 9, 5, 4, 2, 1), (1, 4, 8, 7, 3, 5, 3, 2),
     (2, 3, 6, 5, 2, 1, 2, 0)],  # the last: stride above the kernel, so the adjoint has pixels no tap reaches
)
@pytest.mark.parametrize("act", ["leaky_relu", "tanh"])
@pytest.mark.parametrize("implicit", [False, True], ids=["im2col", "implicit-gemm"])
def test_conv_and_transposed_conv(ops, standin, monkeypatch, n, c, h, w, cout, k, stride, pad, act, implicit):
    """Both conv paths: im2col + GEMM, and (an im2col budget of 0 bytes) the implicit GEMMs, with
    the grid capped at 2 blocks so their loops over tiles run past the grid, and the weight gradient
    split every 5 columns (uneven splits)."""
    if implicit:
        monkeypatch.setattr(cupy_backend, "IM2COL_BUDGET", 0)
        monkeypatch.setattr(cupy_backend, "MAX_GRID", 2)
        monkeypatch.setattr(cupy_backend, "WGRAD_MIN_COLUMNS", 5)
    rng = np.random.default_rng(h * w + k)
    x, wt, b = r(rng, n, c, h, w), r(rng, cout, c, k, k), r(rng, cout)
    y = ops.conv2d_forward(device(x), device(wt), device(b), stride, pad, act)
    close(y, ref.conv2d_forward(x, wt, b, stride, pad, act), 1e-4)
    dy = r(rng, *y.shape)
    for g, e in zip(ops.conv2d_backward(device(dy), device(x), device(wt), y, stride, pad, act),
                    ref.conv2d_backward(dy, x, wt, host(y), stride, pad, act)):
        close(g, e, 1e-4)
    # transposed: input channels cout -> output c, from y-shaped inputs
    xt, wtt, bt = r(rng, n, cout, *y.shape[2:]), r(rng, cout, c, k, k), r(rng, c)
    op = 0 if stride == 1 else min(1, stride - 1)
    yt = ops.conv_transpose2d_forward(device(xt), device(wtt), device(bt), stride, pad, op, act)
    close(yt, ref.conv_transpose2d_forward(xt, wtt, bt, stride, pad, op, act), 1e-4)
    dyt = r(rng, *yt.shape)
    for g, e in zip(ops.conv_transpose2d_backward(device(dyt), device(xt), device(wtt), yt, stride, pad, op, act),
                    ref.conv_transpose2d_backward(dyt, xt, wtt, host(yt), stride, pad, op, act)):
        close(g, e, 1e-4)
    used = {name for name, *_ in standin.launches}
    assert ({"conv_igemm", "conv_wgrad_igemm"} <= used) == implicit and ({"im2col", "col2im"} <= used) != implicit


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(ops, shape, training):
    rng = np.random.default_rng(0)
    x, gamma, beta = r(rng, *shape), r(rng, shape[1], lo=0.5, hi=1.5), r(rng, shape[1])
    rm, rv = r(rng, shape[1]), r(rng, shape[1], lo=0.5, hi=2)
    rm_d, rv_d = device(rm), device(rv)
    y, mean, invstd = ops.batch_norm_forward(device(x), device(gamma), device(beta), rm_d, rv_d, training, 0.1, 1e-5, "relu")
    ye, me, ie = ref.batch_norm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5, "relu")
    close(y, ye, 1e-4)
    close(rm_d, rm)
    close(rv_d, rv)
    dy = r(rng, *shape)
    for g, e in zip(ops.batch_norm_backward(device(dy), device(x), y, device(gamma), mean, invstd, training, "relu"),
                    ref.batch_norm_backward(dy, x, host(y), gamma, me, ie, training, "relu")):
        close(g, e, 1e-4)


def test_activations_dropout_maxout_losses_optimizers(ops):
    rng = np.random.default_rng(3)
    x, dy = r(rng, 7, 10), r(rng, 7, 10)
    for act in ACTS:
        y = ops.activation_forward(device(x), act)
        close(y, ref.activation_forward(x, act))
        close(ops.activation_backward(device(dy), y, act), ref.activation_backward(dy, host(y), act))
    yd, mask = ops.dropout_forward(device(x), 0.3, seed=5)
    ye, me = ref.dropout_forward(x, 0.3, seed=5)
    close(yd, ye)
    close(ops.dropout_backward(device(dy), mask), ref.dropout_backward(dy, me))
    ym, idx = ops.maxout_forward(device(x), 5)
    ymr, idxr = ref.maxout_forward(x, 5)
    close(ym, ymr)
    np.testing.assert_array_equal(host(idx), idxr)
    dy2 = np.ascontiguousarray(dy[:, :2])
    close(ops.maxout_backward(device(dy2), idx, 5), ref.maxout_backward(dy2, idxr, 5))
    logits = r(rng, 9, 1, lo=-5, hi=5)
    flipped = logits[::-1].copy()
    cases = [(lambda l, kind=kind: losses.generator_loss(l, kind)) for kind in losses.GENERATOR_LOSSES]
    cases.append(lambda l: losses.discriminator_loss(l, pygan.from_numpy(flipped), 0.9))
    for loss_of in cases:  # the losses are array expressions: they run on the device as they are
        with pygan.use_backend("cupy"):
            lt = pygan.Tensor(device(logits), requires_grad=True)
            loss = loss_of(lt)
            (got,) = pygan.grad(loss, [lt])
        want, want_grad = loss_and_grads(loss_of, logits, backend="numpy")
        assert float(host(loss.data)) == pytest.approx(want, rel=1e-6)
        close(got.data, want_grad)
    p, g, v = r(rng, 1001), r(rng, 1001), r(rng, 1001)
    pd, vd = device(p), device(v)
    ops.sgd_update(pd, device(g), vd, 0.1, 0.5)
    ref.sgd_update(p, g, v, 0.1, 0.5)
    close(pd, p)
    m2, v2 = np.zeros(1001, np.float32), np.zeros(1001, np.float32)
    md, v2d = device(m2), device(v2)
    for step in (1, 2):
        ops.adam_update(pd, device(g), md, v2d, 1e-3, 0.5, 0.999, 1e-8, step)
        ref.adam_update(p, g, m2, v2, 1e-3, 0.5, 0.999, 1e-8, step)
    close(pd, p)


def test_parzen_kernel(ops):
    from pygan import metrics

    rng = np.random.default_rng(1)
    x, c = r(rng, 37, 11, lo=0, hi=1), r(rng, 50, 11, lo=0, hi=1)
    inv = 1 / (2 * np.array([0.1, 0.5]) ** 2)
    got = ops.parzen_log_sum_exp(device(x), device(c), inv, block=16)
    from pygan.backend import cpu_backend

    want = cpu_backend.parzen_log_sum_exp(x, c, inv)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert metrics.parzen_log_density(x, c, 0.5).shape == (37,)


def test_bad_input_on_the_cupy_backend(ops):
    x = device(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="^x: expected a cupy.ndarray"):
        ops.dense_forward(np.zeros((3, 4), np.float32), device(np.zeros((4, 2), np.float32)), None)
    with pytest.raises(TypeError, match="^w: expected dtype float32"):
        ops.dense_forward(x, device(np.zeros((4, 2))), None)
    with pytest.raises(ValueError, match="^w: expected 4 rows"):
        ops.dense_forward(x, device(np.zeros((5, 2), np.float32)), None)
    with pytest.raises(ValueError, match="^x: must be C-contiguous"):
        ops.dense_forward(device(np.zeros((4, 3), np.float32)).T, device(np.zeros((4, 2), np.float32)), None)
    with pytest.raises(ValueError, match="^act"):
        ops.dense_forward(x, device(np.zeros((4, 2), np.float32)), None, "swish")
    with pytest.raises(ValueError, match="^x: kernel 3 with stride 1"):
        ops.conv2d_forward(device(np.zeros((1, 1, 2, 2), np.float32)), device(np.zeros((1, 1, 3, 3), np.float32)), None)


def _make_gan(seed=0):
    g = mlp_generator(8, [32], 6, seed=seed)
    d = mlp_discriminator(6, [32], seed=seed + 1)
    return GAN(g, d, Adam(g.parameters(), lr=1e-3), Adam(d.parameters(), lr=1e-3), latent_dim=8, d_steps=2, seed=seed)


def test_train_step_matches_reference_and_moves_one_vector_to_the_host(standin):
    x = np.random.default_rng(0).standard_normal((256, 6)).astype(np.float32)
    pygan.set_backend("numpy")
    expected = _make_gan()
    expected.fit(x, 2, 64, seed=1)
    pygan.set_backend("cupy")
    gan = _make_gan()
    uploads_at_build = standin.uploads
    steps = 8
    standin.downloads = standin.syncs = 0
    history = gan.fit(x, 2, 64, seed=1).history
    assert len(history) == 2
    # no synchronisation inside a step; once per epoch fit checks each network's parameters are finite
    assert standin.syncs == 2 * len(history), "a hidden device->host synchronisation happened"
    assert standin.downloads == steps, "exactly one small statistics vector per step"
    # uploads: the data set once, then per step its batch indices and d_steps + 1 noise batches
    assert standin.uploads - uploads_at_build == 1 + steps * (1 + gan.d_steps + 1)
    np.testing.assert_allclose(host(gan.g_optimizer.flat), expected.g_optimizer.flat, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(host(gan.d_optimizer.flat), expected.d_optimizer.flat, rtol=1e-4, atol=1e-5)


def test_dcgan_step_on_the_stand_in(standin):
    from pygan import models

    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    flats = []
    for name in ("numpy", "cupy"):
        pygan.set_backend(name)
        spec = models.build("dcgan", (1, 28, 28), num_classes=10, seed=1)
        gan = GAN(spec.generator, spec.discriminator, SGD(spec.generator.parameters(), lr=0.1),
                  SGD(spec.discriminator.parameters(), lr=0.1), latent_dim=100, num_classes=10, seed=2)
        gan.train_step(pygan.backend.from_numpy(real), np.arange(4))
        flats.append(host(gan.g_optimizer.flat))
    np.testing.assert_allclose(flats[1], flats[0], rtol=1e-3, atol=1e-5)
    launched = {name for name, *_ in standin.launches}
    assert {"im2col", "col2im", "bias_act", "bn_stats", "bn_forward", "bn_backward_reduce", "sgd_momentum"} <= launched


def test_cupy_missing_names_the_gpu_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *a, **k):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(ImportError, match=r"^name: the 'cupy' backend needs CuPy.*pygan\[gpu\]"):
        cupy_backend.import_cupy()


def test_cupy_without_a_device_says_so(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError, match="^name: the 'cupy' backend found CuPy but no CUDA device"):
        cupy_backend.import_cupy()


def test_host_device_moves(standin):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    pygan.set_backend("cupy")
    before = standin.uploads
    d = pygan.from_numpy(a)
    assert standin.uploads == before + 1 and type(d).__name__ == "DeviceArray"
    back = pygan.to_numpy(d)
    assert type(back) is np.ndarray and standin.downloads >= 1
    np.testing.assert_array_equal(back, a)
    pygan.set_backend("numpy")
    v = pygan.from_dlpack(a)  # numpy speaks DLPack too: a view, no copy
    assert np.shares_memory(v, a)


def _resampling_and_group_norm(ops, rng, x):
    """Every resampling/padding op and group norm (per-channel, per-example, instance and layer
    norm, on images and on (N, C)) forward and backward on the device against the reference."""
    n, c, h, w = x.shape
    for name, args, back in (("upsample2x", ("bilinear",), ("bilinear",)), ("upsample2x", ("nearest",), ("nearest",)),
                             ("avg_pool2d", (2,), (2, h, w)), ("avg_pool2d", (3,), (3, h, w)),
                             ("pixel_shuffle", (1,), (1,)), ("reflection_pad2d", (min(h, w) - 1,), (min(h, w) - 1,)),
                             ("reflection_pad2d", (1,), (1,))):
        y = getattr(ops, name + "_forward")(device(x), *args)
        assert isinstance(y, type(device(x)))
        close(y, getattr(ref, name + "_forward")(x, *args))
        dy = r(rng, *y.shape)
        close(getattr(ops, name + "_backward")(device(dy), *back), getattr(ref, name + "_backward")(dy, *back))
    xs = r(rng, n, 9 * 2, h, w)  # 2 channels of 3x3 sub-pixels
    close(ops.pixel_shuffle_forward(device(xs), 3), ref.pixel_shuffle_forward(xs, 3))
    dys = r(rng, n, 2, 3 * h, 3 * w)
    close(ops.pixel_shuffle_backward(device(dys), 3), ref.pixel_shuffle_backward(dys, 3))
    for xg, groups, shape in ((x, c, (c,)), (x, 1, (c,)), (x, c, (n, c)), (x[:, :, 0, 0].copy(), 1, (c,))):
        gamma, beta = r(rng, *shape, lo=0.5, hi=1.5), r(rng, *shape)
        y, mean, invstd = ops.group_norm_forward(device(xg), device(gamma), device(beta), groups, 1e-5, "leaky_relu")
        ye, me, ie = ref.group_norm_forward(xg, gamma, beta, groups, 1e-5, "leaky_relu")
        close(y, ye, 1e-4)
        close(mean, me, 1e-5)
        close(invstd, ie, 1e-4)
        dy = r(rng, *xg.shape)
        for g, e in zip(ops.group_norm_backward(device(dy), device(xg), y, device(gamma), mean, invstd, groups, "leaky_relu"),
                        ref.group_norm_backward(dy, xg, host(y), gamma, me, ie, groups, "leaky_relu")):
            close(g, e, 1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (1, 3, 1, 7), (3, 2, 7, 3)])
def test_resampling_and_group_norm_kernels(ops, standin, shape, monkeypatch):
    """pygan's resampling, padding and group-norm kernels on odd sides (1-pixel lines, windows
    that leave a remainder, padding of side - 1), with the grid capped at 3 blocks so every
    kernel's loop over elements and over groups runs past its grid."""
    monkeypatch.setattr(cupy_backend, "MAX_GRID", 3)
    rng = np.random.default_rng(sum(shape))
    if shape[2] < 3:  # a 3x3 pooling window needs 3 rows
        shape = (shape[0], shape[1], 3, shape[3])
    _resampling_and_group_norm(ops, rng, r(rng, *shape))
    assert {"upsample2x_adjoint", "gn_affine_grad", "reflection_pad_adjoint"} <= set(standin.real_runs)


def test_rmsprop_kernel(ops):
    rng = np.random.default_rng(7)
    p, g, s = r(rng, 1001), r(rng, 1001), np.zeros(1001, np.float32)
    pd, sd = device(p), device(s)
    for _ in range(3):
        ops.rmsprop_update(pd, device(g), sd, 1e-3, 0.99, 1e-8)
        ref.rmsprop_update(p, g, s, 1e-3, 0.99, 1e-8)
    close(pd, p)
    close(sd, s)


def test_every_kernel_runs_from_its_cuda_source_on_the_cpu(ops, standin):
    """Each kernel's own .cu source, compiled as C++ (tests/cuda_on_cpu.py), runs on odd sizes through the
    backend and matches the reference (and, launch by launch, the stand-in's emulation): what the kernels
    compute is checked here, before any GPU sees them."""
    assert standin.cpu_kernels is not None, "g++ (which builds pygan) should also build the CUDA sources for the CPU"
    rng = np.random.default_rng(11)
    x, w, b = r(rng, 5, 7), r(rng, 7, 19), r(rng, 19)
    y = ops.dense_forward(device(x), device(w), device(b), "tanh")
    close(y, ref.dense_forward(x, w, b, "tanh"))
    dy = r(rng, 5, 19)
    for got, want in zip(ops.dense_backward(device(dy), device(x), device(w), y, "tanh"),
                         ref.dense_backward(dy, x, w, host(y), "tanh")):
        close(got, want, 1e-4)
    close(ops.activation_forward(device(x), "leaky_relu"), ref.activation_forward(x, "leaky_relu"))
    close(ops.activation_backward(device(x), device(np.tanh(x)), "tanh"), ref.activation_backward(x, np.tanh(x), "tanh"))
    xc, wc, bc = r(rng, 2, 3, 9, 7), r(rng, 17, 3, 4, 4), r(rng, 17)
    yc = ops.conv2d_forward(device(xc), device(wc), device(bc), 2, 1, "relu")
    close(yc, ref.conv2d_forward(xc, wc, bc, 2, 1, "relu"), 1e-4)
    dyc = r(rng, *yc.shape)
    for got, want in zip(ops.conv2d_backward(device(dyc), device(xc), device(wc), yc, 2, 1, "relu"),
                         ref.conv2d_backward(dyc, xc, wc, host(yc), 2, 1, "relu")):
        close(got, want, 1e-4)
    with pytest.MonkeyPatch.context() as patch:  # the implicit GEMMs: an im2col budget of 0 bytes
        patch.setattr(cupy_backend, "IM2COL_BUDGET", 0)
        close(ops.conv2d_forward(device(xc), device(wc), device(bc), 2, 1, "relu"), host(yc), 1e-4)
        yt = ops.conv_transpose2d_forward(device(yc), device(wc), None, 2, 1, 1, "tanh")
        close(yt, ref.conv_transpose2d_forward(host(yc), wc, None, 2, 1, 1, "tanh"), 1e-4)
        dyt = r(rng, *yt.shape)
        for got, want in zip(ops.conv_transpose2d_backward(device(dyt), yc, device(wc), yt, 2, 1, 1, "tanh"),
                             ref.conv_transpose2d_backward(dyt, host(yc), wc, host(yt), 2, 1, 1, "tanh")):
            close(got, want, 1e-4)
    xb, gamma, beta = r(rng, 3, 5, 4, 3), r(rng, 5, lo=0.5, hi=1.5), r(rng, 5)
    rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
    yb, mean, invstd = ops.batch_norm_forward(device(xb), device(gamma), device(beta), device(rm.copy()),
                                              device(rv.copy()), True, 0.1, 1e-5, "relu")
    ye, me, ie = ref.batch_norm_forward(xb, gamma, beta, rm.copy(), rv.copy(), True, 0.1, 1e-5, "relu")
    close(yb, ye, 1e-4)
    dyb = r(rng, *xb.shape)
    for got, want in zip(ops.batch_norm_backward(device(dyb), device(xb), yb, device(gamma), mean, invstd, True, "relu"),
                         ref.batch_norm_backward(dyb, xb, host(yb), gamma, me, ie, True, "relu")):
        close(got, want, 1e-4)
    p, g = r(rng, 1001), r(rng, 1001)
    for update, state, args in (("sgd_update", 1, (0.1, 0.5)), ("adam_update", 2, (1e-3, 0.5, 0.999, 1e-8, 3)),
                                ("rmsprop_update", 1, (1e-3, 0.99, 1e-8))):
        bufs = [r(rng, 1001, lo=0, hi=1) for _ in range(state)]
        pd, dev_bufs = device(p), [device(s) for s in bufs]
        getattr(ops, update)(pd, device(g), *dev_bufs, *args)
        want_p = p.copy()
        getattr(ref, update)(want_p, g, *bufs, *args)
        close(pd, want_p, 1e-5)
    xs, cs = r(rng, 13, 5, lo=0, hi=1), r(rng, 21, 5, lo=0, hi=1)
    from pygan.backend import cpu_backend

    inv = 1 / (2 * np.array([0.2, 0.7]) ** 2)
    np.testing.assert_allclose(ops.parzen_log_sum_exp(device(xs), device(cs), inv, block=8),
                               cpu_backend.parzen_log_sum_exp(xs, cs, inv), rtol=1e-5, atol=1e-4)
    _resampling_and_group_norm(ops, rng, r(rng, 2, 3, 5, 7))
    assert set(standin.real_runs) == set(SIGNATURES), set(SIGNATURES) - set(standin.real_runs)


def test_the_benchmarks_gpu_section_runs_on_the_stand_in(ops, standin, monkeypatch):
    """``python -m pygan.bench``'s GPU rows (both conv paths, the train steps) run their plumbing here:
    the kernels emulated only (this checks the benchmark, not the kernels), a tiny batch."""
    from pygan import bench

    monkeypatch.setattr(standin, "cpu_kernels", None)
    rows = bench.gpu_rows(ops, None, min_time=0.0, batch=2, settle=0.0, rounds=1)
    assert [(r.op, r.shape.split(", ")[-1]) for r in rows[:4]] == [
        ("gpu conv forward", "im2col"), ("gpu conv forward+backward", "im2col"),
        ("gpu conv forward", "implicit GEMM"), ("gpu conv forward+backward", "implicit GEMM")]
    assert [r.shape for r in rows[-2:]] == ["mlp GAN batch 2", "dcgan GAN batch 2"]
    assert all(r.device_seconds["cupy"] > 0 and set(r.seconds) == {"cupy"} for r in rows)
    assert {"conv_igemm", "conv_wgrad_igemm", "im2col", "col2im"} <= {name for name, *_ in standin.launches}
    assert cupy_backend.IM2COL_BUDGET == 64 << 20
