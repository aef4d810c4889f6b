// Cross-entropy over the vocabulary, CPU (oracle of native/cuda/cross_entropy.cu), and the
// chunked lm_head + cross-entropy that never materializes the [T, V] logits.
//
// Per row t with label y = labels[t] (-100 = ignored):
//   m = max_v z_v;  lse = m + log sum_v exp(z_v - m);  loss_t = lse - z_y
//   dz_v = scale * (exp(z_v - lse) - [v == y])     (0 for ignored rows)
// loss_sum = sum_t loss_t, accumulated in double in row order.
//
// Chunked (hidden [T, dim], lm_head [V, dim]): the rows with a label are gathered c at a time
// into hc [c, dim]; z = hc · lm_headᵀ [c, V] (sgemm); loss and dz as above, in place;
// dhc = dz · lm_head [c, dim] (sgemm); dhidden[row] += dhc. Workspace: c*V + 2*c*dim floats.
//
// Vocabulary-chunked (lora4j_ce_chunk_*; the math is in ops.h): per row, a running max m and a
// sum S of exp(z - m) over the slices seen so far; a new slice with max m' rescales S by
// exp(m - m'). Finalize: lse = m + log S, loss = lse - z_y. Backward per slice as above with
// that lse and the onehot shifted by the slice's first column v0.
//
// Soft-capping (lora4j_softcap_*, Gemma 2's final logits): y = c tanh(x / c) before the loss;
// dx = dy (1 - tanh^2(x / c)) after it.
#include "lora4j/ops.h"
#include "lora4j/runtime.h"
#include "common.h"
#include "parallel.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace lora4j {
namespace cpu {
// native/cpu/ops.cpp: out[i] = exp(x[i] - sub), returns the sum; out may alias x.
float exp_sub_sum(const float* x, float sub, float* out, int64_t n);
// native/cpu/ops.cpp: out[i] = exp(x[i] - sub) * scale in one pass; out may alias x.
void exp_sub_scale(const float* x, float sub, float scale, float* out, int64_t n);
}  // namespace cpu
}  // namespace lora4j

namespace {

float row_max(const float* z, int64_t V) {
  float m = z[0];
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
  return m;
}

// log-sum-exp of one row (no output written).
float row_lse(const float* z, int64_t V) {
  const float m = row_max(z, V);
  const float s = lora4j::cpu::exp_sub_sum(z, m, nullptr, V);
  return m + std::log(s);
}

void check_label(int32_t y, int64_t V, int64_t t) {
  LORA4J_CHECK(y == LORA4J_IGNORE_INDEX || (y >= 0 && y < V),
               "cross-entropy: label " + std::to_string(y) + " at row " + std::to_string(t) +
                   " outside [0, " + std::to_string(V) + ") and not -100");
}

// In place: z [V] -> dz, returns the loss of the row. Label y valid (not ignored).
float row_loss_grad(float* z, int64_t V, int32_t y, float scale) {
  const float lse = row_lse(z, V);
  const float loss = lse - z[y];
  lora4j::cpu::exp_sub_scale(z, lse, scale, z, V);
  z[y] -= scale;
  return loss;
}

}  // namespace

extern "C" {

void lora4j_ce_fwd(const float* logits, const int32_t* labels, int64_t T, int64_t V, float* loss,
                   float* loss_sum) {
  for (int64_t t = 0; t < T; t++) check_label(labels[t], V, t);
  lora4j::cpu::parallel_for(T, 3.0 * V, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int32_t y = labels[t];
      if (y == LORA4J_IGNORE_INDEX) {
        loss[t] = 0.0f;
        continue;
      }
      const float* z = logits + t * V;
      loss[t] = row_lse(z, V) - z[y];
    }
  });
  if (loss_sum) {
    double s = 0.0;
    for (int64_t t = 0; t < T; t++) s += loss[t];
    loss_sum[0] = static_cast<float>(s);
  }
}

void lora4j_ce_bwd(const float* logits, const int32_t* labels, int64_t T, int64_t V, float scale,
                   float* dlogits) {
  for (int64_t t = 0; t < T; t++) check_label(labels[t], V, t);
  lora4j::cpu::parallel_for(T, 3.0 * V, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int32_t y = labels[t];
      float* dz = dlogits + t * V;
      if (y == LORA4J_IGNORE_INDEX) {
        std::memset(dz, 0, sizeof(float) * V);
        continue;
      }
      const float* z = logits + t * V;
      const float lse = row_lse(z, V);
      lora4j::cpu::exp_sub_scale(z, lse, scale, dz, V);
      dz[y] -= scale;
    }
  });
}

int64_t lora4j_ce_chunked_workspace_floats(int64_t chunk_tokens, int64_t dim, int64_t V) {
  return chunk_tokens * V + 2 * chunk_tokens * dim;
}

