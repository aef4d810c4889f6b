// CUDA twins of native/cpu/infer.cpp (axpy, KV-cache decode attention) and of the single-token
// decode kernels of native/cpu/decode.cpp (matvec, gate_up, decode_attention, embedding).
//
// Decode GEMVs: one warp per output row, lanes stride the row (coalesced), a shuffle reduction
// ends each row. decode_attention: one block per query head; the block ropes its q head and its
// KV head's new key in shared memory, so no block waits for another block's cache write (the
// first block of each KV group writes the cache row, the others use their shared copy of it).
// No kernel allocates: every buffer comes from the caller, every launch goes on `stream`.
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

// Softmax weights of one head's scores s[0..len) in shared memory, in place: each thread passes the
// max m of the scores it wrote; returns 1 / sum_j exp(s_j - max) (a block-wide call).
__device__ float softmax_in_place(float* s, int64_t len, float m, float* red) {
  m = block_reduce(m, true, red);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    s[j] = __expf(s[j] - m);
    sum += s[j];
  }
  return 1.0f / block_reduce(sum, false, red);
}

__global__ void decode_attention_kernel(const float* __restrict__ q,
                                        const float* __restrict__ k_cache,
                                        const float* __restrict__ v_cache, int64_t L,
                                        int64_t cache_len, int64_t Hq, int64_t Hkv, int64_t D,
                                        float scale, float softcap, float* __restrict__ out) {
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
    s[j] = softcap > 0.0f ? softcap * tanhf(acc * scale / softcap) : acc * scale;
    m = fmaxf(m, s[j]);
  }
  const float inv = softmax_in_place(s, L, m, red);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < L; j++) acc += s[j] * vb[j * kv_row + d];
    out[b * Hq * D + h * D + d] = acc * inv;
  }
}

__device__ inline float load_w(const void* w, int32_t wtype, int64_t i) {
  if (wtype == LORA4J_DECODE_BF16) {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[i]) << 16;
    return __uint_as_float(u);
  }
  return static_cast<const float*>(w)[i];
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// y[r] (=|+=) w[r] . x, one warp per row.
__global__ void decode_matvec_kernel(const float* __restrict__ x, int64_t in, const void* w,
                                     int32_t wtype, int64_t out, int32_t accumulate,
                                     float* __restrict__ y) {
  const int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= out) return;
  float acc = 0.0f;
  for (int64_t i = lane; i < in; i += 32) acc += load_w(w, wtype, r * in + i) * x[i];
  acc = warp_sum(acc);
  if (lane == 0) y[r] = accumulate ? y[r] + acc : acc;
}

// s[r] = silu(w_gate[r] . x) * (w_up[r] . x), one warp per row.
__global__ void decode_gate_up_kernel(const float* __restrict__ x, int64_t in, const void* wg,
                                      const void* wu, int32_t wtype, int64_t inter,
                                      float* __restrict__ s) {
  const int64_t r = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= inter) return;
  float g = 0.0f, u = 0.0f;
  for (int64_t i = lane; i < in; i += 32) {
    const float xi = x[i];
    g += load_w(wg, wtype, r * in + i) * xi;
    u += load_w(wu, wtype, r * in + i) * xi;
  }
  g = warp_sum(g);
  u = warp_sum(u);
  if (lane == 0) s[r] = g / (1.0f + expf(-g)) * u;
}

// One block per query head h. Shared: qs [D] roped query, ks [D] roped new key, sc [len] scores.
__global__ void decode_step_attention_kernel(float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v, int32_t pos,
                                             const float* __restrict__ inv_freq,
                                             float* __restrict__ k_cache,
                                             float* __restrict__ v_cache, int64_t start,
                                             int64_t Hq, int64_t Hkv, int64_t D, float scale,
                                             float* __restrict__ out) {
  LORA4J_DYNAMIC_SHARED(float, sh);
  float* qs = sh;
  float* ks = sh + D;
  float* sc = sh + 2 * D;
  __shared__ float red[32];
  const int64_t h = blockIdx.x, group = Hq / Hkv, kvh = h / group, half = D / 2;
  const int64_t kv_row = Hkv * D;
  const bool writer = (h % group) == 0;
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    // As lora4j_rope_fwd: fp32 angle, cos/sin in double, rounded to fp32.
    const double th = static_cast<double>(static_cast<float>(pos) * inv_freq[i]);
    const float c = static_cast<float>(cos(th)), sn = static_cast<float>(sin(th));
    const float q1 = q[h * D + i], q2 = q[h * D + i + half];
    qs[i] = q1 * c - q2 * sn;
    qs[i + half] = q2 * c + q1 * sn;
    const float k1 = k[kvh * D + i], k2 = k[kvh * D + i + half];
    ks[i] = k1 * c - k2 * sn;
    ks[i + half] = k2 * c + k1 * sn;
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    q[h * D + d] = qs[d];
    if (writer) {
      k_cache[pos * kv_row + kvh * D + d] = ks[d];
      v_cache[pos * kv_row + kvh * D + d] = v[kvh * D + d];
    }
  }
  const int64_t len = pos + 1 - start;
  float m = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const int64_t p = start + j;
    const float* kj = p == pos ? ks : k_cache + p * kv_row + kvh * D;
    float acc = 0.0f;
    for (int64_t d = 0; d < D; d++) acc += qs[d] * kj[d];
    sc[j] = acc * scale;
    m = fmaxf(m, sc[j]);
  }
  const float inv = softmax_in_place(sc, len, m, red);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < len; j++) {
      const int64_t p = start + j;
      const float vd = p == pos ? v[kvh * D + d] : v_cache[p * kv_row + kvh * D + d];
      acc += sc[j] * vd;
    }
    out[h * D + d] = acc * inv;
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
                                  int64_t Hkv, int64_t D, float softcap, float* out,
                                  void* stream) {
  LORA4J_CHECK(L >= 1 && L <= cache_len, "decode attention needs 1 <= L <= cache_len");
  LORA4J_CHECK(softcap >= 0.0f, "decode attention: softcap must be >= 0");
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
      q, k_cache, v_cache, L, cache_len, Hq, Hkv, D, scale, softcap, out);
  LORA4J_CUDA_LAUNCH_CHECK("attention_decode");
}

