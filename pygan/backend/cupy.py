"""The ``cupy`` backend: the op table on an NVIDIA GPU. Imported only when chosen.

GEMMs go through CuPy's matmul (cuBLAS). Everything around them is pygan's own CUDA code in
``csrc/cuda/*.cu`` (installed as ``pygan/cuda``), compiled at first use with ``cupy.RawModule``:

==================  =============================================================================
kernel              launch
==================  =============================================================================
bias_act            grid-stride, block 256, grid min(ceil(n / 256), 65535)
act_grad_bias_grad  one block of 256 per channel (grid = channels), 1 KiB shared memory
act_forward/back.   grid-stride, block 256
bn_stats            one block of 256 per channel, two passes (mean, then squared deviations)
bn_forward          grid-stride, block 256
bn_backward_reduce  one block of 256 per channel
bn_backward_dx      grid-stride, block 256
im2col / col2im     grid-stride, block 256, one thread per column entry / per image element
conv_igemm          block 256 per 64 x 64 output tile (grid <= 65535, looping over tiles), 16-deep stages
conv_wgrad_igemm    the same tiles over (rows, r, split): split-K partials, summed by CuPy
sgd_momentum, adam  grid-stride, block 256
parzen_lse          one block of 256 per row of the distance block
upsample2x, ...     grid-stride, block 256, one thread per pixel written (adjoints gather, no atomics)
gn_stats, gn_back.  one block of 256 per group (grid <= 65535, looping over groups), sums in double
gn_affine_grad      one block of 256 per affine entry (channel, or example x channel for AdaIN)
gn_forward, _dx     grid-stride, block 256
==================  =============================================================================

A convolution whose im2col buffer would pass ``IM2COL_BUDGET`` bytes (large batches) runs as an
implicit GEMM instead: ``conv_igemm`` gathers the image operand inside its tile loads and writes NCHW
with the bias + activation epilogue, ``conv_wgrad_igemm`` makes the weight gradient by split-K; below
the budget, im2col/col2im and cuBLAS.

Arrays stay on the device for a whole train step. The ops check shapes, dtypes and layout from
the arrays' metadata (no device sync); the losses (``pygan.losses``, array expressions on the
device) are 0-d device arrays, so the GAN moves one small vector of statistics to the host per step. Value checks that would need a sync (NaN
in the weights) are not made per op here: a non-finite weight shows up as a non-finite loss in
that vector.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from . import OPS, Backend
from . import _checks as C
from . import reference as ref

ACT_CODES: dict[str, int] = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}
BLOCK = 256
MAX_GRID = 65535
KERNEL_FILES: tuple[str, ...] = ("epilogue.cu", "batch_norm.cu", "im2col.cu", "optim.cu", "parzen.cu", "spatial.cu",
                                  "group_norm.cu", "conv_igemm.cu")
#: Bytes of im2col buffer above which a convolution runs as an implicit GEMM (no buffer at all).
IM2COL_BUDGET = 64 << 20
#: conv_igemm's output tile (rows x columns), and the split-K targets of conv_wgrad_igemm: about this
#: many blocks, at least this many columns a split, at most this many floats of partial sums.
IGEMM_TILE = 64
WGRAD_BLOCKS, WGRAD_MIN_COLUMNS, WGRAD_PARTIAL_FLOATS = 1024, 256, 16 << 20


def cuda_source_dir() -> Path:
    """Where the .cu sources are: ``pygan/cuda`` when installed, ``csrc/cuda`` in a source tree."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "cuda", here.parent / "csrc" / "cuda"):
        if (candidate / "epilogue.cu").exists():
            return candidate
    raise FileNotFoundError("pygan's CUDA sources (epilogue.cu, ...) are missing from the installation")


