"""The GAN family's objectives and regularisers: each loss's value and gradient, the gradient and
R1 penalties on a critic whose input gradient is known, weight clipping, spectral norm, RMSprop,
and every ``--loss`` from the command line (a short run, and a resume that ends bit for bit
where the uninterrupted run does)."""

from __future__ import annotations

import numpy as np
import pytest

import pygan
from pygan import io, models, objectives
from pygan.cli import main
from pygan.gan import GAN
from pygan.nn import Conv2d, ConvTranspose2d, Dense, Sequential, functional as F, refresh_spectral_norm, spectral_norm
from pygan.optim import Adam, RMSprop

from helpers import assert_close, cli_error, loss_and_grads, numerical_grad, tiny_mnist_folder

LOSSES = {
    # name: (objective, d_loss(r, f), g_loss(f)) in NumPy on the outputs
    "wgan": (objectives.Wasserstein(), lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    "hinge": (objectives.Hinge(), lambda r, f: np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(),
              lambda f: -f.mean()),
    "lsgan": (objectives.LeastSquares(), lambda r, f: ((r - 1) ** 2).mean() / 2 + (f**2).mean() / 2,
              lambda f: ((f - 1) ** 2).mean() / 2),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_values_and_gradients(name):
    obj, d_ref, g_ref = LOSSES[name]
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((9, 1)) * 2, rng.standard_normal((9, 1)) * 2
    value, dr, df = loss_and_grads(lambda r, f: obj.d_loss(r, f), real, fake)
    assert value == pytest.approx(d_ref(real, fake), rel=1e-12)
    assert_close(dr, numerical_grad(lambda: d_ref(real, fake), real), 1e-7, 1e-7)
    assert_close(df, numerical_grad(lambda: d_ref(real, fake), fake), 1e-7, 1e-7)
    value, dg = loss_and_grads(lambda f: obj.g_loss(f), fake)
    assert value == pytest.approx(g_ref(fake), rel=1e-12)
    assert_close(dg, numerical_grad(lambda: g_ref(fake), fake), 1e-7, 1e-7)


def linear_gan(objective, a, seed=0, **kw):
    """A GAN whose critic is ``D(x) = x @ a`` (its input gradient is a everywhere), in float64."""
    pygan.set_backend("numpy")
    g = models.mlp_generator(2, [4], 2, seed=seed, dtype=np.float64)
    d = Dense(2, 1, bias=False, dtype=np.float64)
    d.w.data[...] = np.asarray(a, np.float64).reshape(2, 1)
    return GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=2, objective=objective, seed=seed, **kw)


@pytest.mark.parametrize("a", [(0.3, -0.4), (1.2, 2.0)])
def test_gradient_penalty_on_a_linear_critic(a):
    gan = linear_gan(objectives.WGANGP(weight=10.0), a)
    real = np.random.default_rng(1).standard_normal((16, 2))
    out = gan.objective(gan, real, None, ("discriminator",))
    norm = float(np.hypot(*a))
    assert float(out["gp"].item()) == pytest.approx(10 * (norm - 1) ** 2, rel=1e-9)
    # d gp / d a = 2 * 10 * (|a| - 1) * a / |a|: the penalty's gradient reaches the critic's weights
    (dw,) = pygan.grad(out["gp"], [gan.discriminator.w])
    assert_close(dw.numpy().ravel(), 20 * (norm - 1) * np.asarray(a) / norm, 1e-9, 1e-9)


def test_r1_penalty_on_a_linear_critic_adds_to_any_loss():
    a = np.array([0.5, -1.5])
    for obj in (objectives.GAN2014(r1=4.0), objectives.Hinge(r1=4.0), objectives.LeastSquares(r1=4.0)):
        gan = linear_gan(obj, a)
        real = np.random.default_rng(2).standard_normal((8, 2))
        out = gan.objective(gan, real, None, ("discriminator",))
        assert float(out["r1"].item()) == pytest.approx(4.0 / 2 * (a @ a), rel=1e-12)
        (dw,) = pygan.grad(out["r1"], [gan.discriminator.w])
        assert_close(dw.numpy().ravel(), 4.0 * a, 1e-12, 1e-12)  # d/da gamma/2 |a|^2 = gamma a
        assert "r1" in obj.describe() or obj.r1 == 4.0


def test_wgan_clips_the_critic_after_each_of_its_steps():
    pygan.set_backend("cpu")
    g = models.mlp_generator(4, [16], 2, seed=0)
    d = models.mlp_discriminator(2, [16], seed=1)
    gan = GAN(g, d, RMSprop(g.parameters(), lr=1e-2), RMSprop(d.parameters(), lr=1e-2), latent_dim=4,
              objective=objectives.Wasserstein(clip=0.01), d_steps=5, seed=0)
    g0 = g.parameters()[0].data.copy()
    stats = gan.train_step(pygan.data.toy_samples("ring8", 64, seed=0))
    assert np.abs(gan.d_optimizer.flat).max() <= 0.01 + 1e-9
    assert np.abs(gan.d_optimizer.flat).max() == pytest.approx(0.01)  # lr 1e-2 pushes weights to the boundary
    assert np.abs(g.parameters()[0].data - g0).max() > 0 and np.abs(gan.g_optimizer.flat).max() > 0.01
    assert {"d_loss", "g_loss", "critic_gap"} <= set(stats)


def test_make_objective_and_its_errors():
    assert isinstance(objectives.make_objective("non_saturating", 0.9), objectives.GAN2014)
    assert isinstance(objectives.make_objective("wgan-gp"), objectives.WGANGP)
    assert objectives.make_objective("wgan", clip=0.05).clip == 0.05
    with pytest.raises(ValueError, match="loss: unknown loss"):
        objectives.make_objective("wasserstein")
    with pytest.raises(ValueError, match="real_target"):
        objectives.make_objective("hinge", 0.9)
    with pytest.raises(ValueError, match="r1"):
        objectives.Hinge(r1=-1)
    with pytest.raises(ValueError, match="clip"):
        objectives.Wasserstein(clip=float("nan"))


# ---------------------------------------------------------------------------------------------
# spectral norm
# ---------------------------------------------------------------------------------------------
def _matrix(layer):
    w = np.asarray(layer.w.data, np.float64)
    return np.moveaxis(w, layer.out_axis, 0).reshape(w.shape[layer.out_axis], -1)


def test_spectral_norm_divides_by_the_largest_singular_value():
    pygan.set_backend("numpy")
    net = Sequential(Dense(7, 5, seed=0, dtype=np.float64), Conv2d(3, 4, 3, seed=1, dtype=np.float64),
                     ConvTranspose2d(4, 6, 4, 2, 1, seed=2, dtype=np.float64))
    spectral_norm(net, seed=0)
    for layer in net:  # 15 warm-up iterations: sigma within a few per mille
        sigma = np.linalg.svd(_matrix(layer), compute_uv=False)[0]
        assert_close(layer.weight().numpy() * sigma, layer.w.data, 1e-2, 0)
    for _ in range(500):  # power iterations converge to the largest singular value
        refresh_spectral_norm(net)
    for layer in net:
        sigma = np.linalg.svd(_matrix(layer), compute_uv=False)[0]
        w_sn = layer.weight().numpy()
        assert w_sn.shape == layer.w.shape
        assert_close(w_sn * sigma, layer.w.data, 1e-6, 1e-12)
        assert np.linalg.svd(np.moveaxis(w_sn, layer.out_axis, 0).reshape(w_sn.shape[layer.out_axis], -1),
                             compute_uv=False)[0] == pytest.approx(1.0, rel=1e-6)
        assert "sn_u" in dict(layer.named_buffers())
    assert {"0.sn_u", "1.sn_u", "2.sn_u"} <= set(net.state_dict())
    # a changed weight: each refresh (one power iteration) brings sigma closer
    layer = net[0]
    layer.w.data[...] *= np.linspace(0.5, 2, 5)
    true = np.linalg.svd(_matrix(layer), compute_uv=False)[0]
    errors = []
    for _ in range(4):
        errors.append(abs(float((layer.w.data / layer.weight().numpy()).mean()) - true))
        refresh_spectral_norm(net)
    assert errors[-1] < errors[0]


def test_spectral_norm_gradient_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the oracle comparison needs it")
    pygan.set_backend("numpy")
    layer = Conv2d(2, 3, 3, seed=0, dtype=np.float64)
    spectral_norm(layer, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    y = layer(x)
    r = np.random.default_rng(1).standard_normal(y.shape)
    (gw,) = pygan.grad((y * r).sum() ** 2, [layer.w])
    # PyTorch: sigma = u^T W v with u and v constants (its spectral_norm's own forward)
    w = torch.tensor(np.asarray(layer.w.data), requires_grad=True)
    u = torch.tensor(np.asarray(layer.sn_u))
    mat = w.reshape(3, -1)
    v = mat.detach().T @ u
    v = v / v.norm()
    ty = torch.nn.functional.conv2d(torch.tensor(x), w / (u @ mat @ v))
    (tw,) = torch.autograd.grad((ty * torch.tensor(r)).sum() ** 2, w)
    assert_close(y.numpy(), ty.detach().numpy(), 1e-9, 1e-9)
    assert_close(gw.numpy(), tw.numpy(), 1e-9, 1e-9)


def test_gan_refreshes_spectral_norm_once_per_discriminator_step():
    pygan.set_backend("cpu")
    g = models.mlp_generator(4, [16], 2, seed=0)
    d = spectral_norm(models.mlp_discriminator(2, [16], seed=1), seed=2)
    gan = GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=4, objective=objectives.Hinge(), seed=0)
    calls = []
    original = F.power_iteration

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    F.power_iteration = counting
    try:
        gan.d_steps = 3
        gan.train_step(pygan.data.toy_samples("ring8", 64, seed=0))
    finally:
        F.power_iteration = original
    assert len(calls) == 3 * 2  # two spectrally normalised layers, three discriminator steps


# ---------------------------------------------------------------------------------------------
# RMSprop
# ---------------------------------------------------------------------------------------------
def test_rmsprop_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the oracle comparison needs it")
    pygan.set_backend("numpy")
    from pygan.nn import Parameter

    rng = np.random.default_rng(3)
    p = Parameter(rng.standard_normal(11))
    opt = RMSprop([p], lr=1e-2)
    tp = torch.tensor(np.asarray(p.data).copy(), requires_grad=True)
    topt = torch.optim.RMSprop([tp], lr=1e-2, alpha=0.99, eps=1e-8)
    for _ in range(5):
        g = rng.standard_normal(11)
        p.grad[...] = g  # into the optimizer's flat gradient buffer
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
    assert_close(p.data, tp.detach().numpy(), 1e-12, 1e-12)


# ---------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss, extra", [("wgan", []), ("wgan-gp", []), ("hinge", []), ("lsgan", ["--r1", "1"]),
                                         ("non_saturating", ["--spectral-norm", "--r1", "0.5"])])
