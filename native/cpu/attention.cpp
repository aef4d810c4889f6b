// Causal grouped-query attention, CPU: flash-attention-style tiling, the fallback and the
// oracle of native/cuda/attention.cu.
//
// Shapes: q, out, dq, dout [B*S, Hq*D]; k, v, dk, dv [B*S, Hkv*D]; lse [B, Hq, S]; seg [B*S].
// Query head h uses KV head h / (Hq/Hkv). allowed(i, j) = j <= i && (seg == null ||
// seg[b*S+j] == seg[b*S+i]).
//
// Forward, per (b, h) and query block Qb of kBQ rows, over key blocks Kb (j < i_max):
//   S_ij = scale q_i . k_j (masked: -inf);   m_i' = max(m_i, max_j S_ij)
//   P_ij = exp(S_ij - m_i');  l_i = l_i exp(m_i - m_i') + sum_j P_ij
//   o_i  = o_i exp(m_i - m_i') + sum_j P_ij v_j
// then out_i = o_i / l_i, lse_i = m_i + log l_i. Only a kBQ x kBK score tile exists.
// Backward (recomputing P from lse, FlashAttention-2):
//   Dl_i = dout_i . out_i;  P_ij = exp(S_ij - lse_i);  dP_ij = dout_i . v_j
//   dS_ij = P_ij (dP_ij - Dl_i)
//   dv_j += P_ij dout_i;  dq_i += scale dS_ij k_j;  dk_j += scale dS_ij q_i
// Parallel over (b, kv head): one task owns dk/dv of its KV head and dq of the query heads
// of its group, so there are no races and sums are deterministic.
#include "lora4j/ops.h"
#include "common.h"

#include <algorithm>
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

// scores[ii*kBK + jj] = scale * q_{i0+ii} . k_{j0+jj}, or -inf when not allowed.
// kt: [D][kBK] transposed key tile, zero-padded, so entries nk..kBK-1 come out 0.
// Returns true when at least one pair is allowed.
bool score_tile(const float* q, int64_t ldq, const float* kt, const int32_t* sg, int64_t i0,
                int64_t nq, int64_t j0, int64_t nk, int64_t D, float scale, float* scores) {
  bool any = false;
  for (int64_t ii = 0; ii < nq; ii++) {
    float* srow = scores + ii * kBK;
    const int64_t i = i0 + ii;
    // allowed keys of row i in this tile: jj <= i - j0, and the same segment
    const int64_t last = std::min<int64_t>(nk - 1, i - j0);
    if (last < 0) {
      for (int64_t jj = 0; jj < kBK; jj++) srow[jj] = jj < nk ? kNegInf : 0.0f;
      continue;
    }
    const float* qi = q + i * ldq;
    for (int64_t jj = 0; jj < kBK; jj++) srow[jj] = 0.0f;
    for (int64_t d = 0; d < D; d++) {
      const float qd = qi[d] * scale;
      const float* kd = kt + d * kBK;
#pragma omp simd
      for (int64_t jj = 0; jj < kBK; jj++) srow[jj] += qd * kd[jj];
    }
    for (int64_t jj = last + 1; jj < nk; jj++) srow[jj] = kNegInf;
    if (sg) {
      const int32_t si = sg[i];
      for (int64_t jj = 0; jj <= last; jj++)
        if (sg[j0 + jj] != si) srow[jj] = kNegInf;
    }
    for (int64_t jj = 0; jj <= last; jj++) any |= srow[jj] != kNegInf;
  }
  return any;
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
                          int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float* out,
                          float* lse) {
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  const int64_t group = Hq / Hkv;
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel
  {
    std::vector<float> kt(static_cast<size_t>(D * kBK)), sc(static_cast<size_t>(kBQ * kBK)),
        o(static_cast<size_t>(kBQ * D)), m(kBQ), l(kBQ);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t hq = 0; hq < Hq; hq++) {
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
          for (int64_t j0 = 0; j0 < i0 + nq; j0 += kBK) {
            const int64_t nk = std::min(kBK, i0 + nq - j0);
            transpose_tile(kb, ldk, j0, nk, D, kt.data());
            if (!score_tile(qb, ldq, kt.data(), sg, i0, nq, j0, nk, D, scale, sc.data()))
              continue;
            for (int64_t ii = 0; ii < nq; ii++) {
              float* srow = sc.data() + ii * kBK;
              float mx = kNegInf;
              for (int64_t jj = 0; jj < nk; jj++) mx = std::max(mx, srow[jj]);
              if (mx == kNegInf) continue;
              const float mnew = std::max(m[ii], mx);
              const float alpha = m[ii] == kNegInf ? 0.0f : std::exp(m[ii] - mnew);
              const float psum = lora4j::cpu::exp_sub_sum(srow, mnew, srow, nk);
              l[ii] = l[ii] * alpha + psum;
              m[ii] = mnew;
              float* orow = o.data() + ii * D;
              if (alpha != 1.0f) {
#pragma omp simd
                for (int64_t d = 0; d < D; d++) orow[d] *= alpha;
              }
              for (int64_t jj = 0; jj < nk; jj++) {
                const float p = srow[jj];
                if (p == 0.0f) continue;
                const float* vr = vb + (j0 + jj) * ldk;
#pragma omp simd
                for (int64_t d = 0; d < D; d++) orow[d] += p * vr[d];
              }
            }
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
    }
  }
}

