"""Nothing crashes, nothing is lost: fuzzing of the public ops, layers and losses on the cpu backend
against the reference, concurrency, divergence, and SIGKILL during checkpoint writes."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pygan
from pygan import data, io, losses
from pygan.backend import load_backend
from pygan.gan import GAN, TrainingDiverged
from pygan.models import mlp_discriminator, mlp_generator
from pygan.optim import Adam

from helpers import cli_error

#: Cases the fuzzers ran, reported at the end of the session (see conftest.py).
FUZZ_CASES = {"ops": 0, "matched the reference": 0, "clear errors": 0, "checkpoint files": 0, "command lines": 0}

#: float32 as NumPy's object and as an equal one that went through pickle; big-endian float32 (refused)
DTYPES = [np.float16, np.float32, pickle.loads(pickle.dumps(np.dtype(np.float32))), np.dtype(">f4"), np.float64, np.int32]
LAYOUTS = ["contiguous", "transposed", "negative strides", "unaligned", "list"]
#: one element NaN, +-Inf, +-1e30 (its square and sums of squares overflow float32) or a few
#: denormal (read as zero by the kernels). (At +-3e38 single products overflow too, and which
#: intermediate reaches infinity first depends on the order of operations, not on a bug.)
SPECIALS = ["none", "nan", "inf", "huge", "denormal"]
TINY = np.finfo(np.float32).tiny


def make_array(draw, shape, dtype, layout, special, rng):
    base = rng.standard_normal(shape) * 2
    if special != "none" and base.size and np.dtype(dtype).kind == "f":
        i = int(rng.integers(base.size))
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if special == "denormal":
            base.flat[:: max(1, base.size // 3)] = sign * TINY / 4
        else:
            base.flat[i] = {"nan": np.nan, "inf": sign * np.inf, "huge": sign * 1e30}[special]
    with np.errstate(over="ignore"):  # 3e38 is +-inf in float16
        a = base.astype(dtype) if np.dtype(dtype).kind == "f" else np.clip(base, -9, 9).astype(dtype)
    if layout == "transposed" and a.ndim >= 2:
        a = np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    elif layout == "negative strides" and a.ndim >= 1:
        a = np.ascontiguousarray(a[::-1])[::-1]
    elif layout == "unaligned" and a.size:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        u = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        a = u
    elif layout == "list":
        return a.tolist()
    return a


ARG_NAMES = re.compile(r"^(\w+)[:\[]")


def check_case(op, args, kwargs, arg_names):
    """The cpu op either matches the reference or raises a clear error naming an argument."""
    cpu, ref = load_backend("cpu"), load_backend("numpy")
    FUZZ_CASES["ops"] += 1
    copies = lambda: [a.copy() if isinstance(a, np.ndarray) else a for a in args]  # noqa: E731
    try:
        with np.errstate(all="ignore"):  # NaN/Inf inputs may propagate: compared below, not warned about
            got = getattr(cpu, op)(*copies(), **kwargs)
    except (TypeError, ValueError) as e:
        m = ARG_NAMES.match(str(e))
        assert m and m.group(1) in arg_names, f"{op}: unclear error {e!r}"
        FUZZ_CASES["clear errors"] += 1
        return
    with np.errstate(all="ignore"):
        want = getattr(ref, op)(*copies(), **kwargs)
    FUZZ_CASES["matched the reference"] += 1
    for g, w in zip(_flatten(got), _flatten(want)):
        if w is None:
            assert g is None
            continue
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert g.shape == w.shape, op
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-3, equal_nan=True, err_msg=op)


def check_loss(fn, args, arg_names):
    """A loss (a function on logits, run through the tape on the cpu backend) either matches its
    value and gradient on the reference backend or raises a clear error naming an argument."""
    FUZZ_CASES["ops"] += 1
    results = []
    for backend in ("cpu", "numpy"):
        with pygan.use_backend(backend), np.errstate(all="ignore"):
            first = args[0]
            if isinstance(first, np.ndarray) and first.dtype.kind == "f":
                first = pygan.Tensor(first.copy(), requires_grad=True)
            try:
                loss = fn(first, *args[1:])
            except (TypeError, ValueError) as e:
                m = ARG_NAMES.match(str(e))
                assert m and m.group(1) in arg_names, f"{fn.__name__}: unclear error {e!r}"
                FUZZ_CASES["clear errors"] += 1
                return
            grads = pygan.grad(loss, [first]) if isinstance(first, pygan.Tensor) else ()
            results.append([loss.numpy(), *(g.numpy() for g in grads)])
    FUZZ_CASES["matched the reference"] += 1
    for g, w in zip(*results):
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=2e-3, atol=2e-3,
                                   equal_nan=True, err_msg=fn.__name__)


def _flatten(v):
    return list(v) if isinstance(v, tuple) else [v]


dims = st.integers(0, 7)
case = st.fixed_dictionaries(
    {"dtype": st.sampled_from(DTYPES), "layout": st.sampled_from(LAYOUTS), "special": st.sampled_from(SPECIALS),
     "target": st.integers(0, 3), "seed": st.integers(0, 2**31 - 1)}
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def arrays(shapes, c, draw=None):
    """Arrays of ``shapes``; the case's dtype/layout/special value go to one of them (``target``)."""
    rng = np.random.default_rng(c["seed"])
    out = []
    for i, shape in enumerate(shapes):
        hit = i == c["target"] % len(shapes)
        out.append(make_array(draw, shape, c["dtype"] if hit else np.float32, c["layout"] if hit else "contiguous",
                              c["special"] if hit else "none", rng))
    return out


