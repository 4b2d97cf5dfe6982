// Parzen-window log-sum-exp: for each row i of a block of squared distances d2 (rows x m) and
// each bandwidth s: out[i, s] = log sum_j exp(-d2[i, j] * inv_two_var[s]), shifted by the row's
// smallest distance. Launch: one block per row (grid = rows), block 256, shared 256 floats.
#include "activation.cuh"

extern "C" {

__global__ void parzen_lse(const float* d2, const double* inv_two_var, double* out, int m, int nsig) {
    __shared__ float shared[256];
    const long long row = blockIdx.x;
    const float* r = d2 + row * (long long)m;
    float local = 3.4e38f;
    for (int j = threadIdx.x; j < m; j += blockDim.x) local = fminf(local, r[j]);
    shared[threadIdx.x] = local;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] = fminf(shared[threadIdx.x], shared[threadIdx.x + s]);
        __syncthreads();
    }
    const float dmin = fmaxf(shared[0], 0.f);
    __syncthreads();
    for (int s = 0; s < nsig; ++s) {
        const double w = inv_two_var[s];
        float acc = 0.f;
        for (int j = threadIdx.x; j < m; j += blockDim.x) acc += expf((float)(-(fmaxf(r[j], dmin) - dmin) * w));
        const float total = pg_block_sum(acc, shared);
        if (threadIdx.x == 0) out[row * nsig + s] = -(double)dmin * w + log((double)total);
        __syncthreads();
    }
}

}  // extern "C"
