// lora4j CUDA emulator: what a .cu file sees instead of <cuda_runtime.h> when it is compiled by
// the host C++ compiler (-x c++, native/emu first on the include path). See README.md here.
//
// Our own code, written from NVIDIA's documentation (CUDA C++ Programming Guide, PTX ISA,
// CUDA Runtime API reference), never from the kernels it checks (DESIGN.md §7b).
//
// Execution model (emu.cpp): a launch is queued on its stream and runs when the host waits for
// it. The grid's blocks run one after another in a seeded shuffled order; a block's threads are
// cooperative fibers. __syncthreads() is a block barrier, warp intrinsics a warp barrier; within
// each barrier phase the fibers run in a seeded shuffled order. Static __shared__ variables live
// in one ELF section that is filled with NaN bytes (0xFF) at every block start, as is the
// dynamic shared memory (LORA4J_DYNAMIC_SHARED) and every cudaMalloc.
#pragma once
#define LORA4J_CUDA_EMULATED 1

#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- keywords ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// Static storage in one section: the emulator finds it through __start_/__stop_ symbols and
// fills it with NaN bytes at each block start. Blocks never run concurrently (one device lock).
#define __shared__ static __attribute__((section("lora4j_emu_shared")))
#define LORA4J_EMU_SHARED_SECTION lora4j_emu_shared

// ---- vector types -----------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ---- built-in variables: set by the scheduler before it resumes a fiber ----------------------
extern "C" {
extern uint3 lora4j_emu_threadIdx;
extern uint3 lora4j_emu_blockIdx;
extern dim3 lora4j_emu_blockDim;
extern dim3 lora4j_emu_gridDim;
}
#define threadIdx (static_cast<const uint3&>(lora4j_emu_threadIdx))
#define blockIdx (static_cast<const uint3&>(lora4j_emu_blockIdx))
#define blockDim (static_cast<const dim3&>(lora4j_emu_blockDim))
#define gridDim (static_cast<const dim3&>(lora4j_emu_gridDim))
constexpr int warpSize = 32;

// ---- runtime types ----------------------------------------------------------------------------
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

// The fields of the real cudaDeviceProp that lora4j reads; values come from the profile
// (LORA4J_EMU_DEVICE=sm_90|sm_89|sm_86|sm_80).
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;       // 48 KiB: the limit without opt-in
  size_t sharedMemPerBlockOptin;  // the cudaFuncSetAttribute maximum
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
};

extern "C" {
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
}

// The typed overloads of the real cuda_runtime.h.
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
template <typename T>
inline cudaError_t cudaMallocHost(T** p, size_t bytes) { return cudaMallocHost(reinterpret_cast<void**>(p), bytes); }
template <typename T>
inline cudaError_t cudaMallocAsync(T** p, size_t bytes, cudaStream_t s) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}

namespace lora4j_emu {
cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value);
}
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return lora4j_emu::func_set_attribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// ---- device-side primitives -------------------------------------------------------------------
namespace lora4j_emu {

// Block barrier; `line` tells divergent barriers apart (two call sites in one phase = error).
void syncthreads(int line);
void syncwarp(unsigned mask, int line);
// Warp exchange: every lane of `mask` deposits `value`; returns the value of the lane chosen
// by (kind, arg, width) per the PTX shfl.sync modes; kind 4..6 are vote any/all/ballot.
enum WarpKind { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3, kVoteAny = 4,
                kVoteAll = 5, kVoteBallot = 6 };
uint64_t warp_exchange(WarpKind kind, unsigned mask, uint64_t value, int arg, int width,
                       const char* what, int line);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 for the calling lane (see emu.cpp).
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4]);
// The block's dynamic shared memory (LORA4J_DYNAMIC_SHARED), NaN-filled at block start.
void* dynamic_shared_memory();

constexpr int width_arg() { return 32; }
constexpr int width_arg(int w) { return w; }
constexpr unsigned mask_arg() { return 0xffffffffu; }
constexpr unsigned mask_arg(unsigned m) { return m; }

