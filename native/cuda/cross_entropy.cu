// Cross-entropy over logits, CUDA. CPU twin and oracle: native/cpu/cross_entropy.cpp.
//   lse_t = max + log sum_v exp(z - max);  loss_t = lse_t - z[t, y_t]  (0 for y_t = -100)
//   dz[t, v] = scale (exp(z[t, v] - lse_t) - [v == y_t])                (0 rows for -100)
// One block per row; loss_sum by one block in double, in fixed order (deterministic).
// A label outside [0, V) that is not -100 gives a NaN loss / NaN gradient row.
//
// Vocabulary-chunked twins (math in ops.h, CPU oracle lora4j_ce_chunk_* in cross_entropy.cpp):
//   stats:    one block per row: slice max m', S = S exp(m - m') + sum exp(z - m'), z_y if in slice
//   finalize: one thread per row: lse = m + log S, loss = lse - z_y; loss_sum by sum_kernel
//   grad:     one block per row, in place: dz = scale (exp(z - lse) - onehot(y - v0))
#include "lora4j/ops.h"
#include "cuda/cuda_common.cuh"

namespace {

constexpr int kThreads = 512;

__device__ float block_reduce(float v, float* sh, bool is_max) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, u) : v + u;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float r = sh[0];
  for (int i = 1; i < (int)(blockDim.x >> 5); i++) r = is_max ? fmaxf(r, sh[i]) : r + sh[i];
  return r;
}

__device__ float row_lse(const float* z, int64_t V, float* sh) {
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, z[v]);
  m = block_reduce(m, sh, true);
  float s = 0.0f;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) s += expf(z[v] - m);
  s = block_reduce(s, sh, false);
  return m + logf(s);
}

__global__ void ce_fwd_kernel(const float* __restrict__ logits, const int32_t* __restrict__ labels,
                              int64_t V, float* __restrict__ loss) {
  __shared__ float sh[32];
  const int64_t t = blockIdx.x;
  const int32_t y = labels[t];
  if (y == LORA4J_IGNORE_INDEX) {
    if (threadIdx.x == 0) loss[t] = 0.0f;
    return;
  }
  const float* z = logits + t * V;
  const float lse = row_lse(z, V, sh);
  if (threadIdx.x == 0) loss[t] = (y >= 0 && y < V) ? lse - z[y] : __int_as_float(0x7fc00000);
}

__global__ void sum_kernel(const float* __restrict__ loss, int64_t T, float* __restrict__ out) {
  __shared__ double sh[1024];
  double s = 0.0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) s += loss[t];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(sh[0]);
}

__global__ void ce_bwd_kernel(const float* logits, const int32_t* __restrict__ labels, int64_t V,
                              float scale, float* dlogits) {
  __shared__ float sh[32];
  const int64_t t = blockIdx.x;
  const int32_t y = labels[t];
  float* dz = dlogits + t * V;
  if (y == LORA4J_IGNORE_INDEX) {
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) dz[v] = 0.0f;
    return;
  }
  const float* z = logits + t * V;
  const float lse = row_lse(z, V, sh);  // ends with barriers: z is fully read before writes
  const bool valid = y >= 0 && y < V;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(z[v] - lse) * scale;
    dz[v] = !valid ? __int_as_float(0x7fc00000) : (v == y ? p - scale : p);
  }
}

__global__ void ce_chunk_stats_kernel(const float* __restrict__ logits,
                                      const int32_t* __restrict__ labels, int64_t vc, int64_t v0,
                                      int first, float* run_max, float* run_sum,
                                      float* target_logit) {
  __shared__ float sh[32];
  const int64_t t = blockIdx.x;
  const int32_t y = labels[t];
  if (y == LORA4J_IGNORE_INDEX) {
    if (first && threadIdx.x == 0) run_max[t] = run_sum[t] = target_logit[t] = 0.0f;
    return;
  }
  const float* z = logits + t * vc;
  float ms = -INFINITY;
  for (int64_t v = threadIdx.x; v < vc; v += blockDim.x) ms = fmaxf(ms, z[v]);
  ms = block_reduce(ms, sh, true);
  const float m = first ? ms : fmaxf(run_max[t], ms);
  float s = 0.0f;
  for (int64_t v = threadIdx.x; v < vc; v += blockDim.x) s += expf(z[v] - m);
  s = block_reduce(s, sh, false);
  if (threadIdx.x == 0) {
    const float prev = first ? 0.0f : run_sum[t] * expf(run_max[t] - m);
    run_max[t] = m;
    run_sum[t] = prev + s;
    if (y >= v0 && y < v0 + vc) target_logit[t] = z[y - v0];
    else if (first) target_logit[t] = 0.0f;
  }
}

