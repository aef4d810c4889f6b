// NF4 cases of lora4j_harness (modes in harness.h, entry in main.cpp): `test` (CPU ops vs the
// plain scalar reference of harness.h), `golden PATH` (byte-exact vs the PyTorch golden vectors
// written by scripts/reference/nf4_reference.py, tests/resources/nf4/...), `perf cpu`.
#include "harness.h"
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

using h::fmt;
using h::record;

namespace {

// ---- tolerances ------------------------------------------------------------------------------
// CPU matmul vs fp64 (dequantize-then-matmul in double): per element
//   |y - ref| <= kMatAtol + kMatRtol*|ref| + kMatDotTol * Σ_k |x_k||w_k|
// fp32 accumulation over K <= 6000 terms with FMA/blocked sums stays below ~1e-6 of Σ|x||w|
// in practice (error grows like sqrt(K)·2^-24); kMatDotTol leaves a 10x margin.
constexpr double kMatAtol = 1e-6;
constexpr double kMatRtol = 1e-5;
constexpr double kMatDotTol = 1e-5;
// Double quantization: lora4j's offset is a double-precision mean rounded once; compared with
// the plain sequential double mean it may differ by 1 ulp at most.
constexpr int kOffsetUlps = 1;
// Golden offset: torch's fp32 cascade-sum mean; a few ulp from the exact mean.
constexpr int kGoldenOffsetUlps = 4;

int64_t ulp_diff(float a, float b) {
  int64_t ia = int32_t(h::f2u(a)), ib = int32_t(h::f2u(b));
  if (ia < 0) ia = int64_t(INT32_MIN) - ia;
  if (ib < 0) ib = int64_t(INT32_MIN) - ib;
  return ia > ib ? ia - ib : ib - ia;
}

const char* dtype_name(int d) { return d == LORA4J_DTYPE_F32 ? "f32" : d == LORA4J_DTYPE_BF16 ? "bf16" : "f16"; }

// Source values of `dtype` (raw bytes) and the fp32 values they represent.
void make_input(const std::vector<float>& v, int dtype, std::vector<uint8_t>& raw,
                std::vector<float>& as_f32) {
  as_f32.resize(v.size());
  if (dtype == LORA4J_DTYPE_F32) {
    raw.resize(v.size() * 4);
    std::memcpy(raw.data(), v.data(), raw.size());
    as_f32 = v;
    return;
  }
  raw.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); i++) {
    uint16_t b = dtype == LORA4J_DTYPE_BF16 ? h::f32_to_bf16(v[i]) : h::f32_to_f16(v[i]);
    std::memcpy(&raw[i * 2], &b, 2);
    as_f32[i] = dtype == LORA4J_DTYPE_BF16 ? h::bf16_to_f32(b) : h::f16_to_f32(b);
  }
}

// The bitsandbytes NF4 thresholds, one ulp either side, and the code values themselves, with a
// 1.0 first so that absmax = 1 and x == w.
std::vector<float> edge_values() {
  static const float th[15] = {-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f,
                               -0.33967943489551544f, -0.23460740596055984f,
                               -0.13791173323988914f, -0.045525018125772476f,
                               0.03979014977812767f, 0.1202552504837513f, 0.2035212516784668f,
                               0.2920137718319893f, 0.3893125355243683f, 0.5016634166240692f,
                               0.6427869200706482f, 0.8614784181118011f};
  std::vector<float> v = {1.0f};
  for (float t : th) {
    v.push_back(t);
    v.push_back(std::nextafter(t, 2.0f));
    v.push_back(std::nextafter(t, -2.0f));
  }
  for (float c : h::kRefNf4) v.push_back(c);
  v.push_back(-0.0f);
  v.push_back(-1.0f);
  while (v.size() % 64) v.push_back(0.0f);
  return v;
}

