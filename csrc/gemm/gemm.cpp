// The GEMM driver: blocking, packing, threading and ISA dispatch around the micro-kernels.
//
// Loop nest (row-major view of BLIS's five loops; A is the broadcast side, B the vector side):
//   m0 (MB rows of A, packed once per K block, shared by the threads)
//     k0 (KC, the K blocks of equal depth)
//       pack A block                       (threads split its micro-panels; a small A is packed
//                                           by every thread for itself, with no barriers)
//       n0 (NB columns of this thread's slice)
//         pack B block KC x NB (stays in L2)
//         for each A micro-panel (MR x KC, stays in L1)
//           for each B micro-panel (KC x NR, streamed from L2): micro-kernel
// Every element of C is computed by one thread in one fixed order, so the result does not depend
// on the thread count.
#include "gemm.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>

#include "kernel.h"
#include "../denormal.h"
#include "../finite.h"

// Debug assertion mode (-DPYGAN_CHECK_BOUNDS, on in sanitizer builds): every packing call checks
// that it reads inside the operands and writes inside its panel buffer.
#ifdef PYGAN_CHECK_BOUNDS
#define PYGAN_CHECK(cond, what)                                                                          \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            std::fprintf(stderr, "pygan: bounds check failed: %s (%s:%d)\n", what, __FILE__, __LINE__); \
            std::abort();                                                                                \
        }                                                                                                \
    } while (0)
#else
#define PYGAN_CHECK(cond, what) ((void)0)
#endif

namespace pygan::gemm {
namespace {

std::atomic<int> g_threads{std::clamp(omp_get_num_procs(), 1, kMaxThreads)};
// where fma_peak leaves its bursts' results, so that no compiler can drop them
std::atomic<float> g_fma_sink{0.0f};
std::atomic<const MicroKernel*> g_kernel{nullptr};

bool cpu_has(const std::string& isa) {
    if (isa == "generic") return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == "avx512")
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return false;
}

const MicroKernel& kernel_for(const std::string& isa) {
    if (isa == "avx512") return kernel_avx512();
    if (isa == "avx2") return kernel_avx2();
    return kernel_generic();
}

// ---- scratch buffers: 64-byte aligned, grown on demand, one set per thread -------------------
struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
};

struct Scratch {
    std::unique_ptr<float, FreeDeleter> buf;
    std::size_t size = 0;
    float* get(std::size_t n) {
        if (n > size) {
            const std::size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
            void* p = std::aligned_alloc(64, bytes);
            if (!p) throw std::bad_alloc();
            buf.reset(static_cast<float*>(p));
            size = bytes / sizeof(float);
        }
        return buf.get();
    }
};

thread_local Scratch tl_a, tl_b;

// ---- packing ---------------------------------------------------------------------------------

template <Act A>
inline float transform(float v, const float* y, idx off, float slope) {
    if constexpr (A == Act::Identity) {
        (void)y, (void)off, (void)slope;
        return v;
    } else {
        return act_backward(A, v, y[off], slope);
    }
}

// One A micro-panel: rows [i, i + mr) and columns [k0, k0 + kc) into dst[kk * MR + r].
template <Act A>
void pack_a_panel(const Problem& p, idx i, int mr, int MR, idx k0, idx kc, float* dst) {
    PYGAN_CHECK(i >= 0 && mr >= 1 && mr <= MR && i + mr <= p.m && k0 >= 0 && kc >= 1 && k0 + kc <= p.k,
                "A micro-panel outside A");
    const float* y = p.pro_a.y;
    const float s = p.pro_a.slope;
    if (!p.trans_a) {
        for (int r = 0; r < mr; ++r) {
            const idx row = (i + r) * p.lda + k0, yrow = (i + r) * p.pro_a.ldy + k0;
            for (idx kk = 0; kk < kc; ++kk) dst[kk * MR + r] = transform<A>(p.a[row + kk], y, yrow + kk, s);
        }
    } else {
        for (idx kk = 0; kk < kc; ++kk) {
            const idx col = (k0 + kk) * p.lda + i, ycol = (k0 + kk) * p.pro_a.ldy + i;
            for (int r = 0; r < mr; ++r) dst[kk * MR + r] = transform<A>(p.a[col + r], y, ycol + r, s);
        }
    }
    for (int r = mr; r < MR; ++r)
        for (idx kk = 0; kk < kc; ++kk) dst[kk * MR + r] = 0.0f;
}

