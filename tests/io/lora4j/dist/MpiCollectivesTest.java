package io.lora4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** liblora4j_mpi's collectives between two JVMs started by mpirun, and what a dead or hung rank does to the other. */
class MpiCollectivesTest {
    /** A whole job of two JVMs on a loaded 2-core machine; each JVM starts in about 2 s. */
    private static final long JOB_TIMEOUT_S = 120;

    @Test
    void sumsBroadcastAndBarrierBetweenTwoRanks() throws Exception {
        MpiRun.Result r = MpiRun.run(2, List.of(), JOB_TIMEOUT_S, MpiProbe.class.getName(), "sums");
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < 2; rank++) {
            // Σ_r (r+1)(i+1) = 3(i+1); 1/3 + 1/3 is exact in binary64 (a doubling)
            assertTrue(r.output().contains("rank " + rank + "/2 local " + rank + " sum[0]=3.0 sum[999]=3000.0 third=0.6666666666666666 msg=from rank zero!! zeros=0"),
                    r.output());
        }
    }

    /** Two JVMs started by hand with torchrun-style variables join one MPI world through the rendezvous: the same sums as under mpirun. */
    @Test
    void torchrunStyleProcessesStartedByHandJoinOneWorld() throws Exception {
        MpiRun.Result r = MpiRun.torchrun(List.of(Map.of(), Map.of()), JOB_TIMEOUT_S, MpiProbe.class.getName(), "sums");
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < 2; rank++)
            assertTrue(r.output().contains("rank " + rank + "/2 local " + rank + " sum[0]=3.0 sum[999]=3000.0 third=0.6666666666666666 msg=from rank zero!! zeros=0"),
                    r.output());
    }

    /** Processes that disagree on the world stop at the rendezvous, each with one line, before MPI starts. */
    @Test
    void torchrunStyleProcessesThatDisagreeOnTheWorldSizeStopAtTheRendezvous() throws Exception {
        MpiRun.Result r = MpiRun.torchrun(List.of(Map.of(), Map.of("WORLD_SIZE", "3")), JOB_TIMEOUT_S, MpiProbe.class.getName(), "sums", "-", "20");
        assertEquals(2, r.exit(), r.output());
        assertTrue(r.output().contains(": a process says WORLD_SIZE=3, rank 0 has WORLD_SIZE=2"), r.output());
        assertTrue(r.output().contains("rank 1 error: rendezvous at 127.0.0.1:"), r.output());
        assertTrue(r.output().contains(": rank 0 says: a process says WORLD_SIZE=3, rank 0 has WORLD_SIZE=2"), r.output());
    }

    @Test
    void aRankKilledBeforeACollectiveEndsTheJobNonZero() throws Exception {
        MpiRun.Result r = MpiRun.run(2, List.of(), JOB_TIMEOUT_S, MpiProbe.class.getName(), "die", "1", "600");
        assertNotEquals(0, r.exit(), r.output());
        // mpirun notices the dead rank and ends the survivor, long before its 600 s collective timeout
        assertTrue(r.seconds() < 60, "the job took " + r.seconds() + " s:\n" + r.output());
    }

    @Test
    void aHungRankMakesTheSurvivorTimeOutAndExitNonZero() throws Exception {
        MpiRun.Result r = MpiRun.run(2, List.of(), JOB_TIMEOUT_S, MpiProbe.class.getName(), "hang", "1", "3");
        assertNotEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("rank 0 error: lora4j mpi: all-reduce (fp64 sum) did not complete within 3 s"), r.output());
        assertTrue(r.seconds() < 60, "the job took " + r.seconds() + " s:\n" + r.output());
    }
}
