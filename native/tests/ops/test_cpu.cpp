// `grad` cases of lora4j_harness (also run by `test`): every CPU op against a plain double-precision scalar
// reference written here, and every backward against central finite differences of that
// reference (in double) on small random shapes.
#include "tests/harness.h"
#include "lora4j/lora.h"
#include "lora4j/infer.h"
#include "lora4j/nf4.h"  // lora4j_set_num_threads
#include "lora4j/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>


using namespace h;
using dvec = std::vector<double>;
using fvec = std::vector<float>;

namespace {

// Tolerances (|got - ref| <= atol + rtol |ref|), fp32 kernel vs double reference.
// Forward: a few fp32 roundings per output, sums of <= a few hundred terms of size ~1.
constexpr double kFwdAtol = 2e-6;
constexpr double kFwdRtol = 2e-5;
// Matmul-like outputs with K summed products of O(1) terms: fp32 accumulation error grows
// ~K * 2^-24 * sum|terms| in the worst case; atol = kFwdAtol per 16 terms summed.
double dot_atol(int64_t K) { return kFwdAtol * std::max<double>(1.0, K / 16.0); }
// Gradients vs central differences: fp32 rounding of the kernel's longer chains (attention's
// recomputed softmax, RMSNorm's r^3 term) plus FD error (~1e-9).
constexpr double kGradAtol = 2e-5;
constexpr double kGradRtol = 5e-4;
// exp-based ops (softmax, silu) use a polynomial exp with <= 2 ulp error: same tolerances.
// AdamW: a handful of fp32 operations per element vs the same formula in double.
constexpr double kAdamAtol = 1e-7;
constexpr double kAdamRtol = 1e-5;
// Finite-difference points per tensor (evenly spread when the tensor is larger).
constexpr size_t kFdPoints = 400;

double dot_loss(const dvec& out, const dvec& R) {
  double s = 0;
  for (size_t i = 0; i < out.size(); i++) s += out[i] * R[i];
  return s;
}

// ---- references (double) --------------------------------------------------------------------

void rmsnorm_ref(const dvec& x, const dvec& w, int64_t T, int64_t dim, double eps, dvec& y,
                 dvec& rstd) {
  y.assign(T * dim, 0);
  rstd.assign(T, 0);
  for (int64_t t = 0; t < T; t++) {
    double ss = 0;
    for (int64_t i = 0; i < dim; i++) ss += x[t * dim + i] * x[t * dim + i];
    const double r = 1.0 / std::sqrt(ss / dim + eps);
    rstd[t] = r;
    for (int64_t i = 0; i < dim; i++) y[t * dim + i] = w[i] * x[t * dim + i] * r;
  }
}

void rope_ref(const dvec& x, const std::vector<int32_t>& pos, const fvec& inv_freq, int64_t T,
              int64_t H, int64_t D, dvec& y) {
  y.assign(x.size(), 0);
  const int64_t half = D / 2;
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < half; i++) {
        // the angle as HF forms it: fp32 position times fp32 inv_freq
        const double th = static_cast<double>(static_cast<float>(pos[t]) * inv_freq[i]);
        const double c = std::cos(th), s = std::sin(th);
        const double x1 = x[(t * H + h) * D + i], x2 = x[(t * H + h) * D + i + half];
        y[(t * H + h) * D + i] = x1 * c - x2 * s;
        y[(t * H + h) * D + i + half] = x2 * c + x1 * s;
      }
}

void attention_ref(const dvec& q, const dvec& k, const dvec& v, const int32_t* seg, int64_t B,
                   int64_t S, int64_t Hq, int64_t Hkv, int64_t D, double softcap, dvec& out,
                   dvec& lse) {
  out.assign(B * S * Hq * D, 0);
  lse.assign(B * Hq * S, 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> sc(S);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < Hq; h++) {
      const int64_t hk = h / (Hq / Hkv);
      for (int64_t i = 0; i < S; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; j++) {
          if (seg && seg[b * S + j] != seg[b * S + i]) {
            sc[j] = -INFINITY;
            continue;
          }
          double s = 0;
          for (int64_t d = 0; d < D; d++)
            s += q[((b * S + i) * Hq + h) * D + d] * k[((b * S + j) * Hkv + hk) * D + d];
          sc[j] = s * scale;
          if (softcap > 0) sc[j] = softcap * std::tanh(sc[j] / softcap);
          mx = std::max(mx, sc[j]);
        }
        double l = 0;
        for (int64_t j = 0; j <= i; j++) l += std::exp(sc[j] - mx);
        lse[(b * Hq + h) * S + i] = mx + std::log(l);
        for (int64_t j = 0; j <= i; j++) {
          const double p = std::exp(sc[j] - mx) / l;
          if (p == 0) continue;
          for (int64_t d = 0; d < D; d++)
            out[((b * S + i) * Hq + h) * D + d] += p * v[((b * S + j) * Hkv + hk) * D + d];
        }
      }
    }
}

double ce_ref(const dvec& z, const std::vector<int32_t>& labels, int64_t T, int64_t V,
              dvec& loss) {
  loss.assign(T, 0);
  double sum = 0;
  for (int64_t t = 0; t < T; t++) {
    if (labels[t] == LORA4J_IGNORE_INDEX) continue;
    double mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = std::max(mx, z[t * V + v]);
    double s = 0;
    for (int64_t v = 0; v < V; v++) s += std::exp(z[t * V + v] - mx);
    loss[t] = mx + std::log(s) - z[t * V + labels[t]];
    sum += loss[t];
  }
  return sum;
}

