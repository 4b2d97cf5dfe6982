"""The tape: every op's gradient through it against finite differences (float64, the reference
backend), second derivatives, the cpu backend against the reference, and composite models: a
module reused in one graph, a residual block, shared weights, a two-input module."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, numerical_grad

import pygan
from pygan import losses, nn
from pygan.nn import functional as F

F64 = np.float64
ACTS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")


def away_from_kinks(a: np.ndarray) -> np.ndarray:
    """Keep values away from 0, where relu-type derivatives and |x| jump."""
    return np.where(np.abs(a) < 0.1, a + 0.2 * np.sign(a + 1e-12), a)


def check_tape(fn, *arrays: np.ndarray, tol: float = 1e-6) -> None:
    """The tape's gradient of the scalar ``fn(*tensors)`` w.r.t. each array equals the numerical one."""
    pygan.set_backend("numpy")
    ts = [pygan.tensor(a, requires_grad=True) for a in arrays]
    grads = pygan.grad(fn(*ts), ts)
    for i, (a, g) in enumerate(zip(arrays, grads)):
        value = lambda: fn(*(pygan.Tensor(b) for b in arrays)).item()  # noqa: E731
        assert_close(g.numpy(), numerical_grad(value, a), tol, tol, f"input {i}")


def check_second(fn, *arrays: np.ndarray, tol: float = 1e-5) -> None:
    """Second derivatives: for ``h = sum(r * d fn / d arrays[0])`` (built with create_graph), the
    tape's gradient of h w.r.t. every array equals the numerical gradient of h."""
    pygan.set_backend("numpy")
    rng = np.random.default_rng(99)
    r = rng.standard_normal(arrays[0].shape)

    def h_of(*xs):
        (g,) = pygan.grad(fn(*xs), [xs[0]], create_graph=True)
        return (g * r).sum()

    ts = [pygan.tensor(a, requires_grad=True) for a in arrays]
    grads = pygan.grad(h_of(*ts), ts, allow_unused=True)

    def h_value() -> float:
        xs = [pygan.tensor(a, requires_grad=True) for a in arrays]
        (g,) = pygan.grad(fn(*xs), [xs[0]])
        return float((g.numpy() * r).sum())

    for i, (a, g) in enumerate(zip(arrays, grads)):
        assert_close(g.numpy(), numerical_grad(h_value, a, h=1e-4), tol, tol, f"second derivative, input {i}")


def randn(rng, *shape):
    return rng.standard_normal(shape)


@pytest.fixture(autouse=True)
def _reference_backend():
    """These tests run on the float64 reference unless they name a backend."""
    pygan.set_backend("numpy")


# ---------------------------------------------------------------------------------------------
# every op through the tape, against finite differences
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_dense(act, bias):
    rng = np.random.default_rng(1)
    x, w, b, r = randn(rng, 5, 3), randn(rng, 3, 4), randn(rng, 4), randn(rng, 5, 4)
    if act in ("relu", "leaky_relu"):
        x = away_from_kinks(x)
    if bias:
        check_tape(lambda x, w, b: (F.dense(x, w, b, act) * r).sum(), x, w, b)
    else:
        check_tape(lambda x, w: (F.dense(x, w, None, act) * r).sum(), x, w)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv2d_and_transpose(stride, padding):
    rng = np.random.default_rng(2)
    x, w, b = randn(rng, 2, 3, 5, 5), randn(rng, 4, 3, 3, 3), randn(rng, 4)
    y = F.conv2d(x, w, b, stride, padding)
    r = randn(rng, *y.shape)
    check_tape(lambda x, w, b: (F.conv2d(x, w, b, stride, padding, "tanh") * r).sum(), x, w, b)
    wt, bt = randn(rng, 3, 2, 3, 3), randn(rng, 2)
    yt = F.conv_transpose2d(x, wt, bt, stride, padding)
    rt = randn(rng, *yt.shape)
    check_tape(lambda x, w, b: (F.conv_transpose2d(x, w, b, stride, padding, 0, "sigmoid") * rt).sum(), x, wt, bt)


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    rng = np.random.default_rng(3)
    x, gamma, beta = randn(rng, *shape), rng.uniform(0.5, 1.5, shape[1]), randn(rng, shape[1])
    r = randn(rng, *shape)
    mean, var = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])

    def f(x, gamma, beta):
        rm, rv = mean.copy(), var.copy()  # the running statistics are updated in place: fresh each call
        return (F.batch_norm(x, gamma, beta, rm, rv, training, act="tanh") * r).sum()

    check_tape(f, x, gamma, beta)


