// Shared utilities of lora4j_ops_harness: seeded RNG, tolerance checks, finite differences,
// timing. Declarations in each user file's "harness_util" block (tests/ops has no headers).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace ops_harness {

int g_failures = 0;
int g_checks = 0;

// xorshift64* seeded through splitmix64: reproducible inputs for every test.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();                       // [0, 1)
  float sym(float a);                     // [-a, a)
  int32_t below(int32_t n);               // [0, n)
};

// Out of line: the other harness files declare the same struct and call these.
Rng::Rng(uint64_t seed) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  s = (z ^ (z >> 31)) | 1;
}
uint64_t Rng::next() {
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 2685821657736338717ULL;
}
double Rng::uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
float Rng::sym(float a) { return static_cast<float>((2.0 * uniform() - 1.0) * a); }
int32_t Rng::below(int32_t n) { return static_cast<int32_t>(uniform() * n); }

std::vector<float> rand_vec(Rng& rng, size_t n, float a) {
  std::vector<float> v(n);
  for (auto& x : v) x = rng.sym(a);
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Pass iff every element is finite and |got - ref| <= atol + rtol * |ref|.
bool check_close(const std::string& name, const float* got, const double* ref, size_t n,
                 double atol, double rtol) {
  g_checks++;
  double max_abs = 0.0, worst_ratio = 0.0;
  size_t worst = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    const double g = got[i], r = ref[i];
    const double err = std::fabs(g - r);
    const double lim = atol + rtol * std::fabs(r);
    if (!std::isfinite(g) || !(err <= lim)) bad++;
    const double ratio = !std::isfinite(g) ? INFINITY : lim > 0 ? err / lim : (err > 0 ? INFINITY : 0.0);
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
    if (std::isfinite(err) && err > max_abs) max_abs = err;
  }
  const bool ok = bad == 0;
  std::printf("  %-4s %-44s n=%-7zu max|err|=%.2e  worst err/tol=%.3f", ok ? "ok" : "FAIL",
              name.c_str(), n, max_abs, worst_ratio);
  if (!ok) std::printf("  (%zu bad; [%zu] got %.9g ref %.9g)", bad, worst, (double)got[worst],
                       ref[worst]);
  std::printf("\n");
  if (!ok) g_failures++;
  return ok;
}

bool check_close(const std::string& name, const float* got, const std::vector<double>& ref,
                 double atol, double rtol) {
  return check_close(name, got, ref.data(), ref.size(), atol, rtol);
}

bool check_true(const std::string& name, bool cond, const std::string& detail) {
  g_checks++;
  std::printf("  %-4s %-44s %s\n", cond ? "ok" : "FAIL", name.c_str(), detail.c_str());
  if (!cond) g_failures++;
  return cond;
}

// Central finite differences of a double-precision loss: for up to max_points entries of
// `param` (all of them when it is small, else an evenly spread subset), compares
// (L(p+h) - L(p-h)) / 2h with the kernel's gradient. The reference loss is in double, so the
// differences are accurate to ~1e-9; the tolerance absorbs the fp32 kernel's rounding.
bool fd_check(const std::string& name, std::vector<double>& param,
              const std::function<double()>& loss, const float* grad, size_t max_points,
              double atol, double rtol) {
  constexpr double kStep = 1e-5;  // central-difference step (truncation ~h^2, roundoff ~1e-11/h)
  const size_t n = param.size();
  const size_t stride = n <= max_points ? 1 : (n + max_points - 1) / max_points;
  std::vector<float> got;
  std::vector<double> ref;
  for (size_t i = 0; i < n; i += stride) {
    const double p0 = param[i];
    param[i] = p0 + kStep;
    const double lp = loss();
    param[i] = p0 - kStep;
    const double lm = loss();
    param[i] = p0;
    ref.push_back((lp - lm) / (2 * kStep));
    got.push_back(grad[i]);
  }
  return check_close(name + " vs FD", got.data(), ref.data(), ref.size(), atol, rtol);
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Best wall time of `reps` runs after one warm-up, in seconds.
double time_best(int reps, const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < reps; i++) {
    const double t0 = now_s();
    f();
    const double dt = now_s() - t0;
    if (dt < best) best = dt;
  }
  return best;
}

}  // namespace ops_harness
