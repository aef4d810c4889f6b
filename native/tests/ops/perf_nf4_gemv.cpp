// `perf cpu` case of lora4j_harness: the NF4 T = 1 GEMV (decode) against the read floor on
// DRAM-resident weights, on the shapes of the synthetic d=1024 decode model (scripts/decode-bench.sh)
// and of a Llama-3-8B MLP (4096 x 14336). The floor is lora4j_bench_read over the same packed
// bytes + absmax (a streaming read, no decode, no FMA). Each shape is replicated until the copies
// pass 96 MiB, so neither side is served from cache, and both are timed in thread CPU time in
// alternating repetitions (the machine is shared: wall time measures the neighbours' load).
// Goal (issue 20): GEMV >= 0.5 of the floor's bandwidth.
#include "tests/harness.h"
#include "lora4j/infer.h"
#include "lora4j/nf4.h"
#include "lora4j/runtime.h"


#include <algorithm>
#include <cstdio>
#include <vector>

using namespace h;

namespace {

using Nf4Fwd = void (*)(const float*, int64_t, int64_t, int64_t, const uint8_t*, const float*, int32_t,
                        float*);

void nf4_gemv_floor_of(Nf4Fwd fwd, const char* what) {
  lora4j_set_num_threads(1);
  std::printf("NF4 T=1 GEMV (%s) vs read floor, 1 thread, path %s / bf16 %s (LORA4J_DECODE_ISA forces one)\n",
              what, lora4j_decode_isa(), lora4j_nf4_bf16_path());
  struct Shape { int64_t out, in; };
  for (const Shape s : {Shape{1024, 1024}, Shape{2816, 1024}, Shape{1024, 2816}, Shape{14336, 4096},
                        Shape{4096, 14336}}) {
    const int64_t n = s.out * s.in;
    const int copies = int(std::max<int64_t>(1, (int64_t(96) << 20) / (n / 2)));
    std::vector<float> w = randn(size_t(n), 21, 0.02f), x = randn(size_t(s.in), 22), y(size_t(s.out));
    std::vector<std::vector<uint8_t>> p(size_t(copies), std::vector<uint8_t>(size_t(n / 2)));
    std::vector<std::vector<float>> a(size_t(copies), std::vector<float>(size_t(n / 64)));
    for (int c = 0; c < copies; c++)
      lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, 64, p[size_t(c)].data(), a[size_t(c)].data());
    volatile uint64_t sink = 0;
    std::vector<double> tr, tg;
    for (int rep = 0; rep < 7; rep++) {
      const double t0 = thread_cpu_s();
      for (int c = 0; c < copies; c++)
        sink = sink + (lora4j_bench_read(p[size_t(c)].data(), n / 2) ^
                       lora4j_bench_read(a[size_t(c)].data(), n / 64 * 4));
      const double t1 = thread_cpu_s();
      for (int c = 0; c < copies; c++)
        fwd(x.data(), 1, s.in, s.out, p[size_t(c)].data(), a[size_t(c)].data(), 64, y.data());
      const double t2 = thread_cpu_s();
      tr.push_back(t1 - t0);
      tg.push_back(t2 - t1);
    }
    std::sort(tr.begin(), tr.end());
    std::sort(tg.begin(), tg.end());
    const double bytes = copies * (n / 2 + n / 64 * 4.0);
    const double ratio = tr[3] / tg[3];
    record(fmt("perf cpu nf4 gemv (%s) T=1 %lldx%lld vs read floor", what, (long long)s.out, (long long)s.in),
           ratio >= 0.5,
           fmt("%.1f GB/s vs floor %.1f GB/s: ratio %.2f (median of 7; range %.2f-%.2f) (goal >= 0.5)",
               bytes / tg[3] * 1e-9, bytes / tr[3] * 1e-9, ratio, tr[0] / tg[6], tr[6] / tg[0]));
  }
}

void nf4_gemv_floor() { nf4_gemv_floor_of(lora4j_nf4_matmul_fwd, "fp32 compute"); }
void nf4_gemv_floor_bf16() { nf4_gemv_floor_of(lora4j_nf4_matmul_fwd_bf16, "bf16 compute"); }

// NF4 prefill products (T = 256) with bnb_4bit_compute_dtype bfloat16 against the fp32-compute
// product (dequantized panels into OpenBLAS sgemm), alternating, thread CPU time, 1 thread; the
// goal behind it: NF4 prefill >= 0.8x llama.cpp's q4_0, which runs at ~2x its own F32 prefill.
void nf4_prefill_bf16() {
  lora4j_set_num_threads(1);
  std::printf("NF4 T=256 forward, bf16 compute (%s) vs fp32 compute, 1 thread\n", lora4j_nf4_bf16_path());
  struct Shape { int64_t out, in; };
  for (const Shape s : {Shape{288, 288}, Shape{768, 288}, Shape{288, 768}, Shape{1024, 1024}, Shape{2816, 1024},
                        Shape{1024, 2816}}) {
    const int64_t T = 256, n = s.out * s.in;
    std::vector<float> w = randn(size_t(n), 23, 0.02f), x = randn(size_t(T * s.in), 24), y(size_t(T * s.out));
    std::vector<uint8_t> p(size_t(n / 2));
    std::vector<float> a(size_t(n / 64));
    lora4j_nf4_quantize(w.data(), LORA4J_DTYPE_F32, n, 64, p.data(), a.data());
    std::vector<double> t32, t16;
    for (int rep = 0; rep < 7; rep++) {
      const double t0 = thread_cpu_s();
      lora4j_nf4_matmul_fwd(x.data(), T, s.in, s.out, p.data(), a.data(), 64, y.data());
      const double t1 = thread_cpu_s();
      lora4j_nf4_matmul_fwd_bf16(x.data(), T, s.in, s.out, p.data(), a.data(), 64, y.data());
      const double t2 = thread_cpu_s();
      t32.push_back(t1 - t0);
      t16.push_back(t2 - t1);
    }
    std::sort(t32.begin(), t32.end());
    std::sort(t16.begin(), t16.end());
    const double flop = 2.0 * T * n;
    record(fmt("perf cpu nf4 prefill T=256 %lldx%lld bf16 vs fp32 compute", (long long)s.out, (long long)s.in),
           true,
           fmt("bf16 %.1f GFLOP/s, fp32 %.1f GFLOP/s: speed-up %.2f (median of 7; range %.2f-%.2f)",
               flop / t16[3] * 1e-9, flop / t32[3] * 1e-9, t32[3] / t16[3], t32[0] / t16[6], t32[6] / t16[0]));
  }
}

const Register reg_nf4_gemv_floor("perf-cpu", "nf4 gemv floor", nf4_gemv_floor);
const Register reg_nf4_gemv_floor_bf16("perf-cpu", "nf4 gemv floor bf16", nf4_gemv_floor_bf16);
const Register reg_nf4_prefill_bf16("perf-cpu", "nf4 prefill bf16", nf4_prefill_bf16);

}  // namespace
