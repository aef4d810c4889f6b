// The CPU thread pool (see parallel.h for why lora4j has its own).
//
// Dispatch: the caller publishes the job and bumps `generation_` under `mu_`, then wakes the
// sleepers; workers that are still spinning see the bump without a system call. Completion: each
// participating worker decrements `pending_`; the caller runs its own share, then waits for 0
// (spinning briefly, then yielding the core).
#include "parallel.h"

#include <immintrin.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace lora4j::cpu {
namespace {

// ~2000 pause instructions: 10-50 us depending on the core (Zen 3 ~65 cycles, Skylake ~140).
constexpr int kSpinIterations = 2000;

thread_local bool t_in_region = false;

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop_workers(); }

  int size() const { return size_.load(std::memory_order_relaxed); }

  void resize(int threads) {
    std::lock_guard<std::mutex> dispatch(dispatch_mu_);
    stop_workers();
    stopping_ = false;
    size_.store(threads < 1 ? 1 : threads);
    // A worker starts from the generation current now, not when its thread first runs: a job
    // published in between is one it must take part in.
    const uint64_t start = generation_.load(std::memory_order_acquire);
    for (int tid = 1; tid < size_.load(); tid++)
      workers_.emplace_back([this, tid, start] { work(tid, start); });
  }

  void run(int nth, const std::function<void(int, int)>& body) {
    if (nth > size()) nth = size();
    std::unique_lock<std::mutex> dispatch(dispatch_mu_, std::try_to_lock);
    if (nth <= 1 || t_in_region || !dispatch.owns_lock()) {
      body(0, 1);
      return;
    }
    pending_.store(nth - 1, std::memory_order_relaxed);
    {
      // The job and its generation change together, under mu_: a worker reads them together.
      std::lock_guard<std::mutex> lock(mu_);
      error_ = nullptr;
      job_ = &body;
      job_threads_ = nth;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    std::exception_ptr mine;
    t_in_region = true;
    try {
      body(0, nth);
    } catch (...) {
      mine = std::current_exception();
    }
    t_in_region = false;
    for (int i = 0; pending_.load(std::memory_order_acquire) != 0; i++) {
      if (i < kSpinIterations) _mm_pause();
      else std::this_thread::yield();
    }
    job_ = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(int tid, uint64_t seen) {
    t_in_region = true;  // a kernel's nested region runs serially on its worker
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      for (int i = 0; g == seen && i < kSpinIterations; i++) {
        _mm_pause();
        g = generation_.load(std::memory_order_acquire);
      }
      const std::function<void(int, int)>* job;
      int nth;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (g == seen)
          cv_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stopping_) return;
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
        nth = job_threads_;
      }
      // A worker outside this job may have slept through earlier ones; a worker inside it
      // cannot miss it, since the next job waits for this one's pending_ to reach 0.
      if (tid >= nth) continue;
      try {
        (*job)(tid, nth);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  std::atomic<int> size_{1};
  std::vector<std::thread> workers_;
  std::mutex dispatch_mu_;  // one region at a time; others run serially
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  bool stopping_ = false;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 0;
  std::atomic<int> pending_{0};
  std::exception_ptr error_;
};

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);  // OMP_NUM_THREADS may be a list "4,2": the first counts
  return (end != v && n > 0 && n < 4096) ? static_cast<int>(n) : 0;
}

int default_threads() {
  if (int n = env_threads("LORA4J_NUM_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  return physical_cores();
}

Pool& pool() {
  // Leaked on purpose: joining threads from a static destructor at JVM exit can deadlock.
  static Pool* p = new Pool(default_threads());
  return *p;
}

}  // namespace

int physical_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
  }
  std::set<std::pair<long, long>> cores;  // (package, core id)
  int cpus = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &set)) continue;
    cpus++;
    long ids[2] = {-1, -1};
    const char* files[2] = {"physical_package_id", "core_id"};
    for (int k = 0; k < 2; k++) {
      std::string path = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/" + files[k];
      if (FILE* f = std::fopen(path.c_str(), "r")) {
        if (std::fscanf(f, "%ld", &ids[k]) != 1) ids[k] = -1;
        std::fclose(f);
      }
    }
    cores.insert(ids[1] < 0 ? std::make_pair(-1L - c, long(c)) : std::make_pair(ids[0], ids[1]));
  }
  const int n = static_cast<int>(cores.size());
  return n > 0 ? n : (cpus > 0 ? cpus : 1);
}

int max_threads() { return pool().size(); }

void set_max_threads(int n) {
  if (n <= 0) return;
  Pool& p = pool();
  if (p.size() != n) p.resize(n);
}

int threads_for(double work, int64_t items) {
  const int max = max_threads();
  if (max <= 1 || items <= 1 || work < 2 * kMinWorkPerThread) return 1;
  double by_work = work / kMinWorkPerThread;
  int n = max;
  if (by_work < n) n = static_cast<int>(by_work);
  if (items < n) n = static_cast<int>(items);
  return n < 1 ? 1 : n;
}

void run_parallel(int nth, const std::function<void(int, int)>& body) { pool().run(nth, body); }

}  // namespace lora4j::cpu
