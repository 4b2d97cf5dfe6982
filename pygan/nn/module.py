"""Modules: forward-only building blocks whose parameters, buffers and children register on
assignment and are named by dotted paths.

A module is ``__init__`` (assign its Parameters, child modules and buffers) plus ``forward``
(tensor ops); the tape differentiates it, so a module may be called any number of times in one
graph. Parameter gradients accumulate in ``Parameter.grad`` (lazily zeroed: see ``Parameter``).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..autograd import Parameter, Tensor
from ..backend import get_backend

__all__ = ["Module", "Parameter", "Sequential", "make_rng", "to_backend"]


class Module:
    """Base class of every layer and model: registration, naming, state dicts, train/eval mode."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Any) -> None:
        """Keep ``value`` (an array: running statistics, a reference batch's sums) in the state dict
        under ``name``; it is not trained."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The module's computation, written with tensor ops."""
        raise NotImplementedError(f"{type(self).__name__}: a module defines forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- the tree ---------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Direct sub-modules with their attribute names."""
        return iter(self._modules.items())

    def children(self) -> list["Module"]:
        """Direct sub-modules."""
        return list(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module (named ``prefix``) and every module below it, depth first, each once."""
        seen: set[int] = set()

        def walk(m: Module, name: str) -> Iterator[tuple[str, Module]]:
            if id(m) in seen:
                return
            seen.add(id(m))
            yield name, m
            for child_name, child in m._modules.items():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

        return walk(self, prefix)

    def modules(self) -> list["Module"]:
        """This module and every module below it, depth first."""
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter below this module by dotted name, each once (shared weights included once)."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        """Every parameter below this module, in registration order, each once."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every buffer below this module by dotted name."""
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameters' arrays and buffers by dotted name (the arrays themselves, not copies)."""
        state = {name: p.data for name, p in self.named_parameters()}
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers by name. ``strict``: every name
        must be present and nothing else; shapes always must match. Raises ``KeyError`` naming
        the missing and unexpected keys, ``ValueError`` naming a mismatched shape."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"state: missing keys {missing}, unexpected keys {unexpected}")
        xp = get_backend().xp
        for name, target in own.items():
            if name not in state:
                continue
            src = state[name]
            src = src.data if isinstance(src, Tensor) else src
            if tuple(src.shape) != tuple(target.shape):
                raise ValueError(f"state[{name!r}]: shape {tuple(src.shape)} does not fit the module's {tuple(target.shape)}")
            target[...] = xp.asarray(src, dtype=target.dtype)

    # -- modes and gradients ------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Switch training mode (dropout on, batch statistics) on or off, recursively."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
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

    def extra_repr(self) -> str:
        """What ``repr`` shows inside the parentheses."""
        return ""

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({name}) " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items())
        head = f"{type(self).__name__}({self.extra_repr()}"
        return f"{head}\n{inner}\n)" if inner else f"{head})"


class Sequential(Module):
    """Modules applied in order; named ``0``, ``1``, ... in the state dict."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{i}]: expected a pygan.nn.Module, got {type(layer).__name__}")
            setattr(self, str(i), layer)
        object.__setattr__(self, "layers", list(layers))

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]


def to_backend(a: np.ndarray) -> Any:
    """Move a host array to the active backend's array type."""
    return get_backend().xp.asarray(a)


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, an existing generator, or fresh entropy."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
