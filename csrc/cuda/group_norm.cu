// Group normalisation + activation of (N, C) and (N, C, H, W) float32 arrays (instance norm,
// layer norm and AdaIN are its cases). Channel c of example n holds `inner` contiguous elements;
// group g of example n is the unit u = n * groups + g, whose m = (C / groups) * inner elements are
// contiguous from u * m. The affine (gamma, beta) is per channel, or per example and channel
// (per_example = 1, AdaIN): its index is per_example ? n * C + c : c.
// Reductions run one block of 256 per unit, looping over units when there are more than blocks.
#include "activation.cuh"

extern "C" {

// Per unit: the mean, then the mean of squared deviations, both summed in double; writes mean[u]
// and invstd[u] = 1 / sqrt(var + eps). Launch: grid <= units, block 256.
__global__ void gn_stats(const float* x, float* mean, float* invstd, long long units, long long m, float eps) {
    __shared__ double shared[256];
    for (long long u = blockIdx.x; u < units; u += gridDim.x) {
        const float* xs = x + u * m;
        double acc = 0.0;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) acc += xs[j];
        const double mu = pg_block_sum(acc, shared) / (double)m;
        __syncthreads();
        double acc2 = 0.0;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) {
            const double d = (double)xs[j] - mu;
            acc2 += d * d;
        }
        const double var = pg_block_sum(acc2, shared) / (double)m;
        if (threadIdx.x == 0) {
            mean[u] = (float)mu;
            invstd[u] = (float)(1.0 / sqrt(var + (double)eps));
        }
        __syncthreads();  // shared[0] is read by every thread before the next unit writes it
    }
}

// y = act(((x - mean) * invstd) * gamma + beta). Grid-stride over all elements, block 256.
__global__ void gn_forward(const float* x, const float* mean, const float* invstd, const float* gamma,
                           const float* beta, float* y, long long total, long long inner, int channels,
                           int groups, int per_example, int act, float slope) {
    const int per_group = channels / groups;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long nc = i / inner;
        const int c = (int)(nc % channels);
        const long long n = nc / channels;
        const long long u = n * groups + c / per_group;
        const long long a = per_example ? nc : c;
        y[i] = pg_act(((x[i] - mean[u]) * invstd[u]) * gamma[a] + beta[a], act, slope);
    }
}

// Per unit: dz = dy * act'(y) (stored), then with dxhat = dz * gamma the group means
// stats[2u] = mean(dxhat) and stats[2u + 1] = mean(dxhat * xhat). Launch: grid <= units, block 256.
__global__ void gn_backward_group(const float* dy, const float* y, const float* x, const float* mean,
                                  const float* invstd, const float* gamma, float* dz, float* stats, long long units,
                                  long long m, long long inner, int channels, int groups, int per_example, int act,
                                  float slope) {
    __shared__ double shared[256];
    for (long long u = blockIdx.x; u < units; u += gridDim.x) {
        const long long n = u / groups;
        double sd = 0.0, sdx = 0.0;
        for (long long j = threadIdx.x; j < m; j += blockDim.x) {
            const long long idx = u * m + j;
            const long long nc = idx / inner;
            const float g = pg_act_grad(dy[idx], y[idx], act, slope);
            dz[idx] = g;
            const float dxhat = g * gamma[per_example ? nc : nc - n * channels];
            sd += dxhat;
            sdx += dxhat * ((x[idx] - mean[u]) * invstd[u]);
        }
        const double td = pg_block_sum(sd, shared);
        __syncthreads();
        const double tdx = pg_block_sum(sdx, shared);
        if (threadIdx.x == 0) {
            stats[2 * u] = (float)(td / (double)m);
            stats[2 * u + 1] = (float)(tdx / (double)m);
        }
        __syncthreads();
    }
}

// dx = invstd * (dz * gamma - mean(dxhat) - xhat * mean(dxhat * xhat)). Grid-stride, block 256.
__global__ void gn_backward_dx(const float* dz, const float* x, const float* mean, const float* invstd,
                               const float* gamma, const float* stats, float* dx, long long total, long long inner,
                               int channels, int groups, int per_example) {
    const int per_group = channels / groups;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long nc = i / inner;
        const int c = (int)(nc % channels);
        const long long u = (nc / channels) * groups + c / per_group;
        const float xhat = (x[i] - mean[u]) * invstd[u];
        dx[i] = invstd[u] * (dz[i] * gamma[per_example ? nc : c] - stats[2 * u] - xhat * stats[2 * u + 1]);
    }
}

// The affine's gradients: dgamma = sum dz * xhat, dbeta = sum dz over each affine entry's
// elements (one channel of every example, or of one example where per_example). One block per
// entry (units = C, or N * C), looping over entries. `rows` is N.
__global__ void gn_affine_grad(const float* dz, const float* x, const float* mean, const float* invstd,
                               float* dgamma, float* dbeta, long long units, long long rows, long long inner,
                               int channels, int groups, int per_example) {
    __shared__ double shared[256];
    const int per_group = channels / groups;
    for (long long e = blockIdx.x; e < units; e += gridDim.x) {
        const int c = (int)(e % channels);
        const long long first = per_example ? e / channels : 0, count = (per_example ? 1 : rows) * inner;
        double sg = 0.0, sb = 0.0;
        for (long long j = threadIdx.x; j < count; j += blockDim.x) {
            const long long n = first + j / inner;
            const long long idx = (n * channels + c) * inner + j % inner;
            const long long u = n * groups + c / per_group;
            const float g = dz[idx];
            sb += g;
            sg += g * ((x[idx] - mean[u]) * invstd[u]);
        }
        const double tg = pg_block_sum(sg, shared);
        __syncthreads();
        const double tb = pg_block_sum(sb, shared);
        if (threadIdx.x == 0) {
            dgamma[e] = (float)tg;
            dbeta[e] = (float)tb;
        }
        __syncthreads();
    }
}

}  // extern "C"