@FUZZ
@given(n=dims, k=dims, m=dims, c=case, act=st.sampled_from(["identity", "relu", "leaky_relu", "tanh", "sigmoid"]),
       bias=st.booleans(), mismatch=st.integers(0, 3))
def test_fuzz_dense(n, k, m, c, act, bias, mismatch):
    shapes = [(n, k), (k + (mismatch == 1), m), (m + (mismatch == 2),), (n, m)]
    x, w, b, dy = arrays(shapes, c)
    check_case("dense_forward", [x, w, b if bias else None, act], {}, {"x", "w", "b"})
    if isinstance(x, np.ndarray) and isinstance(w, np.ndarray) and x.dtype == w.dtype == np.float32 and x.shape[1:] == w.shape[:1]:
        y = load_backend("numpy").dense_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), None, act)
        check_case("dense_backward", [dy, x, w, y, act], {}, {"dy", "x", "w", "y"})


@FUZZ
@given(n=st.integers(0, 3), c_in=st.integers(0, 3), h=st.integers(0, 7), k=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), c=case)
def test_fuzz_conv_and_batch_norm(n, c_in, h, k, stride, pad, c):
    x, w, b, g = arrays([(n, c_in, h, h + 1), (2, c_in, k, k), (2,), (c_in,)], c)
    check_case("conv2d_forward", [x, w, b, stride, pad, "relu"], {}, {"x", "w", "b", "stride", "padding"})
    wt = arrays([(c_in, 2, k, k)], dict(c, target=0))[0]
    check_case("conv_transpose2d_forward", [x, wt, None, stride, pad], {}, {"x", "w", "padding", "output_padding"})
    rm, rv = np.zeros(c_in, np.float32), np.ones(c_in, np.float32)
    check_case("batch_norm_forward", [x, g, g, rm, rv], {}, {"x", "gamma", "beta", "running_mean", "running_var"})
    # backward ops: run the forward on clean float32 copies, then feed the case's arrays to the backward
    ok = all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in (x, w)) and x.shape[1:2] == w.shape[1:2]
    if ok and min(x.shape[2:]) + 2 * pad >= k and x.size:
        ref = load_backend("numpy")
        try:
            with np.errstate(all="ignore"):
                y = ref.conv2d_forward(np.array(x), np.nan_to_num(np.array(w)), None, stride, pad, "relu")
        except ValueError:  # no output for this geometry: the forward fuzz above covered it
            y = np.zeros((0, 0, 0, 0), np.float32)
    if ok and min(x.shape[2:]) + 2 * pad >= k and x.size and y.size:
        dy = arrays([y.shape], dict(c, target=0))[0]
        check_case("conv2d_backward", [dy, x, w, y, stride, pad, "relu"], {}, {"dy", "x", "w", "y", "stride", "padding"})
        xt = np.ascontiguousarray(y)
        try:
            with np.errstate(all="ignore"):
                yt = ref.conv_transpose2d_forward(xt, np.nan_to_num(np.array(w)), None, stride, pad, 0, "tanh")
        except ValueError:
            yt = None
        if yt is not None:
            dyt = arrays([yt.shape], dict(c, target=0))[0]
            check_case("conv_transpose2d_backward", [dyt, xt, w, yt, stride, pad, 0, "tanh"], {},
                       {"dy", "x", "w", "y", "stride", "padding", "output_padding"})
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 4 and x.shape[1] and x.shape[0] * x.shape[2] * x.shape[3] > 1:
        ref = load_backend("numpy")
        cc = x.shape[1]
        ones, zeros = np.ones(cc, np.float32), np.zeros(cc, np.float32)
        with np.errstate(all="ignore"):
            y, mean, invstd = ref.batch_norm_forward(np.array(x), ones, zeros, zeros.copy(), ones.copy(), True, act="relu")
        check_case("batch_norm_backward", [x, x, y, ones, mean, invstd, True, "relu"], {},
                   {"dy", "x", "y", "gamma", "mean", "invstd"})


