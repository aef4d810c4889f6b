package io.lora4j.quant;

import io.lora4j.nativeapi.Lora4jOpsNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Device;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.Arrays;
import org.bytedeco.javacpp.FloatPointer;

/**
 * NF4 4-bit quantization, byte-compatible with bitsandbytes (DESIGN.md §4), and the 4-bit matmul.
 * Every method validates shapes, dtypes and devices before the native call; the backend's
 * kernels then run without further checks. Native failures (a NaN or Inf in a weight) arrive as
 * {@link RuntimeException}s whose message names the element.
 */
public final class Nf4 {
    /** bitsandbytes' default blocksize. */
    public static final int DEFAULT_BLOCKSIZE = 64;
    public static final int MIN_BLOCKSIZE = 32;
    public static final int MAX_BLOCKSIZE = 4096;

    private Nf4() {}

    private static float[] code, dynamicMap;

    /** The 16 NF4 code values of the native kernels (DESIGN §4; bitsandbytes' quant_map). */
    public static synchronized float[] code() {
        if (code == null) {
            NativeLibrary.load();
            try (FloatPointer p = new FloatPointer(16)) {
                Lora4jOpsNative.lora4j_nf4_code(p);
                code = new float[16];
                p.get(code);
            }
        }
        return code.clone();
    }

    /** bitsandbytes' signed 8-bit dynamic map of the native kernels: 256 ascending fp32 values. */
    public static synchronized float[] dynamicMap() {
        if (dynamicMap == null) {
            NativeLibrary.load();
            try (FloatPointer p = new FloatPointer(256)) {
                Lora4jOpsNative.lora4j_dynamic_map(p);
                dynamicMap = new float[256];
                p.get(dynamicMap);
            }
        }
        return dynamicMap.clone();
    }

    /** Throws unless {@code blocksize} is a power of two in [32, 4096]. */
    public static void checkBlocksize(int blocksize) {
        if (blocksize < MIN_BLOCKSIZE || blocksize > MAX_BLOCKSIZE || Integer.bitCount(blocksize) != 1)
            throw new IllegalArgumentException("NF4 blocksize must be a power of two in [" + MIN_BLOCKSIZE + ", "
                    + MAX_BLOCKSIZE + "], got " + blocksize);
    }

    /** Number of absmax blocks for n elements. */
    public static long blocks(long n, int blocksize) {
        return (n + blocksize - 1) / blocksize;
    }

    /**
     * Quantizes {@code w} (F32, BF16 or F16, on {@code backend}'s device) to NF4.
     *
     * @param doubleQuant also quantize the absmax to 8 bits (bitsandbytes' compress_statistics);
     *                    the returned absmax is then the dequantized one, as bitsandbytes uses it
     * @throws IllegalArgumentException for a bad blocksize, dtype, device or an empty tensor
     * @throws RuntimeException         from the kernel when {@code w} holds NaN or Inf
     */
    public static Nf4Weight quantize(Backend backend, Tensor w, int blocksize, boolean doubleQuant) {
        checkBlocksize(blocksize);
        if (w.dtype() != DType.F32 && w.dtype() != DType.BF16 && w.dtype() != DType.F16)
            throw new IllegalArgumentException("NF4 quantizes F32, BF16 or F16 weights, got " + w.dtype());
        requireDevice(backend, w, "weight");
        long n = w.numel();
        if (n == 0) throw new IllegalArgumentException("cannot quantize an empty tensor " + w);
        long nblocks = blocks(n, blocksize);
        Tensor packed = backend.allocate(DType.U8, MemoryCategory.WEIGHTS, (n + 1) / 2);
        Tensor absmax = backend.allocate(DType.F32, MemoryCategory.WEIGHTS, nblocks);
        try {
            backend.nf4Quantize(w, blocksize, packed, absmax);
            Nf4Weight.DoubleQuant dq = null;
            if (doubleQuant) {
                Tensor q = backend.allocate(DType.U8, MemoryCategory.WEIGHTS, nblocks);
                Tensor nested = backend.allocate(DType.F32, MemoryCategory.WEIGHTS,
                        blocks(nblocks, Nf4Weight.NESTED_BLOCKSIZE));
                float offset = backend.nf4DoubleQuant(absmax, q, nested);
                dq = new Nf4Weight.DoubleQuant(q, nested, offset);
                if (!keepsFp32Absmax(backend)) {
                    absmax.close();
                    return new Nf4Weight(w.shape(), blocksize, w.dtype(), packed, null, dq);
                }
                backend.nf4DequantAbsmax(q, nested, offset, absmax);
            }
            return new Nf4Weight(w.shape(), blocksize, w.dtype(), packed, absmax, dq);
        } catch (RuntimeException e) {
            packed.close();
            absmax.close();
            throw e;
        }
    }

