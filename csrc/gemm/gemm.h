// pygan's GEMM core: C = A B (or C += A B) for row-major float32 matrices, BLIS-style (packed
// panels, cache blocking, a register-blocked micro-kernel per ISA), with fusion points:
//   prologue: dz = dy * act'(y) applied while packing A or B, and B's column sums (the bias
//             gradient) reduced in the same sweep;
//   epilogue: bias (per column or per row) and activation applied to the register tile before it
//             is stored.
// Transposed operands are read through the packing, never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../activation.h"

namespace pygan::gemm {

using idx = std::ptrdiff_t;

struct Prologue {
    const float* y = nullptr;  // the op's output, same layout (and transpose flag) as the operand
    idx ldy = 0;
    Act act = Act::Identity;
    float slope = 0.0f;
    float* colsum = nullptr;   // B only: receives += the column sums of the transformed B (length n)
    bool active() const { return y != nullptr; }
};

struct Epilogue {
    const float* bias_col = nullptr;  // length n
    const float* bias_row = nullptr;  // length m
    Act act = Act::Identity;
    float slope = 0.0f;
};

// B defined by an index rule, for convolutions (image patches packed straight into B's panels):
//   B(p, j) = src[roff[p] + coff[j]]  if 0 <= ra[p] + ca[j] < la and 0 <= rb[p] + cb[j] < lb,
//           = 0                       otherwise (the zero padding around an image).
// The rule is symmetric in rows and columns, so an unfolded matrix and its transpose are both one
// GatherB. Every roff[p] + coff[j] of a valid element must fit in int32 (callers chunk by image).
struct GatherB {
    const float* src = nullptr;
    const std::int32_t* roff = nullptr;  // length k
    const std::int32_t* ra = nullptr;
    const std::int32_t* rb = nullptr;
    const std::int32_t* coff = nullptr;  // length n
    const std::int32_t* ca = nullptr;
    const std::int32_t* cb = nullptr;
    std::int32_t la = 0, lb = 0;
    std::int64_t len = 0;  // elements readable at src (checked in bounds-checking builds)
};

// A read in place, for convolutions with the pixels on the broadcast side (no packing):
//   A(i, p) = src[roff[i] + koff[p]]
// Every such element must lie in src[0, len) (callers pad the image), and so must src + roff[i].
struct DirectA {
    const float* src = nullptr;
    const std::int32_t* roff = nullptr;  // length m
    const std::int32_t* koff = nullptr;  // length k
    std::int64_t len = 0;
};

struct Problem {
    idx m = 0, n = 0, k = 0;
    const float* a = nullptr;  // A(i, p) = trans_a ? a[p * lda + i] : a[i * lda + p]
    idx lda = 0;
    bool trans_a = false;
    const float* b = nullptr;  // B(p, j) = trans_b ? b[j * ldb + p] : b[p * ldb + j]
    idx ldb = 0;
    bool trans_b = false;
    float* c = nullptr;        // C(i, j) = c[i * ldc + j]
    idx ldc = 0;
    bool accumulate = false;   // C += A B instead of C = A B
    bool* b_nonfinite = nullptr;  // if set: becomes true when B holds a NaN or Inf (checked while packing)
    // Optional: B gathered from an image instead of read from b (see GatherB), so a convolution
    // needs no unfolded copy. Not combined with trans_b, a B prologue or column sums.
    const GatherB* gather_b = nullptr;
    // Optional: A read in place through an index rule (see DirectA) instead of packed from a; not
    // combined with trans_a or an A prologue.
    const DirectA* direct_a = nullptr;
    Prologue pro_a, pro_b;
    Epilogue epi;
};

void sgemm(const Problem& p);

// x[i] = act(x[i] + bias) for i < n, vectorised on the ISA in use (the epilogue's activations).
void bias_act(float* x, idx n, float bias, Act act, float slope);

// Threads any kernel may use: the one cap on every thread count (OpenMP runtimes end the process
// with no error past a few hundred threads).
constexpr int kMaxThreads = 256;

// Threads used by the macro-kernel loops and every other parallel kernel (1 .. kMaxThreads).
void set_num_threads(int n);
int num_threads();

// GFLOP/s of the active ISA's register-only FMA chains on `threads` threads at once, the best of
// `trials` measurements of `seconds` each: the machine's limit for float32 FMA work (what the GEMM
// core can at most reach) at that thread count.
double fma_peak(int threads, double seconds, int trials);

// Instruction-set paths: the ones this CPU runs, the one in use, and forcing one.
std::vector<std::string> supported_isas();
std::string current_isa();

// The register tile and cache blocking of the ISA in use on this CPU, and the cache sizes (bytes,
// 0 if unknown) that NB was derived from.
struct BlockingInfo {
    int mr, nr;
    idx kc, nb, mb;
    long l1d, l2;
};
BlockingInfo current_blocking();
void set_isa(const std::string& name);  // throws std::invalid_argument

}  // namespace pygan::gemm
