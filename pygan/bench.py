"""The benchmark command: ``python -m pygan.bench`` prints one kernel x backend table.

Rows are op x shape x batch; columns are the NumPy reference, pygan's ``cpu`` backend, PyTorch
(when importable, at the same thread count) and pygan's ``cupy`` backend (when a GPU exists; the
column says "no GPU" otherwise), each the median of repeated timings in this one run with half its
interquartile range, with GFLOP/s, the ratio of pygan cpu's speed to the best other CPU column (> 1:
pygan is faster), and pygan's fraction of the machine's FMA peak: register-only FMA chains of the ISA
in use at the benchmark's thread count, measured in the same run (``pygan._core.fma_peak``), the
limit the peers are waypoints to.

Where a GPU exists, a GPU section follows at batch ``GPU_BATCH``: each convolution on both of the
cupy backend's paths (im2col + cuBLAS, and the implicit GEMM) and the MLP GAN's and DCGAN's train
steps, next to PyTorch on the same GPU (``torch-cuda``, when the PyTorch there has CUDA); every GPU
cell carries CUDA-event device times, and the table gives cupy's device time over PyTorch's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .backend import load_backend

# (fan_in, fan_out, activation) of the MLP GAN's layers: generator then discriminator
GENERATOR_LAYERS = [(100, 128, "leaky_relu"), (128, 256, "leaky_relu"), (256, 512, "leaky_relu"),
                    (512, 1024, "leaky_relu"), (1024, 784, "tanh")]
DISCRIMINATOR_LAYERS = [(784, 512, "leaky_relu"), (512, 256, "leaky_relu"), (256, 1, "identity")]
BATCHES = (64, 256)
#: The GPU section's batch (the GPU issue's yardstick), and the columns that run on a GPU.
GPU_BATCH = 1024
GPU_COLUMNS = ("cupy", "torch-cuda")
SLOPE = 0.2
# seconds of untimed calls before each column's turn (see column_times): OpenBLAS's and OpenMP's
# idle threads spin for up to tens of milliseconds after a call (0.01 s was too short here)
SETTLE_S = 0.1
# the FMA peak: the best of this many runs of this many seconds (each thread's chains at once)
PEAK_SECONDS, PEAK_TRIALS = 0.3, 5


@dataclass
class Row:
    """One line of the table: an op at a shape, the median seconds per column and their spread
    (the interquartile range, seconds)."""

    op: str
    shape: str
    flops: float
    seconds: dict[str, float] = field(default_factory=dict)
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    device_seconds: dict[str, float] = field(default_factory=dict)

    def record(self, times: dict[str, list[float]], device: dict[str, list[float]] | None = None) -> Row:
        """Take each column's timings (from :func:`column_times`): their median and quartiles, and
        the median device seconds of a GPU column's CUDA events."""
        for column, t in times.items():
            q1, median, q3 = (float(v) for v in np.percentile(t, [25, 50, 75]))
            self.seconds[column], self.spread[column] = median, (q1, q3)
        for column, t in (device or {}).items():
            self.device_seconds[column] = float(np.median(t))
        return self

    def vs_torch_cuda(self) -> float | None:
        """cupy's device time over PyTorch's on the same GPU (< 1: pygan is faster)."""
        d = self.device_seconds
        return d["cupy"] / d["torch-cuda"] if {"cupy", "torch-cuda"} <= set(d) else None

    def gpu_speedup(self) -> float | None:
        """The GPU's speed over pygan cpu's (wall times; > 1: the GPU is faster)."""
        return self.seconds["pygan"] / self.seconds["cupy"] if {"pygan", "cupy"} <= set(self.seconds) else None

    def gflops(self, column: str) -> float:
        return self.flops / self.seconds[column] / 1e9

    def peak_fraction(self, peak_gflops: float | None) -> float | None:
        """pygan cpu's GFLOP/s as a fraction of the FMA peak (None without one)."""
        return self.gflops("pygan") / peak_gflops if peak_gflops and "pygan" in self.seconds else None

    def ratio(self) -> float | None:
        """pygan's speed over the best other column's."""
        others = [s for c, s in self.seconds.items() if c not in ("pygan", *GPU_COLUMNS)]
        return min(others) / self.seconds["pygan"] if others and "pygan" in self.seconds else None


