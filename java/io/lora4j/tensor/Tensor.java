package io.lora4j.tensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Objects;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.ShortPointer;

/**
 * A dense n-dimensional array in row-major order, stored off-heap (host memory or a CUDA device
 * allocation) behind a JavaCPP {@link Pointer}. Owned tensors are counted by
 * {@link MemoryTracker#GLOBAL} under their {@link MemoryCategory} and must be {@link #close()}d;
 * views of a file mapping or of another tensor are not counted and free nothing. Owned host
 * tensors take their memory from {@link HostAllocator#GLOBAL}, which reuses closed tensors'
 * blocks: a view must not be used after its owner is closed (its memory may already hold another
 * tensor).
 */
public final class Tensor implements AutoCloseable {
    /** Frees a device allocation; the CUDA backend supplies one. */
    @FunctionalInterface
    public interface Releaser {
        void release(Pointer p);
    }

    private final DType dtype;
    private final long[] shape;
    private final long numel;
    private final Device device;
    private final MemoryCategory category;
    private final Releaser releaser; // null: a view that owns nothing
    private final Object keepAlive;   // e.g. the mapped buffer behind a view
    private Pointer data;

    private Tensor(DType dtype, long[] shape, Device device, MemoryCategory category, Pointer data,
            Releaser releaser, Object keepAlive) {
        this.dtype = Objects.requireNonNull(dtype);
        this.shape = shape.clone();
        this.numel = numel(shape);
        this.device = device;
        this.category = category;
        this.data = data;
        this.releaser = releaser;
        this.keepAlive = keepAlive;
        if (releaser != null) MemoryTracker.GLOBAL.allocated(device, category, bytes());
    }

