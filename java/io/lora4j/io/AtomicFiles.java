package io.lora4j.io;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.stream.Stream;

/** Writing whole files and directories so that a failure leaves nothing half-written behind. */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** Fills a directory; the directory is the temporary one, not the final name. */
    @FunctionalInterface
    public interface DirectoryFiller {
        void fill(Path tempDir) throws IOException;
    }

    /**
     * Creates directory {@code out} atomically: {@code filler} writes into a temporary sibling
     * directory, which is renamed to {@code out} only when it returns normally. An existing
     * non-empty {@code out} is refused unless {@code overwrite}, in which case it is replaced
     * (moved aside, then deleted after the rename). On failure the temporary directory is removed
     * and {@code out} is left as it was.
     *
     * @throws FormatException when {@code out} exists and is a file, or is non-empty without overwrite
     */
    public static void writeDirectory(Path out, boolean overwrite, DirectoryFiller filler) throws IOException {
        Path target = out.toAbsolutePath().normalize();
        checkOutput(target, overwrite);
        Path parent = target.getParent();
        Files.createDirectories(parent);
        Path tmp = tempDirectory(parent, "." + target.getFileName() + ".tmp-");
        Path old = null;
        boolean done = false;
        try {
            filler.fill(tmp);
            if (Files.isDirectory(target, LinkOption.NOFOLLOW_LINKS)) {
                if (isEmptyDirectory(target)) {
                    Files.delete(target);
                } else {
                    old = tempDirectory(parent, "." + target.getFileName() + ".old-");
                    Files.delete(old);
                    Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
                }
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            done = true;
            syncDirectory(parent);
        } finally {
            if (!done) {
                deleteRecursively(tmp);
                if (old != null && !Files.exists(target)) Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
            }
        }
        if (old != null) deleteRecursively(old);
    }

    /**
     * Checks that {@code out} may be written: absent, an empty directory, or (with
     * {@code overwrite}) an existing directory.
     */
    public static void checkOutput(Path out, boolean overwrite) throws IOException {
        if (!Files.exists(out, LinkOption.NOFOLLOW_LINKS)) return;
        if (!Files.isDirectory(out, LinkOption.NOFOLLOW_LINKS)) throw new FormatException(out, "exists and is not a directory");
        if (!overwrite && !isEmptyDirectory(out)) throw new FormatException(out, "exists and is not empty (use --overwrite to replace it)");
    }

    public static boolean isEmptyDirectory(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isEmpty();
        }
    }

    /** Copies {@code src} to {@code dst} through a temporary file and a rename. */
    public static void copyFile(Path src, Path dst) throws IOException {
        Path tmp = tempFile(dst.toAbsolutePath().getParent(), "." + dst.getFileName() + ".", ".tmp");
        try {
            Files.copy(src, tmp, StandardCopyOption.REPLACE_EXISTING);
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
                ch.force(true);
            }
            Files.move(tmp, dst, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Writes {@code bytes} to {@code file} through a temporary file, fsync and a rename. */
    public static void writeBytes(Path file, byte[] bytes) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = tempFile(dir, "." + file.getFileName() + ".", ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(bytes);
                while (b.hasRemaining()) ch.write(b);
                ch.force(true);
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** fsyncs a directory so that a rename in it is durable (best effort). */
    public static void syncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // some file systems cannot open directories; the rename itself is still atomic
        }
    }

    /** Deletes a file or directory tree, not following symbolic links; absent is fine. */
    public static void deleteRecursively(Path p) throws IOException {
        if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) return;
        Files.walkFileTree(p, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.delete(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                if (exc != null) throw exc;
                try {
                    Files.delete(dir);
                } catch (DirectoryNotEmptyException e) {
                    throw new IOException("cannot delete " + dir + ": not empty", e);
                }
                return FileVisitResult.CONTINUE;
            }
        });
    }

    private static final boolean POSIX = java.nio.file.FileSystems.getDefault().supportedFileAttributeViews().contains("posix");

    /**
     * A temporary file beside its destination, readable by others like any file the user writes
     * (rw-r--r-- before the umask), not the 0600 of {@link Files#createTempFile}: it becomes the
     * final file by rename.
     */
    public static Path tempFile(Path dir, String prefix, String suffix) throws IOException {
        if (!POSIX) return Files.createTempFile(dir, prefix, suffix);
        return Files.createTempFile(dir, prefix, suffix, java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
                java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--")));
    }

    /** A temporary directory that becomes an output directory by rename (rwxr-xr-x before the umask). */
    public static Path tempDirectory(Path parent, String prefix) throws IOException {
        if (!POSIX) return Files.createTempDirectory(parent, prefix);
        return Files.createTempDirectory(parent, prefix, java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
                java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x")));
    }
}
