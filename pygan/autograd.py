"""Tensors and the tape: reverse-mode differentiation over the op table.

A :class:`Tensor` wraps an array of the active backend. Every differentiable op is a
:class:`Function`: ``forward`` runs on arrays and saves what its backward needs, ``backward`` maps
the gradient of its output to those of its inputs (calling the op table's fused ``*_backward``
ops), and ``backward_graph`` does the same with differentiable ops on Tensors, which is what a
double backward (``create_graph=True``) replays. A call records a node (the Function instance
itself: its inputs, a weak reference to its output, what it saved) only when some input
requires a gradient and recording is on (``no_grad`` turns it off).

``Tensor.backward`` and :func:`grad` walk the nodes from the outputs in reverse topological order,
summing the gradients of tensors used more than once. Parameter gradients land in the
parameter's buffer (a view of its optimizer's flat gradient buffer): ops with weights receive the
buffer and write or add into it themselves (``param_grads``/``accumulate``), honouring the lazy
zeroing, so the tape adds no copy or add pass.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .backend import get_backend, to_numpy

_recording = [True]


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run a block without recording (sampling, evaluation): its results need no gradient."""
    previous = _recording[0]
    _recording[0] = False
    try:
        yield
    finally:
        _recording[0] = previous


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Record again inside a ``no_grad`` block."""
    previous = _recording[0]
    _recording[0] = True
    try:
        yield
    finally:
        _recording[0] = previous


def is_grad_enabled() -> bool:
    """Whether op calls on tensors that require gradients are recorded."""
    return _recording[0]


class Tensor:
    """An array of the active backend, with the node that made it (when recorded) and its gradient.

    ``requires_grad`` leaves collect gradients in ``.grad`` on ``backward()``; results of recorded
    ops require a gradient whenever one of their inputs does.
    """

    __slots__ = ("data", "_grad", "requires_grad", "_node", "__weakref__")
    __array_priority__ = 1000  # ndarray <op> Tensor defers to the Tensor's reflected operator

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            raise TypeError("data: already a Tensor; use .detach() or .data")
        self.data = data
        self._grad: Any = None
        self.requires_grad = bool(requires_grad)
        self._node: Function | None = None

    # -- views of the array ---------------------------------------------------------------------
    @property
    def grad(self) -> Any:
        """The accumulated gradient (an array), or None before any backward reached this tensor."""
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = value

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        """The array's dtype."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The array's rank."""
        return int(self.data.ndim)

    @property
    def size(self) -> int:
        """The array's number of elements."""
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        """True unless a recorded op made this tensor."""
        return self._node is None

    def numpy(self) -> np.ndarray:
        """The values as a host NumPy array (a device copy on ``cupy``)."""
        return to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        if self.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item, this one has shape {self.shape}")
        return float(to_numpy(self.data).reshape(-1)[0])

    def detach(self) -> "Tensor":
        """The same array as a new tensor outside the graph."""
        return Tensor(self.data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = to_numpy(self.data)
        return a if dtype is None else a.astype(dtype)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{extra})"

    # -- differentiation -------------------------------------------------------------------------
    def backward(self, gradient: Any = None, retain_graph: bool = False,
                 inputs: Iterable["Tensor"] | None = None) -> None:
        """Add the gradient of this tensor to ``.grad`` of every leaf that requires one (only of
        ``inputs`` when given). ``gradient`` defaults to ones for a one-element tensor. The graph is
        freed afterwards unless ``retain_graph``."""
        targets = None if inputs is None else _as_targets("inputs", inputs)
        _walk([self], [gradient], targets, to_leaves=True, create_graph=False, retain_graph=retain_graph)

    # -- operators ------------------------------------------------------------------------------
    def __add__(self, other: Any) -> "Tensor":
        return Add.apply(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return Add.apply(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return Sub.apply(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return Sub.apply(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return Mul.apply(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return Mul.apply(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return Div.apply(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return Div.apply(other, self)

    def __neg__(self) -> "Tensor":
        return Neg.apply(self)

    def __pow__(self, exponent: Any) -> "Tensor":
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise TypeError("exponent: ** takes a scalar exponent")
        return Pow.apply(self, exponent=float(exponent))

    def __matmul__(self, other: Any) -> "Tensor":
        return MatMul.apply(self, other)

    def __getitem__(self, index: Any) -> "Tensor":
        return Index.apply(self, index=index)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        """Sum over ``axis`` (all axes by default)."""
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        """Mean over ``axis`` (all axes by default)."""
        s = self.sum(axis, keepdims)
        return s * (s.size / self.size) if self.size else s

    def reshape(self, *shape: Any) -> "Tensor":
        """The same values in another shape (``-1`` infers one size)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=tuple(int(s) for s in shape))

    @property
    def T(self) -> "Tensor":
        """The transpose of a 2-D tensor (a contiguous copy)."""
        return Transpose.apply(self)

    def exp(self) -> "Tensor":
        """``e ** x``."""
        return Exp.apply(self)

    def log(self) -> "Tensor":
        """Natural logarithm."""
        return Log.apply(self)

    def sqrt(self) -> "Tensor":
        """Square root."""
        return self**0.5

    def abs(self) -> "Tensor":
        """Absolute value (its gradient at 0 is 0)."""
        return Abs.apply(self)


class Parameter(Tensor):
    """A trainable tensor with a gradient buffer of its own (a view of its optimizer's flat buffer).

    ``grad`` always reads as the accumulated gradient: after ``zero_grad`` the buffer is only
    marked as zero, and is filled with zeros if it is read before a gradient is written to it;
    the first gradient written after ``zero_grad`` overwrites it, later ones add to it.
    """

    __slots__ = ("_grad_is_zero",)

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad)
        self._grad = data * 0
        self._grad_is_zero = False

    @property
    def grad(self) -> Any:
        """The gradient buffer (zeros since the last ``zero_grad`` if nothing was added since)."""
        self.settle_grad()
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        self._grad = value
        self._grad_is_zero = False

    def settle_grad(self) -> None:
        """Fill the buffer with zeros now if it is only marked zero."""
        if self._grad_is_zero:
            self._grad[...] = 0
            self._grad_is_zero = False

    def zero_grad(self) -> None:
        """Mark the gradient as zero (the buffer is overwritten by the next gradient, not added to)."""
        self._grad_is_zero = True

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def grad_buffers(*params: Parameter | None) -> tuple[tuple[Any, ...], bool]:
    """The gradient buffers of ``params`` (None stays None) for a backward op to write into, and
    whether it must add to them. They are overwritten only if every one is marked zero; otherwise
    the marked ones are filled with zeros first and all are added to. The caller then writes them."""
    add = False
    for p in params:
        if p is not None and not p._grad_is_zero:
            add = True
            break
    buffers = []
    for p in params:
        if p is None:
            buffers.append(None)
            continue
        if add and p._grad_is_zero:
            p._grad[...] = 0
        p._grad_is_zero = False
        buffers.append(p._grad)
    return tuple(buffers), add


def accumulate(p: Parameter, g: Any) -> None:
    """Add a computed gradient into a parameter's gradient buffer (a copy if it is marked zero)."""
    (buf,), add = grad_buffers(p)
    if add:
        buf += g
    else:
        buf[...] = g


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A tensor on the active backend from an array or nested sequence (a host array is copied to
    the device on ``cupy``); ``dtype`` defaults to the array's (float64 for Python floats)."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_backend().xp
    return Tensor(xp.asarray(data, dtype=dtype), requires_grad=requires_grad)


def as_tensor(x: Any) -> Tensor:
    """``x`` itself if it is a Tensor, else a constant tensor viewing it."""
    return x if isinstance(x, Tensor) else Tensor(x)


# ---------------------------------------------------------------------------------------------
# Functions (nodes)
# ---------------------------------------------------------------------------------------------
class Function:
    """One differentiable op. A subclass defines ``forward`` (arrays in, one array out; it may save
    what the backward needs on ``self``), ``backward`` (the output's gradient -> one gradient per
    input, None where ``needs`` says none is wanted) and, if the op supports double backward,
    ``backward_graph`` (the same on Tensors, built from differentiable ops).

    ``backward`` also receives ``sinks``: for each input, the Parameter whose gradient buffer the
    op may write into directly (then it returns :data:`WRITTEN` for that input), or None.
    """

    #: the op's name in error messages
    name = "op"

    #: whether ``backward`` can write parameter gradients into their buffers (``sinks``)
    takes_sinks = False

    inputs: tuple[Any, ...]
    parents: list[tuple[int, Tensor]]  # (position, tensor) of the inputs that require a gradient
    out: Callable[[], Tensor | None]
    recording: bool

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run the op on ``inputs`` (Tensors, arrays, None or Python scalars) and record a node when
        recording is on and some input requires a gradient."""
        fn = cls()
        parents = [(i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad] \
            if _recording[0] else None
        fn.recording = bool(parents)
        out = Tensor(fn.forward(*[t.data if isinstance(t, Tensor) else t for t in inputs], **params))
        if parents:
            fn.inputs = inputs
            fn.parents = parents
            fn.out = weakref.ref(out)
            out.requires_grad = True
            out._node = fn
        return out

    def forward(self, *args: Any, **params: Any) -> Any:
        """The op on arrays; saves on ``self`` what ``backward`` needs (when ``self.recording``)."""
        raise NotImplementedError

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: tuple[Parameter | None, ...]) -> tuple[Any, ...]:
        """One gradient (array, None, or ``WRITTEN``) per input from the output's gradient ``g``."""
        raise NotImplementedError

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
        """``backward`` with differentiable ops on Tensors (double backward); the default refuses."""
        raise RuntimeError(f"{self.name}: double backward (create_graph=True) is not supported by this op")

    # helpers for backward_graph
    def input_tensor(self, i: int) -> Tensor:
        """Input ``i`` as a Tensor (a constant one if it was passed as an array or scalar)."""
        return as_tensor(self.inputs[i])

    def output_tensor(self) -> Tensor:
        """The op's output tensor (alive while any consumer or the caller holds it)."""
        out = self.out()
        if out is None:  # nothing can reach a node whose output is gone
            raise RuntimeError(f"{self.name}: its output tensor no longer exists")
        return out


#: returned by ``Function.backward`` for an input whose gradient the op wrote into its Parameter's buffer
WRITTEN = object()


def _unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` over the axes that broadcasting added or stretched to reach its shape from ``shape``."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)


class _Binary(Function):
    """An elementwise op of two operands with NumPy broadcasting; gradients are summed back to each
    operand's shape."""

    def forward(self, a: Any, b: Any) -> Any:
        if self.recording:
            self.shapes = (_shape_of(a), _shape_of(b))
            self.dtypes = (getattr(a, "dtype", None), getattr(b, "dtype", None))
        return self.compute(a, b)

    def compute(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def fit(self, i: int, g: Any) -> Any:
        """``g`` summed back to operand ``i``'s shape, in its dtype."""
        g = _unbroadcast(g, self.shapes[i])
        dtype = self.dtypes[i]
        return g if dtype is None or g.dtype == dtype else g.astype(dtype)

    def fit_graph(self, i: int, g: Tensor) -> Tensor:
        """``fit`` as differentiable ops."""
        g = sum_to(g, self.shapes[i])
        dtype = self.dtypes[i]
        return g if dtype is None or g.dtype == dtype else Cast.apply(g, dtype=dtype)


class Add(_Binary):
    """``a + b``."""

    name = "add"

    def compute(self, a: Any, b: Any) -> Any:
        return a + b

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return tuple(self.fit(i, g) if n else None for i, n in enumerate(needs))

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return tuple(self.fit_graph(i, g) if n else None for i, n in enumerate(needs))


class Sub(_Binary):
    """``a - b``."""

    name = "sub"

    def compute(self, a: Any, b: Any) -> Any:
        return a - b

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (self.fit(0, g) if needs[0] else None, self.fit(1, -g) if needs[1] else None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (self.fit_graph(0, g) if needs[0] else None, self.fit_graph(1, -g) if needs[1] else None)


class Mul(_Binary):
    """``a * b``."""

    name = "mul"

    def compute(self, a: Any, b: Any) -> Any:
        if self.recording:
            self.a, self.b = a, b
        return a * b

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (self.fit(0, g * self.b) if needs[0] else None,
                self.fit(1, g * self.a) if needs[1] else None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        a, b = self.input_tensor(0), self.input_tensor(1)
        return (self.fit_graph(0, g * b) if needs[0] else None, self.fit_graph(1, g * a) if needs[1] else None)


class Div(_Binary):
    """``a / b``."""

    name = "div"

    def compute(self, a: Any, b: Any) -> Any:
        if self.recording:
            self.a, self.b = a, b
        return a / b

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        ga = g / self.b
        return (self.fit(0, ga) if needs[0] else None,
                self.fit(1, -ga * self.a / self.b) if needs[1] else None)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        a, b = self.input_tensor(0), self.input_tensor(1)
        ga = g / b
        return (self.fit_graph(0, ga) if needs[0] else None, self.fit_graph(1, -ga * a / b) if needs[1] else None)


class Neg(Function):
    """``-a``."""

    name = "neg"

    def forward(self, a: Any) -> Any:
        return -a

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (-g,)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (-g,)


class Pow(Function):
    """``a ** exponent`` for a scalar exponent."""

    name = "pow"

    def forward(self, a: Any, exponent: float) -> Any:
        self.exponent = exponent
        if self.recording:
            self.a = a
        if exponent == 2.0:
            return a * a
        return get_backend().xp.sqrt(a) if exponent == 0.5 else a**exponent

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        e = self.exponent
        return (g * (self.a * e if e == 2.0 else e * self.a ** (e - 1)),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        e, a = self.exponent, self.input_tensor(0)
        return (g * (a * e if e == 2.0 else (a ** (e - 1)) * e),)


class Exp(Function):
    """``e ** a``."""

    name = "exp"

    def forward(self, a: Any) -> Any:
        y = get_backend().xp.exp(a)
        if self.recording:
            self.y = y
        return y

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g * self.y,)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g * self.output_tensor(),)


class Log(Function):
    """Natural logarithm."""

    name = "log"

    def forward(self, a: Any) -> Any:
        if self.recording:
            self.a = a
        return get_backend().xp.log(a)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g / self.a,)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g / self.input_tensor(0),)


class Abs(Function):
    """``|a|``; the gradient at 0 is 0."""

    name = "abs"

    def forward(self, a: Any) -> Any:
        xp = get_backend().xp
        if self.recording:
            self.sign = xp.sign(a)
        return xp.abs(a)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g * self.sign,)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g * self.sign,)


class Sum(Function):
    """Sum over axes."""

    name = "sum"

    def forward(self, a: Any, axis: Any, keepdims: bool) -> Any:
        self.shape, self.axis, self.keepdims = tuple(a.shape), axis, keepdims
        return get_backend().xp.asarray(a.sum(axis=axis, keepdims=keepdims))

    def _kept_shape(self) -> tuple[int, ...]:
        """The output's shape with the summed axes kept as 1s."""
        axes = range(len(self.shape)) if self.axis is None else (
            (self.axis,) if isinstance(self.axis, int) else tuple(self.axis))
        kept = {a % len(self.shape) for a in axes}
        return tuple(1 if i in kept else s for i, s in enumerate(self.shape))

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        return (xp.broadcast_to(g.reshape(self._kept_shape()), self.shape).copy(),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (BroadcastTo.apply(g.reshape(self._kept_shape()), shape=self.shape),)


class BroadcastTo(Function):
    """``a`` broadcast to ``shape`` (a contiguous copy)."""

    name = "broadcast_to"

    def forward(self, a: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape = tuple(a.shape)
        return get_backend().xp.broadcast_to(a, shape).copy()

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (_unbroadcast(g, self.in_shape),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (sum_to(g, self.in_shape),)


def sum_to(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``t`` down to ``shape`` (the adjoint of broadcasting), as a differentiable op."""
    if t.shape == tuple(shape):
        return t
    return SumTo.apply(t, shape=tuple(shape))


class SumTo(Function):
    """The adjoint of broadcasting: sum to ``shape``."""

    name = "sum_to"

    def forward(self, a: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape, self.shape = tuple(a.shape), shape
        return _unbroadcast(a, shape)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().xp.broadcast_to(g, self.in_shape).copy(),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (BroadcastTo.apply(g, shape=self.in_shape),)


class Reshape(Function):
    """The same values in another shape."""

    name = "reshape"

    def forward(self, a: Any, shape: tuple[int, ...]) -> Any:
        self.in_shape = tuple(a.shape)
        return get_backend().xp.ascontiguousarray(a).reshape(shape)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g.reshape(self.in_shape),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g.reshape(self.in_shape),)


class Transpose(Function):
    """The transpose of a 2-D array, as a contiguous copy."""

    name = "transpose"

    def forward(self, a: Any) -> Any:
        if a.ndim != 2:
            raise ValueError(f"a: transpose takes a 2-D tensor, got shape {tuple(a.shape)}")
        return get_backend().xp.ascontiguousarray(a.T)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (get_backend().xp.ascontiguousarray(g.T),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (g.T,)


class MatMul(Function):
    """``a @ b`` for 2-D operands, on the backend's GEMM (the dense op with no bias)."""

    name = "matmul"

    def forward(self, a: Any, b: Any) -> Any:
        if self.recording:
            self.a, self.b = a, b
        return get_backend().dense_forward(a, b, None, "identity")

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        B, xp = get_backend(), get_backend().xp
        da = B.dense_forward(g, xp.ascontiguousarray(self.b.T), None, "identity") if needs[0] else None
        db = B.dense_forward(xp.ascontiguousarray(self.a.T), g, None, "identity") if needs[1] else None
        return da, db

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        a, b = self.input_tensor(0), self.input_tensor(1)
        return (g @ b.T if needs[0] else None, a.T @ g if needs[1] else None)


class Index(Function):
    """``a[index]`` (basic or advanced indexing)."""

    name = "index"

    def forward(self, a: Any, index: Any) -> Any:
        self.shape, self.index = tuple(a.shape), index
        xp = get_backend().xp
        picked = xp.asarray(a[index])
        return xp.ascontiguousarray(picked) if picked.ndim else picked

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (_scatter(g, self.index, self.shape),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (Scatter.apply(g, index=self.index, shape=self.shape),)


def _scatter(g: Any, index: Any, shape: tuple[int, ...]) -> Any:
    xp = get_backend().xp
    out = xp.zeros(shape, dtype=g.dtype)
    if hasattr(xp, "add") and hasattr(xp.add, "at"):
        xp.add.at(out, index, g)
    else:  # pragma: no cover - every array module pygan runs on has ufunc.at
        out[index] += g
    return out


class Scatter(Function):
    """The adjoint of ``Index``: ``g`` added into zeros of ``shape`` at ``index``."""

    name = "scatter"

    def forward(self, g: Any, index: Any, shape: tuple[int, ...]) -> Any:
        self.index = index
        return _scatter(g, index, shape)

    def backward(self, gg: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        xp = get_backend().xp
        picked = xp.asarray(gg[self.index])
        return (xp.ascontiguousarray(picked) if picked.ndim else picked,)

    def backward_graph(self, gg: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (gg[self.index],)


# ---------------------------------------------------------------------------------------------
# the reverse walk
# ---------------------------------------------------------------------------------------------
def _as_targets(name: str, inputs: Iterable[Tensor]) -> list[Tensor]:
    items = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}[{i}]: expected a pygan Tensor, got {type(t).__name__}")
        if not t.requires_grad:
            raise ValueError(f"{name}[{i}]: does not require a gradient (pass requires_grad=True)")
    return items


def _freed(node: Function) -> RuntimeError:
    return RuntimeError(f"{node.name}: this part of the graph was already freed by a backward pass; "
                        "pass retain_graph=True to the first backward to go through it again")


def _topological(roots: Sequence[Tensor]) -> list[Function]:
    """The nodes reachable from ``roots``, every node after all the nodes that made its inputs."""
    order: list[Function] = []
    seen: set[int] = set()
    for root in roots:
        node = root._node
        if node is None or id(node) in seen:
            continue
        if "parents" not in node.__dict__:
            raise _freed(node)
        seen.add(id(node))
        # the last input's subgraph is ordered first, so the reverse walk reaches the first input's
        # first: parameter gradients accumulate in the order the layer-by-layer backward used
        stack = [(node, reversed(node.parents))]
        while stack:
            node, children = stack[-1]
            for _, t in children:
                child = t._node
                if child is not None and id(child) not in seen:
                    if "parents" not in child.__dict__:
                        raise _freed(child)
                    seen.add(id(child))
                    stack.append((child, reversed(child.parents)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a + b


def _root_gradients(outputs: Sequence[Tensor], grad_outputs: Sequence[Any], create_graph: bool) -> list[Any]:
    """Each output's gradient: ones for a one-element output, else the given one, checked."""
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"outputs[{i}]: expected a pygan Tensor, got {type(out).__name__}")
        if not out.requires_grad:
            raise ValueError(f"outputs[{i}]: does not require a gradient: nothing that needs one went into it")
        if g is None:
            if out.size != 1:
                raise ValueError(f"grad_outputs[{i}]: needed for an output of shape {out.shape} (only a one-element "
                                 "output has an implied gradient of one)")
            g = get_backend().xp.ones_like(out.data)
        else:
            g = g if create_graph and isinstance(g, Tensor) else (g.data if isinstance(g, Tensor) else g)
            if tuple(g.shape) != out.shape:
                raise ValueError(f"grad_outputs[{i}]: expected shape {out.shape}, got {tuple(g.shape)}")
        grads.append(Tensor(g) if create_graph and not isinstance(g, Tensor) else g)
    return grads


def _walk(
    outputs: Sequence[Tensor], grad_outputs: Sequence[Any], targets: list[Tensor] | None, to_leaves: bool,
    create_graph: bool, retain_graph: bool,
) -> dict[int, Any]:
    """Propagate gradients from ``outputs`` to the leaves. With ``to_leaves`` (``backward``) every
    reached leaf (of ``targets`` only, when given) gets its gradient in ``.grad``; otherwise the
    gradients of ``targets`` are returned, by ``id``."""
    target_ids = None if targets is None else {id(t) for t in targets}
    inner_targets = {id(t) for t in targets or () if t._node is not None}  # non-leaves whose gradient is wanted
    free = not (retain_graph or create_graph)
    pending: dict[int, Any] = {}  # gradient of each node's output, by id(node)
    results: dict[int, Any] = {}  # leaves' (and targeted non-leaves') gradients, by id(tensor)
    for out, g in zip(outputs, _root_gradients(outputs, grad_outputs, create_graph)):
        if out._node is None:
            results[id(out)] = _add(results.get(id(out)), g)
        else:
            pending[id(out._node)] = _add(pending.get(id(out._node)), g)
    order = _topological(outputs)
    # which inputs of each node lead to a wanted gradient (producers come first in ``order``), and
    # which of them are Parameters whose buffers the node's backward may write into directly
    plan: dict[int, tuple[tuple[bool, ...], list[tuple[int, Tensor]], tuple[Any, ...]]] = {}
    for node in order:
        live = []
        for i, t in node.parents:
            if t._node is not None:
                if id(t._node) in plan and (plan[id(t._node)][1] or id(t) in inner_targets):
                    live.append((i, t))
            elif target_ids is None or id(t) in target_ids:
                live.append((i, t))
        needs = [False] * len(node.inputs)
        sinks = [None] * len(node.inputs) if node.takes_sinks and to_leaves else None
        for i, t in live:
            needs[i] = True
            if sinks is not None and t._node is None and isinstance(t, Parameter):
                sinks[i] = t
        plan[id(node)] = (tuple(needs), live, () if sinks is None else tuple(sinks))
    with enable_grad() if create_graph else no_grad():
        for node in reversed(order):
            g = pending.pop(id(node), None)
            if g is None:
                continue
            if inner_targets:
                out = node.out()
                if out is not None and id(out) in inner_targets:
                    results[id(out)] = _add(results.get(id(out)), g)
            needs, live, sinks = plan[id(node)]
            if not live:
                continue
            grads = node.backward_graph(g, needs) if create_graph else node.backward(g, needs, sinks)
            if free:  # what this node saved is not needed again: let its arrays go (their memory is still hot)
                node.__dict__.clear()
            for i, t in live:
                gi = grads[i]
                if gi is None or gi is WRITTEN:
                    continue
                if t._node is not None:
                    key = id(t._node)
                    pending[key] = gi if key not in pending else pending[key] + gi
                elif to_leaves:
                    if isinstance(t, Parameter):
                        accumulate(t, gi)
                    else:
                        t._grad = gi.copy() if t._grad is None else t._grad + gi
                else:
                    results[id(t)] = _add(results.get(id(t)), gi)
    if free:
        for node in order:
            node.__dict__.clear()
    return results


class Cast(Function):
    """``a`` in another dtype (the gradient is cast back)."""

    name = "cast"

    def forward(self, a: Any, dtype: Any) -> Any:
        self.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g: Any, needs: tuple[bool, ...], sinks: Any) -> tuple[Any, ...]:
        return (g.astype(self.in_dtype),)

    def backward_graph(self, g: Tensor, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (Cast.apply(g, dtype=self.in_dtype),)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    create_graph: bool = False,
    retain_graph: bool | None = None,
    allow_unused: bool = False,
) -> tuple[Tensor, ...]:
    """The gradients of ``outputs`` (weighted by ``grad_outputs``, ones for one-element outputs)
    with respect to ``inputs``, as tensors, without touching any ``.grad``.

    ``create_graph=True`` records the backward pass itself, so the result can be differentiated
    again (a gradient penalty); the graph is then kept. Otherwise it is freed unless
    ``retain_graph``. An input that the outputs do not depend on raises unless ``allow_unused``
    (then its gradient is zeros).
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = _as_targets("inputs", inputs)
    if grad_outputs is None:
        gos: list[Any] = [None] * len(outs)
    else:
        gos = [grad_outputs] if not isinstance(grad_outputs, (list, tuple)) else list(grad_outputs)
        if len(gos) != len(outs):
            raise ValueError(f"grad_outputs: {len(gos)} given for {len(outs)} outputs")
    keep = create_graph if retain_graph is None else retain_graph
    results = _walk(outs, gos, ins, to_leaves=False, create_graph=create_graph, retain_graph=keep)
    xp = get_backend().xp
    out: list[Tensor] = []
    for i, t in enumerate(ins):
        g = results.get(id(t))
        if g is None:
            if not allow_unused:
                raise ValueError(f"inputs[{i}]: the outputs do not depend on it (pass allow_unused=True for zeros)")
            g = xp.zeros_like(t.data)
        out.append(g if isinstance(g, Tensor) else Tensor(g))
    return tuple(out)
