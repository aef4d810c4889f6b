// The harness's checks with tolerances (declared in harness.h).
#include "harness.h"

#include <cmath>

namespace h {

// Pass iff every element is finite and |got - ref| <= atol + rtol * |ref|.
bool check_close(const std::string& name, const float* got, const double* ref, size_t n,
                 double atol, double rtol) {
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
  std::string detail = fmt("n=%-7zu max|err|=%.2e  worst err/tol=%.3f", n, max_abs, worst_ratio);
  if (!ok) detail += fmt("  (%zu bad; [%zu] got %.9g ref %.9g)", bad, worst, (double)got[worst], ref[worst]);
  record(name, ok, detail);
  return ok;
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

}  // namespace h
