// Token embedding gather / scatter-add, CUDA. CPU twin and oracle: native/cpu/embedding.cpp.
//   out[t, :] = table[ids[t], :]     (id outside [0, vocab): the row is NaN, kernels cannot throw;
//                                    the table fp32, or bf16 widened: storage.h embedding_w)
//   dtable[ids[t], :] += dout[t, :]  (atomicAdd: summation order of duplicate ids may vary)
#include "lora4j/ops.h"
#include "lora4j/nf4.h"
#include "lora4j/storage.h"
#include "cuda/cuda_common.cuh"

namespace {

// Table elements widened to fp32: fp32 as is, bf16 (uint16 bit patterns, storage.h) exactly.
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

template <typename W>
__global__ void embedding_fwd_kernel(const int32_t* __restrict__ ids,
                                     const W* __restrict__ table, int64_t T, int64_t dim,
                                     int64_t vocab, float* __restrict__ out) {
  const int64_t n = T * dim;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / dim, d = e % dim;
    const int32_t id = ids[t];
    out[e] = (id >= 0 && id < vocab) ? widen(table[static_cast<int64_t>(id) * dim + d]) : __int_as_float(0x7fc00000);
  }
}

__global__ void embedding_bwd_kernel(const int32_t* __restrict__ ids,
                                     const float* __restrict__ dout, int64_t T, int64_t dim,
                                     int64_t vocab, float* dtable) {
  const int64_t n = T * dim;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = e / dim, d = e % dim;
    const int32_t id = ids[t];
    if (id >= 0 && id < vocab) atomicAdd(dtable + static_cast<int64_t>(id) * dim + d, dout[e]);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

}  // namespace

extern "C" {

void lora4j_cuda_embedding_fwd(const int32_t* ids, const float* table, int64_t T, int64_t dim,
                               int64_t vocab, float* out, void* stream) {
  if (T * dim == 0) return;
  LORA4J_LAUNCH(grid_for(T * dim), 256, 0, as_stream(stream), embedding_fwd_kernel<float>)(
      ids, table, T, dim, vocab, out);
  LORA4J_CUDA_LAUNCH_CHECK("embedding_fwd");
}

void lora4j_cuda_embedding_w_fwd(const int32_t* ids, const void* table, int32_t dtype, int64_t T,
                                 int64_t dim, int64_t vocab, float* out, void* stream) {
  LORA4J_CHECK(dtype == LORA4J_DTYPE_F32 || dtype == LORA4J_DTYPE_BF16,
               "cuda_embedding_w_fwd: table dtype must be 0 (f32) or 1 (bf16), got " + std::to_string(dtype));
  if (dtype == LORA4J_DTYPE_F32) {
    lora4j_cuda_embedding_fwd(ids, static_cast<const float*>(table), T, dim, vocab, out, stream);
    return;
  }
  if (T * dim == 0) return;
  LORA4J_LAUNCH(grid_for(T * dim), 256, 0, as_stream(stream), embedding_fwd_kernel<uint16_t>)(
      ids, static_cast<const uint16_t*>(table), T, dim, vocab, out);
  LORA4J_CUDA_LAUNCH_CHECK("embedding_w_fwd (bf16)");
}

void lora4j_cuda_embedding_bwd(const int32_t* ids, const float* dout, int64_t T, int64_t dim,
                               int64_t vocab, float* dtable, void* stream) {
  if (T * dim == 0) return;
  LORA4J_LAUNCH(grid_for(T * dim), 256, 0, as_stream(stream), embedding_bwd_kernel)(
      ids, dout, T, dim, vocab, dtable);
  LORA4J_CUDA_LAUNCH_CHECK("embedding_bwd");
}

}  // extern "C"