// A B block: rows [k0, k0 + kc), columns [n0, n0 + nb) into NR-wide panels, each kc x NR.
// With sums, the block's column sums are added to colsum[n0 ...].
template <Act A>
void pack_b_block(const Problem& p, idx k0, idx kc, idx n0, idx nb, int NR, float* dst, float* colsum,
                  bool* nonfinite) {
    PYGAN_CHECK(k0 >= 0 && kc >= 1 && k0 + kc <= p.k && n0 >= 0 && nb >= 1 && n0 + nb <= p.n, "B block outside B");
    const float* y = p.pro_b.y;
    const float s = p.pro_b.slope;
    for (idx j = 0; j < nb; j += NR) {
        const int nr = static_cast<int>(std::min<idx>(NR, nb - j));
        float* d = dst + j * kc;
        if (!p.trans_b && nonfinite && !colsum && A == Act::Identity) {
            // the forward's weights: copied and checked for NaN/Inf in the same pass
            std::uint32_t top = 0;
            for (idx kk = 0; kk < kc; ++kk) {
                const float* src = p.b + (k0 + kk) * p.ldb + n0 + j;
                float* dk = d + kk * NR;
                for (int jj = 0; jj < nr; ++jj) {
                    top |= nonfinite_bit(src[jj]);
                    dk[jj] = src[jj];
                }
                for (int jj = nr; jj < NR; ++jj) dk[jj] = 0.0f;
            }
            if (top) *nonfinite = true;
            continue;
        } else if (!p.trans_b) {
            for (idx kk = 0; kk < kc; ++kk) {
                const idx row = (k0 + kk) * p.ldb + n0 + j, yrow = (k0 + kk) * p.pro_b.ldy + n0 + j;
                float* dk = d + kk * NR;
                for (int jj = 0; jj < nr; ++jj) dk[jj] = transform<A>(p.b[row + jj], y, yrow + jj, s);
                for (int jj = nr; jj < NR; ++jj) dk[jj] = 0.0f;
                if (colsum)
                    for (int jj = 0; jj < nr; ++jj) colsum[n0 + j + jj] += dk[jj];
            }
        } else {
            // transposing read: 8 source rows at a time, so each output row gets 8 contiguous writes
            int jj = 0;
            for (; jj + 8 <= nr; jj += 8) {
                const float* src[8];
                const float* ysrc[8];
                for (int q = 0; q < 8; ++q) {
                    src[q] = p.b + (n0 + j + jj + q) * p.ldb + k0;
                    ysrc[q] = y ? y + (n0 + j + jj + q) * p.pro_b.ldy + k0 : nullptr;
                }
                for (idx kk = 0; kk < kc; ++kk) {
                    float* dk = d + kk * NR + jj;
                    for (int q = 0; q < 8; ++q) dk[q] = transform<A>(src[q][kk], ysrc[q], kk, s);
                }
            }
            for (; jj < nr; ++jj) {
                const float* src = p.b + (n0 + j + jj) * p.ldb + k0;
                const float* ysrc = y ? y + (n0 + j + jj) * p.pro_b.ldy + k0 : nullptr;
                for (idx kk = 0; kk < kc; ++kk) d[kk * NR + jj] = transform<A>(src[kk], ysrc, kk, s);
            }
            for (idx kk = 0; kk < kc; ++kk)
                for (int q = nr; q < NR; ++q) d[kk * NR + q] = 0.0f;
            if (colsum)
                for (idx kk = 0; kk < kc; ++kk)
                    for (int q = 0; q < nr; ++q) colsum[n0 + j + q] += d[kk * NR + q];
        }
        if (nonfinite) {
            std::uint32_t top = 0;
            for (idx q = 0; q < kc * NR; ++q) top |= nonfinite_bit(d[q]);
            if (top) *nonfinite = true;
        }
    }
}

