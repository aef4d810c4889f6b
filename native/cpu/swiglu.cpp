// SwiGLU, CPU: the fallback and the oracle of native/cuda/swiglu.cu.
//
//   sg = sigmoid(g) = 1 / (1 + exp(-g)),  silu(g) = g * sg
//   h  = silu(g) * u
//   dg = dh * u * sg * (1 + g * (1 - sg))
//   du = dh * silu(g)
// All tensors [n] (n = T * intermediate), elementwise; OpenMP over chunks of kChunk.
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

namespace lora4j {
namespace cpu {
// native/cpu/ops.cpp: out[i] = exp(s * x[i]); out may alias x.
void exp_scaled(const float* x, float s, float* out, int64_t n);
}  // namespace cpu
}  // namespace lora4j

namespace {
constexpr int64_t kChunk = 512;
}

extern "C" {

void lora4j_swiglu_fwd(const float* gate, const float* up, int64_t n, float* h) {
  const int64_t nchunk = (n + kChunk - 1) / kChunk;
  lora4j::cpu::parallel_for(nchunk, 4.0 * kChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      const int64_t i0 = c * kChunk, len = i0 + kChunk < n ? kChunk : n - i0;
      float e[kChunk];
      lora4j::cpu::exp_scaled(gate + i0, -1.0f, e, len);
#pragma omp simd
      for (int64_t i = 0; i < len; i++) {
        const float g = gate[i0 + i];
        h[i0 + i] = g / (1.0f + e[i]) * up[i0 + i];
      }
    }
  });
}

void lora4j_swiglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                       float* dgate, float* dup) {
  const int64_t nchunk = (n + kChunk - 1) / kChunk;
  lora4j::cpu::parallel_for(nchunk, 6.0 * kChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      const int64_t i0 = c * kChunk, len = i0 + kChunk < n ? kChunk : n - i0;
      float e[kChunk];
      lora4j::cpu::exp_scaled(gate + i0, -1.0f, e, len);
#pragma omp simd
      for (int64_t i = 0; i < len; i++) {
        const float g = gate[i0 + i], u = up[i0 + i], d = dh[i0 + i];
        const float sg = 1.0f / (1.0f + e[i]);
        const float silu = g * sg;
        dup[i0 + i] = d * silu;
        dgate[i0 + i] = d * u * sg * (1.0f + g * (1.0f - sg));
      }
    }
  });
}

}  // extern "C"
