package io.lora4j.data;

import io.lora4j.io.TextFiles;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import io.lora4j.io.FormatException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.AbstractList;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;

/**
 * A chat template: a Jinja program that turns a conversation into the text a model was trained
 * on (HF's {@code tokenizer_config.json} {@code chat_template}), rendered with jinjava in a
 * sandbox, plus the markers that {@link ResponseMasker} needs.
 *
 * <h2>Sandbox</h2>
 * Templates come with downloaded models, so a render may not touch files or classes and must
 * end: {@code include}/{@code import} find nothing, Java methods other than jinjava's Python-ish
 * ones are not callable, and every render is bounded by {@link #MAX_NODES} rendered nodes,
 * {@link #MAX_LOOP_ITERATIONS} {@code range} items, {@link #RENDER_TIMEOUT_NANOS} of wall time
 * and an output of at most {@link #BASE_OUTPUT_CHARS} plus {@link #OUTPUT_PER_CONTENT_CHAR} times
 * the conversation's own characters. Exceeding one is a {@link TemplateException} saying which.
 *
 * <h2>Variables</h2>
 * {@code messages} (role, content), {@code bos_token}, {@code eos_token}, {@code pad_token},
 * {@code unk_token} (empty strings when the tokenizer has none), {@code add_generation_prompt};
 * the function {@code raise_exception(msg)} fails the render with {@code msg}. Python's string
 * methods and the Jinja2 syntax that jinjava parses differently come from {@link JinjaCompat}.
 */
public final class ChatTemplate {
    /** Rendered nodes per render. */
    public static final long MAX_NODES = 2_000_000;
    /** Items produced by {@code range(...)} per render (the loops a template can make without data). */
    public static final long MAX_LOOP_ITERATIONS = 1_000_000;
    /** Wall time per render, checked at every node and loop item. */
    public static final long RENDER_TIMEOUT_NANOS = 5_000_000_000L;
    /** Output allowance of every render, plus {@link #OUTPUT_PER_CONTENT_CHAR} per character of message content. */
    public static final long BASE_OUTPUT_CHARS = 64 * 1024;
    public static final long OUTPUT_PER_CONTENT_CHAR = 4;

    /** A render that failed: a template error, {@code raise_exception}, or a sandbox limit. */
    public static final class TemplateException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        TemplateException(String message) {
            // one line: Jinjava quotes template source, newlines included, into its messages
            super(oneLine(message));
        }

