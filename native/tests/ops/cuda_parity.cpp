// `cuda` cases of lora4j_harness (transformer ops): every CUDA op against its CPU twin on fresh random inputs.
// Device outputs are poisoned with NaN (all-ones bytes) before each call, so an element the
// kernel fails to write fails the check (check_close never passes a NaN). Accumulated outputs
// start from the same random values on both sides. Also the CUDA part of `perf`.
#ifdef LORA4J_WITH_CUDA
#include "tests/harness.h"
#include "tests/cuda_dev.h"
#include "lora4j/infer.h"
#include "lora4j/lora.h"
#include "lora4j/ops.h"
#include "lora4j/runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>


using namespace h;
using fvec = std::vector<float>;
using ivec = std::vector<int32_t>;

namespace {

// CUDA vs CPU twin, both fp32: the two differ only in summation order / fused multiply-adds
// and libm vs CUDA expf/logf (<= 2 ulp).
constexpr double kElemAtol = 1e-6;   // elementwise ops
constexpr double kElemRtol = 1e-5;
constexpr double kRedAtol = 1e-5;    // row reductions (RMSNorm, softmax, attention, CE)
constexpr double kRedRtol = 1e-4;
// matmul-like outputs summing K products of O(1) values: per 16 summed terms
constexpr double kDotAtolPer16 = 2e-6;
double dot_atol(int64_t K) { return kDotAtolPer16 * (K < 16 ? 1.0 : K / 16.0); }


Dev* poisoned(size_t floats) {
  Dev* d = new Dev(floats * sizeof(float));
  d->poison();
  return d;
}

bool cmp(const std::string& name, Dev& d, const fvec& cpu, double atol, double rtol) {
  fvec g = d.down();
  std::vector<double> ref(cpu.begin(), cpu.end());
  return check_close(name, g.data(), ref.data(), ref.size(), atol, rtol);
}

void par_rmsnorm(Rng& rng) {
  for (int64_t dim : {288, 2048}) {
    const int64_t T = 300;
    const std::string tag = "rmsnorm T300 dim" + std::to_string(dim);
    fvec x = rand_vec(rng, T * dim, 2), w = rand_vec(rng, dim, 1), dy = rand_vec(rng, T * dim, 1),
         dw0 = rand_vec(rng, dim, 1);
    fvec y(T * dim), rstd(T), dx(T * dim), dw = dw0;
    lora4j_rmsnorm_fwd(x.data(), w.data(), T, dim, 1e-5f, y.data(), rstd.data());
    lora4j_rmsnorm_bwd(dy.data(), x.data(), w.data(), rstd.data(), T, dim, dx.data(), dw.data());
    Dev dx_(x), dw_(w), ddy(dy), ddw(dw0), dy_(T * dim * 4), dr(T * 4), ddx(T * dim * 4);
    dy_.poison(); dr.poison(); ddx.poison();
    lora4j_cuda_rmsnorm_fwd(dx_.f(), dw_.f(), T, dim, 1e-5f, dy_.f(), dr.f(), nullptr);
    cmp(tag + " fwd y", dy_, y, kRedAtol, kRedRtol);
    cmp(tag + " fwd rstd", dr, rstd, kRedAtol, kRedRtol);
    Dev drc(rstd);  // backward from the CPU rstd: isolates the backward
    lora4j_cuda_rmsnorm_bwd(ddy.f(), dx_.f(), dw_.f(), drc.f(), T, dim, ddx.f(), ddw.f(), nullptr);
    cmp(tag + " bwd dx", ddx, dx, kRedAtol, kRedRtol);
    cmp(tag + " bwd dw (+=)", ddw, dw, dot_atol(T), kRedRtol);
  }
}

void par_rope(Rng& rng) {
  for (int64_t D : {64, 128}) {
    const int64_t T = 300, H = 8;
    const std::string tag = "rope T300 H8 D" + std::to_string(D);
    fvec inv(D / 2);
    for (int64_t i = 0; i < D / 2; i++) inv[i] = static_cast<float>(1.0 / std::pow(500000.0, 2.0 * i / D));
    ivec pos(T);
    for (auto& p : pos) p = rng.below(8192);
    fvec x = rand_vec(rng, T * H * D, 1), y(x.size()), dx(x.size());
    lora4j_rope_fwd(x.data(), y.data(), pos.data(), inv.data(), T, H, D);
    lora4j_rope_bwd(x.data(), dx.data(), pos.data(), inv.data(), T, H, D);
    Dev dxx(x), dp(pos), di(inv), dy(x.size() * 4), ddx(x.size() * 4);
    dy.poison(); ddx.poison();
    lora4j_cuda_rope_fwd(dxx.f(), dy.f(), dp.i(), di.f(), T, H, D, nullptr);
    lora4j_cuda_rope_bwd(dxx.f(), ddx.f(), dp.i(), di.f(), T, H, D, nullptr);
    cmp(tag + " fwd", dy, y, kElemAtol, kElemRtol);
    cmp(tag + " bwd", ddx, dx, kElemAtol, kElemRtol);
    lora4j_cuda_rope_fwd(dxx.f(), dxx.f(), dp.i(), di.f(), T, H, D, nullptr);
    cmp(tag + " fwd in place", dxx, y, kElemAtol, kElemRtol);
  }
}

ivec packed_segments(Rng& rng, int64_t B, int64_t S) {
  ivec seg(B * S);
  for (int64_t b = 0; b < B; b++) {
    int32_t id = 0;
    int64_t left = 1 + rng.below(static_cast<int32_t>(S / 2));
    for (int64_t s = 0; s < S; s++) {
      if (left == 0) { id++; left = 1 + rng.below(static_cast<int32_t>(S / 2)); }
      seg[b * S + s] = id;
      left--;
    }
  }
  return seg;
}

void par_attention(Rng& rng) {
  // The fp32 SIMT kernels: S >= 64 with D in {64, .., 128} runs the tensor-core kernels instead
  // (cuda_parity_flash.cpp, bf16 tolerance), so D 64/128 are checked here below 64 rows.
  // softcap > 0: Gemma 2's attn_logit_softcapping, with q and k of scale 3 so scores pass the cap
  struct Case { int64_t B, S, Hq, Hkv, D; bool packed; float softcap; };
  const Case cases[] = {{2, 63, 8, 2, 64, true, 0},     {1, 50, 4, 4, 128, false, 0},
                        {1, 70, 2, 1, 256, true, 0},    {2, 65, 6, 6, 48, false, 0},
                        {1, 60, 4, 2, 64, true, 1.5f},  {1, 40, 2, 1, 256, false, 1.5f}};
  for (const Case& c : cases) {
    char tagb[120];
    std::snprintf(tagb, sizeof tagb, "attention B%lld S%lld Hq%lld Hkv%lld D%lld%s softcap %.1f", (long long)c.B,
                  (long long)c.S, (long long)c.Hq, (long long)c.Hkv, (long long)c.D,
                  c.packed ? " packed" : "", c.softcap);
    const std::string tag = tagb;
    const int64_t nq = c.B * c.S * c.Hq * c.D, nk = c.B * c.S * c.Hkv * c.D, nl = c.B * c.Hq * c.S;
    ivec seg = c.packed ? packed_segments(rng, c.B, c.S) : ivec();
    const int32_t* sg = c.packed ? seg.data() : nullptr;
    const float qk = c.softcap > 0 ? 3.0f : 1.0f;
    fvec q = rand_vec(rng, nq, qk), k = rand_vec(rng, nk, qk), v = rand_vec(rng, nk, 1),
         dout = rand_vec(rng, nq, 1), out(nq), lse(nl), dq(nq), dk(nk), dv(nk);
    lora4j_attention_fwd(q.data(), k.data(), v.data(), sg, c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, out.data(),
                         lse.data());
    lora4j_attention_bwd(q.data(), k.data(), v.data(), out.data(), dout.data(), lse.data(), sg, c.B,
                         c.S, c.Hq, c.Hkv, c.D, c.softcap, dq.data(), dk.data(), dv.data());
    Dev dq_(q), dk_(k), dv_(v), ddo(dout), dout_cpu(out), dlse_cpu(lse),
        dseg(c.packed ? seg : ivec(1)), o(nq * 4), l(nl * 4), gq(nq * 4), gk(nk * 4), gv(nk * 4);
    o.poison(); l.poison(); gq.poison(); gk.poison(); gv.poison();
    const int32_t* dsg = c.packed ? dseg.i() : nullptr;
    lora4j_cuda_attention_fwd(dq_.f(), dk_.f(), dv_.f(), dsg, c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, o.f(), l.f(),
                              nullptr);
    cmp(tag + " fwd out", o, out, kRedAtol, kRedRtol);
    cmp(tag + " fwd lse", l, lse, kRedAtol, kRedRtol);
    // backward from the CPU forward's out/lse: isolates the backward kernels
    lora4j_cuda_attention_bwd(dq_.f(), dk_.f(), dv_.f(), dout_cpu.f(), ddo.f(), dlse_cpu.f(), dsg,
                              c.B, c.S, c.Hq, c.Hkv, c.D, c.softcap, gq.f(), gk.f(), gv.f(), nullptr);
    cmp(tag + " bwd dq", gq, dq, kRedAtol, kRedRtol);
    cmp(tag + " bwd dk", gk, dk, kRedAtol, kRedRtol);
    cmp(tag + " bwd dv", gv, dv, kRedAtol, kRedRtol);
  }
}

void par_swiglu(Rng& rng) {
  const int64_t n = 1000003;
  fvec g = rand_vec(rng, n, 8), u = rand_vec(rng, n, 2), dh = rand_vec(rng, n, 1), h(n), dg(n), du(n);
  lora4j_swiglu_fwd(g.data(), u.data(), n, h.data());
  lora4j_swiglu_bwd(dh.data(), g.data(), u.data(), n, dg.data(), du.data());
  Dev g_(g), u_(u), dh_(dh), h_(n * 4), dg_(n * 4), du_(n * 4);
  h_.poison(); dg_.poison(); du_.poison();
  lora4j_cuda_swiglu_fwd(g_.f(), u_.f(), n, h_.f(), nullptr);
  lora4j_cuda_swiglu_bwd(dh_.f(), g_.f(), u_.f(), n, dg_.f(), du_.f(), nullptr);
  cmp("swiglu n=1000003 fwd", h_, h, kElemAtol, kElemRtol);
  cmp("swiglu bwd dgate", dg_, dg, kElemAtol, kElemRtol);
  cmp("swiglu bwd dup", du_, du, kElemAtol, kElemRtol);
}

void par_geglu(Rng& rng) {
  const int64_t n = 1000003;
  fvec g = rand_vec(rng, n, 8), u = rand_vec(rng, n, 2), dh = rand_vec(rng, n, 1), h(n), dg(n), du(n);
  lora4j_geglu_fwd(g.data(), u.data(), n, h.data());
  lora4j_geglu_bwd(dh.data(), g.data(), u.data(), n, dg.data(), du.data());
  Dev g_(g), u_(u), dh_(dh), h_(n * 4), dg_(n * 4), du_(n * 4);
  h_.poison(); dg_.poison(); du_.poison();
  lora4j_cuda_geglu_fwd(g_.f(), u_.f(), n, h_.f(), nullptr);
  lora4j_cuda_geglu_bwd(dh_.f(), g_.f(), u_.f(), n, dg_.f(), du_.f(), nullptr);
  cmp("geglu n=1000003 fwd", h_, h, kElemAtol, kElemRtol);
  cmp("geglu bwd dgate", dg_, dg, kElemAtol, kElemRtol);
  cmp("geglu bwd dup", du_, du, kElemAtol, kElemRtol);
}

// Final-logit soft cap (Gemma 2), forward and backward, against the CPU twin.
void par_softcap(Rng& rng) {
  const int64_t n = 1000003;
  const float c = 30.0f;
  fvec x = rand_vec(rng, n, 80), dy = rand_vec(rng, n, 1), y(n), dx(n);
  lora4j_softcap_fwd(x.data(), n, c, y.data());
  lora4j_softcap_bwd(dy.data(), x.data(), n, c, dx.data());
  Dev x_(x), dy_(dy), y_(n * 4), dx_(n * 4);
  y_.poison(); dx_.poison();
  lora4j_cuda_softcap_fwd(x_.f(), n, c, y_.f(), nullptr);
  lora4j_cuda_softcap_bwd(dy_.f(), x_.f(), n, c, dx_.f(), nullptr);
  cmp("softcap n=1000003 fwd", y_, y, kElemAtol, kElemRtol);
  cmp("softcap bwd dx", dx_, dx, kElemAtol, kElemRtol);
}

void par_embedding(Rng& rng) {
  const int64_t T = 500, dim = 288, vocab = 1000;
  ivec ids(T);
  for (auto& i : ids) i = rng.below(200);  // duplicates
  fvec table = rand_vec(rng, vocab * dim, 1), dout = rand_vec(rng, T * dim, 1),
       dt0 = rand_vec(rng, vocab * dim, 1), out(T * dim), dt = dt0;
  lora4j_embedding_fwd(ids.data(), table.data(), T, dim, vocab, out.data());
  lora4j_embedding_bwd(ids.data(), dout.data(), T, dim, vocab, dt.data());
  Dev di(ids), dtab(table), ddo(dout), ddt(dt0), o(T * dim * 4);
  o.poison();
  lora4j_cuda_embedding_fwd(di.i(), dtab.f(), T, dim, vocab, o.f(), nullptr);
  lora4j_cuda_embedding_bwd(di.i(), ddo.f(), T, dim, vocab, ddt.f(), nullptr);
  cmp("embedding fwd (exact)", o, out, 0, 0);
  cmp("embedding bwd (+=, atomics)", ddt, dt, kElemAtol * 10, kElemRtol);
}

// The single-token decode kernels (infer.h lora4j_decode_*) against their CPU twins.
void par_decode_step(Rng& rng) {
  struct Mv { int64_t in, out; };
  for (const Mv& c : {Mv{288, 768}, Mv{768, 288}, Mv{77, 19}, Mv{4096, 1024}}) {
    const std::string tag = "decode matvec " + std::to_string(c.out) + "x" + std::to_string(c.in);
    fvec x = rand_vec(rng, c.in, 1), w = rand_vec(rng, c.in * c.out, 1), y0 = rand_vec(rng, c.out, 1);
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); i++) {
      uint32_t u;
      std::memcpy(&u, &w[i], 4);
      wb[i] = static_cast<uint16_t>(u >> 16);
    }
    fvec y(c.out), ya = y0, yb(c.out), s(c.out);
    fvec wu = rand_vec(rng, c.in * c.out, 1);
    lora4j_decode_matvec(x.data(), c.in, w.data(), LORA4J_DECODE_F32, c.out, 0, y.data());
    lora4j_decode_matvec(x.data(), c.in, w.data(), LORA4J_DECODE_F32, c.out, 1, ya.data());
    lora4j_decode_matvec(x.data(), c.in, wb.data(), LORA4J_DECODE_BF16, c.out, 0, yb.data());
    lora4j_decode_gate_up(x.data(), c.in, w.data(), wu.data(), LORA4J_DECODE_F32, c.out, s.data());
    Dev dx(x), dw(w), dwb(wb), dwu(wu), dya(y0), dy(c.out * 4), dyb(c.out * 4), ds(c.out * 4);
    dy.poison(); dyb.poison(); ds.poison();
    lora4j_cuda_decode_matvec(dx.f(), c.in, dw.p, LORA4J_DECODE_F32, c.out, 0, dy.f(), nullptr);
    lora4j_cuda_decode_matvec(dx.f(), c.in, dw.p, LORA4J_DECODE_F32, c.out, 1, dya.f(), nullptr);
    lora4j_cuda_decode_matvec(dx.f(), c.in, dwb.p, LORA4J_DECODE_BF16, c.out, 0, dyb.f(), nullptr);
    lora4j_cuda_decode_gate_up(dx.f(), c.in, dw.p, dwu.p, LORA4J_DECODE_F32, c.out, ds.f(), nullptr);
    cmp(tag + " f32 =", dy, y, dot_atol(c.in), kRedRtol);
    cmp(tag + " f32 +=", dya, ya, dot_atol(c.in), kRedRtol);
    cmp(tag + " bf16", dyb, yb, dot_atol(c.in), kRedRtol);
    cmp(tag + " gate_up", ds, s, dot_atol(c.in) * 4, kRedRtol);
  }
  struct At { int64_t Hq, Hkv, D, pos, start; };
  for (const At& c : {At{6, 6, 48, 0, 0}, At{8, 2, 64, 200, 0}, At{4, 1, 128, 90, 40}, At{32, 8, 128, 1000, 0}}) {
    const std::string tag = "decode attention Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) +
                            " D" + std::to_string(c.D) + " pos" + std::to_string(c.pos) + " start" +
                            std::to_string(c.start);
    const int64_t cap = c.pos + 5, kv = c.Hkv * c.D;
    fvec q = rand_vec(rng, c.Hq * c.D, 1), k = rand_vec(rng, kv, 1), v = rand_vec(rng, kv, 1),
         kc = rand_vec(rng, cap * kv, 1), vc = rand_vec(rng, cap * kv, 1), inv(c.D / 2), out(c.Hq * c.D);
    for (int64_t i = 0; i < c.D / 2; i++) inv[i] = std::pow(10000.0f, -2.0f * i / c.D);
    Dev dq(q), dk(k), dv(v), dkc(kc), dvc(vc), dinv(inv), dout(c.Hq * c.D * 4);
    dout.poison();
    lora4j_decode_attention(q.data(), k.data(), v.data(), (int32_t)c.pos, inv.data(), kc.data(), vc.data(),
                            cap, c.start, c.Hq, c.Hkv, c.D, out.data());
    lora4j_cuda_decode_attention(dq.f(), dk.f(), dv.f(), (int32_t)c.pos, dinv.f(), dkc.f(), dvc.f(), cap,
                                 c.start, c.Hq, c.Hkv, c.D, dout.f(), nullptr);
    cmp(tag + " out", dout, out, kRedAtol, kRedRtol);
    cmp(tag + " q roped", dq, q, kElemAtol, kElemRtol);
    cmp(tag + " k cache", dkc, kc, kElemAtol, kElemRtol);
    cmp(tag + " v cache (exact)", dvc, vc, 0, 0);
  }
  fvec table = rand_vec(rng, 1000 * 288, 1), row(288);
  lora4j_decode_embedding(table.data(), 1000, 288, 417, row.data());
  Dev dt(table), dr(288 * 4);
  dr.poison();
  lora4j_cuda_decode_embedding(dt.f(), 1000, 288, 417, dr.f(), nullptr);
  cmp("decode embedding (exact)", dr, row, 0, 0);
}