@pytest.mark.parametrize("act", ACTS)
def test_activations(act):
    rng = np.random.default_rng(4)
    x, r = away_from_kinks(randn(rng, 4, 5)), randn(rng, 4, 5)
    check_tape(lambda x: (F.activation(x, act) * r).sum(), x)


def test_dropout_maxout_concat_softplus():
    rng = np.random.default_rng(5)
    x, r = randn(rng, 4, 6), randn(rng, 4, 6)
    check_tape(lambda x: (F.dropout(x, 0.4, seed=7) * r).sum(), x)
    check_tape(lambda x: (F.maxout(x, 3) * r[:, :2]).sum(), x)
    a, b = randn(rng, 4, 2), randn(rng, 4, 3)
    check_tape(lambda a, b: (F.concat([a, b], axis=1) * r[:, :5]).sum(), a, b)
    r2 = randn(rng, 8, 2)
    check_tape(lambda a: (F.concat([a, a * 2], axis=0) * r2).sum(), a)
    check_tape(lambda x: (F.softplus(x * 10) * r).sum(), x)


def test_elementwise_algebra():
    rng = np.random.default_rng(6)
    a, b = randn(rng, 3, 4), rng.uniform(0.5, 2.0, (1, 4))
    check_tape(lambda a, b: ((a + b) * (a - b) / b).sum(), a, b)
    check_tape(lambda a, b: (-(a * 3.0) ** 2 + 2.0 / b - 1.0 + a.exp().mean(axis=0, keepdims=True)).sum(), a, b)
    check_tape(lambda b: (b.log() + b.sqrt() + b ** 1.5).sum(), b)
    check_tape(lambda a: a.abs().sum(axis=1).mean(), away_from_kinks(a))
    check_tape(lambda a, b: ((a @ b.reshape(4, 1)) ** 2).sum() + a.T.sum(axis=0)[1] + a[1:, ::2].sum(), a, b)
    check_tape(lambda a: (a[np.array([0, 0, 2])] * 2).sum(), a)  # a repeated row gets both gradients
    check_tape(lambda a, b: F.mse_loss(a, b) + F.l1_loss(a, -5.0), a, b)


def test_losses():
    rng = np.random.default_rng(7)
    logits, targets = randn(rng, 6, 1) * 3, rng.uniform(0, 1, (6, 1))
    check_tape(lambda l: losses.bce_with_logits(l, targets), logits)
    for kind in losses.GENERATOR_LOSSES:
        check_tape(lambda l: losses.generator_loss(l, kind), logits)
    check_tape(lambda r, f: losses.discriminator_loss(r, f, 0.9), logits, randn(rng, 6, 1))


# ---------------------------------------------------------------------------------------------
# second derivatives (create_graph=True)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_second_derivatives_dense(act):
    rng = np.random.default_rng(8)
    x, w, b = randn(rng, 4, 3), randn(rng, 3, 5), randn(rng, 5)
    if act in ("relu", "leaky_relu"):
        x = away_from_kinks(x)
    v = randn(rng, 5, 1)
    check_second(lambda x, w, b: F.dense(F.dense(x, w, b, act), v, None, "tanh").sum(), x, w, b)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1)])
def test_second_derivatives_conv2d(stride, padding):
    rng = np.random.default_rng(9)
    x, w, b = randn(rng, 2, 2, 6, 6), randn(rng, 3, 2, 3, 3) * 0.5, randn(rng, 3)
    check_second(lambda x, w, b: F.conv2d(x, w, b, stride, padding, "tanh").sum() ** 2, x, w, b)


def test_second_derivatives_conv_transpose2d():
    rng = np.random.default_rng(10)
    x, w, b = randn(rng, 2, 3, 3, 3), randn(rng, 3, 2, 4, 4) * 0.5, randn(rng, 2)
    check_second(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 0, "sigmoid").sum() ** 2, x, w, b)


