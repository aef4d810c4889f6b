// Compact weight storage on the CPU (storage.h): bf16 weights read with fp32 compute, and NF4
// matmuls on double-quantized scales. The oracle of native/cuda/bf16w.cu and of the *_dq
// entries of native/cuda/nf4.cu.
//
// gemm_w with a bf16 B widens a panel of B's rows to fp32 (exact: a bf16 is the upper half of an
// fp32) into a scratch buffer of at most kPanelFloats and runs lora4j_sgemm on it:
//   transB 1, B [N, K]:  C[:, n0:n1]  = alpha·op(A)·Bf[n0:n1]ᵀ + beta·C[:, n0:n1]
//   transB 0, B [K, N]:  C           = alpha·op(A)[:, k0:k1]·Bf[k0:k1] + (k0 == 0 ? beta : 1)·C
// The scratch is native, per call (not in the Java memory tracker): 4 MiB at most.
// The *_dq matmuls expand the 8-bit scales to an fp32 vector (lora4j_nf4_dequant_absmax) and call
// the fp32-scale kernels, so they equal them bit for bit; the CPU keeps no resident fp32 copy
// either, only this per-call one (nblocks floats).
#include "lora4j/storage.h"
#include "lora4j/nf4.h"
#include "lora4j/ops.h"
#include "lora4j/runtime.h"
#include "common.h"
#include "parallel.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kPanelFloats = int64_t(1) << 20;  // 4 MiB of fp32 scratch

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

void check_dtype(int32_t dtype, const char* op) {
  LORA4J_CHECK(dtype == LORA4J_DTYPE_F32 || dtype == LORA4J_DTYPE_BF16,
               std::string(op) + ": weight dtype must be 0 (f32) or 1 (bf16), got " + std::to_string(dtype));
}

// rows x cols of a bf16 matrix with row stride ld -> dense fp32 [rows, cols].
void widen_rows(const uint16_t* b, int64_t rows, int64_t cols, int64_t ld, float* out) {
  lora4j::cpu::parallel_for(rows, double(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const uint16_t* src = b + r * ld;
      float* dst = out + r * cols;
      for (int64_t c = 0; c < cols; c++) dst[c] = bf16_to_f32(src[c]);
    }
  });
}

// fp32 -> bf16, round to nearest even (the carry of 0x7fff plus the kept bit's parity); a NaN
// becomes the quiet NaN 0x7fc0, as c10::BFloat16's round_to_nearest_even.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

constexpr int64_t kGluBlock = int64_t(1) << 16;  // elements widened at a time: 256 KiB of fp32 per input

// Calls body(gate_f32, up_f32, i0, len) on consecutive blocks of [0, n) with gate and up widened.
template <typename F>
void glu_blocks(const uint16_t* gate, const uint16_t* up, int64_t n, F&& body) {
  if (n <= 0) return;
  const int64_t cap = std::min(n, kGluBlock);
  std::vector<float> g(static_cast<size_t>(cap)), u(static_cast<size_t>(cap));
  for (int64_t i0 = 0; i0 < n; i0 += cap) {
    const int64_t len = std::min(cap, n - i0);
    widen_rows(gate + i0, 1, len, len, g.data());
    widen_rows(up + i0, 1, len, len, u.data());
    body(g.data(), u.data(), i0, len);
  }
}

std::vector<float> scales(const uint8_t* qabsmax, const float* nested, float offset, int64_t n,
                          int32_t blocksize) {
  const int64_t nblocks = (n + blocksize - 1) / blocksize;
  std::vector<float> absmax(static_cast<size_t>(nblocks));
  lora4j_nf4_dequant_absmax(qabsmax, nested, offset, nblocks, absmax.data());
  return absmax;
}

}  // namespace

