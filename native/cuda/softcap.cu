// Logit soft-capping (Gemma 2's final_logit_softcapping), CUDA. CPU twin and oracle:
// lora4j_softcap_* in native/cpu/cross_entropy.cpp.
//   y = c tanh(x / c);   dx = dy (1 - tanh^2(x / c))   (x: the forward's input)
// All [n], elementwise, grid-stride.
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

__global__ void softcap_fwd_kernel(const float* x, int64_t n, float c, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = c * tanhf(x[i] / c);
}

__global__ void softcap_bwd_kernel(const float* dy, const float* x, int64_t n, float c, float* dx) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float t = tanhf(x[i] / c);
    dx[i] = dy[i] * (1.0f - t * t);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

extern "C" {

void lora4j_cuda_softcap_fwd(const float* x, int64_t n, float c, float* y, void* stream) {
  LORA4J_CHECK(c > 0.0f, "softcap: the cap must be > 0");
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), softcap_fwd_kernel)(x, n, c, y);
  LORA4J_CUDA_LAUNCH_CHECK("softcap_fwd");
}

void lora4j_cuda_softcap_bwd(const float* dy, const float* x, int64_t n, float c, float* dx,
                             void* stream) {
  LORA4J_CHECK(c > 0.0f, "softcap: the cap must be > 0");
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), softcap_bwd_kernel)(dy, x, n, c, dx);
  LORA4J_CUDA_LAUNCH_CHECK("softcap_bwd");
}

}  // extern "C"
