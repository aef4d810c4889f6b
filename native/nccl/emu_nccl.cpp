// An emulated NCCL for tests (built as libnccl.so.2 in the CUDA emulation build only, never
// shipped): the entries of NVIDIA's public NCCL API that the shim (native/nccl/nccl.cpp) calls,
// implemented over liblora4j_mpi's collectives on the emulator's device memory, which is host
// memory (native/emu). CI has no GPU and no NCCL; this lets `mpirun -np 2` on the emulated CUDA
// build run the NCCL path of a data-parallel run end to end: dlopen, ncclGetUniqueId on rank 0,
// its broadcast over MPI, ncclCommInitRank, ncclAllReduce on the step's stream.
//
// What it checks that a real NCCL would also refuse: a rank count or rank that is not the MPI
// world's, ranks holding different unique ids (the id was not shared), a type or operation it
// does not offer. What it does differently: ncclAllReduce drains `stream` and sums at once (the
// emulator's streams cannot run host work in order), so the result is in place on return,
// stronger ordering than NCCL's "queued on the stream"; the sum is MPI's fp32 sum, which for two
// ranks is NCCL's too (one rounding of a + b). A peer that dies makes the call fail after
// LORA4J_EMU_NCCL_TIMEOUT_S (default 600) seconds, where a real NCCL kernel would wait.
//
// It links the emulated liblora4j.so (lora4j_cuda_stream_synchronize) and liblora4j_mpi.so; in
// a JVM both are already loaded under those sonames, and the dynamic linker binds to them.
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "lora4j/mpi.h"
#include "lora4j/runtime.h"

namespace {
// From NCCL's public API (nccl.h): result codes, ncclFloat32, ncclSum, the id's size.
enum result { kSuccess = 0, kSystemError = 2, kInternalError = 3, kInvalidArgument = 4, kInvalidUsage = 5, kRemoteError = 6 };
constexpr int kFloat32 = 7;
constexpr int kSum = 0;
constexpr int kIdBytes = 128;
// Version reported: the NCCL 2.18 API these entries follow (NCCL_VERSION(2,18,0)).
constexpr int kVersion = 21800;
const char kMagic[] = "lora4j emulated nccl";

struct unique_id {
    char internal[kIdBytes];
};
struct comm {
    int nranks, rank;
};

thread_local std::string t_last;

result fail(result r, const std::string& why) {
    t_last = why;
    return r;
}

double timeout_s() {
    const char* v = std::getenv("LORA4J_EMU_NCCL_TIMEOUT_S");
    double t = v ? std::atof(v) : 0;
    return t > 0 ? t : 600;
}
}  // namespace

extern "C" {
const char* ncclGetErrorString(int r) {
    switch (r) {
        case kSuccess: return "no error";
        case kSystemError: return "unhandled system error";
        case kInternalError: return "internal error";
        case kInvalidArgument: return "invalid argument";
        case kInvalidUsage: return "invalid usage";
        case kRemoteError: return "remote process exited or there was a network error";
        default: return "unknown result code";
    }
}

const char* ncclGetLastError(void*) { return t_last.c_str(); }

int ncclGetVersion(int* version) {
    if (!version) return fail(kInvalidArgument, "ncclGetVersion: null version");
    *version = kVersion;
    return kSuccess;
}

int ncclGetUniqueId(unique_id* id) {
    if (!id) return fail(kInvalidArgument, "ncclGetUniqueId: null id");
    std::memset(id->internal, 0, kIdBytes);
    std::memcpy(id->internal, kMagic, sizeof kMagic);
    std::random_device rd;  // a fresh id per call, as NCCL's (which holds a bootstrap address)
    for (int i = 64; i < kIdBytes; i += 4) {
        unsigned v = rd();
        std::memcpy(id->internal + i, &v, 4);
    }
    return kSuccess;
}

int ncclCommInitRank(comm** out, int nranks, unique_id id, int rank) {
    if (!out) return fail(kInvalidArgument, "ncclCommInitRank: null communicator");
    try {
        if (!lora4j_mpi_initialized()) return fail(kInvalidUsage, "emulated NCCL: MPI is not initialized in this process");
        int size = lora4j_mpi_size(), me = lora4j_mpi_rank();
        if (nranks != size || rank != me)
            return fail(kInvalidUsage, "emulated NCCL: rank " + std::to_string(rank) + " of " + std::to_string(nranks) + " but MPI says "
                                           + std::to_string(me) + " of " + std::to_string(size));
        if (std::memcmp(id.internal, kMagic, sizeof kMagic) != 0)
            return fail(kInvalidArgument, "emulated NCCL: the unique id did not come from ncclGetUniqueId");
        // every rank must hold rank 0's id: compare with a copy of it, then agree on the verdict
        unique_id root = id;
        lora4j_mpi_broadcast(root.internal, kIdBytes, 0, timeout_s());
        double differ = std::memcmp(root.internal, id.internal, kIdBytes) != 0 ? 1 : 0;
        lora4j_mpi_allreduce_sum_f64(&differ, 1, timeout_s());
        if (differ > 0)
            return fail(kInvalidUsage, "emulated NCCL: " + std::to_string((int) differ) + " rank(s) hold a unique id other than rank 0's");
    } catch (const std::exception& e) {
        return fail(kRemoteError, std::string("emulated NCCL: ") + e.what());
    }
    *out = new comm{nranks, rank};
    return kSuccess;
}

int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, comm* c, void* stream) {
    if (!c) return fail(kInvalidArgument, "ncclAllReduce: null communicator");
    if (type != kFloat32 || op != kSum) return fail(kInvalidArgument, "emulated NCCL: only ncclFloat32 with ncclSum");
    try {
        lora4j_cuda_stream_synchronize(stream);  // the stream's earlier kernels wrote `send`
        if (send != recv) std::memcpy(recv, send, count * sizeof(float));
        lora4j_mpi_allreduce_sum_f32(static_cast<float*>(recv), (int64_t) count, timeout_s());
    } catch (const std::exception& e) {
        return fail(kRemoteError, std::string("emulated NCCL: ") + e.what());
    }
    return kSuccess;
}

int ncclCommDestroy(comm* c) {
    delete c;
    return kSuccess;
}
}
