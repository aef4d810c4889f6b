// The NCCL shim of liblora4j (native/include/lora4j/nccl.h says what each entry does).
//
// The types and values below are declared here from NVIDIA's public NCCL API (nccl.h, "NCCL
// API" documentation): they are part of NCCL's stable C ABI, so a shim needs neither NCCL's
// headers at build time nor its library at link time.
#include "lora4j/nccl.h"

#include "lora4j/runtime.h"

#include <dlfcn.h>

#include <chrono>
#include <thread>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

namespace {
// ncclResult_t: ncclSuccess = 0, then error codes; the text comes from ncclGetErrorString.
typedef int nccl_result;
constexpr nccl_result kNcclSuccess = 0;
// ncclDataType_t ncclFloat32 (= ncclFloat) and ncclRedOp_t ncclSum.
constexpr int kNcclFloat32 = 7;
constexpr int kNcclSum = 0;
// NCCL_UNIQUE_ID_BYTES; ncclUniqueId is `struct { char internal[128]; }`, passed BY VALUE to
// ncclCommInitRank.
constexpr int kUniqueIdBytes = 128;
struct unique_id {
    char internal[kUniqueIdBytes];
};
typedef void* comm_t;  // ncclComm_t: an opaque struct ncclComm*

struct entries {
    nccl_result (*get_version)(int*);
    const char* (*get_error_string)(nccl_result);
    const char* (*get_last_error)(comm_t);  // NCCL >= 2.13; null when the library lacks it
    nccl_result (*get_unique_id)(unique_id*);
    nccl_result (*comm_init_rank)(comm_t*, int, unique_id, int);
    nccl_result (*all_reduce)(const void*, void*, size_t, int, int, comm_t, void*);
    nccl_result (*comm_destroy)(comm_t);
    nccl_result (*comm_get_async_error)(comm_t, nccl_result*);  // optional (NCCL >= 2.4)
    nccl_result (*comm_abort)(comm_t);                          // optional (NCCL >= 2.4)
};

std::mutex g_lock;
entries g_nccl{};
bool g_loaded = false;
std::string g_error, g_library;

void need_loaded(const char* what) {
    if (!g_loaded) throw std::runtime_error(std::string("lora4j nccl: ") + what + " before lora4j_nccl_load succeeded");
}

void check(nccl_result r, const char* what, comm_t comm = nullptr) {
    if (r == kNcclSuccess) return;
    std::string msg = std::string("lora4j nccl: ") + what + " failed: " + g_nccl.get_error_string(r) + " (ncclResult " + std::to_string(r) + ")";
    if (g_nccl.get_last_error) {
        const char* last = g_nccl.get_last_error(comm);
        if (last && *last) msg += ": " + std::string(last);
    }
    throw std::runtime_error(msg);
}

template <typename F>
bool resolve(void* lib, const char* name, F& f, std::string& missing) {
    f = reinterpret_cast<F>(dlsym(lib, name));
    if (!f) missing += (missing.empty() ? "" : ", ") + std::string(name);
    return f != nullptr;
}
}  // namespace