// Calls f(std::integral_constant<Act, act>{}) so the packing loops are compiled once per activation
// (identity when the prologue is off).
template <class F>
void dispatch_act(Act act, bool active, F&& f) {
    if (!active) return f(std::integral_constant<Act, Act::Identity>{});
    with_act(act, f);
}

void pack_a_range(const Problem& p, const MicroKernel& K, idx m0, idx panel_lo, idx panel_hi, idx mb, idx k0, idx kc,
                  float* abuf, std::size_t capacity) {
    if (p.direct_a) return;  // read in place by the kernels
    PYGAN_CHECK(panel_hi * K.mr * kc <= static_cast<idx>(capacity) && m0 + mb <= p.m, "A block outside its buffer");
    (void)capacity;
    if (K.pack_a) {
        for (idx ip = panel_lo; ip < panel_hi; ++ip) {
            const int mr = static_cast<int>(std::min<idx>(K.mr, mb - ip * K.mr));
            K.pack_a(p.a, p.lda, p.pro_a.y, p.pro_a.ldy, p.pro_a.act, p.pro_a.slope, p.trans_a, m0 + ip * K.mr, mr, k0,
                     kc, abuf + ip * K.mr * kc);
        }
        return;
    }
    dispatch_act(p.pro_a.act, p.pro_a.active(), [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        for (idx ip = panel_lo; ip < panel_hi; ++ip) {
            const int mr = static_cast<int>(std::min<idx>(K.mr, mb - ip * K.mr));
            pack_a_panel<A>(p, m0 + ip * K.mr, mr, K.mr, k0, kc, abuf + ip * K.mr * kc);
        }
    });
}

// The micro-kernels over one packed A block and one B block.
void compute_block(const Problem& p, const MicroKernel& K, idx m0, idx mb, const float* abuf, idx k0, idx kc, idx n0,
                   idx nb, const float* bbuf) {
    TileEpilogue ep{};
    ep.accumulate = p.accumulate || k0 > 0;
    ep.last = k0 + kc == p.k;
    ep.act = p.epi.act;
    ep.slope = p.epi.slope;
    const DirectA* d = p.direct_a;
    const float* rows[kMaxMr] = {};
    for (idx i = 0; i < mb; i += K.mr) {
        const int mr = static_cast<int>(std::min<idx>(K.mr, mb - i));
        const float* ap = d ? nullptr : abuf + (i / K.mr) * K.mr * kc;
        if (d)
            for (int r = 0; r < mr; ++r) rows[r] = d->src + d->roff[m0 + i + r];
        ep.bias_row = p.epi.bias_row ? p.epi.bias_row + m0 + i : nullptr;
        for (idx j = 0; j < nb; j += K.nr) {
            const int nr = static_cast<int>(std::min<idx>(K.nr, nb - j));
            const float* bp = bbuf + j * kc;
            ep.bias_col = p.epi.bias_col ? p.epi.bias_col + n0 + j : nullptr;
            float* c = p.c + (m0 + i) * p.ldc + n0 + j;
            if (d) K.tile_direct(kc, rows, d->koff + k0, bp, K.nr, c, p.ldc, mr, nr, ep);
            else K.tile(kc, ap, bp, K.nr, c, p.ldc, mr, nr, ep);
        }
    }
}

