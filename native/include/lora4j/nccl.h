// lora4j NCCL shim: the few NCCL entries a data-parallel run on GPUs needs, reached through
// dlopen/dlsym of libnccl.so.2 at run time, so liblora4j.so never links NCCL and loads where it
// is absent. Compiled into every build (it needs no CUDA headers: streams and device pointers
// pass through as void*); only a CUDA backend ever calls the collectives.
//
// Which library: `path` of lora4j_nccl_load, a file name the dynamic linker searches for
// (LD_LIBRARY_PATH, the ld.so cache: "libnccl.so.2", the default the Java side passes) or an
// absolute path (NVIDIA's pip wheel: .../site-packages/nvidia/nccl/lib/libnccl.so.2; the tests'
// emulated NCCL, native/nccl/emu_nccl.cpp).
//
// Errors throw std::runtime_error naming the NCCL call and ncclGetErrorString's text (plus
// ncclGetLastError's, where the library has it); nothing here ends the process.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dlopen(path) and dlsym of ncclGetVersion, ncclGetErrorString, ncclGetUniqueId,
// ncclCommInitRank, ncclAllReduce, ncclCommDestroy. Returns 1 when all resolved (later calls
// return 1 at once, whatever the path), else 0 with the reason in lora4j_nccl_error().
int32_t lora4j_nccl_load(const char* path);
// Why the last lora4j_nccl_load failed ("" when it did not).
const char* lora4j_nccl_error(void);
// The file the loaded library came from (dladdr of ncclGetVersion), or "" before a load.
const char* lora4j_nccl_library(void);
// ncclGetVersion: NCCL_VERSION_CODE, major*10000 + minor*100 + patch since NCCL 2.9
// (major*1000 + minor*100 + patch before).
int32_t lora4j_nccl_version(void);
// Size of an ncclUniqueId: 128 bytes (NCCL_UNIQUE_ID_BYTES).
int32_t lora4j_nccl_unique_id_bytes(void);
// ncclGetUniqueId into id[128]: on one rank, which then sends it to the others (over MPI).
void lora4j_nccl_get_unique_id(void* id);
// ncclCommInitRank of rank `rank` of `nranks` with the shared id[128], on the calling thread's
// current CUDA device (lora4j_cuda_set_device first). Returns the communicator. Blocks until
// every rank called it.
void* lora4j_nccl_comm_init_rank(int32_t nranks, const void* id, int32_t rank);
// ncclAllReduce(send, recv, n, ncclFloat32, ncclSum, comm, stream): recv[n] = sum over ranks of
// send[n] (device pointers; send == recv is in place), queued on `stream` after its earlier work.
void lora4j_nccl_allreduce_sum_f32(const float* send, float* recv, int64_t n, void* comm, void* stream);
// Waits until `event` (recorded on the all-reduce's stream after it, lora4j_cuda_event_record)
// completes, at most timeout_s seconds, polling it and ncclCommGetAsyncError (where the library has
// it). A deadline passed or an asynchronous NCCL error aborts the communicator (ncclCommAbort,
// which frees the kernel waiting for a dead peer) and throws: a rank that died or hangs becomes an
// error, never a silent hang.
void lora4j_nccl_wait(void* comm, void* event, double timeout_s);
// ncclCommDestroy.
void lora4j_nccl_comm_destroy(void* comm);

#ifdef __cplusplus
}
#endif
