"""The trainer: players (module + optimizer) and an objective; Algorithm 1 of Goodfellow et al. 2014
(k discriminator steps per generator step, or simultaneous updates), fit, resume, Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from .autograd import Tensor, as_tensor, no_grad
from .backend import _checks as C
from .backend import get_backend, to_numpy
from .nn import functional as F
from .nn.layers import VirtualBatchNorm, refresh_spectral_norm
from .objectives import GAN2014
from .nn.module import Module
from .optim import Optimizer, Schedule, clip_column_norms

PRIORS: tuple[str, ...] = ("normal", "uniform")
UPDATES: tuple[str, ...] = ("alternating", "simultaneous")
INTERPOLATIONS: tuple[str, ...] = ("linear", "spherical")

#: Rows the generator runs at once when sampling (:meth:`Sampling.generate`).
GENERATE_CHUNK = 500


class Callback(Protocol):
    """What ``GAN.fit`` calls (every method optional): after each player's optimizer step (between
    the discriminator's and the generator's, say), after every train step and after every epoch."""

    def on_player_step(self, gan: "GAN", player: str) -> None:
        """Called right after player ``player``'s optimizer stepped."""

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


@dataclass
class Player:
    """A module, the optimizer over its parameters, how many updates it takes per iteration, and
    the name its loss is logged under."""

    module: Module
    optimizer: Optimizer
    steps: int = 1
    stat: str = ""


#: An objective: ``objective(gan, real, labels, wants) -> {name: value}``. It returns the loss (a 0-d
#: Tensor) of every player named in ``wants`` (a tuple of player names) under that name; any other
#: entry (a 0-d tensor or array) is logged as a statistic of the step.
Objective = Callable[["GAN", Any, Any, tuple], dict]


class Sampling:
    """Drawing from a generator: the prior, labels of a conditional model, virtual batch norm's
    reference batch, ``sample``, ``generate`` and ``interpolate``. Shared by :class:`GAN` and
    :class:`TrainedGenerator`; needs ``generator``, ``latent_dim``, ``prior``, ``num_classes``,
    ``dtype``, ``rng``, ``reference_z`` and ``reference_labels``."""

    generator: Module
    latent_dim: int
    prior: str
    num_classes: int
    dtype: Any
    rng: np.random.Generator
    reference_z: Any
    reference_labels: np.ndarray | None
    _vbn: list[VirtualBatchNorm]  # the generator's VBN layers, found once at construction

    # -- inputs ------------------------------------------------------------------------------
    def noise(self, n: int, rng: np.random.Generator | None = None) -> Any:
        """``n`` latent vectors from the prior, on the active backend.

        Both priors have unit variance: N(0, 1), or U(-sqrt 3, sqrt 3) as the 2014 paper's code draws it.
        """
        rng = self.rng if rng is None else rng
        if self.latent_dim == 0:
            raise ValueError("latent_dim: this GAN's generator maps images, not noise (latent_dim 0): call its "
                             "generator on inputs instead of sampling")
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

    def _generate(self, z: Any, labels: np.ndarray | None) -> Tensor:
        """The generator's forward on ``z`` (joined with one-hot labels), after refreshing VBN statistics."""
        xp = get_backend().xp
        vbn = self._vbn
        if vbn:
            ref = self.reference_z
            if self.reference_labels is not None:
                ref = xp.concatenate([ref, self._one_hot(self.reference_labels)], axis=1)
            for layer in vbn:
                layer.recording = True
            try:
                with no_grad():
                    self.generator(ref)
            finally:
                for layer in vbn:
                    layer.recording = False
        if labels is not None:
            z = xp.concatenate([z, self._one_hot(labels)], axis=1)
        return as_tensor(self.generator(z))

    # -- using the generator -----------------------------------------------------------------
    def sample(self, n: int, labels: Any = None, seed: int | None = None, truncation: float | None = None) -> Any:
        """``n`` generated samples, with the generator in evaluation mode.

        A conditional GAN takes ``labels`` (n integers); without them it cycles through the classes.
        ``seed`` draws z from its own generator and leaves the training RNG untouched.
        ``truncation`` psi in [0, 1] trades variety for typicality: each z is drawn towards the
        prior's mean, ``psi * z`` (StyleGAN's truncation taken in z, as these generators have no
        mapping network; 1 is the prior itself, 0 the mean's one sample).
        """
        n = C.check_int("n", n, 1)
        rng = None if seed is None else np.random.default_rng(seed)
        if self.num_classes and labels is None:
            labels = np.arange(n) % self.num_classes
        lab = self._labels(labels, n)
        z = self.noise(n, rng)
        if truncation is not None:
            z = z * z.dtype.type(C.check_real("truncation", truncation, 0.0, 1.0))
        return self.generate(z, lab)

    def generate(self, z: Any, labels: Any = None) -> Any:
        """Run the generator (evaluation mode) on given latent vectors ``(n, latent_dim)``, at
        most ``GENERATE_CHUNK`` rows at a time (in evaluation mode each output depends on its own
        row only, so a large draw, such as the metrics' 10,000 images, costs one chunk's memory)."""
        xp = get_backend().xp
        z = xp.asarray(z, dtype=self.dtype)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        n = int(z.shape[0])
        lab = self._labels(labels, n)
        self.generator.eval()
        try:
            with no_grad():
                parts = [self._generate(z[i:i + GENERATE_CHUNK], None if lab is None else lab[i:i + GENERATE_CHUNK]).data
                         for i in range(0, max(n, 1), GENERATE_CHUNK)]
                return parts[0] if len(parts) == 1 else xp.concatenate(parts)
        finally:
            self.generator.train()

    def interpolate(self, z0: Any, z1: Any, steps: int, method: str = "linear", labels: Any = None) -> Any:
        """Samples along a path from ``z0`` to ``z1`` (``steps`` points, both ends included).

        ``linear`` is the straight line; ``spherical`` is slerp (White 2016), which keeps points at
        the norm typical of a Gaussian prior.
        """
        return self.generate(latent_path(z0, z1, steps, method), labels)


