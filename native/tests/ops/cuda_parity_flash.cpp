// `cuda` cases of lora4j_harness for the bf16 tensor-core kernels: flash attention
// (native/cuda/flash_attention.cu) and the mma GEMM behind lora4j_cuda_sgemm / the LoRA products
// (native/cuda/mma_gemm.cuh), against fp32 CPU twins and, for the soft-capped attention that
// the CPU op does not have yet, against a double-precision evaluation of the equations in
// flash_attention.cu written out here. Device outputs are NaN-poisoned before each call.
#ifdef LORA4J_WITH_CUDA
#include "cuda/flash_attention.h"
#include "lora4j/lora.h"
#include "lora4j/ops.h"
#include "lora4j/runtime.h"
#include "tests/harness.h"
#include "tests/cuda_dev.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using namespace h;
using fvec = std::vector<float>;
using ivec = std::vector<int32_t>;

namespace {

// Attention with bf16 operands vs the fp32 CPU, per element:
//   |got - ref| <= kAttnTol · max|ref over the tensor| + kAttnTol · |ref|
// q, k, v, dout are rounded to bf16 (relative 2^-9 = 1.95e-3 each), so a score moves by about
// 2^-8 of Σ_d |q_d k_d| scale, P by the same relative amount, and out = Σ P v by ~2^-8 of
// max|v| more; P and dS are rounded to bf16 again as operands of P·V, Pᵀ·dout, dS·K, dSᵀ·q.
// The backward chains two such products (dS = P (dP − Dl), then dS·K), so its error is a few
// 2^-8 of the tensor's scale. 2e-2 ≈ 5·2^-8 leaves room for the sums of 64..200 keys (the
// measured worst ratios are printed with each check); an fp32-vs-fp32 kernel sits at 1e-5.
constexpr double kAttnTol = 2e-2;
// Against the same math on the bf16-rounded q, k, v, dout only P and dS are rounded (2^-9
// relative, in a convex combination for out): 4e-3 ≈ 2^-8 of the tensor's scale.
constexpr double kAttnBf16InputsTol = 4e-3;

// GEMM with bf16 operands vs the fp32 CPU, per element (the NF4 matmul's bound, harness_cuda.cpp):
//   |got - ref| <= kBf16DotTol · (|A|·|B|)_ij + 1e-6
// A and B rounded to bf16 move each product by at most (2·2^-9 + 2^-18)|a b| < 3.91e-3 |a b|.
// LoRA's forward rounds XA once more before XA·Bᵀ: twice the bound on that term.
constexpr double kBf16DotTol = 4.0e-3;


// Tensor-scaled bf16 check: atol = tol · max|ref|, rtol = tol.
bool cmp_scaled(const std::string& name, Dev& d, const std::vector<double>& ref, double tol) {
  double mx = 0;
  for (double r : ref) mx = std::max(mx, std::fabs(r));
  fvec g = d.down();
  return check_close(name, g.data(), ref.data(), ref.size(), tol * mx, tol);
}

// Per-element bound: |got - ref| <= tol · bound_i + 1e-6 (bound = the product of absolute values).
bool cmp_bound(const std::string& name, Dev& d, const fvec& ref, const fvec& bound, double tol) {
  fvec g = d.down();
  size_t bad = 0, worst = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double lim = tol * bound[i] + 1e-6, err = std::fabs(double(g[i]) - ref[i]);
    const double ratio = std::isfinite(g[i]) ? err / lim : INFINITY;
    if (!(ratio <= 1.0)) bad++;
    if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zu of %zu outside; worst %.3g of the bound at %zu (got %.7g ref %.7g)", bad,
                ref.size(), worst_ratio, worst, double(g[worst]), double(ref[worst]));
  return check_true(name, bad == 0, buf);
}

ivec segments(Rng& rng, int64_t B, int64_t S) {
  ivec seg(B * S);
  for (int64_t b = 0; b < B; b++) {
    int32_t id = 0;
    int64_t left = 1 + rng.below(static_cast<int32_t>(S / 2));
    for (int64_t s = 0; s < S; s++) {
      if (left == 0) id++, left = 1 + rng.below(static_cast<int32_t>(S / 2));
      seg[b * S + s] = id;
      left--;
    }
  }
  return seg;
}

