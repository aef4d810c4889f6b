// lora4j NF4 (bitsandbytes 4-bit NormalFloat) on the CPU: quantize, dequantize, double
// quantization, and the two matmuls a frozen QLoRA base weight needs. This file is the fallback
// backend and the oracle the CUDA twins (native/cuda/nf4.cu) are tested against.
//
// ---- Layout -----------------------------------------------------------------------------------
// W is [out, in] row-major, flattened to n = out*in elements e = o*in + i.
//   block(e)  = e / blocksize                       (blocks may span rows: in=288, blocksize=64)
//   byte(e)   = e / 2, nibble = (e even) ? high : low   packed[j] = (q[2j] << 4) | q[2j+1]
//   absmax[b] = max_{e in b} |w_e|                  fp32
//   q_e       = #{ t in THRESH : w_e * (1/absmax[b]) > t }    (fp32 reciprocal, then multiply)
//   deq_e     = NF4[q_e] * absmax[b]                fp32, one rounding
// absmax = 0 gives 0 * inf = NaN, every comparison is false, q = 0, deq = -1 * 0 = 0
// (bitsandbytes' decision tree does exactly the same). For odd n the low nibble of the last
// byte encodes a padding 0.0 as bitsandbytes does: code 7 (0 when the block's absmax is 0).
//
// ---- Double quantization (bitsandbytes quantize_4bit(compress_statistics=True)) --------------
//   offset      = mean(absmax)            (double sum in a fixed order, see mean_fixed_order)
//   c_b         = absmax[b] - offset      fp32
//   nested[g]   = max_{b in g} |c_b|      g = b / 256
//   qabsmax[b]  = dQuantize(MAP, c_b * (1/nested[g]))   bitsandbytes' 7-step binary search +
//                                          midpoint rule (csrc/kernels.cu dQuantize<0>)
//   absmax'[b]  = MAP[qabsmax[b]] * nested[g] + offset   (multiply, round, add, round: no FMA)
//
// ---- Matmuls ----------------------------------------------------------------------------------
//   forward      Y[T,out] = X[T,in] · deq(W)ᵀ       y[t,o] = Σ_i x[t,i] · deq(W)[o,i]
//   bwd to input dX[T,in] = dY[T,out] · deq(W)      dx[t,i] = Σ_o dy[t,o] · deq(W)[o,i]
// (W is frozen: no weight gradient.) T >= kTileMinT: dequantize a panel of W rows into a
// thread-local fp32 buffer and call lora4j_sgemm on it (forward: a panel of output rows, N
// blocking; backward: a panel of W rows = a K panel, accumulated with beta = 1). T < kTileMinT:
// fused GEMV that decodes nibbles in registers. T = 1 forward (decode; in % 8 == 0, blocksize
// >= 8): dispatched by ISA (isa.h, LORA4J_DECODE_ISA): one vpermps per 16 weights from a zmm
// table with AVX-512F, two + a blend with AVX2, a portable loop for `scalar` (see gemv1_*).
// 1 < T < kTileMinT and the backward, fast path (in % 32 == 0, blocksize >= 32), AVX2: plain NF4
// values from four vpshufb byte planes + two rounds of unpacks (see decode32p), absmax applied
// once per 32-element group, x (dx) permuted to the decoder's lane order once per call. General
// path: the 16 NF4 values pre-multiplied by the block's absmax live in two ymm registers and
// vpermps + vblendvps look codes up.
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"
#include "common.h"
#include "isa.h"
#include "parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <mutex>
#include <vector>

namespace {

// NF4 code values, bitsandbytes csrc/kernels.cu dDequantizeNF4 (generated there by
// tests/test_functional.py test_normal_map_tree), index 0..15:
constexpr float kNf4[16] = {
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

// Decision thresholds of bitsandbytes csrc/kernels.cu dQuantizeNF4 (the midpoints between
// neighbouring NF4 values, as fp32 literals), ascending; code = number strictly exceeded:
constexpr float kNf4Thresh[15] = {
    -0.8480964004993439f,
    -0.6106329262256622f,
    -0.4599952697753906f,
    -0.33967943489551544f,
    -0.23460740596055984f,
    -0.13791173323988914f,
    -0.045525018125772476f,
    0.03979014977812767f,
    0.1202552504837513f,
    0.2035212516784668f,
    0.2920137718319893f,
    0.3893125355243683f,
    0.5016634166240692f,
    0.6427869200706482f,
    0.8614784181118011f,
};

// bitsandbytes nests the absmax quantization in blocks of 256 (quantize_4bit: blocksize=256).
constexpr int64_t kNestedBlock = 256;
// Below this many rows the matmuls use the fused GEMV; from here on, dequantize + sgemm.
constexpr int64_t kTileMinT = 16;
// Target fp32 elements of one dequantized W panel (4 MiB): large enough that sgemm's own
// packing of X/dY per call stays a few percent of the work, small enough to stay in L3.
constexpr int64_t kPanelElems = int64_t(1) << 20;

// Keep a value out of floating-point contraction: GCC contracts a*b+c into an FMA under
// -ffp-contract=fast (its default), which would change bitsandbytes' two-rounding results.
inline float no_contract(float v) {
  asm("" : "+x"(v));
  return v;
}

inline uint8_t nf4_code_scalar(float x) {
  int q = 0;
  for (int t = 0; t < 15; t++) q += x > kNf4Thresh[t];
  return uint8_t(q);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }  // F16C: exact

// Load 8 source elements as fp32.
inline __m256 load8(const void* w, int32_t dtype, int64_t e) {
  if (dtype == LORA4J_DTYPE_F32) return _mm256_loadu_ps(static_cast<const float*>(w) + e);
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + e));
  if (dtype == LORA4J_DTYPE_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline float load1(const void* w, int32_t dtype, int64_t e) {
  if (dtype == LORA4J_DTYPE_F32) return static_cast<const float*>(w)[e];
  uint16_t h = static_cast<const uint16_t*>(w)[e];
  return dtype == LORA4J_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// 8 NF4 codes (fp32 x) -> 8 int32 codes in [0, 15], NaN -> 0.
inline __m256i nf4_code8(__m256 x) {
  __m256i q = _mm256_setzero_si256();
  for (int t = 0; t < 15; t++) {
    // _CMP_GT_OQ: ordered, so NaN compares false like C's '>'. The mask is -1 per true lane.
    __m256 m = _mm256_cmp_ps(x, _mm256_set1_ps(kNf4Thresh[t]), _CMP_GT_OQ);
    q = _mm256_sub_epi32(q, _mm256_castps_si256(m));
  }
  return q;
}

// Quantize one block [e0, e1) whose absmax is known. e0 is even (blocksize is even).
void quantize_block(const void* w, int32_t dtype, int64_t e0, int64_t e1, float amax,
                    uint8_t* packed) {
  const float inv = 1.0f / amax;
  const __m256 vinv = _mm256_set1_ps(inv);
  int64_t e = e0;
  alignas(32) int32_t q[8];
  for (; e + 8 <= e1; e += 8) {
    __m256i c = nf4_code8(_mm256_mul_ps(load8(w, dtype, e), vinv));
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), c);
    uint8_t* p = packed + e / 2;
    for (int j = 0; j < 4; j++) p[j] = uint8_t((q[2 * j] << 4) | q[2 * j + 1]);
  }
  for (; e < e1; e += 2) {
    uint8_t hi = nf4_code_scalar(load1(w, dtype, e) * inv);
    // Odd n: bitsandbytes pads the last block with 0.0, so the low nibble is the code of
    // 0 * inv (7; 0 for an all-zero block, where 0 * inf = NaN).
    uint8_t lo = nf4_code_scalar((e + 1 < e1 ? load1(w, dtype, e + 1) : 0.0f) * inv);
    packed[e / 2] = uint8_t((hi << 4) | lo);
  }
}

// ---- AVX2 NF4 decoding ----------------------------------------------------------------------
// The 16 NF4 values times the block absmax, split in two ymm halves (codes 0-7, 8-15).
struct Lut {
  __m256 lo, hi;
};

inline Lut make_lut(float amax) {
  const __m256 a = _mm256_set1_ps(amax);
  return {_mm256_mul_ps(_mm256_loadu_ps(kNf4), a), _mm256_mul_ps(_mm256_loadu_ps(kNf4 + 8), a)};
}

// 8 int32 codes -> 8 fp32 values: vpermps picks from both halves by the low 3 bits; bit 3,
// shifted into the sign bit, selects the half.
inline __m256 lookup8(const Lut& l, __m256i q) {
  __m256 a = _mm256_permutevar8x32_ps(l.lo, q);
  __m256 b = _mm256_permutevar8x32_ps(l.hi, q);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
}

// 8 packed bytes (16 elements, first element in the high nibble of p[0]) -> 16 codes, in
// element order, as bytes.
inline __m128i unpack16(const uint8_t* p) {
  __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
  __m128i lo = _mm_and_si128(b, m);
  return _mm_unpacklo_epi8(hi, lo);
}

inline void decode16(const uint8_t* p, const Lut& l, __m256& w0, __m256& w1) {
  __m128i q = unpack16(p);
  w0 = lookup8(l, _mm256_cvtepu8_epi32(q));
  w1 = lookup8(l, _mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)));
}