def column_times(fns: dict[str, Callable[[], Any]], min_time: float, max_reps: int = 200, rounds: int = 3,
                 settle: float = SETTLE_S, device: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall times of each column's ``fn`` (seconds, every timed call), the columns taking turns so
    that a drift in the machine's speed reaches all of them alike.

    Each of ``rounds`` rounds gives every column one turn: untimed calls for ``settle`` seconds and at
    least two (the previous column's idle threads spin for a while before they sleep, and would take
    cores from this one), then timed calls filling ``min_time / rounds`` (at least 3, at most
    ``max_reps / rounds``). A :class:`DeviceTimed` column's device seconds of its timed calls go to
    ``device`` (when given).
    """
    times: dict[str, list[float]] = {column: [] for column in fns}
    per_turn = min_time / rounds
    for _ in range(rounds):
        for column, fn in fns.items():
            until = time.perf_counter() + settle
            fn()
            fn()
            while time.perf_counter() < until:
                fn()
            turn = times[column]
            seen = len(fn.device) if isinstance(fn, DeviceTimed) else 0
            start, n = time.perf_counter(), 0
            while n < 3 or (time.perf_counter() - start < per_turn and n < max_reps // rounds):
                t0 = time.perf_counter()
                fn()
                turn.append(time.perf_counter() - t0)
                n += 1
            if isinstance(fn, DeviceTimed) and device is not None:  # the timed calls' only, not the settling
                device.setdefault(column, []).extend(fn.device[seen:])
    return times


def openblas_core() -> str | None:
    """The kernel family NumPy's OpenBLAS runs on this CPU (e.g. 'SkylakeX', or what
    OPENBLAS_CORETYPE forces), or None where NumPy is not linked against an OpenBLAS that says."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                       "openblas_get_corename"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                name = fn()
                return name.decode() if name else None
    return None


