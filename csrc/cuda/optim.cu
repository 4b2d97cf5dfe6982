// Optimizer updates over flat float32 buffers, in place. Grid-stride, block 256.
extern "C" {

__global__ void sgd_momentum(float* param, const float* grad, float* velocity, long long n, float lr, float momentum) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = momentum * velocity[i] - lr * grad[i];
        velocity[i] = v;
        param[i] += v;
    }
}

// step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t), computed on the host.
__global__ void adam(float* param, const float* grad, float* m, float* v, long long n, float beta1, float beta2,
                     float eps, float step_size, float inv_sqrt_bc2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float g = grad[i];
        const float mi = beta1 * m[i] + (1.f - beta1) * g;
        const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

__global__ void rmsprop(float* param, const float* grad, float* sq, long long n, float lr, float alpha, float eps) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float g = grad[i];
        const float s = alpha * sq[i] + (1.f - alpha) * g * g;
        sq[i] = s;
        param[i] -= lr * g / (sqrtf(s) + eps);
    }
}

}  // extern "C"
