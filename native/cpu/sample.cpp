// Next-token sampling from one row of logits on the CPU (infer.h: lora4j_sample_probs,
// lora4j_sample_token). Host only: a GPU's logits are copied to the host before sampling, so there
// is no CUDA twin.
//
// ---- The probabilities (identical bits on every ISA path) ------------------------------------
//   m    = max_i l_i                      (NaN logits ignored)
//   y_i  = (l_i - m) * (1/T)              fp32: one subtraction, one multiply by the fp32 1/T
//   p_i  = e(y_i)                         fp32, e below; p of the max is exactly 1
//   z    = sum_i p_i                      double: 16 lanes, lane j adds p_j, p_{j+16}, ... in order,
//                                         then the lanes in a fixed tree (j + 8, + 4, + 2, + 1)
// e(y), y <= 0: 0 for y <= kExpMin (or NaN); otherwise Cody-Waite range reduction
//   k = round(y·log2 e)                   t = fma(y, log2e, 1.5·2^23): rounding to an integer
//   r = fma(k, -ln2_lo, fma(k, -ln2_hi, y))    |r| <= ln2/2 (plus one rounding)
//   e = P(r)·2^k                          P = Cephes expf's degree-7 Horner, every step an fma;
//                                         2^k added to the exponent bits (k >= -124: no subnormal)
// Each path runs exactly these fp32 operations per element, with the FMA where written and nowhere
// else (the scalar loops call std::fma; GCC may not contract anything else here: no a·b + c is
// written without it), so scalar, AVX2 and AVX-512 give bit-identical p and z. Against
// exp((l - m)/T) in double, p is within ~2 ulp (fp32) plus the rounding of y, and tokens below
// e^-86 of the top one (4e-38) get 0.
//
// ---- The choice (scalar code, the same on every path) ----------------------------------------
// top_p = 1: the first i with u·z < p_0 + ... + p_i (double, id order).
// top_p < 1: the nucleus is the shortest prefix of the tokens sorted by p descending, then id
// ascending, whose mass (double, in that order) reaches top_p·z; the pick is the first kept token
// whose running mass exceeds u·mass. Only the tokens with p >= t are sorted, t the largest power
// of two (found by bisection over the exponent) above which the estimated mass reaches the
// target; every token left out has p < t <= every sorted one, so the sorted ones are the top of
// the full order, and when their exact prefix mass reaches the target the result is the full
// sort's. Otherwise (the float estimate was short) all tokens with p >= (1 - top_p)/(n - 1)·z
// (llama2.c's bound: a token below it cannot be in the nucleus) are sorted, else every token.
#include "lora4j/infer.h"
#include "common.h"
#include "bits.h"
#include "isa.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

constexpr int kLanes = 16;
constexpr float kExpMin = -86.0f;           // e(y) = 0 at or below: keeps k >= -125 (normal results)
constexpr float kLog2e = 1.44269502f;       // log2(e) rounded to fp32
constexpr float kMagic = 12582912.0f;       // 1.5·2^23: adding it rounds to an integer
constexpr float kLn2Hi = 0.693359375f;      // ln 2 = kLn2Hi + kLn2Lo (Cephes expf's C1, C2)
constexpr float kLn2Lo = -2.12194440e-4f;
// Cephes expf polynomial (exp(r) ≈ 1 + r + r²·(...)), written as one Horner chain from r^7 down.
constexpr float kC7 = 1.9875691500e-4f, kC6 = 1.3981999507e-3f, kC5 = 8.3334519073e-3f,
                kC4 = 4.1665795894e-2f, kC3 = 1.6666665459e-1f, kC2 = 5.0000001201e-1f,
                kC1 = 1.0f, kC0 = 1.0f;

using lora4j::cpu::f32_bits;
using lora4j::cpu::f32_of_bits;

// e(y) for one element (the reference every vector path reproduces).
inline float exp_neg_scalar(float y) {
  if (!(y > kExpMin)) return 0.0f;
  const float t = std::fma(y, kLog2e, kMagic);
  const float k = t - kMagic;
  float r = std::fma(k, -kLn2Hi, y);
  r = std::fma(k, -kLn2Lo, r);
  float q = kC7;
  q = std::fma(q, r, kC6);
  q = std::fma(q, r, kC5);
  q = std::fma(q, r, kC4);
  q = std::fma(q, r, kC3);
  q = std::fma(q, r, kC2);
  q = std::fma(q, r, kC1);
  q = std::fma(q, r, kC0);
  const uint32_t ki = f32_bits(t) - f32_bits(kMagic);  // k as a two's-complement int
  return f32_of_bits(f32_bits(q) + (ki << 23));
}

