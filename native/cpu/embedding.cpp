// Token embedding gather and its scatter-add backward, CPU (oracle of native/cuda/embedding.cu).
//
//   out[t, :] = table[ids[t], :]            ids [T] int32, table [vocab, dim], out [T, dim]
//   dtable[ids[t], :] += dout[t, :]         deterministic: threads own column slabs
#include "lora4j/ops.h"
#include "common.h"
#include "parallel.h"

#include <cstring>

extern "C" {

void lora4j_embedding_fwd(const int32_t* ids, const float* table, int64_t T, int64_t dim,
                          int64_t vocab, float* out) {
  for (int64_t t = 0; t < T; t++)
    LORA4J_CHECK(ids[t] >= 0 && ids[t] < vocab,
                 "embedding: id " + std::to_string(ids[t]) + " at token " + std::to_string(t) +
                     " outside [0, " + std::to_string(vocab) + ")");
  lora4j::cpu::parallel_for(T, dim, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      std::memcpy(out + t * dim, table + static_cast<int64_t>(ids[t]) * dim, sizeof(float) * dim);
  });
}

void lora4j_embedding_bwd(const int32_t* ids, const float* dout, int64_t T, int64_t dim,
                          int64_t vocab, float* dtable) {
  for (int64_t t = 0; t < T; t++)
    LORA4J_CHECK(ids[t] >= 0 && ids[t] < vocab,
                 "embedding: id " + std::to_string(ids[t]) + " at token " + std::to_string(t) +
                     " outside [0, " + std::to_string(vocab) + ")");
  constexpr int64_t kCols = 64;
  const int64_t nblk = (dim + kCols - 1) / kCols;
  lora4j::cpu::parallel_for(nblk, static_cast<double>(T) * kCols, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; blk++) {
      const int64_t c0 = blk * kCols, c1 = c0 + kCols < dim ? c0 + kCols : dim;
      for (int64_t t = 0; t < T; t++) {
        float* dst = dtable + static_cast<int64_t>(ids[t]) * dim;
        const float* src = dout + t * dim;
#pragma omp simd
        for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
      }
    }
  });
}

}  // extern "C"
