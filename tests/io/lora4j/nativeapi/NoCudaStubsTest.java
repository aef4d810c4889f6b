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
class NoCudaStubsTest {
    private static Object zero(Class<?> t) {
        if (t == long.class) return 0L;
        if (t == int.class) return 0;
        if (t == float.class) return 0f;
        if (t == double.class) return 0.0;
        return null; // a Pointer: the stub throws before anything could read it
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
                Object[] args = new Object[m.getParameterCount()];
                for (int i = 0; i < args.length; i++) args[i] = zero(m.getParameterTypes()[i]);
                try {
                    m.invoke(null, args);
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
