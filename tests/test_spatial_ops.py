"""The resampling, padding and normalisation ops (upsample2x, avg_pool2d, pixel_shuffle,
reflection_pad2d, group_norm: instance / layer norm and AdaIN): the NumPy reference against finite
differences in float64 (second derivatives through the tape too), the cpu backend (native group
norm on the ISA row kernels; the rest the reference) against the reference on every ISA path,
PyTorch (float64) as an independent oracle, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pygan
from pygan import nn
from pygan.backend import cpu_backend
from pygan.backend import reference as R
from pygan.backend._checks import ACTIVATIONS
from pygan.nn import functional as F

from helpers import assert_close, numerical_grad
from test_autograd import check_second, check_tape

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
sides = st.sampled_from([1, 2, 3, 5, 6])
seeds = st.integers(0, 2**31 - 1)


def check_linear(forward, backward, x, rng):
    """A linear op's backward is its adjoint: against finite differences of ``sum(r * f(x))``."""
    r = rng.standard_normal(forward(x).shape)
    assert_close(backward(r), numerical_grad(lambda: float((forward(x) * r).sum()), x), 1e-7, 1e-7)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=sides, w=sides, mode=st.sampled_from(R.UPSAMPLE_MODES), seed=seeds)
def test_upsample_against_finite_differences(n, c, h, w, mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    check_linear(lambda a: R.upsample2x_forward(a, mode), lambda g: R.upsample2x_backward(g, mode), x, rng)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 7), w=st.integers(2, 7), k=st.integers(1, 3),
       seed=seeds)
def test_avg_pool_against_finite_differences(n, c, h, w, k, seed):
    if k > min(h, w):
        k = 1
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    check_linear(lambda a: R.avg_pool2d_forward(a, k), lambda g: R.avg_pool2d_backward(g, k, h, w), x, rng)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 2), r=st.integers(1, 3), h=sides, w=sides, seed=seeds)
def test_pixel_shuffle_is_a_permutation(n, c, r, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c * r * r, h, w))
    y = R.pixel_shuffle_forward(x, r)
    assert y.shape == (n, c, h * r, w * r)
    assert_close(np.sort(y.ravel()), np.sort(x.ravel()), 0, 0)
    assert_close(R.pixel_shuffle_backward(y, r), x, 0, 0)  # the adjoint of a permutation is its inverse
    check_linear(lambda a: R.pixel_shuffle_forward(a, r), lambda g: R.pixel_shuffle_backward(g, r), x, rng)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(2, 6), w=st.integers(2, 6), p=st.integers(0, 4),
       seed=seeds)
def test_reflection_pad_against_finite_differences(n, c, h, w, p, seed):
    p = min(p, h - 1, w - 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    check_linear(lambda a: R.reflection_pad2d_forward(a, p), lambda g: R.reflection_pad2d_backward(g, p), x, rng)


@SETTINGS
@given(n=st.integers(1, 3), c=st.sampled_from([1, 2, 4, 6]), spatial=st.sampled_from([(), (1, 1), (2, 3), (5, 4)]),
       groups=st.sampled_from(["instance", "layer", 2]), per_example=st.booleans(), act=st.sampled_from(ACTIVATIONS),
       seed=seeds)
def test_group_norm_against_finite_differences(n, c, spatial, groups, per_example, act, seed):
    g = c if groups == "instance" else 1 if groups == "layer" else (2 if c % 2 == 0 else 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, *spatial))
    shape = (n, c) if per_example else (c,)
    gamma, beta = rng.uniform(0.5, 1.5, shape), rng.standard_normal(shape) * 0.3
    while act in ("relu", "leaky_relu") and np.abs(R.group_norm_forward(x, gamma, beta, g)[0]).min() < 1e-3:
        beta = beta + 0.0123  # keep every pre-activation off the kink, where the derivative jumps
    y, mean, invstd = R.group_norm_forward(x, gamma, beta, g, 1e-5, act)
    r = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = R.group_norm_backward(r, x, y, gamma, mean, invstd, g, act)
    assert dgamma.shape == gamma.shape and dbeta.shape == beta.shape
    loss = lambda: float((R.group_norm_forward(x, gamma, beta, g, 1e-5, act)[0] * r).sum())  # noqa: E731
    tol = 1e-5
    assert_close(dx, numerical_grad(loss, x), tol, tol, "dx")
    assert_close(dgamma, numerical_grad(loss, gamma), tol, tol, "dgamma")
    assert_close(dbeta, numerical_grad(loss, beta), tol, tol, "dbeta")


