// The native harness (native/tests, one executable: lora4j_harness), after ggml's
// test-backend-ops: one registry of cases per mode, one RNG, one result format.
//   test   CPU ops vs plain scalar / double references (NF4; transformer ops: mode grad too)
//   grad   transformer ops' backward vs central finite differences (tests/ops/test_cpu.cpp)
//   golden PATH   byte-exact NF4 vs the PyTorch golden vectors
//   cuda   every lora4j_cuda_* op vs its CPU twin (real GPU or the emulator, native/emu)
//   perf [cpu|cuda]   timings as ratios to ceilings measured in the same run
// Shared helpers: seeded RNG, bit conversions, the plain scalar NF4 reference, checks with
// tolerances, timing. Nothing here calls the library's fast paths: the reference is written out
// plainly so that it can be read against DESIGN.md §4.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <time.h>

#include "lora4j/runtime.h"

namespace h {

// ---- registry ---------------------------------------------------------------------------------
// A case is a named function of one mode; files register theirs at static initialisation:
//   const h::Register reg_x("cuda", "nf4 matmul", [] { ... });
// main.cpp runs the cases of the requested mode in registration order, each in a try block.
struct Case {
  std::string mode, name;
  std::function<void()> run;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
struct Register {
  Register(const char* mode, const char* name, std::function<void()> run) {
    cases().push_back({mode, name, std::move(run)});
  }
};
inline std::string& golden_path() {  // the PATH of `golden PATH`
  static std::string p;
  return p;
}
// The emulated device (native/emu) runs the small shapes only: the large ones add time, not
// coverage (same edge tiles, same code paths).
inline bool emulated_device() {
  return lora4j_cuda_device_count() > 0 &&
         std::string(lora4j_cuda_device_info(0)).find("(emulated)") != std::string::npos;
}

// ---- results ------------------------------------------------------------------------------
struct Row {
  std::string name;
  bool pass;
  std::string detail;
};
inline std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}
inline void record(const std::string& name, bool pass, const std::string& detail) {
  rows().push_back({name, pass, detail});
  std::printf("%-4s %-46s %s\n", pass ? "ok" : "FAIL", name.c_str(), detail.c_str());
  std::fflush(stdout);
}
inline int finish(const char* title) {
  int fails = 0;
  for (auto& r : rows()) fails += !r.pass;
  std::printf("\n== %s: %zu checks, %d failed ==\n", title, rows().size(), fails);
  std::printf("%-4s | %-46s | %s\n", "", "check", "detail");
  for (auto& r : rows())
    std::printf("%-4s | %-46s | %s\n", r.pass ? "ok" : "FAIL", r.name.c_str(), r.detail.c_str());
  return fails ? 1 : 0;
}

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---- RNG (splitmix64; seeded per case) ----------------------------------------------------
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  float sym(float a) { return float((2.0 * uniform() - 1.0) * a); }  // [-a, a)
  int32_t below(int32_t n) { return int32_t(uniform() * n); }        // [0, n)
  float normal() {  // Box-Muller
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
};

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}

inline std::vector<float> rand_vec(Rng& rng, size_t n, float a) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.sym(a);
  return v;
}
inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- checks (checks.cpp) ------------------------------------------------------------------
// Pass iff every element is finite and |got - ref| <= atol + rtol * |ref|.
bool check_close(const std::string& name, const float* got, const double* ref, size_t n,
                 double atol, double rtol);
inline bool check_close(const std::string& name, const float* got, const std::vector<double>& ref,
                        double atol, double rtol) {
  return check_close(name, got, ref.data(), ref.size(), atol, rtol);
}
inline bool check_true(const std::string& name, bool cond, const std::string& detail) {
  record(name, cond, detail);
  return cond;
}
// Central finite differences of a double-precision loss against a kernel's gradient.
bool fd_check(const std::string& name, std::vector<double>& param,
              const std::function<double()>& loss, const float* grad, size_t max_points,
              double atol, double rtol);

