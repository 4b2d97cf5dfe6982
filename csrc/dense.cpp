// First, plain version of the fused dense op: correct, simple loops, threaded over rows.
#include "dense.h"

#include <algorithm>

namespace pygan {

using idx = std::ptrdiff_t;

void dense_forward(const float* x, const float* w, const float* b, float* y,
                   idx n, idx k, idx m, Act act, float slope) {
#pragma omp parallel for schedule(static)
    for (idx i = 0; i < n; ++i) {
        float* yr = y + i * m;
        for (idx j = 0; j < m; ++j) yr[j] = b ? b[j] : 0.0f;
        for (idx p = 0; p < k; ++p) {
            const float a = x[i * k + p];
            const float* wr = w + p * m;
            for (idx j = 0; j < m; ++j) yr[j] += a * wr[j];
        }
        for (idx j = 0; j < m; ++j) yr[j] = act_forward(act, yr[j], slope);
    }
}

void dense_backward(const float* dy, const float* x, const float* w, const float* y,
                    float* dx, float* dw, float* db, float* dz,
                    idx n, idx k, idx m, Act act, float slope) {
    for (idx i = 0; i < n * m; ++i) dz[i] = act_backward(act, dy[i], y[i], slope);
    if (dx) {
#pragma omp parallel for schedule(static)
        for (idx i = 0; i < n; ++i)
            for (idx p = 0; p < k; ++p) {
                float s = 0.0f;
                for (idx j = 0; j < m; ++j) s += dz[i * m + j] * w[p * m + j];
                dx[i * k + p] = s;
            }
    }
    if (dw) {
#pragma omp parallel for schedule(static)
        for (idx p = 0; p < k; ++p) {
            float* dwr = dw + p * m;
            std::fill(dwr, dwr + m, 0.0f);
            for (idx i = 0; i < n; ++i) {
                const float a = x[i * k + p];
                for (idx j = 0; j < m; ++j) dwr[j] += a * dz[i * m + j];
            }
        }
    }
    if (db) {
        std::fill(db, db + m, 0.0f);
        for (idx i = 0; i < n; ++i)
            for (idx j = 0; j < m; ++j) db[j] += dz[i * m + j];
    }
}

}  // namespace pygan
