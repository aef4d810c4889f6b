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
// Every product is one GEMM launch whose operand loads and epilogue take an optional
// elementwise mask, so X ⊙ M and B·A are never stored:
//   C[M,N] = alpha * (op(A ⊙ maskA) · op(B ⊙ maskB)) ⊙ maskC + beta * C      (row-major)
// Where M, N and K are all >= 64 it is the bf16 tensor-core GEMM of mma_gemm.cuh (operands
// rounded to bf16 after the mask, fp32 accumulation: PEFT's bf16 mixed precision); below that
// (LoRA's rank-r products at r < 64, short sequences) the fp32 SIMT GEMM here: 64x64 outputs
// per 256-thread block, 4x4 per thread, k-steps of 16 through shared memory. lora4j_cuda_sgemm
// is the same dispatch, so the dense base matmul and the lm_head of the chunked cross-entropy
// (train/ChunkedCrossEntropy: logits = X·Wᵀ, dX = dZ·W) run on tensor cores too.
// Hand-written (no cuBLAS dependency, DESIGN.md §2).
#include "lora4j/lora.h"
#include "cuda/cuda_common.cuh"
#include "cuda/mma_gemm.cuh"

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads)
gemm_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A, int64_t lda,
            const float* __restrict__ mA, const float* __restrict__ B, int64_t ldb,
            const float* __restrict__ mB, float beta, float* C, int64_t ldc,
            const float* __restrict__ mC) {
  __shared__ float As[kBK][kBM + 4];
  __shared__ float Bs[kBK][kBN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    // A tile: op(A)[m0..m0+64, k0..k0+16]
#pragma unroll
    for (int e4 = 0; e4 < (kBM * kBK) / kThreads; e4++) {
      const int e = tid + e4 * kThreads;
      int mm, kk;
      if (TA) { kk = e / kBM; mm = e % kBM; } else { mm = e / kBK; kk = e % kBK; }
      const int64_t gm = m0 + mm, gk = k0 + kk;
      float val = 0.0f;
      if (gm < M && gk < K) {
        const int64_t off = TA ? gk * lda + gm : gm * lda + gk;
        val = A[off];
        if (mA) val *= mA[off];
      }
      As[kk][mm] = val;
    }
    // B tile: op(B)[k0..k0+16, n0..n0+64]
#pragma unroll
    for (int e4 = 0; e4 < (kBN * kBK) / kThreads; e4++) {
      const int e = tid + e4 * kThreads;
      int nn, kk;
      if (TB) { nn = e / kBK; kk = e % kBK; } else { kk = e / kBN; nn = e % kBN; }
      const int64_t gn = n0 + nn, gk = k0 + kk;
      float val = 0.0f;
      if (gn < N && gk < K) {
        const int64_t off = TB ? gn * ldb + gk : gk * ldb + gn;
        val = B[off];
        if (mB) val *= mB[off];
      }
      Bs[kk][nn] = val;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int64_t gm = m0 + ty + 16 * i;
    if (gm >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int64_t gn = n0 + tx + 16 * j;
      if (gn >= N) continue;
      const int64_t off = gm * ldc + gn;
      float v = alpha * acc[i][j];
      if (mC) v *= mC[off];
      C[off] = beta == 0.0f ? v : v + beta * C[off];
    }
  }
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* mA, const float* B, int64_t ldb, const float* mB, float beta,
          float* C, int64_t ldc, const float* mC, cudaStream_t st, const char* name) {
  if (M >= 64 && N >= 64 && K >= 64) {
    lora4j_mma::gemm<float>(ta, tb, M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC, st, name);
    return;
  }
  if (M == 0 || N == 0) return;
  LORA4J_CHECK((M + kBM - 1) / kBM <= 65535, std::string(name) + ": M too large for the grid");
  const dim3 grid(static_cast<unsigned>((N + kBN - 1) / kBN),
                  static_cast<unsigned>((M + kBM - 1) / kBM));
  if (!ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<false, false>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else if (!ta && tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<false, true>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else if (ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<true, false>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<true, true>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  LORA4J_CUDA_LAUNCH_CHECK(name);
}

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
