// Convolutions on the GEMM core, with no unfolded (im2col) copy of their input.
//
// With 16 or more channels on the output side of a GEMM (the common case), the pixels go on the
// micro-kernel's broadcast side and are read in place (gemm::DirectA) from a zero-padded copy of
// the images, so the patch matrix is never packed or gathered; the weights are the packed side,
// packed once and reused by every pixel:
//   conv2d forward            C (pixels x C_out)  = P^T W^T, bias and activation in the epilogue;
//   conv2d weight gradient    dW^T (taps x C_out) = P dZ^T (the taps on the broadcast side);
//   the adjoint (conv2d's data gradient, conv_transpose2d's forward), split by stride phase: the
//   output pixels (ih, iw) with the same (ih + pad, iw + pad) mod stride are reached by the same
//   kernel taps, so each phase is one GEMM  C_phase (pixels x C_in) = P_phase W_phase  over a
//   stride-1 patch matrix of the padded input, with no overlapping adds (no col2im);
// C's rows (pixels) are then transposed into NCHW planes. Reading the pixels in place took the
// DCGAN's conv layers from 60-74% to 77-90% of the FMA peak at 2 threads: the packing (gathers,
// for a stride-2 patch matrix) had cost as much as the FMAs it fed at C_out = 64..128.
//
// With fewer channels (a 1-channel image's layer) the pixels stay on the vector side: conv2d is
// one GEMM per chunk of images, Z (C_out x G*Ho*Wo) = W P, with P gathered straight from the image
// into the packed B panels (gemm::GatherB), and the adjoint one GEMM  cols = W^T z  folded by
// col2im.
//
// Chunks are fixed by the shape, never by the thread count, and every sum runs in one fixed
// order, so results are identical for any number of threads; the threads work inside each GEMM.
#include "conv.h"
#include "denormal.h"
#include "finite.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "gemm/gemm.h"
#include "gemm/kernel.h"
#include "lane_sum.h"

namespace pygan {
namespace {

// Images per chunk: about 8,192 GEMM columns (the chunk buffers are C_out x columns), and few
// enough that every gathered offset inside a chunk of `image` floats per image fits in int32.
idx chunk_images(idx n, idx spatial, idx image) {
    if (image > INT32_MAX) throw std::length_error("conv: one image holds more than 2^31 elements");
    idx g = spatial <= 0 ? n : (8192 + spatial - 1) / spatial;
    if (image > 0) g = std::min<idx>(g, INT32_MAX / image);
    return std::max<idx>(1, std::min(n, g));
}

int threads_for(idx work) { return work < (1 << 15) ? 1 : gemm::num_threads(); }

inline std::int32_t i32(idx v) { return static_cast<std::int32_t>(v); }

// Uninitialised float buffers, for scratch that is written before it is read (a std::vector would
// zero it first, serially), kept by each calling thread between calls. A large buffer handed back
// to the C library is often returned to the system and faulted in again, page by page and zeroed,
// on the next call: in a process that also held other large arrays, the DCGAN's step took about
// 10,000 page faults and ran 25% slower with a fresh buffer per call.
class ScratchPool {
public:
    class Buffer {
    public:
        Buffer(ScratchPool& pool, std::size_t slot) : pool_(pool), slot_(slot) {}
        Buffer(const Buffer&) = delete;
        Buffer& operator=(const Buffer&) = delete;
        ~Buffer() { pool_.release(slot_); }
        float* get() const { return pool_.slots_[slot_].data.get(); }

    private:
        ScratchPool& pool_;
        std::size_t slot_;
    };

