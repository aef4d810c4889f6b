// lora4j transformer ops: the public C API of the Llama building blocks other than the LoRA
// linear (lora.h) and NF4 (nf4.h).
//
// Conventions (every function below):
//   - activations are fp32, row-major [T, dim] with T = batch*seq tokens;
//   - CPU entries are lora4j_<op>_<fwd|bwd>; the CUDA twin lora4j_cuda_<op>_<fwd|bwd> has the
//     same parameters (device pointers) plus a trailing `void* stream` (a cudaStream_t, null =
//     the legacy default stream) and is asynchronous with respect to the host;
//   - "overwritten" outputs are written completely; "accumulated" outputs get `+=`, so the
//     caller zeroes them once per accumulation window;
//   - arguments are validated in Java before the call; native code only asserts invariants and
//     throws std::runtime_error (never exit/abort). On CUDA, data-dependent invariants (a token
//     id out of range) cannot throw from a kernel: the affected output row is filled with NaN.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- RMSNorm (Llama) ------------------------------------------------------------------------
// rstd[t] = 1 / sqrt(mean_i x[t,i]^2 + eps)          (fp32, like HF LlamaRMSNorm)
// y[t,i]  = w[i] * (x[t,i] * rstd[t])
// Backward, with g[t,i] = dy[t,i] * w[i]:
// dx[t,i] = rstd[t] * g[t,i] - x[t,i] * rstd[t]^3 / dim * sum_j g[t,j] * x[t,j]
// dw[i]  += sum_t dy[t,i] * x[t,i] * rstd[t]
void lora4j_rmsnorm_fwd(const float* x,     // [T, dim]
                        const float* w,     // [dim] gain
                        int64_t T, int64_t dim,
                        float eps,          // e.g. 1e-5 (config rms_norm_eps)
                        float* y,           // [T, dim] overwritten; may alias x
                        float* rstd);       // [T] overwritten, saved for the backward
void lora4j_rmsnorm_bwd(const float* dy,    // [T, dim]
                        const float* x,     // [T, dim] the forward input
                        const float* w,     // [dim]
                        const float* rstd,  // [T] from the forward
                        int64_t T, int64_t dim,
                        float* dx,          // [T, dim] overwritten; may alias dy
                        float* dw);         // [dim] accumulated (+=); null = skip

// ---- RoPE, HF rotate_half convention --------------------------------------------------------
// For each token t, head h, and i < D/2 (D = head_dim), pairs (i, i + D/2) rotate by
//   theta = float(pos[t]) * inv_freq[i]         (fp32 product, as HF computes the angles)
//   y[i]       = x[i] * cos(theta) - x[i+D/2] * sin(theta)
//   y[i+D/2]   = x[i+D/2] * cos(theta) + x[i] * sin(theta)
// cos/sin are evaluated in double and rounded to fp32. The backward is the rotation by -theta.
// inv_freq already contains any rope_scaling (Llama 3.1 "llama3" type): the caller computes it.
void lora4j_rope_fwd(const float* x,          // [T, n_heads, head_dim]
                     float* y,                // [T, n_heads, head_dim]; y == x: in place
                     const int32_t* pos,      // [T] position of each token (restarts per packed sequence)
                     const float* inv_freq,   // [head_dim/2] radians per position
                     int64_t T, int64_t n_heads, int64_t head_dim);  // head_dim even
void lora4j_rope_bwd(const float* dy,         // [T, n_heads, head_dim]
                     float* dx,               // [T, n_heads, head_dim]; dx == dy: in place
                     const int32_t* pos, const float* inv_freq,
                     int64_t T, int64_t n_heads, int64_t head_dim);

// ---- Causal grouped-query attention (flash-attention style) ---------------------------------
// B sequences of S tokens; token (b, s) is row b*S + s. Query head h reads KV head
// h / (Hq/Hkv) (Hq a multiple of Hkv). Query i may attend key j (same sequence) iff
//   j <= i  and  (seg == null or seg[b*S+j] == seg[b*S+i])
// so packed documents never see each other (segment ids: any int32 labels, equal = same doc).
//   s_ij  = scale * q_i . k_j,  scale = 1/sqrt(D)
//           then, with softcap c > 0 (Gemma 2's attn_logit_softcapping): s_ij = c tanh(s_ij / c)
//   lse_i = log sum_{j allowed} exp(s_ij)          (natural log, includes the scale and the cap)
//   out_i = sum_j exp(s_ij - lse_i) v_j
// Backward (P_ij = exp(s_ij - lse_i) on allowed pairs, else 0; Dl_i = dout_i . out_i):
//   dv_j = sum_i P_ij dout_i          dP_ij = dout_i . v_j
//   dS_ij = P_ij (dP_ij - Dl_i)       dq_i = scale sum_j dS_ij k_j     dk_j = scale sum_i dS_ij q_i
//   (with softcap c > 0, dS_ij is multiplied by 1 - (s_ij / c)^2, the derivative of the cap)
// dk/dv of a KV head sum over the query heads of its group. No [S, S] matrix is stored.
void lora4j_attention_fwd(const float* q,     // [B*S, Hq*D]  (head h at columns h*D..h*D+D-1)
                          const float* k,     // [B*S, Hkv*D]
                          const float* v,     // [B*S, Hkv*D]
                          const int32_t* seg, // [B*S] segment ids, or null = one per sequence
                          int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                          float softcap,      // > 0: scores soft-capped at +-softcap; 0 = off
                          float* out,         // [B*S, Hq*D] overwritten
                          float* lse);        // [B, Hq, S] overwritten, saved for the backward
