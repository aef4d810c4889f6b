package io.lora4j.io;

/**
 * The one way error messages quote text taken from a file (a name, a token piece, a JSON key):
 * in single quotes, with control characters, backslashes and quotes escaped, so that a message
 * stays one line whatever the file holds. {@code \n \r \t} keep their usual escapes; other
 * controls (C0, DEL, C1) and lone surrogates become {@code \}{@code uXXXX}; text longer than
 * {@value #MAX_CHARS} characters is cut with "...".
 */
public final class Quoted {
    /** Longest quoted text kept whole: a fuzzed 100 000-char key must not become a 100 000-char message. */
    public static final int MAX_CHARS = 200;

    private Quoted() {}

    /** {@code 'text'} with its control characters escaped (null gives {@code null}). */
    public static String of(String text) {
        if (text == null) return "null";
        StringBuilder sb = new StringBuilder(Math.min(text.length(), MAX_CHARS) + 8).append('\'');
        int n = Math.min(text.length(), MAX_CHARS);
        for (int i = 0; i < n; i++) {
            char c = text.charAt(i);
            switch (c) {
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                case '\\': sb.append("\\\\"); break;
                case '\'': sb.append("\\'"); break;
                default:
                    boolean lone = Character.isSurrogate(c) && !(Character.isHighSurrogate(c) && i + 1 < n
                            && Character.isLowSurrogate(text.charAt(i + 1))) && !(Character.isLowSurrogate(c) && i > 0
                            && Character.isHighSurrogate(text.charAt(i - 1)));
                    if (Character.isISOControl(c) || lone || c == '\u2028' || c == '\u2029')
                        sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
            }
        }
        if (text.length() > MAX_CHARS) sb.append("...");
        return sb.append('\'').toString();
    }
}