def load_torch(threads: int) -> Any:
    """PyTorch at the given thread count, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def conv_cases(transposed: bool, torch: Any, gpu: Any = None, batch: int = 64, columns: Sequence[str] = ("numpy", "pygan"),
               torch_device: str = "cpu", implicit: bool | None = None) -> dict[str, dict[str, Callable[[], Any]]]:
    """conv(64->128, 4x4, s2, p1) on batch x 64x14x14, or convT(128->64, 4x4, s2, p1) on batch x
    128x7x7: forward and forward+backward per column (``columns`` among numpy and pygan; cupy's
    with ``gpu``, on its own path choice or, with ``implicit``, forced onto the implicit GEMM or
    onto im2col; PyTorch's on ``torch_device``, the column ``torch`` or ``torch-cuda``)."""
    rng = np.random.default_rng(3)
    if transposed:
        x = rng.standard_normal((batch, 128, 7, 7)).astype(np.float32)
        w = (rng.standard_normal((128, 64, 4, 4)) * 0.02).astype(np.float32)
        dy = rng.standard_normal((batch, 64, 14, 14)).astype(np.float32)
    else:
        x = rng.standard_normal((batch, 64, 14, 14)).astype(np.float32)
        w = (rng.standard_normal((128, 64, 4, 4)) * 0.02).astype(np.float32)
        dy = rng.standard_normal((batch, 128, 7, 7)).astype(np.float32)
    b = np.zeros(w.shape[1] if transposed else w.shape[0], np.float32)
    act = "relu" if transposed else "leaky_relu"
    cases: dict[str, dict[str, Callable[[], Any]]] = {"forward": {}, "forward+backward": {}}
    backends = [(c, load_backend(n)) for c, n in (("numpy", "numpy"), ("pygan", "cpu")) if c in columns]
    for column, B in backends + ([("cupy", gpu)] if gpu else []):
        args = [B.xp.asarray(a) for a in (x, w, b, dy)]

        def fwd(B: Any = B, args: list = args) -> Any:
            xx, ww, bb, _ = args
            if transposed:
                return B.conv_transpose2d_forward(xx, ww, bb, 2, 1, 0, act, SLOPE)
            return B.conv2d_forward(xx, ww, bb, 2, 1, act, SLOPE)

        def fwd_bwd(B: Any = B, args: list = args, fwd: Callable[..., Any] = fwd) -> Any:
            xx, ww, _, ddy = args
            y = fwd(B, args)
            if transposed:
                return B.conv_transpose2d_backward(ddy, xx, ww, y, 2, 1, 0, act, SLOPE)
            return B.conv2d_backward(ddy, xx, ww, y, 2, 1, act, SLOPE)

        if column == "cupy":
            fwd, fwd_bwd = (DeviceTimed(gpu.xp.cuda, _on_conv_path(f, implicit)) for f in (fwd, fwd_bwd))
        cases["forward"][column], cases["forward+backward"][column] = fwd, fwd_bwd
    if torch is not None:
        F = torch.nn.functional
        tx, tw, tb, tdy = (torch.from_numpy(a).to(torch_device) for a in (x, w, b, dy))
        txg, twg, tbg = (t.clone().requires_grad_(True) for t in (tx, tw, tb))
        tact = (lambda z: F.relu(z)) if transposed else (lambda z: F.leaky_relu(z, SLOPE))
        conv = F.conv_transpose2d if transposed else F.conv2d

        def t_fwd() -> Any:
            with torch.no_grad():
                return tact(conv(tx, tw, tb, stride=2, padding=1))

        def t_fwd_bwd() -> Any:
            txg.grad = twg.grad = tbg.grad = None
            y = tact(conv(txg, twg, tbg, stride=2, padding=1))
            y.backward(tdy)
            return txg.grad

        for op, f in (("forward", t_fwd), ("forward+backward", t_fwd_bwd)):
            column, timed = _torch_column(torch, torch_device, f)
            cases[op][column] = timed
    return cases


def _torch_column(torch: Any, torch_device: str, fn: Callable[[], Any]) -> tuple[str, Callable[[], Any]]:
    """PyTorch's column and call: ``torch`` on the CPU, or ``torch-cuda`` timed by CUDA events."""
    if torch_device == "cpu":
        return "torch", fn
    return "torch-cuda", DeviceTimed(TorchCudaClock(torch), fn)


def _on_conv_path(fn: Callable[..., Any], implicit: bool | None) -> Callable[[], Any]:
    """``fn`` with the cupy backend's conv path forced (``implicit``: the implicit GEMM, else
    im2col) or, for None, left to the backend's im2col budget."""
    if implicit is None:
        return fn

    def forced() -> Any:
        from .backend import cupy as cupy_backend

        saved = cupy_backend.IM2COL_BUDGET
        cupy_backend.IM2COL_BUDGET = 0 if implicit else 1 << 62
        try:
            return fn()
        finally:
            cupy_backend.IM2COL_BUDGET = saved

    return forced


def load_gpu() -> Any:
    """pygan's cupy backend when CuPy and a CUDA device exist, else None."""
    try:
        return load_backend("cupy")
    except (ImportError, RuntimeError):
        return None


class DeviceTimed:
    """A GPU call timed by CUDA events: each call records an event before and after it and waits
    for the second, so that its wall time includes the kernels, not just their launch; the events'
    elapsed time (device seconds) of every call is appended to ``device``. ``clock`` makes the
    events: ``cupy.cuda`` (``Event()``, ``get_elapsed_time``) or :class:`TorchCudaClock`."""

    def __init__(self, clock: Any, fn: Callable[[], Any]) -> None:
        self.cuda = clock
        self.fn = fn
        self.device: list[float] = []

    def __call__(self) -> Any:
        start, end = self.cuda.Event(), self.cuda.Event()
        start.record()
        out = self.fn()
        end.record()
        end.synchronize()
        self.device.append(self.cuda.get_elapsed_time(start, end) / 1e3)
        return out


class TorchCudaClock:
    """PyTorch's CUDA events with CuPy's clock interface (for :class:`DeviceTimed`)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def Event(self) -> Any:  # noqa: N802 - CuPy's name
        """A timing event."""
        return self.torch.cuda.Event(enable_timing=True)

    @staticmethod
    def get_elapsed_time(start: Any, end: Any) -> float:
        """Milliseconds from ``start`` to ``end``."""
        return float(start.elapsed_time(end))


def dense_cases(
    batch: int, fan_in: int, fan_out: int, act: str, torch: Any, gpu: Any = None
) -> dict[str, dict[str, Callable[[], Any]]]:
    """Forward and forward+backward closures of one dense layer for every column."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, fan_in)).astype(np.float32)
    w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
    b = np.zeros(fan_out, np.float32)
    dy = rng.standard_normal((batch, fan_out)).astype(np.float32)
    cases: dict[str, dict[str, Callable[[], Any]]] = {"forward": {}, "forward+backward": {}}
    for column, name in (("numpy", "numpy"), ("pygan", "cpu")):
        B = load_backend(name)

        def fwd(B: Any = B) -> Any:
            return B.dense_forward(x, w, b, act, SLOPE)

        def fwd_bwd(B: Any = B) -> Any:
            y = B.dense_forward(x, w, b, act, SLOPE)
            return B.dense_backward(dy, x, w, y, act, SLOPE)

        cases["forward"][column], cases["forward+backward"][column] = fwd, fwd_bwd
    if torch is not None:
        F = torch.nn.functional
        tx = torch.from_numpy(x)
        tw = torch.from_numpy(np.ascontiguousarray(w.T)).requires_grad_(True)  # torch keeps (out, in)
        tb = torch.from_numpy(b).requires_grad_(True)
        tdy = torch.from_numpy(dy)
        txg = tx.clone().requires_grad_(True)
        tact = {"leaky_relu": lambda z: F.leaky_relu(z, SLOPE), "tanh": torch.tanh, "identity": lambda z: z}[act]

        def t_fwd() -> Any:
            with torch.no_grad():
                return tact(F.linear(tx, tw, tb))

        def t_fwd_bwd() -> Any:
            tw.grad = tb.grad = txg.grad = None
            y = tact(F.linear(txg, tw, tb))
            y.backward(tdy)
            return txg.grad

        cases["forward"]["torch"], cases["forward+backward"]["torch"] = t_fwd, t_fwd_bwd
    if gpu is not None:
        gx, gw, gb, gdy = (gpu.xp.asarray(a) for a in (x, w, b, dy))

        def g_fwd() -> Any:
            return gpu.dense_forward(gx, gw, gb, act, SLOPE)

        def g_fwd_bwd() -> Any:
            y = gpu.dense_forward(gx, gw, gb, act, SLOPE)
            return gpu.dense_backward(gdy, gx, gw, y, act, SLOPE)

        cases["forward"]["cupy"] = DeviceTimed(gpu.xp.cuda, g_fwd)
        cases["forward+backward"]["cupy"] = DeviceTimed(gpu.xp.cuda, g_fwd_bwd)
    return cases


def gemm_cases(n: int, torch: Any, gpu: Any = None) -> dict[str, Callable[[], Any]]:
    """Plain n x n x n GEMM per column."""
    from . import _core

    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    cases: dict[str, Callable[[], Any]] = {"numpy": lambda: a @ b, "pygan": lambda: _core.gemm(a, b)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        cases["torch"] = lambda: ta @ tb
    if gpu is not None:
        ga, gb = gpu.xp.asarray(a), gpu.xp.asarray(b)
        cases["cupy"] = DeviceTimed(gpu.xp.cuda, lambda: ga @ gb)
    return cases


def _torch_models(torch: Any, name: str) -> tuple[Any, Any]:
    """The same generator and discriminator as pygan's ``mlp`` (images) or ``dcgan`` model, in PyTorch."""
    nn = torch.nn
    if name == "mlp":
        sizes = [100, 128, 256, 512, 1024]
        g_layers: list[Any] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            g_layers += [nn.Linear(a, b), nn.LeakyReLU(SLOPE)]
        g = nn.Sequential(*g_layers, nn.Linear(1024, 784), nn.Tanh())
        d = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(SLOPE), nn.Linear(512, 256), nn.LeakyReLU(SLOPE), nn.Linear(256, 1))
        return g, d
    g = nn.Sequential(
        nn.Linear(100, 128 * 7 * 7, bias=False), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(SLOPE), nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128),
        nn.LeakyReLU(SLOPE), nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
    )
    return g, d


