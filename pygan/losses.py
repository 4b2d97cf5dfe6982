"""The GAN losses of the literature as functions on logits (tensors), on every backend at once.

Each returns a 0-d tensor on the tape. The cross-entropy pieces are fused ops computed in float64
with closed-form gradients (``(sigmoid(l) - t) / n``), returned in the logits' dtype; their double
backward is written with differentiable ops.

- discriminator: binary cross-entropy on real (target 1, or less for one-sided label smoothing,
  Salimans et al. 2016) and generated (target 0) batches;
- classification: softmax cross-entropy on class logits (pygan's own classifiers, ``pygan.classifier``);
- generator (``GENERATOR_LOSSES``): ``minimax`` (the zero-sum game of Goodfellow et al. 2014),
  ``non_saturating`` (the heuristic that paper trains with), ``maximum_likelihood`` (Goodfellow
  2016, eq. 8: its expected gradient is that of maximum likelihood when D is optimal).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .autograd import Function, Tensor, as_tensor
from .backend import _checks as C
from .backend import get_backend
from .nn import functional as F

GENERATOR_LOSSES: tuple[str, ...] = C.GENERATOR_LOSSES


def _check_logits(name: str, logits: Any) -> None:
    a = logits.data if isinstance(logits, Tensor) else logits
    xp = get_backend().xp
    C.check_array(name, a, dtypes=("float32", "float64"), xp=xp)
    if a.size == 0:
        raise ValueError(f"{name}: empty batch")
    if xp is np:  # a host check; on a GPU a NaN logit shows up in the step's statistics
        C.check_finite(name, a)  # a NaN/Inf logit means training diverged: say so, not a NaN loss


def _sigmoid64(xp: Any, l64: Any) -> Any:
    return xp.exp(-xp.logaddexp(0.0, -l64))


class _BCE(Function):
    """Mean of ``softplus(l) - l * t`` (finite for any finite logit); ``t`` is a constant."""

    name = "bce_with_logits"

    def forward(self, logits: Any, targets: Any) -> Any:
        xp = get_backend().xp
        l64, t64 = logits.astype(xp.float64), targets.astype(xp.float64)
        if self.recording:
            self.l64, self.t64, self.dtype = l64, t64, logits.dtype
        loss = xp.maximum(l64, 0) - l64 * t64 + xp.log1p(xp.exp(-xp.abs(l64)))
        return loss.mean().astype(logits.dtype)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        grad = (_sigmoid64(xp, self.l64) - self.t64) / self.l64.size
        return ((grad * g.astype(xp.float64)).astype(self.dtype) if needs[0] else None, None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        logits = self.input_tensor(0)
        return ((F.sigmoid(logits) - self.t64.astype(self.dtype)) * (g / logits.size) if needs[0] else None, None)


def bce_with_logits(logits: Any, targets: Any) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1] (constants)."""
    _check_logits("logits", logits)
    t = targets.data if isinstance(targets, Tensor) else targets
    xp = get_backend().xp
    C.check_array("targets", t, dtypes=("float32", "float64"), xp=xp)
    C.check_shape("targets", t, tuple(logits.shape))
    return _BCE.apply(logits, t)


