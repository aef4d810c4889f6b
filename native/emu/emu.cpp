// lora4j CUDA emulator: runtime API, streams, fibers, barriers, warp exchange and mma.sync.
// Header and design: cuda_runtime.h and README.md beside this file. Written from NVIDIA's
// documentation (CUDA C++ Programming Guide, CUDA Runtime API, PTX ISA), never from the
// kernels it runs (DESIGN.md §7b).
#include "cuda_runtime.h"

#include <dlfcn.h>
#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define LORA4J_EMU_ASAN 1
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

extern "C" {
uint3 lora4j_emu_threadIdx;
uint3 lora4j_emu_blockIdx;
dim3 lora4j_emu_blockDim;
dim3 lora4j_emu_gridDim;
}

namespace lora4j_emu {
namespace {

// ---- device profiles --------------------------------------------------------------------------
// Limits from the CUDA C++ Programming Guide, "Technical Specifications per Compute Capability":
// 1024 threads per block (x, y <= 1024, z <= 64), grid x < 2^31, y and z <= 65535, 48 KiB of
// shared memory per block without opt-in; opt-in maxima 227 KiB (9.0), 163 KiB (8.0),
// 99 KiB (8.6, 8.9).
struct Profile {
  const char* key;
  const char* what;
  int major, minor;
  size_t optin_smem, smem_per_sm;
  int sms, threads_per_sm;
  size_t memory;
};
constexpr size_t KiB = 1024, GiB = size_t(1) << 30;
const Profile kProfiles[] = {
    {"sm_90", "H100/H200 limits", 9, 0, 227 * KiB, 228 * KiB, 132, 2048, 80 * GiB},
    {"sm_89", "L4/L40S/RTX 40 limits", 8, 9, 99 * KiB, 100 * KiB, 58, 1536, 24 * GiB},
    {"sm_86", "RTX 30/A10 limits", 8, 6, 99 * KiB, 100 * KiB, 84, 1536, 24 * GiB},
    {"sm_80", "A100 limits", 8, 0, 163 * KiB, 164 * KiB, 108, 2048, 40 * GiB},
};
constexpr size_t kSmemNoOptin = 48 * KiB;

const Profile& profile() {
  static const Profile* p = [] {
    const char* e = std::getenv("LORA4J_EMU_DEVICE");
    if (!e || !*e) return &kProfiles[0];
    for (const Profile& q : kProfiles)
      if (std::string(e) == q.key) return &q;
    std::fprintf(stderr, "lora4j cuda emulator: unknown LORA4J_EMU_DEVICE=%s, using sm_90\n", e);
    return &kProfiles[0];
  }();
  return *p;
}

size_t memory_total() {
  static const size_t t = [] {
    const char* e = std::getenv("LORA4J_EMU_MEMORY_MIB");
    return e && *e ? size_t(std::strtoull(e, nullptr, 10)) << 20 : profile().memory;
  }();
  return t;
}

// Devices the runtime reports (LORA4J_EMU_DEVICES, 1..16): all share the one profile, memory and
// device lock; what differs is only the ordinal a host thread has set, so that a data-parallel
// rank's choice of device (its local rank) reaches cudaSetDevice and is checked against the count.
int device_count() {
  static const int n = [] {
    const char* e = std::getenv("LORA4J_EMU_DEVICES");
    if (!e || !*e) return 1;
    const long v = std::strtol(e, nullptr, 10);
    if (v >= 1 && v <= 16) return int(v);
    std::fprintf(stderr, "lora4j cuda emulator: LORA4J_EMU_DEVICES=%s is not in 1..16, using 1\n", e);
    return 1;
  }();
  return n;
}
thread_local int t_device = 0;  // cudaSetDevice is per host thread, as in CUDA

uint64_t seed() {
  static const uint64_t s = [] {
    const char* e = std::getenv("LORA4J_EMU_SEED");
    return e && *e ? uint64_t(std::strtoull(e, nullptr, 0)) : uint64_t(20240611);
  }();
  return s;
}

// One lock for the whole device: host threads queue work concurrently, the device runs one
// thing at a time (which is what makes static __shared__ storage per block sound).
std::recursive_mutex& device_mutex() {
  static std::recursive_mutex m;
  return m;
}
std::mt19937_64& rng() {
  static std::mt19937_64 r(seed());
  return r;
}

// ---- errors -----------------------------------------------------------------------------------
thread_local cudaError_t t_last = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;
thread_local std::string t_message;

cudaError_t fail(cudaError_t e, const std::string& detail) {
  t_last = e;
  t_detail_code = e;
  t_detail = detail;
  return e;
}

[[noreturn]] void die(const std::string& msg) {
  throw std::runtime_error("lora4j cuda emulator: " + msg);
}

// ---- memory -----------------------------------------------------------------------------------
struct Alloc {
  size_t size;
  bool device;
};
std::map<uintptr_t, Alloc>& allocs() {
  static std::map<uintptr_t, Alloc> m;
  return m;
}
size_t g_used = 0;

// The allocation holding [p, p + n), or nullptr.
const Alloc* find_alloc(const void* p, size_t n, uintptr_t* base = nullptr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = allocs().upper_bound(a);
  if (it == allocs().begin()) return nullptr;
  --it;
  if (a < it->first || a + n > it->first + it->second.size) return nullptr;
  if (base) *base = it->first;
  return &it->second;
}
bool is_device(const void* p, size_t n) {
  const Alloc* a = find_alloc(p, n);
  return a && a->device;
}
bool is_pinned(const void* p, size_t n) {
  const Alloc* a = find_alloc(p, n);
  return a && !a->device;
}

cudaError_t allocate(void** out, size_t bytes, bool device) {
  if (!out) return fail(cudaErrorInvalidValue, "null result pointer");
  *out = nullptr;
  if (device && g_used + bytes > memory_total())
    return fail(cudaErrorMemoryAllocation, "device memory of the profile exhausted (" +
                                               std::to_string(g_used) + " + " +
                                               std::to_string(bytes) + " > " +
                                               std::to_string(memory_total()) + " bytes)");
  void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (!p) return fail(cudaErrorMemoryAllocation, "host allocation failed");
  std::memset(p, 0xFF, bytes);  // NaN bytes: a read before a write shows
  allocs()[reinterpret_cast<uintptr_t>(p)] = Alloc{bytes, device};
  if (device) g_used += bytes;
  *out = p;
  return cudaSuccess;
}

cudaError_t release(void* p, bool device) {
  auto it = allocs().find(reinterpret_cast<uintptr_t>(p));
  if (it == allocs().end() || it->second.device != device)
    return fail(cudaErrorInvalidValue, std::string(device ? "cudaFree" : "cudaFreeHost") +
                                           " of a pointer that is not an allocation of its kind");
  if (device) g_used -= it->second.size;
  allocs().erase(it);
  std::free(p);
  return cudaSuccess;
}

// ---- streams ----------------------------------------------------------------------------------
struct Stream;
struct Op {
  uint64_t seq;
  std::function<void()> run;
  std::vector<std::pair<Stream*, uint64_t>> deps;  // (stream, seq) that must be done first
};
struct Stream {
  bool blocking = false;  // synchronises with the legacy default stream
  bool alive = true;
  uint64_t issued = 0, done = 0;
  std::deque<Op> q;
};
Stream make_stream(bool blocking) {
  Stream s;
  s.blocking = blocking;
  return s;
}
Stream g_legacy = make_stream(true);
// Never destroyed (streams outlive cudaStreamDestroy: events may still name them), so the
// leak checker sees them reachable at exit.
std::vector<Stream*>& streams() {
  static auto* v = new std::vector<Stream*>{&g_legacy};
  return *v;
}

Stream* to_stream(cudaStream_t s) { return s ? reinterpret_cast<Stream*>(s) : &g_legacy; }
bool valid_stream(cudaStream_t s) {
  if (!s) return true;
  for (Stream* x : streams())
    if (x == reinterpret_cast<Stream*>(s) && x->alive) return true;
  return false;
}

uint64_t enqueue(Stream* s, std::function<void()> run,
                 std::vector<std::pair<Stream*, uint64_t>> deps = {}) {
  // Legacy default stream semantics (CUDA Runtime API, "stream synchronization behavior"):
  // its work waits for all blocking streams' earlier work and they wait for its work.
  if (s == &g_legacy) {
    for (Stream* o : streams())
      if (o != s && o->blocking && o->issued > o->done) deps.emplace_back(o, o->issued);
  } else if (s->blocking && g_legacy.issued > g_legacy.done) {
    deps.emplace_back(&g_legacy, g_legacy.issued);
  }
  Op op{++s->issued, std::move(run), std::move(deps)};
  s->q.push_back(std::move(op));
  return s->issued;
}

bool ready(const Stream* s) {
  if (s->q.empty()) return false;
  for (const auto& d : s->q.front().deps)
    if (d.first->done < d.second) return false;
  return true;
}

// Runs queued work until pred() holds. Among the streams whose next operation may run, one is
// picked at random (seeded), so independent streams run in an order that differs from the
// order of issue, and a missing event wait shows.
void run_until(const std::function<bool()>& pred) {
  while (!pred()) {
    std::vector<Stream*> r;
    for (Stream* s : streams())
      if (ready(s)) r.push_back(s);
    if (r.empty()) die("internal: work pending but no stream can run");
    Stream* s = r[rng()() % r.size()];
    Op op = std::move(s->q.front());
    s->q.pop_front();
    try {
      op.run();
    } catch (...) {
      s->done = op.seq;
      throw;
    }
    s->done = op.seq;
  }
}

bool idle() {
  for (Stream* s : streams())
    if (!s->q.empty()) return false;
  return true;
}

struct Event {
  Stream* stream = nullptr;
  uint64_t seq = 0;
  // The record's time stamp lives in its own cell, held by the queued record too: CUDA allows
  // destroying an event whose record has not run yet, and that record must not write freed memory.
  std::shared_ptr<std::chrono::steady_clock::time_point> when =
      std::make_shared<std::chrono::steady_clock::time_point>();
  bool complete() const { return !stream || stream->done >= seq; }
};

// ---- fibers -----------------------------------------------------------------------------------
#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack,
// stores the stack pointer in *save and continues on `next` (System V AMD64 ABI).
extern "C" void lora4j_emu_switch(void** save, void* next);
asm(R"(
  .text
  .globl lora4j_emu_switch
  .hidden lora4j_emu_switch
  .type lora4j_emu_switch,@function
lora4j_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size lora4j_emu_switch, .-lora4j_emu_switch
)");
#endif

enum class State { Ready, AtBarrier, AtWarp, Done };
enum { kSyncwarp = 7, kMma = 8 };

struct Fiber {
  char* stack_lo = nullptr;
  size_t stack_size = 0;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  void* fake_stack = nullptr;
  uint3 tid{};
  int linear = 0;
  State state = State::Ready;
  int line = 0;
  // warp operation
  int kind = 0;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
  const char* what = "";
  uint32_t a[4] = {}, b[2] = {};
  float c[4] = {}, d[4] = {};
};

struct Block {
  const char* kernel = "";
  LaunchBody* body = nullptr;
  std::vector<Fiber>* fibers = nullptr;
  int n = 0;
  std::vector<Fiber*> next;  // made runnable during this round
  int barrier_line = -1;
  std::string error;
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_ctx;
#endif
  void* sched_fake = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
  char* dyn_smem = nullptr;
  size_t dyn_bytes = 0;
  std::vector<int> warp_arrived;  // lanes waiting at a warp operation, per warp
};

Block* g_block = nullptr;
bool g_abandoned = false;  // the last block ended in an error: its fibers never returned
Fiber* g_cur = nullptr;

size_t stack_bytes() {
  static const size_t s = [] {
    const char* e = std::getenv("LORA4J_EMU_STACK_KIB");
    size_t k = e && *e ? std::strtoull(e, nullptr, 10) : 0;
#if defined(LORA4J_EMU_ASAN)
    if (k == 0) k = 256;
#else
    if (k == 0) k = 64;
#endif
    return std::max<size_t>(k, 16) * KiB;
  }();
  return s;
}

// Stacks are kept for the process lifetime and reused by every block; a PROT_NONE guard page
// under each turns a stack overflow into a fault instead of silent corruption.
std::vector<Fiber>& fiber_pool(int n) {
  static std::vector<Fiber> pool;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  while (int(pool.size()) < n) {
    Fiber f;
    const size_t total = stack_bytes() + page;
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) die("cannot map a fiber stack");
    mprotect(m, page, PROT_NONE);
    f.stack_lo = static_cast<char*>(m) + page;
    f.stack_size = stack_bytes();
    pool.push_back(f);
  }
  return pool;
}

void to_scheduler(Fiber* f, bool exiting) {
  Block* b = g_block;
#if defined(LORA4J_EMU_ASAN)
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake_stack, b->sched_bottom, b->sched_size);
#endif
#if defined(__x86_64__)
  lora4j_emu_switch(&f->sp, b->sched_sp);
#else
  swapcontext(&f->ctx, &b->sched_ctx);
#endif
#if defined(LORA4J_EMU_ASAN)
  __sanitizer_finish_switch_fiber(f->fake_stack, nullptr, nullptr);
#endif
  (void)exiting;
}

