// Single-token (T = 1) decode kernels, CPU: the fallback and the oracle of the lora4j_cuda_decode_*
// twins in native/cuda/infer.cu. See native/include/lora4j/infer.h for the math and layouts.
//
// At T = 1 every projection is a GEMV: each weight is read once and used for one multiply-add,
// so the speed limit is the weight read (fp32 4 B/weight, bf16 2 B/weight). The kernels below
// read 4 weight rows per pass as 4 concurrent sequential streams (see "row dot products"), each
// row with 4 independent FMA chains (enough to hide FMA latency on one core), and split output
// rows across lora4j's thread pool (parallel.h) in one region per op, which stays on the calling
// thread unless the op moves enough weights to pay for waking a worker.
//
// ISA dispatch (chosen once, reported by lora4j_decode_isa, shared with the NF4 GEMV through
// isa.h): AVX-512F when the CPU has it, else AVX2+FMA, else portable scalar loops.
// LORA4J_DECODE_ISA=scalar|avx2|avx512 forces a path (tests compare them); a forced path the CPU
// lacks is an error, never a silent fallback.
#include "lora4j/infer.h"
#include "common.h"
#include "isa.h"
#include "parallel.h"

#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

namespace {

// Below this many weights per op a second thread costs more (team wake-up, a few µs) than the
// row slice it would take over.
// Largest head_dim the attention kernel keeps on the stack (cos/sin and the output accumulator).
constexpr int64_t kMaxHeadDim = 1024;

// ---- row dot products: out[k] = sum_i w_k[i] * x[i] for kRows rows at once -------------------
//
// Why several rows per pass, and which ones (measured: perf cpu "decode gemv floor",
// native/tests/ops/perf_decode_gemv.cpp, 1 thread, weights in DRAM; bench/results/
// decode-2026-12-03-gemv-floor.md): one row at a time is ONE sequential read stream through the
// matrix, and one stream tops out near a plain streaming read of the same bytes (0.8-1.0 of it,
// lower on rows >= 16 KiB). Four streams in flight at once read faster than one: a GEMV reads
// kRows rows together, taken a quarter of the op's rows apart (rows r, r+q, r+2q, r+3q of a
// slice of 4q rows), so that each stream still walks its own quarter of W contiguously from
// start to end. Four adjacent rows instead would restart all four streams at every row (slower
// than one stream on rows under 16 KiB); software prefetch measured no better than none.
// x is loaded once per kRows rows.
//
// Each row keeps its own 4 accumulator chains in exactly the order of a one-row pass (lane l of
// chain c sums elements i = 4*L*t + c*L + l, L lanes; tail elements last, in order), so a row's
// result does not depend on which rows it shares a pass with: reading rows in groups changes no
// bit of y.
constexpr int kRows = 4;

float dot_f32_scalar(const void* w, const float* x, int64_t n) {
  const float* a = static_cast<const float*>(w);
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += a[i] * x[i];
  return s;
}

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

float dot_bf16_scalar(const void* w, const float* x, int64_t n) {
  const uint16_t* a = static_cast<const uint16_t*>(w);
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += bf16_to_f32(a[i]) * x[i];
  return s;
}

// The portable path reads one row at a time (it is the oracle, not a fast path).
template <float (*Dot)(const void*, const float*, int64_t)>
void dots_scalar(const void* const* w, const float* x, int64_t n, float* out) {
  for (int k = 0; k < kRows; k++) out[k] = Dot(w[k], x, n);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 weights -> 8 fp32 lanes: fp32 as they are; bf16 widened to 32 bits and shifted into the high
// half (bf16 is fp32's top 16 bits).
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float widen(float v) { return v; }
inline float widen(uint16_t v) { return bf16_to_f32(v); }

// R rows (R = 1: one row, the attention kernel's q.k; R = kRows: the GEMVs), 4 chains of 8
// lanes per row, 32 weights per row per iteration.
template <typename W, int R>
__attribute__((target("avx2,fma"))) void dots_avx2(const void* const* wv, const float* x, int64_t n,
                                                   float* out) {
  const W* w[R];
  __m256 c[R][4];
#pragma GCC unroll 4
  for (int k = 0; k < R; k++) {
    w[k] = static_cast<const W*>(wv[k]);
    c[k][0] = c[k][1] = c[k][2] = c[k][3] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      const __m256 xv = _mm256_loadu_ps(x + i + 8 * j);
#pragma GCC unroll 4
      for (int k = 0; k < R; k++) c[k][j] = _mm256_fmadd_ps(load8(w[k] + i + 8 * j), xv, c[k][j]);
    }
  }
  const int64_t tail = i;
#pragma GCC unroll 4
  for (int k = 0; k < R; k++) {
    i = tail;
    for (; i + 8 <= n; i += 8) c[k][0] = _mm256_fmadd_ps(load8(w[k] + i), _mm256_loadu_ps(x + i), c[k][0]);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(c[k][0], c[k][1]), _mm256_add_ps(c[k][2], c[k][3])));
    for (; i < n; i++) s += widen(w[k][i]) * x[i];
    out[k] = s;
  }
}