void test_quantize_case(const std::string& name, const std::vector<float>& v, int dtype, int bs) {
  std::vector<uint8_t> raw;
  std::vector<float> vf;
  make_input(v, dtype, raw, vf);
  const int64_t n = int64_t(vf.size());
  std::vector<uint8_t> rp;
  std::vector<float> ra;
  h::ref_quantize(vf, bs, rp, ra);
  std::vector<uint8_t> packed(rp.size(), 0xAB);
  std::vector<float> absmax(ra.size(), NAN);
  lora4j_nf4_quantize(raw.data(), dtype, n, bs, packed.data(), absmax.data());
  int64_t bad_b = 0, bad_a = 0;
  for (size_t i = 0; i < rp.size(); i++) bad_b += packed[i] != rp[i];
  for (size_t i = 0; i < ra.size(); i++) bad_a += h::f2u(absmax[i]) != h::f2u(ra[i]);
  record("quantize " + name + " " + dtype_name(dtype), bad_b == 0 && bad_a == 0,
         fmt("n=%lld bs=%d bytes_diff=%lld absmax_diff=%lld", (long long)n, bs, (long long)bad_b,
             (long long)bad_a));
  // Dequantize the reference bytes and compare with the scalar reference, element by element.
  std::vector<float> out(static_cast<size_t>(n), NAN);
  lora4j_nf4_dequantize(rp.data(), ra.data(), n, bs, out.data());
  int64_t bad_d = 0;
  for (int64_t e = 0; e < n; e++)
    bad_d += h::f2u(out[size_t(e)]) != h::f2u(h::ref_deq(rp.data(), ra.data(), bs, e));
  record("dequantize " + name + " " + dtype_name(dtype), bad_d == 0,
         fmt("n=%lld diff=%lld", (long long)n, (long long)bad_d));
}

void test_quantize() {
  const int dtypes[3] = {LORA4J_DTYPE_F32, LORA4J_DTYPE_BF16, LORA4J_DTYPE_F16};
  for (int d : dtypes) {
    test_quantize_case("rows288x4 bs64", h::randn(288 * 4, 11, 0.02f), d, 64);
    test_quantize_case("odd n=1001", h::randn(1001, 12), d, 64);
    test_quantize_case("n=1", h::randn(1, 13), d, 64);
    test_quantize_case("bs32", h::randn(32 * 37 + 5, 14, 3.0f), d, 32);
    test_quantize_case("bs4096", h::randn(4096 * 3 + 7, 15), d, 4096);
    std::vector<float> z = h::randn(64 * 5 + 9, 16);
    std::fill(z.begin() + 64, z.begin() + 128, 0.0f);     // an all-zero block
    std::fill(z.begin() + 320, z.end(), 0.0f);            // an all-zero short last block
    test_quantize_case("zero blocks", z, d, 64);
    test_quantize_case("threshold edges", edge_values(), d, 64);
    test_quantize_case("large n=2^20+3 (parallel)", h::randn((1 << 20) + 3, 17), d, 64);
  }
  // Odd-n tail: the last byte's low nibble codes bitsandbytes' 0.0 padding: 7 in a nonzero
  // block, 0 in an all-zero block (0 * inf = NaN).
  std::vector<float> v = h::randn(65, 18);
  std::vector<uint8_t> p(33);
  std::vector<float> a(2);
  lora4j_nf4_quantize(v.data(), LORA4J_DTYPE_F32, 65, 64, p.data(), a.data());
  record("quantize odd tail low nibble = code of 0.0", (p[32] & 0x0F) == 7, fmt("last byte 0x%02x", p[32]));
  std::vector<float> z(65, 0.0f);
  z[3] = 1.0f;  // block 0 nonzero, block 1 (element 64 alone) all zero
  lora4j_nf4_quantize(z.data(), LORA4J_DTYPE_F32, 65, 64, p.data(), a.data());
  record("quantize odd tail in an all-zero block = 0", (p[32] & 0x0F) == 0, fmt("last byte 0x%02x", p[32]));
}

void test_nonfinite() {
  const float bads[3] = {NAN, INFINITY, -INFINITY};
  const char* names[3] = {"NaN", "+Inf", "-Inf"};
  for (int k = 0; k < 3; k++) {
    for (int d : {LORA4J_DTYPE_F32, LORA4J_DTYPE_BF16, LORA4J_DTYPE_F16}) {
      std::vector<float> v = h::randn(1000, 19);
      v[777] = bads[k];
      v[901] = bads[k];  // a later bad element must not be the one reported
      std::vector<uint8_t> raw;
      std::vector<float> vf;
      make_input(v, d, raw, vf);
      std::vector<uint8_t> p(500);
      std::vector<float> a(16);
      std::string msg;
      try {
        lora4j_nf4_quantize(raw.data(), d, 1000, 64, p.data(), a.data());
      } catch (const std::runtime_error& e) {
        msg = e.what();
      }
      const bool ok = msg.find("element 777") != std::string::npos;
      record(fmt("quantize %s input throws (%s)", names[k], dtype_name(d)), ok,
             msg.empty() ? "no exception" : msg.substr(0, 70));
    }
  }
}