// Unwinds a thread's stack to fiber_main (destroying the temporaries of the kernel's frames).
struct AbortThread {};

[[noreturn]] void fiber_main() {
#if defined(LORA4J_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &g_block->sched_bottom, &g_block->sched_size);
#endif
  Fiber* f = g_cur;
  try {
    g_block->body->run_thread();
  } catch (const AbortThread&) {
    // the error is recorded
  } catch (const std::exception& e) {
    if (g_block->error.empty()) g_block->error = std::string("exception in a thread: ") + e.what();
  } catch (...) {
    if (g_block->error.empty()) g_block->error = "unknown exception in a thread";
  }
  f->state = State::Done;
  to_scheduler(f, true);
  __builtin_trap();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
void fiber_entry_uc() { fiber_main(); }
#endif

void prepare(Fiber& f, bool unpoison) {
#if defined(LORA4J_EMU_ASAN)
  // fiber_main never returns, so the redzones of its frame stay poisoned at the top of the
  // stack; a block abandoned after an error leaves deeper frames poisoned too.
  if (unpoison) __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
  else __asan_unpoison_memory_region(f.stack_lo + f.stack_size - 4096, 4096);
#endif
  (void)unpoison;
#if defined(__x86_64__)
  // Frame that lora4j_emu_switch pops: [mxcsr|fpucw][r15 r14 r13 r12 rbx rbp][ret = fiber_main]
  // with the return address at a 16-byte boundary, so fiber_main starts as if called.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack_lo) + f.stack_size) & ~uintptr_t(15);
  uint64_t* a = reinterpret_cast<uint64_t*>(top - 16);
  a[1] = 0;  // fake return address of fiber_main: ends backtraces
  a[0] = reinterpret_cast<uint64_t>(&fiber_main);
  uint64_t* sp = a - 7;
  for (int i = 1; i < 7; i++) sp[i] = 0;
  uint32_t csr[2];
  asm volatile("stmxcsr %0" : "=m"(csr[0]));
  asm volatile("fnstcw %0" : "=m"(csr[1]));
  std::memcpy(sp, csr, 8);
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack_lo;
  f.ctx.uc_stack.ss_size = f.stack_size;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry_uc, 0);
#endif
}