    // A buffer of at least n floats: the smallest free one that holds n, else a free one grown to n,
    // else a new one.
    Buffer take(idx n) {
        const auto want = static_cast<std::size_t>(std::max<idx>(n, 1));
        std::size_t fit = slots_.size(), largest = slots_.size();
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            const std::size_t size = slots_[i].size;
            if (slots_[i].busy) continue;
            if (size >= want && (fit == slots_.size() || size < slots_[fit].size)) fit = i;
            if (largest == slots_.size() || size > slots_[largest].size) largest = i;
        }
        const std::size_t pick = fit < slots_.size() ? fit : largest;
        if (pick == slots_.size()) slots_.emplace_back();
        Slot& sl = slots_[pick];
        if (sl.size < want) {
            sl.data.reset();  // the old one first, so that both are never held at once
            sl.data.reset(new float[want]);
            sl.size = want;
        }
        sl.busy = true;
        return Buffer(*this, pick);
    }

private:
    // Buffers above this size (256 MiB) are freed when handed back rather than kept.
    static constexpr std::size_t kKeepFloats = std::size_t{1} << 26;
    struct Slot {
        std::unique_ptr<float[]> data;
        std::size_t size = 0;
        bool busy = false;
    };
    void release(std::size_t i) {
        Slot& sl = slots_[i];
        sl.busy = false;
        if (sl.size > kKeepFloats) sl.data.reset(), sl.size = 0;
    }
    std::vector<Slot> slots_;
};

ScratchPool::Buffer scratch(idx n) {
    thread_local ScratchPool pool;
    return pool.take(n);
}

// A gathered GEMM operand: a patch matrix over a stack of images (see gemm::GatherB), with rows
// (channel, tap i, tap j) and columns (image, output row, output column):
//   element = src[ch * ch_stride + img * img_stride + r * width + c],
//   r = row0 + oh * step + di,  c = col0 + ow * step + dj,
// when (r, c) lies inside the height x width plane, 0 outside; (di, dj) is the tap's offset. With
// transpose, rows and columns swap roles. The operand points into the object, which is therefore
// never copied.
class Patches {
public:
    struct Taps {
        idx channels, ch_stride;
        std::vector<std::int32_t> di, dj;  // per (tap i, tap j): both are listed in full, i-major
    };
    struct Pixels {
        idx images, img_stride, rows, cols, step, row0, col0;  // output (oh, ow) reads (row0 + oh*step, col0 + ow*step) + taps
    };
    Patches(const float* src, idx height, idx width, const Taps& taps, const Pixels& px, bool transpose) {
        auto& roff = transpose ? coff_ : roff_;
        auto& ra = transpose ? ca_ : ra_;
        auto& rb = transpose ? cb_ : rb_;
        auto& coff = transpose ? roff_ : coff_;
        auto& ca = transpose ? ra_ : ca_;
        auto& cb = transpose ? rb_ : cb_;
        const idx nt = static_cast<idx>(taps.di.size());
        roff.resize(static_cast<std::size_t>(taps.channels * nt)), ra.resize(roff.size()), rb.resize(roff.size());
        for (idx c = 0, q = 0; c < taps.channels; ++c)
            for (idx t = 0; t < nt; ++t, ++q) {
                ra[q] = taps.di[t], rb[q] = taps.dj[t];
                roff[q] = i32(c * taps.ch_stride + taps.di[t] * width + taps.dj[t]);
            }
        coff.resize(static_cast<std::size_t>(px.images * px.rows * px.cols)), ca.resize(coff.size()), cb.resize(coff.size());
        for (idx img = 0, q = 0; img < px.images; ++img)
            for (idx oh = 0; oh < px.rows; ++oh)
                for (idx ow = 0; ow < px.cols; ++ow, ++q) {
                    const idx r = px.row0 + oh * px.step, c = px.col0 + ow * px.step;
                    ca[q] = i32(r), cb[q] = i32(c);
                    coff[q] = i32(img * px.img_stride + r * width + c);
                }
        op_.src = src;
        op_.roff = roff_.data(), op_.ra = ra_.data(), op_.rb = rb_.data();
        op_.coff = coff_.data(), op_.ca = ca_.data(), op_.cb = cb_.data();
        op_.la = i32(height), op_.lb = i32(width);
        op_.len = (px.images - 1) * px.img_stride + (taps.channels - 1) * taps.ch_stride + height * width;
    }
    Patches(const Patches&) = delete;
    Patches& operator=(const Patches&) = delete;
    const gemm::GatherB* operand() const { return &op_; }

private:
    std::vector<std::int32_t> roff_, ra_, rb_, coff_, ca_, cb_;
    gemm::GatherB op_;
};

// conv2d's patch matrix of NCHW images n0 .. n0 + g (rows (c, ki, kj), columns (image, oh, ow)).
Patches conv_patches(const ConvShape& s, const float* x, idx n0, idx g, bool transpose) {
    Patches::Taps taps{s.c_in, s.h * s.w, {}, {}};
    for (idx ki = 0; ki < s.k; ++ki)
        for (idx kj = 0; kj < s.k; ++kj) taps.di.push_back(i32(ki)), taps.dj.push_back(i32(kj));
    const idx image = s.c_in * s.h * s.w;
    const Patches::Pixels px{g, image, s.ho, s.wo, s.stride, -s.pad, -s.pad};
    return Patches(x + n0 * image, s.h, s.w, taps, px, transpose);
}

// z = W P for images n0 .. n0 + g of x into a (c_out x g*Ho*Wo) chunk, epilogue fused: conv2d's
// forward, and conv_transpose2d's data gradient (with x = its dz).
void conv_chunk(const ConvShape& s, const float* x, const float* w, idx n0, idx g, float* z, const float* bias, Act act,
                float slope) {
    const Patches patches = conv_patches(s, x, n0, g, false);
    gemm::Problem p;
    p.m = s.c_out, p.n = g * s.ho * s.wo, p.k = s.c_in * s.k * s.k;
    p.a = w, p.lda = p.k;
    p.gather_b = patches.operand();
    p.c = z, p.ldc = p.n;
    p.epi.bias_row = bias, p.epi.act = act, p.epi.slope = slope;
    gemm::sgemm(p);
}

// dw (c_out x kk) (+)= a (c_out x g*Ho*Wo) P^T over images n0 .. n0 + g of x.
void weight_grad_chunk(const ConvShape& s, const float* a, const float* x, idx n0, idx g, float* dw, bool accumulate) {
    const Patches patches = conv_patches(s, x, n0, g, true);
    gemm::Problem p;
    p.m = s.c_out, p.n = s.c_in * s.k * s.k, p.k = g * s.ho * s.wo;
    p.a = a, p.lda = p.k;
    p.gather_b = patches.operand();
    p.c = dw, p.ldc = p.n, p.accumulate = accumulate;
    gemm::sgemm(p);
}

// ---- the pixels on the broadcast side (gemm::DirectA; see the top of the file) ---------------
// Channels on a GEMM's N side from which it runs that way.
constexpr idx kDirectMinChannels = 16;
// The forward also needs this much depth (C_in * k * k): over a 1-channel image's 16 taps each tile
// stores as much as it computes, and the gathered path ran the DCGAN's 1 -> 64 conv 20% faster.
constexpr idx kDirectMinDepth = 64;

// A zero-padded copy of g images of c planes of h x w each (plane (img, ch) at src + img * img_stride
// + ch * ch_stride): planes of hp x wp with the image at row top, column left, into buf (g * c * hp
// * wp floats, NCHW).
void pad_images(const float* src, idx g, idx c, idx img_stride, idx ch_stride, idx h, idx w, idx top, idx left, idx hp,
                idx wp, float* buf) {
    const idx planes = g * c;
    const idx lo = std::clamp<idx>(left, 0, wp), hi = std::clamp<idx>(left + w, lo, wp);
#pragma omp parallel for num_threads(threads_for(planes * hp * wp)) schedule(static)
    for (idx pl = 0; pl < planes; ++pl) {
        const float* in = src + (pl / c) * img_stride + (pl % c) * ch_stride;
        float* dst = buf + pl * hp * wp;
        for (idx r = 0; r < hp; ++r) {
            float* row = dst + r * wp;
            const idx ir = r - top;
            if (ir < 0 || ir >= h) {
                std::fill(row, row + wp, 0.0f);
                continue;
            }
            std::fill(row, row + lo, 0.0f);
            std::memcpy(row + lo, in + ir * w + (lo - left), sizeof(float) * static_cast<std::size_t>(hi - lo));
            std::fill(row + hi, row + wp, 0.0f);
        }
    }
}

// C rows (pixel (img, q) of images n0 .. n0 + g, row stride ldc) -> NCHW planes of `channels`
// channels, in 16 x 16 blocks (register transposes) so that reads and writes both run along lines.
void rows_to_nchw(const float* c, idx ldc, idx n0, idx g, idx channels, idx spatial, float* y) {
    constexpr idx B = 16;
    const idx qb = (spatial + B - 1) / B, cb = (channels + B - 1) / B;
    const gemm::TransposeFn transpose = gemm::active_kernel().transpose;
#pragma omp parallel for num_threads(threads_for(g * channels * spatial)) schedule(static)
    for (idx t = 0; t < g * cb; ++t) {
        const idx img = t / cb, c0 = (t % cb) * B, c1 = std::min(channels, c0 + B);
        for (idx b = 0; b < qb; ++b) {
            const idx q0 = b * B, q1 = std::min(spatial, q0 + B);
            transpose(c + (img * spatial + q0) * ldc + c0, ldc, y + ((n0 + img) * channels + c0) * spatial + q0, spatial,
                      q1 - q0, c1 - c0);
        }
    }
}

// conv2d's input side zero-padded so that every tap of every output pixel lies inside it.
struct Padded {
    idx hp, wp;
    explicit Padded(const ConvShape& s)
        : hp(std::max(s.h + 2 * s.pad, (s.ho - 1) * s.stride + s.k)),
          wp(std::max(s.w + 2 * s.pad, (s.wo - 1) * s.stride + s.k)) {}
    idx image(const ConvShape& s) const { return s.c_in * hp * wp; }
    // pixel (img, oh, ow)'s first tap, and tap (ch, ki, kj)'s offset from it
    std::vector<std::int32_t> pixels(const ConvShape& s, idx g) const {
        std::vector<std::int32_t> off(static_cast<std::size_t>(g * s.ho * s.wo));
        const idx img_size = image(s);
        for (idx img = 0, q = 0; img < g; ++img)
            for (idx oh = 0; oh < s.ho; ++oh)
                for (idx ow = 0; ow < s.wo; ++ow, ++q) off[q] = i32(img * img_size + oh * s.stride * wp + ow * s.stride);
        return off;
    }
    std::vector<std::int32_t> taps(const ConvShape& s) const {
        std::vector<std::int32_t> off(static_cast<std::size_t>(s.c_in * s.k * s.k));
        for (idx ch = 0, q = 0; ch < s.c_in; ++ch)
            for (idx ki = 0; ki < s.k; ++ki)
                for (idx kj = 0; kj < s.k; ++kj, ++q) off[q] = i32(ch * hp * wp + ki * wp + kj);
        return off;
    }
    // g images of the input side (layout as for pad_images) into buf
    void fill(const ConvShape& s, const float* src, idx g, idx img_stride, idx ch_stride, float* buf) const {
        pad_images(src, g, s.c_in, img_stride, ch_stride, s.h, s.w, s.pad, s.pad, hp, wp, buf);
    }
};

// Images per chunk of the pixels-on-the-broadcast-side paths: as chunk_images, for the padded images.
idx chunk_images_padded(const ConvShape& s) { return chunk_images(s.n, s.ho * s.wo, Padded(s).image(s)); }

// conv2d's forward for g images with the pixels on the broadcast side:
//   C (g*Ho*Wo x C_out) = P^T (read in place from the padded images in xpad) W^T,
// bias and activation in the epilogue, then into y's NCHW planes (images n0 ..). ct: scratch.
void conv_direct(const ConvShape& s, const float* xpad, idx g, const float* w, const float* bias, Act act,
                 float slope, float* ct, idx n0, float* y) {
    const Padded pd(s);
    const idx spatial = s.ho * s.wo, kk = s.c_in * s.k * s.k;
    const std::vector<std::int32_t> roff = pd.pixels(s, g), koff = pd.taps(s);
    gemm::DirectA a;
    a.src = xpad, a.roff = roff.data(), a.koff = koff.data(), a.len = g * pd.image(s);
    gemm::Problem p;
    p.m = g * spatial, p.n = s.c_out, p.k = kk;
    p.direct_a = &a;
    p.b = w, p.ldb = kk, p.trans_b = true;
    p.c = ct, p.ldc = s.c_out;
    p.epi.bias_col = bias, p.epi.act = act, p.epi.slope = slope;
    gemm::sgemm(p);
    rows_to_nchw(ct, s.c_out, n0, g, s.c_out, spatial, y);
}

// The weight gradient with the taps on the broadcast side, for g images:
//   dwt (C_in*k*k x C_out) (+)= P (read in place from xpad) dz^T,
// dz in chunk layout (C_out x g*Ho*Wo).
void weight_grad_direct(const ConvShape& s, const float* xpad, idx g, const float* dz, float* dwt, bool accumulate) {
    const Padded pd(s);
    const idx spatial = s.ho * s.wo, kk = s.c_in * s.k * s.k;
    const std::vector<std::int32_t> roff = pd.taps(s), koff = pd.pixels(s, g);
    gemm::DirectA a;
    a.src = xpad, a.roff = roff.data(), a.koff = koff.data(), a.len = g * pd.image(s);
    gemm::Problem p;
    p.m = kk, p.n = s.c_out, p.k = g * spatial;
    p.direct_a = &a;
    p.b = dz, p.ldb = g * spatial, p.trans_b = true;
    p.c = dwt, p.ldc = s.c_out, p.accumulate = accumulate;
    gemm::sgemm(p);
}

// dw (C_out x C_in*k*k) (+)= dwt^T
void add_transposed(const float* dwt, idx rows, idx cols, float* dw, bool accumulate) {
#pragma omp parallel for num_threads(threads_for(rows * cols)) schedule(static)
    for (idx co = 0; co < cols; ++co)
        for (idx q = 0; q < rows; ++q) dw[co * rows + q] = accumulate ? dw[co * rows + q] + dwt[q * cols + co] : dwt[q * cols + co];
}

// dst[2i] = even[i], dst[2i + 1] = odd[i] for i < n (non-overlapping: vectorised as unpacks)
inline void interleave2(const float* __restrict even, const float* __restrict odd, idx n, float* __restrict dst) {
    for (idx i = 0; i < n; ++i) {
        dst[2 * i] = even[i];
        dst[2 * i + 1] = odd[i];
    }
}

idx floor_div(idx a, idx b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The adjoint of conv2d in its input (see conv_adjoint), phase by phase (see the top of the file):
//   out[img][c][ih][iw] = act(bias[c] + sum over co, ki, kj of w[co][c][ki][kj] z[img][co][oh][ow])
// with oh*stride = ih + pad - ki and ow*stride = iw + pad - kj, for images n0 .. n0 + g of out
// (NCHW). z holds just those g images: element (img, co, oh, ow) is
// z[img * img_stride + co * ch_stride + oh * wo + ow]. Each phase is one GEMM with the phase's
// pixels on the broadcast side, read in place from a zero-padded copy of z:
//   C_phase (pixels x C_in) = P_phase (pixels x (co, t, u)) W_phase ((co, t, u) x C_in).
void adjoint_by_phase(const ConvShape& s, const float* w, const float* z, idx img_stride, idx ch_stride, idx n0,
                      idx g, const float* bias, Act act, float slope, float* out) {
    const idx S = s.stride, plane = s.h * s.w;
    // Phase r along an axis (the kernel is square) holds the pixels i = i0 + S*a, a < n, with
    // i0 = (r - pad) mod S, reached by the taps r + S*t for t < nt, which read z at q0 + a - t.
    // Only phases with pixels are listed (at most min(S, size) of them), so the cost follows the
    // output and never the stride.
    struct Phase {
        idx r, i0, n, nt, q0;
    };
    auto phases = [&](idx size) {
        std::vector<Phase> list;
        for (idx i0 = 0; i0 < std::min(S, size); ++i0) {
            const idx r = (i0 + s.pad) % S;
            list.push_back({r, i0, (size - 1 - i0) / S + 1, r < s.k ? (s.k - 1 - r) / S + 1 : 0, (i0 + s.pad) / S});
        }
        return list;
    };
    const std::vector<Phase> rows = phases(s.h), cols_ph = phases(s.w);
    const idx nr = static_cast<idx>(rows.size()), nc = static_cast<idx>(cols_ph.size());
    // z padded so that every q0 + a - t of every phase lies inside: `top` rows above it, `left`
    // columns before it
    auto extent = [](const std::vector<Phase>& list, idx size) {
        idx before = 0, end = size;
        for (const Phase& ph : list) {
            if (ph.nt > 0) before = std::max(before, ph.nt - 1 - ph.q0);
            end = std::max(end, ph.q0 + ph.n);
        }
        return std::pair<idx, idx>{before, before + end};
    };
    const auto [top, hz] = extent(rows, s.ho);
    const auto [left, wz] = extent(cols_ph, s.wo);
    const idx zplane = hz * wz, zimage = s.c_out * zplane;
    if (g * zimage > INT32_MAX) {  // the padded chunk's offsets must fit in int32: halve the chunk
        if (g == 1) throw std::length_error("conv: one padded image holds more than 2^31 elements");
        const idx half = g / 2;
        adjoint_by_phase(s, w, z, img_stride, ch_stride, n0, half, bias, act, slope, out);
        adjoint_by_phase(s, w, z + half * img_stride, img_stride, ch_stride, n0 + half, g - half, bias, act, slope, out);
        return;
    }
    const auto zpad = scratch(g * zimage);
    pad_images(z, g, s.c_out, img_stride, ch_stride, s.ho, s.wo, top, left, hz, wz, zpad.get());
    // every phase's output block stays until all are computed, so that each output row is then
    // written in one go (a phase at a time, the stride-S stores would sweep the whole output S*S times)
    std::vector<idx> start(static_cast<std::size_t>(nr * nc) + 1, 0);
    for (idx ph = 0; ph < nr * nc; ++ph) start[ph + 1] = start[ph] + s.c_in * g * rows[ph / nc].n * cols_ph[ph % nc].n;
    const auto c = scratch(start[nr * nc]);
    std::vector<float> wp;
    std::vector<std::int32_t> roff, koff;
    for (idx pr = 0; pr < nr; ++pr)
        for (idx pc = 0; pc < nc; ++pc) {
            const Phase &ph = rows[pr], &pw = cols_ph[pc];
            const idx kp = s.c_out * ph.nt * pw.nt, npx = g * ph.n * pw.n;
            // W_phase (kp x c_in): row (co, t, u), column c = w[co][c][r_h + S*t][r_w + S*u]
            wp.resize(static_cast<std::size_t>(std::max<idx>(1, kp * s.c_in)));
            for (idx co = 0; co < s.c_out; ++co)
                for (idx t = 0; t < ph.nt; ++t)
                    for (idx u = 0; u < pw.nt; ++u)
                        for (idx ch = 0; ch < s.c_in; ++ch)
                            wp[((co * ph.nt + t) * pw.nt + u) * s.c_in + ch] =
                                w[((co * s.c_in + ch) * s.k + ph.r + S * t) * s.k + pw.r + S * u];
            // P_phase: row (img, a, b), column (co, t, u) = zpad[img][co][top + q0h + a - t][left + q0w + b - u]
            roff.resize(static_cast<std::size_t>(npx)), koff.resize(static_cast<std::size_t>(kp));
            for (idx img = 0, q = 0; img < g; ++img)
                for (idx a = 0; a < ph.n; ++a)
                    for (idx bb = 0; bb < pw.n; ++bb, ++q)
                        roff[q] = i32(img * zimage + (top + ph.q0 + a) * wz + left + pw.q0 + bb);
            for (idx co = 0, q = 0; co < s.c_out; ++co)
                for (idx t = 0; t < ph.nt; ++t)
                    for (idx u = 0; u < pw.nt; ++u, ++q) koff[q] = i32(co * zplane - t * wz - u);
            gemm::DirectA da;
            da.src = zpad.get(), da.roff = roff.data(), da.koff = koff.data(), da.len = g * zimage;
            gemm::Problem p;
            p.m = npx, p.n = s.c_in, p.k = kp;
            p.direct_a = &da;
            p.b = wp.data(), p.ldb = s.c_in;
            p.c = c.get() + start[pr * nc + pc], p.ldc = s.c_in;
            p.epi.bias_col = bias, p.epi.act = act, p.epi.slope = slope;
            gemm::sgemm(p);
        }
    // write the NCHW planes a block of 16 channels of an image at a time: each phase's pixels are
    // transposed (registers) into channel-major runs, then each output row takes its phases' runs,
    // interleaved (two phases of stride 2, the k4 s2 layers': a loop the compiler vectorises)
    constexpr idx B = 16;
    const idx cb = (s.c_in + B - 1) / B, run_len = rows[0].n * cols_ph[0].n;
    const bool pair = S == 2 && nc == 2 && cols_ph[0].i0 == 0 && cols_ph[1].i0 == 1 && cols_ph[0].n == cols_ph[1].n;
    const float* cp = c.get();
    const gemm::TransposeFn transpose = gemm::active_kernel().transpose;
#pragma omp parallel num_threads(threads_for(s.c_in * g * plane))
    {
        std::vector<float> runs(static_cast<std::size_t>(nc * B * run_len));
#pragma omp for schedule(static)
        for (idx t = 0; t < g * cb; ++t) {
            const idx img = t / cb, c0 = (t % cb) * B, nch = std::min(s.c_in, c0 + B) - c0;
            float* o = out + ((n0 + img) * s.c_in + c0) * plane;
            for (idx pr = 0; pr < nr; ++pr) {
                const idx na = rows[pr].n;
                for (idx pc = 0; pc < nc; ++pc) {
                    const idx npx = na * cols_ph[pc].n;
                    transpose(cp + start[pr * nc + pc] + img * npx * s.c_in + c0, s.c_in, runs.data() + pc * B * run_len,
                              run_len, npx, nch);
                }
                for (idx ch = 0; ch < nch; ++ch)
                    for (idx a = 0; a < na; ++a) {
                        float* row = o + ch * plane + (rows[pr].i0 + S * a) * s.w;
                        if (pair) {
                            const idx nb = cols_ph[0].n;
                            const float* even = runs.data() + ch * run_len + a * nb;
                            const float* odd = even + B * run_len;
                            interleave2(even, odd, nb, row);
                            continue;
                        }
                        for (idx pc = 0; pc < nc; ++pc) {
                            const idx nb = cols_ph[pc].n, i0 = cols_ph[pc].i0;
                            const float* run = runs.data() + (pc * B + ch) * run_len + a * nb;
                            for (idx bb = 0; bb < nb; ++bb) row[i0 + S * bb] = run[bb];
                        }
                    }
            }
        }
    }
}

// The same adjoint for images with few channels (C_in < kDirectMinChannels), where a phase GEMM
// would have too few columns to fill its vectors: cols (C_in*k*k x g*Ho*Wo) = W^T z on the
// core (z gathered if it is not in chunk layout), then each output plane sums the cols entries that
// land on it, (ki, kj) in order (col2im), and takes bias and activation.
void adjoint_unfolded(const ConvShape& s, const float* w, const float* z, idx img_stride, idx ch_stride, idx n0,
                      idx g, const float* bias, Act act, float slope, float* out) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo, ncols = g * spatial, plane = s.h * s.w;
    const auto cols = scratch(kk * ncols);
    gemm::Problem p;
    p.m = kk, p.n = ncols, p.k = s.c_out;
    p.a = w, p.lda = kk, p.trans_a = true;
    // z (c_out x g*spatial): read in place in chunk layout, else gathered (pixels in order: vector loads)
    std::optional<Patches> zview;
    if (ch_stride == ncols && img_stride == spatial) {
        p.b = z, p.ldb = ncols;
    } else {
        zview.emplace(z, s.ho, s.wo, Patches::Taps{s.c_out, ch_stride, {0}, {0}},
                      Patches::Pixels{g, img_stride, s.ho, s.wo, 1, 0, 0}, false);
        p.gather_b = zview->operand();
    }
    p.c = cols.get(), p.ldc = ncols;
    gemm::sgemm(p);
    FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(g * s.c_in * spatial * s.k * s.k)) schedule(static) firstprivate(ftz)
    for (idx pl = 0; pl < g * s.c_in; ++pl) {
        const idx img = pl / s.c_in, c = pl % s.c_in;
        float* o = out + ((n0 + img) * s.c_in + c) * plane;
        std::fill(o, o + plane, 0.0f);
        for (idx ki = 0; ki < s.k; ++ki)
            for (idx kj = 0; kj < s.k; ++kj) {
                // the output columns whose input column ow*stride - pad + kj lies in [0, w)
                const idx lo = std::min(s.wo, std::max<idx>(0, -floor_div(kj - s.pad, s.stride)));
                const idx hi = std::max(lo, std::min(s.wo, floor_div(s.w - 1 + s.pad - kj, s.stride) + 1));
                const float* src = cols.get() + ((c * s.k + ki) * s.k + kj) * ncols + img * spatial;
                for (idx oh = 0; oh < s.ho; ++oh) {
                    const idx ih = oh * s.stride - s.pad + ki;
                    if (ih < 0 || ih >= s.h) continue;
                    float* row = o + ih * s.w - s.pad + kj;  // row[ow * stride] for ow in [lo, hi)
                    for (idx ow = lo; ow < hi; ++ow) row[ow * s.stride] += src[oh * s.wo + ow];
                }
            }
        gemm::bias_act(o, plane, bias ? bias[c] : 0.0f, act, slope);
    }
}