// AVX-512F: the same with 16 lanes (4 chains of 16, 64 weights per row per iteration). GCC 12's
// avx512fintrin.h builds its "undefined" pass-through operands by self-initialisation, which
// -Wuninitialized reports at every inlined use: silenced for these functions only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 fp32 weights as two 32-byte loads: weights are rarely 64-byte aligned (malloc'd tensors sit
// 16 bytes into a page), and a 64-byte load then splits across two cache lines at every
// iteration, which cost a third of the bandwidth from DRAM (0.62 of the read floor against 1.0
// for the same loop on 64-byte-aligned rows); two 32-byte loads run at the floor at any
// alignment. bf16: 16 weights are one 32-byte load already.
__attribute__((target("avx512f"))) inline __m512 load16(const float* p) {
  const __m256d lo = _mm256_castps_pd(_mm256_loadu_ps(p)), hi = _mm256_castps_pd(_mm256_loadu_ps(p + 8));
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(lo), hi, 1));
}
__attribute__((target("avx512f"))) inline __m512 load16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// fp32 rows at any 4-byte alignment (weights mapped from a file: a llama2.c checkpoint's arrays sit
// 28 bytes past a cache line, safetensors' wherever the header ends), read as whole cache lines:
// each 64-byte aligned chunk is loaded once, and the 16 weights of a step are the last 16 - a of
// one chunk and the first a of the next (a = the row's offset in floats), joined by vpermt2ps.
// Every lane holds the element it holds in load16's path, so the sums are the same bits. Two
// 32-byte loads at an offset that is not a multiple of 16 bytes still split a cache line at every
// other load: a decode step of the synthetic model (scripts/decode-bench.sh) read from its file
// mapping took 0.73x the time of the same step on a 64-byte-aligned copy. The first chunk starts
// before the row: its lanes before the row are masked off (a masked load reads nothing there); the
// loop stops while the next chunk still ends inside the row, and load16 takes the rest.
template <int R>
__attribute__((target("avx512f"))) int64_t dots_avx512_lines(const float* const* w, const float* x,
                                                             int64_t n, __m512 (&c)[R][4]) {
  if (n < 80) return 0;
  const float* line[R];  // each row's current aligned chunk
  __m512 lo[R], idx[R];
#pragma GCC unroll 4
  for (int k = 0; k < R; k++) {
    const int a = int((reinterpret_cast<uintptr_t>(w[k]) & 63) / 4);
    line[k] = w[k] - a;
    lo[k] = _mm512_maskz_load_ps(__mmask16(0xffffu << a), line[k]);
    idx[k] = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_set1_epi32(a),
                                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
  }
  int64_t i = 0;
  for (; i + 80 <= n; i += 64) {  // the last chunk read, line + i + 64, ends by element i + 79 - a
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      const __m512 xv = _mm512_loadu_ps(x + i + 16 * j);
#pragma GCC unroll 4
      for (int k = 0; k < R; k++) {
        const __m512 hi = _mm512_load_ps(line[k] + i + 16 * j + 16);
        const __m512 wv = _mm512_permutex2var_ps(lo[k], _mm512_castps_si512(idx[k]), hi);
        c[k][j] = _mm512_fmadd_ps(wv, xv, c[k][j]);
        lo[k] = hi;
      }
    }
  }
  return i;
}

