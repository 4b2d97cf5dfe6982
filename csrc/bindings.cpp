// pybind11 bindings of pygan._core. Arrays are taken without copies; every argument is checked
// (dtype, rank, shape, C-contiguity) and a bad one raises TypeError/ValueError naming it.
// The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>
#include <string>

#include "denormal.h"
#include "conv.h"
#include "finite.h"
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
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<float>()))  // equality: a pickled float32 dtype is another object
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

// A parameter-gradient array: the caller's buffer (checked: float32, C-contiguous, writeable, the
// expected shape), or a new one (zeroed if the kernel is to add to it).
farray grad_array(const py::handle& obj, const char* name, const std::vector<py::ssize_t>& shape, bool accumulate) {
    if (obj.is_none()) {
        farray a(shape);
        if (accumulate) std::fill(a.mutable_data(), a.mutable_data() + a.size(), 0.0f);
        return a;
    }
    farray a = as_f32(obj, name, static_cast<py::ssize_t>(shape.size()));
    for (std::size_t d = 0; d < shape.size(); ++d)
        expect_dim(a, name, static_cast<py::ssize_t>(d), shape[d], "the parameter's shape");
    if (!a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
    return a;
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
        const pygan::FlushDenormals ftz;
        finite = pygan::dense_forward(x.data(), w.data(), bp, y.mutable_data(), n, k, m, a, slope);
    }
    if (!finite) throw py::value_error("w: contains NaN or Inf");
    return y;
}

py::tuple dense_backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj,
                         const py::handle& y_obj, int act, float slope, bool need_dx, bool need_params,
                         const py::handle& dw_obj, const py::handle& db_obj, bool accumulate) {
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
        dw = grad_array(dw_obj, "dw_out", {k, m}, accumulate);
        db = grad_array(db_obj, "db_out", {m}, accumulate);
    }
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        pygan::dense_backward(dy.data(), x.data(), w.data(), y.data(), dx ? dx->mutable_data() : nullptr,
                              dw ? dw->mutable_data() : nullptr, db ? db->mutable_data() : nullptr,
                              n, k, m, a, slope, accumulate);
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
        const pygan::FlushDenormals ftz;
        pygan::gemm::sgemm(p);
    }
    return c;
}

// ---- convolutions and batch norm (geometry and dtypes are checked by the Python caller too; NaN/Inf in
// the weights only here) ----
pygan::ConvShape conv_shape(const farray& x, const farray& w, int stride, int padding, bool transposed,
                            int output_padding) {
    if (stride < 1) throw py::value_error("stride: must be >= 1");
    if (padding < 0) throw py::value_error("padding: must be >= 0");
    if (w.shape(2) != w.shape(3)) throw py::value_error("w: kernels must be square, got " + shape_str(w));
    pygan::ConvShape s{};
    s.k = w.shape(2), s.stride = stride, s.pad = padding, s.n = x.shape(0);
    if (!transposed) {
        expect_dim(w, "w", 1, x.shape(1), "input channels of x");
        s.c_in = x.shape(1), s.h = x.shape(2), s.w = x.shape(3), s.c_out = w.shape(0);
        const py::ssize_t eh = s.h + 2 * s.pad - s.k, ew = s.w + 2 * s.pad - s.k;
        if (eh < 0 || ew < 0) throw py::value_error("x: the kernel does not fit the padded input " + shape_str(x));
        s.ho = eh / s.stride + 1, s.wo = ew / s.stride + 1;
    } else {
        expect_dim(w, "w", 0, x.shape(1), "input channels of x");
        if (output_padding < 0 || output_padding >= stride)
            throw py::value_error("output_padding: must be in [0, stride)");
        s.c_out = x.shape(1), s.ho = x.shape(2), s.wo = x.shape(3), s.c_in = w.shape(1);
        s.h = (s.ho - 1) * s.stride - 2 * s.pad + s.k + output_padding;
        s.w = (s.wo - 1) * s.stride - 2 * s.pad + s.k + output_padding;
        if (s.h <= 0 || s.w <= 0) throw py::value_error("padding: leaves no output for x " + shape_str(x));
    }
    return s;
}

std::optional<farray> optional_bias(const py::handle& b_obj, py::ssize_t channels) {
    if (b_obj.is_none()) return std::nullopt;
    farray b = as_f32(b_obj, "b", 1);
    expect_dim(b, "b", 0, channels, "output channels");
    return b;
}