// ---- bit conversions (plain, no intrinsics) -----------------------------------------------
inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float bf16_to_f32(uint16_t b) { return u2f(uint32_t(b) << 16); }
// fp32 -> bf16, round to nearest even (finite inputs).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
// IEEE half -> float, written out (subnormals, inf, nan).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0) {
    float v = std::ldexp(float(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return u2f(sign | 0x7f800000 | (man << 13));
  return u2f(sign | (uint32_t(exp - 15 + 127) << 23) | (man << 13));
}
// float -> half, round to nearest even, for generating test inputs in range.
inline uint16_t f32_to_f16(float f) {
  // Search the nearest of the 2^16 halves would be slow; use the classic rounding instead.
  uint32_t u = f2u(f);
  const uint32_t sign = (u >> 16) & 0x8000;
  if (std::isnan(f)) return uint16_t(sign | 0x7e00);
  float a = std::fabs(f);
  if (a >= 65520.0f) return uint16_t(sign | 0x7c00);
  if (a < 6.103515625e-05f) {  // subnormal half: multiples of 2^-24
    float q = std::nearbyint(a * 16777216.0f);
    return uint16_t(sign | uint32_t(q));
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  float q = std::nearbyint(m * 2048.0f);  // 11 significant bits
  if (q == 2048.0f) {
    q = 1024.0f;
    e++;
  }
  return uint16_t(sign | uint32_t(e - 1 + 15) << 10 | (uint32_t(q) - 1024));
}

// Keep a value out of FMA contraction (reference arithmetic must round like bitsandbytes).
inline float nc(float v) {
  asm("" : "+x"(v));
  return v;
}

// ---- the plain NF4 reference ----------------------------------------------------------------
// bitsandbytes csrc/kernels.cu dDequantizeNF4 values (same provenance as native/cpu/nf4.cpp;
// deliberately a second copy so the reference does not read the library's table).
static const float kRefNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f,
                                  -0.39491748809814453f, -0.28444138169288635f,
                                  -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                  0.07958029955625534f, 0.16093020141124725f,
                                  0.24611230194568634f, 0.33791524171829224f,
                                  0.44070982933044434f, 0.5626170039176941f,
                                  0.7229568362236023f, 1.0f};

// bitsandbytes csrc/kernels.cu dQuantizeNF4, the decision tree as written there.
inline uint8_t ref_nf4_tree(float x) {
  if (x > 0.03979014977812767f)
    if (x > 0.3893125355243683f)
      if (x > 0.6427869200706482f)
        return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      else
        return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    else if (x > 0.2035212516784668f)
      return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    else
      return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  else if (x > -0.33967943489551544f)
    if (x > -0.13791173323988914f)
      return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    else
      return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  else if (x > -0.6106329262256622f)
    return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  else
    return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

inline void ref_quantize(const std::vector<float>& w, int blocksize, std::vector<uint8_t>& packed,
                         std::vector<float>& absmax) {
  const int64_t n = int64_t(w.size());
  const int64_t nb = (n + blocksize - 1) / blocksize;
  absmax.assign(size_t(nb), 0.0f);
  packed.assign(size_t((n + 1) / 2), 0);
  for (int64_t b = 0; b < nb; b++) {
    float m = 0.0f;
    for (int64_t e = b * blocksize; e < std::min(n, (b + 1) * blocksize); e++)
      m = std::fmax(m, std::fabs(w[size_t(e)]));
    absmax[size_t(b)] = m;
  }
  // Odd n: bitsandbytes pads the last block with 0.0, which is coded like any element.
  for (int64_t e = 0; e < n + (n & 1); e++) {
    const float inv = 1.0f / absmax[size_t(e / blocksize)];
    const uint8_t q = ref_nf4_tree((e < n ? w[size_t(e)] : 0.0f) * inv);
    packed[size_t(e / 2)] |= uint8_t((e % 2 == 0) ? q << 4 : q);
  }
}

inline float ref_deq(const uint8_t* packed, const float* absmax, int blocksize, int64_t e) {
  const uint8_t b = packed[e / 2];
  const int q = (e % 2 == 0) ? (b >> 4) : (b & 15);
  return kRefNf4[q] * absmax[e / blocksize];
}

// bitsandbytes csrc/kernels.cu dQuantize<0>, written out again for the reference.
inline uint8_t ref_dquantize(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f, val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) return uint8_t(x > (upper + val) * 0.5f ? upper_pivot : pivot);
  return uint8_t(x < (lower + val) * 0.5f ? lower_pivot : pivot);
}

// ---- timing ---------------------------------------------------------------------------------
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
// CPU seconds of the calling thread: what a 1-thread kernel costs on a shared machine, where wall
// time measures the neighbours' load as well.
inline double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}
// Best-of-`reps` seconds of f() after one warm-up call.
inline double time_best(int reps, const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    double t0 = now_s();
    f();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

}  // namespace h