// y = x wᵀ + s ((x ⊙ m) aᵀ) bᵀ; w or m may be empty (absent).
void lora_ref(const dvec& x, const dvec& w, const dvec& a, const dvec& b, const dvec& m,
              int64_t T, int64_t in, int64_t out, int64_t r, double s, dvec& y, dvec& xa) {
  y.assign(T * out, 0);
  xa.assign(T * r, 0);
  for (int64_t t = 0; t < T; t++) {
    for (int64_t k = 0; k < r; k++) {
      double acc = 0;
      for (int64_t i = 0; i < in; i++)
        acc += x[t * in + i] * (m.empty() ? 1.0 : m[t * in + i]) * a[k * in + i];
      xa[t * r + k] = acc;
    }
    for (int64_t o = 0; o < out; o++) {
      double acc = 0;
      if (!w.empty())
        for (int64_t i = 0; i < in; i++) acc += x[t * in + i] * w[o * in + i];
      double lo = 0;
      for (int64_t k = 0; k < r; k++) lo += xa[t * r + k] * b[o * r + k];
      y[t * out + o] = acc + s * lo;
    }
  }
}

// ---- tests ----------------------------------------------------------------------------------

void test_rmsnorm() {
  std::printf("rmsnorm\n");
  Rng rng(11);
  const int64_t T = 5, dim = 37;
  const float eps = 1e-5f;
  fvec x = rand_vec(rng, T * dim, 1.5f), w = rand_vec(rng, dim, 1.0f), R = rand_vec(rng, T * dim, 1.0f);
  fvec y(T * dim), rstd(T);
  lora4j_rmsnorm_fwd(x.data(), w.data(), T, dim, eps, y.data(), rstd.data());
  dvec xd = to_double(x), wd = to_double(w), Rd = to_double(R), yr, rr;
  rmsnorm_ref(xd, wd, T, dim, eps, yr, rr);
  check_close("rmsnorm fwd y", y.data(), yr, kFwdAtol, kFwdRtol);
  check_close("rmsnorm fwd rstd", rstd.data(), rr, kFwdAtol, kFwdRtol);
  fvec yi = x;
  lora4j_rmsnorm_fwd(yi.data(), w.data(), T, dim, eps, yi.data(), rstd.data());
  check_close("rmsnorm fwd in place (y == x)", yi.data(), yr, kFwdAtol, kFwdRtol);
  fvec dx(T * dim), dw0 = rand_vec(rng, dim, 1.0f), dw = dw0;
  lora4j_rmsnorm_bwd(R.data(), x.data(), w.data(), rstd.data(), T, dim, dx.data(), dw.data());
  for (int64_t i = 0; i < dim; i++) dw[i] -= dw0[i];  // dw accumulates
  auto loss = [&] {
    dvec yy, rs;
    rmsnorm_ref(xd, wd, T, dim, eps, yy, rs);
    return dot_loss(yy, Rd);
  };
  fd_check("rmsnorm bwd dx", xd, loss, dx.data(), kFdPoints, kGradAtol, kGradRtol);
  fd_check("rmsnorm bwd dw (accumulated)", wd, loss, dw.data(), kFdPoints, kGradAtol, kGradRtol);
  fvec dxi = R;
  lora4j_rmsnorm_bwd(dxi.data(), x.data(), w.data(), rstd.data(), T, dim, dxi.data(), nullptr);
  std::vector<double> dxd(dx.begin(), dx.end());
  check_close("rmsnorm bwd in place, dw null", dxi.data(), dxd, 0, 0);
}

void test_rope() {
  std::printf("rope\n");
  Rng rng(12);
  for (int64_t D : {8, 6, 64}) {
    const int64_t T = 7, H = 3;
    fvec inv_freq(D / 2);
    for (int64_t i = 0; i < D / 2; i++)
      inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, (2.0 * i) / D));
    std::vector<int32_t> pos(T);
    for (auto& p : pos) p = rng.below(4096);
    pos[0] = 0;
    fvec x = rand_vec(rng, T * H * D, 1.0f), R = rand_vec(rng, T * H * D, 1.0f), y(x.size());
    lora4j_rope_fwd(x.data(), y.data(), pos.data(), inv_freq.data(), T, H, D);
    dvec xd = to_double(x), Rd = to_double(R), yr;
    rope_ref(xd, pos, inv_freq, T, H, D, yr);
    const std::string tag = "rope D=" + std::to_string(D);
    check_close(tag + " fwd", y.data(), yr, kFwdAtol, kFwdRtol);
    fvec yi = x;
    lora4j_rope_fwd(yi.data(), yi.data(), pos.data(), inv_freq.data(), T, H, D);
    check_close(tag + " fwd in place", yi.data(), yr, kFwdAtol, kFwdRtol);
    fvec dx(x.size());
    lora4j_rope_bwd(R.data(), dx.data(), pos.data(), inv_freq.data(), T, H, D);
    auto loss = [&] {
      dvec yy;
      rope_ref(xd, pos, inv_freq, T, H, D, yy);
      return dot_loss(yy, Rd);
    };
    fd_check(tag + " bwd dx", xd, loss, dx.data(), kFdPoints, kGradAtol, kGradRtol);
  }
}

