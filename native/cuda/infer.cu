// CUDA twins of native/cpu/infer.cpp: axpy and KV-cache decode attention.
//
// Decode attention: one block per (sequence, query head); each thread takes a strided subset of
// the L cached positions for the scores, a block reduction gives max and sum, then threads split
// the head dimension for the weighted sum of values. Scores live in dynamic shared memory
// (L floats), so L is limited by shared memory (48 KiB default: 12288 positions).
#include "lora4j/infer.h"
#include "cuda/cuda_common.cuh"

#include <cfloat>

namespace {

constexpr int kThreads = 256;

__global__ void axpy_kernel(int64_t n, float alpha, const float* __restrict__ x,
                            float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] += alpha * x[i];
}

__device__ float block_reduce(float v, bool is_max, float* red) {
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, w) : v + w;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : (is_max ? -FLT_MAX : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
      float w = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, w) : v + w;
    }
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  float r = red[0];
  __syncthreads();
  return r;
}

__global__ void decode_attention_kernel(const float* __restrict__ q,
                                        const float* __restrict__ k_cache,
                                        const float* __restrict__ v_cache, int64_t L,
                                        int64_t cache_len, int64_t Hq, int64_t Hkv, int64_t D,
                                        float scale, float* __restrict__ out) {
  LORA4J_DYNAMIC_SHARED(float, s);  // [L]
  __shared__ float red[32];
  const int64_t b = blockIdx.x / Hq, h = blockIdx.x % Hq;
  const int64_t kvh = h / (Hq / Hkv);
  const int64_t kv_row = Hkv * D;
  const float* qh = q + b * Hq * D + h * D;
  const float* kb = k_cache + b * cache_len * kv_row + kvh * D;
  const float* vb = v_cache + b * cache_len * kv_row + kvh * D;
  float m = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
    const float* kj = kb + j * kv_row;
    float acc = 0.0f;
    for (int64_t d = 0; d < D; d++) acc += qh[d] * kj[d];
    s[j] = acc * scale;
    m = fmaxf(m, s[j]);
  }
  m = block_reduce(m, true, red);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < L; j += blockDim.x) {
    s[j] = __expf(s[j] - m);
    sum += s[j];
  }
  sum = block_reduce(sum, false, red);
  const float inv = 1.0f / sum;
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < L; j++) acc += s[j] * vb[j * kv_row + d];
    out[b * Hq * D + h * D + d] = acc * inv;
  }
}

}  // namespace

extern "C" {

void lora4j_cuda_axpy(int64_t n, float alpha, const float* x, float* y, void* stream) {
  if (n == 0) return;
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65535) blocks = 65535;
  LORA4J_LAUNCH((unsigned)blocks, kThreads, 0, as_stream(stream), axpy_kernel)(n, alpha, x, y);
  LORA4J_CUDA_LAUNCH_CHECK("axpy");
}

void lora4j_cuda_attention_decode(const float* q, const float* k_cache, const float* v_cache,
                                  int64_t B, int64_t L, int64_t cache_len, int64_t Hq,
                                  int64_t Hkv, int64_t D, float* out, void* stream) {
  LORA4J_CHECK(L >= 1 && L <= cache_len, "decode attention needs 1 <= L <= cache_len");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads must be a multiple of KV heads");
  LORA4J_CHECK(L * sizeof(float) <= 48 * 1024, "decode attention supports at most 12288 cached positions");
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  // The kernel's static `red` (32 floats) counts against the same 48 KiB as the scores: above
  // that sum the launch needs the opt-in (every sm_80+ device allows 99 KiB or more).
  const size_t smem = static_cast<size_t>(L) * sizeof(float);
  if (smem + 32 * sizeof(float) > 48 * 1024)
    LORA4J_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
  LORA4J_LAUNCH((unsigned)(B * Hq), kThreads, smem, as_stream(stream), decode_attention_kernel)(
      q, k_cache, v_cache, L, cache_len, Hq, Hkv, D, scale, out);
  LORA4J_CUDA_LAUNCH_CHECK("attention_decode");
}

}  // extern "C"
