// NF4 forward product with bitsandbytes' bnb_4bit_compute_dtype = bfloat16 on the CPU
// (nf4.h lora4j_nf4_matmul_fwd_bf16): W is dequantized to bf16 and multiplied with X rounded to
// bf16, products accumulated in fp32, as bitsandbytes' Linear4bit does (dequantize_4bit to the
// compute dtype, then a bf16 matmul) and as the CUDA kernel (nf4.cu) already does.
//
// ---- The numbers (identical bits on every ISA path) ---------------------------------------------
//   wb[o,i] = bf16(NF4[q(o,i)] · absmax[b(o,i)])     fp32 product, rounded to nearest even
//   xb[t,i] = bf16(x[t,i])                            rounded to nearest even
//   bf16(v) = 0 when |v| < 2^-126 (flushed, as vdpbf16ps reads subnormal inputs as 0)
//   K is padded with zeros to a multiple of 32; chunk c = elements 32c .. 32c+31; 16 lanes, lane j
//   owns the pair (32c + 2j, 32c + 2j + 1) of every chunk:
//     L_j <- L_j + xb[2j+1]·wb[2j+1]    then    L_j <- L_j + xb[2j]·wb[2j]     (each rounded once)
//   y[t,o] = ((s[0] + s[2]) + (s[1] + s[3])), s[j] = s8[j] + s8[j+4], s8[j] = L_j + L_{j+8}  (fp32)
// A product of two bf16 values is exact in fp32, so each step is one fp32 FMA. That is exactly what
// AVX512_BF16's vdpbf16ps does per lane (pair order as Intel's pseudocode: odd element first; the
// tests check it against the instruction), so:
//   - avx512 path on a CPU with AVX512_BF16: vdpbf16ps;
//   - avx512 without AVX512_BF16, avx2: the same two FMAs per lane on the widened bf16 values;
//   - scalar: the same, one lane at a time.
// vdpbf16ps also flushes a subnormal result to 0 (FTZ); the emulation keeps it, so the paths can
// differ only where a lane's partial sum falls below 2^-126 in magnitude (never in a real model).
// Against the fp32 product (lora4j_nf4_matmul_fwd) the difference is the bf16 rounding of x and W:
// per element 2^-8 relative at most each, so |y - y32| <= 2^-7 · sum_i |x_i w_i| (plus fp32 sums).
//
// ---- Work layout -------------------------------------------------------------------------------
// X is rounded once into xb [T, Kp]. Output rows go in blocks of kRows over the thread pool; a
// thread dequantizes its block into a bf16 panel [kRows, Kp] (L2-sized for Kp <= 4096), then runs
// a tile of up to 4 tokens x 4 rows over the whole K (16 accumulators, each one lane vector per
// output) for every tile of the block. T = 1 on the AVX-512 paths (in % 32 == 0) skips the panel:
// see gemv1_* below; it computes the same numbers.
#include "lora4j/nf4.h"
#include "common.h"
#include "bits.h"
#include "isa.h"
#include "parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kChunk = 32;  // elements per K step (16 lanes x 2)
constexpr int64_t kRows = 16;   // output rows per panel (a multiple of the 4-row tile)

using lora4j::cpu::f32_bits;
using lora4j::cpu::f32_of_bits;

// Round to nearest even bf16, subnormals (and zero) to +-0. Inputs are finite.
inline uint16_t to_bf16(float v) {
  const uint32_t u = f32_bits(v);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float widen(uint16_t h) { return f32_of_bits(uint32_t(h) << 16); }

// The same rounding on 8 / 16 lanes (integer arithmetic: identical bits).
__attribute__((target("avx2,fma"))) inline __m256i to_bf16_avx2(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i r = _mm256_add_epi32(
      u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))));
  const __m256i sub = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)), _mm256_setzero_si256());
  const __m256i sign = _mm256_and_si256(u, _mm256_set1_epi32(int(0x80000000u)));
  return _mm256_srli_epi32(_mm256_blendv_epi8(r, sign, sub), 16);  // bf16 in the low half
}

