// lora4j NF4 4-bit quantization and 4-bit matmul: the public C API.
//
// Format (byte-exact with bitsandbytes, see DESIGN.md §4):
//   - the [out, in] row-major weight is flattened to n = out*in elements and cut into blocks of
//     `blocksize` consecutive elements (blocks may span rows; the last block may be short);
//   - absmax[b] = max |w| over block b, fp32;
//   - x = w * (1/absmax[b]) in fp32; code = number of the 15 bitsandbytes thresholds x exceeds;
//   - packed byte j = (code[2j] << 4) | code[2j+1]: the first element sits in the HIGH nibble;
//     for odd n the last byte's low nibble encodes a padding 0.0 (code 7; 0 when that block's
//     absmax is 0), as bitsandbytes pads its last block;
//   - double quantization: offset = mean(absmax); (absmax - offset) quantized blockwise (256)
//     with bitsandbytes' signed 8-bit dynamic map; nested_absmax fp32 per 256 absmax values.
//
// Every function exists for the CPU (lora4j_*) and for CUDA (lora4j_cuda_*, device pointers,
// a cudaStream_t passed as void*). Errors throw std::runtime_error (never exit/abort);
// arguments are validated in Java before the call, native code only asserts invariants.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Element dtypes of a source weight.
#define LORA4J_DTYPE_F32 0
#define LORA4J_DTYPE_BF16 1
#define LORA4J_DTYPE_F16 2

// The 16 NF4 code values (bitsandbytes' NF4 table), copied into out[16].
void lora4j_nf4_code(float* out);                 // out: [16]
// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(signed=True, 7, 8)), fp32.
void lora4j_dynamic_map(float* out);              // out: [256], ascending

// ---- CPU -----------------------------------------------------------------------------------

// Quantize n elements of w (dtype LORA4J_DTYPE_*) to NF4.
// w:      [n] of f32 / bf16 / f16 (bf16, f16 as uint16 bit patterns)
// packed: [(n+1)/2] NF4 bytes, high nibble first
// absmax: [ceil(n/blocksize)] fp32
// Throws if w holds NaN or Inf (bitsandbytes would write garbage).
void lora4j_nf4_quantize(const void* w, int32_t dtype, int64_t n, int32_t blocksize,
                         uint8_t* packed, float* absmax);

// Dequantize n NF4 elements to fp32. out: [n]
void lora4j_nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n,
                           int32_t blocksize, float* out);

// Double quantization of an absmax vector.
// absmax:        [nblocks] fp32
// qabsmax:       [nblocks] uint8 codes into the dynamic map
// nested_absmax: [ceil(nblocks/256)] fp32
// offset:        [1] fp32, the mean of absmax
void lora4j_nf4_double_quant(const float* absmax, int64_t nblocks, uint8_t* qabsmax,
                             float* nested_absmax, float* offset);

// Inverse of double quantization: absmax[b] = map[qabsmax[b]] * nested_absmax[b/256] + offset.
void lora4j_nf4_dequant_absmax(const uint8_t* qabsmax, const float* nested_absmax,
                               float offset, int64_t nblocks, float* absmax);

// The 8-bit step of double quantization on its own (bitsandbytes quantize_blockwise with
// blocksize 256 and the dynamic map), for an absmax vector that is already centered
// (absmax - offset). lora4j_nf4_double_quant = mean, center, then this. Lets tests check the
// step bit-exactly against a reference offset.
// centered: [nblocks] fp32; qabsmax: [nblocks]; nested_absmax: [ceil(nblocks/256)] fp32
void lora4j_nf4_quantize_nested(const float* centered, int64_t nblocks, uint8_t* qabsmax,
                                float* nested_absmax);