@pytest.mark.parametrize("act", ACTS)
def test_second_derivatives_activations_and_algebra(act):
    rng = np.random.default_rng(11)
    x = away_from_kinks(randn(rng, 3, 4))
    check_second(lambda x: (F.activation(x * 1.5, act) ** 2).sum() + (x * x * x).mean(), x)
    check_second(lambda x: F.softplus(x).sum() + losses.generator_loss(x[:, :1], "non_saturating") * 3, x)
    check_second(lambda x: (F.maxout(x, 2) ** 3).sum() + (F.dropout(x, 0.5, seed=1) ** 2).sum(), x)


def test_gradient_penalty_through_an_mlp_critic():
    """WGAN-GP's penalty: d/dw of (||d D(x) / dx|| - 1)^2, against finite differences."""
    rng = np.random.default_rng(12)
    x, w1, w2 = randn(rng, 5, 2), randn(rng, 2, 6), randn(rng, 6, 1)

    def penalty(x, w1, w2):
        xt = x if isinstance(x, pygan.Tensor) and x.requires_grad else pygan.tensor(np.asarray(x), requires_grad=True)
        (g,) = pygan.grad(F.dense(F.dense(xt, w1, None, "tanh"), w2).sum(), [xt], create_graph=True)
        return (((g * g).sum(axis=1) ** 0.5 - 1) ** 2).mean()

    check_tape(penalty, x, w1, w2, tol=1e-5)


def test_double_backward_of_batch_norm_names_itself():
    pygan.set_backend("numpy")
    x = pygan.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    y = F.batch_norm(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), True, act="tanh")
    with pytest.raises(RuntimeError, match="^batch_norm: double backward"):
        pygan.grad((y * y).sum(), [x], create_graph=True)


# ---------------------------------------------------------------------------------------------
# the tape's bookkeeping
# ---------------------------------------------------------------------------------------------
def test_no_grad_records_nothing_and_graphs_are_freed():
    layer = nn.Dense(3, 2, seed=0)
    x = np.ones((2, 3), np.float32)
    with pygan.no_grad():
        y = layer(x)
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(ValueError, match="^outputs\\[0\\]: does not require a gradient"):
        y.sum().backward()
    loss = layer(x).sum()
    loss.backward(retain_graph=True)
    once = layer.w.grad.copy()
    loss.backward()
    assert_close(layer.w.grad, 2 * once, 1e-6, 1e-6)  # the retained graph ran again and added
    with pytest.raises(RuntimeError, match="freed by a backward pass"):
        loss.backward()
    with pytest.raises(ValueError, match="^grad_outputs\\[0\\]"):
        layer(x).backward()  # a (2, 2) output has no implied gradient
    with pytest.raises(ValueError, match="^inputs\\[0\\]: the outputs do not depend on it"):
        pygan.grad(layer(x).sum(), [pygan.tensor(np.ones(2), requires_grad=True)])


def test_backward_inputs_restricts_which_leaves_get_gradients():
    a, b = nn.Dense(3, 3, seed=0), nn.Dense(3, 1, seed=1)
    for p in a.parameters() + b.parameters():
        p.grad[...] = 0
    x = pygan.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b(a(x)).sum().backward(inputs=a.parameters())
    assert np.any(a.w.grad != 0) and not np.any(b.w.grad != 0) and x.grad is None


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_module_reused_twice_in_one_graph(backend):
    """D(x) + D(x): each call keeps its own saved state, so the gradient is exactly twice one call's
    (the layer-cached design gave 4 where 2 is right)."""
    with pygan.use_backend(backend):
        d = nn.Sequential(nn.Dense(3, 4, act="tanh", seed=0), nn.Dense(4, 1, seed=1))
        x1 = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
        x2 = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
        d.zero_grad()
        d(x1).sum().backward()
        g1 = d[0].w.grad.copy()
        d.zero_grad()
        d(x2).sum().backward()
        g2 = d[0].w.grad.copy()
        d.zero_grad()
        (d(x1) + d(x2)).sum().backward()
        assert_close(d[0].w.grad, g1 + g2, 1e-5, 1e-6)
        d.zero_grad()
        (d(x1) + d(x1)).sum().backward()
        assert_close(d[0].w.grad, 2 * g1, 1e-5, 1e-6)