farray conv_forward(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj, int stride,
                    int padding, int output_padding, int act, float slope, bool transposed) {
    const pygan::Act a = to_act(act, slope);
    farray x = as_f32(x_obj, "x", 4), w = as_f32(w_obj, "w", 4);
    const pygan::ConvShape s = conv_shape(x, w, stride, padding, transposed, output_padding);
    auto b = optional_bias(b_obj, transposed ? s.c_in : s.c_out);
    farray y = transposed ? farray({s.n, s.c_in, s.h, s.w}) : farray({s.n, s.c_out, s.ho, s.wo});
    bool ok = true;
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        const float* bp = b ? b->data() : nullptr;
        ok = transposed ? pygan::conv_transpose2d_forward(s, x.data(), w.data(), bp, y.mutable_data(), a, slope)
                        : pygan::conv2d_forward(s, x.data(), w.data(), bp, y.mutable_data(), a, slope);
    }
    if (!ok) throw py::value_error("w: contains NaN or Inf");
    return y;
}

py::tuple conv_backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj,
                        const py::handle& y_obj, int stride, int padding, int output_padding, int act, float slope,
                        bool need_dx, bool need_params, bool transposed, const py::handle& dw_obj,
                        const py::handle& db_obj, bool accumulate) {
    const pygan::Act a = to_act(act, slope);
    farray dy = as_f32(dy_obj, "dy", 4), x = as_f32(x_obj, "x", 4), w = as_f32(w_obj, "w", 4),
           y = as_f32(y_obj, "y", 4);
    const pygan::ConvShape s = conv_shape(x, w, stride, padding, transposed, output_padding);
    const py::ssize_t oc = transposed ? s.c_in : s.c_out, oh = transposed ? s.h : s.ho, ow = transposed ? s.w : s.wo;
    for (auto* pr : {&dy, &y}) {
        const char* name = pr == &dy ? "dy" : "y";
        expect_dim(*pr, name, 0, s.n, "batch of x");
        expect_dim(*pr, name, 1, oc, "output channels");
        expect_dim(*pr, name, 2, oh, "output height");
        expect_dim(*pr, name, 3, ow, "output width");
    }
    std::optional<farray> dx, dw, db;
    if (need_dx) dx = farray({x.shape(0), x.shape(1), x.shape(2), x.shape(3)});
    if (need_params) {
        dw = grad_array(dw_obj, "dw_out", {w.shape(0), w.shape(1), w.shape(2), w.shape(3)}, accumulate);
        db = grad_array(db_obj, "db_out", {oc}, accumulate);
    }
    bool finite = true;
    {
        py::gil_scoped_release nogil;
        finite = pygan::all_finite(w.data(), w.size());
    }
    if (!finite) throw py::value_error("w: contains NaN or Inf");
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        float* dxp = dx ? dx->mutable_data() : nullptr;
        float* dwp = dw ? dw->mutable_data() : nullptr;
        float* dbp = db ? db->mutable_data() : nullptr;
        if (transposed)
            pygan::conv_transpose2d_backward(s, dy.data(), x.data(), w.data(), y.data(), dxp, dwp, dbp, a, slope,
                                             accumulate);
        else
            pygan::conv2d_backward(s, dy.data(), x.data(), w.data(), y.data(), dxp, dwp, dbp, a, slope, accumulate);
    }
    auto opt = [](std::optional<farray>& v) -> py::object { return v ? py::object(*v) : py::none(); };
    return py::make_tuple(opt(dx), opt(dw), opt(db));
}

// (n, c, inner) view of a 2-D or 4-D batch-norm input
void bn_dims(const py::array& x, py::ssize_t& n, py::ssize_t& c, py::ssize_t& inner) {
    n = x.shape(0), c = x.shape(1), inner = x.ndim() == 4 ? x.shape(2) * x.shape(3) : 1;
}

farray as_bn_input(const py::handle& obj, const char* name) {
    if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() == 2) return as_f32(obj, name, 2);
    return as_f32(obj, name, 4);
}

// A normalisation's backward inputs: x (2-D or 4-D), and dy and y of its shape.
std::tuple<farray, farray, farray> norm_backward_inputs(const py::handle& x_obj, const py::handle& dy_obj,
                                                        const py::handle& y_obj) {
    farray x = as_bn_input(x_obj, "x");
    const py::ssize_t nd = x.ndim();
    farray dy = as_f32(dy_obj, "dy", nd), y = as_f32(y_obj, "y", nd);
    for (py::ssize_t d = 0; d < nd; ++d) {
        expect_dim(dy, "dy", d, x.shape(d), "shape of x");
        expect_dim(y, "y", d, x.shape(d), "shape of x");
    }
    return {x, dy, y};
}