__global__ void ce_chunk_finalize_kernel(const int32_t* __restrict__ labels,
                                         const float* __restrict__ run_max,
                                         const float* __restrict__ run_sum,
                                         const float* __restrict__ target_logit, int64_t n,
                                         float* __restrict__ lse, float* __restrict__ loss) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= n) return;
  if (labels[t] == LORA4J_IGNORE_INDEX) {
    lse[t] = 0.0f;
    loss[t] = 0.0f;
    return;
  }
  const float l = run_max[t] + logf(run_sum[t]);
  lse[t] = l;
  loss[t] = l - target_logit[t];
}

__global__ void ce_chunk_grad_kernel(float* logits, const int32_t* __restrict__ labels,
                                     int64_t vc, int64_t v0, const float* __restrict__ lse,
                                     float scale) {
  const int64_t t = blockIdx.x;
  const int32_t y = labels[t];
  float* z = logits + t * vc;
  if (y == LORA4J_IGNORE_INDEX) {
    for (int64_t v = threadIdx.x; v < vc; v += blockDim.x) z[v] = 0.0f;
    return;
  }
  const float l = lse[t];
  for (int64_t v = threadIdx.x; v < vc; v += blockDim.x) {
    const float p = expf(z[v] - l) * scale;
    z[v] = v0 + v == y ? p - scale : p;
  }
}

}  // namespace

extern "C" {

void lora4j_cuda_ce_fwd(const float* logits, const int32_t* labels, int64_t T, int64_t V,
                        float* loss, float* loss_sum, void* stream) {
  if (T == 0) return;
  LORA4J_LAUNCH(static_cast<unsigned>(T), kThreads, 0, as_stream(stream), ce_fwd_kernel)(
      logits, labels, V, loss);
  LORA4J_CUDA_LAUNCH_CHECK("ce_fwd");
  if (loss_sum) {
    LORA4J_LAUNCH(1, 1024, 0, as_stream(stream), sum_kernel)(loss, T, loss_sum);
    LORA4J_CUDA_LAUNCH_CHECK("ce_fwd loss_sum");
  }
}

void lora4j_cuda_ce_bwd(const float* logits, const int32_t* labels, int64_t T, int64_t V,
                        float scale, float* dlogits, void* stream) {
  if (T == 0) return;
  LORA4J_LAUNCH(static_cast<unsigned>(T), kThreads, 0, as_stream(stream), ce_bwd_kernel)(
      logits, labels, V, scale, dlogits);
  LORA4J_CUDA_LAUNCH_CHECK("ce_bwd");
}

void lora4j_cuda_ce_chunk_stats(const float* logits, const int32_t* labels, int64_t n, int64_t vc,
                                int64_t v0, int32_t first, float* row_max, float* row_sum,
                                float* target_logit, void* stream) {
  LORA4J_CHECK(vc >= 1 && v0 >= 0, "cuda_ce_chunk_stats: slice must be non-empty, v0 >= 0");
  if (n == 0) return;
  LORA4J_LAUNCH(static_cast<unsigned>(n), kThreads, 0, as_stream(stream), ce_chunk_stats_kernel)(
      logits, labels, vc, v0, first, row_max, row_sum, target_logit);
  LORA4J_CUDA_LAUNCH_CHECK("ce_chunk_stats");
}

void lora4j_cuda_ce_chunk_finalize(const int32_t* labels, const float* row_max,
                                   const float* row_sum, const float* target_logit, int64_t n,
                                   float* lse, float* loss, float* loss_sum, void* stream) {
  if (n == 0) {
    if (loss_sum) LORA4J_CUDA_CHECK(cudaMemsetAsync(loss_sum, 0, sizeof(float), as_stream(stream)));
    return;
  }
  const unsigned blocks = static_cast<unsigned>((n + 255) / 256);
  LORA4J_LAUNCH(blocks, 256, 0, as_stream(stream), ce_chunk_finalize_kernel)(
      labels, row_max, row_sum, target_logit, n, lse, loss);
  LORA4J_CUDA_LAUNCH_CHECK("ce_chunk_finalize");
  if (loss_sum) {
    LORA4J_LAUNCH(1, 1024, 0, as_stream(stream), sum_kernel)(loss, n, loss_sum);
    LORA4J_CUDA_LAUNCH_CHECK("ce_chunk_finalize loss_sum");
  }
}

void lora4j_cuda_ce_chunk_grad(float* logits, const int32_t* labels, int64_t n, int64_t vc,
                               int64_t v0, const float* lse, float scale, void* stream) {
  LORA4J_CHECK(vc >= 1 && v0 >= 0, "cuda_ce_chunk_grad: slice must be non-empty, v0 >= 0");
  if (n == 0) return;
  LORA4J_LAUNCH(static_cast<unsigned>(n), kThreads, 0, as_stream(stream), ce_chunk_grad_kernel)(
      logits, labels, vc, v0, lse, scale);
  LORA4J_CUDA_LAUNCH_CHECK("ce_chunk_grad");
}

}  // extern "C"