void test_attention_case(const char* name, int64_t B, int64_t S, int64_t Hq, int64_t Hkv,
                         int64_t D, bool packed, size_t fd_points, uint64_t seed,
                         float softcap = 0.0f) {
  Rng rng(seed);
  std::vector<int32_t> seg;
  if (packed) {
    // documents of random lengths 1..S/2 packed back to back, ids restart per sequence
    seg.resize(B * S);
    for (int64_t b = 0; b < B; b++) {
      int32_t id = 0;
      int64_t left = 1 + rng.below(static_cast<int32_t>(std::max<int64_t>(1, S / 2)));
      for (int64_t s = 0; s < S; s++) {
        if (left == 0) {
          id++;
          left = 1 + rng.below(static_cast<int32_t>(std::max<int64_t>(1, S / 2)));
        }
        seg[b * S + s] = id;
        left--;
      }
    }
  }
  const int32_t* sg = packed ? seg.data() : nullptr;
  const float qk = softcap > 0 ? 3.0f : 1.0f;  // scores past the cap
  fvec q = rand_vec(rng, B * S * Hq * D, qk), k = rand_vec(rng, B * S * Hkv * D, qk),
       v = rand_vec(rng, B * S * Hkv * D, 1.0f), R = rand_vec(rng, B * S * Hq * D, 1.0f);
  fvec out(q.size()), lse(B * Hq * S);
  lora4j_attention_fwd(q.data(), k.data(), v.data(), sg, B, S, Hq, Hkv, D, softcap, out.data(),
                       lse.data());
  dvec qd = to_double(q), kd = to_double(k), vd = to_double(v), Rd = to_double(R), oref, lref;
  attention_ref(qd, kd, vd, sg, B, S, Hq, Hkv, D, softcap, oref, lref);
  const std::string tag = std::string("attention ") + name;
  check_close(tag + " fwd out", out.data(), oref, kFwdAtol, kFwdRtol);
  check_close(tag + " fwd lse", lse.data(), lref, kFwdAtol, kFwdRtol);
  fvec dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
  lora4j_attention_bwd(q.data(), k.data(), v.data(), out.data(), R.data(), lse.data(), sg, B, S,
                       Hq, Hkv, D, softcap, dq.data(), dk.data(), dv.data());
  auto loss = [&] {
    dvec o, l;
    attention_ref(qd, kd, vd, sg, B, S, Hq, Hkv, D, softcap, o, l);
    return dot_loss(o, Rd);
  };
  fd_check(tag + " bwd dq", qd, loss, dq.data(), fd_points, kGradAtol, kGradRtol);
  fd_check(tag + " bwd dk", kd, loss, dk.data(), fd_points, kGradAtol, kGradRtol);
  fd_check(tag + " bwd dv", vd, loss, dv.data(), fd_points, kGradAtol, kGradRtol);
}

void test_attention() {
  std::printf("attention\n");
  test_attention_case("B2 S13 Hq4 Hkv2 D8", 2, 13, 4, 2, 8, false, kFdPoints, 21);
  test_attention_case("B2 S13 Hq4 Hkv2 D8 packed", 2, 13, 4, 2, 8, true, kFdPoints, 22);
  test_attention_case("B1 S150 Hq2 Hkv1 D16 packed", 1, 150, 2, 1, 16, true, 150, 23);
  test_attention_case("B2 S70 Hq3 Hkv3 D48", 2, 70, 3, 3, 48, false, 150, 24);
  // Gemma 2's attn_logit_softcapping: q, k of scale 3 give scores beyond the cap of 1.5, so the
  // tanh bends; 70 rows cross a key tile boundary (the capped scores of a later tile).
  test_attention_case("B2 S13 Hq4 Hkv2 D8 softcap 1.5", 2, 13, 4, 2, 8, false, kFdPoints, 25, 1.5f);
  test_attention_case("B1 S70 Hq2 Hkv1 D16 packed softcap 1.5", 1, 70, 2, 1, 16, true, 150, 26, 1.5f);
}

// The analytic backward of attention_ref in double: with P the softmax of the (capped) scores,
// dP_ij = dout_i . v_j, Dl_i = sum_j P_ij dP_ij, dS_ij = P_ij (dP_ij - Dl_i) [softcap: times
// 1 - (capped_ij / c)^2], dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i,
// dv_j = sum_i P_ij dout_i.
void attention_bwd_ref(const dvec& q, const dvec& k, const dvec& v, const dvec& dout,
                       const int32_t* seg, int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                       double softcap, dvec& dq, dvec& dk, dvec& dv) {
  dq.assign(B * S * Hq * D, 0);
  dk.assign(B * S * Hkv * D, 0);
  dv.assign(B * S * Hkv * D, 0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> sc(S), p(S), dp(S);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < Hq; h++) {
      const int64_t hk = h / (Hq / Hkv);
      auto Q = [&](int64_t i) { return &q[((b * S + i) * Hq + h) * D]; };
      auto K = [&](int64_t j) { return &k[((b * S + j) * Hkv + hk) * D]; };
      auto Vr = [&](int64_t j) { return &v[((b * S + j) * Hkv + hk) * D]; };
      auto dO = [&](int64_t i) { return &dout[((b * S + i) * Hq + h) * D]; };
      for (int64_t i = 0; i < S; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j <= i; j++) {
          sc[j] = -INFINITY;
          if (seg && seg[b * S + j] != seg[b * S + i]) continue;
          double s = 0;
          for (int64_t d = 0; d < D; d++) s += Q(i)[d] * K(j)[d];
          sc[j] = s * scale;
          if (softcap > 0) sc[j] = softcap * std::tanh(sc[j] / softcap);
          mx = std::max(mx, sc[j]);
        }
        double l = 0, dl = 0;
        for (int64_t j = 0; j <= i; j++) l += std::exp(sc[j] - mx);
        for (int64_t j = 0; j <= i; j++) {
          p[j] = std::exp(sc[j] - mx) / l;
          dp[j] = 0;
          for (int64_t d = 0; d < D; d++) dp[j] += dO(i)[d] * Vr(j)[d];
          dl += p[j] * dp[j];
        }
        for (int64_t j = 0; j <= i; j++) {
          if (p[j] == 0) continue;
          double ds = p[j] * (dp[j] - dl);
          if (softcap > 0) ds *= 1 - (sc[j] / softcap) * (sc[j] / softcap);
          for (int64_t d = 0; d < D; d++) {
            dq[((b * S + i) * Hq + h) * D + d] += scale * ds * K(j)[d];
            dk[((b * S + j) * Hkv + hk) * D + d] += scale * ds * Q(i)[d];
            dv[((b * S + j) * Hkv + hk) * D + d] += p[j] * dO(i)[d];
          }
        }
      }
    }
}

