// RoPE, HF rotate_half convention, CUDA. CPU twin and oracle: native/cpu/rope.cpp.
//
// x, y [T, H, D]; pos [T]; inv_freq [D/2]. theta = float(pos[t]) * inv_freq[i] (fp32 product),
// c/s = fp32(cos/sin(double theta)); y[i] = x[i] c - x[i+D/2] s; y[i+D/2] = x[i+D/2] c + x[i] s.
// Backward: s -> -s. One thread per (t, i), looping over the heads (one sincos per pair).
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

__global__ void rope_kernel(const float* x, float* y, const int32_t* __restrict__ pos,
                            const float* __restrict__ inv_freq, int64_t T, int64_t H, int64_t D,
                            float sign) {
  const int64_t half = D / 2;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * half) return;
  const int64_t t = idx / half, i = idx % half;
  const double th = static_cast<double>(static_cast<float>(pos[t]) * inv_freq[i]);
  double sd, cd;
  sincos(th, &sd, &cd);
  const float c = static_cast<float>(cd), s = sign * static_cast<float>(sd);
  for (int64_t h = 0; h < H; h++) {
    const int64_t base = (t * H + h) * D;
    const float x1 = x[base + i], x2 = x[base + i + half];
    y[base + i] = x1 * c - x2 * s;
    y[base + i + half] = x2 * c + x1 * s;
  }
}

void launch(const float* x, float* y, const int32_t* pos, const float* inv_freq, int64_t T,
            int64_t H, int64_t D, float sign, void* stream, const char* name) {
  LORA4J_CHECK(D % 2 == 0, "rope: head_dim must be even");
  const int64_t n = T * (D / 2);
  if (n == 0) return;
  const int threads = 256;
  LORA4J_LAUNCH(static_cast<unsigned>((n + threads - 1) / threads), threads, 0, as_stream(stream),
                rope_kernel)(x, y, pos, inv_freq, T, H, D, sign);
  LORA4J_CUDA_LAUNCH_CHECK(name);
}

}  // namespace

extern "C" {

void lora4j_cuda_rope_fwd(const float* x, float* y, const int32_t* pos, const float* inv_freq,
                          int64_t T, int64_t n_heads, int64_t head_dim, void* stream) {
  launch(x, y, pos, inv_freq, T, n_heads, head_dim, 1.0f, stream, "rope_fwd");
}

void lora4j_cuda_rope_bwd(const float* dy, float* dx, const int32_t* pos,
                          const float* inv_freq, int64_t T, int64_t n_heads, int64_t head_dim,
                          void* stream) {
  launch(dy, dx, pos, inv_freq, T, n_heads, head_dim, -1.0f, stream, "rope_bwd");
}

}  // extern "C"