void par_ce(Rng& rng) {
  const int64_t T = 64, V = 32000;
  ivec labels(T);
  for (auto& l : labels) l = rng.below(V);
  for (int64_t t = 0; t < T; t += 5) labels[t] = LORA4J_IGNORE_INDEX;
  fvec z = rand_vec(rng, T * V, 10), loss(T), dz(T * V);
  float sum = 0;
  const float scale = 1.0f / 51.0f;
  lora4j_ce_fwd(z.data(), labels.data(), T, V, loss.data(), &sum);
  lora4j_ce_bwd(z.data(), labels.data(), T, V, scale, dz.data());
  Dev dzz(z), dl(labels), l(T * 4), s(4), g(T * V * 4);
  l.poison(); s.poison(); g.poison();
  lora4j_cuda_ce_fwd(dzz.f(), dl.i(), T, V, l.f(), s.f(), nullptr);
  lora4j_cuda_ce_bwd(dzz.f(), dl.i(), T, V, scale, g.f(), nullptr);
  cmp("ce T64 V32000 loss", l, loss, kRedAtol, kRedRtol);
  cmp("ce loss_sum", s, fvec{sum}, kRedAtol, kRedRtol);
  cmp("ce dlogits", g, dz, kRedAtol * 1e-2, kRedRtol);
  lora4j_cuda_ce_bwd(dzz.f(), dl.i(), T, V, scale, dzz.f(), nullptr);
  cmp("ce dlogits in place", dzz, dz, kRedAtol * 1e-2, kRedRtol);
}

