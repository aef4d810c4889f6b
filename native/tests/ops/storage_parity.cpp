// Cases of the compact weight storage (storage.h): `test` checks the CPU twins against plain
// references (bf16 weights widened by hand, the fp32-scale NF4 kernels), `cuda` every CUDA entry
// against its CPU twin. Device outputs are poisoned with NaN before each call.
#include "tests/harness.h"
#include "tests/cuda_dev.h"
#include "lora4j/nf4.h"
#include "lora4j/ops.h"
#include "lora4j/storage.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

using namespace h;
using fvec = std::vector<float>;

namespace {

// fp32 GEMMs summing K products of O(1) values in other orders: per 16 summed terms
constexpr double kDotAtolPer16 = 2e-6, kDotRtol = 1e-4;
double dot_atol(int64_t K) { return kDotAtolPer16 * (K < 16 ? 1.0 : K / 16.0); }

std::vector<uint16_t> to_bf16(const fvec& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); i++) b[i] = f32_to_bf16(v[i]);
  return b;
}

fvec widened(const std::vector<uint16_t>& b) {
  fvec f(b.size());
  for (size_t i = 0; i < b.size(); i++) f[i] = bf16_to_f32(b[i]);
  return f;
}

// Bit-identical and finite (a NaN-poisoned element never passes, even against another NaN).
bool same_bits(const std::string& name, const fvec& got, const fvec& ref) {
  size_t diff = 0, bad = 0;
  for (size_t i = 0; i < got.size(); i++) {
    diff += std::memcmp(&got[i], &ref[i], 4) != 0;
    bad += !std::isfinite(got[i]);
  }
  return check_true(name, diff == 0 && bad == 0 && got.size() == ref.size(),
                    fmt("%zu of %zu elements differ, %zu not finite", diff, got.size(), bad));
}

struct Gemm { int ta, tb; int64_t M, N, K; };
// edge tiles (not multiples of 16/64), and for the CPU one K panel over its 2^20-float scratch
const Gemm kGemms[] = {{0, 1, 131, 77, 300}, {0, 0, 131, 77, 300}, {1, 0, 96, 70, 64}, {1, 1, 70, 66, 100},
                        {1, 0, 33, 70, 45},    {1, 1, 5, 19, 64}};

// gemm_w(bf16 B) vs lora4j_sgemm on the widened B, and (K panels) a B wider than the scratch.
void cpu_gemm_w(Rng& rng) {
  for (const Gemm& g : kGemms) {
    const int64_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K + 3 : g.N + 5;  // padded B rows
    fvec A = rand_vec(rng, size_t(g.M * g.K), 1), C0 = rand_vec(rng, size_t(g.M * g.N), 1);
    const int64_t brows = g.tb ? g.N : g.K;
    std::vector<uint16_t> B = to_bf16(rand_vec(rng, size_t(brows * ldb), 1));
    fvec Bf = widened(B), ref = C0, got = C0;
    lora4j_sgemm(g.ta, g.tb, g.M, g.N, g.K, 0.5f, A.data(), lda, Bf.data(), ldb, 0.25f, ref.data(), g.N);
    lora4j_gemm_w(g.ta, g.tb, g.M, g.N, g.K, 0.5f, A.data(), lda, B.data(), LORA4J_DTYPE_BF16, ldb, 0.25f, got.data(), g.N);
    check_close(fmt("gemm_w bf16 trans %d%d %lldx%lldx%lld", g.ta, g.tb, (long long)g.M, (long long)g.N, (long long)g.K),
                got.data(), to_double(ref), dot_atol(g.K), kDotRtol);
  }
  {  // B [K, N] with K·N > the 2^20-float panel: three K panels accumulated into C (beta only on the first)
    const int64_t M = 3, N = 4096, K = 700;
    fvec A = rand_vec(rng, size_t(M * K), 1), C0 = rand_vec(rng, size_t(M * N), 1);
    std::vector<uint16_t> B = to_bf16(rand_vec(rng, size_t(K * N), 1));
    fvec Bf = widened(B), ref = C0, got = C0;
    lora4j_sgemm(0, 0, M, N, K, 1.0f, A.data(), K, Bf.data(), N, 1.0f, ref.data(), N);
    lora4j_gemm_w(0, 0, M, N, K, 1.0f, A.data(), K, B.data(), LORA4J_DTYPE_BF16, N, 1.0f, got.data(), N);
    check_close("gemm_w bf16 K panels 3x4096x700", got.data(), to_double(ref), dot_atol(K), kDotRtol);
  }
  const int64_t T = 50, dim = 288, vocab = 1000;
  std::vector<int32_t> ids(T);
  for (auto& i : ids) i = rng.below(int32_t(vocab));
  std::vector<uint16_t> tab = to_bf16(rand_vec(rng, size_t(vocab * dim), 1));
  fvec tf = widened(tab), ref(size_t(T * dim)), got(ref.size(), -1.0f), row(dim);
  lora4j_embedding_fwd(ids.data(), tf.data(), T, dim, vocab, ref.data());
  lora4j_embedding_w_fwd(ids.data(), tab.data(), LORA4J_DTYPE_BF16, T, dim, vocab, got.data());
  same_bits("embedding_w bf16 (exact)", got, ref);
  lora4j_widen_f32(tab.data() + 7 * dim, LORA4J_DTYPE_BF16, dim, row.data());
  same_bits("widen_f32 bf16 row (exact)", row, fvec(tf.begin() + 7 * dim, tf.begin() + 8 * dim));
}