void resume(Fiber* f) {
  Block* b = g_block;
  g_cur = f;
  lora4j_emu_threadIdx = f->tid;
#if defined(LORA4J_EMU_ASAN)
  __sanitizer_start_switch_fiber(&b->sched_fake, f->stack_lo, f->stack_size);
#endif
#if defined(__x86_64__)
  lora4j_emu_switch(&b->sched_sp, f->sp);
#else
  swapcontext(&b->sched_ctx, &f->ctx);
#endif
#if defined(LORA4J_EMU_ASAN)
  __sanitizer_finish_switch_fiber(b->sched_fake, nullptr, nullptr);
#endif
  g_cur = nullptr;
}

Fiber* current(const char* what) {
  if (!g_cur || !g_block) die(std::string(what) + " called outside a kernel");
  return g_cur;
}

// Records a kernel error and ends the thread; the scheduler abandons the block and throws.
[[noreturn]] void kernel_error(Fiber* f, const std::string& msg) {
  (void)f;
  if (g_block->error.empty()) g_block->error = msg;
  throw AbortThread{};
}

std::string lane_list(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 8; i++) s += (i ? "," : "") + std::to_string(v[i]);
  if (v.size() > 8) s += ",... (" + std::to_string(v.size()) + ")";
  return s;
}

