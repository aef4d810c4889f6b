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
// Parallel over (b, kv head): one task owns dk/dv of its KV head and dq of the query heads
// of its group, so there are no races and sums are deterministic. Every tile product
// (Q·Kᵀ, P·V, dO·Vᵀ, Pᵀ·dO, dSᵀ·Q, dS·K) is one call of the register-blocked tile_gemm.
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
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

// C[m*ldc + n] = (acc ? C : 0) + alpha * sum_k A[m*as + k*ak] * B[k*ldb + n]
// for m < M, n < N, k < K: the small GEMM of every attention tile product. A is read through
// two strides, so Aᵀ costs nothing. 4x16 register blocks (8 ymm accumulators, two B loads and
// four broadcasts per k); columns past the last multiple of 16 take a scalar loop.
void tile_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t as, int64_t ak,
               const float* B, int64_t ldb, float* C, int64_t ldc, float alpha, bool acc) {
  const __m256 va = _mm256_set1_ps(alpha);
  const int64_t nfull = N - N % 16;
  for (int64_t n0 = 0; n0 < nfull; n0 += 16) {
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      __m256 c[4][2];
      for (int r = 0; r < 4; r++) c[r][0] = c[r][1] = _mm256_setzero_ps();
      const float* a0 = A + m * as;
      for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb + n0);
        const __m256 b1 = _mm256_loadu_ps(B + k * ldb + n0 + 8);
        const float* ak_ = a0 + k * ak;
        for (int r = 0; r < 4; r++) {
          const __m256 a = _mm256_broadcast_ss(ak_ + r * as);
          c[r][0] = _mm256_fmadd_ps(a, b0, c[r][0]);
          c[r][1] = _mm256_fmadd_ps(a, b1, c[r][1]);
        }
      }
      for (int r = 0; r < 4; r++) {
        float* cr = C + (m + r) * ldc + n0;
        __m256 o0 = _mm256_mul_ps(va, c[r][0]), o1 = _mm256_mul_ps(va, c[r][1]);
        if (acc) {
          o0 = _mm256_add_ps(_mm256_loadu_ps(cr), o0);
          o1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), o1);
        }
        _mm256_storeu_ps(cr, o0);
        _mm256_storeu_ps(cr + 8, o1);
      }
    }
    for (; m < M; m++) {
      __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
      for (int64_t k = 0; k < K; k++) {
        const __m256 a = _mm256_broadcast_ss(A + m * as + k * ak);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + n0), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + n0 + 8), c1);
      }
      float* cr = C + m * ldc + n0;
      __m256 o0 = _mm256_mul_ps(va, c0), o1 = _mm256_mul_ps(va, c1);
      if (acc) {
        o0 = _mm256_add_ps(_mm256_loadu_ps(cr), o0);
        o1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), o1);
      }
      _mm256_storeu_ps(cr, o0);
      _mm256_storeu_ps(cr + 8, o1);
    }
  }
  if (nfull < N) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = nfull; n < N; n++) {
        float sum = 0.0f;
        for (int64_t k = 0; k < K; k++) sum += A[m * as + k * ak] * B[k * ldb + n];
        C[m * ldc + n] = (acc ? C[m * ldc + n] : 0.0f) + alpha * sum;
      }
  }
}

// Scores of query rows i0..i0+nq-1 against keys j0..j0+nk-1 into sc [kBQ][kBK]:
// sc = qs · kt (qs: scale*q, [nq][D]; kt: [D][kBK] zero-padded, so columns nk.. come out 0),
// soft-capped to softcap tanh(sc / softcap) when softcap > 0, then pairs that are not allowed
// are set to -inf. Returns true when any pair is allowed.
bool score_tile(const float* qs, const float* kt, const int32_t* sg, int64_t i0, int64_t nq,
                int64_t j0, int64_t nk, int64_t D, float softcap, float* sc) {
  tile_gemm(nq, kBK, D, qs, D, 1, kt, kBK, sc, kBK, 1.0f, false);
  if (softcap > 0.0f)
    for (int64_t ii = 0; ii < nq; ii++)
      for (int64_t jj = 0; jj < nk; jj++) sc[ii * kBK + jj] = softcap * std::tanh(sc[ii * kBK + jj] / softcap);
  bool any = false;
  for (int64_t ii = 0; ii < nq; ii++) {
    float* srow = sc + ii * kBK;
    const int64_t i = i0 + ii;
    const int64_t last = std::min<int64_t>(nk - 1, i - j0);  // causal: jj <= i - j0
    for (int64_t jj = std::max<int64_t>(last + 1, 0); jj < nk; jj++) srow[jj] = kNegInf;
    if (sg) {
      const int32_t si = sg[i];
      for (int64_t jj = 0; jj <= last; jj++)
        if (sg[j0 + jj] != si) srow[jj] = kNegInf;
    }
    for (int64_t jj = 0; jj <= last; jj++) any |= srow[jj] != kNegInf;
  }
  return any;
}

