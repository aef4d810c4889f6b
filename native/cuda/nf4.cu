// lora4j NF4 on CUDA: the twins of native/cpu/nf4.cpp (same math, same bytes; see the layout
// and equations at the top of that file and in include/lora4j/nf4.h).
//
// Exactness: quantize, dequantize, double quant and dequant_absmax are bit-identical with the
// CPU. nvcc contracts a*b+c into FMA by default, so every rounding that matters is written with
// __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn (never contracted).
//
// Fused matmul (tensor cores, bf16 in, fp32 accumulate):
//   forward      Y[T,out] = X[T,in] · deq(W)ᵀ      GEMM M=T, N=out, K=in
//   bwd to input dX[T,in] = dY[T,out] · deq(W)     GEMM M=T, N=in,  K=out
// One CTA computes a 128x128 tile of the output with 8 warps (2 along M x 4 along N, 64x32 per
// warp = 4x4 mma.sync.m16n8k16 tiles) and walks K in steps of 32:
//   A tile  sA[m][k]  X/dY rows, fp32 -> bf16 (round to nearest even) on the way to smem;
//   B tile  sB[n][k]  the MMA's "col" operand, k contiguous per output column n:
//           forward: W[n][k] rows decoded (nibble -> NF4 value * absmax -> bf16) in registers;
//           bwd:     W[k][n] decoded and stored transposed;
//           dense:   a bf16 W[n][k] copied (the benchmark/reference kernel).
// The next K step's global loads are issued into registers before the current step's MMAs
// (register double buffering); the dequantized W only ever exists in registers and smem.
// Rows are padded to 40 bf16 (80 bytes) so the fragment loads are bank-conflict free. Edge
// tiles (any T, in, out) are zero-filled on load and guarded on store.
#include "lora4j/nf4.h"
#include "lora4j/storage.h"
#include "cuda_common.cuh"
#include "mma_gemm.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace {

// NF4 code values: bitsandbytes csrc/kernels.cu dDequantizeNF4 (same table as the CPU file).
__constant__ float kNf4[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// bitsandbytes csrc/kernels.cu dQuantizeNF4, the decision tree with its fp32 literals
// (NaN: every comparison false -> 0b0000).
__device__ __forceinline__ uint32_t nf4_code(float x) {
  if (x > 0.03979014977812767f)
    if (x > 0.3893125355243683f)
      if (x > 0.6427869200706482f)
        return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      else
        return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    else if (x > 0.2035212516784668f)
      return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    else
      return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  else if (x > -0.33967943489551544f)
    if (x > -0.13791173323988914f)
      return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    else
      return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  else if (x > -0.6106329262256622f)
    return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  else
    return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

constexpr int kNestedBlock = 256;  // bitsandbytes quantize_4bit: quantize_blockwise(blocksize=256)
constexpr int kMeanChunk = 1024;   // must equal kMeanChunk in native/cpu/nf4.cpp (sum order)

__device__ __forceinline__ float load_src(const void* w, int dtype, int64_t e) {
  if (dtype == LORA4J_DTYPE_F32) return static_cast<const float*>(w)[e];
  const uint16_t h = static_cast<const uint16_t*>(w)[e];
  if (dtype == LORA4J_DTYPE_F16) return __half2float(__ushort_as_half(h));
  return __uint_as_float(uint32_t(h) << 16);
}

__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  v = red[0];
  __syncthreads();  // red is reused by the next call
  return v;
}

// ---- quantize: one CTA per NF4 block ------------------------------------------------------
__global__ void nf4_quantize_kernel(const void* __restrict__ w, int dtype, int64_t n,
                                    int blocksize, uint8_t* __restrict__ packed,
                                    float* __restrict__ absmax,
                                    unsigned long long* __restrict__ first_bad) {
  __shared__ float red[32];
  const int64_t e0 = int64_t(blockIdx.x) * blocksize;
  const int64_t e1 = min(n, e0 + blocksize);
  float m = 0.0f;
  for (int64_t e = e0 + threadIdx.x; e < e1; e += blockDim.x) {
    const float v = load_src(w, dtype, e);
    if (!isfinite(v)) atomicMin(first_bad, (unsigned long long)e);
    m = fmaxf(m, fabsf(v));
  }
  m = block_max(m, red);
  if (threadIdx.x == 0) absmax[blockIdx.x] = m;
  const float inv = __fdiv_rn(1.0f, m);
  // blocksize is even, so every pair (2j, 2j+1) of this block is in this block.
  for (int64_t e = e0 + 2 * threadIdx.x; e < e1; e += 2 * blockDim.x) {
    const uint32_t hi = nf4_code(__fmul_rn(load_src(w, dtype, e), inv));
    // Odd n: bitsandbytes pads the last block with 0.0, so the low nibble is the code of 0 * inv
    // (7, or 0 for an all-zero block where inv = inf and 0 * inf = NaN).
    const uint32_t lo = nf4_code(__fmul_rn(e + 1 < e1 ? load_src(w, dtype, e + 1) : 0.0f, inv));
    packed[e >> 1] = uint8_t((hi << 4) | lo);
  }
}

// ---- dequantize: 32 elements (16 bytes) per thread --------------------------------------------
template <typename OutT>
__device__ __forceinline__ OutT cvt_out(float v);
template <>
__device__ __forceinline__ float cvt_out<float>(float v) { return v; }
template <>
__device__ __forceinline__ uint16_t cvt_out<uint16_t>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Vector path: thread g handles elements [32g, 32g+32), all in one block (blocksize >= 32, a
// power of two). `out` must be 16-byte aligned; the launcher checks and else uses the scalar
// kernel. The last partial group is done by the scalar kernel.
template <typename OutT>
__global__ void nf4_dequant_vec_kernel(const uint4* __restrict__ packed,
                                       const float* __restrict__ absmax, int64_t ngroups,
                                       int sh, OutT* __restrict__ out) {
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = kNf4[threadIdx.x];
  __syncthreads();
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < ngroups;
       g += int64_t(gridDim.x) * blockDim.x) {
    const uint4 q = __ldg(packed + g);
    const float a = __ldg(absmax + ((g * 32) >> sh));
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    __align__(16) OutT v[32];
#pragma unroll
    for (int k = 0; k < 4; k++) {
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const uint32_t byte = (words[k] >> (8 * j)) & 0xFFu;
        v[k * 8 + 2 * j] = cvt_out<OutT>(__fmul_rn(lut[byte >> 4], a));
        v[k * 8 + 2 * j + 1] = cvt_out<OutT>(__fmul_rn(lut[byte & 15], a));
      }
    }
    uint4* o = reinterpret_cast<uint4*>(out + g * 32);
    const uint4* s = reinterpret_cast<const uint4*>(v);
#pragma unroll
    for (int k = 0; k < int(32 * sizeof(OutT) / 16); k++) o[k] = s[k];
  }
}

template <typename OutT>
__global__ void nf4_dequant_scalar_kernel(const uint8_t* __restrict__ packed,
                                          const float* __restrict__ absmax, int64_t e_begin,
                                          int64_t n, int sh, OutT* __restrict__ out) {
  for (int64_t e = e_begin + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const uint8_t b = packed[e >> 1];
    const float c = kNf4[(e & 1) ? (b & 15) : (b >> 4)];
    out[e] = cvt_out<OutT>(__fmul_rn(c, absmax[e >> sh]));
  }
}

// ---- double quantization --------------------------------------------------------------------
// mean in double, in the CPU's fixed order: chunk sums (sequential over kMeanChunk values),
// then their sum, sequentially, in one thread.
__global__ void chunk_sum_kernel(const float* __restrict__ a, int64_t n, double* __restrict__ part) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = c * kMeanChunk;
  if (b >= n) return;
  const int64_t e = min(n, b + kMeanChunk);
  double s = 0.0;
  for (int64_t i = b; i < e; i++) s = __dadd_rn(s, double(a[i]));
  part[c] = s;
}

__global__ void mean_kernel(const double* __restrict__ part, int64_t nchunks, int64_t n,
                            float* __restrict__ offset) {
  double t = 0.0;
  for (int64_t c = 0; c < nchunks; c++) t = __dadd_rn(t, part[c]);
  *offset = float(__ddiv_rn(t, double(n)));
}