// The equations of flash_attention.cu in double, one (b, h, i) row at a time.
struct AttnRef {
  int64_t B, S, Hq, Hkv, D;
  double softcap;
  std::vector<double> out, lse, dq, dk, dv;

  void run(const fvec& q, const fvec& k, const fvec& v, const fvec& dout, const int32_t* seg) {
    const int64_t ldq = Hq * D, ldk = Hkv * D, group = Hq / Hkv;
    const double scale = 1.0 / std::sqrt(double(D));
    out.assign(B * S * ldq, 0), lse.assign(B * Hq * S, 0), dq.assign(B * S * ldq, 0);
    dk.assign(B * S * ldk, 0), dv.assign(B * S * ldk, 0);
    std::vector<double> s(S), th(S), p(S);
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < S; i++) {
          const int64_t hk = h / group;
          const float* qi = &q[(b * S + i) * ldq + h * D];
          double mx = -INFINITY;
          for (int64_t j = 0; j <= i; j++) {
            if (seg && seg[b * S + j] != seg[b * S + i]) { s[j] = -INFINITY; continue; }
            const float* kj = &k[(b * S + j) * ldk + hk * D];
            double t = 0;
            for (int64_t d = 0; d < D; d++) t += double(qi[d]) * kj[d];
            t *= scale;
            th[j] = softcap > 0 ? std::tanh(t / softcap) : 0;
            s[j] = softcap > 0 ? softcap * th[j] : t;
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j <= i; j++) sum += p[j] = std::exp(s[j] - mx);
          double* o = &out[(b * S + i) * ldq + h * D];
          for (int64_t j = 0; j <= i; j++) {
            p[j] /= sum;
            for (int64_t d = 0; d < D; d++) o[d] += p[j] * v[(b * S + j) * ldk + hk * D + d];
          }
          lse[(b * Hq + h) * S + i] = mx + std::log(sum);
          const float* g = &dout[(b * S + i) * ldq + h * D];
          double dl = 0;
          for (int64_t d = 0; d < D; d++) dl += double(g[d]) * o[d];
          for (int64_t j = 0; j <= i; j++) {
            if (p[j] == 0) continue;
            const float* vj = &v[(b * S + j) * ldk + hk * D];
            const float* kj = &k[(b * S + j) * ldk + hk * D];
            double dp = 0;
            for (int64_t d = 0; d < D; d++) dp += double(g[d]) * vj[d];
            double dt = p[j] * (dp - dl);
            if (softcap > 0) dt *= 1 - th[j] * th[j];
            for (int64_t d = 0; d < D; d++) {
              dq[(b * S + i) * ldq + h * D + d] += scale * dt * kj[d];
              dk[(b * S + j) * ldk + hk * D + d] += scale * dt * qi[d];
              dv[(b * S + j) * ldk + hk * D + d] += p[j] * g[d];
            }
          }
        }
  }
};

fvec bf16_round(const fvec& v) {
  fvec r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = bf16_to_f32(f32_to_bf16(v[i]));
  return r;
}

std::vector<double> dbl(const fvec& v) { return std::vector<double>(v.begin(), v.end()); }
fvec flt(const std::vector<double>& v) { return fvec(v.begin(), v.end()); }

struct AttnCase {
  int64_t B, S, Hq, Hkv, D;
  bool packed;
  float qamp;     // |q| amplitude: 1 gives flat softmax rows, 3 peaked ones
  float softcap;  // Gemma 2's attn_logit_softcapping, 0 = off
};

