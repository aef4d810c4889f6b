// lora4j runtime: library info, the CPU BLAS hook, and the CUDA device/memory/stream API.
//
// The CPU kernels call sgemm through a function pointer that the Java side installs after it
// has loaded OpenBLAS from the JavaCPP preset (lora4j_blas_load with the library's path), so
// liblora4j.so itself has no link-time dependency on any BLAS. Without one it falls back to a
// portable blocked sgemm (correct, slower).
//
// CUDA: cudart is linked statically, so this library loads on machines without a GPU or
// driver; lora4j_cuda_device_count() then returns -cudaError (e.g. -35 insufficient driver,
// -100 no device) instead of failing.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// 1 when this library was built with CUDA kernels, else 0.
int32_t lora4j_built_with_cuda(void);
// Short build description: version, compiler, SIMD level, CUDA architectures.
const char* lora4j_build_info(void);

// Load a cblas-compatible library (OpenBLAS) from `path` with dlopen and use its cblas_sgemm.
// Returns 0 on success, -1 when the library or the symbol is missing (the message is in
// lora4j_blas_error()). Safe to call again; the last successful call wins.
int32_t lora4j_blas_load(const char* path);
// Name of the sgemm in use: "openblas:<path>" or "builtin".
const char* lora4j_blas_name(void);
const char* lora4j_blas_error(void);

// C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, row-major, fp32.
// transA/transB: 0 = as stored, 1 = transposed. lda/ldb/ldc are row strides in elements.
void lora4j_sgemm(int32_t transA, int32_t transB, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc);

// Physical cores (distinct core ids) among the CPUs this process may run on: the default
// thread count of the CPU kernels.
int32_t lora4j_physical_cores(void);

// Reads `bytes` bytes at p with 32-byte vector loads and returns a checksum: the read-only
// memory floor that the NF4 GEMV benchmark compares against (same bytes, same run).
uint64_t lora4j_bench_read(const void* p, int64_t bytes);

// ---- CUDA runtime --------------------------------------------------------------------------
// Number of CUDA devices, or -cudaError when the runtime cannot tell (no driver, old driver),
// or 0 when built without CUDA.
int32_t lora4j_cuda_device_count(void);
// "name, compute capability, memory, driver/runtime versions" of device `dev`.
const char* lora4j_cuda_device_info(int32_t dev);
void lora4j_cuda_set_device(int32_t dev);
void* lora4j_cuda_malloc(int64_t bytes);             // throws with the CUDA error on failure
void lora4j_cuda_free(void* p);
void* lora4j_cuda_host_alloc(int64_t bytes);          // pinned host memory
void lora4j_cuda_host_free(void* p);
// kind: 1 host->device, 2 device->host, 3 device->device. stream may be null.
void lora4j_cuda_memcpy(void* dst, const void* src, int64_t bytes, int32_t kind, void* stream);
void lora4j_cuda_memset(void* dst, int32_t value, int64_t bytes, void* stream);
void* lora4j_cuda_stream_create(void);
void lora4j_cuda_stream_destroy(void* stream);
void lora4j_cuda_stream_synchronize(void* stream);
void lora4j_cuda_device_synchronize(void);
// Events order work between streams (asynchronous offload of checkpointed activations:
// DESIGN.md §4 "unsloth"): record on the producing stream, make the consuming stream wait.
// Created with cudaEventDisableTiming (cheapest to record and wait on).
void* lora4j_cuda_event_create(void);
void lora4j_cuda_event_destroy(void* event);
void lora4j_cuda_event_record(void* event, void* stream);      // stream may be null
void lora4j_cuda_stream_wait_event(void* stream, void* event); // later work on stream waits
void lora4j_cuda_event_synchronize(void* event);               // the host waits
int32_t lora4j_cuda_event_query(void* event);                  // 1 completed, 0 not yet
// free and total device memory in bytes: out[0] = free, out[1] = total.
void lora4j_cuda_mem_info(int64_t* out);

#ifdef __cplusplus
}
#endif