// out (images n0 .. n0 + g, NCHW) = act(bias + conv2d's adjoint applied to z): conv2d's data
// gradient and conv_transpose2d's forward. Layout of z as for adjoint_by_phase.
void conv_adjoint(const ConvShape& s, const float* w, const float* z, idx img_stride, idx ch_stride, idx n0, idx g,
                  const float* bias, Act act, float slope, float* out) {
    if (s.c_in < kDirectMinChannels) adjoint_unfolded(s, w, z, img_stride, ch_stride, n0, g, bias, act, slope, out);
    else adjoint_by_phase(s, w, z, img_stride, ch_stride, n0, g, bias, act, slope, out);
}

// (rows x g*spatial) chunk matrix <-> NCHW images n0.. of `channels` channels.
void chunk_to_nchw(const float* z, idx n0, idx g, idx channels, idx spatial, float* y) {
#pragma omp parallel for num_threads(threads_for(channels * g * spatial)) schedule(static)
    for (idx ch = 0; ch < channels; ++ch)
        for (idx img = 0; img < g; ++img)
            std::memcpy(y + ((n0 + img) * channels + ch) * spatial, z + ch * g * spatial + img * spatial,
                        sizeof(float) * spatial);
}

void nchw_to_chunk(const float* y, idx n0, idx g, idx channels, idx spatial, float* z) {
#pragma omp parallel for num_threads(threads_for(channels * g * spatial)) schedule(static)
    for (idx ch = 0; ch < channels; ++ch)
        for (idx img = 0; img < g; ++img)
            std::memcpy(z + ch * g * spatial + img * spatial, y + ((n0 + img) * channels + ch) * spatial,
                        sizeof(float) * spatial);
}

