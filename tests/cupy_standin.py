"""A stand-in for CuPy: NumPy arrays marked as "device" arrays, kernels that check every launch
against the signature parsed from the .cu source and then run the kernel's own source compiled for the
CPU (cuda_on_cpu.py), checked against a NumPy emulation of that kernel, and counters for every
host<->device transfer. It lets the cupy backend's Python logic (shapes,
layouts, launch geometry, argument types, transfers) be tested on a machine without a GPU."""

from __future__ import annotations

import collections
import re
import time
import types
from pathlib import Path

import numpy as np

from pygan.backend import reference as ref
from pygan.backend.cupy import BLOCK, KERNEL_FILES, MAX_GRID, cuda_source_dir


class DeviceArray(np.ndarray):
    """A NumPy array standing for GPU memory; implicit host reads are counted."""

    owner: "StandIn | None" = None

    def _sync(self):
        StandIn.current.syncs += 1

    def get(self):
        StandIn.current.downloads += 1
        return np.array(self).view(np.ndarray)

    def __float__(self):
        self._sync()
        return float(np.asarray(self).view(np.ndarray))

    def __bool__(self):
        self._sync()
        return bool(np.asarray(self).view(np.ndarray))

    def item(self, *a):
        self._sync()
        return np.asarray(self).view(np.ndarray).item(*a)

    def tolist(self):
        self._sync()
        return np.asarray(self).view(np.ndarray).tolist()