// Vocabulary-chunked CE: the CPU twin slices the same logits; the CUDA ops run on a device
// slice buffer with row stride vc (what LoraTrainingModel's sgemm writes), V not a multiple of vc.
void par_ce_vocab_chunks(Rng& rng) {
  const int64_t T = 48, V = 40000, vc = 16384;
  ivec labels(T);
  for (auto& l : labels) l = rng.below(V);
  for (int64_t t = 0; t < T; t += 7) labels[t] = LORA4J_IGNORE_INDEX;
  labels[1] = 0;
  labels[2] = V - 1;
  const fvec z = rand_vec(rng, T * V, 10);
  const float scale = 1.0f / 41.0f;
  auto slice_of = [&](int64_t v0, int64_t w) {
    fvec s(T * w);
    for (int64_t t = 0; t < T; t++) std::memcpy(&s[t * w], &z[t * V + v0], sizeof(float) * w);
    return s;
  };
  fvec rmax(T), rsum(T), zy(T), lse(T), loss(T), dzc(T * V);
  float sum = 0;
  for (int64_t v0 = 0; v0 < V; v0 += vc) {
    const int64_t w = std::min(vc, V - v0);
    fvec s = slice_of(v0, w);
    lora4j_ce_chunk_stats(s.data(), labels.data(), T, w, v0, v0 == 0, rmax.data(), rsum.data(),
                          zy.data());
  }
  lora4j_ce_chunk_finalize(labels.data(), rmax.data(), rsum.data(), zy.data(), T, lse.data(),
                           loss.data(), &sum);
  Dev dl(labels), dmax(T * 4), dsum(T * 4), dzy(T * 4), dlse(T * 4), dloss(T * 4), ds(4),
      dslice(T * vc * 4);
  dmax.poison(); dsum.poison(); dzy.poison(); dlse.poison(); dloss.poison(); ds.poison();
  for (int64_t v0 = 0; v0 < V; v0 += vc) {
    const int64_t w = std::min(vc, V - v0);
    lora4j_cuda_memcpy(dslice.p, slice_of(v0, w).data(), T * w * 4, 1, nullptr);
    lora4j_cuda_ce_chunk_stats(dslice.f(), dl.i(), T, w, v0, v0 == 0, dmax.f(), dsum.f(),
                               dzy.f(), nullptr);
  }
  lora4j_cuda_ce_chunk_finalize(dl.i(), dmax.f(), dsum.f(), dzy.f(), T, dlse.f(), dloss.f(),
                                ds.f(), nullptr);
  cmp("ce vocab chunks V40000 vc16384 lse", dlse, lse, kRedAtol, kRedRtol);
  cmp("ce vocab chunks loss", dloss, loss, kRedAtol, kRedRtol);
  cmp("ce vocab chunks loss_sum", ds, fvec{sum}, kRedAtol, kRedRtol);
  for (int64_t v0 = 0; v0 < V; v0 += vc) {
    const int64_t w = std::min(vc, V - v0);
    fvec s = slice_of(v0, w);
    lora4j_ce_chunk_grad(s.data(), labels.data(), T, w, v0, lse.data(), scale);
    lora4j_cuda_memcpy(dslice.p, slice_of(v0, w).data(), T * w * 4, 1, nullptr);
    lora4j_cuda_ce_chunk_grad(dslice.f(), dl.i(), T, w, v0, dlse.f(), scale, nullptr);
    fvec g = dslice.down();
    g.resize(T * w);
    std::vector<double> ref(s.begin(), s.end());
    check_close("ce vocab chunks dlogits v0 " + std::to_string(v0), g.data(), ref.data(),
                ref.size(), kRedAtol * 1e-2, kRedRtol);
  }
}