// Inputs of round_bf16: random values over many binades, and the edge cases written out: exact ties
// both ways (round to even), the largest finite bf16 and what rounds past it (-> inf), subnormals,
// signed zeros, infinities and NaNs (-> 0x7fc0).
fvec round_bf16_inputs(Rng& rng) {
  fvec x = rand_vec(rng, 4099, 1);
  for (size_t i = 0; i < x.size(); i += 3) x[i] = std::ldexp(x[i], int(i % 61) - 30);
  const uint32_t edges[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0xbf818000u, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu,
                            0x00008000u, 0x00018000u, 0x00000001u, 0x80000000u, 0x00000000u, 0x7f800000u, 0xff800000u,
                            0x7fc00000u, 0xffc12345u, 0x7f800001u};
  for (uint32_t e : edges) {
    float f;
    std::memcpy(&f, &e, 4);
    x.push_back(f);
  }
  return x;
}

// round_bf16 against the harness's plain conversion (harness.h f32_to_bf16), bits and the rounded x.
void cpu_round_bf16(Rng& rng) {
  const fvec x0 = round_bf16_inputs(rng);
  fvec x = x0;
  std::vector<uint16_t> got(x.size(), 0x5555);
  lora4j_round_bf16(x.data(), int64_t(x.size()), got.data());
  size_t bad = 0, badx = 0;
  for (size_t i = 0; i < x0.size(); i++) {
    const uint16_t ref = f32_to_bf16(x0[i]);
    bad += got[i] != ref;
    const float w = bf16_to_f32(ref), gx = x[i];
    badx += std::memcmp(&gx, &w, 4) != 0;
  }
  check_true("round_bf16 bits (= reference, ties to even, NaN 0x7fc0)", bad == 0,
             fmt("%zu of %zu differ", bad, x0.size()));
  check_true("round_bf16 x rounded in place (= widened bits)", badx == 0, fmt("%zu of %zu differ", badx, x0.size()));
}

// The gated activations' entry points, fp32 and bf16-input, for SwiGLU and GeGLU.
struct Glu {
  const char* name;
  void (*fwd)(const float*, const float*, int64_t, float*);
  void (*bwd)(const float*, const float*, const float*, int64_t, float*, float*);
  void (*fwd_bf16)(const uint16_t*, const uint16_t*, int64_t, float*);
  void (*bwd_bf16)(const float*, const uint16_t*, const uint16_t*, int64_t, float*, float*);
};
const Glu kGlus[] = {{"swiglu", lora4j_swiglu_fwd, lora4j_swiglu_bwd, lora4j_swiglu_bf16_fwd, lora4j_swiglu_bf16_bwd},
                     {"geglu", lora4j_geglu_fwd, lora4j_geglu_bwd, lora4j_geglu_bf16_fwd, lora4j_geglu_bf16_bwd}};

