// Activations shared by pygan's CUDA kernels. Codes: 0 identity, 1 relu, 2 leaky_relu, 3 tanh,
// 4 sigmoid (the same numbering as csrc/activation.h). Gradients are written in terms of the
// activation's output y, as in the op contract.
#pragma once

__device__ __forceinline__ float pg_act(float z, int act, float slope) {
    switch (act) {
        case 1: return z < 0.f ? 0.f : z;  // NaN stays NaN
        case 2: return z > 0.f ? z : slope * z;
        case 3: return tanhf(z);
        case 4: return 1.f / (1.f + expf(-z));
        default: return z;
    }
}

__device__ __forceinline__ float pg_act_grad(float dy, float y, int act, float slope) {
    switch (act) {
        case 1: return y > 0.f ? dy : 0.f;
        case 2: return y > 0.f ? dy : dy * slope;
        case 3: return dy * (1.f - y * y);
        case 4: return dy * y * (1.f - y);
        default: return dy;
    }
}

// Block-wide sum of one value per thread (blockDim.x a power of two, <= 1024; float, or double
// where statistics are summed in double); the result in every thread.
template <class T>
__device__ __forceinline__ T pg_block_sum(T v, T* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    return shared[0];
}