void lora4j_attention_bwd(const float* q, const float* k, const float* v, const float* out,
                          const float* dout, const float* lse, const int32_t* seg, int64_t B,
                          int64_t S, int64_t Hq, int64_t Hkv, int64_t D, float* dq, float* dk,
                          float* dv) {
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  const int64_t group = Hq / Hkv;
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
#pragma omp parallel
  {
    std::vector<float> kt(static_cast<size_t>(D * kBK)), vt(static_cast<size_t>(D * kBK)),
        p(static_cast<size_t>(kBQ * kBK)), dp(static_cast<size_t>(kBQ * kBK)),
        dl(static_cast<size_t>(S));
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++) {
      for (int64_t hk = 0; hk < Hkv; hk++) {
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
              if (!score_tile(qb, ldq, kt.data(), sg, i0, nq, j0, nk, D, scale, p.data()))
                continue;
              for (int64_t ii = 0; ii < nq; ii++) {
                const int64_t i = i0 + ii;
                float* prow = p.data() + ii * kBK;
                float* dprow = dp.data() + ii * kBK;
                lora4j::cpu::exp_sub_sum(prow, lb[i], prow, nk);  // masked -inf -> 0
                const float* do_i = dob + i * ldq;
                for (int64_t jj = 0; jj < kBK; jj++) dprow[jj] = 0.0f;
                for (int64_t d = 0; d < D; d++) {
                  const float g = do_i[d];
                  const float* vd = vt.data() + d * kBK;
#pragma omp simd
                  for (int64_t jj = 0; jj < kBK; jj++) dprow[jj] += g * vd[jj];
                }
                const float dli = dl[i];
                // dprow becomes scale * dS
#pragma omp simd
                for (int64_t jj = 0; jj < kBK; jj++)
                  dprow[jj] = scale * prow[jj] * (dprow[jj] - dli);
                const float* q_i = qb + i * ldq;
                float* dq_i = dqb + i * ldq;
                for (int64_t jj = 0; jj < nk; jj++) {
                  const float pij = prow[jj];
                  if (pij == 0.0f) continue;  // masked (or underflowed) pair
                  const float ds = dprow[jj];
                  const float* k_j = kb + (j0 + jj) * ldk;
                  float* dv_j = dvb + (j0 + jj) * ldk;
                  float* dk_j = dkb + (j0 + jj) * ldk;
#pragma omp simd
                  for (int64_t d = 0; d < D; d++) {
                    dv_j[d] += pij * do_i[d];
                    dq_i[d] += ds * k_j[d];
                    dk_j[d] += ds * q_i[d];
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // extern "C"