// Asynchronous offload round trip (LoraTrainingModel "unsloth" mode through CudaBackend):
// compute stream writes x; side stream waits on an event, copies x to pinned host memory; the
// compute stream waits on the copy's event before overwriting x; later the side stream copies
// the host buffer into a fresh device buffer and the compute stream waits on that event. The
// round trip must be exact, and the overwrite must not have leaked into the host copy.
void par_offload_round_trip(Rng& rng) {
  const int64_t n = 1 << 22;  // 16 MiB: long enough for a race to show
  const fvec x = rand_vec(rng, n, 1);
  Dev src(x), back(n * 4);
  back.poison();
  void* compute = lora4j_cuda_stream_create();
  void* side = lora4j_cuda_stream_create();
  void* produced = lora4j_cuda_event_create();
  void* copied = lora4j_cuda_event_create();
  void* fetched = lora4j_cuda_event_create();
  float* host = static_cast<float*>(lora4j_cuda_host_alloc(n * 4));
  lora4j_cuda_event_record(produced, compute);
  lora4j_cuda_stream_wait_event(side, produced);
  lora4j_cuda_memcpy(host, src.p, n * 4, 2, side);
  lora4j_cuda_event_record(copied, side);
  lora4j_cuda_stream_wait_event(compute, copied);
  lora4j_cuda_memset(src.p, 0x7F, n * 4, compute);  // the compute stream reuses the source
  lora4j_cuda_memcpy(back.p, host, n * 4, 1, side);  // prefetch
  lora4j_cuda_event_record(fetched, side);
  lora4j_cuda_stream_wait_event(compute, fetched);
  lora4j_cuda_stream_synchronize(compute);
  check_true("offload: event query after sync", lora4j_cuda_event_query(fetched) == 1,
             "event not complete");
  std::vector<double> ref(x.begin(), x.end());
  check_close("offload round trip host copy (exact)", host, ref.data(), n, 0, 0);
  cmp("offload round trip device copy (exact)", back, x, 0, 0);
  lora4j_cuda_host_free(host);
  lora4j_cuda_event_destroy(produced);
  lora4j_cuda_event_destroy(copied);
  lora4j_cuda_event_destroy(fetched);
  lora4j_cuda_stream_destroy(compute);
  lora4j_cuda_stream_destroy(side);
}