const float* nf4_table() {
  static const std::vector<float> t = [] {
    std::vector<float> v(16);
    lora4j_nf4_code(v.data());
    return v;
  }();
  return t.data();
}

// The 16 scaled bf16 values of one block, as lo[q] = bf16 and hi[q] = bf16 << 16 (int32 lanes).
struct Lut16 {
  alignas(64) uint32_t lo[16];
  alignas(64) uint32_t hi[16];
};

// On every path with AVX2 integer code (this file's baseline): the same bits as to_bf16(t[q] * amax).
inline void make_lut(float amax, Lut16& l) {
  const float* t = nf4_table();
  const __m256 a = _mm256_set1_ps(amax);
  for (int h = 0; h < 2; h++) {
    const __m256i v = to_bf16_avx2(_mm256_mul_ps(_mm256_loadu_ps(t + 8 * h), a));
    _mm256_store_si256(reinterpret_cast<__m256i*>(l.lo + 8 * h), v);
    _mm256_store_si256(reinterpret_cast<__m256i*>(l.hi + 8 * h), _mm256_slli_epi32(v, 16));
  }
}

inline uint16_t deq_bf16(const uint8_t* w, int64_t e, float amax) {
  const uint8_t b = w[e >> 1];
  return to_bf16(nf4_table()[(e & 1) ? (b & 0x0F) : (b >> 4)] * amax);
}

// ---- dequantize row pieces to the panel ----------------------------------------------------------
// 16 packed bytes = 32 elements -> 16 dwords (bf16 pairs in element order): the high nibble (even
// element) takes the low half, the low nibble (odd element) the high half.
void deq32_scalar(const uint8_t* p, const Lut16& l, uint16_t* out) {
  for (int j = 0; j < 16; j++) {
    const uint32_t d = l.lo[p[j] >> 4] | l.hi[p[j] & 15];
    std::memcpy(out + 2 * j, &d, 4);
  }
}

__attribute__((target("avx2,fma"))) inline __m256i lookup8_avx2(__m256i q, __m256i lo, __m256i hi) {
  // vpermd reads the low 3 bits; bit 3, moved to the sign bit, picks the half.
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(lo, q)),
                                              _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(hi, q)),
                                              _mm256_castsi256_ps(_mm256_slli_epi32(q, 28))));
}

__attribute__((target("avx2,fma"))) void deq32_avx2(const uint8_t* p, const Lut16& l, uint16_t* out) {
  const __m256i lo0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.lo));
  const __m256i lo1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.lo + 8));
  const __m256i hi0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.hi));
  const __m256i hi1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.hi + 8));
  for (int h = 0; h < 2; h++) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
    const __m256i even = _mm256_srli_epi32(b, 4), odd = _mm256_and_si256(b, _mm256_set1_epi32(15));
    const __m256i d = _mm256_or_si256(lookup8_avx2(even, lo0, lo1), lookup8_avx2(odd, hi0, hi1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16 * h), d);
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void deq32_avx512(const uint8_t* p, const Lut16& l, uint16_t* out) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i d = _mm512_or_si512(_mm512_permutexvar_epi32(_mm512_srli_epi32(b, 4), _mm512_load_si512(l.lo)),
                                    _mm512_permutexvar_epi32(b, _mm512_load_si512(l.hi)));  // low 4 bits index
  _mm512_storeu_si512(out, d);
}
#pragma GCC diagnostic pop

using Deq32 = void (*)(const uint8_t*, const Lut16&, uint16_t*);

// Row r of W (elements r·in .. r·in + in) -> out[0, Kp), zero padded.
void dequant_row(const uint8_t* w, const float* absmax, int sh, int64_t in, int64_t Kp, int64_t r,
                 Deq32 deq32, uint16_t* out) {
  const int64_t row = r * in, end = row + in;
  int64_t e = row;
  Lut16 lut;
  while (e < end) {
    const int64_t b = e >> sh, be = std::min(end, (b + 1) << sh);
    const float amax = absmax[b];
    if ((e & 1) == 0 && be - e >= kChunk) {
      make_lut(amax, lut);
      for (; e + kChunk <= be; e += kChunk) deq32(w + (e >> 1), lut, out + (e - row));
    }
    for (; e < be; e++) out[e - row] = deq_bf16(w, e, amax);
  }
  std::fill(out + in, out + Kp, uint16_t(0));
}