void test_dynamic_map() {
  float m[256];
  lora4j_dynamic_map(m);
  bool asc = true;
  for (int i = 1; i < 256; i++) asc &= m[i] > m[i - 1];
  int neg = 0;
  for (float x : m) neg += x < 0;
  const bool ok = asc && neg == 127 && m[127] == 0.0f && m[255] == 1.0f &&
                  std::fabs(m[0] + 0.99297f) < 1e-5f && std::fabs(m[128] - 5.5e-7f) < 1e-12f;
  record("dynamic map structure", ok,
         fmt("ascending=%d negatives=%d m[0]=%.7g m[128]=%.7g m[254]=%.7g", asc, neg, m[0], m[128],
             m[254]));
  float c[16];
  lora4j_nf4_code(c);
  bool same = true;
  for (int i = 0; i < 16; i++) same &= h::f2u(c[i]) == h::f2u(h::kRefNf4[i]);
  record("nf4 code table", same, "16 values bit-equal to the reference copy");
}

void test_double_quant_case(const std::string& name, const std::vector<float>& absmax) {
  const int64_t nb = int64_t(absmax.size());
  const int64_t ng = (nb + 255) / 256;
  std::vector<uint8_t> q(static_cast<size_t>(nb), 0xAB);
  std::vector<float> nested(static_cast<size_t>(ng), NAN);
  float offset = NAN;
  lora4j_nf4_double_quant(absmax.data(), nb, q.data(), nested.data(), &offset);
  double s = 0;
  for (float a : absmax) s += a;
  const float ref_off = float(s / double(nb));
  float map[256];
  lora4j_dynamic_map(map);
  int64_t bad_q = 0, bad_n = 0, bad_dq = 0;
  std::vector<float> back(static_cast<size_t>(nb), NAN);
  lora4j_nf4_dequant_absmax(q.data(), nested.data(), offset, nb, back.data());
  for (int64_t g = 0; g < ng; g++) {
    float m = 0;
    for (int64_t b = g * 256; b < std::min(nb, g * 256 + 256); b++)
      m = std::fmax(m, std::fabs(absmax[size_t(b)] - offset));
    bad_n += h::f2u(m) != h::f2u(nested[size_t(g)]);
    const float inv = 1.0f / m;
    for (int64_t b = g * 256; b < std::min(nb, g * 256 + 256); b++) {
      const float c = absmax[size_t(b)] - offset;
      bad_q += q[size_t(b)] != h::ref_dquantize(map, c * inv);
      const float dq = h::nc(map[q[size_t(b)]] * nested[size_t(g)]) + offset;
      bad_dq += h::f2u(dq) != h::f2u(back[size_t(b)]);
    }
  }
  double maxrel = 0;
  for (int64_t b = 0; b < nb; b++)
    maxrel = std::max(maxrel, std::fabs(double(back[size_t(b)]) - absmax[size_t(b)]) /
                                  std::max(1e-30, double(absmax[size_t(b)])));
  const bool ok = ulp_diff(offset, ref_off) <= kOffsetUlps && bad_q == 0 && bad_n == 0 && bad_dq == 0;
  record("double quant " + name, ok,
         fmt("nblocks=%lld offset_ulps=%lld q_diff=%lld nested_diff=%lld dq_diff=%lld max_rel_err=%.2e",
             (long long)nb, (long long)ulp_diff(offset, ref_off), (long long)bad_q,
             (long long)bad_n, (long long)bad_dq, maxrel));
}

void test_double_quant() {
  for (int64_t nb : {1, 255, 256, 257, 1000, 5000}) {
    std::vector<float> a = h::randn(static_cast<size_t>(nb), 100 + nb);
    for (auto& x : a) x = std::fabs(x) * 0.01f + 1e-4f;
    test_double_quant_case(fmt("random nb=%lld", (long long)nb), a);
  }
  test_double_quant_case("all equal (nested 0)", std::vector<float>(300, 0.25f));
  std::vector<float> a = h::randn(700, 7);
  for (size_t i = 0; i < a.size(); i++) a[i] = std::fabs(a[i]) * std::pow(10.0f, -3.0f + 3.0f * i / 700.0f);
  test_double_quant_case("3 decades", a);
}