        private static String oneLine(String m) {
            if (m == null) return "chat template error";
            String s = m.replace("\r", "\\r").replace("\n", "\\n");
            return s.length() > 500 ? s.substring(0, 500) + "..." : s;
        }
    }

    /**
     * Where the trained part of a rendered conversation begins and ends.
     *
     * @param instruction text that starts a user turn (ends a trained span)
     * @param response    text right before assistant content (a trained span starts after it)
     * @param turnEnd     text that closes an assistant turn (EOS or an end-of-turn token, trained
     *                    with the turn); empty when the template has none
     * @param alwaysAddsGenerationPrompt the template appends {@code response} even without
     *                    add_generation_prompt (the Llama 3 base tokenizer_config's template does):
     *                    training renders drop that trailing header
     */
    public record Markers(String instruction, String response, String turnEnd, boolean alwaysAddsGenerationPrompt) {}

    /** Built-in templates, for models whose tokenizer has no chat_template (config {@code chat_template: NAME}). */
    public enum Builtin {
        LLAMA_3("llama-3", "<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
                "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + (message['content'] | trim) + '<|eot_id|>' }}{% endfor %}"
                        + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
        GEMMA("gemma", "<start_of_turn>user\n", "<start_of_turn>model\n", "<end_of_turn>",
                "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = (messages[0]['content'] | trim) + '\n\n' %}{% set loop_messages = messages[1:] %}"
                        + "{% else %}{% set sys = '' %}{% set loop_messages = messages %}{% endif %}"
                        + "{% for message in loop_messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
                        + "{{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' }}{% endfor %}"
                        + "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"),
        CHATML("chatml", "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>",
                "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
                        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
        /** Unsloth's alpaca chat template (multi-turn: every response ends with EOS). */
        ALPACA("alpaca", "### Instruction:\n", "### Response:\n", null,
                "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% set loop_messages = messages[1:] %}"
                        + "{% else %}{{ 'Below are some instructions that describe some tasks. Write responses that appropriately complete each request.\n\n' }}{% set loop_messages = messages %}{% endif %}"
                        + "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
                        + "{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}"
                        + "{% else %}{{ raise_exception('alpaca: only the first message may be a system message') }}{% endif %}{% endfor %}"
                        + "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"),
        /** Meta's Llama 2 chat format: {@code <s>[INST] <<SYS>>...<</SYS>> user [/INST] answer </s>}. */
        LLAMA_2("llama-2", "[INST]", "[/INST]", null,
                "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set sys = '<<SYS>>\n' + (messages[0]['content'] | trim) + '\n<</SYS>>\n\n' %}"
                        + "{% else %}{% set loop_messages = messages %}{% set sys = '' %}{% endif %}"
                        + "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + (sys if loop.first else '') + (message['content'] | trim) + ' [/INST]' }}"
                        + "{% elif message['role'] == 'assistant' %}{{ ' ' + (message['content'] | trim) + ' ' + eos_token }}"
                        + "{% else %}{{ raise_exception('llama-2: only the first message may be a system message') }}{% endif %}{% endfor %}"),
        /** Mistral Instruct v0.1: {@code <s>[INST] user [/INST]answer</s>[INST] ...}. */
        MISTRAL("mistral", "[INST]", "[/INST]", null,
                "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
                        + "{% else %}{% set sys = '' %}{% set loop_messages = messages %}{% endif %}"
                        + "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + (sys if loop.first else '') + message['content'] + ' [/INST]' }}"
                        + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
                        + "{% else %}{{ raise_exception('mistral: only the first message may be a system message') }}{% endif %}{% endfor %}");

        private final String key, instruction, response, turnEnd, source;

        Builtin(String key, String instruction, String response, String turnEnd, String source) {
            this.key = key;
            this.instruction = instruction;
            this.response = response;
            this.turnEnd = turnEnd;
            this.source = source;
        }

        /** The config name, e.g. "llama-3". */
        public String key() {
            return key;
        }

        /** The Jinja source. */
        public String source() {
            return source;
        }

        /** The documented markers (turn end: the given EOS string where the template ends turns with EOS). */
        public Markers markers(String eosToken) {
            return new Markers(instruction, response, turnEnd != null ? turnEnd : eosToken, false);
        }

        /** Parses "llama-3", "llama3", "gemma", "chatml", "alpaca", "llama-2", "mistral" (case and -/_ insensitive). */
        public static Optional<Builtin> parse(String name) {
            String k = name.trim().toLowerCase(Locale.ROOT).replace("_", "").replace("-", "").replace(".", "");
            for (Builtin b : values()) if (b.key.replace("-", "").equals(k)) return Optional.of(b);
            switch (k) {
                case "llama31": case "llama32": case "llama33": return Optional.of(LLAMA_3);
                case "gemma2": case "gemma3": return Optional.of(GEMMA);
                case "llama": return Optional.of(LLAMA_2);
                default: return Optional.empty();
            }
        }

        static String names() {
            StringBuilder sb = new StringBuilder();
            for (Builtin b : values()) sb.append(sb.length() == 0 ? "" : ", ").append(b.key);
            return sb.toString();
        }
    }

    /** The tokens a template may name. */
    public record Tokens(String bos, String eos, String pad, String unk) {
        public Tokens {
            bos = bos == null ? "" : bos;
            eos = eos == null ? "" : eos;
            pad = pad == null ? "" : pad;
            unk = unk == null ? "" : unk;
        }
    }

    private final String name, source;
    /** The source as jinjava parses it ({@link JinjaCompat#rewrite}). */
    private final String compiled;
    private final Tokens tokens;
    private final Builtin builtin;
    private final Jinjava jinjava;
    private Markers markers;

    private ChatTemplate(String name, String source, Tokens tokens, Builtin builtin) {
        this.name = name;
        this.source = source.endsWith("\r\n") ? source.substring(0, source.length() - 2)
                : source.endsWith("\n") ? source.substring(0, source.length() - 1) : source;
        this.compiled = JinjaCompat.rewrite(this.source);
        this.tokens = tokens;
        this.builtin = builtin;
        this.jinjava = sandbox();
    }

    /** A built-in template. */
    public static ChatTemplate builtin(Builtin b, Tokens tokens) {
        return new ChatTemplate(b.key(), b.source(), tokens, b);
    }

    /** A Jinja template (HF chat_template syntax). */
    public static ChatTemplate jinja(String name, String source, Tokens tokens) {
        return new ChatTemplate(name, source, tokens, null);
    }

    /**
     * The {@code chat_template} of a model: {@code chat_template.jinja} in the tokenizer's directory,
     * else the {@code chat_template} of its {@code tokenizer_config.json} (a string, or a list of
     * {name, template} of which "default" is taken).
     *
     * @param tokenizerPath the tokenizer file or the model directory
     * @param tokens        tokens for the template's variables where tokenizer_config.json names none
     * @return empty when there is no template
     * @throws FormatException for an unreadable tokenizer_config.json
     */
    public static Optional<ChatTemplate> fromModel(Path tokenizerPath, Tokens tokens) throws IOException {
        Path dir = Files.isDirectory(tokenizerPath) ? tokenizerPath : tokenizerPath.toAbsolutePath().getParent();
        if (dir == null) return Optional.empty();
        Path cfg = dir.resolve("tokenizer_config.json");
        Tokens t = tokens;
        String template = null;
        String from = null;
        if (Files.isRegularFile(cfg)) {
            JsonObject o;
            try {
                JsonElement e = JsonParser.parseString(TextFiles.readUtf8(cfg));
                if (!e.isJsonObject()) throw new FormatException(cfg, "not a JSON object");
                o = e.getAsJsonObject();
            } catch (JsonParseException e) {
                throw new FormatException(cfg, "not valid JSON");
            }
            t = new Tokens(tokenString(o, "bos_token", tokens.bos()), tokenString(o, "eos_token", tokens.eos()),
                    tokenString(o, "pad_token", tokens.pad()), tokenString(o, "unk_token", tokens.unk()));
            JsonElement ct = o.get("chat_template");
            if (ct != null && ct.isJsonPrimitive() && ct.getAsJsonPrimitive().isString()) {
                template = ct.getAsString();
            } else if (ct != null && ct.isJsonArray()) {
                for (JsonElement e : ct.getAsJsonArray()) {
                    if (!e.isJsonObject()) continue;
                    JsonObject n = e.getAsJsonObject();
                    if (n.has("name") && "default".equals(n.get("name").getAsString()) && n.has("template"))
                        template = n.get("template").getAsString();
                }
                if (template == null) throw new FormatException(cfg, "chat_template is a list without a \"default\" entry");
            } else if (ct != null && !ct.isJsonNull()) {
                throw new FormatException(cfg, "chat_template is neither a string nor a list of {name, template}");
            }
            from = cfg.toString();
        }
        Path jinjaFile = dir.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinjaFile)) {
            template = TextFiles.readUtf8(jinjaFile);
            from = jinjaFile.toString();
        }
        if (template == null || template.isBlank()) return Optional.empty();
        return Optional.of(jinja(from, template, t));
    }

    private static String tokenString(JsonObject o, String key, String dflt) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return dflt;
        if (e.isJsonPrimitive()) return e.getAsString();
        if (e.isJsonObject() && e.getAsJsonObject().has("content")) return e.getAsJsonObject().get("content").getAsString();
        return dflt;
    }

    /** The template's name: a built-in's key, or the file it came from. */
    public String name() {
        return name;
    }

    public String source() {
        return source;
    }

    public Tokens tokens() {
        return tokens;
    }

    /** The built-in this is, if any. */
    public Optional<Builtin> builtin() {
        return Optional.ofNullable(builtin);
    }

    /**
     * Renders a conversation.
     *
     * @throws TemplateException on a template error, {@code raise_exception}, or a sandbox limit
     */
    public String render(List<Message> messages, boolean addGenerationPrompt) {
        Map<String, Object> vars = new LinkedHashMap<>();
        List<Map<String, Object>> ms = new ArrayList<>(messages.size());
        long chars = 0;
        for (Message m : messages) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("role", m.role());
            o.put("content", m.content());
            ms.add(o);
            chars += m.content().length();
        }
        vars.put("messages", ms);
        vars.put("bos_token", tokens.bos());
        vars.put("eos_token", tokens.eos());
        vars.put("pad_token", tokens.pad());
        vars.put("unk_token", tokens.unk());
        vars.put("add_generation_prompt", addGenerationPrompt);
        long maxOut = BASE_OUTPUT_CHARS + OUTPUT_PER_CONTENT_CHAR * chars;
        Guard g = new Guard(System.nanoTime() + RENDER_TIMEOUT_NANOS);
        Guard outer = GUARD.get();
        GUARD.set(g);
        RenderResult r;
        try {
            r = jinjava.renderForResult(compiled, vars, config(maxOut));
        } catch (RuntimeException | StackOverflowError e) {
            throw failure(g, e.getClass().getSimpleName() + ": " + e.getMessage());
        } finally {
            if (outer == null) GUARD.remove();
            else GUARD.set(outer);
        }
        if (g.limit != null || g.raised != null) throw failure(g, null);
        for (TemplateError e : r.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL || e.getReason() == TemplateError.ErrorReason.EXCEPTION) {
                String msg = e.getMessage();
                if (e.getReason() == TemplateError.ErrorReason.OUTPUT_TOO_BIG)
                    msg = "the rendered text exceeds the limit of " + maxOut + " characters (" + BASE_OUTPUT_CHARS + " + "
                            + OUTPUT_PER_CONTENT_CHAR + " per content character)";
                throw new TemplateException("chat template " + name + ": " + msg + (e.getLineno() > 0 ? " (template line " + e.getLineno() + ")" : ""));
            }
        }
        return r.getOutput();
    }

    private TemplateException failure(Guard g, String fallback) {
        if (g.raised != null) return new TemplateException("chat template " + name + " raised: " + g.raised);
        if (g.limit != null) return new TemplateException("chat template " + name + ": " + g.limit);
        return new TemplateException("chat template " + name + ": " + fallback);
    }

    /**
     * A conversation rendered for training: {@link #render} without the generation prompt, and
     * without a trailing assistant header that the template adds regardless (see {@link Markers}).
     */
    public String renderForTraining(List<Message> messages) {
        String text = render(messages, false);
        Markers m = markers();
        if (m.alwaysAddsGenerationPrompt() && !messages.isEmpty() && messages.get(messages.size() - 1).role().equals(Message.ASSISTANT)
                && text.endsWith(m.response()))
            text = text.substring(0, text.length() - m.response().length());
        return text;
    }

    /**
     * The markers: a built-in's documented ones, else detected by rendering a probe conversation
     * (user, assistant, user, assistant with sentinel contents): the response marker is what
     * precedes assistant content after the previous turn's end, the instruction marker likewise
     * for user content, the turn end what follows the last assistant content.
     *
     * @throws TemplateException when the probe does not render or a marker is empty
     */
    public synchronized Markers markers() {
        if (markers == null) markers = builtin != null ? builtin.markers(tokens.eos()) : detectMarkers();
        return markers;
    }

    static final String[] PROBE = {"lora4jProbeUserOne", "lora4jProbeAssistantOne", "lora4jProbeUserTwo", "lora4jProbeAssistantTwo"};

    /** Turn-closing token strings of the common templates (besides the tokenizer's BOS and EOS). */
    static final List<String> KNOWN_TURN_ENDS = List.of("<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|im_end|>", "<|end|>",
            "<|endoftext|>", "<|end_of_text|>", "</s>");

    /** Detects the markers from a render of the probe conversation (also used to check built-ins). */
    Markers detectMarkers() {
        List<Message> probe = List.of(Message.user(PROBE[0]), Message.assistant(PROBE[1]), Message.user(PROBE[2]), Message.assistant(PROBE[3]));
        String r;
        try {
            r = render(probe, false);
        } catch (TemplateException e) {
            throw new TemplateException("cannot detect the markers of chat template " + name + " (set instruction_part and response_part): "
                    + e.getMessage());
        }
        int[] at = new int[4];
        int from = 0;
        for (int i = 0; i < 4; i++) {
            at[i] = r.indexOf(PROBE[i], from);
            if (at[i] < 0)
                throw new TemplateException("cannot detect the markers of chat template " + name + ": the probe conversation's message "
                        + (i + 1) + " is missing from its render " + show(r) + " (set instruction_part and response_part)");
            from = at[i] + PROBE[i].length();
        }
        List<String> ends = new ArrayList<>(KNOWN_TURN_ENDS);
        if (!tokens.eos().isEmpty()) ends.add(tokens.eos());
        if (!tokens.bos().isEmpty()) ends.add(tokens.bos());
        String response = afterTurnEnd(r.substring(at[0] + PROBE[0].length(), at[1]), ends);
        String instruction = afterTurnEnd(r.substring(at[1] + PROBE[1].length(), at[2]), ends);
        String tail = r.substring(at[3] + PROBE[3].length());
        boolean always = false;
        if (!response.isEmpty()) {
            int k = tail.indexOf(response);
            if (k >= 0) {
                tail = tail.substring(0, k);
                always = true;
            }
        }
        String turnEnd = tail.strip();
        int best = -1;
        for (String e : ends) {
            int k = tail.indexOf(e);
            if (k >= 0 && (best < 0 || k + e.length() < best)) best = k + e.length();
        }
        if (best >= 0) turnEnd = tail.substring(0, best).strip();
        if (response.isEmpty() || instruction.isEmpty() || response.equals(instruction))
            throw new TemplateException("cannot detect the markers of chat template " + name + " from its render " + show(r)
                    + ": set instruction_part and response_part");
        return new Markers(instruction, response, turnEnd, always);
    }

    /** The part of a between-turns text after the last turn end, without leading whitespace and trailing spaces. */
    private static String afterTurnEnd(String s, List<String> ends) {
        int cut = 0;
        for (String e : ends) {
            int k = s.lastIndexOf(e);
            if (k >= 0) cut = Math.max(cut, k + e.length());
        }
        String m = s.substring(cut).stripLeading();
        int end = m.length();
        while (end > 0 && m.charAt(end - 1) == ' ') end--;
        return m.substring(0, end);
    }

    static String show(String s) {
        String q = s.length() > 300 ? s.substring(0, 300) + "..." : s;
        return "\"" + q.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "\"";
    }

    // ---- sandbox ----

    /** Per-render limits and what tripped them (jinjava swallows exceptions into generic errors). */
    static final class Guard {
        final long deadline;
        long nodes, items;
        String limit, raised;

        Guard(long deadline) {
            this.deadline = deadline;
        }

        void node() {
            if (++nodes > MAX_NODES) trip("the render exceeds " + MAX_NODES + " template nodes (a runaway loop?)");
            if ((nodes & 255) == 0) time();
        }

        void item() {
            if (++items > MAX_LOOP_ITERATIONS) trip("the render exceeds " + MAX_LOOP_ITERATIONS + " range() loop iterations");
            if ((items & 1023) == 0) time();
        }

        private void time() {
            if (System.nanoTime() > deadline) trip("the render exceeds " + RENDER_TIMEOUT_NANOS / 1_000_000_000 + " s");
        }

        private void trip(String why) {
            if (limit == null) limit = why;
            throw new IllegalStateException(why);
        }
    }

    private static final ThreadLocal<Guard> GUARD = new ThreadLocal<>();

    private static JinjavaConfig config(long maxOutput) {
        return JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                // Jinja2's keep_trailing_newline=False drops one newline at the end of the template
                // source (done in the constructor); jinjava's version strips the output instead.
                .withKeepTrailingNewline(true)
                .withMaxOutputSize(maxOutput)
                .withMaxStringLength(maxOutput)
                .withMaxListSize((int) Math.min(Integer.MAX_VALUE, MAX_LOOP_ITERATIONS))
                .withMaxMapSize(100_000)
                .withMaxRenderDepth(10)
                .withMaxMacroRecursionDepth(20)
                .withEnableRecursiveMacroCalls(false)
                .withNestedInterpretationEnabled(false)
                .withFailOnUnknownTokens(false)
                .withElResolver(JinjaCompat.resolver(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_WRITE))
                .withNodePreProcessor((node, interpreter) -> {
                    Guard g = GUARD.get();
                    if (g != null) g.node();
                })
                .build();
    }

    private static Jinjava sandbox() {
        Jinjava j = new Jinjava(config(BASE_OUTPUT_CHARS));
        j.setResourceLocator((path, encoding, interpreter) -> {
            throw new IOException("chat templates may not read files ('" + path + "')");
        });
        j.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raiseException", Object.class));
        j.getGlobalContext().registerFunction(new ELFunctionDefinition("", "range", ChatTemplate.class, "range", Object.class, Object[].class));
        return j;
    }

    /** {@code raise_exception(msg)} of HF chat templates. Public for jinjava's reflection only. */
    public static String raiseException(Object message) {
        Guard g = GUARD.get();
        String m = String.valueOf(message);
        if (g != null && g.raised == null) g.raised = m;
        throw new IllegalStateException(m);
    }

    /** Python's {@code range}, counted against {@link #MAX_LOOP_ITERATIONS}. Public for jinjava's reflection only. */
    public static List<Object> range(Object a, Object... rest) {
        long start = 0, stop, step = 1;
        if (rest == null || rest.length == 0) {
            stop = num(a);
        } else {
            start = num(a);
            stop = num(rest[0]);
            if (rest.length > 1) step = num(rest[1]);
        }
        if (step == 0) raiseException("range() step must not be zero");
        long n = step > 0 ? Math.max(0, (stop - start + step - 1) / step) : Math.max(0, (start - stop - step - 1) / -step);
        final long s0 = start, st = step;
        final int size = (int) Math.min(n, Integer.MAX_VALUE);
        return new AbstractList<>() {
            @Override
            public Object get(int i) {
                Guard g = GUARD.get();
                if (g != null) g.item();
                return s0 + st * i;
            }

            @Override
            public int size() {
                return size;
            }
        };
    }

    private static long num(Object o) {
        if (o instanceof Number n) return n.longValue();
        try {
            return Long.parseLong(String.valueOf(o).trim());
        } catch (NumberFormatException e) {
            raiseException("range() needs integers, got '" + o + "'");
            return 0;
        }
    }
}