// The lane tree of the header comment.
inline double reduce_lanes(const double* lane) {
  double s8[8], s4[4];
  for (int j = 0; j < 8; j++) s8[j] = lane[j] + lane[j + 8];
  for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// Finite maximum of l ignoring NaN (-inf when every value is -inf or NaN).
float max_scalar(const float* l, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = l[i] > m ? l[i] : m;
  return m;
}

// The tail [i0, n) of the exp/sum pass, scalar, into the same lanes (lane of i = i mod 16).
inline void probs_tail(const float* l, int64_t i0, int64_t n, float m, float inv_t, float* p,
                       double* lane) {
  for (int64_t i = i0; i < n; i++) {
    p[i] = exp_neg_scalar((l[i] - m) * inv_t);
    lane[i % kLanes] += double(p[i]);
  }
}

double probs_scalar(const float* l, int64_t n, float m, float inv_t, float* p) {
  double lane[kLanes] = {};
  probs_tail(l, 0, n, m, inv_t, p, lane);
  return reduce_lanes(lane);
}

// ---- AVX2: 16 lanes as two ymm halves (lanes 0-7, 8-15), sums as four ymm of doubles ----------
__attribute__((target("avx2,fma"))) inline __m256 exp_neg_avx2(__m256 y) {
  const __m256 live = _mm256_cmp_ps(y, _mm256_set1_ps(kExpMin), _CMP_GT_OQ);
  const __m256 t = _mm256_fmadd_ps(y, _mm256_set1_ps(kLog2e), _mm256_set1_ps(kMagic));
  const __m256 k = _mm256_sub_ps(t, _mm256_set1_ps(kMagic));
  __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(-kLn2Hi), y);
  r = _mm256_fmadd_ps(k, _mm256_set1_ps(-kLn2Lo), r);
  __m256 q = _mm256_set1_ps(kC7);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC6));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC5));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC4));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC3));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC2));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC1));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(kC0));
  const __m256i ki = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(_mm256_set1_ps(kMagic)));
  const __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(q), _mm256_slli_epi32(ki, 23)));
  return _mm256_and_ps(e, live);
}

__attribute__((target("avx2,fma"))) float max_avx2(const float* l, int64_t n) {
  __m256 a = _mm256_set1_ps(-INFINITY), b = a;
  int64_t i = 0;
  // maxps returns its second operand when either is NaN: a NaN logit leaves the running max.
  for (; i + 16 <= n; i += 16) {
    a = _mm256_max_ps(_mm256_loadu_ps(l + i), a);
    b = _mm256_max_ps(_mm256_loadu_ps(l + i + 8), b);
  }
  alignas(32) float v[8];
  _mm256_store_ps(v, _mm256_max_ps(a, b));
  float m = max_scalar(v, 8);
  const float t = max_scalar(l + i, n - i);
  return t > m ? t : m;
}

__attribute__((target("avx2,fma"))) double probs_avx2(const float* l, int64_t n, float m,
                                                      float inv_t, float* p) {
  const __m256 vm = _mm256_set1_ps(m), vt = _mm256_set1_ps(inv_t);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;  // lanes 0-3, 4-7, 8-11, 12-15
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = exp_neg_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), vm), vt));
    const __m256 e1 = exp_neg_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i + 8), vm), vt));
    _mm256_storeu_ps(p + i, e0);
    _mm256_storeu_ps(p + i + 8, e1);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e0)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e0, 1)));
    s2 = _mm256_add_pd(s2, _mm256_cvtps_pd(_mm256_castps256_ps128(e1)));
    s3 = _mm256_add_pd(s3, _mm256_cvtps_pd(_mm256_extractf128_ps(e1, 1)));
  }
  alignas(32) double lane[kLanes];
  _mm256_store_pd(lane, s0);
  _mm256_store_pd(lane + 4, s1);
  _mm256_store_pd(lane + 8, s2);
  _mm256_store_pd(lane + 12, s3);
  probs_tail(l, i, n, m, inv_t, p, lane);
  return reduce_lanes(lane);
}