template <typename W, int R>
__attribute__((target("avx512f"))) void dots_avx512(const void* const* wv, const float* x, int64_t n,
                                                     float* out) {
  const W* w[R];
  __m512 c[R][4];
#pragma GCC unroll 4
  for (int k = 0; k < R; k++) {
    w[k] = static_cast<const W*>(wv[k]);
    c[k][0] = c[k][1] = c[k][2] = c[k][3] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  if constexpr (std::is_same_v<W, float>) i = dots_avx512_lines<R>(w, x, n, c);
  for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      const __m512 xv = _mm512_loadu_ps(x + i + 16 * j);
#pragma GCC unroll 4
      for (int k = 0; k < R; k++) c[k][j] = _mm512_fmadd_ps(load16(w[k] + i + 16 * j), xv, c[k][j]);
    }
  }
  const int64_t tail = i;
#pragma GCC unroll 4
  for (int k = 0; k < R; k++) {
    i = tail;
    for (; i + 16 <= n; i += 16) c[k][0] = _mm512_fmadd_ps(load16(w[k] + i), _mm512_loadu_ps(x + i), c[k][0]);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c[k][0], c[k][1]), _mm512_add_ps(c[k][2], c[k][3])));
    for (; i < n; i++) s += widen(w[k][i]) * x[i];
    out[k] = s;
  }
}

#pragma GCC diagnostic pop

// One row (the attention kernel's q.k over the KV cache).
template <void (*Dots)(const void* const*, const float*, int64_t, float*)>
float dot_one(const void* w, const float* x, int64_t n) {
  float s;
  Dots(&w, x, n, &s);
  return s;
}

using DotFn = float (*)(const void* w, const float* x, int64_t n);
using DotsFn = void (*)(const void* const* w, const float* x, int64_t n, float* out);  // kRows rows

struct Kernels {
  const char* name;
  DotFn dot[2];    // indexed by wtype: LORA4J_DECODE_F32, LORA4J_DECODE_BF16
  DotsFn dots[2];  // the same, kRows rows per pass
};

constexpr Kernels kScalar = {"scalar",
                             {dot_f32_scalar, dot_bf16_scalar},
                             {dots_scalar<dot_f32_scalar>, dots_scalar<dot_bf16_scalar>}};
constexpr Kernels kAvx2 = {"avx2",
                           {dot_one<dots_avx2<float, 1>>, dot_one<dots_avx2<uint16_t, 1>>},
                           {dots_avx2<float, kRows>, dots_avx2<uint16_t, kRows>}};
constexpr Kernels kAvx512 = {"avx512",
                             {dot_one<dots_avx512<float, 1>>, dot_one<dots_avx512<uint16_t, 1>>},
                             {dots_avx512<float, kRows>, dots_avx512<uint16_t, kRows>}};

const Kernels& isa() {
  static const Kernels& chosen = []() -> const Kernels& {
    switch (lora4j::cpu::simd_isa()) {
      case lora4j::cpu::Isa::kAvx512: return kAvx512;
      case lora4j::cpu::Isa::kAvx2: return kAvx2;
      default: return kScalar;
    }
  }();
  return chosen;
}

// The row streams of one thread's slice [r0, r1): the slice is cut into G contiguous parts of
// q = (r1 - r0) / G rows, and group(r, q) is called for r = r0 .. r0 + q - 1 to read rows
// r, r + q, ..., r + (G-1)q in one pass (G streams, each walking its part in order); then one(r)
// for the (r1 - r0) % G rows left over.
template <int G, class Group, class One>
void in_streams(int64_t r0, int64_t r1, Group&& group, One&& one) {
  const int64_t q = (r1 - r0) / G;
  for (int64_t r = r0; r < r0 + q; r++) group(r, q);
  for (int64_t r = r0 + G * q; r < r1; r++) one(r);
}

size_t elem_bytes(int32_t wtype) {
  return wtype == LORA4J_DECODE_BF16 ? 2 : 4;
}

