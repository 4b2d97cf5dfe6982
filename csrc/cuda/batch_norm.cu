// Batch norm + activation for (N, C) and (N, C, H, W), float32, one block per channel.
// Element j of channel c (count = N * inner of them): index ((j / inner) * C + c) * inner + j % inner.
#include "activation.cuh"

extern "C" {

// Two-pass statistics per channel: mean, then the mean of squared deviations (stable).
// Launch: grid = C, block 256, shared 256 floats. Writes mean[c], var[c] (biased).
__global__ void bn_stats(const float* x, float* mean, float* var, long long count, long long inner, int channels) {
    __shared__ float shared[256];
    const int c = blockIdx.x;
    float acc = 0.f;
    for (long long j = threadIdx.x; j < count; j += blockDim.x)
        acc += x[((j / inner) * channels + c) * inner + (j % inner)];
    const float m = pg_block_sum(acc, shared) / (float)count;
    __syncthreads();
    float acc2 = 0.f;
    for (long long j = threadIdx.x; j < count; j += blockDim.x) {
        const float d = x[((j / inner) * channels + c) * inner + (j % inner)] - m;
        acc2 += d * d;
    }
    const float v = pg_block_sum(acc2, shared) / (float)count;
    if (threadIdx.x == 0) {
        mean[c] = m;
        var[c] = v;
    }
}

// y = act(((x - mean) * invstd) * gamma + beta), in the reference's order (xhat first: nothing
// overflows where the reference does not). Grid-stride over all elements, block 256.
__global__ void bn_forward(const float* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, float* y, long long total, long long inner, int channels,
                           int act, float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)((i / inner) % channels);
        y[i] = pg_act(((x[i] - mean[c]) * invstd[c]) * gamma[c] + beta[c], act, slope);
    }
}

// Per channel: dz = dy * act'(y) (stored), dbeta = sum dz, dgamma = sum dz * xhat.
// Launch: grid = C, block 256, shared 256 floats.
__global__ void bn_backward_reduce(const float* dy, const float* y, const float* x, const float* mean,
                                   const float* invstd, float* dz, float* dgamma, float* dbeta, long long count,
                                   long long inner, int channels, int act, float slope) {
    __shared__ float shared[256];
    const int c = blockIdx.x;
    float sb = 0.f, sg = 0.f;
    for (long long j = threadIdx.x; j < count; j += blockDim.x) {
        const long long idx = ((j / inner) * channels + c) * inner + (j % inner);
        const float g = pg_act_grad(dy[idx], y[idx], act, slope);
        dz[idx] = g;
        sb += g;
        sg += g * ((x[idx] - mean[c]) * invstd[c]);  // g * xhat
    }
    const float tb = pg_block_sum(sb, shared);
    __syncthreads();
    const float tg = pg_block_sum(sg, shared);
    if (threadIdx.x == 0) {
        dbeta[c] = tb;
        dgamma[c] = tg;
    }
}

// dx = gamma * invstd * (dz - dbeta / count - xhat * dgamma / count) in training mode,
// dx = gamma * invstd * dz in evaluation mode (training == 0). Grid-stride, block 256.
__global__ void bn_backward_dx(const float* dz, const float* x, const float* mean, const float* invstd,
                               const float* gamma, const float* dgamma, const float* dbeta, float* dx,
                               long long total, long long inner, int channels, float count, int training) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)((i / inner) % channels);
        const float scale = gamma[c] * invstd[c];
        if (training) {
            const float xhat = (x[i] - mean[c]) * invstd[c];
            dx[i] = scale * (dz[i] - dbeta[c] / count - xhat * dgamma[c] / count);
        } else {
            dx[i] = scale * dz[i];
        }
    }
}

}  // extern "C"
