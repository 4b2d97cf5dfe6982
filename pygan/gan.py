"""The GAN: generator, discriminator, loss, optimizers, and Algorithm 1 of Goodfellow et al. 2014."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from . import losses
from .backend import _checks as C
from .backend import get_backend, to_numpy
from .nn.layers import VirtualBatchNorm
from .nn.module import Module
from .optim import Optimizer, Schedule, clip_column_norms

PRIORS: tuple[str, ...] = ("normal", "uniform")
UPDATES: tuple[str, ...] = ("alternating", "simultaneous")
INTERPOLATIONS: tuple[str, ...] = ("linear", "spherical")


class Callback(Protocol):
    """What ``GAN.fit`` calls: after every step and after every epoch (both optional)."""

    def on_step(self, gan: "GAN", stats: dict[str, float]) -> None:
        """Called after each ``train_step`` with its statistics."""

    def on_epoch_end(self, gan: "GAN", summary: dict[str, float]) -> None:
        """Called after each epoch with the means of its steps' statistics."""


class TrainingDiverged(RuntimeError):
    """A loss or a parameter became NaN or Inf; training stopped before saving anything from it."""


@dataclass
class FitResult:
    """What ``GAN.fit`` returns: per-epoch means of the step statistics and whether Ctrl-C stopped it."""

    history: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False


