"""The benchmark command's timing and table (its figures themselves are measured, never asserted)."""

from __future__ import annotations

import pytest

from pygan import bench


def test_columns_take_turns_and_each_gets_its_own_median():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("numpy", "pygan", "torch")}
    out = bench.column_times(fns, min_time=0.0, rounds=3, settle=0.0)
    assert set(out) == set(fns) and all(len(t) >= 9 and min(t) >= 0 for t in out.values())
    # turns come in the columns' order, round after round: numpy's calls, then pygan's, then torch's, again
    turns = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert turns == ["numpy", "pygan", "torch"] * 3
    assert all(calls.count(c) >= 3 * 5 for c in fns)  # per turn: two settle calls and at least three timed


def test_a_slow_column_is_timed_as_slow():
    import time

    times = bench.column_times({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, min_time=0.01, settle=0.0)
    out = bench.Row("sleep", "-", 1.0).record(times)
    assert out.seconds["slow"] > 0.0015 > out.seconds["fast"]
    q1, q3 = out.spread["slow"]
    assert q1 <= out.seconds["slow"] <= q3


def row(seconds: dict[str, float]) -> bench.Row:
    return bench.Row("gemm", "8^3", 1024.0, seconds)


def test_ratio_is_pygan_over_the_best_cpu_peer():
    assert abs(row({"numpy": 2.0, "pygan": 1.0, "torch": 4.0}).ratio() - 2.0) < 1e-12
    assert abs(row({"numpy": 2.0, "pygan": 1.0, "cupy": 0.1}).ratio() - 2.0) < 1e-12  # the GPU is no CPU peer
    assert row({"pygan": 1.0}).ratio() is None


def test_table_names_the_blas_core_and_warns_when_it_is_forced():
    meta = {"threads": 2, "isa": "avx512", "numpy": "2.0", "torch": None, "gpu": None,
            "openblas_core": "Haswell", "openblas_coretype_env": "Haswell"}
    text = bench.format_table([row({"numpy": 2.0, "pygan": 1.0})], meta)
    assert "OpenBLAS core Haswell" in text and "OPENBLAS_CORETYPE=Haswell is set" in text and "2.00x" in text
    meta["openblas_coretype_env"] = None
    assert "is set" not in bench.format_table([row({"numpy": 2.0, "pygan": 1.0})], meta)


def test_openblas_core_is_a_name_or_none():
    core = bench.openblas_core()
    assert core is None or (isinstance(core, str) and core)


def test_quartiles_and_the_fraction_of_the_peak():
    r = bench.Row("gemm", "8^3", 2e9).record({"pygan": [1.0, 2.0, 3.0, 4.0, 5.0], "numpy": [4.0] * 3})
    assert r.seconds == {"pygan": 3.0, "numpy": 4.0} and r.spread["pygan"] == (2.0, 4.0)
    assert abs(r.peak_fraction(4.0) - (2 / 3) / 4) < 1e-12 and r.peak_fraction(None) is None
    meta = {"threads": 2, "isa": "avx512", "numpy": "2.0", "torch": None, "gpu": None, "fma_peak_gflops": 4.0}
    text = bench.format_table([r], meta)
    assert "FMA peak: 4.0 GFLOP/s (avx512" in text and "3000.000\u00b133%" in text and "17%" in text


def test_fma_peak_on_every_isa_bounds_the_gemm_core():
    """The register-only FMA loop of each ISA path is positive, and no GEMM on that path beats it
    (by more than timing noise): the peak is a limit, not a guess."""
    import time

    import numpy as np
    import pytest

    from pygan import _core

    before, threads = _core.current_isa(), _core.num_threads()
    a = np.random.default_rng(0).standard_normal((384, 384)).astype(np.float32)
    try:
        for isa in _core.supported_isas():
            _core.set_isa(isa)
            peak = _core.fma_peak(1, 0.05, 3)
            assert np.isfinite(peak) and peak > 0.1, (isa, peak)
            _core.set_num_threads(1)
            _core.gemm(a, a)
            best = min(_timed(lambda: _core.gemm(a, a), time) for _ in range(5))
            assert 2 * 384**3 / best / 1e9 < 1.3 * peak, (isa, peak)
    finally:
        _core.set_isa(before)
        _core.set_num_threads(threads)
    for name, bad in (("threads", {"threads": 0}), ("seconds", {"threads": 1, "seconds": 0.0}),
                      ("trials", {"threads": 1, "trials": 0}), ("threads", {"threads": _core.MAX_THREADS + 1})):
        with pytest.raises(ValueError, match=f"^{name}: must be"):
            _core.fma_peak(**bad)


def _timed(fn, time) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_the_gpu_check_script_parses():
    """benchmarks/gpu_check.sh is run on rented GPU minutes: at least its syntax is checked here
    (its steps run end to end with --cpu, which takes a fresh install)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


class _FakeCuda:
    """CUDA events as CuPy has them, on a clock of their own: each event reads a counter that a
    call advances by 2 ms, so a call's device time is known exactly."""

    def __init__(self):
        self.clock = 0.0

    def Event(self):  # noqa: N802 - CuPy's name
        cuda = self

        class Event:
            def record(self):
                self.at = cuda.clock

            def synchronize(self):
                pass

        return Event()

    def get_elapsed_time(self, start, end):
        return end.at - start.at


def test_gpu_cells_carry_cuda_event_times_of_the_timed_calls_only():
    cuda = _FakeCuda()
    calls = []

    def kernel():
        calls.append(1)
        cuda.clock += 2.0  # milliseconds

    fns = {"pygan": lambda: None, "cupy": bench.DeviceTimed(cuda, kernel)}
    r = bench.measure(bench.Row("step", "x", 1e9), fns, min_time=0.0, settle=0.0, rounds=2)
    timed = len(calls) - 2 * 2  # two untimed calls a turn
    assert len(fns["cupy"].device) == len(calls) and timed >= 6
    assert r.device_seconds == {"cupy": 0.002}
    device: dict = {}
    times = bench.column_times(fns, min_time=0.0, settle=0.0, rounds=2, device=device)
    assert len(device["cupy"]) == len(times["cupy"]) < len(calls)  # the timed calls' events, no warm-up's
    r.seconds = {"pygan": 0.010, "cupy": 0.004}
    assert abs(r.gpu_speedup() - 2.5) < 1e-12
    meta = {"threads": 2, "isa": "avx512", "numpy": "2.0", "torch": None, "gpu": "fake", "fma_peak_gflops": 100.0}
    text = bench.format_table([r], meta)
    assert "cupy dev ms" in text and "2.000" in text and "2.50x" in text
    meta["gpu"] = None
    assert "cupy dev ms" not in bench.format_table([bench.Row("step", "x", 1e9, {"pygan": 0.01})], meta)


def test_the_gpu_section_sets_cupy_against_pytorch_on_the_same_gpu():
    """The GPU rows' ratio is cupy's device time over PyTorch CUDA's, and the GPU columns are not
    CPU peers in pygan's ratio."""
    r = bench.Row("gpu train step", "dcgan GAN batch 1024", 1e9, {"pygan": 0.1, "numpy": 0.2, "cupy": 0.03, "torch-cuda": 0.01},
                  device_seconds={"cupy": 0.024, "torch-cuda": 0.008})
    assert abs(r.vs_torch_cuda() - 3.0) < 1e-12 and abs(r.ratio() - 2.0) < 1e-12
    meta = {"threads": 2, "isa": "avx512", "numpy": "2.0", "torch": "2.x", "gpu": "fake", "fma_peak_gflops": 100.0}
    text = bench.format_table([r], meta)
    assert "torch-cuda ms" in text and "cupy/torch-cuda" in text and "3.00x" in text
    assert bench.Row("gemm", "x", 1.0, {"cupy": 1.0}).vs_torch_cuda() is None


def test_a_forced_conv_path_is_set_for_the_call_only():
    from pygan.backend import cupy as cupy_backend

    before = cupy_backend.IM2COL_BUDGET
    seen = lambda: cupy_backend.IM2COL_BUDGET  # noqa: E731
    assert bench._on_conv_path(seen, True)() == 0
    assert bench._on_conv_path(seen, False)() > 1 << 60
    assert bench._on_conv_path(seen, None)() == before == cupy_backend.IM2COL_BUDGET

    def fails():
        raise RuntimeError("a kernel failed")

    with pytest.raises(RuntimeError):
        bench._on_conv_path(fails, True)()
    assert cupy_backend.IM2COL_BUDGET == before
