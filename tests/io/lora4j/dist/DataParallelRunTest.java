package io.lora4j.dist;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.lora4j.cli.Main;
import io.lora4j.train.TinyRun;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A data-parallel run's life on the tiny model: --nproc, SIGKILL of the whole job and resume, what is refused. */
class DataParallelRunTest {
    private static final long JOB_TIMEOUT_S = 240;
    /** TinyRun's 8 steps, checkpoints every 2, dropout on; one rank per core. */
    private static final String SETTINGS = TinyRun.SETTINGS + "device: cpu\n";

    private static byte[] adapter(Path out) throws Exception {
        return Files.readAllBytes(out.resolve("adapter_model.safetensors"));
    }

    @Test
    void nprocStartsTheRanksThroughMpirunAndRankZeroAloneWrites(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path yaml = TinyRun.write(dir.resolve("assets"), SETTINGS);
        Path out = dir.resolve("out");
        // in a container as root, Open MPI wants to be told; oversubscribe: a loaded 2-core machine
        MpiRun.Cli r = MpiRun.main(Map.of("LORA4J_MPIRUN_ARGS", "--allow-run-as-root --oversubscribe"), "train", "--config", yaml.toString(), "--out", out.toString(),
                "--nproc", "2", "--threads", "1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("lora4j train: starting 2 ranks"), r.err());
        assertTrue(r.err().contains("data-parallel: 2 ranks"), r.err());
        assertTrue(r.err().contains("step 8/8"), r.err());
        // rank 1 prints only its warnings and errors, each carrying its rank
        for (String line : r.err().split("\n")) if (line.contains("rank 1/2")) assertTrue(line.startsWith("rank 1/2: "), line);
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
        assertEquals(1 + 8 + 1, Files.readAllLines(out.resolve("metrics.jsonl")).size(), "one writer: base eval, 8 steps, final row");
    }

    @Test
    void resumeAfterSigkillOfTheWholeJobFinishesWithTheUninterruptedAdapter(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path yaml = TinyRun.write(dir.resolve("assets"), SETTINGS);
        Path ref = dir.resolve("ref"), out = dir.resolve("out");
        List<String> env = List.of("LORA4J_NUM_THREADS=1");
        String main = Main.class.getName();
        MpiRun.Result whole = MpiRun.run(2, env, JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--out", ref.toString());
        assertEquals(0, whole.exit(), whole.output());

        try (MpiRun.Job job = MpiRun.start(2, env, main, "train", "--config", yaml.toString(), "--out", out.toString())) {
            long end = System.nanoTime() + JOB_TIMEOUT_S * 1_000_000_000L;
            while (!Files.isRegularFile(out.resolve("checkpoint-4").resolve("manifest.json"))) {
                if (!job.process.isAlive()) fail("the job ended before its checkpoint at step 4:\n" + job.output());
                if (System.nanoTime() > end) fail("no checkpoint-4 within " + JOB_TIMEOUT_S + " s:\n" + job.output());
                Thread.sleep(20);
            }
            job.killAll();
            job.process.waitFor();
        }
        assertFalse(Files.exists(out.resolve("adapter_model.safetensors")), "killed before the end");

        // another world size cannot continue the same run: refused, saying why
        MpiRun.Cli one = MpiRun.main(Map.of(), "train", "--config", yaml.toString(), "--resume", out.toString(), "--threads", "1");
        assertEquals(1, one.code(), one.err());
        assertTrue(one.err().contains("was written by a run of 2 rank(s), this one has 1: each step's global batch"), one.err());

        MpiRun.Result resumed = MpiRun.run(2, env, JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--resume", out.toString());
        assertEquals(0, resumed.exit(), resumed.output());
        assertTrue(resumed.output().contains("resuming from"), resumed.output());
        assertArrayEquals(adapter(ref), adapter(out), "same world size: the resumed run ends bit for bit where the uninterrupted one did");
    }

    /**
     * The CUDA backend's host-staged all-reduce (no NCCL) on the emulated CUDA build: 2 ranks ×
     * accumulation 1 against 1 rank × accumulation 2, both on the emulated device. Bound: as in
     * {@link DataParallelTrainTest}, fp32 summation order through AdamW, here for 3 steps at lr 1e-2.
     */
    @Test
    void cudaRanksStageTheirSumsThroughTheHost(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path emu = emulatedLibrary();
        Path yaml = TinyRun.write(dir.resolve("assets"), "r: 4\nlora_alpha: 8\nlora_dropout: 0.1\nmax_steps: 3\nper_device_train_batch_size: 2\n"
                + "learning_rate: 1e-2\nwarmup_steps: 0\nmax_seq_length: 32\nseed: 5\ndevice: cuda\n");
        // two emulated devices: rank r trains on device r, its local rank
        List<String> env = List.of("LORA4J_NATIVE=" + emu, "LORA4J_NUM_THREADS=1", "LORA4J_EMU_DEVICE=sm_90", "LORA4J_EMU_DEVICES=2");
        Path one = dir.resolve("one"), two = dir.resolve("two");
        MpiRun.Result r1 = MpiRun.run(1, env, JOB_TIMEOUT_S, Main.class.getName(), "train", "--config", yaml.toString(), "--out", one.toString(),
                "--gradient_accumulation_steps", "2");
        assertEquals(0, r1.exit(), r1.output());
        MpiRun.Result r2 = MpiRun.run(2, env, JOB_TIMEOUT_S, Main.class.getName(), "train", "--config", yaml.toString(), "--out", two.toString(),
                "--gradient_accumulation_steps", "1", "--hash-every", "1");
        assertEquals(0, r2.exit(), r2.output());
        assertTrue(r2.output().contains("backend: cuda (emulated"), r2.output());
        assertTrue(r2.output().contains("backend: cuda:1 (emulated"), "rank 1 on device 1:\n" + r2.output());
        assertTrue(r2.output().contains("data-parallel: 2 ranks"), r2.output());
        float[] a = floats(one), b = floats(two);
        double maxAbs = 0;
        for (int i = 0; i < a.length; i++) maxAbs = Math.max(maxAbs, Math.abs((double) a[i] - b[i]));
        System.out.printf("emulated CUDA, 2x1 vs 1x2: max |dtheta| %.3e%n", maxAbs);
        assertTrue(maxAbs <= 2 * 1e-2 * 3, "max |difference| " + maxAbs);
        assertTrue(maxAbs <= 1e-4, "the bulk agrees to rounding: max |difference| " + maxAbs);
    }

    /**
     * The NCCL path (native/nccl: libnccl.so.2 through dlopen) on the emulated CUDA build, with the
     * emulated NCCL of native/nccl/emu_nccl.cpp: 2 ranks summing their gradients with ncclAllReduce
     * on the step's stream train the adapter that host-staged MPI trains, bit for bit (two ranks:
     * a + b is rounded once to fp32 on either path). A library that is no NCCL falls back to
     * host-staged MPI in one line; one that is missing, with NCCL required, is a one-line error.
     */
    @Test
    void cudaRanksSumThroughNcclWhereItLoadsAndFallBackOtherwise(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path emu = emulatedLibrary();
        Path nccl = emu.getParent().resolve("emu-nccl").resolve("libnccl.so.2");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isRegularFile(nccl), "no emulated NCCL at " + nccl + " (mvn -B test builds it)");
        String settings = "r: 4\nlora_alpha: 8\nlora_dropout: 0.1\nper_device_train_batch_size: 2\n"
                + "learning_rate: 1e-2\nwarmup_steps: 0\nmax_seq_length: 32\nseed: 5\ndevice: cuda\n";
        Path yaml = TinyRun.write(dir.resolve("assets"), settings + "max_steps: 3\n");
        List<String> env = List.of("LORA4J_NATIVE=" + emu, "LORA4J_NUM_THREADS=1", "LORA4J_EMU_DEVICE=sm_90", "LORA4J_EMU_DEVICES=2");
        String main = Main.class.getName();
        Path viaMpi = dir.resolve("mpi"), viaNccl = dir.resolve("nccl");
        MpiRun.Result m = MpiRun.run(2, concat(env, "LORA4J_ALLREDUCE=mpi", "LORA4J_NCCL=" + nccl), JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(),
                "--out", viaMpi.toString(), "--hash-every", "1");
        assertEquals(0, m.exit(), m.output());
        assertTrue(m.output().contains("data-parallel gradient all-reduce: host-staged MPI (LORA4J_ALLREDUCE=mpi)"), m.output());
        MpiRun.Result n = MpiRun.run(2, concat(env, "LORA4J_NCCL=" + nccl), JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(),
                "--out", viaNccl.toString(), "--hash-every", "1");
        assertEquals(0, n.exit(), n.output());
        assertTrue(n.output().contains("data-parallel gradient all-reduce: NCCL 2.18.0 (" + nccl.toRealPath() + "), fp32 sum on the CUDA stream"),
                n.output());
        assertTrue(n.output().contains("backend: cuda:1 (emulated"), "rank 1 on device 1:\n" + n.output());
        assertArrayEquals(adapter(viaMpi), adapter(viaNccl), "two ranks: NCCL's fp32 sum is the host-staged sum, bit for bit");
        n.output().lines().filter(l -> l.contains("all-reduce")).forEach(l -> System.out.println("emulated NCCL run: " + l));

        // not an NCCL library: one line, then the run goes on host-staged
        Path broken = Files.write(Files.createDirectories(dir.resolve("broken")).resolve("libnccl.so.2"), new byte[] {'n', 'o', 't', ' ', 'E', 'L', 'F'});
        Path one = TinyRun.write(dir.resolve("assets1"), settings + "max_steps: 1\n");
        MpiRun.Result b = MpiRun.run(2, concat(env, "LORA4J_NCCL=" + broken), JOB_TIMEOUT_S, main, "train", "--config", one.toString(),
                "--out", dir.resolve("fallback").toString());
        assertEquals(0, b.exit(), b.output());
        List<String> lines = b.output().lines().filter(l -> l.contains("all-reduce")).toList();
        assertEquals(1, lines.size(), b.output());
        assertTrue(lines.get(0).contains("data-parallel gradient all-reduce: host-staged MPI (NCCL not used: " + broken), b.output());
        System.out.println("broken NCCL run: " + lines.get(0));

        // NCCL required and missing: a one-line error and the job ends
        Path missing = dir.resolve("nowhere").resolve("libnccl.so.2");
        MpiRun.Result r = MpiRun.run(2, concat(env, "LORA4J_ALLREDUCE=nccl", "LORA4J_NCCL=" + missing), JOB_TIMEOUT_S, main, "train", "--config",
                one.toString(), "--out", dir.resolve("required").toString());
        assertNotEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("lora4j train: LORA4J_ALLREDUCE=nccl, but NCCL did not load: " + missing), r.output());
    }

    /**
     * {@code --device cuda:N} in a single process (started through mpirun -np 1 only for its class
     * path and environment handling; a world of one rank is no data-parallel run): two emulated
     * devices, cuda:1 trains there; cuda:2 is a one-line error naming the count.
     */
    @Test
    void aSingleProcessTrainsOnTheNamedDevice(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path emu = emulatedLibrary();
        Path yaml = TinyRun.write(dir.resolve("assets"), "max_steps: 1\nmax_seq_length: 32\ndevice: cuda\n");
        List<String> env = List.of("LORA4J_NATIVE=" + emu, "LORA4J_NUM_THREADS=1", "LORA4J_EMU_DEVICE=sm_90", "LORA4J_EMU_DEVICES=2");
        String main = Main.class.getName();
        MpiRun.Result ok = MpiRun.run(1, env, JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--out", dir.resolve("one").toString(), "--device",
                "cuda:1");
        assertEquals(0, ok.exit(), ok.output());
        assertTrue(ok.output().contains("backend: cuda:1 (emulated"), ok.output());
        assertTrue(Files.isRegularFile(dir.resolve("one").resolve("adapter_model.safetensors")));
        MpiRun.Result bad = MpiRun.run(1, env, JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--out", dir.resolve("two").toString(),
                "--device", "cuda:2");
        assertNotEquals(0, bad.exit(), bad.output());
        assertTrue(bad.output().contains("lora4j train: device cuda:2: no CUDA device 2: 2 devices are visible, cuda:0 to cuda:1"), bad.output());
    }

    private static List<String> concat(List<String> a, String... more) {
        List<String> all = new java.util.ArrayList<>(a);
        all.addAll(List.of(more));
        return all;
    }

    /**
     * One emulated device and two ranks: rank 1's local rank has no GPU. It says so in one line and
     * ends the whole job through MPI_Abort, while rank 0 waits in a collective with a 120 s deadline.
     * mpirun is told not to end the job when a rank exits non-zero, as srun does by default: only the
     * abort can end it early.
     */
    @Test
    void aCudaRankWithoutAGpuOfItsOwnSaysSoAndAbortsTheJob(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path emu = emulatedLibrary();
        Path yaml = TinyRun.write(dir.resolve("assets"), "max_steps: 2\nmax_seq_length: 32\ndevice: cuda\n");
        List<String> args = List.of("train", "--config", yaml.toString(), "--out", dir.resolve("out").toString(), "--collective-timeout", ABORT_TEST_DEADLINE_S);
        MpiRun.Result r = MpiRun.runEach(SRUN_LIKE, List.of("LORA4J_NATIVE=" + emu, "LORA4J_NUM_THREADS=1"), JOB_TIMEOUT_S, Main.class.getName(),
                List.of(args, args));
        assertNotEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("rank 1/2: lora4j train: device cuda: OMPI_COMM_WORLD_LOCAL_RANK=1 asks for CUDA device 1, but 1 device is visible: "),
                r.output());
        // Open MPI's own "MPI_ABORT was invoked" banner is not always printed whole: time and exit code tell
        assertFalse(r.output().contains("did not complete within"), "rank 0 was ended, not timed out:\n" + r.output());
        assertTrue(r.seconds() < 60, "the job took " + r.seconds() + " s:\n" + r.output());
    }

