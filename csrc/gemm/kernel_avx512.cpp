// AVX-512 micro-kernel: an 8 x 48 tile of C in 24 zmm accumulators (3 vectors of B per k, A
// broadcast from the packed panel). Partial columns use masked loads and stores; partial rows use
// a narrower instantiation of the same template.
#include <immintrin.h>

#include "kernel.h"
#include "simd_math.h"

namespace pygan::gemm {
namespace {

constexpr int MR = 8, NR = 48, NV = NR / 16;

inline __mmask16 lane_mask(int nr, int v) {
    const int n = nr - 16 * v;
    return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1u);
}

template <int R>
void tile_rows(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int nr, const TileEpilogue& ep) {
    __m512 acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
    const __mmask16 m0 = lane_mask(nr, 0), m1 = lane_mask(nr, 1), m2 = lane_mask(nr, 2);
    if (nr == NR) {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            _mm_prefetch(reinterpret_cast<const char*>(bk + 8 * ldb), _MM_HINT_T0);
            const __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16), b2 = _mm512_loadu_ps(bk + 32);
            const float* ak = a + k * MR;
            for (int r = 0; r < R; ++r) {
                const __m512 av = _mm512_set1_ps(ak[r]);
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
            }
        }
    } else {
        for (idx k = 0; k < kc; ++k) {
            const float* bk = b + k * ldb;
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, bk), b1 = _mm512_maskz_loadu_ps(m1, bk + 16),
                         b2 = _mm512_maskz_loadu_ps(m2, bk + 32);
            const float* ak = a + k * MR;
            for (int r = 0; r < R; ++r) {
                const __m512 av = _mm512_set1_ps(ak[r]);
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);
            }
        }
    }
    const __mmask16 masks[NV] = {m0, m1, m2};
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
        for (int v = 0; v < NV; ++v) {
            const __mmask16 m = masks[v];
            if (!m) continue;
            __m512 z = acc[r][v];
            if (ep.accumulate) z = _mm512_add_ps(z, _mm512_maskz_loadu_ps(m, cr + 16 * v));
            if (ep.last) {
                if (ep.bias_col) z = _mm512_add_ps(z, _mm512_maskz_loadu_ps(m, ep.bias_col + 16 * v));
                if (ep.bias_row) z = _mm512_add_ps(z, _mm512_set1_ps(ep.bias_row[r]));
                z = simd::activate(z, ep.act, ep.slope);
            }
            _mm512_mask_storeu_ps(cr + 16 * v, m, z);
        }
    }
}

void tile(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
          const TileEpilogue& ep) {
    switch (mr) {
        case 8: tile_rows<8>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 7: tile_rows<7>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 6: tile_rows<6>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 5: tile_rows<5>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 4: tile_rows<4>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 3: tile_rows<3>(kc, a, b, ldb, c, ldc, nr, ep); break;
        case 2: tile_rows<2>(kc, a, b, ldb, c, ldc, nr, ep); break;
        default: tile_rows<1>(kc, a, b, ldb, c, ldc, nr, ep); break;
    }
}

}  // namespace

const MicroKernel& kernel_avx512() {
    // A micro-panel 8 x 384 floats (12 KiB) in L1; packed B block 384 x 672 (1 MiB) in L2.
    static const MicroKernel k{"avx512", MR, NR, 384, 672, 3072, &tile};
    return k;
}

}  // namespace pygan::gemm