void par_lora(Rng& rng) {
  struct Case { int64_t T, in, out, r; bool base, mask; };
  // Shapes that keep every product on the fp32 SIMT GEMM (a dimension < 64); the tensor-core
  // GEMM's LoRA cases are in cuda_parity_flash.cpp.
  const Case cases[] = {{48, 1000, 700, 16, true, false}, {48, 1000, 700, 16, true, true},
                        {77, 288, 768, 8, false, true}, {77, 768, 288, 32, false, false}};
  for (const Case& c : cases) {
    const int64_t T = c.T, in = c.in, out = c.out, r = c.r;
    const float s = 2.0f;
    char tagb[96];
    std::snprintf(tagb, sizeof tagb, "lora T%lld %lld->%lld r%lld%s%s", (long long)T, (long long)in,
                  (long long)out, (long long)r, c.base ? " W" : " W=null", c.mask ? " dropout" : "");
    const std::string tag = tagb;
    fvec x = rand_vec(rng, T * in, 1), a = rand_vec(rng, r * in, 0.1f), b = rand_vec(rng, out * r, 0.1f),
         w = rand_vec(rng, out * in, 0.05f), dy = rand_vec(rng, T * out, 1), mask(T * in);
    lora4j_dropout_mask(99 + T, T * in, 0.2f, mask.data());
    const float* wp = c.base ? w.data() : nullptr;
    const float* mp = c.mask ? mask.data() : nullptr;
    fvec y0 = rand_vec(rng, T * out, 1), dx0 = rand_vec(rng, T * in, 1), da0 = rand_vec(rng, r * in, 1),
         db0 = rand_vec(rng, out * r, 1);
    fvec y = y0, xa(T * r), dx = dx0, da = da0, db = db0, ws(lora4j_lora_bwd_workspace_floats(T, r));
    const int32_t acc = c.base ? 0 : 1;
    lora4j_lora_fwd(x.data(), wp, a.data(), b.data(), mp, T, in, out, r, s, y.data(), xa.data());
    lora4j_lora_bwd(dy.data(), x.data(), wp, a.data(), b.data(), mp, xa.data(), T, in, out, r, s,
                    dx.data(), acc, da.data(), db.data(), ws.data());
    Dev dxx(x), dA(a), dB(b), dW(w), ddy(dy), dm(mask), dy0(y0), dxa(T * r * 4), ddx(dx0),
        dda(da0), ddb(db0), dws(ws.size() * 4);
    if (c.base) dy0.poison();  // overwritten with a dense W
    if (!acc) ddx.poison();
    dxa.poison();
    const float* dwp = c.base ? dW.f() : nullptr;
    const float* dmp = c.mask ? dm.f() : nullptr;
    lora4j_cuda_lora_fwd(dxx.f(), dwp, dA.f(), dB.f(), dmp, T, in, out, r, s, dy0.f(), dxa.f(), nullptr);
    cmp(tag + " fwd y", dy0, y, dot_atol(in), kRedRtol);
    cmp(tag + " fwd xa", dxa, xa, dot_atol(in), kRedRtol);
    Dev dxa_cpu(xa);  // backward from the CPU XA
    lora4j_cuda_lora_bwd(ddy.f(), dxx.f(), dwp, dA.f(), dB.f(), dmp, dxa_cpu.f(), T, in, out, r, s,
                         ddx.f(), acc, dda.f(), ddb.f(), dws.f(), nullptr);
    cmp(tag + " bwd dx", ddx, dx, dot_atol(out), kRedRtol);
    cmp(tag + " bwd dA (+=)", dda, da, dot_atol(T) * 4, kRedRtol);
    cmp(tag + " bwd dB (+=)", ddb, db, dot_atol(T) * 4, kRedRtol);
  }
  // dropout mask: bit-identical to the CPU's
  const int64_t n = 123457;
  fvec m(n);
  lora4j_dropout_mask(42, n, 0.25f, m.data());
  Dev dm(n * 4);
  dm.poison();
  lora4j_cuda_dropout_mask(42, n, 0.25f, dm.f(), nullptr);
  cmp("dropout mask (bit-identical)", dm, m, 0, 0);
  // the device SIMT GEMM itself (N < 64), all four transpose combinations
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      const int64_t M = 131, N = 50, K = 300;
      fvec A = rand_vec(rng, M * K, 1), B = rand_vec(rng, K * N, 1), C0 = rand_vec(rng, M * N, 1), C = C0;
      const int64_t lda = ta ? M : K, ldb = tb ? K : N;
      lora4j_sgemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C.data(), N);
      Dev dA(A), dB(B), dC(C0);
      lora4j_cuda_sgemm(ta, tb, M, N, K, 0.5f, dA.f(), lda, dB.f(), ldb, 0.25f, dC.f(), N, nullptr);
      cmp("cuda_sgemm trans " + std::to_string(ta) + std::to_string(tb), dC, C, dot_atol(K), kRedRtol);
    }
}