// Estimated mass and count of p >= t (fp32 sums: only steers the bisection).
__attribute__((target("avx2,fma"))) float mass_at_least_avx2(const float* p, int64_t n, float t,
                                                             int64_t* count) {
  const __m256 vt = _mm256_set1_ps(t);
  __m256 s = _mm256_setzero_ps();
  __m256i c = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(p + i);
    const __m256 k = _mm256_cmp_ps(v, vt, _CMP_GE_OQ);
    s = _mm256_add_ps(s, _mm256_and_ps(v, k));
    c = _mm256_sub_epi32(c, _mm256_castps_si256(k));
  }
  alignas(32) float sv[8];
  alignas(32) int32_t cv[8];
  _mm256_store_ps(sv, s);
  _mm256_store_si256(reinterpret_cast<__m256i*>(cv), c);
  float mass = 0;
  int64_t cnt = 0;
  for (int j = 0; j < 8; j++) {
    mass += sv[j];
    cnt += cv[j];
  }
  for (; i < n; i++)
    if (p[i] >= t) {
      mass += p[i];
      cnt++;
    }
  *count = cnt;
  return mass;
}

// ---- AVX-512F: the 16 lanes in one zmm -----------------------------------------------------------
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) inline __m512 exp_neg_avx512(__m512 y) {
  const __mmask16 live = _mm512_cmp_ps_mask(y, _mm512_set1_ps(kExpMin), _CMP_GT_OQ);
  const __m512 t = _mm512_fmadd_ps(y, _mm512_set1_ps(kLog2e), _mm512_set1_ps(kMagic));
  const __m512 k = _mm512_sub_ps(t, _mm512_set1_ps(kMagic));
  __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-kLn2Hi), y);
  r = _mm512_fmadd_ps(k, _mm512_set1_ps(-kLn2Lo), r);
  __m512 q = _mm512_set1_ps(kC7);
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC6));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC5));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC4));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC3));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC2));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC1));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kC0));
  const __m512i ki = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(_mm512_set1_ps(kMagic)));
  const __m512i e = _mm512_add_epi32(_mm512_castps_si512(q), _mm512_slli_epi32(ki, 23));
  return _mm512_castsi512_ps(_mm512_maskz_mov_epi32(live, e));
}

__attribute__((target("avx512f"))) float max_avx512(const float* l, int64_t n) {
  __m512 a = _mm512_set1_ps(-INFINITY), b = a;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = _mm512_max_ps(_mm512_loadu_ps(l + i), a);
    b = _mm512_max_ps(_mm512_loadu_ps(l + i + 16), b);
  }
  alignas(64) float v[16];
  _mm512_store_ps(v, _mm512_max_ps(a, b));
  float m = max_scalar(v, 16);
  const float t = max_scalar(l + i, n - i);
  return t > m ? t : m;
}

__attribute__((target("avx512f"))) double probs_avx512(const float* l, int64_t n, float m,
                                                        float inv_t, float* p) {
  const __m512 vm = _mm512_set1_ps(m), vt = _mm512_set1_ps(inv_t);
  __m512d s0 = _mm512_setzero_pd(), s1 = s0;  // lanes 0-7, 8-15
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_neg_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(l + i), vm), vt));
    _mm512_storeu_ps(p + i, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  alignas(64) double lane[kLanes];
  _mm512_store_pd(lane, s0);
  _mm512_store_pd(lane + 8, s1);
  probs_tail(l, i, n, m, inv_t, p, lane);
  return reduce_lanes(lane);
}

__attribute__((target("avx512f"))) float mass_at_least_avx512(const float* p, int64_t n, float t,
                                                               int64_t* count) {
  const __m512 vt = _mm512_set1_ps(t);
  __m512 s = _mm512_setzero_ps();
  int64_t cnt = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(p + i);
    const __mmask16 k = _mm512_cmp_ps_mask(v, vt, _CMP_GE_OQ);
    s = _mm512_mask_add_ps(s, k, s, v);
    cnt += __builtin_popcount(unsigned(k));
  }
  float mass = _mm512_reduce_add_ps(s);
  for (; i < n; i++)
    if (p[i] >= t) {
      mass += p[i];
      cnt++;
    }
  *count = cnt;
  return mass;
}
#pragma GCC diagnostic pop

float mass_at_least_scalar(const float* p, int64_t n, float t, int64_t* count) {
  float mass = 0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; i++)
    if (p[i] >= t) {
      mass += p[i];
      cnt++;
    }
  *count = cnt;
  return mass;
}

struct Path {
  float (*max)(const float*, int64_t);
  double (*probs)(const float*, int64_t, float, float, float*);
  float (*mass_at_least)(const float*, int64_t, float, int64_t*);
};

const Path& path() {
  static const Path chosen = [] {
    switch (lora4j::cpu::simd_isa()) {
      case lora4j::cpu::Isa::kAvx512: return Path{max_avx512, probs_avx512, mass_at_least_avx512};
      case lora4j::cpu::Isa::kAvx2: return Path{max_avx2, probs_avx2, mass_at_least_avx2};
      default: return Path{max_scalar, probs_scalar, mass_at_least_scalar};
    }
  }();
  return chosen;
}

