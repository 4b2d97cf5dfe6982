// Portable kernel table: a micro-kernel of plain C++ over a 4 x 16 register tile (the compiler
// vectorises what it can), and batch norm's row kernels (the reference order the vector ones keep).
#include "kernel.h"
#include "../lane_sum.h"

namespace pygan::gemm {
namespace {

constexpr int MR = 4, NR = 16;

// (ASrc: PackedPanel or InPlaceRows, see kernel.h; rows r >= mr of an InPlaceRows are never read)
template <class ASrc>
void tile_any(idx kc, const ASrc& as, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
              const TileEpilogue& ep) {
    float acc[MR][NR] = {};
    if (nr == NR && mr == MR) {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            const auto ak = as.at(k);
            for (int r = 0; r < MR; ++r) {
                const float av = ak[r];
                for (int j = 0; j < NR; ++j) acc[r][j] += av * bk[j];
            }
        }
    } else {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            const auto ak = as.at(k);
            for (int r = 0; r < mr; ++r) {
                const float av = ak[r];
                for (int j = 0; j < nr; ++j) acc[r][j] += av * bk[j];
            }
        }
    }
    for (int r = 0; r < mr; ++r) {
        float* cr = c + r * ldc;
        for (int j = 0; j < nr; ++j) {
            float v = acc[r][j];
            if (ep.accumulate) v += cr[j];
            if (ep.last) {
                if (ep.bias_col) v += ep.bias_col[j];
                if (ep.bias_row) v += ep.bias_row[r];
                v = act_forward(ep.act, v, ep.slope);
            }
            cr[j] = v;
        }
    }
}

void tile(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
          const TileEpilogue& ep) {
    tile_any(kc, PackedPanel<MR>{a}, b, ldb, c, ldc, mr, nr, ep);
}

void tile_direct(idx kc, const float* const* rows, const std::int32_t* koff, const float* b, idx ldb, float* c,
                 idx ldc, int mr, int nr, const TileEpilogue& ep) {
    InPlaceRows<MR> as{{}, koff};
    for (int r = 0; r < MR; ++r) as.rows[r] = rows[r < mr ? r : 0];
    tile_any(kc, as, b, ldb, c, ldc, mr, nr, ep);
}

inline bool inside(std::int32_t r, std::int32_t c, std::int32_t len) {
    const std::int64_t v = std::int64_t(r) + c;
    return v >= 0 && v < len;
}

void gather(const GatherB& g, idx k0, idx kc, idx j0, int nr, float* dst) {
    for (idx kk = 0; kk < kc; ++kk) {
        const idx p = k0 + kk;
        float* d = dst + kk * NR;
        for (int jj = 0; jj < nr; ++jj) {
            const idx j = j0 + jj;
            const bool ok = inside(g.ra[p], g.ca[j], g.la) && inside(g.rb[p], g.cb[j], g.lb);
            d[jj] = ok ? g.src[std::int64_t(g.roff[p]) + g.coff[j]] : 0.0f;
        }
        for (int jj = nr; jj < NR; ++jj) d[jj] = 0.0f;
    }
}

void apply_bias_act(float* x, idx n, float bias, Act act, float slope) {
    for (idx i = 0; i < n; ++i) x[i] = act_forward(act, x[i] + bias, slope);
}

// ---- batch norm rows (the order and operations the vector kernels reproduce) ------------------
double bn_sum(const float* x, idx len) { return lane_sum<float>(len, [x](idx q) { return x[q]; }); }

double bn_sqdev(const float* x, idx len, double mean) {
    return lane_sum<double>(len, [x, mean](idx q) {  // double: x - mean must not cancel
        const double d = x[q] - mean;
        return d * d;
    });
}

void bn_normalize_act(const float* x, float* y, idx len, float mu, float invstd, float gamma, float beta, Act act,
                      float slope) {
    with_act(act, [&](auto tag) {
        for (idx q = 0; q < len; ++q) y[q] = act_forward(decltype(tag)::value, ((x[q] - mu) * invstd) * gamma + beta, slope);
    });
}

std::pair<double, double> bn_grad_sums(const float* dy, const float* y, const float* x, idx len, float mu, float invstd,
                                       Act act, float slope) {
    std::pair<double, double> out;
    with_act(act, [&](auto tag) {
        out = lane_sum2(len, [=](idx q) {
            const float g = act_backward(decltype(tag)::value, dy[q], y[q], slope);
            return std::pair<float, float>{g, g * ((x[q] - mu) * invstd)};
        });
    });
    return out;
}

void bn_grad_dx(const float* dy, const float* y, const float* x, float* dx, idx len, const BnDxTerms& t, Act act,
                float slope) {
    with_act(act, [&](auto tag) {
        for (idx q = 0; q < len; ++q) {
            const float g = act_backward(decltype(tag)::value, dy[q], y[q], slope);
            const float xhat = (x[q] - t.mu) * t.invstd;
            dx[q] = t.scale * (g - t.mean_b - xhat * t.mean_g);
        }
    });
}

// 8 scalar chains (the portable path's multiply-add, as its tile computes it)
float fma_burst(long reps, float a, float b) {
    constexpr int kChains = 8;
    float acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = 1.0f + 0.01f * static_cast<float>(c);
    for (long r = 0; r < reps; ++r)
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
    float total = 0.0f;
    for (float v : acc) total += v;
    return total;
}

// dst[j * ldd + i] = src[i * lds + j] (TransposeFn)
void transpose_scalar(const float* src, idx lds, float* dst, idx ldd, idx rows, idx cols) {
    for (idx i = 0; i < rows; ++i)
        for (idx j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace

const MicroKernel& kernel_generic() {
    static const MicroKernel k{"generic", MR, NR, 256, 512, 1024, &tile, &tile_direct, &gather, nullptr, nullptr, &apply_bias_act, &transpose_scalar, nullptr, nullptr,
                               {&bn_sum, &bn_sqdev, &bn_normalize_act, &bn_grad_sums, &bn_grad_dx},
                               {&fma_burst, 2 * 8}};
    return k;
}

}  // namespace pygan::gemm
