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
//   s_j = scale * q . k_j (scale = 1/sqrt(D)) [then s_j = softcap tanh(s_j / softcap) when
//   softcap > 0, as lora4j_attention_fwd];  out = sum_j softmax(s)_j v_j
void lora4j_attention_decode(const float* q,        // [B, Hq*D] the new tokens' queries
                             const float* k_cache,  // [B, cache_len, Hkv*D] keys by position
                             const float* v_cache,  // [B, cache_len, Hkv*D]
                             int64_t B, int64_t L,  // L <= cache_len valid positions
                             int64_t cache_len,     // row stride between sequences, in positions
                             int64_t Hq, int64_t Hkv, int64_t D,
                             float softcap,         // > 0: scores soft-capped; 0 = off
                             float* out);           // [B, Hq*D] overwritten

void lora4j_cuda_axpy(int64_t n, float alpha, const float* x, float* y, void* stream);
void lora4j_cuda_attention_decode(const float* q, const float* k_cache, const float* v_cache,
                                  int64_t B, int64_t L, int64_t cache_len, int64_t Hq,
                                  int64_t Hkv, int64_t D, float softcap, float* out,
                                  void* stream);

// ---- single-token (T = 1) decode kernels (native/cpu/decode.cpp, CUDA twins in infer.cu) ----
// Dense weight element types of the decode GEMVs. NF4 weights go through lora4j_nf4_matmul_fwd,
// whose T = 1 path is the fused NF4 GEMV (nf4.h).
#define LORA4J_DECODE_F32 0
#define LORA4J_DECODE_BF16 1

// Which SIMD path the CPU decode kernels took ("avx512", "avx2" or "scalar"); LORA4J_DECODE_ISA
// forces one.
const char* lora4j_decode_isa(void);

// y[r] (= or += when accumulate) sum_i w[r, i] * x[i]  -- a T = 1 projection, optionally
// straight into the residual stream (o_proj, down_proj).
void lora4j_decode_matvec(const float* x,     // [in]
                          int64_t in,
                          const void* w,      // [out, in] row-major, fp32 or bf16 (wtype)
                          int32_t wtype,      // LORA4J_DECODE_F32 | LORA4J_DECODE_BF16
                          int64_t out,
                          int32_t accumulate, // 0: y = W x, 1: y += W x
                          float* y);          // [out]

// The MLP's two input projections and SwiGLU in one pass over both weights:
//   g_r = w_gate[r] . x,  u_r = w_up[r] . x,  s_r = silu(g_r) * u_r = g_r / (1 + exp(-g_r)) * u_r
void lora4j_decode_gate_up(const float* x,       // [in]
                           int64_t in,
                           const void* w_gate,   // [inter, in] fp32 or bf16 (wtype)
                           const void* w_up,     // [inter, in] same type
                           int32_t wtype,
                           int64_t inter,
                           float* s);            // [inter]

// One layer's attention for one new token at position pos, in one call:
//   q <- RoPE(q) at pos (HF rotate_half, as lora4j_rope_fwd), in place;
//   k_cache[pos] = RoPE(k) at pos (k itself is left as given), v_cache[pos] = v;
//   out_h = sum_{j=start..pos} softmax_j(q_h . k_j / sqrt(D)) v_j  (query head h reads KV head
//   h / (Hq/Hkv); start > 0 for a sliding window), softmax computed online in one pass.
void lora4j_decode_attention(float* q,               // [Hq*D] roped in place
                             const float* k,         // [Hkv*D] unroped
                             const float* v,         // [Hkv*D]
                             int32_t pos,            // 0 <= pos < cache_len
                             const float* inv_freq,  // [D/2]
                             float* k_cache,         // [cache_len, Hkv*D] row pos written
                             float* v_cache,         // [cache_len, Hkv*D] row pos written
                             int64_t cache_len,
                             int64_t start,          // first attended position, 0 <= start <= pos
                             int64_t Hq, int64_t Hkv, int64_t D,
                             float* out);            // [Hq*D]

// out[dim] = table[token]: the embedding of one token id (throws when outside [0, vocab)).
void lora4j_decode_embedding(const float* table,  // [vocab, dim]
                             int64_t vocab, int64_t dim, int32_t token,
                             float* out);         // [dim]

// ---- next-token sampling (native/cpu/sample.cpp) -------------------------------------------------
// Host only, no CUDA twin: a GPU's logits are copied to the host before a token is drawn. Every ISA
// path (LORA4J_DECODE_ISA) gives bit-identical probabilities (sample.cpp states the arithmetic):
//   p_i = e((l_i - max_j l_j) * fp32(1/temperature)), e a fixed fp32 exp (0 below e^-86, NaN
//   logits 0), z = sum_i p_i in double in a fixed order.
void lora4j_sample_probs(const float* logits,  // [n]
                         int64_t n,
                         float temperature,    // > 0
                         float* p,             // [n] written
                         double* z);           // [1] the sum of p (0 when no logit is finite)

// One draw: the token i with u·mass < the running mass, over every token (top_p = 1) or over the
// nucleus (the fewest tokens by p descending, id ascending, whose mass reaches top_p·z). Returns
// the first largest logit when no logit is finite.
int32_t lora4j_sample_token(const float* logits,  // [n]
                            int64_t n,
                            float temperature,    // > 0
                            float top_p,          // (0, 1]
                            double u,             // uniform in [0, 1)
                            float* p,             // [n] scratch (left holding the probabilities)
                            int64_t* keys);       // [n] scratch

void lora4j_cuda_decode_matvec(const float* x, int64_t in, const void* w, int32_t wtype,
                               int64_t out, int32_t accumulate, float* y, void* stream);
void lora4j_cuda_decode_gate_up(const float* x, int64_t in, const void* w_gate, const void* w_up,
                                int32_t wtype, int64_t inter, float* s, void* stream);
void lora4j_cuda_decode_attention(float* q, const float* k, const float* v, int32_t pos,
                                  const float* inv_freq, float* k_cache, float* v_cache,
                                  int64_t cache_len, int64_t start, int64_t Hq, int64_t Hkv,
                                  int64_t D, float* out, void* stream);
void lora4j_cuda_decode_embedding(const float* table, int64_t vocab, int64_t dim, int32_t token,
                                  float* out, void* stream);

#ifdef __cplusplus
}
#endif
