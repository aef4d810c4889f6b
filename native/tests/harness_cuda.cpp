// NF4 `cuda` and `perf cuda` cases of lora4j_harness: every lora4j_cuda_* NF4 op against its CPU
// twin on fresh random inputs, outputs poisoned (NaN for floats, 0xAB for bytes) before each
// call, and the kernel timings as ratios to ceilings measured in the same run. Uses only the
// public C API (runtime.h), so this file builds and links without CUDA headers; main.cpp skips
// the mode without a device. On the emulated device (native/emu) the large shapes are left out.
#include "harness.h"
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"

#include <cstdlib>
#include <stdexcept>

using h::fmt;
using h::record;

namespace {

// Fused NF4 matmul (bf16 tensor cores, fp32 accumulate) vs the fp32 CPU twin, per element:
//   |y_gpu - y_cpu| <= kBf16DotTol * Σ_k |x_k||w_k| + kBf16Atol
// X and W are each rounded to bf16 (relative error <= 2^-9 each), so every product is off by
// at most (2·2^-9 + 2^-18)|x w| < 3.91e-3 |x w|; fp32 accumulation on either side adds ~1e-5.
constexpr double kBf16DotTol = 4.0e-3;
constexpr double kBf16Atol = 1e-6;

struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : bytes(b) { p = lora4j_cuda_malloc(int64_t(b ? b : 1)); }
  ~Dev() { lora4j_cuda_free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() { return static_cast<T*>(p); }
  void up(const void* h) { lora4j_cuda_memcpy(p, h, int64_t(bytes), 1, nullptr); }
  void down(void* h) const { lora4j_cuda_memcpy(h, p, int64_t(bytes), 2, nullptr); }
  void poison(int v) { lora4j_cuda_memset(p, v, int64_t(bytes), nullptr); }
};

int64_t diff_bytes(const void* a, const void* b, size_t n) {
  int64_t d = 0;
  for (size_t i = 0; i < n; i++) d += static_cast<const uint8_t*>(a)[i] != static_cast<const uint8_t*>(b)[i];
  return d;
}

std::vector<uint8_t> to_raw(const std::vector<float>& v, int dtype) {
  std::vector<uint8_t> raw;
  if (dtype == LORA4J_DTYPE_F32) {
    raw.resize(v.size() * 4);
    std::memcpy(raw.data(), v.data(), raw.size());
  } else {
    raw.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); i++) {
      uint16_t b = dtype == LORA4J_DTYPE_BF16 ? h::f32_to_bf16(v[i]) : h::f32_to_f16(v[i]);
      std::memcpy(&raw[i * 2], &b, 2);
    }
  }
  return raw;
}

const char* dn(int d) { return d == LORA4J_DTYPE_F32 ? "f32" : d == LORA4J_DTYPE_BF16 ? "bf16" : "f16"; }

void cuda_quant_case(const std::string& name, const std::vector<float>& v, int dtype, int bs) {
  const int64_t n = int64_t(v.size()), nb = (n + bs - 1) / bs;
  const std::vector<uint8_t> raw = to_raw(v, dtype);
  std::vector<uint8_t> cp(static_cast<size_t>((n + 1) / 2));
  std::vector<float> ca(static_cast<size_t>(nb));
  lora4j_nf4_quantize(raw.data(), dtype, n, bs, cp.data(), ca.data());
  Dev dw(raw.size()), dp(cp.size()), da(ca.size() * 4), dd(static_cast<size_t>(n) * 4), db(static_cast<size_t>(n) * 2);
  dw.up(raw.data());
  dp.poison(0xAB);
  da.poison(0xFF);
  lora4j_cuda_nf4_quantize(dw.p, dtype, n, bs, dp.as<uint8_t>(), da.as<float>(), nullptr);
  lora4j_cuda_device_synchronize();
  std::vector<uint8_t> gp(cp.size());
  std::vector<float> ga(ca.size());
  dp.down(gp.data());
  da.down(ga.data());
  const int64_t d1 = diff_bytes(gp.data(), cp.data(), gp.size());
  const int64_t d2 = diff_bytes(ga.data(), ca.data(), ga.size() * 4);
  record("cuda quantize " + name + " " + dn(dtype), d1 == 0 && d2 == 0,
         fmt("n=%lld bs=%d packed_diff=%lld absmax_byte_diff=%lld", (long long)n, bs, (long long)d1, (long long)d2));
  if (dtype != LORA4J_DTYPE_F32) return;
  // Dequantize (fp32 and bf16) from the CPU's bytes.
  dp.up(cp.data());
  da.up(ca.data());
  dd.poison(0xFF);
  db.poison(0xFF);
  lora4j_cuda_nf4_dequantize(dp.as<uint8_t>(), da.as<float>(), n, bs, dd.as<float>(), nullptr);
  lora4j_cuda_nf4_dequantize_bf16(dp.as<uint8_t>(), da.as<float>(), n, bs, db.as<uint16_t>(), nullptr);
  lora4j_cuda_device_synchronize();
  std::vector<float> cd(static_cast<size_t>(n)), gd(static_cast<size_t>(n));
  std::vector<uint16_t> gb(static_cast<size_t>(n));
  lora4j_nf4_dequantize(cp.data(), ca.data(), n, bs, cd.data());
  dd.down(gd.data());
  db.down(gb.data());
  int64_t e1 = 0, e2 = 0;
  for (int64_t i = 0; i < n; i++) {
    e1 += h::f2u(gd[size_t(i)]) != h::f2u(cd[size_t(i)]);
    e2 += gb[size_t(i)] != h::f32_to_bf16(cd[size_t(i)]);
  }
  record("cuda dequantize f32 " + name, e1 == 0, fmt("n=%lld diff=%lld", (long long)n, (long long)e1));
  record("cuda dequantize bf16 " + name, e2 == 0, fmt("n=%lld diff vs RNE(cpu)=%lld", (long long)n, (long long)e2));
}

