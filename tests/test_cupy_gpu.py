"""The cupy backend's kernels on a real GPU against the NumPy reference (float32, random shapes).

Every test here skips, saying why, when CuPy or a CUDA device is missing (as on CI machines).
"""

from __future__ import annotations

import numpy as np
import pytest

from pygan.backend import reference as ref


def _gpu_backend():
    try:
        from pygan.backend import cupy as cupy_backend

        cupy_backend.import_cupy()
    except (ImportError, RuntimeError) as e:
        pytest.skip(f"no GPU: {e}")
    from pygan import backend

    return backend.load_backend("cupy")


@pytest.fixture(scope="module")
def gpu():
    return _gpu_backend()


def dev(gpu, a):
    return gpu.xp.asarray(a)


def close(a, b, tol=1e-4):
    np.testing.assert_allclose(a.get(), b, rtol=tol, atol=tol)


ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid"]


@pytest.mark.gpu
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (3, 17, 61), (127, 1000, 3), (64, 1024, 784)])
def test_dense_on_gpu(gpu, act, n, k, m):
    rng = np.random.default_rng(n * k + m)
    x, w, b, dy = (rng.uniform(-1, 1, s).astype(np.float32) for s in ((n, k), (k, m), (m,), (n, m)))
    y = gpu.dense_forward(dev(gpu, x), dev(gpu, w), dev(gpu, b), act)
    close(y, ref.dense_forward(x, w, b, act))
    for g, e in zip(gpu.dense_backward(dev(gpu, dy), dev(gpu, x), dev(gpu, w), y, act),
                    ref.dense_backward(dy, x, w, y.get(), act)):
        close(g, e, 1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("n, c, h, cout, k, stride, pad", [(1, 1, 5, 1, 1, 1, 0), (2, 3, 7, 4, 3, 2, 1), (64, 64, 14, 128, 4, 2, 1)])
@pytest.mark.parametrize("implicit", [False, True], ids=["im2col", "implicit-gemm"])
def test_conv_on_gpu(gpu, monkeypatch, n, c, h, cout, k, stride, pad, implicit):
    """Both conv paths (the implicit GEMMs forced by an im2col budget of 0 bytes), forward and backward."""
    from pygan.backend import cupy as cupy_backend

    monkeypatch.setattr(cupy_backend, "IM2COL_BUDGET", 0 if implicit else 1 << 62)
    rng = np.random.default_rng(h + k)
    x, w, b = (rng.uniform(-1, 1, s).astype(np.float32) for s in ((n, c, h, h), (cout, c, k, k), (cout,)))
    y = gpu.conv2d_forward(dev(gpu, x), dev(gpu, w), dev(gpu, b), stride, pad, "leaky_relu")
    close(y, ref.conv2d_forward(x, w, b, stride, pad, "leaky_relu"), 1e-3)
    dy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    for g, e in zip(gpu.conv2d_backward(dev(gpu, dy), dev(gpu, x), dev(gpu, w), y, stride, pad, "leaky_relu"),
                    ref.conv2d_backward(dy, x, w, y.get(), stride, pad, "leaky_relu")):
        close(g, e, 1e-3)
    wt = rng.uniform(-1, 1, (cout, c, k, k)).astype(np.float32)
    yt = gpu.conv_transpose2d_forward(y, dev(gpu, wt), None, stride, pad)
    close(yt, ref.conv_transpose2d_forward(y.get(), wt, None, stride, pad), 1e-3)
    dyt = rng.uniform(-1, 1, yt.shape).astype(np.float32)
    for g, e in zip(gpu.conv_transpose2d_backward(dev(gpu, dyt), y, dev(gpu, wt), yt, stride, pad),
                    ref.conv_transpose2d_backward(dyt, y.get(), wt, yt.get(), stride, pad)):
        close(g, e, 1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(5, 3), (64, 128, 7, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_gpu(gpu, shape, training):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    gamma, beta, rm, rv = (rng.uniform(0.5, 1.5, c).astype(np.float32) for _ in range(4))
    y, mean, invstd = gpu.batch_norm_forward(dev(gpu, x), dev(gpu, gamma), dev(gpu, beta), dev(gpu, rm), dev(gpu, rv), training, act="relu")
    ye, me, ie = ref.batch_norm_forward(x, gamma, beta, rm.copy(), rv.copy(), training, act="relu")
    close(y, ye)
    dy = rng.standard_normal(shape).astype(np.float32)
    for g, e in zip(gpu.batch_norm_backward(dev(gpu, dy), dev(gpu, x), y, dev(gpu, gamma), mean, invstd, training, "relu"),
                    ref.batch_norm_backward(dy, x, y.get(), gamma, me, ie, training, "relu")):
        close(g, e, 1e-3)


@pytest.mark.gpu
def test_optimizers_and_parzen_on_gpu(gpu):
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.standard_normal(100_003).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    pd, md, vd = dev(gpu, p), dev(gpu, m), dev(gpu, v)
    gpu.adam_update(pd, dev(gpu, g), md, vd, 1e-3, 0.5, 0.999, 1e-8, 3)
    ref.adam_update(p, g, m, v, 1e-3, 0.5, 0.999, 1e-8, 3)
    close(pd, p, 1e-5)
    from pygan.backend import cpu_backend

    x, c = rng.random((300, 784)).astype(np.float32), rng.random((1000, 784)).astype(np.float32)
    inv = 1 / (2 * np.array([0.1, 0.3]) ** 2)
    np.testing.assert_allclose(gpu.parzen_log_sum_exp(x, c, inv), cpu_backend.parzen_log_sum_exp(x, c, inv), rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (3, 5, 7, 9), (64, 128, 16, 16)])
def test_resampling_and_padding_on_gpu(gpu, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    h, w = shape[2:]
    cases = [("upsample2x", ("nearest",), ("nearest",)), ("upsample2x", ("bilinear",), ("bilinear",))]
    if min(h, w) >= 2:
        cases += [("avg_pool2d", (2,), (2, h, w)), ("reflection_pad2d", (min(h, w) - 1,), (min(h, w) - 1,))]
    for name, args, back in cases:
        y = getattr(gpu, name + "_forward")(dev(gpu, x), *args)
        close(y, getattr(ref, name + "_forward")(x, *args), 1e-5)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        close(getattr(gpu, name + "_backward")(dev(gpu, dy), *back), getattr(ref, name + "_backward")(dy, *back))
    xs = rng.standard_normal((shape[0], 4 * shape[1], h, w)).astype(np.float32)
    close(gpu.pixel_shuffle_forward(dev(gpu, xs), 2), ref.pixel_shuffle_forward(xs, 2), 0)
    close(gpu.pixel_shuffle_backward(dev(gpu, xs), 1), xs, 0)


@pytest.mark.gpu
@pytest.mark.parametrize("shape, groups, affine", [((5, 6), 1, "channel"), ((2, 6, 5, 7), 3, "channel"),
                                                    ((64, 128, 16, 16), 128, "example"), ((8, 64, 32, 32), 1, "channel")])
def test_group_norm_on_gpu(gpu, shape, groups, affine):
    rng = np.random.default_rng(groups)
    x = rng.standard_normal(shape).astype(np.float32)
    ashape = (shape[1],) if affine == "channel" else shape[:2]
    gamma, beta = rng.uniform(0.5, 1.5, ashape).astype(np.float32), rng.standard_normal(ashape).astype(np.float32)
    y, mean, invstd = gpu.group_norm_forward(dev(gpu, x), dev(gpu, gamma), dev(gpu, beta), groups, 1e-5, "relu")
    ye, me, ie = ref.group_norm_forward(x, gamma, beta, groups, 1e-5, "relu")
    close(y, ye)
    dy = rng.standard_normal(shape).astype(np.float32)
    for g, e in zip(gpu.group_norm_backward(dev(gpu, dy), dev(gpu, x), y, dev(gpu, gamma), mean, invstd, groups, "relu"),
                    ref.group_norm_backward(dy, x, y.get(), gamma, me, ie, groups, "relu")):
        close(g, e, 1e-3)