// qs[ii*D + d] = scale * q[(i0+ii)*ldq + d]
void load_scaled(const float* q, int64_t ldq, int64_t i0, int64_t nq, int64_t D, float scale,
                 float* qs) {
  for (int64_t ii = 0; ii < nq; ii++) {
    const float* src = q + (i0 + ii) * ldq;
#pragma omp simd
    for (int64_t d = 0; d < D; d++) qs[ii * D + d] = scale * src[d];
  }
}

// dst[d*kBK + jj] = src[(j0+jj)*ld + d] for jj < nk (zero-padded to kBK).
void transpose_tile(const float* src, int64_t ld, int64_t j0, int64_t nk, int64_t D, float* dst) {
  for (int64_t jj = 0; jj < kBK; jj++) {
    if (jj < nk) {
      const float* r = src + (j0 + jj) * ld;
      for (int64_t d = 0; d < D; d++) dst[d * kBK + jj] = r[d];
    } else {
      for (int64_t d = 0; d < D; d++) dst[d * kBK + jj] = 0.0f;
    }
  }
}

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
  std::atomic<int64_t> next{0};  // dynamic schedule: uneven causal work
  lora4j::cpu::run_parallel(lora4j::cpu::threads_for(B * Hq * (2.0 * S * S * D), B * Hq), [&](int, int) {
    std::vector<float> kt(static_cast<size_t>(D * kBK)), sc(static_cast<size_t>(kBQ * kBK)),
        qs(static_cast<size_t>(kBQ * D)), o(static_cast<size_t>(kBQ * D)), m(kBQ), l(kBQ);
    for (int64_t bhq = next.fetch_add(1); bhq < B * Hq; bhq = next.fetch_add(1)) {
      const int64_t b = bhq / Hq, hq = bhq % Hq;
      const int64_t hk = hq / group;
      const float* qb = q + b * S * ldq + hq * D;
      const float* kb = k + b * S * ldk + hk * D;
      const float* vb = v + b * S * ldk + hk * D;
      float* ob = out + b * S * ldq + hq * D;
      float* lb = lse + (b * Hq + hq) * S;
      const int32_t* sg = seg ? seg + b * S : nullptr;
      for (int64_t i0 = 0; i0 < S; i0 += kBQ) {
        const int64_t nq = std::min(kBQ, S - i0);
        std::fill(m.begin(), m.end(), kNegInf);
        std::fill(l.begin(), l.end(), 0.0f);
        std::fill(o.begin(), o.end(), 0.0f);
        load_scaled(qb, ldq, i0, nq, D, scale, qs.data());
        for (int64_t j0 = 0; j0 < i0 + nq; j0 += kBK) {
          const int64_t nk = std::min(kBK, i0 + nq - j0);
          transpose_tile(kb, ldk, j0, nk, D, kt.data());
          if (!score_tile(qs.data(), kt.data(), sg, i0, nq, j0, nk, D, softcap, sc.data())) continue;
          for (int64_t ii = 0; ii < nq; ii++) {
            float* srow = sc.data() + ii * kBK;
            float mx = kNegInf;
            for (int64_t jj = 0; jj < nk; jj++) mx = std::max(mx, srow[jj]);
            if (mx == kNegInf) {  // no key of this tile is visible: P row = 0
              for (int64_t jj = 0; jj < nk; jj++) srow[jj] = 0.0f;
              continue;
            }
            const float mnew = std::max(m[ii], mx);
            const float alpha = m[ii] == kNegInf ? 0.0f : std::exp(m[ii] - mnew);
            const float psum = lora4j::cpu::exp_sub_sum(srow, mnew, srow, nk);
            l[ii] = l[ii] * alpha + psum;
            m[ii] = mnew;
            if (alpha != 1.0f) {
              float* orow = o.data() + ii * D;
#pragma omp simd
              for (int64_t d = 0; d < D; d++) orow[d] *= alpha;
            }
          }
          // o += P · V_tile
          tile_gemm(nq, D, nk, sc.data(), kBK, 1, vb + j0 * ldk, ldk, o.data(), D, 1.0f, true);
        }
        for (int64_t ii = 0; ii < nq; ii++) {
          // Every row attends at least to itself, so l > 0.
          const float inv = 1.0f / l[ii];
          float* orow = ob + (i0 + ii) * ldq;
          const float* src = o.data() + ii * D;
#pragma omp simd
          for (int64_t d = 0; d < D; d++) orow[d] = src[d] * inv;
          lb[i0 + ii] = m[ii] + std::log(l[ii]);
        }
      }
    }
  });
}