class Kernels:
    """The compiled kernels, and the launch geometry of each call."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        src = cuda_source_dir()
        self.modules = {
            f: cp.RawModule(code=(src / f).read_text(), options=("--std=c++14", f"-I{src}")) for f in KERNEL_FILES
        }
        self._fn: dict[str, Any] = {}

    def function(self, name: str) -> Any:
        """The kernel ``name`` from whichever file defines it."""
        if name not in self._fn:
            owner = next(f for f, names in _KERNELS.items() if name in names)
            self._fn[name] = self.modules[owner].get_function(name)
        return self._fn[name]

    def elementwise(self, name: str, total: int, *args: Any) -> None:
        """Grid-stride launch over ``total`` elements."""
        if total == 0:
            return
        grid = min(-(-total // BLOCK), MAX_GRID)
        self.function(name)((grid,), (BLOCK,), args)

    def per_channel(self, name: str, channels: int, *args: Any) -> None:
        """One block per channel (reductions)."""
        if channels == 0:
            return
        self.function(name)((channels,), (BLOCK,), args)

    def per_unit(self, name: str, units: int, *args: Any) -> None:
        """One block per unit (a group, a channel), looping over units past the grid limit."""
        if units == 0:
            return
        self.function(name)((min(units, MAX_GRID),), (BLOCK,), args)


_KERNELS = {
    "epilogue.cu": ("bias_act", "act_grad_bias_grad", "act_grad_bias_grad_rows", "act_forward", "act_backward"),
    "batch_norm.cu": ("bn_stats", "bn_forward", "bn_backward_reduce", "bn_backward_dx"),
    "im2col.cu": ("im2col", "col2im"),
    "optim.cu": ("sgd_momentum", "adam", "rmsprop"),
    "parzen.cu": ("parzen_lse",),
    "spatial.cu": ("upsample2x", "upsample2x_adjoint", "avg_pool", "avg_pool_adjoint", "pixel_shuffle", "pixel_unshuffle",
                   "reflection_pad", "reflection_pad_adjoint"),
    "group_norm.cu": ("gn_stats", "gn_forward", "gn_backward_group", "gn_backward_dx", "gn_affine_grad"),
    "conv_igemm.cu": ("conv_igemm", "conv_wgrad_igemm"),
}


def _i64(v: int) -> np.int64:
    return np.int64(v)


def _i32(v: int) -> np.int32:
    return np.int32(v)


def _f32(v: float) -> np.float32:
    return np.float32(v)


class CupyOps:
    """The op table on CuPy arrays (float32, C-contiguous), with pygan's kernels."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self.k = Kernels(cp)

    # -- checks (metadata only: no device synchronisation) ---------------------------------------
    def _arr(self, name: str, a: Any, ndim: Any = None) -> None:
        C.check_array(name, a, ndim=ndim, dtypes=(np.float32,), xp=self.cp)

    def _act(self, act: str, slope: float) -> tuple[int, np.float32]:
        act, slope = C.check_activation(act, slope)
        return _i32(ACT_CODES[act]), _f32(slope)

    def _bias_act(self, z: Any, b: Any, inner: int, channels: int, act: int, slope: np.float32) -> Any:
        if b is None and act == 0:
            return z
        has_bias = _i32(0 if b is None else 1)
        self.k.elementwise("bias_act", z.size, z, z if b is None else b, has_bias, _i64(z.size), _i64(inner), _i32(channels), act, slope)
        return z

    def _dz_db(self, dy: Any, y: Any, inner: int, channels: int, act: int, slope: np.float32) -> tuple[Any, Any]:
        dz = self.cp.empty_like(dy)
        db = self.cp.empty(channels, dtype=dy.dtype)
        count = dy.size // channels if channels else 0
        if inner == 1 and channels:  # a dense layer: rows read whole, 32 columns per block
            self.k.function("act_grad_bias_grad_rows")((-(-channels // 32),), (BLOCK,),
                                                       (dy, y, dz, db, _i64(count), _i32(channels), act, slope))
        else:
            self.k.per_channel("act_grad_bias_grad", channels, dy, y, dz, db, _i64(count), _i64(inner), _i32(channels), act, slope)
        return dz, db

    # -- activations -------------------------------------------------------------------------
    def activation_forward(self, x: Any, act: str, slope: float = 0.2) -> Any:
        """``y = act(x)``."""
        code, s = self._act(act, slope)
        self._arr("x", x)
        y = self.cp.empty_like(x)
        self.k.elementwise("act_forward", x.size, x, y, _i64(x.size), code, s)
        return y

    def activation_backward(self, dy: Any, y: Any, act: str, slope: float = 0.2) -> Any:
        """``dx = dy * act'(y)``."""
        code, s = self._act(act, slope)
        self._arr("dy", dy)
        self._arr("y", y)
        C.check_shape("y", y, tuple(dy.shape))
        dx = self.cp.empty_like(dy)
        self.k.elementwise("act_backward", dy.size, dy, y, dx, _i64(dy.size), code, s)
        return dx

    # -- dense -------------------------------------------------------------------------------
    def _check_dense(self, x: Any, w: Any, b: Any) -> None:
        self._arr("x", x, 2)
        self._arr("w", w, 2)
        if x.shape[1] != w.shape[0]:
            raise ValueError(f"w: expected {x.shape[1]} rows to match x's features, got shape {tuple(w.shape)}")
        if b is not None:
            self._arr("b", b, 1)
            C.check_shape("b", b, (w.shape[1],))

    def dense_forward(self, x: Any, w: Any, b: Any, act: str = "identity", slope: float = 0.2) -> Any:
        """``y = act(x @ w + b)``: cuBLAS GEMM, then the bias + activation epilogue kernel in place."""
        code, s = self._act(act, slope)
        self._check_dense(x, w, b)
        z = self.cp.matmul(x, w)
        return self._bias_act(z, b, 1, w.shape[1], code, s)

    def dense_backward(
        self, dy: Any, x: Any, w: Any, y: Any, act: str = "identity", slope: float = 0.2,
        need_dx: bool = True, need_params: bool = True, param_grads: Any = None, accumulate: bool = False,
    ) -> tuple[Any, Any, Any]:
        """``(dx, dw, db)``: one kernel makes dz and db, two cuBLAS GEMMs make dw and dx."""
        code, s = self._act(act, slope)
        self._check_dense(x, w, None)
        for name, a in (("dy", dy), ("y", y)):
            self._arr(name, a, 2)
            C.check_shape(name, a, (x.shape[0], w.shape[1]))
        dz, db = self._dz_db(dy, y, 1, w.shape[1], code, s)
        dx = self.cp.matmul(dz, w.T) if need_dx else None
        dw = self.cp.matmul(x.T, dz) if need_params else None
        return (dx, *ref.store_param_grads(dw, db if need_params else None, param_grads, accumulate))

    # -- convolutions ------------------------------------------------------------------------
    def _im2col(self, x: Any, k: int, stride: int, pad: int, ho: int, wo: int) -> Any:
        n, c, h, w = x.shape
        cols = self.cp.empty((c * k * k, n * ho * wo), dtype=x.dtype)
        self.k.elementwise("im2col", cols.size, x, cols, *map(_i32, (n, c, h, w, k, stride, pad, ho, wo)))
        return cols

    def _col2im(self, cols: Any, shape: tuple[int, int, int, int], k: int, stride: int, pad: int, ho: int, wo: int) -> Any:
        n, c, h, w = shape
        x = self.cp.empty(shape, dtype=cols.dtype)
        self.k.elementwise("col2im", x.size, cols, x, *map(_i32, (n, c, h, w, k, stride, pad, ho, wo)))
        return x

    @staticmethod
    def _implicit(rows: int, columns: int) -> bool:
        """Whether an im2col buffer of ``rows x columns`` floats passes the budget (then: implicit GEMM)."""
        return rows * columns * 4 > IM2COL_BUDGET

    def _igemm(self, a: Any, a_row: int, a_chan: int, m: int, src: Any, gather: int, out_hw: tuple[int, int], k: int,
               stride: int, pad: int, b: Any = None, act: np.int32 = _i32(0), slope: np.float32 = _f32(0.0)) -> Any:
        """``out (n, m, *out_hw) = act(b + A @ gather(src))`` without a column buffer (see conv_igemm.cu)."""
        n, c, h, w = src.shape
        out = self.cp.empty((n, m, *out_hw), dtype=src.dtype)
        tiles = -(-m // IGEMM_TILE) * -(-(n * out_hw[0] * out_hw[1]) // IGEMM_TILE)
        if tiles:
            self.k.function("conv_igemm")((min(tiles, MAX_GRID),), (BLOCK,), (
                a, src, src if b is None else b, out, *map(_i32, (m, n, c, h, w, *out_hw, k, stride, pad, a_row, a_chan,
                                                                   gather, b is not None)), act, slope))
        return out

    def _wgrad(self, d: Any, src: Any, k: int, stride: int, pad: int) -> Any:
        """``(m, C k k)``: sum over (image, pixel) of ``d[img, row, pixel] * gather0(src)[(c, ki, kj), (img, pixel)]``,
        by split-K partials that CuPy sums (deterministic: no atomics)."""
        n, m, oh, ow = d.shape
        c, r_total, cols = src.shape[1], src.shape[1] * k * k, n * oh * ow
        tiles = -(-m // IGEMM_TILE) * -(-r_total // IGEMM_TILE)
        splits = max(1, min(-(-WGRAD_BLOCKS // max(tiles, 1)), cols // WGRAD_MIN_COLUMNS,
                            WGRAD_PARTIAL_FLOATS // max(m * r_total, 1)))
        part = self.cp.empty((splits, m, r_total), dtype=d.dtype)
        if tiles and cols:
            self.k.function("conv_wgrad_igemm")((min(tiles * splits, MAX_GRID),), (BLOCK,), (
                d, src, part, *map(_i32, (m, n, c, *src.shape[2:], oh, ow, k, stride, pad, splits))))
        elif part.size:
            part.fill(0)
        return part[0] if splits == 1 else part.sum(axis=0)

    def _conv_geometry(self, x: Any, w: Any, b: Any, stride: int, padding: int, transposed: bool, output_padding: int = 0) -> tuple[int, int]:
        stride, padding = ref.check_conv_geometry(stride, padding)
        self._arr("x", x, 4)
        self._arr("w", w, 4)
        if w.shape[2] != w.shape[3]:
            raise ValueError(f"w: the cupy backend takes square kernels, got {tuple(w.shape[2:])}")
        cin = w.shape[0] if transposed else w.shape[1]
        if x.shape[1] != cin:
            raise ValueError(f"w: expects {cin} input channels, x has {x.shape[1]} (x {tuple(x.shape)}, w {tuple(w.shape)})")
        if b is not None:
            self._arr("b", b, 1)
            C.check_shape("b", b, (w.shape[1] if transposed else w.shape[0],))
        k = w.shape[2]
        if transposed:
            output_padding = C.check_int("output_padding", output_padding, 0)
            if output_padding >= stride:
                raise ValueError(f"output_padding: must be smaller than stride ({stride}), got {output_padding}")
            ho = (x.shape[2] - 1) * stride - 2 * padding + k + output_padding
            wo = (x.shape[3] - 1) * stride - 2 * padding + k + output_padding
            if ho <= 0 or wo <= 0:
                raise ValueError(f"padding: {padding} leaves no output for input {tuple(x.shape[2:])} and kernel {k}")
            return ho, wo
        return C.conv_out_size("x", x.shape[2], k, stride, padding), C.conv_out_size("x", x.shape[3], k, stride, padding)

    def _to_nchw(self, z: Any, n: int, c: int, h: int, w: int) -> Any:
        return self.cp.ascontiguousarray(z.reshape(c, n, h, w).transpose(1, 0, 2, 3))

    def _from_nchw(self, a: Any) -> Any:
        n, c, h, w = a.shape
        return self.cp.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(c, n * h * w)

    def conv2d_forward(self, x: Any, w: Any, b: Any, stride: int = 1, padding: int = 0, act: str = "identity", slope: float = 0.2) -> Any:
        """im2col kernel, one cuBLAS GEMM, then the bias + activation epilogue (or all three as one
        implicit GEMM past the im2col budget)."""
        code, s = self._act(act, slope)
        ho, wo = self._conv_geometry(x, w, b, stride, padding, False)
        cout, k = w.shape[0], w.shape[2]
        r = x.shape[1] * k * k
        if self._implicit(r, x.shape[0] * ho * wo):
            return self._igemm(w, r, k * k, cout, x, 0, (ho, wo), k, stride, padding, b, code, s)
        cols = self._im2col(x, k, stride, padding, ho, wo)
        z = self._to_nchw(self.cp.matmul(w.reshape(cout, -1), cols), x.shape[0], cout, ho, wo)
        return self._bias_act(z, b, ho * wo, cout, code, s)

    def conv2d_backward(
        self, dy: Any, x: Any, w: Any, y: Any, stride: int = 1, padding: int = 0, act: str = "identity",
        slope: float = 0.2, need_dx: bool = True, need_params: bool = True, param_grads: Any = None,
        accumulate: bool = False,
    ) -> tuple[Any, Any, Any]:
        """dz and db in one kernel; dw = dz cols^T and dx = col2im(w^T dz) through cuBLAS (or both as
        implicit GEMMs past the im2col budget)."""
        code, s = self._act(act, slope)
        ho, wo = self._conv_geometry(x, w, None, stride, padding, False)
        cout, k = w.shape[0], w.shape[2]
        for name, a in (("dy", dy), ("y", y)):
            self._arr(name, a, 4)
            C.check_shape(name, a, (x.shape[0], cout, ho, wo))
        dz, db = self._dz_db(dy, y, ho * wo, cout, code, s)
        dx = dw = None
        cin = x.shape[1]
        if self._implicit(cin * k * k, x.shape[0] * ho * wo):
            if need_params:
                dw = self._wgrad(dz, x, k, stride, padding).reshape(w.shape)
            if need_dx:
                dx = self._igemm(w, k * k, cin * k * k, cin, dz, 1, tuple(x.shape[2:]), k, stride, padding)
            return (dx, *ref.store_param_grads(dw, db if need_params else None, param_grads, accumulate))
        dz2 = self._from_nchw(dz)
        if need_params:
            dw = self.cp.matmul(dz2, self._im2col(x, k, stride, padding, ho, wo).T).reshape(w.shape)
        if need_dx:
            dx = self._col2im(self.cp.matmul(w.reshape(cout, -1).T, dz2), tuple(x.shape), k, stride, padding, ho, wo)
        return (dx, *ref.store_param_grads(dw, db if need_params else None, param_grads, accumulate))

    def conv_transpose2d_forward(
        self, x: Any, w: Any, b: Any, stride: int = 1, padding: int = 0, output_padding: int = 0,
        act: str = "identity", slope: float = 0.2,
    ) -> Any:
        """The adjoint of conv2d: one cuBLAS GEMM, col2im, then the epilogue (or all three as one
        implicit GEMM past the im2col budget)."""
        code, s = self._act(act, slope)
        ho, wo = self._conv_geometry(x, w, b, stride, padding, True, output_padding)
        cin, cout, k = w.shape[0], w.shape[1], w.shape[2]
        if self._implicit(cout * k * k, x.shape[0] * x.shape[2] * x.shape[3]):
            return self._igemm(w, k * k, cout * k * k, cout, x, 1, (ho, wo), k, stride, padding, b, code, s)
        cols = self.cp.matmul(w.reshape(cin, -1).T, self._from_nchw(x))
        z = self._col2im(cols, (x.shape[0], cout, ho, wo), k, stride, padding, x.shape[2], x.shape[3])
        return self._bias_act(z, b, ho * wo, cout, code, s)

    def conv_transpose2d_backward(
        self, dy: Any, x: Any, w: Any, y: Any, stride: int = 1, padding: int = 0, output_padding: int = 0,
        act: str = "identity", slope: float = 0.2, need_dx: bool = True, need_params: bool = True,
        param_grads: Any = None, accumulate: bool = False,
    ) -> tuple[Any, Any, Any]:
        """dz and db in one kernel, im2col of dz, then dx and dw through cuBLAS (or both as implicit
        GEMMs past the im2col budget)."""
        code, s = self._act(act, slope)
        ho, wo = self._conv_geometry(x, w, None, stride, padding, True, output_padding)
        cin, cout, k = w.shape[0], w.shape[1], w.shape[2]
        for name, a in (("dy", dy), ("y", y)):
            self._arr(name, a, 4)
            C.check_shape(name, a, (x.shape[0], cout, ho, wo))
        dz, db = self._dz_db(dy, y, ho * wo, cout, code, s)
        dx = dw = None
        if self._implicit(cout * k * k, x.shape[0] * x.shape[2] * x.shape[3]):
            if need_dx:
                dx = self._igemm(w, cout * k * k, k * k, cin, dz, 0, tuple(x.shape[2:]), k, stride, padding)
            if need_params:
                dw = self._wgrad(x, dz, k, stride, padding).reshape(w.shape)
            return (dx, *ref.store_param_grads(dw, db if need_params else None, param_grads, accumulate))
        cols = self._im2col(dz, k, stride, padding, x.shape[2], x.shape[3])
        if need_dx:
            dx = self._to_nchw(self.cp.matmul(w.reshape(cin, -1), cols), x.shape[0], cin, x.shape[2], x.shape[3])
        if need_params:
            dw = self.cp.matmul(self._from_nchw(x), cols.T).reshape(w.shape)
        return (dx, *ref.store_param_grads(dw, db if need_params else None, param_grads, accumulate))

    # -- batch norm --------------------------------------------------------------------------
    def batch_norm_forward(
        self, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: bool = True,
        momentum: float = 0.1, eps: float = 1e-5, act: str = "identity", slope: float = 0.2,
    ) -> tuple[Any, Any, Any]:
        """Batch statistics (two-pass kernel) or running ones, then normalise + activation in one sweep."""
        code, s = self._act(act, slope)
        self._arr("x", x, (2, 4))
        ch = x.shape[1]
        for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
            self._arr(name, a, 1)
            C.check_shape(name, a, (ch,))
        inner = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]

        def two_pass(x: Any) -> tuple[Any, Any]:
            mean = self.cp.empty(ch, dtype=x.dtype)
            var = self.cp.empty(ch, dtype=x.dtype)
            self.k.per_channel("bn_stats", ch, x, mean, var, _i64(x.size // ch), _i64(inner), _i32(ch))
            return mean, var

        mean, invstd = ref.batch_norm_statistics(x, running_mean, running_var, training, momentum, eps, two_pass, self.cp)
        y = self.cp.empty_like(x)
        self.k.elementwise("bn_forward", x.size, x, mean, invstd, gamma, beta, y, _i64(x.size), _i64(inner), _i32(ch), code, s)
        return y, mean, invstd

    def batch_norm_backward(
        self, dy: Any, x: Any, y: Any, gamma: Any, mean: Any, invstd: Any, training: bool = True,
        act: str = "identity", slope: float = 0.2,
    ) -> tuple[Any, Any, Any]:
        """Per-channel reductions (dz, dgamma, dbeta) in one kernel, then dx in one sweep."""
        code, s = self._act(act, slope)
        self._arr("x", x, (2, 4))
        ch = x.shape[1]
        for name, a in (("gamma", gamma), ("mean", mean), ("invstd", invstd)):
            self._arr(name, a, 1)
            C.check_shape(name, a, (ch,))
        for name, a in (("dy", dy), ("y", y)):
            self._arr(name, a, x.ndim)
            C.check_shape(name, a, tuple(x.shape))
        inner = 1 if x.ndim == 2 else x.shape[2] * x.shape[3]
        count = x.size // ch
        dz = self.cp.empty_like(x)
        dgamma = self.cp.empty(ch, dtype=x.dtype)
        dbeta = self.cp.empty(ch, dtype=x.dtype)
        self.k.per_channel("bn_backward_reduce", ch, dy, y, x, mean, invstd, dz, dgamma, dbeta, _i64(count), _i64(inner), _i32(ch), code, s)
        dx = self.cp.empty_like(x)
        self.k.elementwise(
            "bn_backward_dx", x.size, dz, x, mean, invstd, gamma, dgamma, dbeta, dx, _i64(x.size), _i64(inner),
            _i32(ch), _f32(count), _i32(1 if training else 0),
        )
        return dx, dgamma, dbeta

    # -- dropout, maxout ---------------------------------------------------------------------
    def dropout_forward(self, x: Any, p: float, mask: Any = None, seed: int | None = None) -> tuple[Any, Any]:
        """Inverted dropout; the mask is drawn on the host from ``seed`` (the same mask as every
        backend draws) and uploaded, so runs match the reference."""
        self._arr("x", x)
        p = C.check_prob("p", p, low_open=False, high_open=True)
        if mask is None:
            rng = np.random.default_rng(seed)
            mask = self.cp.asarray(((rng.random(tuple(x.shape)) >= p) / (1.0 - p)).astype(np.float32))
        else:
            self._arr("mask", mask)
            C.check_shape("mask", mask, tuple(x.shape))
        return x * mask, mask

    def dropout_backward(self, dy: Any, mask: Any) -> Any:
        """``dx = dy * mask``."""
        self._arr("dy", dy)
        self._arr("mask", mask)
        C.check_shape("mask", mask, tuple(dy.shape))
        return dy * mask

    def maxout_forward(self, x: Any, pieces: int) -> tuple[Any, Any]:
        """Maxout over groups of ``pieces`` adjacent features; returns ``(y, index)``."""
        self._arr("x", x, 2)
        pieces = C.check_int("pieces", pieces, 1)
        if x.shape[1] % pieces:
            raise ValueError(f"x: {x.shape[1]} features do not split into groups of pieces={pieces}")
        g = x.reshape(x.shape[0], -1, pieces)
        idx = g.argmax(axis=2).astype(np.int32)
        y = self.cp.take_along_axis(g, idx[..., None].astype(np.int64), axis=2)[..., 0]
        return self.cp.ascontiguousarray(y), idx

    def maxout_backward(self, dy: Any, index: Any, pieces: int) -> Any:
        """Route each unit's gradient to its winning piece."""
        self._arr("dy", dy, 2)
        C.check_array("index", index, ndim=2, dtypes=(np.int32,), xp=self.cp)
        C.check_shape("index", index, tuple(dy.shape))
        pieces = C.check_int("pieces", pieces, 1)
        onehot = index[..., None] == self.cp.arange(pieces, dtype=np.int32)
        return (onehot * dy[..., None]).astype(dy.dtype).reshape(dy.shape[0], -1)

    # -- resampling, padding, group norm: pygan's kernels (spatial.cu, group_norm.cu) ----------
    def _image_out(self, name: str, x: Any, shape: tuple[int, ...], *args: Any) -> Any:
        """Launch the grid-stride kernel ``name`` writing a new ``(N, C, H, W)`` array of ``shape``."""
        y = self.cp.empty(shape, dtype=x.dtype)
        self.k.elementwise(name, y.size, x, y, _i64(y.size), *args)
        return y

    def upsample2x_forward(self, x: Any, mode: str = "nearest") -> Any:
        """2x nearest or bilinear upsampling, one thread per output pixel."""
        self._arr("x", x, 4)
        code = _i32(ref.UPSAMPLE_MODES.index(ref.check_upsample_mode(mode)))
        n, c, h, w = x.shape
        return self._image_out("upsample2x", x, (n, c, 2 * h, 2 * w), _i32(h), _i32(w), code)

    def upsample2x_backward(self, dy: Any, mode: str = "nearest") -> Any:
        """Its adjoint, one thread per input pixel gathering the outputs that read it."""
        self._arr("dy", dy, 4)
        code = _i32(ref.UPSAMPLE_MODES.index(ref.check_upsample_grad(dy, mode, self.cp)))
        n, c, h2, w2 = dy.shape
        return self._image_out("upsample2x_adjoint", dy, (n, c, h2 // 2, w2 // 2), _i32(h2 // 2), _i32(w2 // 2), code)

    def avg_pool2d_forward(self, x: Any, k: int = 2) -> Any:
        """k x k average pooling, stride k."""
        self._arr("x", x, 4)
        k = ref.check_avg_pool(x, k, self.cp)
        n, c, h, w = x.shape
        return self._image_out("avg_pool", x, (n, c, h // k, w // k), _i32(h), _i32(w), _i32(k))

    def avg_pool2d_backward(self, dy: Any, k: int, height: int, width: int) -> Any:
        """Its adjoint."""
        self._arr("dy", dy, 4)
        k, height, width = ref.check_avg_pool_grad(dy, k, height, width, self.cp)
        n, c = dy.shape[:2]
        return self._image_out("avg_pool_adjoint", dy, (n, c, height, width), _i32(height), _i32(width), _i32(k))

    def pixel_shuffle_forward(self, x: Any, r: int = 2) -> Any:
        """The sub-pixel shuffle."""
        self._arr("x", x, 4)
        r = ref.check_pixel_shuffle(x, r, self.cp)
        n, cr, h, w = x.shape
        c = cr // (r * r)
        return self._image_out("pixel_shuffle", x, (n, c, h * r, w * r), _i32(c), _i32(h), _i32(w), _i32(r))

    def pixel_shuffle_backward(self, dy: Any, r: int = 2) -> Any:
        """Its inverse."""
        self._arr("dy", dy, 4)
        r = ref.check_pixel_shuffle_grad(dy, r, self.cp)
        n, c, hr, wr = dy.shape
        h, w = hr // r, wr // r
        return self._image_out("pixel_unshuffle", dy, (n, c * r * r, h, w), _i32(c), _i32(h), _i32(w), _i32(r))

    def reflection_pad2d_forward(self, x: Any, padding: int = 1) -> Any:
        """Mirror padding."""
        self._arr("x", x, 4)
        p = ref.check_reflection_pad(x, padding, self.cp)
        n, c, h, w = x.shape
        return self._image_out("reflection_pad", x, (n, c, h + 2 * p, w + 2 * p), _i32(h), _i32(w), _i32(p))

    def reflection_pad2d_backward(self, dy: Any, padding: int = 1) -> Any:
        """Its adjoint, one thread per input pixel gathering the (up to 9) entries that mirror it."""
        self._arr("dy", dy, 4)
        p = ref.check_reflection_pad_grad(dy, padding, self.cp)
        n, c, hp, wp = dy.shape
        return self._image_out("reflection_pad_adjoint", dy, (n, c, hp - 2 * p, wp - 2 * p), _i32(hp - 2 * p),
                               _i32(wp - 2 * p), _i32(p))

    @staticmethod
    def _group_geometry(x: Any, gamma: Any, groups: int) -> tuple[int, int, int, int, np.int32]:
        """``(n, channels, inner, m, per_example)`` of a group norm: m elements per group."""
        n, c = x.shape[:2]
        inner = x.size // max(n * c, 1)
        return n, c, inner, (c // groups) * inner, _i32(1 if gamma.ndim == 2 else 0)

    def group_norm_forward(self, x: Any, gamma: Any, beta: Any, groups: int, eps: float = 1e-5,
                           act: str = "identity", slope: float = 0.2) -> Any:
        """Group / instance / layer norm and AdaIN with a fused activation: per-group statistics
        (two passes in double, one block per group), then normalise + affine + activation in one
        sweep. A group whose 1 / std underflows is not refused here (that check needs a sync)."""
        code, s = self._act(act, slope)
        for name, a in (("x", x), ("gamma", gamma), ("beta", beta)):
            self._arr(name, a)
        groups = ref.check_group_norm(x, gamma, beta, groups, self.cp, finite=False)
        if not eps > 0:
            raise ValueError(f"eps: must be > 0, got {eps}")
        n, c, inner, m, per_example = self._group_geometry(x, gamma, groups)
        if m == 0:
            return x.copy(), self.cp.zeros((n, groups), x.dtype), self.cp.ones((n, groups), x.dtype)
        mean = self.cp.empty((n, groups), dtype=x.dtype)
        invstd = self.cp.empty((n, groups), dtype=x.dtype)
        self.k.per_unit("gn_stats", n * groups, x, mean, invstd, _i64(n * groups), _i64(m), _f32(eps))
        y = self.cp.empty_like(x)
        self.k.elementwise("gn_forward", x.size, x, mean, invstd, gamma, beta, y, _i64(x.size), _i64(inner), _i32(c),
                           _i32(groups), per_example, code, s)
        return y, mean, invstd

    def group_norm_backward(self, dy: Any, x: Any, y: Any, gamma: Any, mean: Any, invstd: Any, groups: int,
                            act: str = "identity", slope: float = 0.2) -> Any:
        """Its gradients: per group dz and the two means dx needs (one block per group), dx in one
        sweep, and the affine's gradients (one block per channel, or per example and channel)."""
        code, s = self._act(act, slope)
        for name, a in (("dy", dy), ("x", x), ("y", y), ("gamma", gamma), ("mean", mean), ("invstd", invstd)):
            self._arr(name, a)
        groups = ref.check_group_norm_grad(dy, x, y, gamma, mean, invstd, groups, self.cp, finite=False)
        n, c, inner, m, per_example = self._group_geometry(x, gamma, groups)
        if m == 0:  # nothing to normalise: zero gradients (the kernels below write every entry otherwise)
            return self.cp.zeros_like(x), self.cp.zeros(gamma.shape, x.dtype), self.cp.zeros(gamma.shape, x.dtype)
        dx = self.cp.empty_like(x)
        dgamma = self.cp.empty(gamma.shape, dtype=x.dtype)
        dbeta = self.cp.empty(gamma.shape, dtype=x.dtype)
        dz = self.cp.empty_like(x)
        stats = self.cp.empty(2 * n * groups, dtype=x.dtype)
        self.k.per_unit("gn_backward_group", n * groups, dy, y, x, mean, invstd, gamma, dz, stats, _i64(n * groups),
                        _i64(m), _i64(inner), _i32(c), _i32(groups), per_example, code, s)
        self.k.elementwise("gn_backward_dx", x.size, dz, x, mean, invstd, gamma, stats, dx, _i64(x.size), _i64(inner),
                           _i32(c), _i32(groups), per_example)
        self.k.per_unit("gn_affine_grad", gamma.size, dz, x, mean, invstd, dgamma, dbeta, _i64(gamma.size), _i64(n),
                        _i64(inner), _i32(c), _i32(groups), per_example)
        return dx, dgamma, dbeta

    # -- optimizers --------------------------------------------------------------------------
    def _flat(self, **buffers: Any) -> int:
        n = None
        for name, a in buffers.items():
            self._arr(name, a, 1)
            if n is None:
                n = a.shape[0]
            elif a.shape[0] != n:
                raise ValueError(f"{name}: length {a.shape[0]} differs from param's {n}")
        return int(n or 0)

    def sgd_update(self, param: Any, grad: Any, velocity: Any, lr: float, momentum: float) -> None:
        """Classical momentum, one kernel over the flat buffers."""
        n = self._flat(param=param, grad=grad, velocity=velocity)
        lr, momentum = ref.check_sgd(lr, momentum)
        self.k.elementwise("sgd_momentum", n, param, grad, velocity, _i64(n), _f32(lr), _f32(momentum))

    def adam_update(self, param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float, step: int) -> None:
        """Adam with bias correction, one kernel over the flat buffers."""
        n = self._flat(param=param, grad=grad, m=m, v=v)
        lr, beta1, beta2, eps, step = ref.check_adam(lr, beta1, beta2, eps, step)
        step_size = lr / (1 - beta1**step)
        inv_sqrt_bc2 = 1 / math.sqrt(1 - beta2**step)
        self.k.elementwise("adam", n, param, grad, m, v, _i64(n), _f32(beta1), _f32(beta2), _f32(eps), _f32(step_size), _f32(inv_sqrt_bc2))

    def rmsprop_update(self, param: Any, grad: Any, sq: Any, lr: float, alpha: float, eps: float) -> None:
        """RMSprop, one kernel over the flat buffers."""
        n = self._flat(param=param, grad=grad, sq=sq)
        lr, alpha, eps = ref.check_rmsprop(lr, alpha, eps)
        self.k.elementwise("rmsprop", n, param, grad, sq, _i64(n), _f32(lr), _f32(alpha), _f32(eps))

    # -- Parzen (not an op of the table: a metric's kernel) ------------------------------------
    def parzen_log_sum_exp(self, x: Any, centres: Any, inv_two_var: np.ndarray, block: int = 512) -> np.ndarray:
        """``out[i, s] = log sum_j exp(-|x_i - c_j|^2 * inv_two_var[s])``, blocks of rows at a time."""
        cp = self.cp
        xs, cs = cp.asarray(x, dtype=np.float32), cp.asarray(centres, dtype=np.float32)
        inv = cp.asarray(inv_two_var, dtype=np.float64)
        out = cp.empty((xs.shape[0], inv.shape[0]), dtype=np.float64)
        c_sq = (cs * cs).sum(axis=1)
        for start in range(0, xs.shape[0], block):
            xb = xs[start : start + block]
            d2 = cp.ascontiguousarray((xb * xb).sum(axis=1)[:, None] + c_sq[None, :] - 2 * cp.matmul(xb, cs.T))
            rows = xb.shape[0]
            self.k.function("parzen_lse")((rows,), (BLOCK,), (d2, inv, out[start : start + rows], _i32(cs.shape[0]), _i32(inv.shape[0])))
        return cp.asnumpy(out)


def import_cupy() -> Any:
    """CuPy, with errors that say what is missing: the package, or a device."""
    try:
        import cupy as cp
    except ImportError:
        raise ImportError("name: the 'cupy' backend needs CuPy and a CUDA GPU; install CuPy with pip install 'pygan[gpu]'") from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken: CuPy raises its own runtime errors
        raise RuntimeError(f"name: the 'cupy' backend found CuPy but no usable CUDA device ({e})") from None
    if count < 1:
        raise RuntimeError("name: the 'cupy' backend found CuPy but no CUDA device")
    return cp


def make_backend(cp: Any = None) -> Backend:
    """The cupy backend object; ``cp`` substitutes an array module (tests pass a stand-in)."""
    cp = import_cupy() if cp is None else cp
    ops = CupyOps(cp)
    table = {op: getattr(ops, op) for op in OPS}
    table["parzen_log_sum_exp"] = ops.parzen_log_sum_exp
    try:
        device = cp.cuda.runtime.getDeviceProperties(0)["name"]
        device = device.decode() if isinstance(device, bytes) else str(device)
    except Exception:
        device = "device 0"
    return Backend(name="cupy", xp=cp, ops=table, native=frozenset(OPS), details=f"CuPy {getattr(cp, '__version__', '?')} on {device}")
