// bf16 tensor-core building blocks (mma.sync m16n8k16, fp32 accumulation) and a reusable GEMM on
// them. Used by flash_attention.cu (QKᵀ, PV and the backward's products) and lora.cu (every
// product with M, N, K >= 64: dense base, LoRA, the lm_head of the chunked cross-entropy).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"),
// g = lane / 4, q = lane % 4; each register holds two bf16, the lower k index in the low half:
//   A 16x16 (m, k):  a0 (g, 2q..2q+1)  a1 (g+8, 2q..)  a2 (g, 2q+8..)  a3 (g+8, 2q+8..)
//   B 16x8  (k, n):  b0 (k 2q..2q+1, n g)  b1 (k 2q+8.., n g)
//   C 16x8  (m, n):  c0, c1 (g, 2q..2q+1)  c2, c3 (g+8, 2q..2q+1)
// A C fragment pair (columns 0-7 and 8-15) is, packed to bf16, an A fragment with k = those 16
// columns: flash attention feeds P (and dS) to the next product without shared memory.
//
// Shared-memory tiles are bf16 (uint16_t) with a row pitch `ld` in elements; the frag_*
// loaders read either storage order, so no operand is ever transposed in memory:
//   frag_a      A from [m][k] storage      frag_b_nk  B from [n][k] storage (k contiguous)
//                                          frag_b_kn  B from [k][n] storage (n contiguous)
#pragma once
#include "cuda/cuda_common.cuh"

#include <cuda_bf16.h>

#include <cstdint>
#include <string>

namespace lora4j_mma {

__device__ __forceinline__ uint16_t f2bf(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float bf2f(uint16_t v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Two fp32 values as one bf16x2 register: lo in bits 0-15 (the lower k index).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(f2bf(lo)) | (uint32_t(f2bf(hi)) << 16);
}

// D = A·B + D, one warp, every lane with its fragments. In the emulation build its twin gathers
// the fragments of all 32 lanes by the PTX ISA layout (native/emu/emu.cpp).
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(LORA4J_CUDA_EMULATED)
  const float acc[4] = {c[0], c[1], c[2], c[3]};
  lora4j_emu::mma_m16n8k16_bf16(c, a, b, acc);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ uint32_t ld_pair(const uint16_t* lo, const uint16_t* hi) {
  return uint32_t(*lo) | (uint32_t(*hi) << 16);
}

// A rows m0..m0+15, columns k0..k0+15 of a [m][k] tile (ld even, k0 even).
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const uint16_t* s, int ld, int m0, int k0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const uint16_t* p = s + (m0 + g) * ld + k0 + 2 * q;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * ld);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * ld + 8);
}

// B k0..k0+15 x n0..n0+7 of a tile stored [n][k] (the "col" operand as it lies).
__device__ __forceinline__ void frag_b_nk(uint32_t (&b)[2], const uint16_t* s, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const uint16_t* p = s + (n0 + g) * ld + k0 + 2 * q;
  b[0] = ld32(p);
  b[1] = ld32(p + 8);
}

// B k0..k0+15 x n0..n0+7 of a tile stored [k][n]: each register gathers two rows.
__device__ __forceinline__ void frag_b_kn(uint32_t (&b)[2], const uint16_t* s, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const uint16_t* p = s + (k0 + 2 * q) * ld + n0 + g;
  b[0] = ld_pair(p, p + ld);
  b[1] = ld_pair(p + 8 * ld, p + 9 * ld);
}

// C fragments c[j] (16 x 8, columns 8j..8j+7) j = 2kk, 2kk+1 as the A fragment of k = 16kk..+15.
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// ---- GEMM ------------------------------------------------------------------------------------
//   C[M,N] = alpha * (op(A ⊙ mA) · op(B ⊙ mB)) ⊙ mC + beta * C        row-major, fp32 accumulation
// A is fp32 in global memory; B is fp32 or bf16 (TB). Masks (fp32, same layout and offsets as
// the matrix they scale) are optional: LoRA's dropout, applied before the rounding to bf16.
// One CTA computes a kBM x kBN tile with 4 warps (2 x 2, 32 x 32 per warp = 2 x 4 mma tiles),
// walking K in steps of kBK: both operands are converted to bf16 on their way to shared memory,
// A as sA[m][k], B as sB[n][k], whatever their storage order in global memory (the thread ->
// element map makes the global loads follow the contiguous dimension). Edges are zero-filled on
// load and guarded on store, so any M, N, K work; the caller picks this path where M, N, K >= 64.
constexpr int kBM = 64, kBN = 64, kBK = 32, kLds = kBK + 8, kGemmThreads = 128;