// bitsandbytes csrc/kernels.cu dQuantize<0> (binary search + midpoint rule), verbatim logic.
__device__ __forceinline__ uint8_t dquantize_dynamic(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = __fmul_rn(__fadd_rn(upper, val), 0.5f);
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = __fmul_rn(__fadd_rn(lower, val), 0.5f);
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

// One CTA of 256 threads per nested block of 256 absmax values.
__global__ void nested_quant_kernel(const float* __restrict__ absmax, int64_t nblocks,
                                    const float* __restrict__ offset,
                                    const float* __restrict__ map, uint8_t* __restrict__ q,
                                    float* __restrict__ nested) {
  __shared__ float code[256];
  __shared__ float red[32];
  code[threadIdx.x] = map[threadIdx.x];
  const int64_t b = int64_t(blockIdx.x) * kNestedBlock + threadIdx.x;
  const float off = offset ? *offset : 0.0f;
  const float c = b < nblocks ? __fsub_rn(absmax[b], off) : 0.0f;
  const float m = block_max(fabsf(c), red);  // also syncs `code`
  if (threadIdx.x == 0) nested[blockIdx.x] = m;
  const float inv = __fdiv_rn(1.0f, m);
  if (b < nblocks) q[b] = dquantize_dynamic(code, __fmul_rn(c, inv));
}

__global__ void dequant_absmax_kernel(const uint8_t* __restrict__ q,
                                      const float* __restrict__ nested, float offset,
                                      int64_t nblocks, const float* __restrict__ map,
                                      float* __restrict__ absmax) {
  __shared__ float code[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) code[i] = map[i];
  __syncthreads();
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < nblocks;
       b += int64_t(gridDim.x) * blockDim.x)
    absmax[b] = __fadd_rn(__fmul_rn(code[q[b]], nested[b / kNestedBlock]), offset);
}

// ---- tensor-core GEMM main loop ------------------------------------------------------------
constexpr int BM = 128, BN = 128, BK = 32, PAD = 8, LDS = BK + PAD;  // LDS in bf16 elements
constexpr int kThreads = 256;

__device__ __forceinline__ uint16_t f2bf(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// The one tensor-core instruction (mma_gemm.cuh; in the emulation build its twin gathers the
// fragments of all 32 lanes by the PTX ISA layout, native/emu/emu.cpp).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  lora4j_mma::mma(c, a, b);
}

// A operand loader: rows of an fp32 [M, K] row-major matrix. Thread t loads 4 float4-sized
// pieces: piece p = it*256 + t -> row p/8, k offset (p%8)*4.
struct ALoad {
  float v[4][4];
  __device__ __forceinline__ void load(const float* __restrict__ A, int64_t M, int64_t K,
                                       int64_t m0, int64_t k0, bool vec) {
#pragma unroll
    for (int it = 0; it < 4; it++) {
      const int p = it * kThreads + threadIdx.x;
      const int64_t m = m0 + p / 8, k = k0 + (p % 8) * 4;
      if (m < M && vec && k + 4 <= K) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(A + m * K + k));
        v[it][0] = f.x, v[it][1] = f.y, v[it][2] = f.z, v[it][3] = f.w;
      } else {
#pragma unroll
        for (int j = 0; j < 4; j++) v[it][j] = (m < M && k + j < K) ? A[m * K + k + j] : 0.0f;
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t* sA) const {
#pragma unroll
    for (int it = 0; it < 4; it++) {
      const int p = it * kThreads + threadIdx.x;
      uint2 u;
      u.x = uint32_t(f2bf(v[it][0])) | (uint32_t(f2bf(v[it][1])) << 16);
      u.y = uint32_t(f2bf(v[it][2])) | (uint32_t(f2bf(v[it][3])) << 16);
      *reinterpret_cast<uint2*>(sA + (p / 8) * LDS + (p % 8) * 4) = u;
    }
  }
};

