package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The rule that gives a data-parallel rank its GPU (CudaDevices.resolve); the runs on the emulated device are in io.lora4j.dist. */
class CudaDevicesTest {
    @Test
    void nobodyAskedMeansDeviceZero() {
        assertEquals(0, CudaDevices.resolve(0, null, 1, null));
        assertEquals(0, CudaDevices.resolve(0, null, 8, "5,6"));
    }

    @Test
    void aLocalRankIndexesTheVisibleDevices() {
        assertEquals(1, CudaDevices.resolve(1, "OMPI_COMM_WORLD_LOCAL_RANK=1", 2, null));
        assertEquals(3, CudaDevices.resolve(3, "LOCAL_RANK=3", 4, "4,5,6,7")); // the 4th visible one: physical 7, as CUDA counts them
        assertEquals(0, CudaDevices.resolve(0, "SLURM_LOCALID=0", 1, null));
    }

    @Test
    void aLauncherThatBindsOneGpuPerRankGivesEveryLocalRankItsDevice() {
        // srun --gpus-per-task=1: SLURM_LOCALID=1 sees one device, CUDA_VISIBLE_DEVICES=1
        assertEquals(0, CudaDevices.resolve(1, "SLURM_LOCALID=1", 1, "1"));
        assertEquals(0, CudaDevices.resolve(5, "LOCAL_RANK=5", 1, "GPU-5f0c2a4e"));
    }

    @Test
    void aLocalRankWithoutADeviceIsAOneLineErrorNamingTheVariableAndTheCount() {
        String m = assertThrows(IllegalStateException.class, () -> CudaDevices.resolve(1, "OMPI_COMM_WORLD_LOCAL_RANK=1", 1, null)).getMessage();
        assertEquals("OMPI_COMM_WORLD_LOCAL_RANK=1 asks for CUDA device 1, but 1 device is visible: start at most 1 rank(s) per machine,"
                + " or give each rank one GPU with CUDA_VISIBLE_DEVICES", m);
        m = assertThrows(IllegalStateException.class, () -> CudaDevices.resolve(2, "LOCAL_RANK=2", 2, "0,1")).getMessage();
        assertEquals("LOCAL_RANK=2 asks for CUDA device 2, but 2 devices are visible (CUDA_VISIBLE_DEVICES=0,1): start at most 2 rank(s) per machine,"
                + " or give each rank one GPU with CUDA_VISIBLE_DEVICES", m);
        // an empty CUDA_VISIBLE_DEVICES binds nothing
        assertThrows(IllegalStateException.class, () -> CudaDevices.resolve(1, "LOCAL_RANK=1", 1, ""));
    }

    @Test
    void aNamedDeviceIsTheNthVisibleOneOrAOneLineErrorNamingTheCount() {
        assertEquals(1, CudaDevices.resolveNamed(1, 2, null));
        assertEquals(0, CudaDevices.resolveNamed(0, 1, "3"));
        String m = assertThrows(IllegalStateException.class, () -> CudaDevices.resolveNamed(2, 2, null)).getMessage();
        assertEquals("no CUDA device 2: 2 devices are visible, cuda:0 to cuda:1", m);
        m = assertThrows(IllegalStateException.class, () -> CudaDevices.resolveNamed(1, 1, "5")).getMessage();
        assertEquals("no CUDA device 1: 1 device is visible (CUDA_VISIBLE_DEVICES=5), cuda:0", m);
    }

    @Test
    void deviceNamesFollowPyTorch() {
        assertEquals(io.lora4j.tensor.Device.CUDA, io.lora4j.tensor.Device.parse("cuda:3"));
        assertEquals(3, io.lora4j.tensor.Device.ordinal("cuda:3"));
        assertEquals(-1, io.lora4j.tensor.Device.ordinal("cuda"));
        assertEquals(-1, io.lora4j.tensor.Device.ordinal("cpu"));
        for (String bad : new String[] {"cuda:", "cuda:-1", "cuda:x", "cpu:0", "tpu"})
            assertThrows(IllegalArgumentException.class, () -> io.lora4j.tensor.Device.parse(bad), bad);
    }
}
