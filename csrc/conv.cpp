// Convolutions on the GEMM core, a chunk of images at a time.
//
// A chunk of G images is unfolded (im2col) into cols (C_in*k*k x G*Ho*Wo), so that conv2d is one
// GEMM  Z (C_out x G*Ho*Wo) = W (C_out x C_in*k*k) cols  with bias (per row) and activation in the
// GEMM's epilogue; the chunk's columns are then copied into NCHW. G is fixed by the shape (about
// 2,048 columns; measured 8% faster than 512 on the DCGAN layers), never by the thread count, and the weight gradient accumulates chunk after chunk
// in order, so results are identical for any number of threads; the threads work inside each GEMM.
// conv_transpose2d is the adjoint: its forward is conv2d's data gradient (GEMM + col2im) and its
// backward reuses conv2d's im2col.
#include "conv.h"
#include "denormal.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "gemm/gemm.h"

namespace pygan {
namespace {


// Sum of f(q) over q in [0, n) in double, in eight independent lanes: vectorisable without
// reassociation flags, and the same order on every run and thread count.
template <class F>
double lane_sum(idx n, F&& f) {
    double acc[8] = {};
    idx q = 0;
    for (; q + 8 <= n; q += 8)
        for (int j = 0; j < 8; ++j) acc[j] += f(q + j);
    for (int j = 0; q < n; ++q, ++j) acc[j] += f(q);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Two such sums in one pass: f(q) returns both terms.
template <class F>
std::pair<double, double> lane_sum2(idx n, F&& f) {
    double a[8] = {}, b[8] = {};
    idx q = 0;
    for (; q + 8 <= n; q += 8)
        for (int j = 0; j < 8; ++j) {
            const auto [u, v] = f(q + j);
            a[j] += u;
            b[j] += v;
        }
    for (int j = 0; q < n; ++q, ++j) {
        const auto [u, v] = f(q);
        a[j] += u;
        b[j] += v;
    }
    return {((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])),
            ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))};
}

idx chunk_images(const ConvShape& s, idx spatial) {
    if (spatial <= 0) return std::max<idx>(1, s.n);  // empty images: nothing to unfold
    return std::max<idx>(1, std::min<idx>(s.n, (2048 + spatial - 1) / spatial));
}

int threads_for(idx work) { return work < (1 << 15) ? 1 : gemm::num_threads(); }

// The output columns ow whose input column ow*stride - pad + kj lies inside [0, w): [lo, hi).
inline void valid_range(const ConvShape& s, idx kj, idx& lo, idx& hi) {
    const idx first = s.pad - kj;  // ow*stride >= first
    lo = first <= 0 ? 0 : (first + s.stride - 1) / s.stride;
    const idx last = s.w - 1 + s.pad - kj;  // ow*stride <= last
    hi = last < 0 ? 0 : std::min<idx>(s.wo, last / s.stride + 1);
    lo = std::min(lo, hi);
}

// cols[(c*k + ki)*k + kj][g*Ho*Wo + oh*Wo + ow] = x[n0+g][c][oh*stride - pad + ki][ow*stride - pad + kj]
// (0 outside the image). Each row is a strided copy per output row, with no per-element tests.
void im2col(const ConvShape& s, const float* x, idx n0, idx g, float* cols) {
    const idx spatial = s.ho * s.wo, ncols = g * spatial, rows = s.c_in * s.k * s.k;
    FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(rows * ncols)) schedule(static) firstprivate(ftz)
    for (idx row = 0; row < rows; ++row) {
        const idx kj = row % s.k, ki = (row / s.k) % s.k, c = row / (s.k * s.k);
        idx lo, hi;
        valid_range(s, kj, lo, hi);
        const idx shift = kj - s.pad;
        float* out = cols + row * ncols;
        for (idx img = 0; img < g; ++img) {
            const float* plane = x + ((n0 + img) * s.c_in + c) * s.h * s.w;
            for (idx oh = 0; oh < s.ho; ++oh) {
                const idx ih = oh * s.stride - s.pad + ki;
                float* o = out + img * spatial + oh * s.wo;
                if (ih < 0 || ih >= s.h) {
                    std::fill(o, o + s.wo, 0.0f);
                    continue;
                }
                const float* src = plane + ih * s.w;  // src[ow * stride + shift] is inside the row for ow in [lo, hi)
                std::fill(o, o + lo, 0.0f);
                if (s.stride == 1) {
                    if (hi > lo) std::memcpy(o + lo, src + lo + shift, sizeof(float) * static_cast<std::size_t>(hi - lo));
                } else {
                    for (idx ow = lo; ow < hi; ++ow) o[ow] = src[ow * s.stride + shift];
                }
                std::fill(o + hi, o + s.wo, 0.0f);
            }
        }
    }
}