void check_wtype(int32_t wtype) {
  LORA4J_CHECK(wtype == LORA4J_DECODE_F32 || wtype == LORA4J_DECODE_BF16,
               "decode: weight type must be 0 (f32) or 1 (bf16), got " + std::to_string(wtype));
}

}  // namespace

extern "C" {

const char* lora4j_decode_isa(void) {
  return isa().name;
}

void lora4j_decode_matvec(const float* x, int64_t in, const void* w, int32_t wtype, int64_t out,
                          int32_t accumulate, float* y) {
  check_wtype(wtype);
  const DotFn dot = isa().dot[wtype];
  const DotsFn dots = isa().dots[wtype];
  const char* base = static_cast<const char*>(w);
  const size_t row_bytes = elem_bytes(wtype) * static_cast<size_t>(in);
  auto store = [&](int64_t r, float v) { y[r] = accumulate ? y[r] + v : v; };
  lora4j::cpu::parallel_for(out, static_cast<double>(in), [&](int64_t r0, int64_t r1) {
    in_streams<kRows>(
        r0, r1,
        [&](int64_t r, int64_t q) {
          const void* p[kRows];
          float v[kRows];
          for (int k = 0; k < kRows; k++) p[k] = base + (r + k * q) * row_bytes;
          dots(p, x, in, v);
          for (int k = 0; k < kRows; k++) store(r + k * q, v[k]);
        },
        [&](int64_t r) { store(r, dot(base + r * row_bytes, x, in)); });
  });
}

void lora4j_decode_gate_up(const float* x, int64_t in, const void* w_gate, const void* w_up,
                           int32_t wtype, int64_t inter, float* s) {
  check_wtype(wtype);
  const DotFn dot = isa().dot[wtype];
  const DotsFn dots = isa().dots[wtype];
  const char* g_base = static_cast<const char*>(w_gate);
  const char* u_base = static_cast<const char*>(w_up);
  const size_t row_bytes = elem_bytes(wtype) * static_cast<size_t>(in);
  auto swiglu = [](float g, float u) { return g / (1.0f + std::exp(-g)) * u; };  // as lora4j_swiglu_fwd
  // kRows / 2 parts, each read as two streams: its gate rows and its up rows.
  constexpr int kParts = kRows / 2;
  static_assert(kRows % 2 == 0, "gate and up streams come in pairs");
  lora4j::cpu::parallel_for(inter, 2.0 * static_cast<double>(in), [&](int64_t r0, int64_t r1) {
    in_streams<kParts>(
        r0, r1,
        [&](int64_t r, int64_t q) {
          const void* p[kRows];
          float v[kRows];
          for (int k = 0; k < kParts; k++) {
            p[2 * k] = g_base + (r + k * q) * row_bytes;
            p[2 * k + 1] = u_base + (r + k * q) * row_bytes;
          }
          dots(p, x, in, v);
          for (int k = 0; k < kParts; k++) s[r + k * q] = swiglu(v[2 * k], v[2 * k + 1]);
        },
        [&](int64_t r) {
          s[r] = swiglu(dot(g_base + r * row_bytes, x, in), dot(u_base + r * row_bytes, x, in));
        });
  });
}

void lora4j_decode_attention(float* q, const float* k, const float* v, int32_t pos,
                             const float* inv_freq, float* k_cache, float* v_cache,
                             int64_t cache_len, int64_t start, int64_t Hq, int64_t Hkv, int64_t D,
                             float* out) {
  LORA4J_CHECK(pos >= 0 && pos < cache_len, "decode attention: position " + std::to_string(pos) +
                                                " outside a cache of " + std::to_string(cache_len));
  LORA4J_CHECK(start >= 0 && start <= pos, "decode attention: window start after the position");
  LORA4J_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads must be a multiple of KV heads");
  LORA4J_CHECK(D % 2 == 0 && D <= kMaxHeadDim, "decode attention: head_dim must be even and <= 1024");
  const int64_t half = D / 2, kv_row = Hkv * D, group = Hq / Hkv;
  // RoPE exactly as lora4j_rope_fwd: fp32 angle, cos/sin in double, rounded to fp32.
  float c[kMaxHeadDim / 2], sn[kMaxHeadDim / 2];
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < half; i++) {
    const double th = static_cast<double>(p * inv_freq[i]);
    c[i] = static_cast<float>(std::cos(th));
    sn[i] = static_cast<float>(std::sin(th));
  }
  auto rotate = [&](const float* xr, float* yr) {
    for (int64_t i = 0; i < half; i++) {
      const float x1 = xr[i], x2 = xr[i + half];
      yr[i] = x1 * c[i] - x2 * sn[i];
      yr[i + half] = x2 * c[i] + x1 * sn[i];
    }
  };
  for (int64_t h = 0; h < Hq; h++) rotate(q + h * D, q + h * D);
  for (int64_t h = 0; h < Hkv; h++) rotate(k + h * D, k_cache + pos * kv_row + h * D);
  std::memcpy(v_cache + pos * kv_row, v, sizeof(float) * kv_row);

  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t len = pos + 1 - start;
  const DotFn dot = isa().dot[LORA4J_DECODE_F32];
  // One pass per head with an online softmax (running max m, running sum l, output rescaled
  // when m grows), so no score row needs storing.
  lora4j::cpu::parallel_for(Hq, static_cast<double>(len * D), [&](int64_t h0, int64_t h1) {
  for (int64_t h = h0; h < h1; h++) {
    const float* qh = q + h * D;
    const int64_t kvh = h / group;
    float acc[kMaxHeadDim];
    for (int64_t d = 0; d < D; d++) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = start; j <= pos; j++) {
      const float sc = scale * dot(k_cache + j * kv_row + kvh * D, qh, D);
      const float* vj = v_cache + j * kv_row + kvh * D;
      if (sc > m) {
        const float corr = std::exp(m - sc);  // 0 on the first row (m = -inf)
        l *= corr;
        for (int64_t d = 0; d < D; d++) acc[d] *= corr;
        m = sc;
      }
      const float e = std::exp(sc - m);
      l += e;
      for (int64_t d = 0; d < D; d++) acc[d] += e * vj[d];
    }
    const float inv = 1.0f / l;
    float* o = out + h * D;
    for (int64_t d = 0; d < D; d++) o[d] = acc[d] * inv;
  }
  });
}

