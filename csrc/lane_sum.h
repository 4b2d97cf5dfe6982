// Reductions in a fixed order, vectorisable without reassociation flags.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

namespace pygan {

// Sum of f(q) over q in [0, n) in eight independent lanes of type T, within blocks of 128 terms
// (at most 16 per lane) whose sums are added in double: vectorisable without reassociation flags,
// and the same order on every run and thread count. Float lanes run at twice the SIMD width; each
// block's rounding error stays near 16 float ulps of its terms, and the blocks meet in double.
template <class T, class F>
double lane_sum(std::ptrdiff_t n, F&& f) {
    double total = 0.0;
    for (std::ptrdiff_t q0 = 0; q0 < n; q0 += 128) {
        const std::ptrdiff_t q1 = std::min(n, q0 + 128);
        T acc[8] = {};
        std::ptrdiff_t q = q0;
        for (; q + 8 <= q1; q += 8)
            for (int j = 0; j < 8; ++j) acc[j] += f(q + j);
        for (int j = 0; q < q1; ++q, ++j) acc[j] += f(q);
        total += double(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])));
    }
    return total;
}

// Two such float sums in one pass: f(q) returns both terms.
template <class F>
std::pair<double, double> lane_sum2(std::ptrdiff_t n, F&& f) {
    double ta = 0.0, tb = 0.0;
    for (std::ptrdiff_t q0 = 0; q0 < n; q0 += 128) {
        const std::ptrdiff_t q1 = std::min(n, q0 + 128);
        float a[8] = {}, b[8] = {};
        std::ptrdiff_t q = q0;
        for (; q + 8 <= q1; q += 8)
            for (int j = 0; j < 8; ++j) {
                const auto [u, v] = f(q + j);
                a[j] += u;
                b[j] += v;
            }
        for (int j = 0; q < q1; ++q, ++j) {
            const auto [u, v] = f(q);
            a[j] += u;
            b[j] += v;
        }
        ta += double(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
        tb += double(((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7])));
    }
    return {ta, tb};
}

}  // namespace pygan