@FUZZ
@given(n=dims, f=dims, c=case, pieces=st.integers(0, 3), p=st.sampled_from([0.0, 0.5, 1.0, -0.1, float("nan")]))
def test_fuzz_elementwise_losses_and_optimizers(n, f, c, pieces, p):
    x, y, t = arrays([(n, f), (n, f), (n, f)], c)
    check_case("activation_forward", [x, "tanh"], {}, {"x", "act"})
    check_case("activation_backward", [x, y, "sigmoid"], {}, {"dy", "y"})
    check_case("maxout_forward", [x, pieces], {}, {"x", "pieces"})
    idx = np.zeros((n, f), np.int32)
    check_case("maxout_backward", [y, idx, max(pieces, 1)], {}, {"dy", "index", "pieces"})
    check_case("dropout_forward", [x, p], {"seed": 1}, {"x", "p"})
    check_case("dropout_backward", [x, y], {}, {"dy", "mask"})
    check_loss(losses.bce_with_logits, [x, t], {"logits", "targets"})
    check_loss(losses.discriminator_loss, [x, t, 0.9], {"real_logits", "fake_logits", "real_target"})
    for kind in ("minimax", "non_saturating", "maximum_likelihood"):
        check_loss(losses.generator_loss, [x, kind], {"fake_logits", "kind"})
    flat = arrays([(n * f,)] * 4, c)
    if isinstance(flat[3], np.ndarray) and flat[3].dtype.kind == "f":
        flat[3] = np.abs(flat[3])  # Adam's second moment is never negative
    check_case("sgd_update", [flat[0], flat[1], flat[2], 0.1, 0.9], {}, {"param", "grad", "velocity"})
    check_case("adam_update", [*flat, 1e-3, 0.5, 0.999, 1e-8, 1], {}, {"param", "grad", "m", "v"})


GEOMETRY = st.one_of(st.integers(0, 3), st.sampled_from([7, 1 << 20, (1 << 20) + 1, 10**30, -1]))


@FUZZ
@given(n=st.integers(0, 3), ch=st.integers(0, 5), h=st.integers(0, 6), c=case, stride=GEOMETRY, pad=GEOMETRY,
       k=st.integers(1, 3), r=st.sampled_from([0, 1, 2, 3, 10**9]), mode=st.sampled_from(["nearest", "bilinear", "cubic"]))