void par_adamw(Rng& rng) {
  const int64_t n = 1000003;
  for (float wd : {0.0f, 0.01f}) {
    fvec p = rand_vec(rng, n, 1), m = rand_vec(rng, n, 0.01f), v(n);
    for (auto& x : v) x = static_cast<float>(rng.uniform() * 1e-4);
    fvec g = rand_vec(rng, n, 0.01f);
    Dev dp(p), dg(g), dm(m), dv(v);
    lora4j_adamw_step(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.9f, 0.999f, 1e-8f, wd, 7, 0.5f);
    lora4j_cuda_adamw_step(dp.f(), dg.f(), dm.f(), dv.f(), n, 2e-4f, 0.9f, 0.999f, 1e-8f, wd, 7, 0.5f, nullptr);
    const std::string tag = std::string("adamw wd=") + (wd > 0 ? "0.01" : "0");
    cmp(tag + " p", dp, p, 1e-7, kElemRtol);
    cmp(tag + " m", dm, m, 1e-9, kElemRtol);
    cmp(tag + " v", dv, v, 1e-12, kElemRtol);
  }
  fvec x = rand_vec(rng, n, 3);
  double ref = 1.5;
  lora4j_sumsq(x.data(), n, &ref);
  Dev dx(x), dout(sizeof(double));
  const double init = 1.5;
  lora4j_cuda_memcpy(dout.p, &init, sizeof(double), 1, nullptr);
  lora4j_cuda_sumsq(dx.f(), n, static_cast<double*>(dout.p), nullptr);
  double got = 0;
  lora4j_cuda_device_synchronize();
  lora4j_cuda_memcpy(&got, dout.p, sizeof(double), 2, nullptr);
  char buf[96];
  std::snprintf(buf, sizeof buf, "got %.15g cpu %.15g", got, ref);
  check_true("sumsq (double, +=)", std::isfinite(got) && std::fabs(got - ref) <= 1e-12 * std::fabs(ref), buf);
}

}  // namespace