// fp64 reference: dequantize with the scalar reference, then multiply in double.
struct MatCheck {
  double max_err = 0, max_ratio = 0;
  int64_t nan = 0;
};

MatCheck check_mat(const std::vector<float>& y, const std::vector<double>& ref,
                   const std::vector<double>& absdot) {
  MatCheck c;
  for (size_t i = 0; i < y.size(); i++) {
    if (!std::isfinite(y[i])) {
      c.nan++;
      continue;
    }
    const double err = std::fabs(double(y[i]) - ref[i]);
    const double tol = kMatAtol + kMatRtol * std::fabs(ref[i]) + kMatDotTol * absdot[i];
    c.max_err = std::max(c.max_err, err);
    c.max_ratio = std::max(c.max_ratio, err / tol);
  }
  return c;
}

void test_matmul_case(int64_t T, int64_t in, int64_t out, int bs, uint64_t seed) {
  const int64_t n = in * out;
  std::vector<float> wv = h::randn(static_cast<size_t>(n), seed, 0.05f);
  std::vector<uint8_t> wp;
  std::vector<float> wa;
  h::ref_quantize(wv, bs, wp, wa);
  std::vector<double> wd(static_cast<size_t>(n));
  for (int64_t e = 0; e < n; e++) wd[size_t(e)] = h::ref_deq(wp.data(), wa.data(), bs, e);
  std::vector<float> x = h::randn(static_cast<size_t>(T * in), seed + 1);
  std::vector<float> dy = h::randn(static_cast<size_t>(T * out), seed + 2);

  std::vector<double> ref(static_cast<size_t>(T * out), 0), ad(static_cast<size_t>(T * out), 0);
  for (int64_t t = 0; t < T; t++)
    for (int64_t o = 0; o < out; o++) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < in; i++) {
        s += double(x[size_t(t * in + i)]) * wd[size_t(o * in + i)];
        a += std::fabs(double(x[size_t(t * in + i)]) * wd[size_t(o * in + i)]);
      }
      ref[size_t(t * out + o)] = s;
      ad[size_t(t * out + o)] = a;
    }
  std::vector<float> y(static_cast<size_t>(T * out), NAN);
  lora4j_nf4_matmul_fwd(x.data(), T, in, out, wp.data(), wa.data(), bs, y.data());
  MatCheck c = check_mat(y, ref, ad);
  record(fmt("matmul_fwd T=%lld in=%lld out=%lld bs=%d", (long long)T, (long long)in,
             (long long)out, bs),
         c.nan == 0 && c.max_ratio <= 1.0,
         fmt("max_err=%.2e err/tol=%.3f nonfinite=%lld", c.max_err, c.max_ratio, (long long)c.nan));

  std::vector<double> rdx(static_cast<size_t>(T * in), 0), adx(static_cast<size_t>(T * in), 0);
  for (int64_t t = 0; t < T; t++)
    for (int64_t o = 0; o < out; o++) {
      const double g = dy[size_t(t * out + o)];
      for (int64_t i = 0; i < in; i++) {
        rdx[size_t(t * in + i)] += g * wd[size_t(o * in + i)];
        adx[size_t(t * in + i)] += std::fabs(g * wd[size_t(o * in + i)]);
      }
    }
  std::vector<float> dx(static_cast<size_t>(T * in), NAN);
  lora4j_nf4_matmul_bwd_input(dy.data(), T, in, out, wp.data(), wa.data(), bs, dx.data());
  c = check_mat(dx, rdx, adx);
  record(fmt("matmul_bwd_input T=%lld in=%lld out=%lld bs=%d", (long long)T, (long long)in,
             (long long)out, bs),
         c.nan == 0 && c.max_ratio <= 1.0,
         fmt("max_err=%.2e err/tol=%.3f nonfinite=%lld", c.max_err, c.max_ratio, (long long)c.nan));
}

void test_matmul() {
  struct S {
    int64_t in, out;
    int bs;
  };
  const S shapes[] = {{288, 96, 64},   // stories15M rows: blocks span rows
                      {100, 37, 32},   // in not a multiple of 16 or 64, odd out
                      {33, 17, 32},    // odd in: rows start mid-byte
                      {64, 130, 64},   // one block per row
                      {513, 40, 4096}, // blocks much longer than rows
                      {768, 288, 128}};
  uint64_t seed = 1000;
  for (int64_t T : {1, 2, 5, 7, 9, 12, 15, 16, 33})
    for (const S& s : shapes) test_matmul_case(T, s.in, s.out, s.bs, seed += 10);
  // Several W panels on the tile path (panel = 2^20 elements / in rows).
  test_matmul_case(20, 512, 2100, 64, 77);
  test_matmul_case(17, 4096, 300, 64, 78);
}