// ---- mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 ---------------------------------------
// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type". With
// groupID = laneid >> 2 and tig = laneid % 4 (threadID_in_group):
//
//   A 16x16 (row-major), four .b32 registers = eight bf16 a0..a7, low half of a register first
//     (register r holds a(2r) in bits 0-15 and a(2r+1) in bits 16-31):
//       row(ai) = groupID       for i in {0, 1, 4, 5}
//                 groupID + 8   for i in {2, 3, 6, 7}
//       col(ai) = tig*2 + (i & 1)       for i < 4
//                 tig*2 + (i & 1) + 8   for i >= 4
//   B 16x8 (K x N, "col"), two .b32 registers = four bf16 b0..b3, low half first:
//       row(bi) = tig*2 + (i & 1)       for i < 2      (the k index)
//                 tig*2 + (i & 1) + 8   for i >= 2
//       col(bi) = groupID                              (the n index)
//   C, D 16x8 fp32, c0..c3:
//       row(ci) = groupID for i < 2, groupID + 8 for i >= 2
//       col(ci) = tig*2 + (i & 1)
//
// D = A·B + C: the bf16 products are exact in fp32 (8-bit significands), accumulated in fp32
// in k order onto C. (The hardware's internal order and precision are not specified; the
// tolerance of the parity checks covers the difference.)
void mma_compute(Fiber* lanes[32]) {
  float A[16][16], B[16][8], C[16][8];
  auto bf = [](uint32_t r, int half) {
    const uint32_t u = half ? (r & 0xFFFF0000u) : (r << 16);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  for (int lane = 0; lane < 32; lane++) {
    const Fiber* f = lanes[lane];
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 8; i++) {
      const int row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
      const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = bf(f->a[i / 2], i & 1);
    }
    for (int i = 0; i < 4; i++) {
      const int k = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      B[k][g] = bf(f->b[i / 2], i & 1);
    }
    for (int i = 0; i < 4; i++) C[g + (i >= 2 ? 8 : 0)][t * 2 + (i & 1)] = f->c[i];
  }
  float D[16][8];
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 8; n++) {
      float acc = C[m][n];
      for (int k = 0; k < 16; k++) acc += A[m][k] * B[k][n];  // exact product: fused or not, same sum
      D[m][n] = acc;
    }
  for (int lane = 0; lane < 32; lane++) {
    Fiber* f = lanes[lane];
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) f->d[i] = D[g + (i >= 2 ? 8 : 0)][t * 2 + (i & 1)];
  }
}

// The lanes of `f`'s warp named by its mask, all waiting at a warp operation? Completes it
// (computes every lane's result) and makes them runnable. Errors for exited or missing lanes.
bool try_complete_warp(Fiber* f) {
  Block* b = g_block;
  std::vector<Fiber>& fs = *b->fibers;
  const int base = f->linear & ~31;
  Fiber* lanes[32] = {};
  for (int l = 0; l < 32; l++) {
    if (!(f->mask >> l & 1u)) continue;
    const int idx = base + l;
    if (idx >= b->n)
      kernel_error(f, std::string(f->what) + " at line " + std::to_string(f->line) + ": mask 0x" +
                          [&] { char h[16]; std::snprintf(h, sizeof h, "%08x", f->mask); return std::string(h); }() +
                          " names lane " + std::to_string(l) + " of warp " + std::to_string(base / 32) +
                          ", which does not exist (block of " + std::to_string(b->n) + " threads)");
    Fiber* o = &fs[idx];
    if (o->state == State::Done)
      kernel_error(f, std::string(f->what) + " at line " + std::to_string(f->line) + " (thread " +
                          std::to_string(f->linear) + "): lane " + std::to_string(l) +
                          " of its mask has exited");
    if (o->state != State::AtWarp) return false;  // not there yet
    if (o->kind != f->kind || o->mask != f->mask || (f->kind == kMma && o->line != f->line))
      kernel_error(f, std::string("lanes of warp ") + std::to_string(base / 32) +
                          " meet at different warp operations: " + f->what + " (line " +
                          std::to_string(f->line) + ", mask " + std::to_string(f->mask) + ") and " +
                          o->what + " (line " + std::to_string(o->line) + ", mask " +
                          std::to_string(o->mask) + ")");
    lanes[l] = o;
  }
  // Every lane of the mask is here: compute the results (CUDA C++ Programming Guide, "Warp
  // Shuffle Functions" and "Warp Vote Functions"; PTX shfl.sync).
  if (f->kind == kMma) {
    mma_compute(lanes);
  } else if (f->kind == kVoteAny || f->kind == kVoteAll || f->kind == kVoteBallot) {
    uint64_t ballot = 0;
    for (int l = 0; l < 32; l++)
      if (lanes[l] && lanes[l]->value) ballot |= uint64_t(1) << l;
    const bool any = ballot != 0, all = ballot == f->mask;
    for (int l = 0; l < 32; l++)
      if (lanes[l])
        lanes[l]->result = f->kind == kVoteAny ? any : f->kind == kVoteAll ? all : ballot;
  } else if (f->kind != kSyncwarp) {
    for (int l = 0; l < 32; l++) {
      Fiber* o = lanes[l];
      if (!o) continue;
      const int w = o->width;
      if (w < 1 || w > 32 || (w & (w - 1)))
        kernel_error(f, std::string(o->what) + ": width " + std::to_string(w) + " is not a power of two <= 32");
      const int seg = l & ~(w - 1);
      int src = l;
      switch (o->kind) {
        case kShflIdx: src = seg + (o->arg % w + w) % w; break;
        case kShflUp: src = l - o->arg >= seg ? l - o->arg : l; break;
        case kShflDown: src = l + o->arg < seg + w ? l + o->arg : l; break;
        case kShflXor: src = l ^ o->arg; if (src >= seg + w) src = l; break;
      }
      if (src < 0 || src > 31 || !lanes[src])
        kernel_error(f, std::string(o->what) + " at line " + std::to_string(o->line) + ": lane " +
                            std::to_string(l) + " reads lane " + std::to_string(src) +
                            ", which is not in the mask (undefined value)");
      o->result = lanes[src]->value;
    }
  }
  for (int l = 0; l < 32; l++)
    if (lanes[l]) {
      lanes[l]->state = State::Ready;
      b->next.push_back(lanes[l]);
    }
  return true;
}

