// `perf cpu` case of lora4j_harness: the fp32 and bf16 T = 1 GEMV (lora4j_decode_matvec, the
// decode step's projections and lm_head) against the read floor on DRAM-resident weights, on the
// shapes of the synthetic d=1024 decode model (scripts/decode-bench.sh: attention 1024x1024, MLP
// 2816x1024 and 1024x2816, lm_head 32000x1024) and of a Llama-3-8B MLP (14336x4096, 4096x14336).
// The floor is lora4j_bench_read over the same weight bytes (one sequential stream, no FMA); the
// GEMV reads its rows as 4 concurrent streams (decode.cpp), which can beat one stream, so the
// same bytes read as 4 streams (read4 below) are reported beside it as a second ceiling. Each
// shape is replicated until the copies pass 96 MiB, so neither side is served from cache, and
// both are timed in thread CPU time in alternating repetitions (the machine is shared: wall time
// measures the neighbours' load). Goal (issue 20): GEMV >= 0.9 of the floor's bandwidth, so that
// decode of a model larger than the caches runs at the speed of reading its weights.
#include "tests/harness.h"
#include "lora4j/infer.h"
#include "lora4j/nf4.h"  // lora4j_set_num_threads
#include "lora4j/runtime.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdio>
#include <vector>

using namespace h;

namespace {

// The bytes [p, p + bytes) read as 4 concurrent sequential streams, one per quarter (as the GEMV's
// 4 row streams walk W); XOR so nothing can be skipped.
uint64_t read4(const uint8_t* p, int64_t bytes) {
  const int64_t q = bytes / 4 / 32 * 32;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < q; i += 32) {
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + q + i)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * q + i)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 3 * q + i)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3)));
  uint64_t h = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
  for (int64_t i = 4 * q; i < bytes; i++) h ^= p[i];
  return h;
}

void decode_gemv_floor() {
  lora4j_set_num_threads(1);
  std::printf("fp32/bf16 T=1 GEMV vs read floor, 1 thread, path %s (LORA4J_DECODE_ISA forces one)\n",
              lora4j_decode_isa());
  struct Shape { int64_t out, in; };
  for (const int32_t wtype : {LORA4J_DECODE_F32, LORA4J_DECODE_BF16}) {
    const int64_t eb = wtype == LORA4J_DECODE_BF16 ? 2 : 4;
    for (const Shape s : {Shape{1024, 1024}, Shape{2816, 1024}, Shape{1024, 2816}, Shape{32000, 1024},
                          Shape{14336, 4096}, Shape{4096, 14336}}) {
      const int64_t n = s.out * s.in, bytes = n * eb;
      const int copies = int(std::max<int64_t>(1, ((int64_t(96) << 20) + bytes - 1) / bytes));
      Rng rng(31);
      std::vector<std::vector<uint8_t>> w(size_t(copies), std::vector<uint8_t>(static_cast<size_t>(bytes)));
      for (auto& c : w) {  // values in [-0.05, 0.05): fp32, or its top half (bf16)
        for (int64_t i = 0; i < n; i++) {
          const float f = rng.sym(0.05f);
          uint32_t u;
          std::memcpy(&u, &f, 4);
          if (eb == 2) {
            const uint16_t hbits = uint16_t(u >> 16);
            std::memcpy(c.data() + i * 2, &hbits, 2);
          } else {
            std::memcpy(c.data() + i * 4, &u, 4);
          }
        }
      }
      std::vector<float> x = randn(size_t(s.in), 32), y(size_t(s.out));
      volatile uint64_t sink = 0;
      std::vector<double> tr, tg, t4;
      for (int rep = 0; rep < 7; rep++) {
        const double t0 = thread_cpu_s();
        for (int c = 0; c < copies; c++) sink = sink + lora4j_bench_read(w[size_t(c)].data(), bytes);
        const double t1 = thread_cpu_s();
        for (int c = 0; c < copies; c++)
          lora4j_decode_matvec(x.data(), s.in, w[size_t(c)].data(), wtype, s.out, 0, y.data());
        const double t2 = thread_cpu_s();
        for (int c = 0; c < copies; c++) sink = sink + read4(w[size_t(c)].data(), bytes);
        const double t3 = thread_cpu_s();
        tr.push_back(t1 - t0);
        tg.push_back(t2 - t1);
        t4.push_back(t3 - t2);
      }
      std::sort(tr.begin(), tr.end());
      std::sort(tg.begin(), tg.end());
      std::sort(t4.begin(), t4.end());
      const double total = double(copies) * double(bytes), ratio = tr[3] / tg[3];
      record(fmt("perf cpu %s gemv T=1 %lldx%lld vs read floor", eb == 2 ? "bf16" : "fp32",
                 (long long)s.out, (long long)s.in),
             ratio >= 0.9,
             fmt("%.1f GB/s vs floor %.1f GB/s: ratio %.2f (median of 7; range %.2f-%.2f) (goal >= 0.9);"
                 " 4-stream read %.1f GB/s: ratio %.2f",
                 total / tg[3] * 1e-9, total / tr[3] * 1e-9, ratio, tr[0] / tg[6], tr[6] / tg[0],
                 total / t4[3] * 1e-9, t4[3] / tg[3]));
    }
  }
}

const Register reg_decode_gemv_floor("perf-cpu", "decode gemv floor", decode_gemv_floor);

}  // namespace
