package io.lora4j.dist;

import io.lora4j.ops.Mpi;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * How the processes of a torchrun-style start ({@code RANK}, {@code WORLD_SIZE},
 * {@code MASTER_ADDR}, {@code MASTER_PORT}; no MPI launcher) become one MPI world. Like torch's
 * TCPStore, the rendezvous is a bootstrap, not a transport: a few lines of text over TCP at
 * MASTER_ADDR:MASTER_PORT hand rank 0's MPI port name (and the address of the Open MPI name server
 * the connection needs) to the others; every collective then runs on MPI.
 *
 * <p>Steps: rank 0 listens on MASTER_PORT; every other rank connects (retrying until the
 * deadline, since rank 0 may start later) and says its rank and the world size, which rank 0
 * checks. Open MPI 4 joins separately started processes only through its name server
 * ({@code ompi-server}: "an operation involving MPI_Connect and/or MPI_Accept that spans multiple
 * invocations of mpirun ... requires the support of the ompi-server tool"), so rank 0 starts one
 * and sends its URI; each process then starts MPI as a singleton pointed at it. Rank 0 opens an
 * MPI port and admits the others one at a time in rank order (it sends rank k the port name; the
 * members so far accept collectively; rank k connects; the two merge with rank k last), so that
 * the joined communicator's ranks are the RANK variables.
 *
 * <p>Bounded time: every socket step waits at most the deadline. MPI's accept and connect cannot be
 * given one; a process that dies between receiving the port name and connecting leaves the others
 * in accept until their launcher ends them.
 */
final class Rendezvous {
    /** First words of every process's greeting: the protocol and its version. */
    private static final String HELLO = "lora4j-rendezvous 1";
    private static final long RETRY_MS = 100;

    private Rendezvous() {}

    /**
     * Joins this process to the world {@code world} describes (a torchrun-style world of more than
     * one rank), waiting at most {@code timeoutSeconds} for the others at the rendezvous. On return,
     * {@link Mpi#rank()} and {@link Mpi#size()} are this process's RANK and WORLD_SIZE.
     *
     * @throws IllegalStateException naming MASTER_ADDR:MASTER_PORT when the rendezvous fails or
     *                               times out, or a process disagrees on the world
     * @throws Mpi.MpiException      when MPI cannot start or join
     */
    static void join(World world, double timeoutSeconds) {
        long deadline = System.nanoTime() + (long) (timeoutSeconds * 1e9);
        String where = world.masterAddr() + ":" + world.masterPort();
        try {
            if (world.isLeader()) lead(world, deadline, where);
            else follow(world, deadline, where);
        } catch (IOException e) {
            throw new IllegalStateException("rendezvous at " + where + ": " + e.getMessage(), e);
        }
    }

    /** Rank 0: accepts the others, starts the name server, opens the port and admits them in rank order. */
    private static void lead(World world, long deadline, String where) throws IOException {
        int n = world.size();
        Peer[] peers = new Peer[n];
        try (ServerSocket server = new ServerSocket()) {
            server.setReuseAddress(true);
            server.bind(new InetSocketAddress(world.masterPort()));
            for (int joined = 1; joined < n; joined++) {
                Socket s = acceptBefore(server, deadline, where, joined - 1, n);
                Peer p = new Peer(s);
                String hello = p.readLine(deadline);
                String[] w = hello.split(" ");
                String bad = null;
                int rank = -1;
                if (!hello.startsWith(HELLO + " ") || w.length != 4) bad = "greeting '" + hello + "' is not lora4j's (another program on this port?)";
                else {
                    rank = parse(w[2]);
                    int size = parse(w[3]);
                    if (size != n) bad = "a process says WORLD_SIZE=" + w[3] + ", rank 0 has WORLD_SIZE=" + n;
                    else if (rank < 1 || rank >= n) bad = "a process says RANK=" + w[2] + ", which is not in 1.." + (n - 1);
                    else if (peers[rank] != null) bad = "two processes say RANK=" + rank;
                }
                if (bad != null) {
                    p.send("error " + bad);
                    p.close();
                    for (Peer q : peers) if (q != null) q.sendQuietly("error rank 0 stopped: " + bad);
                    throw new IllegalStateException("rendezvous at " + where + ": " + bad);
                }
                peers[rank] = p;
            }
        }
        int admitted = 0;
        try (NameServer names = NameServer.start(deadline, where)) {
            for (int k = 1; k < n; k++) peers[k].send("server " + names.uri);
            Mpi.initWithNameServer(names.uri);
            String port = Mpi.openPort();
            for (int k = 1; k < n; k++) {
                peers[k].send("port " + port);
                Mpi.joinAccept();
                admitted = k;
            }
            Mpi.closePort();
        } catch (IOException | RuntimeException e) {
            // the ranks still waiting for a line learn why, instead of only that the connection closed
            for (int k = admitted + 1; k < n; k++) peers[k].sendQuietly("error rank 0 failed: " + e.getMessage());
            throw e;
        } finally {
            for (Peer p : peers) if (p != null) p.close();
        }
    }

    /** Rank k > 0: greets rank 0, starts MPI with the name server's URI, connects on its turn, then admits the later ranks. */
    private static void follow(World world, long deadline, String where) throws IOException {
        try (Peer p = new Peer(connectBefore(world, deadline, where))) {
            p.send(HELLO + " " + world.rank() + " " + world.size());
            Mpi.initWithNameServer(expect(p.readLine(deadline), "server", where));
            Mpi.joinConnect(expect(p.readLine(deadline), "port", where));
        }
        for (int k = world.rank() + 1; k < world.size(); k++) Mpi.joinAccept();
    }

    /** The rest of {@code line} after "{@code word} "; an "error ..." line from rank 0 is thrown. */
    private static String expect(String line, String word, String where) {
        if (line.startsWith("error ")) throw new IllegalStateException("rendezvous at " + where + ": rank 0 says: " + line.substring(6));
        if (!line.startsWith(word + " ")) throw new IllegalStateException("rendezvous at " + where + ": expected '" + word + " ...' from rank 0, got '" + line + "'");
        return line.substring(word.length() + 1);
    }

    private static int parse(String s) {
        try {
            return Integer.parseInt(s);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static Socket acceptBefore(ServerSocket server, long deadline, String where, int have, int n) throws IOException {
        long left = (deadline - System.nanoTime()) / 1_000_000;
        if (left <= 0) throw timeout(where, have, n);
        server.setSoTimeout((int) Math.min(Integer.MAX_VALUE, left));
        try {
            return server.accept();
        } catch (SocketTimeoutException e) {
            throw timeout(where, have, n);
        }
    }

    private static IllegalStateException timeout(String where, int have, int n) {
        return new IllegalStateException("rendezvous at " + where + ": " + have + " of the other " + (n - 1)
                + " rank(s) arrived before the deadline (a rank did not start, or has other MASTER_ADDR/MASTER_PORT)");
    }

    private static Socket connectBefore(World world, long deadline, String where) throws IOException {
        IOException last = null;
        while (System.nanoTime() < deadline) {
            Socket s = new Socket();
            try {
                s.connect(new InetSocketAddress(world.masterAddr(), world.masterPort()), (int) RETRY_MS * 10);
                return s;
            } catch (IOException e) { // rank 0 not listening yet
                s.close();
                last = e;
            }
            try {
                Thread.sleep(RETRY_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            }
        }
        throw new IllegalStateException("rendezvous at " + where + ": rank 0 did not answer before the deadline"
                + (last != null ? " (" + last.getMessage() + ")" : ""));
    }

    /** One TCP connection of the rendezvous, line by line. */
    private static final class Peer implements AutoCloseable {
        private final Socket socket;
        private final BufferedReader in;
        private final Writer out;

        Peer(Socket s) throws IOException {
            socket = s;
            in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
            out = new OutputStreamWriter(s.getOutputStream(), StandardCharsets.UTF_8);
        }

        void send(String line) throws IOException {
            out.write(line + "\n");
            out.flush();
        }

        void sendQuietly(String line) {
            try {
                send(line);
            } catch (IOException ignored) { // best effort: that peer is gone already
            }
        }

        String readLine(long deadline) throws IOException {
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0) throw new SocketTimeoutException("no answer before the deadline");
            socket.setSoTimeout((int) Math.min(Integer.MAX_VALUE, left));
            String line = in.readLine();
            if (line == null) throw new IOException("the other side closed the connection");
            return line;
        }

        @Override
        public void close() {
            try {
                socket.close();
            } catch (IOException ignored) { // closing
            }
        }
    }

    /** Open MPI's name server ({@code ompi-server}), started by rank 0 for the time of the join. */
    private static final class NameServer implements AutoCloseable {
        final String uri;
        private final Process process;
        private final Path file;

        private NameServer(Process process, Path file, String uri) {
            this.process = process;
            this.file = file;
            this.uri = uri;
        }

        static NameServer start(long deadline, String where) throws IOException {
            Path file = Files.createTempFile("lora4j-ompi-server", ".uri");
            Files.delete(file);
            Process p;
            try {
                p = new ProcessBuilder("ompi-server", "--no-daemonize", "--report-uri", file.toString())
                        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            } catch (IOException e) {
                throw new IllegalStateException("a torchrun-style start needs Open MPI's ompi-server (package openmpi-bin) on rank 0's PATH: " + e.getMessage(), e);
            }
            NameServer ns = null;
            try {
                while (ns == null) {
                    if (Files.isRegularFile(file)) {
                        String uri = Files.readString(file, StandardCharsets.UTF_8).strip();
                        if (!uri.isEmpty()) ns = new NameServer(p, file, uri);
                    }
                    if (ns == null && !p.isAlive())
                        throw new IllegalStateException("rendezvous at " + where + ": ompi-server exited with status " + p.exitValue() + " before reporting its URI");
                    if (ns == null && System.nanoTime() > deadline)
                        throw new IllegalStateException("rendezvous at " + where + ": ompi-server did not report its URI before the deadline");
                    if (ns == null) Thread.sleep(20);
                }
                return ns;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            } finally {
                if (ns == null) {
                    p.destroyForcibly();
                    Files.deleteIfExists(file);
                }
            }
        }

        /** Once every process joined, nobody looks names up any more: the server goes. */
        @Override
        public void close() {
            process.destroy();
            try {
                if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly();
                Files.deleteIfExists(file);
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            } catch (IOException ignored) { // a temp file left behind
            }
        }
    }
}