// The tiled kernels (their ISA path: LORA4J_DECODE_ISA=avx2 forces AVX2 on an AVX-512 CPU)
// against the double forward and analytic backward on every element, at shapes that hit the
// ragged edges: S = 1, S not a multiple of the 64-row tile (so diagonal tiles end mid-strip),
// GQA groups of 3 and 4, head dims 48 / 64 / 128 and 24 (half a 16-lane vector: the scalar column
// tail), packing and a softcap; then the same call on 1 and on 3 threads must agree bit for bit.
void test_attention_blocked_case(int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                                 bool packed, float softcap, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> seg;
  if (packed) {  // two documents per row, split at a random position
    seg.resize(B * S);
    for (int64_t b = 0; b < B; b++) {
      const int64_t cut = 1 + rng.below(static_cast<int32_t>(std::max<int64_t>(1, S - 1)));
      for (int64_t s = 0; s < S; s++) seg[b * S + s] = s < cut ? 0 : 1;
    }
  }
  const int32_t* sg = packed ? seg.data() : nullptr;
  const float qk = softcap > 0 ? 3.0f : 1.0f;
  fvec q = rand_vec(rng, B * S * Hq * D, qk), k = rand_vec(rng, B * S * Hkv * D, qk),
       v = rand_vec(rng, B * S * Hkv * D, 1.0f), R = rand_vec(rng, B * S * Hq * D, 1.0f);
  fvec out(q.size()), lse(B * Hq * S), dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
  lora4j_attention_fwd(q.data(), k.data(), v.data(), sg, B, S, Hq, Hkv, D, softcap, out.data(),
                       lse.data());
  lora4j_attention_bwd(q.data(), k.data(), v.data(), out.data(), R.data(), lse.data(), sg, B, S,
                       Hq, Hkv, D, softcap, dq.data(), dk.data(), dv.data());
  const dvec qd = to_double(q), kd = to_double(k), vd = to_double(v), Rd = to_double(R);
  dvec oref, lref, dqr, dkr, dvr;
  attention_ref(qd, kd, vd, sg, B, S, Hq, Hkv, D, softcap, oref, lref);
  attention_bwd_ref(qd, kd, vd, Rd, sg, B, S, Hq, Hkv, D, softcap, dqr, dkr, dvr);
  const std::string tag = fmt("attention tiled B%lld S%lld Hq%lld Hkv%lld D%lld%s%s", (long long)B,
                              (long long)S, (long long)Hq, (long long)Hkv, (long long)D,
                              packed ? " packed" : "", softcap > 0 ? " softcap" : "");
  check_close(tag + " out", out.data(), oref, kFwdAtol, kFwdRtol);
  check_close(tag + " lse", lse.data(), lref, kFwdAtol, kFwdRtol);
  // Each gradient element sums <= S * group products of O(1) terms, each a chain of a few fp32
  // roundings (the recomputed softmax among them): the dot_atol rule with the forward's rtol.
  const double atol = dot_atol(S * (Hq / Hkv));
  check_close(tag + " dq", dq.data(), dqr, atol, kFwdRtol);
  check_close(tag + " dk", dk.data(), dkr, atol, kFwdRtol);
  check_close(tag + " dv", dv.data(), dvr, atol, kFwdRtol);
  // Thread-count independence: every sum runs in one fixed order inside one task.
  const int32_t threads = lora4j_get_num_threads();
  fvec o1(q.size()), l1(lse.size()), dq1(q.size()), dk1(k.size()), dv1(v.size());
  fvec o3(q.size()), l3(lse.size()), dq3(q.size()), dk3(k.size()), dv3(v.size());
  for (int n : {1, 3}) {
    lora4j_set_num_threads(n);
    fvec& o = n == 1 ? o1 : o3;
    fvec& l = n == 1 ? l1 : l3;
    lora4j_attention_fwd(q.data(), k.data(), v.data(), sg, B, S, Hq, Hkv, D, softcap, o.data(), l.data());
    lora4j_attention_bwd(q.data(), k.data(), v.data(), o.data(), R.data(), l.data(), sg, B, S, Hq, Hkv,
                         D, softcap, (n == 1 ? dq1 : dq3).data(), (n == 1 ? dk1 : dk3).data(),
                         (n == 1 ? dv1 : dv3).data());
  }
  lora4j_set_num_threads(threads);
  const bool same = o1 == o3 && l1 == l3 && dq1 == dq3 && dk1 == dk3 && dv1 == dv3 && o1 == out &&
                    dq1 == dq;
  record(tag + " 1 vs 3 threads", same, same ? "bit-identical" : "results differ");
}

void test_attention_blocked() {
  std::printf("attention tiled vs double reference (path %s)\n",
              std::getenv("LORA4J_DECODE_ISA") ? std::getenv("LORA4J_DECODE_ISA") : "default");
  test_attention_blocked_case(1, 1, 4, 1, 64, false, 0.0f, 31);      // T = 1
  test_attention_blocked_case(2, 67, 6, 2, 48, false, 0.0f, 32);     // ragged tile, GQA 3
  test_attention_blocked_case(1, 130, 4, 1, 64, false, 0.0f, 33);    // 3 query tiles, GQA 4
  test_attention_blocked_case(1, 77, 2, 2, 128, false, 0.0f, 34);    // D 128
  test_attention_blocked_case(2, 45, 3, 1, 24, true, 0.0f, 35);      // column tail, packed
  test_attention_blocked_case(1, 100, 4, 2, 48, true, 1.5f, 36);     // packed + softcap
}