void warp_wait(Fiber* f) {
  const unsigned self = 1u << (f->linear & 31);
  if (!(f->mask & self))
    kernel_error(f, std::string(f->what) + " at line " + std::to_string(f->line) + ": calling lane " +
                        std::to_string(f->linear & 31) + " is not in its own mask");
  f->state = State::AtWarp;
  // The full check runs once per operation, when as many lanes have arrived as the mask names,
  // or at once when the mask names lanes past the end of the block (a partial warp).
  Block* b = g_block;
  const int w = f->linear >> 5;
  const int present = std::min(32, b->n - (w << 5));
  const bool beyond = present < 32 && (f->mask >> present) != 0;
  if ((++b->warp_arrived[w] >= __builtin_popcount(f->mask) || beyond) && try_complete_warp(f))
    b->warp_arrived[w] -= __builtin_popcount(f->mask);
  to_scheduler(f, false);
}

// ---- static shared memory per kernel (for the launch limits) ---------------------------------
// A kernel's static __shared__ variables are function-local statics in the section
// lora4j_emu_shared; their symbols are named _ZZ<kernel's mangled name without _Z>E<var>.
// The kernel's symbol and theirs are read from the .symtab of the file that holds the kernel.
size_t static_shared_bytes(const void* kernel) {
  static std::unordered_map<const void*, size_t> cache;
  static std::unordered_map<std::string, std::vector<char>> files;
  auto hit = cache.find(kernel);
  if (hit != cache.end()) return hit->second;
  size_t total = 0;
  Dl_info di{};
  if (dladdr(kernel, &di) && di.dli_fname) {
    std::string path = *di.dli_fname ? di.dli_fname : "/proc/self/exe";
    auto fit = files.find(path);
    if (fit == files.end()) {
      std::ifstream in(path, std::ios::binary);
      std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      fit = files.emplace(path, std::move(data)).first;
    }
    const std::vector<char>& f = fit->second;
    if (f.size() >= sizeof(Elf64_Ehdr)) {
      const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(f.data());
      const auto* sh = reinterpret_cast<const Elf64_Shdr*>(f.data() + eh->e_shoff);
      const char* shstr = f.data() + sh[eh->e_shstrndx].sh_offset;
      int shared_idx = -1;
      const Elf64_Shdr* symtab = nullptr;
      for (int i = 0; i < eh->e_shnum; i++) {
        if (std::strcmp(shstr + sh[i].sh_name, "lora4j_emu_shared") == 0) shared_idx = i;
        if (sh[i].sh_type == SHT_SYMTAB) symtab = &sh[i];
      }
      if (symtab && shared_idx >= 0) {
        const auto* syms = reinterpret_cast<const Elf64_Sym*>(f.data() + symtab->sh_offset);
        const size_t nsym = symtab->sh_size / sizeof(Elf64_Sym);
        const char* str = f.data() + sh[symtab->sh_link].sh_offset;
        const uintptr_t base = eh->e_type == ET_DYN ? reinterpret_cast<uintptr_t>(di.dli_fbase) : 0;
        std::string prefix;
        for (size_t i = 0; i < nsym && prefix.empty(); i++)
          if (ELF64_ST_TYPE(syms[i].st_info) == STT_FUNC &&
              base + syms[i].st_value == reinterpret_cast<uintptr_t>(kernel)) {
            const std::string name = str + syms[i].st_name;
            if (name.rfind("_Z", 0) == 0) prefix = "_ZZ" + name.substr(2) + "E";
          }
        for (size_t i = 0; i < nsym && !prefix.empty(); i++)
          if (syms[i].st_shndx == shared_idx &&
              std::strncmp(str + syms[i].st_name, prefix.c_str(), prefix.size()) == 0)
            total += syms[i].st_size;
      }
    }
  }
  cache[kernel] = total;
  return total;
}

std::unordered_map<const void*, int>& max_dynamic_smem() {
  static std::unordered_map<const void*, int> m;
  return m;
}