const h::Register reg_dynamic_map("test", "nf4 dynamic map", test_dynamic_map);
const h::Register reg_quantize("test", "nf4 quantize/dequantize", test_quantize);
const h::Register reg_nonfinite("test", "nf4 non-finite input", test_nonfinite);
const h::Register reg_double_quant("test", "nf4 double quantization", test_double_quant);
const h::Register reg_matmul("test", "nf4 matmul", test_matmul);

// ---- golden -------------------------------------------------------------------------------
std::vector<uint8_t> unhex(const std::string& s) {
  std::vector<uint8_t> v;
  if (s == "-") return v;
  if (s.size() % 2) throw std::runtime_error("odd hex length");
  v.resize(s.size() / 2);
  for (size_t i = 0; i < v.size(); i++) v[i] = uint8_t(std::stoul(s.substr(2 * i, 2), nullptr, 16));
  return v;
}
std::vector<float> as_f32(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}
int64_t count_diff_bytes(const void* a, const void* b, size_t n) {
  int64_t d = 0;
  for (size_t i = 0; i < n; i++) d += static_cast<const uint8_t*>(a)[i] != static_cast<const uint8_t*>(b)[i];
  return d;
}

struct GoldenCase {
  std::string name, dtype;
  int64_t n = 0;
  int bs = 0;
  std::map<std::string, std::vector<uint8_t>> f;
};

void golden_case(const GoldenCase& c) {
  const int dtype = c.dtype == "f32" ? LORA4J_DTYPE_F32 : c.dtype == "bf16" ? LORA4J_DTYPE_BF16 : LORA4J_DTYPE_F16;
  const auto& packed = c.f.at("packed");
  const std::vector<float> absmax = as_f32(c.f.at("absmax"));
  const int64_t nb = int64_t(absmax.size());
  std::vector<uint8_t> p(packed.size(), 0xAB);
  std::vector<float> a(static_cast<size_t>(nb), NAN);
  lora4j_nf4_quantize(c.f.at("input").data(), dtype, c.n, c.bs, p.data(), a.data());
  const int64_t dp = count_diff_bytes(p.data(), packed.data(), p.size());
  const int64_t da = count_diff_bytes(a.data(), absmax.data(), a.size() * 4);
  record("golden quantize " + c.name, dp == 0 && da == 0,
         fmt("n=%lld bs=%d packed_diff=%lld absmax_byte_diff=%lld", (long long)c.n, c.bs,
             (long long)dp, (long long)da));
  std::vector<float> d(static_cast<size_t>(c.n), NAN);
  lora4j_nf4_dequantize(packed.data(), absmax.data(), c.n, c.bs, d.data());
  const int64_t dd = count_diff_bytes(d.data(), c.f.at("dequant").data(), d.size() * 4);
  record("golden dequantize " + c.name, dd == 0, fmt("byte_diff=%lld", (long long)dd));

  const float goff = as_f32(c.f.at("offset"))[0];
  std::vector<float> centered(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; b++) centered[size_t(b)] = absmax[size_t(b)] - goff;
  std::vector<uint8_t> q(static_cast<size_t>(nb), 0xAB);
  std::vector<float> nested((static_cast<size_t>(nb) + 255) / 256, NAN);
  lora4j_nf4_quantize_nested(centered.data(), nb, q.data(), nested.data());
  const int64_t dq = count_diff_bytes(q.data(), c.f.at("qabsmax").data(), q.size());
  const int64_t dn = count_diff_bytes(nested.data(), c.f.at("nested_absmax").data(), nested.size() * 4);
  float off = NAN;
  std::vector<uint8_t> q2(static_cast<size_t>(nb));
  std::vector<float> n2(nested.size());
  lora4j_nf4_double_quant(absmax.data(), nb, q2.data(), n2.data(), &off);
  const int64_t ou = ulp_diff(off, goff);
  std::vector<float> adq(static_cast<size_t>(nb), NAN);
  lora4j_nf4_dequant_absmax(c.f.at("qabsmax").data(), as_f32(c.f.at("nested_absmax")).data(), goff,
                            nb, adq.data());
  const int64_t ddq = count_diff_bytes(adq.data(), c.f.at("absmax_dq").data(), adq.size() * 4);
  record("golden double quant " + c.name, dq == 0 && dn == 0 && ddq == 0 && ou <= kGoldenOffsetUlps,
         fmt("qabsmax_diff=%lld nested_diff=%lld absmax_dq_diff=%lld offset_ulps=%lld", (long long)dq,
             (long long)dn, (long long)ddq, (long long)ou));
}

