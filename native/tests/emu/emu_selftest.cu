// lora4j_emu_selftest: the CUDA emulator (native/emu) catches what it promises to catch.
// Built only in the emulation build (LORA4J_CUDA_EMU=ON), compiled like the kernels (-x c++
// against native/emu/cuda_runtime.h). Each case is a small kernel with a known defect, or a
// documented behaviour of a primitive (CUDA C++ Programming Guide / PTX ISA), and the check
// says what must happen. Exit status 1 when any check fails.
#include "cuda/cuda_common.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

int g_failed = 0, g_checks = 0;

void check(const std::string& name, bool ok, const std::string& detail) {
  g_checks++;
  if (!ok) g_failed++;
  std::printf("%-4s | %-58s | %s\n", ok ? "ok" : "FAIL", name.c_str(), detail.c_str());
}

// Runs f; returns the text of the std::runtime_error it throws ("" when none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ---- kernels with defects -----------------------------------------------------------------------
// Each thread writes its slot and reads its neighbour's without a barrier in between.
__global__ void missing_barrier_kernel(float* out) {
  __shared__ float s[128];
  s[threadIdx.x] = float(threadIdx.x);
  out[threadIdx.x] = s[(threadIdx.x + 1) % 128];
}
__global__ void with_barrier_kernel(float* out) {
  __shared__ float s[128];
  s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 128];
}
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.0f;
}
__global__ void early_exit_barrier_kernel(float* out, int n) {
  if (int(threadIdx.x) >= n) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}
__global__ void shfl_exited_lane_kernel(float* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}
__global__ void shfl_partial_warp_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}
// Reads dynamic shared memory before any thread wrote it.
__global__ void uninit_dynamic_smem_kernel(float* out) {
  LORA4J_DYNAMIC_SHARED(float, d);
  out[threadIdx.x] = d[threadIdx.x];
}
__global__ void big_static_smem_kernel(float* out) {
  __shared__ float s[8192];  // 32 KiB static
  s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
__global__ void write_kernel(float* p, float v) { p[threadIdx.x] = v; }
__global__ void add_kernel(float* p, float v) { p[threadIdx.x] += v; }

// ---- documented primitives ----------------------------------------------------------------------
__global__ void shuffles_kernel(int* out) {
  const int lane = threadIdx.x & 31, v = 100 + int(threadIdx.x);
  out[0 * 64 + threadIdx.x] = __shfl_sync(0xffffffffu, v, 5);          // lane 5 of the warp
  out[1 * 64 + threadIdx.x] = __shfl_sync(0xffffffffu, v, 3, 8);       // lane 3 of each 8-group
  out[2 * 64 + threadIdx.x] = __shfl_up_sync(0xffffffffu, v, 2, 16);   // own value below 2
  out[3 * 64 + threadIdx.x] = __shfl_down_sync(0xffffffffu, v, 4);     // own value at 28..31
  out[4 * 64 + threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 16);
  out[5 * 64 + threadIdx.x] = int(__ballot_sync(0xffffffffu, lane % 3 == 0));
  out[6 * 64 + threadIdx.x] = __any_sync(0xffffffffu, lane == 7);
  out[7 * 64 + threadIdx.x] = __all_sync(0xffffffffu, lane < 31);
}

// mma.sync through the kernels' wrapper path: every lane loads its fragments by the PTX ISA
// layout, written out here independently (element tables of "Matrix Fragments for
// mma.m16n8k16 with floating point type").
__global__ void mma_kernel(const uint16_t* A, const uint16_t* B, float* D) {  // A 16x16, B 16x8 (k, n), D 16x8
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int r = 0; r < 4; r++) {
    uint16_t e[2];
    for (int h = 0; h < 2; h++) {
      const int i = 2 * r + h;
      const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      e[h] = A[row * 16 + col];
    }
    a[r] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
  }
  for (int r = 0; r < 2; r++) {
    uint16_t e[2];
    for (int h = 0; h < 2; h++) {
      const int i = 2 * r + h;
      e[h] = B[(t * 2 + (i & 1) + (i >= 2 ? 8 : 0)) * 8 + g];
    }
    b[r] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
  }
  for (int i = 0; i < 4; i++) c[i] = 0.5f;
  lora4j_emu::mma_m16n8k16_bf16(d, a, b, c);
  for (int i = 0; i < 4; i++) D[(g + (i >= 2 ? 8 : 0)) * 8 + t * 2 + (i & 1)] = d[i];
}

float* dev_floats(size_t n) {
  float* p = nullptr;
  if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) throw std::runtime_error("cudaMalloc");
  return p;
}
std::vector<float> down(const float* p, size_t n) {
  std::vector<float> h(n);
  cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
  return h;
}