def test_group_norm_statistics_and_special_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 5)) * 3 + 2
    ones, zeros = np.ones(4), np.zeros(4)
    y = R.group_norm_forward(x, ones, zeros, 4)[0]  # instance norm: each plane mean 0, variance 1
    assert_close(y.mean(axis=(2, 3)), 0, 0, 1e-12)
    assert_close(y.var(axis=(2, 3)), 1, 1e-4, 0)
    y = R.group_norm_forward(x, ones, zeros, 1)[0]  # layer norm: each example
    assert_close(y.reshape(3, -1).mean(axis=1), 0, 0, 1e-12)
    assert_close(y.reshape(3, -1).var(axis=1), 1, 1e-4, 0)
    # AdaIN: a per-example affine moves each example's planes to its own mean and scale
    scale, shift = rng.uniform(1, 2, (3, 4)), rng.standard_normal((3, 4))
    y = R.group_norm_forward(x, scale, shift, 4)[0]
    assert_close(y.mean(axis=(2, 3)), shift, 0, 1e-12)
    assert_close(y.std(axis=(2, 3)), scale, 1e-4, 0)
    # a constant plane normalises to beta (no division by zero)
    y = R.group_norm_forward(np.ones((1, 2, 3, 3)), np.ones(2), np.full(2, 0.5), 2)[0]
    assert_close(y, 0.5, 0, 0)


def test_second_derivatives_through_the_tape():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 3, 4))
    w = rng.standard_normal((2, 2, 6, 8))
    check_second(lambda x: ((F.upsample2x(x, "bilinear") * w).sum()) ** 2 + (F.avg_pool2d(x, 2) ** 3).sum(), x)
    check_second(lambda x: (F.reflection_pad2d(x, 2) ** 3).sum() + (F.pixel_shuffle(x[:, :, :2, :2].reshape(
        1, 4, 2, 2), 2) ** 2).sum(), x)
    g, b = rng.uniform(0.5, 1.5, 2), rng.standard_normal(2)
    for groups in (1, 2):
        check_second(lambda x, g, b: (F.group_norm(x, groups, g, b, act="tanh") * w[:, :, :3, :4]).sum() ** 2, x, g, b)
    s, t = rng.uniform(0.5, 1.5, (2, 2)), rng.standard_normal((2, 2))
    check_second(lambda x, s, t: (F.adain(x, s, t, act="sigmoid") ** 2).sum(), x, s, t)
    check_tape(lambda x, s, t: (F.adain(x, s, t) * w[:, :, :3, :4]).sum(), x, s, t)


def test_minibatch_std_against_numpy_and_finite_differences():
    """The extra channel is the mean over features of each feature's standard deviation over the
    batch, the same for every example; first and second derivatives match finite differences (R1
    differentiates through it twice)."""
    pygan.set_backend("numpy")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 4, 2))
    y = nn.MinibatchStd()(pygan.tensor(x)).numpy()
    assert y.shape == (5, 4, 4, 2)
    np.testing.assert_array_equal(y[:, :3], x)
    np.testing.assert_allclose(y[:, 3], np.sqrt(x.var(axis=0) + 1e-8).mean(), rtol=1e-12)
    w = rng.standard_normal((5, 4, 4, 2))
    layer = nn.MinibatchStd()
    check_tape(lambda x: (layer(x) * w).sum(), x)
    check_second(lambda x: (layer(x) * w).sum() ** 2, x)
    copies = np.repeat(x[:1], 5, axis=0)  # a collapsed batch: the channel reads (almost) zero
    assert nn.MinibatchStd()(pygan.tensor(copies)).numpy()[:, 3].max() < 1e-3
    with pytest.raises(ValueError, match="x:"):
        nn.MinibatchStd()(pygan.tensor(x[:, :, 0]))
    with pytest.raises(ValueError, match="eps"):
        nn.MinibatchStd(eps=0)


def test_a_gradient_penalty_through_a_layer_norm_critic():
    """WGAN-GP's penalty needs double backward through the critic: layer norm has it."""
    rng = np.random.default_rng(2)
    x, wc, v = rng.standard_normal((3, 1, 4, 4)), rng.standard_normal((4, 1, 3, 3)) * 0.5, rng.standard_normal((64, 1))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4) * 0.1

    def penalty(wc, gamma):
        xt = pygan.tensor(x, requires_grad=True)
        h = F.layer_norm(F.conv2d(xt, wc, None, 1, 1), gamma, beta, act="tanh")
        (g,) = pygan.grad(F.dense(F.flatten(F.avg_pool2d(h, 1))[:, :64], v).sum(), [xt], create_graph=True)
        return (((g * g).reshape(3, -1).sum(axis=1) ** 0.5 - 1) ** 2).mean()

    check_tape(penalty, wc, gamma, tol=1e-5)