// ---- running a grid ---------------------------------------------------------------------------
std::string dims(dim3 d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

std::vector<std::pair<char*, char*>>& shared_sections() {
  static std::vector<std::pair<char*, char*>> v;
  return v;
}

void fill_shared(Block& b) {
  for (const auto& r : shared_sections()) std::memset(r.first, 0xFF, size_t(r.second - r.first));
  if (b.dyn_bytes) std::memset(b.dyn_smem, 0xFF, b.dyn_bytes);
}

void run_block(Block& b, uint3 bid, uint64_t block_seed) {
  lora4j_emu_blockIdx = bid;
  fill_shared(b);
  std::vector<Fiber>& fs = *b.fibers;
  const dim3 bd = lora4j_emu_blockDim;
  std::vector<Fiber*> run;
  run.reserve(b.n);
  for (int i = 0; i < b.n; i++) {
    Fiber& f = fs[i];
    f.linear = i;
    f.tid = uint3{unsigned(i % bd.x), unsigned(i / bd.x % bd.y), unsigned(i / (bd.x * bd.y))};
    f.state = State::Ready;
    f.fake_stack = nullptr;
    prepare(f, g_abandoned);
    run.push_back(&f);
  }
  g_abandoned = false;
  std::mt19937_64 order(block_seed);
  b.barrier_line = -1;
  b.error.clear();
  b.warp_arrived.assign(size_t(b.n + 31) / 32, 0);
  auto where = [&] {
    return std::string("kernel ") + b.kernel + " block " + dims(dim3(bid)) + " of grid " +
           dims(lora4j_emu_gridDim) + ", block dim " + dims(bd) + " (LORA4J_EMU_SEED=" +
           std::to_string(seed()) + "): ";
  };
  for (;;) {
    std::shuffle(run.begin(), run.end(), order);
    for (Fiber* f : run) {
      if (f->state != State::Ready) continue;
      resume(f);
      if (!b.error.empty()) {
        g_abandoned = true;
        die(where() + b.error);
      }
    }
    run.swap(b.next);
    b.next.clear();
    if (!run.empty()) continue;
    int done = 0, at_barrier = 0;
    std::vector<int> warp_waiting, barrier_threads, exited;
    for (int i = 0; i < b.n; i++) {
      if (fs[i].state == State::Done) done++, exited.push_back(i);
      else if (fs[i].state == State::AtBarrier) at_barrier++, barrier_threads.push_back(i);
      else if (fs[i].state == State::AtWarp) warp_waiting.push_back(i);
    }
    if (done == b.n) return;
    if (done != b.n) g_abandoned = true;  // the errors below leave fibers parked
    if (!warp_waiting.empty()) {
      const Fiber& f = fs[warp_waiting[0]];
      die(where() + std::string(f.what) + " at line " + std::to_string(f.line) + " never completes: threads " +
          lane_list(warp_waiting) + " wait there while lanes of their mask wait at __syncthreads (" +
          lane_list(barrier_threads) + ") or have exited");
    }
    if (at_barrier == b.n) {
      g_abandoned = false;
      b.barrier_line = -1;
      for (int i = 0; i < b.n; i++) {
        fs[i].state = State::Ready;
        run.push_back(&fs[i]);
      }
      continue;
    }
    die(where() + "__syncthreads at line " + std::to_string(b.barrier_line) + " is reached by " +
        std::to_string(at_barrier) + " of " + std::to_string(b.n) + " threads; threads " +
        lane_list(exited) + " exited without reaching it (a hang or undefined behaviour on a GPU)");
  }
}

void run_grid(const char* name, LaunchBody* body, dim3 grid, dim3 block, size_t smem) {
  Block b;
  b.kernel = name;
  b.body = body;
  b.n = int(block.x * block.y * block.z);
  b.fibers = &fiber_pool(b.n);
  std::unique_ptr<char, void (*)(void*)> dyn(static_cast<char*>(std::malloc(smem ? smem : 1)), std::free);
  b.dyn_smem = smem ? dyn.get() : nullptr;
  b.dyn_bytes = smem;
  lora4j_emu_gridDim = grid;
  lora4j_emu_blockDim = block;
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  const uint64_t launch_seed = rng()();
  // Blocks in a seeded shuffled order (the hardware promises none).
  std::vector<uint32_t> perm;
  if (nblocks <= (uint64_t(1) << 22)) {
    perm.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; i++) perm[i] = uint32_t(i);
    std::mt19937_64 r(launch_seed);
    std::shuffle(perm.begin(), perm.end(), r);
  }
  struct Reset {
    ~Reset() { g_block = nullptr; g_cur = nullptr; }
  } reset;
  g_block = &b;
  for (uint64_t k = 0; k < nblocks; k++) {
    const uint64_t i = perm.empty() ? k : perm[k];
    const uint3 bid{unsigned(i % grid.x), unsigned(i / grid.x % grid.y), unsigned(i / (uint64_t(grid.x) * grid.y))};
    run_block(b, bid, launch_seed ^ (i * 0x9E3779B97F4A7C15ull));
  }
}

}  // namespace

void register_shared_section(char* begin, char* end) {
  if (!begin || end <= begin) return;
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  for (const auto& r : shared_sections())
    if (r.first == begin) return;
  shared_sections().emplace_back(begin, end);
}

// ---- device-side entry points -----------------------------------------------------------------
void syncthreads(int line) {
  Fiber* f = current("__syncthreads");
  Block* b = g_block;
  if (b->barrier_line < 0) {
    b->barrier_line = line;
  } else if (b->barrier_line != line) {
    kernel_error(f, "divergent __syncthreads: thread " + std::to_string(f->linear) + " waits at line " +
                        std::to_string(line) + " while others wait at line " +
                        std::to_string(b->barrier_line));
  }
  f->state = State::AtBarrier;
  f->line = line;
  to_scheduler(f, false);
}