// ---- the lane products ---------------------------------------------------------------------------
inline float reduce_lanes(const float* L) {
  float s8[8], s4[4];
  for (int j = 0; j < 8; j++) s8[j] = L[j] + L[j + 8];
  for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// reduce_lanes in registers: s8 = L[0:8] + L[8:16], then its halves, then the two pairs, the same
// additions in the same order.
__attribute__((target("avx2,fma"))) inline float reduce8(__m256 s8) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));  // (s4[0] + s4[2], s4[1] + s4[3])
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) inline float reduce16(__m512 l) {
  return reduce8(_mm256_add_ps(_mm512_castps512_ps256(l),
                               _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(l), 1))));
}
#pragma GCC diagnostic pop

// Tile of TT tokens x OR rows: y[t·ldy + o] for t < TT, o < OR. xb rows and panel rows have stride Kp.
template <int TT>
void tile_scalar(const uint16_t* xb, const uint16_t* wp, int64_t Kp, int OR, float* y, int64_t ldy) {
  for (int t = 0; t < TT; t++) {
    for (int o = 0; o < OR; o++) {
      float L[16] = {};
      const uint16_t* xr = xb + t * Kp;
      const uint16_t* wr = wp + o * Kp;
      for (int64_t c = 0; c < Kp; c += kChunk) {
        for (int j = 0; j < 16; j++) {
          const int64_t i = c + 2 * j;
          L[j] = std::fma(widen(xr[i + 1]), widen(wr[i + 1]), L[j]);
          L[j] = std::fma(widen(xr[i]), widen(wr[i]), L[j]);
        }
      }
      y[t * ldy + o] = reduce_lanes(L);
    }
  }
}

// AVX2: a lane vector is two ymm (lanes 0-7 from elements 0-15, lanes 8-15 from 16-31); the even
// element of each dword is its low half shifted up, the odd one its high half masked.
template <int TT>
__attribute__((target("avx2,fma"))) void tile_avx2(const uint16_t* xb, const uint16_t* wp, int64_t Kp, int OR,
                                                   float* y, int64_t ldy) {
  const __m256i himask = _mm256_set1_epi32(int(0xffff0000u));
  for (int o0 = 0; o0 < OR; o0 += 2) {
    const int nr = std::min(2, OR - o0);
    __m256 acc[TT][2][2];
    for (int t = 0; t < TT; t++)
      for (int o = 0; o < 2; o++) acc[t][o][0] = acc[t][o][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < Kp; c += kChunk) {
      __m256 we[2][2], wo[2][2];
      for (int o = 0; o < 2; o++) {
        const uint16_t* wr = wp + (o0 + (o < nr ? o : 0)) * Kp + c;
        for (int h = 0; h < 2; h++) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + 16 * h));
          we[o][h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
          wo[o][h] = _mm256_castsi256_ps(_mm256_and_si256(v, himask));
        }
      }
      for (int t = 0; t < TT; t++) {
        for (int h = 0; h < 2; h++) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + t * Kp + c + 16 * h));
          const __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
          const __m256 xo = _mm256_castsi256_ps(_mm256_and_si256(v, himask));
          for (int o = 0; o < 2; o++) {
            acc[t][o][h] = _mm256_fmadd_ps(xo, wo[o][h], acc[t][o][h]);
            acc[t][o][h] = _mm256_fmadd_ps(xe, we[o][h], acc[t][o][h]);
          }
        }
      }
    }
    for (int t = 0; t < TT; t++)
      for (int o = 0; o < nr; o++) y[t * ldy + o0 + o] = reduce8(_mm256_add_ps(acc[t][o][0], acc[t][o][1]));
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// AVX-512F without BF16: one zmm per lane vector, the same two FMAs.
template <int TT>
__attribute__((target("avx512f"))) void tile_avx512(const uint16_t* xb, const uint16_t* wp, int64_t Kp, int OR,
                                                     float* y, int64_t ldy) {
  const __m512i himask = _mm512_set1_epi32(int(0xffff0000u));
  __m512 acc[TT][4];
  for (int t = 0; t < TT; t++)
    for (int o = 0; o < 4; o++) acc[t][o] = _mm512_setzero_ps();
  for (int64_t c = 0; c < Kp; c += kChunk) {
    __m512 we[4], wo[4];
    for (int o = 0; o < 4; o++) {
      const __m512i v = _mm512_loadu_si512(wp + (o < OR ? o : 0) * Kp + c);
      we[o] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      wo[o] = _mm512_castsi512_ps(_mm512_and_si512(v, himask));
    }
    for (int t = 0; t < TT; t++) {
      const __m512i v = _mm512_loadu_si512(xb + t * Kp + c);
      const __m512 xe = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      const __m512 xo = _mm512_castsi512_ps(_mm512_and_si512(v, himask));
      for (int o = 0; o < 4; o++) acc[t][o] = _mm512_fmadd_ps(xe, we[o], _mm512_fmadd_ps(xo, wo[o], acc[t][o]));
    }
  }
  for (int t = 0; t < TT; t++)
    for (int o = 0; o < OR; o++) y[t * ldy + o] = reduce16(acc[t][o]);
}