void par_flash_attention(Rng& rng) {
  // S >= 64 and D in {64, 128} take the tensor-core path through the op; 96 and 200 rows leave
  // ragged last tiles; every case runs through the op against the CPU twin.
  const AttnCase cases[] = {{2, 200, 8, 2, 64, true, 1, 0},   {1, 129, 4, 4, 128, false, 3, 0},
                            {1, 96, 4, 1, 96, true, 3, 0},    {1, 64, 2, 2, 64, false, 3, 0},
                            {1, 130, 4, 2, 64, true, 3, 1.5f}, {1, 75, 2, 1, 128, false, 3, 50.0f},
                            {2, 90, 2, 1, 64, false, 12, 0}};
  for (const AttnCase& c : cases) {
    char tagb[128];
    std::snprintf(tagb, sizeof tagb, "flash attention B%lld S%lld Hq%lld Hkv%lld D%lld%s |q|<=%g softcap %g",
                  (long long)c.B, (long long)c.S, (long long)c.Hq, (long long)c.Hkv, (long long)c.D,
                  c.packed ? " packed" : "", double(c.qamp), double(c.softcap));
    const std::string tag = tagb;
    const int64_t nq = c.B * c.S * c.Hq * c.D, nk = c.B * c.S * c.Hkv * c.D, nl = c.B * c.Hq * c.S;
    const ivec seg = c.packed ? segments(rng, c.B, c.S) : ivec(1);
    const int32_t* sg = c.packed ? seg.data() : nullptr;
    const fvec q = rand_vec(rng, nq, c.qamp), k = rand_vec(rng, nk, 1), v = rand_vec(rng, nk, 1),
               dout = rand_vec(rng, nq, 1);
    check_true(tag + ": the op takes the tensor-core path", lora4j_cuda_flash_attention_used(c.S, c.D),
               "lora4j_cuda_flash_attention_used(S, D)");
    // the CPU twin (soft-capped too) is the oracle
    std::vector<double> out, lse, dq, dk, dv;
    {
      fvec o(nq), l(nl), gq(nq), gk(nk), gv(nk);
      lora4j_attention_fwd(q.data(), k.data(), v.data(), sg, c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, o.data(), l.data());
      lora4j_attention_bwd(q.data(), k.data(), v.data(), o.data(), dout.data(), l.data(), sg, c.B, c.S, c.Hq,
                           c.Hkv, c.D, c.softcap, gq.data(), gk.data(), gv.data());
      out = dbl(o), lse = dbl(l), dq = dbl(gq), dk = dbl(gk), dv = dbl(gv);
    }
    Dev dq_(q), dk_(k), dv_(v), ddo(dout), dseg(seg), o_ref(flt(out)), l_ref(flt(lse)), o(nq * 4), l(nl * 4),
        gq(nq * 4), gk(nk * 4), gv(nk * 4);
    o.poison(), l.poison(), gq.poison(), gk.poison(), gv.poison();
    const int32_t* dsg = c.packed ? dseg.i() : nullptr;
    lora4j_cuda_attention_fwd(dq_.f(), dk_.f(), dv_.f(), dsg, c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, o.f(), l.f(),
                              nullptr);
    // backward from the reference out/lse: isolates the backward kernels
    lora4j_cuda_attention_bwd(dq_.f(), dk_.f(), dv_.f(), o_ref.f(), ddo.f(), l_ref.f(), dsg, c.B, c.S, c.Hq, c.Hkv,
                              c.D, c.softcap, gq.f(), gk.f(), gv.f(), nullptr);
    cmp_scaled(tag + " fwd out", o, out, kAttnTol);
    cmp_scaled(tag + " fwd lse", l, lse, kAttnTol);
    cmp_scaled(tag + " bwd dq", gq, dq, kAttnTol);
    cmp_scaled(tag + " bwd dk", gk, dk, kAttnTol);
    cmp_scaled(tag + " bwd dv", gv, dv, kAttnTol);
    // The sharper oracle: the same equations in double on the bf16-rounded inputs leave only the
    // kernels' own roundings (P and dS to bf16, fp32 sums).
    AttnRef rb{c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, {}, {}, {}, {}, {}};
    rb.run(bf16_round(q), bf16_round(k), bf16_round(v), bf16_round(dout), sg);
    Dev ob(flt(rb.out)), lb(flt(rb.lse)), o2(nq * 4), l2(nl * 4), gq2(nq * 4), gk2(nk * 4), gv2(nk * 4);
    o2.poison(), l2.poison(), gq2.poison(), gk2.poison(), gv2.poison();
    lora4j_cuda_flash_attention_fwd(dq_.f(), dk_.f(), dv_.f(), dsg, c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, o2.f(),
                                    l2.f(), nullptr);
    lora4j_cuda_flash_attention_bwd(dq_.f(), dk_.f(), dv_.f(), ob.f(), ddo.f(), lb.f(), dsg, c.B, c.S, c.Hq, c.Hkv,
                                    c.D, c.softcap, gq2.f(), gk2.f(), gv2.f(), nullptr);
    cmp_scaled(tag + " vs bf16 inputs: fwd out", o2, rb.out, kAttnBf16InputsTol);
    cmp_scaled(tag + " vs bf16 inputs: fwd lse", l2, rb.lse, kAttnBf16InputsTol);
    cmp_scaled(tag + " vs bf16 inputs: bwd dq", gq2, rb.dq, kAttnBf16InputsTol);
    cmp_scaled(tag + " vs bf16 inputs: bwd dk", gk2, rb.dk, kAttnBf16InputsTol);
    cmp_scaled(tag + " vs bf16 inputs: bwd dv", gv2, rb.dv, kAttnBf16InputsTol);
  }
  // The double reference against the CPU twin at softcap 0: the oracle of the capped cases is
  // the same equations (fp32 vs double: 1e-5).
  {
    const int64_t B = 1, S = 40, Hq = 2, Hkv = 1, D = 16, nq = B * S * Hq * D, nk = B * S * Hkv * D;
    const ivec seg = segments(rng, B, S);
    const fvec q = rand_vec(rng, nq, 3), k = rand_vec(rng, nk, 1), v = rand_vec(rng, nk, 1), g = rand_vec(rng, nq, 1);
    fvec o(nq), l(B * Hq * S), gq(nq), gk(nk), gv(nk);
    lora4j_attention_fwd(q.data(), k.data(), v.data(), seg.data(), B, S, Hq, Hkv, D, 0.0f, o.data(), l.data());
    lora4j_attention_bwd(q.data(), k.data(), v.data(), o.data(), g.data(), l.data(), seg.data(), B, S, Hq, Hkv, D,
                         0.0f, gq.data(), gk.data(), gv.data());
    AttnRef ref{B, S, Hq, Hkv, D, 0.0, {}, {}, {}, {}, {}};
    ref.run(q, k, v, g, seg.data());
    check_close("flash attention reference (double) vs CPU twin: out", o.data(), ref.out, 1e-5, 1e-5);
    check_close("flash attention reference (double) vs CPU twin: lse", l.data(), ref.lse, 1e-5, 1e-5);
    check_close("flash attention reference (double) vs CPU twin: dq", gq.data(), ref.dq, 1e-5, 1e-5);
    check_close("flash attention reference (double) vs CPU twin: dk", gk.data(), ref.dk, 1e-5, 1e-5);
    check_close("flash attention reference (double) vs CPU twin: dv", gv.data(), ref.dv, 1e-5, 1e-5);
  }
}

