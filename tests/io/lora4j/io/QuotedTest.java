package io.lora4j.io;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

class QuotedTest {
    @Test
    void controlCharactersBecomeEscapesAndTheMessageStaysOneLine() {
        assertEquals("'\\n<0x4E>\\t'", Quoted.of("\n<0x4E>\t"));
        assertEquals("'a\\u0000b\\u007fc\\u0085'", Quoted.of("a\u0000b\u007fc\u0085"));
        assertEquals("'it\\'s \\\\ here'", Quoted.of("it's \\ here"));
        assertEquals("'\\u2028'", Quoted.of("\u2028"));
        for (String s : new String[] {"\r\n", "x\u2029y", "\ud800", "\udc00z"}) {
            String q = Quoted.of(s);
            assertFalse(q.lines().count() > 1 || q.chars().anyMatch(c -> Character.isISOControl(c) || Character.isSurrogate((char) c)), q);
        }
    }

    @Test
    void pairedSurrogatesAndPlainTextStayAsTheyAre() {
        assertEquals("'▁the 😀'", Quoted.of("▁the 😀"));
        assertEquals("null", Quoted.of(null));
    }

    @Test
    void longTextIsCut() {
        String q = Quoted.of("x".repeat(100_000));
        assertEquals(Quoted.MAX_CHARS + 5, q.length());
        assertTrue(q.endsWith("...'"));
    }
}