void lora4j_attention_bwd(const float* q, const float* k, const float* v,
                          const float* out,   // [B*S, Hq*D] from the forward
                          const float* dout,  // [B*S, Hq*D]
                          const float* lse,   // [B, Hq, S] from the forward
                          const int32_t* seg, // [B*S] or null, as in the forward
                          int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                          float softcap,      // as in the forward
                          float* dq,          // [B*S, Hq*D] overwritten
                          float* dk,          // [B*S, Hkv*D] overwritten
                          float* dv);         // [B*S, Hkv*D] overwritten

// ---- SwiGLU -----------------------------------------------------------------------------------
// h = silu(g) * u, silu(g) = g * sigmoid(g)
// dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))),   du = dh * silu(g)
void lora4j_swiglu_fwd(const float* gate,   // [n] (n = T * intermediate)
                       const float* up,     // [n]
                       int64_t n,
                       float* h);           // [n] overwritten; may alias gate or up
void lora4j_swiglu_bwd(const float* dh,     // [n]
                       const float* gate,   // [n] forward input
                       const float* up,     // [n] forward input
                       int64_t n,
                       float* dgate,        // [n] overwritten; may alias dh
                       float* dup);         // [n] overwritten

// ---- GeGLU (tanh approximation): Gemma's MLP -------------------------------------------------
// h = gelu_tanh(g) * u,  gelu_tanh(g) = 0.5 g (1 + t),  t = tanh(c (g + 0.044715 g^3)),  c = sqrt(2/pi)
// dg = dh * u * (0.5 (1 + t) + 0.5 g (1 - t^2) c (1 + 3 * 0.044715 g^2)),   du = dh * gelu_tanh(g)
// (PyTorch's gelu(approximate="tanh"), HF's gelu_pytorch_tanh.)
void lora4j_geglu_fwd(const float* gate,   // [n] (n = T * intermediate)
                      const float* up,     // [n]
                      int64_t n,
                      float* h);           // [n] overwritten; may alias gate or up
void lora4j_geglu_bwd(const float* dh,     // [n]
                      const float* gate,   // [n] forward input
                      const float* up,     // [n] forward input
                      int64_t n,
                      float* dgate,        // [n] overwritten; may alias dh
                      float* dup);         // [n] overwritten

// ---- Token embedding --------------------------------------------------------------------------
// out[t, :] = table[ids[t], :]. Invariant 0 <= ids[t] < vocab (CPU throws; CUDA writes NaN).
void lora4j_embedding_fwd(const int32_t* ids,  // [T]
                          const float* table,  // [vocab, dim]
                          int64_t T, int64_t dim, int64_t vocab,
                          float* out);         // [T, dim] overwritten
// dtable[ids[t], :] += dout[t, :]  (scatter-add; deterministic on CPU, atomics on CUDA)
void lora4j_embedding_bwd(const int32_t* ids,  // [T]
                          const float* dout,   // [T, dim]
                          int64_t T, int64_t dim, int64_t vocab,
                          float* dtable);      // [vocab, dim] accumulated

// ---- Cross-entropy over logits ------------------------------------------------------------
// Labels are already shifted by the caller (label[t] is the target of row t); -100 = ignore.
//   lse_t = log sum_v exp(logits[t,v]);  loss[t] = lse_t - logits[t, label[t]]  (0 if ignored)
//   loss_sum[0] = sum_t loss[t]  (accumulated in double, stored as fp32)
// Backward: dlogits[t, v] = scale * (softmax(logits[t])_v - [v == label[t]]); 0 rows if
// ignored. scale = 1/N with N the unmasked label count of the whole gradient-accumulation
// window (DESIGN.md §4 "GA fix"); it is not derived here.
#define LORA4J_IGNORE_INDEX (-100)
void lora4j_ce_fwd(const float* logits,      // [T, V]
                   const int32_t* labels,    // [T] in [0, V) or -100
                   int64_t T, int64_t V,
                   float* loss,              // [T] overwritten (nats; 0 for ignored rows)
                   float* loss_sum);         // [1] overwritten: sum of loss[]; null = skip