// KV-cache decode attention (infer.cu) and axpy. L = 12288 is the largest cache the launcher
// accepts (its scores fill the 48 KiB of shared memory a kernel gets without opt-in).
void par_decode(Rng& rng) {
  {
    const int64_t n = 100003;
    fvec x = rand_vec(rng, n, 1), y0 = rand_vec(rng, n, 1), y = y0;
    lora4j_axpy(n, 0.37f, x.data(), y.data());
    Dev dx(x), dy(y0);
    lora4j_cuda_axpy(n, 0.37f, dx.f(), dy.f(), nullptr);
    cmp("axpy n100003", dy, y, kElemAtol, kElemRtol);
  }
  struct Shape { int64_t B, L, cache, Hq, Hkv, D; float softcap; };
  for (const Shape& c : {Shape{2, 1, 4, 4, 2, 64, 0}, Shape{3, 37, 40, 6, 6, 48, 0}, Shape{1, 300, 333, 8, 2, 128, 0},
                         Shape{1, 12288, 12288, 2, 1, 8, 0}, Shape{2, 37, 40, 4, 2, 64, 1.5f}}) {
    const std::string tag = "attention_decode B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " Hq" +
                            std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) + " D" + std::to_string(c.D) +
                            (c.softcap > 0 ? " softcap" : "");
    const float qk = c.softcap > 0 ? 3.0f : 1.0f;
    fvec q = rand_vec(rng, c.B * c.Hq * c.D, qk), k = rand_vec(rng, c.B * c.cache * c.Hkv * c.D, qk),
         v = rand_vec(rng, c.B * c.cache * c.Hkv * c.D, 1), out(c.B * c.Hq * c.D);
    lora4j_attention_decode(q.data(), k.data(), v.data(), c.B, c.L, c.cache, c.Hq, c.Hkv, c.D, c.softcap, out.data());
    Dev dq(q), dk(k), dv(v), dout(out.size() * 4);
    dout.poison();
    try {
      lora4j_cuda_attention_decode(dq.f(), dk.f(), dv.f(), c.B, c.L, c.cache, c.Hq, c.Hkv, c.D, c.softcap, dout.f(),
                                   nullptr);
      cmp(tag, dout, out, kRedAtol, kRedRtol);
    } catch (const std::exception& e) {
      check_true(tag, false, e.what());
    }
  }
}

