// SwiGLU, CUDA. CPU twin and oracle: native/cpu/swiglu.cpp.
//   sg = 1/(1+exp(-g)); h = g sg u;  dg = dh u sg (1 + g (1 - sg));  du = dh g sg
// All [n], elementwise, grid-stride. The *_bf16 entries (storage.h) read gate and up as bf16,
// widened exactly as they load, in the same kernels.
#include "lora4j/ops.h"
#include "lora4j/storage.h"
#include "cuda/cuda_common.cuh"

namespace {

// An input element as fp32: itself, or a bf16 bit pattern widened exactly (storage.h, mixed precision).
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const uint16_t* p, int64_t i) { return __uint_as_float(uint32_t(p[i]) << 16); }

template <typename In>
__global__ void swiglu_fwd_kernel(const In* gate, const In* up, int64_t n, float* h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(gate, i);
    h[i] = g / (1.0f + expf(-g)) * load(up, i);
  }
}

template <typename In>
__global__ void swiglu_bwd_kernel(const float* dh, const In* gate, const In* up, int64_t n,
                                  float* dgate, float* dup) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(gate, i), u = load(up, i), d = dh[i];
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
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_fwd_kernel<float>)(gate, up, n, h);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_fwd");
}

void lora4j_cuda_swiglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                            float* dgate, float* dup, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_bwd_kernel<float>)(
      dh, gate, up, n, dgate, dup);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_bwd");
}

void lora4j_cuda_swiglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h,
                                 void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_fwd_kernel<uint16_t>)(gate, up, n, h);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_bf16_fwd");
}

void lora4j_cuda_swiglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                                float* dgate, float* dup, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), swiglu_bwd_kernel<uint16_t>)(dh, gate, up, n, dgate, dup);
  LORA4J_CUDA_LAUNCH_CHECK("swiglu_bf16_bwd");
}

}  // extern "C"