inline float deq1(const uint8_t* packed, int64_t e, float amax) {
  uint8_t b = packed[e >> 1];
  return kNf4[(e & 1) ? (b & 0x0F) : (b >> 4)] * amax;
}

// Calls f(e0, e1, amax, lut) for each piece [e0, e1) of [start, end) that lies in one NF4 block.
// blocksize is a power of two (validated in Java), so block(e) = e >> log2(blocksize): no
// 64-bit division per piece.
inline int log2_blocksize(int32_t blocksize) {
  LORA4J_CHECK(blocksize > 0 && (blocksize & (blocksize - 1)) == 0,
               "blocksize must be a power of two, got " + std::to_string(blocksize));
  return __builtin_ctz(uint32_t(blocksize));
}

template <class F>
inline void for_each_block_piece(int64_t start, int64_t end, const float* absmax,
                                 int32_t blocksize, F&& f) {
  const int sh = __builtin_ctz(uint32_t(blocksize));
  int64_t e = start;
  while (e < end) {
    const int64_t b = e >> sh;
    const int64_t be = std::min(end, (b + 1) << sh);
    f(e, be, absmax[b]);
    e = be;
  }
}

// Dequantize elements [start, end) of the flat weight into out[0 .. end-start), AVX2.
void dequant_range_avx2(const uint8_t* packed, const float* absmax, int32_t blocksize,
                        int64_t start, int64_t end, float* out) {
  for_each_block_piece(start, end, absmax, blocksize, [&](int64_t e0, int64_t e1, float amax) {
    float* o = out + (e0 - start);
    int64_t e = e0;
    if (e & 1) {
      *o++ = deq1(packed, e, amax);
      e++;
    }
    const Lut l = make_lut(amax);
    for (; e + 16 <= e1; e += 16, o += 16) {
      __m256 w0, w1;
      decode16(packed + (e >> 1), l, w0, w1);
      _mm256_storeu_ps(o, w0);
      _mm256_storeu_ps(o + 8, w1);
    }
    for (; e < e1; e++) *o++ = deq1(packed, e, amax);
  });
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// One block piece [e, e1) (e even) with AVX-512F, 32 elements per step: 16 packed bytes widened
// to one byte per 32-bit lane, the high nibbles (even elements) and the low ones (odd elements;
// vpermps ignores the high index bits) looked up in the zmm table scaled by absmax, then
// interleaved back to element order by two two-source permutes.
__attribute__((target("avx512f"))) float* dequant_piece_avx512(const uint8_t* packed, int64_t e,
                                                                int64_t e1, float amax, float* o) {
  const __m512i even = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(8));
  const __m512 lut = _mm512_mul_ps(_mm512_loadu_ps(kNf4), _mm512_set1_ps(amax));
  for (; e + 32 <= e1; e += 32, o += 32) {
    const __m512i b = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + (e >> 1))));
    const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut);
    const __m512 lo = _mm512_permutexvar_ps(b, lut);
    _mm512_storeu_ps(o, _mm512_permutex2var_ps(hi, even, lo));
    _mm512_storeu_ps(o + 16, _mm512_permutex2var_ps(hi, odd, lo));
  }
  for (; e < e1; e++) *o++ = deq1(packed, e, amax);
  return o;
}
#pragma GCC diagnostic pop

// Dequantize elements [start, end) into out[0 .. end-start) on the process's ISA path (the
// scalar path uses AVX2 here: it is the baseline this file is compiled for).
void dequant_range(const uint8_t* packed, const float* absmax, int32_t blocksize, int64_t start,
                   int64_t end, float* out) {
  if (lora4j::cpu::simd_isa() != lora4j::cpu::Isa::kAvx512) {
    dequant_range_avx2(packed, absmax, blocksize, start, end, out);
    return;
  }
  for_each_block_piece(start, end, absmax, blocksize, [&](int64_t e0, int64_t e1, float amax) {
    float* o = out + (e0 - start);
    int64_t e = e0;
    if (e & 1) {
      *o++ = deq1(packed, e, amax);
      e++;
    }
    dequant_piece_avx512(packed, e, e1, amax, o);
  });
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- byte-plane NF4 decoding for the GEMV fast paths ----------------------------------------
// The GEMVs never scale a decoded weight: they decode plain NF4 values, take the dot product of
// a 32-element group with x (or scale dy by the block's absmax), and apply absmax once per
// group. Decoding 32 codes is in-lane byte shuffles only: byte k of the fp32 NF4 value of every
// code comes from one vpshufb on the plane kPlanes[k], and two rounds of unpacks interleave the
// four byte planes into fp32 lanes. Element order within each group of 8 comes out as
// {0,2,4,6,1,3,5,7} (lane 0 holds high nibbles = even elements, lane 1 low nibbles = odd ones),
// so x is permuted to that order once per call (forward) and dx is un-permuted at the end
// (backward); groups of 8 never straddle anything, so no other index changes.
struct Planes {
  __m256i b[4];
};

inline Planes nf4_planes() {
  alignas(16) uint8_t p[4][16];
  for (int q = 0; q < 16; q++) {
    uint32_t u;
    std::memcpy(&u, &kNf4[q], 4);
    for (int k = 0; k < 4; k++) p[k][q] = uint8_t(u >> (8 * k));
  }
  Planes l;
  for (int k = 0; k < 4; k++)
    l.b[k] = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(p[k])));
  return l;
}

