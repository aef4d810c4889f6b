// Fused LoRA linear, CUDA. CPU twin and oracle: native/cpu/lora.cpp. Math (lora.h):
//
//   X [T, in], W [out, in] (or null), A [r, in], B [out, r], M [T, in] mask (or null), s = scale
//   forward:   XA = (X ⊙ M) · Aᵀ                      [T, r]
//              Y  = X · Wᵀ + s · XA · Bᵀ              (W == null: Y += s · XA · Bᵀ)
//   backward:  G  = dY · B                            [T, r]  (workspace)
//              dB += s · dYᵀ · XA                      [out, r]
//              dA += s · Gᵀ · (X ⊙ M)                  [r, in]
//              dX  = [dX +] [dY · W] + s · (G · A) ⊙ M  [T, in]
//
// Every product is one launch of gemm.cuh's GEMM, whose operand loads and epilogue take an
// optional elementwise mask, so X ⊙ M and B·A are never stored; it runs on tensor cores where M, N
// and K are all >= 64 (PEFT's bf16 mixed precision) and as fp32 SIMT below that (LoRA's rank-r
// products at r < 64, short sequences). lora4j_cuda_sgemm is the same GEMM, so the dense base
// matmul and the lm_head of the chunked cross-entropy run on tensor cores too.
// Hand-written (no cuBLAS dependency, DESIGN.md §2).
#include "lora4j/lora.h"
#include "cuda/cuda_common.cuh"
#include "cuda/gemm.cuh"

namespace {

using lora4j_gemm::gemm;

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

__global__ void dropout_mask_kernel(uint64_t seed, int64_t n, float p, float keep, float* mask) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(i)));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    mask[i] = u >= p ? keep : 0.0f;
  }
}

}  // namespace

extern "C" {

void lora4j_cuda_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K,
                       float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                       float beta, float* C, int64_t ldc, void* stream) {
  gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, nullptr, B, ldb, nullptr, beta, C, ldc,
       nullptr, as_stream(stream), "cuda_sgemm");
}

void lora4j_cuda_lora_fwd(const float* x, const float* w, const float* a, const float* b,
                          const float* drop_mask, int64_t T, int64_t in, int64_t out, int64_t r,
                          float scale, float* y, float* xa, void* stream) {
  cudaStream_t st = as_stream(stream);
  gemm(false, true, T, r, in, 1.0f, x, in, drop_mask, a, in, nullptr, 0.0f, xa, r, nullptr, st,
       "lora_fwd XA");
  if (w) gemm(false, true, T, out, in, 1.0f, x, in, nullptr, w, in, nullptr, 0.0f, y, out, nullptr,
              st, "lora_fwd X·Wᵀ");
  gemm(false, true, T, out, r, scale, xa, r, nullptr, b, r, nullptr, 1.0f, y, out, nullptr, st,
       "lora_fwd Y += s XA·Bᵀ");
}

void lora4j_cuda_lora_bwd(const float* dy, const float* x, const float* w, const float* a,
                          const float* b, const float* drop_mask, const float* xa, int64_t T,
                          int64_t in, int64_t out, int64_t r, float scale, float* dx,
                          int32_t accumulate_dx, float* da, float* db, float* workspace,
                          void* stream) {
  cudaStream_t st = as_stream(stream);
  float* g = workspace;  // [T, r]
  if (dx || da)
    gemm(false, false, T, r, out, 1.0f, dy, out, nullptr, b, r, nullptr, 0.0f, g, r, nullptr, st,
         "lora_bwd G = dY·B");
  if (db)
    gemm(true, false, out, r, T, scale, dy, out, nullptr, xa, r, nullptr, 1.0f, db, r, nullptr, st,
         "lora_bwd dB");
  if (dx) {
    bool acc = accumulate_dx != 0;
    if (w) {
      gemm(false, false, T, in, out, 1.0f, dy, out, nullptr, w, in, nullptr, acc ? 1.0f : 0.0f, dx,
           in, nullptr, st, "lora_bwd dY·W");
      acc = true;
    }
    gemm(false, false, T, in, r, scale, g, r, nullptr, a, in, nullptr, acc ? 1.0f : 0.0f, dx, in,
         drop_mask, st, "lora_bwd dX LoRA term");
  }
  if (da)
    gemm(true, false, r, in, T, scale, g, r, nullptr, x, in, drop_mask, 1.0f, da, in, nullptr, st,
         "lora_bwd dA");
}

void lora4j_cuda_dropout_mask(uint64_t seed, int64_t n, float p, float* mask, void* stream) {
  if (n == 0) return;
  const float keep = 1.0f / (1.0f - p);
  const int64_t blocks = (n + 255) / 256;
  LORA4J_LAUNCH(static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8), 256, 0,
                as_stream(stream), dropout_mask_kernel)(seed, n, p, keep, mask);
  LORA4J_CUDA_LAUNCH_CHECK("dropout_mask");
}

}  // extern "C"