// The bf16-input gated activations equal the fp32 ops on the widened gate and up, bit for bit (n past
// the CPU's 2^16-element widening block, ragged).
void cpu_glu_bf16(Rng& rng) {
  const int64_t n = 150001;
  const size_t N = static_cast<size_t>(n);
  const std::vector<uint16_t> g = to_bf16(rand_vec(rng, N, 8)), u = to_bf16(rand_vec(rng, N, 2));
  const fvec gf = widened(g), uf = widened(u), dh = rand_vec(rng, N, 1);
  for (const Glu& a : kGlus) {
    fvec h(N), dg(N), du(N), hb(N, -1), dgb(dh), dub(N, -1);
    a.fwd(gf.data(), uf.data(), n, h.data());
    a.bwd(dh.data(), gf.data(), uf.data(), n, dg.data(), du.data());
    a.fwd_bf16(g.data(), u.data(), n, hb.data());
    a.bwd_bf16(dgb.data(), g.data(), u.data(), n, dgb.data(), dub.data());  // dgate aliases dh
    same_bits(fmt("%s_bf16_fwd (= fp32 op on widened)", a.name), hb, h);
    same_bits(fmt("%s_bf16_bwd dgate, aliasing dh", a.name), dgb, dg);
    same_bits(fmt("%s_bf16_bwd dup", a.name), dub, du);
  }
}

// The double-quantized NF4 matmuls equal the fp32-scale ones on the dequantized absmax, bit for bit.
void cpu_nf4_dq(Rng& rng) {
  (void)rng;
  for (int64_t in : {288, 300}) {
    const int64_t T = 37, out = 77, n = in * out, bs = 64, nb = (n + bs - 1) / bs;
    fvec w = randn(size_t(n), 71 + in, 0.05f), absmax(static_cast<size_t>(nb)), back(static_cast<size_t>(nb)), nested(size_t((nb + 255) / 256));
    std::vector<uint8_t> p(size_t((n + 1) / 2)), q(static_cast<size_t>(nb));
    float offset = 0;
    lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, bs, p.data(), absmax.data());
    lora4j_nf4_double_quant(absmax.data(), nb, q.data(), nested.data(), &offset);
    lora4j_nf4_dequant_absmax(q.data(), nested.data(), offset, nb, back.data());
    fvec x = randn(size_t(T * in), 5), dy = randn(size_t(T * out), 6);
    fvec y(size_t(T * out)), yq(y.size()), dx(size_t(T * in)), dxq(dx.size());
    lora4j_nf4_matmul_fwd(x.data(), T, in, out, p.data(), back.data(), bs, y.data());
    lora4j_nf4_dq_matmul_fwd(x.data(), T, in, out, p.data(), q.data(), nested.data(), offset, bs, yq.data());
    lora4j_nf4_matmul_bwd_input(dy.data(), T, in, out, p.data(), back.data(), bs, dx.data());
    lora4j_nf4_dq_matmul_bwd_input(dy.data(), T, in, out, p.data(), q.data(), nested.data(), offset, bs, dxq.data());
    same_bits(fmt("nf4_dq_matmul_fwd in=%lld (= fp32 scales)", (long long)in), yq, y);
    same_bits(fmt("nf4_dq_matmul_bwd_input in=%lld (= fp32 scales)", (long long)in), dxq, dx);
  }
}

#define TEST_CASE(fn, seed) const h::Register reg_##fn("test", #fn, [] { Rng rng(seed); fn(rng); })
TEST_CASE(cpu_gemm_w, 3101);
TEST_CASE(cpu_nf4_dq, 3102);
TEST_CASE(cpu_round_bf16, 3103);
TEST_CASE(cpu_glu_bf16, 3104);
#undef TEST_CASE

#ifdef LORA4J_WITH_CUDA