// 16 packed bytes (32 elements) -> 4 x 8 unscaled NF4 values, each group of 8 in the order
// {0,2,4,6,1,3,5,7}.
inline void decode32p(const uint8_t* p, const Planes& l, __m256 f[4]) {
  __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  b = _mm256_and_si256(_mm256_srlv_epi32(b, _mm256_setr_epi32(4, 4, 4, 4, 0, 0, 0, 0)),
                       _mm256_set1_epi8(0x0F));
  const __m256i b0 = _mm256_shuffle_epi8(l.b[0], b), b1 = _mm256_shuffle_epi8(l.b[1], b);
  const __m256i b2 = _mm256_shuffle_epi8(l.b[2], b), b3 = _mm256_shuffle_epi8(l.b[3], b);
  const __m256i u01l = _mm256_unpacklo_epi8(b0, b1), u01h = _mm256_unpackhi_epi8(b0, b1);
  const __m256i u23l = _mm256_unpacklo_epi8(b2, b3), u23h = _mm256_unpackhi_epi8(b2, b3);
  f[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(u01l, u23l));
  f[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(u01l, u23l));
  f[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(u01h, u23h));
  f[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(u01h, u23h));
}

// x[0..n) (n % 8 == 0) -> xp in decode32p's order.
inline void permute_to_planes(const float* x, int64_t n, float* xp) {
  const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(xp + i, _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + i), idx));
}

// In place: decode32p's order -> element order.
inline void permute_from_planes(float* d, int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t i = 0; i < n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_permutevar8x32_ps(_mm256_loadu_ps(d + i), idx));
}

// Several tokens: each decoded group is scaled by absmax once and feeds NT tokens' FMAs. The
// accumulators are named variables (an array of 8 ymm is not scalarized by GCC and would be
// stored every iteration); with NT <= 4 a second set keeps the FMA chains short.
template <int NT>
void gemvp_rows(const float* xp, int64_t in, const uint8_t* w, const float* absmax, int sh,
                int64_t o, float* y, int64_t ldy, const Planes& l, int64_t i0, int64_t i1,
                bool first) {
  static_assert(NT >= 1 && NT <= 8, "NT");
  constexpr bool kTwo = NT <= 4;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  const int64_t row = o * in;
  const uint8_t* wr = w + row / 2;
  for (int64_t i = i0; i < i1; i += 32) {
    __m256 f[4];
    decode32p(wr + i / 2, l, f);
    const __m256 s = _mm256_broadcast_ss(absmax + ((row + i) >> sh));
    for (int j = 0; j < 4; j++) f[j] = _mm256_mul_ps(f[j], s);
    const float* xi = xp + i;
#define LORA4J_TOK(T_, A_, B_)                                                              \
    if constexpr (NT > T_) {                                                                 \
      const float* xt = xi + T_ * in;                                                        \
      if constexpr (kTwo) {                                                                  \
        A_ = _mm256_fmadd_ps(f[0], _mm256_loadu_ps(xt), A_);                                 \
        B_ = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(xt + 8), B_);                             \
        A_ = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(xt + 16), A_);                            \
        B_ = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(xt + 24), B_);                            \
      } else {                                                                               \
        for (int j = 0; j < 4; j++) A_ = _mm256_fmadd_ps(f[j], _mm256_loadu_ps(xt + 8 * j), A_); \
      }                                                                                      \
    }
    LORA4J_TOK(0, a0, b0)
    LORA4J_TOK(1, a1, b1)
    LORA4J_TOK(2, a2, b2)
    LORA4J_TOK(3, a3, b3)
    LORA4J_TOK(4, a4, b0)
    LORA4J_TOK(5, a5, b0)
    LORA4J_TOK(6, a6, b0)
    LORA4J_TOK(7, a7, b0)
#undef LORA4J_TOK
  }
  if constexpr (kTwo) {
    a0 = _mm256_add_ps(a0, b0);
    a1 = _mm256_add_ps(a1, b1);
    a2 = _mm256_add_ps(a2, b2);
    a3 = _mm256_add_ps(a3, b3);
  }
  const __m256 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
  for (int t = 0; t < NT; t++) {
    const float r = hsum(acc[t]);
    y[t * ldy + o] = first ? r : y[t * ldy + o] + r;
  }
}

// Thread-local scratch for permuted activations (grows, never shrinks).
float* gemv_scratch(int64_t elems) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < elems) buf.resize(size_t(elems));
  return buf.data();
}

// Backward fast path, T == 1: dxp[c0:c1] = Σ_o dy[o] · absmax · nf4(W)[o, c0:c1] in planes
// order, R rows of W per pass so that each dx vector is loaded and stored once per R rows.
void gemvp_bwd1_cols(const float* dy, int64_t in, int64_t out, const uint8_t* w,
                     const float* absmax, int sh, float* dx, int64_t c0, int64_t c1,
                     const Planes& l) {
  std::fill(dx + c0, dx + c1, 0.0f);
  constexpr int R = 4;
  int64_t o = 0;
  for (; o + R <= out; o += R) {
    __m256 g[R];
    for (int r = 0; r < R; r++) g[r] = _mm256_broadcast_ss(dy + o + r);
    for (int64_t i = c0; i < c1; i += 32) {
      __m256 d[4];
      for (int j = 0; j < 4; j++) d[j] = _mm256_loadu_ps(dx + i + 8 * j);
      for (int r = 0; r < R; r++) {
        const int64_t e = (o + r) * in + i;
        __m256 f[4];
        decode32p(w + (e >> 1), l, f);
        const __m256 s = _mm256_mul_ps(g[r], _mm256_broadcast_ss(absmax + (e >> sh)));
        for (int j = 0; j < 4; j++) d[j] = _mm256_fmadd_ps(s, f[j], d[j]);
      }
      for (int j = 0; j < 4; j++) _mm256_storeu_ps(dx + i + 8 * j, d[j]);
    }
  }
  for (; o < out; o++) {
    const __m256 g = _mm256_broadcast_ss(dy + o);
    for (int64_t i = c0; i < c1; i += 32) {
      const int64_t e = o * in + i;
      __m256 f[4];
      decode32p(w + (e >> 1), l, f);
      const __m256 s = _mm256_mul_ps(g, _mm256_broadcast_ss(absmax + (e >> sh)));
      for (int j = 0; j < 4; j++)
        _mm256_storeu_ps(dx + i + 8 * j, _mm256_fmadd_ps(s, f[j], _mm256_loadu_ps(dx + i + 8 * j)));
    }
  }
  permute_from_planes(dx + c0, c1 - c0);
}