// dz = dy * act'(y) for a chunk, in chunk layout, and db += its row sums (channels in parallel).
void act_grad_chunk(const float* dy, const float* y, idx n0, idx g, idx channels, idx spatial, Act act, float slope,
                    float* dz, float* db) {
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(channels * g * spatial)) schedule(static) firstprivate(ftz)
        for (idx ch = 0; ch < channels; ++ch) {
            double sum = 0.0;
            for (idx img = 0; img < g; ++img) {
                const idx off = ((n0 + img) * channels + ch) * spatial;
                float* o = dz + ch * g * spatial + img * spatial;
                for (idx q = 0; q < spatial; ++q) o[q] = act_backward(A, dy[off + q], y[off + q], slope);
                sum += lane_sum<float>(spatial, [o](idx q) { return o[q]; });
            }
            if (db) db[ch] += static_cast<float>(sum);
        }
    });
}

}  // namespace

bool conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act,
                    float slope) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo;
    if (!all_finite(w, s.c_out * kk)) return false;
    if (s.c_out >= kDirectMinChannels && kk >= kDirectMinDepth) {
        const Padded pd(s);
        const idx G = chunk_images_padded(s), image = s.c_in * s.h * s.w;
        const auto xpad = scratch(G * pd.image(s)), ct = scratch(G * spatial * s.c_out);
        for (idx n0 = 0; n0 < s.n; n0 += G) {
            const idx g = std::min(G, s.n - n0);
            pd.fill(s, x + n0 * image, g, image, s.h * s.w, xpad.get());
            conv_direct(s, xpad.get(), g, w, b, act, slope, ct.get(), n0, y);
        }
        return true;
    }
    const idx G = chunk_images(s.n, spatial, s.c_in * s.h * s.w);
    const auto z = scratch(s.c_out * G * spatial);
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0);
        conv_chunk(s, x, w, n0, g, z.get(), b, act, slope);
        chunk_to_nchw(z.get(), n0, g, s.c_out, spatial, y);
    }
    return true;
}

