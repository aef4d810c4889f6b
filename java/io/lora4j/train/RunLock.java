package io.lora4j.train;

import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The exclusive claim of a training run on its output directory: an OS lock
 * ({@link FileChannel#tryLock}) on {@code OUT/}{@value #FILE}, which holds the owner's pid, start
 * time and a random token. The OS drops the lock when the process dies, so a file left behind by a
 * killed run never blocks the next one; a live run's lock makes a second run fail at once.
 * {@link #close()} deletes the file and releases the lock.
 *
 * <p>Deleting the file while another process waits on it could leave that process holding a lock
 * on an unlinked file; after locking, the holder therefore writes its token and reads it back
 * through the path, and retries when the path no longer names the file it locked. POSIX record
 * locks belong to the process and vanish when any of its descriptors of the file is closed, so
 * nothing in this process may open and close the lock file while the lock is held.
 */
public final class RunLock implements AutoCloseable {
    /** The lock file's name in the output directory. */
    public static final String FILE = ".lock";
    private static final int ATTEMPTS = 5;
    /**
     * Directories this JVM holds: POSIX record locks belong to the process, and closing any channel
     * of the file drops them, so a second attempt from this JVM must not even open the file.
     */
    private static final Set<Path> HELD = ConcurrentHashMap.newKeySet();

    private final Path file;
    private final FileChannel channel, check;
    private final FileLock lock;
    private Path key;

    private RunLock(Path file, FileChannel channel, FileChannel check, FileLock lock) {
        this.file = file;
        this.channel = channel;
        this.check = check;
        this.lock = lock;
    }

    /**
     * Locks {@code dir} (which must exist) for this process.
     *
     * @throws FormatException naming the directory and the holder when another run (this process
     *                         or another) holds it
     */
    public static RunLock acquire(Path dir) throws IOException {
        Path file = dir.resolve(FILE);
        Path key = dir.toRealPath();
        if (!HELD.add(key))
            throw new FormatException(dir, "another training run of this process is writing into this directory");
        try {
            RunLock l = lock(dir, file);
            l.key = key;
            return l;
        } catch (IOException | RuntimeException e) {
            HELD.remove(key);
            throw e;
        }
    }

    private static RunLock lock(Path dir, Path file) throws IOException {
        for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
            FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            FileLock lock;
            try {
                lock = ch.tryLock();
            } catch (OverlappingFileLockException e) {
                lock = null; // this JVM already holds it
            }
            if (lock == null) {
                String holder = holder(ch);
                ch.close();
                throw new FormatException(dir, "another lora4j train is writing into this directory (" + holder
                        + "); wait for it to finish or use another output directory");
            }
            String token = "pid " + ProcessHandle.current().pid() + ", started " + Instant.now() + ", token " + UUID.randomUUID() + "\n";
            byte[] bytes = token.getBytes(StandardCharsets.UTF_8);
            ch.truncate(0);
            ch.write(ByteBuffer.wrap(bytes), 0);
            ch.force(true);
            // Read back through the path with a second channel that stays open while the lock is held:
            // closing any descriptor of the file would drop this process's POSIX lock on it.
            FileChannel check;
            try {
                check = FileChannel.open(file, StandardOpenOption.READ);
            } catch (NoSuchFileException e) {
                check = null;
            }
            if (check != null && token.equals(read(check))) return new RunLock(file, ch, check, lock);
            if (check != null) check.close();
            lock.release(); // the file we locked was deleted by the previous holder: lock the new one
            ch.close();
        }
        throw new FormatException(file, "could not lock: the lock file keeps being replaced");
    }

    private static String read(FileChannel ch) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(256);
        while (b.hasRemaining() && ch.read(b, b.position()) > 0) {
            // until the end of the file or 256 bytes
        }
        return new String(b.array(), 0, b.position(), StandardCharsets.UTF_8);
    }

    private static String holder(FileChannel ch) {
        try {
            String s = read(ch).strip();
            int cut = s.indexOf(", token");
            return s.isEmpty() ? "holder unknown" : cut > 0 ? s.substring(0, cut) : s;
        } catch (IOException e) {
            return "holder unknown";
        }
    }

    /** The lock file. */
    public Path file() {
        return file;
    }

    /** Deletes the lock file and releases the lock. */
    @Override
    public void close() throws IOException {
        try {
            Files.deleteIfExists(file);
        } finally {
            try {
                if (lock.isValid()) lock.release();
            } finally {
                channel.close();
                check.close();
                HELD.remove(key);
            }
        }
    }
}
