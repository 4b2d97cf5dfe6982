// AVX2+FMA micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators (2 vectors of B per k, A
// broadcast from the packed panel), as in BLIS's Haswell kernel seen row-major.
#include <immintrin.h>

#include "kernel.h"
#include "pack_avx.h"
#include "rows_avx.h"
#include "simd_math.h"

namespace pygan::gemm {
namespace {

constexpr int MR = 6, NR = 16, NV = NR / 8;

inline __m256i lane_mask(int nr, int v) {
    const int n = nr - 8 * v;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

// (ASrc: PackedPanel or InPlaceRows, see kernel.h)
template <int R, class ASrc>
void tile_rows(idx kc, const ASrc& as, const float* b, idx ldb, float* c, idx ldc, int nr, const TileEpilogue& ep) {
    __m256 acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
    const __m256i m0 = lane_mask(nr, 0), m1 = lane_mask(nr, 1);
    // the C tile's lines are fetched while the k loop runs (see the AVX-512 kernel)
    for (int r = 0; r < R; ++r) {
        const char* cr = reinterpret_cast<const char*>(c + r * ldc);
        _mm_prefetch(cr, _MM_HINT_T0);
        _mm_prefetch(cr + 4 * (nr - 1), _MM_HINT_T0);
    }
    // One loop for full and partial panels: a packed panel is zero beyond nr, so both vectors are
    // read whole (only the stores are masked).
    for (idx k = 0; k < kc; ++k) {
        const float* bk = b + k * ldb;
        const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
        const auto ak = as.at(k);
        for (int r = 0; r < R; ++r) {
            // a scalar read, not _mm256_broadcast_ss(ak + r): through that pointer GCC 12 kept acc[][]
            // in memory and stored all of it on every k step (half the speed)
            const __m256 av = _mm256_set1_ps(ak[r]);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const __m256i masks[NV] = {m0, m1};
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
        for (int v = 0; v < NV; ++v) {
            if (nr <= 8 * v) continue;
            const __m256i m = masks[v];
            __m256 z = acc[r][v];
            if (ep.accumulate) z = _mm256_add_ps(z, _mm256_maskload_ps(cr + 8 * v, m));
            if (ep.last) {
                if (ep.bias_col) z = _mm256_add_ps(z, _mm256_maskload_ps(ep.bias_col + 8 * v, m));
                if (ep.bias_row) z = _mm256_add_ps(z, _mm256_set1_ps(ep.bias_row[r]));
                z = simd::activate(z, ep.act, ep.slope);
            }
            _mm256_maskstore_ps(cr + 8 * v, m, z);
        }
    }
}

void tile(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
          const TileEpilogue& ep) {
    const PackedPanel<MR> as{a};
    with_rows<MR>(mr, [&](auto rows) { tile_rows<decltype(rows)::value>(kc, as, b, ldb, c, ldc, nr, ep); });
}

void tile_direct(idx kc, const float* const* rows, const std::int32_t* koff, const float* b, idx ldb, float* c,
                 idx ldc, int mr, int nr, const TileEpilogue& ep) {
    with_rows<MR>(mr, [&](auto r) {
        constexpr int R = decltype(r)::value;
        tile_rows<R>(kc, in_place_rows<R>(rows, koff), b, ldb, c, ldc, nr, ep);
    });
}

// 0 <= r + c < len, lane by lane, as an all-ones mask
inline __m256i inside(__m256i c, __m256i r, __m256i len) {
    const __m256i v = _mm256_add_epi32(c, r);
    return _mm256_and_si256(_mm256_cmpgt_epi32(v, _mm256_set1_epi32(-1)), _mm256_cmpgt_epi32(len, v));
}

void gather(const GatherB& g, idx k0, idx kc, idx j0, int nr, float* dst) {
    __m256i co[NV], ca[NV], cb[NV], live[NV];
    for (int v = 0; v < NV; ++v) {
        live[v] = lane_mask(nr, v);
        co[v] = _mm256_maskload_epi32(g.coff + j0 + 8 * v, live[v]);
        ca[v] = _mm256_maskload_epi32(g.ca + j0 + 8 * v, live[v]);
        cb[v] = _mm256_maskload_epi32(g.cb + j0 + 8 * v, live[v]);
    }
    const __m256i la = _mm256_set1_epi32(g.la), lb = _mm256_set1_epi32(g.lb);
    for (idx kk = 0; kk < kc; ++kk) {
        const idx p = k0 + kk;
        const __m256i ra = _mm256_set1_epi32(g.ra[p]), rb = _mm256_set1_epi32(g.rb[p]);
        const __m256i ro = _mm256_set1_epi32(g.roff[p]);
        for (int v = 0; v < NV; ++v) {
            const __m256i ok = _mm256_and_si256(live[v], _mm256_and_si256(inside(ca[v], ra, la), inside(cb[v], rb, lb)));
            const __m256 val = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), g.src, _mm256_add_epi32(co[v], ro),
                                                        _mm256_castsi256_ps(ok), 4);
            _mm256_storeu_ps(dst + kk * NR + 8 * v, val);
        }
    }
}

void apply_bias_act(float* x, idx n, float bias, Act act, float slope) { normalize_act_avx(x, x, n, 0.0f, 1.0f, 1.0f, bias, act, slope); }

// 12 chains of 8 lanes (of the 16 ymm registers, two hold a and b)
float fma_burst(long reps, float a, float b) {
    constexpr int kChains = 12;
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(c));
    for (long r = 0; r < reps; ++r)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], va, vb);
    __m256 sum = acc[0];
    for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace

const MicroKernel& kernel_avx2() {
    static const MicroKernel k{"avx2", MR, NR, 256, 768, 3072, &tile, &tile_direct, &gather, &pack_b_trans_avx<NR>, &pack_b_copy_avx<NR>, &apply_bias_act, &transpose_avx, nullptr, &pack_b_rows_avx<NR>, kBnRowsAvx,
                               {&fma_burst, 2 * 8 * 12}};
    return k;
}

}  // namespace pygan::gemm