// Backward fast path, 1 < T < kTileMinT: four W rows of a 32-column group are decoded and
// scaled by their absmax into an L1 buffer once; then each of the T rows of dx (planes order)
// is loaded, updated from the four rows (dy as broadcast scalars) and stored once.
void gemvp_bwdT_cols(const float* dy, int64_t T, int64_t in, int64_t out, const uint8_t* w,
                     const float* absmax, int sh, float* dx, int64_t c0, int64_t c1,
                     const Planes& l) {
  for (int64_t t = 0; t < T; t++) std::fill(dx + t * in + c0, dx + t * in + c1, 0.0f);
  alignas(32) float buf[4][32];
  int64_t o = 0;
  for (; o + 4 <= out; o += 4) {
    for (int64_t i = c0; i < c1; i += 32) {
      for (int r = 0; r < 4; r++) {
        const int64_t e = (o + r) * in + i;
        __m256 f[4];
        decode32p(w + (e >> 1), l, f);
        const __m256 a = _mm256_broadcast_ss(absmax + (e >> sh));
        for (int j = 0; j < 4; j++) _mm256_store_ps(buf[r] + 8 * j, _mm256_mul_ps(f[j], a));
      }
      for (int64_t t = 0; t < T; t++) {
        const float* g = dy + t * out + o;
        const __m256 g0 = _mm256_broadcast_ss(g), g1 = _mm256_broadcast_ss(g + 1);
        const __m256 g2 = _mm256_broadcast_ss(g + 2), g3 = _mm256_broadcast_ss(g + 3);
        float* d = dx + t * in + i;
        for (int j = 0; j < 4; j++) {
          __m256 v = _mm256_fmadd_ps(g0, _mm256_load_ps(buf[0] + 8 * j), _mm256_loadu_ps(d + 8 * j));
          v = _mm256_fmadd_ps(g1, _mm256_load_ps(buf[1] + 8 * j), v);
          v = _mm256_fmadd_ps(g2, _mm256_load_ps(buf[2] + 8 * j), v);
          _mm256_storeu_ps(d + 8 * j, _mm256_fmadd_ps(g3, _mm256_load_ps(buf[3] + 8 * j), v));
        }
      }
    }
  }
  for (; o < out; o++) {
    for (int64_t i = c0; i < c1; i += 32) {
      const int64_t e = o * in + i;
      __m256 f[4];
      decode32p(w + (e >> 1), l, f);
      const __m256 a = _mm256_broadcast_ss(absmax + (e >> sh));
      for (int j = 0; j < 4; j++) f[j] = _mm256_mul_ps(f[j], a);
      for (int64_t t = 0; t < T; t++) {
        const __m256 s = _mm256_broadcast_ss(dy + t * out + o);
        float* d = dx + t * in + i;
        for (int j = 0; j < 4; j++)
          _mm256_storeu_ps(d + 8 * j, _mm256_fmadd_ps(s, f[j], _mm256_loadu_ps(d + 8 * j)));
      }
    }
  }
  for (int64_t t = 0; t < T; t++) permute_from_planes(dx + t * in + c0, c1 - c0);
}

// ---- fused GEMV (T < kTileMinT) -------------------------------------------------------------
// y[t, o] for NT rows t of X (NT <= 4 accumulators per row of W stay in registers).
template <int NT>
void gemv_rows(const float* x, int64_t in, const uint8_t* w, const float* absmax,
               int32_t blocksize, int64_t o, float* y, int64_t ldy) {
  __m256 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
  float tail[NT];
  for (int t = 0; t < NT; t++) tail[t] = 0.0f;
  const int64_t row = o * in;
  for_each_block_piece(row, row + in, absmax, blocksize, [&](int64_t e0, int64_t e1, float amax) {
    int64_t e = e0;
    if (e & 1) {
      const float v = deq1(w, e, amax);
      for (int t = 0; t < NT; t++) tail[t] += v * x[t * in + (e - row)];
      e++;
    }
    const Lut l = make_lut(amax);
    for (; e + 16 <= e1; e += 16) {
      __m256 w0, w1;
      decode16(w + (e >> 1), l, w0, w1);
      const float* xe = x + (e - row);
      for (int t = 0; t < NT; t++) {
        acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xe + t * in), acc0[t]);
        acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xe + t * in + 8), acc1[t]);
      }
    }
    for (; e < e1; e++) {
      const float v = deq1(w, e, amax);
      for (int t = 0; t < NT; t++) tail[t] += v * x[t * in + (e - row)];
    }
  });
  for (int t = 0; t < NT; t++) y[t * ldy + o] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + tail[t];
}

// ---- T = 1 GEMV, dispatched by ISA (isa.h) ----------------------------------------------------
// Decode is bound by the weight read (0.5625 B/weight), so decoding a nibble must cost less than
// reading it. Lane scheme (needs in % 8 == 0 and blocksize >= 8, so every 8 consecutive elements
// of a row lie in one block and start on a 4-byte boundary): a chunk of L·8 elements is L 32-bit
// lanes of packed bytes, lane j holding elements 8j..8j+7 as 8 nibbles. Shifting the whole vector
// right by 4k puts nibble k of every lane in the lane's low bits, and one table permute turns it
// into the NF4 value (vpermps reads only the low index bits): the 16-entry table fits one zmm
// (AVX-512: one vpermps per 16 weights); with AVX2 two ymm halves + a blend on bit 3 (the
// nibble's bit 3 is shifted into the sign bit). Little-endian bytes, high nibble first: nibble
// k of lane j is element 8j + (k ^ 1), so x is permuted to that order once per call. The sums of
// a lane's 8 products are scaled by the lane's block absmax once per chunk (a per-lane vector
// picked by a permute from the absmax values the chunk touches). AVX-512 decodes 4 rows per pass,
// a quarter of the thread's slice apart (the x loads are shared and 4 sequential weight streams
// are in flight: 0.46-0.78 of the read floor in alternating runs, against 0.27-0.46 for 4
// adjacent rows, see bench/results/2026-12-03-nf4-gemv.md); AVX2 is bound by its lookups (~0.3
// of the floor on this CPU: one row, or 2-4 rows spread, measured the same), one row at a time.
// The sum order per row (two chains per chunk, then absmax) is what the T = 1 tests bound
// against fp64 (Nf4Test, DecodeKernelsTest's forced ISA paths): decode is not required to
// match the prefill's sgemm bit for bit, and no test asks it to.

// Rows per pass of the AVX-512 T = 1 GEMV (8 measured slower: registers spill).
constexpr int kGemv1Rows = 4;

// xp[c·8L + k·L + j] = x[c·8L + 8j + (k ^ 1)] for every chunk c (the last one zero-padded).
void permute_to_lanes(const float* x, int64_t in, int L, float* xp) {
  const int64_t C = 8 * int64_t(L);
  for (int64_t c0 = 0; c0 < in; c0 += C) {
    for (int k = 0; k < 8; k++) {
      for (int j = 0; j < L; j++) {
        const int64_t e = c0 + 8 * j + (k ^ 1);
        xp[c0 + k * L + j] = e < in ? x[e] : 0.0f;
      }
    }
  }
}

