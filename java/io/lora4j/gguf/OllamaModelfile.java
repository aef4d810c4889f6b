package io.lora4j.gguf;

import io.lora4j.data.ChatTemplate;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * An Ollama {@code Modelfile} for an exported GGUF: {@code FROM} the model file, {@code ADAPTER} a
 * GGUF LoRA adapter when there is one, {@code TEMPLATE} (Go text/template over {@code .Messages}) for
 * lora4j's built-in chat templates, and {@code PARAMETER stop} for the tokens that end an assistant
 * turn. The templates render what the Jinja built-ins render, without the leading BOS, which
 * llama.cpp adds itself (tokenizer.ggml.add_bos_token).
 */
public final class OllamaModelfile {
    private OllamaModelfile() {}

    /**
     * The Modelfile text.
     *
     * @param from     the FROM path (the model GGUF, relative to the Modelfile)
     * @param adapter  the ADAPTER path, or null
     * @param builtin  the chat template, or null (no TEMPLATE: Ollama then reads tokenizer.chat_template when it knows it)
     * @param eosToken the EOS token's text (ends turns in alpaca, llama-2 and mistral)
     */
    public static String render(String from, String adapter, ChatTemplate.Builtin builtin, String eosToken) {
        StringBuilder sb = new StringBuilder();
        sb.append("# written by lora4j export\n");
        sb.append("FROM ").append(from).append('\n');
        if (adapter != null) sb.append("ADAPTER ").append(adapter).append('\n');
        if (builtin != null) {
            sb.append("TEMPLATE \"\"\"").append(goTemplate(builtin, eosToken)).append("\"\"\"\n");
            for (String s : stops(builtin, eosToken)) sb.append("PARAMETER stop ").append(quote(s)).append('\n');
        } else if (eosToken != null && !eosToken.isEmpty()) {
            sb.append("PARAMETER stop ").append(quote(eosToken)).append('\n');
        }
        return sb.toString();
    }

    /** The strings that end an assistant turn of {@code b}. */
    public static List<String> stops(ChatTemplate.Builtin b, String eos) {
        Set<String> s = new LinkedHashSet<>();
        switch (b) {
            case LLAMA_3: s.add("<|eot_id|>"); s.add("<|start_header_id|>"); break;
            case GEMMA: s.add("<end_of_turn>"); s.add("<start_of_turn>"); break;
            case CHATML: s.add("<|im_end|>"); s.add("<|im_start|>"); break;
            case ALPACA: s.add(eos); s.add("### Instruction:"); break;
            case LLAMA_2: case MISTRAL: s.add(eos); s.add("[INST]"); break;
            default: throw new IllegalArgumentException("no stops for " + b);
        }
        s.remove(null);
        s.remove("");
        return new ArrayList<>(s);
    }

    /** The Go template equivalent of built-in {@code b} (with the generation prompt). */
    public static String goTemplate(ChatTemplate.Builtin b, String eos) {
        String e = eos == null ? "" : eos;
        switch (b) {
            case LLAMA_3:
                return "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\n";
            case CHATML:
                return "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
            case GEMMA:
                return "{{- $sys := \"\" }}{{- range .Messages }}{{- if eq .Role \"system\" }}{{ $sys = printf \"%s\\n\\n\" .Content }}"
                        + "{{- else }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n{{ $sys }}{{ $sys = \"\" }}"
                        + "{{ .Content }}<end_of_turn>\n{{ end }}{{ end }}<start_of_turn>model\n";
            case ALPACA:
                return "{{- $sys := \"Below are some instructions that describe some tasks. Write responses that appropriately complete each request.\" }}"
                        + "{{- range .Messages }}{{ if eq .Role \"system\" }}{{ $sys = .Content }}{{ end }}{{ end }}{{ $sys }}\n\n"
                        + "{{ range .Messages }}{{ if eq .Role \"user\" }}### Instruction:\n{{ .Content }}\n\n"
                        + "{{ else if eq .Role \"assistant\" }}### Response:\n{{ .Content }}" + e + "\n\n{{ end }}{{ end }}### Response:\n";
            case LLAMA_2:
                return "{{- $sys := \"\" }}{{- $first := true }}{{- range .Messages }}{{ if eq .Role \"system\" }}{{ $sys = .Content }}"
                        + "{{ else if eq .Role \"user\" }}{{ if not $first }}<s>{{ end }}[INST] {{ if and $first $sys }}<<SYS>>\n{{ $sys }}\n<</SYS>>\n\n{{ end }}"
                        + "{{ $first = false }}{{ .Content }} [/INST]{{ else if eq .Role \"assistant\" }} {{ .Content }} " + e + "{{ end }}{{ end }}";
            case MISTRAL:
                return "{{- $sys := \"\" }}{{- $first := true }}{{- range .Messages }}{{ if eq .Role \"system\" }}{{ $sys = .Content }}"
                        + "{{ else if eq .Role \"user\" }}[INST] {{ if and $first $sys }}{{ $sys }}\n\n{{ end }}{{ $first = false }}{{ .Content }} [/INST]"
                        + "{{ else if eq .Role \"assistant\" }}{{ .Content }}" + e + "{{ end }}{{ end }}";
            default:
                throw new IllegalArgumentException("no Go template for " + b);
        }
    }

    private static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
