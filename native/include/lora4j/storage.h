// lora4j compact weight storage: frozen weights held in bf16 and NF4 block scales held in
// bitsandbytes' double-quantized form, read by the kernels with fp32 compute. The public C API.
//
// bf16 storage (DESIGN.md §4 "storage"): a frozen dense weight (projection, embedding, lm_head)
// is stored as bf16 bit patterns (uint16, the upper half of the fp32) and widened exactly to fp32
// where it is read; activations, accumulation and outputs stay fp32. A weight converted from fp32
// to bf16 (round to nearest even, once, at load) carries a relative error <= 2^-9 per element.
//
// Double-quantized NF4 scales (bitsandbytes compress_statistics, nf4.h): the block scale of NF4
// block b is absmax[b] = map[qabsmax[b]] * nested_absmax[b / 256] + offset (fp32, rounded per
// operation: the product, then the sum), map = lora4j_dynamic_map. The *_dq matmuls compute it
// inside the kernel, so no fp32 absmax copy exists; their results equal lora4j_nf4_matmul_* on
// lora4j_nf4_dequant_absmax's output bit for bit (same scales, same kernels).
//
// bf16 activations (mixed precision, as PEFT/Unsloth with bf16=True): an activation that is kept
// for the backward (a decoder layer's input, the input of a projection) is rounded to bf16 once,
// where it is stored, and the forward goes on with that same rounded value, so that a backward
// (or a recomputed forward under gradient checkpointing) that widens the stored copy sees exactly
// what the forward used. Accumulation, norms' statistics, softmax and the loss stay fp32.
//
// Weight dtype codes are nf4.h's LORA4J_DTYPE_F32 (0) and LORA4J_DTYPE_BF16 (1).
// Every function exists for the CPU and for CUDA (lora4j_cuda_*, device pointers, a cudaStream_t
// passed as void*). Errors throw std::runtime_error; arguments are validated in Java.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major (lora4j_sgemm's semantics), where
// B is a stored weight of dtype b_dtype (F32: exactly lora4j_sgemm; BF16: widened to fp32 in
// cache-sized panels on the CPU, in shared-memory tiles on CUDA). beta == 0 ignores C.
// A: fp32 with row stride lda; B: [K, N] (transB 0) or [N, K] (transB 1), row stride ldb
// elements; C: fp32 with row stride ldc.
void lora4j_gemm_w(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const void* B, int32_t b_dtype, int64_t ldb,
                   float beta, float* C, int64_t ldc);

// out[t, :] = table[ids[t], :] widened to fp32.
// ids: [T] int32 in [0, vocab); table: [vocab, dim] of dtype; out: [T, dim] fp32.
void lora4j_embedding_w_fwd(const int32_t* ids, const void* table, int32_t dtype, int64_t T,
                            int64_t dim, int64_t vocab, float* out);

// out[i] = in[i] widened to fp32 (exact). in: [n] of dtype; out: [n] fp32.
void lora4j_widen_f32(const void* in, int32_t dtype, int64_t n, float* out);

// out[i] = bf16(x[i]) (round to nearest even; a NaN becomes 0x7fc0, as torch), and x[i] is
// replaced by widen(out[i]): the kept bf16 copy and the fp32 value the forward goes on with agree.
// x: [n] fp32, rounded in place; out: [n] bf16 bit patterns. |x - widen(out)| <= 2^-9·|x| for
// normal x; values past the largest finite bf16 (> 3.3895e38 after rounding) become ±inf.
void lora4j_round_bf16(float* x, int64_t n, uint16_t* out);

// The gated MLP activations (ops.h lora4j_swiglu_* and lora4j_geglu_*) on a gate and up kept in bf16
// (mixed precision): bit for bit the fp32 op on widen(gate), widen(up); dh, h, dgate, dup stay fp32.
// gate, up: [n] bf16 bits; h, dh, dgate, dup: [n] fp32 (dgate may alias dh).
void lora4j_swiglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h);
void lora4j_swiglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                            float* dgate, float* dup);
void lora4j_geglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h);
void lora4j_geglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                           float* dgate, float* dup);

// Y[T, out] = X[T, in] · dequant(W)ᵀ with double-quantized scales (see above).
// x: [T, in] fp32; w: [out*in/2] NF4, high nibble first; qabsmax: [nblocks] uint8;
// nested_absmax: [ceil(nblocks/256)] fp32; y: [T, out] fp32 (overwritten).
void lora4j_nf4_dq_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                              const uint8_t* w, const uint8_t* qabsmax,
                              const float* nested_absmax, float offset, int32_t blocksize,
                              float* y);

// dX[T, in] = dY[T, out] · dequant(W), scales as above. dy: [T, out]; dx: [T, in] (overwritten).
void lora4j_nf4_dq_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                    const uint8_t* w, const uint8_t* qabsmax,
                                    const float* nested_absmax, float offset, int32_t blocksize,
                                    float* dx);

// ---- CUDA ----------------------------------------------------------------------------------

void lora4j_cuda_gemm_w(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K,
                        float alpha, const float* A, int64_t lda, const void* B, int32_t b_dtype,
                        int64_t ldb, float beta, float* C, int64_t ldc, void* stream);
void lora4j_cuda_embedding_w_fwd(const int32_t* ids, const void* table, int32_t dtype, int64_t T,
                                 int64_t dim, int64_t vocab, float* out, void* stream);
void lora4j_cuda_widen_f32(const void* in, int32_t dtype, int64_t n, float* out, void* stream);
void lora4j_cuda_round_bf16(float* x, int64_t n, uint16_t* out, void* stream);
void lora4j_cuda_swiglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h,
                                 void* stream);
void lora4j_cuda_swiglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                                 float* dgate, float* dup, void* stream);
void lora4j_cuda_geglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h,
                                void* stream);
void lora4j_cuda_geglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                                float* dgate, float* dup, void* stream);
void lora4j_cuda_nf4_dq_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                   const uint8_t* w, const uint8_t* qabsmax,
                                   const float* nested_absmax, float offset, int32_t blocksize,
                                   float* y, void* stream);
void lora4j_cuda_nf4_dq_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                         const uint8_t* w, const uint8_t* qabsmax,
                                         const float* nested_absmax, float offset,
                                         int32_t blocksize, float* dx, void* stream);

#ifdef __cplusplus
}
#endif
