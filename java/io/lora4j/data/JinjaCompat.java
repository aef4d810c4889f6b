package io.lora4j.data;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import jinjava.javax.el.CompositeELResolver;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * What HF chat templates (Qwen2.5/Qwen3, Gemma 3, ...) use of Jinja2 and Python that jinjava
 * lacks, added inside the sandbox:
 * <ul>
 * <li>Python's string methods {@code startswith}, {@code endswith}, {@code strip}, {@code lstrip},
 *     {@code rstrip}, {@code split}, {@code rsplit}, {@code replace}, {@code upper}, {@code lower},
 *     {@code title}, {@code capitalize} with Python's semantics (jinjava would otherwise call
 *     Java's {@code String.split}, a regex split that drops trailing empty strings, or fail);</li>
 * <li>two source rewrites where jinjava's parser differs from Jinja2's: a keyword argument's
 *     value is parenthesised ({@code namespace(i=messages|length - 1)}: jinjava binds the filter
 *     to {@code i=messages}), and {@code x[::-1]} becomes {@code (x|reverse)} (jinjava has no
 *     slice step).</li>
 * </ul>
 * {@code namespace()}, {@code set ns.attr}, loop controls and tests such as {@code is defined}
 * are jinjava's own.
 */
final class JinjaCompat {
    private JinjaCompat() {}

    /** The expression resolver: Python's string methods first, then jinjava's default. */
    static ELResolver resolver(ELResolver fallback) {
        CompositeELResolver r = new CompositeELResolver();
        r.add(new PyStringMethods());
        r.add(fallback);
        return r;
    }

    // ---- source rewrites ----------------------------------------------------------------------

    private static final Pattern REVERSED = Pattern.compile(
            "([A-Za-z_]\\w*(?:\\s*\\.\\s*[A-Za-z_]\\w*|\\[[^\\[\\]]*\\])*)\\s*\\[\\s*:\\s*:\\s*-\\s*1\\s*\\]");

    /**
     * {@code source} with the rewrites applied inside {@code {{ }}} and {@code {% %}} tags, and
     * Jinja2's whitespace control done here: a tag opened with {@code -} removes all whitespace
     * before it back to the previous tag, one closed with {@code -} all whitespace after it
     * (jinjava misses the {@code {{-} after a trimmed block tag).
     */
    static String rewrite(String source) {
        StringBuilder out = new StringBuilder(source.length() + 64);
        int i = 0, n = source.length();
        int textStart = 0; // where the text after the last tag begins in out
        while (i < n) {
            int open = nextTag(source, i);
            if (open < 0) {
                out.append(source, i, n);
                break;
            }
            out.append(source, i, open);
            char kind = source.charAt(open + 1);
            if (open + 2 < n && source.charAt(open + 2) == '-') {
                int e = out.length();
                while (e > textStart && Character.isWhitespace(out.charAt(e - 1))) e--;
                out.setLength(e);
            }
            int end;
            if (kind == '#') { // comment: copied as is
                end = source.indexOf("#}", open + 2);
                end = end < 0 ? n : end;
                out.append(source, open, Math.min(n, end + 2));
            } else {
                String close = kind == '{' ? "}}" : "%}";
                end = tagEnd(source, open + 2, close);
                String body = source.substring(open + 2, end);
                out.append(source, open, open + 2).append(keywordArguments(REVERSED.matcher(body).replaceAll("($1|reverse)")));
                if (end < n) out.append(source, end, end + 2);
            }
            i = Math.min(n, end + 2);
            if (end > open + 2 && end <= n && source.charAt(end - 1) == '-')
                while (i < n && Character.isWhitespace(source.charAt(i))) i++;
            textStart = out.length();
        }
        return out.toString();
    }

    private static int nextTag(String s, int from) {
        for (int i = from; i + 1 < s.length(); i++)
            if (s.charAt(i) == '{' && (s.charAt(i + 1) == '{' || s.charAt(i + 1) == '%' || s.charAt(i + 1) == '#')) return i;
        return -1;
    }