void syncwarp(unsigned mask, int line) {
  Fiber* f = current("__syncwarp");
  f->kind = kSyncwarp;
  f->mask = mask;
  f->line = line;
  f->what = "__syncwarp";
  warp_wait(f);
}

uint64_t warp_exchange(WarpKind kind, unsigned mask, uint64_t value, int arg, int width,
                       const char* what, int line) {
  Fiber* f = current(what);
  f->kind = kind;
  f->mask = mask;
  f->value = value;
  f->arg = arg;
  f->width = width;
  f->what = what;
  f->line = line;
  warp_wait(f);
  return f->result;
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const float (&c)[4]) {
  Fiber* f = current("mma.sync");
  f->kind = kMma;
  f->mask = 0xffffffffu;  // .aligned: every thread of the warp executes the same mma.sync
  f->what = "mma.sync.m16n8k16";
  f->line = 0;
  std::memcpy(f->a, a, sizeof f->a);
  std::memcpy(f->b, b, sizeof f->b);
  std::memcpy(f->c, c, sizeof f->c);
  warp_wait(f);
  std::memcpy(d, f->d, sizeof f->d);
}

void* dynamic_shared_memory() {
  current("dynamic shared memory");
  return g_block->dyn_smem;
}

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  const size_t stat = static_shared_bytes(kernel);
  if (value < 0 || size_t(value) + stat > profile().optin_smem)
    return fail(cudaErrorInvalidValue,
                "cudaFuncSetAttribute(MaxDynamicSharedMemorySize, " + std::to_string(value) +
                    "): with " + std::to_string(stat) + " bytes of static shared memory the " +
                    profile().key + " maximum is " + std::to_string(profile().optin_smem - stat));
  max_dynamic_smem()[kernel] = value;
  return cudaSuccess;
}

void enqueue_launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, LaunchBody* body) {
  std::unique_ptr<LaunchBody> owned(body);
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  const std::string what = std::string("launch of ") + name + " grid " + dims(grid) + " block " + dims(block) +
                           " smem " + std::to_string(smem) + ": ";
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    fail(cudaErrorInvalidConfiguration, what + "block dimensions exceed 1024 threads (x, y <= 1024, z <= 64) or are 0");
    return;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration, what + "grid dimensions are 0 or exceed (2^31-1, 65535, 65535)");
    return;
  }
  const size_t stat = static_shared_bytes(kernel);
  auto it = max_dynamic_smem().find(kernel);
  const size_t dyn_max = it != max_dynamic_smem().end() ? size_t(it->second)
                                                         : (stat < kSmemNoOptin ? kSmemNoOptin - stat : 0);
  if (smem > dyn_max || stat + smem > profile().optin_smem) {
    fail(cudaErrorInvalidValue, what + std::to_string(stat) + " bytes static + " + std::to_string(smem) +
                                    " dynamic shared memory exceed the limit (" + std::to_string(dyn_max) +
                                    " dynamic allowed for this kernel on " + profile().key +
                                    "; more than 48 KiB needs cudaFuncSetAttribute)");
    return;
  }
  if (!valid_stream(stream)) {
    fail(cudaErrorInvalidResourceHandle, what + "invalid stream");
    return;
  }
  std::shared_ptr<LaunchBody> shared(owned.release());
  std::string kname = name;
  enqueue(to_stream(stream), [shared, kname, grid, block, smem] {
    run_grid(kname.c_str(), shared.get(), grid, block, smem);
  });
}

}  // namespace lora4j_emu

// ---- runtime API ------------------------------------------------------------------------------
using namespace lora4j_emu;
#define LOCK std::lock_guard<std::recursive_mutex> lock(device_mutex())