// M, N, K >= 64 take the tensor cores, which round A to bf16: their oracle is the CPU twin on the
// bf16-rounded A, where every product is exact in fp32 and only the summation order differs.
void par_gemm_w(Rng& rng) {
  for (const Gemm& g : kGemms) {
    const int64_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K + 3 : g.N + 5;
    const bool mma = g.M >= 64 && g.N >= 64 && g.K >= 64;
    fvec A = rand_vec(rng, size_t(g.M * g.K), 1), C0 = rand_vec(rng, size_t(g.M * g.N), 1), C = C0;
    if (mma) A = widened(to_bf16(A));
    std::vector<uint16_t> B = to_bf16(rand_vec(rng, size_t((g.tb ? g.N : g.K) * ldb), 1));
    lora4j_gemm_w(g.ta, g.tb, g.M, g.N, g.K, 0.5f, A.data(), lda, B.data(), LORA4J_DTYPE_BF16, ldb, 0.25f, C.data(), g.N);
    Dev dA(A), dB(B), dC(C0);
    lora4j_cuda_gemm_w(g.ta, g.tb, g.M, g.N, g.K, 0.5f, dA.as<float>(), lda, dB.as<void>(), LORA4J_DTYPE_BF16, ldb, 0.25f,
                       dC.as<float>(), g.N, nullptr);
    check_close(fmt("cuda gemm_w bf16 trans %d%d %s", g.ta, g.tb, mma ? "(tensor cores)" : "(SIMT)"), dC.down().data(), to_double(C), dot_atol(g.K), kDotRtol);
    // beta 0 ignores C: NaN-poisoned C must not leak through
    fvec C1(C0.size(), 0.0f);
    lora4j_gemm_w(g.ta, g.tb, g.M, g.N, g.K, 1.0f, A.data(), lda, B.data(), LORA4J_DTYPE_BF16, ldb, 0.0f, C1.data(), g.N);
    dC.poison();
    lora4j_cuda_gemm_w(g.ta, g.tb, g.M, g.N, g.K, 1.0f, dA.as<float>(), lda, dB.as<void>(), LORA4J_DTYPE_BF16, ldb, 0.0f,
                       dC.as<float>(), g.N, nullptr);
    check_close(fmt("cuda gemm_w bf16 trans %d%d beta 0", g.ta, g.tb), dC.down().data(), to_double(C1), dot_atol(g.K), kDotRtol);
  }
  const int64_t T = 500, dim = 288, vocab = 1000;
  std::vector<int32_t> ids(T);
  for (auto& i : ids) i = rng.below(200);
  std::vector<uint16_t> tab = to_bf16(rand_vec(rng, size_t(vocab * dim), 1));
  fvec out(size_t(T * dim)), row(dim);
  lora4j_embedding_w_fwd(ids.data(), tab.data(), LORA4J_DTYPE_BF16, T, dim, vocab, out.data());
  lora4j_widen_f32(tab.data() + 11 * dim, LORA4J_DTYPE_BF16, dim, row.data());
  Dev di(ids), dt(tab), o(out.size() * 4), r(row.size() * 4);
  o.poison();
  r.poison();
  lora4j_cuda_embedding_w_fwd(di.as<int32_t>(), dt.as<void>(), LORA4J_DTYPE_BF16, T, dim, vocab, o.as<float>(), nullptr);
  lora4j_cuda_widen_f32(dt.as<uint16_t>() + 11 * dim, LORA4J_DTYPE_BF16, dim, r.as<float>(), nullptr);
  same_bits("cuda embedding_w bf16 (exact)", o.down(), out);
  same_bits("cuda widen_f32 bf16 (exact)", r.down(), row);
}

