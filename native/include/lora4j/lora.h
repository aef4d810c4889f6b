// lora4j fused LoRA linear: the public C API.
//
// Math (PEFT semantics, DESIGN.md §4). Shapes: X [T, in], W [out, in], A [r, in], B [out, r],
// s = scale (alpha/r, or alpha/sqrt(r) with rsLoRA), M = dropout mask [T, in] whose entries are
// 0 or 1/(1-p) (null = no dropout, M = 1), drop(X) = X ⊙ M.
//
//   forward:   XA = drop(X) · Aᵀ                          [T, r]   saved for the backward
//              Y  = X · Wᵀ + s · XA · Bᵀ                  [T, out]
//   backward:  G  = dY · B                                [T, r]   (workspace)
//              dB += s · dYᵀ · XA                          [out, r]
//              dA += s · Gᵀ · drop(X)                      [r, in]
//              dX (=|+=) dY · W + s · (G · A) ⊙ M           [T, in]
//
// B·A ([out, in]) is never formed; X (and M) are read once in the backward (for dA only).
// The base term uses the *undropped* X, as PEFT does (dropout applies to the LoRA branch only).
//
// W == null selects the "LoRA part only" variant, for bases that are multiplied elsewhere
// (NF4 through lora4j_nf4_matmul_fwd / _bwd_input):
//   forward:   Y  += s · XA · Bᵀ            (Y holds the base product already)
//   backward:  dX (=|+=) s · (G · A) ⊙ M     (no dY·W term)
// In the backward, accumulate_dx = 0 overwrites dX, 1 adds to what dX holds (e.g. the NF4
// base gradient computed first). dA and dB always accumulate (+=) so that gradient
// accumulation over micro-batches needs no copy; the caller zeroes them once per optimizer
// step. dA or dB null = skip that gradient.
//
// Every function has a CUDA twin lora4j_cuda_* with the same parameters (device pointers) and a
// trailing `void* stream`. CUDA uses hand-written fp32 tiled GEMMs (no cuBLAS dependency).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Workspace for lora4j_lora_bwd / lora4j_cuda_lora_bwd, in fp32 elements: T*r (G = dY·B).
int64_t lora4j_lora_bwd_workspace_floats(int64_t T, int64_t r);

void lora4j_lora_fwd(const float* x,          // [T, in]
                     const float* w,          // [out, in] dense fp32 base weight, or null (see above)
                     const float* a,          // [r, in]   lora_A
                     const float* b,          // [out, r]  lora_B
                     const float* drop_mask,  // [T, in] 0 or 1/(1-p), or null = no dropout
                     int64_t T, int64_t in, int64_t out, int64_t r,
                     float scale,             // s
                     float* y,                // [T, out] overwritten (w != null) or += (w == null)
                     float* xa);              // [T, r] overwritten: drop(X)·Aᵀ, keep for the backward

void lora4j_lora_bwd(const float* dy,         // [T, out]
                     const float* x,          // [T, in] forward input
                     const float* w,          // [out, in] or null (base gradient done elsewhere)
                     const float* a,          // [r, in]
                     const float* b,          // [out, r]
                     const float* drop_mask,  // [T, in] the forward's mask, or null
                     const float* xa,         // [T, r] from the forward
                     int64_t T, int64_t in, int64_t out, int64_t r,
                     float scale,             // s
                     float* dx,               // [T, in] (see accumulate_dx); null = skip dX
                     int32_t accumulate_dx,   // 0: dX = ..., 1: dX += ...
                     float* da,               // [r, in] accumulated (+=); null = skip
                     float* db,               // [out, r] accumulated (+=); null = skip
                     float* workspace);       // lora4j_lora_bwd_workspace_floats(T, r) floats

// Inverted-dropout mask from a counter-based hash, identical on CPU and CUDA for the same
// (seed, n, p): mask[i] = 0 with probability p, else 1/(1-p). p in [0, 1).
// u_i = (splitmix64(seed ^ splitmix64(i)) >> 40) * 2^-24;  keep iff u_i >= p.
void lora4j_dropout_mask(uint64_t seed, int64_t n, float p, float* mask);  // mask: [n]

// ---- CUDA twins ----------------------------------------------------------------------------
void lora4j_cuda_lora_fwd(const float* x, const float* w, const float* a, const float* b,
                          const float* drop_mask, int64_t T, int64_t in, int64_t out, int64_t r,
                          float scale, float* y, float* xa, void* stream);
void lora4j_cuda_lora_bwd(const float* dy, const float* x, const float* w, const float* a,
                          const float* b, const float* drop_mask, const float* xa, int64_t T,
                          int64_t in, int64_t out, int64_t r, float scale, float* dx,
                          int32_t accumulate_dx, float* da, float* db, float* workspace,
                          void* stream);
void lora4j_cuda_dropout_mask(uint64_t seed, int64_t n, float p, float* mask, void* stream);

// Row-major fp32 GEMM on the device, the CUDA counterpart of lora4j_sgemm (runtime.h):
// C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C; trans*: 0 as stored, 1 transposed;
// ld* are row strides in elements. Tiled fp32 FMA kernel (no cuBLAS); beta == 0 ignores C.
void lora4j_cuda_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K,
                       float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                       float beta, float* C, int64_t ldc, void* stream);

#ifdef __cplusplus
}
#endif