class TrainedGenerator(Sampling):
    """A trained generator for inference (``pygan.load_generator``): ``sample`` gives host arrays in
    data units, ``generate``/``interpolate`` the generator's raw output on the active backend."""

    def __init__(self, generator: Module, latent_dim: int, prior: str, num_classes: int = 0,
                 reference_z: Any = None, unscale: Callable[[np.ndarray], np.ndarray] | None = None,
                 image_shape: tuple[int, ...] | None = None) -> None:
        self.generator = generator
        self.latent_dim = C.check_int("latent_dim", latent_dim, 1)
        self.prior = prior
        self.num_classes = C.check_int("num_classes", num_classes, 0)
        self.dtype = generator.parameters()[0].data.dtype
        self.rng = np.random.default_rng()
        self.reference_z = None if reference_z is None else get_backend().xp.asarray(reference_z)
        self._vbn = [m for m in generator.modules() if isinstance(m, VirtualBatchNorm)] if reference_z is not None else []
        self.reference_labels = (np.arange(len(reference_z)) % num_classes
                                 if reference_z is not None and num_classes else None)
        self._unscale = unscale
        self._image_shape = image_shape

    def sample(self, n: int, labels: Any = None, seed: int | None = None, truncation: float | None = None) -> np.ndarray:
        """``n`` samples as a host float64 array in data units (images in [0, 1], ``(n, C, H, W)``);
        the arguments are :meth:`Sampling.sample`'s."""
        out = to_numpy(super().sample(n, labels, seed, truncation)).astype(np.float64)
        if self._unscale is not None:
            out = self._unscale(out)
        return out.reshape(n, *self._image_shape) if self._image_shape else out