// Pack one B block and run the kernels over it. (B is always packed: measured at batch 64, packed
// panels beat reading a row-major B in place by 15-40%, since the panels stream from L2 in order.)
void b_block_and_compute(const Problem& p, const MicroKernel& K, idx m0, idx mb, const float* abuf, idx k0, idx kc,
                         idx n0, idx nb, float* colsum, bool* nonfinite) {
    const idx panels = (nb + K.nr - 1) / K.nr;
    float* bbuf = tl_b.get(static_cast<std::size_t>(panels * K.nr * kc));
    PYGAN_CHECK(tl_b.size >= static_cast<std::size_t>(panels * K.nr * kc), "B block outside its buffer");
    if (p.gather_b) {
#ifdef PYGAN_CHECK_BOUNDS
        const GatherB& g = *p.gather_b;
        for (idx q = k0; q < k0 + kc; ++q)
            for (idx j = n0; j < n0 + nb; ++j) {
                const std::int64_t ia = std::int64_t(g.ra[q]) + g.ca[j], ib = std::int64_t(g.rb[q]) + g.cb[j];
                const std::int64_t off = std::int64_t(g.roff[q]) + g.coff[j];
                PYGAN_CHECK(ia < 0 || ia >= g.la || ib < 0 || ib >= g.lb || (off >= 0 && off < g.len && off <= INT32_MAX),
                            "gathered B element outside its source");
            }
#endif
        for (idx j = 0; j < nb; j += K.nr)
            K.gather(*p.gather_b, k0, kc, n0 + j, static_cast<int>(std::min<idx>(K.nr, nb - j)), bbuf + j * kc);
    } else if (!p.trans_b && !p.pro_b.active() && !colsum && K.pack_b_checked) {
        // a plain row-major B takes the vector copy too; its NaN/Inf check costs next to nothing
        bool bad = false;
        for (idx j = 0; j < nb; j += K.nr)
            bad = K.pack_b_checked(p.b, p.ldb, k0, kc, n0 + j, static_cast<int>(std::min<idx>(K.nr, nb - j)), bbuf + j * kc) || bad;
        if (bad && nonfinite) *nonfinite = true;
    } else if (!p.trans_b && (p.pro_b.active() || colsum) && !nonfinite && K.pack_b_rows) {
        for (idx j = 0; j < nb; j += K.nr)
            K.pack_b_rows(p.b, p.ldb, p.pro_b.y, p.pro_b.ldy, p.pro_b.act, p.pro_b.slope, k0, kc, n0 + j,
                          static_cast<int>(std::min<idx>(K.nr, nb - j)), colsum ? colsum + n0 + j : nullptr,
                          bbuf + j * kc);
    } else if (p.trans_b && !p.pro_b.active() && !colsum && !nonfinite && K.pack_b_trans) {
        for (idx j = 0; j < nb; j += K.nr)
            K.pack_b_trans(p.b, p.ldb, k0, kc, n0 + j, static_cast<int>(std::min<idx>(K.nr, nb - j)), bbuf + j * kc);
    } else {
        dispatch_act(p.pro_b.act, p.pro_b.active(), [&](auto tag) {
            pack_b_block<decltype(tag)::value>(p, k0, kc, n0, nb, K.nr, bbuf, colsum, nonfinite);
        });
    }
    compute_block(p, K, m0, mb, abuf, k0, kc, n0, nb, bbuf);
}

// C for K == 0: the epilogue applied to zero (or to C when accumulating).
void empty_k(const Problem& p) {
    for (idx i = 0; i < p.m; ++i)
        for (idx j = 0; j < p.n; ++j) {
            float v = p.accumulate ? p.c[i * p.ldc + j] : 0.0f;
            if (p.epi.bias_col) v += p.epi.bias_col[j];
            if (p.epi.bias_row) v += p.epi.bias_row[i];
            p.c[i * p.ldc + j] = act_forward(p.epi.act, v, p.epi.slope);
        }
}

