// Convolutions (NCHW, square kernels, dilation 1, groups 1) and batch norm, fused with their
// activations, on the GEMM core.
#pragma once

#include <cstddef>

#include "activation.h"

namespace pygan {

using idx = std::ptrdiff_t;

struct ConvShape {
    idx n, c_in, h, w;     // input of the convolution (for conv_transpose: its output geometry's input side)
    idx c_out, k, stride, pad;
    idx ho, wo;            // output of the convolution
};

// conv2d: x (n, c_in, h, w), w (c_out, c_in, k, k), b (c_out) or null -> y (n, c_out, ho, wo).
// Returns false when w holds NaN/Inf.
bool conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act, float slope);
// Backward: dx, dw, db may each be nullptr to skip it; with accumulate, dw and db are added to
// what they hold instead of overwriting it.
void conv2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y, float* dx,
                     float* dw, float* db, Act act, float slope, bool accumulate);

// conv_transpose2d, the adjoint of conv2d in its input: with s describing the conv2d that maps
// (n, c_in=Cout_t, ho, wo) <- ..., i.e. s.c_in = transposed conv's output channels, s.c_out = its
// input channels, s.h/s.w its output size and s.ho/s.wo its input size.
// x (n, s.c_out, s.ho, s.wo), w (s.c_out, s.c_in, k, k), b (s.c_in) -> y (n, s.c_in, s.h, s.w).
bool conv_transpose2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act,
                              float slope);
void conv_transpose2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y,
                               float* dx, float* dw, float* db, Act act, float slope, bool accumulate);

// Batch norm over (n, c, inner) (inner = H*W, or 1 for (N, C)) with a fused activation.
// Training: two-pass per-channel mean/var (biased) into mean/var; eval: pass them in.
void batch_norm_stats(const float* x, idx n, idx c, idx inner, float* mean, float* var);
void batch_norm_apply(const float* x, idx n, idx c, idx inner, const float* mean, const float* invstd,
                      const float* gamma, const float* beta, float* y, Act act, float slope);
void batch_norm_backward(const float* dy, const float* x, const float* y, idx n, idx c, idx inner,
                         const float* gamma, const float* mean, const float* invstd, bool training,
                         float* dx, float* dgamma, float* dbeta, Act act, float slope);

// 2x upsampling of planes (h, w) -> (2h, 2w), nearest or bilinear (half-pixel centres, edges
// clamped); the backward is the adjoint, (2h, 2w) -> (h, w).
void upsample2x_forward(const float* x, idx planes, idx h, idx w, bool bilinear, float* y);
void upsample2x_backward(const float* dy, idx planes, idx h, idx w, bool bilinear, float* dx);

// Group norm of x (n, c, inner) in `groups` groups of c / groups channels (instance norm: groups
// = c, layer norm: groups = 1), then act(xhat * gamma + beta); gamma and beta are (c) or, when
// per_example, (n, c) (AdaIN). mean and invstd are (n, groups). Statistics two-pass in double.
void group_norm_forward(const float* x, idx n, idx c, idx inner, idx groups, const float* gamma, const float* beta,
                        bool per_example, float eps, float* y, float* mean, float* invstd, Act act, float slope);
// dx, and dgamma / dbeta shaped as gamma.
void group_norm_backward(const float* dy, const float* x, const float* y, idx n, idx c, idx inner, idx groups,
                         const float* gamma, bool per_example, const float* mean, const float* invstd, float* dx,
                         float* dgamma, float* dbeta, Act act, float slope);

}  // namespace pygan
