"""The GAN's features: conditioning, packing, interpolation, virtual batch norm, fit/Ctrl-C, models."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from helpers import numerical_grad

import pygan
from pygan import data, losses, models
from pygan.gan import GAN, Player, latent_path
from pygan.nn import Dense, Module, Sequential, VirtualBatchNorm
from pygan.optim import SGD, Adam, clip_column_norms


def small_gan(num_classes=0, pack=1, seed=0, **kw):
    g = models.mlp_generator(4 + num_classes, [16], 2, seed=seed)
    d = models.mlp_discriminator((2 + num_classes) * pack, [16], seed=seed + 1)
    return GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=4, num_classes=num_classes, pack=pack, seed=seed, **kw)


def snapshot(net):
    return [p.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("num_classes, pack", [(0, 2), (8, 1), (8, 4)])
def test_generator_step_leaves_discriminator_untouched_with_labels_and_packing(num_classes, pack):
    gan = small_gan(num_classes, pack)
    x, lab = data.toy_labelled("ring8", 32, seed=0)
    gan.train_step(x, lab if num_classes else None)
    d_before, g_before = snapshot(gan.discriminator), snapshot(gan.generator)
    d_grad = gan.d_optimizer.flat_grad.copy()
    gan.d_steps = 0  # run only the generator half of the step
    gan.train_step(x, lab if num_classes else None)
    for a, b in zip(d_before, snapshot(gan.discriminator)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(d_grad, gan.d_optimizer.flat_grad)
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, snapshot(gan.generator)))


def test_generator_gradient_through_labels_and_packing_matches_finite_differences():
    """d g_loss / d G(z) through the joined-label, packed discriminator input, in float64."""
    pygan.set_backend("numpy")
    rng = np.random.default_rng(0)
    g = Sequential(Dense(4 + 3, 2, seed=1, dtype=np.float64))
    d = models.mlp_discriminator((2 + 3) * 2, [5], seed=2, dtype=np.float64)
    gan = GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=4, num_classes=3, pack=2)
    fake = rng.standard_normal((6, 2))
    labels = np.array([0, 1, 2, 2, 1, 0])

    def loss_of(f):
        return losses.generator_loss(gan.discriminate(f, labels), "non_saturating")

    ft = pygan.tensor(fake, requires_grad=True)
    (analytic,) = pygan.grad(loss_of(ft), [ft])
    np.testing.assert_allclose(analytic.numpy(), numerical_grad(lambda: loss_of(fake).item(), fake), rtol=1e-6, atol=1e-9)


class Identity(Module):
    def forward(self, x):
        return x


def test_conditional_inputs_for_images():
    pygan.set_backend("numpy")
    gan = small_gan(num_classes=3)
    gan.players["discriminator"] = Player(Identity(), gan.d_optimizer)  # see what the discriminator is fed
    x = pygan.tensor(np.zeros((2, 1, 4, 4), np.float32), requires_grad=True)
    joined = gan.discriminate(x, np.array([2, 0]))
    assert joined.shape == (2, 4, 4, 4)
    j = joined.numpy()
    assert (j[0, 3] == 1).all() and (j[0, 1:3] == 0).all() and (j[1, 1] == 1).all()
    joined.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(x.shape))  # the label planes take no gradient back


def test_labels_are_checked():
    gan = small_gan(num_classes=8)
    x = data.toy_samples("ring8", 8, seed=0)
    with pytest.raises(ValueError, match="^labels: a conditional GAN"):
        gan.train_step(x)
    with pytest.raises(ValueError, match="^labels: labels must lie"):
        gan.train_step(x, np.full(8, 8))
    with pytest.raises(ValueError, match="^labels: expected 8 integer"):
        gan.train_step(x, np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="^labels: this GAN is not conditional"):
        small_gan().train_step(x, np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="^real: batch size 6 must be a positive multiple of pack=4"):
        small_gan(pack=4).train_step(x[:6])


def test_conditional_samples_follow_their_labels():
    gan = small_gan(num_classes=8)
    lab = np.arange(8)
    a = gan.sample(8, labels=lab, seed=1)
    b = gan.sample(8, labels=lab[::-1].copy(), seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(gan.sample(8, seed=1), a)  # default labels cycle through the classes


def test_truncation_draws_z_towards_the_mean():
    gan = small_gan()
    rng = np.random.default_rng(4)
    z = gan.noise(6, rng)
    full = gan.sample(6, seed=4)
    np.testing.assert_array_equal(full, gan.generate(z))
    np.testing.assert_array_equal(gan.sample(6, seed=4, truncation=1.0), full)
    np.testing.assert_array_equal(gan.sample(6, seed=4, truncation=0.5), gan.generate(z * np.float32(0.5)))
    mean = gan.sample(6, seed=4, truncation=0.0)
    np.testing.assert_array_equal(mean, np.repeat(gan.generate(np.zeros((1, gan.latent_dim), np.float32)), 6, axis=0))
    spread = [float(gan.sample(200, seed=5, truncation=psi).std(axis=0).mean()) for psi in (1.0, 0.5, 0.1)]
    assert spread[0] > spread[1] > spread[2] > 0
    with pytest.raises(ValueError, match="^truncation"):
        gan.sample(2, truncation=1.5)


def test_latent_paths():
    z0, z1 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    lin = latent_path(z0, z1, 5)
    np.testing.assert_allclose(lin[[0, -1]], [z0, z1])
    np.testing.assert_allclose(lin[2], [0.5, 1.0])
    sph = latent_path(z0, z1 / 2, 5, "spherical")
    np.testing.assert_allclose(sph[[0, -1]], [z0, z1 / 2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(sph, axis=1), 1.0)  # stays on the sphere
    angles = np.arctan2(sph[:, 1], sph[:, 0])
    np.testing.assert_allclose(np.diff(angles), np.pi / 8)  # constant angular speed
    with pytest.raises(ValueError, match="^method"):
        latent_path(z0, z1, 3, "cubic")
    with pytest.raises(ValueError, match="^z1"):
        latent_path(z0, np.zeros(3), 3)
    gan = small_gan()
    out = gan.interpolate(np.eye(4)[0], np.ones(4), 7, "spherical")
    with pytest.raises(ValueError, match="^z0"):
        gan.interpolate(np.zeros(4), np.ones(4), 3, "spherical")
    assert out.shape == (7, 2)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 2)])
def test_virtual_batch_norm_gradients(shape):
    pygan.set_backend("numpy")
    rng = np.random.default_rng(0)
    layer = VirtualBatchNorm(shape[1], act="tanh", dtype=np.float64)
    layer.gamma.data[...] = rng.uniform(0.5, 1.5, shape[1])
    layer.beta.data[...] = rng.standard_normal(shape[1])
    layer.recording = True
    layer(rng.standard_normal((4, *shape[1:])))
    layer.recording = False
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape)

    def f():
        return float((layer(x).numpy() * w).sum())

    xt = pygan.tensor(x, requires_grad=True)
    (layer(xt) * w).sum().backward()
    np.testing.assert_allclose(xt.grad, numerical_grad(f, x), rtol=1e-6, atol=1e-8)
    for p in layer.parameters():
        np.testing.assert_allclose(p.grad, numerical_grad(f, p.data), rtol=1e-6, atol=1e-8)


def test_virtual_batch_norm_output_does_not_depend_on_the_batch():
    pygan.set_backend("numpy")
    rng = np.random.default_rng(1)
    layer = VirtualBatchNorm(3)
    with pytest.raises(RuntimeError, match="reference"):
        layer.forward(rng.standard_normal((2, 3)).astype(np.float32))
    layer.recording = True
    layer.forward(rng.standard_normal((16, 3)).astype(np.float32))
    layer.recording = False
    x = rng.standard_normal((6, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy()[:2], layer(x[:2]).numpy(), rtol=1e-6)


def test_dcgan_with_virtual_batch_norm_trains_a_step():
    pygan.set_backend("numpy")
    spec = models.build("dcgan", (1, 28, 28), norm="virtual", seed=0)
    gan = GAN(spec.generator, spec.discriminator, Adam(spec.generator.parameters()), Adam(spec.discriminator.parameters()),
              latent_dim=100, reference_size=8, seed=0)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    before = gan.generator.parameters()[0].data.copy()
    stats = gan.train_step(real)
    assert np.isfinite(list(stats.values())).all()
    assert not np.array_equal(before, gan.generator.parameters()[0].data)
    a, b = gan.sample(3, seed=5), gan.sample(5, seed=5)
    np.testing.assert_allclose(a, b[:3], rtol=1e-5, atol=1e-6)  # VBN: samples independent of batch


@pytest.mark.parametrize("name, shape, classes", [("mlp", (2,), 0), ("mlp", (1, 28, 28), 0), ("cgan", (2,), 8),
                                                  ("paper-mlp", (1, 28, 28), 0), ("dcgan", (1, 28, 28), 10)])
def test_model_builders_train_one_step_on_numpy_and_cpu_alike(name, shape, classes):
    rng = np.random.default_rng(0)
    flat = name != "dcgan"
    n = 4
    real = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
    if flat:
        real = real.reshape(n, -1)
    labels = rng.integers(classes, size=n) if classes else None
    flats = []
    for backend in ("numpy", "cpu"):
        pygan.set_backend(backend)
        spec = models.build(name, shape, num_classes=classes, seed=3)
        # SGD, not Adam: Adam's first step is lr * sign(g), which magnifies float noise in tiny gradients
        gan = GAN(spec.generator, spec.discriminator, SGD(spec.generator.parameters(), lr=0.1),
                  SGD(spec.discriminator.parameters(), lr=0.1), latent_dim=spec.latent_dim, prior=spec.prior,
                  num_classes=classes, d_max_norm=spec.d_max_norm, updates=spec.updates, seed=4)
        gan.train_step(real, labels)
        flats.append(np.concatenate([gan.g_optimizer.flat, gan.d_optimizer.flat]))
        assert gan.sample(2, seed=1).shape[1:] == real.shape[1:]
    np.testing.assert_allclose(flats[0], flats[1], rtol=1e-4, atol=1e-5)


def test_model_builder_errors():
    with pytest.raises(ValueError, match="^name"):
        models.build("vae", (2,))
    with pytest.raises(ValueError, match="^num_classes"):
        models.build("cgan", (2,))
    with pytest.raises(ValueError, match="^data_shape"):
        models.build("dcgan", (2,))
    with pytest.raises(ValueError, match="^data_shape.*power of two"):
        models.build("dcgan", (1, 30, 30))
    with pytest.raises(ValueError, match="^data_shape.*square"):
        models.build("dcgan", (1, 32, 16))
    assert models.build("dcgan", (1, 32, 32)).generator(np.zeros((2, 100), np.float32)).shape == (2, 1, 32, 32)


def test_max_column_norm():
    d = Dense(3, 4)
    d.w.data[...] = np.arange(12, dtype=np.float32).reshape(3, 4)
    before = d.w.data.copy()
    clip_column_norms([d.w, d.b], 5.0)
    norms = np.linalg.norm(d.w.data, axis=0)
    assert norms.max() <= 5.0 + 1e-5
    small = np.linalg.norm(before, axis=0) <= 5.0
    np.testing.assert_array_equal(d.w.data[:, small], before[:, small])


def test_fit_history_callbacks_and_ctrl_c():
    gan = small_gan()
    x = data.toy_samples("ring8", 64, seed=0)
    seen = []

    class Hook:
        def on_step(self, g, stats):
            seen.append(g.steps)
            if g.steps == 3:
                os.kill(os.getpid(), signal.SIGINT)

        def on_epoch_end(self, g, summary):
            seen.append(("epoch", g.epoch, sorted(summary)))

    result = gan.fit(x, 5, 16, callbacks=[Hook()])
    assert result.interrupted and gan.steps == 3 and (gan.epoch, gan.batch_in_epoch) == (0, 3)
    assert seen == [1, 2, 3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    result = gan.fit(x, 1, 16, callbacks=[Hook()])
    assert not result.interrupted and gan.epoch == 1 and gan.steps == 4
    assert seen[-1] == ("epoch", 1, ["d_acc_fake", "d_acc_real", "d_g_z", "d_loss", "d_x", "g_loss"])
    with pytest.raises(ValueError, match="^batch_size"):
        small_gan(pack=3).fit(x, 1, 16)
    with pytest.raises(ValueError, match="^data"):
        gan.fit(x[:3], 2, 16)


def test_paper_generator_starts_from_the_data_marginals():
    rng = np.random.default_rng(0)
    marg = rng.uniform(0.0, 1.0, (1, 28, 28))
    spec = models.build("paper-mlp", (1, 28, 28), marginals=marg, seed=0)
    out = spec.generator.layers[-1]
    m = np.clip(marg.reshape(-1), 1e-5, 1 - 1e-5)
    np.testing.assert_allclose(out.b.data, np.log(m / (1 - m)), rtol=1e-5)
    with pytest.raises(ValueError, match="^marginals"):
        models.build("paper-mlp", (1, 28, 28), marginals=np.zeros(5))


def test_paper_model_trains_as_its_authors_code_with_either_optimizer():
    adam = models.build("paper-mlp", (1, 28, 28), seed=0)
    sgd = models.build("paper-mlp", (1, 28, 28), seed=0, optimizer="sgd")
    assert (adam.updates, adam.prior, adam.batch_size, adam.d_max_norm) == ("simultaneous", "uniform", 100, None)
    assert adam.optimizer["kind"] == "adam" and adam.optimizer["d_lr_scale"] == 0.5
    assert sgd.optimizer == {"kind": "sgd", "lr": 0.1, "d_lr_scale": 0.5, "momentum": 0.5, "final_momentum": 0.7,
                             "momentum_epochs": 250, "lr_decay": 1.000004}
    with pytest.raises(ValueError, match="^optimizer"):
        models.build("dcgan", (1, 28, 28), optimizer="sgd")
    with pytest.raises(ValueError, match="^optimizer"):
        models.build("paper-mlp", (1, 28, 28), optimizer="rmsprop")


def sgd_gan(updates, d_lr, seed=3):
    g = models.mlp_generator(4, [16], 2, seed=seed)
    d = models.mlp_discriminator(2, [16], seed=seed + 1)
    return GAN(g, d, SGD(g.parameters(), lr=0.1, momentum=0.5), SGD(d.parameters(), lr=d_lr, momentum=0.5),
               latent_dim=4, updates=updates, seed=seed)


def test_simultaneous_updates_take_both_gradients_before_either_step():
    """The 2014 paper's code: G's update does not see D's update of the same step (it is independent
    of D's learning rate), and D's update is the alternating one's (same first noise draw)."""
    x = data.toy_samples("ring8", 64, seed=0)
    sims = [sgd_gan("simultaneous", lr) for lr in (1e-9, 0.5)]
    alts = [sgd_gan("alternating", lr) for lr in (1e-9, 0.5)]
    for gan in sims + alts:
        gan.train_step(x)
    for a, b in zip(snapshot(sims[0].generator), snapshot(sims[1].generator)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(snapshot(alts[0].generator), snapshot(alts[1].generator)))
    for a, b in zip(snapshot(sims[1].discriminator), snapshot(alts[1].discriminator)):
        np.testing.assert_array_equal(a, b)
    # one generated batch serves both players: a simultaneous step draws noise once, an alternating one twice
    assert sims[1].rng.bit_generator.state != alts[1].rng.bit_generator.state


