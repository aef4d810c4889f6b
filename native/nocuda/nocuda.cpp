// Built only when no CUDA compiler was found: every lora4j_cuda_* entry exists and throws, and
// the device probe answers 0, so the Java side picks the CPU backend and says why.
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"
#include "common.h"

#define NO_CUDA(name) throw std::runtime_error("lora4j: " name ": this liblora4j was built without CUDA")

extern "C" {
int32_t lora4j_cuda_device_count(void) { return 0; }
const char* lora4j_cuda_device_info(int32_t) { NO_CUDA("cuda_device_info"); }
void lora4j_cuda_set_device(int32_t) { NO_CUDA("cuda_set_device"); }
void* lora4j_cuda_malloc(int64_t) { NO_CUDA("cuda_malloc"); }
void lora4j_cuda_free(void*) { NO_CUDA("cuda_free"); }
void* lora4j_cuda_host_alloc(int64_t) { NO_CUDA("cuda_host_alloc"); }
void lora4j_cuda_host_free(void*) { NO_CUDA("cuda_host_free"); }
void lora4j_cuda_memcpy(void*, const void*, int64_t, int32_t, void*) { NO_CUDA("cuda_memcpy"); }
void lora4j_cuda_memset(void*, int32_t, int64_t, void*) { NO_CUDA("cuda_memset"); }
void* lora4j_cuda_stream_create(void) { NO_CUDA("cuda_stream_create"); }
void lora4j_cuda_stream_destroy(void*) { NO_CUDA("cuda_stream_destroy"); }
void lora4j_cuda_stream_synchronize(void*) { NO_CUDA("cuda_stream_synchronize"); }
void lora4j_cuda_device_synchronize(void) { NO_CUDA("cuda_device_synchronize"); }
void* lora4j_cuda_event_create(void) { NO_CUDA("cuda_event_create"); }
void lora4j_cuda_event_destroy(void*) { NO_CUDA("cuda_event_destroy"); }
void lora4j_cuda_event_record(void*, void*) { NO_CUDA("cuda_event_record"); }
void lora4j_cuda_stream_wait_event(void*, void*) { NO_CUDA("cuda_stream_wait_event"); }
void lora4j_cuda_event_synchronize(void*) { NO_CUDA("cuda_event_synchronize"); }
int32_t lora4j_cuda_event_query(void*) { NO_CUDA("cuda_event_query"); }
void lora4j_cuda_mem_info(int64_t*) { NO_CUDA("cuda_mem_info"); }
void lora4j_cuda_nf4_quantize(const void*, int32_t, int64_t, int32_t, uint8_t*, float*, void*) {
  NO_CUDA("cuda_nf4_quantize");
}
void lora4j_cuda_nf4_dequantize(const uint8_t*, const float*, int64_t, int32_t, float*, void*) {
  NO_CUDA("cuda_nf4_dequantize");
}
void lora4j_cuda_nf4_dequantize_bf16(const uint8_t*, const float*, int64_t, int32_t, uint16_t*,
                                     void*) {
  NO_CUDA("cuda_nf4_dequantize_bf16");
}
void lora4j_cuda_nf4_double_quant(const float*, int64_t, uint8_t*, float*, float*, void*) {
  NO_CUDA("cuda_nf4_double_quant");
}
void lora4j_cuda_nf4_dequant_absmax(const uint8_t*, const float*, float, int64_t, float*, void*) {
  NO_CUDA("cuda_nf4_dequant_absmax");
}
void lora4j_cuda_nf4_matmul_fwd(const float*, int64_t, int64_t, int64_t, const uint8_t*,
                                const float*, int32_t, float*, void*) {
  NO_CUDA("cuda_nf4_matmul_fwd");
}
void lora4j_cuda_nf4_matmul_bwd_input(const float*, int64_t, int64_t, int64_t, const uint8_t*,
                                      const float*, int32_t, float*, void*) {
  NO_CUDA("cuda_nf4_matmul_bwd_input");
}
void lora4j_cuda_bf16_matmul_fwd(const float*, int64_t, int64_t, int64_t, const uint16_t*,
                                 float*, void*) {
  NO_CUDA("cuda_bf16_matmul_fwd");
}
}  // extern "C"

#include "lora4j/infer.h"
extern "C" {
void lora4j_cuda_axpy(int64_t, float, const float*, float*, void*) { NO_CUDA("cuda_axpy"); }
void lora4j_cuda_attention_decode(const float*, const float*, const float*, int64_t, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, float, float*, void*) {
  NO_CUDA("cuda_attention_decode");
}
void lora4j_cuda_decode_matvec(const float*, int64_t, const void*, int32_t, int64_t, int32_t,
                               float*, void*) {
  NO_CUDA("cuda_decode_matvec");
}
void lora4j_cuda_decode_gate_up(const float*, int64_t, const void*, const void*, int32_t, int64_t,
                                float*, void*) {
  NO_CUDA("cuda_decode_gate_up");
}
void lora4j_cuda_decode_attention(float*, const float*, const float*, int32_t, const float*, float*,
                                  float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*,
                                  void*) {
  NO_CUDA("cuda_decode_attention");
}
void lora4j_cuda_decode_embedding(const float*, int64_t, int64_t, int32_t, float*, void*) {
  NO_CUDA("cuda_decode_embedding");
}
}  // extern "C"