void conv2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y, float* dx,
                     float* dw, float* db, Act act, float slope, bool accumulate) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo, image = s.c_in * s.h * s.w;
    const bool direct = dw && s.c_out >= kDirectMinChannels;
    const Padded pd(s);
    const idx G = chunk_images(s.n, spatial, std::max({image, s.c_out * spatial, direct ? pd.image(s) : 0}));
    const auto dz = scratch(s.c_out * G * spatial);
    const auto xpad = scratch(direct ? G * pd.image(s) : 0), dwt = scratch(direct ? kk * s.c_out : 0);
    if (db && !accumulate) std::fill(db, db + s.c_out, 0.0f);
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0);
        act_grad_chunk(dy, y, n0, g, s.c_out, spatial, act, slope, dz.get(), db);
        if (direct) {
            pd.fill(s, x + n0 * image, g, image, s.h * s.w, xpad.get());
            weight_grad_direct(s, xpad.get(), g, dz.get(), dwt.get(), n0 > 0);
        } else if (dw) {
            weight_grad_chunk(s, dz.get(), x, n0, g, dw, accumulate || n0 > 0);
        }
        // dz's chunk layout: channel co of image img at co * g*spatial + img * spatial
        if (dx) conv_adjoint(s, w, dz.get(), spatial, g * spatial, n0, g, nullptr, Act::Identity, 0.0f, dx);
    }
    if (direct && s.n > 0) add_transposed(dwt.get(), kk, s.c_out, dw, accumulate);
    if (dw && s.n == 0 && !accumulate) std::fill(dw, dw + s.c_out * kk, 0.0f);
}

