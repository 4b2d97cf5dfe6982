// Packing with 8-wide AVX vectors (8 x 8 register transposes, masked copies), for the AVX2 and
// AVX-512 translation units (internal linkage: each is compiled with its own unit's target flags).
#pragma once

#include <immintrin.h>

#include "kernel.h"

namespace pygan::gemm {
namespace {

// The 8 x 8 block at src (row stride ld) transposed: out[c] = (src[0][c], ..., src[7][c]).
inline void transpose8(const float* src, idx ld, __m256 out[8]) {
    __m256 r[8], t[8];
    for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + q * ld);
    for (int q = 0; q < 8; q += 2) {
        t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
    }
    const __m256 s0 = _mm256_shuffle_ps(t[0], t[2], 0x44), s1 = _mm256_shuffle_ps(t[0], t[2], 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t[1], t[3], 0x44), s3 = _mm256_shuffle_ps(t[1], t[3], 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t[4], t[6], 0x44), s5 = _mm256_shuffle_ps(t[4], t[6], 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t[5], t[7], 0x44), s7 = _mm256_shuffle_ps(t[5], t[7], 0xEE);
    out[0] = _mm256_permute2f128_ps(s0, s4, 0x20), out[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    out[2] = _mm256_permute2f128_ps(s2, s6, 0x20), out[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    out[4] = _mm256_permute2f128_ps(s0, s4, 0x31), out[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    out[6] = _mm256_permute2f128_ps(s2, s6, 0x31), out[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// dst[j * ldd + i] = src[i * lds + j] (TransposeFn): 8 x 8 register transposes, the ragged
// edges element by element.
inline void transpose_avx(const float* src, idx lds, float* dst, idx ldd, idx rows, idx cols) {
    idx i = 0;
    for (; i + 8 <= rows; i += 8) {
        idx j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256 col[8];
            transpose8(src + i * lds + j, lds, col);
            for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + (j + c) * ldd + i, col[c]);
        }
        for (; j < cols; ++j)
            for (idx r = i; r < i + 8; ++r) dst[j * ldd + r] = src[r * lds + j];
    }
    for (; i < rows; ++i)
        for (idx j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

// B(p, j) = b[j * ldb + p]: rows [k0, k0 + kc), columns [j0, j0 + nr) into dst[kk * NR + jj],
// columns nr .. NR zero-filled.
template <int NR>
void pack_b_trans_avx(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst) {
    int jj = 0;
    for (; jj + 8 <= nr; jj += 8) {
        const float* src = b + (j0 + jj) * ldb + k0;
        idx kk = 0;
        for (; kk + 8 <= kc; kk += 8) {
            __m256 col[8];
            transpose8(src + kk, ldb, col);
            for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + (kk + c) * NR + jj, col[c]);
        }
        for (; kk < kc; ++kk)
            for (int q = 0; q < 8; ++q) dst[kk * NR + jj + q] = src[q * ldb + kk];
    }
    for (; jj < nr; ++jj) {
        const float* src = b + (j0 + jj) * ldb + k0;
        for (idx kk = 0; kk < kc; ++kk) dst[kk * NR + jj] = src[kk];
    }
    for (idx kk = 0; kk < kc; ++kk)
        for (int q = nr; q < NR; ++q) dst[kk * NR + q] = 0.0f;
}

// B(p, j) = b[p * ldb + j] copied into the panel (rows [k0, k0 + kc), columns [j0, j0 + nr),
// columns nr .. NR zero-filled), checked for NaN/Inf in the same pass. Returns true if one is found.
template <int NR>
bool pack_b_copy_avx(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst) {
    const __m256i exponent = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    const int full = nr / 8 * 8;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - full), lanes);
    for (idx kk = 0; kk < kc; ++kk) {
        const float* src = b + (k0 + kk) * ldb + j0;
        float* d = dst + kk * NR;
        int jj = 0;
        for (; jj < full; jj += 8) {
            const __m256 v = _mm256_loadu_ps(src + jj);
            const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exponent);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exponent));
            _mm256_storeu_ps(d + jj, v);
        }
        if (jj < NR) {  // the partial vector (masked lanes read as zero), then zero padding
            const __m256 v = _mm256_maskload_ps(src + jj, tail);
            const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exponent);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exponent));
            _mm256_storeu_ps(d + jj, v);
            for (jj += 8; jj < NR; jj += 8) _mm256_storeu_ps(d + jj, _mm256_setzero_ps());
        }
    }
    return !_mm256_testz_si256(bad, bad);
}

// positive(y) of activation.h on 8 lanes: 0 < bits(y) <= bits(+inf), as integers
inline __m256 positive8(__m256 y) {
    const __m256i b = _mm256_castps_si256(y);
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(b, _mm256_setzero_si256()),
                                                _mm256_cmpgt_epi32(_mm256_set1_epi32(0x7f800001), b)));
}