void run() {
  float* out = dev_floats(1024);
  std::vector<float> h;

  // Memory is poisoned.
  h = down(out, 4);
  check("cudaMalloc memory reads as NaN", std::isnan(h[0]) && std::isnan(h[3]), "first floats NaN");

  // Barriers.
  LORA4J_LAUNCH(1, 128, 0, nullptr, missing_barrier_kernel)(out);
  h = down(out, 128);
  int nan = 0;
  for (float v : h) nan += std::isnan(v);
  check("missing __syncthreads reads unwritten (NaN) shared memory", nan > 0,
        std::to_string(nan) + " of 128 threads read NaN");
  LORA4J_LAUNCH(1, 128, 0, nullptr, with_barrier_kernel)(out);
  h = down(out, 128);
  bool right = true;
  for (int i = 0; i < 128; i++) right = right && h[i] == float((i + 1) % 128);
  check("with __syncthreads every neighbour value arrives", right, "");
  std::string e = error_of([&] {
    LORA4J_LAUNCH(1, 64, 0, nullptr, divergent_barrier_kernel)(out);
    cudaDeviceSynchronize();
  });
  check("__syncthreads in divergent code is an error naming the kernel",
        has(e, "divergent_barrier_kernel") && has(e, "__syncthreads"), e.substr(0, 120));
  e = error_of([&] {
    LORA4J_LAUNCH(1, 64, 0, nullptr, early_exit_barrier_kernel)(out, 40);
    cudaDeviceSynchronize();
  });
  check("__syncthreads after some threads exited is an error", has(e, "exited"), e.substr(0, 120));

  // Warp operations.
  e = error_of([&] {
    LORA4J_LAUNCH(1, 32, 0, nullptr, shfl_exited_lane_kernel)(out);
    cudaDeviceSynchronize();
  });
  check("full-mask shuffle with an exited lane is an error", has(e, "shfl_exited_lane_kernel") && has(e, "exited"),
        e.substr(0, 120));
  e = error_of([&] {
    LORA4J_LAUNCH(1, 48, 0, nullptr, shfl_partial_warp_kernel)(out);
    cudaDeviceSynchronize();
  });
  check("full-mask shuffle in a partial warp is an error", has(e, "does not exist"), e.substr(0, 120));
  {
    int* o = nullptr;
    cudaMalloc(&o, 8 * 64 * sizeof(int));
    LORA4J_LAUNCH(1, 64, 0, nullptr, shuffles_kernel)(o);
    std::vector<int> r(8 * 64);
    cudaMemcpy(r.data(), o, r.size() * sizeof(int), cudaMemcpyDeviceToHost);
    bool ok = true;
    for (int t = 0; t < 64; t++) {
      const int lane = t & 31, w = t - lane, v = 100 + t;
      unsigned ballot = 0;
      for (int l = 0; l < 32; l++) ballot |= (l % 3 == 0 ? 1u : 0u) << l;
      ok = ok && r[t] == 100 + w + 5;
      ok = ok && r[64 + t] == 100 + w + (lane & ~7) + 3;
      ok = ok && r[128 + t] == ((lane & 15) >= 2 ? v - 2 : v);
      ok = ok && r[192 + t] == (lane + 4 < 32 ? v + 4 : v);
      ok = ok && r[256 + t] == 100 + w + (lane ^ 16);
      ok = ok && unsigned(r[320 + t]) == ballot;
      ok = ok && r[384 + t] == 1 && r[448 + t] == 0;
    }
    check("shfl idx/up/down/xor with widths, ballot, any, all", ok, "Programming Guide semantics");
    cudaFree(o);
  }

  // mma.sync m16n8k16 against a plain product of the same bf16 values.
  {
    std::vector<uint16_t> a(256), b(128);
    auto bf = [](float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); };
    for (int i = 0; i < 256; i++) a[i] = bf(float((i * 37) % 23) / 8.0f - 1.25f);
    for (int i = 0; i < 128; i++) b[i] = bf(float((i * 11) % 19) / 4.0f - 2.0f);
    uint16_t *da = nullptr, *db = nullptr;
    float* dd = dev_floats(128);
    cudaMalloc(&da, 512);
    cudaMalloc(&db, 256);
    cudaMemcpy(da, a.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), 256, cudaMemcpyHostToDevice);
    LORA4J_LAUNCH(1, 32, 0, nullptr, mma_kernel)(da, db, dd);
    h = down(dd, 128);
    double worst = 0;
    for (int m = 0; m < 16; m++)
      for (int n = 0; n < 8; n++) {
        double ref = 0.5;
        for (int k = 0; k < 16; k++)
          ref += double(__bfloat162float(__ushort_as_bfloat16(a[m * 16 + k]))) *
                 __bfloat162float(__ushort_as_bfloat16(b[k * 8 + n]));
        worst = std::max(worst, std::fabs(ref - h[m * 8 + n]));
      }
    check("mma.m16n8k16 bf16: D = A·B + C by the PTX fragment layout", worst < 1e-5, "max |err| " + std::to_string(worst));
    cudaFree(da);
    cudaFree(db);
    cudaFree(dd);
  }

  // Shared memory: poisoned at block start, limits of the profile.
  LORA4J_LAUNCH(1, 64, 256, nullptr, uninit_dynamic_smem_kernel)(out);
  h = down(out, 64);
  check("dynamic shared memory starts as NaN", std::isnan(h[0]) && std::isnan(h[63]), "");
  cudaGetLastError();
  LORA4J_LAUNCH(1, 64, 49 * 1024, nullptr, uninit_dynamic_smem_kernel)(out);
  cudaError_t le = cudaGetLastError();
  check("49 KiB dynamic shared memory without opt-in fails to launch", le == cudaErrorInvalidValue, cudaGetErrorString(le));
  LORA4J_LAUNCH(1, 64, 20 * 1024, nullptr, big_static_smem_kernel)(out);
  le = cudaGetLastError();
  check("32 KiB static + 20 KiB dynamic exceeds 48 KiB", le == cudaErrorInvalidValue, cudaGetErrorString(le));
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  const int over = int(p.sharedMemPerBlockOptin) + 1024;
  le = cudaFuncSetAttribute(uninit_dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, over);
  cudaGetLastError();
  check("opt-in above the profile's maximum is refused", le == cudaErrorInvalidValue,
        std::string(p.name) + ": " + std::to_string(p.sharedMemPerBlockOptin) + " bytes");
  le = cudaFuncSetAttribute(uninit_dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
  LORA4J_LAUNCH(1, 64, 64 * 1024, nullptr, uninit_dynamic_smem_kernel)(out);
  check("64 KiB after opt-in launches", le == cudaSuccess && cudaGetLastError() == cudaSuccess, "");
  cudaDeviceSynchronize();
  LORA4J_LAUNCH(1, 1025, 0, nullptr, write_kernel)(out, 1.0f);
  check("1025 threads per block fail to launch", cudaGetLastError() == cudaErrorInvalidConfiguration, "");
  LORA4J_LAUNCH(dim3(1, 65536), 32, 0, nullptr, write_kernel)(out, 1.0f);
  check("grid y of 65536 fails to launch", cudaGetLastError() == cudaErrorInvalidConfiguration, "");

  // Streams: independent streams run in an order that differs from issue order; an event wait
  // orders them.
  cudaStream_t s1, s2;
  cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking);
  cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking);
  cudaEvent_t ev;
  cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  std::set<float> seen;
  bool ordered = true;
  for (int trial = 0; trial < 24; trial++) {
    LORA4J_LAUNCH(1, 32, 0, s1, write_kernel)(out, 1.0f);
    LORA4J_LAUNCH(1, 32, 0, s2, write_kernel)(out, 2.0f);  // no wait: a race between streams
    cudaDeviceSynchronize();
    seen.insert(down(out, 1)[0]);
    LORA4J_LAUNCH(1, 32, 0, s1, write_kernel)(out, 1.0f);
    cudaEventRecord(ev, s1);
    cudaStreamWaitEvent(s2, ev, 0);
    LORA4J_LAUNCH(1, 32, 0, s2, add_kernel)(out, 2.0f);
    cudaStreamSynchronize(s2);
    ordered = ordered && down(out, 1)[0] == 3.0f;
  }
  check("unordered streams run in both orders (24 trials)", seen.size() == 2, std::to_string(seen.size()) + " outcomes");
  check("cudaStreamWaitEvent orders the streams (24 trials)", ordered, "");
  // cudaFreeAsync frees in stream order: the kernel queued before it still sees the memory.
  float* tmp = nullptr;
  cudaMallocAsync(&tmp, 32 * sizeof(float), s1);
  LORA4J_LAUNCH(1, 32, 0, s1, write_kernel)(tmp, 4.0f);
  LORA4J_LAUNCH(1, 32, 0, s1, add_kernel)(out, 0.0f);
  cudaMemcpyAsync(out, tmp, 32 * sizeof(float), cudaMemcpyDeviceToDevice, s1);
  cudaFreeAsync(tmp, s1);
  cudaStreamSynchronize(s1);
  check("cudaMallocAsync/FreeAsync in stream order", down(out, 1)[0] == 4.0f, "");
  // An event destroyed while its record is still queued (CUDA allows it): the record must not
  // write into the freed event (ASan reports it in CI's sanitizer run).
  cudaEvent_t gone;
  cudaEventCreate(&gone);
  LORA4J_LAUNCH(1, 32, 0, s1, write_kernel)(out, 5.0f);
  cudaEventRecord(gone, s1);
  cudaEventDestroy(gone);
  cudaStreamSynchronize(s1);
  check("an event destroyed before its queued record ran", down(out, 1)[0] == 5.0f, "");
  cudaEventDestroy(ev);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
  cudaFree(out);
}

}  // namespace

int main() {
  run();
  std::printf("== emu selftest: %d checks, %d failed ==\n", g_checks, g_failed);
  return g_failed ? 1 : 0;
}