bool conv_transpose2d_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, Act act,
                              float slope) {
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo;
    if (!all_finite(w, s.c_out * kk)) return false;
    const idx G = chunk_images(s.n, spatial, std::max(s.c_in * s.h * s.w, s.c_out * spatial));
    for (idx n0 = 0; n0 < s.n; n0 += G)
        conv_adjoint(s, w, x + n0 * s.c_out * spatial, s.c_out * spatial, spatial, n0, std::min(G, s.n - n0), b, act,
                     slope, y);
    return true;
}

void conv_transpose2d_backward(const ConvShape& s, const float* dy, const float* x, const float* w, const float* y,
                               float* dx, float* dw, float* db, Act act, float slope, bool accumulate) {
    // dz = dy * act'(y) over the transposed conv's output (conv2d's input side); conv2d's forward on
    // dz gives dx, and dw accumulates x-chunk P(dz)^T.
    const idx kk = s.c_in * s.k * s.k, spatial = s.ho * s.wo, plane = s.h * s.w;
    const idx total = s.n * s.c_in * plane;
    const auto dz = scratch(total);
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        FlushDenormals ftz;
        float* z = dz.get();
#pragma omp parallel for num_threads(threads_for(total)) schedule(static) firstprivate(ftz)
        for (idx i = 0; i < total; ++i) z[i] = act_backward(A, dy[i], y[i], slope);
    });
    if (db) {
        const float* z = dz.get();
        FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(total)) schedule(static) firstprivate(ftz)
        for (idx c = 0; c < s.c_in; ++c) {
            double sum = 0.0;
            for (idx img = 0; img < s.n; ++img) {
                const float* p = z + (img * s.c_in + c) * plane;
                sum += lane_sum<float>(plane, [p](idx q) { return p[q]; });
            }
            db[c] = accumulate ? db[c] + static_cast<float>(sum) : static_cast<float>(sum);
        }
    }
    // with 16 or more channels on the conv2d's output side, both run with dz's pixels or taps on
    // the broadcast side (dx as conv2d_forward chooses), read in place from one zero-padded copy of dz
    const bool direct_dw = dw && s.c_out >= kDirectMinChannels;
    const bool direct_dx = dx && s.c_out >= kDirectMinChannels && kk >= kDirectMinDepth, direct = direct_dw || direct_dx;
    const Padded pd(s);
    const idx G = chunk_images(s.n, spatial, std::max({s.c_in * plane, s.c_out * spatial, direct ? pd.image(s) : 0}));
    const auto xz = scratch(s.c_out * G * spatial);
    const auto dzpad = scratch(direct ? G * pd.image(s) : 0), dwt = scratch(direct_dw ? kk * s.c_out : 0);
    for (idx n0 = 0; n0 < s.n; n0 += G) {
        const idx g = std::min(G, s.n - n0);
        if (direct) pd.fill(s, dz.get() + n0 * s.c_in * plane, g, s.c_in * plane, plane, dzpad.get());
        if (direct_dx) {
            conv_direct(s, dzpad.get(), g, w, nullptr, Act::Identity, 0.0f, xz.get(), n0, dx);
        } else if (dx) {
            conv_chunk(s, dz.get(), w, n0, g, xz.get(), nullptr, Act::Identity, 0.0f);
            chunk_to_nchw(xz.get(), n0, g, s.c_out, spatial, dx);
        }
        if (dw) {
            nchw_to_chunk(x, n0, g, s.c_out, spatial, xz.get());
            if (direct_dw) weight_grad_direct(s, dzpad.get(), g, xz.get(), dwt.get(), n0 > 0);
            else weight_grad_chunk(s, xz.get(), dz.get(), n0, g, dw, accumulate || n0 > 0);
        }
    }
    if (direct_dw && s.n > 0) add_transposed(dwt.get(), kk, s.c_out, dw, accumulate);
    if (dw && s.n == 0 && !accumulate) std::fill(dw, dw + s.c_out * kk, 0.0f);
}

// ---- batch norm ------------------------------------------------------------------------------
// (N, C) inputs sum a block of channels over kRows images at a time in float, then in double.
constexpr idx kRows = 16;
void batch_norm_stats(const float* x, idx n, idx c, idx inner, float* mean, float* var) {
    const double count = double(n) * double(inner);
    FlushDenormals ftz;
    if (inner == 1) {  // (N, C): rows are contiguous, so sweep them for a block of channels at a time
        constexpr idx kBlock = 64;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
        for (idx c0 = 0; c0 < c; c0 += kBlock) {
            const idx c1 = std::min(c, c0 + kBlock);
            double sum[kBlock] = {}, sq[kBlock] = {};
            for (idx i0 = 0; i0 < n; i0 += kRows) {  // float partial sums over kRows images
                float part[kBlock] = {};
                for (idx img = i0; img < std::min(n, i0 + kRows); ++img)
                    for (idx ch = c0; ch < c1; ++ch) part[ch - c0] += x[img * c + ch];
                for (idx ch = c0; ch < c1; ++ch) sum[ch - c0] += part[ch - c0];
            }
            for (idx ch = c0; ch < c1; ++ch) sum[ch - c0] /= count;
            for (idx img = 0; img < n; ++img)
                for (idx ch = c0; ch < c1; ++ch) {
                    const double d = x[img * c + ch] - sum[ch - c0];
                    sq[ch - c0] += d * d;
                }
            for (idx ch = c0; ch < c1; ++ch) {
                mean[ch] = static_cast<float>(sum[ch - c0]);
                var[ch] = static_cast<float>(sq[ch - c0] / count);
            }
        }
        return;
    }
    // (N, C, H, W): every plane's sum through the ISA's row kernels, the planes split between the
    // threads in memory order (a channel's planes lie C*H*W floats apart, a stride the prefetchers
    // do not follow); then each channel adds its planes in image order, so the bits do not depend
    // on the threads. The same for the centred squares.
    const gemm::BnRows& rows = gemm::active_kernel().bn;
    const idx planes = n * c;
    std::vector<double> part(static_cast<std::size_t>(planes)), mu(static_cast<std::size_t>(c));
#pragma omp parallel num_threads(threads_for(planes * inner)) firstprivate(ftz)
    {
#pragma omp for schedule(static)
        for (idx pl = 0; pl < planes; ++pl) part[pl] = rows.sum(x + pl * inner, inner);
#pragma omp single
        for (idx ch = 0; ch < c; ++ch) {
            double sum = 0.0;
            for (idx img = 0; img < n; ++img) sum += part[img * c + ch];
            mu[ch] = sum / count;
        }
#pragma omp for schedule(static)
        for (idx pl = 0; pl < planes; ++pl) part[pl] = rows.sqdev(x + pl * inner, inner, mu[pl % c]);
    }
    for (idx ch = 0; ch < c; ++ch) {
        double sq = 0.0;
        for (idx img = 0; img < n; ++img) sq += part[img * c + ch];
        mean[ch] = static_cast<float>(mu[ch]);
        var[ch] = static_cast<float>(sq / count);
    }
}