// B's row `row` of the unfolded chunk (im2col's layout, images n0..) for columns j0 .. j0 + count,
// made on the fly for the GEMM core's B packing. Within each output row the in-image columns
// [lo, hi) are a strided copy, the rest zeros; no per-element tests.
struct PatchRows {
    const ConvShape* s;
    const float* x;
    idx n0;
};

void patch_row(const void* ctx, idx row, idx j0, idx count, float* out) {
    const auto& pr = *static_cast<const PatchRows*>(ctx);
    const ConvShape& s = *pr.s;
    const idx kj = row % s.k, ki = (row / s.k) % s.k, c = row / (s.k * s.k);
    const idx spatial = s.ho * s.wo;
    idx lo, hi;
    valid_range(s, kj, lo, hi);
    idx img = j0 / spatial, oh = (j0 % spatial) / s.wo, ow = j0 % s.wo;
    while (count > 0) {
        const idx run = std::min(count, s.wo - ow), end = ow + run;  // the rest of this output row
        const idx ih = oh * s.stride - s.pad + ki;
        if (ih < 0 || ih >= s.h) {
            std::fill(out, out + run, 0.0f);
        } else {
            const float* src = pr.x + ((pr.n0 + img) * s.c_in + c) * s.h * s.w + ih * s.w;
            const idx shift = kj - s.pad;  // src[q * stride + shift] is inside the row for q in [lo, hi)
            const idx a = std::clamp(lo, ow, end), z = std::clamp(hi, a, end);
            std::fill(out, out + (a - ow), 0.0f);
            for (idx q = a; q < z; ++q) out[q - ow] = src[q * s.stride + shift];
            std::fill(out + (z - ow), out + run, 0.0f);
        }
        out += run;
        count -= run;
        ow = 0;
        if (++oh == s.ho) oh = 0, ++img;
    }
}

// x[n0+g] = col2im(cols): each image plane is zeroed and then receives the cols entries that
// read it, (ki, kj) in order, so planes are independent and every sum has a fixed order.
void col2im(const ConvShape& s, const float* cols, idx n0, idx g, float* x) {
    const idx spatial = s.ho * s.wo, ncols = g * spatial;
    const idx planes = g * s.c_in;
    FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(planes * spatial * s.k * s.k)) schedule(static) firstprivate(ftz)
    for (idx pl = 0; pl < planes; ++pl) {
        const idx img = pl / s.c_in, c = pl % s.c_in;
        float* plane = x + ((n0 + img) * s.c_in + c) * s.h * s.w;
        std::fill(plane, plane + s.h * s.w, 0.0f);
        for (idx ki = 0; ki < s.k; ++ki)
            for (idx kj = 0; kj < s.k; ++kj) {
                idx lo, hi;
                valid_range(s, kj, lo, hi);
                const float* src = cols + ((c * s.k + ki) * s.k + kj) * ncols + img * spatial;
                for (idx oh = 0; oh < s.ho; ++oh) {
                    const idx ih = oh * s.stride - s.pad + ki;
                    if (ih < 0 || ih >= s.h) continue;
                    float* dst = plane + ih * s.w;
                    const float* row = src + oh * s.wo;
                    const idx shift = kj - s.pad;
                    for (idx ow = lo; ow < hi; ++ow) dst[ow * s.stride + shift] += row[ow];
                }
            }
    }
}