def test_fuzz_spatial_ops_and_geometry(n, ch, h, c, stride, pad, k, r, mode):
    """The spatial ops of the GAN family, and convolutions at extreme strides and paddings: equal
    to the reference or refused by name, with cost and memory that follow the output."""
    x, w, g = arrays([(n, ch, h, h + 1), (2, ch, k, k), (ch,)], c)
    check_case("conv2d_forward", [x, w, None, stride, pad], {}, {"x", "w", "stride", "padding"})
    wt = arrays([(ch, 2, k, k)], dict(c, target=0))[0]
    check_case("conv_transpose2d_forward", [x, wt, None, stride, pad], {}, {"x", "w", "stride", "padding", "output_padding"})
    check_case("upsample2x_forward", [x, mode], {}, {"x", "mode"})
    check_case("upsample2x_backward", [x, mode], {}, {"dy", "mode"})
    check_case("avg_pool2d_forward", [x, r], {}, {"x", "k"})
    check_case("avg_pool2d_backward", [x, r, h * max(r, 1), (h + 1) * max(r, 1)], {}, {"dy", "k", "height", "width"})
    check_case("avg_pool2d_backward", [x, 2, 10**9, 10**9], {}, {"dy", "k", "height", "width"})
    check_case("pixel_shuffle_forward", [x, r], {}, {"x", "r"})
    check_case("pixel_shuffle_backward", [x, r], {}, {"dy", "r"})
    check_case("reflection_pad2d_forward", [x, pad], {}, {"x", "padding"})
    check_case("reflection_pad2d_backward", [x, pad], {}, {"dy", "padding"})
    groups = max(1, ch)
    check_case("group_norm_forward", [x, g, g, groups], {"act": "relu"}, {"x", "gamma", "beta", "groups"})
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 4 and x.size and ch:
        ones, zeros = np.ones(ch, np.float32), np.zeros(ch, np.float32)
        with np.errstate(all="ignore"):
            try:
                y, mean, invstd = load_backend("numpy").group_norm_forward(np.ascontiguousarray(x), ones, zeros, groups,
                                                                           act="leaky_relu")
            except ValueError:  # statistics beyond float32: the forward fuzz above covered it
                return
        check_case("group_norm_backward", [x, x, y, ones, mean, invstd, groups, "leaky_relu"], {},
                   {"dy", "x", "y", "gamma", "mean", "invstd", "groups"})


#: How an op's output buffer can overlap another of its arguments.
OVERLAPS = ["same array", "view", "reversed view", "shifted view", "separate"]


def check_overlap(op, args, kwargs, arg_names):
    """With overlapping buffers every backend refuses the call by name (the buffers are passed as
    they are: a copy would undo the overlap) and leaves them unchanged."""
    FUZZ_CASES["ops"] += 1
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    for name in ("cpu", "numpy"):
        with pytest.raises(ValueError, match="shares memory with") as e:
            getattr(load_backend(name), op)(*args, **kwargs)
        m = ARG_NAMES.match(str(e.value))
        assert m and m.group(1) in arg_names, f"{op}: unclear error {e.value!r}"
    for a, b in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    FUZZ_CASES["clear errors"] += 1


@FUZZ
@given(size=st.integers(1, 40), overlap=st.sampled_from(OVERLAPS), which=st.integers(0, 3), seed=st.integers(0, 2**31 - 1),
       lr=st.sampled_from([0.1, 0.0, -0.1, float("nan"), 1e39, "0.1", None]))
