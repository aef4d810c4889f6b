// The GEMM every CUDA product goes through (lora.cu's fused LoRA linear and lora4j_cuda_sgemm,
// bf16w.cu's bf16-weight gemm_w), with an optional elementwise mask on each operand and the output:
//   C[M,N] = alpha * (op(A ⊙ maskA) · op(B ⊙ maskB)) ⊙ maskC + beta * C      (row-major)
// A is fp32; B is fp32 or a bf16 weight (widened exactly as it is loaded). M, N and K all >= 64:
// the bf16 tensor-core GEMM of mma_gemm.cuh (fp32 accumulation); below that the fp32 SIMT GEMM
// here: 64x64 outputs per 256-thread block, 4x4 per thread, k-steps of 16 through shared memory.
#pragma once

#include "cuda/cuda_common.cuh"
#include "cuda/mma_gemm.cuh"

#include <cstdint>
#include <string>

namespace lora4j_gemm {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

template <bool TA, bool TB, typename TBv>
__global__ void __launch_bounds__(kThreads)
gemm_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A, int64_t lda,
            const float* __restrict__ mA, const TBv* __restrict__ B, int64_t ldb,
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
        val = lora4j_mma::to_float(B[off]);  // a bf16 weight widens exactly
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

template <typename TBv>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* mA, const TBv* B, int64_t ldb, const float* mB, float beta,
          float* C, int64_t ldc, const float* mC, cudaStream_t st, const char* name) {
  if (M >= 64 && N >= 64 && K >= 64) {
    lora4j_mma::gemm<TBv>(ta, tb, M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC, st, name);
    return;
  }
  if (M == 0 || N == 0) return;
  LORA4J_CHECK((M + kBM - 1) / kBM <= 65535, std::string(name) + ": M too large for the grid");
  const dim3 grid(static_cast<unsigned>((N + kBN - 1) / kBN),
                  static_cast<unsigned>((M + kBM - 1) / kBM));
  if (!ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<false, false, TBv>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else if (!ta && tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<false, true, TBv>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else if (ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<true, false, TBv>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  else
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_kernel<true, true, TBv>)(
        M, N, K, alpha, A, lda, mA, B, ldb, mB, beta, C, ldc, mC);
  LORA4J_CUDA_LAUNCH_CHECK(name);
}

}  // namespace lora4j_gemm
