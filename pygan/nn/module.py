"""Parameters, the layer protocol, and Sequential.

Backprop is layer by layer: ``forward`` caches what ``backward`` needs, and ``backward`` consumes
it. Parameter gradients accumulate into ``Parameter.grad`` (call ``zero_grad`` between steps), so
a discriminator can take its real and fake batches in two passes. Zeroing is lazy: ``zero_grad``
only marks the buffers, and the first gradient written after it replaces the buffer's contents
instead of being added to them (no pass over memory to fill zeros, and none to add to them).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..backend import get_backend


class Parameter:
    """A trainable array and its gradient buffer (both arrays of the active backend).

    ``grad`` always reads as the accumulated gradient: after ``zero_grad`` the buffer is only
    marked as zero, and is filled with zeros if it is read before a gradient is written to it.
    """

    __slots__ = ("data", "_grad", "_grad_is_zero", "name")

    def __init__(self, data: Any, name: str) -> None:
        self.data = data
        self._grad = data * 0
        self._grad_is_zero = False
        self.name = name

    @property
    def grad(self) -> Any:
        """The gradient buffer (zeros since the last ``zero_grad`` if nothing was added since)."""
        self.settle_grad()
        return self._grad

    def settle_grad(self) -> None:
        """Fill the buffer with zeros now if it is only marked zero."""
        if self._grad_is_zero:
            self._grad[...] = 0
            self._grad_is_zero = False

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = value
        self._grad_is_zero = False

    def zero_grad(self) -> None:
        """Mark the gradient as zero (the buffer is overwritten by the next gradient, not added to)."""
        self._grad_is_zero = True

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer: forward, backward, parameters, train/eval mode."""

    def __init__(self) -> None:
        self.training = True

    def forward(self, x: Any) -> Any:
        """Compute the output and cache what the backward pass needs."""
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        """Gradient w.r.t. the input (None if not ``need_dx``); adds parameter gradients if ``need_params``."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def parameters(self) -> list[Parameter]:
        """This layer's parameters, in a fixed order."""
        return []

    def buffers(self) -> dict[str, Any]:
        """Non-trainable state to checkpoint (running statistics), by name."""
        return {}

    def children(self) -> list["Module"]:
        """Sub-layers."""
        return []

    def modules(self) -> list["Module"]:
        """This module and every module below it, depth first."""
        out: list[Module] = [self]
        for child in self.children():
            out.extend(child.modules())
        return out

    def train(self, mode: bool = True) -> "Module":
        """Switch training mode (dropout on, batch statistics) on or off, recursively."""
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (lazily: see ``Parameter``)."""
        for p in self.parameters():
            p.zero_grad()

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.data.size for p in self.parameters()))


def grad_buffers(*params: Parameter | None) -> tuple[tuple[Any, ...], bool]:
    """The gradient buffers of ``params`` (None stays None) for a backward op to write into, and
    whether it must add to them. They are overwritten only if every one is marked zero; otherwise
    the marked ones are filled with zeros first and all are added to. The caller then writes them."""
    present = [p for p in params if p is not None]
    add = not all(p._grad_is_zero for p in present)
    for p in present:
        if add:
            p.settle_grad()
        p._grad_is_zero = False
    return tuple(None if p is None else p._grad for p in params), add


def accumulate(p: Parameter, g: Any) -> None:
    """Add a computed gradient into a parameter's gradient buffer (a copy if it is marked zero)."""
    (buf,), add = grad_buffers(p)
    if add:
        buf += g
    else:
        buf[...] = g


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{i}]: expected a pygan.nn.Module, got {type(layer).__name__}")
        self.layers = list(layers)

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: Any, need_dx: bool = True, need_params: bool = True) -> Any:
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, need_dx=need_dx or i > 0, need_params=need_params)
        return dy

    def children(self) -> list[Module]:
        return list(self.layers)

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def buffers(self) -> dict[str, Any]:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.buffers().items()}

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


def to_backend(a: np.ndarray) -> Any:
    """Move a host array to the active backend's array type."""
    return get_backend().xp.asarray(a)


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, an existing generator, or fresh entropy."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