void lora4j_ce_bwd(const float* logits,      // [T, V]
                   const int32_t* labels,    // [T]
                   int64_t T, int64_t V,
                   float scale,              // 1/N (see above)
                   float* dlogits);          // [T, V] overwritten; may alias logits

// Chunked lm_head + cross-entropy: the [T, V] logits never exist at once. Rows with label -100
// are skipped entirely (no matmul); the others are processed chunk_tokens at a time:
//   logits_c = hidden_c · lm_headᵀ  [c, V];  loss as lora4j_ce_fwd;
//   dlogits_c = scale (softmax - onehot);  dhidden_c += dlogits_c · lm_head.
// (lm_head is frozen: no gradient for it.) CPU only.
// Workspace: lora4j_ce_chunked_workspace_floats(chunk_tokens, dim, V) fp32 elements.
int64_t lora4j_ce_chunked_workspace_floats(int64_t chunk_tokens, int64_t dim, int64_t V);
void lora4j_ce_chunked_fwd_bwd(const float* hidden,   // [T, dim] final-norm output
                               const float* lm_head,  // [V, dim]
                               const int32_t* labels, // [T] or -100
                               int64_t T, int64_t dim, int64_t V,
                               int64_t chunk_tokens,  // rows per chunk, >= 1
                               float scale,           // 1/N for the gradient
                               float* loss,           // [T] overwritten (0 for ignored rows)
                               float* loss_sum,       // [1] overwritten; null = skip
                               float* dhidden,        // [T, dim] accumulated; null = loss only
                               float* workspace);     // see lora4j_ce_chunked_workspace_floats

// Logit soft-capping (Gemma 2's final_logit_softcapping, applied to the lm_head logits before
// the cross-entropy): y = c tanh(x / c);  backward dx = dy (1 - tanh^2(x / c)), from the
// forward's input x. c > 0.
void lora4j_softcap_fwd(const float* x,  // [n]
                        int64_t n, float c,
                        float* y);       // [n] overwritten; may alias x
void lora4j_softcap_bwd(const float* dy, // [n]
                        const float* x,  // [n] the forward's input
                        int64_t n, float c,
                        float* dx);      // [n] overwritten; may alias dy

// Vocabulary-chunked cross-entropy: the lm_head logits of n rows are produced one vocabulary
// slice [v0, v0+vc) at a time (the caller's sgemm), so neither [T, V] nor [n, V] ever exists.
// Per row t with label y = labels[t] (-100 = ignored), over slices s = 0, 1, ...:
//   pass 1 (online log-sum-exp, Milakov & Gimelshein 2018):
//     m_s = max(m_{s-1}, max_v z_v);  S_s = S_{s-1} exp(m_{s-1} - m_s) + sum_v exp(z_v - m_s)
//     (first slice: m_{-1} = -inf, S_{-1} = 0);  zy = z_{y - v0} when v0 <= y < v0 + vc
//   finalize: lse_t = m + log S;  loss_t = lse_t - zy  (lse_t = loss_t = 0 for ignored rows);
//     loss_sum[0] = sum_t loss_t (accumulated in double in row order, stored as fp32)
//   pass 2 (backward, logits of each slice recomputed by the caller):
//     dz_v = scale (exp(z_v - lse_t) - [v0 + v == y])   (0 rows if ignored)
//   then the caller accumulates dhidden += dz · lm_head[v0 : v0+vc].
// Equal to lora4j_ce_fwd / lora4j_ce_bwd over the whole row up to fp32 rounding of the sums.
void lora4j_ce_chunk_stats(const float* logits,     // [n, vc] the slice's logits, row stride vc
                           const int32_t* labels,   // [n] in [0, V) or -100
                           int64_t n, int64_t vc,
                           int64_t v0,              // first vocabulary column of the slice
                           int32_t first,           // 1: first slice (overwrite), 0: fold in
                           float* row_max,          // [n] running max m (in/out)
                           float* row_sum,          // [n] running sum S, relative to m (in/out)
                           float* target_logit);    // [n] z_y once its slice was seen (in/out)
void lora4j_ce_chunk_finalize(const int32_t* labels,       // [n]
                              const float* row_max,        // [n] after the last slice
                              const float* row_sum,        // [n]
                              const float* target_logit,   // [n]
                              int64_t n,
                              float* lse,                  // [n] overwritten (0 if ignored)
                              float* loss,                 // [n] overwritten (0 if ignored)
                              float* loss_sum);            // [1] overwritten; null = skip
void lora4j_ce_chunk_grad(float* logits,          // [n, vc] in: slice logits, out: dz (in place)
                          const int32_t* labels,  // [n]
                          int64_t n, int64_t vc, int64_t v0,
                          const float* lse,       // [n] from lora4j_ce_chunk_finalize
                          float scale);           // 1/N as in lora4j_ce_bwd