def step_cases(name: str, batch: int, torch: Any, gpu: Any = None, columns: Sequence[str] = ("numpy", "pygan"),
               torch_device: str = "cpu") -> dict[str, Callable[[], Any]]:
    """One whole train step (one D step, one G step, Adam, non-saturating loss) per column: of
    ``columns`` among numpy and pygan (cpu), PyTorch's when ``torch`` is given (on ``torch_device``:
    the column ``torch``, or ``torch-cuda`` timed by CUDA events), cupy's when ``gpu`` is (its batch
    on the device, timed by CUDA events)."""
    from .gan import GAN
    from .models import build
    from .optim import Adam

    shape = (1, 28, 28)
    rng = np.random.default_rng(2)
    real = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
    if name == "mlp":
        real = real.reshape(batch, -1)
    cases: dict[str, Callable[[], Any]] = {}
    from .backend import use_backend

    backends = [(c, b) for c, b in (("numpy", "numpy"), ("pygan", "cpu")) if c in columns] + ([("cupy", "cupy")] if gpu else [])
    for column, backend in backends:
        with use_backend(backend):
            spec = build(name, shape, seed=0)
            gan = GAN(spec.generator, spec.discriminator, Adam(spec.generator.parameters()),
                      Adam(spec.discriminator.parameters()), latent_dim=spec.latent_dim, seed=0)
            batch_data = real if backend != "cupy" else gpu.xp.asarray(real)

        def step(gan: Any = gan, backend: str = backend, batch_data: Any = batch_data) -> Any:
            with use_backend(backend):
                return gan.train_step(batch_data)

        cases[column] = DeviceTimed(gpu.xp.cuda, step) if backend == "cupy" else step
    if torch is not None:
        g, d = (m.to(torch_device) for m in _torch_models(torch, name))
        kw = {"lr": 2e-4, "betas": (0.5, 0.999)}
        try:
            og, od = torch.optim.Adam(g.parameters(), fused=True, **kw), torch.optim.Adam(d.parameters(), fused=True, **kw)
        except (RuntimeError, TypeError):  # builds without the fused CPU Adam
            og, od = torch.optim.Adam(g.parameters(), **kw), torch.optim.Adam(d.parameters(), **kw)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        treal = torch.from_numpy(real).to(torch_device)
        ones, zeros = torch.ones(batch, 1, device=torch_device), torch.zeros(batch, 1, device=torch_device)

        def t_step() -> Any:
            od.zero_grad(set_to_none=True)
            fake = g(torch.randn(batch, 100, device=torch_device))
            loss_d = bce(d(treal), ones) + bce(d(fake.detach()), zeros)
            loss_d.backward()
            od.step()
            og.zero_grad(set_to_none=True)
            loss_g = bce(d(g(torch.randn(batch, 100, device=torch_device))), ones)
            loss_g.backward()
            og.step()
            return loss_g

        column, timed = _torch_column(torch, torch_device, t_step)
        cases[column] = timed
    return cases


