// liblora4j_mpi.so against a real MPI (native/include/lora4j/mpi.h says what each entry does).
//
// Why non-blocking collectives and a polling wait: a blocking MPI_Allreduce whose peer died
// waits for ever in most transports (Open MPI's TCP BTL included; MPI_ERRORS_RETURN does not
// help a call that never returns). MPI_Iallreduce + MPI_Test with a deadline turns that into an
// exception the Java side reports and exits on; mpirun then ends the job.
#include "lora4j/mpi.h"

#include <dlfcn.h>
// The C API only: Open MPI's mpi.h otherwise drags in its deprecated C++ bindings (libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

namespace {
bool g_init = false;
bool g_final = false;
std::string g_version;
// The ranks of the run: MPI_COMM_WORLD under a launcher (mpirun, srun), or the communicator that
// joining singletons built (lora4j_mpi_join_*: a torchrun-style start without an MPI launcher).
MPI_Comm g_comm = MPI_COMM_WORLD;
std::string g_port;

std::string mpi_error(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(text, len);
}

void check(int code, const char* what) {
    if (code != MPI_SUCCESS) throw std::runtime_error(std::string("lora4j mpi: ") + what + " failed: " + mpi_error(code));
}

void need_init(const char* what) {
    if (!g_init || g_final) throw std::runtime_error(std::string("lora4j mpi: ") + what + " before lora4j_mpi_init (or after finalize)");
}

// Polls `req` until it completes or `timeout_s` passes. Sleeps grow from 0 to 1 ms so a fast
// collective costs microseconds and a slow one no CPU.
void wait_for(MPI_Request* req, double timeout_s, const char* what) {
    auto start = std::chrono::steady_clock::now();
    long spins = 0;
    for (;;) {
        int done = 0;
        check(MPI_Test(req, &done, MPI_STATUS_IGNORE), what);
        if (done) return;
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (timeout_s > 0 && waited > timeout_s) {
            // The request cannot be cancelled (collectives are not cancellable); the caller is
            // expected to end the process, which mpirun turns into the end of the job.
            throw std::runtime_error(std::string("lora4j mpi: ") + what + " did not complete within " + std::to_string((int) timeout_s)
                                     + " s: another rank died, hangs, or is far behind");
        }
        if (++spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 1000 : 50));
    }
}

template <typename T>
void allreduce(T* buf, int64_t n, MPI_Datatype type, double timeout_s, const char* what) {
    need_init(what);
    if (n < 0) throw std::runtime_error(std::string("lora4j mpi: ") + what + ": negative length " + std::to_string(n));
    // MPI counts are int: long buffers go in chunks, each one non-blocking collective.
    for (int64_t off = 0; off < n; off += INT_MAX / 2) {
        int count = (int) std::min<int64_t>(INT_MAX / 2, n - off);
        MPI_Request req;
        check(MPI_Iallreduce(MPI_IN_PLACE, buf + off, count, type, MPI_SUM, g_comm, &req), what);
        wait_for(&req, timeout_s, what);
    }
}
}  // namespace

