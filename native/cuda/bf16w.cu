// bf16-stored weights read with fp32 compute, CUDA (storage.h). CPU twin and oracle:
// native/cpu/storage.cpp.
//
//   gemm_w:       C[M,N] = alpha·op(A)·op(Bw) + beta·C, Bw a bf16 weight widened exactly to fp32
//                 as its tile enters shared memory; A, C fp32; fp32 FMA accumulation.
//   (embedding_w, the bf16 table gather, is in embedding.cu beside the fp32 one)
//   widen_f32:    out[i] = widen(in[i])
//   round_bf16:   out[i] = bf16(x[i]) (round to nearest even, NaN -> 0x7fc0), x[i] = widen(out[i]):
//                 an activation kept in bf16 and the value the forward goes on with
// The GEMM is gemm.cuh's, the one lora4j_cuda_sgemm uses: tensor cores where M, N, K >= 64 (A
// rounded to bf16, the bf16 weight as is, fp32 accumulation), else the SIMT kernel, which widens
// the weight exactly. An F32 weight goes to lora4j_cuda_sgemm unchanged.
#include "lora4j/storage.h"
#include "lora4j/lora.h"
#include "lora4j/nf4.h"
#include "cuda/cuda_common.cuh"
#include "cuda/gemm.cuh"

#include <cstdint>
#include <string>

namespace {

__device__ __forceinline__ float widen(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

__global__ void widen_bf16_kernel(const uint16_t* __restrict__ in, int64_t n, float* __restrict__ out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = widen(in[i]);
}

// fp32 -> bf16 bits, round to nearest even, written out as the CPU twin does (native/cpu/storage.cpp)
// rather than through __float2bfloat16, so that the emulator's cuda_bf16.h is not what is tested.
__device__ __forceinline__ uint16_t narrow(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

__global__ void round_bf16_kernel(float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint16_t b = narrow(x[i]);
    out[i] = b;
    x[i] = widen(b);
  }
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
  lora4j_gemm::gemm(ta, tb, M, N, K, alpha, A, lda, nullptr, reinterpret_cast<const __nv_bfloat16*>(B), ldb,
                    nullptr, beta, C, ldc, nullptr, st, "gemm_w (bf16)");
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

void lora4j_cuda_round_bf16(float* x, int64_t n, uint16_t* out, void* stream) {
  if (n <= 0) return;
  LORA4J_LAUNCH(grid_for(n), 256, 0, as_stream(stream), round_bf16_kernel)(x, n, out);
  LORA4J_CUDA_LAUNCH_CHECK("round_bf16");
}

}  // extern "C"