class Residual(nn.Module):
    """``x + f(x)`` with a two-layer f."""

    def __init__(self, width: int, seed: int) -> None:
        super().__init__()
        self.inner = nn.Dense(width, width, act="tanh", seed=seed, dtype=F64)
        self.outer = nn.Dense(width, width, seed=seed + 1, dtype=F64)

    def forward(self, x):
        return x + self.outer(self.inner(x))


class Joint(nn.Module):
    """A two-input module: a critic of (sample, condition) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Dense(2, 3, act="leaky_relu", seed=3, dtype=F64)
        self.head = nn.Dense(3 + 4, 1, seed=4, dtype=F64)

    def forward(self, x, c):
        return self.head(F.concat([self.embed(c), x], axis=1))


def _param_grads_match_fd(module, loss_of) -> None:
    module.zero_grad()
    loss_of().backward()
    for name, p in module.named_parameters():
        assert_close(p.grad, numerical_grad(lambda: loss_of().item(), p.data), 1e-6, 1e-6, name)


def test_residual_block_two_input_module_and_shared_weights():
    pygan.set_backend("numpy")
    rng = np.random.default_rng(13)
    x, c, r = randn(rng, 5, 4), randn(rng, 5, 2), randn(rng, 5, 4)
    block = nn.Sequential(Residual(4, 0), Residual(4, 2))
    _param_grads_match_fd(block, lambda: (block(x) * r).sum())
    check_tape(lambda x: (block(x) * r).sum(), x)
    joint = Joint()
    _param_grads_match_fd(joint, lambda: (joint(x, c) ** 2).sum())
    assert [n for n, _ in joint.named_parameters()] == ["embed.w", "embed.b", "head.w", "head.b"]
    # shared weights: two layers hold one Parameter; it is listed once and gets both uses' gradients
    tied = nn.Sequential(nn.Dense(4, 4, act="tanh", seed=5, dtype=F64), nn.Dense(4, 4, seed=6, dtype=F64))
    tied[1].w = tied[0].w
    assert len(tied.parameters()) == 3 and list(tied.state_dict()) == ["0.w", "0.b", "1.b"]
    _param_grads_match_fd(tied, lambda: (tied(x) * r).sum())


def test_state_dict_names_and_strict_loading():
    net = nn.Sequential(nn.Dense(2, 3, seed=0), nn.BatchNorm(3), nn.Dense(3, 1, bias=False, seed=1))
    state = net.state_dict()
    assert list(state) == ["0.w", "0.b", "1.gamma", "1.beta", "2.w", "1.running_mean", "1.running_var"]
    other = nn.Sequential(nn.Dense(2, 3, seed=7), nn.BatchNorm(3), nn.Dense(3, 1, bias=False, seed=8))
    other.load_state_dict({k: v.copy() for k, v in state.items()})
    assert all(np.array_equal(other.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(KeyError, match="missing keys \\['2.w'\\], unexpected keys \\['2.weight'\\]"):
        other.load_state_dict({**{k: v for k, v in state.items() if k != "2.w"}, "2.weight": state["2.w"]})
    with pytest.raises(ValueError, match="^state\\['0.w'\\]: shape"):
        other.load_state_dict({**state, "0.w": np.zeros((3, 3), np.float32)})

    class Forgetful(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Dense(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Forgetful()


# ---------------------------------------------------------------------------------------------
# the cpu backend against the reference, through the tape
# ---------------------------------------------------------------------------------------------
def test_cpu_matches_reference_through_the_tape():
    """A DCGAN-like composite (conv, batch norm, residual add, dense head, BCE) on both backends:
    the same parameter gradients and input gradients within float32 tolerance."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
    results = []
    for backend in ("numpy", "cpu"):
        with pygan.use_backend(backend):
            conv = nn.Conv2d(2, 4, 4, 2, 1, act="leaky_relu", seed=0)
            bn = nn.BatchNorm(4, act="relu")
            up = nn.ConvTranspose2d(4, 2, 4, 2, 1, seed=1)
            head = nn.Dense(2 * 8 * 8, 1, seed=2)
            xt = pygan.tensor(x, requires_grad=True)
            h = up(bn(conv(xt))) + xt
            loss = losses.discriminator_loss(head(F.flatten(h)), head(F.flatten(h * 0.5)), 0.9)
            loss.backward()
            results.append([xt.grad] + [p.grad.copy() for m in (conv, bn, up, head) for p in m.parameters()])
    for got, want in zip(results[1], results[0]):
        assert_close(got, want, 2e-4, 2e-5)


