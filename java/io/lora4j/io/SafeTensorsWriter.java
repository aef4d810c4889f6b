package io.lora4j.io;

import com.google.gson.stream.JsonWriter;
import io.lora4j.io.SafeTensors.StDType;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes a safetensors file the way the Python library does: compact JSON header padded with
 * spaces to a multiple of 8 bytes, {@code __metadata__} first, then the data without gaps. Data are
 * placed in order of decreasing element size (stable: the given order within a size), so every
 * tensor starts aligned to its element size. The file is written to a temporary file in the same
 * directory, fsync'ed, then atomically renamed over the target: readers never see half a file.
 *
 * <p>Host tensors are copied when {@link #write} runs, so they must stay open until then.
 */
public final class SafeTensorsWriter {
    private record Item(String name, StDType dtype, long[] shape, Tensor tensor, byte[] raw) {
        long bytes() {
            return tensor != null ? tensor.bytes() : raw.length;
        }
    }

    private final Map<String, String> metadata = new LinkedHashMap<>();
    private final List<Item> items = new ArrayList<>();
    private final Set<String> names = new HashSet<>();

    /** Adds a {@code __metadata__} entry. */
    public SafeTensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    /** Adds a host tensor under {@code name} (NF4 tensors: store their bytes with {@link #add(String, StDType, long[], byte[])}). */
    public SafeTensorsWriter add(String name, Tensor tensor) {
        tensor.requireHost();
        if (tensor.dtype() == DType.NF4)
            throw new IllegalArgumentException(name + ": an NF4 tensor is stored as U8 bytes with its quant_state, not as NF4");
        return add(new Item(name, StDType.of(tensor.dtype()), tensor.shape(), tensor, null));
    }

    /** Adds raw little-endian bytes of {@code dtype} and {@code shape} under {@code name}. */
    public SafeTensorsWriter add(String name, StDType dtype, long[] shape, byte[] data) {
        long need = Math.multiplyExact(Tensor.numel(shape), (long) dtype.size);
        if (need != data.length)
            throw new IllegalArgumentException(name + ": " + data.length + " bytes do not fill " + dtype + Arrays.toString(shape));
        return add(new Item(name, dtype, shape.clone(), null, data));
    }

    /** Adds raw bytes of a {@link DType} (not NF4). */
    public SafeTensorsWriter add(String name, DType dtype, long[] shape, byte[] data) {
        if (dtype == DType.NF4) throw new IllegalArgumentException(name + ": store NF4 as U8 bytes");
        return add(name, StDType.of(dtype), shape, data);
    }

    /** Adds fp32 values. */
    public SafeTensorsWriter addFloats(String name, long[] shape, float[] values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values);
        return add(name, StDType.F32, shape, b.array());
    }

    private SafeTensorsWriter add(Item item) {
        if (item.name.equals(SafeTensors.METADATA_KEY)) throw new IllegalArgumentException("tensor name " + item.name + " is reserved");
        if (!names.add(item.name)) throw new IllegalArgumentException("tensor " + item.name + " added twice");
        items.add(item);
        return this;
    }

    /** Number of tensors added. */
    public int size() {
        return items.size();
    }

    /**
     * Writes the file atomically (temp file in the same directory, fsync, rename).
     *
     * @return the size of the written file in bytes
     */
    public long write(Path file) throws IOException {
        List<Item> order = new ArrayList<>(items);
        order.sort(Comparator.comparingInt((Item i) -> -i.dtype.size)); // stable
        byte[] header = header(order);
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = AtomicFiles.tempFile(dir, "." + file.getFileName() + ".", ".tmp");
        boolean done = false;
        try {
            long total;
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
                writeFully(ch, len);
                writeFully(ch, ByteBuffer.wrap(header));
                for (Item it : order) writeFully(ch, it.tensor != null ? it.tensor.buffer() : ByteBuffer.wrap(it.raw));
                ch.force(true);
                total = ch.size();
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            done = true;
            AtomicFiles.syncDirectory(dir);
            return total;
        } finally {
            if (!done) Files.deleteIfExists(tmp);
        }
    }

    private byte[] header(List<Item> order) throws IOException {
        StringWriter sw = new StringWriter();
        try (JsonWriter w = new JsonWriter(sw)) {
            w.setHtmlSafe(false);
            w.beginObject();
            if (!metadata.isEmpty()) {
                w.name(SafeTensors.METADATA_KEY).beginObject();
                for (Map.Entry<String, String> e : metadata.entrySet()) w.name(e.getKey()).value(e.getValue());
                w.endObject();
            }
            long off = 0;
            for (Item it : order) {
                w.name(it.name).beginObject();
                w.name("dtype").value(it.dtype.name());
                w.name("shape").beginArray();
                for (long d : it.shape) w.value(d);
                w.endArray();
                long end = off + it.bytes();
                w.name("data_offsets").beginArray().value(off).value(end).endArray();
                w.endObject();
                off = end;
            }
            w.endObject();
        }
        byte[] json = sw.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        byte[] out = Arrays.copyOf(json, padded);
        Arrays.fill(out, json.length, padded, (byte) ' ');
        return out;
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }
}