extern "C" {
int32_t lora4j_nccl_load(const char* path) {
    std::lock_guard<std::mutex> guard(g_lock);
    if (g_loaded) return 1;
    if (!path || !*path) path = "libnccl.so.2";
    // RTLD_LOCAL: NCCL's symbols stay out of the global namespace (a second NCCL, e.g. one that
    // a JavaCPP preset loads, cannot bind to ours by accident)
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char* e = dlerror();
        g_error = e ? e : std::string(path) + ": dlopen failed";
        return 0;
    }
    entries n{};
    std::string missing;
    resolve(lib, "ncclGetVersion", n.get_version, missing);
    resolve(lib, "ncclGetErrorString", n.get_error_string, missing);
    resolve(lib, "ncclGetUniqueId", n.get_unique_id, missing);
    resolve(lib, "ncclCommInitRank", n.comm_init_rank, missing);
    resolve(lib, "ncclAllReduce", n.all_reduce, missing);
    resolve(lib, "ncclCommDestroy", n.comm_destroy, missing);
    if (!missing.empty()) {
        g_error = std::string(path) + ": not an NCCL library (no " + missing + ")";
        dlclose(lib);
        return 0;
    }
    n.get_last_error = reinterpret_cast<const char* (*)(comm_t)>(dlsym(lib, "ncclGetLastError"));
    n.comm_get_async_error = reinterpret_cast<nccl_result (*)(comm_t, nccl_result*)>(dlsym(lib, "ncclCommGetAsyncError"));
    n.comm_abort = reinterpret_cast<nccl_result (*)(comm_t)>(dlsym(lib, "ncclCommAbort"));
    int version = 0;
    if (n.get_version(&version) != kNcclSuccess || version <= 0) {
        g_error = std::string(path) + ": ncclGetVersion failed";
        dlclose(lib);
        return 0;
    }
    Dl_info info;
    g_library = dladdr(reinterpret_cast<void*>(n.get_version), &info) && info.dli_fname ? info.dli_fname : path;
    g_nccl = n;
    g_error.clear();
    g_loaded = true;
    return 1;
}

const char* lora4j_nccl_error(void) { return g_error.c_str(); }

const char* lora4j_nccl_library(void) { return g_library.c_str(); }

int32_t lora4j_nccl_version(void) {
    need_loaded("version");
    int v = 0;
    check(g_nccl.get_version(&v), "ncclGetVersion");
    return v;
}

int32_t lora4j_nccl_unique_id_bytes(void) { return kUniqueIdBytes; }

void lora4j_nccl_get_unique_id(void* id) {
    need_loaded("ncclGetUniqueId");
    unique_id u;
    check(g_nccl.get_unique_id(&u), "ncclGetUniqueId");
    std::memcpy(id, u.internal, kUniqueIdBytes);
}

void* lora4j_nccl_comm_init_rank(int32_t nranks, const void* id, int32_t rank) {
    need_loaded("ncclCommInitRank");
    unique_id u;
    std::memcpy(u.internal, id, kUniqueIdBytes);
    comm_t comm = nullptr;
    check(g_nccl.comm_init_rank(&comm, nranks, u, rank), "ncclCommInitRank");
    return comm;
}

void lora4j_nccl_allreduce_sum_f32(const float* send, float* recv, int64_t n, void* comm, void* stream) {
    need_loaded("ncclAllReduce");
    check(g_nccl.all_reduce(send, recv, static_cast<size_t>(n), kNcclFloat32, kNcclSum, comm, stream), "ncclAllReduce (fp32 sum)", comm);
}

void lora4j_nccl_wait(void* comm, void* event, double timeout_s) {
    need_loaded("wait");
    auto start = std::chrono::steady_clock::now();
    long spins = 0;
    for (;;) {
        if (lora4j_cuda_event_query(event)) return;
        nccl_result async = kNcclSuccess;
        if (g_nccl.comm_get_async_error && g_nccl.comm_get_async_error(comm, &async) == kNcclSuccess && async != kNcclSuccess) {
            if (g_nccl.comm_abort) g_nccl.comm_abort(comm);
            throw std::runtime_error(std::string("lora4j nccl: the all-reduce failed: ") + g_nccl.get_error_string(async) + " (ncclResult "
                                     + std::to_string(async) + ", reported asynchronously; communicator aborted)");
        }
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (timeout_s > 0 && waited > timeout_s) {
            if (g_nccl.comm_abort) g_nccl.comm_abort(comm);
            throw std::runtime_error("lora4j nccl: the all-reduce did not complete within " + std::to_string((int) timeout_s)
                                     + " s: another rank died, hangs, or is far behind (communicator aborted)");
        }
        // as the MPI shim's wait: microseconds for a fast collective, no CPU for a slow one
        if (++spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 1000 : 50));
    }
}

void lora4j_nccl_comm_destroy(void* comm) {
    need_loaded("ncclCommDestroy");
    if (comm) check(g_nccl.comm_destroy(comm), "ncclCommDestroy");
}
}