extern "C" {
int32_t lora4j_mpi_available(void) { return 1; }

const char* lora4j_mpi_library_version(void) {
    if (g_version.empty()) {
        char v[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(v, &len);
        g_version.assign(v, len);
        size_t nl = g_version.find('\n');
        if (nl != std::string::npos) g_version.resize(nl);
    }
    return g_version.c_str();
}

void lora4j_mpi_init(void) {
    if (g_init) return;
    // The JVM loads this library with RTLD_LOCAL; Open MPI's plugins (dlopened by MPI_Init)
    // resolve libmpi's symbols globally, so promote libmpi to the global namespace first.
    Dl_info info;
    if (dladdr((void*) &MPI_Init_thread, &info) && info.dli_fname) dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    // The JVM handles SIGSEGV/SIGBUS itself (implicit null checks, safepoints); Open MPI's own
    // handlers for those signals would turn them into a crash report and an abort.
    setenv("OMPI_MCA_opal_signal", "", 0);
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_init = true;
    check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
}

int32_t lora4j_mpi_initialized(void) { return g_init && !g_final ? 1 : 0; }

int32_t lora4j_mpi_rank(void) {
    need_init("rank");
    int r = 0;
    check(MPI_Comm_rank(g_comm, &r), "MPI_Comm_rank");
    return r;
}

int32_t lora4j_mpi_size(void) {
    need_init("size");
    int s = 0;
    check(MPI_Comm_size(g_comm, &s), "MPI_Comm_size");
    return s;
}

void lora4j_mpi_allreduce_sum_f32(float* buf, int64_t n, double timeout_s) { allreduce(buf, n, MPI_FLOAT, timeout_s, "all-reduce (fp32 sum)"); }

void lora4j_mpi_allreduce_sum_f64(double* buf, int64_t n, double timeout_s) { allreduce(buf, n, MPI_DOUBLE, timeout_s, "all-reduce (fp64 sum)"); }

void lora4j_mpi_broadcast(void* buf, int64_t bytes, int32_t root, double timeout_s) {
    need_init("broadcast");
    char* p = static_cast<char*>(buf);
    for (int64_t off = 0; off < bytes; off += INT_MAX / 2) {
        int count = (int) std::min<int64_t>(INT_MAX / 2, bytes - off);
        MPI_Request req;
        check(MPI_Ibcast(p + off, count, MPI_BYTE, root, g_comm, &req), "broadcast");
        wait_for(&req, timeout_s, "broadcast");
    }
}

void lora4j_mpi_barrier(double timeout_s) {
    need_init("barrier");
    MPI_Request req;
    check(MPI_Ibarrier(g_comm, &req), "barrier");
    wait_for(&req, timeout_s, "barrier");
}

void lora4j_mpi_abort(int32_t code) {
    if (g_init && !g_final) MPI_Abort(g_comm, code);
    std::_Exit(code);
}

void lora4j_mpi_use_name_server(const char* uri) {
    if (g_init) throw std::runtime_error("lora4j mpi: the name server must be set before lora4j_mpi_init");
    if (!uri || !*uri) throw std::runtime_error("lora4j mpi: empty name server URI");
    // Open MPI 4 reads it at MPI_Init (mpirun's --ompi-server sets the same MCA parameter); the
    // orted that a singleton's MPI_Init starts inherits it with the environment.
    setenv("OMPI_MCA_pmix_server_uri", uri, 1);
}

const char* lora4j_mpi_open_port(void) {
    need_init("open port");
    if (g_port.empty()) {
        char name[MPI_MAX_PORT_NAME] = {0};
        check(MPI_Open_port(MPI_INFO_NULL, name), "MPI_Open_port");
        g_port = name;
    }
    return g_port.c_str();
}

void lora4j_mpi_close_port(void) {
    if (!g_init || g_final || g_port.empty()) return;
    std::string port = g_port;
    g_port.clear();
    check(MPI_Close_port(port.c_str()), "MPI_Close_port");
}

void lora4j_mpi_join_accept(void) {
    need_init("join (accept)");
    int rank = 0;
    check(MPI_Comm_rank(g_comm, &rank), "MPI_Comm_rank");
    if (rank == 0 && g_port.empty()) throw std::runtime_error("lora4j mpi: join (accept) on rank 0 before lora4j_mpi_open_port");
    // the port name matters on the root only; the other members take part in the collective accept
    MPI_Comm inter = MPI_COMM_NULL, merged = MPI_COMM_NULL;
    check(MPI_Comm_accept(rank == 0 ? g_port.c_str() : nullptr, MPI_INFO_NULL, 0, g_comm, &inter), "MPI_Comm_accept");
    check(MPI_Intercomm_merge(inter, 0, &merged), "MPI_Intercomm_merge");  // the members first, the newcomer last
    check(MPI_Comm_free(&inter), "MPI_Comm_free");
    check(MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    if (g_comm != MPI_COMM_WORLD) check(MPI_Comm_free(&g_comm), "MPI_Comm_free");
    g_comm = merged;
}

void lora4j_mpi_join_connect(const char* port) {
    need_init("join (connect)");
    if (g_comm != MPI_COMM_WORLD) throw std::runtime_error("lora4j mpi: join (connect) by a process that already joined");
    MPI_Comm inter = MPI_COMM_NULL, merged = MPI_COMM_NULL;
    check(MPI_Comm_connect(port, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter), "MPI_Comm_connect");
    check(MPI_Intercomm_merge(inter, 1, &merged), "MPI_Intercomm_merge");
    check(MPI_Comm_free(&inter), "MPI_Comm_free");
    check(MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    g_comm = merged;
}

void lora4j_mpi_finalize(void) {
    if (!g_init || g_final) return;
    g_final = true;
    if (g_comm != MPI_COMM_WORLD) MPI_Comm_free(&g_comm);  // best effort: finalizing regardless
    g_comm = MPI_COMM_WORLD;
    check(MPI_Finalize(), "MPI_Finalize");
}
}