fvec absv(const fvec& v) {
  fvec a(v.size());
  for (size_t i = 0; i < v.size(); i++) a[i] = std::fabs(v[i]);
  return a;
}

// lora4j_cuda_sgemm where M, N, K >= 64 (the mma GEMM), every transpose combination, ragged
// edges, alpha/beta: bound = |alpha| (|op(A)|·|op(B)|) on the CPU.
void par_mma_sgemm(Rng& rng) {
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      const int64_t M = 131, N = 77, K = 300;
      const fvec A = rand_vec(rng, M * K, 1), B = rand_vec(rng, K * N, 1), C0 = rand_vec(rng, M * N, 1);
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      fvec C = C0, bound(M * N, 0.0f);
      lora4j_sgemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C.data(), N);
      lora4j_sgemm(ta, tb, M, N, K, 0.5f, absv(A).data(), lda, absv(B).data(), ldb, 0.0f, bound.data(), N);
      Dev dA(A), dB(B), dC(C0);
      lora4j_cuda_sgemm(ta, tb, M, N, K, 0.5f, dA.f(), lda, dB.f(), ldb, 0.25f, dC.f(), N, nullptr);
      cmp_bound("mma sgemm 131x77x300 trans " + std::to_string(ta) + std::to_string(tb), dC, C, bound, kBf16DotTol);
    }
}