void batch_norm_apply(const float* x, idx n, idx c, idx inner, const float* mean, const float* invstd,
                      const float* gamma, const float* beta, float* y, Act act, float slope) {
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        if (inner == 1) {  // (N, C): rows of channels, vectorised across channels
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
            for (idx img = 0; img < n; ++img) {
                const float* p = x + img * c;
                float* o = y + img * c;
                for (idx ch = 0; ch < c; ++ch)
                    o[ch] = act_forward(A, ((p[ch] - mean[ch]) * invstd[ch]) * gamma[ch] + beta[ch], slope);
            }
        } else {
            const gemm::BnRows& rows = gemm::active_kernel().bn;
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c * inner)) schedule(static) firstprivate(ftz)
            for (idx row = 0; row < n * c; ++row)
                rows.normalize_act(x + row * inner, y + row * inner, inner, mean[row % c], invstd[row % c], gamma[row % c],
                                   beta[row % c], A, slope);
        }
    });
}

void batch_norm_backward(const float* dy, const float* x, const float* y, idx n, idx c, idx inner,
                         const float* gamma, const float* mean, const float* invstd, bool training,
                         float* dx, float* dgamma, float* dbeta, Act act, float slope) {
    const float count = static_cast<float>(n * inner);
    with_act(act, [&](auto tag) {
        constexpr Act A = decltype(tag)::value;
        if (inner == 1) {
            // (N, C): sweep rows (contiguous), accumulating per channel in double; fixed order
            // (channel blocks in parallel; each channel's sum in image order, whatever the thread count)
            std::vector<double> sb(static_cast<std::size_t>(c), 0.0), sg(static_cast<std::size_t>(c), 0.0);
            constexpr idx kBlock = 64;
            {
                FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
                for (idx c0 = 0; c0 < c; c0 += kBlock) {
                    const idx c1 = std::min(c, c0 + kBlock);
                    for (idx i0 = 0; i0 < n; i0 += kRows) {  // float partial sums over kRows images
                        float pb[kBlock] = {}, pg[kBlock] = {};
                        for (idx img = i0; img < std::min(n, i0 + kRows); ++img) {
                            const idx off = img * c;
                            for (idx ch = c0; ch < c1; ++ch) {
                                const float g = act_backward(A, dy[off + ch], y[off + ch], slope);
                                pb[ch - c0] += g;
                                pg[ch - c0] += g * ((x[off + ch] - mean[ch]) * invstd[ch]);  // g * xhat
                            }
                        }
                        for (idx ch = c0; ch < c1; ++ch) sb[ch] += pb[ch - c0], sg[ch] += pg[ch - c0];
                    }
                }
            }
            // per-channel terms of dx, computed once (not per row)
            std::vector<float> scale(static_cast<std::size_t>(c)), mbv(scale.size()), mgv(scale.size());
            for (idx ch = 0; ch < c; ++ch) {
                dbeta[ch] = static_cast<float>(sb[ch]);
                dgamma[ch] = static_cast<float>(sg[ch]);
                scale[ch] = gamma[ch] * invstd[ch];
                mbv[ch] = training ? dbeta[ch] / count : 0.0f;
                mgv[ch] = training ? dgamma[ch] / count : 0.0f;
            }
            const float *sc = scale.data(), *mb = mbv.data(), *mg = mgv.data();
            FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(n * c)) schedule(static) firstprivate(ftz)
            for (idx img = 0; img < n; ++img) {
                const idx off = img * c;
                for (idx ch = 0; ch < c; ++ch) {
                    const float g = act_backward(A, dy[off + ch], y[off + ch], slope);
                    const float xhat = (x[off + ch] - mean[ch]) * invstd[ch];
                    dx[off + ch] = sc[ch] * (g - mb[ch] - xhat * mg[ch]);
                }
            }
            return;
        }
        // (N, C, H, W): two sweeps over the planes in memory order through the ISA's row kernels, as
        // in batch_norm_stats; each channel adds its planes' sums in image order between them
        const gemm::BnRows& rows = gemm::active_kernel().bn;
        const idx planes = n * c;
        std::vector<double> part_b(static_cast<std::size_t>(planes)), part_g(part_b.size());
        std::vector<gemm::BnDxTerms> terms(static_cast<std::size_t>(c));
        FlushDenormals ftz;
#pragma omp parallel num_threads(threads_for(planes * inner)) firstprivate(ftz)
        {
#pragma omp for schedule(static)
            for (idx pl = 0; pl < planes; ++pl) {
                const idx off = pl * inner;
                const auto [b_sum, g_sum] =
                    rows.grad_sums(dy + off, y + off, x + off, inner, mean[pl % c], invstd[pl % c], A, slope);
                part_b[pl] = b_sum;
                part_g[pl] = g_sum;
            }
#pragma omp single
            for (idx ch = 0; ch < c; ++ch) {
                double sb = 0.0, sg = 0.0;
                for (idx img = 0; img < n; ++img) sb += part_b[img * c + ch], sg += part_g[img * c + ch];
                dbeta[ch] = static_cast<float>(sb);
                dgamma[ch] = static_cast<float>(sg);
                gemm::BnDxTerms& t = terms[ch];
                t = {mean[ch], invstd[ch], gamma[ch] * invstd[ch], 0.0f, 0.0f};
                if (training) t.mean_b = dbeta[ch] / count, t.mean_g = dgamma[ch] / count;
            }
#pragma omp for schedule(static)
            for (idx pl = 0; pl < planes; ++pl) {
                const idx off = pl * inner;
                rows.grad_dx(dy + off, y + off, x + off, dx + off, inner, terms[pl % c], A, slope);
            }
        }
    });
}

// ---- 2x upsampling -----------------------------------------------------------------------------
namespace {
// One axis of bilinear 2x upsampling: out[2k] = 3/4 in[k] + 1/4 in[k-1], out[2k+1] = 3/4 in[k] +
// 1/4 in[k+1] (clamped), over n elements `stride` apart; and its adjoint.
void bilinear_axis(const float* in, idx n, idx in_stride, float* out, idx out_stride) {
    for (idx k = 0; k < n; ++k) {
        const float c = in[k * in_stride], p = in[std::max<idx>(k - 1, 0) * in_stride],
                    q = in[std::min<idx>(k + 1, n - 1) * in_stride];
        out[2 * k * out_stride] = 0.75f * c + 0.25f * p;
        out[(2 * k + 1) * out_stride] = 0.75f * c + 0.25f * q;
    }
}

void bilinear_axis_adjoint(const float* g, idx n, idx g_stride, float* out, idx out_stride) {
    for (idx k = 0; k < n; ++k) out[k * out_stride] = 0.75f * (g[2 * k * g_stride] + g[(2 * k + 1) * g_stride]);
    for (idx k = 0; k < n; ++k) out[std::max<idx>(k - 1, 0) * out_stride] += 0.25f * g[2 * k * g_stride];
    for (idx k = 0; k < n; ++k) out[std::min<idx>(k + 1, n - 1) * out_stride] += 0.25f * g[(2 * k + 1) * g_stride];
}
}  // namespace

