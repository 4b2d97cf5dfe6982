// im2col / col2im for NCHW float32 convolutions (square kernel, stride, zero padding).
// cols has shape (C * k * k, N * Ho * Wo): row (c, ki, kj), column (n, oh, ow), so that
// conv2d = W (Cout, C*k*k) @ cols, and the data gradient is col2im(W^T @ dZ).
extern "C" {

// One thread per element of cols. Grid-stride, block 256.
__global__ void im2col(const float* x, float* cols, int n, int c, int h, int w, int k, int stride, int pad,
                       int ho, int wo) {
    const long long spatial = (long long)ho * wo;
    const long long ncols = (long long)n * spatial;
    const long long total = (long long)c * k * k * ncols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long col = i % ncols;
        const long long row = i / ncols;
        const int kj = (int)(row % k), ki = (int)((row / k) % k), ch = (int)(row / ((long long)k * k));
        const int img = (int)(col / spatial);
        const int oh = (int)((col % spatial) / wo), ow = (int)(col % wo);
        const int ih = oh * stride - pad + ki, iw = ow * stride - pad + kj;
        cols[i] = (ih >= 0 && ih < h && iw >= 0 && iw < w) ? x[(((long long)img * c + ch) * h + ih) * w + iw] : 0.f;
    }
}

// Gather form of col2im: one thread per image element sums every column entry that read it,
// so no atomics are needed and the result is deterministic. Grid-stride, block 256.
__global__ void col2im(const float* cols, float* x, int n, int c, int h, int w, int k, int stride, int pad,
                       int ho, int wo) {
    const long long spatial = (long long)ho * wo;
    const long long ncols = (long long)n * spatial;
    const long long total = (long long)n * c * h * w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int iw = (int)(i % w), ih = (int)((i / w) % h);
        const int ch = (int)((i / ((long long)w * h)) % c), img = (int)(i / ((long long)w * h * c));
        float acc = 0.f;
        for (int ki = 0; ki < k; ++ki) {
            const int t = ih + pad - ki;
            if (t < 0 || t % stride) continue;
            const int oh = t / stride;
            if (oh >= ho) continue;
            for (int kj = 0; kj < k; ++kj) {
                const int u = iw + pad - kj;
                if (u < 0 || u % stride) continue;
                const int ow = u / stride;
                if (ow >= wo) continue;
                const long long row = ((long long)ch * k + ki) * k + kj;
                acc += cols[row * ncols + (long long)img * spatial + (long long)oh * wo + ow];
            }
        }
        x[i] = acc;
    }
}

}  // extern "C"