// AVX512_BF16: vdpbf16ps, 32 products per instruction.
template <int TT>
__attribute__((target("avx512f,avx512bf16"))) void tile_bf16dp(const uint16_t* xb, const uint16_t* wp, int64_t Kp,
                                                                 int OR, float* y, int64_t ldy) {
  __m512 acc[TT][4];
  for (int t = 0; t < TT; t++)
    for (int o = 0; o < 4; o++) acc[t][o] = _mm512_setzero_ps();
  for (int64_t c = 0; c < Kp; c += kChunk) {
    __m512i wv[4];
    for (int o = 0; o < 4; o++) wv[o] = _mm512_loadu_si512(wp + (o < OR ? o : 0) * Kp + c);
    for (int t = 0; t < TT; t++) {
      const __m512i xv = _mm512_loadu_si512(xb + t * Kp + c);
      for (int o = 0; o < 4; o++) acc[t][o] = _mm512_dpbf16_ps(acc[t][o], (__m512bh)xv, (__m512bh)wv[o]);
    }
  }
  for (int t = 0; t < TT; t++)
    for (int o = 0; o < OR; o++) y[t * ldy + o] = reduce16(acc[t][o]);
}
#pragma GCC diagnostic pop

// ---- T = 1, AVX-512: decode in registers, no panel --------------------------------------------
// The same numbers as the panel path (each lane still sums its pairs chunk by chunk), but the 16
// scaled bf16 values of a block live in two zmm (rebuilt when a row's chunk enters a new block)
// and each chunk's 32 weights go from 16 packed bytes straight into the product: the panel's
// store and reload, and its table's trip through memory, cost 4x the fp32 GEMV at T = 1. Needs
// in % 32 == 0 (every chunk then lies in one block and starts on a byte).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"), always_inline)) inline __m512i to_bf16_512(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i r = _mm512_add_epi32(
      u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  const __mmask16 sub = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7f800000)), _mm512_setzero_si512());
  return _mm512_srli_epi32(_mm512_mask_mov_epi32(r, sub, _mm512_and_si512(u, _mm512_set1_epi32(int(0x80000000u)))), 16);
}

struct Lut512 {
  __m512i lo, hi;
};

__attribute__((target("avx512f"), always_inline)) inline Lut512 lut512(float amax, __m512 table) {
  const __m512i v = to_bf16_512(_mm512_mul_ps(table, _mm512_set1_ps(amax)));
  return {v, _mm512_slli_epi32(v, 16)};
}

__attribute__((target("avx512f"), always_inline)) inline __m512i deq32_512(const uint8_t* p, const Lut512& l) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_or_si512(_mm512_permutexvar_epi32(_mm512_srli_epi32(b, 4), l.lo), _mm512_permutexvar_epi32(b, l.hi));
}

