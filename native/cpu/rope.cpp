// RoPE, HF rotate_half convention, CPU: the fallback and the oracle of native/cuda/rope.cu.
//
// x, y: [T, n_heads, D] row-major; pos [T] int32; inv_freq [D/2]. For i < D/2:
//   theta = float(pos[t]) * inv_freq[i]               (fp32 product, as HF)
//   c = fp32(cos(double theta)), s = fp32(sin(double theta))
//   y[i]     = x[i] c - x[i+D/2] s
//   y[i+D/2] = x[i+D/2] c + x[i] s
// Backward: the same with s -> -s (the rotation matrix is orthogonal, its transpose is the
// rotation by -theta). cos/sin are computed once per token and shared by all heads.
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <cmath>
#include <vector>

namespace {

void rope_apply(const float* x, float* y, const int32_t* pos, const float* inv_freq, int64_t T,
                int64_t H, int64_t D, float sign) {
  LORA4J_CHECK(D % 2 == 0, "rope: head_dim must be even, got " + std::to_string(D));
  const int64_t half = D / 2;
  lora4j::cpu::parallel_for(T, 3.0 * H * D, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(static_cast<size_t>(D));
    for (int64_t t = t0; t < t1; t++) {
      const float p = static_cast<float>(pos[t]);
      for (int64_t i = 0; i < half; i++) {
        const double th = static_cast<double>(p * inv_freq[i]);
        cs[i] = static_cast<float>(std::cos(th));
        cs[half + i] = sign * static_cast<float>(std::sin(th));
      }
      const float* c = cs.data();
      const float* s = cs.data() + half;
      for (int64_t h = 0; h < H; h++) {
        const float* xr = x + (t * H + h) * D;
        float* yr = y + (t * H + h) * D;
#pragma omp simd
        for (int64_t i = 0; i < half; i++) {
          const float x1 = xr[i], x2 = xr[i + half];
          yr[i] = x1 * c[i] - x2 * s[i];
          yr[i + half] = x2 * c[i] + x1 * s[i];
        }
      }
    }
    });
}

}  // namespace

extern "C" {

void lora4j_rope_fwd(const float* x, float* y, const int32_t* pos, const float* inv_freq,
                     int64_t T, int64_t n_heads, int64_t head_dim) {
  rope_apply(x, y, pos, inv_freq, T, n_heads, head_dim, 1.0f);
}

void lora4j_rope_bwd(const float* dy, float* dx, const int32_t* pos, const float* inv_freq,
                     int64_t T, int64_t n_heads, int64_t head_dim) {
  rope_apply(dy, dx, pos, inv_freq, T, n_heads, head_dim, -1.0f);
}

}  // extern "C"
