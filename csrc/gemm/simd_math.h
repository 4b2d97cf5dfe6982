// Vector exp/tanh/sigmoid for the epilogues (Cephes-style expf: range reduction by ln 2 in two
// parts, degree-6 polynomial; relative error ~2e-7 on the clamped range; a NaN stays NaN). Included only by the ISA
// translation units, which are compiled with the matching target flags; the functions have internal
// linkage, so each unit keeps its own copy (the linker never swaps in another unit's instructions).
#pragma once

#include <immintrin.h>

namespace pygan::gemm::simd {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

#ifdef __AVX512F__
inline __m512 exp(__m512 x) {
    // the clamp keeps a NaN (min/max return their second operand when one is NaN)
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(kP0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

inline __m512 activate(__m512 z, Act act, float slope) {
    switch (act) {
        case Act::Identity: return z;
        case Act::Relu: return _mm512_max_ps(_mm512_setzero_ps(), z);  // max(0, NaN) is NaN, as in NumPy
        case Act::LeakyRelu: {
            const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
            return _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, _mm512_set1_ps(slope)), z);
        }
        case Act::Tanh: {  // 1 - 2 / (exp(2z) + 1)
            const __m512 e = exp(_mm512_add_ps(z, z));
            return _mm512_sub_ps(_mm512_set1_ps(1.0f),
                                 _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
        }
        case Act::Sigmoid: {
            const __m512 e = exp(_mm512_sub_ps(_mm512_setzero_ps(), z));
            return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
        }
    }
    return z;
}
#endif

#ifdef __AVX2__
inline __m256 exp(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));  // keeps a NaN
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 p = _mm256_set1_ps(kP0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n through the exponent field; n lies in [-126, 127] after the clamp
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 activate(__m256 z, Act act, float slope) {
    switch (act) {
        case Act::Identity: return z;
        case Act::Relu: return _mm256_max_ps(_mm256_setzero_ps(), z);  // max(0, NaN) is NaN, as in NumPy
        case Act::LeakyRelu: {
            const __m256 pos = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ);
            return _mm256_blendv_ps(_mm256_mul_ps(z, _mm256_set1_ps(slope)), z, pos);
        }
        case Act::Tanh: {
            const __m256 e = exp(_mm256_add_ps(z, z));
            return _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                 _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
        }
        case Act::Sigmoid: {
            const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), z));
            return _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
        }
    }
    return z;
}
#endif

}  // namespace
}  // namespace pygan::gemm::simd
