package io.lora4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lora4j.data.ChatTemplate;
import org.junit.jupiter.api.Test;

/** The Modelfile's Go templates carry the same turn markers as lora4j's Jinja built-ins, and its stops end those turns. */
class OllamaModelfileTest {

    @Test
    void everyBuiltinHasAGoTemplateWithItsMarkers() {
        for (ChatTemplate.Builtin b : ChatTemplate.Builtin.values()) {
            ChatTemplate.Markers m = b.markers("</s>");
            String go = OllamaModelfile.goTemplate(b, "</s>");
            assertTrue(go.contains(m.response()), b + ": response marker " + m.response());
            assertTrue(go.contains(m.turnEnd()), b + ": turn end " + m.turnEnd());
            assertEquals(count(go, "{{"), count(go, "}}"), b + ": balanced actions");
            assertTrue(OllamaModelfile.stops(b, "</s>").contains(m.turnEnd()), b + ": stops at " + m.turnEnd());
        }
    }

    @Test
    void modelfileLines() {
        String mf = OllamaModelfile.render("./m.gguf", "./a.gguf", ChatTemplate.Builtin.CHATML, "</s>");
        assertTrue(mf.contains("\nFROM ./m.gguf\nADAPTER ./a.gguf\nTEMPLATE \"\"\"{{- range .Messages }}<|im_start|>"), mf);
        assertTrue(mf.endsWith("PARAMETER stop \"<|im_end|>\"\nPARAMETER stop \"<|im_start|>\"\n"), mf);
        assertEquals("# written by lora4j export\nFROM ./m.gguf\nPARAMETER stop \"</s>\"\n", OllamaModelfile.render("./m.gguf", null, null, "</s>"));
    }

    private static int count(String s, String sub) {
        int n = 0;
        for (int i = s.indexOf(sub); i >= 0; i = s.indexOf(sub, i + 1)) n++;
        return n;
    }
}