def step_flops(name: str, batch: int) -> float:
    """FLOPs of one train step, counted as 2 x multiply-adds of its GEMM-shaped work.

    Per example, g and d are the multiply-adds of one generator / discriminator forward (a conv
    costs C_in * C_out * k^2 per output position, a transposed conv per input position). The D step
    runs G forward and D forward+backward on two batches (1 g + 6 d), the G step G forward, D
    forward and its input gradient, and G backward (1 g + 2 d + 2 g): 4 g + 8 d in all.
    """
    if name == "mlp":
        g = 100 * 128 + 128 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784
        d = 784 * 512 + 512 * 256 + 256
    else:
        g = 100 * 6272 + 128 * 64 * 16 * 7 * 7 + 64 * 1 * 16 * 14 * 14
        d = 1 * 64 * 16 * 14 * 14 + 64 * 128 * 16 * 7 * 7 + 6272
    return 2.0 * batch * (4 * g + 8 * d)


#: The batch sizes of the GPU-against-CPU sweep (``--sweep``): where the GPU overtakes the CPU.
SWEEP_BATCHES = (64, 256, 1024, 4096)


def run(threads: int, min_time: float, gemm_size: int, batches: Sequence[int], sweep: bool = False
        ) -> tuple[list[Row], dict[str, Any]]:
    """Measure every row (and with ``sweep`` the MLP GAN's train step at ``SWEEP_BATCHES`` on pygan
    cpu and the GPU alone); returns the rows and a description of the run."""
    import pygan
    from .backend.cpu_backend import capped_threads

    threads = capped_threads(threads, "--threads")
    pygan.set_num_threads(threads)
    peak = pygan._core.fma_peak(threads, PEAK_SECONDS, PEAK_TRIALS)
    torch = load_torch(threads)
    gpu = load_gpu()
    rows: list[Row] = []
    g = gemm_cases(gemm_size, torch, gpu)
    rows.append(measure(Row("gemm", f"{gemm_size}^3", 2.0 * gemm_size**3), g, min_time))
    for batch in batches:
        for side, layers in (("G", GENERATOR_LAYERS), ("D", DISCRIMINATOR_LAYERS)):
            for fan_in, fan_out, act in layers:
                cases = dense_cases(batch, fan_in, fan_out, act, torch, gpu)
                for op, fns in cases.items():
                    mult = 1 if op == "forward" else 3
                    r = Row(f"dense {op}", f"{side} {batch}x{fan_in}x{fan_out} {act}", mult * 2.0 * batch * fan_in * fan_out)
                    rows.append(measure(r, fns, min_time))
    conv_flops = 2.0 * 64 * 128 * 64 * 16 * 7 * 7  # both layers: 64 images x 7x7 positions x 128x64x16 MACs
    for transposed, label in ((False, "conv 64->128 k4 s2 p1 on 64x64x14x14"), (True, "convT 128->64 k4 s2 p1 on 64x128x7x7")):
        for op, fns in conv_cases(transposed, torch, gpu).items():
            r = Row(f"{'convT' if transposed else 'conv'} {op}", label, conv_flops * (1 if op == "forward" else 3))
            rows.append(measure(r, fns, min_time, max_reps=50))
    for name, batch in (("mlp", 64), ("mlp", 256), ("dcgan", 64)):
        r = Row("train step", f"{name} GAN batch {batch}", step_flops(name, batch))
        rows.append(measure(r, step_cases(name, batch, torch, gpu), min_time, max_reps=50))
    for batch in SWEEP_BATCHES if sweep else ():
        r = Row("sweep step", f"mlp GAN batch {batch}", step_flops("mlp", batch))
        rows.append(measure(r, step_cases("mlp", batch, None, gpu, columns=("pygan",)), min_time, max_reps=30))
    if gpu is not None:
        rows += gpu_rows(gpu, torch if torch is not None and torch.cuda.is_available() else None, min_time)
    meta = {
        "threads": threads,
        "isa": pygan._core.current_isa(),
        "fma_peak_gflops": peak,
        "numpy": np.__version__,
        "openblas_core": openblas_core(),
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "gemm_blocking": pygan._core.gemm_blocking(),
        "torch": getattr(torch, "__version__", None),
        "gpu": gpu.details if gpu is not None else None,
        "machine": platform.processor() or platform.machine(),
        "min_time_per_cell_s": min_time,
    }
    return rows, meta


