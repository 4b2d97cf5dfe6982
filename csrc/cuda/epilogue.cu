// Fused epilogues around cuBLAS GEMMs (dense) and im2col GEMMs (conv).
//
// Layout: `total` elements in C order, channel of element i = (i / inner) % channels; dense
// (N, M) uses inner = 1, channels = M; NCHW uses inner = H*W, channels = C.
#include "activation.cuh"

extern "C" {

// y = act(z + b[channel]) in place. Grid-stride loop; launch: block 256, grid ceil(total/256) capped.
// has_bias == 0: no bias (bias may then point anywhere; it is not read).
__global__ void bias_act(float* z, const float* bias, int has_bias, long long total, long long inner, int channels,
                         int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        float v = z[i];
        if (has_bias) v += bias[(i / inner) % channels];
        z[i] = pg_act(v, act, slope);
    }
}

// dz = dy * act'(y) (written to dz) and db[c] = sum of dz over channel c, in one sweep.
// Launch: one block per channel (grid = channels), block 256 threads, 256 floats of shared memory.
// Element j of channel c: n = j / inner, s = j % inner, index = (n * channels + c) * inner + s.
__global__ void act_grad_bias_grad(const float* dy, const float* y, float* dz, float* db, long long count,
                                   long long inner, int channels, int act, float slope) {
    __shared__ float shared[256];
    const int c = blockIdx.x;
    float acc = 0.f;
    for (long long j = threadIdx.x; j < count; j += blockDim.x) {
        const long long idx = ((j / inner) * channels + c) * inner + (j % inner);
        const float g = pg_act_grad(dy[idx], y[idx], act, slope);
        dz[idx] = g;
        acc += g;
    }
    const float total = pg_block_sum(acc, shared);
    if (threadIdx.x == 0) db[c] = total;
}

// The same for a dense layer's (rows, channels) matrix (inner == 1), read along rows: block b takes
// columns 32b .. 32b + 31; thread t reads column 32b + t % 32 of rows t / 32, t / 32 + 8, ..., so each
// warp reads 32 consecutive floats of a row (one-block-per-channel would read with a stride of
// `channels`). The 8 partial sums of a column are then added in a fixed order. Launch: grid
// ceil(channels / 32), block 256.
__global__ void act_grad_bias_grad_rows(const float* dy, const float* y, float* dz, float* db, long long rows,
                                        int channels, int act, float slope) {
    __shared__ float part[8][32];
    const int lane = threadIdx.x % 32, group = threadIdx.x / 32;
    const long long c = (long long)blockIdx.x * 32 + lane;
    float acc = 0.f;
    if (c < channels) {
        for (long long r = group; r < rows; r += 8) {
            const long long idx = r * channels + c;
            const float g = pg_act_grad(dy[idx], y[idx], act, slope);
            dz[idx] = g;
            acc += g;
        }
    }
    part[group][lane] = acc;
    __syncthreads();
    if (group == 0 && c < channels) {
        float total = 0.f;
        for (int k = 0; k < 8; ++k) total += part[k][lane];
        db[c] = total;
    }
}

// Standalone activation forward/backward. Grid-stride, block 256.
__global__ void act_forward(const float* x, float* y, long long total, int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = pg_act(x[i], act, slope);
}

__global__ void act_backward(const float* dy, const float* y, float* dx, long long total, int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x)
        dx[i] = pg_act_grad(dy[i], y[i], act, slope);
}

}  // extern "C"