def test_simultaneous_updates_need_one_discriminator_step_and_a_known_order():
    with pytest.raises(ValueError, match="d_steps"):
        small_gan(updates="simultaneous", d_steps=2)
    with pytest.raises(ValueError, match="updates: unknown"):
        small_gan(updates="both")


def test_uniform_prior_has_unit_variance():
    gan = small_gan(prior="uniform")
    z = gan.noise(20000)
    assert np.abs(z).max() <= np.sqrt(3) and abs(float(z.var()) - 1) < 0.02


def test_toy_generator_activation_can_be_replaced_and_only_there():
    assert all(layer.act == "tanh" for layer in models.build("mlp", (2,), seed=0).generator.layers[:-1])
    spec = models.build("mlp", (2,), seed=0, g_act="leaky_relu")
    assert all(layer.act == "leaky_relu" for layer in spec.generator.layers[:-1])
    assert spec.generator.layers[-1].act == "identity"
    with pytest.raises(ValueError, match="^g_act"):
        models.build("dcgan", (1, 28, 28), g_act="relu")
    with pytest.raises(ValueError, match="act"):
        models.build("mlp", (2,), g_act="swish")


def test_a_callback_acts_between_the_players_steps():
    """on_player_step runs after each optimizer step: here it sees the discriminator updated and the
    generator not yet (k = 2: two discriminator updates, then the generator's)."""
    gan = small_gan()
    x = data.toy_samples("ring8", 64, seed=0)
    seen = []

    class Spy:
        def on_player_step(self, g, player):
            seen.append((player, g.d_optimizer.steps, g.g_optimizer.steps))

    gan.d_steps = 2
    gan.fit(x, epochs=1, batch_size=32, callbacks=[Spy()])
    assert seen == [("discriminator", 1, 0), ("discriminator", 2, 0), ("generator", 2, 1),
                    ("discriminator", 3, 1), ("discriminator", 4, 1), ("generator", 4, 2)]