    /** The index of the closing delimiter of a tag body starting at {@code from}, skipping string literals. */
    private static int tagEnd(String s, int from, String close) {
        int i = from;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '\'' || c == '"') i = stringEnd(s, i);
            else if (s.startsWith(close, i)) return i;
            else i++;
        }
        return s.length();
    }

    /** The index after the string literal opening at {@code i}. */
    private static int stringEnd(String s, int i) {
        char q = s.charAt(i++);
        while (i < s.length() && s.charAt(i) != q) i += s.charAt(i) == '\\' ? 2 : 1;
        return Math.min(s.length(), i + 1);
    }

    /**
     * Wraps the value of every keyword argument of a call in parentheses: {@code f(a=x|g - 1)} ->
     * {@code f(a=(x|g - 1))}. A keyword argument is {@code identifier =} (not {@code ==}) at the
     * start of an argument of a parenthesis that follows a name, {@code )} or {@code ]}.
     */
    static String keywordArguments(String body) {
        StringBuilder out = new StringBuilder(body.length() + 16);
        // per open parenthesis: is it a call, and is a keyword value open (to close at , or ))
        List<boolean[]> stack = new ArrayList<>();
        int i = 0, n = body.length();
        boolean argStart = false;
        while (i < n) {
            char c = body.charAt(i);
            if (c == '\'' || c == '"') {
                int e = stringEnd(body, i);
                out.append(body, i, e);
                i = e;
                argStart = false;
                continue;
            }
            if (c == '(' || c == '[' || c == '{') {
                boolean call = c == '(' && callee(out);
                stack.add(new boolean[] {call, false});
                out.append(c);
                i++;
                argStart = call;
                continue;
            }
            if (c == ')' || c == ']' || c == '}' || c == ',') {
                boolean[] top = stack.isEmpty() ? null : stack.get(stack.size() - 1);
                if (top != null && top[1]) {
                    out.append(')');
                    top[1] = false;
                }
                if (c != ',' && !stack.isEmpty()) stack.remove(stack.size() - 1);
                out.append(c);
                i++;
                argStart = c == ',' && top != null && top[0];
                continue;
            }
            if (argStart && Character.isJavaIdentifierStart(c)) {
                int j = i;
                while (j < n && Character.isJavaIdentifierPart(body.charAt(j))) j++;
                int k = j;
                while (k < n && Character.isWhitespace(body.charAt(k))) k++;
                if (k < n && body.charAt(k) == '=' && (k + 1 >= n || body.charAt(k + 1) != '=')) {
                    out.append(body, i, k + 1).append('(');
                    stack.get(stack.size() - 1)[1] = true;
                    i = k + 1;
                    argStart = false;
                    continue;
                }
            }
            if (!Character.isWhitespace(c)) argStart = false;
            out.append(c);
            i++;
        }
        return out.toString();
    }

    /** True when the text before an opening parenthesis ends with a name, ')' or ']' (a call). */
    private static boolean callee(StringBuilder out) {
        int k = out.length() - 1;
        while (k >= 0 && Character.isWhitespace(out.charAt(k))) k--;
        if (k < 0) return false;
        char p = out.charAt(k);
        return Character.isJavaIdentifierPart(p) || p == ')' || p == ']';
    }

    // ---- Python string methods ----------------------------------------------------------------

    /** Python's str.isspace: Unicode White_Space (Java's isWhitespace misses the no-break spaces). */
    static boolean isPySpace(int c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == 0x85;
    }

    static String strip(String s, Object chars, boolean left, boolean right) {
        String set = chars == null ? null : String.valueOf(chars);
        int b = 0, e = s.length();
        if (left) while (b < e && (set == null ? isPySpace(s.charAt(b)) : set.indexOf(s.charAt(b)) >= 0)) b++;
        if (right) while (e > b && (set == null ? isPySpace(s.charAt(e - 1)) : set.indexOf(s.charAt(e - 1)) >= 0)) e--;
        return s.substring(b, e);
    }

    /** Python's str.split(sep=None, maxsplit=-1): literal separator, empty strings kept; None splits on whitespace runs. */
    static List<String> split(String s, Object sep, int max) {
        List<String> out = new ArrayList<>();
        if (sep == null) {
            int i = 0, n = s.length();
            while (true) {
                while (i < n && isPySpace(s.charAt(i))) i++;
                if (i >= n) break;
                if (max >= 0 && out.size() == max) {
                    out.add(strip(s.substring(i), null, false, true));
                    break;
                }
                int j = i;
                while (j < n && !isPySpace(s.charAt(j))) j++;
                out.add(s.substring(i, j));
                i = j;
            }
            return out;
        }
        String d = String.valueOf(sep);
        if (d.isEmpty()) throw new IllegalArgumentException("empty separator");
        int from = 0;
        while (max < 0 || out.size() < max) {
            int k = s.indexOf(d, from);
            if (k < 0) break;
            out.add(s.substring(from, k));
            from = k + d.length();
        }
        out.add(s.substring(from));
        return out;
    }

    /** Python's str.rsplit(sep, maxsplit) for a given separator. */
    static List<String> rsplit(String s, Object sep, int max) {
        if (sep == null || max < 0) return split(s, sep, max);
        String d = String.valueOf(sep);
        List<String> out = new ArrayList<>();
        int end = s.length();
        while (out.size() < max) {
            int k = s.lastIndexOf(d, end - d.length());
            if (k < 0 || end - d.length() < 0) break;
            out.add(0, s.substring(k + d.length(), end));
            end = k;
        }
        out.add(0, s.substring(0, end));
        return out;
    }

    private static boolean affix(String s, Object arg, boolean prefix) {
        if (arg instanceof Iterable<?> options) {
            for (Object o : options) if (affix(s, o, prefix)) return true;
            return false;
        }
        String a = String.valueOf(arg);
        return prefix ? s.startsWith(a) : s.endsWith(a);
    }

    private static int count(Object o) {
        if (o instanceof Number n) return n.intValue();
        return Integer.parseInt(String.valueOf(o).trim());
    }

    /** Resolves Python's string methods on java.lang.String bases; anything else falls through. */
    private static final class PyStringMethods extends ELResolver {
        @Override
        public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
            if (!(base instanceof String s) || method == null) return null;
            Object[] p = params == null ? new Object[0] : params;
            Object a0 = p.length > 0 ? p[0] : null, a1 = p.length > 1 ? p[1] : null;
            Object result;
            switch (method.toString()) {
                case "startswith": result = p.length == 1 && affix(s, a0, true); break;
                case "endswith": result = p.length == 1 && affix(s, a0, false); break;
                case "strip": result = strip(s, a0, true, true); break;
                case "lstrip": result = strip(s, a0, true, false); break;
                case "rstrip": result = strip(s, a0, false, true); break;
                case "split": result = split(s, a0, a1 == null ? -1 : count(a1)); break;
                case "rsplit": result = rsplit(s, a0, a1 == null ? -1 : count(a1)); break;
                case "replace":
                    if (p.length < 2) return null;
                    if (p.length > 2) {
                        int left = count(p[2]);
                        String from = String.valueOf(a0), to = String.valueOf(a1);
                        StringBuilder sb = new StringBuilder();
                        int i = 0;
                        while (left-- > 0 && !from.isEmpty()) {
                            int k = s.indexOf(from, i);
                            if (k < 0) break;
                            sb.append(s, i, k).append(to);
                            i = k + from.length();
                        }
                        result = sb.append(s.substring(i)).toString();
                    } else {
                        result = s.replace(String.valueOf(a0), String.valueOf(a1));
                    }
                    break;
                case "upper": result = s.toUpperCase(java.util.Locale.ROOT); break;
                case "lower": result = s.toLowerCase(java.util.Locale.ROOT); break;
                case "capitalize": result = s.isEmpty() ? s : s.substring(0, 1).toUpperCase(java.util.Locale.ROOT) + s.substring(1).toLowerCase(java.util.Locale.ROOT); break;
                case "title": {
                    StringBuilder sb = new StringBuilder(s.length());
                    boolean prevCased = false;
                    for (int i = 0; i < s.length(); i++) {
                        char c = s.charAt(i);
                        sb.append(prevCased ? Character.toLowerCase(c) : Character.toTitleCase(c));
                        prevCased = Character.isLetter(c);
                    }
                    result = sb.toString();
                    break;
                }
                default: return null;
            }
            context.setPropertyResolved(true);
            return result;
        }

        @Override public Class<?> getCommonPropertyType(ELContext context, Object base) { return null; }
        @Override public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) { return null; }
        @Override public Class<?> getType(ELContext context, Object base, Object property) { return null; }
        @Override public Object getValue(ELContext context, Object base, Object property) { return null; }
        @Override public boolean isReadOnly(ELContext context, Object base, Object property) { return true; }
        @Override public void setValue(ELContext context, Object base, Object property, Object value) {}
    }
}