void golden(const char* path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(std::string("cannot open ") + path);
  std::string line;
  GoldenCase cur;
  bool in_case = false;
  int ncases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "dynamic_map" || key == "nf4_code") {
      std::string hx;
      ls >> hx;
      const std::vector<float> g = as_f32(unhex(hx));
      std::vector<float> mine(g.size());
      if (key == "dynamic_map") lora4j_dynamic_map(mine.data()); else lora4j_nf4_code(mine.data());
      const int64_t d = count_diff_bytes(mine.data(), g.data(), g.size() * 4);
      int first = -1;
      for (size_t i = 0; i < g.size() && first < 0; i++) if (h::f2u(g[i]) != h::f2u(mine[i])) first = int(i);
      record("golden " + key, g.size() == (key == "dynamic_map" ? 256u : 16u) && d == 0,
             first < 0 ? fmt("%zu values bit-equal", g.size())
                       : fmt("byte_diff=%lld first index %d: %.9g vs %.9g", (long long)d, first, mine[size_t(first)], g[size_t(first)]));
    } else if (key == "case") {
      cur = GoldenCase();
      ls >> cur.name >> cur.dtype >> cur.n >> cur.bs;
      in_case = true;
    } else if (key == "end") {
      if (in_case) {
        try {
          golden_case(cur);
        } catch (const std::exception& e) {
          record("golden " + cur.name, false, std::string("exception: ") + e.what());
        }
        ncases++;
      }
      in_case = false;
    } else if (in_case) {
      std::string hx;
      ls >> hx;
      cur.f[key] = unhex(hx);
    }
  }
  if (ncases == 0) record("golden file has cases", false, path);
}
const h::Register reg_golden("golden", "nf4 golden vectors", [] { golden(h::golden_path().c_str()); });

// ---- CPU perf ---------------------------------------------------------------------------------
// The floor for a memory-bound GEMV: one vectorised pass reading the same bytes (packed W +
// absmax), lora4j_bench_read from runtime.h, the same floor the JMH benchmark (Nf4Bench) uses.
__attribute__((noinline)) uint64_t read_pass(const uint8_t* p, size_t n, const float* a, size_t na) {
  return lora4j_bench_read(p, int64_t(n)) ^ lora4j_bench_read(a, int64_t(na * sizeof(float)));
}