def test_each_loss_trains_and_resumes_bit_for_bit(tmp_path, capsys, loss, extra):
    base = ["train", "--loss", loss, *extra, "--train-size", "1024", "--batch-size", "64", "--seed", "1"]
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    text = capsys.readouterr().out
    assert "epoch 2/2" in text
    final, meta = io.load(tmp_path / "full" / "checkpoint.safetensors")
    assert meta["config"]["loss"] == loss
    assert ("discriminator.0.sn_u" in final) == (loss == "hinge" or "--spectral-norm" in extra)
    if loss == "wgan":  # RMSprop's state is checkpointed; 5 critic steps per generator step
        assert any(k.startswith("discriminator.optimizer.sq.") for k in final)
        assert meta["optimizers"]["discriminator"]["steps"] == 5 * meta["optimizers"]["generator"]["steps"]
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "half")]) == 0
    assert main(["train", "--resume", "--epochs", "2", "--out", str(tmp_path / "half")]) == 0
    again, _ = io.load(tmp_path / "half" / "checkpoint.safetensors")
    assert set(final) == set(again)
    for k in final:
        assert final[k].tobytes() == again[k].tobytes(), k


def test_wgan_gp_on_the_dcgan_uses_a_layer_norm_critic(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYGAN_DATA", str(tiny_mnist_folder(tmp_path / "data", 48)))
    out = tmp_path / "gp"
    assert main(["train", "--model", "dcgan", "--dataset", "mnist", "--loss", "wgan-gp", "--epochs", "1",
                 "--batch-size", "8", "--eval-samples", "50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gp " in text
    tensors, meta = io.load(out / "checkpoint.safetensors")
    assert meta["config"]["d_steps"] == 5
    assert "discriminator.2.gamma" in tensors and "discriminator.2.running_mean" not in tensors  # layer norm


def test_loss_flag_errors(capsys):
    for argv, words in ((["--clip", "0.1"], "--clip is wgan's"), (["--loss", "hinge", "--gp-weight", "5"], "--gp-weight"),
                        (["--loss", "lsgan", "--label-smoothing", "0.9"], "--label-smoothing"),
                        (["--r1", "-1"], "argument --r1: must be"), (["--loss", "wgan", "--d-steps", "0"], "argument --d-steps: must be")):
        assert words in cli_error(["train", *argv, "--out", "unused"], capsys), argv