// How a 128-element chunk of the AVX-512 kernel maps its 16 lanes to absmax blocks:
// kOneBlock (in % 128 == 0, blocksize >= 128: one block per chunk), kTwoBlocks (in % 128 == 0,
// blocksize 64, bitsandbytes' default: lanes 0-7 block b0, lanes 8-15 block b0 + 1) or kAnyBlocks
// (anything else: up to 16 blocks from an arbitrary offset, the last chunk of a row partial).
enum class Chunks { kOneBlock, kTwoBlocks, kAnyBlocks };

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// R rows at once, AVX-512F: y[r] = Σ_chunks absmax_lanes ⊙ Σ_k NF4[nibble k] ⊙ xp_k for the rows
// o, o + q, ..., o + (R-1)q. The rows share each x load; taking them q rows apart (a quarter of
// a thread's slice) keeps R independent sequential weight streams in flight, which DRAM serves
// better than R adjacent rows (one stream read in R interleaved pieces; the figures are in the
// comment above). The layout is a template
// argument so that the common case is a branch-free loop whose accumulators stay in registers.
template <int R, Chunks kLayout>
__attribute__((target("avx512f"))) inline void gemv1_rows_avx512(const float* xp, int64_t in,
                                                                  const uint8_t* w,
                                                                  const float* absmax, int sh,
                                                                  int64_t o, int64_t q, float* y,
                                                                  __m512 lut) {
  static_assert(R >= 1 && R <= 4, "4 rows x (v, two FMA chains, acc) fill the 32 zmm registers");
  const int64_t bs = int64_t(1) << sh;
  const __m512i iota8 = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104,
                                          112, 120);
  const __m512i vsh = _mm512_set1_epi32(sh);
  const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  int64_t row[R];  // first element of each row
  __m512 acc[R];
  for (int r = 0; r < R; r++) {
    row[r] = (o + r * q) * in;
    acc[r] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < in; i += 128) {
    const int lanes = kLayout == Chunks::kAnyBlocks ? int(std::min<int64_t>(16, (in - i) / 8)) : 16;
    __m512i v[R];
    __m512 d0[R], d1[R];  // two FMA chains per row
    for (int r = 0; r < R; r++) {
      const uint8_t* p = w + ((row[r] + i) >> 1);
      v[r] = lanes == 16 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(__mmask16((1u << lanes) - 1u), p);
    }
    const float* xc = xp + i;
    for (int k = 0; k < 8; k += 2) {
      const __m512 x0 = _mm512_loadu_ps(xc + 16 * k), x1 = _mm512_loadu_ps(xc + 16 * k + 16);
      for (int r = 0; r < R; r++) {
        const __m512 f0 = _mm512_permutexvar_ps(k == 0 ? v[r] : _mm512_srli_epi32(v[r], 4 * k), lut);
        const __m512 f1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v[r], 4 * k + 4), lut);
        d0[r] = k == 0 ? _mm512_mul_ps(f0, x0) : _mm512_fmadd_ps(f0, x0, d0[r]);
        d1[r] = k == 0 ? _mm512_mul_ps(f1, x1) : _mm512_fmadd_ps(f1, x1, d1[r]);
      }
    }
    for (int r = 0; r < R; r++) {
      __m512 a;
      if constexpr (kLayout == Chunks::kOneBlock) {
        a = _mm512_set1_ps(absmax[(row[r] + i) >> sh]);
      } else if constexpr (kLayout == Chunks::kTwoBlocks) {
        const float* two_blocks = absmax + ((row[r] + i) >> 6);
        const __m128 two = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(two_blocks)));
        a = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(two));
      } else {
        // Block of lane j: (e + 8j) >> sh = b0 + ((off + 8j) >> sh), e = (o + rq)·in + i,
        // off = e mod bs; the chunk touches nb <= 16 blocks from b0 (masked load: never past
        // the last one).
        const int64_t e = row[r] + i;
        const int64_t b0 = e >> sh, off = e & (bs - 1);
        const int nb = int((off + 8 * (lanes - 1)) >> sh) + 1;
        a = nb == 1 ? _mm512_set1_ps(absmax[b0])
            : _mm512_permutexvar_ps(
                  _mm512_srlv_epi32(_mm512_add_epi32(_mm512_set1_epi32(int(off)), iota8), vsh),
                  _mm512_maskz_loadu_ps(__mmask16((1u << nb) - 1u), absmax + b0));
      }
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(d0[r], d1[r]), a, acc[r]);
    }
  }
  for (int r = 0; r < R; r++) y[o + r * q] = _mm512_reduce_add_ps(acc[r]);
}

// Rows [o0, o1) of one thread: kGemv1Rows streams, each walking a quarter of the slice in
// order, then the rows left over one at a time.
template <Chunks kLayout>
__attribute__((target("avx512f"))) void gemv1_slice_avx512(const float* xp, int64_t in,
                                                            const uint8_t* w, const float* absmax,
                                                            int sh, int64_t o0, int64_t o1,
                                                            float* y) {
  const __m512 lut = _mm512_loadu_ps(kNf4);
  const int64_t q = (o1 - o0) / kGemv1Rows;
  for (int64_t o = o0; o < o0 + q; o++)
    gemv1_rows_avx512<kGemv1Rows, kLayout>(xp, in, w, absmax, sh, o, q, y, lut);
  for (int64_t o = o0 + kGemv1Rows * q; o < o1; o++)
    gemv1_rows_avx512<1, kLayout>(xp, in, w, absmax, sh, o, 0, y, lut);
}

__attribute__((target("avx512f"))) void gemv1_block_avx512(const float* xp, int64_t in,
                                                            const uint8_t* w, const float* absmax,
                                                            int sh, int64_t o0, int64_t o1,
                                                            float* y) {
  if (in % 128 != 0 || sh < 6)
    gemv1_slice_avx512<Chunks::kAnyBlocks>(xp, in, w, absmax, sh, o0, o1, y);
  else if (sh == 6)
    gemv1_slice_avx512<Chunks::kTwoBlocks>(xp, in, w, absmax, sh, o0, o1, y);
  else
    gemv1_slice_avx512<Chunks::kOneBlock>(xp, in, w, absmax, sh, o0, o1, y);
}
#pragma GCC diagnostic pop

// Software prefetch distance of the AVX2 kernel's weight stream (bytes ahead of the chunk).
constexpr int64_t kPrefetchBytes = 1024;

// NF4 value of nibble (v >> 4k) & 15 per lane, AVX2: vpermps on both 8-entry halves, bit 3 of
// the nibble (moved to the sign bit by v << (28 - 4k)) picks the half.
template <int K>
inline __m256 lookup_lanes(__m256i v, __m256 lo, __m256 hi) {
  const __m256i s = _mm256_srli_epi32(v, 4 * K);
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, s), _mm256_permutevar8x32_ps(hi, s),
                          _mm256_castsi256_ps(_mm256_slli_epi32(v, 28 - 4 * K)));
}

