"""The benchmark command's timing and table (its figures themselves are measured, never asserted)."""

from __future__ import annotations

from pygan import bench


def test_columns_take_turns_and_each_gets_its_own_median():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("numpy", "pygan", "torch")}
    out = bench.median_times(fns, min_time=0.0, rounds=3, settle=0.0)
    assert set(out) == set(fns) and all(t >= 0 for t in out.values())
    # turns come in the columns' order, round after round: numpy's calls, then pygan's, then torch's, again
    turns = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert turns == ["numpy", "pygan", "torch"] * 3
    assert all(calls.count(c) >= 3 * 5 for c in fns)  # per turn: two settle calls and at least three timed


def test_a_slow_column_is_timed_as_slow():
    import time

    out = bench.median_times({"fast": lambda: None, "slow": lambda: time.sleep(0.002)}, min_time=0.01, settle=0.0)
    assert out["slow"] > 0.0015 > out["fast"]


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