// ---- AdamW (torch.optim.AdamW semantics) ------------------------------------------------------
// With g = grad * grad_scale (grad_scale = clipping coefficient, 1 when not clipping):
//   if weight_decay > 0: p *= 1 - lr * weight_decay          (decoupled, before the update)
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// step t >= 1 counts optimizer steps including this one. Bias corrections in double.
void lora4j_adamw_step(float* p,            // [n] parameters, updated
                       const float* grad,   // [n]
                       float* m,            // [n] first moment, updated
                       float* v,            // [n] second moment, updated
                       int64_t n, float lr, float beta1, float beta2, float eps,
                       float weight_decay,  // 0 for norms/biases
                       int64_t t,           // step number, >= 1
                       float grad_scale);   // multiplies grad (clipping), 1 = none
// out[0] += sum_i x[i]^2, accumulated in double (grad-norm clipping: sqrt of the total over
// all trainable tensors; coefficient = min(1, max_norm / (norm + 1e-6)) as torch does).
void lora4j_sumsq(const float* x,           // [n]
                  int64_t n,
                  double* out);             // [1] accumulated

// ---- CUDA twins (device pointers; stream = cudaStream_t as void*) ----------------------------
void lora4j_cuda_rmsnorm_fwd(const float* x, const float* w, int64_t T, int64_t dim, float eps,
                             float* y, float* rstd, void* stream);
void lora4j_cuda_rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                             int64_t T, int64_t dim, float* dx, float* dw, void* stream);
void lora4j_cuda_rope_fwd(const float* x, float* y, const int32_t* pos, const float* inv_freq,
                          int64_t T, int64_t n_heads, int64_t head_dim, void* stream);
void lora4j_cuda_rope_bwd(const float* dy, float* dx, const int32_t* pos,
                          const float* inv_freq, int64_t T, int64_t n_heads, int64_t head_dim,
                          void* stream);
// CUDA attention: head_dim D <= 256.
void lora4j_cuda_attention_fwd(const float* q, const float* k, const float* v,
                               const int32_t* seg, int64_t B, int64_t S, int64_t Hq,
                               int64_t Hkv, int64_t D, float softcap, float* out, float* lse,
                               void* stream);
void lora4j_cuda_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                               const float* dout, const float* lse, const int32_t* seg,
                               int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                               float softcap, float* dq, float* dk, float* dv, void* stream);
void lora4j_cuda_swiglu_fwd(const float* gate, const float* up, int64_t n, float* h,
                            void* stream);
void lora4j_cuda_swiglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                            float* dgate, float* dup, void* stream);
void lora4j_cuda_geglu_fwd(const float* gate, const float* up, int64_t n, float* h, void* stream);
void lora4j_cuda_geglu_bwd(const float* dh, const float* gate, const float* up, int64_t n,
                           float* dgate, float* dup, void* stream);
void lora4j_cuda_embedding_fwd(const int32_t* ids, const float* table, int64_t T, int64_t dim,
                               int64_t vocab, float* out, void* stream);
void lora4j_cuda_embedding_bwd(const int32_t* ids, const float* dout, int64_t T, int64_t dim,
                               int64_t vocab, float* dtable, void* stream);
void lora4j_cuda_ce_fwd(const float* logits, const int32_t* labels, int64_t T, int64_t V,
                        float* loss, float* loss_sum, void* stream);
void lora4j_cuda_ce_bwd(const float* logits, const int32_t* labels, int64_t T, int64_t V,
                        float scale, float* dlogits, void* stream);
void lora4j_cuda_ce_chunk_stats(const float* logits, const int32_t* labels, int64_t n, int64_t vc,
                                int64_t v0, int32_t first, float* row_max, float* row_sum,
                                float* target_logit, void* stream);
void lora4j_cuda_ce_chunk_finalize(const int32_t* labels, const float* row_max,
                                   const float* row_sum, const float* target_logit, int64_t n,
                                   float* lse, float* loss, float* loss_sum, void* stream);
void lora4j_cuda_ce_chunk_grad(float* logits, const int32_t* labels, int64_t n, int64_t vc,
                               int64_t v0, const float* lse, float scale, void* stream);
void lora4j_cuda_softcap_fwd(const float* x, int64_t n, float c, float* y, void* stream);
void lora4j_cuda_softcap_bwd(const float* dy, const float* x, int64_t n, float c, float* dx,
                             void* stream);
void lora4j_cuda_adamw_step(float* p, const float* grad, float* m, float* v, int64_t n, float lr,
                            float beta1, float beta2, float eps, float weight_decay, int64_t t,
                            float grad_scale, void* stream);
void lora4j_cuda_sumsq(const float* x, int64_t n, double* out, void* stream);

#ifdef __cplusplus
}
#endif
