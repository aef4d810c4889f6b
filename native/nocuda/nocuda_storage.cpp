// Stubs of the lora4j_cuda_* entries of storage.h for builds without nvcc: each throws "built
// without CUDA" (the device probe answers 0, so Java never calls them on purpose).
#include "lora4j/storage.h"
#include "common.h"

#define NO_CUDA_STORAGE(name) \
  throw std::runtime_error("lora4j: " name ": this liblora4j was built without CUDA")

extern "C" {
void lora4j_cuda_gemm_w(int32_t, int32_t, int64_t, int64_t, int64_t, float, const float*, int64_t,
                        const void*, int32_t, int64_t, float, float*, int64_t, void*) {
  NO_CUDA_STORAGE("cuda_gemm_w");
}
void lora4j_cuda_embedding_w_fwd(const int32_t*, const void*, int32_t, int64_t, int64_t, int64_t,
                                 float*, void*) {
  NO_CUDA_STORAGE("cuda_embedding_w_fwd");
}
void lora4j_cuda_widen_f32(const void*, int32_t, int64_t, float*, void*) {
  NO_CUDA_STORAGE("cuda_widen_f32");
}
void lora4j_cuda_nf4_dq_matmul_fwd(const float*, int64_t, int64_t, int64_t, const uint8_t*,
                                   const uint8_t*, const float*, float, int32_t, float*, void*) {
  NO_CUDA_STORAGE("cuda_nf4_dq_matmul_fwd");
}
void lora4j_cuda_nf4_dq_matmul_bwd_input(const float*, int64_t, int64_t, int64_t, const uint8_t*,
                                         const uint8_t*, const float*, float, int32_t, float*,
                                         void*) {
  NO_CUDA_STORAGE("cuda_nf4_dq_matmul_bwd_input");
}
}  // extern "C"
