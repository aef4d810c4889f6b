// Internal CUDA helpers (not part of the public API).
#pragma once
#include <cuda_runtime.h>
#include <string>
#include "common.h"

// Throw std::runtime_error with the CUDA error text, the statement and file:line.
#define LORA4J_CUDA_CHECK(stmt)                                                             \
  do {                                                                                      \
    cudaError_t _e = (stmt);                                                                \
    if (_e != cudaSuccess) {                                                                \
      throw std::runtime_error(std::string("lora4j cuda: ") + cudaGetErrorName(_e) + ": " + \
                               cudaGetErrorString(_e) + " in `" #stmt "` at " + __FILE__ +  \
                               ":" + std::to_string(__LINE__));                             \
    }                                                                                       \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, named by op.
#define LORA4J_CUDA_LAUNCH_CHECK(op)                                                        \
  do {                                                                                      \
    cudaError_t _e = cudaGetLastError();                                                    \
    if (_e != cudaSuccess) {                                                                \
      throw std::runtime_error(std::string("lora4j cuda: launch of ") + (op) + " failed: " + \
                               cudaGetErrorName(_e) + ": " + cudaGetErrorString(_e) +       \
                               " at " + __FILE__ + ":" + std::to_string(__LINE__));         \
    }                                                                                       \
  } while (0)

// One way to launch a kernel, for nvcc and for the emulation build (native/emu, where the
// .cu files are compiled by the host compiler against the emulator's cuda_runtime.h):
//   LORA4J_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...);
// The kernel comes last so that a template-id with commas (gemm_kernel<false, true>) is one
// argument. Follow it with LORA4J_CUDA_LAUNCH_CHECK as before.
#if defined(LORA4J_CUDA_EMULATED)
#define LORA4J_LAUNCH(grid, block, smem, stream, ...) \
  ::lora4j_emu::launcher(#__VA_ARGS__, __VA_ARGS__, dim3(grid), dim3(block), (smem), (stream))
#else
#define LORA4J_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#endif

// The kernel's dynamic shared memory (the launch's smem bytes) as `type* name`, 16-byte aligned.
#if defined(LORA4J_CUDA_EMULATED)
#define LORA4J_DYNAMIC_SHARED(type, name) \
  type* const name = static_cast<type*>(::lora4j_emu::dynamic_shared_memory())
#else
#define LORA4J_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

static inline cudaStream_t as_stream(void* s) { return reinterpret_cast<cudaStream_t>(s); }
