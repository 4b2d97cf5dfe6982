"""Layers, optimizers and the GAN training step."""

from __future__ import annotations

import numpy as np
import pytest

import pygan
from pygan import data, metrics, nn

from helpers import assert_close, numerical_grad


def small_gan(backend: str, seed: int = 0, d_steps: int = 1, dtype=np.float32) -> pygan.GAN:
    with pygan.use_backend(backend):
        g = pygan.mlp_generator(4, [16, 16], 2, seed=seed, dtype=dtype)
        d = pygan.mlp_discriminator(2, [16, 16], seed=seed + 1, dtype=dtype)
        return pygan.GAN(g, d, pygan.Adam(g.parameters()), pygan.Adam(d.parameters()), 4, d_steps=d_steps, seed=seed)


def test_mlp_in_five_lines():
    g = nn.Sequential(nn.Dense(8, 32, act="relu", seed=0), nn.Dense(32, 2, act="tanh", seed=1))
    d = nn.Sequential(nn.Dense(2, 32, act="leaky_relu", seed=2), nn.Dropout(0.2, seed=3), nn.Dense(32, 1, seed=4))
    z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    logits = d(g(z))
    assert logits.shape == (5, 1) and g.num_parameters() == 8 * 32 + 32 + 32 * 2 + 2


def test_sequential_backward_matches_finite_differences():
    """A whole float64 stack (dense, activations, maxout, dropout with a fixed draw) on the reference."""
    pygan.set_backend("numpy")
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Dense(3, 8, seed=1, dtype=np.float64),
        nn.Maxout(2),
        nn.Tanh(),
        nn.Dense(4, 6, act="sigmoid", seed=2, dtype=np.float64),
        nn.Dropout(0.3, seed=5),
        nn.Dense(6, 2, seed=3, dtype=np.float64),
        nn.LeakyReLU(0.1),
    )
    x = rng.standard_normal((5, 3))
    r = rng.standard_normal((5, 2))
    drop = net[4]
    state = drop._rng.bit_generator.state

    def loss_of(inp):
        drop._rng.bit_generator.state = state  # the same dropout draw every call
        return (net(inp) * r).sum()

    xt = pygan.tensor(x, requires_grad=True)
    net.zero_grad()
    loss_of(xt).backward()
    w0 = net[0].w
    loss = lambda: loss_of(x).item()  # noqa: E731
    assert_close(xt.grad, numerical_grad(loss, x), 1e-6, 1e-6)
    assert_close(w0.grad, numerical_grad(loss, w0.data), 1e-6, 1e-6)


def test_optimizer_flattens_parameters_into_views():
    layer = nn.Dense(3, 4, seed=0)
    w0 = layer.w.data.copy()
    opt = pygan.SGD(layer.parameters(), lr=0.5)
    assert np.shares_memory(layer.w.data, opt.flat) and np.shares_memory(layer.b.grad, opt.flat_grad)
    assert_close(layer.w.data, w0, 0, 0)
    layer.w.grad[...] = 1.0
    opt.step()
    assert_close(layer.w.data, w0 - 0.5, 1e-7, 1e-7)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_zero_grad_is_lazy_but_exact(backend):
    """zero_grad only marks the buffers: the next gradient overwrites stale values, a second one adds,
    reading .grad gives zeros, and an optimizer step treats a parameter with no new gradient as zero."""
    with pygan.use_backend(backend):
        layer = nn.Dense(3, 4, act="tanh", seed=0)
        other = nn.Dense(4, 2, seed=1)
        opt = pygan.SGD(layer.parameters() + other.parameters(), lr=0.5)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((5, 3)).astype(np.float32)
        dy = rng.standard_normal((5, 4)).astype(np.float32)
        backward = lambda: (layer(x) * dy).sum().backward()  # noqa: E731
        backward()
        once = layer.w.grad.copy()
        layer.w.grad[...] = 7.0  # stale values that zero_grad must hide
        other.w.grad[...] = 7.0
        opt.zero_grad()
        assert np.all(other.b.grad == 0)  # read back as zeros
        backward()
        assert_close(layer.w.grad, once, 0, 0)  # overwritten, not added to 7
        backward()
        assert_close(layer.w.grad, 2 * once, 1e-6, 1e-6)  # the second gradient adds
        w_other = other.w.data.copy()
        opt.zero_grad()
        backward()
        opt.step()
        assert_close(other.w.data, w_other, 0, 0)  # no gradient since zero_grad: no change


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_generator_step_leaves_discriminator_untouched(backend):
    gan = small_gan(backend, d_steps=1)
    real = data.toy_samples("ring8", 32, seed=0)
    with pygan.use_backend(backend):
        gan.train_step(real)
        d_before = gan.d_optimizer.flat.copy()
        d_grad_before = gan.d_optimizer.flat_grad.copy()
        g_before = gan.g_optimizer.flat.copy()
        # the generator half of a step, as train_step runs it
        gan.d_steps = 0
        gan.train_step(real)
    assert np.array_equal(gan.d_optimizer.flat, d_before)
    assert np.array_equal(gan.d_optimizer.flat_grad, d_grad_before)
    assert not np.array_equal(gan.g_optimizer.flat, g_before)


