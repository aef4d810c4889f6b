// Causal grouped-query attention, CPU: flash-attention-style tiling, the fallback and the
// oracle of native/cuda/attention.cu.
//
// Shapes: q, out, dq, dout [B*S, Hq*D]; k, v, dk, dv [B*S, Hkv*D]; lse [B, Hq, S]; seg [B*S].
// Query head h uses KV head h / (Hq/Hkv). allowed(i, j) = j <= i && (seg == null ||
// seg[b*S+j] == seg[b*S+i]).
//
// Forward, per (b, h) and query block Qb of kBQ rows, over key blocks Kb (j < i_max):
//   S_ij = scale q_i . k_j [softcap c > 0: c tanh(S_ij / c)] (masked: -inf);
//   m_i' = max(m_i, max_j S_ij)
//   P_ij = exp(S_ij - m_i');  l_i = l_i exp(m_i - m_i') + sum_j P_ij
//   o_i  = o_i exp(m_i - m_i') + sum_j P_ij v_j
// then out_i = o_i / l_i, lse_i = m_i + log l_i. Only a kBQ x kBK score tile exists.
// Backward (recomputing P from lse, FlashAttention-2):
//   Dl_i = dout_i . out_i;  P_ij = exp(S_ij - lse_i);  dP_ij = dout_i . v_j
//   dS_ij = P_ij (dP_ij - Dl_i) [softcap: times 1 - (S_ij / c)^2]
//   dv_j += P_ij dout_i;  dq_i += scale dS_ij k_j;  dk_j += scale dS_ij q_i
// Forward parallel over (b, query head, query tile): each task owns its rows of out and lse.
// Backward parallel over (b, kv head): one task owns dk/dv of its KV head and dq of the query
// heads of its group, so there are no races and sums are deterministic: every element is summed
// in the same order whatever the thread count. Every tile product (Q·Kᵀ, P·V, dO·Vᵀ, Pᵀ·dO,
// dSᵀ·Q, dS·K) is a register-blocked tile_gemm (attention_tiles.inc), compiled for AVX2+FMA and
// for AVX-512F and picked at run time (isa.h: LORA4J_DECODE_ISA=avx2 forces the former). Tiles
// above the causal diagonal are never visited and the diagonal ones go in row strips that skip
// their masked half (attention_tiles.inc: visible()).
#include "lora4j/ops.h"
#include "common.h"
#include "isa.h"
#include "parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace lora4j {
namespace cpu {
// native/cpu/ops.cpp: out[i] = exp(x[i] - sub), returns the sum; out may alias x.
float exp_sub_sum(const float* x, float sub, float* out, int64_t n);
}  // namespace cpu
}  // namespace lora4j

namespace {

constexpr int64_t kBQ = 64;  // query rows per tile
constexpr int64_t kBK = 64;  // keys per tile (score tile 64x64 fp32 = 16 KiB, L1/L2 resident)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Scratch floats of one forward task (attention_tiles.inc: forward_tile) and of one backward
// task (backward_head), plus 16 for aligning to 64 bytes.
int64_t fwd_scratch_floats(int64_t D) { return D * kBK + kBQ * kBK + 2 * kBQ * D + 2 * kBQ + 16; }
int64_t bwd_scratch_floats(int64_t S, int64_t D) {
  return 2 * D * kBK + kBQ * D + 2 * kBQ * kBK + kBK + S + 16;
}
float* align64(std::vector<float>& v) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + ((64 - p % 64) % 64) / sizeof(float);
}

namespace avx2 {
struct V {
  using T = __m256;
  static constexpr int kW = 8, kMR = 6, kMaxNV = 2;  // 12 accumulators of 16 ymm
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
};
#include "attention_tiles.inc"
}  // namespace avx2

// GCC 12's avx512fintrin.h builds its "undefined" pass-through operands by self-initialisation,
// which -Wuninitialized reports at every inlined use (as in decode.cpp).
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace avx512 {
struct V {
  using T = __m512;
  static constexpr int kW = 16, kMR = 8, kMaxNV = 3;  // 24 accumulators of 32 zmm
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
};
#include "attention_tiles.inc"
}  // namespace avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options

bool use_avx512() { return lora4j::cpu::simd_isa() == lora4j::cpu::Isa::kAvx512; }

}  // namespace

extern "C" {

void lora4j_attention_fwd(const float* q, const float* k, const float* v, const int32_t* seg,
                          int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap,
                          float* out, float* lse) {
  LORA4J_CHECK(softcap >= 0.0f, "attention: softcap must be >= 0");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  const int64_t group = Hq / Hkv;
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t tiles = (S + kBQ - 1) / kBQ, tasks = B * Hq * tiles;
  const bool wide = use_avx512();
  // Dynamic schedule, heaviest (last) query tiles first: causal work grows with the tile index.
  std::atomic<int64_t> next{0};
  lora4j::cpu::run_parallel(lora4j::cpu::threads_for(B * Hq * (2.0 * S * S * D), tasks), [&](int, int) {
    std::vector<float> scratch(static_cast<size_t>(fwd_scratch_floats(D)));
    float* buf = align64(scratch);
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) {
      const int64_t tile = tiles - 1 - t / (B * Hq), bh = t % (B * Hq);
      const int64_t b = bh / Hq, hq = bh % Hq, hk = hq / group;
      const float* qb = q + b * S * ldq + hq * D;
      const float* kb = k + b * S * ldk + hk * D;
      const float* vb = v + b * S * ldk + hk * D;
      float* ob = out + b * S * ldq + hq * D;
      float* lb = lse + (b * Hq + hq) * S;
      const int32_t* sg = seg ? seg + b * S : nullptr;
      if (wide)
        avx512::forward_tile(qb, kb, vb, sg, S, ldq, ldk, D, scale, softcap, tile * kBQ, ob, lb, buf);
      else
        avx2::forward_tile(qb, kb, vb, sg, S, ldq, ldk, D, scale, softcap, tile * kBQ, ob, lb, buf);
    }
  });
}

void lora4j_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                          const float* dout, const float* lse, const int32_t* seg, int64_t B,
                          int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap, float* dq,
                          float* dk, float* dv) {
  LORA4J_CHECK(softcap >= 0.0f, "attention: softcap must be >= 0");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const bool wide = use_avx512();
  std::atomic<int64_t> next{0};  // dynamic schedule
  lora4j::cpu::run_parallel(lora4j::cpu::threads_for(B * Hq * (5.0 * S * S * D), B * Hkv), [&](int, int) {
    std::vector<float> scratch(static_cast<size_t>(bwd_scratch_floats(S, D)));
    float* buf = align64(scratch);
    for (int64_t bhk = next.fetch_add(1); bhk < B * Hkv; bhk = next.fetch_add(1)) {
      const int64_t b = bhk / Hkv, hk = bhk % Hkv;
      if (wide)
        avx512::backward_head(q, k, v, out, dout, lse, seg, b, hk, S, Hq, Hkv, D, scale, softcap,
                              dq, dk, dv, buf);
      else
        avx2::backward_head(q, k, v, out, dout, lse, seg, b, hk, S, Hq, Hkv, D, scale, softcap,
                            dq, dk, dv, buf);
    }
  });
}

}  // extern "C"
