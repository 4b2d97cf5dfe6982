// The per-ISA kernel table: the micro-kernel (one register-blocked MR x NR tile of C += A_panel *
// B_panel, with the epilogue (bias, activation) applied to the registers before the store), the
// packers that can use that ISA's vectors, an elementwise epilogue, and batch norm's row kernels
// (not GEMM work, but per-ISA loops belong here, where PYGAN_ISA reaches them). One table per ISA, each in
// its own translation unit compiled with that ISA's target flags; a null packer means the portable
// one in gemm.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../activation.h"
#include "gemm.h"

namespace pygan::gemm {

using idx = std::ptrdiff_t;

struct TileEpilogue {
    bool accumulate;        // add to the values already in C (later K blocks)
    bool last;              // last K block: apply bias and activation
    const float* bias_col;  // bias for the tile's columns (already offset), or nullptr
    const float* bias_row;  // bias for the tile's rows (already offset), or nullptr
    Act act;
    float slope;
};

// a: packed A micro-panel, k-major: a[k * MR + r]; rows r >= mr hold zeros.
// b: packed B micro-panel, row k at b + k * ldb (ldb == NR; columns >= nr are zero padding and
//    need not be read).
// c: the tile's top-left element; row stride ldc. Only mr x nr elements are touched.
using TileFn = void (*)(idx kc, const float* a, const float* b, idx ldb, float* c, idx ldc, int mr, int nr,
                        const TileEpilogue& ep);

// The same tile with A read in place (see DirectA): A(r, k) = rows[r][koff[k]] for r < mr (rows
// beyond mr are never read).
using DirectTileFn = void (*)(idx kc, const float* const* rows, const std::int32_t* koff, const float* b, idx ldb,
                              float* c, idx ldc, int mr, int nr, const TileEpilogue& ep);

// Reads A for a tile: a packed micro-panel (a[k * MR + r]) ...
template <int MR>
struct PackedPanel {
    const float* a;
    const float* at(idx k) const { return a + k * MR; }
};

// ... or rows read in place (R row pointers held in registers, one offset per k).
template <int R>
struct InPlaceRows {
    const float* rows[R];
    const std::int32_t* koff;
    struct Column {
        const float* const* rows;
        std::int32_t off;
        float operator[](int r) const { return rows[r][off]; }
    };
    Column at(idx k) const { return {rows, koff[k]}; }
};

// One B micro-panel from a GatherB: rows [k0, k0 + kc), columns [j0, j0 + nr) into dst[kk * NR + jj],
// columns nr .. NR zero-filled. (Masked vector gathers where the ISA has them.)
using GatherFn = void (*)(const GatherB& g, idx k0, idx kc, idx j0, int nr, float* dst);

// One B micro-panel of a transposed B with no prologue, B(p, j) = b[j * ldb + p]: rows [k0, k0 + kc),
// columns [j0, j0 + nr) into dst[kk * NR + jj], columns nr .. NR zero-filled. Null: the portable packing.
using PackTransFn = void (*)(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst);

// One B micro-panel copied from a row-major B, B(p, j) = b[p * ldb + j], and checked for NaN/Inf in the
// same pass (returns true if one is found); layout as above. Null: the portable packing.
using PackCopyFn = bool (*)(const float* b, idx ldb, idx k0, idx kc, idx j0, int nr, float* dst);

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (a block of a layout change, e.g. a
// convolution's pixel rows into NCHW planes). Pure copies: the same result on every ISA.
using TransposeFn = void (*)(const float* src, idx lds, float* dst, idx ldd, idx rows, idx cols);
// x[i] = act(x[i] + bias) for i < n (an elementwise epilogue outside a GEMM).
using BiasActFn = void (*)(float* x, idx n, float bias, Act act, float slope);

// One A micro-panel (MR == 8): A(i, p) = a[i * lda + p], or a[p * lda + i] when trans, with the
// prologue dz = dy * act'(y) when y is not null (y laid out like a, stride ldy); rows [i0, i0 + mr),
// columns [k0, k0 + kc) into dst[kk * 8 + r], rows mr .. 8 zero. Null: the portable packing.
using PackAFn = void (*)(const float* a, idx lda, const float* y, idx ldy, Act act, float slope, bool trans, idx i0,
                         int mr, idx k0, idx kc, float* dst);

// One B micro-panel of a row-major B with the prologue dz = dy * act'(y) when y is not null, and
// colsum[jj] += the panel's column sums when colsum is not null (offset to column j0); layout as
// above. Null: the portable packing.
using PackRowsFn = void (*)(const float* b, idx ldb, const float* y, idx ldy, Act act, float slope, idx k0, idx kc,
                            idx j0, int nr, float* colsum, float* dst);

// dx = scale * (g - mean_b - (x - mu) * invstd * mean_g) for one channel (batch norm's backward)
struct BnDxTerms {
    float mu, invstd, scale, mean_b, mean_g;
};

// Batch norm over one contiguous row of len floats (one channel's plane of one image). Sums run in
// the order of lane_sum / lane_sum2, and elements in the same operations, on every ISA.
struct BnRows {
    double (*sum)(const float* x, idx len);                 // sum of x
    double (*sqdev)(const float* x, idx len, double mean);  // sum of (x - mean)^2, in double
    // act(((x - mu) * invstd) * gamma + beta), in the reference's order: subtracting the mean first
    // keeps xhat exact where the mean is large against the spread, and no intermediate overflows
    // where the reference's do not (a folded x * scale + shift loses both)
    void (*normalize_act)(const float* x, float* y, idx len, float mu, float invstd, float gamma, float beta, Act act,
                          float slope);
    // sums of g = dy * act'(y) and of g * xhat, xhat = (x - mu) * invstd as in the forward (so no
    // product overflows where the reference's do not)
    std::pair<double, double> (*grad_sums)(const float* dy, const float* y, const float* x, idx len, float mu,
                                           float invstd, Act act, float slope);
    void (*grad_dx)(const float* dy, const float* y, const float* x, float* dx, idx len, const BnDxTerms& t, Act act,
                    float slope);
};

// A register-only burst of reps iterations of independent FMA chains, acc = acc * a + b with a, b
// near 1 and 0 (the chains converge, no denormals or overflow): the ISA's FMA peak with no memory
// traffic. Returns a sum of the accumulators, so that the work cannot be optimised away.
struct FmaBurst {
    float (*run)(long reps, float a, float b);
    int flops_per_rep;  // 2 x lanes x chains
};

// Calls f(std::integral_constant<int, R>{}) with R = mr, for 1 <= mr <= MR: a tile of mr rows runs the
// instantiation for exactly that many.
template <int MR, class F>
inline void with_rows(int mr, F&& f) {
    if constexpr (MR > 1) {
        if (mr >= MR) return f(std::integral_constant<int, MR>{});
        return with_rows<MR - 1>(mr, f);
    } else {
        (void)mr;
        return f(std::integral_constant<int, 1>{});
    }
}

// A tile's rows read in place: the R row pointers copied into an InPlaceRows<R>.
template <int R>
InPlaceRows<R> in_place_rows(const float* const* rows, const std::int32_t* koff) {
    InPlaceRows<R> as{{}, koff};
    for (int r = 0; r < R; ++r) as.rows[r] = rows[r];
    return as;
}

// The largest MR of any kernel (the driver's row-pointer arrays for DirectTileFn).
constexpr int kMaxMr = 8;

struct MicroKernel {
    const char* isa;
    int mr, nr;   // register tile
    idx kc;       // K block (A micro-panel MR x KC stays in L1); sets the summation order
    idx nb;       // N block of packed B (KC x NB stays in L2), where the L2 size is unknown
    idx mb;       // M block of packed A
    TileFn tile;
    DirectTileFn tile_direct;
    GatherFn gather;
    PackTransFn pack_b_trans;
    PackCopyFn pack_b_checked;
    BiasActFn bias_act;
    TransposeFn transpose;
    PackAFn pack_a;
    PackRowsFn pack_b_rows;
    BnRows bn;
    FmaBurst fma;
};

// The table of the ISA in use (see set_isa).
const MicroKernel& active_kernel();

// The N block a kernel runs with on this CPU: derived from the L2 size (the kernel's nb where the
// system does not report it). KC and MB are the kernel's own.
idx n_block(const MicroKernel& K);

const MicroKernel& kernel_generic();
const MicroKernel& kernel_avx2();
const MicroKernel& kernel_avx512();

}  // namespace pygan::gemm