int perf_cpu() {
  lora4j_set_num_threads(1);
  std::printf("CPU perf, 1 thread (OPENBLAS_NUM_THREADS=%s), blas %s\n",
              std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "unset",
              lora4j_blas_name());
  // GEMV 4096 x 4096, T = 1.
  {
    const int64_t in = 4096, out = 4096, n = in * out;
    std::vector<float> w = h::randn(static_cast<size_t>(n), 1, 0.02f);
    std::vector<uint8_t> p(static_cast<size_t>(n / 2));
    std::vector<float> a(static_cast<size_t>(n / 64));
    lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, 64, p.data(), a.data());
    std::vector<float> x = h::randn(static_cast<size_t>(in), 2), y(static_cast<size_t>(out));
    volatile uint64_t sink = 0;
    const double tr = h::time_best(20, [&] { sink = sink + read_pass(p.data(), p.size(), a.data(), a.size()); });
    const double tg = h::time_best(20, [&] {
      lora4j_nf4_matmul_fwd(x.data(), 1, in, out, p.data(), a.data(), 64, y.data());
    });
    const double tb = h::time_best(20, [&] {
      lora4j_nf4_matmul_bwd_input(x.data(), 1, out, in, p.data(), a.data(), 64, y.data());
    });
    const double bytes = double(p.size() + a.size() * 4);
    record("perf cpu gemv fwd 4096x4096 T=1", tg <= 2.0 * tr,
           fmt("%.3f ms (%.1f GB/s) vs read-only pass %.3f ms: ratio %.2f (goal <= 2)", tg * 1e3,
               bytes / tg * 1e-9, tr * 1e3, tg / tr));
    record("perf cpu gemv bwd_input 4096x4096 T=1", true,
           fmt("%.3f ms, ratio to read-only pass %.2f", tb * 1e3, tb / tr));
    std::vector<float> x8 = h::randn(static_cast<size_t>(8 * in), 3), y8(static_cast<size_t>(8 * out));
    const double t8 = h::time_best(10, [&] {
      lora4j_nf4_matmul_fwd(x8.data(), 8, in, out, p.data(), a.data(), 64, y8.data());
    });
    record("perf cpu gemv fwd 4096x4096 T=8", true,
           fmt("%.3f ms = %.1f GFLOP/s, ratio to read-only pass %.2f", t8 * 1e3,
               2.0 * 8 * n / t8 * 1e-9, t8 / tr));
    const double tb8 = h::time_best(10, [&] {
      lora4j_nf4_matmul_bwd_input(x8.data(), 8, out, in, p.data(), a.data(), 64, y8.data());
    });
    record("perf cpu gemv bwd_input 4096x4096 T=8", true,
           fmt("%.3f ms = %.1f GFLOP/s, ratio to read-only pass %.2f", tb8 * 1e3,
               2.0 * 8 * n / tb8 * 1e-9, tb8 / tr));
    std::vector<float> d(static_cast<size_t>(n));
    const double td = h::time_best(10, [&] { lora4j_nf4_dequantize(p.data(), a.data(), n, 64, d.data()); });
    record("perf cpu dequantize 16M", true,
           fmt("%.2f ms, %.1f Gelem/s (%.1f GB/s written)", td * 1e3, n / td * 1e-9, 4.0 * n / td * 1e-9));
  }
  // Tile path, T = 512, the Llama MLP shapes of DESIGN §6.
  for (auto [in, out] : {std::pair<int64_t, int64_t>{2048, 5632}, {5632, 2048}}) {
    const int64_t T = 512, n = in * out;
    std::vector<float> w = h::randn(static_cast<size_t>(n), 5, 0.02f);
    std::vector<uint8_t> p(static_cast<size_t>(n / 2));
    std::vector<float> a(static_cast<size_t>(n / 64));
    lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, 64, p.data(), a.data());
    std::vector<float> wd(static_cast<size_t>(n));
    lora4j_nf4_dequantize(p.data(), a.data(), n, 64, wd.data());
    std::vector<float> x = h::randn(static_cast<size_t>(T * in), 6), y(static_cast<size_t>(T * out));
    std::vector<float> dy = h::randn(static_cast<size_t>(T * out), 7), dx(static_cast<size_t>(T * in));
    const double flops = 2.0 * T * in * out;
    const double ts = h::time_best(3, [&] {
      lora4j_sgemm(0, 1, T, out, in, 1.0f, x.data(), in, wd.data(), in, 0.0f, y.data(), out);
    });
    const double tf = h::time_best(3, [&] {
      lora4j_nf4_matmul_fwd(x.data(), T, in, out, p.data(), a.data(), 64, y.data());
    });
    const double tsb = h::time_best(3, [&] {
      lora4j_sgemm(0, 0, T, in, out, 1.0f, dy.data(), out, wd.data(), in, 0.0f, dx.data(), in);
    });
    const double tbw = h::time_best(3, [&] {
      lora4j_nf4_matmul_bwd_input(dy.data(), T, in, out, p.data(), a.data(), 64, dx.data());
    });
    record(fmt("perf cpu nf4 fwd T=512 %lld->%lld", (long long)in, (long long)out), ts / tf >= 0.9,
           fmt("%.1f GFLOP/s vs sgemm on dequantized W %.1f GFLOP/s: ratio %.3f (goal >= 0.9)",
               flops / tf * 1e-9, flops / ts * 1e-9, ts / tf));
    record(fmt("perf cpu nf4 bwd_input T=512 %lld->%lld", (long long)in, (long long)out), tsb / tbw >= 0.9,
           fmt("%.1f GFLOP/s vs sgemm on dequantized W %.1f GFLOP/s: ratio %.3f (goal >= 0.9)",
               flops / tbw * 1e-9, flops / tsb * 1e-9, tsb / tbw));
  }
  return 0;
}

const h::Register reg_perf_cpu("perf-cpu", "nf4", [] { perf_cpu(); });

}  // namespace