__attribute__((target("avx512f"), always_inline)) inline __m512 prod_emul(__m512 a, __m512i x, __m512i v) {
  const __m512i hi = _mm512_set1_epi32(int(0xffff0000u));
  a = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(x, hi)), _mm512_castsi512_ps(_mm512_and_si512(v, hi)), a);
  return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), a);
}

__attribute__((target("avx512f,avx512bf16"), always_inline)) inline __m512 prod_dp(__m512 a, __m512i x, __m512i v) {
  return _mm512_dpbf16_ps(a, (__m512bh)x, (__m512bh)v);
}

// R rows o, o + q, ..., o + (R-1)q: y[row] = the lane tree of the chunk-by-chunk lane sums, PROD
// the product step; stamped out once per target (a helper of another target could not be inlined).
// A thread's slice is read as R sequential streams, each a quarter of it (R rows q apart), which
// DRAM serves better than R adjacent rows (nf4.cpp gemv1_rows_avx512; bench/results/2026-12-03-nf4-gemv.md).
#define LORA4J_GEMV1(NAME, TARGET, PROD)                                                                  \
  template <int R>                                                                                       \
  __attribute__((target(TARGET))) inline void NAME##_rows(const uint16_t* xb, int64_t in, const uint8_t* w, \
                                                          const float* absmax, int sh, int64_t o, int64_t q, float* y) { \
    const __m512 table = _mm512_loadu_ps(nf4_table());                                                   \
    __m512 acc[R];                                                                                       \
    Lut512 lut[R];                                                                                       \
    int64_t cur[R];                                                                                      \
    for (int r = 0; r < R; r++) {                                                                        \
      acc[r] = _mm512_setzero_ps();                                                                      \
      cur[r] = -1;                                                                                       \
    }                                                                                                    \
    for (int64_t c = 0; c < in; c += kChunk) {                                                           \
      const __m512i xv = _mm512_loadu_si512(xb + c);                                                     \
      for (int r = 0; r < R; r++) {                                                                      \
        const int64_t e = (o + r * q) * in + c, b = e >> sh;                                             \
        if (b != cur[r]) {                                                                               \
          cur[r] = b;                                                                                    \
          lut[r] = lut512(absmax[b], table);                                                             \
        }                                                                                                \
        acc[r] = PROD(acc[r], xv, deq32_512(w + (e >> 1), lut[r]));                                      \
      }                                                                                                  \
    }                                                                                                    \
    for (int r = 0; r < R; r++) y[o + r * q] = reduce16(acc[r]);                                         \
  }                                                                                                      \
  __attribute__((target(TARGET))) void NAME(const uint16_t* xb, int64_t in, const uint8_t* w,              \
                                            const float* absmax, int sh, int64_t o0, int64_t o1, float* y) { \
    const int64_t q = (o1 - o0) / 4;                                                                     \
    for (int64_t o = o0; o < o0 + q; o++) NAME##_rows<4>(xb, in, w, absmax, sh, o, q, y);                \
    for (int64_t o = o0 + 4 * q; o < o1; o++) NAME##_rows<1>(xb, in, w, absmax, sh, o, 0, y);            \
  }

LORA4J_GEMV1(gemv1_avx512, "avx512f", prod_emul)
LORA4J_GEMV1(gemv1_bf16dp, "avx512f,avx512bf16", prod_dp)
#undef LORA4J_GEMV1
#pragma GCC diagnostic pop

using Gemv1Fn = void (*)(const uint16_t*, int64_t, const uint8_t*, const float*, int, int64_t, int64_t, float*);

using TileFn = void (*)(const uint16_t*, const uint16_t*, int64_t, int, float*, int64_t);

struct Path {
  Deq32 deq32;
  TileFn tile[4];  // by tokens in the tile, 1..4
  int rows;        // rows per tile call (the AVX2 tile walks its rows in pairs)
  Gemv1Fn gemv1;   // T = 1 without a panel, or null
};