def test_cpu_second_derivative_matches_reference():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    out = []
    for backend in ("numpy", "cpu"):
        with pygan.use_backend(backend):
            d = nn.Sequential(nn.Dense(3, 8, act="leaky_relu", seed=0), nn.Dense(8, 1, seed=1))
            xt = pygan.tensor(x, requires_grad=True)
            (g,) = pygan.grad(d(xt).sum(), [xt], create_graph=True)
            ((g * g).sum(axis=1) ** 0.5 - 1).abs().mean().backward(inputs=d.parameters())
            out.append([p.grad.copy() for p in d.parameters()])
    for got, want in zip(*out):
        assert_close(got, want, 2e-4, 2e-5)


# ---------------------------------------------------------------------------------------------
# user code trains
# ---------------------------------------------------------------------------------------------
class TwoLayer(nn.Module):
    """A user's own module: ``__init__`` and ``forward``, nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Dense(2, 16, act="tanh", seed=0)
        self.out = nn.Dense(16, 1, seed=1)

    def forward(self, x):
        h = self.hidden(x)
        return self.out(h + h * h)


def test_a_custom_module_trains():
    rng = np.random.default_rng(16)
    x = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    y = (np.sin(3 * x[:, :1]) * x[:, 1:]).astype(np.float32)
    model = TwoLayer()
    opt = pygan.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.2 * first


def wgan_gp(gan, real, labels, wants, weight=10.0):
    """The README's WGAN-GP objective (Gulrajani et al. 2017), as user code."""
    n = len(real)
    if "discriminator" in wants:
        with pygan.no_grad():
            fake, _ = gan.generate_fake(n)
        eps = gan.rng.uniform(size=(n, 1)).astype(np.float32)
        mix = pygan.tensor(eps * real + (1 - eps) * fake.data, requires_grad=True)
        (g,) = pygan.grad(gan.discriminate(mix).sum(), [mix], create_graph=True)
        penalty = (((g * g).sum(axis=1) ** 0.5 - 1) ** 2).mean()
        critic = gan.discriminate(fake).mean() - gan.discriminate(real).mean()
        return {"discriminator": critic + weight * penalty, "gp": penalty}
    fake, _ = gan.generate_fake(n)
    return {"generator": -gan.discriminate(fake).mean()}


@pytest.mark.slow
def test_wgan_gp_in_user_code_trains_on_the_ring():
    from pygan import data, models

    g = models.mlp_generator(8, [128, 128], 2, act="relu", seed=0)
    d = models.mlp_discriminator(2, [128, 128], act="relu", seed=1)
    gan = pygan.GAN(g, d, pygan.Adam(g.parameters(), lr=1e-3, betas=(0.5, 0.9)),
                    pygan.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.9)), latent_dim=8, d_steps=5,
                    objective=wgan_gp, seed=0, ema=0.999)
    real = data.toy_samples("ring8", 12800, seed=0).astype(np.float32)
    means, sigma = data.toy_modes("ring8")

    def distance_to_modes() -> float:  # mean distance of 2,500 samples to their nearest mode
        x = np.asarray(gan.sample(2500, seed=1), np.float64)
        return float(np.sqrt(((x[:, None, :] - means[None]) ** 2).sum(axis=2)).min(axis=1).mean())

    before = distance_to_modes()
    history = gan.fit(real, epochs=6, batch_size=128).history
    assert all(np.isfinite(list(h.values())).all() for h in history)
    # the penalty does its job: the critic's gradient norm on interpolates sits near 1
    assert history[-1]["gp"] < 0.1
    after = distance_to_modes()
    assert after < 0.75 * before, (before, after)  # the samples move towards the ring (a sign error moves them off)
    x = np.asarray(gan.sample(2500, seed=1), np.float64)
    share = np.bincount(((x[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1), minlength=8) / len(x)
    assert (share >= 0.04).sum() >= 4, share  # no collapse: several modes are each the nearest of many samples
