// AdamW step and sum of squares, CUDA. CPU twin and oracle: native/cpu/adamw.cpp (same
// formula and operation order: torch single-tensor AdamW).
//   g = grad * grad_scale;  p *= 1 - lr wd (wd > 0);  m += (1 - b1)(g - m);  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) (m / (sqrt(v) / sqrt(bc2) + eps))
// sumsq: out[0] += sum x^2 in double, one block, fixed order (deterministic).
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

#include <cmath>

namespace {

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, float decay,
                             float step_size, float sqrt_bc2, float omb1, float beta2, float omb2,
                             float eps, float grad_scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = m[i] + omb1 * (g - m[i]);
    const float vi = beta2 * v[i] + omb2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / sqrt_bc2 + eps;
    p[i] = p[i] * decay - step_size * (mi / denom);
  }
}

__global__ void sumsq_kernel(const float* __restrict__ x, int64_t n, double* out) {
  __shared__ double sh[1024];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] += sh[0];
}

}  // namespace

extern "C" {

void lora4j_cuda_adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, float lr,
                            float beta1, float beta2, float eps, float weight_decay, int64_t t,
                            float grad_scale, void* stream) {
  LORA4J_CHECK(t >= 1, "adamw: step t must be >= 1");
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(t));
  const float step_size = static_cast<float>(static_cast<double>(lr) / bc1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float decay =
      weight_decay > 0.0f
          ? static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay))
          : 1.0f;
  const int64_t blocks = (n + 255) / 256;
  LORA4J_LAUNCH(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8), 256, 0,
                as_stream(stream), adamw_kernel)(
      p, grad, m, v, n, decay, step_size, sqrt_bc2, 1.0f - beta1, beta2, 1.0f - beta2, eps,
      grad_scale);
  LORA4J_CUDA_LAUNCH_CHECK("adamw_step");
}

void lora4j_cuda_sumsq(const float* x, int64_t n, double* out, void* stream) {
  LORA4J_LAUNCH(1, 1024, 0, as_stream(stream), sumsq_kernel)(x, n, out);
  LORA4J_CUDA_LAUNCH_CHECK("sumsq");
}

}  // extern "C"
