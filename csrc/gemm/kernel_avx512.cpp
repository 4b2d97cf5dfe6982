// AVX-512 micro-kernel: an 8 x 48 tile of C in 24 zmm accumulators (3 vectors of B per k, A
// broadcast from the packed panel). Partial columns use masked loads and stores; partial rows use
// a narrower instantiation of the same template.
#include <immintrin.h>

#include <cstdint>

#include "kernel.h"
#include "pack_avx.h"
#include "rows_avx.h"
#include "simd_math.h"

namespace pygan::gemm {
namespace {

constexpr int MR = 8, NR = 48;

inline __mmask16 lane_mask(int nr, int v) {
    const int n = nr - 16 * v;
    return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1u);
}

// R rows and V active 16-lane vectors (V < 3 for a narrow last panel, so no FMA is wasted on it)
// (ASrc: PackedPanel or InPlaceRows, see kernel.h)
template <int R, int V, class ASrc>
void tile_rv(idx kc, const ASrc& as, const float* b, idx ldb, float* c, idx ldc, int nr, const TileEpilogue& ep) {
    __m512 acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
    __mmask16 masks[V];
    for (int v = 0; v < V; ++v) masks[v] = lane_mask(nr, v);
    // the C tile's lines are fetched while the k loop runs, so its stores (and loads, when
    // accumulating) do not wait for them: with a shallow K (a weight gradient over a batch of 64)
    // they would otherwise stall every tile
    for (int r = 0; r < R; ++r) {
        const char* cr = reinterpret_cast<const char*>(c + r * ldc);
        for (int v = 0; v < V; ++v) _mm_prefetch(cr + 64 * v, _MM_HINT_T0);
        _mm_prefetch(cr + 4 * (nr - 1), _MM_HINT_T0);  // the last line of an unaligned row
    }
    // One loop for full and partial panels: a packed panel is zero beyond nr, so its V vectors are
    // read whole (only the stores are masked). (With a second, masked loop GCC 12 kept acc[][] in
    // memory there and stored all of it on every k step.)
    for (idx k = 0; k < kc; ++k) {
        const float* bk = b + k * ldb;
        const char* pf = reinterpret_cast<const char*>(bk + 8 * ldb);
        for (int v = 0; v < V; ++v) _mm_prefetch(pf + 64 * v, _MM_HINT_T0);
        __m512 bv[V];
        for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_ps(bk + 16 * v);
        const auto ak = as.at(k);
        for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(ak[r]);
            for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; ++r) {
        float* cr = c + r * ldc;
        for (int v = 0; v < V; ++v) {
            const __mmask16 m = masks[v];
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

template <int R, class ASrc>
void tile_rows(idx kc, const ASrc& as, const float* b, idx ldb, float* c, idx ldc, int nr, const TileEpilogue& ep) {
    if (nr > 32) tile_rv<R, 3>(kc, as, b, ldb, c, ldc, nr, ep);
    else if (nr > 16) tile_rv<R, 2>(kc, as, b, ldb, c, ldc, nr, ep);
    else tile_rv<R, 1>(kc, as, b, ldb, c, ldc, nr, ep);
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

// 0 <= r + c < len, lane by lane (one unsigned compare covers both bounds)
inline __mmask16 inside(__m512i c, __m512i r, __m512i len) {
    return _mm512_cmplt_epu32_mask(_mm512_add_epi32(c, r), len);
}

// Where a vector's 16 column offsets form at most two runs of consecutive offsets (e.g. the pixels
// of a stride-1 patch row, which may cross into the next image), two masked loads replace the
// gather. Masked-off lanes are never read, so their addresses may lie outside the source; they are
// formed as integers, never as out-of-range pointers.
void gather(const GatherB& g, idx k0, idx kc, idx j0, int nr, float* dst) {
    constexpr int V = NR / 16;
    __m512i co[V], ca[V], cb[V];
    __mmask16 live[V], first[V];  // first: the lanes of the first run (the rest form the second)
    bool runs[V];                 // at most two runs
    std::int64_t base1[V], base2[V];  // lane i of run r reads offset base_r + i
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int v = 0; v < V; ++v) {
        live[v] = lane_mask(nr, v);
        co[v] = _mm512_maskz_loadu_epi32(live[v], g.coff + j0 + 16 * v);
        ca[v] = _mm512_maskz_loadu_epi32(live[v], g.ca + j0 + 16 * v);
        cb[v] = _mm512_maskz_loadu_epi32(live[v], g.cb + j0 + 16 * v);
        runs[v] = false;
        if (!live[v]) continue;
        // relative offsets coff - lane: constant along a run
        const __m512i rel = _mm512_sub_epi32(co[v], iota);
        base1[v] = _mm_cvtsi128_si32(_mm512_castsi512_si128(rel));
        first[v] = _mm512_mask_cmpeq_epi32_mask(live[v], rel, _mm512_set1_epi32(static_cast<int>(base1[v])));
        const __mmask16 rest = live[v] & static_cast<__mmask16>(~first[v]);
        if (!rest) {
            runs[v] = true, base2[v] = base1[v];
            continue;
        }
        const int s = __builtin_ctz(rest);  // the second run starts here and must fill the rest
        base2[v] = g.coff[j0 + 16 * v + s] - s;
        const __mmask16 second = _mm512_mask_cmpeq_epi32_mask(live[v], rel, _mm512_set1_epi32(static_cast<int>(base2[v])));
        runs[v] = (first[v] | second) == live[v] && first[v] == static_cast<__mmask16>((1u << s) - 1u);
    }
    const __m512i la = _mm512_set1_epi32(g.la), lb = _mm512_set1_epi32(g.lb);
    const auto src = reinterpret_cast<std::uintptr_t>(g.src);
    auto at = [src](std::int64_t off) {
        return reinterpret_cast<const float*>(src + static_cast<std::uintptr_t>(off) * sizeof(float));
    };
    for (idx kk = 0; kk < kc; ++kk) {
        const idx p = k0 + kk;
        const __m512i ra = _mm512_set1_epi32(g.ra[p]), rb = _mm512_set1_epi32(g.rb[p]);
        const __m512i ro = _mm512_set1_epi32(g.roff[p]);
        for (int v = 0; v < V; ++v) {
            const __mmask16 ok = live[v] & inside(ca[v], ra, la) & inside(cb[v], rb, lb);
            __m512 val = _mm512_setzero_ps();
            if (!runs[v]) {
                val = _mm512_mask_i32gather_ps(val, ok, _mm512_add_epi32(co[v], ro), g.src, 4);
            } else {
                const __mmask16 ok1 = ok & first[v], ok2 = ok & static_cast<__mmask16>(~first[v]);
                if (ok1) val = _mm512_maskz_loadu_ps(ok1, at(g.roff[p] + base1[v]));
                if (ok2) val = _mm512_mask_loadu_ps(val, ok2, at(g.roff[p] + base2[v]));
            }
            _mm512_storeu_ps(dst + kk * NR + 16 * v, val);
        }
    }
}

// The forward's weight panel (B(p, j) = b[p * ldb + j], rows [k0, k0 + kc), columns [j0, j0 + nr),
// columns nr .. NR zero-filled) copied 16 lanes at a time and checked for NaN/Inf in the same pass
// (an all-ones exponent); true if one is found.
bool pack_b_copy(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst) {
    constexpr int V = NR / 16;
    const __m512i exponent = _mm512_set1_epi32(0x7f800000);
    __mmask16 live[V];
    for (int v = 0; v < V; ++v) live[v] = lane_mask(nr, v);
    __mmask16 bad = 0;
    for (idx kk = 0; kk < kc; ++kk) {
        const float* src = b + (k0 + kk) * ldb + j0;
        float* d = dst + kk * NR;
        for (int v = 0; v < V; ++v) {
            const __m512 x = _mm512_maskz_loadu_ps(live[v], src + 16 * v);
            const __m512i e = _mm512_and_si512(_mm512_castps_si512(x), exponent);
            bad = static_cast<__mmask16>(bad | _mm512_cmpeq_epi32_mask(e, exponent));
            _mm512_storeu_ps(d + 16 * v, x);
        }
    }
    return bad != 0;
}

void apply_bias_act(float* x, idx n, float bias, Act act, float slope) {
    const __m512 b = _mm512_set1_ps(bias);
    idx i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, simd::activate(_mm512_add_ps(_mm512_loadu_ps(x + i), b), act, slope));
    if (i < n) {
        const auto m = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, m, simd::activate(_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), b), act, slope));
    }
}

// 16 chains of 16 lanes: two FMA pipes of latency 4 need at least 8 chains in flight
float fma_burst(long reps, float a, float b) {
    constexpr int kChains = 16;
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    __m512 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(c));
    for (long r = 0; r < reps; ++r)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], va, vb);
    __m512 sum = acc[0];
    for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace

const MicroKernel& kernel_avx512() {
    // A micro-panel 8 x 768 floats (24 KiB) in L1. On a 48 KiB L1d and 1 MiB L2, KC 768 with NB 192 against
    // the earlier 384 with 672 (in-process A/B at 2 threads): 2048^3 +0-3%, the MLP GAN's batch-64 forward
    // layers up to +12%. Packed B block 768 x 192 (576 KiB) where the L2 size is unknown.
    static const MicroKernel k{"avx512", MR, NR, 768, 192, 3072, &tile, &tile_direct, &gather, &pack_b_trans_avx<NR>, &pack_b_copy, &apply_bias_act, &transpose_avx, &pack_a8_avx, &pack_b_rows_avx<NR>, kBnRowsAvx,
                               {&fma_burst, 2 * 16 * 16}};
    return k;
}

}  // namespace pygan::gemm