// B's column sums when there is no C to compute (M == 0).
void colsum_only(const Problem& p) {
    for (idx q = 0; q < p.k; ++q)
        for (idx j = 0; j < p.n; ++j) {
            const idx off = p.trans_b ? j * p.ldb + q : q * p.ldb + j;
            const idx yoff = p.trans_b ? j * p.pro_b.ldy + q : q * p.pro_b.ldy + j;
            const float v = p.b[off];
            p.pro_b.colsum[j] += p.pro_b.active() ? act_backward(p.pro_b.act, v, p.pro_b.y[yoff], p.pro_b.slope) : v;
        }
}

// L1d and L2 sizes of this CPU in bytes (0 where the system does not say), read once.
std::pair<long, long> cache_sizes() {
    static const std::pair<long, long> sizes{std::max(0L, sysconf(_SC_LEVEL1_DCACHE_SIZE)),
                                             std::max(0L, sysconf(_SC_LEVEL2_CACHE_SIZE))};
    return sizes;
}

}  // namespace

idx n_block(const MicroKernel& K) {
    // KC is the kernel's own: it fixes the order in which a dot product is summed (one K block
    // after another), so results depend on the ISA and the shape only, never on the machine. NB
    // follows L2: a packed B block (KC x NB) fills about 60% of it, in whole NR panels; the rest
    // holds the A micro-panels and C tiles streaming past. NB changes no result.
    const long l2 = cache_sizes().second;
    return l2 > 0 ? std::max<idx>(K.nr, l2 * 3 / 5 / (K.kc * idx{sizeof(float)}) / K.nr * K.nr) : K.nb;
}

// Bounds-checking builds: every element of a DirectA lies inside its source.
void check_direct_a(const Problem& p) {
#ifdef PYGAN_CHECK_BOUNDS
    const DirectA& d = *p.direct_a;
    std::int32_t klo = INT32_MAX, khi = INT32_MIN;
    for (idx q = 0; q < p.k; ++q) klo = std::min(klo, d.koff[q]), khi = std::max(khi, d.koff[q]);
    for (idx i = 0; i < p.m; ++i) {
        const std::int64_t r = d.roff[i];
        PYGAN_CHECK(r >= 0 && r < d.len && r + klo >= 0 && r + khi < d.len, "direct A element outside its source");
    }
#else
    (void)p;
#endif
}

