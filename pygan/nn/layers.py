"""Layers on the op table: each holds its parameters as arrays of the active backend and calls
that backend's fused ops. Weight initialisation happens on the host with a seeded NumPy generator
so that every backend starts from the same numbers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import _checks as C
from ..backend import get_backend
from .module import Module, Parameter, accumulate, make_rng, to_backend

Seed = int | np.random.Generator | None


def _init_weight(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, init: str, std: float, dtype: Any
) -> np.ndarray:
    """``uniform``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); ``normal``: N(0, std) (DCGAN uses std 0.02)."""
    if init == "uniform":
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        w = rng.uniform(-bound, bound, size=shape)
    elif init == "normal":
        w = rng.normal(0.0, std, size=shape)
    else:
        raise ValueError(f"init: unknown initialisation {init!r}; expected 'uniform' or 'normal'")
    return w.astype(dtype)


class Dense(Module):
    """Fully connected layer with a fused activation: ``y = act(x @ w + b)``; w is ``(in, out)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        act: str = "identity",
        slope: float = 0.2,
        bias: bool = True,
        init: str = "uniform",
        std: float = 0.02,
        seed: Seed = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = C.check_int("in_features", in_features, 1)
        self.out_features = C.check_int("out_features", out_features, 1)
        self.act, self.slope = C.check_activation(act, slope)
        rng = make_rng(seed)
        w = _init_weight(rng, (in_features, out_features), in_features, init, std, dtype)
        self.w = Parameter(to_backend(w), "w")
        self.b = Parameter(to_backend(np.zeros(out_features, dtype=dtype)), "b") if bias else None
        self._x: Any = None
        self._y: Any = None

    def forward(self, x: Any) -> Any:
        B = get_backend()
        y = B.dense_forward(x, self.w.data, self.b.data if self.b else None, self.act, self.slope)
        self._x, self._y = x, y
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if self._y is None:
            raise RuntimeError("Dense.backward called before forward")
        B = get_backend()
        dx, dw, db = B.dense_backward(
            dy, self._x, self.w.data, self._y, self.act, self.slope, need_dx=need_dx, need_params=need_params
        )
        if need_params:
            accumulate(self.w, dw)
            if self.b is not None:
                accumulate(self.b, db)
        return dx

    def parameters(self) -> list[Parameter]:
        return [self.w] + ([self.b] if self.b is not None else [])

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, act={self.act!r}, bias={self.b is not None})"


class Activation(Module):
    """A standalone activation (use the ``act=`` argument of Dense/Conv to fuse it instead)."""

    def __init__(self, act: str, slope: float = 0.2) -> None:
        super().__init__()
        self.act, self.slope = C.check_activation(act, slope)
        self._y: Any = None

    def forward(self, x: Any) -> Any:
        self._y = get_backend().activation_forward(x, self.act, self.slope)
        return self._y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        return get_backend().activation_backward(dy, self._y, self.act, self.slope) if need_dx else None

    def __repr__(self) -> str:
        return f"Activation({self.act!r})"


class ReLU(Activation):
    """``max(x, 0)``."""

    def __init__(self) -> None:
        super().__init__("relu")


class LeakyReLU(Activation):
    """``x if x > 0 else slope * x``."""

    def __init__(self, slope: float = 0.2) -> None:
        super().__init__("leaky_relu", slope)


class Tanh(Activation):
    """``tanh(x)``."""

    def __init__(self) -> None:
        super().__init__("tanh")


class Sigmoid(Activation):
    """``1 / (1 + exp(-x))``."""

    def __init__(self) -> None:
        super().__init__("sigmoid")


class Dropout(Module):
    """Inverted dropout with drop probability ``p``; the identity in evaluation mode."""

    def __init__(self, p: float = 0.5, seed: Seed = None) -> None:
        super().__init__()
        self.p = C.check_prob("p", p, low_open=False, high_open=True)
        self._rng = make_rng(seed)
        self._mask: Any = None

    def forward(self, x: Any) -> Any:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        B = get_backend()
        seed = int(self._rng.integers(2**63 - 1))
        y, self._mask = B.dropout_forward(x, self.p, seed=seed)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        if not need_dx:
            return None
        return dy if self._mask is None else get_backend().dropout_backward(dy, self._mask)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Maxout(Module):
    """Maxout (Goodfellow et al. 2013) over groups of ``pieces`` adjacent features."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = C.check_int("pieces", pieces, 1)
        self._index: Any = None

    def forward(self, x: Any) -> Any:
        y, self._index = get_backend().maxout_forward(x, self.pieces)
        return y

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        return get_backend().maxout_backward(dy, self._index, self.pieces) if need_dx else None

    def __repr__(self) -> str:
        return f"Maxout(pieces={self.pieces})"
