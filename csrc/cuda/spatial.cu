// Resampling and padding of (N, C, H, W) float32 images, and their adjoints. Every kernel is a
// grid-stride loop (block 256) over the elements it writes, and each adjoint gathers the few
// output entries that read an input pixel, so no two threads add into one address (no atomics,
// and the sums are in a fixed order: the results do not depend on the launch).
// `planes` is N * C; (h, w) is always the input image's side.

extern "C" {

// 2x upsampling, y (planes, 2h, 2w). mode 0: nearest (each pixel repeated 2x2); mode 1:
// bilinear at half-pixel centres with clamped edges, separable: along W first, then along H,
// out[2k] = 3/4 x[k] + 1/4 x[k-1], out[2k+1] = 3/4 x[k] + 1/4 x[k+1] (indices clamped).
__global__ void upsample2x(const float* x, float* y, long long total, int h, int w, int mode) {
    const int w2 = 2 * w, h2 = 2 * h;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ow = (int)(i % w2), oh = (int)((i / w2) % h2);
        const float* src = x + (i / ((long long)w2 * h2)) * h * w;
        const int kh = oh >> 1, kw = ow >> 1;
        if (mode == 0) {
            y[i] = src[kh * w + kw];
            continue;
        }
        const int nh = (oh & 1) ? (kh + 1 < h ? kh + 1 : kh) : (kh > 0 ? kh - 1 : 0);  // the row mixed in
        const int nw = (ow & 1) ? (kw + 1 < w ? kw + 1 : kw) : (kw > 0 ? kw - 1 : 0);
        const float own = 0.75f * src[kh * w + kw] + 0.25f * src[kh * w + nw];
        const float other = 0.75f * src[nh * w + kw] + 0.25f * src[nh * w + nw];
        y[i] = 0.75f * own + 0.25f * other;
    }
}

// The (position, weight) pairs of a 2x bilinear line that read input index k of n: its two
// own outputs at 3/4, the neighbours' at 1/4, and at an edge the clamped read's extra 1/4.
// Returns how many (at most 4).
__device__ __forceinline__ int pg_bilinear_taps(int k, int n, int* pos, float* wt) {
    int t = 0;
    pos[t] = 2 * k, wt[t++] = k == 0 ? 1.0f : 0.75f;              // even output of k (+ clamped left edge)
    pos[t] = 2 * k + 1, wt[t++] = k == n - 1 ? 1.0f : 0.75f;      // odd output of k (+ clamped right edge)
    if (k > 0) pos[t] = 2 * k - 1, wt[t++] = 0.25f;               // odd output of k - 1
    if (k + 1 < n) pos[t] = 2 * k + 2, wt[t++] = 0.25f;           // even output of k + 1
    return t;
}

// The adjoint of upsample2x: dx (planes, h, w) from dy (planes, 2h, 2w).
__global__ void upsample2x_adjoint(const float* dy, float* dx, long long total, int h, int w, int mode) {
    const int w2 = 2 * w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int kw = (int)(i % w), kh = (int)((i / w) % h);
        const float* src = dy + (i / ((long long)w * h)) * 4LL * h * w;
        if (mode == 0) {
            const float* r = src + (2 * kh) * w2 + 2 * kw;
            dx[i] = (r[0] + r[1]) + (r[w2] + r[w2 + 1]);
            continue;
        }
        int ph[4], pw[4];
        float wh[4], ww[4];
        const int th = pg_bilinear_taps(kh, h, ph, wh), tw = pg_bilinear_taps(kw, w, pw, ww);
        float acc = 0.f;
        for (int a = 0; a < th; ++a) {
            float row = 0.f;
            for (int b = 0; b < tw; ++b) row += ww[b] * src[ph[a] * w2 + pw[b]];
            acc += wh[a] * row;
        }
        dx[i] = acc;
    }
}

// k x k average pooling with stride k: y (planes, ho, wo), ho = h / k, wo = w / k.
__global__ void avg_pool(const float* x, float* y, long long total, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float scale = 1.0f / (float)(k * k);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ow = (int)(i % wo), oh = (int)((i / wo) % ho);
        const float* src = x + (i / ((long long)wo * ho)) * h * w + (oh * k) * w + ow * k;
        float acc = 0.f;
        for (int a = 0; a < k; ++a)
            for (int b = 0; b < k; ++b) acc += src[a * w + b];
        y[i] = acc * scale;
    }
}