// (rows x g*spatial) chunk matrix <-> NCHW images n0.. of `channels` channels.
void chunk_to_nchw(const float* z, idx n0, idx g, idx channels, idx spatial, float* y) {
    for (idx ch = 0; ch < channels; ++ch)
        for (idx img = 0; img < g; ++img)
            std::memcpy(y + ((n0 + img) * channels + ch) * spatial, z + ch * g * spatial + img * spatial,
                        sizeof(float) * spatial);
}

void nchw_to_chunk(const float* y, idx n0, idx g, idx channels, idx spatial, float* z) {
    for (idx ch = 0; ch < channels; ++ch)
        for (idx img = 0; img < g; ++img)
            std::memcpy(z + ch * g * spatial + img * spatial, y + ((n0 + img) * channels + ch) * spatial,
                        sizeof(float) * spatial);
}

// dz = dy * act'(y) for a chunk, in chunk layout, and db += its row sums (channels in parallel).
void act_grad_chunk(const float* dy, const float* y, idx n0, idx g, idx channels, idx spatial, Act act, float slope,
                    float* dz, float* db) {
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(channels * g * spatial)) schedule(static) firstprivate(ftz)
        for (idx ch = 0; ch < channels; ++ch) {
            double sum = 0.0;
            for (idx img = 0; img < g; ++img) {
                const idx off = ((n0 + img) * channels + ch) * spatial;
                float* o = dz + ch * g * spatial + img * spatial;
                for (idx q = 0; q < spatial; ++q) o[q] = act_backward(A, dy[off + q], y[off + q], slope);
                sum += lane_sum(spatial, [o](idx q) { return double(o[q]); });
            }
            if (db) db[ch] += static_cast<float>(sum);
        }
    });
}

// cols (kk x ncols) = w^T (kk x c_out) z (c_out x ncols) for images n0 .. n0 + g, folded back into
// `out` by col2im: conv2d's data gradient (z = dz) and conv_transpose2d's forward (z = its input).
void fold_back(const ConvShape& s, const float* w, const float* z, idx n0, idx g, float* cols, float* out) {
    const idx kk = s.c_in * s.k * s.k, ncols = g * s.ho * s.wo;
    gemm::Problem p;
    p.m = kk, p.n = ncols, p.k = s.c_out;
    p.a = w, p.lda = kk, p.trans_a = true;
    p.b = z, p.ldb = ncols;
    p.c = cols, p.ldc = ncols;
    gemm::sgemm(p);
    col2im(s, cols, n0, g, out);
}

bool finite_all(const float* w, idx n) {
    bool ok = true;
    for (idx i = 0; i < n; ++i) ok = ok && std::isfinite(w[i]);
    return ok;
}

}  // namespace

bool conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act,
                    float slope) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo;
    if (!finite_all(w, s.c_out * kk)) return false;
    // no unfolded buffer here, so chunks only bound z: about 8,192 output columns
    const idx G = spatial <= 0 ? std::max<idx>(1, s.n) : std::max<idx>(1, std::min<idx>(s.n, (8192 + spatial - 1) / spatial));
    std::vector<float> z(static_cast<std::size_t>(s.c_out * G * spatial));
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0);
        const PatchRows patches{&s, x, n0};
        gemm::Problem p;  // the core packs image patches straight into its B panels: no unfolded copy
        p.m = s.c_out, p.n = g * spatial, p.k = kk;
        p.a = w, p.lda = kk;
        p.load_b = patch_row, p.b_ctx = &patches;
        p.c = z.data(), p.ldc = g * spatial;
        p.epi.bias_row = b, p.epi.act = act, p.epi.slope = slope;
        gemm::sgemm(p);
        chunk_to_nchw(z.data(), n0, g, s.c_out, spatial, y);
    }
    return true;
}