// Y[T, out] = X[T, in] · dequant(W)ᵀ,   W: [out, in] NF4 (flattened blocks, see above).
// x: [T, in] fp32 row-major; y: [T, out] fp32 row-major (overwritten).
// T >= 16: cache-sized tiles of W are dequantized to fp32 and multiplied with sgemm;
// T < 16: fused GEMV that decodes nibbles in registers.
void lora4j_nf4_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                           const uint8_t* w, const float* absmax, int32_t blocksize, float* y);

// lora4j_nf4_matmul_fwd with bitsandbytes' bnb_4bit_compute_dtype = bfloat16: Y = bf16(X) ·
// bf16(dequant(W))ᵀ with fp32 accumulation (each dequantized weight NF4·absmax rounded to bf16, as
// bitsandbytes dequantizes to the compute dtype). The summation order is fixed (16 lanes of pairs,
// native/cpu/nf4_bf16.cpp), so every ISA path gives the same bits: vdpbf16ps where the CPU has
// AVX512_BF16, the same roundings emulated with fp32 FMAs elsewhere. Shapes as lora4j_nf4_matmul_fwd;
// blocksize a power of two >= 32.
void lora4j_nf4_matmul_fwd_bf16(const float* x, int64_t T, int64_t in, int64_t out,
                                const uint8_t* w, const float* absmax, int32_t blocksize, float* y);

// Which path lora4j_nf4_matmul_fwd_bf16 takes: "avx512bf16", "avx512", "avx2" or "scalar".
const char* lora4j_nf4_bf16_path(void);

// dX[T, in] = dY[T, out] · dequant(W)      (backward to the input; W is frozen)
// dy: [T, out] fp32; dx: [T, in] fp32 (overwritten).
void lora4j_nf4_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                 const uint8_t* w, const float* absmax, int32_t blocksize,
                                 float* dx);

// Threads of lora4j's CPU pool, the calling thread included (<= 0: leave it as it is). The
// default is LORA4J_NUM_THREADS, else OMP_NUM_THREADS, else the physical cores (runtime.h).
void lora4j_set_num_threads(int32_t n);
int32_t lora4j_get_num_threads(void);

// ---- CUDA (compiled when nvcc is found; otherwise these throw "built without CUDA") ---------

void lora4j_cuda_nf4_quantize(const void* w, int32_t dtype, int64_t n, int32_t blocksize,
                              uint8_t* packed, float* absmax, void* stream);
void lora4j_cuda_nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n,
                                int32_t blocksize, float* out, void* stream);
// Dequantize to bf16 (uint16 bit patterns), for "dequantize then dense matmul" paths.
void lora4j_cuda_nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n,
                                     int32_t blocksize, uint16_t* out, void* stream);
void lora4j_cuda_nf4_double_quant(const float* absmax, int64_t nblocks, uint8_t* qabsmax,
                                  float* nested_absmax, float* offset, void* stream);
void lora4j_cuda_nf4_dequant_absmax(const uint8_t* qabsmax, const float* nested_absmax,
                                    float offset, int64_t nblocks, float* absmax, void* stream);
// Fused NF4 matmul: tiles of W are dequantized in shared memory/registers to bf16 and fed to
// tensor-core MMA with fp32 accumulation; the dequantized weight never reaches global memory.
// x: [T, in] fp32 (converted to bf16 on load); y: [T, out] fp32.
void lora4j_cuda_nf4_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                const uint8_t* w, const float* absmax, int32_t blocksize,
                                float* y, void* stream);
void lora4j_cuda_nf4_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                      const uint8_t* w, const float* absmax, int32_t blocksize,
                                      float* dx, void* stream);
// Dense reference for benchmarks and tests: Y[T, out] = X[T, in] · Wᵀ with W [out, in] bf16
// (uint16 bit patterns), on the same tensor-core main loop as the fused NF4 matmul, so that
// "dequantize to bf16 + dense matmul" and the fused kernel can be compared in one run.
void lora4j_cuda_bf16_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                 const uint16_t* w, float* y, void* stream);

#ifdef __cplusplus
}
#endif