template <typename T>
inline T shfl(WarpKind kind, unsigned mask, T v, int arg, int width, const char* what, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of <= 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(kind, mask, bits, arg, width, what, line);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

// Rounding intrinsics: the empty asm keeps the compiler from contracting the result into an
// FMA with a neighbouring operation (what the _rn forms promise on the device).
template <typename T>
inline T opaque(T v) {
  asm("" : "+m"(v));
  return v;
}

}  // namespace lora4j_emu

#define __syncthreads() ::lora4j_emu::syncthreads(__LINE__)
#define __syncwarp(...) ::lora4j_emu::syncwarp(::lora4j_emu::mask_arg(__VA_ARGS__), __LINE__)
#define __shfl_sync(mask, v, src, ...) \
  ::lora4j_emu::shfl(::lora4j_emu::kShflIdx, mask, v, src, ::lora4j_emu::width_arg(__VA_ARGS__), "__shfl_sync", __LINE__)
#define __shfl_up_sync(mask, v, d, ...) \
  ::lora4j_emu::shfl(::lora4j_emu::kShflUp, mask, v, d, ::lora4j_emu::width_arg(__VA_ARGS__), "__shfl_up_sync", __LINE__)
#define __shfl_down_sync(mask, v, d, ...) \
  ::lora4j_emu::shfl(::lora4j_emu::kShflDown, mask, v, d, ::lora4j_emu::width_arg(__VA_ARGS__), "__shfl_down_sync", __LINE__)
#define __shfl_xor_sync(mask, v, m, ...) \
  ::lora4j_emu::shfl(::lora4j_emu::kShflXor, mask, v, m, ::lora4j_emu::width_arg(__VA_ARGS__), "__shfl_xor_sync", __LINE__)
#define __any_sync(mask, p) \
  (::lora4j_emu::warp_exchange(::lora4j_emu::kVoteAny, mask, (p) ? 1 : 0, 0, 32, "__any_sync", __LINE__) != 0)
#define __all_sync(mask, p) \
  (::lora4j_emu::warp_exchange(::lora4j_emu::kVoteAll, mask, (p) ? 1 : 0, 0, 32, "__all_sync", __LINE__) != 0)
#define __ballot_sync(mask, p) \
  static_cast<unsigned>(::lora4j_emu::warp_exchange(::lora4j_emu::kVoteBallot, mask, (p) ? 1 : 0, 0, 32, "__ballot_sync", __LINE__))

template <typename T>
inline T __ldg(const T* p) { return *p; }

// Atomics: fibers of one block switch only at barriers, and blocks never overlap, so a plain
// read-modify-write is atomic here. Each returns the old value (CUDA C++ Programming Guide).
template <typename T>
inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <typename T>
inline T atomicSub(T* p, T v) { T o = *p; *p = o - v; return o; }
template <typename T>
inline T atomicMin(T* p, T v) { T o = *p; *p = v < o ? v : o; return o; }
template <typename T>
inline T atomicMax(T* p, T v) { T o = *p; *p = v > o ? v : o; return o; }
template <typename T>
inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <typename T>
inline T atomicOr(T* p, T v) { T o = *p; *p = o | v; return o; }
template <typename T>
inline T atomicAnd(T* p, T v) { T o = *p; *p = o & v; return o; }

