// RMSNorm (Llama), CUDA. CPU twin and oracle: native/cpu/rmsnorm.cpp.
//
//   rstd[t] = 1 / sqrt(mean_i x[t,i]^2 + eps);   y[t,i] = w[i] * (x[t,i] * rstd[t])
//   dx[t,i] = rstd[t] (dy w)[t,i] - x[t,i] rstd[t]^3 / dim * sum_j (dy w x)[t,j]
//   dw[i]  += sum_t dy[t,i] x[t,i] rstd[t]
// x, y, dy, dx [T, dim]; w, dw [dim]; rstd [T]. One block per row for fwd/dx; dw by column
// tiles with a fixed-order reduction over rows (deterministic, no atomics).
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // sh may still be read from a previous call
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int i = 0; i < (int)(blockDim.x >> 5); i++) s += sh[i];
  return s;
}

__global__ void rmsnorm_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                   int64_t dim, float eps, float* y, float* __restrict__ rstd) {
  __shared__ float sh[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * dim;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, sh);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  if (threadIdx.x == 0) rstd[t] = r;
  float* yr = y + t * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * r);
}

__global__ void rmsnorm_dx_kernel(const float* dy, const float* __restrict__ x,
                                  const float* __restrict__ w, const float* __restrict__ rstd,
                                  int64_t dim, float* dx) {
  __shared__ float sh[32];
  const int64_t t = blockIdx.x;
  const float* dyr = dy + t * dim;
  const float* xr = x + t * dim;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dot += dyr[i] * w[i] * xr[i];
  dot = block_sum(dot, sh);  // ends with a barrier: all reads of dy precede the writes below
  const float r = rstd[t];
  const float c = r * r * r / static_cast<float>(dim) * dot;
  float* dxr = dx + t * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float g = dyr[i] * w[i];
    dxr[i] = r * g - xr[i] * c;
  }
}

// block (32, 8): column blockIdx.x*32 + threadIdx.x, rows threadIdx.y, +8, ...
__global__ void rmsnorm_dw_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                  const float* __restrict__ rstd, int64_t T, int64_t dim,
                                  float* __restrict__ dw) {
  __shared__ float part[8][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float acc = 0.0f;
  if (col < dim)
    for (int64_t t = threadIdx.y; t < T; t += 8) acc += dy[t * dim + col] * x[t * dim + col] * rstd[t];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < dim) {
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += part[k][threadIdx.x];
    dw[col] += s;
  }
}

}  // namespace

extern "C" {

void lora4j_cuda_rmsnorm_fwd(const float* x, const float* w, int64_t T, int64_t dim, float eps,
                             float* y, float* rstd, void* stream) {
  if (T == 0) return;
  LORA4J_LAUNCH(static_cast<unsigned>(T), kThreads, 0, as_stream(stream), rmsnorm_fwd_kernel)(
      x, w, dim, eps, y, rstd);
  LORA4J_CUDA_LAUNCH_CHECK("rmsnorm_fwd");
}

void lora4j_cuda_rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                             int64_t T, int64_t dim, float* dx, float* dw, void* stream) {
  if (T == 0) return;
  if (dw) {  // before dx: dx may alias dy
    LORA4J_LAUNCH(static_cast<unsigned>((dim + 31) / 32), dim3(32, 8), 0, as_stream(stream),
                  rmsnorm_dw_kernel)(dy, x, rstd, T, dim, dw);
    LORA4J_CUDA_LAUNCH_CHECK("rmsnorm_bwd dw");
  }
  LORA4J_LAUNCH(static_cast<unsigned>(T), kThreads, 0, as_stream(stream), rmsnorm_dx_kernel)(
      dy, x, w, rstd, dim, dx);
  LORA4J_CUDA_LAUNCH_CHECK("rmsnorm_bwd dx");
}

}  // extern "C"