// The block scales the matmul kernels read: an fp32 absmax vector, or bitsandbytes' double-
// quantized form (8-bit codes into the dynamic map + fp32 nested absmax per 256 blocks + offset,
// storage.h), dequantized per read with dequant_absmax_kernel's exact roundings, so both forms
// give the same scale bits and the same products. No fp32 copy of a double-quantized absmax exists.
struct Scales {
  const float* absmax;  // [nblocks] fp32, or null: the double-quantized form below
  const uint8_t* q;     // [nblocks] codes
  const float* nested;  // [ceil(nblocks/256)]
  const float* map;     // [256] the dynamic map on the device
  float offset;
  __device__ __forceinline__ float operator()(int64_t b) const {
    if (absmax != nullptr) return __ldg(absmax + b);
    return __fadd_rn(__fmul_rn(__ldg(map + __ldg(q + b)), __ldg(nested + b / kNestedBlock)), offset);
  }
};

__device__ __forceinline__ float nf4_value(const uint8_t* __restrict__ w, const Scales& absmax,
                                           int sh, int64_t e, const float* lut) {
  const uint8_t b = __ldg(w + (e >> 1));
  return __fmul_rn(lut[(e & 1) ? (b & 15) : (b >> 4)], absmax(e >> sh));
}

// B loader, forward: W [N=out, K=in] NF4 rows; sB[n][k]. 512 groups of 8 consecutive k per
// tile, 2 per thread: group p -> n = p/4, k = (p%4)*8. Fast path (in % 8 == 0): one 32-bit load
// of 8 nibbles, one absmax (8 aligned elements never cross a block of >= 32).
struct BLoadNf4Fwd {
  uint32_t packed[2];
  float scale[2];
  float val[2][8];  // general path
  bool fast;
  __device__ __forceinline__ void load(const uint8_t* __restrict__ w, const Scales& absmax,
                                       int sh, int64_t N, int64_t K, int64_t n0, int64_t k0,
                                       const float* lut) {
    fast = (K % 8) == 0;
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      const int64_t n = n0 + p / 4, k = k0 + (p % 4) * 8;
      if (fast) {
        if (n < N && k < K) {
          const int64_t e = n * K + k;
          packed[it] = __ldg(reinterpret_cast<const uint32_t*>(w + (e >> 1)));
          scale[it] = absmax(e >> sh);
        } else {
          packed[it] = 0;
          scale[it] = 0.0f;  // NF4[0] * 0 = -0: a zero contribution
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++)
          val[it][j] = (n < N && k + j < K) ? nf4_value(w, absmax, sh, n * K + k + j, lut) : 0.0f;
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t* sB, const float* lut) const {
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      float f[8];
      if (fast) {
        // byte j of the little-endian word holds elements 2j (high nibble), 2j+1 (low).
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const uint32_t byte = (packed[it] >> (8 * j)) & 0xFFu;
          f[2 * j] = __fmul_rn(lut[byte >> 4], scale[it]);
          f[2 * j + 1] = __fmul_rn(lut[byte & 15], scale[it]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = val[it][j];
      }
      uint4 u;
      u.x = uint32_t(f2bf(f[0])) | (uint32_t(f2bf(f[1])) << 16);
      u.y = uint32_t(f2bf(f[2])) | (uint32_t(f2bf(f[3])) << 16);
      u.z = uint32_t(f2bf(f[4])) | (uint32_t(f2bf(f[5])) << 16);
      u.w = uint32_t(f2bf(f[6])) | (uint32_t(f2bf(f[7])) << 16);
      *reinterpret_cast<uint4*>(sB + (p / 4) * LDS + (p % 4) * 8) = u;
    }
  }
};

// B loader, backward to the input: W [K=out rows, N=in cols]; the tile is BK rows x BN cols,
// stored transposed into sB[n][k]. Group p -> k = p/16, n = (p%16)*8 (8 consecutive columns of
// one W row). Fast path when in % 8 == 0 (here the row length is N).
struct BLoadNf4Bwd {
  uint32_t packed[2];
  float scale[2];
  float val[2][8];
  bool fast;
  __device__ __forceinline__ void load(const uint8_t* __restrict__ w, const Scales& absmax,
                                       int sh, int64_t N, int64_t K, int64_t n0, int64_t k0,
                                       const float* lut) {
    fast = (N % 8) == 0;
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      const int64_t k = k0 + p / 16, n = n0 + (p % 16) * 8;
      if (fast) {
        if (k < K && n < N) {
          const int64_t e = k * N + n;
          packed[it] = __ldg(reinterpret_cast<const uint32_t*>(w + (e >> 1)));
          scale[it] = absmax(e >> sh);
        } else {
          packed[it] = 0;
          scale[it] = 0.0f;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++)
          val[it][j] = (k < K && n + j < N) ? nf4_value(w, absmax, sh, k * N + n + j, lut) : 0.0f;
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t* sB, const float* lut) const {
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      const int kk = p / 16, nn = (p % 16) * 8;
      float f[8];
      if (fast) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const uint32_t byte = (packed[it] >> (8 * j)) & 0xFFu;
          f[2 * j] = __fmul_rn(lut[byte >> 4], scale[it]);
          f[2 * j + 1] = __fmul_rn(lut[byte & 15], scale[it]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = val[it][j];
      }
#pragma unroll
      for (int j = 0; j < 8; j++) sB[(nn + j) * LDS + kk] = f2bf(f[j]);
    }
  }
};

// B loader, dense bf16 W [N, K] (reference kernel): group p -> n = p/4, k = (p%4)*8.
struct BLoadBf16 {
  uint4 v[2];
  __device__ __forceinline__ void load(const uint16_t* __restrict__ w, int64_t N, int64_t K,
                                       int64_t n0, int64_t k0) {
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      const int64_t n = n0 + p / 4, k = k0 + (p % 4) * 8;
      if (n < N && (K % 8) == 0 && k + 8 <= K) {
        v[it] = __ldg(reinterpret_cast<const uint4*>(w + n * K + k));
      } else {
        uint16_t t[8];
#pragma unroll
        for (int j = 0; j < 8; j++) t[j] = (n < N && k + j < K) ? w[n * K + k + j] : uint16_t(0);
        v[it].x = t[0] | (uint32_t(t[1]) << 16);
        v[it].y = t[2] | (uint32_t(t[3]) << 16);
        v[it].z = t[4] | (uint32_t(t[5]) << 16);
        v[it].w = t[6] | (uint32_t(t[7]) << 16);
      }
    }
  }
  __device__ __forceinline__ void store(uint16_t* sB) const {
#pragma unroll
    for (int it = 0; it < 2; it++) {
      const int p = it * kThreads + threadIdx.x;
      *reinterpret_cast<uint4*>(sB + (p / 4) * LDS + (p % 4) * 8) = v[it];
    }
  }
};

