// lora4j CUDA runtime: device probe, memory, streams. cudart is linked statically (CMake), so
// this library loads where there is no driver; the probe then reports -cudaError.
#include "lora4j/runtime.h"
#include "cuda/cuda_common.cuh"

#include <atomic>
#include <cstdio>
#include <string>

namespace {
// The device lora4j_cuda_set_device chose for this process (a data-parallel rank's local rank).
// CUDA's current device belongs to each host thread: the entries that allocate memory or create
// streams and events re-bind a thread that has not set it yet, so that they never land on device 0
// by default. Kernel launches need no re-binding: one into a stream of another device fails.
std::atomic<int> g_device{0};
thread_local int t_bound = -1;

void bind_device() {
  const int d = g_device.load(std::memory_order_relaxed);
  if (t_bound != d) {
    LORA4J_CUDA_CHECK(cudaSetDevice(d));
    t_bound = d;
  }
}
}  // namespace

extern "C" {

int32_t lora4j_cuda_device_count(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later probes see the same answer
    return -static_cast<int32_t>(e);
  }
  return n;
}

const char* lora4j_cuda_device_info(int32_t dev) {
  static thread_local std::string info;
  cudaDeviceProp p;
  LORA4J_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char buf[512];
  snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB, driver %d, runtime %d", p.name, p.major,
           p.minor, p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), driver, runtime);
  info = buf;
  return info.c_str();
}

void lora4j_cuda_set_device(int32_t dev) {
  LORA4J_CUDA_CHECK(cudaSetDevice(dev));
  g_device.store(dev, std::memory_order_relaxed);
  t_bound = dev;
}

void* lora4j_cuda_malloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  bind_device();
  cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("lora4j cuda: cudaMalloc of ") + std::to_string(bytes) +
                             " bytes failed: " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
  return p;
}

void lora4j_cuda_free(void* p) {
  if (p) LORA4J_CUDA_CHECK(cudaFree(p));
}

void* lora4j_cuda_host_alloc(int64_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  bind_device();
  LORA4J_CUDA_CHECK(cudaMallocHost(&p, static_cast<size_t>(bytes)));
  return p;
}

void lora4j_cuda_host_free(void* p) {
  if (p) LORA4J_CUDA_CHECK(cudaFreeHost(p));
}

void lora4j_cuda_memcpy(void* dst, const void* src, int64_t bytes, int32_t kind, void* stream) {
  if (bytes == 0) return;
  cudaMemcpyKind k = kind == 1   ? cudaMemcpyHostToDevice
                     : kind == 2 ? cudaMemcpyDeviceToHost
                     : kind == 3 ? cudaMemcpyDeviceToDevice
                                 : cudaMemcpyDefault;
  LORA4J_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), k, as_stream(stream)));
  if (!stream) LORA4J_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void lora4j_cuda_memset(void* dst, int32_t value, int64_t bytes, void* stream) {
  if (bytes == 0) return;
  LORA4J_CUDA_CHECK(cudaMemsetAsync(dst, value, static_cast<size_t>(bytes), as_stream(stream)));
}

void* lora4j_cuda_stream_create(void) {
  bind_device();
  cudaStream_t s;
  LORA4J_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void lora4j_cuda_stream_destroy(void* stream) {
  if (stream) LORA4J_CUDA_CHECK(cudaStreamDestroy(as_stream(stream)));
}

void lora4j_cuda_stream_synchronize(void* stream) {
  LORA4J_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream)));
}

void lora4j_cuda_device_synchronize(void) {
  bind_device();
  LORA4J_CUDA_CHECK(cudaDeviceSynchronize());
}

void* lora4j_cuda_event_create(void) {
  bind_device();
  cudaEvent_t e;
  LORA4J_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

void lora4j_cuda_event_destroy(void* event) {
  if (event) LORA4J_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void lora4j_cuda_event_record(void* event, void* stream) {
  LORA4J_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), as_stream(stream)));
}

void lora4j_cuda_stream_wait_event(void* stream, void* event) {
  LORA4J_CUDA_CHECK(cudaStreamWaitEvent(as_stream(stream), static_cast<cudaEvent_t>(event), 0));
}

void lora4j_cuda_event_synchronize(void* event) {
  LORA4J_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

int32_t lora4j_cuda_event_query(void* event) {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (e == cudaErrorNotReady) return 0;
  LORA4J_CUDA_CHECK(e);
  return 1;
}

void lora4j_cuda_mem_info(int64_t* out) {
  bind_device();
  size_t f = 0, t = 0;
  LORA4J_CUDA_CHECK(cudaMemGetInfo(&f, &t));
  out[0] = static_cast<int64_t>(f);
  out[1] = static_cast<int64_t>(t);
}

}  // extern "C"
