// lora4j MPI shim (liblora4j_mpi.so, its own library linked to libmpi): the few collectives a
// data-parallel run needs, over MPI_COMM_WORLD. Loaded by the Java side only when the world has
// more than one rank, so liblora4j.so never depends on MPI.
//
// Errors throw std::runtime_error (JavaCPP rethrows them as RuntimeException); nothing here ends
// the process except lora4j_mpi_abort. MPI_COMM_WORLD uses MPI_ERRORS_RETURN, and every
// collective is started non-blocking and waited for with a deadline: a rank that died or hangs
// makes the others throw "... did not complete within N s" instead of waiting for ever.
//
// Built without MPI (no libmpi found by CMake), the library holds the same entries;
// lora4j_mpi_available() answers 0 and every other entry throws, saying what to install.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// 1 when this library was built against MPI, else 0.
int32_t lora4j_mpi_available(void);
// The MPI library's own version string (MPI_Get_library_version), e.g. "Open MPI v4.1.4, ...".
const char* lora4j_mpi_library_version(void);
// MPI_Init_thread (MPI_THREAD_FUNNELED: only the thread that called init calls MPI), then
// MPI_ERRORS_RETURN on MPI_COMM_WORLD. A second call is a no-op.
void lora4j_mpi_init(void);
// 1 after lora4j_mpi_init and before lora4j_mpi_finalize.
int32_t lora4j_mpi_initialized(void);
int32_t lora4j_mpi_rank(void);
int32_t lora4j_mpi_size(void);
// In-place sum over all ranks of buf[n] (fp32 / fp64), waiting at most timeout_s seconds.
void lora4j_mpi_allreduce_sum_f32(float* buf, int64_t n, double timeout_s);
void lora4j_mpi_allreduce_sum_f64(double* buf, int64_t n, double timeout_s);
// buf[bytes] of rank `root` copied to every rank, waiting at most timeout_s seconds.
void lora4j_mpi_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s);
// Returns once every rank has called it, or throws after timeout_s seconds.
void lora4j_mpi_barrier(double timeout_s);
// MPI_Abort on the run's communicator (MPI_COMM_WORLD under a launcher): ends every rank of the
// job. Only the CLI calls it.
void lora4j_mpi_abort(int32_t code);

// ---- Joining singletons: a torchrun-style start, no MPI launcher ----
// Every process calls lora4j_mpi_init (a singleton world of one); rank 0 opens a port and hands
// its name to the others through the rendezvous (io.lora4j.dist.Rendezvous); the world then grows
// one process at a time, in rank order. The collectives above then run over the joined
// communicator. MPI_Comm_accept/connect cannot be waited on with a deadline: a process that dies
// between getting the port and connecting leaves the others in accept (the launcher ends them).
//
// Before lora4j_mpi_init: the URI of Open MPI's name server (ompi-server --report-uri), which
// Open MPI 4 needs to connect processes that no single launcher started.
void lora4j_mpi_use_name_server(const char* uri);
// MPI_Open_port once (later calls return the same name); rank 0 only.
const char* lora4j_mpi_open_port(void);
// MPI_Close_port of the open port, if any.
void lora4j_mpi_close_port(void);
// Every member of the world so far admits the next process: MPI_Comm_accept over the world
// (rank 0 is the root, on its open port), then MPI_Intercomm_merge with the newcomer last.
void lora4j_mpi_join_accept(void);
// A singleton joins the world whose rank 0 opened `port`: MPI_Comm_connect, then the merge that
// makes it the last rank.
void lora4j_mpi_join_connect(const char* port);
// MPI_Finalize. A second call, or one without init, is a no-op.
void lora4j_mpi_finalize(void);

#ifdef __cplusplus
}
#endif
