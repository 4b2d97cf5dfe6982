"""The seeds' architectures: LAPGAN, StyleGAN, SRGAN and CycleGAN (their pieces, and each end to end
from the command line on a tiny digit folder: train, resume bit for bit, eval, sample), the DCGAN at
other sizes, and the image-to-image metrics (PSNR, SSIM, bicubic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pygan
from pygan import io, metrics, models
from pygan.cli import main, read_log
from pygan.lapgan import LapGenerator, pyramid
from pygan.nn import functional as F
from pygan.stylegan import StyleGenerator
from pygan.translation import CycleDiscriminators

from helpers import assert_close, cli_error, tiny_mnist_folder


@pytest.fixture
def digits(tmp_path, monkeypatch):
    folder = tiny_mnist_folder(tmp_path / "data", 96)
    tiny_mnist_folder(folder / "fashion-mnist", 96, seed=1)
    monkeypatch.setenv("PYGAN_DATA", str(folder))
    return folder


def test_laplacian_pyramid_reconstructs_and_the_generator_chains_the_levels():
    pygan.set_backend("numpy")
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28))
    coarse, res = pyramid(x)
    assert [c.shape[2] for c in coarse] == [28, 14, 7]
    rebuilt = coarse[2]
    for k in (1, 0):
        rebuilt = F.upsample2x(rebuilt, "bilinear") + res[k]
    assert_close(rebuilt.numpy(), x, 1e-12, 1e-12)
    pygan.set_backend("cpu")
    g = LapGenerator(seed=0)
    z = np.random.default_rng(1).standard_normal((2, g.latent_dim)).astype(np.float32)
    zb, n14, n28 = g.split(z)
    image = g.base(zb)
    for level, noise in ((14, n14), (28, n28)):
        up = F.upsample2x(image, "bilinear")
        image = up + g.residual(level, up, noise)
    assert_close(g(z).numpy(), image.numpy(), 0, 0)


def test_stylegan_mixing_truncation_and_noise_inputs():
    pygan.set_backend("cpu")
    g = StyleGenerator(16, z_dim=8, w_dim=16, seed=0)
    rng = np.random.default_rng(2)
    za, zb = (rng.standard_normal((3, g.latent_dim)).astype(np.float32) for _ in range(2))
    g.eval()
    plain = g(za).numpy()
    assert plain.shape == (3, 1, 16, 16) and np.abs(plain).max() <= 1
    for cut in (0, 3, len(g.sides)):  # mixing a latent with itself changes nothing
        assert_close(g.mixed(za, za, cut).numpy(), plain, 1e-6, 1e-6)
    assert np.abs(g.mixed(za, zb, 3).numpy() - plain).max() > 1e-3
    # the noise planes are inputs: other noise, same z, a different image
    other = za.copy()
    other[:, 2 * g.z_dim:] = rng.standard_normal(other[:, 2 * g.z_dim:].shape)
    for layer in g.layers:
        layer.noise_scale.data[...] = 0.5
    assert np.abs(g(other).numpy() - g(za).numpy()).max() > 1e-4
    # psi = 0 maps every z to the mean style: with fixed noise, one image for all
    g.train()
    g(rng.standard_normal((16, g.latent_dim)).astype(np.float32))  # tracks w_avg
    assert np.abs(g.w_avg).sum() > 0
    g.eval()
    g.truncation = 0.0
    fixed = np.repeat(za[:1], 3, axis=0)
    fixed[:, : 2 * g.z_dim] = rng.standard_normal((3, 2 * g.z_dim))
    out = g(fixed).numpy()
    assert_close(out, np.repeat(out[:1], 3, axis=0), 1e-6, 1e-6)
    with pytest.raises(ValueError, match="latent"):
        g(np.zeros((2, 5), np.float32))


def test_cyclegan_pool_stores_then_swaps():
    pygan.set_backend("numpy")
    d = CycleDiscriminators(width=4, pool=3, seed=0)
    rng = np.random.default_rng(0)
    first = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    assert_close(d.from_pool(0, first, rng), first, 0, 0)  # filling: used as they are
    second = -first - 1
    out = d.from_pool(0, second, rng)
    assert_close(out[0], second[0], 0, 0)  # the third slot fills with it
    assert int(d.pool_count[0]) == 3 and int(d.pool_count[1]) == 0
    stored = {d.pool_a[i].tobytes() for i in range(3)}
    assert out[1].tobytes() in stored | {second[1].tobytes()}  # either used or swapped for a stored one
    assert {"pool_a", "pool_b", "pool_count"} <= set(d.state_dict())


def test_psnr_ssim_and_bicubic():
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 28, 28))
    assert metrics.psnr(x, np.clip(x + 0.1, None, None)) == pytest.approx(np.full(4, 20.0))
    assert (metrics.ssim(x, x) == 1).all()
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    s = metrics.ssim(x, y)
    assert_close(s, metrics.ssim(y, x), 1e-12, 0)
    assert (s < 1).all() and (s > metrics.ssim(x, np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1))).all()
    # the same statistic by brute force: each 11x11 window's weighted moments
    t = np.arange(11) - 5.0
    k = np.exp(-(t**2) / 4.5)
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    vals = []
    for i in range(18):
        for j in range(18):
            a, b = x[0, 0, i : i + 11, j : j + 11], y[0, 0, i : i + 11, j : j + 11]
            ma, mb = (k2 * a).sum(), (k2 * b).sum()
            va, vb, cab = (k2 * a * a).sum() - ma**2, (k2 * b * b).sum() - mb**2, (k2 * a * b).sum() - ma * mb
            vals.append((2 * ma * mb + 1e-4) * (2 * cab + 9e-4) / ((ma**2 + mb**2 + 1e-4) * (va + vb + 9e-4)))
    assert s[0] == pytest.approx(np.mean(vals), rel=1e-10)
    flat = np.full((2, 1, 7, 7), 0.3)
    assert_close(metrics.bicubic_upsample(flat, 4), 0.3, 1e-12, 1e-12)
    assert metrics.bicubic_upsample(flat, 4).shape == (2, 1, 28, 28)
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the oracle comparison needs it")
    small = rng.random((2, 1, 7, 7))
    w = metrics._cubic_weights(7, 4, a=-0.75)  # PyTorch's bicubic uses a = -0.75
    ours = np.einsum("ih,nchw,jw->ncij", w, small, w)
    theirs = torch.nn.functional.interpolate(torch.tensor(small), scale_factor=4, mode="bicubic", align_corners=False)
    assert_close(ours, theirs.numpy(), 1e-12, 1e-12)
    with pytest.raises(ValueError, match="images"):
        metrics.psnr(x, x[:2])


@pytest.mark.parametrize("model, extra", [("lapgan", []), ("stylegan", []), ("srgan", []), ("cyclegan", []),
                                          ("cyclegan", ["--task", "fashion", "--identity", "0.5"]),
                                          ("dcgan", ["--image-size", "16", "--loss", "hinge"])])
def test_each_architecture_trains_resumes_evaluates_and_samples(digits, tmp_path, capsys, model, extra):
    base = ["train", "--model", model, "--dataset", "mnist", *extra, "--batch-size", "16", "--train-size", "32",
            "--eval-samples", "40"]
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    text = capsys.readouterr().out
    assert "epoch 2/2" in text
    full, meta = io.load(tmp_path / "full" / "checkpoint.safetensors")
    assert meta["config"]["model"] == model
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "half")]) == 0
    assert main(["train", "--resume", "--epochs", "2", "--out", str(tmp_path / "half")]) == 0
    again, _ = io.load(tmp_path / "half" / "checkpoint.safetensors")
    for k in full:
        assert full[k].tobytes() == again[k].tobytes(), k
    log = read_log(tmp_path / "full")
    if model == "srgan":
        assert {"mse", "feature_mse", "val_psnr", "val_bicubic_psnr"} <= set(log[-1])
    if model == "cyclegan":
        assert "val_cycle_l1" in log[-1] and (("val_l1" in log[-1]) == ("fashion" not in extra))
    capsys.readouterr()
    js = tmp_path / "e.json"
    assert main(["eval", str(tmp_path / "full"), "--samples", "40", "--test-size", "20", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    result = json.loads(js.read_text())
    if model == "srgan":
        assert "bicubic" in text and "classifier accuracy" in text
        assert result["model"]["sr_psnr"] > 0 and 0 <= result["model"]["bicubic_accuracy"] <= 1
    elif model == "cyclegan":
        assert "cycle L1" in text and (("true map" in text) == ("fashion" not in extra))
    else:
        assert "FID" in text
    png = tmp_path / "s.png"
    assert main(["sample", str(tmp_path / "full"), "--n", "20", "--out", str(png)]) == 0
    assert png.stat().st_size > 100
    if model == "stylegan":
        assert main(["sample", str(tmp_path / "full"), "--style-mixing", "--truncation", "0.7", "--out", str(png)]) == 0
        assert "style-mixing" in capsys.readouterr().out
    if model in ("srgan", "cyclegan"):
        assert "draws no z" in cli_error(["sample", str(tmp_path / "full"), "--truncation", "0.5"], capsys)


def test_architecture_flag_errors(digits, capsys):
    for argv, words in ((["--model", "lapgan", "--loss", "wgan"], "2014 losses"),
                        (["--model", "srgan", "--loss", "hinge"], "its paper's own losses"),
                        (["--model", "dcgan", "--task", "invert"], "--task and --identity"),
                        (["--model", "stylegan", "--image-size", "28"], "power of two"),
                        (["--model", "mlp", "--image-size", "32"], "--image-size is for")):
        assert words in cli_error(["train", "--dataset", "mnist", *argv, "--out", "unused"], capsys), argv
    spec = models.build("srgan", (1, 28, 28))
    gan = pygan.GAN(spec.generator, spec.discriminator, pygan.Adam(spec.generator.parameters()),
                    pygan.Adam(spec.discriminator.parameters()), latent_dim=0)
    with pytest.raises(ValueError, match="latent_dim: this GAN's generator maps images"):
        gan.sample(2)  # an image-to-image generator has no prior to sample from