@pytest.mark.parametrize("k", [1, 3])
def test_d_steps_makes_k_discriminator_updates(k):
    gan = small_gan("cpu", d_steps=k)
    gan.train_step(data.toy_samples("ring8", 16, seed=1))
    assert gan.d_optimizer.steps == k and gan.g_optimizer.steps == 1


def test_train_step_same_on_cpu_and_reference():
    real = data.toy_samples("grid25", 64, seed=2)
    results = {}
    for backend in ("numpy", "cpu"):
        gan = small_gan(backend, seed=7)
        with pygan.use_backend(backend):
            for _ in range(3):
                stats = gan.train_step(real)
        results[backend] = (gan.g_optimizer.flat.copy(), gan.d_optimizer.flat.copy(), stats)
    assert_close(results["cpu"][0], results["numpy"][0], 1e-4, 1e-5)
    assert_close(results["cpu"][1], results["numpy"][1], 1e-4, 1e-5)
    assert results["cpu"][2]["d_loss"] == pytest.approx(results["numpy"][2]["d_loss"], rel=1e-4)


def test_sampling_is_seeded():
    gan = small_gan("cpu")
    assert np.array_equal(gan.sample(10, seed=3), gan.sample(10, seed=3))
    assert not np.array_equal(gan.sample(10, seed=3), gan.sample(10, seed=4))


@pytest.mark.parametrize("model, num_classes", [("dcgan", 0), ("cgan", 10)])
def test_a_large_draw_runs_in_chunks_with_the_same_samples(monkeypatch, model, num_classes):
    """Sampling runs the generator ``GENERATE_CHUNK`` rows at a time (a 10,000-image draw once
    asked one op for 1.6 GB): the samples are those of one whole-batch run, labels and batch norm's
    evaluation mode included."""
    from pygan import gan as gan_module
    from pygan.models import build

    spec = build(model, (1, 28, 28), num_classes=num_classes, seed=0)
    gan = pygan.GAN(spec.generator, spec.discriminator, pygan.Adam(spec.generator.parameters()),
                    pygan.Adam(spec.discriminator.parameters()), latent_dim=spec.latent_dim, num_classes=num_classes)
    whole = gan.sample(11, seed=5)
    calls = []
    forward = gan._generate
    monkeypatch.setattr(gan, "_generate", lambda z, lab: calls.append(len(z)) or forward(z, lab))
    monkeypatch.setattr(gan_module, "GENERATE_CHUNK", 4)
    chunked = gan.sample(11, seed=5)
    assert calls == [4, 4, 3]
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_mode_coverage_metric():
    means, sigma = data.toy_modes("ring8")
    perfect = data.toy_samples("ring8", 2500, seed=0)
    m = metrics.mode_coverage(perfect, means, sigma)
    assert m["modes_covered"] == 8 and m["high_quality"] > 0.98
    collapsed = np.repeat(means[:1], 100, axis=0) + 0.5  # far from every mode
    m = metrics.mode_coverage(collapsed, means, sigma)
    assert m["modes_covered"] == 0 and m["high_quality"] == 0.0
    half = np.concatenate([means[:4]] * 10)
    assert metrics.mode_coverage(half, means, sigma)["modes_covered"] == 4