def gpu_rows(gpu: Any, torch_cuda: Any, min_time: float, batch: int = GPU_BATCH, **timing: Any) -> list[Row]:
    """The GPU section: both conv paths of the cupy backend and the train steps at ``batch``, next
    to PyTorch on the same GPU when ``torch_cuda`` (a PyTorch with CUDA) is given; ``timing`` goes
    to :func:`column_times`."""
    rows = []
    conv_flops = 2.0 * batch * 128 * 64 * 16 * 7 * 7
    tdev = "cuda" if torch_cuda is not None else "cpu"
    for transposed in (False, True):
        for implicit, path in ((False, "im2col"), (True, "implicit GEMM")):
            label = f"{'convT' if transposed else 'conv'} batch {batch}, {path}"
            fns = conv_cases(transposed, torch_cuda, gpu, batch, columns=(), torch_device=tdev, implicit=implicit)
            for op, f in fns.items():
                r = Row(f"gpu {'convT' if transposed else 'conv'} {op}", label, conv_flops * (1 if op == "forward" else 3))
                rows.append(measure(r, f, min_time, **{"max_reps": 50, **timing}))
    for name in ("mlp", "dcgan"):
        r = Row("gpu train step", f"{name} GAN batch {batch}", step_flops(name, batch))
        fns = step_cases(name, batch, torch_cuda, gpu, columns=(), torch_device=tdev)
        rows.append(measure(r, fns, min_time, **{"max_reps": 50, **timing}))
    return rows


def measure(row: Row, fns: dict[str, Callable[[], Any]], min_time: float, **kw: Any) -> Row:
    """``row`` with the timings of every column of ``fns`` (:func:`column_times`)."""
    device: dict[str, list[float]] = {}
    return row.record(column_times(fns, min_time, device=device, **kw), device)