void cuda_nonfinite() {
  for (int d : {LORA4J_DTYPE_F32, LORA4J_DTYPE_BF16, LORA4J_DTYPE_F16}) {
    std::vector<float> v = h::randn(5000, 31);
    v[4321] = NAN;
    v[4999] = INFINITY;
    const std::vector<uint8_t> raw = to_raw(v, d);
    Dev dw(raw.size()), dp(2500), da(79 * 4);
    dw.up(raw.data());
    std::string msg;
    try {
      lora4j_cuda_nf4_quantize(dw.p, d, 5000, 64, dp.as<uint8_t>(), da.as<float>(), nullptr);
      lora4j_cuda_device_synchronize();
    } catch (const std::runtime_error& e) {
      msg = e.what();
    }
    record(fmt("cuda quantize NaN input throws (%s)", dn(d)), msg.find("element 4321") != std::string::npos,
           msg.empty() ? "no exception" : msg.substr(0, 70));
  }
}

void cuda_double_quant(int64_t nb, uint64_t seed) {
  std::vector<float> a = h::randn(static_cast<size_t>(nb), seed);
  for (auto& x : a) x = std::fabs(x) * 0.01f + 1e-4f;
  const int64_t ng = (nb + 255) / 256;
  std::vector<uint8_t> cq(static_cast<size_t>(nb)), gq(static_cast<size_t>(nb));
  std::vector<float> cn(static_cast<size_t>(ng)), gn(static_cast<size_t>(ng)), cback(static_cast<size_t>(nb)), gback(static_cast<size_t>(nb));
  float coff = 0, goff = NAN;
  lora4j_nf4_double_quant(a.data(), nb, cq.data(), cn.data(), &coff);
  lora4j_nf4_dequant_absmax(cq.data(), cn.data(), coff, nb, cback.data());
  Dev da(static_cast<size_t>(nb) * 4), dq(static_cast<size_t>(nb)), dnst(static_cast<size_t>(ng) * 4), doff(4), dback(static_cast<size_t>(nb) * 4);
  da.up(a.data());
  dq.poison(0xAB);
  dnst.poison(0xFF);
  doff.poison(0xFF);
  dback.poison(0xFF);
  lora4j_cuda_nf4_double_quant(da.as<float>(), nb, dq.as<uint8_t>(), dnst.as<float>(), doff.as<float>(), nullptr);
  lora4j_cuda_device_synchronize();
  dq.down(gq.data());
  dnst.down(gn.data());
  doff.down(&goff);
  // dequant_absmax from the CPU's codes, so each op is checked on its own.
  dq.up(cq.data());
  dnst.up(cn.data());
  lora4j_cuda_nf4_dequant_absmax(dq.as<uint8_t>(), dnst.as<float>(), coff, nb, dback.as<float>(), nullptr);
  lora4j_cuda_device_synchronize();
  dback.down(gback.data());
  const int64_t d1 = diff_bytes(gq.data(), cq.data(), gq.size());
  const int64_t d2 = diff_bytes(gn.data(), cn.data(), gn.size() * 4);
  const bool off_ok = h::f2u(goff) == h::f2u(coff);
  record(fmt("cuda double quant nblocks=%lld", (long long)nb), d1 == 0 && d2 == 0 && off_ok,
         fmt("q_diff=%lld nested_diff=%lld offset %s", (long long)d1, (long long)d2, off_ok ? "equal" : "DIFFERS"));
  const int64_t d3 = diff_bytes(gback.data(), cback.data(), gback.size() * 4);
  record(fmt("cuda dequant_absmax nblocks=%lld", (long long)nb), d3 == 0, fmt("byte_diff=%lld", (long long)d3));
}