// ---- math -------------------------------------------------------------------------------------
using std::isfinite;
using std::isinf;
using std::isnan;
template <typename T>
inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max(T a, T b) { return a < b ? b : a; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fmul_rn(float a, float b) { return lora4j_emu::opaque(a * b); }
inline float __fadd_rn(float a, float b) { return lora4j_emu::opaque(a + b); }
inline float __fsub_rn(float a, float b) { return lora4j_emu::opaque(a - b); }
inline float __fdiv_rn(float a, float b) { return lora4j_emu::opaque(a / b); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dmul_rn(double a, double b) { return lora4j_emu::opaque(a * b); }
inline double __dadd_rn(double a, double b) { return lora4j_emu::opaque(a + b); }
inline double __dsub_rn(double a, double b) { return lora4j_emu::opaque(a - b); }
inline double __ddiv_rn(double a, double b) { return lora4j_emu::opaque(a / b); }
inline float __frcp_rn(float a) { return lora4j_emu::opaque(1.0f / a); }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }

// ---- bf16 / half (cuda_bf16.h / cuda_fp16.h): storage types, round-to-nearest-even ----------
struct __nv_bfloat16 { uint16_t x; };
struct __half { uint16_t x; };
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;

// fp32 -> bf16, round to nearest, ties to even; NaN stays NaN (quiet, sign kept).
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  __nv_bfloat16 r;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    r.x = static_cast<uint16_t>((u >> 16) | 0x0040u);
    return r;
  }
  u += 0x7FFFu + ((u >> 16) & 1u);
  r.x = static_cast<uint16_t>(u >> 16);
  return r;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = uint32_t(h.x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { __nv_bfloat16 h; h.x = v; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline __half __ushort_as_half(unsigned short v) { __half h; h.x = v; return h; }
// binary16 -> fp32 (exact): IEEE 754 binary16 has 1 sign, 5 exponent (bias 15), 10 fraction bits.
inline float __half2float(__half h) {
  const uint32_t s = uint32_t(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1Fu, m = h.x & 0x3FFu;
  uint32_t u;
  if (e == 0x1F) {
    u = s | 0x7F800000u | (m << 13);
  } else if (e != 0) {
    u = s | ((e + 112) << 23) | (m << 13);
  } else if (m == 0) {
    u = s;
  } else {  // subnormal: m * 2^-24
    float f = static_cast<float>(m) * 5.9604644775390625e-8f;
    std::memcpy(&u, &f, 4);
    u |= s;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// fp32 -> binary16, round to nearest, ties to even (through double: exact for the rounding).
inline __half __float2half_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t s = static_cast<uint16_t>((u >> 16) & 0x8000u);
  __half r;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) { r.x = s | 0x7E00u; return r; }
  const float a = std::fabs(f);
  if (a >= 65520.0f) { r.x = s | 0x7C00u; return r; }  // rounds to inf
  if (a < 6.103515625e-05f) {                            // subnormal range: units of 2^-24
    r.x = s | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
    return r;
  }
  int e;
  const float fr = std::frexp(a, &e);                    // a = fr * 2^e, fr in [0.5, 1)
  uint32_t m = static_cast<uint32_t>(std::nearbyint(std::ldexp(fr, 11)));  // 11 significant bits
  if (m == 2048) { m = 1024; e++; }
  r.x = s | static_cast<uint16_t>(((e + 14) << 10) | (m - 1024));
  return r;
}
inline __half __float2half(float f) { return __float2half_rn(f); }

// ---- static shared memory of this module ------------------------------------------------------
// Every module (the library, a test executable) has its own lora4j_emu_shared section; hidden
// weak references resolve to this module's bounds, and each translation unit registers them.
extern "C" char __start_lora4j_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_lora4j_emu_shared[] __attribute__((weak, visibility("hidden")));
namespace lora4j_emu {
void register_shared_section(char* begin, char* end);
namespace {
struct SharedSectionRegistrar {
  SharedSectionRegistrar() { register_shared_section(__start_lora4j_emu_shared, __stop_lora4j_emu_shared); }
};
[[maybe_unused]] SharedSectionRegistrar shared_section_registrar;
}  // namespace
}  // namespace lora4j_emu

// ---- launches -----------------------------------------------------------------------------------
namespace lora4j_emu {

// Queues a launch of `kernel` on `stream`; `body(block)` runs one thread of it on a fiber.
// Configuration errors (limits of the device profile) are reported through cudaGetLastError.
struct LaunchBody {
  virtual ~LaunchBody() = default;
  virtual void run_thread() = 0;
};
void enqueue_launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, LaunchBody* body);

template <typename T>
struct Identity { using type = T; };

template <typename... P>
struct Launcher {
  const char* name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;

  struct Body : LaunchBody {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> args;
    Body(void (*k)(P...), std::decay_t<P>... a) : kernel(k), args(a...) {}
    void run_thread() override {
      // Each thread gets its own copy of the parameters, as on the device.
      std::tuple<std::decay_t<P>...> mine = args;
      std::apply(kernel, mine);
    }
  };
  void operator()(typename Identity<std::decay_t<P>>::type... args) const {
    enqueue_launch(name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream,
                   new Body(kernel, args...));
  }
};

template <typename... P>
inline Launcher<P...> launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                               size_t smem, cudaStream_t stream) {
  return Launcher<P...>{name, kernel, grid, block, smem, stream};
}

}  // namespace lora4j_emu
