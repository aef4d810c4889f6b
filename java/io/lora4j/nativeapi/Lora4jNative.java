package io.lora4j.nativeapi;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.LongPointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * Raw JavaCPP binding of liblora4j's C API ({@code native/include/lora4j/*.h}).
 *
 * <p>Nothing here validates arguments: callers go through {@code io.lora4j.ops} and
 * {@code io.lora4j.quant}, which check shapes, sizes and dtypes before any native call. A
 * {@code std::runtime_error} thrown natively arrives as a {@link RuntimeException} carrying its
 * message. CUDA entries take device pointers and a stream (may be null).
 */
@Platform(include = {"lora4j/runtime.h", "lora4j/nf4.h"}, link = "lora4j")
public final class Lora4jNative {
    static {
        Loader.load();
    }

    private Lora4jNative() {}

    /** Forces the class (and so the native libraries) to load; throws if they cannot. */
    public static void ensureLoaded() {}

    // ---- nf4.h (CPU) ----
    public static native void lora4j_nf4_code(FloatPointer out);

    public static native void lora4j_dynamic_map(FloatPointer out);

    public static native void lora4j_nf4_quantize(@Cast("const void*") Pointer w, int dtype, long n,
            int blocksize, @Cast("uint8_t*") BytePointer packed, FloatPointer absmax);

    public static native void lora4j_nf4_dequantize(@Cast("const uint8_t*") BytePointer packed,
            @Cast("const float*") FloatPointer absmax, long n, int blocksize, FloatPointer out);

    public static native void lora4j_nf4_double_quant(@Cast("const float*") FloatPointer absmax,
            long nblocks, @Cast("uint8_t*") BytePointer qabsmax, FloatPointer nestedAbsmax,
            FloatPointer offset);

    public static native void lora4j_nf4_quantize_nested(@Cast("const float*") FloatPointer centered,
            long nblocks, @Cast("uint8_t*") BytePointer qabsmax, FloatPointer nestedAbsmax);

    public static native void lora4j_nf4_dequant_absmax(@Cast("const uint8_t*") BytePointer qabsmax,
            @Cast("const float*") FloatPointer nestedAbsmax, float offset, long nblocks,
            FloatPointer absmax);

    public static native void lora4j_nf4_matmul_fwd(@Cast("const float*") FloatPointer x, long T,
            long in, long out, @Cast("const uint8_t*") BytePointer w,
            @Cast("const float*") FloatPointer absmax, int blocksize, FloatPointer y);

    public static native void lora4j_nf4_matmul_fwd_bf16(@Cast("const float*") FloatPointer x, long T,
            long in, long out, @Cast("const uint8_t*") BytePointer w,
            @Cast("const float*") FloatPointer absmax, int blocksize, FloatPointer y);

    public static native @Cast("const char*") BytePointer lora4j_nf4_bf16_path();

    public static native void lora4j_nf4_matmul_bwd_input(@Cast("const float*") FloatPointer dy,
            long T, long in, long out, @Cast("const uint8_t*") BytePointer w,
            @Cast("const float*") FloatPointer absmax, int blocksize, FloatPointer dx);

    // ---- nf4.h (CUDA: device pointers, a stream or null) ----
    public static native void lora4j_cuda_nf4_quantize(@Cast("const void*") Pointer w, int dtype,
            long n, int blocksize, @Cast("uint8_t*") Pointer packed, @Cast("float*") Pointer absmax,
            Pointer stream);

    public static native void lora4j_cuda_nf4_dequantize(@Cast("const uint8_t*") Pointer packed,
            @Cast("const float*") Pointer absmax, long n, int blocksize, @Cast("float*") Pointer out,
            Pointer stream);

    public static native void lora4j_cuda_nf4_dequantize_bf16(@Cast("const uint8_t*") Pointer packed,
            @Cast("const float*") Pointer absmax, long n, int blocksize,
            @Cast("uint16_t*") Pointer out, Pointer stream);

    public static native void lora4j_cuda_nf4_double_quant(@Cast("const float*") Pointer absmax,
            long nblocks, @Cast("uint8_t*") Pointer qabsmax, @Cast("float*") Pointer nestedAbsmax,
            @Cast("float*") Pointer offset, Pointer stream);

    public static native void lora4j_cuda_nf4_dequant_absmax(@Cast("const uint8_t*") Pointer qabsmax,
            @Cast("const float*") Pointer nestedAbsmax, float offset, long nblocks,
            @Cast("float*") Pointer absmax, Pointer stream);

    public static native void lora4j_cuda_nf4_matmul_fwd(@Cast("const float*") Pointer x, long T,
            long in, long out, @Cast("const uint8_t*") Pointer w, @Cast("const float*") Pointer absmax,
            int blocksize, @Cast("float*") Pointer y, Pointer stream);

    public static native void lora4j_cuda_nf4_matmul_bwd_input(@Cast("const float*") Pointer dy,
            long T, long in, long out, @Cast("const uint8_t*") Pointer w,
            @Cast("const float*") Pointer absmax, int blocksize, @Cast("float*") Pointer dx,
            Pointer stream);

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

    public static native void lora4j_set_num_threads(int n);

    public static native int lora4j_get_num_threads();

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