// One row, AVX2: the same lane scheme with 8 lanes (chunks of 64 elements).
float gemv1_row_avx2(const float* xp, int64_t in, const uint8_t* w, const float* absmax, int sh,
                     int64_t row, __m256 lo, __m256 hi) {
  const int64_t bs = int64_t(1) << sh;
  const __m256i iota8 = _mm256_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i vsh = _mm256_set1_epi32(sh);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int n = 0;
  for (int64_t i = 0; i < in; i += 64, n++) {
    const int64_t e = row + i;
    const int lanes = int(std::min<int64_t>(8, (in - i) / 8));
    if ((n & 1) == 0)
      _mm_prefetch(reinterpret_cast<const char*>(w + (e >> 1)) + kPrefetchBytes, _MM_HINT_T0);
    const __m256i v = lanes == 8
        ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (e >> 1)))
        : _mm256_maskload_epi32(reinterpret_cast<const int*>(w + (e >> 1)),
                                _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), lane));
    const float* xc = xp + i;
    __m256 d0 = _mm256_mul_ps(lookup_lanes<0>(v, lo, hi), _mm256_loadu_ps(xc));
    __m256 d1 = _mm256_mul_ps(lookup_lanes<1>(v, lo, hi), _mm256_loadu_ps(xc + 8));
    d0 = _mm256_fmadd_ps(lookup_lanes<2>(v, lo, hi), _mm256_loadu_ps(xc + 16), d0);
    d1 = _mm256_fmadd_ps(lookup_lanes<3>(v, lo, hi), _mm256_loadu_ps(xc + 24), d1);
    d0 = _mm256_fmadd_ps(lookup_lanes<4>(v, lo, hi), _mm256_loadu_ps(xc + 32), d0);
    d1 = _mm256_fmadd_ps(lookup_lanes<5>(v, lo, hi), _mm256_loadu_ps(xc + 40), d1);
    d0 = _mm256_fmadd_ps(lookup_lanes<6>(v, lo, hi), _mm256_loadu_ps(xc + 48), d0);
    d1 = _mm256_fmadd_ps(lookup_lanes<7>(v, lo, hi), _mm256_loadu_ps(xc + 56), d1);
    const int64_t b0 = e >> sh, off = e & (bs - 1);
    const int nb = int((off + 8 * (lanes - 1)) >> sh) + 1;
    const __m256 a = nb == 1 ? _mm256_set1_ps(absmax[b0])
        : _mm256_permutevar8x32_ps(
              _mm256_maskload_ps(absmax + b0, _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane)),
              _mm256_srlv_epi32(_mm256_add_epi32(_mm256_set1_epi32(int(off)), iota8), vsh));
    if (n & 1) acc1 = _mm256_fmadd_ps(_mm256_add_ps(d0, d1), a, acc1);
    else acc0 = _mm256_fmadd_ps(_mm256_add_ps(d0, d1), a, acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// Portable reference path (LORA4J_DECODE_ISA=scalar): dequantize and multiply, element by element.
void gemv1_scalar(const float* x, int64_t in, int64_t out, const uint8_t* w, const float* absmax,
                  int32_t blocksize, float* y) {
  const int sh = log2_blocksize(blocksize);
  lora4j::cpu::parallel_for(out, 2.0 * in, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
      float s = 0.0f;
      for (int64_t i = 0; i < in; i++) {
        const int64_t e = o * in + i;
        s += deq1(w, e, absmax[e >> sh]) * x[i];
      }
      y[o] = s;
    }
  });
}

// T = 1 forward on the process's ISA path; false when the shape needs the general kernel.
bool gemv1_dispatch(const float* x, int64_t in, int64_t out, const uint8_t* w,
                    const float* absmax, int32_t blocksize, float* y) {
  const lora4j::cpu::Isa isa = lora4j::cpu::simd_isa();
  if (isa == lora4j::cpu::Isa::kScalar) {
    gemv1_scalar(x, in, out, w, absmax, blocksize, y);
    return true;
  }
  if (in % 8 != 0 || blocksize < 8) return false;
  const int sh = log2_blocksize(blocksize);
  const int L = isa == lora4j::cpu::Isa::kAvx512 ? 16 : 8;
  const int64_t C = 8 * int64_t(L);
  float* xp = gemv_scratch((in + C - 1) / C * C);
  permute_to_lanes(x, in, L, xp);
  if (isa == lora4j::cpu::Isa::kAvx512) {
    lora4j::cpu::parallel_for(out, 2.0 * in, [&](int64_t o0, int64_t o1) {
      gemv1_block_avx512(xp, in, w, absmax, sh, o0, o1, y);
    });
  } else {
    const __m256 lo = _mm256_loadu_ps(kNf4), hi = _mm256_loadu_ps(kNf4 + 8);
    lora4j::cpu::parallel_for(out, 2.0 * in, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o++) y[o] = gemv1_row_avx2(xp, in, w, absmax, sh, o * in, lo, hi);
    });
  }
  return true;
}

void gemv_fwd(const float* x, int64_t T, int64_t in, int64_t out, const uint8_t* w,
              const float* absmax, int32_t blocksize, float* y) {
  if (T == 1 && gemv1_dispatch(x, in, out, w, absmax, blocksize, y)) return;
  if (in % 32 == 0 && blocksize >= 32) {
    const int sh = log2_blocksize(blocksize);
    float* xp = gemv_scratch(T * in);
    for (int64_t t = 0; t < T; t++) permute_to_planes(x + t * in, in, xp + t * in);
    const Planes l = nf4_planes();
    // Tokens in passes of at most 8, split evenly (T = 9..15: two passes of 5..8). Each pass
    // walks W in column chunks so that the chunk of X (nt x C fp32) stays in L1 while a block of
    // rows reuses it.
    const int64_t passes = (T + 7) / 8;
    constexpr int64_t kRows = 16;
    const int64_t nrb = (out + kRows - 1) / kRows;
    lora4j::cpu::parallel_for(nrb, 2.0 * kRows * in * T, [&](int64_t rb0, int64_t rb1) {
      for (int64_t rb = rb0; rb < rb1; rb++) {
        const int64_t o0 = rb * kRows, o1 = std::min(out, o0 + kRows);
        for (int64_t p = 0, t0 = 0; p < passes; p++) {
          const int64_t nt = (T - t0) / (passes - p);
          const int64_t C = std::max<int64_t>(64, (int64_t(6144) / nt) / 64 * 64);
          const float* xt = xp + t0 * in;
          float* yt = y + t0 * out;
          for (int64_t i0 = 0; i0 < in; i0 += C) {
            const int64_t i1 = std::min(in, i0 + C);
            for (int64_t o = o0; o < o1; o++) {
              switch (nt) {
                case 8: gemvp_rows<8>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                case 7: gemvp_rows<7>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                case 6: gemvp_rows<6>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                case 5: gemvp_rows<5>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                case 4: gemvp_rows<4>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                case 3: gemvp_rows<3>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
                default: gemvp_rows<2>(xt, in, w, absmax, sh, o, yt, out, l, i0, i1, i0 == 0); break;
              }
            }
          }
          t0 += nt;
        }
      }
    });
    return;
  }
  lora4j::cpu::parallel_for(out, 2.0 * in * T, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
      for (int64_t t0 = 0; t0 < T; t0 += 4) {
        const float* xt = x + t0 * in;
        float* yt = y + t0 * out;
        switch (std::min<int64_t>(4, T - t0)) {
          case 4: gemv_rows<4>(xt, in, w, absmax, blocksize, o, yt, out); break;
          case 3: gemv_rows<3>(xt, in, w, absmax, blocksize, o, yt, out); break;
          case 2: gemv_rows<2>(xt, in, w, absmax, blocksize, o, yt, out); break;
          default: gemv_rows<1>(xt, in, w, absmax, blocksize, o, yt, out); break;
        }
      }
    }
  });
}

// dx[t, c0:c1] += Σ_o dy[t, o] · deq(W)[o, c0:c1] for all T rows; each thread owns a column
// range, so no two threads write the same dx element.
void gemv_bwd_cols(const float* dy, int64_t T, int64_t in, int64_t out, const uint8_t* w,
                   const float* absmax, int32_t blocksize, float* dx, int64_t c0, int64_t c1) {
  for (int64_t t = 0; t < T; t++) std::fill(dx + t * in + c0, dx + t * in + c1, 0.0f);
  for (int64_t o = 0; o < out; o++) {
    const int64_t row = o * in;
    for_each_block_piece(row + c0, row + c1, absmax, blocksize,
                         [&](int64_t e0, int64_t e1, float amax) {
      int64_t e = e0;
      if (e & 1) {
        const float v = deq1(w, e, amax);
        for (int64_t t = 0; t < T; t++) dx[t * in + (e - row)] += dy[t * out + o] * v;
        e++;
      }
      const Lut l = make_lut(amax);
      for (; e + 16 <= e1; e += 16) {
        __m256 w0, w1;
        decode16(w + (e >> 1), l, w0, w1);
        for (int64_t t = 0; t < T; t++) {
          const __m256 g = _mm256_set1_ps(dy[t * out + o]);
          float* d = dx + t * in + (e - row);
          _mm256_storeu_ps(d, _mm256_fmadd_ps(g, w0, _mm256_loadu_ps(d)));
          _mm256_storeu_ps(d + 8, _mm256_fmadd_ps(g, w1, _mm256_loadu_ps(d + 8)));
        }
      }
      for (; e < e1; e++) {
        const float v = deq1(w, e, amax);
        for (int64_t t = 0; t < T; t++) dx[t * in + (e - row)] += dy[t * out + o] * v;
      }
    });
  }
}

