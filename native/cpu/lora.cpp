// Fused LoRA linear, CPU: the fallback and the oracle of native/cuda/lora.cu.
//
// Shapes: X [T, in], W [out, in] (or null), A [r, in], B [out, r], M [T, in] dropout mask
// (0 or 1/(1-p); null = 1), s = scale, Y [T, out], XA [T, r], G [T, r] (workspace).
//
//   forward:   XA = (X ⊙ M) · Aᵀ
//              Y  = X · Wᵀ + s · XA · Bᵀ          (W == null: Y += s · XA · Bᵀ)
//   backward:  G  = dY · B
//              dB += s · dYᵀ · XA
//              dA += s · Gᵀ · (X ⊙ M)
//              dX  = [dX +] [dY · W] + s · (G · A) ⊙ M
//
// B·A is never formed. The big products (X·Wᵀ, dY·W, dY·B, dYᵀ·XA, XA·Bᵀ) go to
// lora4j_sgemm (OpenBLAS when loaded). The rank-r products that involve the mask are fused
// here so that X ⊙ M is never stored: XA row by row, dA over column slabs (one pass over X and
// M), and the masked dX term row by row. Without a mask those three are sgemm calls too.
#include "lora4j/lora.h"
#include "lora4j/runtime.h"
#include "common.h"
#include "parallel.h"

#include <algorithm>
#include <vector>

namespace {

// xa[t, k] = sum_i x[t, i] m[t, i] a[k, i]
void masked_xa(const float* x, const float* m, const float* a, int64_t T, int64_t in, int64_t r,
               float* xa) {
  lora4j::cpu::parallel_for(T, 2.0 * in * (r + 1), [&](int64_t t0, int64_t t1) {
    std::vector<float> xm(static_cast<size_t>(in));
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * in;
      const float* mr = m + t * in;
#pragma omp simd
      for (int64_t i = 0; i < in; i++) xm[i] = xr[i] * mr[i];
      for (int64_t k = 0; k < r; k++) {
        const float* ak = a + k * in;
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < in; i++) acc += xm[i] * ak[i];
        xa[t * r + k] = acc;
      }
    }
    });
}

// da[k, i] += s * sum_t g[t, k] x[t, i] m[t, i]; threads own slabs of kCols columns.
void masked_da(const float* g, const float* x, const float* m, int64_t T, int64_t in, int64_t r,
               float s, float* da) {
  constexpr int64_t kCols = 64;
  const int64_t nblk = (in + kCols - 1) / kCols;
  lora4j::cpu::parallel_for(nblk, 2.0 * T * 64 * r, [&](int64_t blk0, int64_t blk1) {
    std::vector<float> acc(static_cast<size_t>(r * kCols));
    for (int64_t blk = blk0; blk < blk1; blk++) {
      const int64_t i0 = blk * kCols, n = std::min(kCols, in - i0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      float xm[kCols];
      for (int64_t t = 0; t < T; t++) {
        const float* xr = x + t * in + i0;
        const float* mr = m + t * in + i0;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) xm[i] = xr[i] * mr[i];
        const float* gr = g + t * r;
        for (int64_t k = 0; k < r; k++) {
          const float gk = gr[k];
          float* ak = acc.data() + k * kCols;
#pragma omp simd
          for (int64_t i = 0; i < n; i++) ak[i] += gk * xm[i];
        }
      }
      for (int64_t k = 0; k < r; k++) {
        float* dst = da + k * in + i0;
        const float* src = acc.data() + k * kCols;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dst[i] += s * src[i];
      }
    }
    });
}

// dx[t, i] (= | +=) s * m[t, i] * sum_k g[t, k] a[k, i]
void masked_dx(const float* g, const float* a, const float* m, int64_t T, int64_t in, int64_t r,
               float s, bool accumulate, float* dx) {
  lora4j::cpu::parallel_for(T, 2.0 * in * (r + 1), [&](int64_t t0, int64_t t1) {
    std::vector<float> tmp(static_cast<size_t>(in));
    for (int64_t t = t0; t < t1; t++) {
      std::fill(tmp.begin(), tmp.end(), 0.0f);
      const float* gr = g + t * r;
      for (int64_t k = 0; k < r; k++) {
        const float gk = gr[k];
        const float* ak = a + k * in;
#pragma omp simd
        for (int64_t i = 0; i < in; i++) tmp[i] += gk * ak[i];
      }
      const float* mr = m + t * in;
      float* dr = dx + t * in;
      if (accumulate) {
#pragma omp simd
        for (int64_t i = 0; i < in; i++) dr[i] += s * tmp[i] * mr[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < in; i++) dr[i] = s * tmp[i] * mr[i];
      }
    }
    });
}

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

extern "C" {

int64_t lora4j_lora_bwd_workspace_floats(int64_t T, int64_t r) { return T * r; }

void lora4j_lora_fwd(const float* x, const float* w, const float* a, const float* b,
                     const float* drop_mask, int64_t T, int64_t in, int64_t out, int64_t r,
                     float scale, float* y, float* xa) {
  if (drop_mask) {
    masked_xa(x, drop_mask, a, T, in, r, xa);
  } else {
    lora4j_sgemm(0, 1, T, r, in, 1.0f, x, in, a, in, 0.0f, xa, r);
  }
  if (w) lora4j_sgemm(0, 1, T, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  // Y += s · XA · Bᵀ  (rank-r update of Y)
  lora4j_sgemm(0, 1, T, out, r, scale, xa, r, b, r, 1.0f, y, out);
}

void lora4j_lora_bwd(const float* dy, const float* x, const float* w, const float* a,
                     const float* b, const float* drop_mask, const float* xa, int64_t T,
                     int64_t in, int64_t out, int64_t r, float scale, float* dx,
                     int32_t accumulate_dx, float* da, float* db, float* workspace) {
  float* g = workspace;  // [T, r]
  if (dx || da) lora4j_sgemm(0, 0, T, r, out, 1.0f, dy, out, b, r, 0.0f, g, r);
  if (db) lora4j_sgemm(1, 0, out, r, T, scale, dy, out, xa, r, 1.0f, db, r);
  if (dx) {
    bool acc = accumulate_dx != 0;
    if (w) {
      lora4j_sgemm(0, 0, T, in, out, 1.0f, dy, out, w, in, acc ? 1.0f : 0.0f, dx, in);
      acc = true;
    }
    if (drop_mask) {
      masked_dx(g, a, drop_mask, T, in, r, scale, acc, dx);
    } else {
      lora4j_sgemm(0, 0, T, in, r, scale, g, r, a, in, acc ? 1.0f : 0.0f, dx, in);
    }
  }
  if (da) {
    if (drop_mask) {
      masked_da(g, x, drop_mask, T, in, r, scale, da);
    } else {
      lora4j_sgemm(1, 0, r, in, T, scale, g, r, x, in, 1.0f, da, in);
    }
  }
}

void lora4j_dropout_mask(uint64_t seed, int64_t n, float p, float* mask) {
  const float keep = 1.0f / (1.0f - p);
  lora4j::cpu::parallel_for(n, 16.0, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const uint64_t h = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(i)));
      const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // 24 bits -> [0, 1)
      mask[i] = u >= p ? keep : 0.0f;
    }
  });
}

}  // extern "C"
