// lora4j_harness: the native parity / gradient / timing harness, one executable (modes and
// registry in harness.h; cases in harness.cpp, harness_cuda.cpp and ops/*.cpp).
//
//   lora4j_harness test              CPU ops vs references (NF4 and, with `grad`, the transformer ops)
//   lora4j_harness grad              transformer ops: forward vs double references, every backward
//                                    vs central finite differences
//   lora4j_harness golden PATH       byte-exact NF4 vs tests/resources/nf4/nf4_golden.txt
//   lora4j_harness cuda              every lora4j_cuda_* op vs its CPU twin (GPU or native/emu)
//   lora4j_harness perf [cpu|cuda]   timings as ratios to ceilings measured in the same run
//   lora4j_harness list              the registered cases
//   (LORA4J_HARNESS_CASE=substring runs only the cases whose name contains it)
//
// Env: LORA4J_BLAS=/path/libopenblas.so.0 installs OpenBLAS' cblas_sgemm (else the builtin);
// LORA4J_REQUIRE_CUDA=1 makes `cuda`/`perf cuda` fail instead of skipping without a device.
// Exit status: 0 all checks passed (perf: goals are reported, not enforced), 1 a check failed
// or a case threw, 2 bad usage.
#include "harness.h"
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"

#include <cstdlib>
#include <exception>
#include <set>
#include <string>

namespace {

int usage() {
  std::fprintf(stderr, "usage: lora4j_harness test | grad | golden PATH | cuda | perf [cpu|cuda] | list\n");
  return 2;
}

// A CUDA mode without a device: skip (exit 0), or fail with LORA4J_REQUIRE_CUDA=1.
bool cuda_ready(int& rc) {
  std::string why;
  if (!lora4j_built_with_cuda()) {
    why = "liblora4j was built without CUDA";
  } else {
    const int n = lora4j_cuda_device_count();
    if (n > 0) {
      lora4j_cuda_set_device(0);
      std::printf("device 0: %s\n", lora4j_cuda_device_info(0));
      return true;
    }
    why = n == 0 ? "no CUDA device" : h::fmt("CUDA runtime error %d", -n);
  }
  const char* req = std::getenv("LORA4J_REQUIRE_CUDA");
  const bool required = req && std::string(req) == "1";
  std::printf("SKIP cuda: %s%s\n", why.c_str(), required ? " (LORA4J_REQUIRE_CUDA=1: failing)" : "");
  rc = required ? 1 : 0;
  return false;
}

// Runs every case of the given modes (only those whose name contains $LORA4J_HARNESS_CASE when
// it is set: a quicker loop while working on one kernel); an exception fails that case and the
// run goes on.
int run(const std::set<std::string>& modes, const char* title, bool enforce) {
  int thrown = 0;
  const char* only = std::getenv("LORA4J_HARNESS_CASE");
  for (const h::Case& c : h::cases()) {
    if (!modes.count(c.mode)) continue;
    if (only && *only && c.name.find(only) == std::string::npos) continue;
    std::printf("-- %s: %s\n", c.mode.c_str(), c.name.c_str());
    const double t0 = h::now_s();
    try {
      c.run();
    } catch (const std::exception& e) {
      h::record(c.mode + " " + c.name, false, std::string("exception: ") + e.what());
      thrown++;
    }
    std::printf("-- %s: %s done in %.1f s\n", c.mode.c_str(), c.name.c_str(), h::now_s() - t0);
  }
  const int rc = h::finish(title);
  return enforce ? rc : (thrown ? 1 : 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  if (const char* blas = std::getenv("LORA4J_BLAS")) {
    if (lora4j_blas_load(blas) != 0) {
      std::fprintf(stderr, "LORA4J_BLAS: %s\n", lora4j_blas_error());
      return 2;
    }
    lora4j_set_num_threads(lora4j_get_num_threads());  // OpenBLAS keeps its own pool
  }
  const std::string mode = argv[1];
  std::printf("lora4j_harness %s: %s | blas %s | %d threads\n", mode.c_str(), lora4j_build_info(),
              lora4j_blas_name(), lora4j_get_num_threads());
  int rc = 0;
  if (mode == "list") {
    for (const h::Case& c : h::cases()) std::printf("%-10s %s\n", c.mode.c_str(), c.name.c_str());
    return 0;
  }
  if (mode == "test") return run({"test", "grad"}, "test (CPU ops vs references)", true);
  if (mode == "grad") return run({"grad"}, "grad (transformer ops vs references and finite differences)", true);
  if (mode == "golden") {
    if (argc < 3) return usage();
    h::golden_path() = argv[2];
    return run({"golden"}, "golden (byte-exact vs scripts/reference/nf4_reference.py)", true);
  }
  if (mode == "cuda") {
    if (!cuda_ready(rc)) return rc;
    return run({"cuda"}, "cuda (CUDA ops vs CPU twins)", true);
  }
  if (mode == "perf") {
    const std::string what = argc > 2 ? argv[2] : "all";
    std::set<std::string> modes;
    if (what == "all" || what == "cpu") modes.insert("perf-cpu");
    if (what == "all" || what == "cuda") {
      if (cuda_ready(rc)) modes.insert("perf-cuda");
      else if (rc != 0 || what == "cuda") return rc;
    }
    if (modes.empty()) return usage();
    return run(modes, "perf (ratios to ceilings measured in this run)", false);
  }
  return usage();
}