def parse_signatures() -> dict[str, list[str]]:
    """Kernel name -> parameter kinds (f32*, f64*, i64, i32, f32) from the .cu sources."""
    sigs = {}
    for f in KERNEL_FILES:
        src = (cuda_source_dir() / f).read_text()
        for name, params in re.findall(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", src):
            kinds = []
            for p in params.split(","):
                p = " ".join(p.split())
                if "*" in p:
                    kinds.append("f64*" if "double" in p else "f32*")
                elif p.startswith("long long"):
                    kinds.append("i64")
                elif p.startswith("int"):
                    kinds.append("i32")
                elif p.startswith("float"):
                    kinds.append("f32")
                else:
                    raise AssertionError(f"{f}: {name}: unknown parameter type {p!r}")
            sigs[name] = kinds
    return sigs


SIGNATURES = parse_signatures()
#: Threads (grid x block) up to which a kernel with barriers runs from its source on the CPU (its
#: block's threads are coroutines there, about a microsecond a switch); larger launches of it, such as
#: a batch norm over 6,272 features, run the emulation alone.
COOPERATIVE_BUDGET = 1 << 16


def _act(z, act, slope):
    return [z, np.maximum(z, 0), np.where(z > 0, z, slope * z), np.tanh(z), 1 / (1 + np.exp(-z))][act].astype(np.float32)


def _act_grad(dy, y, act, slope):
    return [dy, np.where(y > 0, dy, 0), np.where(y > 0, dy, dy * slope), dy * (1 - y * y), dy * y * (1 - y)][act].astype(np.float32)


def _chan_view(a, inner, channels):
    return a.reshape(-1, channels, inner)


def _im2col_index(n, c, h, w, k, stride, pad, ho, wo):
    """For every cols entry: the flat index into x, or -1 for padding (the kernel's arithmetic)."""
    spatial, ncols = ho * wo, n * ho * wo
    i = np.arange(c * k * k * ncols)
    col, row = i % ncols, i // ncols
    kj, ki, ch = row % k, (row // k) % k, row // (k * k)
    img, oh, ow = col // spatial, (col % spatial) // wo, col % wo
    ih, iw = oh * stride - pad + ki, ow * stride - pad + kj
    ok = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
    return np.where(ok, ((img * c + ch) * h + ih) * w + iw, -1)


def _igemm_operand(src, gather, n, c, sh, sw, oh, ow, k, stride, pad):
    """conv_igemm.cu's gathered operand (c k k, n oh ow) of ``src``, by the kernel's arithmetic."""
    r, col = np.arange(c * k * k)[:, None], np.arange(n * oh * ow)[None]
    ch, ki, kj = r // (k * k), (r % (k * k)) // k, r % k
    img, y, x = col // (oh * ow), (col % (oh * ow)) // ow, col % ow
    if gather == 0:
        iy, ix, ok = y * stride - pad + ki, x * stride - pad + kj, True
    else:
        ty, tx = y + pad - ki, x + pad - kj
        ok = (ty >= 0) & (tx >= 0) & (ty % stride == 0) & (tx % stride == 0)
        iy, ix = ty // stride, tx // stride
    ok = ok & (iy >= 0) & (iy < sh) & (ix >= 0) & (ix < sw)
    idx = ((img * c + ch) * sh + iy) * sw + ix
    return np.where(ok, np.asarray(src).view(np.ndarray).reshape(-1)[np.where(ok, idx, 0)], 0).astype(np.float64)


def _planes(a, h, w):
    return a.reshape(-1, 1, h, w)


#: The resampling and padding kernels (src, dst, total, *geometry), emulated by the reference ops on
#: one-channel planes.
SPATIAL = {
    "upsample2x": lambda x, h, w, mode: ref.upsample2x_forward(_planes(x, h, w), ref.UPSAMPLE_MODES[mode]),
    "upsample2x_adjoint": lambda dy, h, w, mode: ref.upsample2x_backward(_planes(dy, 2 * h, 2 * w), ref.UPSAMPLE_MODES[mode]),
    "avg_pool": lambda x, h, w, k: ref.avg_pool2d_forward(_planes(x, h, w), k),
    "avg_pool_adjoint": lambda dy, h, w, k: ref.avg_pool2d_backward(_planes(dy, h // k, w // k), k, h, w),
    "pixel_shuffle": lambda x, c, h, w, r: ref.pixel_shuffle_forward(x.reshape(-1, c * r * r, h, w), r),
    "pixel_unshuffle": lambda dy, c, h, w, r: ref.pixel_shuffle_backward(dy.reshape(-1, c, h * r, w * r), r),
    "reflection_pad": lambda x, h, w, p: ref.reflection_pad2d_forward(_planes(x, h, w), p),
    "reflection_pad_adjoint": lambda dy, h, w, p: ref.reflection_pad2d_backward(_planes(dy, h + 2 * p, w + 2 * p), p),
}


def _group_view(x, mean, invstd, affine, inner, ch, groups, per_example):
    """x as (N, C, inner) and its group statistics and affine broadcast against it."""
    xv = x.reshape(-1, ch, inner)
    n = xv.shape[0]
    gid = np.arange(ch) // (ch // groups)
    mu, inv = (v.reshape(n, groups)[:, gid][..., None] for v in (mean, invstd))
    aff = affine.reshape(n, ch)[..., None] if per_example else affine.reshape(1, ch, 1)
    return xv, mu, inv, aff


def emulate(name, grid, a):
    """Run kernel ``name`` with arguments ``a`` in NumPy, following its CUDA code."""
    f = lambda x: np.asarray(x).view(np.ndarray)  # noqa: E731
    if name == "bias_act":
        z, b, has_bias, total, inner, ch, act, slope = a
        zz = f(z).reshape(-1)
        if has_bias:
            zz += np.repeat(np.tile(f(b), total // (inner * ch)), inner)
        zz[...] = _act(zz, act, slope)
    elif name == "act_grad_bias_grad":
        dy, y, dz, db, count, inner, ch, act, slope = a
        assert grid == (ch,), "one block per channel"
        g = _act_grad(f(dy), f(y), act, slope)
        f(dz)[...] = g
        f(db)[...] = _chan_view(g, inner, ch).sum(axis=(0, 2))
    elif name == "act_grad_bias_grad_rows":
        dy, y, dz, db, rows, ch, act, slope = a
        assert grid == (-(-ch // 32),), "32 columns per block"
        g = _act_grad(f(dy), f(y), act, slope)
        f(dz)[...] = g
        f(db)[...] = g.reshape(rows, ch).sum(axis=0)
    elif name == "act_forward":
        x, y, total, act, slope = a
        f(y)[...] = _act(f(x), act, slope)
    elif name == "act_backward":
        dy, y, dx, total, act, slope = a
        f(dx)[...] = _act_grad(f(dy), f(y), act, slope)
    elif name == "bn_stats":
        x, mean, var, count, inner, ch = a
        assert grid == (ch,)
        xv = _chan_view(f(x), inner, ch)
        m = xv.mean(axis=(0, 2))
        f(mean)[...] = m
        f(var)[...] = ((xv - m[None, :, None]) ** 2).mean(axis=(0, 2))
    elif name == "bn_forward":
        x, mean, invstd, gamma, beta, y, total, inner, ch, act, slope = a
        sh = lambda v: f(v)[None, :, None]  # noqa: E731
        xv = _chan_view(f(x), inner, ch)
        f(y)[...] = _act(sh(gamma) * (xv - sh(mean)) * sh(invstd) + sh(beta), act, slope).reshape(f(y).shape)
    elif name == "bn_backward_reduce":
        dy, y, x, mean, invstd, dz, dgamma, dbeta, count, inner, ch, act, slope = a
        assert grid == (ch,)
        g = _act_grad(f(dy), f(y), act, slope)
        f(dz)[...] = g
        gv, xv = _chan_view(g, inner, ch), _chan_view(f(x), inner, ch)
        f(dbeta)[...] = gv.sum(axis=(0, 2))
        f(dgamma)[...] = (gv * (xv - f(mean)[None, :, None]) * f(invstd)[None, :, None]).sum(axis=(0, 2))
    elif name == "bn_backward_dx":
        dz, x, mean, invstd, gamma, dgamma, dbeta, dx, total, inner, ch, count, training = a
        sh = lambda v: f(v)[None, :, None]  # noqa: E731
        dzv, xv = _chan_view(f(dz), inner, ch), _chan_view(f(x), inner, ch)
        scale = sh(gamma) * sh(invstd)
        if training:
            xhat = (xv - sh(mean)) * sh(invstd)
            out = scale * (dzv - sh(dbeta) / count - xhat * sh(dgamma) / count)
        else:
            out = scale * dzv
        f(dx)[...] = out.reshape(f(dx).shape)
    elif name == "im2col":
        x, cols, *geo = a
        idx = _im2col_index(*geo)
        src = f(x).reshape(-1)
        f(cols).reshape(-1)[...] = np.where(idx >= 0, src[np.maximum(idx, 0)], 0)
    elif name == "col2im":
        cols, x, *geo = a
        idx = _im2col_index(*geo)
        out = np.zeros(f(x).size, np.float64)
        np.add.at(out, idx[idx >= 0], f(cols).reshape(-1)[idx >= 0])
        f(x).reshape(-1)[...] = out
    elif name == "conv_igemm":
        w, src, bias, out, m, n, c, sh, sw, oh, ow, k, stride, pad, a_row, a_chan, gather, has_bias, act, slope = a
        r = np.arange(c * k * k)
        amat = f(w).reshape(-1)[np.arange(m)[:, None] * a_row + (r // (k * k))[None] * a_chan + (r % (k * k))[None]]
        z = amat.astype(np.float64) @ _igemm_operand(src, gather, n, c, sh, sw, oh, ow, k, stride, pad)
        if has_bias:
            z += f(bias)[:, None]
        f(out)[...] = _act(z.reshape(m, n, oh, ow).transpose(1, 0, 2, 3), act, slope)
    elif name == "conv_wgrad_igemm":
        d, src, part, m, n, c, sh, sw, oh, ow, k, stride, pad, splits = a
        g = _igemm_operand(src, 0, n, c, sh, sw, oh, ow, k, stride, pad)
        dm = f(d).reshape(n, m, oh * ow).transpose(1, 0, 2).reshape(m, -1).astype(np.float64)
        chunk = -(-dm.shape[1] // splits)
        for sp in range(splits):
            cols = slice(sp * chunk, min((sp + 1) * chunk, dm.shape[1]))
            f(part)[sp] = dm[:, cols] @ g[:, cols].T
    elif name == "sgd_momentum":
        p, g, v, n, lr, mom = a
        f(v)[...] = mom * f(v) - lr * f(g)
        f(p)[...] += f(v)
    elif name == "adam":
        p, g, m, v, n, b1, b2, eps, step_size, inv = a
        f(m)[...] = b1 * f(m) + (1 - b1) * f(g)
        f(v)[...] = b2 * f(v) + (1 - b2) * f(g) ** 2
        f(p)[...] -= step_size * f(m) / (np.sqrt(f(v)) * inv + eps)
    elif name == "rmsprop":
        p, g, s, n, lr, alpha, eps = a
        f(s)[...] = alpha * f(s) + (1 - alpha) * f(g) ** 2
        f(p)[...] -= lr * f(g) / (np.sqrt(f(s)) + eps)
    elif name == "parzen_lse":
        d2, inv, out, m, nsig = a
        rows = f(d2).reshape(-1, m).astype(np.float64)
        assert grid == (rows.shape[0],)
        dmin = np.maximum(rows.min(axis=1, keepdims=True), 0)
        for s in range(nsig):
            w = f(inv)[s]
            f(out)[:, s] = -dmin[:, 0] * w + np.log(np.exp(-(np.maximum(rows, dmin) - dmin) * w).sum(axis=1))
    elif name in SPATIAL:
        src, dst, total, *geo = a
        f(dst)[...] = SPATIAL[name](f(src), *geo).reshape(f(dst).shape)
    elif name == "gn_stats":
        x, mean, invstd, units, m, eps = a
        xv = f(x).reshape(units, m).astype(np.float64)
        mu = xv.mean(axis=1)
        f(mean).reshape(-1)[...] = mu
        f(invstd).reshape(-1)[...] = 1 / np.sqrt(((xv - mu[:, None]) ** 2).mean(axis=1) + np.float64(eps))
    elif name == "gn_forward":
        x, mean, invstd, gamma, beta, y, total, inner, ch, groups, per_example, act, slope = a
        xv, mu, inv, gam = _group_view(f(x), f(mean), f(invstd), f(gamma), inner, ch, groups, per_example)
        _, _, _, bet = _group_view(f(x), f(mean), f(invstd), f(beta), inner, ch, groups, per_example)
        f(y)[...] = _act(((xv - mu) * inv) * gam + bet, act, slope).reshape(f(y).shape)
    elif name == "gn_backward_group":
        dy, y, x, mean, invstd, gamma, dz, stats, units, m, inner, ch, groups, per_example, act, slope = a
        g = _act_grad(f(dy), f(y), act, slope)
        f(dz)[...] = g
        xv, mu, inv, gam = _group_view(f(x), f(mean), f(invstd), f(gamma), inner, ch, groups, per_example)
        dxhat = (g.reshape(xv.shape) * gam).reshape(units, m).astype(np.float64)
        xhat = ((xv - mu) * inv).reshape(units, m)
        f(stats)[0::2] = dxhat.mean(axis=1)
        f(stats)[1::2] = (dxhat * xhat).mean(axis=1)
    elif name == "gn_backward_dx":
        dz, x, mean, invstd, gamma, stats, dx, total, inner, ch, groups, per_example = a
        xv, mu, inv, gam = _group_view(f(x), f(mean), f(invstd), f(gamma), inner, ch, groups, per_example)
        n = xv.shape[0]
        md = f(stats)[0::2].reshape(n, groups)[:, np.arange(ch) // (ch // groups)][..., None]
        mdx = f(stats)[1::2].reshape(n, groups)[:, np.arange(ch) // (ch // groups)][..., None]
        out = inv * (f(dz).reshape(xv.shape) * gam - md - ((xv - mu) * inv) * mdx)
        f(dx)[...] = out.reshape(f(dx).shape)
    elif name == "gn_affine_grad":
        dz, x, mean, invstd, dgamma, dbeta, units, rows, inner, ch, groups, per_example = a
        xv, mu, inv, _ = _group_view(f(x), f(mean), f(invstd), f(dgamma), inner, ch, groups, per_example)
        g = f(dz).reshape(xv.shape).astype(np.float64)
        dg, db = (g * ((xv - mu) * inv)).sum(axis=2), g.sum(axis=2)
        f(dgamma).reshape(-1)[...] = dg.reshape(-1) if per_example else dg.sum(axis=0)
        f(dbeta).reshape(-1)[...] = db.reshape(-1) if per_example else db.sum(axis=0)
    else:
        raise AssertionError(f"no emulation for kernel {name}")


class Kernel:
    def __init__(self, standin, name):
        self.standin, self.name = standin, name

    def __call__(self, grid, block, args):
        sig = SIGNATURES[self.name]
        assert len(args) == len(sig), f"{self.name}: {len(args)} arguments, the kernel takes {len(sig)}"
        for i, (kind, v) in enumerate(zip(sig, args)):
            if kind.endswith("*"):
                assert isinstance(v, DeviceArray), f"{self.name} arg {i}: expected a device array, got {type(v)}"
                assert v.dtype == (np.float64 if kind == "f64*" else np.float32), f"{self.name} arg {i}: dtype {v.dtype}"
                assert v.flags.c_contiguous, f"{self.name} arg {i}: not contiguous"
            else:
                want = {"i64": np.int64, "i32": np.int32, "f32": np.float32}[kind]
                assert type(v) is want, f"{self.name} arg {i}: expected {want.__name__}, got {type(v).__name__}"
        assert block == (BLOCK,) and 1 <= grid[0] <= MAX_GRID, f"{self.name}: launch {grid} x {block}"
        self.standin.launches.append((self.name, grid, block))
        real = self.standin.cpu_kernels
        if real is None or (real.cooperative(self.name) and grid[0] * block[0] > COOPERATIVE_BUDGET):
            emulate(self.name, grid, args)
            return
        self.standin.real_runs[self.name] += 1
        # the kernel's own source runs on the arguments; the emulation, on copies, must agree with it
        shared: dict = {}  # arguments that are one buffer (a kernel told to ignore one) stay one copy
        copies = [shared.setdefault((a.ctypes.data, a.nbytes), np.array(a).view(DeviceArray))
                  if isinstance(a, DeviceArray) else a for a in args]
        emulate(self.name, grid, copies)
        real.run(self.name, grid[0], block[0], args)
        for i, (got, want) in enumerate(zip(args, copies)):
            if isinstance(got, DeviceArray):
                g, w = np.asarray(got).view(np.ndarray), np.asarray(want).view(np.ndarray)
                scale = np.maximum(np.abs(w), 1.0)
                bad = ~((np.abs(g - w) <= 2e-5 * scale) | (np.isnan(g) & np.isnan(w)))
                assert not bad.any(), (f"{self.name} arg {i}: the CUDA source run on the CPU and the emulation differ "
                                       f"at {np.argwhere(bad)[:3].tolist()}: {g[bad][:3]} vs {w[bad][:3]}")


class Module:
    def __init__(self, standin, code, options=()):
        self.standin = standin
        self.names = set(re.findall(r"__global__\s+void\s+(\w+)", code))
        assert any(o.startswith("-I") for o in options)

    def get_function(self, name):
        assert name in self.names, f"kernel {name} is not in this module"
        return Kernel(self.standin, name)


class Event:
    """A CUDA event: the host clock when recorded (the stand-in device runs synchronously)."""

    at = 0.0

    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


class StandIn(types.ModuleType):
    """The stand-in ``cupy`` module."""

    current: "StandIn"
    ndarray = DeviceArray

    def __init__(self):
        super().__init__("cupy")
        self.launches: list = []
        # the CUDA sources compiled for the CPU (tests/cuda_on_cpu.py), where g++ is present
        from cuda_on_cpu import build

        self.cpu_kernels = build(SIGNATURES)
        self.real_runs: collections.Counter = collections.Counter()  # launches run from the CUDA source
        self.uploads = self.downloads = self.syncs = 0
        self.__version__ = "stand-in"
        self.cuda = types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"stand-in"}),
            Event=Event, get_elapsed_time=lambda start, end: 1e3 * (end.at - start.at),
        )
        StandIn.current = self

    def RawModule(self, code, options=()):  # noqa: N802 - CuPy's name
        return Module(self, code, options)

    def _dev(self, a):
        return a.view(DeviceArray) if isinstance(a, np.ndarray) and not isinstance(a, DeviceArray) else a

    def asarray(self, a, dtype=None):
        if isinstance(a, DeviceArray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        self.uploads += 1
        return np.array(a, dtype=dtype).view(DeviceArray)

    def asnumpy(self, a):
        self.downloads += 1
        return np.array(a).view(np.ndarray)

    def __getattr__(self, name):
        obj = getattr(np, name)
        if not callable(obj) or isinstance(obj, type):
            return obj

        def wrapped(*args, **kwargs):
            out = obj(*args, **kwargs)
            if isinstance(out, tuple):
                return tuple(self._dev(o) for o in out)
            return self._dev(out)

        return wrapped


def device(a):
    """Put a host array on the stand-in device (without counting it as an upload by the code under test)."""
    return np.array(a).view(DeviceArray)


def host(a):
    return np.array(a).view(np.ndarray)


__all__ = ["DeviceArray", "StandIn", "device", "host", "SIGNATURES", "Path"]