// The MMAs of one BK = 32 step on the smem tiles. Warp (wm, wn) owns rows wm*64..+64 and
// columns wn*32..+32 of the CTA tile. Fragment layouts (PTX ISA, mma.m16n8k16 bf16):
//   a0:(g, 2q..2q+1) a1:(g+8, 2q..) a2:(g, 2q+8..) a3:(g+8, 2q+8..)   g = lane/4, q = lane%4
//   b0:(k 2q..2q+1, n g) b1:(k 2q+8.., n g);  c0,c1:(g, 2q..2q+1) c2,c3:(g+8, 2q..2q+1)
__device__ __forceinline__ void mma_tile(const uint16_t* sA, const uint16_t* sB, float (&acc)[4][4][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int kk = 0; kk < BK; kk += 16) {
    uint32_t a[4][4], b[4][2];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const uint16_t* base = sA + (wm * 64 + i * 16 + g) * LDS + kk + 2 * q;
      a[i][0] = *reinterpret_cast<const uint32_t*>(base);
      a[i][1] = *reinterpret_cast<const uint32_t*>(base + 8 * LDS);
      a[i][2] = *reinterpret_cast<const uint32_t*>(base + 8);
      a[i][3] = *reinterpret_cast<const uint32_t*>(base + 8 * LDS + 8);
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint16_t* base = sB + (wn * 32 + j * 8 + g) * LDS + kk + 2 * q;
      b[j][0] = *reinterpret_cast<const uint32_t*>(base);
      b[j][1] = *reinterpret_cast<const uint32_t*>(base + 8);
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) mma_bf16(acc[i][j], a[i], b[j]);
  }
}

__device__ __forceinline__ void store_tile(float* __restrict__ C, int64_t M, int64_t N, int64_t m0,
                                           int64_t n0, const float (&acc)[4][4][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = warp >> 2, wn = warp & 3, g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int64_t r = m0 + wm * 64 + i * 16 + g;
      const int64_t c = n0 + wn * 32 + j * 8 + 2 * q;
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int64_t rr = r + 8 * h;
        if (rr >= M) continue;
        if (c < N) C[rr * N + c] = acc[i][j][2 * h];
        if (c + 1 < N) C[rr * N + c + 1] = acc[i][j][2 * h + 1];
      }
    }
}