// round_bf16 on the device equals the CPU twin bit for bit, out and x (NaN-poisoned out).
void par_round_bf16(Rng& rng) {
  const fvec x0 = round_bf16_inputs(rng);
  fvec x = x0;
  std::vector<uint16_t> ref(x.size());
  lora4j_round_bf16(x.data(), int64_t(x.size()), ref.data());
  Dev dx(x0), dout(x0.size() * 2);
  dout.poison();
  lora4j_cuda_round_bf16(dx.as<float>(), int64_t(x0.size()), dout.as<uint16_t>(), nullptr);
  std::vector<uint16_t> got(x0.size());
  lora4j_cuda_device_synchronize();
  lora4j_cuda_memcpy(got.data(), dout.p, got.size() * 2, 2, nullptr);
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); i++) bad += got[i] != ref[i];
  check_true("cuda round_bf16 bits (= CPU twin)", bad == 0, fmt("%zu of %zu differ", bad, got.size()));
  const fvec gx = dx.down();
  size_t badx = 0;
  for (size_t i = 0; i < gx.size(); i++) badx += std::memcmp(&gx[i], &x[i], 4) != 0;
  check_true("cuda round_bf16 x in place (= CPU twin)", badx == 0, fmt("%zu of %zu differ", badx, gx.size()));
}

// The CUDA bf16-input gated activations equal the CUDA fp32 kernels on the widened inputs bit for
// bit (the same kernels, templated on the load), and hence the CPU twin within the fp32 elementwise
// tolerance of the swiglu/geglu parity cases (1e-6 + 1e-5·|ref|: expf/tanhf of the device library).
struct CudaGlu {
  void (*fwd)(const float*, const float*, int64_t, float*, void*);
  void (*bwd)(const float*, const float*, const float*, int64_t, float*, float*, void*);
  void (*fwd_bf16)(const uint16_t*, const uint16_t*, int64_t, float*, void*);
  void (*bwd_bf16)(const float*, const uint16_t*, const uint16_t*, int64_t, float*, float*, void*);
};
const CudaGlu kCudaGlus[] = {
    {lora4j_cuda_swiglu_fwd, lora4j_cuda_swiglu_bwd, lora4j_cuda_swiglu_bf16_fwd, lora4j_cuda_swiglu_bf16_bwd},
    {lora4j_cuda_geglu_fwd, lora4j_cuda_geglu_bwd, lora4j_cuda_geglu_bf16_fwd, lora4j_cuda_geglu_bf16_bwd}};

void par_glu_bf16(Rng& rng) {
  const int64_t n = 70001;
  const size_t N = static_cast<size_t>(n);
  const std::vector<uint16_t> g = to_bf16(rand_vec(rng, N, 8)), u = to_bf16(rand_vec(rng, N, 2));
  const fvec gf = widened(g), uf = widened(u), dh = rand_vec(rng, N, 1);
  Dev dg_b(g), du_b(u), dg_f(gf), du_f(uf), ddh(dh);
  for (int i = 0; i < 2; i++) {
    const Glu& a = kGlus[i];
    const CudaGlu& c = kCudaGlus[i];
    fvec h(N), dg(N), du(N);
    a.fwd_bf16(g.data(), u.data(), n, h.data());
    a.bwd_bf16(dh.data(), g.data(), u.data(), n, dg.data(), du.data());
    Dev h1(N * 4), h2(N * 4), a1(N * 4), a2(N * 4), b1(N * 4), b2(N * 4);
    for (Dev* d : {&h1, &h2, &a1, &a2, &b1, &b2}) d->poison();
    c.fwd(dg_f.as<float>(), du_f.as<float>(), n, h1.as<float>(), nullptr);
    c.fwd_bf16(dg_b.as<uint16_t>(), du_b.as<uint16_t>(), n, h2.as<float>(), nullptr);
    c.bwd(ddh.as<float>(), dg_f.as<float>(), du_f.as<float>(), n, a1.as<float>(), b1.as<float>(), nullptr);
    c.bwd_bf16(ddh.as<float>(), dg_b.as<uint16_t>(), du_b.as<uint16_t>(), n, a2.as<float>(), b2.as<float>(), nullptr);
    const fvec H1 = h1.down(), H2 = h2.down(), A1 = a1.down(), A2 = a2.down(), B1 = b1.down(), B2 = b2.down();
    same_bits(fmt("cuda %s_bf16_fwd (= cuda fp32 on widened)", a.name), H2, H1);
    same_bits(fmt("cuda %s_bf16_bwd dgate (= cuda fp32 on widened)", a.name), A2, A1);
    same_bits(fmt("cuda %s_bf16_bwd dup (= cuda fp32 on widened)", a.name), B2, B1);
    check_close(fmt("cuda %s_bf16_fwd vs CPU twin", a.name), H2.data(), to_double(h), 1e-6, 1e-5);
    check_close(fmt("cuda %s_bf16_bwd dgate vs CPU twin", a.name), A2.data(), to_double(dg), 1e-6, 1e-5);
    check_close(fmt("cuda %s_bf16_bwd dup vs CPU twin", a.name), B2.data(), to_double(du), 1e-6, 1e-5);
  }
}