class GAN:
    """A generator/discriminator pair trained with k discriminator steps per generator step.

    The discriminator outputs logits ``(N / pack, 1)``. The generator step back-propagates through
    the discriminator's backward (asking it for the input gradient only), so the discriminator's
    parameters and gradients stay untouched.

    - ``num_classes > 0`` makes it a conditional GAN (Mirza & Osindero 2014): a one-hot label is
      joined to z, and to the discriminator's input (as extra features for flat data, as extra
      constant channels for images).
    - ``pack = m`` is PacGAN (Lin et al. 2018): the discriminator judges m samples at once, joined
      along the feature (or channel) axis, so its input is m times wider.
    - ``real_target < 1`` is one-sided label smoothing (Salimans et al. 2016).
    - A generator holding ``VirtualBatchNorm`` layers gets a reference batch of z fixed here, and
      the reference statistics are refreshed before every generator forward.
    - ``d_max_norm`` caps each discriminator unit's weight-vector norm after every update
      (pylearn2's ``max_col_norm``).
    - ``updates="simultaneous"`` is how the 2014 paper's code trains (k = 1): one generated batch
      and one discriminator forward serve both players, the discriminator's gradient and the
      generator's are taken at the same parameters, and both optimizers step together.
      ``"alternating"`` (the default) is Algorithm 1 as printed: the generator step draws a fresh
      batch and sees the discriminator already updated.
    """

    def __init__(
        self,
        generator: Module,
        discriminator: Module,
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        latent_dim: int,
        loss: str = "non_saturating",
        d_steps: int = 1,
        prior: str = "normal",
        real_target: float = 1.0,
        num_classes: int = 0,
        pack: int = 1,
        reference_size: int = 64,
        d_max_norm: float | None = None,
        updates: str = "alternating",
        seed: int | None = None,
    ) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.latent_dim = C.check_int("latent_dim", latent_dim, 1)
        if loss not in C.GENERATOR_LOSSES:
            raise ValueError(f"loss: unknown generator loss {loss!r}; expected one of {', '.join(C.GENERATOR_LOSSES)}")
        self.loss = loss
        self.d_steps = C.check_int("d_steps", d_steps, 1)
        if prior not in PRIORS:
            raise ValueError(f"prior: unknown prior {prior!r}; expected one of {', '.join(PRIORS)}")
        self.prior = prior
        self.real_target = C.check_prob("real_target", real_target, low_open=True, high_open=False)
        self.num_classes = C.check_int("num_classes", num_classes, 0)
        self.pack = C.check_int("pack", pack, 1)
        self.d_max_norm = d_max_norm
        if updates not in UPDATES:
            raise ValueError(f"updates: unknown update order {updates!r}; expected one of {', '.join(UPDATES)}")
        if updates == "simultaneous" and self.d_steps != 1:
            raise ValueError(f"updates: simultaneous updates take one discriminator step (d_steps=1), got d_steps={d_steps}")
        self.updates = updates
        self.rng = np.random.default_rng(seed)
        self.dtype = g_optimizer.flat.dtype
        self.steps = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self._vbn = [m for m in generator.modules() if isinstance(m, VirtualBatchNorm)]
        self.reference_z: Any = None
        self.reference_labels: np.ndarray | None = None
        if self._vbn:
            ref_rng = np.random.default_rng(None if seed is None else seed + 7919)
            n = C.check_int("reference_size", reference_size, 2)
            self.reference_z = self.noise(n, ref_rng)
            if self.num_classes:
                self.reference_labels = np.arange(n) % self.num_classes

    # -- inputs ------------------------------------------------------------------------------
    def noise(self, n: int, rng: np.random.Generator | None = None) -> Any:
        """``n`` latent vectors from the prior, on the active backend.

        Both priors have unit variance: N(0, 1), or U(-sqrt 3, sqrt 3) as the 2014 paper's code draws it.
        """
        rng = self.rng if rng is None else rng
        if self.prior == "normal":
            z = rng.standard_normal((n, self.latent_dim))
        else:
            z = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), (n, self.latent_dim))
        return get_backend().xp.asarray(z.astype(self.dtype))

    def _labels(self, labels: Any, n: int, name: str = "labels") -> np.ndarray | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError(f"{name}: this GAN is not conditional (num_classes=0), so it takes no labels")
            return None
        if labels is None:
            raise ValueError(f"{name}: a conditional GAN (num_classes={self.num_classes}) needs labels")
        lab = np.asarray(labels)
        if lab.shape != (n,) or lab.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected {n} integer labels, got shape {lab.shape} dtype {lab.dtype}")
        if n and (lab.min() < 0 or lab.max() >= self.num_classes):
            raise ValueError(f"{name}: labels must lie in [0, {self.num_classes}), got [{lab.min()}, {lab.max()}]")
        return lab.astype(np.int64)

    def _one_hot(self, labels: np.ndarray) -> Any:
        eye = np.eye(self.num_classes, dtype=self.dtype)
        return get_backend().xp.asarray(eye[labels])

    def _generate(self, z: Any, labels: np.ndarray | None) -> Any:
        """The generator's forward on ``z`` (joined with one-hot labels), after refreshing VBN statistics."""
        xp = get_backend().xp
        if self._vbn:
            ref = self.reference_z
            if self.reference_labels is not None:
                ref = xp.concatenate([ref, self._one_hot(self.reference_labels)], axis=1)
            for layer in self._vbn:
                layer.recording = True
            try:
                self.generator.forward(ref)
            finally:
                for layer in self._vbn:
                    layer.recording = False
        if labels is not None:
            z = xp.concatenate([z, self._one_hot(labels)], axis=1)
        return self.generator.forward(z)

    def _d_input(self, x: Any, labels: np.ndarray | None) -> Any:
        """Join labels to the samples, then group ``pack`` samples per discriminator input."""
        xp = get_backend().xp
        if labels is not None:
            hot = self._one_hot(labels)
            if x.ndim == 2:
                x = xp.concatenate([x, hot], axis=1)
            else:
                planes = xp.broadcast_to(hot[:, :, None, None], (x.shape[0], self.num_classes, *x.shape[2:]))
                x = xp.concatenate([x, planes], axis=1)
        if self.pack > 1:
            x = xp.ascontiguousarray(x).reshape((x.shape[0] // self.pack, x.shape[1] * self.pack, *x.shape[2:]))
        return x

    def _d_input_grad(self, dx: Any, shape: tuple[int, ...]) -> Any:
        """Undo ``_d_input`` on a gradient: unpack, then drop the label features."""
        n = shape[0]
        dx = dx.reshape((n, -1, *dx.shape[2:])) if self.pack > 1 else dx
        return get_backend().xp.ascontiguousarray(dx[:, : shape[1]])

    # -- training ----------------------------------------------------------------------------
    def train_step(self, real: Any, labels: Any = None) -> dict[str, float]:
        """One iteration of Algorithm 1: ``d_steps`` discriminator updates, then one generator update
        (or, with ``updates="simultaneous"``, one update of both from the same batch).

        ``real`` is a batch on the active backend (its size a multiple of ``pack``); ``labels`` its
        integer classes for a conditional GAN. Generated batches of a conditional GAN use labels
        drawn uniformly. Returns the last discriminator loss, the generator loss, the means of D(x)
        and D(G(z)), and the discriminator's accuracy on the real and the generated batch.
        """
        xp = get_backend().xp
        n = int(real.shape[0])
        if n == 0 or n % self.pack:
            raise ValueError(f"real: batch size {n} must be a positive multiple of pack={self.pack}")
        real_labels = self._labels(labels, n)
        G, D = self.generator, self.discriminator
        dev: dict[str, Any] = {}  # statistics stay on the device until one transfer at the end
        for _ in range(self.d_steps):
            fake_labels = self._random_labels(n)
            fake = self._generate(self.noise(n), fake_labels)
            self.d_optimizer.zero_grad()
            real_logits = D.forward(self._d_input(real, real_labels))
            loss_r, d_real = losses.bce(real_logits, xp.full_like(real_logits, self.real_target))
            D.backward(d_real, need_dx=False)
            fake_logits = D.forward(self._d_input(fake, fake_labels))
            loss_f, d_fake = losses.bce(fake_logits, xp.zeros_like(fake_logits))
            D.backward(d_fake, need_dx=False)
            dev["d_loss"] = loss_r + loss_f
            dev["d_x"] = _sigmoid_mean(xp, real_logits)
            dev["d_acc_real"] = (real_logits > 0).mean()
            dev["d_acc_fake"] = (fake_logits < 0).mean()
            if self.updates == "alternating":  # simultaneous: D steps after G's gradient is taken
                self._d_update(D)
        if self.updates == "simultaneous":
            logits = fake_logits  # same samples, same dropout masks, discriminator not yet updated
        else:
            fake_labels = self._random_labels(n)
            fake = self._generate(self.noise(n), fake_labels)
            logits = D.forward(self._d_input(fake, fake_labels))
        g_loss, d_logits = losses.generator_loss(logits, self.loss)
        d_joined = D.backward(d_logits, need_dx=True, need_params=False)
        self.g_optimizer.zero_grad()
        G.backward(self._d_input_grad(d_joined, tuple(fake.shape)), need_dx=False)
        if self.updates == "simultaneous":
            self._d_update(D)
        self.g_optimizer.step()
        dev["g_loss"] = g_loss
        dev["d_g_z"] = _sigmoid_mean(xp, logits)
        values = to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64) for v in dev.values()]))
        stats = {k: float(v) for k, v in zip(dev, values)}
        self.steps += 1
        return stats

    def _d_update(self, D: Module) -> None:
        self.d_optimizer.step()
        if self.d_max_norm is not None:
            clip_column_norms(D.parameters(), self.d_max_norm)

    def _random_labels(self, n: int) -> np.ndarray | None:
        return self.rng.integers(self.num_classes, size=n) if self.num_classes else None

    def fit(
        self,
        data: np.ndarray,
        epochs: int,
        batch_size: int,
        labels: np.ndarray | None = None,
        callbacks: Iterable[Callback] = (),
        seed: int = 0,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        schedule: Schedule | None = None,
        d_schedule: Schedule | None = None,
    ) -> FitResult:
        """Train until ``epochs`` epochs are complete, continuing from ``self.epoch``/``batch_in_epoch``.

        Each epoch visits ``data`` (host array, first axis = examples) in the shuffled order fixed
        by ``seed`` and the epoch number, dropping the last partial batch, so a run resumed from a
        checkpoint sees the batches the uninterrupted run would have. ``transform`` maps each host
        batch before it moves to the backend; ``schedule`` sets both optimizers' learning rate (and
        momentum) before each step, or only the generator's when ``d_schedule`` is given. Ctrl-C stops at the next step boundary (a second
        Ctrl-C stops at once) and returns with ``interrupted=True``.
        """
        from .data import epoch_order

        epochs = C.check_int("epochs", epochs, 0)
        batch_size = C.check_int("batch_size", batch_size, 1)
        if batch_size % self.pack:
            raise ValueError(f"batch_size: {batch_size} must be a multiple of pack={self.pack}")
        if len(data) < batch_size:
            raise ValueError(f"data: {len(data)} examples are fewer than one batch of {batch_size}")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"labels: {len(labels)} labels for {len(data)} examples")
        callbacks = list(callbacks)
        xp = get_backend().xp
        on_host = xp is np
        if not on_host:  # one upload of the whole (transformed) set; batches are gathered on the device
            data = xp.asarray(np.ascontiguousarray(transform(data) if transform else data, dtype=self.dtype))
            transform = None
        d_schedule = d_schedule or schedule
        result = FitResult()
        stop = _StopFlag()
        with stop:
            while self.epoch < epochs:
                order = epoch_order(len(data), seed, self.epoch)
                batches = len(data) // batch_size
                sums: dict[str, float] = {}
                while self.batch_in_epoch < batches:
                    idx = order[self.batch_in_epoch * batch_size : (self.batch_in_epoch + 1) * batch_size]
                    batch = data[idx] if on_host else data[xp.asarray(idx)]
                    if transform is not None:
                        batch = transform(batch)
                    if schedule is not None:
                        schedule.apply(self.g_optimizer, self.epoch, self.steps)
                    if d_schedule is not None:
                        d_schedule.apply(self.d_optimizer, self.epoch, self.steps)
                    try:
                        stats = self.train_step(
                            np.ascontiguousarray(batch, dtype=self.dtype) if on_host else batch,
                            None if labels is None else labels[idx],
                        )
                    except ValueError as e:  # an op refusing NaN/Inf weights or logits: that is divergence
                        where = f"at epoch {self.epoch + 1}, step {self.steps + 1}"
                        self._check_parameters(xp, where)
                        if "contains NaN or Inf" in str(e):
                            raise TrainingDiverged(f"training diverged {where}: {e}") from e
                        raise
                    bad = [k for k, v in stats.items() if not np.isfinite(v)]
                    if bad:
                        raise TrainingDiverged(
                            f"training diverged at epoch {self.epoch + 1}, step {self.steps}: "
                            f"{', '.join(bad)} became NaN or Inf"
                        )
                    self.batch_in_epoch += 1
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                    for cb in callbacks:
                        if hasattr(cb, "on_step"):
                            cb.on_step(self, stats)
                    if stop.requested:
                        result.interrupted = True
                        return result
                summary = {k: v / batches for k, v in sums.items()}
                self._check_parameters(xp, f"in epoch {self.epoch + 1}")
                self.epoch += 1
                self.batch_in_epoch = 0
                result.history.append(summary)
                for cb in callbacks:
                    if hasattr(cb, "on_epoch_end"):
                        cb.on_epoch_end(self, summary)
                if stop.requested:
                    result.interrupted = True
                    return result
        return result

    def _check_parameters(self, xp: Any, where: str) -> None:
        """Raise TrainingDiverged if either network's parameters hold NaN or Inf."""
        for name, opt in (("generator", self.g_optimizer), ("discriminator", self.d_optimizer)):
            if not bool(xp.isfinite(opt.flat).all()):
                raise TrainingDiverged(f"training diverged {where}: the {name}'s parameters hold NaN or Inf")

    # -- using the generator -----------------------------------------------------------------
    def sample(self, n: int, labels: Any = None, seed: int | None = None) -> Any:
        """``n`` generated samples, with the generator in evaluation mode.

        A conditional GAN takes ``labels`` (n integers); without them it cycles through the classes.
        ``seed`` draws z from its own generator and leaves the training RNG untouched.
        """
        n = C.check_int("n", n, 1)
        rng = None if seed is None else np.random.default_rng(seed)
        if self.num_classes and labels is None:
            labels = np.arange(n) % self.num_classes
        lab = self._labels(labels, n)
        return self.generate(self.noise(n, rng), lab)

    def generate(self, z: Any, labels: Any = None) -> Any:
        """Run the generator (evaluation mode) on given latent vectors ``(n, latent_dim)``."""
        z = get_backend().xp.asarray(z, dtype=self.dtype)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        lab = self._labels(labels, int(z.shape[0]))
        self.generator.eval()
        try:
            return self._generate(z, lab)
        finally:
            self.generator.train()

    def interpolate(self, z0: Any, z1: Any, steps: int, method: str = "linear", labels: Any = None) -> Any:
        """Samples along a path from ``z0`` to ``z1`` (``steps`` points, both ends included).

        ``linear`` is the straight line; ``spherical`` is slerp (White 2016), which keeps points at
        the norm typical of a Gaussian prior.
        """
        return self.generate(latent_path(z0, z1, steps, method), labels)


def latent_path(z0: Any, z1: Any, steps: int, method: str = "linear") -> np.ndarray:
    """``steps`` latent points from ``z0`` to ``z1`` (1-D vectors), linear or spherical (slerp)."""
    a = np.asarray(z0, dtype=np.float64)
    b = np.asarray(z1, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"z1: expected a vector of z0's shape {a.shape}, got {b.shape}")
    steps = C.check_int("steps", steps, 2)
    if method not in INTERPOLATIONS:
        raise ValueError(f"method: unknown interpolation {method!r}; expected one of {', '.join(INTERPOLATIONS)}")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "linear":
        return (1 - t) * a + t * b
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("z0: spherical interpolation needs non-zero endpoints")
    omega = np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))
    if omega < 1e-7:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


class _StopFlag:
    """Turns the first Ctrl-C (SIGINT) into a flag checked at step boundaries; the second one raises."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_StopFlag":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave SIGINT alone
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _sigmoid_mean(xp: Any, logits: Any) -> Any:
    """Mean of sigmoid(logits), computed stably in float64 on the backend (no host transfer)."""
    return xp.exp(-xp.logaddexp(0.0, -logits.astype(xp.float64))).mean()
