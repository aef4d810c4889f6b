package io.lora4j.bench;

import io.lora4j.nativeapi.Lora4jNative;
import io.lora4j.nativeapi.NativeLibrary;
import io.lora4j.ops.Backend;
import io.lora4j.ops.Backends;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;
import org.openjdk.jmh.infra.Blackhole;

/**
 * NF4 CPU kernels against ceilings measured in the same run (scripts/bench.sh prints the ratios):
 * <ul>
 *   <li>{@code gemv4096} (T = 1, 4096×4096) vs {@code gemv4096ReadFloor}, a vector read of the
 *       same packed bytes and scales: the memory floor of any exact kernel;</li>
 *   <li>{@code matmulT512} (T = 512, NF4 tiles dequantized into sgemm) vs
 *       {@code matmulT512Sgemm}, OpenBLAS sgemm on the already-dequantized fp32 weight;</li>
 *   <li>{@code quantize4096}: fp32 4096×4096 -> NF4 (GB/s of fp32 input).</li>
 * </ul>
 * One thread (OpenBLAS and OpenMP): the machine's second thread is too noisy to quote.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xmx6g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 7, time = 1)
@Threads(1)
public class Nf4Bench {
    static float[] gaussian(int n, long seed, float std) {
        Random r = new Random(seed);
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian() * std;
        return a;
    }

    @State(Scope.Benchmark)
    public static class Gemv {
        Backend cpu;
        Nf4Weight w;
        Tensor x, y;

        @Setup
        public void setup() {
            NativeLibrary.setNumThreads(1);
            cpu = Backends.cpu();
            try (Tensor wf = Tensor.ofFloats(gaussian(4096 * 4096, 1, 0.02f), 4096, 4096)) {
                w = Nf4.quantize(cpu, wf, 64, false);
            }
            x = Tensor.ofFloats(gaussian(4096, 2, 1f), 1, 4096);
            y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, 1, 4096);
        }

        @TearDown
        public void tearDown() {
            w.close();
            x.close();
            y.close();
        }
    }

    @Benchmark
    public void gemv4096(Gemv s) {
        s.cpu.nf4MatmulFwd(s.x, s.w.packed(), s.w.absmax(), 64, 4096, s.y);
    }

    @Benchmark
    public long gemv4096ReadFloor(Gemv s) {
        return Lora4jNative.lora4j_bench_read(s.w.packed().pointer(), s.w.packed().bytes())
                ^ Lora4jNative.lora4j_bench_read(s.w.absmax().pointer(), s.w.absmax().bytes());
    }

    @State(Scope.Benchmark)
    public static class Matmul {
        @Param({"2048x5632", "5632x2048"})
        public String shape; // in x out
        Backend cpu;
        Nf4Weight w;
        Tensor wDense, x, y;
        long in, out;
        static final int T = 512;

        @Setup
        public void setup() {
            NativeLibrary.setNumThreads(1);
            cpu = Backends.cpu();
            String[] p = shape.split("x");
            in = Long.parseLong(p[0]);
            out = Long.parseLong(p[1]);
            try (Tensor wf = Tensor.ofFloats(gaussian((int) (in * out), 3, 0.02f), out, in)) {
                w = Nf4.quantize(cpu, wf, 64, false);
            }
            wDense = Nf4.dequantize(cpu, w);
            x = Tensor.ofFloats(gaussian((int) (T * in), 4, 1f), T, in);
            y = Tensor.allocate(DType.F32, MemoryCategory.ACTIVATIONS, T, out);
        }

        @TearDown
        public void tearDown() {
            w.close();
            wDense.close();
            x.close();
            y.close();
        }
    }

    @Benchmark
    public void matmulT512(Matmul s) {
        s.cpu.nf4MatmulFwd(s.x, s.w.packed(), s.w.absmax(), 64, s.out, s.y);
    }

    @Benchmark
    public void matmulT512Sgemm(Matmul s) {
        Lora4jNative.lora4j_sgemm(0, 1, Matmul.T, s.out, s.in, 1f, s.x.floatPointer(), s.in,
                s.wDense.floatPointer(), s.in, 0f, s.y.floatPointer(), s.out);
    }

    @State(Scope.Benchmark)
    public static class Quant {
        Backend cpu;
        Tensor w, packed, absmax;

        @Setup
        public void setup() {
            NativeLibrary.setNumThreads(1);
            cpu = Backends.cpu();
            w = Tensor.ofFloats(gaussian(4096 * 4096, 5, 0.02f), 4096, 4096);
            packed = Tensor.allocate(DType.U8, MemoryCategory.WEIGHTS, 4096L * 4096 / 2);
            absmax = Tensor.allocate(DType.F32, MemoryCategory.WEIGHTS, 4096L * 4096 / 64);
        }

        @TearDown
        public void tearDown() {
            w.close();
            packed.close();
            absmax.close();
        }
    }

    @Benchmark
    public void quantize4096(Quant s, Blackhole bh) {
        s.cpu.nf4Quantize(s.w, 64, s.packed, s.absmax);
        bh.consume(s.absmax);
    }
}