// The fused LoRA linear where its products reach the mma GEMM (r = 64; T, in, out >= 64), with
// and without dropout: bounds from the same CPU op on absolute values (every term positive).
void par_mma_lora(Rng& rng) {
  struct Case { int64_t T, in, out, r; bool base, mask; };
  for (const Case& c : {Case{100, 200, 150, 64, true, true}, Case{77, 96, 130, 64, false, false}}) {
    const float s = 2.0f;
    char tagb[96];
    std::snprintf(tagb, sizeof tagb, "mma lora T%lld %lld->%lld r%lld%s%s", (long long)c.T, (long long)c.in,
                  (long long)c.out, (long long)c.r, c.base ? " W" : " W=null", c.mask ? " dropout" : "");
    const std::string tag = tagb;
    const int64_t T = c.T, in = c.in, out = c.out, r = c.r;
    fvec x = rand_vec(rng, T * in, 1), a = rand_vec(rng, r * in, 0.1f), b = rand_vec(rng, out * r, 0.1f),
         w = rand_vec(rng, out * in, 0.05f), dy = rand_vec(rng, T * out, 1), mask(T * in);
    lora4j_dropout_mask(7 + T, T * in, 0.2f, mask.data());
    const fvec y0 = rand_vec(rng, T * out, 1), dx0 = rand_vec(rng, T * in, 1), da0 = rand_vec(rng, r * in, 1),
               db0 = rand_vec(rng, out * r, 1);
    const int32_t acc = c.base ? 0 : 1;
    auto cpu = [&](const fvec& x_, const fvec& w_, const fvec& a_, const fvec& b_, const fvec& dy_, const fvec& m_,
                   bool zero_init, fvec& y, fvec& xa, fvec& dx, fvec& da, fvec& db) {
      y = zero_init ? fvec(T * out, 0.0f) : y0, xa.assign(T * r, 0.0f);
      dx = zero_init ? fvec(T * in, 0.0f) : dx0, da = zero_init ? fvec(r * in, 0.0f) : da0;
      db = zero_init ? fvec(out * r, 0.0f) : db0;
      fvec ws(lora4j_lora_bwd_workspace_floats(T, r));
      lora4j_lora_fwd(x_.data(), c.base ? w_.data() : nullptr, a_.data(), b_.data(), c.mask ? m_.data() : nullptr, T,
                      in, out, r, s, y.data(), xa.data());
      lora4j_lora_bwd(dy_.data(), x_.data(), c.base ? w_.data() : nullptr, a_.data(), b_.data(),
                      c.mask ? m_.data() : nullptr, xa.data(), T, in, out, r, s, dx.data(), acc, da.data(), db.data(),
                      ws.data());
    };
    fvec y, xa, dx, da, db, by, bxa, bdx, bda, bdb;
    cpu(x, w, a, b, dy, mask, false, y, xa, dx, da, db);
    cpu(absv(x), absv(w), absv(a), absv(b), absv(dy), mask, true, by, bxa, bdx, bda, bdb);
    Dev dxx(x), dA(a), dB(b), dW(w), ddy(dy), dm(mask), dy0(y0), dxa(T * r * 4), ddx(dx0), dda(da0), ddb(db0),
        dws(lora4j_lora_bwd_workspace_floats(T, r) * 4);
    if (c.base) dy0.poison();
    if (!acc) ddx.poison();
    dxa.poison();
    const float* dwp = c.base ? dW.f() : nullptr;
    const float* dmp = c.mask ? dm.f() : nullptr;
    lora4j_cuda_lora_fwd(dxx.f(), dwp, dA.f(), dB.f(), dmp, T, in, out, r, s, dy0.f(), dxa.f(), nullptr);
    cmp_bound(tag + " fwd y", dy0, y, by, 2 * kBf16DotTol);
    cmp_bound(tag + " fwd xa", dxa, xa, bxa, kBf16DotTol);
    Dev dxa_cpu(xa);  // backward from the CPU XA
    lora4j_cuda_lora_bwd(ddy.f(), dxx.f(), dwp, dA.f(), dB.f(), dmp, dxa_cpu.f(), T, in, out, r, s, ddx.f(), acc,
                         dda.f(), ddb.f(), dws.f(), nullptr);
    // dx and dA go through G = dY·B (rounded once more): twice the bound, like y
    cmp_bound(tag + " bwd dx", ddx, dx, bdx, 2 * kBf16DotTol);
    cmp_bound(tag + " bwd dA (+=)", dda, da, bda, 2 * kBf16DotTol);
    cmp_bound(tag + " bwd dB (+=)", ddb, db, bdb, kBf16DotTol);
  }
}

}  // namespace

#define PARITY_CASE(fn, seed) const h::Register reg_##fn("cuda", #fn, [] { Rng rng(seed); fn(rng); })
PARITY_CASE(par_flash_attention, 2040);
PARITY_CASE(par_mma_sgemm, 2041);
PARITY_CASE(par_mma_lora, 2042);
#undef PARITY_CASE
#endif  // LORA4J_WITH_CUDA