    /**
     * A rank that fails on its own (here: its config file is missing, the others have theirs) after
     * MPI started prints its one-line error and ends every rank with MPI_Abort, under a launcher
     * that leaves the others running when one exits non-zero (srun's default).
     */
    @Test
    void aRankThatFailsAloneAbortsTheWholeJob(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path yaml = TinyRun.write(dir.resolve("assets"), SETTINGS);
        Path missing = dir.resolve("nowhere.yaml");
        String out = dir.resolve("out").toString();
        MpiRun.Result r = MpiRun.runEach(SRUN_LIKE, List.of("LORA4J_NUM_THREADS=1"), JOB_TIMEOUT_S, Main.class.getName(),
                List.of(List.of("train", "--config", yaml.toString(), "--out", out, "--collective-timeout", ABORT_TEST_DEADLINE_S),
                        List.of("train", "--config", missing.toString(), "--out", out)));
        assertNotEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("rank 1/2: lora4j train: " + missing + ": no such file or directory"), r.output());
        // Open MPI's own "MPI_ABORT was invoked" banner is not always printed whole: time and exit code tell
        assertFalse(r.output().contains("did not complete within"), "rank 0 was ended, not timed out:\n" + r.output());
        assertTrue(r.seconds() < 60, "the job took " + r.seconds() + " s:\n" + r.output());
    }

    /**
     * Rank 0's collective deadline in the abort tests: without the abort it would end the job after
     * this long, past the 60 s the tests allow (a job of two JVMs ends in about 5 s here).
     */
    private static final String ABORT_TEST_DEADLINE_S = "120";

    /** mpirun told to keep the other ranks running when one exits non-zero, as srun does unless --kill-on-bad-exit. */
    private static final List<String> SRUN_LIKE = List.of("--mca", "orte_abort_on_non_zero_status", "0");

    private static Path emulatedLibrary() throws Exception {
        Path emu = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI()).getParent().resolve("native-emu")
                .resolve("liblora4j.so");
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isRegularFile(emu), "no emulated CUDA build at " + emu + " (mvn -B test builds it)");
        return emu;
    }

    /** The adapter's values, every tensor in file order. */
    private static float[] floats(Path out) throws Exception {
        io.lora4j.io.SafeTensors st = io.lora4j.io.SafeTensors.open(out.resolve("adapter_model.safetensors"));
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        for (String n : new java.util.TreeSet<>(st.entries().keySet())) all.write(st.bytes(n));
        java.nio.FloatBuffer f = java.nio.ByteBuffer.wrap(all.toByteArray()).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        float[] v = new float[f.remaining()];
        f.get(v);
        return v;
    }

    /** The same job started twice, by mpirun and by hand with torchrun-style variables (no MPI launcher): the same adapter, bit for bit. */
    @Test
    void aTorchrunStyleStartTrainsWhatMpirunTrains(@TempDir Path dir) throws Exception {
        MpiRun.mpirun();
        Path yaml = TinyRun.write(dir.resolve("assets"), SETTINGS);
        Path viaMpirun = dir.resolve("mpirun"), viaTorchrun = dir.resolve("torchrun");
        String main = Main.class.getName();
        MpiRun.Result a = MpiRun.run(2, List.of("LORA4J_NUM_THREADS=1"), JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--out", viaMpirun.toString());
        assertEquals(0, a.exit(), a.output());
        Map<String, String> oneThread = Map.of("LORA4J_NUM_THREADS", "1");
        MpiRun.Result b = MpiRun.torchrun(List.of(oneThread, oneThread), JOB_TIMEOUT_S, main, "train", "--config", yaml.toString(), "--out",
                viaTorchrun.toString());
        assertEquals(0, b.exit(), b.output());
        assertTrue(b.output().contains("data-parallel: 2 ranks (torchrun-style variables"), b.output());
        assertTrue(b.output().contains("step 8/8"), b.output());
        assertArrayEquals(adapter(viaMpirun), adapter(viaTorchrun), "same ranks, same collectives: the same adapter");
    }

    @Test
    void badLauncherVariablesAndAnAbsentRankZeroAreOneLineErrors(@TempDir Path dir) throws Exception {
        Path yaml = TinyRun.write(dir.resolve("assets"), SETTINGS);
        Path out = dir.resolve("out");
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
            port = s.getLocalPort(); // closed again: nobody listens there
        }
        MpiRun.Cli r = MpiRun.main(Map.of("RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "MASTER_ADDR", "127.0.0.1", "MASTER_PORT", Integer.toString(port)),
                "train", "--config", yaml.toString(), "--out", out.toString(), "--collective-timeout", "2");
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().startsWith("rank 1/2: lora4j train: rendezvous at 127.0.0.1:" + port + ": rank 0 did not answer before the deadline"), r.err());
        assertEquals(1, r.err().strip().split("\n").length, r.err());

        MpiRun.Cli bad = MpiRun.main(Map.of("RANK", "0", "WORLD_SIZE", "2"), "train", "--config", yaml.toString(), "--out", out.toString());
        assertEquals(1, bad.code(), bad.err());
        assertEquals("lora4j train: WORLD_SIZE=2 but MASTER_ADDR is not set: a torchrun-style start needs the rendezvous host", bad.err().strip());
        MpiRun.Cli high = MpiRun.main(Map.of("OMPI_COMM_WORLD_RANK", "2", "OMPI_COMM_WORLD_SIZE", "2"), "train", "--config", yaml.toString(), "--out", out.toString());
        assertEquals(1, high.code(), high.err());
        assertEquals("lora4j train: Open MPI (mpirun): OMPI_COMM_WORLD_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2", high.err().strip());
        assertFalse(Files.exists(out), "nothing written");
    }
}