struct Err {
  double max_err = 0, max_ratio = 0, nmse = 0;
  int64_t nonfinite = 0;
};

// a, b: [rows, K] and [cols, K] as used for y[r, c] = Σ_k a[r,k] b[c,k] (absdot per element).
Err compare(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& absdot) {
  Err e;
  double se = 0, sr = 0;
  for (size_t i = 0; i < got.size(); i++) {
    if (!std::isfinite(got[i])) {
      e.nonfinite++;
      continue;
    }
    const double d = std::fabs(double(got[i]) - ref[i]);
    e.max_err = std::max(e.max_err, d);
    e.max_ratio = std::max(e.max_ratio, d / (kBf16DotTol * absdot[i] + kBf16Atol));
    se += d * d;
    sr += double(ref[i]) * ref[i];
  }
  e.nmse = sr > 0 ? se / sr : se;
  return e;
}

void cuda_matmul_case(int64_t T, int64_t in, int64_t out, int bs, uint64_t seed) {
  const int64_t n = in * out, nb = (n + bs - 1) / bs;
  std::vector<float> w = h::randn(static_cast<size_t>(n), seed, 0.05f);
  std::vector<uint8_t> p(static_cast<size_t>((n + 1) / 2));
  std::vector<float> a(static_cast<size_t>(nb)), wd(static_cast<size_t>(n));
  lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, bs, p.data(), a.data());
  lora4j_nf4_dequantize(p.data(), a.data(), n, bs, wd.data());
  std::vector<float> x = h::randn(static_cast<size_t>(T * in), seed + 1), dy = h::randn(static_cast<size_t>(T * out), seed + 2);
  std::vector<float> cy(static_cast<size_t>(T * out)), cdx(static_cast<size_t>(T * in)), gy(cy.size()), gdx(cdx.size());
  lora4j_nf4_matmul_fwd(x.data(), T, in, out, p.data(), a.data(), bs, cy.data());
  lora4j_nf4_matmul_bwd_input(dy.data(), T, in, out, p.data(), a.data(), bs, cdx.data());
  std::vector<double> ady(cy.size(), 0), adx(cdx.size(), 0);
  for (int64_t t = 0; t < T; t++)
    for (int64_t o = 0; o < out; o++) {
      const float* xr = &x[size_t(t * in)];
      const float* wr = &wd[size_t(o * in)];
      const double g = std::fabs(double(dy[size_t(t * out + o)]));
      double s = 0;
      for (int64_t i = 0; i < in; i++) {
        s += std::fabs(double(xr[i]) * wr[i]);
        adx[size_t(t * in + i)] += g * std::fabs(double(wr[i]));
      }
      ady[size_t(t * out + o)] = s;
    }
  Dev dx_(x.size() * 4), ddy(dy.size() * 4), dp(p.size()), da(a.size() * 4), dy_(cy.size() * 4), ddx(cdx.size() * 4);
  dx_.up(x.data());
  ddy.up(dy.data());
  dp.up(p.data());
  da.up(a.data());
  dy_.poison(0xFF);
  ddx.poison(0xFF);
  lora4j_cuda_nf4_matmul_fwd(dx_.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), bs, dy_.as<float>(), nullptr);
  lora4j_cuda_nf4_matmul_bwd_input(ddy.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), bs, ddx.as<float>(), nullptr);
  lora4j_cuda_device_synchronize();
  dy_.down(gy.data());
  ddx.down(gdx.data());
  Err e = compare(gy, cy, ady);
  record(fmt("cuda matmul_fwd T=%lld in=%lld out=%lld bs=%d", (long long)T, (long long)in, (long long)out, bs),
         e.nonfinite == 0 && e.max_ratio <= 1.0,
         fmt("max_err=%.2e err/tol=%.3f nmse=%.1e nonfinite=%lld", e.max_err, e.max_ratio, e.nmse, (long long)e.nonfinite));
  e = compare(gdx, cdx, adx);
  record(fmt("cuda matmul_bwd_input T=%lld in=%lld out=%lld bs=%d", (long long)T, (long long)in, (long long)out, bs),
         e.nonfinite == 0 && e.max_ratio <= 1.0,
         fmt("max_err=%.2e err/tol=%.3f nmse=%.1e nonfinite=%lld", e.max_err, e.max_ratio, e.nmse, (long long)e.nonfinite));
  // Dense bf16 reference kernel on the dequantized weight (rounded to bf16).
  std::vector<uint16_t> wb(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) wb[size_t(i)] = h::f32_to_bf16(wd[size_t(i)]);
  Dev dwb(wb.size() * 2);
  dwb.up(wb.data());
  dy_.poison(0xFF);
  lora4j_cuda_bf16_matmul_fwd(dx_.as<float>(), T, in, out, dwb.as<uint16_t>(), dy_.as<float>(), nullptr);
  lora4j_cuda_device_synchronize();
  dy_.down(gy.data());
  e = compare(gy, cy, ady);
  record(fmt("cuda bf16_matmul_fwd T=%lld in=%lld out=%lld", (long long)T, (long long)in, (long long)out),
         e.nonfinite == 0 && e.max_ratio <= 1.0,
         fmt("max_err=%.2e err/tol=%.3f nmse=%.1e nonfinite=%lld", e.max_err, e.max_ratio, e.nmse, (long long)e.nonfinite));
}