class GAN(Sampling):
    """Players (a generator and a discriminator, each a module and its optimizer) and an objective
    that returns each player's loss for a batch; the trainer runs the schedule (``d_steps``
    discriminator updates per generator update, or both at once), steps the optimizers, and owns
    fit / resume / Ctrl-C. Each player's loss is differentiated with respect to its own parameters
    only, so a generator step leaves the discriminator's gradients untouched.

    The discriminator outputs logits ``(N / pack, 1)``. The default objective is :class:`GAN2014`
    with ``loss`` and ``real_target``; pass ``objective`` for another (a Wasserstein critic with a
    gradient penalty is a few lines: see the README).

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
    - ``updates="simultaneous"`` is how the 2014 paper's code trains (k = 1): both players' losses
      come from one objective call (one generated batch, one discriminator forward), both
      gradients are taken at the same parameters, and both optimizers step together.
      ``"alternating"`` (the default) is Algorithm 1 as printed: the generator step draws a fresh
      batch and sees the discriminator already updated.
    - ``latent_dim = 0``: the generator maps images, not noise (SRGAN, CycleGAN: their objectives
      build its inputs from the real batch); ``sample`` and ``generate_fake`` then refuse.
    - ``ema = d`` keeps an exponential moving average of the generator's weights (decay ``d``,
      e.g. 0.999; Yazıcı et al. 2019), updated after every generator step; ``sample``,
      ``generate`` and ``interpolate`` use it, training uses the live weights. Batch-norm running
      statistics are the live network's.
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
        objective: Objective | None = None,
        ema: float | None = None,
    ) -> None:
        self.latent_dim = C.check_int("latent_dim", latent_dim, 0)
        d_steps = C.check_int("d_steps", d_steps, 1)
        if objective is not None and not callable(objective):
            raise TypeError(f"objective: expected a callable (gan, real, labels, wants) -> losses, got {type(objective).__name__}")
        self.objective: Objective = objective if objective is not None else GAN2014(loss, real_target)
        self.loss = loss
        self.real_target = real_target
        if prior not in PRIORS:
            raise ValueError(f"prior: unknown prior {prior!r}; expected one of {', '.join(PRIORS)}")
        self.prior = prior
        self.num_classes = C.check_int("num_classes", num_classes, 0)
        self.pack = C.check_int("pack", pack, 1)
        self.d_max_norm = d_max_norm
        if updates not in UPDATES:
            raise ValueError(f"updates: unknown update order {updates!r}; expected one of {', '.join(UPDATES)}")
        if updates == "simultaneous" and d_steps != 1:
            raise ValueError(f"updates: simultaneous updates take one discriminator step (d_steps=1), got d_steps={d_steps}")
        self.updates = updates
        #: the players in the order they update within an iteration
        self.players: dict[str, Player] = {
            "discriminator": Player(discriminator, d_optimizer, d_steps, "d_loss"),
            "generator": Player(generator, g_optimizer, 1, "g_loss"),
        }
        self.rng = np.random.default_rng(seed)
        self.dtype = g_optimizer.flat.dtype
        if ema is not None:
            ema = C.check_prob("ema", ema, low_open=True, high_open=True)
        #: decay of the exponential moving average of the generator's weights (None: off)
        self.ema_decay = ema
        #: that average, laid out as the generator optimizer's flat buffer; sampling uses it
        self.ema = None if ema is None else g_optimizer.flat.copy()
        self.steps = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.callbacks: list[Any] = []
        #: The data-parallel ranks this GAN is one replica of (``pygan.distributed.Group.attach``);
        #: None: it trains alone.
        self.group: Any = None
        self.reference_z = None
        self.reference_labels = None
        self._vbn = [m for m in generator.modules() if isinstance(m, VirtualBatchNorm)]
        if self._vbn:
            ref_rng = np.random.default_rng(None if seed is None else seed + 7919)
            n = C.check_int("reference_size", reference_size, 2)
            self.reference_z = self.noise(n, ref_rng)
            if self.num_classes:
                self.reference_labels = np.arange(n) % self.num_classes

    # -- the players ---------------------------------------------------------------------------
    @property
    def generator(self) -> Module:
        """The generator module."""
        return self.players["generator"].module

    @property
    def discriminator(self) -> Module:
        """The discriminator (critic) module."""
        return self.players["discriminator"].module

    @property
    def g_optimizer(self) -> Optimizer:
        """The generator's optimizer."""
        return self.players["generator"].optimizer

    @property
    def d_optimizer(self) -> Optimizer:
        """The discriminator's optimizer."""
        return self.players["discriminator"].optimizer

    @property
    def d_steps(self) -> int:
        """Discriminator updates per generator update (k; 0 runs the generator's updates alone)."""
        return self.players["discriminator"].steps

    @d_steps.setter
    def d_steps(self, k: int) -> None:
        self.players["discriminator"].steps = C.check_int("d_steps", k, 0)

    def generate_fake(self, n: int) -> tuple[Tensor, np.ndarray | None]:
        """A generated batch for an objective: ``n`` samples from fresh noise (with labels drawn
        uniformly for a conditional GAN), recorded unless inside ``pygan.no_grad()``; returns
        ``(samples, labels or None)``."""
        labels = self.draw_rows(n, lambda m: self.rng.integers(self.num_classes, size=m)) if self.num_classes else None
        return self._generate(self.draw_rows(n, self.noise), labels), labels

    def draw_rows(self, n: int, draw: Callable[[int], Any]) -> Any:
        """``draw(n)`` (``n`` rows of random values from the trainer's generator); in data-parallel
        training, this rank's ``n`` rows of ``draw(n * ranks)``, the draw a single process would
        make for the whole batch, so that every rank's generator stays in step."""
        if self.group is None:
            return draw(n)
        return draw(n * self.group.size)[self.group.rank * n : (self.group.rank + 1) * n]

    def discriminate(self, x: Any, labels: Any = None) -> Tensor:
        """The discriminator's logits on samples ``x`` (a tensor or array): labels joined for a
        conditional GAN, then ``pack`` samples grouped per input."""
        xp = get_backend().xp
        x = as_tensor(x)
        if labels is not None:
            hot = self._one_hot(labels)
            if x.ndim == 2:
                x = F.concat([x, hot], axis=1)
            else:
                planes = xp.ascontiguousarray(
                    xp.broadcast_to(hot[:, :, None, None], (x.shape[0], self.num_classes, *x.shape[2:])))
                x = F.concat([x, planes], axis=1)
        if self.pack > 1:
            x = x.reshape(x.shape[0] // self.pack, x.shape[1] * self.pack, *x.shape[2:])
        return as_tensor(self.discriminator(x))

    # -- training ----------------------------------------------------------------------------
    def train_step(self, real: Any, labels: Any = None) -> dict[str, float]:
        """One iteration: each player in turn takes its updates (``d_steps`` discriminator updates,
        then one generator update), or with ``updates="simultaneous"`` both update from one batch.

        ``real`` is a batch on the active backend (its size a multiple of ``pack``); ``labels`` its
        integer classes for a conditional GAN. Returns the statistics the objective reported (for
        the default one: the last discriminator loss, the generator loss, the means of D(x) and
        D(G(z)), and the discriminator's accuracy on the real and the generated batch).
        """
        xp = get_backend().xp
        n = int(real.shape[0])
        if n == 0 or n % self.pack:
            raise ValueError(f"real: batch size {n} must be a positive multiple of pack={self.pack}")
        real_labels = self._labels(labels, n)
        dev: dict[str, Any] = {}  # statistics stay on the device until one transfer at the end
        if self.updates == "simultaneous":
            self._play(tuple(self.players), real, real_labels, dev)
        else:
            for name, player in self.players.items():
                for _ in range(player.steps):
                    self._play((name,), real, real_labels, dev)
        values = to_numpy(xp.stack([xp.asarray(v.data if isinstance(v, Tensor) else v, dtype=xp.float64)
                                    for v in dev.values()]))
        stats = {k: float(v) for k, v in zip(dev, values)}
        self.steps += 1
        return stats

    def _play(self, wants: tuple, real: Any, labels: np.ndarray | None, dev: dict[str, Any]) -> None:
        """One objective call for the players ``wants``, their gradients, and their updates."""
        for name in wants:
            self.players[name].optimizer.zero_grad()
        out = self.objective(self, real, labels, wants)
        if not isinstance(out, dict):
            raise TypeError(f"objective: must return a dict of losses by player name, got {type(out).__name__}")
        for i, name in enumerate(wants):
            loss = out.get(name)
            if not isinstance(loss, Tensor) or loss.size != 1:
                raise TypeError(f"objective: must return the {name}'s loss as a one-element Tensor under {name!r}, "
                                f"got {type(loss).__name__}")
            if loss.requires_grad:
                loss.backward(retain_graph=i + 1 < len(wants), inputs=self.players[name].optimizer.params)
        for name in wants:
            player = self.players[name]
            player.optimizer.step()
            refresh_spectral_norm(player.module)
            if name == "generator" and self.ema is not None:
                self._update_ema()
            if name == "discriminator" and self.d_max_norm is not None:
                clip_column_norms(player.module.parameters(), self.d_max_norm)
            after = getattr(self.objective, "after_step", None)
            if after is not None:
                after(self, name)
            for cb in self.callbacks:
                if hasattr(cb, "on_player_step"):
                    cb.on_player_step(self, name)
        for key, value in out.items():
            dev[self.players[key].stat if key in self.players else key] = value

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
        momentum) before each step, or only the generator's when ``d_schedule`` is given. Ctrl-C or SIGTERM stops
        at the next step boundary (a second one stops at once) and returns with ``interrupted=True``.
        Integer data (e.g. uint8 images) is refused unless a ``transform`` scales it.
        """
        from .data import epoch_order

        epochs = C.check_int("epochs", epochs, 0)
        batch_size = C.check_int("batch_size", batch_size, 1)
        rank, ranks = (0, 1) if self.group is None else (self.group.rank, self.group.size)
        if batch_size % (self.pack * ranks):
            raise ValueError(f"batch_size: {batch_size} must be a multiple of pack={self.pack}"
                             + (f" times the {ranks} ranks" if ranks > 1 else ""))
        local = batch_size // ranks  # this rank's share of each batch
        if len(data) < batch_size:
            raise ValueError(f"data: {len(data)} examples are fewer than one batch of {batch_size}")
        kind = getattr(getattr(data, "dtype", None), "kind", "f")
        if kind in "iub" and transform is None:
            raise TypeError(
                f"data: {data.dtype} values would reach the discriminator unscaled; pass floats in the range the "
                "generator outputs ([-1, 1] for a tanh output, e.g. uint8 images as x / 127.5 - 1; [0, 1] for a "
                "sigmoid), or a transform that maps each batch there")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"labels: {len(labels)} labels for {len(data)} examples")
        callbacks = list(callbacks)
        self.callbacks = callbacks
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
                    start = self.batch_in_epoch * batch_size + rank * local
                    idx = order[start : start + local]
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
                    stopping = False
                    if self.group is not None:  # the batch's statistics, and one step all ranks stop at
                        stats, stopping = self.group.sync(stats, stop.requested)
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
                    if stopping if self.group is not None else stop.requested:
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
                if self.group.any(stop.requested) if self.group is not None else stop.requested:
                    result.interrupted = True
                    return result
        return result

    def _update_ema(self) -> None:
        """``ema += (1 - d) (w - ema)`` after a generator update, with the decay warmed up as
        ``d = min(decay, (1 + t) / (10 + t))``, t the generator's updates so far (this one
        included), so the average does not remember the random initialisation for thousands of
        steps."""
        assert self.ema is not None and self.ema_decay is not None
        t = self.g_optimizer.steps
        d = min(self.ema_decay, (1.0 + t) / (10.0 + t))
        w = self.g_optimizer.flat
        self.ema += (w - self.ema) * self.dtype.type(1.0 - d)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the generator holds its weight average (when ``ema`` is on)."""
        if self.ema is None:
            yield
            return
        flat = self.g_optimizer.flat
        live = flat.copy()
        flat[...] = self.ema
        try:
            yield
        finally:
            flat[...] = live

    def generate(self, z: Any, labels: Any = None) -> Any:
        """Run the generator (evaluation mode; its weight average when ``ema`` is on) on latent
        vectors ``(n, latent_dim)``."""
        with self.averaged_weights():
            return super().generate(z, labels)

    def _check_parameters(self, xp: Any, where: str) -> None:
        """Raise TrainingDiverged if either network's parameters hold NaN or Inf."""
        for name, player in self.players.items():
            if not bool(xp.isfinite(player.optimizer.flat).all()):
                raise TrainingDiverged(f"training diverged {where}: the {name}'s parameters hold NaN or Inf")

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
    """Turns the first Ctrl-C (SIGINT) or SIGTERM (what a job scheduler or ``kill`` sends) into a
    flag checked at step boundaries; a second one raises KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_StopFlag":
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave the signals alone
            self.__exit__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
