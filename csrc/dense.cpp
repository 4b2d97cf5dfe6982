// Fused dense layer on the GEMM core.
//   forward:  y = act(x @ w + b)       bias + activation in the GEMM epilogue
//   backward: dz = dy * act'(y)        applied while packing (never stored)
//             dw = x^T dz, db = sum dz B-panel packing of dz reduces db in the same sweep
//             dx = dz w^T              w^T read through the packing
#include "dense.h"

#include <algorithm>
#include <cmath>

#include "finite.h"
#include "gemm/gemm.h"
#include "lane_sum.h"

namespace pygan {

using idx = std::ptrdiff_t;

namespace {

// One output unit (m == 1, a discriminator's head): a dot product per row is all there is, so the
// GEMM core's packing and threading would only cost time. Plain loops the compiler vectorises.
bool head_forward(const float* x, const float* w, const float* b, float* y, idx n, idx k, Act act, float slope) {
    if (!all_finite(w, k)) return false;
    for (idx i = 0; i < n; ++i) {
        const float* row = x + i * k;
        // a long dot product: float lanes within 128-term blocks, the blocks in double, which keeps any
        // k inside the 1e-5 contract
        const double acc = lane_sum<float>(k, [row, w](idx p) { return row[p] * w[p]; });
        y[i] = act_forward(act, static_cast<float>(acc) + (b ? b[0] : 0.0f), slope);
    }
    return true;
}

void head_backward(const float* dy, const float* x, const float* w, const float* y, float* dx, float* dw, float* db,
                   idx n, idx k, Act act, float slope, bool accumulate) {
    if (dw && !accumulate) std::fill(dw, dw + k, 0.0f);
    float sum = 0.0f;
    for (idx i = 0; i < n; ++i) {
        const float dz = act_backward(act, dy[i], y[i], slope);
        sum += dz;
        const float* row = x + i * k;
        if (dw)
            for (idx p = 0; p < k; ++p) dw[p] += row[p] * dz;
        if (dx) {
            float* out = dx + i * k;
            for (idx p = 0; p < k; ++p) out[p] = dz * w[p];
        }
    }
    if (db) db[0] = accumulate ? db[0] + sum : sum;
}

}  // namespace

bool dense_forward(const float* x, const float* w, const float* b, float* y, idx n, idx k, idx m, Act act,
                   float slope) {
    if (m == 1) return head_forward(x, w, b, y, n, k, act, slope);
    bool nonfinite = false;
    gemm::Problem p;
    p.b_nonfinite = &nonfinite;
    p.m = n, p.n = m, p.k = k;
    p.a = x, p.lda = k;
    p.b = w, p.ldb = m;
    p.c = y, p.ldc = m;
    p.epi.bias_col = b, p.epi.act = act, p.epi.slope = slope;
    gemm::sgemm(p);
    return !nonfinite;
}

void dense_backward(const float* dy, const float* x, const float* w, const float* y, float* dx, float* dw, float* db,
                    idx n, idx k, idx m, Act act, float slope, bool accumulate) {
    if (m == 1) return head_backward(dy, x, w, y, dx, dw, db, n, k, act, slope, accumulate);
    gemm::Prologue dz;
    if (act != Act::Identity) dz.y = y, dz.ldy = m, dz.act = act, dz.slope = slope;
    if (db && !accumulate) std::fill(db, db + m, 0.0f);
    if (dw) {
        gemm::Problem p;  // dw (k x m) = x^T (k x n) @ dz (n x m)
        p.m = k, p.n = m, p.k = n;
        p.a = x, p.lda = k, p.trans_a = true;
        p.b = dy, p.ldb = m;
        p.pro_b = dz;
        p.pro_b.colsum = db;
        p.c = dw, p.ldc = m, p.accumulate = accumulate;
        gemm::sgemm(p);
    }
    if (dx) {
        gemm::Problem p;  // dx (n x k) = dz (n x m) @ w^T (m x k)
        p.m = n, p.n = k, p.k = m;
        p.a = dy, p.lda = m;
        p.pro_a = dz;
        p.b = w, p.ldb = m, p.trans_b = true;
        p.c = dx, p.ldc = k;
        gemm::sgemm(p);
    }
}

}  // namespace pygan
