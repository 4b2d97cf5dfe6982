"""Optimizers over one flat parameter buffer.

On construction an optimizer copies its parameters into one contiguous buffer (and their gradients
into another) and re-points every ``Parameter`` at views of them, so each step is a single fused
pass over all parameters: the backend's ``sgd_update``/``adam_update`` op (Cython on ``cpu``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from .backend import get_backend
from .nn.module import Parameter


class Optimizer:
    """Base class: owns the flat parameter and gradient buffers."""

    #: names of the per-parameter state buffers (flat, aligned with ``flat``) a checkpoint stores
    slots: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("params: the optimizer got no parameters")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}]: expected a pygan.nn.Parameter, got {type(p).__name__}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("params: the same parameter appears twice")
        dtype = self.params[0].data.dtype
        for i, p in enumerate(self.params):
            if p.data.dtype != dtype:
                raise TypeError(f"params[{i}]: dtype {p.data.dtype} differs from params[0]'s {dtype}")
        self.lr = _positive("lr", lr)
        xp = get_backend().xp
        total = sum(int(p.data.size) for p in self.params)
        self.flat = xp.empty(total, dtype=dtype)
        self.flat_grad = xp.zeros(total, dtype=dtype)
        offset = 0
        for p in self.params:
            n, shape = int(p.data.size), p.data.shape
            self.flat[offset : offset + n] = p.data.reshape(-1)
            self.flat_grad[offset : offset + n] = p.grad.reshape(-1)
            p.data = self.flat[offset : offset + n].reshape(shape)
            p.grad = self.flat_grad[offset : offset + n].reshape(shape)
            offset += n
        self.steps = 0
        #: Called on the flat gradient before each update (data-parallel training averages it over
        #: the ranks there: ``pygan.distributed``); None: the gradient is used as it is.
        self.reduce: Callable[[Any], None] | None = None

    def zero_grad(self) -> None:
        """Zero every gradient (lazily: the next backward pass overwrites instead of adding)."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Apply one update from the accumulated gradients (``steps`` counts it first)."""
        self.steps += 1
        grad = self._gradients()
        if self.reduce is not None:
            self.reduce(grad)
        self._update(grad)

    def _update(self, grad: Any) -> None:
        """The update rule over the flat buffers, given the flat gradient."""
        raise NotImplementedError

    def _gradients(self) -> Any:
        """The flat gradient buffer, with the slices of parameters that got no gradient since
        ``zero_grad`` (still only marked zero) filled with zeros."""
        for p in self.params:
            p.settle_grad()
        return self.flat_grad


def _positive(name: str, v: float) -> float:
    v = float(v)
    if not v > 0 or not np.isfinite(v):
        raise ValueError(f"{name}: must be a finite number > 0, got {v}")
    return v


def _fraction(name: str, v: float) -> float:
    v = float(v)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name}: must be in [0, 1), got {v}")
    return v


class SGD(Optimizer):
    """SGD with classical momentum: ``v = momentum * v - lr * g``, ``p += v``.

    ``lr`` and ``momentum`` may be changed between steps (the 2014 paper raises momentum 0.5 -> 0.7).
    """

    slots = ("velocity",)

    def __init__(self, params: Iterable[Parameter], lr: float = 0.1, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = _fraction("momentum", momentum)
        self.velocity = self.flat * 0

    def _update(self, grad: Any) -> None:
        get_backend().sgd_update(self.flat, grad, self.velocity, self.lr, self.momentum)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba 2015). Defaults are the DCGAN paper's: lr 2e-4, betas (0.5, 0.999)."""

    slots = ("m", "v")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        self.beta1 = _fraction("betas[0]", betas[0])
        self.beta2 = _fraction("betas[1]", betas[1])
        self.eps = _positive("eps", eps)
        self.m = self.flat * 0
        self.v = self.flat * 0

    def _update(self, grad: Any) -> None:
        get_backend().adam_update(
            self.flat, grad, self.m, self.v, self.lr, self.beta1, self.beta2, self.eps, self.steps
        )


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012) without momentum: ``sq = alpha * sq + (1 - alpha) g^2``,
    ``p -= lr * g / (sqrt(sq) + eps)``; the WGAN paper trains its critic and generator with it
    (lr 5e-5)."""

    slots = ("sq",)

    def __init__(self, params: Iterable[Parameter], lr: float = 5e-5, alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params, lr)
        self.alpha = _fraction("alpha", alpha)
        self.eps = _positive("eps", eps)
        self.sq = self.flat * 0

    def _update(self, grad: Any) -> None:
        get_backend().rmsprop_update(self.flat, grad, self.sq, self.lr, self.alpha, self.eps)


def clip_column_norms(params: Iterable[Parameter], limit: float) -> None:
    """Rescale each column of every 2-D weight ``(in, out)`` whose L2 norm exceeds ``limit``.

    This is pylearn2's ``max_col_norm`` constraint, which the 2014 paper's models apply after
    every update: each unit's incoming weight vector is kept inside a ball of radius ``limit``.
    """
    limit = _positive("limit", limit)
    xp = get_backend().xp
    for p in params:
        if p.data.ndim == 2:
            norms = xp.sqrt((p.data * p.data).sum(axis=0))
            scale = xp.minimum(1, limit / xp.maximum(norms, 1e-12)).astype(p.data.dtype)
            p.data *= scale


class Schedule:
    """Learning-rate and momentum schedules as pure functions of (epoch, step), so resumed runs match.

    - ``lr_final``: the rate decays exponentially from ``lr`` to ``lr_final`` over ``epochs``;
    - ``lr_decay``: the rate is divided by ``lr_decay`` after every step, never below ``min_lr``
      (the 2014 paper: 1.000004 per batch);
    - ``final_momentum``: momentum rises linearly to it over ``momentum_epochs`` (0.5 -> 0.7 over
      250 epochs in the paper).
    """

    def __init__(
        self,
        lr: float,
        epochs: int,
        lr_final: float | None = None,
        lr_decay: float | None = None,
        min_lr: float = 1e-6,
        momentum: float | None = None,
        final_momentum: float | None = None,
        momentum_epochs: int = 1,
    ) -> None:
        self.lr = _positive("lr", lr)
        self.epochs = max(int(epochs), 1)
        self.lr_final = None if lr_final is None else _positive("lr_final", lr_final)
        self.lr_decay = None if lr_decay is None else _positive("lr_decay", lr_decay)
        self.min_lr = min_lr
        self.momentum = momentum
        self.final_momentum = final_momentum
        self.momentum_epochs = max(int(momentum_epochs), 1)

    def apply(self, optimizer: Optimizer, epoch: int, step: int) -> None:
        """Set ``optimizer.lr`` (and ``momentum`` for SGD) for the step about to be taken."""
        lr = self.lr
        if self.lr_final is not None:
            lr = self.lr * (self.lr_final / self.lr) ** (min(epoch, self.epochs - 1) / max(self.epochs - 1, 1))
        if self.lr_decay is not None:
            lr = max(self.lr / self.lr_decay**step, self.min_lr)
        optimizer.lr = lr
        if isinstance(optimizer, SGD) and self.momentum is not None:
            m = self.momentum
            if self.final_momentum is not None:
                m += (self.final_momentum - self.momentum) * min(epoch / self.momentum_epochs, 1.0)
            optimizer.momentum = m