// lora4j_attention_decode against the reference's last row: one query at position L-1 over the
// cache rows 0..L-1 (the reference's causal attention over a sequence whose other queries are
// discarded), with and without the soft cap.
void test_attention_decode() {
  std::printf("attention decode\n");
  Rng rng(27);
  const int64_t L = 9, cache = 12, Hq = 4, Hkv = 2, D = 8;
  for (float softcap : {0.0f, 1.5f}) {
    fvec qs = rand_vec(rng, L * Hq * D, 3.0f), k = rand_vec(rng, cache * Hkv * D, 3.0f),
         v = rand_vec(rng, cache * Hkv * D, 1.0f), out(Hq * D);
    lora4j_attention_decode(qs.data() + (L - 1) * Hq * D, k.data(), v.data(), 1, L, cache, Hq, Hkv, D,
                            softcap, out.data());
    dvec oref, lref;
    dvec kd(k.begin(), k.begin() + L * Hkv * D), vd(v.begin(), v.begin() + L * Hkv * D);
    attention_ref(to_double(qs), kd, vd, nullptr, 1, L, Hq, Hkv, D, softcap, oref, lref);
    dvec last(oref.begin() + (L - 1) * Hq * D, oref.end());
    check_close("attention decode softcap " + std::to_string(softcap), out.data(), last, kFwdAtol,
                kFwdRtol);
  }
}

// The final-logit soft cap: y = c tanh(x / c), its backward by finite differences.
void test_softcap() {
  std::printf("softcap\n");
  Rng rng(28);
  const int64_t n = 1000;
  const float c = 2.5f;
  fvec x = rand_vec(rng, n, 8.0f), R = rand_vec(rng, n, 1.0f), y(n), dx(n);
  lora4j_softcap_fwd(x.data(), n, c, y.data());
  dvec xd = to_double(x), Rd = to_double(R);
  auto fwd = [&](dvec& out) {
    out.resize(n);
    for (int64_t i = 0; i < n; i++) out[i] = c * std::tanh(xd[i] / c);
  };
  dvec yr;
  fwd(yr);
  check_close("softcap fwd", y.data(), yr, kFwdAtol, kFwdRtol);
  lora4j_softcap_bwd(R.data(), x.data(), n, c, dx.data());
  auto loss = [&] {
    dvec o;
    fwd(o);
    return dot_loss(o, Rd);
  };
  fd_check("softcap bwd dx", xd, loss, dx.data(), n, kGradAtol, kGradRtol);
  fvec yi = x;
  lora4j_softcap_fwd(yi.data(), n, c, yi.data());
  check_close("softcap fwd in place", yi.data(), dvec(y.begin(), y.end()), 0, 0);
}

void test_swiglu() {
  std::printf("swiglu\n");
  Rng rng(31);
  const int64_t n = 1000;  // two 512-chunks, the second partial
  fvec g = rand_vec(rng, n, 6.0f), u = rand_vec(rng, n, 2.0f), R = rand_vec(rng, n, 1.0f), h(n);
  lora4j_swiglu_fwd(g.data(), u.data(), n, h.data());
  dvec gd = to_double(g), ud = to_double(u), Rd = to_double(R);
  auto fwd = [&](dvec& out) {
    out.resize(n);
    for (int64_t i = 0; i < n; i++) out[i] = gd[i] / (1 + std::exp(-gd[i])) * ud[i];
  };
  dvec hr;
  fwd(hr);
  check_close("swiglu fwd", h.data(), hr, kFwdAtol, kFwdRtol);
  fvec dg(n), du(n);
  lora4j_swiglu_bwd(R.data(), g.data(), u.data(), n, dg.data(), du.data());
  auto loss = [&] {
    dvec o;
    fwd(o);
    return dot_loss(o, Rd);
  };
  fd_check("swiglu bwd dgate", gd, loss, dg.data(), n, kGradAtol, kGradRtol);
  fd_check("swiglu bwd dup", ud, loss, du.data(), n, kGradAtol, kGradRtol);
}

void test_geglu() {
  std::printf("geglu\n");
  Rng rng(32);
  const int64_t n = 1000;  // two 512-chunks, the second partial
  fvec g = rand_vec(rng, n, 6.0f), u = rand_vec(rng, n, 2.0f), R = rand_vec(rng, n, 1.0f), h(n);
  lora4j_geglu_fwd(g.data(), u.data(), n, h.data());
  dvec gd = to_double(g), ud = to_double(u), Rd = to_double(R);
  const double c = std::sqrt(2.0 / M_PI);
  auto fwd = [&](dvec& out) {
    out.resize(n);
    for (int64_t i = 0; i < n; i++) out[i] = 0.5 * gd[i] * (1 + std::tanh(c * (gd[i] + 0.044715 * gd[i] * gd[i] * gd[i]))) * ud[i];
  };
  dvec hr;
  fwd(hr);
  check_close("geglu fwd", h.data(), hr, kFwdAtol, kFwdRtol);
  fvec dg(n), du(n);
  lora4j_geglu_bwd(R.data(), g.data(), u.data(), n, dg.data(), du.data());
  auto loss = [&] {
    dvec o;
    fwd(o);
    return dot_loss(o, Rd);
  };
  fd_check("geglu bwd dgate", gd, loss, dg.data(), n, kGradAtol, kGradRtol);
  fd_check("geglu bwd dup", ud, loss, du.data(), n, kGradAtol, kGradRtol);
}