// dz = dy * act'(y) on 8 lanes, in the same operations as act_backward (so the same bits).
template <Act A>
inline __m256 act_grad8(__m256 dy, __m256 y, float slope) {
    const __m256 one = _mm256_set1_ps(1.0f);
    if constexpr (A == Act::Identity) {
        (void)y, (void)slope;
        return dy;
    } else if constexpr (A == Act::Relu) {
        (void)slope;
        return _mm256_and_ps(dy, positive8(y));
    } else if constexpr (A == Act::LeakyRelu) {
        return _mm256_blendv_ps(_mm256_mul_ps(dy, _mm256_set1_ps(slope)), dy, positive8(y));
    } else if constexpr (A == Act::Tanh) {
        (void)slope;
        return _mm256_mul_ps(dy, _mm256_sub_ps(one, _mm256_mul_ps(y, y)));
    } else {
        (void)slope;
        return _mm256_mul_ps(_mm256_mul_ps(dy, y), _mm256_sub_ps(one, y));
    }
}

// One A micro-panel of 8 rows: A(i, p) = a[i * lda + p] (or a[p * lda + i] when trans), with the
// prologue dz = dy * act'(y) when y is given (same layout, stride ldy); rows [i0, i0 + mr) and
// columns [k0, k0 + kc) into dst[kk * 8 + r], rows mr .. 8 zero.
template <Act A>
void pack_a8(const float* a, idx lda, const float* y, idx ldy, float slope, bool trans, idx i0, int mr, idx k0, idx kc,
             float* dst) {
    if (trans) {  // each k's 8 rows are contiguous
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr), lanes);
        for (idx kk = 0; kk < kc; ++kk) {
            const __m256 dy = _mm256_maskload_ps(a + (k0 + kk) * lda + i0, rows);
            const __m256 yv = y ? _mm256_maskload_ps(y + (k0 + kk) * ldy + i0, rows) : dy;
            _mm256_storeu_ps(dst + kk * 8, act_grad8<A>(dy, yv, slope));
        }
        return;
    }
    idx kk = 0;
    if (mr == 8)
        for (; kk + 8 <= kc; kk += 8) {
            __m256 d[8], yv[8];
            transpose8(a + i0 * lda + k0 + kk, lda, d);
            if constexpr (A != Act::Identity) transpose8(y + i0 * ldy + k0 + kk, ldy, yv);
            for (int c = 0; c < 8; ++c) {
                if constexpr (A != Act::Identity) d[c] = act_grad8<A>(d[c], yv[c], slope);
                _mm256_storeu_ps(dst + (kk + c) * 8, d[c]);
            }
        }
    for (; kk < kc; ++kk)
        for (int r = 0; r < 8; ++r) {
            float v = 0.0f;
            if (r < mr) {
                v = a[(i0 + r) * lda + k0 + kk];
                if constexpr (A != Act::Identity) v = act_backward(A, v, y[(i0 + r) * ldy + k0 + kk], slope);
            }
            dst[kk * 8 + r] = v;
        }
}

// One B micro-panel of a row-major B, B(p, j) = b[p * ldb + j], with the prologue dz = dy * act'(y)
// when y is not null (stride ldy): rows [k0, k0 + kc), columns [j0, j0 + nr) into dst[kk * NR + jj],
// columns nr .. NR zero-filled; with colsum, colsum[jj] += each row's values, row after row (the
// same order as the portable packing).
template <int NR, Act A>
void pack_b_rows(const float* b, idx ldb, const float* y, idx ldy, float slope, idx k0, idx kc, idx j0, int nr,
                 float* colsum, float* dst) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (idx kk = 0; kk < kc; ++kk) {
        const float* src = b + (k0 + kk) * ldb + j0;
        const float* ys = y ? y + (k0 + kk) * ldy + j0 : nullptr;
        float* d = dst + kk * NR;
        for (int jj = 0; jj < NR; jj += 8) {
            const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - jj), lanes);
            const __m256 dy = _mm256_maskload_ps(src + jj, live);
            const __m256 v = act_grad8<A>(dy, A == Act::Identity ? dy : _mm256_maskload_ps(ys + jj, live), slope);
            _mm256_storeu_ps(d + jj, v);
            if (colsum) _mm256_maskstore_ps(colsum + jj, live, _mm256_add_ps(_mm256_maskload_ps(colsum + jj, live), v));
        }
    }
}

template <int NR>
void pack_b_rows_avx(const float* b, idx ldb, const float* y, idx ldy, Act act, float slope, idx k0, idx kc, idx j0,
                     int nr, float* colsum, float* dst) {
    if (!y) act = Act::Identity;
    with_act(act, [&](auto tag) { pack_b_rows<NR, decltype(tag)::value>(b, ldb, y, ldy, slope, k0, kc, j0, nr, colsum, dst); });
}

// The kernel table's entry: the activation picked at run time (Identity when y is null).
inline void pack_a8_avx(const float* a, idx lda, const float* y, idx ldy, Act act, float slope, bool trans, idx i0,
                        int mr, idx k0, idx kc, float* dst) {
    if (!y) act = Act::Identity;
    with_act(act, [&](auto tag) { pack_a8<decltype(tag)::value>(a, lda, y, ldy, slope, trans, i0, mr, k0, kc, dst); });
}

}  // namespace
}  // namespace pygan::gemm