def test_fuzz_overlapping_buffers_and_optimizer_scalars(size, overlap, which, seed, lr):
    """Output buffers that overlap an input (or each other) are refused by name on every backend,
    never computed wrong; optimizer scalars of any kind are checked by name."""
    rng = np.random.default_rng(seed)
    flat = [np.abs(rng.standard_normal(size)).astype(np.float32) for _ in range(4)]
    other = (which + 1) % 4
    if overlap == "same array":
        flat[which] = flat[other]
    elif overlap == "view":
        flat[which] = flat[other][:]
    elif overlap == "reversed view":
        flat[which] = flat[other][::-1]
    elif overlap == "shifted view" and size > 1:
        buf = np.abs(rng.standard_normal(size + 1)).astype(np.float32)
        flat[which], flat[other] = buf[1:], buf[:-1]
    overlapping = overlap != "separate" and not (overlap == "shifted view" and size == 1)
    names = {"param", "grad", "velocity", "m", "v", "sq", "lr"}
    calls = [("sgd_update", [flat[0], flat[1], flat[2], lr, 0.9], names | {"momentum"}, {0, 1, 2}),
             ("adam_update", [*flat, lr, 0.5, 0.999, 1e-8, 1], names | {"beta1", "beta2", "eps", "step"}, {0, 1, 2, 3}),
             ("rmsprop_update", [flat[0], flat[1], flat[2], lr, 0.9, 1e-8], names | {"alpha", "eps"}, {0, 1, 2})]
    for op, args, arg_names, used in calls:
        if overlapping and {which, other} <= used and not (overlap == "reversed view" and which == 1 or other == 1 and overlap == "reversed view"):
            check_overlap(op, args, {}, arg_names)
        elif not overlapping or not {which, other} <= used:
            check_case(op, args, {}, arg_names)
    x, w = rng.standard_normal((3, size)).astype(np.float32), rng.standard_normal((size, size)).astype(np.float32)
    y = load_backend("numpy").dense_forward(x, w, None, "relu")
    if overlapping:
        dw = {0: w, 1: w[::-1], 2: np.zeros(size * size + 3, np.float32)[3:].reshape(size, size), 3: None}[which]
        if which == 2:  # dw and db in one buffer
            db = dw.reshape(-1)[:size]
        else:
            db = None
        if dw is not None and (db is not None or which < 2):
            check_overlap("dense_backward", [y, x, w, y, "relu"], {"param_grads": (dw, db)}, {"param_grads"})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES))
def test_fuzz_layers_reject_bad_inputs_clearly(shape, dtype):
    from pygan.nn import Conv2d, Dense

    from pygan.nn import (AvgPool2d, BatchNorm, ConvTranspose2d, Dropout, GroupNorm, InstanceNorm, LayerNorm, Maxout,
                          PixelShuffle, ReflectionPad2d, Upsample, VirtualBatchNorm)

    x = np.ones(shape, dtype)
    vbn = VirtualBatchNorm(3)
    vbn.recording = True
    vbn.forward(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    vbn.recording = False
    layers = ((Dense(3, 2), {"x", "w"}), (Conv2d(1, 2, 3, padding=1), {"x", "w"}),
              (ConvTranspose2d(1, 2, 3, padding=1), {"x", "w", "padding"}), (BatchNorm(3), {"x", "gamma"}),
              (Dropout(0.5, seed=0), {"x"}), (Maxout(3), {"x", "pieces"}), (vbn, {"x"}),
              (Upsample("bilinear"), {"x"}), (AvgPool2d(2), {"x", "k"}), (PixelShuffle(2), {"x"}),
              (ReflectionPad2d(1), {"x", "padding"}), (GroupNorm(1, 3, act="relu"), {"x", "gamma", "groups"}),
              (InstanceNorm(3), {"x", "gamma", "groups"}), (LayerNorm(2), {"x", "gamma", "groups"}))
    for layer, names in layers:
        FUZZ_CASES["ops"] += 1
        xt = pygan.Tensor(x, requires_grad=True)
        try:
            out = layer(xt)
        except (TypeError, ValueError) as e:
            assert ARG_NAMES.match(str(e)).group(1) in names, str(e)
            FUZZ_CASES["clear errors"] += 1
        else:
            FUZZ_CASES["matched the reference"] += 1
            assert np.isfinite(out.numpy()).all()
            out.backward(np.ones_like(out.data))  # the backward of an accepted input runs too
            assert xt.grad is not None and xt.grad.shape == x.shape


_CHECKPOINT: dict[str, bytes] = {}


def _small_gan() -> GAN:
    g, d = mlp_generator(2, [4], 2, seed=0), mlp_discriminator(2, [4], seed=1)
    return GAN(g, d, Adam(g.parameters(), lr=1e-3), Adam(d.parameters(), lr=1e-3), latent_dim=2, seed=0)


def _checkpoint_bytes(tmp: str) -> bytes:
    if "blob" not in _CHECKPOINT:
        path = os.path.join(tmp, "seed.ckpt")
        io.save_gan(path, _small_gan(), {"model": "toy"})
        with open(path, "rb") as f:
            _CHECKPOINT["blob"] = f.read()
    return _CHECKPOINT["blob"]


HOSTILE_JSON = [None, -1, 1.5, "x", [], {}, 2**70, True, [[1]], -(2**70), "nan", 10**400]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["flip", "truncate", "extend", "header value", "version"]), where=st.integers(0, 10**6),
       value=st.sampled_from(HOSTILE_JSON), bit=st.integers(0, 7))
