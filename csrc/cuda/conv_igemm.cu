// Implicit-GEMM convolutions for NCHW float32 (square kernel, stride, zero padding): the GEMM's
// image operand is gathered from the image inside the tile loads, so no im2col buffer exists and
// the output is written in NCHW directly. Every conv and transposed-conv product is one of two
// kernels:
//
// conv_igemm: out[img, row, oy, ox] = act(bias[row] + sum_r A[row, r] * B[r, (img, oy, ox)])
//   r = (c, ki, kj) over src's channels and the kernel window; A[row, r] = a[row * a_row + c * a_chan
//   + ki * k + kj] (so a weight tensor serves as W or W^T without a copy); B gathers src:
//   gather 0 (im2col): src[img, c, oy * stride - pad + ki, ox * stride - pad + kj];
//   gather 1 (the adjoint, col2im): src[img, c, (oy + pad - ki) / stride, (ox + pad - kj) / stride]
//   where the division is exact and lands inside src, else 0 (computed one stride phase at a time,
//   over the taps that land on src's pixels only: see PgPhase).
//   conv2d forward: a = W (Cout, Cin k k), gather 0 over x; conv2d dx: a = W^T, gather 1 over dz;
//   conv_transpose2d forward: a = W^T, gather 1 over x; conv_transpose2d dx: a = W, gather 0 over dz.
//
// conv_wgrad_igemm: part[split, row, r] = sum over columns j of this split of D[row, j] * B[r, j],
//   D an NCHW tensor (n, m, out_h, out_w) with j = (img, oy, ox) and B the gather-0 operand of src;
//   the host sums the splits (split-K keeps the GPU busy when m x r is small and the batch large).
//   conv2d dw: D = dz, src = x; conv_transpose2d dw: D = x, src = dz.
//
// Launch: block 256, grid <= 65535; the blocks loop over tiles (64 rows x 64 columns of the
// output, 16 reduction entries per stage through shared memory; each thread 4 x 4 outputs at
// rows ty + 16 i and columns tx + 16 j, so a warp's shared reads are broadcasts or consecutive).
#include "activation.cuh"

constexpr int PG_TM = 64;  // output rows per tile
constexpr int PG_TN = 64;  // output columns per tile
constexpr int PG_TK = 16;  // reduction entries per stage

// Output pixels that share one set of taps. Gather 0: one phase, every pixel, taps (ki, kj) over the
// whole window. Gather 1 (the adjoint) at stride s: s x s phases, pixel (oy, ox) in phase (py, px) =
// ((oy + pad) % s, (ox + pad) % s), whose taps are ki = py + s a, kj = px + s b (the others land
// between src's pixels): a stride-2 adjoint multiplies a quarter of the window, not all of it.
struct PgPhase {
    int py, px;            // the phase's first taps
    int first_y, first_x;  // its first output row and column
    int n_y, n_x;          // its output rows and columns
    int step;              // output pitch and tap pitch: 1 (gather 0) or the stride (gather 1)
    int cy, cx;            // its taps per axis
    long long cols;        // n * n_y * n_x
};

__device__ __forceinline__ int pg_taps(int first, int k, int step) { return first < k ? (k - first + step - 1) / step : 0; }

__device__ __forceinline__ PgPhase pg_phase(int p, int gather, int n, int out_h, int out_w, int k, int stride, int pad) {
    PgPhase ph;
    if (gather == 0) {
        ph.py = ph.px = ph.first_y = ph.first_x = 0;
        ph.n_y = out_h, ph.n_x = out_w, ph.step = 1, ph.cy = ph.cx = k;
    } else {
        ph.py = p / stride, ph.px = p % stride, ph.step = stride;
        ph.first_y = ((ph.py - pad) % stride + stride) % stride;
        ph.first_x = ((ph.px - pad) % stride + stride) % stride;
        ph.n_y = ph.first_y < out_h ? (out_h - ph.first_y + stride - 1) / stride : 0;
        ph.n_x = ph.first_x < out_w ? (out_w - ph.first_x + stride - 1) / stride : 0;
        ph.cy = pg_taps(ph.py, k, stride), ph.cx = pg_taps(ph.px, k, stride);
    }
    ph.cols = (long long)n * ph.n_y * ph.n_x;
    return ph;
}

