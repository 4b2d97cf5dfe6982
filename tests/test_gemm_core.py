"""The GEMM core and the fused dense kernels on every ISA path this CPU runs, against float64."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pygan
from pygan import _core
from pygan.backend import load_backend
from pygan.backend._checks import ACTIVATIONS

ISAS = list(_core.supported_isas())
REF = load_backend("numpy")
CPU = load_backend("cpu")
SIZES = [1, 3, 17, 61, 127, 1000]


def within(actual: np.ndarray, exact: np.ndarray, scale: np.ndarray, rel: float = 1e-5) -> None:
    """Elementwise |actual - exact| <= rel * scale (scale: the sum of |a||b| behind each element)."""
    err = np.abs(actual.astype(np.float64) - exact)
    bound = rel * scale + 1e-7
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert err.size == 0 or np.all(err <= bound), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


def test_this_cpu_runs_every_isa_it_claims():
    assert ISAS[0] == "generic" and _core.current_isa() in ISAS


@pytest.mark.parametrize("isa_name", ISAS)
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=st.sampled_from(SIZES),
    n=st.sampled_from(SIZES),
    k=st.sampled_from(SIZES),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_gemm_against_float64(isa, isa_name, m, n, k, trans_a, trans_b, seed):
    isa(isa_name)  # the same ISA for every example; the fixture restores the default afterwards
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    opa = (a.T if trans_a else a).astype(np.float64)
    opb = (b.T if trans_b else b).astype(np.float64)
    c = _core.gemm(a, b, trans_a, trans_b)
    assert c.shape == (m, n) and c.dtype == np.float32
    within(c, opa @ opb, np.abs(opa) @ np.abs(opb))


@pytest.mark.parametrize("isa_name", ISAS)
def test_blocking_follows_the_cache_sizes(isa, isa_name):
    isa(isa_name)
    blk = _core.gemm_blocking()
    assert blk["kc"] >= 128 and blk["nb"] >= 1 and blk["mb"] >= 1
    if blk["l1d"] > 0:  # an A micro-panel (mr x kc) fits in L1d
        assert blk["mr"] * blk["kc"] * 4 <= blk["l1d"]
    if blk["l2"] > 0:  # a packed B block in about 60% of L2, in whole panels (at least one)
        assert blk["nb"] % blk["nr"] == 0
        assert blk["kc"] * blk["nb"] * 4 <= 0.6 * blk["l2"] or blk["nb"] == blk["nr"]


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_across_block_boundaries(isa, isa_name, thread_count, trans_a, trans_b):
    """Shapes past this CPU's blocking on every ISA: several K blocks (the later ones accumulate),
    several B blocks per thread and an M block and a bit, so every loop of the driver turns."""
    isa(isa_name)
    blk = _core.gemm_blocking()
    m, k, n = blk["mb"] + 9, 2 * blk["kc"] + 17, 4 * blk["nb"] + 5
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    opa = (a.T if trans_a else a).astype(np.float64)
    opb = (b.T if trans_b else b).astype(np.float64)
    exact, scale = opa @ opb, np.abs(opa) @ np.abs(opb)
    for threads in (1, 2):
        pygan.set_num_threads(threads)
        within(_core.gemm(a, b, trans_a, trans_b), exact, scale)


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 17, 61), (64, 127, 1000), (17, 1000, 3), (61, 3, 127)])
def test_dense_against_float64(isa, isa_name, act, bias, shape):
    isa(isa_name)
    n, k, m = shape
    rng = np.random.default_rng(n * 7 + k * 3 + m)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64)
    y = CPU.dense_forward(x, w, b, act, 0.2)
    scale = np.abs(x64) @ np.abs(w64) + (0 if b is None else np.abs(b64))
    # the activation is 1-Lipschitz, so the pre-activation's error bound carries over
    within(y, REF.dense_forward(x64, w64, b64, act, 0.2), scale)
    dy = rng.standard_normal((n, m)).astype(np.float32)
    y64 = y.astype(np.float64)  # both sides differentiate at the same float32 output
    ex, ew, eb = REF.dense_backward(dy.astype(np.float64), x64, w64, y64, act, 0.2)
    dz = np.abs(REF.activation_backward(dy.astype(np.float64), y64, act, 0.2))
    dx, dw, db = CPU.dense_backward(dy, x, w, y, act, 0.2)
    within(dx, ex, dz @ np.abs(w64.T))
    within(dw, ew, np.abs(x64.T) @ dz)
    within(db, eb, dz.sum(axis=0))
    dx2, dw2, db2 = CPU.dense_backward(dy, x, w, y, act, 0.2, need_params=False)
    assert dw2 is None and db2 is None and np.array_equal(dx2, dx)
    dx3, dw3, db3 = CPU.dense_backward(dy, x, w, y, act, 0.2, need_dx=False)
    assert dx3 is None and np.array_equal(dw3, dw) and np.array_equal(db3, db)


@pytest.mark.parametrize("isa_name", ISAS)
def test_results_do_not_depend_on_thread_count(isa, isa_name, thread_count):
    isa(isa_name)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((256, 1000)).astype(np.float32)
    w = rng.standard_normal((1000, 784)).astype(np.float32)
    b = rng.standard_normal(784).astype(np.float32)
    out = {}
    for t in (1, 2, 3):
        _core.set_num_threads(t)  # the native setter: a three-way split even on two cores
        y = CPU.dense_forward(x, w, b, "leaky_relu")
        out[t] = (y, *CPU.dense_backward(y, x, w, y, "leaky_relu"), _core.gemm(x, x, True, False))
    for t in (2, 3):
        for got, want in zip(out[t], out[1]):
            assert np.array_equal(got, want)


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(3, 17, 61), (64, 784, 512), (61, 300, 1000)])
def test_dense_forward_finds_any_nonfinite_weight(isa, isa_name, thread_count, threads, shape):
    """The weights are checked while they are packed: a NaN or Inf anywhere (first, last, a
    partial last panel, random) is reported, whatever the ISA path and thread count."""
    isa(isa_name)
    pygan.set_num_threads(threads)
    n, k, m = shape
    rng = np.random.default_rng(k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    CPU.dense_forward(x, w, None, "tanh")  # finite: no error
    spots = [(0, 0), (k - 1, m - 1), (k // 2, m - 1), (int(rng.integers(k)), int(rng.integers(m)))]
    for (r, c), bad in zip(spots, [np.nan, np.inf, -np.inf, np.nan]):
        w_bad = w.copy()
        w_bad[r, c] = bad
        with pytest.raises(ValueError, match="^w: contains NaN or Inf"):
            CPU.dense_forward(x, w_bad, None, "tanh")


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(3, 17, 61), (64, 784, 512), (200, 33, 70)])
def test_dense_forward_nonfinite_input_is_not_blamed_on_weights(isa, isa_name, thread_count, threads, shape):
    """A NaN or Inf in x (or a bias) with finite weights is no error: it flows into y as in the
    reference, and nowhere else. A weight Inf meeting only zeros of x is still found."""
    isa(isa_name)
    pygan.set_num_threads(threads)
    n, k, m = shape
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    x[n // 2, k // 3] = np.nan
    x[n - 1, k - 1] = np.inf
    b_bad = b.copy()
    b_bad[m - 1] = np.nan
    y = CPU.dense_forward(x, w, b_bad, "tanh")
    with np.errstate(invalid="ignore"):
        ref = REF.dense_forward(x.astype(np.float64), w.astype(np.float64), b_bad.astype(np.float64), "tanh")
    assert np.array_equal(np.isnan(y), np.isnan(ref))
    # everywhere the NaN and Inf do not reach, y is what the same data without them gives
    x_clean = np.where(np.isfinite(x), x, np.float32(0))
    y_clean = CPU.dense_forward(x_clean, w, b, "tanh")
    rows = [i for i in range(n) if i not in (n // 2, n - 1)]
    assert np.array_equal(y[rows, : m - 1], y_clean[rows, : m - 1])
    x = rng.standard_normal((n, k)).astype(np.float32)
    x[:, k // 2] = 0.0
    w_bad = w.copy()
    w_bad[k // 2, m // 2] = np.inf
    with pytest.raises(ValueError, match="^w: contains NaN or Inf"):
        CPU.dense_forward(x, w_bad, b, "relu")


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "tanh", "sigmoid"])
def test_epilogue_activations_keep_nan(isa, isa_name, act):
    """A NaN reaching an activation stays NaN in the vector epilogues (the GEMM tile's and the
    elementwise one after a col2im), as in the reference: tanh and sigmoid once clamped it to +-1."""
    isa(isa_name)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 20)).astype(np.float32)
    w = rng.standard_normal((20, 37)).astype(np.float32)
    b = np.zeros(37, np.float32)
    b[[0, 17, 36]] = np.nan
    y = CPU.dense_forward(x, w, b, act)
    assert np.isnan(y[:, [0, 17, 36]]).all() and np.isfinite(np.delete(y, [0, 17, 36], axis=1)).all()
    xi = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    wi = rng.standard_normal((3, 1, 4, 4)).astype(np.float32)
    yi = CPU.conv_transpose2d_forward(xi, wi, np.array([np.nan], np.float32), 2, 1, 0, act)
    assert np.isnan(yi).all()


@pytest.mark.parametrize("isa_name", ISAS)
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_zero_sizes(isa, isa_name, shape):
    isa(isa_name)
    n, k, m = shape
    x, w = np.ones((n, k), np.float32), np.ones((k, m), np.float32)
    b = np.full(m, 0.5, np.float32)
    y = CPU.dense_forward(x, w, b, "sigmoid")
    assert np.array_equal(y, REF.dense_forward(x, w, b, "sigmoid"))
    dx, dw, db = CPU.dense_backward(np.ones_like(y), x, w, y, "sigmoid")
    for got, want in zip((dx, dw, db), REF.dense_backward(np.ones_like(y), x, w, y, "sigmoid")):
        assert got.shape == want.shape and np.allclose(got, want)
    assert _core.gemm(np.ones((n, k), np.float32), np.ones((k, m), np.float32)).shape == (n, m)


def test_gemm_bad_input():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="^b:"):
        _core.gemm(a, np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="^a:"):
        _core.gemm(a.astype(np.float64), a)
    with pytest.raises(ValueError, match="^b:"):
        _core.gemm(a, np.ones((8, 6), np.float32)[::2, ::2], False, True)


def test_set_isa_and_threads_errors(isa):
    with pytest.raises(ValueError, match="^isa:"):
        isa("sse9")
    with pytest.raises(ValueError, match="^n:"):
        pygan.set_num_threads(0)
    with pytest.raises(TypeError, match="^n:"):
        pygan.set_num_threads("2")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=tempfile.gettempdir(),  # import the installed package, not the source tree
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("isa_name", ISAS)
def test_pygan_isa_environment_variable(isa_name):
    r = run_python("import pygan; pygan.set_backend('cpu'); print(pygan.backend_info())", PYGAN_ISA=isa_name, PYGAN_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert f"ISA {isa_name}" in r.stdout and "1 threads" in r.stdout


def test_pygan_isa_environment_variable_errors():
    r = run_python("import pygan; pygan.set_backend('cpu')", PYGAN_ISA="neon")
    assert r.returncode != 0 and "PYGAN_ISA: isa: unknown instruction set 'neon'" in r.stderr
    r = run_python("import pygan; pygan.set_backend('cpu')", PYGAN_NUM_THREADS="two")
    assert r.returncode != 0 and "PYGAN_NUM_THREADS" in r.stderr


def test_thread_counts_past_the_cores_are_capped_with_a_warning():
    """Every way in (the API, PYGAN_NUM_THREADS, the CLI's --threads) cuts a count above the cores this
    process may run on to that number, saying so; the GEMM's own cap stays for what is left."""
    cores = pygan.backend.cpu_backend.available_cores()
    r = run_python("import pygan; pygan.set_backend('cpu'); print(pygan.get_num_threads())",
                   PYGAN_NUM_THREADS=str(cores + 1))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(cores)]
    assert f"RuntimeWarning: PYGAN_NUM_THREADS: {cores + 1} threads on {cores} cores; using {cores}" in r.stderr
    code = ("import sys; from pygan import cli, get_num_threads; cli._configure_backend('cpu', int(sys.argv[1])); "
            "print(get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code, str(cores + 5)], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(cores)]
    assert r.stderr.strip() == f"pygan: warning: --threads: {cores + 5} threads on {cores} cores; using {cores}"
