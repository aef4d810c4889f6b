package io.lora4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

class WorldTest {
    @Test
    void noLauncherIsASingleProcess() {
        World w = World.discover(Map.of("HOME", "/root"));
        assertEquals(World.SINGLE, w);
        assertFalse(w.distributed());
        assertTrue(w.isLeader());
        assertEquals("", w.prefix());
        assertNull(w.localRankVariable());
    }

    @Test
    void openMpiVariables() {
        World w = World.discover(Map.of("OMPI_COMM_WORLD_RANK", "3", "OMPI_COMM_WORLD_SIZE", "4", "OMPI_COMM_WORLD_LOCAL_RANK", "1"));
        assertEquals(new World(3, 4, 1, World.Launcher.OPEN_MPI, null, 0), w);
        assertEquals("OMPI_COMM_WORLD_LOCAL_RANK", w.localRankVariable(), "the variable a GPU choice names");
        assertEquals("rank 3/4: ", w.prefix());
        assertFalse(w.isLeader());
    }

    @Test
    void openMpiWinsOverTorchrunVariablesLeftInTheEnvironment() {
        World w = World.discover(Map.of("OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2", "RANK", "0", "WORLD_SIZE", "1"));
        assertEquals(World.Launcher.OPEN_MPI, w.launcher());
        assertEquals(1, w.rank());
        assertEquals(1, w.localRank(), "no local rank variable: the global rank stands in");
    }

    @Test
    void slurmStepVariables() {
        World w = World.discover(Map.of("SLURM_PROCID", "5", "SLURM_NTASKS", "8", "SLURM_LOCALID", "1", "SLURM_STEP_ID", "0"));
        assertEquals(new World(5, 8, 1, World.Launcher.SLURM, null, 0), w);
        assertEquals("SLURM_LOCALID", w.localRankVariable());
    }

    @Test
    void aSlurmBatchScriptOutsideAStepIsASingleProcess() {
        // sbatch exports SLURM_PROCID=0 and the job's task count to the script itself
        assertEquals(World.SINGLE, World.discover(Map.of("SLURM_PROCID", "0", "SLURM_NTASKS", "8")));
    }

    @Test
    void torchrunVariables() {
        World w = World.discover(Map.of("RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "1", "MASTER_ADDR", " node0 ", "MASTER_PORT", "29500"));
        assertEquals(new World(1, 2, 1, World.Launcher.TORCHRUN, "node0", 29500), w);
        assertEquals("LOCAL_RANK", w.localRankVariable());
    }

    @Test
    void torchrunWorldOfOneNeedsNoAddress() {
        World w = World.discover(Map.of("RANK", "0", "WORLD_SIZE", "1"));
        assertEquals(World.Launcher.TORCHRUN, w.launcher());
        assertNull(w.masterAddr());
        assertFalse(w.distributed());
    }

    @Test
    void rankNotBelowSizeIsOneLine() {
        String m = assertThrows(IllegalArgumentException.class,
                () -> World.discover(Map.of("OMPI_COMM_WORLD_RANK", "2", "OMPI_COMM_WORLD_SIZE", "2"))).getMessage();
        assertEquals("Open MPI (mpirun): OMPI_COMM_WORLD_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2", m);
        m = assertThrows(IllegalArgumentException.class,
                () -> World.discover(Map.of("RANK", "4", "WORLD_SIZE", "4", "MASTER_ADDR", "h", "MASTER_PORT", "1"))).getMessage();
        assertEquals("torchrun-style variables: RANK=4 is not below WORLD_SIZE=4", m);
    }

    @Test
    void missingAddressOrPortIsOneLine() {
        String m = assertThrows(IllegalArgumentException.class, () -> World.discover(Map.of("RANK", "0", "WORLD_SIZE", "2"))).getMessage();
        assertEquals("WORLD_SIZE=2 but MASTER_ADDR is not set: a torchrun-style start needs the rendezvous host", m);
        m = assertThrows(IllegalArgumentException.class,
                () -> World.discover(Map.of("RANK", "0", "WORLD_SIZE", "2", "MASTER_ADDR", "h", "MASTER_PORT", "70000"))).getMessage();
        assertEquals("MASTER_PORT=70000 is not a TCP port (1..65535)", m);
        m = assertThrows(IllegalArgumentException.class, () -> World.discover(Map.of("RANK", "0", "WORLD_SIZE", "2", "MASTER_ADDR", "h"))).getMessage();
        assertEquals("MASTER_PORT=null is not a TCP port (1..65535)", m);
    }

    @Test
    void missingSizeOrGarbageIsOneLine() {
        String m = assertThrows(IllegalArgumentException.class, () -> World.discover(Map.of("OMPI_COMM_WORLD_RANK", "0"))).getMessage();
        assertEquals("Open MPI (mpirun): OMPI_COMM_WORLD_SIZE must be >= 1", m);
        m = assertThrows(IllegalArgumentException.class,
                () -> World.discover(Map.of("SLURM_PROCID", "x", "SLURM_NTASKS", "2", "SLURM_STEP_ID", "0"))).getMessage();
        assertEquals("SLURM_PROCID='x' is not an integer", m);
        m = assertThrows(IllegalArgumentException.class,
                () -> World.discover(Map.of("OMPI_COMM_WORLD_RANK", "-1", "OMPI_COMM_WORLD_SIZE", "2", "OMPI_COMM_WORLD_LOCAL_RANK", "-3"))).getMessage();
        assertEquals("Open MPI (mpirun): OMPI_COMM_WORLD_RANK must be >= 0; OMPI_COMM_WORLD_LOCAL_RANK must be >= 0", m);
    }
}