def _cell(r: Row, column: str) -> str:
    """A column's median time (ms) with half its interquartile range as a percentage of it."""
    q1, q3 = r.spread.get(column, (r.seconds[column], r.seconds[column]))
    return f"{1e3 * r.seconds[column]:.3f}\u00b1{50 * (q3 - q1) / r.seconds[column]:.0f}%"


def format_table(rows: list[Row], meta: dict[str, Any]) -> str:
    """The table as aligned text: time (ms, +- half the interquartile range) and GFLOP/s per column,
    then pygan's ratio to the best CPU peer and its fraction of the FMA peak."""
    columns = [c for c in ("numpy", "pygan", "torch") if any(c in r.seconds for r in rows)] + ["cupy"]
    columns += ["torch-cuda"] if any("torch-cuda" in r.seconds for r in rows) else []
    peak = meta.get("fma_peak_gflops")
    gpu = bool(meta.get("gpu"))
    head = (f"{'op':<24}{'shape':<32}" + "".join(f"{c + ' ms':>16}{c + ' GF/s':>13}" for c in columns)
            + f"{'pygan/best':>12}{'pygan/peak':>12}"
            + (f"{'cupy dev ms':>13}{'gpu/cpu':>10}{'cupy/torch-cuda':>17}" if gpu else ""))
    lines = [
        f"pygan benchmark: {meta['threads']} threads, ISA {meta['isa']}, numpy {meta['numpy']}"
        f"{' (OpenBLAS core ' + meta['openblas_core'] + ')' if meta.get('openblas_core') else ''}, "
        f"torch {meta['torch'] or 'not installed'}, GPU: {meta.get('gpu') or 'no GPU'}; medians of repeated timings "
        f"in one run (+- half the interquartile range), the columns taking turns",
        f"FMA peak: {peak:.1f} GFLOP/s ({meta['isa']} FMA chains in registers, {meta['threads']} threads, this run)"
        if peak else "FMA peak: not measured",
        head,
        "-" * len(head),
    ]
    if meta.get("openblas_coretype_env"):
        lines.insert(1, f"note: OPENBLAS_CORETYPE={meta['openblas_coretype_env']} is set, so NumPy runs that core, not "
                        "the best one for this CPU; unset it (and OPENBLAS_L2_SIZE) for the fair NumPy column")
    for r in rows:
        cells = "".join(
            f"{_cell(r, c):>16}{r.gflops(c):>13.1f}" if c in r.seconds
            else f"{'no GPU':>16}{'':>13}" if c == "cupy" and not meta.get("gpu")
            else f"{'-':>16}{'-':>13}"
            for c in columns
        )
        ratio, frac, speedup, vs = r.ratio(), r.peak_fraction(peak), r.gpu_speedup(), r.vs_torch_cuda()
        dev = r.device_seconds.get("cupy")
        lines.append(f"{r.op:<24}{r.shape:<32}{cells}{(f'{ratio:.2f}x' if ratio else '-'):>12}"
                     f"{(f'{100 * frac:.0f}%' if frac else '-'):>12}"
                     + (f"{(f'{1e3 * dev:.3f}' if dev else '-'):>13}{(f'{speedup:.2f}x' if speedup else '-'):>10}"
                        f"{(f'{vs:.2f}x' if vs else '-'):>17}" if gpu else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pygan.bench``."""
    parser = argparse.ArgumentParser(prog="python -m pygan.bench", description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="threads for pygan and PyTorch (default 2)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per cell (default 0.3)")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the run's description as JSON")
    parser.add_argument("--sweep", action="store_true",
                        help=f"add the MLP GAN's train step at batches {', '.join(map(str, SWEEP_BATCHES))} on pygan cpu "
                             "and the GPU: where the GPU overtakes the CPU")
    args = parser.parse_args(argv)
    rows, meta = run(args.threads, args.min_time, args.gemm_size, args.batches, args.sweep)
    print(format_table(rows, meta))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "rows": [asdict(r) | {"ratio": r.ratio(), "gpu_speedup": r.gpu_speedup(),
                                                           "vs_torch_cuda": r.vs_torch_cuda(),
                                                           "peak_fraction": r.peak_fraction(meta["fma_peak_gflops"])}
                                              for r in rows]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
