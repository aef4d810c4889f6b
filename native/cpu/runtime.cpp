// lora4j CPU runtime: build info, thread count, and the sgemm hook (OpenBLAS via dlopen, or a
// portable blocked fallback). See native/include/lora4j/runtime.h.
#include "lora4j/runtime.h"
#include "lora4j/nf4.h"
#include "common.h"
#include "parallel.h"

#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>

namespace {

// cblas enums (values from the CBLAS standard, cblas.h).
constexpr int kCblasRowMajor = 101;
constexpr int kCblasNoTrans = 111;
constexpr int kCblasTrans = 112;

using cblas_sgemm_fn = void (*)(int order, int transA, int transB, int M, int N, int K,
                                float alpha, const float* A, int lda, const float* B, int ldb,
                                float beta, float* C, int ldc);

using set_threads_fn = void (*)(int);

std::atomic<cblas_sgemm_fn> g_sgemm{nullptr};
std::mutex g_blas_mu;
std::string g_blas_name = "builtin";
std::string g_blas_error;

// Portable fallback: C = alpha*op(A)op(B) + beta*C, blocked for cache, one thread (the caller
// splits C). Correct for every shape; used only when no BLAS was installed.
void builtin_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                   float* C, int64_t ldc) {
  constexpr int64_t KB = 256;
  for (int64_t i = 0; i < M; i++) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
    for (int64_t k0 = 0; k0 < K; k0 += KB) {
      const int64_t k1 = k0 + KB < K ? k0 + KB : K;
      for (int64_t k = k0; k < k1; k++) {
        const float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
        if (a == 0.0f) continue;
        if (!tb) {
          const float* b = B + k * ldb;
          for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
        } else {
          for (int64_t j = 0; j < N; j++) c[j] += a * B[j * ldb + k];
        }
      }
    }
  }
}

}  // namespace

extern "C" {

int32_t lora4j_built_with_cuda(void) {
#ifdef LORA4J_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

const char* lora4j_build_info(void) {
  static const std::string info = [] {
    std::string s = "lora4j " LORA4J_VERSION ", " __VERSION__;
#if defined(__AVX2__) && defined(__FMA__)
    s += ", avx2+fma";
#endif
#ifdef LORA4J_WITH_CUDA
    s += ", cuda archs " LORA4J_CUDA_ARCHS_STR;
#else
    s += ", no cuda";
#endif
    return s;
  }();
  return info.c_str();
}

void lora4j_set_num_threads(int32_t n) { lora4j::cpu::set_max_threads(n); }

int32_t lora4j_get_num_threads(void) { return lora4j::cpu::max_threads(); }

int32_t lora4j_physical_cores(void) { return lora4j::cpu::physical_cores(); }

int32_t lora4j_blas_load(const char* path) {
  std::lock_guard<std::mutex> lock(g_blas_mu);
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    g_blas_error = std::string("dlopen ") + path + ": " + (e ? e : "unknown error");
    return -1;
  }
  auto fn = reinterpret_cast<cblas_sgemm_fn>(dlsym(h, "cblas_sgemm"));
  if (!fn) {
    g_blas_error = std::string(path) + " has no cblas_sgemm";
    return -1;
  }
  // OpenBLAS runs on the calling thread only: lora4j_sgemm splits C over lora4j's pool, so one
  // set of threads serves every kernel and none of OpenBLAS's workers spins beside them.
  if (auto set_threads = reinterpret_cast<set_threads_fn>(dlsym(h, "openblas_set_num_threads")))
    set_threads(1);
  g_sgemm.store(fn);
  g_blas_name = std::string("openblas:") + path;
  g_blas_error.clear();
  return 0;
}

const char* lora4j_blas_name(void) { return g_blas_name.c_str(); }
const char* lora4j_blas_error(void) { return g_blas_error.c_str(); }

void lora4j_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm_fn fn = g_sgemm.load();
  const bool blas = fn && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX &&
                    lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX;
  // One block of C: rows [m0, m0+m) x columns [n0, n0+n). OpenBLAS computes the last, short
  // block of M or N with other micro-kernels, so a split may round differently in the last bit.
  auto block = [&](int64_t m0, int64_t m, int64_t n0, int64_t n) {
    const float* a = A + (transA ? m0 : m0 * lda);
    const float* b = B + (transB ? n0 * ldb : n0);
    float* c = C + m0 * ldc + n0;
    if (blas)
      fn(kCblasRowMajor, transA ? kCblasTrans : kCblasNoTrans,
         transB ? kCblasTrans : kCblasNoTrans, (int)m, (int)n, (int)K, alpha, a, (int)lda, b,
         (int)ldb, beta, c, (int)ldc);
    else
      builtin_sgemm(transA != 0, transB != 0, m, n, K, alpha, a, lda, b, ldb, beta, c, ldc);
  };
  // Split the longer side of C into panels of whole 48-row/column groups: a multiple of every
  // sgemm micro-kernel width of OpenBLAS (4, 8, 12, 16, 24), so that each thread's panel starts a
  // full block and a row's bits do not depend on the thread count (train/ChunkedCrossEntropy
  // relies on it). A GEMM thread must amortise packing its panels as well as the wake-up: 64x
  // the elementwise threshold in multiply-adds.
  constexpr int64_t kGroup = 48;
  const bool by_rows = M >= N;
  const int64_t len = by_rows ? M : N, groups = (len + kGroup - 1) / kGroup;
  const int nth = lora4j::cpu::threads_for(static_cast<double>(M) * N * (K + 1) / 64.0, groups);
  if (nth <= 1) {
    block(0, M, 0, N);
    return;
  }
  lora4j::cpu::run_parallel(nth, [&](int tid, int nt) {
    const int64_t g0 = groups * tid / nt, g1 = groups * (tid + 1) / nt;
    const int64_t s0 = g0 * kGroup, s1 = std::min(len, g1 * kGroup);
    if (s0 >= s1) return;
    if (by_rows) block(s0, s1 - s0, 0, N);
    else block(0, M, s0, s1 - s0);
  });
}

uint64_t lora4j_bench_read(const void* p, int64_t bytes) {
  // Four independent accumulators keep the loads in flight; XOR so nothing can be skipped.
  const uint8_t* b = static_cast<const uint8_t*>(p);
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 96)));
  }
  __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  uint64_t h = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
  for (; i < bytes; i++) h ^= b[i];
  return h;
}

}  // extern "C"
