// lora4j_ops_harness: parity / gradient / timing harness of the transformer ops.
//
//   lora4j_ops_harness test   CPU ops vs double references; every backward vs finite differences
//   lora4j_ops_harness cuda   every CUDA op vs its CPU twin (poisoned outputs; NaN never passes)
//   lora4j_ops_harness perf   CPU timings (plus CUDA timings when built with CUDA and a device
//                             is present)
// LORA4J_BLAS=/path/libopenblas.so.0 installs OpenBLAS's sgemm, else the builtin one is used.
// Exit status: 0 all checks passed, 1 a check failed, 2 bad usage or an exception,
// 77 (`cuda`) no CUDA device or a build without CUDA: skipped, and says so.
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace ops_harness {
extern int g_failures;
extern int g_checks;
}  // namespace ops_harness

void run_cpu_tests();
void run_cpu_perf();
#ifdef LORA4J_WITH_CUDA
int run_cuda_parity();  // 0, or 77 when no device is present
void run_cuda_perf();
#endif

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "test";
  try {
    if (const char* blas = std::getenv("LORA4J_BLAS")) {
      if (lora4j_blas_load(blas) != 0) {
        std::fprintf(stderr, "LORA4J_BLAS: %s\n", lora4j_blas_error());
        return 2;
      }
      // OpenBLAS keeps its own pool: give it the OpenMP thread count (OMP_NUM_THREADS).
      lora4j_set_num_threads(lora4j_get_num_threads());
    }
    std::printf("lora4j ops harness [%s]: %s | sgemm %s | %d OpenMP threads\n", mode,
                lora4j_build_info(), lora4j_blas_name(), lora4j_get_num_threads());
    if (std::strcmp(mode, "test") == 0) {
      run_cpu_tests();
    } else if (std::strcmp(mode, "cuda") == 0) {
#ifdef LORA4J_WITH_CUDA
      if (run_cuda_parity() == 77) return 77;
#else
      std::printf("SKIP: this build has no CUDA kernels\n");
      return 77;
#endif
    } else if (std::strcmp(mode, "perf") == 0) {
      run_cpu_perf();
#ifdef LORA4J_WITH_CUDA
      run_cuda_perf();
#endif
    } else {
      std::fprintf(stderr, "usage: %s test|cuda|perf\n", argv[0]);
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  if (ops_harness::g_failures) {
    std::printf("FAILED: %d of %d checks\n", ops_harness::g_failures, ops_harness::g_checks);
    return 1;
  }
  if (ops_harness::g_checks) std::printf("PASSED: %d checks\n", ops_harness::g_checks);
  return 0;
}