void lora4j_ce_chunked_fwd_bwd(const float* hidden, const float* lm_head, const int32_t* labels,
                               int64_t T, int64_t dim, int64_t V, int64_t chunk_tokens,
                               float scale, float* loss, float* loss_sum, float* dhidden,
                               float* workspace) {
  LORA4J_CHECK(chunk_tokens >= 1, "ce_chunked: chunk_tokens must be >= 1");
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; t++) {
    check_label(labels[t], V, t);
    loss[t] = 0.0f;
    if (labels[t] != LORA4J_IGNORE_INDEX) rows.push_back(t);
  }
  float* z = workspace;                          // [c, V]
  float* hc = workspace + chunk_tokens * V;      // [c, dim]
  float* dhc = hc + chunk_tokens * dim;          // [c, dim]
  const int64_t nrows = static_cast<int64_t>(rows.size());
  for (int64_t r0 = 0; r0 < nrows; r0 += chunk_tokens) {
    const int64_t c = r0 + chunk_tokens < nrows ? chunk_tokens : nrows - r0;
    lora4j::cpu::parallel_for(c, dim, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) std::memcpy(hc + i * dim, hidden + rows[r0 + i] * dim, sizeof(float) * dim);
    });
    lora4j_sgemm(0, 1, c, V, dim, 1.0f, hc, dim, lm_head, dim, 0.0f, z, V);
    lora4j::cpu::parallel_for(c, 3.0 * V, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) {
        const int64_t t = rows[r0 + i];
        loss[t] = row_loss_grad(z + i * V, V, labels[t], scale);
      }
    });
    if (dhidden) {
      lora4j_sgemm(0, 0, c, dim, V, 1.0f, z, V, lm_head, dim, 0.0f, dhc, dim);
      lora4j::cpu::parallel_for(c, dim, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; i++) {
          float* dst = dhidden + rows[r0 + i] * dim;
          const float* src = dhc + i * dim;
#pragma omp simd
          for (int64_t d = 0; d < dim; d++) dst[d] += src[d];
        }
      });
    }
  }
  if (loss_sum) {
    double s = 0.0;
    for (int64_t t = 0; t < T; t++) s += loss[t];
    loss_sum[0] = static_cast<float>(s);
  }
}

void lora4j_ce_chunk_stats(const float* logits, const int32_t* labels, int64_t n, int64_t vc,
                           int64_t v0, int32_t first, float* run_max, float* run_sum,
                           float* target_logit) {
  LORA4J_CHECK(vc >= 1 && v0 >= 0, "ce_chunk_stats: slice must be non-empty and start at >= 0");
  lora4j::cpu::parallel_for(n, 2.0 * vc, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int32_t y = labels[t];
      if (y == LORA4J_IGNORE_INDEX) {
        if (first) run_max[t] = run_sum[t] = target_logit[t] = 0.0f;
        continue;
      }
      const float* z = logits + t * vc;
      const float ms = row_max(z, vc);
      const float m = first ? ms : (run_max[t] > ms ? run_max[t] : ms);
      const float prev = first ? 0.0f : run_sum[t] * std::exp(run_max[t] - m);
      run_max[t] = m;
      run_sum[t] = prev + lora4j::cpu::exp_sub_sum(z, m, nullptr, vc);
      if (y >= v0 && y < v0 + vc) target_logit[t] = z[y - v0];
      else if (first) target_logit[t] = 0.0f;
    }
  });
}

void lora4j_ce_chunk_finalize(const int32_t* labels, const float* row_max, const float* row_sum,
                              const float* target_logit, int64_t n, float* lse, float* loss,
                              float* loss_sum) {
  double s = 0.0;
  for (int64_t t = 0; t < n; t++) {
    if (labels[t] == LORA4J_IGNORE_INDEX) {
      lse[t] = loss[t] = 0.0f;
    } else {
      lse[t] = row_max[t] + std::log(row_sum[t]);
      loss[t] = lse[t] - target_logit[t];
    }
    s += loss[t];
  }
  if (loss_sum) loss_sum[0] = static_cast<float>(s);
}

void lora4j_ce_chunk_grad(float* logits, const int32_t* labels, int64_t n, int64_t vc, int64_t v0,
                          const float* lse, float scale) {
  LORA4J_CHECK(vc >= 1 && v0 >= 0, "ce_chunk_grad: slice must be non-empty and start at >= 0");
  lora4j::cpu::parallel_for(n, 2.0 * vc, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int32_t y = labels[t];
      float* z = logits + t * vc;
      if (y == LORA4J_IGNORE_INDEX) {
        std::memset(z, 0, sizeof(float) * vc);
        continue;
      }
      lora4j::cpu::exp_sub_scale(z, lse[t], scale, z, vc);
      if (y >= v0 && y < v0 + vc) z[y - v0] -= scale;
    }
  });
}

void lora4j_softcap_fwd(const float* x, int64_t n, float c, float* y) {
  LORA4J_CHECK(c > 0.0f, "softcap: the cap must be > 0");
  lora4j::cpu::parallel_for(n, 20.0, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) y[i] = c * std::tanh(x[i] / c);
  });
}

void lora4j_softcap_bwd(const float* dy, const float* x, int64_t n, float c, float* dx) {
  LORA4J_CHECK(c > 0.0f, "softcap: the cap must be > 0");
  lora4j::cpu::parallel_for(n, 20.0, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float t = std::tanh(x[i] / c);
      dx[i] = dy[i] * (1.0f - t * t);
    }
  });
}

}  // extern "C"
