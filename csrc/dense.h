// Fused dense layer: y = act(x @ w + b) and its backward, on the GEMM core.
#pragma once

#include <cstddef>

#include "activation.h"

namespace pygan {

// x: (n, k), w: (k, m), b: (m) or nullptr, y: (n, m). All row-major, contiguous.
// Returns false (y unspecified) when w holds a NaN or Inf, found while packing it.
bool dense_forward(const float* x, const float* w, const float* b, float* y,
                   std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t m, Act act, float slope);

// dy, y: (n, m). Any of dx (n, k), dw (k, m), db (m) may be nullptr to skip it. With
// accumulate, dw and db are added to what they hold instead of overwriting it.
void dense_backward(const float* dy, const float* x, const float* w, const float* y,
                    float* dx, float* dw, float* db,
                    std::ptrdiff_t n, std::ptrdiff_t k, std::ptrdiff_t m, Act act, float slope, bool accumulate);

}  // namespace pygan
