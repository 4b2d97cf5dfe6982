// Batch norm's row kernels (and the affine + activation sweep AVX2's bias epilogue reuses) with 8-wide AVX
// vectors, for the AVX2 and AVX-512 translation units
// (internal linkage, as pack_avx.h). A row is one channel's plane of one image. Every sum keeps the
// order of lane_sum / lane_sum2 (eight lanes within blocks of 128 terms, the same tree, the blocks
// in double) and every element the operations of the portable kernels, with no fused multiply-adds,
// so all ISAs give the same bits (the forward's tanh and sigmoid aside: their vector exp differs in
// the last bits from libm's).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>

#include "kernel.h"
#include "pack_avx.h"
#include "simd_math.h"

namespace pygan::gemm {
namespace {

inline __m256i row_tail_mask(idx rest) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline double lane_tree(__m256 acc) {
    alignas(32) float a[8];
    _mm256_store_ps(a, acc);
    return double(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
}

inline double lane_tree(__m256d lo, __m256d hi) {
    alignas(32) double a[8];
    _mm256_store_pd(a, lo);
    _mm256_store_pd(a + 4, hi);
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// Calls body(q, live, tail) for the 8-element steps of [q0, q1): tail is std::true_type only for a
// partial last step, whose live lanes are those of live (loads and stores go through ld / st).
template <class Body>
inline void row_steps(idx q0, idx q1, Body&& body) {
    const __m256i all = _mm256_set1_epi32(-1);
    idx q = q0;
    for (; q + 8 <= q1; q += 8) body(q, all, std::false_type{});
    if (q < q1) body(q, row_tail_mask(q1 - q), std::true_type{});
}

template <class Tail>
inline __m256 ld(const float* p, __m256i live, Tail) {
    if constexpr (Tail::value) return _mm256_maskload_ps(p, live);  // dead lanes read as zero
    else return (void)live, _mm256_loadu_ps(p);
}

template <class Tail>
inline void st(float* p, __m256i live, __m256 v, Tail) {
    if constexpr (Tail::value) _mm256_maskstore_ps(p, live, v);
    else (void)live, _mm256_storeu_ps(p, v);
}

double bn_sum_avx(const float* x, idx len) {
    double total = 0.0;
    for (idx q0 = 0; q0 < len; q0 += 128) {
        __m256 acc = _mm256_setzero_ps();
        row_steps(q0, std::min<idx>(len, q0 + 128),
                  [&](idx q, __m256i live, auto tail) { acc = _mm256_add_ps(acc, ld(x + q, live, tail)); });
        total += lane_tree(acc);
    }
    return total;
}

double bn_sqdev_avx(const float* x, idx len, double mean) {
    const __m256d m = _mm256_set1_pd(mean);
    double total = 0.0;
    for (idx q0 = 0; q0 < len; q0 += 128) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        row_steps(q0, std::min<idx>(len, q0 + 128), [&](idx q, __m256i live, auto tail) {
            const __m256 v = ld(x + q, live, tail);
            const __m256d dl = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
            const __m256d dh = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
            __m256d sl = _mm256_mul_pd(dl, dl), sh = _mm256_mul_pd(dh, dh);
            if constexpr (decltype(tail)::value) {  // dead lanes add zero, not mean^2
                sl = _mm256_and_pd(sl, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(live))));
                sh = _mm256_and_pd(sh, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(live, 1))));
            }
            lo = _mm256_add_pd(lo, sl);
            hi = _mm256_add_pd(hi, sh);
        });
        total += lane_tree(lo, hi);
    }
    return total;
}

// y = act(((x - mu) * invstd) * gamma + beta) (BnRows::normalize_act; y may be x). AVX2's bias
// epilogue is this with mu = 0, invstd = gamma = 1 (exact: the same bits as x + beta)
void normalize_act_avx(const float* x, float* y, idx len, float mu, float invstd, float gamma, float beta, Act act,
                       float slope) {
    const __m256 m = _mm256_set1_ps(mu), s = _mm256_set1_ps(invstd), g = _mm256_set1_ps(gamma), b = _mm256_set1_ps(beta);
    row_steps(0, len, [&](idx q, __m256i live, auto tail) {
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(ld(x + q, live, tail), m), s);
        st(y + q, live, simd::activate(_mm256_add_ps(_mm256_mul_ps(xhat, g), b), act, slope), tail);
    });
}

template <Act A>
std::pair<double, double> bn_grad_sums_t(const float* dy, const float* y, const float* x, idx len, float mu, float invstd,
                                         float slope) {
    const __m256 m = _mm256_set1_ps(mu), is = _mm256_set1_ps(invstd);
    double tb = 0.0, tg = 0.0;
    for (idx q0 = 0; q0 < len; q0 += 128) {
        __m256 sb = _mm256_setzero_ps(), sg = _mm256_setzero_ps();
        row_steps(q0, std::min<idx>(len, q0 + 128), [&](idx q, __m256i live, auto tail) {
            const __m256 g = act_grad8<A>(ld(dy + q, live, tail), ld(y + q, live, tail), slope);
            sb = _mm256_add_ps(sb, g);
            sg = _mm256_add_ps(sg, _mm256_mul_ps(g, _mm256_mul_ps(_mm256_sub_ps(ld(x + q, live, tail), m), is)));
        });
        tb += lane_tree(sb);
        tg += lane_tree(sg);
    }
    return {tb, tg};
}

std::pair<double, double> bn_grad_sums_avx(const float* dy, const float* y, const float* x, idx len, float mu,
                                           float invstd, Act act, float slope) {
    std::pair<double, double> out;
    with_act(act, [&](auto tag) { out = bn_grad_sums_t<decltype(tag)::value>(dy, y, x, len, mu, invstd, slope); });
    return out;
}

template <Act A>
void bn_grad_dx_t(const float* dy, const float* y, const float* x, float* dx, idx len, const BnDxTerms& t, float slope) {
    const __m256 mu = _mm256_set1_ps(t.mu), is = _mm256_set1_ps(t.invstd), sc = _mm256_set1_ps(t.scale);
    const __m256 mb = _mm256_set1_ps(t.mean_b), mg = _mm256_set1_ps(t.mean_g);
    row_steps(0, len, [&](idx q, __m256i live, auto tail) {
        const __m256 g = act_grad8<A>(ld(dy + q, live, tail), ld(y + q, live, tail), slope);
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(ld(x + q, live, tail), mu), is);
        st(dx + q, live, _mm256_mul_ps(sc, _mm256_sub_ps(_mm256_sub_ps(g, mb), _mm256_mul_ps(xhat, mg))), tail);
    });
}

void bn_grad_dx_avx(const float* dy, const float* y, const float* x, float* dx, idx len, const BnDxTerms& t, Act act,
                    float slope) {
    with_act(act, [&](auto tag) { bn_grad_dx_t<decltype(tag)::value>(dy, y, x, dx, len, t, slope); });
}

constexpr BnRows kBnRowsAvx{&bn_sum_avx, &bn_sqdev_avx, &normalize_act_avx, &bn_grad_sums_avx, &bn_grad_dx_avx};

}  // namespace
}  // namespace pygan::gemm
