// NaN/Inf tests by bit pattern: integer operations with no early exit, so loops over them vectorise
// (an `ok && std::isfinite(v)` loop stays scalar).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pygan {

// The top bit is set when v is NaN or Inf: an all-ones exponent carries into it.
inline std::uint32_t nonfinite_bit(float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return ((bits & 0x7f800000u) + 0x00800000u) & 0x80000000u;
}

// No NaN or Inf among p[0 .. n).
inline bool all_finite(const float* p, std::ptrdiff_t n) {
    std::uint32_t top = 0;
    for (std::ptrdiff_t i = 0; i < n; ++i) top |= nonfinite_bit(p[i]);
    return top == 0;
}

}  // namespace pygan