// MODE 0: NF4 forward, 1: NF4 backward to the input, 2: dense bf16 forward.
template <int MODE>
__global__ void __launch_bounds__(kThreads)
gemm_kernel(const float* __restrict__ A, int64_t M, int64_t N, int64_t K,
            const uint8_t* __restrict__ w4, Scales absmax, int sh,
            const uint16_t* __restrict__ w16, float* __restrict__ C) {
  __shared__ __align__(16) uint16_t sA[BM * LDS];
  __shared__ __align__(16) uint16_t sB[BN * LDS];
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = kNf4[threadIdx.x];
  __syncthreads();
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const bool avec = (K % 4) == 0;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

  ALoad al;
  BLoadNf4Fwd bf;
  BLoadNf4Bwd bb;
  BLoadBf16 bd;
  auto load_b = [&](int64_t k0) {
    if constexpr (MODE == 0) bf.load(w4, absmax, sh, N, K, n0, k0, lut);
    if constexpr (MODE == 1) bb.load(w4, absmax, sh, N, K, n0, k0, lut);
    if constexpr (MODE == 2) bd.load(w16, N, K, n0, k0);
  };
  auto store_b = [&]() {
    if constexpr (MODE == 0) bf.store(sB, lut);
    if constexpr (MODE == 1) bb.store(sB, lut);
    if constexpr (MODE == 2) bd.store(sB);
  };
  al.load(A, M, K, m0, 0, avec);
  load_b(0);
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    al.store(sA);
    store_b();
    __syncthreads();
    if (k0 + BK < K) {  // next step's global loads fly while the MMAs run
      al.load(A, M, K, m0, k0 + BK, avec);
      load_b(k0 + BK);
    }
    mma_tile(sA, sB, acc);
    __syncthreads();
  }
  store_tile(C, M, N, m0, n0, acc);
}

// ---- launchers ------------------------------------------------------------------------------
int log2_pow2(int32_t bs) {
  LORA4J_CHECK(bs >= 32 && (bs & (bs - 1)) == 0,
               "blocksize must be a power of two >= 32, got " + std::to_string(bs));
  int s = 0;
  while ((1 << s) < bs) s++;
  return s;
}

int grid_for(int64_t work, int threads) {
  const int64_t g = (work + threads - 1) / threads;
  return int(std::min<int64_t>(std::max<int64_t>(g, 1), 65535 * 16));
}

void launch_quantize(const void* w, int32_t dtype, int64_t n, int32_t blocksize, uint8_t* packed,
                     float* absmax, cudaStream_t st) {
  LORA4J_CHECK(dtype == LORA4J_DTYPE_F32 || dtype == LORA4J_DTYPE_BF16 || dtype == LORA4J_DTYPE_F16,
               "unknown dtype " + std::to_string(dtype));
  LORA4J_CHECK(blocksize >= 2 && blocksize % 2 == 0, "blocksize must be even");
  const int64_t nblocks = (n + blocksize - 1) / blocksize;
  if (nblocks == 0) return;
  LORA4J_CHECK(nblocks <= INT32_MAX, "too many blocks");
  unsigned long long* bad = nullptr;
  LORA4J_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&bad), sizeof(*bad), st));
  LORA4J_CUDA_CHECK(cudaMemsetAsync(bad, 0xFF, sizeof(*bad), st));  // ULLONG_MAX: none
  const int threads = blocksize >= 1024 ? 256 : 64;
  LORA4J_LAUNCH(unsigned(nblocks), threads, 0, st, nf4_quantize_kernel)(
      w, dtype, n, blocksize, packed, absmax, bad);
  LORA4J_CUDA_LAUNCH_CHECK("nf4_quantize_kernel");
  unsigned long long first = 0;
  LORA4J_CUDA_CHECK(cudaMemcpyAsync(&first, bad, sizeof(first), cudaMemcpyDeviceToHost, st));
  LORA4J_CUDA_CHECK(cudaFreeAsync(bad, st));
  LORA4J_CUDA_CHECK(cudaStreamSynchronize(st));
  if (first != ~0ull) {
    throw std::runtime_error("lora4j cuda: nf4_quantize: non-finite input value at element " +
                             std::to_string(first) + " (of " + std::to_string(n) + ")");
  }
}