void test_embedding() {
  std::printf("embedding\n");
  Rng rng(41);
  const int64_t T = 19, dim = 70, vocab = 9;  // few ids: duplicates exercise the scatter-add
  std::vector<int32_t> ids(T);
  for (auto& i : ids) i = rng.below(vocab);
  fvec table = rand_vec(rng, vocab * dim, 1.0f), out(T * dim), R = rand_vec(rng, T * dim, 1.0f);
  lora4j_embedding_fwd(ids.data(), table.data(), T, dim, vocab, out.data());
  dvec ref(T * dim);
  for (int64_t t = 0; t < T; t++)
    for (int64_t d = 0; d < dim; d++) ref[t * dim + d] = table[ids[t] * dim + d];
  check_close("embedding fwd (exact)", out.data(), ref, 0, 0);
  fvec dt0 = rand_vec(rng, vocab * dim, 1.0f), dt = dt0;
  lora4j_embedding_bwd(ids.data(), R.data(), T, dim, vocab, dt.data());
  for (size_t i = 0; i < dt.size(); i++) dt[i] -= dt0[i];
  dvec td = to_double(table), Rd = to_double(R);
  auto loss = [&] {
    double s = 0;
    for (int64_t t = 0; t < T; t++)
      for (int64_t d = 0; d < dim; d++) s += td[ids[t] * dim + d] * Rd[t * dim + d];
    return s;
  };
  fd_check("embedding bwd dtable (accumulated)", td, loss, dt.data(), vocab * dim, kGradAtol,
           kGradRtol);
  bool threw = false;
  ids[3] = static_cast<int32_t>(vocab);
  try {
    lora4j_embedding_fwd(ids.data(), table.data(), T, dim, vocab, out.data());
  } catch (const std::exception&) {
    threw = true;
  }
  check_true("embedding id out of range throws", threw, "");
}

void test_ce() {
  std::printf("cross_entropy\n");
  Rng rng(51);
  const int64_t T = 9, V = 53;
  const float scale = 1.0f / 6.0f;
  std::vector<int32_t> labels(T);
  for (auto& l : labels) l = rng.below(V);
  labels[2] = LORA4J_IGNORE_INDEX;
  labels[7] = LORA4J_IGNORE_INDEX;
  fvec z = rand_vec(rng, T * V, 8.0f), loss(T), dz(T * V);
  float sum = 0;
  lora4j_ce_fwd(z.data(), labels.data(), T, V, loss.data(), &sum);
  dvec zd = to_double(z), lref;
  const double sref = ce_ref(zd, labels, T, V, lref);
  check_close("ce fwd loss", loss.data(), lref, kFwdAtol, kFwdRtol);
  check_close("ce fwd loss_sum", &sum, &sref, 1, kFwdAtol, kFwdRtol);
  lora4j_ce_bwd(z.data(), labels.data(), T, V, scale, dz.data());
  auto lossf = [&] {
    dvec l;
    return scale * ce_ref(zd, labels, T, V, l);
  };
  fd_check("ce bwd dlogits", zd, lossf, dz.data(), T * V, kGradAtol, kGradRtol);
  fvec zi = z;
  lora4j_ce_bwd(zi.data(), labels.data(), T, V, scale, zi.data());
  dvec dzd(dz.begin(), dz.end());
  check_close("ce bwd in place (dlogits == logits)", zi.data(), dzd, 0, 0);

  // chunked lm_head + CE
  const int64_t Tc = 11, dim = 24, Vc = 37;
  std::vector<int32_t> lc(Tc);
  for (auto& l : lc) l = rng.below(Vc);
  lc[0] = lc[5] = lc[6] = LORA4J_IGNORE_INDEX;
  fvec hid = rand_vec(rng, Tc * dim, 1.0f), head = rand_vec(rng, Vc * dim, 1.0f);
  dvec hd = to_double(hid), headd = to_double(head);
  auto logits_of = [&](dvec& zz) {
    zz.assign(Tc * Vc, 0);
    for (int64_t t = 0; t < Tc; t++)
      for (int64_t v = 0; v < Vc; v++) {
        double s = 0;
        for (int64_t d = 0; d < dim; d++) s += hd[t * dim + d] * headd[v * dim + d];
        zz[t * Vc + v] = s;
      }
  };
  for (int64_t chunk : {3, 64}) {
    const std::string tag = "ce chunked (chunk " + std::to_string(chunk) + ")";
    fvec ws(lora4j_ce_chunked_workspace_floats(chunk, dim, Vc)), lossc(Tc, NAN);
    fvec dh0 = rand_vec(rng, Tc * dim, 1.0f), dh = dh0;
    float sumc = NAN;
    lora4j_ce_chunked_fwd_bwd(hid.data(), head.data(), lc.data(), Tc, dim, Vc, chunk, scale,
                              lossc.data(), &sumc, dh.data(), ws.data());
    for (size_t i = 0; i < dh.size(); i++) dh[i] -= dh0[i];
    dvec zz, lr;
    logits_of(zz);
    const double sr = ce_ref(zz, lc, Tc, Vc, lr);
    check_close(tag + " loss", lossc.data(), lr, kFwdAtol, kFwdRtol);
    check_close(tag + " loss_sum", &sumc, &sr, 1, kFwdAtol, kFwdRtol);
    auto lossh = [&] {
      dvec z2, l2;
      logits_of(z2);
      return scale * ce_ref(z2, lc, Tc, Vc, l2);
    };
    fd_check(tag + " dhidden (accumulated)", hd, lossh, dh.data(), Tc * dim, kGradAtol,
             kGradRtol);
  }
}

