package io.lora4j.nativeapi;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * Raw JavaCPP binding of liblora4j's runtime ({@code native/include/lora4j/runtime.h}): build facts, BLAS,
 * CUDA devices, memory, streams and events. The ops (nf4.h, ops.h, lora.h, infer.h, storage.h) are
 * bound in the generated {@link Lora4jOpsNative}.
 *
 * <p>Nothing here validates arguments: callers go through {@code io.lora4j.ops} and
 * {@code io.lora4j.quant}, which check shapes, sizes and dtypes before any native call. A
 * {@code std::runtime_error} thrown natively arrives as a {@link RuntimeException} carrying its
 * message. CUDA entries take device pointers and a stream (may be null).
 */
@Platform(include = "lora4j/runtime.h", link = "lora4j")
public final class Lora4jNative {
    static {
        Loader.load();
    }

    private Lora4jNative() {}

    /** Forces the class (and so the native libraries) to load; throws if they cannot. */
    public static void ensureLoaded() {}

    // ---- runtime.h ----
    public static native int lora4j_built_with_cuda();

    public static native @Cast("const char*") BytePointer lora4j_build_info();

    public static native int lora4j_blas_load(String path);

    public static native @Cast("const char*") BytePointer lora4j_blas_name();

    public static native @Cast("const char*") BytePointer lora4j_blas_error();

    public static native void lora4j_sgemm(int transA, int transB, long M, long N, long K,
            float alpha, @Cast("const float*") FloatPointer A, long lda,
            @Cast("const float*") FloatPointer B, long ldb, float beta, FloatPointer C, long ldc);

    public static native @Cast("uint64_t") long lora4j_bench_read(@Cast("const void*") Pointer p, long bytes);

    public static native int lora4j_physical_cores();

    public static native int lora4j_cuda_device_count();

    public static native @Cast("const char*") BytePointer lora4j_cuda_device_info(int dev);

    public static native void lora4j_cuda_set_device(int dev);

    public static native Pointer lora4j_cuda_malloc(long bytes);

    public static native void lora4j_cuda_free(Pointer p);

    public static native Pointer lora4j_cuda_host_alloc(long bytes);

    public static native void lora4j_cuda_host_free(Pointer p);

    public static native void lora4j_cuda_memcpy(Pointer dst, @Cast("const void*") Pointer src,
            long bytes, int kind, Pointer stream);

    public static native void lora4j_cuda_memset(Pointer dst, int value, long bytes, Pointer stream);

    public static native Pointer lora4j_cuda_stream_create();

    public static native void lora4j_cuda_stream_destroy(Pointer stream);

    public static native void lora4j_cuda_stream_synchronize(Pointer stream);

    public static native void lora4j_cuda_device_synchronize();

    public static native void lora4j_cuda_mem_info(@Cast("int64_t*") LongPointer out);

    /** A CUDA event without timing (orders work across streams; runtime.h). */
    public static native Pointer lora4j_cuda_event_create();

    public static native void lora4j_cuda_event_destroy(Pointer event);

    public static native void lora4j_cuda_event_record(Pointer event, Pointer stream);

    public static native void lora4j_cuda_stream_wait_event(Pointer stream, Pointer event);

    public static native void lora4j_cuda_event_synchronize(Pointer event);

    /** 1 when the event's work completed, 0 when not yet. */
    public static native int lora4j_cuda_event_query(Pointer event);
}
