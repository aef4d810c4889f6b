package io.lora4j.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A liblora4j built without a CUDA compiler: the device probe answers 0 devices and every other
 * lora4j_cuda_* entry of the bindings exists (the stubs scripts/gen_nocuda.py generates from the
 * headers at build time) and throws "built without CUDA", naming itself.
 */
public class NoCudaStubsTest {
    /** Arguments for a call that must reach a stub: zero scalars, null pointers (the stub throws before anything could read them). */
    public static Object[] zeroArguments(Method m) {
        Class<?>[] types = m.getParameterTypes();
        Object[] args = new Object[types.length]; // a Pointer stays null
        for (int i = 0; i < args.length; i++) {
            if (types[i] == long.class) args[i] = 0L;
            else if (types[i] == int.class) args[i] = 0;
            else if (types[i] == float.class) args[i] = 0f;
            else if (types[i] == double.class) args[i] = 0.0;
        }
        return args;
    }

    @Test
    void everyCudaEntryThrowsBuiltWithoutCuda() throws IllegalAccessException {
        assumeTrue(Lora4jNative.lora4j_built_with_cuda() == 0, "this liblora4j was built with CUDA (or its emulator)");
        assertEquals(0, Lora4jNative.lora4j_cuda_device_count());
        List<String> checked = new ArrayList<>();
        for (Class<?> c : new Class<?>[] {Lora4jNative.class, Lora4jOpsNative.class}) {
            for (Method m : c.getDeclaredMethods()) {
                if (!Modifier.isNative(m.getModifiers()) || !m.getName().startsWith("lora4j_cuda_")) continue;
                if (m.getName().equals("lora4j_cuda_device_count")) continue;
                try {
                    m.invoke(null, zeroArguments(m));
                    fail(m.getName() + " returned instead of throwing");
                } catch (InvocationTargetException e) {
                    String msg = String.valueOf(e.getCause().getMessage());
                    String entry = m.getName().substring("lora4j_".length());
                    assertTrue(msg.contains(entry + ": this liblora4j was built without CUDA"), m.getName() + ": " + msg);
                }
                checked.add(m.getName());
            }
        }
        assertTrue(checked.size() > 40, "the bindings declare the CUDA entries, found " + checked);
    }
}