template <typename OutT>
void launch_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int32_t blocksize,
                       OutT* out, cudaStream_t st, const char* name) {
  if (n <= 0) return;
  const int sh = log2_pow2(blocksize);
  const bool aligned = (reinterpret_cast<uintptr_t>(out) % 16 == 0) &&
                       (reinterpret_cast<uintptr_t>(packed) % 16 == 0);
  const int64_t ngroups = aligned ? n / 32 : 0;
  if (ngroups > 0) {
    LORA4J_LAUNCH(grid_for(ngroups, 256), 256, 0, st, nf4_dequant_vec_kernel<OutT>)(
        reinterpret_cast<const uint4*>(packed), absmax, ngroups, sh, out);
    LORA4J_CUDA_LAUNCH_CHECK(name);
  }
  const int64_t rest = n - ngroups * 32;
  if (rest > 0) {
    LORA4J_LAUNCH(grid_for(rest, 256), 256, 0, st, nf4_dequant_scalar_kernel<OutT>)(
        packed, absmax, ngroups * 32, n, sh, out);
    LORA4J_CUDA_LAUNCH_CHECK(name);
  }
}

// The dynamic map on the device: built on the host by the CPU twin (the single definition).
// One 1 KiB table per device, kept for the process lifetime.
const float* device_dynamic_map() {
  static std::mutex mu;
  static float* per_device[64] = {};
  int cur = 0;
  LORA4J_CUDA_CHECK(cudaGetDevice(&cur));
  LORA4J_CHECK(cur >= 0 && cur < 64, "device ordinal out of range");
  std::lock_guard<std::mutex> lock(mu);
  if (per_device[cur] == nullptr) {
    float h[256];
    lora4j_dynamic_map(h);
    float* p = nullptr;
    LORA4J_CUDA_CHECK(cudaMalloc(&p, sizeof(h)));
    LORA4J_CUDA_CHECK(cudaMemcpy(p, h, sizeof(h), cudaMemcpyHostToDevice));
    per_device[cur] = p;
  }
  return per_device[cur];
}

Scales fp32_scales(const float* absmax) { return Scales{absmax, nullptr, nullptr, nullptr, 0.0f}; }

Scales dq_scales(const uint8_t* q, const float* nested, float offset) {
  return Scales{nullptr, q, nested, device_dynamic_map(), offset};
}

void launch_double_quant(const float* absmax, int64_t nblocks, uint8_t* q, float* nested,
                         float* offset, cudaStream_t st) {
  LORA4J_CHECK(nblocks > 0, "double quantization needs at least one block");
  const float* map = device_dynamic_map();
  const int64_t nchunks = (nblocks + kMeanChunk - 1) / kMeanChunk;
  double* part = nullptr;
  LORA4J_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&part), size_t(nchunks) * sizeof(double), st));
  LORA4J_LAUNCH(grid_for(nchunks, 128), 128, 0, st, chunk_sum_kernel)(absmax, nblocks, part);
  LORA4J_CUDA_LAUNCH_CHECK("chunk_sum_kernel");
  LORA4J_LAUNCH(1, 1, 0, st, mean_kernel)(part, nchunks, nblocks, offset);
  LORA4J_CUDA_LAUNCH_CHECK("mean_kernel");
  const int64_t ng = (nblocks + kNestedBlock - 1) / kNestedBlock;
  LORA4J_LAUNCH(unsigned(ng), kNestedBlock, 0, st, nested_quant_kernel)(
      absmax, nblocks, offset, map, q, nested);
  LORA4J_CUDA_LAUNCH_CHECK("nested_quant_kernel");
  LORA4J_CUDA_CHECK(cudaFreeAsync(part, st));
}