void conv2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y, float* dx,
                     float* dw, float* db, Act act, float slope) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo;
    const idx G = chunk_images(s, spatial);
    std::vector<float> cols(static_cast<std::size_t>(kk * G * spatial)), dz(static_cast<std::size_t>(s.c_out * G * spatial));
    if (db) std::fill(db, db + s.c_out, 0.0f);
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0), ncols = g * spatial;
        act_grad_chunk(dy, y, n0, g, s.c_out, spatial, act, slope, dz.data(), db);
        if (dw) {
            im2col(s, x, n0, g, cols.data());
            gemm::Problem p;  // dw (c_out x kk) += dz (c_out x ncols) cols^T (ncols x kk)
            p.m = s.c_out, p.n = kk, p.k = ncols;
            p.a = dz.data(), p.lda = ncols;
            p.b = cols.data(), p.ldb = ncols, p.trans_b = true;
            p.c = dw, p.ldc = kk, p.accumulate = n0 > 0;
            gemm::sgemm(p);
        }
        if (dx) fold_back(s, w, dz.data(), n0, g, cols.data(), dx);
    }
    if (dw && s.n == 0) std::fill(dw, dw + s.c_out * kk, 0.0f);
}

bool conv_transpose2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act,
                              float slope) {
    // as conv2d's data gradient: cols (kk x ncols) = w^T dz with x in dz's place, then col2im
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo, plane = s.h * s.w;
    if (!finite_all(w, s.c_out * kk)) return false;
    const idx G = chunk_images(s, spatial);
    std::vector<float> cols(static_cast<std::size_t>(kk * G * spatial)), xz(static_cast<std::size_t>(s.c_out * G * spatial));
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0);
        nchw_to_chunk(x, n0, g, s.c_out, spatial, xz.data());
        fold_back(s, w, xz.data(), n0, g, cols.data(), y);
    }
    const idx total = s.n * s.c_in * plane;
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(total)) schedule(static) firstprivate(ftz)
        for (idx row = 0; row < s.n * s.c_in; ++row) {
            const float bias = b ? b[row % s.c_in] : 0.0f;
            float* p = y + row * plane;
            for (idx q = 0; q < plane; ++q) p[q] = act_forward(A, p[q] + bias, slope);
        }
    });
    return true;
}

void conv_transpose2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y,
                               float* dx, float* dw, float* db, Act act, float slope) {
    // dz = dy * act'(y) over the transposed conv's output (conv2d's input side), then conv2d's
    // forward on dz gives dx, and dw accumulates x-chunk x cols^T.
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo, plane = s.h * s.w;
    const idx total = s.n * s.c_in * plane;
    std::vector<float> dz(static_cast<std::size_t>(total));
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(total)) schedule(static) firstprivate(ftz)
        for (idx i = 0; i < total; ++i) dz[i] = act_backward(A, dy[i], y[i], slope);
    });
    if (db) {
        const float* z = dz.data();
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(total)) schedule(static) firstprivate(ftz)
        for (idx c = 0; c < s.c_in; ++c) {
            double sum = 0.0;
            for (idx img = 0; img < s.n; ++img) {
                const float* p = z + (img * s.c_in + c) * plane;
                sum += lane_sum(plane, [p](idx q) { return double(p[q]); });
            }
            db[c] = static_cast<float>(sum);
        }
    }
    const idx G = chunk_images(s, spatial);
    std::vector<float> cols(static_cast<std::size_t>(kk * G * spatial)), xz(static_cast<std::size_t>(s.c_out * G * spatial));
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0), ncols = g * spatial;
        im2col(s, dz.data(), n0, g, cols.data());
        if (dx) {
            gemm::Problem p;  // dx chunk (c_out x ncols) = w (c_out x kk) cols (kk x ncols)
            p.m = s.c_out, p.n = ncols, p.k = kk;
            p.a = w, p.lda = kk;
            p.b = cols.data(), p.ldb = ncols;
            p.c = xz.data(), p.ldc = ncols;
            gemm::sgemm(p);
            chunk_to_nchw(xz.data(), n0, g, s.c_out, spatial, dx);
        }
        if (dw) {
            nchw_to_chunk(x, n0, g, s.c_out, spatial, xz.data());
            gemm::Problem p;  // dw (c_out x kk) += x chunk (c_out x ncols) cols^T
            p.m = s.c_out, p.n = kk, p.k = ncols;
            p.a = xz.data(), p.lda = ncols;
            p.b = cols.data(), p.ldb = ncols, p.trans_b = true;
            p.c = dw, p.ldc = kk, p.accumulate = n0 > 0;
            gemm::sgemm(p);
        }
    }
    if (dw && s.n == 0) std::fill(dw, dw + s.c_out * kk, 0.0f);
}

