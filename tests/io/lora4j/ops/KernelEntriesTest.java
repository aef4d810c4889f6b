package io.lora4j.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.lora4j.nativeapi.Lora4jNative;
import io.lora4j.nativeapi.Lora4jOpsNative;
import io.lora4j.nativeapi.NoCudaStubsTest;
import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.bytedeco.javacpp.annotation.Platform;
import org.junit.jupiter.api.Test;

/**
 * The generated marshalling layer (scripts/gen_bindings.py) against the headers it comes from: it is
 * not stale, every op declared with both twins has its {@link KernelEntries} method, and the CUDA
 * implementation calls each op's own CUDA entry. The headers are read here with a parser of their own
 * (names only), so a declaration the generator failed to see shows as a missing entry.
 */
class KernelEntriesTest {
    private static final Path INCLUDE = Path.of("native", "include");
    private static final Pattern ENTRY = Pattern.compile("\\b(lora4j_\\w+)\\s*\\(");

    @Test
    void generatedFilesAreUpToDate() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("python3", "scripts/gen_bindings.py", "--check").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "gen_bindings.py --check did not finish");
        assertEquals(0, p.exitValue(), "scripts/gen_bindings.py --check: " + out);
    }

    /** Entry names declared (not mentioned in comments) in the headers Lora4jOpsNative binds. */
    private static Set<String> declaredEntries() throws IOException {
        Set<String> names = new TreeSet<>();
        for (String header : Lora4jOpsNative.class.getAnnotation(Platform.class).include()) {
            String text = Files.readString(INCLUDE.resolve(header));
            text = text.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\\n]*", "");
            Matcher m = ENTRY.matcher(text);
            while (m.find()) names.add(m.group(1));
        }
        assertTrue(names.size() > 80, "declarations found in the op headers: " + names);
        return names;
    }

    /** lora4j_nf4_dq_matmul_fwd -> nf4DqMatmulFwd, the generator's naming. */
    private static String methodName(String cpuEntry) {
        String[] words = cpuEntry.substring("lora4j_".length()).split("_");
        StringBuilder b = new StringBuilder(words[0]);
        for (int i = 1; i < words.length; i++) b.append(Character.toUpperCase(words[i].charAt(0))).append(words[i].substring(1));
        return b.toString();
    }

    @Test
    void everyOpWithBothTwinsHasOneEntryAndEveryEntryIsBound() throws IOException {
        Set<String> declared = declaredEntries();
        Set<String> bound = Arrays.stream(Lora4jOpsNative.class.getDeclaredMethods())
                .filter(m -> Modifier.isNative(m.getModifiers())).map(Method::getName).collect(Collectors.toCollection(TreeSet::new));
        assertEquals(declared, bound, "Lora4jOpsNative binds exactly the entries of its headers");

        TreeMap<String, Integer> expected = new TreeMap<>(); // method -> the CPU entry's parameter count
        for (String cuda : declared) {
            if (!cuda.startsWith("lora4j_cuda_")) continue;
            String cpu = "lora4j_" + cuda.substring("lora4j_cuda_".length());
            if (!declared.contains(cpu)) continue;
            int cpuParams = bindingOf(cpu).getParameterCount();
            assertEquals(cpuParams + 1, bindingOf(cuda).getParameterCount(), cuda + " takes " + cpu + "'s parameters and a stream");
            expected.put(methodName(cpu), cpuParams);
        }
        TreeMap<String, Integer> actual = new TreeMap<>();
        for (Method m : KernelEntries.class.getDeclaredMethods()) actual.put(m.getName(), m.getParameterCount());
        assertEquals(expected, actual, "KernelEntries: one method per op with a CPU entry and a CUDA twin");
        assertTrue(actual.size() >= 40, "ops with both twins: " + actual.keySet());
    }

    private static Method bindingOf(String entry) {
        return Arrays.stream(Lora4jOpsNative.class.getDeclaredMethods()).filter(m -> m.getName().equals(entry)).findFirst()
                .orElseThrow(() -> new AssertionError(entry + " is not bound in Lora4jOpsNative"));
    }

    /** Each method of KernelEntries.Cuda reaches its own lora4j_cuda_ entry: on a no-CUDA build its stub names it. */
    @Test
    void eachCudaEntryCallsItsOwnTwin() throws IllegalAccessException {
        KernelEntries cuda = new KernelEntries.Cuda(null);
        assumeTrue(Lora4jNative.lora4j_built_with_cuda() == 0, "this liblora4j was built with CUDA (or its emulator)");
        for (Method m : KernelEntries.class.getDeclaredMethods()) {
            try {
                m.invoke(cuda, NoCudaStubsTest.zeroArguments(m));
                fail(m.getName() + " returned instead of reaching a no-CUDA stub");
            } catch (InvocationTargetException e) {
                String msg = String.valueOf(e.getCause().getMessage());
                String entry = "cuda_" + snake(m.getName());
                assertTrue(msg.contains(entry + ": this liblora4j was built without CUDA"), m.getName() + " -> " + msg);
            }
        }
    }

    /** nf4DqMatmulFwd -> nf4_dq_matmul_fwd. */
    private static String snake(String method) {
        return method.replaceAll("([A-Z])", "_$1").toLowerCase();
    }
}
