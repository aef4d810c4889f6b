// Stubs of every lora4j_cuda_* entry of ops.h and lora.h for builds without nvcc: each throws
// "built without CUDA" (the device probe in nocuda.cpp answers 0, so Java never calls them on
// purpose). Compiled in place of native/cuda/*.cu when no CUDA compiler is found.
#include "lora4j/lora.h"
#include "lora4j/ops.h"
#include "common.h"

#define NO_CUDA_OPS(name) \
  throw std::runtime_error("lora4j: " name ": this liblora4j was built without CUDA")

extern "C" {
void lora4j_cuda_rmsnorm_fwd(const float*, const float*, int64_t, int64_t, float, float*, float*,
                             void*) {
  NO_CUDA_OPS("cuda_rmsnorm_fwd");
}
void lora4j_cuda_rmsnorm_bwd(const float*, const float*, const float*, const float*, int64_t,
                             int64_t, float*, float*, void*) {
  NO_CUDA_OPS("cuda_rmsnorm_bwd");
}
void lora4j_cuda_rope_fwd(const float*, float*, const int32_t*, const float*, int64_t, int64_t,
                          int64_t, void*) {
  NO_CUDA_OPS("cuda_rope_fwd");
}
void lora4j_cuda_rope_bwd(const float*, float*, const int32_t*, const float*, int64_t, int64_t,
                          int64_t, void*) {
  NO_CUDA_OPS("cuda_rope_bwd");
}
void lora4j_cuda_attention_fwd(const float*, const float*, const float*, const int32_t*, int64_t,
                               int64_t, int64_t, int64_t, int64_t, float, float*, float*, void*) {
  NO_CUDA_OPS("cuda_attention_fwd");
}
void lora4j_cuda_attention_bwd(const float*, const float*, const float*, const float*,
                               const float*, const float*, const int32_t*, int64_t, int64_t,
                               int64_t, int64_t, int64_t, float, float*, float*, float*, void*) {
  NO_CUDA_OPS("cuda_attention_bwd");
}
void lora4j_cuda_softcap_fwd(const float*, int64_t, float, float*, void*) {
  NO_CUDA_OPS("cuda_softcap_fwd");
}
void lora4j_cuda_softcap_bwd(const float*, const float*, int64_t, float, float*, void*) {
  NO_CUDA_OPS("cuda_softcap_bwd");
}
void lora4j_cuda_swiglu_fwd(const float*, const float*, int64_t, float*, void*) {
  NO_CUDA_OPS("cuda_swiglu_fwd");
}
void lora4j_cuda_swiglu_bwd(const float*, const float*, const float*, int64_t, float*, float*,
                            void*) {
  NO_CUDA_OPS("cuda_swiglu_bwd");
}
void lora4j_cuda_geglu_fwd(const float*, const float*, int64_t, float*, void*) {
  NO_CUDA_OPS("cuda_geglu_fwd");
}
void lora4j_cuda_geglu_bwd(const float*, const float*, const float*, int64_t, float*, float*,
                           void*) {
  NO_CUDA_OPS("cuda_geglu_bwd");
}
void lora4j_cuda_embedding_fwd(const int32_t*, const float*, int64_t, int64_t, int64_t, float*,
                               void*) {
  NO_CUDA_OPS("cuda_embedding_fwd");
}
void lora4j_cuda_embedding_bwd(const int32_t*, const float*, int64_t, int64_t, int64_t, float*,
                               void*) {
  NO_CUDA_OPS("cuda_embedding_bwd");
}
void lora4j_cuda_ce_fwd(const float*, const int32_t*, int64_t, int64_t, float*, float*, void*) {
  NO_CUDA_OPS("cuda_ce_fwd");
}
void lora4j_cuda_ce_bwd(const float*, const int32_t*, int64_t, int64_t, float, float*, void*) {
  NO_CUDA_OPS("cuda_ce_bwd");
}
void lora4j_cuda_ce_chunk_stats(const float*, const int32_t*, int64_t, int64_t, int64_t, int32_t,
                                float*, float*, float*, void*) {
  NO_CUDA_OPS("cuda_ce_chunk_stats");
}
void lora4j_cuda_ce_chunk_finalize(const int32_t*, const float*, const float*, const float*,
                                   int64_t, float*, float*, float*, void*) {
  NO_CUDA_OPS("cuda_ce_chunk_finalize");
}
void lora4j_cuda_ce_chunk_grad(float*, const int32_t*, int64_t, int64_t, int64_t, const float*,
                               float, void*) {
  NO_CUDA_OPS("cuda_ce_chunk_grad");
}
void lora4j_cuda_adamw_step(float*, const float*, float*, float*, int64_t, float, float, float,
                            float, float, int64_t, float, void*) {
  NO_CUDA_OPS("cuda_adamw_step");
}
void lora4j_cuda_sumsq(const float*, int64_t, double*, void*) { NO_CUDA_OPS("cuda_sumsq"); }
void lora4j_cuda_lora_fwd(const float*, const float*, const float*, const float*, const float*,
                          int64_t, int64_t, int64_t, int64_t, float, float*, float*, void*) {
  NO_CUDA_OPS("cuda_lora_fwd");
}
void lora4j_cuda_lora_bwd(const float*, const float*, const float*, const float*, const float*,
                          const float*, const float*, int64_t, int64_t, int64_t, int64_t, float,
                          float*, int32_t, float*, float*, float*, void*) {
  NO_CUDA_OPS("cuda_lora_bwd");
}
void lora4j_cuda_dropout_mask(uint64_t, int64_t, float, float*, void*) {
  NO_CUDA_OPS("cuda_dropout_mask");
}
void lora4j_cuda_sgemm(int32_t, int32_t, int64_t, int64_t, int64_t, float, const float*, int64_t,
                       const float*, int64_t, float, float*, int64_t, void*) {
  NO_CUDA_OPS("cuda_sgemm");
}
}  // extern "C"