void cuda_quant() {
  for (int d : {LORA4J_DTYPE_F32, LORA4J_DTYPE_BF16, LORA4J_DTYPE_F16}) {
    cuda_quant_case("rows288x4 bs64", h::randn(288 * 4, 21, 0.02f), d, 64);
    cuda_quant_case("odd n=1001", h::randn(1001, 22), d, 64);
    cuda_quant_case("n=1", h::randn(1, 23), d, 64);
    cuda_quant_case("bs32", h::randn(32 * 37 + 5, 24, 3.0f), d, 32);
    cuda_quant_case("bs4096", h::randn(4096 * 3 + 7, 25), d, 4096);
    std::vector<float> z = h::randn(64 * 5 + 9, 26);
    std::fill(z.begin() + 64, z.begin() + 128, 0.0f);
    std::fill(z.begin() + 320, z.end(), 0.0f);
    cuda_quant_case("zero blocks", z, d, 64);
    if (!h::emulated_device()) cuda_quant_case("large n=2^22+3", h::randn((1 << 22) + 3, 27), d, 64);
  }
}

void cuda_matmul() {
  struct S {
    int64_t in, out;
    int bs;
    bool large;
  };
  const S shapes[] = {{288, 96, 64, false}, {100, 37, 32, false}, {33, 17, 32, false},
                      {513, 40, 4096, false}, {1024, 1000, 64, true}, {768, 2048, 64, true}};
  const bool emulated = h::emulated_device();
  uint64_t seed = 5000;
  for (int64_t T : {1, 7, 33, 128, 300})
    for (const S& s : shapes) {
      seed += 10;
      // Emulated: the large shapes at one T (edge tiles in M there, multi-tile N and K).
      if (emulated && s.large && T != 33) continue;
      cuda_matmul_case(T, s.in, s.out, s.bs, seed);
    }
}

const h::Register reg_cuda_quant("cuda", "nf4 quantize/dequantize", cuda_quant);
const h::Register reg_cuda_nonfinite("cuda", "nf4 non-finite input", cuda_nonfinite);
const h::Register reg_cuda_double_quant("cuda", "nf4 double quantization", [] {
  for (int64_t nb : {1, 255, 256, 257, 5000, 100000}) cuda_double_quant(nb, 40 + nb);
});
const h::Register reg_cuda_matmul("cuda", "nf4 matmul", cuda_matmul);