// One case per op family, each with its own seeded RNG.
#define PARITY_CASE(fn, seed) const h::Register reg_##fn("cuda", #fn, [] { Rng rng(seed); fn(rng); })
PARITY_CASE(par_rmsnorm, 2024);
PARITY_CASE(par_rope, 2025);
PARITY_CASE(par_attention, 2026);
PARITY_CASE(par_swiglu, 2027);
PARITY_CASE(par_geglu, 2127);
PARITY_CASE(par_softcap, 2128);
PARITY_CASE(par_embedding, 2028);
PARITY_CASE(par_ce, 2029);
PARITY_CASE(par_ce_vocab_chunks, 2030);
PARITY_CASE(par_offload_round_trip, 2031);
PARITY_CASE(par_lora, 2032);
PARITY_CASE(par_adamw, 2033);
PARITY_CASE(par_decode, 2034);
PARITY_CASE(par_decode_step, 2035);
#undef PARITY_CASE

static void ops_cuda_perf() {
  Rng rng(7);
  auto time_dev = [](int reps, const std::function<void()>& f) {
    f();
    lora4j_cuda_device_synchronize();
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
      const double t0 = now_s();
      f();
      lora4j_cuda_device_synchronize();
      best = std::min(best, now_s() - t0);
    }
    return best;
  };
  std::printf("CUDA perf on %s\n", lora4j_cuda_device_info(0));
  {
    const int64_t B = 4, S = 2048, Hq = 32, Hkv = 8, D = 128;
    const int64_t nq = B * S * Hq * D, nk = B * S * Hkv * D;
    Dev q(rand_vec(rng, nq, 1)), k(rand_vec(rng, nk, 1)), v(rand_vec(rng, nk, 1)),
        dout(rand_vec(rng, nq, 1)), o(nq * 4), l(B * Hq * S * 4), dq(nq * 4), dk(nk * 4), dv(nk * 4);
    const double pairs = B * Hq * (S * (S + 1) / 2.0);
    const double tf = time_dev(3, [&] {
      lora4j_cuda_attention_fwd(q.f(), k.f(), v.f(), nullptr, B, S, Hq, Hkv, D, 0.0f, o.f(), l.f(), nullptr);
    });
    const double tb = time_dev(3, [&] {
      lora4j_cuda_attention_bwd(q.f(), k.f(), v.f(), o.f(), dout.f(), l.f(), nullptr, B, S, Hq, Hkv,
                                D, 0.0f, dq.f(), dk.f(), dv.f(), nullptr);
    });
    std::printf("cuda attention B4 S2048 Hq32 Hkv8 D128 fwd %8.3f ms %7.2f TFLOP/s\n", tf * 1e3,
                4 * pairs * D / tf * 1e-12);
    std::printf("cuda attention                         bwd %8.3f ms %7.2f TFLOP/s\n", tb * 1e3,
                10 * pairs * D / tb * 1e-12);
  }
  {
    const int64_t T = 4096, in = 4096, out = 14336, r = 16;
    Dev x(rand_vec(rng, T * in, 1)), w(rand_vec(rng, out * in, 0.02f)), a(rand_vec(rng, r * in, 0.02f)),
        b(rand_vec(rng, out * r, 0.02f)), y(T * out * 4), xa(T * r * 4), dy(rand_vec(rng, T * out, 1)),
        dx(T * in * 4), da(r * in * 4), db(out * r * 4), ws(T * r * 4);
    const double flops = 2.0 * T * in * out;
    const double tb = time_dev(3, [&] {
      lora4j_cuda_sgemm(0, 1, T, out, in, 1.0f, x.f(), in, w.f(), in, 0.0f, y.f(), out, nullptr);
    });
    const double tf = time_dev(3, [&] {
      lora4j_cuda_lora_fwd(x.f(), w.f(), a.f(), b.f(), nullptr, T, in, out, r, 1.0f, y.f(), xa.f(), nullptr);
    });
    const double tbb = time_dev(3, [&] {
      lora4j_cuda_sgemm(0, 0, T, in, out, 1.0f, dy.f(), out, w.f(), in, 0.0f, dx.f(), in, nullptr);
    });
    const double tfb = time_dev(3, [&] {
      lora4j_cuda_lora_bwd(dy.f(), x.f(), w.f(), a.f(), b.f(), nullptr, xa.f(), T, in, out, r, 1.0f,
                           dx.f(), 0, da.f(), db.f(), ws.f(), nullptr);
    });
    std::printf("cuda lora T4096 4096->14336 r16: base sgemm fwd %.3f ms (%.2f TFLOP/s), fused fwd "
                "%.3f ms (%+.1f%%)\n", tb * 1e3, flops / tb * 1e-12, tf * 1e3, (tf / tb - 1) * 100);
    std::printf("cuda lora                        base sgemm bwd %.3f ms (%.2f TFLOP/s), fused bwd "
                "%.3f ms (%+.1f%%)\n", tbb * 1e3, flops / tbb * 1e-12, tfb * 1e3, (tfb / tbb - 1) * 100);
  }
}
static const h::Register reg_ops_cuda_perf("perf-cuda", "transformer ops", ops_cuda_perf);
#endif  // LORA4J_WITH_CUDA
