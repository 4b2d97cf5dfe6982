"""Bad input gets a clear TypeError/ValueError that names the argument, on every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pygan
from pygan import losses, nn
from pygan.backend import load_backend

BACKENDS = ["numpy", "cpu"]
f32 = np.float32


def raises(exc, name):
    """Expect ``exc`` with a message that starts with the argument's name."""
    return pytest.raises(exc, match=rf"^{re.escape(name)}(?!\w)")


@pytest.fixture(params=BACKENDS)
def B(request):
    return load_backend(request.param)


def arrays(n=4, k=3, m=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, k)).astype(f32), rng.standard_normal((k, m)).astype(f32), np.zeros(m, f32)


def test_dense_wrong_rank(B):
    x, w, b = arrays()
    with raises(ValueError, "x"):
        B.dense_forward(x[0], w, b)
    with raises(ValueError, "w"):
        B.dense_forward(x, w[None], b)
    with raises(ValueError, "b"):
        B.dense_forward(x, w, b[None])


def test_dense_mismatched_shapes(B):
    x, w, b = arrays()
    with raises(ValueError, "w"):
        B.dense_forward(x, w.T.copy(), b)
    with raises(ValueError, "b"):
        B.dense_forward(x, w, np.zeros(5, f32))
    y = B.dense_forward(x, w, b)
    with raises(ValueError, "dy"):
        B.dense_backward(y[:2].copy(), x, w, y)
    with raises(ValueError, "y"):
        B.dense_backward(y, x, w, y[:, :1].copy())


def test_dense_wrong_dtype(B):
    x, w, b = arrays()
    with raises(TypeError, "x"):
        B.dense_forward(x.astype(np.int32), w, b)
    with raises(TypeError, "x"):
        B.dense_forward(x.tolist(), w, b)
    with raises(TypeError, "b"):
        B.dense_forward(x, w, b.astype(np.float16))


def test_cpu_refuses_float64():
    x, w, b = arrays()
    with raises(TypeError, "x"):
        load_backend("cpu").dense_forward(x.astype(np.float64), w.astype(np.float64), None)


def test_non_contiguous(B):
    x, w, b = arrays(n=4, k=4, m=4)
    with raises(ValueError, "x"):
        B.dense_forward(x.T, w, b)
    with raises(ValueError, "w"):
        B.dense_forward(x, w[:, ::2], b[:2].copy())