void nf4_cuda_perf() {
  auto time_dev = [](int reps, const std::function<void()>& f) {
    return h::time_best(reps, [&] {
      f();
      lora4j_cuda_device_synchronize();
    });
  };
  // Ceiling 1: device-to-device copy bandwidth (read + write bytes / time).
  const size_t cbytes = size_t(1) << 30;
  double copy_bw;
  {
    Dev s(cbytes), d(cbytes);
    s.poison(1);
    const double t = time_dev(10, [&] { lora4j_cuda_memcpy(d.p, s.p, int64_t(cbytes), 3, nullptr); });
    copy_bw = 2.0 * double(cbytes) / t;
    record("perf cuda memcpy D2D 1 GiB", true, fmt("%.0f GB/s (read+write): the ceiling below", copy_bw * 1e-9));
  }
  // W: 4096 x 14336 NF4 (blocksize 64), quantized on the device from random fp32.
  const int64_t K1 = 4096, K2 = 14336, n = K1 * K2, nb = n / 64, T = 4096;
  std::vector<float> hw = h::randn(static_cast<size_t>(n), 9, 0.02f);
  Dev dw32(static_cast<size_t>(n) * 4), dp(static_cast<size_t>(n / 2)), da(static_cast<size_t>(nb) * 4), dout(static_cast<size_t>(n) * 4), dbf(static_cast<size_t>(n) * 2);
  dw32.up(hw.data());
  hw.clear();
  hw.shrink_to_fit();
  lora4j_cuda_nf4_quantize(dw32.p, LORA4J_DTYPE_F32, n, 64, dp.as<uint8_t>(), da.as<float>(), nullptr);
  const double tq = time_dev(3, [&] {
    lora4j_cuda_nf4_quantize(dw32.p, LORA4J_DTYPE_F32, n, 64, dp.as<uint8_t>(), da.as<float>(), nullptr);
  });
  const double qbytes = 4.0 * n + n / 2 + 4.0 * nb;
  record("perf cuda quantize f32 58.7M", true,
         fmt("%.0f GB/s, %.2f of D2D copy", qbytes / tq * 1e-9, qbytes / tq / copy_bw));
  const double t32 = time_dev(10, [&] {
    lora4j_cuda_nf4_dequantize(dp.as<uint8_t>(), da.as<float>(), n, 64, dout.as<float>(), nullptr);
  });
  const double b32 = n / 2.0 + 4.0 * nb + 4.0 * n;
  record("perf cuda dequantize f32 58.7M", b32 / t32 / copy_bw >= 0.8,
         fmt("%.0f GB/s, %.2f of D2D copy (goal >= 0.8)", b32 / t32 * 1e-9, b32 / t32 / copy_bw));
  const double t16 = time_dev(10, [&] {
    lora4j_cuda_nf4_dequantize_bf16(dp.as<uint8_t>(), da.as<float>(), n, 64, dbf.as<uint16_t>(), nullptr);
  });
  const double b16 = n / 2.0 + 4.0 * nb + 2.0 * n;
  record("perf cuda dequantize bf16 58.7M", b16 / t16 / copy_bw >= 0.8,
         fmt("%.0f GB/s, %.2f of D2D copy (goal >= 0.8)", b16 / t16 * 1e-9, b16 / t16 / copy_bw));
  dout.poison(0);  // free-standing fp32 buffer reused below as X / dY / Y storage
  // Matmuls at T = 4096: the same bytes serve as W [14336, 4096] (4096 -> 14336) and as
  // W [4096, 14336] (14336 -> 4096).
  Dev dx(static_cast<size_t>(T) * K2 * 4), dy(static_cast<size_t>(T) * K2 * 4);
  {
    std::vector<float> hx = h::randn(static_cast<size_t>(T) * K2, 10);
    dx.up(hx.data());
  }
  const double flops = 2.0 * double(T) * K1 * K2;
  for (auto [in, out] : {std::pair<int64_t, int64_t>{K1, K2}, {K2, K1}}) {
    const double tf = time_dev(5, [&] {
      lora4j_cuda_nf4_matmul_fwd(dx.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), 64, dy.as<float>(), nullptr);
    });
    const double tb = time_dev(5, [&] {
      lora4j_cuda_nf4_matmul_bwd_input(dx.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), 64, dy.as<float>(), nullptr);
    });
    const double tdense = time_dev(5, [&] {
      lora4j_cuda_bf16_matmul_fwd(dx.as<float>(), T, in, out, dbf.as<uint16_t>(), dy.as<float>(), nullptr);
    });
    const double tdq = time_dev(5, [&] {
      lora4j_cuda_nf4_dequantize_bf16(dp.as<uint8_t>(), da.as<float>(), n, 64, dbf.as<uint16_t>(), nullptr);
      lora4j_cuda_bf16_matmul_fwd(dx.as<float>(), T, in, out, dbf.as<uint16_t>(), dy.as<float>(), nullptr);
    });
    record(fmt("perf cuda fused fwd T=4096 %lld->%lld", (long long)in, (long long)out), true,
           fmt("%.1f TFLOP/s; dense bf16 (same main loop) %.1f; dequant+dense %.1f; fused/dequant+dense %.2f",
               flops / tf * 1e-12, flops / tdense * 1e-12, flops / tdq * 1e-12, tdq / tf));
    record(fmt("perf cuda fused bwd_input T=4096 %lld->%lld", (long long)in, (long long)out), true,
           fmt("%.1f TFLOP/s; ratio to dense bf16 fwd of the same size %.2f", flops / tb * 1e-12, tdense / tb));
  }
}

const h::Register reg_nf4_cuda_perf("perf-cuda", "nf4", nf4_cuda_perf);

}  // namespace