// ---- batch norm ------------------------------------------------------------------------------
void batch_norm_stats(const float* x, idx n, idx c, idx inner, float* mean, float* var) {
    const double count = double(n) * double(inner);
    FlushDenormals ftz;
    if (inner == 1) {  // (N, C): rows are contiguous, so sweep them for a block of channels at a time
        constexpr idx kBlock = 64;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
        for (idx c0 = 0; c0 < c; c0 += kBlock) {
            const idx c1 = std::min(c, c0 + kBlock);
            double sum[kBlock] = {}, sq[kBlock] = {};
            for (idx img = 0; img < n; ++img)
                for (idx ch = c0; ch < c1; ++ch) sum[ch - c0] += x[img * c + ch];
            for (idx ch = c0; ch < c1; ++ch) sum[ch - c0] /= count;
            for (idx img = 0; img < n; ++img)
                for (idx ch = c0; ch < c1; ++ch) {
                    const double d = x[img * c + ch] - sum[ch - c0];
                    sq[ch - c0] += d * d;
                }
            for (idx ch = c0; ch < c1; ++ch) {
                mean[ch] = static_cast<float>(sum[ch - c0]);
                var[ch] = static_cast<float>(sq[ch - c0] / count);
            }
        }
        return;
    }
#pragma omp parallel for num_threads(threads_for(n * c * inner)) schedule(static) firstprivate(ftz)
    for (idx ch = 0; ch < c; ++ch) {
        double sum = 0.0;
        for (idx img = 0; img < n; ++img) {
            const float* p = x + (img * c + ch) * inner;
            sum += lane_sum(inner, [p](idx q) { return double(p[q]); });
        }
        const double m = sum / count;
        double sq = 0.0;
        for (idx img = 0; img < n; ++img) {
            const float* p = x + (img * c + ch) * inner;
            sq += lane_sum(inner, [p, m](idx q) {
                const double d = p[q] - m;
                return d * d;
            });
        }
        mean[ch] = static_cast<float>(m);
        var[ch] = static_cast<float>(sq / count);
    }
}

void batch_norm_apply(const float* x, idx n, idx c, idx inner, const float* mean, const float* invstd,
                      const float* gamma, const float* beta, float* y, Act act, float slope) {
    std::vector<float> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
    for (idx ch = 0; ch < c; ++ch) {
        scale[ch] = gamma[ch] * invstd[ch];
        shift[ch] = beta[ch] - mean[ch] * scale[ch];
    }
    const float* sc = scale.data();
    const float* sh = shift.data();
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        if (inner == 1) {  // (N, C): rows of channels, vectorised across channels
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
            for (idx img = 0; img < n; ++img) {
                const float* p = x + img * c;
                float* o = y + img * c;
                for (idx ch = 0; ch < c; ++ch) o[ch] = act_forward(A, p[ch] * sc[ch] + sh[ch], slope);
            }
        } else {
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c * inner)) schedule(static) firstprivate(ftz)
            for (idx row = 0; row < n * c; ++row) {
                const idx ch = row % c;
                const float a = sc[ch], b = sh[ch];
                const float* p = x + row * inner;
                float* o = y + row * inner;
                for (idx q = 0; q < inner; ++q) o[q] = act_forward(A, p[q] * a + b, slope);
            }
        }
    });
}

