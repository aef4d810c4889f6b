// lora4j's own CPU thread pool: the one threading layer of the CPU kernels (OpenBLAS runs single-
// threaded inside it, see runtime.cpp). It replaces OpenMP's runtime, whose idle threads spin for
// a long time by default (GOMP's OMP_WAIT_POLICY): inside a JVM, next to the JIT, the collector
// and OpenBLAS's own workers, that spinning made a jar user's training 9x slower than the CLI,
// which exported OMP_WAIT_POLICY=PASSIVE. Here idle workers spin for a few microseconds (enough
// to bridge the gap between two kernels of one step) and then sleep on a condition variable, so
// a library user needs no environment variable.
//
// Every parallel region states the work it carries; regions too small to pay for waking a
// worker run on the calling thread alone, so small ops never cost more on 2 threads than on 1.
#pragma once
#include <stdint.h>

#include <functional>

namespace lora4j::cpu {

// Work (in "elements touched", ~1 ns each) below which a region stays on one thread, per thread
// added: a sleeping worker takes ~5-20 us to wake, a spinning one ~1 us.
constexpr double kMinWorkPerThread = 32768.0;

// Threads of the pool, the calling thread included (>= 1). Default: LORA4J_NUM_THREADS, else
// OMP_NUM_THREADS, else the physical cores this process may run on.
int max_threads();
// Resizes the pool (n >= 1); n <= 0 is ignored.
void set_max_threads(int n);
// The physical cores (distinct core ids) among the CPUs this process may run on.
int physical_cores();

// How many threads a region of `work` units should use: at most max_threads() and items, and
// at least kMinWorkPerThread work for each.
int threads_for(double work, int64_t items);

// Runs body(tid, nth) on nth threads, the caller being tid 0, and returns when every call has;
// rethrows the first exception a call threw. A region started inside another region, or while
// another thread holds the pool, runs on the calling thread alone (nth = 1).
void run_parallel(int nth, const std::function<void(int tid, int nth)>& body);

// body(begin, end) on contiguous static chunks of [0, n), one per thread; work_per_item sizes
// the region (threads_for). Chunk boundaries depend only on n and the thread count.
template <class F>
void parallel_for(int64_t n, double work_per_item, F&& body) {
  if (n <= 0) return;
  const int nth = threads_for(static_cast<double>(n) * work_per_item, n);
  if (nth <= 1) {
    body(int64_t(0), n);
    return;
  }
  run_parallel(nth, [&](int tid, int nt) {
    const int64_t b = n * tid / nt, e = n * (tid + 1) / nt;
    if (b < e) body(b, e);
  });
}

}  // namespace lora4j::cpu
