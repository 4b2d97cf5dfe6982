// Transposing B packing with 8 x 8 AVX register transposes, for the AVX2 and AVX-512 translation
// units (internal linkage: each is compiled with its own unit's target flags).
#pragma once

#include <immintrin.h>

#include "kernel.h"

namespace pygan::gemm {
namespace {

// B(p, j) = b[j * ldb + p]: rows [k0, k0 + kc), columns [j0, j0 + nr) into dst[kk * NR + jj],
// columns nr .. NR zero-filled.
template <int NR>
void pack_b_trans_avx(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst) {
    int jj = 0;
    for (; jj + 8 <= nr; jj += 8) {
        const float* src = b + (j0 + jj) * ldb + k0;
        idx kk = 0;
        for (; kk + 8 <= kc; kk += 8) {
            __m256 r[8], t[8];
            for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(src + q * ldb + kk);
            for (int q = 0; q < 8; q += 2) {
                t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
                t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
            }
            const __m256 s0 = _mm256_shuffle_ps(t[0], t[2], 0x44), s1 = _mm256_shuffle_ps(t[0], t[2], 0xEE);
            const __m256 s2 = _mm256_shuffle_ps(t[1], t[3], 0x44), s3 = _mm256_shuffle_ps(t[1], t[3], 0xEE);
            const __m256 s4 = _mm256_shuffle_ps(t[4], t[6], 0x44), s5 = _mm256_shuffle_ps(t[4], t[6], 0xEE);
            const __m256 s6 = _mm256_shuffle_ps(t[5], t[7], 0x44), s7 = _mm256_shuffle_ps(t[5], t[7], 0xEE);
            float* d = dst + kk * NR + jj;
            _mm256_storeu_ps(d + 0 * NR, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_storeu_ps(d + 1 * NR, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_storeu_ps(d + 2 * NR, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_storeu_ps(d + 3 * NR, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_storeu_ps(d + 4 * NR, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_storeu_ps(d + 5 * NR, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_storeu_ps(d + 6 * NR, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_storeu_ps(d + 7 * NR, _mm256_permute2f128_ps(s3, s7, 0x31));
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

// One A micro-panel of 8 rows with no prologue: A(i, p) = a[i * lda + p] (or a[p * lda + i] when
// trans), rows [i0, i0 + mr) and columns [k0, k0 + kc) into dst[kk * 8 + r], rows mr .. 8 zero.
inline void pack_a8_avx(const float* a, idx lda, bool trans, idx i0, int mr, idx k0, idx kc, float* dst) {
    if (trans) {  // each k's 8 rows are contiguous in a
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(mr), lanes);
        for (idx kk = 0; kk < kc; ++kk)
            _mm256_storeu_ps(dst + kk * 8, _mm256_maskload_ps(a + (k0 + kk) * lda + i0, rows));
        return;
    }
    if (mr < 8) {
        for (idx kk = 0; kk < kc; ++kk)
            for (int r = 0; r < 8; ++r) dst[kk * 8 + r] = r < mr ? a[(i0 + r) * lda + k0 + kk] : 0.0f;
        return;
    }
    // 8 x 8 blocks: each source row's 8 values become one column of the panel
    idx kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
        __m256 r[8], t[8];
        for (int q = 0; q < 8; ++q) r[q] = _mm256_loadu_ps(a + (i0 + q) * lda + k0 + kk);
        for (int q = 0; q < 8; q += 2) {
            t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
            t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
        }
        const __m256 s0 = _mm256_shuffle_ps(t[0], t[2], 0x44), s1 = _mm256_shuffle_ps(t[0], t[2], 0xEE);
        const __m256 s2 = _mm256_shuffle_ps(t[1], t[3], 0x44), s3 = _mm256_shuffle_ps(t[1], t[3], 0xEE);
        const __m256 s4 = _mm256_shuffle_ps(t[4], t[6], 0x44), s5 = _mm256_shuffle_ps(t[4], t[6], 0xEE);
        const __m256 s6 = _mm256_shuffle_ps(t[5], t[7], 0x44), s7 = _mm256_shuffle_ps(t[5], t[7], 0xEE);
        float* d = dst + kk * 8;
        _mm256_storeu_ps(d + 0, _mm256_permute2f128_ps(s0, s4, 0x20));
        _mm256_storeu_ps(d + 8, _mm256_permute2f128_ps(s1, s5, 0x20));
        _mm256_storeu_ps(d + 16, _mm256_permute2f128_ps(s2, s6, 0x20));
        _mm256_storeu_ps(d + 24, _mm256_permute2f128_ps(s3, s7, 0x20));
        _mm256_storeu_ps(d + 32, _mm256_permute2f128_ps(s0, s4, 0x31));
        _mm256_storeu_ps(d + 40, _mm256_permute2f128_ps(s1, s5, 0x31));
        _mm256_storeu_ps(d + 48, _mm256_permute2f128_ps(s2, s6, 0x31));
        _mm256_storeu_ps(d + 56, _mm256_permute2f128_ps(s3, s7, 0x31));
    }
    for (; kk < kc; ++kk)
        for (int r = 0; r < 8; ++r) dst[kk * 8 + r] = a[(i0 + r) * lda + k0 + kk];
}

}  // namespace
}  // namespace pygan::gemm