void sgemm(const Problem& p) {
    if (p.gather_b && (p.trans_b || p.pro_b.active() || p.pro_b.colsum || p.b_nonfinite))
        throw std::invalid_argument("sgemm: a gathered B is not combined with trans_b, a B prologue, column sums or a NaN check");
    if (p.direct_a && (p.trans_a || p.pro_a.active()))
        throw std::invalid_argument("sgemm: a direct A is not combined with trans_a or an A prologue");
    if (p.direct_a && p.m > 0 && p.k > 0) check_direct_a(p);
    if (p.n == 0) return;
    if (p.m == 0) {
        if (p.pro_b.colsum) colsum_only(p);
        return;
    }
    if (p.k == 0) return empty_k(p);
    const MicroKernel& K = active_kernel();
    const idx NB = n_block(K);
    const idx n_panels = (p.n + K.nr - 1) / K.nr;
    const idx m_panels = (p.m + K.mr - 1) / K.mr;
    const double flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
    // K blocks of equal depth (K = 784 runs as 2 x 392, not 384 + 384 + 16: a shallow last block
    // costs a full pass over C for little work)
    const idx k_blocks = (p.k + K.kc - 1) / K.kc;
    const idx KC = (p.k + k_blocks - 1) / k_blocks;
    int T = std::min(g_threads.load(), 64);
    if (flops < 2e5) T = 1;
    // threads split the columns, unless K is one shallow block and there are rows enough: then each
    // thread takes a slice of rows (a weight gradient at batch 64: 1024 x 784 x 64 ran 13% faster)
    const bool split_n = (n_panels >= 2 * T || m_panels < 2 * T) && !(p.k <= K.kc && m_panels >= 8 * T);
    T = static_cast<int>(std::min<idx>(T, split_n ? n_panels : m_panels));
    T = std::max(T, 1);

    if (split_n) {
        // threads share the packed A block and own a slice of columns
        const idx mb_max = std::min<idx>(K.mb, p.m);
        const idx kc_max = KC;
        const auto a_cap = static_cast<std::size_t>(((mb_max + K.mr - 1) / K.mr) * K.mr * kc_max);
        // A small A (one M block, at most 256K elements, 1 MiB: a batch of 256 through a layer) is packed by
        // every thread for itself, so the threads never wait for each other; a larger one is packed
        // once, the threads sharing the work, with a barrier on each side of its use.
        const bool private_a = p.direct_a || (p.m <= K.mb && p.m * p.k <= (idx{1} << 18));
        float* shared_a = private_a ? nullptr : tl_a.get(a_cap);
        bool bad[64] = {};  // one flag per thread (T <= 64 below), combined after the region
        FlushDenormals ftz;
#pragma omp parallel num_threads(T) firstprivate(ftz)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            float* abuf = p.direct_a ? nullptr : private_a ? tl_a.get(a_cap) : shared_a;
            bool* nonfinite = p.b_nonfinite ? &bad[t] : nullptr;
            // column slices on 16-column boundaries; a narrow last panel costs only its vectors
            const idx n16 = (p.n + 15) / 16;
            const idx j0 = std::min<idx>((n16 * t / nt) * 16, p.n), j1 = std::min<idx>((n16 * (t + 1) / nt) * 16, p.n);
            for (idx m0 = 0; m0 < p.m; m0 += K.mb) {
                const idx mb = std::min<idx>(K.mb, p.m - m0);
                const idx a_panels = (mb + K.mr - 1) / K.mr;
                for (idx k0 = 0; k0 < p.k; k0 += KC) {
                    const idx kc = std::min<idx>(KC, p.k - k0);
                    const idx lo = private_a ? 0 : a_panels * t / nt, hi = private_a ? a_panels : a_panels * (t + 1) / nt;
                    pack_a_range(p, K, m0, lo, hi, mb, k0, kc, abuf, a_cap);
                    if (!private_a) {
#pragma omp barrier
                    }
                    for (idx n0 = j0; n0 < j1; n0 += NB) {
                        const idx nb = std::min<idx>(NB, j1 - n0);
                        b_block_and_compute(p, K, m0, mb, abuf, k0, kc, n0, nb, m0 == 0 ? p.pro_b.colsum : nullptr,
                                            nonfinite);
                    }
                    if (!private_a) {
#pragma omp barrier
                    }
                }
            }
        }
        if (p.b_nonfinite)
            for (int t = 0; t < T; ++t) *p.b_nonfinite = *p.b_nonfinite || bad[t];
    } else {
        // few columns: threads own slices of rows and pack privately
        bool bad[64] = {};
        FlushDenormals ftz;
#pragma omp parallel num_threads(T) firstprivate(ftz)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            bool* nonfinite = p.b_nonfinite ? &bad[t] : nullptr;
            const idx i0 = (m_panels * t / nt) * K.mr, i1 = std::min<idx>((m_panels * (t + 1) / nt) * K.mr, p.m);
            for (idx m0 = i0; m0 < i1; m0 += K.mb) {
                const idx mb = std::min<idx>(K.mb, i1 - m0);
                const idx a_panels = (mb + K.mr - 1) / K.mr;
                for (idx k0 = 0; k0 < p.k; k0 += KC) {
                    const idx kc = std::min<idx>(KC, p.k - k0);
                    const auto a_cap = static_cast<std::size_t>(a_panels * K.mr * kc);
                    float* abuf = p.direct_a ? nullptr : tl_a.get(a_cap);
                    pack_a_range(p, K, m0, 0, a_panels, mb, k0, kc, abuf, a_cap);
                    for (idx n0 = 0; n0 < p.n; n0 += NB) {
                        const idx nb = std::min<idx>(NB, p.n - n0);
                        // the column sums are the first row slice's job, so each is summed once
                        float* colsum = (t == 0 && m0 == 0) ? p.pro_b.colsum : nullptr;
                        b_block_and_compute(p, K, m0, mb, abuf, k0, kc, n0, nb, colsum, nonfinite);
                    }
                }
            }
        }
        if (p.b_nonfinite)
            for (int t = 0; t < T; ++t) *p.b_nonfinite = *p.b_nonfinite || bad[t];
    }
}

