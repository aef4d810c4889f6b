package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The NCCL shim's loading on a machine without NCCL: every way it can fail is an answer, never a
 * crash or a LinkageError. The collectives themselves run in io.lora4j.dist (emulated NCCL, 2 ranks).
 */
class NcclTest {
    @Test
    void aMissingLibraryIsTheDynamicLinkersReason(@TempDir Path dir) {
        Path missing = dir.resolve("libnccl.so.2");
        String why = Nccl.load(missing.toString());
        assertNotNull(why, "nothing to load at " + missing);
        assertTrue(why.contains(missing.toString()) && why.contains("No such file"), why);
    }

    @Test
    void aFileThatIsNoLibraryOrNoNcclIsRefused(@TempDir Path dir) throws Exception {
        Path junk = Files.write(dir.resolve("libnccl.so.2"), new byte[] {'n', 'o', 't', ' ', 'E', 'L', 'F'});
        String why = Nccl.load(junk.toString());
        assertNotNull(why);
        assertTrue(why.startsWith(junk.toString()), why);

        // a shared library without NCCL's entries: liblora4j_mpi, beside the JNI glue of this build
        Path classes = Path.of(Nccl.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path mpi = classes.resolve("io/lora4j/nativeapi/linux-x86_64/liblora4j_mpi.so");
        assumeTrue(Files.isRegularFile(mpi), "no " + mpi + " (a jar run): built by mvn package");
        why = Nccl.load(mpi.toString());
        assertNotNull(why);
        assertTrue(why.equals(mpi + ": not an NCCL library (no ncclGetVersion, ncclGetErrorString, ncclGetUniqueId, ncclCommInitRank, ncclAllReduce,"
                + " ncclCommDestroy)"), why);
    }
}
