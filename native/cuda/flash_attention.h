// Tensor-core flash attention (native/cuda/flash_attention.cu): the implementation of
// lora4j_cuda_attention_fwd/bwd (ops.h) where lora4j_cuda_flash_attention_used(S, D), and the
// entry of the parity harness, which also drives its `softcap` (Gemma 2's score soft-capping,
// s = softcap·tanh(s/softcap), 0 = off). Same arguments and layouts as the ops.h op, with
// softcap after D. Not part of the generated Java bindings (those read native/include only).
#pragma once
#include <cstdint>

extern "C" {

// 1 where the op takes the tensor-core path: S >= 64 and D a multiple of 16 in [64, 128]
// (the rule: bf16 mma wherever M, N and K are >= 64).
int32_t lora4j_cuda_flash_attention_used(int64_t S, int64_t D);

// D: a multiple of 16 in [16, 128]; softcap >= 0.
void lora4j_cuda_flash_attention_fwd(const float* q, const float* k, const float* v, const int32_t* seg,
                                     int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap,
                                     float* out, float* lse, void* stream);
void lora4j_cuda_flash_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                                     const float* dout, const float* lse, const int32_t* seg, int64_t B,
                                     int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap, float* dq,
                                     float* dk, float* dv, void* stream);

}  // extern "C"