const MicroKernel& active_kernel() {
    const MicroKernel* k = g_kernel.load(std::memory_order_acquire);
    if (!k) {
        const auto isas = supported_isas();
        k = &kernel_for(isas.back());
        g_kernel.store(k, std::memory_order_release);
    }
    return *k;
}

void bias_act(float* x, idx n, float bias, Act act, float slope) { active_kernel().bias_act(x, n, bias, act, slope); }

void set_num_threads(int n) {
    if (n < 1 || n > kMaxThreads)
        throw std::invalid_argument("n: the number of threads must be in 1 .. " + std::to_string(kMaxThreads) +
                                    ", got " + std::to_string(n));
    g_threads.store(n);
}

int num_threads() { return g_threads.load(); }

double fma_peak(int threads, double seconds, int trials) {
    if (threads < 1 || threads > kMaxThreads)
        throw std::invalid_argument("threads: must be in 1 .. " + std::to_string(kMaxThreads) + ", got " +
                                    std::to_string(threads));
    if (!(seconds > 0.0 && seconds <= 60.0))
        throw std::invalid_argument("seconds: must be in (0, 60], got " + std::to_string(seconds));
    if (trials < 1 || trials > 100)
        throw std::invalid_argument("trials: must be in 1 .. 100, got " + std::to_string(trials));
    const FmaBurst burst = active_kernel().fma;
    constexpr float a = 0.999f, b = 0.001f;  // every chain converges to 1
    float sink = 0.0f;
    long reps = 256;  // one burst of about a millisecond, so that the clock is read rarely
    for (;;) {
        const double t0 = omp_get_wtime();
        sink += burst.run(reps, a, b);
        if (omp_get_wtime() - t0 > 1e-3 || reps > (1L << 40)) break;
        reps *= 2;
    }
    double best = 0.0;
    for (int trial = 0; trial < trials; ++trial) {
        long bursts = 0;
        double start = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : bursts, sink)
        {
#pragma omp single
            start = omp_get_wtime();  // the single's closing barrier starts every thread together
            const double until = start + seconds;
            do {
                sink += burst.run(reps, a, b);
                ++bursts;
            } while (omp_get_wtime() < until);
        }
        const double wall = omp_get_wtime() - start;
        best = std::max(best, static_cast<double>(bursts) * static_cast<double>(reps) * burst.flops_per_rep / wall / 1e9);
    }
    g_fma_sink.store(sink, std::memory_order_relaxed);
    return best;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const char* isa : {"generic", "avx2", "avx512"})
        if (cpu_has(isa)) out.emplace_back(isa);
    return out;
}

std::string current_isa() { return active_kernel().isa; }

BlockingInfo current_blocking() {
    const MicroKernel& K = active_kernel();
    const auto [l1, l2] = cache_sizes();
    return {K.mr, K.nr, K.kc, n_block(K), K.mb, l1, l2};
}

void set_isa(const std::string& name) {
    if (name != "generic" && name != "avx2" && name != "avx512")
        throw std::invalid_argument("isa: unknown instruction set '" + name + "'; expected avx512, avx2 or generic");
    if (!cpu_has(name)) throw std::invalid_argument("isa: this CPU does not support " + name);
    g_kernel.store(&kernel_for(name), std::memory_order_release);
}

}  // namespace pygan::gemm