    /**
     * Rebuilds an {@link Nf4Weight} from stored parts (a bnb-4bit checkpoint). With
     * {@code qabsmax != null} the absmax is computed from the double-quantized form.
     */
    public static Nf4Weight fromParts(Backend backend, long[] shape, int blocksize, DType sourceDtype,
            Tensor packed, Tensor absmax, Tensor qabsmax, Tensor nestedAbsmax, float offset) {
        checkBlocksize(blocksize);
        long n;
        try {
            n = Tensor.numel(shape);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("NF4 weight shape " + Arrays.toString(shape) + " overflows 64-bit element counts");
        }
        long nblocks = blocks(n, blocksize);
        if (packed.dtype() != DType.U8 && packed.dtype() != DType.NF4 || packed.bytes() != (n + 1) / 2)
            throw new IllegalArgumentException("packed NF4 data holds " + packed.bytes() + " bytes, shape "
                    + Arrays.toString(shape) + " needs " + (n + 1) / 2);
        requireDevice(backend, packed, "packed");
        if (qabsmax == null) {
            checkF32(absmax, nblocks, "absmax");
            return new Nf4Weight(shape, blocksize, sourceDtype, packed, absmax, null);
        }
        if (qabsmax.dtype() != DType.U8 || qabsmax.numel() != nblocks)
            throw new IllegalArgumentException("double-quantized absmax must be U8 [" + nblocks + "], got " + qabsmax);
        checkF32(nestedAbsmax, blocks(nblocks, Nf4Weight.NESTED_BLOCKSIZE), "nested_absmax");
        requireDevice(backend, qabsmax, "absmax");
        requireDevice(backend, nestedAbsmax, "nested_absmax");
        Nf4Weight.DoubleQuant dq = new Nf4Weight.DoubleQuant(qabsmax, nestedAbsmax, offset);
        if (!keepsFp32Absmax(backend)) return new Nf4Weight(shape, blocksize, sourceDtype, packed, null, dq);
        Tensor abs = backend.allocate(DType.F32, MemoryCategory.WEIGHTS, nblocks);
        backend.nf4DequantAbsmax(qabsmax, nestedAbsmax, offset, abs);
        return new Nf4Weight(shape, blocksize, sourceDtype, packed, abs, dq);
    }

    /**
     * Whether a double-quantized weight on {@code backend} also keeps the fp32 absmax: on the CPU
     * (its kernels read fp32 scales; 4 B per block), not on CUDA, whose kernels read the 8-bit form
     * directly (bitsandbytes' storage: 1 B per block + 4 B per 256 blocks).
     */
    public static boolean keepsFp32Absmax(Backend backend) {
        return backend.device() == Device.CPU;
    }

    /** The fp32 absmax of {@code w}: its own, or (double-quantized without one) a WORKSPACE copy the caller closes. */
    private static Tensor absmaxOf(Backend backend, Nf4Weight w) {
        if (w.absmax() != null) return w.absmax();
        Nf4Weight.DoubleQuant dq = w.doubleQuant();
        Tensor abs = backend.empty(DType.F32, MemoryCategory.WORKSPACE, dq.qabsmax().numel()); // overwritten
        backend.nf4DequantAbsmax(dq.qabsmax(), dq.nestedAbsmax(), dq.offset(), abs);
        return abs;
    }

    /** The fp32 weight, of the original shape, on {@code backend}'s device. */
    public static Tensor dequantize(Backend backend, Nf4Weight w) {
        requireDevice(backend, w.packed(), "weight");
        Tensor out = backend.allocate(DType.F32, MemoryCategory.WORKSPACE, w.shape());
        Tensor abs = absmaxOf(backend, w);
        try {
            backend.nf4Dequantize(w.packed(), abs, w.numel(), w.blocksize(), out);
        } finally {
            if (abs != w.absmax()) abs.close();
        }
        return out;
    }

