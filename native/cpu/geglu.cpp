// GeGLU with the tanh GELU (Gemma's MLP), CPU: the fallback and the oracle of native/cuda/geglu.cu.
//
//   c = sqrt(2/pi), k = 0.044715
//   t  = tanh(c (g + k g^3)),  gelu(g) = 0.5 g (1 + t)
//   h  = gelu(g) * u
//   dg = dh * u * (0.5 (1 + t) + 0.5 g (1 - t^2) c (1 + 3 k g^2))
//   du = dh * gelu(g)
// All tensors [n] (n = T * intermediate), elementwise; OpenMP over chunks of kChunk.
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <cmath>

namespace {
constexpr int64_t kChunk = 512;
constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kK = 0.044715f;
}  // namespace

extern "C" {

void lora4j_geglu_fwd(const float* gate, const float* up, int64_t n, float* h) {
  const int64_t nchunk = (n + kChunk - 1) / kChunk;
  lora4j::cpu::parallel_for(nchunk, 20.0 * kChunk, [&](int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; c++) {
    const int64_t i0 = c * kChunk, len = i0 + kChunk < n ? kChunk : n - i0;
    for (int64_t i = i0; i < i0 + len; i++) {
      const float g = gate[i];
      const float t = std::tanh(kC * (g + kK * g * g * g));
      h[i] = 0.5f * g * (1.0f + t) * up[i];
    }
  }
  });
}

void lora4j_geglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                      float* dgate, float* dup) {
  const int64_t nchunk = (n + kChunk - 1) / kChunk;
  lora4j::cpu::parallel_for(nchunk, 30.0 * kChunk, [&](int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; c++) {
    const int64_t i0 = c * kChunk, len = i0 + kChunk < n ? kChunk : n - i0;
    for (int64_t i = i0; i < i0 + len; i++) {
      const float g = gate[i], u = up[i], d = dh[i];
      const float t = std::tanh(kC * (g + kK * g * g * g));
      const float gelu = 0.5f * g * (1.0f + t);
      const float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kC * (1.0f + 3.0f * kK * g * g);
      dup[i] = d * gelu;
      dgate[i] = d * u * dgelu;
    }
  }
  });
}

}  // extern "C"
