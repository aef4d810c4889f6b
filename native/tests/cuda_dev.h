// A device buffer for the CUDA parity cases (native/tests/ops/*parity*.cpp): allocated on
// construction (a zero-byte request takes 4 bytes, so the pointer is valid), filled from a host
// vector, poisoned to 0xFF bytes (NaN as floats) so that an element a kernel never writes shows,
// read back as floats after a device sync, freed on destruction.
#pragma once
#ifdef LORA4J_WITH_CUDA
#include "lora4j/runtime.h"
#include "tests/harness.h"

#include <cstdint>
#include <vector>

namespace h {

struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : p(lora4j_cuda_malloc(static_cast<int64_t>(b ? b : 4))), bytes(b) {}
  template <typename T>
  explicit Dev(const std::vector<T>& v) : Dev(v.size() * sizeof(T)) { up(v); }
  ~Dev() { lora4j_cuda_free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <typename T>
  void up(const std::vector<T>& v) { lora4j_cuda_memcpy(p, v.data(), v.size() * sizeof(T), 1, nullptr); }
  void poison() {
    lora4j_cuda_memset(p, 0xFF, static_cast<int64_t>(bytes), nullptr);
    lora4j_cuda_device_synchronize();
  }
  std::vector<float> down() {
    std::vector<float> v(bytes / sizeof(float));
    lora4j_cuda_device_synchronize();
    lora4j_cuda_memcpy(v.data(), p, bytes, 2, nullptr);
    return v;
  }
  float* f() { return static_cast<float*>(p); }
  int32_t* i() { return static_cast<int32_t*>(p); }
  template <typename T>
  T* as() { return static_cast<T*>(p); }
};

}  // namespace h
#endif  // LORA4J_WITH_CUDA