// Sort key: p's bits (positive floats order as their bits) above the inverted id, so that an
// ascending sort puts the most probable token, lowest id first among equals, last.
inline int64_t key(float p, int64_t i) {
  return int64_t((uint64_t(f32_bits(p)) << 32) | uint64_t(0x7fffffff - i));
}
inline int64_t key_id(int64_t k) { return 0x7fffffff - (k & 0xffffffff); }

// Keys of the tokens with p >= t; returns how many.
int64_t gather(const float* p, int64_t n, float t, int64_t* keys) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (p[i] >= t) keys[m++] = key(p[i], i);
  return m;
}

// Sorts the m keys, keeps the most probable until their mass reaches target and draws with u.
// Returns -1 when the kept tokens' mass stays below target and `complete` is false (the keys
// are then not known to hold the nucleus).
int32_t pick(const float* p, int64_t* keys, int64_t m, double target, double u, bool complete) {
  std::sort(keys, keys + m);
  double mass = 0;
  int64_t keep = 0;
  while (keep < m && mass < target) mass += double(p[key_id(keys[m - 1 - keep++])]);
  if (mass < target && !complete) return -1;
  const double point = u * mass;
  double acc = 0;
  for (int64_t j = 0; j < keep; j++) {
    const int64_t id = key_id(keys[m - 1 - j]);
    acc += double(p[id]);
    if (point < acc) return int32_t(id);
  }
  return int32_t(key_id(keys[m - keep]));
}

// ---- Flat distributions: the nucleus and the draw without sorting it -----------------------------
// When most of the vocabulary is in the nucleus (a flat distribution), sorting it is most of a
// sample's time. The tokens with p >= t = 2^lo are all multiples of 2^(lo - 23) (their exponents
// are >= lo), and their total is at most their count m (p <= 1); while m <= 2^(30 + lo) every
// partial sum of them is below 2^53 of those units, so exact in double, whatever the order. Then
// the sorted order's running masses are exact sums of the tokens above a point, and both the
// nucleus boundary and the drawn token are weighted selections: the mass per bucket of p's bits
// (buckets in p order) says in which bucket the running mass crosses the target, and only that
// bucket's tokens are sorted. Same result as pick() bit for bit (the sums it compares are the same
// exact numbers).
constexpr int kBucketBits = 12;
constexpr int64_t kBuckets = int64_t(1) << kBucketBits;
// Below this many candidates sorting them is as cheap as the passes over the vocabulary below.
constexpr int64_t kBucketMin = 2048;

// Buckets 1..kBuckets of the tokens with p >= t in p order: bucket(p) = 1 + ((bits(p) - bits(t)) >>
// shift), capped at the top one (p <= 1, so the cap only guards the order); tokens below t fall in
// bucket 0. Branch-free: on a flat distribution whether p >= t is a coin toss.
struct Buckets {
  uint32_t base;
  int shift;

  explicit Buckets(float t) : base(f32_bits(t)), shift(0) {
    while (((f32_bits(1.0f) - base) >> shift) >= uint32_t(kBuckets)) shift++;
  }
  int64_t of(float v) const {
    const int64_t b = ((int64_t(f32_bits(v)) - int64_t(base)) >> shift) + 1;
    return std::max<int64_t>(0, std::min<int64_t>(kBuckets, b));
  }
};

// Keys of the tokens in bucket b >= 1, sorted ascending (so read from the end: p descending, then
// id ascending); returns how many.
int64_t sorted_bucket(const float* p, int64_t n, const Buckets& h, int64_t b, int64_t* keys) {
  const uint32_t lower = h.base + (uint32_t(b - 1) << h.shift);
  const uint32_t width = b == kBuckets ? ~uint32_t(0) - lower : uint32_t(1) << h.shift;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (f32_bits(p[i]) - lower < width) keys[m++] = key(p[i], i);
  std::sort(keys, keys + m);
  return m;
}