void gemv_bwd(const float* dy, int64_t T, int64_t in, int64_t out, const uint8_t* w,
              const float* absmax, int32_t blocksize, float* dx) {
  if (in % 32 == 0 && blocksize >= 32) {
    const int sh = log2_blocksize(blocksize);
    const int nth = lora4j::cpu::threads_for(2.0 * out * in * T, in / 32);
    // Column chunks: multiples of 32, the T rows of the dx chunk (<= 16 KiB) stay in L1.
    const int64_t per = ((in + nth - 1) / nth + 31) / 32 * 32;
    const int64_t chunk = std::min<int64_t>(std::max<int64_t>(32, 4096 / T / 32 * 32), per);
    const int64_t nchunks = (in + chunk - 1) / chunk;
    const Planes l = nf4_planes();
    lora4j::cpu::parallel_for(nchunks, 2.0 * out * in * T / nchunks, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; c++) {
        const int64_t c0 = c * chunk, c1 = std::min(in, (c + 1) * chunk);
        if (T == 1)
          gemvp_bwd1_cols(dy, in, out, w, absmax, sh, dx, c0, c1, l);
        else
          gemvp_bwdT_cols(dy, T, in, out, w, absmax, sh, dx, c0, c1, l);
      }
    });
    return;
  }
  const int nth = lora4j::cpu::threads_for(2.0 * out * in * T, (in + 255) / 256);
  // Column chunks of >= 256 (a multiple of 16 keeps the vector loop aligned to bytes when in
  // is even); one chunk per thread at most.
  const int64_t chunk = std::max<int64_t>(256, ((in + nth - 1) / nth + 15) / 16 * 16);
  const int64_t nchunks = (in + chunk - 1) / chunk;
  lora4j::cpu::parallel_for(nchunks, 2.0 * out * in * T / nchunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      gemv_bwd_cols(dy, T, in, out, w, absmax, blocksize, dx, c * chunk,
                    std::min(in, (c + 1) * chunk));
    }
  });
}

// Thread-local fp32 panel for dequantized W tiles (grows, never shrinks).
float* panel_buffer(int64_t elems) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < elems) buf.resize(size_t(elems));
  return buf.data();
}

// Dequantize W rows [r0, r1) (all `in` columns) into panel [r1-r0, in], the pool over rows.
void dequant_rows(const uint8_t* w, const float* absmax, int32_t blocksize, int64_t in,
                  int64_t r0, int64_t r1, float* panel) {
  lora4j::cpu::parallel_for(r1 - r0, 2.0 * in, [&](int64_t i0, int64_t i1) {
    for (int64_t r = r0 + i0; r < r0 + i1; r++)
      dequant_range(w, absmax, blocksize, r * in, (r + 1) * in, panel + (r - r0) * in);
  });
}

int64_t panel_rows(int64_t in, int64_t total) {
  int64_t r = std::max<int64_t>(16, kPanelElems / std::max<int64_t>(1, in));
  r = std::max<int64_t>(16, r / 16 * 16);
  return std::min(r, total);
}

// bitsandbytes csrc/kernels.cu dQuantize<STOCHASTIC=0>: 7-step binary search over the sorted
// 256-entry map starting at pivot 127, then the midpoint rule against the neighbour on the
// side x fell; ties at a midpoint go to `pivot`. Reproduced statement by statement (including
// lower/upper starting at -1/1 and only being replaced by the map's ends at pivots 0/255).
inline uint8_t dquantize_dynamic(const float* code, float x) {
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
    const float midpoint = (upper + val) * 0.5f;
    return uint8_t(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return uint8_t(x < midpoint ? lower_pivot : pivot);
}

// torch.linspace(start, end, steps) for float32 on the CPU as PyTorch 1.13 computes it with
// AVX2 (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp linspace_kernel): step =
// (end-start)/(steps-1) in fp32; the first steps/2 points count up from start, the rest down
// from end; whole 16-point chunks come from Vectorized<float>::arange(base, step) (8 lanes:
// base + j*step, rounded twice), the remainder from the scalar lambda, which GCC contracted
// into an FMA. Checked against torch 1.13 for every steps used here (2, 3, 5, ..., 65) by
// scripts/reference/nf4_reference.py, whose map the golden test compares bit for bit.
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
  std::vector<float> v(static_cast<size_t>(steps));
  const float step = no_contract((end - start) / float(steps - 1));
  const int64_t halfway = steps / 2;
  auto scalar = [&](int64_t idx) {
    return idx < halfway ? std::fma(step, float(idx), start)
                         : std::fma(-step, float(steps - idx - 1), end);
  };
  const int64_t vec_end = steps / 16 * 16;
  for (int64_t idx = 0; idx < vec_end; idx += 8) {
    const float base = scalar(idx);
    for (int j = 0; j < 8; j++) v[size_t(idx + j)] = no_contract(base + no_contract(float(j) * step));
  }
  for (int64_t idx = vec_end; idx < steps; idx++) v[size_t(idx)] = scalar(idx);
  return v;
}

// Sum of absmax in double, in a fixed order that the CUDA twin reproduces exactly: sequential
// sums of chunks of kMeanChunk values, then the chunk sums added sequentially.
constexpr int64_t kMeanChunk = 1024;
float mean_fixed_order(const float* a, int64_t n) {
  double total = 0.0;
  for (int64_t c = 0; c < n; c += kMeanChunk) {
    double s = 0.0;
    const int64_t ce = std::min(n, c + kMeanChunk);
    for (int64_t i = c; i < ce; i++) s += double(a[i]);
    total += s;
  }
  return float(total / double(n));
}

}  // namespace