def test_fuzz_checkpoint_loader(tmp_path_factory, kind, where, value, bit):
    """Any damage to a checkpoint file gives a CheckpointError naming it, or a checkpoint that
    passes every check and restores; never another exception, a hang or a model changed halfway."""
    import json
    import struct
    import zlib

    tmp = str(tmp_path_factory.getbasetemp())
    blob = bytearray(_checkpoint_bytes(tmp))
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    if kind == "flip":
        blob[where % len(blob)] ^= 1 << bit
    elif kind == "truncate":
        blob = blob[: where % len(blob)]
    elif kind == "extend":
        blob += bytes(where % 4096)
    else:  # a header value, or the format version, changed and the header CRC made to fit
        doc = json.loads(blob[8 : 8 + hlen])
        meta = json.loads(doc["__metadata__"]["meta"])
        first = next(k for k in doc if k != "__metadata__")
        targets = [(meta, "steps"), (meta, "epoch"), (meta, "rng"), (meta, "optimizers"), (meta["optimizers"]["generator"], "lr"),
                   (doc[first], "shape"), (doc[first], "data_offsets"), (doc[first], "dtype"), (doc, first),
                   (doc["__metadata__"], "crc32"), (doc["__metadata__"], "meta")]
        node, key = (doc["__metadata__"], "format_version") if kind == "version" else targets[where % len(targets)]
        node[key] = str(where % 7) if kind == "version" else value
        doc["__metadata__"]["meta"] = doc["__metadata__"]["meta"] if node is doc["__metadata__"] and key == "meta" else json.dumps(meta)
        doc["__metadata__"]["header_crc32"] = str(zlib.crc32(io._canonical(doc)))
        header = json.dumps(doc).encode()
        blob = bytearray(struct.pack("<Q", len(header)) + header + blob[8 + hlen :])
    path = os.path.join(tmp, f"fuzzed-{os.getpid()}.ckpt")
    with open(path, "wb") as f:
        f.write(blob)
    FUZZ_CASES["checkpoint files"] += 1
    gan = _small_gan()
    before = [p.data.copy() for p in gan.generator.parameters()]
    try:
        io.restore_gan(path, gan)
    except io.CheckpointError as e:
        assert str(e).startswith(path), e
        assert all(np.array_equal(b, p.data) for b, p in zip(before, gan.generator.parameters()))


#: Flags of the command line with numbers, and values none of them accepts.
INT_FLAGS = [("train", f) for f in ("--epochs", "--batch-size", "--d-steps", "--pack", "--train-size", "--threads",
                                    "--seed", "--eval-every", "--eval-samples", "--jobs", "--image-size")] + \
            [("sample", "--n"), ("sample", "--seed"), ("eval", "--samples"), ("eval", "--test-size"), ("eval", "--seed")]
FLOAT_FLAGS = [("train", f) for f in ("--lr", "--d-lr", "--clip", "--gp-weight", "--r1", "--label-smoothing", "--ema",
                                      "--identity")] + [("sample", "--truncation")]
BAD_INTS = ["-1", "x", "", "1.5", "1e3", "nan", "99999999999999999999999", "-99999999999999999999999", "0x10", " "]
BAD_FLOATS = ["-1", "nan", "inf", "-inf", "1e400", "x", "", "-1e-300", "--", "1,5"]


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(INT_FLAGS + FLOAT_FLAGS), pick=st.integers(0, 99))
def test_fuzz_command_line_flags(flag, pick, capsys):
    """A hostile value of any numeric flag is one line naming the flag, exit status 2."""
    command, name = flag
    values = BAD_INTS if flag in INT_FLAGS else BAD_FLOATS
    value = values[pick % len(values)]
    argv = [command] + (["unused.pygan"] if command != "train" else []) + [f"{name}={value}"]
    FUZZ_CASES["command lines"] += 1
    err = cli_error(argv, capsys, 2)
    assert name in err, err