void lora4j_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                          const float* dout, const float* lse, const int32_t* seg, int64_t B,
                          int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float softcap, float* dq,
                          float* dk, float* dv) {
  LORA4J_CHECK(softcap >= 0.0f, "attention: softcap must be >= 0");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  const int64_t group = Hq / Hkv;
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::atomic<int64_t> next{0};  // dynamic schedule: uneven causal work
  lora4j::cpu::run_parallel(lora4j::cpu::threads_for(B * Hkv * (5.0 * S * S * D), B * Hkv), [&](int, int) {
    std::vector<float> kt(static_cast<size_t>(D * kBK)), vt(static_cast<size_t>(D * kBK)),
        qs(static_cast<size_t>(kBQ * D)), p(static_cast<size_t>(kBQ * kBK)),
        ds(static_cast<size_t>(kBQ * kBK)), dl(static_cast<size_t>(S)), capped(kBK);
    for (int64_t bhk = next.fetch_add(1); bhk < B * Hkv; bhk = next.fetch_add(1)) {
      const int64_t b = bhk / Hkv, hk = bhk % Hkv;
      const float* kb = k + b * S * ldk + hk * D;
      const float* vb = v + b * S * ldk + hk * D;
      float* dkb = dk + b * S * ldk + hk * D;
      float* dvb = dv + b * S * ldk + hk * D;
      const int32_t* sg = seg ? seg + b * S : nullptr;
      for (int64_t s = 0; s < S; s++) {
        std::memset(dkb + s * ldk, 0, sizeof(float) * D);
        std::memset(dvb + s * ldk, 0, sizeof(float) * D);
      }
      for (int64_t hq = hk * group; hq < (hk + 1) * group; hq++) {
        const float* qb = q + b * S * ldq + hq * D;
        const float* ob = out + b * S * ldq + hq * D;
        const float* dob = dout + b * S * ldq + hq * D;
        float* dqb = dq + b * S * ldq + hq * D;
        const float* lb = lse + (b * Hq + hq) * S;
        for (int64_t i = 0; i < S; i++) {
          const float* o_i = ob + i * ldq;
          const float* do_i = dob + i * ldq;
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int64_t d = 0; d < D; d++) acc += o_i[d] * do_i[d];
          dl[i] = acc;
          std::memset(dqb + i * ldq, 0, sizeof(float) * D);
        }
        for (int64_t j0 = 0; j0 < S; j0 += kBK) {
          const int64_t nk = std::min(kBK, S - j0);
          transpose_tile(kb, ldk, j0, nk, D, kt.data());
          transpose_tile(vb, ldk, j0, nk, D, vt.data());
          for (int64_t i0 = (j0 / kBQ) * kBQ; i0 < S; i0 += kBQ) {
            const int64_t nq = std::min(kBQ, S - i0);
            load_scaled(qb, ldq, i0, nq, D, scale, qs.data());
            if (!score_tile(qs.data(), kt.data(), sg, i0, nq, j0, nk, D, softcap, p.data())) continue;
            // dP = dO_tile · V_tileᵀ
            tile_gemm(nq, kBK, D, dob + i0 * ldq, ldq, 1, vt.data(), kBK, ds.data(), kBK, 1.0f,
                      false);
            for (int64_t ii = 0; ii < nq; ii++) {
              float* prow = p.data() + ii * kBK;
              float* dsrow = ds.data() + ii * kBK;
              if (softcap > 0.0f) std::copy(prow, prow + nk, capped.begin());
              lora4j::cpu::exp_sub_sum(prow, lb[i0 + ii], prow, nk);  // masked -inf -> 0
              for (int64_t jj = nk; jj < kBK; jj++) prow[jj] = 0.0f;
              const float dli = dl[i0 + ii];
#pragma omp simd
              for (int64_t jj = 0; jj < kBK; jj++) dsrow[jj] = prow[jj] * (dsrow[jj] - dli);
              if (softcap > 0.0f)  // through the cap: d(c tanh(s/c))/ds = 1 - (capped/c)^2
                for (int64_t jj = 0; jj < nk; jj++) {
                  const float t = capped[jj] / softcap;
                  dsrow[jj] = capped[jj] == kNegInf ? 0.0f : dsrow[jj] * (1.0f - t * t);
                }
            }
            // dV_tile += Pᵀ · dO_tile;  dK_tile += dSᵀ · (scale Q_tile);  dQ_tile += scale dS · K_tile
            tile_gemm(nk, D, nq, p.data(), 1, kBK, dob + i0 * ldq, ldq, dvb + j0 * ldk, ldk,
                      1.0f, true);
            tile_gemm(nk, D, nq, ds.data(), 1, kBK, qs.data(), D, dkb + j0 * ldk, ldk, 1.0f,
                      true);
            tile_gemm(nq, D, nk, ds.data(), kBK, 1, kb + j0 * ldk, ldk, dqb + i0 * ldq, ldq,
                      scale, true);
          }
        }
      }
    }
  });
}

}  // extern "C"
