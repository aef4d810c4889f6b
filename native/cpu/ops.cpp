// Shared SIMD helpers of the CPU op files (attention, cross_entropy, swiglu): a vectorized
// exp. Internal (namespace lora4j::cpu), not exported in a header; the users declare the
// prototype below verbatim.
//
// exp(x) by Cephes' expf scheme (range reduction x = n ln2 + f, |f| <= ln2/2, degree-6
// polynomial, 2^n by exponent bits): relative error <= 2 ulp on [-87.3, 88.3]; inputs below
// -87.3 (including -inf) give exactly 0, inputs above 88.3 are clamped (finite result), NaN
// propagates.
//
// AVX-512F (native/cpu/isa.h's run-time choice, LORA4J_DECODE_ISA forces one): exp512 is exp256's
// operations lane for lane, so every output of exp_sub_sum, exp_sub_scale and exp_scaled has the
// same bits on both paths (the elements past the last 8-multiple take the same tail code); exp_sub_sum adds the two 8-lane
// halves of each 16 into the same 8 accumulators, in the order the AVX2 loop adds them, so its
// sum has the same bits too.
#include "isa.h"

#include <immintrin.h>
#include <cmath>
#include <cstdint>

namespace lora4j {
namespace cpu {

namespace {
inline __m256 exp256(__m256 x) {
  const __m256 x0 = x;
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447505531f);  // exp(lo) ~ FLT_MIN, normal
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(0.693359375f);          // Cephes ln2 split, high part
  const __m256 c2 = _mm256_set1_ps(-2.12194440e-4f);       // low part
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);         // also true for -inf; NaN -> false
  x = _mm256_min_ps(x, hi);
  x = _mm256_max_ps(x, lo);
  __m256 fx = _mm256_round_ps(_mm256_fmadd_ps(x, log2e, _mm256_set1_ps(0.5f)),
                              _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, c1, x);
  x = _mm256_fnmadd_ps(fx, c2, x);
  // Cephes expf polynomial coefficients (cephes/single/expf.c).
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  __m256 x2 = _mm256_mul_ps(x, x);
  y = _mm256_fmadd_ps(y, x2, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i n = _mm256_cvttps_epi32(fx);
  n = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(n));
  y = _mm256_andnot_ps(under, y);
  return _mm256_blendv_ps(y, x0, _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q));  // NaN stays NaN
}

// GCC 12's avx512fintrin.h builds its "undefined" pass-through operands by self-initialisation,
// which -Wuninitialized reports at every inlined use: silenced for these functions only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  const __m512 x0 = x;
  const __m512 hi = _mm512_set1_ps(88.3762626647949f);
  const __m512 lo = _mm512_set1_ps(-87.3365447505531f);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 c1 = _mm512_set1_ps(0.693359375f);
  const __m512 c2 = _mm512_set1_ps(-2.12194440e-4f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(x, hi);
  x = _mm512_max_ps(x, lo);
  __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, log2e, _mm512_set1_ps(0.5f)),
                                   _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, c1, x);
  x = _mm512_fnmadd_ps(fx, c2, x);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
  __m512 x2 = _mm512_mul_ps(x, x);
  y = _mm512_fmadd_ps(y, x2, _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  __m512i n = _mm512_cvttps_epi32(fx);
  n = _mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(n));
  y = _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), y);
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q), x0);  // NaN stays NaN
}

// exp_sub_sum's loop over [0, i) in steps of 16: returns i, acc holds the AVX2 loop's lanes.
__attribute__((target("avx512f"))) int64_t exp_sub_sum_avx512(const float* x, float sub, float* out,
                                                              int64_t n, __m256* acc) {
  const __m512 vs = _mm512_set1_ps(sub);
  __m256 a = *acc;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs));
    if (out) _mm512_storeu_ps(out + i, e);
    a = _mm256_add_ps(a, _mm512_castps512_ps256(e));
    a = _mm256_add_ps(a, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
  }
  *acc = a;
  return i;
}

// exp_sub_scale's loop over [0, i) in steps of 16: returns i.
__attribute__((target("avx512f"))) int64_t exp_sub_scale_avx512(const float* x, float sub, float scale,
                                                                float* out, int64_t n) {
  const __m512 vs = _mm512_set1_ps(sub), vk = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs)), vk));
  return i;
}

// exp_scaled's loop over [0, i) in steps of 16: returns i.
__attribute__((target("avx512f"))) int64_t exp_scaled_avx512(const float* x, float s, float* out, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, exp512(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs)));
  return i;
}
#pragma GCC diagnostic pop

bool use_avx512() { return simd_isa() == Isa::kAvx512; }
}  // namespace

// out[i] = exp(x[i] - sub) for i < n; returns the fp32 sum of the outputs (8 lanes, then a
// fixed-order horizontal sum). out may alias x; out == nullptr only sums.
float exp_sub_sum(const float* x, float sub, float* out, int64_t n) {
  const __m256 vs = _mm256_set1_ps(sub);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = use_avx512() ? exp_sub_sum_avx512(x, sub, out, n, &acc) : 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
    if (out) _mm256_storeu_ps(out + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
              ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  if (i < n) {
    alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t rest = n - i;
    for (int64_t j = 0; j < rest; j++) tmp[j] = x[i + j] - sub;
    for (int64_t j = rest; j < 8; j++) tmp[j] = -INFINITY;
    _mm256_store_ps(tmp, exp256(_mm256_load_ps(tmp)));
    for (int64_t j = 0; j < rest; j++) {
      if (out) out[i + j] = tmp[j];
      sum += tmp[j];
    }
  }
  return sum;
}

// out[i] = exp(x[i] - sub) * scale for i < n, in one pass (the same fp32 values as exp_sub_sum's
// outputs multiplied by scale afterwards); out may alias x.
void exp_sub_scale(const float* x, float sub, float scale, float* out, int64_t n) {
  const __m256 vs = _mm256_set1_ps(sub), vk = _mm256_set1_ps(scale);
  int64_t i = use_avx512() ? exp_sub_scale_avx512(x, sub, scale, out, n) : 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs)), vk));
  if (i < n) {
    alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t rest = n - i;
    for (int64_t j = 0; j < rest; j++) tmp[j] = x[i + j] - sub;
    _mm256_store_ps(tmp, exp256(_mm256_load_ps(tmp)));
    for (int64_t j = 0; j < rest; j++) out[i + j] = tmp[j] * scale;
  }
}

// out[i] = exp(s * x[i]) for i < n (s = +1 or -1 in practice); out may alias x.
void exp_scaled(const float* x, float s, float* out, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = use_avx512() ? exp_scaled_avx512(x, s, out, n) : 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, exp256(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs)));
  for (; i < n; i++) out[i] = std::exp(s * x[i]);
}

}  // namespace cpu
}  // namespace lora4j
