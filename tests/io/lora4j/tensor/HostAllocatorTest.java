package io.lora4j.tensor;

import static org.junit.jupiter.api.Assertions.*;

import org.bytedeco.javacpp.BytePointer;
import org.junit.jupiter.api.Test;

/** The host caching allocator: size classes, reuse, zero-fill on reuse, the tracker's figures, the cap. */
class HostAllocatorTest {
    @Test
    void sizeClassesAreMultiplesOf64UpTo4KiBThenEightPerPowerOfTwoInStepsOfAtMost2MiB() {
        assertEquals(64, HostAllocator.blockSize(1));
        assertEquals(64, HostAllocator.blockSize(64));
        assertEquals(128, HostAllocator.blockSize(65));
        assertEquals(4096, HostAllocator.blockSize(4096));
        assertEquals(4608, HostAllocator.blockSize(4097)); // (4096, 8192] in steps of 512
        assertEquals(8192, HostAllocator.blockSize(8192));
        assertEquals(9216, HostAllocator.blockSize(8193));
        long logits = 240L * 32000 * 4; // the stories15M head's logits chunk
        assertEquals(31457280, HostAllocator.blockSize(logits));
        assertEquals((1L << 30) + (2L << 20), HostAllocator.blockSize((1L << 30) + 1));
        for (long b = 1; b < 5_000_000_000L; b = b * 5 / 4 + 1) {
            long s = HostAllocator.blockSize(b);
            assertTrue(s >= b && s % 64 == 0, b + " -> " + s);
            assertTrue(b <= 4096 || s - b < Math.min(b / 8, 2L << 20), b + " -> " + s + " wastes 1/8 or 2 MiB or more");
            assertEquals(s, HostAllocator.blockSize(s), "a block size is its own class");
        }
    }

    @Test
    void aReleasedBlockServesTheNextRequestOfItsClassAndTheTrackerCountsReservedApart() {
        MemoryTracker tracker = new MemoryTracker();
        HostAllocator a = new HostAllocator(1L << 30, tracker);
        BytePointer p = a.acquire(1000, MemoryCategory.ACTIVATIONS);
        assertEquals(1024, tracker.reserved(Device.CPU));
        assertEquals(0, tracker.cached(Device.CPU));
        a.release(p, 1000);
        assertEquals(1024, tracker.cached(Device.CPU));
        BytePointer q = a.acquire(990, MemoryCategory.ACTIVATIONS); // the same class
        assertEquals(p.address(), q.address());
        assertEquals(1, a.hits());
        assertEquals(1, a.misses());
        assertEquals(0, tracker.cached(Device.CPU));
        BytePointer r = a.acquire(2000, MemoryCategory.ACTIVATIONS); // another class: fresh
        assertNotEquals(q.address(), r.address());
        assertEquals(1024 + 2048, tracker.reserved(Device.CPU));
        assertEquals(1024 + 2048, tracker.peakReserved(Device.CPU));
        a.release(q, 990);
        a.release(r, 2000);
        assertEquals(3072, a.cachedBytes());
        a.emptyCache();
        assertEquals(0, tracker.reserved(Device.CPU));
        assertEquals(0, tracker.cached(Device.CPU));
        assertEquals(3072, tracker.peakReserved(Device.CPU));
        // the allocated figures are the tensors' business, never the allocator's
        assertEquals(0, tracker.liveTotal(Device.CPU));
    }

    @Test
    void theCacheKeepsNoMoreThanItsLimit() {
        MemoryTracker tracker = new MemoryTracker();
        HostAllocator a = new HostAllocator(4096, tracker);
        BytePointer p = a.acquire(4096, MemoryCategory.LOGITS), q = a.acquire(4096, MemoryCategory.LOGITS);
        a.release(p, 4096);
        a.release(q, 4096); // over the limit: freed
        assertEquals(4096, a.cachedBytes());
        assertEquals(4096, a.reservedBytes());
        a.setCacheLimit(0);
        assertEquals(0, a.cachedBytes());
        assertEquals(0, tracker.reserved(Device.CPU));
    }

    @Test
    void reusedMemoryIsZeroedByAllocateAndTheAllocatedFiguresAreTheTensorsBytes() {
        MemoryTracker t = MemoryTracker.GLOBAL;
        long live = t.live(Device.CPU, MemoryCategory.WORKSPACE);
        long address;
        try (Tensor a = Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, 1001)) {
            assertEquals(live + 4004, t.live(Device.CPU, MemoryCategory.WORKSPACE));
            assertTrue(t.reserved(Device.CPU) >= HostAllocator.blockSize(4004));
            java.nio.FloatBuffer f = a.buffer().asFloatBuffer();
            for (int i = 0; i < 1001; i++) f.put(i, 7f); // garbage for the next owner
            address = a.pointer().address();
        }
        assertEquals(live, t.live(Device.CPU, MemoryCategory.WORKSPACE));
        assertTrue(t.cached(Device.CPU) >= HostAllocator.blockSize(4004));
        try (Tensor b = Tensor.allocate(DType.F32, MemoryCategory.WORKSPACE, 1001)) {
            assertEquals(address, b.pointer().address(), "the block of the closed tensor is reused");
            for (float v : b.toFloats()) assertEquals(0f, v);
        }
    }

    @Test
    void poisonFillsEmptyTensorsAndReleasedBlocksWithNaN() {
        HostAllocator g = HostAllocator.GLOBAL;
        boolean was = g.poison();
        g.setPoison(true);
        try {
            try (Tensor e = Tensor.empty(DType.F32, MemoryCategory.ACTIVATIONS, 300)) {
                for (float v : e.toFloats()) assertTrue(Float.isNaN(v), "an empty tensor reads NaN");
            }
            try (Tensor z = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 300)) {
                for (float v : z.toFloats()) assertEquals(0f, v, "allocate still zero-fills");
            }
        } finally {
            g.setPoison(was);
        }
        HostAllocator a = new HostAllocator(1L << 20, new MemoryTracker());
        a.setPoison(true);
        BytePointer p = a.acquire(1200, MemoryCategory.ACTIVATIONS);
        org.bytedeco.javacpp.Pointer.memset(p, 0, 1200);
        a.release(p, 1200); // cached, and poisoned: a view used after its tensor's close reads NaN
        assertEquals((byte) 0xFF, p.get(0));
        assertEquals((byte) 0xFF, p.get(1199));
        a.emptyCache();
    }
}
