// Portable micro-kernel: plain C++ over a 4 x 16 register tile (the compiler vectorises what it can).
#include "kernel.h"

namespace pygan::gemm {
namespace {

constexpr int MR = 4, NR = 16;

void tile(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
          const TileEpilogue& ep) {
    float acc[MR][NR] = {};
    if (nr == NR) {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            for (int r = 0; r < MR; ++r) {
                const float av = a[k * MR + r];
                for (int j = 0; j < NR; ++j) acc[r][j] += av * bk[j];
            }
        }
    } else {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            for (int r = 0; r < MR; ++r) {
                const float av = a[k * MR + r];
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

}  // namespace

const MicroKernel& kernel_generic() {
    static const MicroKernel k{"generic", MR, NR, 256, 512, 1024, &tile, &gather, nullptr, nullptr, &apply_bias_act, nullptr, nullptr};
    return k;
}

}  // namespace pygan::gemm