// Element (r, k) of op(X) where op(X) is [rows, K]: X[r*ld + k], or X[k*ld + r] when transposed.
template <typename T>
__device__ __forceinline__ float load_op(const T* __restrict__ x, const float* __restrict__ mx, bool trans,
                                         int64_t ld, int64_t r, int64_t k) {
  const int64_t off = trans ? k * ld + r : r * ld + k;
  float v = to_float(x[off]);
  if (mx) v *= mx[off];
  return v;
}

// One operand tile (kBM rows of op(X), K columns k0..k0+kBK) into s[row][k] as bf16.
template <typename T>
__device__ __forceinline__ void stage(uint16_t* s, const T* __restrict__ x, const float* __restrict__ mx,
                                      bool trans, int64_t ld, int64_t rows, int64_t K, int64_t r0, int64_t k0) {
  for (int e = threadIdx.x; e < kBM * kBK; e += kGemmThreads) {
    // consecutive threads walk the dimension that is contiguous in global memory
    const int rr = trans ? e % kBM : e / kBK, kk = trans ? e / kBM : e % kBK;
    const int64_t r = r0 + rr, k = k0 + kk;
    s[rr * kLds + kk] = (r < rows && k < K) ? f2bf(load_op(x, mx, trans, ld, r, k)) : uint16_t(0);
  }
}

template <typename TB>
__global__ void __launch_bounds__(kGemmThreads)
gemm_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A,
            int64_t lda, const float* __restrict__ mA, const TB* __restrict__ B, int64_t ldb,
            const float* __restrict__ mB, float beta, float* C, int64_t ldc, const float* __restrict__ mC) {
  __shared__ __align__(16) uint16_t sA[kBM * kLds];
  __shared__ __align__(16) uint16_t sB[kBN * kLds];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = int64_t(blockIdx.y) * kBM, n0 = int64_t(blockIdx.x) * kBN;
  float acc[2][4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
    stage(sA, A, mA, ta, lda, M, K, m0, k0);
    stage(sB, B, mB, !tb, ldb, N, K, n0, k0);  // op(B) is [K, N]: its rows n are B's columns
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; i++) frag_a(a[i], sA, kLds, wm * 32 + i * 16, kk);
#pragma unroll
      for (int j = 0; j < 4; j++) frag_b_nk(b[j], sB, kLds, kk, wn * 32 + j * 8);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mma(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int64_t r = m0 + wm * 32 + i * 16 + g + (e >= 2 ? 8 : 0);
        const int64_t c = n0 + wn * 32 + j * 8 + 2 * q + (e & 1);
        if (r >= M || c >= N) continue;
        const int64_t off = r * ldc + c;
        float v = alpha * acc[i][j][e];
        if (mC) v *= mC[off];
        C[off] = beta == 0.0f ? v : v + beta * C[off];
      }
}

// Launcher on raw device pointers (stream-ordered; K == 0 gives beta * C).
template <typename TB>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* mA, const TB* B, int64_t ldb, const float* mB, float beta, float* C, int64_t ldc,
          const float* mC, cudaStream_t st, const char* name) {
  if (M == 0 || N == 0) return;
  LORA4J_CHECK((M + kBM - 1) / kBM <= 65535, std::string(name) + ": M too large for the grid");
  const dim3 grid(static_cast<unsigned>((N + kBN - 1) / kBN), static_cast<unsigned>((M + kBM - 1) / kBM));
  LORA4J_LAUNCH(grid, kGemmThreads, 0, st, gemm_kernel<TB>)(ta, tb, M, N, K, alpha, A, lda, mA, B, ldb, mB,
                                                            beta, C, ldc, mC);
  LORA4J_CUDA_LAUNCH_CHECK(name);
}

}  // namespace lora4j_mma
