// Fused dense layer on the GEMM core.
//   forward:  y = act(x @ w + b)       bias + activation in the GEMM epilogue
//   backward: dz = dy * act'(y)        applied while packing (never stored)
//             dw = x^T dz, db = sum dz B-panel packing of dz reduces db in the same sweep
//             dx = dz w^T              w^T read through the packing
#include "dense.h"

#include <algorithm>

#include "gemm/gemm.h"

namespace pygan {

using idx = std::ptrdiff_t;

bool dense_forward(const float* x, const float* w, const float* b, float* y, idx n, idx k, idx m, Act act,
                   float slope) {
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
                    idx n, idx k, idx m, Act act, float slope) {
    gemm::Prologue dz;
    if (act != Act::Identity) dz.y = y, dz.ldy = m, dz.act = act, dz.slope = slope;
    if (db) std::fill(db, db + m, 0.0f);
    if (dw) {
        gemm::Problem p;  // dw (k x m) = x^T (k x n) @ dz (n x m)
        p.m = k, p.n = m, p.k = n;
        p.a = x, p.lda = k, p.trans_a = true;
        p.b = dy, p.ldb = m;
        p.pro_b = dz;
        p.pro_b.colsum = db;
        p.c = dw, p.ldc = m;
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