void upsample2x_forward(const float* x, idx planes, idx h, idx w, bool bilinear, float* y) {
    FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(planes * h * w * 4)) schedule(static) firstprivate(ftz)
    for (idx pl = 0; pl < planes; ++pl) {
        const float* src = x + pl * h * w;
        float* dst = y + pl * 4 * h * w;
        if (!bilinear) {
            for (idx i = 0; i < 2 * h; ++i)
                for (idx j = 0; j < 2 * w; ++j) dst[i * 2 * w + j] = src[(i / 2) * w + j / 2];
            continue;
        }
        std::vector<float> rows(static_cast<std::size_t>(h * 2 * w));  // along W first, as the reference
        for (idx i = 0; i < h; ++i) bilinear_axis(src + i * w, w, 1, rows.data() + i * 2 * w, 1);
        for (idx j = 0; j < 2 * w; ++j) bilinear_axis(rows.data() + j, h, 2 * w, dst + j, 2 * w);
    }
}

void upsample2x_backward(const float* dy, idx planes, idx h, idx w, bool bilinear, float* dx) {
    FlushDenormals ftz;
#pragma omp parallel for num_threads(threads_for(planes * h * w * 4)) schedule(static) firstprivate(ftz)
    for (idx pl = 0; pl < planes; ++pl) {
        const float* g = dy + pl * 4 * h * w;
        float* dst = dx + pl * h * w;
        if (!bilinear) {
            for (idx i = 0; i < h; ++i)
                for (idx j = 0; j < w; ++j) {
                    const float* p = g + 2 * i * 2 * w + 2 * j;
                    dst[i * w + j] = (p[0] + p[2 * w]) + (p[1] + p[2 * w + 1]);
                }
            continue;
        }
        std::vector<float> cols(static_cast<std::size_t>(2 * h * w));  // the W adjoint first, as the reference
        for (idx i = 0; i < 2 * h; ++i) bilinear_axis_adjoint(g + i * 2 * w, w, 1, cols.data() + i * w, 1);
        for (idx j = 0; j < w; ++j) bilinear_axis_adjoint(cols.data() + j, h, w, dst + j, w);
    }
}

// ---- group norm (instance norm, layer norm, AdaIN) ------------------------------------------
// A group of one example is c / groups contiguous planes, so its sums are one pass of the ISA's
// row kernels over a contiguous block; the affine and the gradient sweep run per plane.
void group_norm_forward(const float* x, idx n, idx c, idx inner, idx groups, const float* gamma, const float* beta,
                        bool per_example, float eps, float* y, float* mean, float* invstd, Act act, float slope) {
    const gemm::BnRows& rows = gemm::active_kernel().bn;
    const idx cpg = c / groups, len = cpg * inner, blocks = n * groups;
    FlushDenormals ftz;
#pragma omp parallel num_threads(threads_for(n * c * inner)) firstprivate(ftz)
    {
#pragma omp for schedule(static)
        for (idx b = 0; b < blocks; ++b) {
            const float* p = x + b * len;
            const double mu = rows.sum(p, len) / double(len);
            const double var = rows.sqdev(p, len, mu) / double(len);
            mean[b] = static_cast<float>(mu);
            invstd[b] = static_cast<float>(1.0 / std::sqrt(var + double(eps)));
        }
#pragma omp for schedule(static)
        for (idx pl = 0; pl < n * c; ++pl) {
            const idx img = pl / c, ch = pl % c, b = img * groups + ch / cpg;
            const idx a = per_example ? pl : ch;
            rows.normalize_act(x + pl * inner, y + pl * inner, inner, mean[b], invstd[b], gamma[a], beta[a], act, slope);
        }
    }
}

void group_norm_backward(const float* dy, const float* x, const float* y, idx n, idx c, idx inner, idx groups,
                         const float* gamma, bool per_example, const float* mean, const float* invstd, float* dx,
                         float* dgamma, float* dbeta, Act act, float slope) {
    const gemm::BnRows& rows = gemm::active_kernel().bn;
    const idx cpg = c / groups, planes = n * c;
    const double count = double(cpg) * double(inner);
    // per plane: sum of g = dy * act'(y) and of g * xhat
    std::vector<double> sb(static_cast<std::size_t>(planes)), sg(sb.size());
    FlushDenormals ftz;
#pragma omp parallel num_threads(threads_for(planes * inner)) firstprivate(ftz)
    {
#pragma omp for schedule(static)
        for (idx pl = 0; pl < planes; ++pl) {
            const idx b = (pl / c) * groups + (pl % c) / cpg;
            const auto [s_b, s_g] = rows.grad_sums(dy + pl * inner, y + pl * inner, x + pl * inner, inner, mean[b],
                                                   invstd[b], act, slope);
            sb[pl] = s_b;
            sg[pl] = s_g;  // the sum of g * xhat
        }
#pragma omp single
        {
            // dgamma, dbeta: per channel in image order (per example for AdaIN)
            if (per_example) {
                for (idx pl = 0; pl < planes; ++pl) dgamma[pl] = float(sg[pl]), dbeta[pl] = float(sb[pl]);
            } else {
                for (idx ch = 0; ch < c; ++ch) {
                    double g_sum = 0.0, b_sum = 0.0;
                    for (idx img = 0; img < n; ++img) g_sum += sg[img * c + ch], b_sum += sb[img * c + ch];
                    dgamma[ch] = float(g_sum), dbeta[ch] = float(b_sum);
                }
            }
        }
#pragma omp for schedule(static)
        for (idx b = 0; b < n * groups; ++b) {
            // dx = invstd * (gamma g - mean(gamma g) - xhat * mean(gamma g xhat)) over the group
            const idx img = b / groups, c0 = (b % groups) * cpg;
            double mb = 0.0, mg = 0.0;
            for (idx ch = c0; ch < c0 + cpg; ++ch) {
                const double gm = gamma[per_example ? img * c + ch : ch];
                mb += gm * sb[img * c + ch];
                mg += gm * sg[img * c + ch];
            }
            mb /= count, mg /= count;
            for (idx ch = c0; ch < c0 + cpg; ++ch) {
                const idx pl = img * c + ch, off = pl * inner;
                const float gm = gamma[per_example ? pl : ch];
                if (gm != 0.0f) {  // the batch-norm row kernel: dx = scale * (g - mean_b - xhat * mean_g)
                    const gemm::BnDxTerms t{mean[b], invstd[b], gm * invstd[b], float(mb / gm), float(mg / gm)};
                    rows.grad_dx(dy + off, y + off, x + off, dx + off, inner, t, act, slope);
                } else {  // a zero scale passes no gradient of its own: only the group's mean terms
                    for (idx i = 0; i < inner; ++i) {
                        const double xhat = (double(x[off + i]) - mean[b]) * invstd[b];
                        dx[off + i] = static_cast<float>(-double(invstd[b]) * (mb + xhat * mg));
                    }
                }
            }
        }
    }
}

}  // namespace pygan
