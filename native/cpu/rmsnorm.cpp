// RMSNorm (Llama), CPU: the fallback and the oracle of native/cuda/rmsnorm.cu.
//
//   rstd[t] = 1 / sqrt(mean_i x[t,i]^2 + eps)
//   y[t,i]  = w[i] * (x[t,i] * rstd[t])
//   g[t,i]  = dy[t,i] * w[i]
//   dx[t,i] = rstd[t] * g[t,i] - x[t,i] * rstd[t]^3 / dim * sum_j g[t,j] x[t,j]
//   dw[i]  += sum_t dy[t,i] * x[t,i] * rstd[t]
// Layout: x, y, dy, dx [T, dim] row-major; w, dw [dim]; rstd [T]. OpenMP over rows (dw: over
// column blocks, so its sums are deterministic).
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <cmath>

extern "C" {

void lora4j_rmsnorm_fwd(const float* x, const float* w, int64_t T, int64_t dim, float eps,
                        float* y, float* rstd) {
  LORA4J_CHECK(dim > 0 || T == 0, "rmsnorm: dim must be positive");
  lora4j::cpu::parallel_for(T, 2.0 * dim, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * dim;
      float* yr = y + t * dim;
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < dim; i++) ss += xr[i] * xr[i];
      const float r = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
      rstd[t] = r;
#pragma omp simd
      for (int64_t i = 0; i < dim; i++) yr[i] = w[i] * (xr[i] * r);
    }
  });
}

void lora4j_rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                        int64_t T, int64_t dim, float* dx, float* dw) {
  // dw first: dx may alias dy.
  if (dw) {
    constexpr int64_t kCols = 64;
    const int64_t nblk = (dim + kCols - 1) / kCols;
    lora4j::cpu::parallel_for(nblk, 2.0 * T * 64, [&](int64_t blk0, int64_t blk1) {
      for (int64_t blk = blk0; blk < blk1; blk++) {
        const int64_t i0 = blk * kCols, i1 = i0 + kCols < dim ? i0 + kCols : dim;
        float acc[kCols] = {0};
        for (int64_t t = 0; t < T; t++) {
          const float r = rstd[t];
          const float* dyr = dy + t * dim;
          const float* xr = x + t * dim;
#pragma omp simd
          for (int64_t i = i0; i < i1; i++) acc[i - i0] += dyr[i] * xr[i] * r;
        }
        for (int64_t i = i0; i < i1; i++) dw[i] += acc[i - i0];
      }
    });
  }
  const float inv_dim = 1.0f / static_cast<float>(dim);
  lora4j::cpu::parallel_for(T, 3.0 * dim, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* dyr = dy + t * dim;
      const float* xr = x + t * dim;
      float* dxr = dx + t * dim;
      const float r = rstd[t];
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < dim; i++) dot += dyr[i] * w[i] * xr[i];
      const float c = r * r * r * inv_dim * dot;
#pragma omp simd
      for (int64_t i = 0; i < dim; i++) dxr[i] = r * (dyr[i] * w[i]) - xr[i] * c;
    }
  });
}

}  // extern "C"