template <int MODE>
void launch_gemm(const float* A, int64_t M, int64_t N, int64_t K, const uint8_t* w4,
                 const Scales& absmax, int32_t blocksize, const uint16_t* w16, float* C,
                 cudaStream_t st, const char* name) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    LORA4J_CUDA_CHECK(cudaMemsetAsync(C, 0, size_t(M * N) * sizeof(float), st));
    return;
  }
  const int sh = MODE == 2 ? 0 : log2_pow2(blocksize);
  const int64_t gx = (N + BN - 1) / BN, gy = (M + BM - 1) / BM;
  LORA4J_CHECK(gy <= 65535, "T too large for one launch: " + std::to_string(M));
  LORA4J_LAUNCH(dim3(unsigned(gx), unsigned(gy)), kThreads, 0, st, gemm_kernel<MODE>)(
      A, M, N, K, w4, absmax, sh, w16, C);
  LORA4J_CUDA_LAUNCH_CHECK(name);
}

}  // namespace

extern "C" {

void lora4j_cuda_nf4_quantize(const void* w, int32_t dtype, int64_t n, int32_t blocksize,
                              uint8_t* packed, float* absmax, void* stream) {
  launch_quantize(w, dtype, n, blocksize, packed, absmax, as_stream(stream));
}

void lora4j_cuda_nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n,
                                int32_t blocksize, float* out, void* stream) {
  launch_dequantize<float>(packed, absmax, n, blocksize, out, as_stream(stream), "nf4_dequantize");
}

void lora4j_cuda_nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n,
                                     int32_t blocksize, uint16_t* out, void* stream) {
  launch_dequantize<uint16_t>(packed, absmax, n, blocksize, out, as_stream(stream), "nf4_dequantize_bf16");
}

void lora4j_cuda_nf4_double_quant(const float* absmax, int64_t nblocks, uint8_t* qabsmax,
                                  float* nested_absmax, float* offset, void* stream) {
  launch_double_quant(absmax, nblocks, qabsmax, nested_absmax, offset, as_stream(stream));
}

void lora4j_cuda_nf4_dequant_absmax(const uint8_t* qabsmax, const float* nested_absmax,
                                    float offset, int64_t nblocks, float* absmax, void* stream) {
  if (nblocks <= 0) return;
  const float* map = device_dynamic_map();
  LORA4J_LAUNCH(grid_for(nblocks, 256), 256, 0, as_stream(stream), dequant_absmax_kernel)(
      qabsmax, nested_absmax, offset, nblocks, map, absmax);
  LORA4J_CUDA_LAUNCH_CHECK("dequant_absmax_kernel");
}

void lora4j_cuda_nf4_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                const uint8_t* w, const float* absmax, int32_t blocksize,
                                float* y, void* stream) {
  launch_gemm<0>(x, T, out, in, w, fp32_scales(absmax), blocksize, nullptr, y, as_stream(stream),
                 "nf4_matmul_fwd");
}

void lora4j_cuda_nf4_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                      const uint8_t* w, const float* absmax, int32_t blocksize,
                                      float* dx, void* stream) {
  launch_gemm<1>(dy, T, in, out, w, fp32_scales(absmax), blocksize, nullptr, dx, as_stream(stream),
                 "nf4_matmul_bwd_input");
}

void lora4j_cuda_bf16_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                 const uint16_t* w, float* y, void* stream) {
  launch_gemm<2>(x, T, out, in, nullptr, fp32_scales(nullptr), 32, w, y, as_stream(stream), "bf16_matmul_fwd");
}

void lora4j_cuda_nf4_dq_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                                   const uint8_t* w, const uint8_t* qabsmax,
                                   const float* nested_absmax, float offset, int32_t blocksize,
                                   float* y, void* stream) {
  launch_gemm<0>(x, T, out, in, w, dq_scales(qabsmax, nested_absmax, offset), blocksize, nullptr, y,
                 as_stream(stream), "nf4_dq_matmul_fwd");
}

void lora4j_cuda_nf4_dq_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                         const uint8_t* w, const uint8_t* qabsmax,
                                         const float* nested_absmax, float offset,
                                         int32_t blocksize, float* dx, void* stream) {
  launch_gemm<1>(dy, T, in, out, w, dq_scales(qabsmax, nested_absmax, offset), blocksize, nullptr, dx,
                 as_stream(stream), "nf4_dq_matmul_bwd_input");
}

}  // extern "C"