def test_nan_in_weights(B):
    x, w, b = arrays()
    w[1, 1] = np.nan
    with raises(ValueError, "w"):
        B.dense_forward(x, w, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_conv_weights_in_every_op(B, bad):
    """conv2d and conv_transpose2d, forward and backward, name NaN/Inf weights (the native backend
    checks them in its kernels, not in Python)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = B.conv2d_forward(x, w, None, 1, 1)
    yt = B.conv_transpose2d_forward(y, w, None, 1, 1)
    w[3, 2, 2, 2] = bad
    calls = [
        lambda: B.conv2d_forward(x, w, None, 1, 1),
        lambda: B.conv2d_backward(y, x, w, y, 1, 1),
        lambda: B.conv2d_backward(y, x, w, y, 1, 1, need_dx=False),
        lambda: B.conv_transpose2d_forward(y, w, None, 1, 1),
        lambda: B.conv_transpose2d_backward(yt, y, w, yt, 1, 1),
    ]
    for call in calls:
        with raises(ValueError, "w"):
            call()


def test_unknown_activation(B):
    x, w, b = arrays()
    with raises(ValueError, "act"):
        B.dense_forward(x, w, b, "swish")
    with raises(TypeError, "act"):
        B.dense_forward(x, w, b, 3)
    with raises(ValueError, "slope"):
        B.dense_forward(x, w, b, "leaky_relu", -0.1)


def test_native_core_checks_its_own_arguments():
    """The extension guards itself too, for callers that bypass the Python wrapper."""
    x, w, b = arrays()
    core = pygan._core
    with raises(TypeError, "x"):
        core.dense_forward(x.astype(np.float64), w, b, 0, 0.0)
    with raises(ValueError, "w"):
        core.dense_forward(x, w.T.copy(), b, 0, 0.0)
    with raises(ValueError, "x"):
        core.dense_forward(np.asfortranarray(np.ones((3, 3), f32)), np.ones((3, 3), f32), None, 0, 0.0)
    with raises(ValueError, "act"):
        core.dense_forward(x, w, b, 9, 0.0)


def test_unknown_backend():
    with raises(ValueError, "name"):
        pygan.set_backend("tpu")
    with raises(TypeError, "name"):
        pygan.set_backend(None)


def test_conv_bad_geometry(B):
    x = np.zeros((1, 3, 4, 4), f32)
    with raises(ValueError, "x"):
        B.conv2d_forward(x, np.zeros((2, 3, 7, 7), f32), None)
    with raises(ValueError, "w"):
        B.conv2d_forward(x, np.zeros((2, 4, 3, 3), f32), None)
    with raises(ValueError, "stride"):
        B.conv2d_forward(x, np.zeros((2, 3, 3, 3), f32), None, stride=0)
    with raises(ValueError, "output_padding"):
        B.conv_transpose2d_forward(x, np.zeros((3, 2, 3, 3), f32), None, stride=2, output_padding=2)


def test_other_ops_bad_input(B):
    x = np.ones((4, 6), f32)
    with raises(ValueError, "x"):
        B.maxout_forward(x, 4)
    with raises(ValueError, "p"):
        B.dropout_forward(x, 1.0)
    with pygan.use_backend(B.name):
        with raises(ValueError, "kind"):
            losses.generator_loss(x[:, :1].copy(), "wasserstein")
        with raises(ValueError, "real_target"):
            losses.discriminator_loss(x[:, :1].copy(), x[:, :1].copy(), real_target=1.5)
        with raises(ValueError, "targets"):
            losses.bce_with_logits(x, x[:2].copy())
    c = np.ones(6, f32)
    with raises(ValueError, "gamma"):
        B.batch_norm_forward(x, c[:5].copy(), c, c.copy(), c.copy())
    with raises(ValueError, "x"):
        B.batch_norm_forward(x[:1].copy(), c, c, c.copy(), c.copy())  # one value per channel cannot be normalised


def test_optimizer_buffers(B):
    p = np.zeros(5, f32)
    with raises(ValueError, "grad"):
        B.sgd_update(p, np.zeros(4, f32), np.zeros(5, f32), 0.1, 0.9)
    with raises(TypeError, "velocity"):
        B.sgd_update(p, np.zeros(5, f32), np.zeros(5, np.float16), 0.1, 0.9)
    with raises(ValueError, "step"):
        B.adam_update(p, p.copy(), p.copy(), p.copy(), 0.1, 0.9, 0.99, 1e-8, 0)


def test_layer_and_optimizer_arguments():
    with raises(ValueError, "act"):
        nn.Dense(3, 4, act="gelu")
    with raises(ValueError, "out_features"):
        nn.Dense(3, 0)
    with raises(ValueError, "init"):
        nn.Dense(3, 4, init="orthogonal")
    with raises(TypeError, "layers[1]"):
        nn.Sequential(nn.Dense(3, 4), "relu")
    with raises(ValueError, "lr"):
        pygan.Adam(nn.Dense(3, 4).parameters(), lr=-1.0)
    with raises(ValueError, "params"):
        pygan.SGD([])


def test_cupy_backend_says_what_is_missing():
    with pytest.raises((ImportError, RuntimeError), match="^name: the .cupy. backend"):
        pygan.set_backend("cupy")
    assert pygan.get_backend().name == "cpu"  # the failed switch left the backend as it was


def test_param_grads_buffers(B):
    """The buffers a backward op writes parameter gradients into must match the gradients."""
    x, w, b = arrays()
    y = B.dense_forward(x, w, b)
    dy = np.ones_like(y)
    with raises(ValueError, "param_grads[0]" if B.name == "numpy" else "dw_out"):
        B.dense_backward(dy, x, w, y, param_grads=(np.zeros((2, 3), f32), np.zeros(2, f32)))
    with raises(ValueError, "param_grads[1]" if B.name == "numpy" else "db_out"):
        B.dense_backward(dy, x, w, y, param_grads=(np.zeros_like(w), np.zeros(3, f32)))
    with raises(TypeError, "param_grads[0]" if B.name == "numpy" else "dw_out"):
        B.dense_backward(dy, x, w, y, param_grads=(np.zeros(w.shape, np.float64), np.zeros(2, f32)))
    if B.name == "cpu":  # the kernel writes through the pointer: layout and writeability matter
        with raises(ValueError, "dw_out"):
            B.dense_backward(dy, x, w, y, param_grads=(np.zeros((2, 3), f32).T, None))
        frozen = np.zeros_like(w)
        frozen.flags.writeable = False
        with raises(ValueError, "dw_out"):
            B.dense_backward(dy, x, w, y, param_grads=(frozen, None))