// One stage of the tile product: this thread's 4 x 4 outputs (rows ty + 16 i, columns tx + 16 j)
// accumulate the stage's PG_TK rank-1 updates from the shared tiles.
__device__ __forceinline__ void pg_tile_fma(const float (*a)[PG_TM + 1], const float (*b)[PG_TN + 1], float (*acc)[4]) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int kl = 0; kl < PG_TK; ++kl) {
        float av[4], bv[4];
        for (int i = 0; i < 4; ++i) av[i] = a[kl][ty + 16 * i];
        for (int j = 0; j < 4; ++j) bv[j] = b[kl][tx + 16 * j];
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
}

extern "C" {

__global__ void conv_igemm(const float* a, const float* src, const float* bias, float* out, int m, int n,
                           int src_c, int src_h, int src_w, int out_h, int out_w, int k, int stride, int pad,
                           int a_row, int a_chan, int gather, int has_bias, int act, float slope) {
    __shared__ float as[PG_TK][PG_TM + 1];
    __shared__ float bs[PG_TK][PG_TN + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int phases = gather ? stride * stride : 1;
    const long long tiles_m = (m + PG_TM - 1) / PG_TM, spatial = (long long)out_h * out_w;
    long long tiles = 0;
    for (int p = 0; p < phases; ++p) tiles += tiles_m * ((pg_phase(p, gather, n, out_h, out_w, k, stride, pad).cols + PG_TN - 1) / PG_TN);
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        long long t = tile;  // the tile's phase, then its place in the phase
        int p = 0;
        PgPhase ph = pg_phase(0, gather, n, out_h, out_w, k, stride, pad);
        for (;;) {
            const long long in_phase = tiles_m * ((ph.cols + PG_TN - 1) / PG_TN);
            if (t < in_phase) break;
            t -= in_phase;
            ph = pg_phase(++p, gather, n, out_h, out_w, k, stride, pad);
        }
        const long long tiles_n = (ph.cols + PG_TN - 1) / PG_TN;
        const int m0 = (int)(t / tiles_n) * PG_TM;
        const long long n0 = (t % tiles_n) * PG_TN;
        const int taps = ph.cy * ph.cx, r_total = src_c * taps, per_img = ph.n_y * ph.n_x;
        // this thread's column of the B tile (fixed over the reduction): decoded once
        const long long my_col = n0 + tid % PG_TN;
        const bool col_ok = my_col < ph.cols;
        const int img = col_ok ? (int)(my_col / per_img) : 0, q = col_ok ? (int)(my_col % per_img) : 0;
        const int oy = ph.first_y + ph.step * (q / ph.n_x), ox = ph.first_x + ph.step * (q % ph.n_x);
        // gather 0: src row oy * stride - pad + ki; gather 1: (oy + pad - py) / stride - a, exact
        const int base_y = gather ? (oy + pad - ph.py) / stride : oy * stride - pad;
        const int base_x = gather ? (ox + pad - ph.px) / stride : ox * stride - pad;
        const int sign = gather ? -1 : 1;
        float acc[4][4] = {};
        for (int r0 = 0; r0 < r_total; r0 += PG_TK) {
            for (int e = tid; e < PG_TK * PG_TM; e += 256) {  // A: consecutive threads along r
                const int kl = e % PG_TK, row = m0 + e / PG_TK, r = r0 + kl;
                float v = 0.f;
                if (row < m && r < r_total) {
                    const int tap = r % taps, ki = ph.py + ph.step * (tap / ph.cx), kj = ph.px + ph.step * (tap % ph.cx);
                    v = a[(long long)row * a_row + (long long)(r / taps) * a_chan + ki * k + kj];
                }
                as[kl][e / PG_TK] = v;
            }
            for (int kl = tid / PG_TN; kl < PG_TK; kl += 256 / PG_TN) {  // B: consecutive threads along columns
                const int r = r0 + kl;
                float v = 0.f;
                if (col_ok && r < r_total) {
                    const int tap = r % taps;
                    const int iy = base_y + sign * (tap / ph.cx), ix = base_x + sign * (tap % ph.cx);
                    if (iy >= 0 && iy < src_h && ix >= 0 && ix < src_w)
                        v = src[(((long long)img * src_c + r / taps) * src_h + iy) * src_w + ix];
                }
                bs[kl][tid % PG_TN] = v;
            }
            __syncthreads();
            pg_tile_fma(as, bs, acc);
            __syncthreads();
        }
        for (int j = 0; j < 4; ++j) {
            const long long col = n0 + tx + 16 * j;
            if (col >= ph.cols) continue;
            const int cq = (int)(col % per_img);
            const long long pixel = (long long)(ph.first_y + ph.step * (cq / ph.n_x)) * out_w + ph.first_x + ph.step * (cq % ph.n_x);
            const long long base = (col / per_img) * m * spatial + pixel;
            for (int i = 0; i < 4; ++i) {
                const int row = m0 + ty + 16 * i;
                if (row >= m) continue;
                const float v = acc[i][j] + (has_bias ? bias[row] : 0.f);
                out[base + (long long)row * spatial] = pg_act(v, act, slope);
            }
        }
    }
}

__global__ void conv_wgrad_igemm(const float* d, const float* src, float* part, int m, int n, int src_c, int src_h,
                                 int src_w, int out_h, int out_w, int k, int stride, int pad, int splits) {
    __shared__ float ds[PG_TK][PG_TM + 1];
    __shared__ float bs[PG_TK][PG_TN + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int kk2 = k * k, r_total = src_c * kk2, spatial = out_h * out_w;
    const long long cols = (long long)n * spatial;
    const long long chunk = (cols + splits - 1) / splits;  // columns per split
    const long long tiles_r = (r_total + PG_TN - 1) / PG_TN, tiles_m = (m + PG_TM - 1) / PG_TM;
    const long long tiles = tiles_r * tiles_m * splits;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int split = (int)(tile / (tiles_r * tiles_m));
        const int m0 = (int)((tile / tiles_r) % tiles_m) * PG_TM, rt0 = (int)(tile % tiles_r) * PG_TN;
        const long long j_begin = split * chunk, j_end = j_begin + chunk < cols ? j_begin + chunk : cols;
        float acc[4][4] = {};
        for (long long j0 = j_begin; j0 < j_end; j0 += PG_TK) {
            // both tiles: consecutive threads along the columns j, decoded per entry
            const int jl = tid % PG_TK;
            const long long j = j0 + jl;
            const bool j_ok = j < j_end;
            const int img = j_ok ? (int)(j / spatial) : 0, s = j_ok ? (int)(j % spatial) : 0;
            const int oy = s / out_w, ox = s % out_w;
            for (int e = tid; e < PG_TK * PG_TM; e += 256) {
                const int row = m0 + e / PG_TK;
                ds[jl][e / PG_TK] = (j_ok && row < m) ? d[((long long)img * m + row) * spatial + s] : 0.f;
            }
            for (int e = tid; e < PG_TK * PG_TN; e += 256) {
                const int r = rt0 + e / PG_TK;
                float v = 0.f;
                if (j_ok && r < r_total) {
                    const int rem = r % kk2, iy = oy * stride - pad + rem / k, ix = ox * stride - pad + rem % k;
                    if (iy >= 0 && iy < src_h && ix >= 0 && ix < src_w)
                        v = src[(((long long)img * src_c + r / kk2) * src_h + iy) * src_w + ix];
                }
                bs[jl][e / PG_TK] = v;
            }
            __syncthreads();
            pg_tile_fma(ds, bs, acc);
            __syncthreads();
        }
        for (int i = 0; i < 4; ++i) {
            const int row = m0 + ty + 16 * i;
            if (row >= m) continue;
            for (int q = 0; q < 4; ++q) {
                const int r = rt0 + tx + 16 * q;
                if (r < r_total) part[((long long)split * m + row) * r_total + r] = acc[i][q];
            }
        }
    }
}

}  // extern "C"
