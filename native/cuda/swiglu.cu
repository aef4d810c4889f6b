// SwiGLU, CUDA. CPU twin and oracle: native/cpu/swiglu.cpp.
//   sg = 1/(1+exp(-g)); h = g sg u;  dg = dh u sg (1 + g (1 - sg));  du = dh g sg
// All [n], elementwise, grid-stride.
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

__global__ void swiglu_fwd_kernel(const float* gate, const float* up, int64_t n, float* h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    h[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void swiglu_bwd_kernel(const float* dh, const float* gate, const float* up, int64_t n,
                                  float* dgate, float* dup) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i], u = up[i], d = dh[i];
    const float sg = 1.0f / (1.0f + expf(-g));
    dup[i] = d * (g * sg);
    dgate[i] = d * u * sg * (1.0f + g * (1.0f - sg));
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

extern "C" {

void lora4j_cuda_swiglu_fwd(const float* gate, const float* up, int64_t n, float* h,
                            void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_fwd_kernel)(gate, up, n, h);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_fwd");
}

void lora4j_cuda_swiglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                            float* dgate, float* dup, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_bwd_kernel)(
      dh, gate, up, n, dgate, dup);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_bwd");
}

}  // extern "C"
