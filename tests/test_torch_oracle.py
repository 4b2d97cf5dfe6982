"""PyTorch (float64) as an independent oracle for composite graphs built through pygan's public
API: a module reused in one graph, residual blocks, a transposed-conv generator feeding a conv
critic, and gradient penalties (double backward). Runs on the numpy (float64) and cpu (float32)
backends; skipped where PyTorch is not installed (it is an optional comparison, not a dependency:
`pip install torch==2.13.0` where that CPU build is on hand)."""

from __future__ import annotations

import numpy as np
import pytest

import pygan
from pygan import losses, nn

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the oracle comparison needs it")
TF = torch.nn.functional
TOL = {"numpy": 1e-9, "cpu": 2e-4}


def t64(a):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=True)


def close(got, want, backend, what):
    np.testing.assert_allclose(np.asarray(got, np.float64), want.detach().numpy(), rtol=TOL[backend],
                               atol=TOL[backend], err_msg=what)


class Block(nn.Module):
    def __init__(self, width, seed, dtype):
        super().__init__()
        self.a = nn.Dense(width, width, act="tanh", seed=seed, dtype=dtype)
        self.b = nn.Dense(width, width, act="leaky_relu", seed=seed + 1, dtype=dtype)

    def forward(self, x):
        return x + self.b(self.a(x))


class Critic(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.inp = nn.Dense(3, 6, act="sigmoid", seed=0, dtype=dtype)
        self.blocks = nn.Sequential(Block(6, 1, dtype), Block(6, 3, dtype))
        self.head = nn.Dense(6, 1, seed=5, dtype=dtype)

    def forward(self, x):
        return self.head(self.blocks(self.inp(x)))


def torch_critic(params):
    def block(x, prefix):
        h = torch.tanh(x @ params[f"{prefix}.a.w"] + params[f"{prefix}.a.b"])
        return x + TF.leaky_relu(h @ params[f"{prefix}.b.w"] + params[f"{prefix}.b.b"], 0.2)

    def critic(x):
        h = torch.sigmoid(x @ params["inp.w"] + params["inp.b"])
        return block(block(h, "blocks.0"), "blocks.1") @ params["head.w"] + params["head.b"]

    return critic


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_reuse_residuals_and_gradient_penalty(backend):
    dtype = np.float64 if backend == "numpy" else np.float32
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((7, 3)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
    eps = rng.uniform(size=(7, 1)).astype(dtype)
    with pygan.use_backend(backend):
        critic = Critic(dtype)
        params = {name: t64(p.data) for name, p in critic.named_parameters()}
        # pygan: the critic is called three times in one graph, once inside a gradient penalty
        mix = pygan.tensor(eps * real + (1 - eps) * fake, requires_grad=True)
        (g,) = pygan.grad(critic(mix).sum(), [mix], create_graph=True)
        penalty = (((g * g).sum(axis=1) ** 0.5 - 1) ** 2).mean()
        fake_t = pygan.tensor(fake, requires_grad=True)
        loss = critic(fake_t).mean() - critic(real).mean() + 10 * penalty
        critic.zero_grad()
        loss.backward()
    tc = torch_critic(params)
    tmix, tfake = t64(eps * real + (1 - eps) * fake), t64(fake)
    (tg,) = torch.autograd.grad(tc(tmix).sum(), tmix, create_graph=True)
    tpen = ((tg.pow(2).sum(dim=1).sqrt() - 1) ** 2).mean()
    tloss = tc(tfake).mean() - tc(torch.tensor(real, dtype=torch.float64)).mean() + 10 * tpen
    tloss.backward()
    close(loss.numpy(), tloss, backend, "loss")
    close(g.numpy(), tg, backend, "input gradient")
    close(fake_t.grad, tfake.grad, backend, "gradient of the fake batch")
    for name, p in critic.named_parameters():
        close(p.grad, params[name].grad, backend, name)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_dcgan_shaped_graph_with_r1_penalty(backend):
    """A transposed-conv generator into a conv critic (BCE losses of the 2014 family), plus an R1
    penalty (the squared gradient norm on real data) on the critic: second derivatives of conv2d."""
    dtype = np.float64 if backend == "numpy" else np.float32
    rng = np.random.default_rng(1)
    z, real = rng.standard_normal((3, 5)).astype(dtype), rng.uniform(-1, 1, (3, 1, 8, 8)).astype(dtype)
    with pygan.use_backend(backend):
        gen = nn.Sequential(nn.Dense(5, 4 * 4 * 4, act="relu", seed=0, dtype=dtype), nn.Reshape(4, 4, 4),
                            nn.ConvTranspose2d(4, 1, 4, 2, 1, act="tanh", seed=1, dtype=dtype))
        crit = nn.Sequential(nn.Conv2d(1, 3, 4, 2, 1, act="leaky_relu", seed=2, dtype=dtype),
                             nn.Conv2d(3, 4, 3, 1, 1, act="tanh", seed=3, dtype=dtype), nn.Flatten(),
                             nn.Dense(4 * 4 * 4, 1, seed=4, dtype=dtype))
        gp = {n: t64(p.data) for n, p in gen.named_parameters()}
        cp = {n: t64(p.data) for n, p in crit.named_parameters()}
        x = pygan.tensor(real, requires_grad=True)
        real_logits = crit(x)
        (g,) = pygan.grad(real_logits.sum(), [x], create_graph=True)
        r1 = (g * g).sum() * 0.5
        d_loss = losses.discriminator_loss(real_logits, crit(gen(z)), 0.9) + r1
        g_loss = losses.generator_loss(crit(gen(z)), "non_saturating")
        for m in (gen, crit):
            m.zero_grad()
        d_loss.backward(inputs=crit.parameters())
        g_loss.backward(inputs=gen.parameters())

    def tgen(z):
        h = torch.relu(z @ gp["0.w"] + gp["0.b"]).reshape(-1, 4, 4, 4)
        return torch.tanh(TF.conv_transpose2d(h, gp["2.w"], gp["2.b"], stride=2, padding=1))

    def tcrit(x):
        h = TF.leaky_relu(TF.conv2d(x, cp["0.w"], cp["0.b"], stride=2, padding=1), 0.2)
        h = torch.tanh(TF.conv2d(h, cp["1.w"], cp["1.b"], stride=1, padding=1))
        return h.reshape(h.shape[0], -1) @ cp["3.w"] + cp["3.b"]

    tz, tx = torch.tensor(z, dtype=torch.float64), t64(real)
    tl = tcrit(tx)
    (tg,) = torch.autograd.grad(tl.sum(), tx, create_graph=True)
    bce = TF.binary_cross_entropy_with_logits
    fake_logits = tcrit(tgen(tz).detach())
    t_d = bce(tl, torch.full_like(tl, 0.9)) + bce(fake_logits, torch.zeros_like(fake_logits)) + tg.pow(2).sum() * 0.5
    t_d.backward(inputs=list(cp.values()))
    gen_logits = tcrit(tgen(tz))
    bce(gen_logits, torch.ones_like(gen_logits)).backward(inputs=list(gp.values()))
    close(d_loss.numpy(), t_d, backend, "discriminator loss")
    for mod, ref in ((crit, cp), (gen, gp)):
        for name, p in mod.named_parameters():
            close(p.grad, ref[name].grad, backend, name)
