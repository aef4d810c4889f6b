// lora4j inference helpers: residual add and single-token attention over a KV cache.
//
// Conventions as in ops.h: fp32, row-major; CPU lora4j_*, CUDA lora4j_cuda_* with device
// pointers and a trailing `void* stream`; validated in Java, invariants throw natively.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// y[i] += alpha * x[i]   (residual connections, gradient accumulation)
void lora4j_axpy(int64_t n, float alpha,
                 const float* x,   // [n]
                 float* y);        // [n] updated

// Decode attention: each of B sequences has one new query token at position L-1 that attends to
// the L cached keys/values 0..L-1 of its sequence (causal by construction). Query head h reads
// KV head h / (Hq/Hkv).
//   s_j = scale * q . k_j (scale = 1/sqrt(D));  out = sum_j softmax(s)_j v_j
void lora4j_attention_decode(const float* q,        // [B, Hq*D] the new tokens' queries
                             const float* k_cache,  // [B, cache_len, Hkv*D] keys by position
                             const float* v_cache,  // [B, cache_len, Hkv*D]
                             int64_t B, int64_t L,  // L <= cache_len valid positions
                             int64_t cache_len,     // row stride between sequences, in positions
                             int64_t Hq, int64_t Hkv, int64_t D,
                             float* out);           // [B, Hq*D] overwritten

void lora4j_cuda_axpy(int64_t n, float alpha, const float* x, float* y, void* stream);
void lora4j_cuda_attention_decode(const float* q, const float* k_cache, const float* v_cache,
                                  int64_t B, int64_t L, int64_t cache_len, int64_t Hq,
                                  int64_t Hkv, int64_t D, float* out, void* stream);

#ifdef __cplusplus
}
#endif