// The draw among the m tokens with p >= t = 2^lo as pick() makes it, or -1 when their mass stays
// below target. Needs m <= 2^(30 + lo) (the sums exact).
int32_t pick_by_buckets(const float* p, int64_t n, int lo, double target, double u, int64_t* keys) {
  const Buckets h(std::ldexp(1.0f, lo));
  double mass_of[kBuckets + 1] = {};
  for (int64_t i = 0; i < n; i++) mass_of[h.of(p[i])] += double(p[i]);
  // The bucket where the running mass (p descending) reaches the target.
  double above = 0;  // mass of the buckets above b
  int64_t b = kBuckets;
  for (; b >= 1 && above + mass_of[b] < target; b--) above += mass_of[b];
  if (b < 1) return -1;
  const int64_t nb = b, mb = sorted_bucket(p, n, h, nb, keys);
  double mass = above;
  int64_t keep = 0;  // tokens of bucket nb in the nucleus
  while (keep < mb && mass < target) mass += double(p[key_id(keys[mb - 1 - keep++])]);
  const double point = u * mass;
  // The first token whose running mass exceeds the point: in a bucket above nb, or in nb's kept part.
  double acc = 0;
  for (b = kBuckets; b > nb && acc + mass_of[b] <= point; b--) acc += mass_of[b];
  const int64_t mk = b > nb ? sorted_bucket(p, n, h, b, keys) : keep;
  const int64_t top = b > nb ? mk : mb;  // keys[top - 1] is the bucket's most probable token
  for (int64_t j = 0; j < mk; j++) {
    const int64_t id = key_id(keys[top - 1 - j]);
    acc += double(p[id]);
    if (point < acc) return int32_t(id);
  }
  return int32_t(key_id(keys[mb - keep]));  // rounding at the end of the nucleus: its last token
}

int32_t first_max(const float* l, int64_t n, float m) {
  for (int64_t i = 0; i < n; i++)
    if (l[i] == m) return int32_t(i);
  return 0;
}

}  // namespace

extern "C" {

void lora4j_sample_probs(const float* logits, int64_t n, float temperature, float* p, double* z) {
  LORA4J_CHECK(n > 0 && temperature > 0, "sample: needs n > 0 and temperature > 0");
  const Path& k = path();
  const float m = k.max(logits, n);
  *z = std::isfinite(m) ? k.probs(logits, n, m, 1.0f / temperature, p) : 0.0;
}

int32_t lora4j_sample_token(const float* logits, int64_t n, float temperature, float top_p,
                            double u, float* p, int64_t* keys) {
  LORA4J_CHECK(n > 0 && n <= 0x7fffffff, "sample: vocabulary size out of range");
  LORA4J_CHECK(top_p > 0 && top_p <= 1, "sample: top_p must be in (0, 1]");
  const Path& k = path();
  const float m = k.max(logits, n);
  if (!std::isfinite(m)) return first_max(logits, n, m);  // no finite logit: as greedy
  const double z = k.probs(logits, n, m, 1.0f / temperature, p);
  if (top_p >= 1) {
    const double point = u * z;
    double acc = 0;
    int32_t last = 0;
    for (int64_t i = 0; i < n; i++) {
      if (p[i] == 0) continue;
      acc += double(p[i]);
      last = int32_t(i);
      if (point < acc) return last;
    }
    return last;
  }
  const double target = double(top_p) * z;
  const double cutoff = n > 1 ? (1.0 - double(top_p)) / double(n - 1) * z : 0.0;
  // Bisection over exponents e in [lo, 0] for the largest t = 2^e whose estimated mass reaches
  // the target (with a margin for the fp32 estimate); p <= 1, so t = 1 holds at most the top.
  int lo = std::max(-126, cutoff > 0 ? int(std::floor(std::log2(cutoff))) : -126), hi = 0;
  int64_t count = 0;
  const double need = target * (1 + 1e-5);
  if (double(k.mass_at_least(p, n, std::ldexp(1.0f, lo), &count)) >= need) {
    while (lo < hi) {  // invariant: 2^lo reaches the target, `count` tokens are at or above it
      const int mid = (lo + hi + 1) / 2;
      int64_t c = 0;
      if (double(k.mass_at_least(p, n, std::ldexp(1.0f, mid), &c)) >= need) lo = mid, count = c;
      else hi = mid - 1;
    }
    int32_t id = -1;
    if (count >= kBucketMin && lo >= -30 && count <= (int64_t(1) << (30 + lo)))
      id = pick_by_buckets(p, n, lo, target, u, keys);
    else
      id = pick(p, keys, gather(p, n, std::ldexp(1.0f, lo), keys), target, u, false);
    if (id >= 0) return id;
  }
  int64_t mc = 0;
  for (int64_t i = 0; i < n; i++)
    if (double(p[i]) >= cutoff) keys[mc++] = key(p[i], i);
  const int32_t id = pick(p, keys, mc, target, u, false);
  if (id >= 0) return id;
  return pick(p, keys, gather(p, n, 0.0f, keys), target, u, true);  // rounding at the edge: all
}

}  // extern "C"