void batch_norm_backward(const float* dy, const float* x, const float* y, idx n, idx c, idx inner,
                         const float* gamma, const float* mean, const float* invstd, bool training,
                         float* dx, float* dgamma, float* dbeta, Act act, float slope) {
    const float count = static_cast<float>(n * inner);
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        if (inner == 1) {
            // (N, C): sweep rows (contiguous), accumulating per channel in double; fixed order
            // (channel blocks in parallel; each channel's sum in image order, whatever the thread count)
            std::vector<double> sb(static_cast<std::size_t>(c), 0.0), sg(static_cast<std::size_t>(c), 0.0);
            constexpr idx kBlock = 64;
            {
                FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
                for (idx c0 = 0; c0 < c; c0 += kBlock) {
                    const idx c1 = std::min(c, c0 + kBlock);
                    for (idx img = 0; img < n; ++img) {
                        const idx off = img * c;
                        for (idx ch = c0; ch < c1; ++ch) {
                            const float g = act_backward(A, dy[off + ch], y[off + ch], slope);
                            sb[ch] += g;
                            sg[ch] += double(g) * (x[off + ch] - mean[ch]) * invstd[ch];
                        }
                    }
                }
            }
            for (idx ch = 0; ch < c; ++ch) {
                dbeta[ch] = static_cast<float>(sb[ch]);
                dgamma[ch] = static_cast<float>(sg[ch]);
            }
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
            for (idx img = 0; img < n; ++img) {
                const idx off = img * c;
                for (idx ch = 0; ch < c; ++ch) {
                    const float g = act_backward(A, dy[off + ch], y[off + ch], slope);
                    const float xhat = (x[off + ch] - mean[ch]) * invstd[ch];
                    const float mb = training ? dbeta[ch] / count : 0.0f, mg = training ? dgamma[ch] / count : 0.0f;
                    dx[off + ch] = gamma[ch] * invstd[ch] * (g - mb - xhat * mg);
                }
            }
            return;
        }
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c * inner)) schedule(static) firstprivate(ftz)
        for (idx ch = 0; ch < c; ++ch) {
            double sb = 0.0, sg = 0.0;
            const float mu = mean[ch];
            for (idx img = 0; img < n; ++img) {
                const idx off = (img * c + ch) * inner;
                const auto [b_sum, g_sum] = lane_sum2(inner, [&](idx q) {
                    const double g = act_backward(A, dy[off + q], y[off + q], slope);
                    return std::pair<double, double>{g, g * double(x[off + q] - mu)};
                });
                sb += b_sum;
                sg += g_sum;
            }
            sg *= invstd[ch];
            dbeta[ch] = static_cast<float>(sb);
            dgamma[ch] = static_cast<float>(sg);
            const float scale = gamma[ch] * invstd[ch];
            const float mb = training ? dbeta[ch] / count : 0.0f, mg = training ? dgamma[ch] / count : 0.0f;
            for (idx img = 0; img < n; ++img) {
                const idx off = (img * c + ch) * inner;
                for (idx q = 0; q < inner; ++q) {
                    const float g = act_backward(A, dy[off + q], y[off + q], slope);
                    const float xhat = (x[off + q] - mean[ch]) * invstd[ch];
                    dx[off + q] = scale * (g - mb - xhat * mg);
                }
            }
        }
    });
}

}  // namespace pygan
