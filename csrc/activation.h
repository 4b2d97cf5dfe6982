// Activations fused into pygan's ops. The backward forms read the op's output y, never the
// pre-activation, so the forward need not keep it (valid for leaky_relu because slope >= 0).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pygan {

enum class Act : int { Identity = 0, Relu = 1, LeakyRelu = 2, Tanh = 3, Sigmoid = 4 };

inline float act_forward(Act act, float z, float slope) {
    switch (act) {
        case Act::Identity: return z;
        case Act::Relu: return z < 0.0f ? 0.0f : z;  // NaN stays NaN, as in NumPy
        case Act::LeakyRelu: return z > 0.0f ? z : z * slope;
        case Act::Tanh: return std::tanh(z);
        case Act::Sigmoid:
            // stable for either sign of z
            if (z >= 0.0f) return 1.0f / (1.0f + std::exp(-z));
            else { const float e = std::exp(z); return e / (1.0f + e); }
    }
    return z;
}

// y > 0 read from y's bits: true for +denormal (which the kernels' denormals-are-zero mode would
// read as 0, flipping the branch relative to the reference) and +inf, false for NaN, as in NumPy.
inline bool positive(float y) {
    std::int32_t bits;
    std::memcpy(&bits, &y, sizeof bits);
    return bits > 0 && bits <= 0x7f800000;
}

// dy * act'(z), written in terms of y = act(z)
inline float act_backward(Act act, float dy, float y, float slope) {
    switch (act) {
        case Act::Identity: return dy;
        case Act::Relu: {
            // a bit mask rather than `y > 0 ? dy : 0`, which GCC turns into a branch (it mispredicts
            // on half the elements: batch norm + relu backward ran 4x slower than + leaky_relu)
            std::uint32_t bits;
            std::memcpy(&bits, &dy, sizeof bits);
            bits &= 0u - static_cast<std::uint32_t>(positive(y));
            float out;
            std::memcpy(&out, &bits, sizeof out);
            return out;
        }
        case Act::LeakyRelu: return positive(y) ? dy : dy * slope;
        case Act::Tanh: return dy * (1.0f - y * y);
        case Act::Sigmoid: return dy * y * (1.0f - y);
    }
    return dy;
}

// Calls f(std::integral_constant<Act, a>{}) so loops are compiled (and vectorised) per activation.
template <class F>
void with_act(Act act, F&& f) {
    switch (act) {
        case Act::Identity: return f(std::integral_constant<Act, Act::Identity>{});
        case Act::Relu: return f(std::integral_constant<Act, Act::Relu>{});
        case Act::LeakyRelu: return f(std::integral_constant<Act, Act::LeakyRelu>{});
        case Act::Tanh: return f(std::integral_constant<Act, Act::Tanh>{});
        case Act::Sigmoid: return f(std::integral_constant<Act, Act::Sigmoid>{});
    }
}

}  // namespace pygan