void lora4j_decode_embedding(const float* table, int64_t vocab, int64_t dim, int32_t token,
                             float* out) {
  LORA4J_CHECK(token >= 0 && token < vocab, "embedding: id " + std::to_string(token) +
                                                " outside [0, " + std::to_string(vocab) + ")");
  std::memcpy(out, table + static_cast<int64_t>(token) * dim, sizeof(float) * dim);
}

}  // extern "C"

namespace lora4j::cpu {

// Chosen once (C++ guarantees thread-safe initialisation of the function-local static).
Isa simd_isa() {
  static const Isa chosen = [] {
    const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool has_avx512 = __builtin_cpu_supports("avx512f");
    const char* forced = std::getenv("LORA4J_DECODE_ISA");
    if (forced != nullptr && *forced != '\0') {
      const std::string f(forced);
      if (f == "scalar") return Isa::kScalar;
      if (f == "avx2") {
        LORA4J_CHECK(has_avx2, "LORA4J_DECODE_ISA=avx2 but this CPU lacks AVX2/FMA");
        return Isa::kAvx2;
      }
      if (f == "avx512") {
        LORA4J_CHECK(has_avx512, "LORA4J_DECODE_ISA=avx512 but this CPU lacks AVX-512F");
        return Isa::kAvx512;
      }
      LORA4J_CHECK(false, "LORA4J_DECODE_ISA must be scalar, avx2 or avx512, got '" + f + "'");
    }
    // (unreachable when forced: the check above throws)
    return has_avx512 ? Isa::kAvx512 : has_avx2 ? Isa::kAvx2 : Isa::kScalar;
  }();
  return chosen;
}

bool has_avx512_bf16() {
  static const bool has = [] {
    const char* off = std::getenv("LORA4J_AVX512_BF16");  // "0": take the emulation (tests)
    if (off != nullptr && std::string(off) == "0") return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }();
  return has;
}

const char* isa_name(Isa isa) {
  return isa == Isa::kAvx512 ? "avx512" : isa == Isa::kAvx2 ? "avx2" : "scalar";
}

}  // namespace lora4j::cpu