# ---------------------------------------------------------------------------------------------
# the cpu backend (float32) against the reference, on every ISA path this CPU runs
# ---------------------------------------------------------------------------------------------
def _cases(rng):
    x = rng.standard_normal((3, 6, 5, 7)).astype(np.float32)
    yield "upsample2x", (x, "nearest"), ()
    yield "upsample2x", (x, "bilinear"), ()
    yield "avg_pool2d", (x, 2), (2, 5, 7)
    yield "pixel_shuffle", (np.ascontiguousarray(x[:, :4]), 2), (2,)
    yield "reflection_pad2d", (x, 3), (3,)


@pytest.mark.parametrize("isa", cpu_backend._core.supported_isas())
def test_cpu_matches_reference(isa):
    cpu_backend.set_isa(isa)
    try:
        cpu, ref = pygan.load_backend("cpu"), pygan.load_backend("numpy")
        rng = np.random.default_rng(3)
        for name, args, back_args in _cases(rng):
            y = getattr(cpu, name + "_forward")(*args)
            assert_close(y, getattr(ref, name + "_forward")(*args), 1e-6, 1e-6, name)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            extra = back_args or args[1:]
            assert_close(getattr(cpu, name + "_backward")(dy, *extra), getattr(ref, name + "_backward")(dy, *extra),
                         1e-6, 1e-6, name)
        images = rng.standard_normal((4, 6, 9, 11)).astype(np.float32) * 2 + 1
        for x, groups, shape in ((images, 6, (6,)), (images, 1, (6,)), (images, 3, (6,)), (images, 6, (4, 6)),
                                 (np.ascontiguousarray(images[:, :, 0, 0]), 2, (6,))):
            gamma, beta = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
            gamma.reshape(-1)[::4] = 0  # a zero scale passes only the group's mean terms
            for act in ACTIVATIONS:
                outs = [be.group_norm_forward(x, gamma, beta, groups, 1e-5, act) for be in (cpu, ref)]
                for a, b in zip(outs[0], outs[1]):
                    assert_close(a, b, 2e-5, 2e-5, f"group_norm {groups} {act}")
                dy = rng.standard_normal(x.shape).astype(np.float32)
                grads = [be.group_norm_backward(dy, x, outs[0][0], gamma, outs[0][1], outs[0][2], groups, act)
                         for be in (cpu, ref)]
                for a, b in zip(grads[0], grads[1]):
                    assert_close(a, b, 1e-4, 1e-4, f"group_norm backward {groups} {act}")
    finally:
        cpu_backend.set_isa(cpu_backend._core.supported_isas()[0])


# ---------------------------------------------------------------------------------------------
# PyTorch (float64) as an independent oracle
# ---------------------------------------------------------------------------------------------
def test_against_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the oracle comparison needs it")
    TF = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 5, 7))
    cases = [
        (lambda a: F.upsample2x(a, "nearest"), lambda t: TF.interpolate(t, scale_factor=2, mode="nearest")),
        (lambda a: F.upsample2x(a, "bilinear"),
         lambda t: TF.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)),
        (lambda a: F.avg_pool2d(a, 2), lambda t: TF.avg_pool2d(t, 2)),
        (lambda a: F.pixel_shuffle(a, 2), lambda t: TF.pixel_shuffle(t, 2)),
        (lambda a: F.reflection_pad2d(a, 3), lambda t: TF.pad(t, (3, 3, 3, 3), mode="reflect")),
    ]
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    for groups in (1, 4, 8):
        cases.append((lambda a, g=groups: F.group_norm(a, g, gamma, beta, act="leaky_relu"),
                      lambda t, g=groups: TF.leaky_relu(TF.group_norm(t, g, torch.tensor(gamma), torch.tensor(beta)),
                                                        0.2)))
    s, b = rng.uniform(0.5, 2, (2, 8)), rng.standard_normal((2, 8))
    cases.append((lambda a: F.adain(a, s, b),
                  lambda t: TF.instance_norm(t) * torch.tensor(s)[:, :, None, None] + torch.tensor(b)[:, :, None, None]))
    pygan.set_backend("numpy")
    for ours, theirs in cases:
        xt = pygan.tensor(x, requires_grad=True)
        y = ours(xt)
        r = rng.standard_normal(y.shape)
        (g,) = pygan.grad((y * r).sum(), [xt], create_graph=True)
        # a linear op's gradient does not depend on x: its second derivative is zero on both sides
        gg = pygan.grad((g * g).sum(), [xt])[0].numpy() if g.requires_grad else 0
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        (tg,) = torch.autograd.grad((ty * torch.tensor(r)).sum(), tx, create_graph=True)
        tgg = torch.autograd.grad((tg * tg).sum(), tx, allow_unused=True)[0] if tg.requires_grad else None
        assert_close(y.numpy(), ty.detach().numpy(), 1e-10, 1e-10)
        assert_close(g.numpy(), tg.detach().numpy(), 1e-9, 1e-9)
        assert_close(gg, 0 if tgg is None else tgg.numpy(), 1e-8, 1e-8)


