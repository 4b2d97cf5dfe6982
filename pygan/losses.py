"""The GAN losses of the literature, on the active backend (gradients are w.r.t. the logits).

- discriminator: binary cross-entropy on real (target 1, or less for one-sided label smoothing,
  Salimans et al. 2016) and generated (target 0) batches;
- generator (``GENERATOR_LOSSES``): ``minimax`` (the zero-sum game of Goodfellow et al. 2014),
  ``non_saturating`` (the heuristic that paper trains with), ``maximum_likelihood`` (Goodfellow
  2016, eq. 8: its expected gradient is that of maximum likelihood when D is optimal).
"""

from __future__ import annotations

from typing import Any

from .backend import _checks as C
from .backend import get_backend

GENERATOR_LOSSES: tuple[str, ...] = C.GENERATOR_LOSSES


def bce(logits: Any, targets: Any) -> tuple[float, Any]:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against ``targets``; returns ``(loss, dlogits)``."""
    return get_backend().bce_with_logits(logits, targets)


def discriminator_loss(real_logits: Any, fake_logits: Any, real_target: float = 1.0) -> tuple[float, Any, Any]:
    """``BCE(D(x), real_target) + BCE(D(G(z)), 0)``; returns ``(loss, d_real_logits, d_fake_logits)``."""
    return get_backend().discriminator_loss(real_logits, fake_logits, real_target)


def generator_loss(fake_logits: Any, kind: str = "non_saturating") -> tuple[float, Any]:
    """The generator's cost ``kind`` on ``D(G(z)) = sigmoid(fake_logits)``; returns ``(loss, dlogits)``."""
    return get_backend().generator_loss(fake_logits, kind)