void lora4j_cuda_decode_matvec(const float* x, int64_t in, const void* w, int32_t wtype,
                               int64_t out, int32_t accumulate, float* y, void* stream) {
  LORA4J_CHECK(wtype == LORA4J_DECODE_F32 || wtype == LORA4J_DECODE_BF16,
               "decode: weight type must be 0 (f32) or 1 (bf16)");
  if (out == 0) return;
  const int64_t rows_per_block = kThreads / 32;
  LORA4J_LAUNCH((unsigned)((out + rows_per_block - 1) / rows_per_block), kThreads, 0,
                as_stream(stream), decode_matvec_kernel)(x, in, w, wtype, out, accumulate, y);
  LORA4J_CUDA_LAUNCH_CHECK("decode_matvec");
}

void lora4j_cuda_decode_gate_up(const float* x, int64_t in, const void* w_gate, const void* w_up,
                                int32_t wtype, int64_t inter, float* s, void* stream) {
  LORA4J_CHECK(wtype == LORA4J_DECODE_F32 || wtype == LORA4J_DECODE_BF16,
               "decode: weight type must be 0 (f32) or 1 (bf16)");
  if (inter == 0) return;
  const int64_t rows_per_block = kThreads / 32;
  LORA4J_LAUNCH((unsigned)((inter + rows_per_block - 1) / rows_per_block), kThreads, 0,
                as_stream(stream), decode_gate_up_kernel)(x, in, w_gate, w_up, wtype, inter, s);
  LORA4J_CUDA_LAUNCH_CHECK("decode_gate_up");
}

void lora4j_cuda_decode_attention(float* q, const float* k, const float* v, int32_t pos,
                                  const float* inv_freq, float* k_cache, float* v_cache,
                                  int64_t cache_len, int64_t start, int64_t Hq, int64_t Hkv,
                                  int64_t D, float* out, void* stream) {
  LORA4J_CHECK(pos >= 0 && pos < cache_len, "decode attention: position outside the cache");
  LORA4J_CHECK(start >= 0 && start <= pos, "decode attention: window start after the position");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads must be a multiple of KV heads");
  LORA4J_CHECK(D % 2 == 0 && D <= 1024, "decode attention: head_dim must be even and <= 1024");
  const int64_t len = pos + 1 - start;
  const size_t shared = sizeof(float) * static_cast<size_t>(2 * D + len);
  // 48 KiB without opt-in holds the dynamic part and the kernel's static red[32].
  LORA4J_CHECK(shared + 32 * sizeof(float) <= 48 * 1024,
               "decode attention supports at most ~12000 attended positions");
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  LORA4J_LAUNCH((unsigned)Hq, kThreads, shared, as_stream(stream), decode_step_attention_kernel)(
      q, k, v, pos, inv_freq, k_cache, v_cache, start, Hq, Hkv, D, scale, out);
  LORA4J_CUDA_LAUNCH_CHECK("decode_attention");
}

void lora4j_cuda_decode_embedding(const float* table, int64_t vocab, int64_t dim, int32_t token,
                                  float* out, void* stream) {
  LORA4J_CHECK(token >= 0 && token < vocab, "embedding: id " + std::to_string(token) +
                                                " outside [0, " + std::to_string(vocab) + ")");
  LORA4J_CUDA_CHECK(cudaMemcpyAsync(out, table + static_cast<int64_t>(token) * dim,
                                    sizeof(float) * dim, cudaMemcpyDeviceToDevice,
                                    as_stream(stream)));
}

}  // extern "C"
