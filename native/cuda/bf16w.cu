// bf16-stored weights read with fp32 compute, CUDA (storage.h). CPU twin and oracle:
// native/cpu/storage.cpp.
//
//   gemm_w:       C[M,N] = alpha·op(A)·op(Bw) + beta·C, Bw a bf16 weight widened exactly to fp32
//                 as its tile enters shared memory; A, C fp32; fp32 FMA accumulation.
//   (embedding_w, the bf16 table gather, is in embedding.cu beside the fp32 one)
//   widen_f32:    out[i] = widen(in[i])
// Products with M, N, K >= 64 run on tensor cores (mma_gemm.cuh: A rounded to bf16, the bf16 weight
// as is, fp32 accumulation); smaller ones on a SIMT kernel (64x64 outputs per 256-thread block, 4x4
// per thread, k-steps of 16) that widens the weight exactly. An F32 weight goes to
// lora4j_cuda_sgemm unchanged.
#include "lora4j/storage.h"
#include "lora4j/lora.h"
#include "lora4j/nf4.h"
#include "cuda/cuda_common.cuh"
#include "cuda/mma_gemm.cuh"

#include <cstdint>
#include <string>

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

__device__ __forceinline__ float widen(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

// A [M, K] (or [K, M] when TA) fp32; B [K, N] (or [N, K] when TB) bf16, row strides lda/ldb.
template <bool TA, bool TB>
__global__ void __launch_bounds__(kThreads)
gemm_bf16w_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
                  int64_t lda, const uint16_t* __restrict__ B, int64_t ldb, float beta, float* C,
                  int64_t ldc) {
  __shared__ float As[kBK][kBM + 4];
  __shared__ float Bs[kBK][kBN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
#pragma unroll
    for (int e4 = 0; e4 < (kBM * kBK) / kThreads; e4++) {  // op(A)[m0..+64, k0..+16]
      const int e = tid + e4 * kThreads;
      int mm, kk;
      if (TA) { kk = e / kBM; mm = e % kBM; } else { mm = e / kBK; kk = e % kBK; }
      const int64_t gm = m0 + mm, gk = k0 + kk;
      As[kk][mm] = (gm < M && gk < K) ? A[TA ? gk * lda + gm : gm * lda + gk] : 0.0f;
    }
#pragma unroll
    for (int e4 = 0; e4 < (kBN * kBK) / kThreads; e4++) {  // op(B)[k0..+16, n0..+64], widened
      const int e = tid + e4 * kThreads;
      int nn, kk;
      if (TB) { nn = e / kBK; kk = e % kBK; } else { kk = e / kBN; nn = e % kBN; }
      const int64_t gn = n0 + nn, gk = k0 + kk;
      Bs[kk][nn] = (gn < N && gk < K) ? widen(B[TB ? gn * ldb + gk : gk * ldb + gn]) : 0.0f;
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
      const float v = alpha * acc[i][j];
      C[off] = beta == 0.0f ? v : v + beta * C[off];
    }
  }
}

__global__ void widen_bf16_kernel(const uint16_t* __restrict__ in, int64_t n, float* __restrict__ out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = widen(in[i]);
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8);
}

void check_dtype(int32_t dtype, const char* op) {
  LORA4J_CHECK(dtype == LORA4J_DTYPE_F32 || dtype == LORA4J_DTYPE_BF16,
               std::string(op) + ": weight dtype must be 0 (f32) or 1 (bf16), got " + std::to_string(dtype));
}

void launch_gemm_bf16w(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, cudaStream_t st) {
  if (M >= 64 && N >= 64 && K >= 64) {  // the large products on tensor cores, as lora.cu's fp32 GEMM
    lora4j_mma::gemm<__nv_bfloat16>(ta, tb, M, N, K, alpha, A, lda, nullptr,
                                    reinterpret_cast<const __nv_bfloat16*>(B), ldb, nullptr, beta, C, ldc,
                                    nullptr, st, "gemm_w (bf16)");
    return;
  }
  LORA4J_CHECK((M + kBM - 1) / kBM <= 65535, "gemm_w: M too large for the grid: " + std::to_string(M));
  const dim3 grid(static_cast<unsigned>((N + kBN - 1) / kBN), static_cast<unsigned>((M + kBM - 1) / kBM));
  if (!ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_bf16w_kernel<false, false>)(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else if (!ta && tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_bf16w_kernel<false, true>)(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else if (ta && !tb)
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_bf16w_kernel<true, false>)(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    LORA4J_LAUNCH(grid, kThreads, 0, st, gemm_bf16w_kernel<true, true>)(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  LORA4J_CUDA_LAUNCH_CHECK("gemm_w (bf16)");
}

}  // namespace

extern "C" {

void lora4j_cuda_gemm_w(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K,
                        float alpha, const float* A, int64_t lda, const void* B, int32_t b_dtype,
                        int64_t ldb, float beta, float* C, int64_t ldc, void* stream) {
  check_dtype(b_dtype, "cuda_gemm_w");
  if (b_dtype == LORA4J_DTYPE_F32) {
    lora4j_cuda_sgemm(transA, transB, M, N, K, alpha, A, lda, static_cast<const float*>(B), ldb, beta,
                      C, ldc, stream);
    return;
  }
  if (M == 0 || N == 0) return;
  // K == 0 runs the kernel with no k-steps: C = beta·C (0 when beta == 0), as the CPU's sgemm
  launch_gemm_bf16w(transA != 0, transB != 0, M, N, K, alpha, A, lda, static_cast<const uint16_t*>(B), ldb,
                    beta, C, ldc, as_stream(stream));
}

void lora4j_cuda_widen_f32(const void* in, int32_t dtype, int64_t n, float* out, void* stream) {
  check_dtype(dtype, "cuda_widen_f32");
  if (n <= 0) return;
  if (dtype == LORA4J_DTYPE_F32) {
    LORA4J_CUDA_CHECK(cudaMemcpyAsync(out, in, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                      as_stream(stream)));
    return;
  }
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), widen_bf16_kernel)(
      static_cast<const uint16_t*>(in), n, out);
  LORA4J_CUDA_LAUNCH_CHECK("widen_f32 (bf16)");
}

}  // extern "C"