    /** y [T, out] = x [T, in] · dequant(w)ᵀ, for w of shape [out, in]. */
    public static Tensor matmul(Backend backend, Tensor x, Nf4Weight w) {
        check2d(w);
        if (x.dtype() != DType.F32 || x.rank() != 2 || x.dim(1) != w.cols())
            throw new IllegalArgumentException("x must be F32 [T, " + w.cols() + "] for " + w + ", got " + x);
        requireDevice(backend, x, "x");
        requireDevice(backend, w.packed(), "weight");
        Tensor y = backend.empty(DType.F32, MemoryCategory.ACTIVATIONS, x.dim(0), w.rows()); // overwritten
        matmulInto(backend, x, w, y);
        return y;
    }

    /**
     * y [T, out] (overwritten) = x [T, in] · dequant(w)ᵀ into a caller's tensor: through the fp32
     * absmax when {@code w} has one, else through its double-quantized scales. With
     * {@code w.computeDtype()} BF16 (bnb_4bit_compute_dtype: bfloat16) x and the dequantized weight
     * are rounded to bf16 and the products summed in fp32, as bitsandbytes computes; CUDA's kernel
     * always does. The backward to the input stays fp32 on the CPU.
     */
    public static void matmulInto(Backend backend, Tensor x, Nf4Weight w, Tensor y) {
        if (x.dim(0) == 0) return;
        Nf4Weight.DoubleQuant dq = w.doubleQuant();
        if (w.absmax() != null && w.computeDtype() == DType.BF16) backend.nf4MatmulFwdBf16(x, w.packed(), w.absmax(), w.blocksize(), w.rows(), y);
        else if (w.absmax() != null) backend.nf4MatmulFwd(x, w.packed(), w.absmax(), w.blocksize(), w.rows(), y);
        else backend.nf4DqMatmulFwd(x, w.packed(), dq.qabsmax(), dq.nestedAbsmax(), dq.offset(), w.blocksize(), w.rows(), y);
    }

    /** dx [T, in] (overwritten) = dy [T, out] · dequant(w) into a caller's tensor (scales as {@link #matmulInto}). */
    public static void matmulBackwardInputInto(Backend backend, Tensor dy, Nf4Weight w, Tensor dx) {
        if (dy.dim(0) == 0) return;
        Nf4Weight.DoubleQuant dq = w.doubleQuant();
        if (w.absmax() != null) backend.nf4MatmulBwdInput(dy, w.packed(), w.absmax(), w.blocksize(), w.cols(), dx);
        else backend.nf4DqMatmulBwdInput(dy, w.packed(), dq.qabsmax(), dq.nestedAbsmax(), dq.offset(), w.blocksize(), w.cols(), dx);
    }

    /** dx [T, in] = dy [T, out] · dequant(w), for w of shape [out, in]. */
    public static Tensor matmulBackwardInput(Backend backend, Tensor dy, Nf4Weight w) {
        check2d(w);
        if (dy.dtype() != DType.F32 || dy.rank() != 2 || dy.dim(1) != w.rows())
            throw new IllegalArgumentException("dy must be F32 [T, " + w.rows() + "] for " + w + ", got " + dy);
        requireDevice(backend, dy, "dy");
        requireDevice(backend, w.packed(), "weight");
        Tensor dx = backend.empty(DType.F32, MemoryCategory.ACTIVATIONS, dy.dim(0), w.cols()); // overwritten
        matmulBackwardInputInto(backend, dy, w, dx);
        return dx;
    }

    private static void check2d(Nf4Weight w) {
        if (w.shape().length != 2) throw new IllegalArgumentException("NF4 matmul needs a 2-D weight, got " + w);
    }

    private static void checkF32(Tensor t, long n, String what) {
        if (t == null || t.dtype() != DType.F32 || t.numel() != n)
            throw new IllegalArgumentException(what + " must be F32 [" + n + "], got " + t);
    }

    private static void requireDevice(Backend backend, Tensor t, String what) {
        if (t.device() != backend.device())
            throw new IllegalArgumentException(what + " lives on " + t.device() + ", the backend on " + backend.device());
    }
}