class _CrossEntropy(Function):
    """Mean of ``logsumexp(l_i) - l_i[y_i]`` over the rows; the labels ``y`` are constants."""

    name = "cross_entropy"

    def forward(self, logits: Any, onehot: Any) -> Any:
        xp = get_backend().xp
        l64 = logits.astype(xp.float64)
        shifted = l64 - l64.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        if self.recording:
            self.p, self.onehot, self.dtype = xp.exp(log_p), onehot, logits.dtype
        return (-(log_p * onehot).sum() / len(l64)).astype(logits.dtype)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        grad = (self.p - self.onehot) * (g.astype(xp.float64) / len(self.p))
        return (grad.astype(self.dtype) if needs[0] else None, None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        logits = self.input_tensor(0)
        e = (logits - logits.data.max(axis=1, keepdims=True)).exp()
        p = e / e.sum(axis=1, keepdims=True)
        return ((p - self.onehot.astype(self.dtype)) * (g / len(self.p)) if needs[0] else None, None)


def cross_entropy(logits: Any, labels: Any) -> Tensor:
    """Mean softmax cross-entropy of ``(n, k)`` class ``logits`` against integer ``labels`` in [0, k),
    computed in float64 (the shifted log-sum-exp) and returned in the logits' dtype."""
    _check_logits("logits", logits)
    if len(logits.shape) != 2:
        raise ValueError(f"logits: expected (n, classes), got shape {tuple(logits.shape)}")
    xp = get_backend().xp
    y = labels.data if isinstance(labels, Tensor) else labels
    y = np.asarray(y.get() if hasattr(y, "get") else y)
    n, k = logits.shape
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise ValueError(f"labels: expected {n} integer class labels, got shape {y.shape} of {y.dtype}")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels: class labels must lie in [0, {k}), got {y.min()}..{y.max()}")
    onehot = np.zeros((n, k), np.float64)
    onehot[np.arange(n), y] = 1.0
    return _CrossEntropy.apply(logits, xp.asarray(onehot))


def discriminator_loss(real_logits: Any, fake_logits: Any, real_target: float = 1.0) -> Tensor:
    """``BCE(D(x), real_target) + BCE(D(G(z)), 0)``.

    ``real_target < 1`` is one-sided label smoothing (Salimans et al. 2016): only the real targets move.
    """
    _check_logits("real_logits", real_logits)
    _check_logits("fake_logits", fake_logits)
    real_target = C.check_prob("real_target", real_target, low_open=True, high_open=False)
    xp = get_backend().xp
    r, f = as_tensor(real_logits), as_tensor(fake_logits)  # checked above: straight to the op
    return _BCE.apply(r, xp.full_like(r.data, real_target)) + _BCE.apply(f, xp.zeros_like(f.data))


class _GeneratorLoss(Function):
    """The generator's cost on ``D(G(z)) = sigmoid(l)``, computed in float64."""

    name = "generator_loss"

    def forward(self, logits: Any, kind: str) -> Any:
        xp = get_backend().xp
        l64 = logits.astype(xp.float64)
        self.kind = kind
        if self.recording:
            self.l64, self.dtype = l64, logits.dtype
        if kind == "minimax":
            loss = -xp.logaddexp(0.0, l64)  # log(1 - sigmoid(l)) = -softplus(l)
        elif kind == "non_saturating":
            loss = xp.logaddexp(0.0, -l64)  # -log(sigmoid(l)) = softplus(-l)
        else:
            loss = -0.5 * xp.exp(l64)
        return loss.mean().astype(logits.dtype)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        l64, n = self.l64, self.l64.size
        if self.kind == "minimax":
            grad = -_sigmoid64(xp, l64) / n
        elif self.kind == "non_saturating":
            grad = (_sigmoid64(xp, l64) - 1.0) / n
        else:
            grad = -0.5 * xp.exp(l64) / n
        return ((grad * g.astype(xp.float64)).astype(self.dtype),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        logits = self.input_tensor(0)
        scale = g / logits.size
        if self.kind == "minimax":
            return (-F.sigmoid(logits) * scale,)
        if self.kind == "non_saturating":
            return ((F.sigmoid(logits) - 1) * scale,)
        return (logits.exp() * (-0.5) * scale,)


def generator_loss(fake_logits: Any, kind: str = "non_saturating") -> Tensor:
    """The generator's cost on ``D(G(z)) = sigmoid(fake_logits)``.

    - ``minimax``: ``mean(log(1 - D))`` (Goodfellow et al. 2014, the zero-sum game);
    - ``non_saturating``: ``mean(-log D)`` (the heuristic the 2014 paper trains with);
    - ``maximum_likelihood``: ``-mean(exp(logit)) / 2`` (Goodfellow 2016 tutorial, eq. 8), whose
      expected gradient matches that of maximum likelihood when D is optimal. It grows like
      ``exp(logit)`` by definition, so float32 gradients overflow past a logit of about 88.
    """
    _check_logits("fake_logits", fake_logits)
    if kind not in GENERATOR_LOSSES:
        raise ValueError(f"kind: unknown generator loss {kind!r}; expected one of {', '.join(GENERATOR_LOSSES)}")
    return _GeneratorLoss.apply(fake_logits, kind=kind)