py::tuple bn_stats(const py::handle& x_obj) {
    farray x = as_bn_input(x_obj, "x");
    py::ssize_t n, c, inner;
    bn_dims(x, n, c, inner);
    farray mean({c}), var({c});
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        pygan::batch_norm_stats(x.data(), n, c, inner, mean.mutable_data(), var.mutable_data());
    }
    return py::make_tuple(mean, var);
}

farray bn_apply(const py::handle& x_obj, const py::handle& mean_obj, const py::handle& invstd_obj,
                const py::handle& gamma_obj, const py::handle& beta_obj, int act, float slope) {
    const pygan::Act a = to_act(act, slope);
    farray x = as_bn_input(x_obj, "x");
    py::ssize_t n, c, inner;
    bn_dims(x, n, c, inner);
    farray mean = as_f32(mean_obj, "mean", 1), invstd = as_f32(invstd_obj, "invstd", 1),
           gamma = as_f32(gamma_obj, "gamma", 1), beta = as_f32(beta_obj, "beta", 1);
    for (auto [arr, name] : {std::pair{&mean, "mean"}, {&invstd, "invstd"}, {&gamma, "gamma"}, {&beta, "beta"}})
        expect_dim(*arr, name, 0, c, "channels of x");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    farray y(shape);
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        pygan::batch_norm_apply(x.data(), n, c, inner, mean.data(), invstd.data(), gamma.data(), beta.data(),
                                y.mutable_data(), a, slope);
    }
    return y;
}

py::tuple bn_backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& y_obj,
                      const py::handle& gamma_obj, const py::handle& mean_obj, const py::handle& invstd_obj,
                      bool training, int act, float slope) {
    const pygan::Act a = to_act(act, slope);
    auto [x, dy, y] = norm_backward_inputs(x_obj, dy_obj, y_obj);
    const py::ssize_t nd = x.ndim();
    py::ssize_t n, c, inner;
    bn_dims(x, n, c, inner);
    farray gamma = as_f32(gamma_obj, "gamma", 1), mean = as_f32(mean_obj, "mean", 1),
           invstd = as_f32(invstd_obj, "invstd", 1);
    for (auto [arr, name] : {std::pair{&gamma, "gamma"}, {&mean, "mean"}, {&invstd, "invstd"}})
        expect_dim(*arr, name, 0, c, "channels of x");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + nd);
    farray dx(shape), dgamma({c}), dbeta({c});
    {
        py::gil_scoped_release nogil;
        const pygan::FlushDenormals ftz;
        pygan::batch_norm_backward(dy.data(), x.data(), y.data(), n, c, inner, gamma.data(), mean.data(),
                                   invstd.data(), training, dx.mutable_data(), dgamma.mutable_data(),
                                   dbeta.mutable_data(), a, slope);
    }
    return py::make_tuple(dx, dgamma, dbeta);
}

farray upsample(const py::handle& x_obj, bool bilinear, bool backward) {
    farray x = as_f32(x_obj, backward ? "dy" : "x", 4);
    const py::ssize_t n = x.shape(0), c = x.shape(1);
    py::ssize_t h = x.shape(2), w = x.shape(3);
    if (backward) {
        if (h % 2 || w % 2) throw py::value_error("dy: the output of a 2x upsampling has even sides, got shape " + shape_str(x));
        h /= 2, w /= 2;
    }
    const py::ssize_t f = backward ? 1 : 2;
    farray y({n, c, h * f, w * f});
    {
        py::gil_scoped_release nogil;
        if (backward) pygan::upsample2x_backward(x.data(), n * c, h, w, bilinear, y.mutable_data());
        else pygan::upsample2x_forward(x.data(), n * c, h, w, bilinear, y.mutable_data());
    }
    return y;
}