// CUDA dq matmuls equal the CUDA fp32-scale matmuls bit for bit (the fp32-scale kernels are held to
// the CPU by the `nf4 matmul` case's bf16 bound); blocksizes 64 and 128, fast and general paths.
void par_nf4_dq(Rng& rng) {
  (void)rng;
  for (int64_t in : {288, 300}) {
    for (int bs : {64, 128}) {
      const int64_t T = 37, out = 77, n = in * out, nb = (n + bs - 1) / bs;
      fvec w = randn(size_t(n), 91 + in + bs, 0.05f), absmax(static_cast<size_t>(nb)), back(static_cast<size_t>(nb)), nested(size_t((nb + 255) / 256));
      std::vector<uint8_t> p(size_t((n + 1) / 2)), q(static_cast<size_t>(nb));
      float offset = 0;
      lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, bs, p.data(), absmax.data());
      lora4j_nf4_double_quant(absmax.data(), nb, q.data(), nested.data(), &offset);
      lora4j_nf4_dequant_absmax(q.data(), nested.data(), offset, nb, back.data());
      fvec x = randn(size_t(T * in), 7), dy = randn(size_t(T * out), 8);
      Dev dx_(x), ddy(dy), dp(p), dq(q), dn(nested), da(back), y1(size_t(T * out) * 4), y2(size_t(T * out) * 4),
          g1(size_t(T * in) * 4), g2(size_t(T * in) * 4);
      for (Dev* d : {&y1, &y2, &g1, &g2}) d->poison();
      lora4j_cuda_nf4_matmul_fwd(dx_.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), bs, y1.as<float>(), nullptr);
      lora4j_cuda_nf4_dq_matmul_fwd(dx_.as<float>(), T, in, out, dp.as<uint8_t>(), dq.as<uint8_t>(), dn.as<float>(), offset, bs,
                                    y2.as<float>(), nullptr);
      lora4j_cuda_nf4_matmul_bwd_input(ddy.as<float>(), T, in, out, dp.as<uint8_t>(), da.as<float>(), bs, g1.as<float>(), nullptr);
      lora4j_cuda_nf4_dq_matmul_bwd_input(ddy.as<float>(), T, in, out, dp.as<uint8_t>(), dq.as<uint8_t>(), dn.as<float>(), offset,
                                          bs, g2.as<float>(), nullptr);
      const fvec a = y1.down(), b = y2.down(), c = g1.down(), d = g2.down();
      same_bits(fmt("cuda nf4_dq_matmul_fwd in=%lld bs=%d (= fp32 scales)", (long long)in, bs), b, a);
      same_bits(fmt("cuda nf4_dq_matmul_bwd_input in=%lld bs=%d (= fp32 scales)", (long long)in, bs), d, c);
    }
  }
}

#define PARITY_CASE(fn, seed) const h::Register reg_##fn("cuda", #fn, [] { Rng rng(seed); fn(rng); })
PARITY_CASE(par_gemm_w, 3201);
PARITY_CASE(par_nf4_dq, 3202);
PARITY_CASE(par_round_bf16, 3203);
PARITY_CASE(par_glu_bf16, 3204);
#undef PARITY_CASE
#endif  // LORA4J_WITH_CUDA

}  // namespace
