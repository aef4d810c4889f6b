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

static inline cudaStream_t as_stream(void* s) { return reinterpret_cast<cudaStream_t>(s); }