# ---------------------------------------------------------------------------------------------
def test_two_python_threads_run_kernels_at_once(thread_count):
    rng = np.random.default_rng(0)
    cases = []
    for n, k, m in ((64, 300, 200), (33, 513, 77)):
        x = rng.standard_normal((n, k)).astype(np.float32)
        w = rng.standard_normal((k, m)).astype(np.float32)
        cases.append((x, w, pygan.get_backend().dense_forward(x, w, None, "tanh")))
    errors = []
    stop = threading.Event()

    def worker(x, w, want):
        try:
            for _ in range(60):
                np.testing.assert_array_equal(load_backend("cpu").dense_forward(x, w, None, "tanh"), want)
        except BaseException as e:  # reported below
            errors.append(e)

    def toggler():  # the native setter: 3 threads even on 2 cores, past the API's cap
        while not stop.is_set():
            for t in (1, 2, 3):
                pygan._core.set_num_threads(t)

    threads = [threading.Thread(target=worker, args=c) for c in cases]
    flip = threading.Thread(target=toggler)
    flip.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    flip.join()
    assert not errors, errors  # results are bit-identical at every thread count, so equality holds


def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    g, d = mlp_generator(4, [8], 2, seed=0), mlp_discriminator(2, [8], seed=1)
    gan = GAN(g, d, Adam(g.parameters()), Adam(d.parameters()), latent_dim=4)
    x = data.toy_samples("ring8", 64, seed=0)
    path = tmp_path / "ckpt.pygan"

    class Save:
        def on_epoch_end(self, gan, summary):
            io.save_gan(path, gan)

    class Poison:
        def on_step(self, gan, stats):
            if gan.epoch == 1:
                gan.generator.parameters()[0].data[0, 0] = np.nan

    with pytest.raises(TrainingDiverged, match="diverged"):
        gan.fit(x, 3, 16, callbacks=[Save(), Poison()])
    _, meta = io.load(path)
    assert meta["epoch"] == 1
    tensors, _ = io.load(path)
    assert all(np.isfinite(t).all() for t in tensors.values() if t.dtype.kind == "f")


def test_cli_reports_divergence(tmp_path, capsys):
    argv = ["train", "--epochs", "3", "--train-size", "512", "--lr", "1e30", "--out", str(tmp_path / "o")]
    assert "diverged" in cli_error(argv, capsys, 1)


def test_sigkill_while_checkpointing_never_loses_the_last_checkpoint(tmp_path):
    """Kill a training run at random moments (it checkpoints every epoch, epochs take milliseconds),
    check that the checkpoint on disk always loads, resume each time, and end where an
    uninterrupted run ends, bit for bit."""
    out = tmp_path / "killed"
    args = ["train", "--epochs", "30", "--train-size", "512", "--batch-size", "128", "--seed", "5", "--eval-every", "50"]
    env = dict(os.environ, PYGAN_NUM_THREADS="1")
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(60):
        # killed before its first checkpoint, the folder already holds the run's log: start it again
        resume = ["--resume"] if (out / "checkpoint.safetensors").exists() else ["--overwrite"]
        proc = subprocess.Popen([sys.executable, "-m", "pygan", *args, "--out", str(out), *resume],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        time.sleep(float(rng.uniform(0.8, 2.0)))  # the interpreter needs ~0.7 s to start training
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err.decode()
        if (out / "checkpoint.safetensors").exists():
            io.load(out / "checkpoint.safetensors")  # raises if the kill left a torn file
        if proc.returncode == 0:
            break
    else:
        pytest.fail("the run never finished")
    assert kills >= 3, "the run finished before it could be killed often enough"
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "pygan", *args, "--out", str(straight)], check=True, env=env, cwd=tmp_path,
                   stdout=subprocess.DEVNULL)
    a, _ = io.load(out / "checkpoint.safetensors")
    b, _ = io.load(straight / "checkpoint.safetensors")
    for k in b:
        assert a[k].tobytes() == b[k].tobytes(), k