// group norm's (n, c, inner) view, and whether gamma/beta are per example ((n, c)) or per channel
py::tuple gn_forward(const py::handle& x_obj, const py::handle& gamma_obj, const py::handle& beta_obj, int groups,
                     float eps, int act, float slope) {
    const pygan::Act a = to_act(act, slope);
    farray x = as_bn_input(x_obj, "x");
    py::ssize_t n, c, inner;
    bn_dims(x, n, c, inner);
    if (groups < 1 || c % groups) throw py::value_error("groups: " + std::to_string(groups) + " groups do not divide " +
                                                        std::to_string(c) + " channels");
    const bool per_example = py::isinstance<py::array>(gamma_obj) && py::reinterpret_borrow<py::array>(gamma_obj).ndim() == 2;
    farray gamma = as_f32(gamma_obj, "gamma", per_example ? 2 : 1), beta = as_f32(beta_obj, "beta", per_example ? 2 : 1);
    for (auto [arr, name] : {std::pair{&gamma, "gamma"}, {&beta, "beta"}}) {
        if (per_example) expect_dim(*arr, name, 0, n, "examples of x");
        expect_dim(*arr, name, per_example ? 1 : 0, c, "channels of x");
    }
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    farray y(shape), mean({n, static_cast<py::ssize_t>(groups)}), invstd({n, static_cast<py::ssize_t>(groups)});
    {
        py::gil_scoped_release nogil;
        pygan::group_norm_forward(x.data(), n, c, inner, groups, gamma.data(), beta.data(), per_example, eps,
                                  y.mutable_data(), mean.mutable_data(), invstd.mutable_data(), a, slope);
    }
    return py::make_tuple(y, mean, invstd);
}

py::tuple gn_backward(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& y_obj,
                      const py::handle& gamma_obj, const py::handle& mean_obj, const py::handle& invstd_obj, int groups,
                      int act, float slope) {
    const pygan::Act a = to_act(act, slope);
    auto [x, dy, y] = norm_backward_inputs(x_obj, dy_obj, y_obj);
    const py::ssize_t nd = x.ndim();
    py::ssize_t n, c, inner;
    bn_dims(x, n, c, inner);
    if (groups < 1 || c % groups) throw py::value_error("groups: " + std::to_string(groups) + " groups do not divide " +
                                                        std::to_string(c) + " channels");
    const bool per_example = py::isinstance<py::array>(gamma_obj) && py::reinterpret_borrow<py::array>(gamma_obj).ndim() == 2;
    farray gamma = as_f32(gamma_obj, "gamma", per_example ? 2 : 1);
    if (per_example) expect_dim(gamma, "gamma", 0, n, "examples of x");
    expect_dim(gamma, "gamma", per_example ? 1 : 0, c, "channels of x");
    farray mean = as_f32(mean_obj, "mean", 2), invstd = as_f32(invstd_obj, "invstd", 2);
    for (auto [arr, name] : {std::pair{&mean, "mean"}, {&invstd, "invstd"}}) {
        expect_dim(*arr, name, 0, n, "examples of x");
        expect_dim(*arr, name, 1, groups, "groups");
    }
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + nd), gshape(gamma.shape(), gamma.shape() + gamma.ndim());
    farray dx(shape), dgamma(gshape), dbeta(gshape);
    {
        py::gil_scoped_release nogil;
        pygan::group_norm_backward(dy.data(), x.data(), y.data(), n, c, inner, groups, gamma.data(), per_example,
                                   mean.data(), invstd.data(), dx.mutable_data(), dgamma.mutable_data(),
                                   dbeta.mutable_data(), a, slope);
    }
    return py::make_tuple(dx, dgamma, dbeta);
}