const Path& path() {
  static const Path chosen = [] {
    switch (lora4j::cpu::simd_isa()) {
      case lora4j::cpu::Isa::kAvx512:
        if (lora4j::cpu::has_avx512_bf16())
          return Path{deq32_avx512, {tile_bf16dp<1>, tile_bf16dp<2>, tile_bf16dp<3>, tile_bf16dp<4>}, 4, gemv1_bf16dp};
        return Path{deq32_avx512, {tile_avx512<1>, tile_avx512<2>, tile_avx512<3>, tile_avx512<4>}, 4, gemv1_avx512};
      case lora4j::cpu::Isa::kAvx2:
        return Path{deq32_avx2, {tile_avx2<1>, tile_avx2<2>, tile_avx2<3>, tile_avx2<4>}, kRows, nullptr};
      default:
        return Path{deq32_scalar, {tile_scalar<1>, tile_scalar<2>, tile_scalar<3>, tile_scalar<4>}, kRows, nullptr};
    }
  }();
  return chosen;
}

// Grows, never shrinks.
uint16_t* scratch(std::vector<uint16_t>& buf, int64_t elems) {
  if (int64_t(buf.size()) < elems) buf.resize(size_t(elems));
  return buf.data();
}

int log2_of(int32_t blocksize) {
  LORA4J_CHECK(blocksize >= 32 && (blocksize & (blocksize - 1)) == 0,
               "nf4 bf16 matmul: blocksize must be a power of two >= 32, got " + std::to_string(blocksize));
  return __builtin_ctz(uint32_t(blocksize));
}

}  // namespace

extern "C" {

const char* lora4j_nf4_bf16_path(void) {
  const Path& p = path();
  if (p.tile[0] == tile_bf16dp<1>) return "avx512bf16";
  if (p.tile[0] == tile_avx512<1>) return "avx512";
  return p.tile[0] == tile_avx2<1> ? "avx2" : "scalar";
}

void lora4j_nf4_matmul_fwd_bf16(const float* x, int64_t T, int64_t in, int64_t out, const uint8_t* w,
                                const float* absmax, int32_t blocksize, float* y) {
  if (T <= 0 || out <= 0) return;
  if (in == 0) {
    std::fill(y, y + T * out, 0.0f);
    return;
  }
  const int sh = log2_of(blocksize);
  const Path& p = path();
  const int64_t Kp = (in + kChunk - 1) / kChunk * kChunk;
  static thread_local std::vector<uint16_t> xbuf;
  uint16_t* xb = scratch(xbuf, T * Kp);
  lora4j::cpu::parallel_for(T, double(in), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * in;
      uint16_t* o = xb + t * Kp;
      int64_t i = 0;
      if (p.deq32 != deq32_scalar) {
        for (; i + 8 <= in; i += 8) {
          const __m256i h = to_bf16_avx2(_mm256_loadu_ps(xr + i));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i),
                           _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
        }
      }
      for (; i < in; i++) o[i] = to_bf16(xr[i]);
      std::fill(o + in, o + Kp, uint16_t(0));
    }
  });
  if (T == 1 && p.gemv1 != nullptr && in % kChunk == 0) {
    lora4j::cpu::parallel_for(out, 2.0 * in, [&](int64_t o0, int64_t o1) { p.gemv1(xb, in, w, absmax, sh, o0, o1, y); });
    return;
  }
  const int64_t nblocks = (out + kRows - 1) / kRows;
  lora4j::cpu::parallel_for(nblocks, 2.0 * kRows * Kp * T, [&](int64_t b0, int64_t b1) {
    static thread_local std::vector<uint16_t> pbuf;
    uint16_t* panel = scratch(pbuf, kRows * Kp);
    for (int64_t blk = b0; blk < b1; blk++) {
      const int64_t r0 = blk * kRows, nr = std::min(kRows, out - r0);
      for (int64_t r = 0; r < nr; r++) dequant_row(w, absmax, sh, in, Kp, r0 + r, p.deq32, panel + r * Kp);
      for (int64_t o = 0; o < nr; o += p.rows) {
        const int orows = int(std::min<int64_t>(p.rows, nr - o));
        for (int64_t t = 0; t < T; t += 4) {
          const int tt = int(std::min<int64_t>(4, T - t));
          p.tile[tt - 1](xb + t * Kp, panel + o * Kp, Kp, orows, y + t * out + r0 + o, out);
        }
      }
    }
  });
}

}  // extern "C"