def test_objectives_that_return_the_wrong_thing_are_named():
    x = data.toy_samples("ring8", 8, seed=0)
    with pytest.raises(TypeError, match="^objective: must return a dict"):
        small_gan(objective=lambda gan, real, labels, wants: 1.0).train_step(x)
    with pytest.raises(TypeError, match="^objective: must return the discriminator's loss"):
        small_gan(objective=lambda gan, real, labels, wants: {"generator": None}).train_step(x)
    with pytest.raises(TypeError, match="^objective: expected a callable"):
        small_gan(objective="wgan")


def test_generator_weight_average():
    gan = small_gan(seed=4, ema=0.9)
    w0 = gan.g_optimizer.flat.copy()
    np.testing.assert_array_equal(gan.ema, w0)
    x = data.toy_samples("ring8", 64, seed=0)
    expected = w0.astype(np.float64)
    for t in range(1, 31):
        gan.train_step(x)
        d = min(0.9, (1 + t) / (10 + t))  # the warm-up: the first updates are weighted more
        expected = d * expected + (1 - d) * gan.g_optimizer.flat.astype(np.float64)
    np.testing.assert_allclose(gan.ema, expected, rtol=1e-5, atol=1e-6)
    live = gan.g_optimizer.flat.copy()
    z = gan.noise(5, np.random.default_rng(1))
    with gan.averaged_weights():
        np.testing.assert_array_equal(gan.g_optimizer.flat, gan.ema)
        with pygan.no_grad():
            want = gan.generator(z).data.copy()
    np.testing.assert_array_equal(gan.g_optimizer.flat, live)  # training goes on from the live weights
    np.testing.assert_array_equal(gan.generate(z), want)  # sampling uses the average
    assert not np.array_equal(gan.generate(z), small_gan(seed=4).generate(z))
    with pytest.raises(ValueError, match="^ema:"):
        small_gan(ema=1.0)


def test_weight_average_is_checkpointed_and_used_by_load_generator(tmp_path):
    from pygan import cli, io

    args = ["train", "--epochs", "2", "--train-size", "1024", "--ema", "0.99", "--eval-every", "2"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    tensors, meta = io.load(tmp_path / "a" / cli.CHECKPOINT)
    assert meta["config"]["ema"] == 0.99 and any(k.startswith("generator.ema.") for k in tensors)
    run = cli._from_checkpoint(str(tmp_path / "a" / cli.CHECKPOINT), "cpu")
    np.testing.assert_array_equal(pygan.load_generator(tmp_path / "a" / cli.CHECKPOINT).sample(20, seed=2),
                                  run.samples(20, seed=2))
    # a run interrupted by Ctrl-C and resumed ends with the same average, bit for bit
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "pygan", *args, "--out", str(tmp_path / "b")], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith("epoch 1/2"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted: saved" in rest, rest
    assert cli.main(["train", "--resume", "--out", str(tmp_path / "b")]) == 0
    again, _ = io.load(tmp_path / "b" / cli.CHECKPOINT)
    for k in tensors:
        assert tensors[k].tobytes() == again[k].tobytes(), k
