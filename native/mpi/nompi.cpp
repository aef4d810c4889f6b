// liblora4j_mpi.so built where CMake found no MPI: the entries of lora4j/mpi.h exist (so the
// JavaCPP binding links and loads), lora4j_mpi_available() answers 0 and the rest throw, saying
// what to install.
#include "lora4j/mpi.h"

#include <stdexcept>

#define NO_MPI(name)                                                                                                 \
    throw std::runtime_error("lora4j mpi: " name ": this liblora4j_mpi was built without MPI (install openmpi-bin and " \
                             "libopenmpi-dev, then rebuild)")

extern "C" {
int32_t lora4j_mpi_available(void) { return 0; }
const char* lora4j_mpi_library_version(void) { return "none (built without MPI)"; }
void lora4j_mpi_init(void) { NO_MPI("init"); }
int32_t lora4j_mpi_initialized(void) { return 0; }
int32_t lora4j_mpi_rank(void) { NO_MPI("rank"); }
int32_t lora4j_mpi_size(void) { NO_MPI("size"); }
void lora4j_mpi_allreduce_sum_f32(float*, int64_t, double) { NO_MPI("allreduce"); }
void lora4j_mpi_allreduce_sum_f64(double*, int64_t, double) { NO_MPI("allreduce"); }
void lora4j_mpi_broadcast(void*, int64_t, int32_t, double) { NO_MPI("broadcast"); }
void lora4j_mpi_barrier(double) { NO_MPI("barrier"); }
void lora4j_mpi_abort(int32_t) { NO_MPI("abort"); }
void lora4j_mpi_use_name_server(const char*) { NO_MPI("name server"); }
const char* lora4j_mpi_open_port(void) { NO_MPI("open port"); }
void lora4j_mpi_close_port(void) {}
void lora4j_mpi_join_accept(void) { NO_MPI("join"); }
void lora4j_mpi_join_connect(const char*) { NO_MPI("join"); }
void lora4j_mpi_finalize(void) {}
}