extern "C" {

void lora4j_gemm_w(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const void* B, int32_t b_dtype, int64_t ldb,
                   float beta, float* C, int64_t ldc) {
  check_dtype(b_dtype, "gemm_w");
  if (b_dtype == LORA4J_DTYPE_F32 || M == 0 || N == 0 || K == 0) {
    // K == 0 with bf16: C = beta·C, which sgemm does without reading B
    lora4j_sgemm(transA, transB, M, N, K, alpha, A, lda, static_cast<const float*>(B), ldb, beta, C, ldc);
    return;
  }
  const uint16_t* b = static_cast<const uint16_t*>(B);
  if (transB) {  // B [N, K]: panels of output columns
    const int64_t p = std::max<int64_t>(1, std::min<int64_t>(N, kPanelFloats / K));
    std::vector<float> panel(static_cast<size_t>(p * K));
    for (int64_t n0 = 0; n0 < N; n0 += p) {
      const int64_t np = std::min(p, N - n0);
      widen_rows(b + n0 * ldb, np, K, ldb, panel.data());
      lora4j_sgemm(transA, 1, M, np, K, alpha, A, lda, panel.data(), K, beta, C + n0, ldc);
    }
  } else {  // B [K, N]: panels of the reduction, accumulated into C
    const int64_t p = std::max<int64_t>(1, std::min<int64_t>(K, kPanelFloats / N));
    std::vector<float> panel(static_cast<size_t>(p * N));
    for (int64_t k0 = 0; k0 < K; k0 += p) {
      const int64_t kp = std::min(p, K - k0);
      widen_rows(b + k0 * ldb, kp, N, ldb, panel.data());
      const float* a = transA ? A + k0 * lda : A + k0;  // op(A)[:, k0:k0+kp]
      lora4j_sgemm(transA, 0, M, N, kp, alpha, a, lda, panel.data(), N, k0 == 0 ? beta : 1.0f, C, ldc);
    }
  }
}

void lora4j_embedding_w_fwd(const int32_t* ids, const void* table, int32_t dtype, int64_t T,
                            int64_t dim, int64_t vocab, float* out) {
  check_dtype(dtype, "embedding_w_fwd");
  if (dtype == LORA4J_DTYPE_F32) {
    lora4j_embedding_fwd(ids, static_cast<const float*>(table), T, dim, vocab, out);
    return;
  }
  for (int64_t t = 0; t < T; t++)
    LORA4J_CHECK(ids[t] >= 0 && ids[t] < vocab,
                 "embedding: id " + std::to_string(ids[t]) + " at token " + std::to_string(t) +
                     " outside [0, " + std::to_string(vocab) + ")");
  const uint16_t* tab = static_cast<const uint16_t*>(table);
  lora4j::cpu::parallel_for(T, double(dim), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const uint16_t* src = tab + static_cast<int64_t>(ids[t]) * dim;
      for (int64_t c = 0; c < dim; c++) out[t * dim + c] = bf16_to_f32(src[c]);
    }
  });
}

void lora4j_widen_f32(const void* in, int32_t dtype, int64_t n, float* out) {
  check_dtype(dtype, "widen_f32");
  if (n <= 0) return;
  if (dtype == LORA4J_DTYPE_F32) {
    std::memcpy(out, in, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  widen_rows(static_cast<const uint16_t*>(in), 1, n, n, out);
}

void lora4j_round_bf16(float* x, int64_t n, uint16_t* out) {
  if (n <= 0) return;
  lora4j::cpu::parallel_for(n, 1.0, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      out[i] = f32_to_bf16(x[i]);
      x[i] = bf16_to_f32(out[i]);
    }
  });
}

// The bf16-input gated activations: blocks of kGluBlock elements of gate and up widened exactly into
// per-call scratch (2 x 256 KiB, native, not in the tracker), then the fp32 op on them, so the results
// equal it bit for bit. The fp32 op splits each block across the thread pool itself.
void lora4j_swiglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h) {
  glu_blocks(gate, up, n, [&](const float* g, const float* u, int64_t i0, int64_t len) {
    lora4j_swiglu_fwd(g, u, len, h + i0);
  });
}

void lora4j_swiglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                            float* dgate, float* dup) {
  glu_blocks(gate, up, n, [&](const float* g, const float* u, int64_t i0, int64_t len) {
    lora4j_swiglu_bwd(dh + i0, g, u, len, dgate + i0, dup + i0);
  });
}

void lora4j_geglu_bf16_fwd(const uint16_t* gate, const uint16_t* up, int64_t n, float* h) {
  glu_blocks(gate, up, n, [&](const float* g, const float* u, int64_t i0, int64_t len) {
    lora4j_geglu_fwd(g, u, len, h + i0);
  });
}

void lora4j_geglu_bf16_bwd(const float* dh, const uint16_t* gate, const uint16_t* up, int64_t n,
                           float* dgate, float* dup) {
  glu_blocks(gate, up, n, [&](const float* g, const float* u, int64_t i0, int64_t len) {
    lora4j_geglu_bwd(dh + i0, g, u, len, dgate + i0, dup + i0);
  });
}

void lora4j_nf4_dq_matmul_fwd(const float* x, int64_t T, int64_t in, int64_t out,
                              const uint8_t* w, const uint8_t* qabsmax,
                              const float* nested_absmax, float offset, int32_t blocksize,
                              float* y) {
  const std::vector<float> a = scales(qabsmax, nested_absmax, offset, in * out, blocksize);
  lora4j_nf4_matmul_fwd(x, T, in, out, w, a.data(), blocksize, y);
}

void lora4j_nf4_dq_matmul_bwd_input(const float* dy, int64_t T, int64_t in, int64_t out,
                                    const uint8_t* w, const uint8_t* qabsmax,
                                    const float* nested_absmax, float offset, int32_t blocksize,
                                    float* dx) {
  const std::vector<float> a = scales(qabsmax, nested_absmax, offset, in * out, blocksize);
  lora4j_nf4_matmul_bwd_input(dy, T, in, out, w, a.data(), blocksize, dx);
}

}  // extern "C"
