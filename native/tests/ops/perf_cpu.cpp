// `perf cpu` cases of lora4j_harness: attention fwd+bwd and the fused LoRA linear, as GFLOP/s and as
// fractions of the sgemm rate measured in the same run (the practical ceiling here).
#include "tests/harness.h"
#include "lora4j/lora.h"
#include "lora4j/ops.h"
#include "lora4j/runtime.h"

#include <cstdio>
#include <functional>
#include <vector>


using namespace h;

namespace {
// Causal attention forward and backward at one shape, in GFLOP/s of useful (causal) work and as
// a fraction of the sgemm rate `ceiling` (GFLOP/s); the path is simd_isa's (LORA4J_DECODE_ISA).
void attention_perf(Rng& rng, int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                    double ceiling) {
  const size_t nq = B * S * Hq * D, nk = B * S * Hkv * D;
  std::vector<float> q = rand_vec(rng, nq, 1), k = rand_vec(rng, nk, 1), v = rand_vec(rng, nk, 1),
                     o(nq), lse(B * Hq * S), dout = rand_vec(rng, nq, 1), dq(nq), dk(nk), dv(nk);
  // useful (causal) FLOPs: fwd 2 products of S(S+1)/2 x D per query head, bwd 5 of them
  const double pairs = B * Hq * (S * (S + 1) / 2.0);
  const double f_fwd = 2 * 2 * pairs * D, f_bwd = 5 * 2 * pairs * D;
  const double tf = time_best(5, [&] {
    lora4j_attention_fwd(q.data(), k.data(), v.data(), nullptr, B, S, Hq, Hkv, D, 0.0f, o.data(),
                         lse.data());
  });
  const double tb = time_best(5, [&] {
    lora4j_attention_bwd(q.data(), k.data(), v.data(), o.data(), dout.data(), lse.data(), nullptr,
                         B, S, Hq, Hkv, D, 0.0f, dq.data(), dk.data(), dv.data());
  });
  const std::string shape = fmt("attention B%lld S%lld Hq%lld Hkv%lld D%lld", (long long)B,
                                (long long)S, (long long)Hq, (long long)Hkv, (long long)D);
  const double rf = f_fwd / tf * 1e-9, rb = f_bwd / tb * 1e-9, rt = (f_fwd + f_bwd) / (tf + tb) * 1e-9;
  std::printf("%-38s fwd %8.2f ms  %7.1f GFLOP/s  %.2f of sgemm\n", shape.c_str(), tf * 1e3, rf, rf / ceiling);
  std::printf("%-38s bwd %8.2f ms  %7.1f GFLOP/s  %.2f of sgemm\n", shape.c_str(), tb * 1e3, rb, rb / ceiling);
  std::printf("%-38s all %8.2f ms  %7.1f GFLOP/s  %.2f of sgemm\n", shape.c_str(), (tf + tb) * 1e3, rt, rt / ceiling);
}

void ops_cpu_perf() {
  Rng rng(99);
  double ceiling = 0;  // GFLOP/s
  // Ceiling: sgemm 1024^3 in this process.
  {
    const int64_t n = 1024;
    std::vector<float> a = rand_vec(rng, n * n, 1), b = rand_vec(rng, n * n, 1), c(n * n);
    const double t = time_best(3, [&] {
      lora4j_sgemm(0, 1, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    });
    ceiling = 2.0 * n * n * n / t * 1e-9;
    std::printf("ceiling  sgemm 1024^3 (NT)                 %8.2f ms  %7.1f GFLOP/s\n", t * 1e3,
                ceiling);
  }
  // Attention, causal: the stories15M training shape (B4 S256 H6 D48), an MHA D64 one, and a
  // Llama-3-like GQA D128 one; each against the sgemm ceiling just measured.
  attention_perf(rng, 4, 256, 6, 6, 48, ceiling);
  attention_perf(rng, 4, 256, 8, 8, 64, ceiling);
  attention_perf(rng, 1, 512, 8, 2, 128, ceiling);
  // LoRA linear T=512, 2048 -> 5632, r=16.
  {
    const int64_t T = 512, in = 2048, out = 5632, r = 16;
    const float s = 1.0f;
    std::vector<float> x = rand_vec(rng, T * in, 1), w = rand_vec(rng, out * in, 0.02f),
                       a = rand_vec(rng, r * in, 0.02f), b = rand_vec(rng, out * r, 0.02f),
                       y(T * out), xa(T * r), dy = rand_vec(rng, T * out, 1), dx(T * in),
                       da(r * in), db(out * r), ws(lora4j_lora_bwd_workspace_floats(T, r)),
                       mask(T * in), tmp_y(T * out), tmp_x(T * in), tmp_a(r * in),
                       tmp_b(out * r);
    lora4j_dropout_mask(5, T * in, 0.1f, mask.data());
    const double base_flops = 2.0 * T * in * out;
    const int reps = 3;
    const double t_base = time_best(reps, [&] {
      lora4j_sgemm(0, 1, T, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
    });
    const double t_fused = time_best(reps, [&] {
      lora4j_lora_fwd(x.data(), w.data(), a.data(), b.data(), nullptr, T, in, out, r, s, y.data(),
                      xa.data());
    });
    const double t_fused_drop = time_best(reps, [&] {
      lora4j_lora_fwd(x.data(), w.data(), a.data(), b.data(), mask.data(), T, in, out, r, s,
                      y.data(), xa.data());
    });
    // unfused: three matmuls into separate buffers, then an add
    const double t_unfused = time_best(reps, [&] {
      lora4j_sgemm(0, 1, T, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f, y.data(), out);
      lora4j_sgemm(0, 1, T, r, in, 1.0f, x.data(), in, a.data(), in, 0.0f, xa.data(), r);
      lora4j_sgemm(0, 1, T, out, r, 1.0f, xa.data(), r, b.data(), r, 0.0f, tmp_y.data(), out);
#pragma omp parallel for
      for (int64_t i = 0; i < T * out; i++) y[i] += s * tmp_y[i];
    });
    const double t_base_b = time_best(reps, [&] {
      lora4j_sgemm(0, 0, T, in, out, 1.0f, dy.data(), out, w.data(), in, 0.0f, dx.data(), in);
    });
    const double t_fused_b = time_best(reps, [&] {
      lora4j_lora_bwd(dy.data(), x.data(), w.data(), a.data(), b.data(), nullptr, xa.data(), T,
                      in, out, r, s, dx.data(), 0, da.data(), db.data(), ws.data());
    });
    const double t_fused_b_drop = time_best(reps, [&] {
      lora4j_lora_bwd(dy.data(), x.data(), w.data(), a.data(), b.data(), mask.data(), xa.data(),
                      T, in, out, r, s, dx.data(), 0, da.data(), db.data(), ws.data());
    });
    const double t_unfused_b = time_best(reps, [&] {
      lora4j_sgemm(0, 0, T, in, out, 1.0f, dy.data(), out, w.data(), in, 0.0f, dx.data(), in);
      lora4j_sgemm(0, 0, T, r, out, 1.0f, dy.data(), out, b.data(), r, 0.0f, ws.data(), r);
      lora4j_sgemm(0, 0, T, in, r, 1.0f, ws.data(), r, a.data(), in, 0.0f, tmp_x.data(), in);
#pragma omp parallel for
      for (int64_t i = 0; i < T * in; i++) dx[i] += s * tmp_x[i];
      lora4j_sgemm(1, 0, out, r, T, s, dy.data(), out, xa.data(), r, 0.0f, tmp_b.data(), r);
      for (int64_t i = 0; i < out * r; i++) db[i] += tmp_b[i];
      lora4j_sgemm(1, 0, r, in, T, s, ws.data(), r, x.data(), in, 0.0f, tmp_a.data(), in);
      for (int64_t i = 0; i < r * in; i++) da[i] += tmp_a[i];
    });
    auto row = [&](const char* name, double t, double ref) {
      std::printf("lora %-38s %8.2f ms  %7.1f GFLOP/s(base)  %+6.1f%% vs base sgemm\n", name,
                  t * 1e3, base_flops / t * 1e-9, (t / ref - 1) * 100);
    };
    std::printf("LoRA linear T=512 2048->5632 r=16 (GFLOP/s counts the base product only)\n");
    row("fwd base sgemm X·Wᵀ alone", t_base, t_base);
    row("fwd fused", t_fused, t_base);
    row("fwd fused + dropout mask", t_fused_drop, t_base);
    row("fwd unfused (3 sgemm + add)", t_unfused, t_base);
    row("bwd base sgemm dY·W alone", t_base_b, t_base_b);
    row("bwd fused (dX, dA, dB)", t_fused_b, t_base_b);
    row("bwd fused + dropout mask", t_fused_b_drop, t_base_b);
    row("bwd unfused (5 sgemm + adds)", t_unfused_b, t_base_b);
  }
}

const h::Register reg_ops_cpu_perf("perf-cpu", "transformer ops", ops_cpu_perf);
}  // namespace
