// CPU inference helpers (see native/include/lora4j/infer.h): axpy and KV-cache decode
// attention. Decode attention is memory-bound (one query row against L cached rows), so it runs
// one (sequence, head) per OpenMP task with a two-pass softmax over a stack/heap score row.
#include "lora4j/infer.h"
#include "common.h"
#include "parallel.h"

#include <immintrin.h>

#include <cmath>
#include <vector>

namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float s = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

}  // namespace

extern "C" {

void lora4j_axpy(int64_t n, float alpha, const float* x, float* y) {
  lora4j::cpu::parallel_for(n, 2.0, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] += alpha * x[i];
  });
}

void lora4j_attention_decode(const float* q, const float* k_cache, const float* v_cache,
                             int64_t B, int64_t L, int64_t cache_len, int64_t Hq, int64_t Hkv,
                             int64_t D, float softcap, float* out) {
  LORA4J_CHECK(L >= 1 && L <= cache_len, "decode attention needs 1 <= L <= cache_len");
  LORA4J_CHECK(softcap >= 0.0f, "decode attention: softcap must be >= 0");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads must be a multiple of KV heads");
  const int64_t group = Hq / Hkv;
  const int64_t kv_row = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  lora4j::cpu::parallel_for(B * Hq, 4.0 * L * D, [&](int64_t bh0, int64_t bh1) {
    std::vector<float> s(static_cast<size_t>(L));
    for (int64_t bh = bh0; bh < bh1; bh++) {
      const int64_t b = bh / Hq, h = bh % Hq;
      const float* qh = q + b * Hq * D + h * D;
      const int64_t kvh = h / group;
      const float* kb = k_cache + b * cache_len * kv_row + kvh * D;
      const float* vb = v_cache + b * cache_len * kv_row + kvh * D;
      float m = -INFINITY;
      for (int64_t j = 0; j < L; j++) {
        s[j] = scale * dot(qh, kb + j * kv_row, D);
        if (softcap > 0.0f) s[j] = softcap * std::tanh(s[j] / softcap);
        m = std::max(m, s[j]);
      }
      float denom = 0.0f;
      for (int64_t j = 0; j < L; j++) {
        s[j] = std::exp(s[j] - m);
        denom += s[j];
      }
      const float inv = 1.0f / denom;
      float* o = out + b * Hq * D + h * D;
      for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
      for (int64_t j = 0; j < L; j++) {
        const float p = s[j] * inv;
        const float* vj = vb + j * kv_row;
        for (int64_t d = 0; d < D; d++) o[d] += p * vj[d];
      }
    }
  });
}

}  // extern "C"