// Vocabulary-chunked CE (lora4j_ce_chunk_*): slices of width vc over logits [T, V], against
// the double reference ce_ref for the loss and its central-difference gradient for dz.
void test_ce_vocab_chunks() {
  std::printf("cross_entropy vocab chunks\n");
  Rng rng(52);
  const int64_t T = 7, V = 61;
  const float scale = 1.0f / 5.0f;
  std::vector<int32_t> labels(T);
  for (auto& l : labels) l = rng.below(V);
  labels[0] = 0;           // first column of the first slice
  labels[1] = V - 1;       // last column of the last (partial) slice
  labels[4] = LORA4J_IGNORE_INDEX;
  fvec z = rand_vec(rng, T * V, 8.0f);
  z[3 * V + 50] = 30.0f;   // a late maximum forces the rescaling of the running sum
  dvec zd = to_double(z), lref;
  const double sref = ce_ref(zd, labels, T, V, lref);
  auto lossf = [&] {
    dvec l;
    return scale * ce_ref(zd, labels, T, V, l);
  };
  for (int64_t vc : {int64_t{1}, int64_t{16}, V}) {
    const std::string tag = "ce vocab chunks (vc " + std::to_string(vc) + ")";
    fvec rmax(T, NAN), rsum(T, NAN), zy(T, NAN), lse(T, NAN), loss(T, NAN), dz(T * V, NAN);
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
      const int64_t w = std::min(vc, V - v0);
      fvec slice(T * w);
      for (int64_t t = 0; t < T; t++)
        std::memcpy(&slice[t * w], &z[t * V + v0], sizeof(float) * w);
      lora4j_ce_chunk_stats(slice.data(), labels.data(), T, w, v0, v0 == 0, rmax.data(),
                            rsum.data(), zy.data());
    }
    float sum = NAN;
    lora4j_ce_chunk_finalize(labels.data(), rmax.data(), rsum.data(), zy.data(), T, lse.data(),
                             loss.data(), &sum);
    check_close(tag + " loss", loss.data(), lref, kFwdAtol, kFwdRtol);
    check_close(tag + " loss_sum", &sum, &sref, 1, kFwdAtol, kFwdRtol);
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
      const int64_t w = std::min(vc, V - v0);
      fvec slice(T * w);
      for (int64_t t = 0; t < T; t++)
        std::memcpy(&slice[t * w], &z[t * V + v0], sizeof(float) * w);
      lora4j_ce_chunk_grad(slice.data(), labels.data(), T, w, v0, lse.data(), scale);
      for (int64_t t = 0; t < T; t++)
        std::memcpy(&dz[t * V + v0], &slice[t * w], sizeof(float) * w);
    }
    fd_check(tag + " dlogits", zd, lossf, dz.data(), T * V, kGradAtol, kGradRtol);
    // and bit-for-bit the same formula as the unchunked backward once lse agrees to fp32
    fvec dz1(T * V);
    lora4j_ce_bwd(z.data(), labels.data(), T, V, scale, dz1.data());
    dvec dz1d(dz1.begin(), dz1.end());
    check_close(tag + " dlogits vs lora4j_ce_bwd", dz.data(), dz1d, 1e-7, 1e-5);
  }
}

