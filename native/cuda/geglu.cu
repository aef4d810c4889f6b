// GeGLU with the tanh GELU (Gemma's MLP), CUDA. CPU twin and oracle: native/cpu/geglu.cpp.
//   t = tanh(c (g + k g^3)), c = sqrt(2/pi), k = 0.044715;  h = 0.5 g (1 + t) u
//   dg = dh u (0.5 (1 + t) + 0.5 g (1 - t^2) c (1 + 3 k g^2));  du = dh 0.5 g (1 + t)
// All [n], elementwise, grid-stride. The *_bf16 entries (storage.h) read gate and up as bf16,
// widened exactly as they load, in the same kernels.
#include "lora4j/ops.h"
#include "lora4j/storage.h"
#include "cuda/cuda_common.cuh"

namespace {

// An input element as fp32: itself, or a bf16 bit pattern widened exactly (storage.h, mixed precision).
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const uint16_t* p, int64_t i) { return __uint_as_float(uint32_t(p[i]) << 16); }

constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kK = 0.044715f;

template <typename In>
__global__ void geglu_fwd_kernel(const In* gate, const In* up, int64_t n, float* h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(gate, i);
    const float t = tanhf(kC * (g + kK * g * g * g));
    h[i] = 0.5f * g * (1.0f + t) * load(up, i);
  }
}

template <typename In>
__global__ void geglu_bwd_kernel(const float* dh, const In* gate, const In* up, int64_t n,
                                 float* dgate, float* dup) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load(gate, i), u = load(up, i), d = dh[i];
    const float t = tanhf(kC * (g + kK * g * g * g));
    const float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kC * (1.0f + 3.0f * kK * g * g);
    dup[i] = d * (0.5f * g * (1.0f + t));
    dgate[i] = d * u * dgelu;
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

extern "C" {

void lora4j_cuda_geglu_fwd(const float* gate, const float* up, int64_t n, float* h, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), geglu_fwd_kernel<float>)(gate, up, n, h);
  LORA4J_CUDA_LAUNCH_CHECK("geglu_fwd");
}

void lora4j_cuda_geglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                           float* dgate, float* dup, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), geglu_bwd_kernel<float>)(dh, gate, up, n, dgate, dup);
  LORA4J_CUDA_LAUNCH_CHECK("geglu_bwd");
}

void lora4j_cuda_geglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h,
                                 void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), geglu_fwd_kernel<uint16_t>)(gate, up, n, h);
  LORA4J_CUDA_LAUNCH_CHECK("geglu_bf16_fwd");
}

void lora4j_cuda_geglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                                float* dgate, float* dup, void* stream) {
  if (n == 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), geglu_bwd_kernel<uint16_t>)(dh, gate, up, n, dgate, dup);
  LORA4J_CUDA_LAUNCH_CHECK("geglu_bf16_bwd");
}

}  // extern "C"