# ---------------------------------------------------------------------------------------------
# layers and bad input
# ---------------------------------------------------------------------------------------------
def test_layers_compose_into_a_generator():
    pygan.set_backend("cpu")
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, seed=0), nn.InstanceNorm(8, act="relu"), nn.Upsample("bilinear"),
                        nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3, seed=1), nn.LayerNorm(8, act="leaky_relu"),
                        nn.PixelShuffle(2), nn.AvgPool2d(2), nn.GroupNorm(2, 2, act="tanh"))
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 2, 12, 12)
    y.sum().backward()
    assert all(np.isfinite(p.grad).all() and np.abs(p.grad).sum() > 0 for p in net.parameters())
    names = [n for n, _ in net.named_parameters()]
    assert "1.gamma" in names and "5.beta" in names


def test_bad_input_names_the_argument():
    pygan.set_backend("numpy")
    x = np.zeros((1, 4, 3, 3))
    with pytest.raises(ValueError, match="mode"):
        F.upsample2x(x, "cubic")
    with pytest.raises(ValueError, match="x: expected an"):
        F.upsample2x(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="padding"):
        F.reflection_pad2d(x, 3)
    with pytest.raises(ValueError, match="channels do not split"):
        F.pixel_shuffle(np.zeros((1, 3, 2, 2)), 2)
    with pytest.raises(ValueError, match="k: a 4x4 window"):
        F.avg_pool2d(x, 4)
    with pytest.raises(ValueError, match="groups: 3 groups"):
        F.group_norm(x, 3, np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match="gamma: expected shape"):
        F.group_norm(x, 1, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="scale"):
        F.adain(x, np.ones(4), np.zeros(4))
    with pytest.raises(TypeError, match="beta"):
        F.group_norm(x, 1, np.ones(4), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="groups"):
        nn.GroupNorm(3, 4)


@SETTINGS
@given(n=st.integers(1, 3), c=st.sampled_from([1, 2, 3, 4, 8]), spatial=st.sampled_from([(), (1, 1), (3, 5), (7, 6)]),
       groups=st.sampled_from(["instance", "layer", "pairs"]), per_example=st.booleans(),
       act=st.sampled_from(ACTIVATIONS), mode=st.sampled_from(R.UPSAMPLE_MODES), seed=seeds)
def test_native_ops_match_the_reference_on_random_shapes(n, c, spatial, groups, per_example, act, mode, seed):
    g = c if groups == "instance" else 1 if groups == "layer" else (2 if c % 2 == 0 else 1)
    rng = np.random.default_rng(seed)
    cpu = pygan.load_backend("cpu")
    x = (rng.standard_normal((n, c, *spatial)) * 3 + 1).astype(np.float32)
    shape = (n, c) if per_example else (c,)
    gamma, beta = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    got, want = cpu.group_norm_forward(x, gamma, beta, g, 1e-5, act), R.group_norm_forward(x, gamma, beta, g, 1e-5, act)
    for a, b in zip(got, want):
        assert_close(a, b, 5e-5, 5e-5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for a, b in zip(cpu.group_norm_backward(dy, x, got[0], gamma, got[1], got[2], g, act),
                    R.group_norm_backward(dy, x, got[0], gamma, got[1], got[2], g, act)):
        assert_close(a, b, 2e-4, 2e-4)
    if spatial:
        assert_close(cpu.upsample2x_forward(x, mode), R.upsample2x_forward(x, mode), 1e-6, 1e-6)
        dy2 = rng.standard_normal((n, c, 2 * spatial[0], 2 * spatial[1])).astype(np.float32)
        assert_close(cpu.upsample2x_backward(dy2, mode), R.upsample2x_backward(dy2, mode), 1e-6, 1e-6)
