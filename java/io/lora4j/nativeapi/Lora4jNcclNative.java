package io.lora4j.nativeapi;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * Raw JavaCPP binding of liblora4j's NCCL shim ({@code native/include/lora4j/nccl.h}): libnccl.so.2
 * through dlopen, so nothing here fails to load where NCCL is absent. No validation here: use
 * {@code io.lora4j.ops.Nccl}. Native {@code std::runtime_error}s arrive as {@link RuntimeException}s.
 */
@Platform(include = "lora4j/nccl.h", link = "lora4j")
public final class Lora4jNcclNative {
    static {
        Loader.load();
    }

    private Lora4jNcclNative() {}

    public static native int lora4j_nccl_load(String path);

    public static native @Cast("const char*") BytePointer lora4j_nccl_error();

    public static native @Cast("const char*") BytePointer lora4j_nccl_library();

    public static native int lora4j_nccl_version();

    public static native int lora4j_nccl_unique_id_bytes();

    public static native void lora4j_nccl_get_unique_id(Pointer id);

    public static native Pointer lora4j_nccl_comm_init_rank(int nranks, @Cast("const void*") Pointer id, int rank);

    public static native void lora4j_nccl_allreduce_sum_f32(@Cast("const float*") FloatPointer send, FloatPointer recv, long n, Pointer comm,
            Pointer stream);

    public static native void lora4j_nccl_wait(Pointer comm, Pointer event, double timeoutS);

    public static native void lora4j_nccl_comm_destroy(Pointer comm);
}