void test_lora() {
  std::printf("lora\n");
  Rng rng(61);
  struct Case { int64_t T, in, out, r; bool base, mask; };
  const Case cases[] = {{9, 13, 11, 4, true, false},
                        {9, 13, 11, 4, true, true},
                        {7, 70, 9, 3, false, false},
                        {7, 70, 9, 3, false, true},
                        {33, 130, 70, 16, true, true}};
  for (const Case& c : cases) {
    const int64_t T = c.T, in = c.in, out = c.out, r = c.r;
    const float s = 2.0f;
    const std::string tag = "lora T" + std::to_string(T) + " " + std::to_string(in) + "->" +
                            std::to_string(out) + " r" + std::to_string(r) +
                            (c.base ? " W" : " W=null") + (c.mask ? " dropout" : "");
    fvec x = rand_vec(rng, T * in, 1.0f), a = rand_vec(rng, r * in, 0.5f),
         b = rand_vec(rng, out * r, 0.5f), R = rand_vec(rng, T * out, 1.0f);
    fvec w = c.base ? rand_vec(rng, out * in, 0.5f) : fvec();
    fvec mask;
    if (c.mask) {
      mask.resize(T * in);
      lora4j_dropout_mask(1234 + T, T * in, 0.3f, mask.data());
    }
    const float* wp = c.base ? w.data() : nullptr;
    const float* mp = c.mask ? mask.data() : nullptr;
    fvec y0 = rand_vec(rng, T * out, 1.0f), y = c.base ? fvec(T * out, NAN) : y0, xa(T * r, NAN);
    lora4j_lora_fwd(x.data(), wp, a.data(), b.data(), mp, T, in, out, r, s, y.data(), xa.data());
    dvec xd = to_double(x), wd = to_double(w), ad = to_double(a), bd = to_double(b),
         md = to_double(mask), Rd = to_double(R), yr, xar;
    lora_ref(xd, wd, ad, bd, md, T, in, out, r, s, yr, xar);
    if (!c.base)
      for (int64_t i = 0; i < T * out; i++) yr[i] += y0[i];  // W == null: Y += LoRA part
    check_close(tag + " fwd y", y.data(), yr, dot_atol(in), kFwdRtol);
    check_close(tag + " fwd xa", xa.data(), xar, dot_atol(in), kFwdRtol);
    fvec ws(lora4j_lora_bwd_workspace_floats(T, r));
    fvec dx0 = rand_vec(rng, T * in, 1.0f), da0 = rand_vec(rng, r * in, 1.0f),
         db0 = rand_vec(rng, out * r, 1.0f);
    fvec dx = dx0, da = da0, db = db0;
    // accumulate_dx = 1 on the W == null cases (the NF4 path), 0 with a dense W
    const int32_t acc = c.base ? 0 : 1;
    if (!acc) std::fill(dx.begin(), dx.end(), NAN);
    lora4j_lora_bwd(R.data(), x.data(), wp, a.data(), b.data(), mp, xa.data(), T, in, out, r, s,
                    dx.data(), acc, da.data(), db.data(), ws.data());
    for (size_t i = 0; i < dx.size() && acc; i++) dx[i] -= dx0[i];
    for (size_t i = 0; i < da.size(); i++) da[i] -= da0[i];
    for (size_t i = 0; i < db.size(); i++) db[i] -= db0[i];
    auto loss = [&] {
      dvec yy, xx;
      lora_ref(xd, wd, ad, bd, md, T, in, out, r, s, yy, xx);
      return dot_loss(yy, Rd);
    };
    fd_check(tag + std::string(" bwd dx") + (acc ? " (+=)" : ""), xd, loss, dx.data(), kFdPoints,
             kGradAtol, kGradRtol);
    fd_check(tag + " bwd dA (+=)", ad, loss, da.data(), kFdPoints, kGradAtol, kGradRtol);
    fd_check(tag + " bwd dB (+=)", bd, loss, db.data(), kFdPoints, kGradAtol, kGradRtol);
  }
  // dropout mask: values, rate, determinism
  const int64_t n = 200000;
  const float p = 0.1f;
  fvec m1(n), m2(n);
  lora4j_dropout_mask(7, n, p, m1.data());
  lora4j_dropout_mask(7, n, p, m2.data());
  int64_t zeros = 0;
  bool values_ok = true;
  const float keep = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; i++) {
    zeros += m1[i] == 0.0f;
    values_ok &= m1[i] == 0.0f || m1[i] == keep;
  }
  const double rate = static_cast<double>(zeros) / n;
  const double sigma = std::sqrt(p * (1 - p) / n);
  check_true("dropout mask values in {0, 1/(1-p)}", values_ok, "");
  check_true("dropout mask deterministic", std::memcmp(m1.data(), m2.data(), n * 4) == 0, "");
  char buf[128];
  std::snprintf(buf, sizeof buf, "rate %.5f vs p %.2f (5 sigma = %.5f)", rate, p, 5 * sigma);
  check_true("dropout mask rate", std::fabs(rate - p) < 5 * sigma, buf);
}

void test_adamw() {
  std::printf("adamw\n");
  Rng rng(71);
  const int64_t n = 10007;
  for (float wdecay : {0.0f, 0.01f}) {
    fvec p = rand_vec(rng, n, 1.0f), m(n, 0.0f), v(n, 0.0f);
    dvec pd = to_double(p), md(n, 0), vd(n, 0);
    const float lr = 2e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, gs = 0.7f;
    for (int64_t t = 1; t <= 3; t++) {
      fvec g = rand_vec(rng, n, 0.01f);
      lora4j_adamw_step(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wdecay, t, gs);
      const double bc1 = 1 - std::pow((double)b1, (double)t), bc2 = 1 - std::pow((double)b2, (double)t);
      for (int64_t i = 0; i < n; i++) {
        const double gg = (double)g[i] * gs;
        pd[i] *= 1 - (double)lr * wdecay;
        md[i] = b1 * md[i] + (1 - (double)b1) * gg;
        vd[i] = b2 * vd[i] + (1 - (double)b2) * gg * gg;
        pd[i] -= lr / bc1 * md[i] / (std::sqrt(vd[i]) / std::sqrt(bc2) + eps);
      }
    }
    const std::string tag = std::string("adamw wd=") + (wdecay > 0 ? "0.01" : "0") + " 3 steps";
    check_close(tag + " p", p.data(), pd, kAdamAtol, kAdamRtol);
    check_close(tag + " m", m.data(), md, kAdamAtol * 1e-2, kAdamRtol);
    check_close(tag + " v", v.data(), vd, kAdamAtol * 1e-4, kAdamRtol);
  }
  fvec x = rand_vec(rng, 100003, 3.0f);
  double ref = 5.0, got = 5.0;  // accumulates into out[0]
  for (float xi : x) ref += (double)xi * xi;
  lora4j_sumsq(x.data(), (int64_t)x.size(), &got);
  char buf[96];
  std::snprintf(buf, sizeof buf, "got %.15g ref %.15g", got, ref);
  check_true("sumsq (double, accumulated)", std::fabs(got - ref) <= 1e-12 * ref, buf);
}

}  // namespace

const h::Register reg_rmsnorm("grad", "rmsnorm", test_rmsnorm);
const h::Register reg_rope("grad", "rope", test_rope);
const h::Register reg_attention("grad", "attention", test_attention);
const h::Register reg_attention_blocked("grad", "attention tiled", test_attention_blocked);
const h::Register reg_attention_decode("grad", "attention decode", test_attention_decode);
const h::Register reg_softcap("grad", "softcap", test_softcap);
const h::Register reg_swiglu("grad", "swiglu", test_swiglu);
const h::Register reg_geglu("grad", "geglu", test_geglu);
const h::Register reg_embedding("grad", "embedding", test_embedding);
const h::Register reg_ce("grad", "cross-entropy", test_ce);
const h::Register reg_ce_chunks("grad", "cross-entropy vocabulary chunks", test_ce_vocab_chunks);
const h::Register reg_lora("grad", "lora", test_lora);
const h::Register reg_adamw("grad", "adamw", test_adamw);
