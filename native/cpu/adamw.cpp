// AdamW step and the sum-of-squares helper for grad-norm clipping, CPU (oracle of
// native/cuda/adamw.cu). torch.optim.AdamW (decoupled weight decay) semantics:
//   g = grad * grad_scale
//   p *= 1 - lr * wd                                     (only when wd > 0)
//   m = m + (1 - b1) (g - m);   v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps)),   bc1 = 1 - b1^t, bc2 = 1 - b2^t
// bc1, bc2 in double (Python floats in torch), then the per-element update in fp32 in the
// operation order of torch's single-tensor AdamW (lerp_, mul_/addcmul_, sqrt/div/add, addcdiv_).
// All vectors [n]; the pool over elements.
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <cmath>
#include <vector>

extern "C" {

void lora4j_adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, int64_t t,
                       float grad_scale) {
  LORA4J_CHECK(t >= 1, "adamw: step t must be >= 1, got " + std::to_string(t));
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t));
  const float step_size = static_cast<float>(static_cast<double>(lr) / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float decay =
      weight_decay > 0.0f
          ? static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay))
          : 1.0f;
  const float omb1 = 1.0f - beta1, omb2 = 1.0f - beta2;
  lora4j::cpu::parallel_for(n, 4.0, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
      const float g = grad[i] * grad_scale;
      const float mi = m[i] + omb1 * (g - m[i]);  // torch: exp_avg.lerp_(grad, 1 - beta1)
      const float vi = beta2 * v[i] + omb2 * (g * g);
      m[i] = mi;
      v[i] = vi;
      const float denom = std::sqrt(vi) / sqrt_bc2 + eps;
      p[i] = p[i] * decay - step_size * (mi / denom);
    }
  });
}

void lora4j_sumsq(const float* x, int64_t n, double* out) {
  // Fixed-size blocks whose partial sums are added in block order: the result does not
  // depend on the thread count.
  constexpr int64_t kBlock = 4096;
  const int64_t nblk = (n + kBlock - 1) / kBlock;
  std::vector<double> part(static_cast<size_t>(nblk));
  lora4j::cpu::parallel_for(nblk, kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t i0 = b * kBlock, i1 = i0 + kBlock < n ? i0 + kBlock : n;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = i0; i < i1; i++) acc += static_cast<double>(x[i]) * x[i];
      part[b] = acc;
    }
  });
  double s = 0.0;
  for (int64_t b = 0; b < nblk; b++) s += part[b];
  out[0] += s;
}

}  // extern "C"