void set_isa(const std::string& name) {
    try {
        pygan::gemm::set_isa(name);
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
}

double fma_peak(py::ssize_t threads, double seconds, py::ssize_t trials) {
    if (threads < 1 || threads > pygan::gemm::kMaxThreads)
        throw py::value_error("threads: must be in 1 .. " + std::to_string(pygan::gemm::kMaxThreads) + ", got " +
                              std::to_string(threads));
    if (trials < 1 || trials > 100) throw py::value_error("trials: must be in 1 .. 100, got " + std::to_string(trials));
    if (!(seconds > 0.0 && seconds <= 60.0)) throw py::value_error("seconds: must be in (0, 60], got " + std::to_string(seconds));
    py::gil_scoped_release nogil;
    return pygan::gemm::fma_peak(static_cast<int>(threads), seconds, static_cast<int>(trials));
}

void set_num_threads(py::ssize_t n) {
    // taken wide so that any Python int within ssize_t reaches this check rather than pybind's overload error
    if (n < 1 || n > pygan::gemm::kMaxThreads)
        throw py::value_error("n: the number of threads must be in 1 .. " + std::to_string(pygan::gemm::kMaxThreads) +
                              ", got " + std::to_string(n));
    pygan::gemm::set_num_threads(static_cast<int>(n));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "pygan's native CPU kernels (fused dense, GEMM core).";
    m.def("dense_forward", &dense_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act"),
          py::arg("slope"), "y = act(x @ w + b), float32, C-contiguous.");
    m.def("dense_backward", &dense_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"),
          py::arg("act"), py::arg("slope"), py::arg("need_dx"), py::arg("need_params"), py::arg("dw_out") = py::none(),
          py::arg("db_out") = py::none(), py::arg("accumulate") = false,
          "(dx, dw, db) of the fused dense op; None where not asked for. dw and db are written into\n"
          "dw_out/db_out when given (added to them with accumulate).");
    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
          "C = op(a) @ op(b) on the GEMM core (float32, C-contiguous inputs).");
    m.def("conv_forward", &conv_forward, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"),
          py::arg("padding"), py::arg("output_padding"), py::arg("act"), py::arg("slope"), py::arg("transposed"),
          "conv2d (or conv_transpose2d) with bias and activation fused, NCHW float32.");
    m.def("conv_backward", &conv_backward, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y"),
          py::arg("stride"), py::arg("padding"), py::arg("output_padding"), py::arg("act"), py::arg("slope"),
          py::arg("need_dx"), py::arg("need_params"), py::arg("transposed"), py::arg("dw_out") = py::none(),
          py::arg("db_out") = py::none(), py::arg("accumulate") = false,
          "(dx, dw, db) of conv2d or conv_transpose2d; None where not asked for. dw and db are written\n"
          "into dw_out/db_out when given (added to them with accumulate).");
    m.def("bn_stats", &bn_stats, py::arg("x"), "Per-channel mean and biased variance (two-pass).");
    m.def("bn_apply", &bn_apply, py::arg("x"), py::arg("mean"), py::arg("invstd"), py::arg("gamma"),
          py::arg("beta"), py::arg("act"), py::arg("slope"), "act(gamma * (x - mean) * invstd + beta).");
    m.def("bn_backward", &bn_backward, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("gamma"),
          py::arg("mean"), py::arg("invstd"), py::arg("training"), py::arg("act"), py::arg("slope"),
          "(dx, dgamma, dbeta) of batch norm + activation.");
    m.def("upsample", &upsample, py::arg("x"), py::arg("bilinear"), py::arg("backward"),
          "2x upsampling of (N, C, H, W) (nearest or bilinear), or its adjoint.");
    m.def("gn_forward", &gn_forward, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("groups"), py::arg("eps"),
          py::arg("act"), py::arg("slope"), "Group norm + activation: (y, mean, invstd).");
    m.def("gn_backward", &gn_backward, py::arg("dy"), py::arg("x"), py::arg("y"), py::arg("gamma"), py::arg("mean"),
          py::arg("invstd"), py::arg("groups"), py::arg("act"), py::arg("slope"), "Group norm backward: (dx, dgamma, dbeta).");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "Threads for the GEMM macro-kernel loops.");
    m.def("fma_peak", &fma_peak, py::arg("threads"), py::arg("seconds") = 0.2, py::arg("trials") = 3,
          "GFLOP/s of register-only float32 FMA chains of the ISA in use on `threads` threads at once (the best of\n"
          "`trials` runs of `seconds`): the machine's limit for the GEMM core at that thread count.");
    m.def("num_threads", &pygan::gemm::num_threads, "Threads the GEMM core uses.");
    m.attr("MAX_THREADS") = pygan::gemm::kMaxThreads;
    m.def("supported_isas", &pygan::gemm::supported_isas, "ISA paths this CPU can run.");
    m.def("current_isa", &pygan::gemm::current_isa, "The ISA path in use.");
    m.def(
        "gemm_blocking",
        [] {
            const auto b = pygan::gemm::current_blocking();
            py::dict d;
            d["mr"] = b.mr, d["nr"] = b.nr, d["kc"] = b.kc, d["nb"] = b.nb, d["mb"] = b.mb, d["l1d"] = b.l1d, d["l2"] = b.l2;
            return d;
        },
        "The GEMM core's register tile (mr, nr) and cache blocking (kc, nb, mb) for the ISA in use, and the "
        "L1d/L2 sizes in bytes (0 where the system does not report them); nb follows L2, kc and mb are the ISA's.");
    m.def("set_isa", &set_isa, py::arg("name"), "Force an ISA path: avx512, avx2 or generic.");
}
