package io.lora4j.dist;

import io.lora4j.ops.Mpi;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * A child process of {@link MpiCollectivesTest}, started N times by {@code mpirun} (or by hand with
 * torchrun-style variables): the collectives on known inputs, or a rank that dies or hangs in front
 * of a collective.
 *
 * <pre>MpiProbe sums | die RANK | hang RANK  [timeout-seconds]</pre>
 */
public final class MpiProbe {
    public static void main(String[] args) throws Exception {
        String mode = args[0];
        double timeout = args.length > 2 ? Double.parseDouble(args[2]) : 30;
        World world = World.fromEnvironment();
        try {
            MpiDataParallel.joinWorld(world, timeout); // mpirun's MPI_Init, or the rendezvous of torchrun-style variables
        } catch (RuntimeException e) {
            System.out.println("rank " + world.rank() + " error: " + e.getMessage());
            System.out.flush();
            System.exit(2);
        }
        int rank = Mpi.rank(), size = Mpi.size();
        if (!mode.equals("sums") && rank == Integer.parseInt(args[1])) {
            if (mode.equals("die")) { // SIGKILL of itself: no exit code, no shutdown hook, no MPI goodbye
                new ProcessBuilder("kill", "-9", Long.toString(ProcessHandle.current().pid())).start().waitFor();
            }
            Thread.sleep(Long.MAX_VALUE); // hang
        }
        try {
            // rank r contributes (r+1)·(i+1) and 1/3 (not exact in binary): sums are size(size+1)/2·(i+1) and size/3
            double[] buf = new double[1000];
            for (int i = 0; i < buf.length; i++) buf[i] = (rank + 1.0) * (i + 1);
            Mpi.allReduceSum(buf, timeout);
            double[] third = {1.0 / 3};
            Mpi.allReduceSum(third, timeout);
            byte[] msg = new byte[16];
            if (rank == 0) System.arraycopy("from rank zero!!".getBytes(StandardCharsets.US_ASCII), 0, msg, 0, 16);
            Mpi.broadcast(msg, 0, timeout);
            Mpi.barrier(timeout);
            System.out.println("rank " + rank + "/" + size + " local " + world.localRank() + " sum[0]=" + buf[0] + " sum[999]=" + buf[999]
                    + " third=" + third[0] + " msg=" + new String(msg, StandardCharsets.US_ASCII) + " zeros=" + Arrays.stream(buf).filter(x -> x == 0).count());
            Mpi.finalizeMpi();
        } catch (Mpi.MpiException e) {
            System.out.println("rank " + rank + " error: " + e.getMessage());
            System.out.flush();
            System.exit(2);
        }
    }
}