extern "C" {

cudaError_t cudaGetDeviceCount(int* n) {
  *n = device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* dev) {
  *dev = t_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) {
  if (dev < 0 || dev >= device_count())
    return fail(cudaErrorInvalidDevice, "device " + std::to_string(dev) + " of " + std::to_string(device_count()) +
                                            " emulated (LORA4J_EMU_DEVICES)");
  t_device = dev;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  if (dev < 0 || dev >= device_count())
    return fail(cudaErrorInvalidDevice, "device " + std::to_string(dev) + " of " + std::to_string(device_count()) +
                                            " emulated (LORA4J_EMU_DEVICES)");
  const Profile& q = profile();
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "lora4j cuda (emulated) %s, %s", q.key, q.what);
  p->totalGlobalMem = memory_total();
  p->sharedMemPerBlock = kSmemNoOptin;
  p->sharedMemPerBlockOptin = q.optin_smem;
  p->sharedMemPerMultiprocessor = q.smem_per_sm;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = q.major, p->minor = q.minor;
  p->multiProcessorCount = q.sms;
  p->maxThreadsPerMultiProcessor = q.threads_per_sm;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

// The documented text, plus what the emulator knows about the last error of this code.
const char* cudaGetErrorString(cudaError_t e) {
  const char* base = "unknown error";
  switch (e) {
    case cudaSuccess: base = "no error"; break;
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInitializationError: base = "initialization error"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorNotReady: base = "device not ready"; break;
    case cudaErrorLaunchOutOfResources: base = "too many resources requested for launch"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
  }
  if (e != cudaSuccess && e == t_detail_code && !t_detail.empty()) {
    t_message = std::string(base) + " (emulator: " + t_detail + ")";
    return t_message.c_str();
  }
  return base;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  LOCK;
  return allocate(p, bytes, true);
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  LOCK;
  run_until(idle);  // cudaFree synchronises the device
  return release(p, true);
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  LOCK;
  return allocate(p, bytes, false);
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  LOCK;
  run_until(idle);
  return release(p, false);
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaMallocAsync: invalid stream");
  return allocate(p, bytes, true);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaFreeAsync: invalid stream");
  auto it = allocs().find(reinterpret_cast<uintptr_t>(p));
  if (!p || it == allocs().end() || !it->second.device)
    return fail(cudaErrorInvalidValue, "cudaFreeAsync of a pointer that is not a device allocation");
  enqueue(to_stream(s), [p] {  // freed in stream order: a later use on the stream is an ASan report
    release(p, true);
  });
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  LOCK;
  *total_bytes = memory_total();
  *free_bytes = memory_total() - g_used;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: invalid stream");
  if (bytes == 0) return cudaSuccess;
  const bool dst_dev = is_device(dst, bytes), src_dev = is_device(src, bytes);
  const bool ok = kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost ||
                  (kind == cudaMemcpyHostToDevice && dst_dev && !src_dev) ||
                  (kind == cudaMemcpyDeviceToHost && src_dev && !dst_dev) ||
                  (kind == cudaMemcpyDeviceToDevice && src_dev && dst_dev);
  if (!ok)
    return fail(cudaErrorInvalidValue, "cudaMemcpy kind " + std::to_string(int(kind)) + " of " +
                                           std::to_string(bytes) + " bytes: " + (src_dev ? "" : "source not in one device allocation; ") +
                                           (dst_dev ? "" : "destination not in one device allocation"));
  // Pageable host memory (CUDA Runtime API, "API synchronization behavior"): a copy from it is
  // staged at the call, a copy to it returns when done. Pinned memory is truly asynchronous.
  const bool src_pageable = !src_dev && !is_pinned(src, bytes);
  const bool dst_pageable = !dst_dev && !is_pinned(dst, bytes);
  Stream* st = to_stream(s);
  uint64_t seq;
  if (src_pageable) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    seq = enqueue(st, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    seq = enqueue(st, [dst, src, bytes] { std::memmove(dst, src, bytes); });
  }
  if (dst_pageable) run_until([st, seq] { return st->done >= seq; });
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  LOCK;
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (e != cudaSuccess) return e;
  run_until([] { return g_legacy.done >= g_legacy.issued; });
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: invalid stream");
  if (bytes == 0) return cudaSuccess;
  if (!is_device(dst, bytes))
    return fail(cudaErrorInvalidValue, "cudaMemset of " + std::to_string(bytes) + " bytes outside one device allocation");
  enqueue(to_stream(s), [dst, value, bytes] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  LOCK;
  const cudaError_t e = cudaMemsetAsync(dst, value, bytes, nullptr);
  if (e != cudaSuccess) return e;
  run_until([] { return g_legacy.done >= g_legacy.issued; });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  LOCK;
  Stream* x = new Stream(make_stream((flags & cudaStreamNonBlocking) == 0));
  streams().push_back(x);
  *s = reinterpret_cast<cudaStream_t>(x);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  LOCK;
  if (!s || !valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: invalid stream");
  Stream* x = to_stream(s);
  run_until([x] { return x->q.empty(); });  // its work completes; events may still name it
  x->alive = false;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: invalid stream");
  Stream* x = to_stream(s);
  const uint64_t seq = x->issued;
  run_until([x, seq] { return x->done >= seq; });
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  LOCK;
  run_until(idle);
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  LOCK;
  *e = reinterpret_cast<cudaEvent_t>(new Event());
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  LOCK;
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: invalid stream");
  Event* ev = reinterpret_cast<Event*>(e);
  Stream* st = to_stream(s);
  ev->stream = st;
  auto when = std::make_shared<std::chrono::steady_clock::time_point>();
  ev->when = when;
  ev->seq = enqueue(st, [when] { *when = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  LOCK;
  if (!valid_stream(s)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: invalid stream");
  const Event* ev = reinterpret_cast<const Event*>(e);
  std::vector<std::pair<Stream*, uint64_t>> deps;
  if (ev->stream) deps.emplace_back(ev->stream, ev->seq);  // the record captured at this call
  enqueue(to_stream(s), [] {}, std::move(deps));
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  LOCK;
  const Event* ev = reinterpret_cast<const Event*>(e);
  run_until([ev] { return ev->complete(); });
  return cudaSuccess;
}
// Not complete yet: the device makes one step of progress and the answer is "not ready", so
// polling loops see both answers and always finish.
cudaError_t cudaEventQuery(cudaEvent_t e) {
  LOCK;
  const Event* ev = reinterpret_cast<const Event*>(e);
  if (ev->complete()) return cudaSuccess;
  bool stepped = false;
  run_until([&] { bool r = stepped; stepped = true; return r || ev->complete(); });
  return ev->complete() ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  LOCK;
  const Event* a = reinterpret_cast<const Event*>(start);
  const Event* b = reinterpret_cast<const Event*>(end);
  if (!a->stream || !b->stream || !a->complete() || !b->complete())
    return fail(cudaErrorNotReady, "cudaEventElapsedTime: an event has not completed");
  *ms = std::chrono::duration<float, std::milli>(*b->when - *a->when).count();
  return cudaSuccess;
}

}  // extern "C"