// Its adjoint: dx (planes, h, w); pixels past the last whole window get 0.
__global__ void avg_pool_adjoint(const float* dy, float* dx, long long total, int h, int w, int k) {
    const int ho = h / k, wo = w / k;
    const float scale = 1.0f / (float)(k * k);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int iw = (int)(i % w), ih = (int)((i / w) % h);
        const int oh = ih / k, ow = iw / k;
        dx[i] = (oh < ho && ow < wo) ? dy[(i / ((long long)w * h)) * ho * wo + oh * wo + ow] * scale : 0.f;
    }
}

// Sub-pixel shuffle: x (N, C r^2, h, w) -> y (N, C, h r, w r), y[n, c, h r + a, w r + b] =
// x[n, c r^2 + a r + b, h, w]. One thread per output entry; `channels` is C.
__global__ void pixel_shuffle(const float* x, float* y, long long total, int channels, int h, int w, int r) {
    const int wr = w * r, hr = h * r;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ow = (int)(i % wr), oh = (int)((i / wr) % hr);
        const long long nc = i / ((long long)wr * hr);  // n * C + c
        const long long plane = nc * r * r + (oh % r) * r + ow % r;
        y[i] = x[(plane * h + oh / r) * w + ow / r];
    }
}

// Its inverse, dx (N, C r^2, h, w) from dy (N, C, h r, w r). One thread per dx entry.
__global__ void pixel_unshuffle(const float* dy, float* dx, long long total, int channels, int h, int w, int r) {
    const int wr = w * r, hr = h * r;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int iw = (int)(i % w), ih = (int)((i / w) % h);
        const long long plane = i / ((long long)w * h);  // (n * C + c) * r^2 + a * r + b
        const int ab = (int)(plane % (r * r));
        const long long nc = plane / (r * r);
        dx[i] = dy[(nc * hr + ih * r + ab / r) * wr + iw * r + ab % r];
    }
}

// The input index a reflection-padded line reads at padded position o (edge not repeated; p < n).
__device__ __forceinline__ int pg_reflect(int o, int n, int p) {
    int i = o - p;
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
    return i;
}

// Reflection padding by p: y (planes, h + 2p, w + 2p).
__global__ void reflection_pad(const float* x, float* y, long long total, int h, int w, int p) {
    const int hp = h + 2 * p, wp = w + 2 * p;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ow = (int)(i % wp), oh = (int)((i / wp) % hp);
        y[i] = x[(i / ((long long)wp * hp)) * h * w + pg_reflect(oh, h, p) * w + pg_reflect(ow, w, p)];
    }
}

// The padded positions that read input index k of a line of n padded by p: itself, its mirror
// on the left (1 <= k <= p) and on the right (n - 1 - p <= k <= n - 2). Returns how many (<= 3).
__device__ __forceinline__ int pg_reflect_sources(int k, int n, int p, int* pos) {
    int t = 0;
    pos[t++] = k + p;
    if (k >= 1 && k <= p) pos[t++] = p - k;
    if (k <= n - 2 && k >= n - 1 - p) pos[t++] = p + 2 * (n - 1) - k;
    return t;
}

// Its adjoint: dx (planes, h, w) gathers every padded entry that mirrors it.
__global__ void reflection_pad_adjoint(const float* dy, float* dx, long long total, int h, int w, int p) {
    const int wp = w + 2 * p;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int iw = (int)(i % w), ih = (int)((i / w) % h);
        const float* src = dy + (i / ((long long)w * h)) * (long long)(h + 2 * p) * wp;
        int ph[3], pw[3];
        const int th = pg_reflect_sources(ih, h, p, ph), tw = pg_reflect_sources(iw, w, p, pw);
        float acc = 0.f;
        for (int a = 0; a < th; ++a)
            for (int b = 0; b < tw; ++b) acc += src[ph[a] * wp + pw[b]];
        dx[i] = acc;
    }
}

}  // extern "C"
