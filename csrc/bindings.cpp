// pybind11 bindings of pygan._core. Arrays are taken without copies; every argument is checked
// (dtype, rank, shape, C-contiguity) and a bad one raises TypeError/ValueError naming it.
// The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "dense.h"
#include "gemm/gemm.h"

namespace py = pybind11;
using farray = py::array_t<float, py::array::c_style>;

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        s += std::to_string(a.shape(d));
        if (d + 1 < a.ndim() || a.ndim() == 1) s += ",";
        if (d + 1 < a.ndim()) s += " ";
    }
    return s + ")";
}

// Checks an argument and returns it as a float32 C-contiguous array (no copy is ever made).
farray as_f32(const py::handle& obj, const char* name, py::ssize_t ndim) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                             std::string(py::str(obj.get_type().attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<float>()))
        throw py::type_error(std::string(name) + ": expected dtype float32, got " +
                             std::string(py::str(a.dtype())));
    if (a.ndim() != ndim)
        throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) +
                              "-D array, got shape " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": must be C-contiguous (row-major)");
    if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(float) != 0)
        throw py::value_error(std::string(name) + ": must be aligned to its element size (pass a copy)");
    return py::reinterpret_borrow<farray>(a);
}

void expect_dim(const farray& a, const char* name, py::ssize_t axis, py::ssize_t want, const char* what) {
    if (a.shape(axis) != want)
        throw py::value_error(std::string(name) + ": axis " + std::to_string(axis) + " has size " +
                              std::to_string(a.shape(axis)) + ", expected " + std::to_string(want) +
                              " (" + what + ")");
}

pygan::Act to_act(int act, float slope) {
    if (act < 0 || act > 4) throw py::value_error("act: unknown activation code " + std::to_string(act));
    if (!(slope >= 0.0f) || !std::isfinite(slope))
        throw py::value_error("slope: must be a finite number >= 0");
    return static_cast<pygan::Act>(act);
}

farray dense_forward(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, int act,
                     float slope) {
    const pygan::Act a = to_act(act, slope);
    farray x = as_f32(x_obj, "x", 2), w = as_f32(w_obj, "w", 2);
    const py::ssize_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
    expect_dim(w, "w", 0, k, "must match x's features");
    std::optional<farray> b;
    if (!b_obj.is_none()) {
        b = as_f32(b_obj, "b", 1);
        expect_dim(*b, "b", 0, m, "must match w's outputs");
    }
    farray y({n, m});
    const float* bp = b ? b->data() : nullptr;
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        finite = pygan::dense_forward(x.data(), w.data(), bp, y.mutable_data(), n, k, m, a, slope);
    }
    if (!finite) throw py::value_error("w: contains NaN or Inf");
    return y;
}

py::tuple dense_backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj,
                         const py::handle& y_obj, int act, float slope, bool need_dx, bool need_params) {
    const pygan::Act a = to_act(act, slope);
    farray dy = as_f32(dy_obj, "dy", 2), x = as_f32(x_obj, "x", 2), w = as_f32(w_obj, "w", 2),
           y = as_f32(y_obj, "y", 2);
    const py::ssize_t n = x.shape(0), k = x.shape(1), m = w.shape(1);
    expect_dim(w, "w", 0, k, "must match x's features");
    expect_dim(dy, "dy", 0, n, "batch of x");
    expect_dim(dy, "dy", 1, m, "outputs of w");
    expect_dim(y, "y", 0, n, "batch of x");
    expect_dim(y, "y", 1, m, "outputs of w");
    std::optional<farray> dx, dw, db;
    if (need_dx) dx = farray({n, k});
    if (need_params) {
        dw = farray({k, m});
        db = farray({m});
    }
    {
        py::gil_scoped_release nogil;
        pygan::dense_backward(dy.data(), x.data(), w.data(), y.data(), dx ? dx->mutable_data() : nullptr,
                              dw ? dw->mutable_data() : nullptr, db ? db->mutable_data() : nullptr,
                              n, k, m, a, slope);
    }
    auto opt = [](std::optional<farray>& v) -> py::object { return v ? py::object(*v) : py::none(); };
    return py::make_tuple(opt(dx), opt(dw), opt(db));
}

// C = op(A) @ op(B), for the benchmarks and the tests of the transposed paths.
farray gemm(const py::handle& a_obj, const py::handle& b_obj, bool trans_a, bool trans_b) {
    farray a = as_f32(a_obj, "a", 2), b = as_f32(b_obj, "b", 2);
    const py::ssize_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
    const py::ssize_t kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
    if (kb != k)
        throw py::value_error("b: inner dimension " + std::to_string(kb) + " does not match a's " + std::to_string(k));
    farray c({m, n});
    pygan::gemm::Problem p;
    p.m = m, p.n = n, p.k = k;
    p.a = a.data(), p.lda = a.shape(1), p.trans_a = trans_a;
    p.b = b.data(), p.ldb = b.shape(1), p.trans_b = trans_b;
    p.c = c.mutable_data(), p.ldc = n;
    {
        py::gil_scoped_release nogil;
        pygan::gemm::sgemm(p);
    }
    return c;
}

void set_isa(const std::string& name) {
    try {
        pygan::gemm::set_isa(name);
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
}

void set_num_threads(int n) {
    if (n < 1) throw py::value_error("n: the number of threads must be >= 1, got " + std::to_string(n));
    pygan::gemm::set_num_threads(n);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "pygan's native CPU kernels (fused dense, GEMM core).";
    m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act"),
          py::arg("slope"), "y = act(x @ w + b), float32, C-contiguous.");
    m.def("dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"),
          py::arg("act"), py::arg("slope"), py::arg("need_dx"), py::arg("need_params"),
          "(dx, dw, db) of the fused dense op; None where not asked for.");
    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
          "C = op(a) @ op(b) on the GEMM core (float32, C-contiguous inputs).");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "Threads for the GEMM macro-kernel loops.");
    m.def("num_threads", &pygan::gemm::num_threads, "Threads the GEMM core uses.");
    m.def("supported_isas", &pygan::gemm::supported_isas, "ISA paths this CPU can run.");
    m.def("current_isa", &pygan::gemm::current_isa, "The ISA path in use.");
    m.def("set_isa", &set_isa, py::arg("name"), "Force an ISA path: avx512, avx2 or generic.");
}