    /** Product of the dimensions, checked for overflow and negative sizes. */
    public static long numel(long... shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    /** A zero-filled host tensor (its memory comes from {@link HostAllocator#GLOBAL}'s cache when it can). */
    public static Tensor allocate(DType dtype, MemoryCategory category, long... shape) {
        return host(dtype, category, shape, true);
    }

    /**
     * A host tensor whose contents are unspecified, as torch.empty: for an op's output that the op
     * overwrites completely before anything reads it (an output documented "overwritten" in
     * native/include/lora4j), which saves {@link #allocate}'s memset. Never for an accumulated
     * (+=) output. With {@link HostAllocator#setPoison} on, every byte is 0xFF (NaN as a float).
     */
    public static Tensor empty(DType dtype, MemoryCategory category, long... shape) {
        return host(dtype, category, shape, false);
    }

    private static Tensor host(DType dtype, MemoryCategory category, long[] shape, boolean zero) {
        long bytes = dtype.byteSize(numel(shape));
        HostAllocator alloc = HostAllocator.GLOBAL;
        BytePointer p = alloc.acquire(bytes, category);
        if (zero) Pointer.memset(p, 0, bytes);
        else if (alloc.poison()) Pointer.memset(p, 0xFF, bytes);
        return new Tensor(dtype, shape, Device.CPU, category, p, q -> alloc.release(q, bytes), null);
    }

    /** A device tensor over memory the caller allocated; {@code releaser} frees it on close. */
    public static Tensor ofDevice(DType dtype, Device device, MemoryCategory category, Pointer data,
            Releaser releaser, long... shape) {
        return new Tensor(dtype, shape, device, category, data, releaser, null);
    }

    /**
     * A host view of {@code buffer}'s bytes from its position (a file mapping or a direct buffer);
     * not counted, frees nothing. The buffer must stay valid while the view is used.
     */
    public static Tensor view(ByteBuffer buffer, DType dtype, long... shape) {
        if (!buffer.isDirect()) throw new IllegalArgumentException("a tensor view needs a direct buffer");
        long need = dtype.byteSize(numel(shape));
        if (buffer.remaining() < need)
            throw new IllegalArgumentException("buffer holds " + buffer.remaining() + " bytes, shape "
                    + Arrays.toString(shape) + " of " + dtype + " needs " + need);
        ByteBuffer b = buffer.slice(); // JavaCPP's pointer starts at the buffer's address, not its position
        return new Tensor(dtype, shape, Device.CPU, MemoryCategory.WEIGHTS, new BytePointer(b), null, b);
    }

    /** A host F32 tensor holding a copy of {@code values}. */
    public static Tensor ofFloats(float[] values, long... shape) {
        if (numel(shape) != values.length)
            throw new IllegalArgumentException(values.length + " values do not fill shape " + Arrays.toString(shape));
        Tensor t = allocate(DType.F32, MemoryCategory.WORKSPACE, shape);
        t.floatPointer().put(values);
        return t;
    }

    /** A host U8 tensor holding a copy of {@code bytes}. */
    public static Tensor ofBytes(byte[] bytes, DType dtype, long... shape) {
        Tensor t = allocate(dtype, MemoryCategory.WORKSPACE, shape);
        if (t.bytes() != bytes.length)
            throw new IllegalArgumentException(bytes.length + " bytes do not fill " + dtype + Arrays.toString(shape));
        t.bytePointer().put(bytes);
        return t;
    }

    public DType dtype() { return dtype; }
    public long[] shape() { return shape.clone(); }
    public int rank() { return shape.length; }
    public long dim(int i) { return shape[i < 0 ? shape.length + i : i]; }
    public long numel() { return numel; }
    public long bytes() { return dtype.byteSize(numel); }
    public Device device() { return device; }
    public MemoryCategory category() { return category; }
    public boolean isClosed() { return data == null; }

    /** The raw storage pointer (host or device). */
    public Pointer pointer() {
        if (data == null) throw new IllegalStateException("tensor is closed");
        return data;
    }

    public BytePointer bytePointer() { return new BytePointer(pointer()).capacity(bytes()); }
    public FloatPointer floatPointer() { requireDtype(DType.F32); return new FloatPointer(pointer()).capacity(numel); }
    public ShortPointer shortPointer() { return new ShortPointer(pointer()).capacity(numel); }

    /** Host bytes as a little-endian buffer (at most 2 GiB). */
    public ByteBuffer buffer() {
        requireHost();
        if (bytes() > Integer.MAX_VALUE) throw new IllegalStateException("tensor of " + bytes() + " bytes exceeds one ByteBuffer");
        return new BytePointer(pointer()).capacity(bytes()).limit(bytes()).asByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A copy of the elements as fp32 (F32, BF16 and F16 host tensors). */
    public float[] toFloats() {
        requireHost();
        if (numel > Integer.MAX_VALUE) throw new IllegalStateException("too many elements for a float[]: " + numel);
        float[] out = new float[(int) numel];
        ByteBuffer b = buffer();
        switch (dtype) {
            case F32: b.asFloatBuffer().get(out); break;
            case BF16: for (int i = 0; i < out.length; i++) out[i] = Float.intBitsToFloat((b.getShort(2 * i) & 0xffff) << 16); break;
            case F16: for (int i = 0; i < out.length; i++) out[i] = Halfs.toFloat(b.getShort(2 * i)); break;
            default: throw new IllegalStateException("toFloats on a " + dtype + " tensor");
        }
        return out;
    }

    /** A copy of the storage bytes (host tensors). */
    public byte[] toBytes() {
        byte[] out = new byte[Math.toIntExact(bytes())];
        buffer().get(out);
        return out;
    }

    /** The same storage with another shape of equal element count (a view; frees nothing). */
    public Tensor reshape(long... newShape) {
        if (numel(newShape) != numel)
            throw new IllegalArgumentException("cannot reshape " + Arrays.toString(shape) + " to " + Arrays.toString(newShape));
        return new Tensor(dtype, newShape, device, category, pointer(), null, this);
    }

    /**
     * A view of {@code numel(shape)} elements starting {@code elementOffset} elements into this
     * tensor's storage (byte-aligned dtypes only); frees nothing. Works on host and device.
     */
    public Tensor slice(long elementOffset, long... newShape) {
        if (dtype.bits % 8 != 0) throw new IllegalArgumentException("cannot slice a " + dtype + " tensor");
        long n = numel(newShape);
        if (elementOffset < 0 || elementOffset + n > numel)
            throw new IndexOutOfBoundsException("slice [" + elementOffset + ", " + (elementOffset + n)
                    + ") of " + this + " with " + numel + " elements");
        Pointer base = pointer();
        long byteOffset = elementOffset * (dtype.bits / 8);
        Pointer p = new Pointer(base) {
            {
                address = base.address() + byteOffset;
                position = 0;
                limit = 0;
                capacity = 0;
            }
        };
        return new Tensor(dtype, newShape, device, category, p, null, this);
    }

    public void requireHost() {
        if (device != Device.CPU) throw new IllegalStateException("tensor lives on " + device + ", not the host");
    }

    public void requireDtype(DType d) {
        if (dtype != d) throw new IllegalArgumentException("expected a " + d + " tensor, got " + dtype);
    }

    @Override
    public void close() {
        if (data == null) return;
        if (releaser != null) {
            releaser.release(data);
            MemoryTracker.GLOBAL.released(device, category, bytes());
        }
        data = null;
    }

    @Override
    public String toString() {
        return dtype + Arrays.toString(shape) + "@" + device;
    }
}