extern "C" {

void lora4j_nf4_code(float* out) { std::memcpy(out, kNf4, sizeof(kNf4)); }

// bitsandbytes functional.py create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8): for i in 0..6, boundaries = torch.linspace(0.1, 1, 2^i + 1) (fp32), means =
// (b[:-1] + b[1:]) / 2.0 (fp32), data += 10^(i-6) * means and -(10^(i-6)) * means (the Python
// float is cast to fp32 and multiplied in fp32); then 0 and 1.0; sorted ascending.
void lora4j_dynamic_map(float* out) {
  std::vector<float> data;
  data.reserve(256);
  for (int i = 0; i < 7; i++) {
    const std::vector<float> b = torch_linspace_f32(0.1f, 1.0f, (int64_t(1) << i) + 1);
    const float scale = float(std::pow(10.0, double(i - 6)));
    std::vector<float> means(b.size() - 1);
    for (size_t j = 0; j + 1 < b.size(); j++) means[j] = no_contract(b[j] + b[j + 1]) / 2.0f;
    for (float m : means) data.push_back(scale * m);
    for (float m : means) data.push_back(-scale * m);
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  LORA4J_CHECK(data.size() == 256, "dynamic map must have 256 entries");
  std::sort(data.begin(), data.end());
  std::memcpy(out, data.data(), 256 * sizeof(float));
}

void lora4j_nf4_quantize(const void* w, int32_t dtype, int64_t n, int32_t blocksize,
                         uint8_t* packed, float* absmax) {
  LORA4J_CHECK(dtype == LORA4J_DTYPE_F32 || dtype == LORA4J_DTYPE_BF16 ||
                   dtype == LORA4J_DTYPE_F16,
               "unknown dtype " + std::to_string(dtype));
  LORA4J_CHECK(blocksize >= 2 && blocksize % 2 == 0, "blocksize must be even");
  LORA4J_CHECK(n >= 0, "n must be >= 0");
  const int64_t nblocks = (n + blocksize - 1) / blocksize;
  int64_t first_bad = std::numeric_limits<int64_t>::max();
  std::mutex bad_mu;
  lora4j::cpu::parallel_for(nblocks, 4.0 * blocksize, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t e0 = b * blocksize, e1 = std::min(n, e0 + blocksize);
      // max |w| and a finiteness check in one pass: |w| as bits > 0x7f800000 is NaN, == is Inf.
      __m256 vmax = _mm256_setzero_ps();
      __m256 bad = _mm256_setzero_ps();
      const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
      const __m256i infbits = _mm256_set1_epi32(0x7f800000);
      int64_t e = e0;
      for (; e + 8 <= e1; e += 8) {
        __m256 a = _mm256_and_ps(load8(w, dtype, e), absmask);
        bad = _mm256_or_ps(bad, _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                    _mm256_castps_si256(a), _mm256_sub_epi32(infbits, _mm256_set1_epi32(1)))));
        vmax = _mm256_max_ps(vmax, a);
      }
      alignas(32) float m8[8];
      _mm256_store_ps(m8, vmax);
      float amax = 0.0f;
      for (float v : m8) amax = std::max(amax, v);
      bool block_bad = _mm256_movemask_ps(bad) != 0;
      for (; e < e1; e++) {
        const float a = std::fabs(load1(w, dtype, e));
        if (!std::isfinite(a)) block_bad = true;
        amax = std::max(amax, a);
      }
      if (block_bad) {
        for (int64_t i = e0; i < e1; i++) {
          if (!std::isfinite(load1(w, dtype, i))) {
            std::lock_guard<std::mutex> lock(bad_mu);
            first_bad = std::min(first_bad, i);
            break;
          }
        }
        continue;
      }
      absmax[b] = amax;
      quantize_block(w, dtype, e0, e1, amax, packed);
    }
  });
  if (first_bad != std::numeric_limits<int64_t>::max()) {
    throw std::runtime_error("lora4j: nf4_quantize: non-finite input value " +
                             std::to_string(load1(w, dtype, first_bad)) + " at element " +
                             std::to_string(first_bad) + " (of " + std::to_string(n) + ")");
  }
}

void lora4j_nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n,
                           int32_t blocksize, float* out) {
  constexpr int64_t kChunk = 1 << 16;  // elements per work item (multiple of 16)
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  lora4j::cpu::parallel_for(nchunks, kChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      const int64_t s = c * kChunk;
      dequant_range(packed, absmax, blocksize, s, std::min(n, s + kChunk), out + s);
    }
  });
}

// Quantize a (centered) absmax vector with the dynamic map in blocks of 256: bitsandbytes
// quantize_blockwise(A, blocksize=256) as called by quantize_4bit. Exposed so that tests can
// check this step bit-exactly given a reference offset.
void lora4j_nf4_quantize_nested(const float* centered, int64_t nblocks, uint8_t* qabsmax,
                                float* nested_absmax) {
  float map[256];
  lora4j_dynamic_map(map);
  const int64_t ng = (nblocks + kNestedBlock - 1) / kNestedBlock;
  for (int64_t g = 0; g < ng; g++) {
    const int64_t b0 = g * kNestedBlock, b1 = std::min(nblocks, b0 + kNestedBlock);
    float m = 0.0f;
    for (int64_t b = b0; b < b1; b++) m = std::max(m, std::fabs(centered[b]));
    nested_absmax[g] = m;
    const float inv = 1.0f / m;
    for (int64_t b = b0; b < b1; b++) qabsmax[b] = dquantize_dynamic(map, centered[b] * inv);
  }
}

void lora4j_nf4_double_quant(const float* absmax, int64_t nblocks, uint8_t* qabsmax,
                             float* nested_absmax, float* offset) {
  LORA4J_CHECK(nblocks > 0, "double quantization needs at least one block");
  const float mean = mean_fixed_order(absmax, nblocks);
  std::vector<float> centered(static_cast<size_t>(nblocks));
  for (int64_t b = 0; b < nblocks; b++) centered[size_t(b)] = absmax[b] - mean;
  lora4j_nf4_quantize_nested(centered.data(), nblocks, qabsmax, nested_absmax);
  *offset = mean;
}

void lora4j_nf4_dequant_absmax(const uint8_t* qabsmax, const float* nested_absmax,
                               float offset, int64_t nblocks, float* absmax) {
  float map[256];
  lora4j_dynamic_map(map);
  for (int64_t b = 0; b < nblocks; b++)
    absmax[b] = no_contract(map[qabsmax[b]] * nested_absmax[b / kNestedBlock]) + offset;
}

void lora4j_nf4_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                           const uint8_t* w, const float* absmax, int32_t blocksize, float* y) {
  if (T <= 0 || out <= 0) return;
  if (in == 0) {
    std::fill(y, y + T * out, 0.0f);
    return;
  }
  if (T < kTileMinT) {
    gemv_fwd(x, T, in, out, w, absmax, blocksize, y);
    return;
  }
  // N blocking: Y[:, r0:r1] = X · panelᵀ, panel = deq(W[r0:r1, :]).
  const int64_t R = panel_rows(in, out);
  float* panel = panel_buffer(R * in);
  for (int64_t r0 = 0; r0 < out; r0 += R) {
    const int64_t r1 = std::min(out, r0 + R);
    dequant_rows(w, absmax, blocksize, in, r0, r1, panel);
    lora4j_sgemm(0, 1, T, r1 - r0, in, 1.0f, x, in, panel, in, 0.0f, y + r0, out);
  }
}

void lora4j_nf4_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                 const uint8_t* w, const float* absmax, int32_t blocksize,
                                 float* dx) {
  if (T <= 0 || in <= 0) return;
  if (out == 0) {
    std::fill(dx, dx + T * in, 0.0f);
    return;
  }
  if (T < kTileMinT) {
    gemv_bwd(dy, T, in, out, w, absmax, blocksize, dx);
    return;
  }
  // K blocking: dX += dY[:, r0:r1] · panel, panel = deq(W[r0:r1, :]).
  const int64_t R = panel_rows(in, out);
  float* panel = panel_buffer(R * in);
  for (int64_t r0 = 0; r0 < out; r0 += R) {
    const int64_t r1 = std::min(out, r0 + R);
    dequant_rows(w, absmax, blocksize, in, r0, r1, panel);
    lora4j_sgemm(0, 0, T, in, r1 - r0, 1.0f, dy + r0, out, panel, in, r0 == 0 ? 0.0f : 1.0f,
                 dx, in);
  }
}

}  // extern "C"
