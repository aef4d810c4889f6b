package io.lora4j.model;

import io.lora4j.io.TextFiles;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import io.lora4j.io.AtomicFiles;
import io.lora4j.io.FormatException;
import io.lora4j.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The shape of a decoder model of one of the {@link ModelFamily families}, as HF's
 * {@code config.json} describes it (field names below are the JSON keys). Validated at
 * construction: every bad field is reported in one {@link IllegalArgumentException} message.
 *
 * @param modelType             model_type: "llama", "mistral", "qwen2" or "qwen3"
 * @param hiddenSize            hidden_size, the model width d
 * @param intermediateSize      intermediate_size, the MLP width
 * @param numHiddenLayers       num_hidden_layers
 * @param numAttentionHeads     num_attention_heads
 * @param numKeyValueHeads      num_key_value_heads (GQA: divides the head count)
 * @param headDim               head_dim (given, or hidden_size / num_attention_heads); even
 * @param rmsNormEps            rms_norm_eps
 * @param ropeTheta             rope_theta (or rope_parameters.rope_theta)
 * @param ropeScaling           rope_scaling (or rope_parameters), null for plain RoPE
 * @param vocabSize             vocab_size
 * @param maxPositionEmbeddings max_position_embeddings
 * @param tieWordEmbeddings     tie_word_embeddings: lm_head is the embedding matrix
 * @param bosTokenId            bos_token_id, or null
 * @param eosTokenIds           eos_token_id (one id, or several in Llama 3 configs); may be empty
 * @param torchDtype            torch_dtype ("float32", "bfloat16", "float16"), or null
 * @param architecture          what the family's layer adds to Llama's (biases, q/k norms, window)
 */
public record LlamaConfig(String modelType, int hiddenSize, int intermediateSize, int numHiddenLayers,
        int numAttentionHeads, int numKeyValueHeads, int headDim, double rmsNormEps, double ropeTheta,
        RopeScaling ropeScaling, int vocabSize, int maxPositionEmbeddings, boolean tieWordEmbeddings,
        Integer bosTokenId, List<Integer> eosTokenIds, String torchDtype, Architecture architecture) {

    /** A config with {@code modelType}'s default {@link Architecture} (no sliding window). */
    public LlamaConfig(String modelType, int hiddenSize, int intermediateSize, int numHiddenLayers,
            int numAttentionHeads, int numKeyValueHeads, int headDim, double rmsNormEps, double ropeTheta,
            RopeScaling ropeScaling, int vocabSize, int maxPositionEmbeddings, boolean tieWordEmbeddings,
            Integer bosTokenId, List<Integer> eosTokenIds, String torchDtype) {
        this(modelType, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim,
                rmsNormEps, ropeTheta, ropeScaling, vocabSize, maxPositionEmbeddings, tieWordEmbeddings, bosTokenId,
                eosTokenIds, torchDtype, ModelFamily.ofModelType(modelType) == null ? null
                        : Architecture.defaults(ModelFamily.ofModelType(modelType)));
    }

    public static final String FILE = "config.json";
    private static final Set<String> DTYPES = Set.of("float32", "bfloat16", "float16");

    /**
     * RoPE frequency scaling. "llama3" uses all fields (Llama 3.1+); "linear" only {@code factor}.
     */
    public record RopeScaling(String ropeType, double factor, double lowFreqFactor, double highFreqFactor,
            int originalMaxPositionEmbeddings) {
        void validate(List<String> errors) {
            if (!"llama3".equals(ropeType) && !"linear".equals(ropeType))
                errors.add("rope_scaling.rope_type '" + ropeType + "' is not supported (llama3 or linear)");
            if (!(factor > 0) || Double.isInfinite(factor)) errors.add("rope_scaling.factor must be > 0, got " + factor);
            if ("llama3".equals(ropeType)) {
                if (!(lowFreqFactor > 0)) errors.add("rope_scaling.low_freq_factor must be > 0, got " + lowFreqFactor);
                if (!(highFreqFactor > lowFreqFactor))
                    errors.add("rope_scaling.high_freq_factor must exceed low_freq_factor, got " + highFreqFactor);
                if (originalMaxPositionEmbeddings <= 0)
                    errors.add("rope_scaling.original_max_position_embeddings must be > 0, got " + originalMaxPositionEmbeddings);
            }
        }

        JsonObject toJson() {
            JsonObject o = new JsonObject();
            o.addProperty("rope_type", ropeType);
            o.addProperty("factor", new PyFloat(factor));
            if ("llama3".equals(ropeType)) {
                o.addProperty("low_freq_factor", new PyFloat(lowFreqFactor));
                o.addProperty("high_freq_factor", new PyFloat(highFreqFactor));
                o.addProperty("original_max_position_embeddings", originalMaxPositionEmbeddings);
            }
            return o;
        }
    }

    public LlamaConfig {
        eosTokenIds = eosTokenIds == null ? List.of() : List.copyOf(eosTokenIds);
        List<String> errors = new ArrayList<>();
        if (ModelFamily.ofModelType(modelType) == null)
            errors.add("model_type '" + modelType + "' is not supported (" + ModelFamily.supported() + ")");
        else if (architecture == null || !architecture.family().modelType.equals(modelType))
            errors.add("model_type '" + modelType + "' disagrees with the architecture " + architecture);
        positive(errors, "hidden_size", hiddenSize);
        positive(errors, "intermediate_size", intermediateSize);
        positive(errors, "num_hidden_layers", numHiddenLayers);
        positive(errors, "num_attention_heads", numAttentionHeads);
        positive(errors, "num_key_value_heads", numKeyValueHeads);
        positive(errors, "vocab_size", vocabSize);
        positive(errors, "max_position_embeddings", maxPositionEmbeddings);
        if (numAttentionHeads > 0 && numKeyValueHeads > 0 && numAttentionHeads % numKeyValueHeads != 0)
            errors.add("num_attention_heads " + numAttentionHeads + " is not a multiple of num_key_value_heads " + numKeyValueHeads);
        if (headDim <= 0 || headDim % 2 != 0) errors.add("head_dim must be a positive even number, got " + headDim);
        if (!(rmsNormEps > 0) || Double.isInfinite(rmsNormEps)) errors.add("rms_norm_eps must be > 0, got " + rmsNormEps);
        if (!(ropeTheta > 0) || Double.isInfinite(ropeTheta)) errors.add("rope_theta must be > 0, got " + ropeTheta);
        if (ropeScaling != null) ropeScaling.validate(errors);
        if (bosTokenId != null && (bosTokenId < 0 || bosTokenId >= Math.max(vocabSize, 1)))
            errors.add("bos_token_id " + bosTokenId + " is outside the vocabulary [0, " + vocabSize + ")");
        for (Integer e : eosTokenIds)
            if (e == null || e < 0 || e >= Math.max(vocabSize, 1))
                errors.add("eos_token_id " + e + " is outside the vocabulary [0, " + vocabSize + ")");
        if (torchDtype != null && !DTYPES.contains(torchDtype))
            errors.add("torch_dtype '" + torchDtype + "' is not one of float32, bfloat16, float16");
        if (!errors.isEmpty()) throw new IllegalArgumentException("invalid Llama config: " + String.join("; ", errors));
    }

    private static void positive(List<String> errors, String key, int v) {
        if (v <= 0) errors.add(key + " must be > 0, got " + v);
    }

    /**
     * The config of a llama2.c checkpoint: RMSNorm eps 1e-5, RoPE theta 10000, BOS 1, EOS 2, fp32.
     */
    public static LlamaConfig ofLlama2c(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocab,
            int seqLen, boolean tied) {
        int headDim = heads > 0 && dim % heads == 0 ? dim / heads : -1;
        return new LlamaConfig("llama", dim, hiddenDim, layers, heads, kvHeads, headDim, 1e-5, 10000.0, null, vocab,
                seqLen, tied, 1, List.of(2), "float32");
    }

    /** num_attention_heads × head_dim: the q_proj output width. */
    public int qDim() {
        return numAttentionHeads * headDim;
    }

    /** num_key_value_heads × head_dim: the k_proj and v_proj output width. */
    public int kvDim() {
        return numKeyValueHeads * headDim;
    }

    /** Parameters of the model (NF4 weights counted by their logical size). */
    public long parameterCount() {
        long d = hiddenSize;
        long perLayer = 2 * d + 2 * d * qDim() + 2 * d * kvDim() + 3 * d * intermediateSize;
        if (architecture != null)
            for (Architecture.LayerTensor t : architecture.layerTensors(this)) perLayer += Tensor.numel(t.shape());
        return (long) vocabSize * d * (tieWordEmbeddings ? 1 : 2) + numHiddenLayers * perLayer + d;
    }

    /** The first EOS id, or null. */
    public Integer eosTokenId() {
        return eosTokenIds.isEmpty() ? null : eosTokenIds.get(0);
    }

    /** A copy with another torch_dtype. */
    public LlamaConfig withTorchDtype(String dtype) {
        return new LlamaConfig(modelType, hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads,
                numKeyValueHeads, headDim, rmsNormEps, ropeTheta, ropeScaling, vocabSize, maxPositionEmbeddings,
                tieWordEmbeddings, bosTokenId, eosTokenIds, dtype, architecture);
    }

    // ---- config.json --------------------------------------------------------------------------

    /**
     * Reads {@code config.json}.
     *
     * @throws FormatException naming the file: not JSON, not a Llama model, missing or bad fields
     */
    public static LlamaConfig read(Path file) throws IOException {
        String text;
        try {
            text = TextFiles.readUtf8(file);
        } catch (NoSuchFileException e) {
            throw new FormatException(file, "no such file");
        }
        JsonElement root;
        try {
            root = JsonParser.parseString(text);
        } catch (JsonParseException e) {
            throw new FormatException(file, "not valid JSON: " + e.getMessage());
        }
        if (!root.isJsonObject()) throw new FormatException(file, "not a JSON object");
        return fromJson(root.getAsJsonObject(), file);
    }

    /** Parses a config.json object; {@code file} names the source in errors. */
    public static LlamaConfig fromJson(JsonObject o, Path file) throws FormatException {
        List<String> errors = new ArrayList<>();
        String modelType = string(o, "model_type", null, errors);
        if (modelType == null) throw new FormatException(file, "no model_type (expected one of " + ModelFamily.supported() + ")");
        ModelFamily family = ModelFamily.ofModelType(modelType);
        if (family == null) {
            String why = switch (modelType) {
                case "gemma3" -> " (the multimodal Gemma 3 wrapper: load its text model, model_type gemma3_text)";
                default -> "";
            };
            throw new FormatException(file, "model_type '" + modelType + "' is not supported" + why + " (lora4j loads " + ModelFamily.supported() + ")");
        }
        boolean gemma = family == ModelFamily.GEMMA3_TEXT || family == ModelFamily.GEMMA2;
        Architecture arch = Architecture.defaults(family);
        String actKey = gemma && o.has("hidden_activation") ? "hidden_activation" : "hidden_act";
        String wantAct = gemma ? "gelu_pytorch_tanh" : "silu";
        String act = string(o, actKey, wantAct, errors);
        if (!wantAct.equals(act)) errors.add(actKey + " '" + act + "' is not supported (" + wantAct + ")");
        // keys that would change the layer in ways lora4j does not implement: refused by name
        if (family != ModelFamily.QWEN2 && bool(o, "attention_bias", false, errors))
            errors.add("attention_bias true is not supported");
        if (bool(o, "mlp_bias", false, errors)) errors.add("mlp_bias true is not supported");
        if (bool(o, "use_sliding_window", false, errors))
            errors.add("use_sliding_window true is not supported (" + modelType + " with sliding-window layers)");
        // what lora4j can plan but not run: the model loads nowhere, plan still estimates it
        List<String> unsupported = new ArrayList<>();
        if (!gemma) for (String capped : new String[] {"attn_logit_softcapping", "final_logit_softcapping"})
            if (!isAbsent(o, capped)) errors.add(capped + " is not supported for model_type '" + modelType + "' (Gemma only)");
        if (family == ModelFamily.PHI3) {
            double partial = number(o, "partial_rotary_factor", 1.0, errors);
            if (partial != 1.0) unsupported.add("partial_rotary_factor " + partial + " (partial RoPE) is not implemented");
        }
        if ((family == ModelFamily.MISTRAL || family == ModelFamily.PHI3) && !isAbsent(o, "sliding_window")) {
            int window = integer(o, "sliding_window", null, errors);
            if (window <= 0) errors.add("sliding_window must be a positive integer or null, got " + o.get("sliding_window"));
            else arch = arch.withSlidingWindow(window, 0);
        }
        if (gemma) {
            int window = integer(o, "sliding_window", 4096, errors);
            int pattern = integer(o, "sliding_window_pattern", family == ModelFamily.GEMMA2 ? 2 : 6, errors);
            JsonElement types = o.get("layer_types");
            if (types != null && types.isJsonArray()) pattern = layerTypesPattern(types.getAsJsonArray(), errors);
            if (window <= 0) errors.add("sliding_window must be a positive integer, got " + o.get("sliding_window"));
            if (pattern <= 0) errors.add("sliding_window_pattern must be a positive integer, got " + pattern);
            arch = arch.withSlidingWindow(Math.max(window, 0), Math.max(pattern, 0))
                    .withAttention(number(o, "query_pre_attn_scalar", 256, errors),
                            family == ModelFamily.GEMMA2 ? 0 : number(o, "rope_local_base_freq", 10000.0, errors));
            double attnCap = softcap(o, "attn_logit_softcapping", errors), finalCap = softcap(o, "final_logit_softcapping", errors);
            arch = arch.withSoftcaps(Math.max(attnCap, 0), Math.max(finalCap, 0));
        }
        if (!unsupported.isEmpty()) arch = arch.withUnsupported(String.join("; ", unsupported));
        int hidden = integer(o, "hidden_size", null, errors);
        int inter = integer(o, "intermediate_size", null, errors);
        int layers = integer(o, "num_hidden_layers", null, errors);
        int heads = integer(o, "num_attention_heads", null, errors);
        int kv = integer(o, "num_key_value_heads", heads, errors);
        Integer headDimDefault = heads > 0 && hidden % heads == 0 ? hidden / heads : null;
        if (headDimDefault == null && isAbsent(o, "head_dim") && heads > 0)
            errors.add("hidden_size " + hidden + " is not a multiple of num_attention_heads " + heads + " and head_dim is not given");
        // Gemma3TextConfig's defaults: head_dim 256, vocabulary 262208, tied, BOS 2, EOS 1
        int headDim = integer(o, "head_dim", gemma ? Integer.valueOf(256) : headDimDefault == null ? -1 : headDimDefault, errors);
        double eps = number(o, "rms_norm_eps", 1e-6, errors);
        int vocab = integer(o, "vocab_size", family == ModelFamily.GEMMA3_TEXT ? Integer.valueOf(262208)
                : family == ModelFamily.GEMMA2 ? Integer.valueOf(256000) : null, errors);
        int maxPos = integer(o, "max_position_embeddings", gemma ? 131072 : 2048, errors);
        boolean tied = bool(o, "tie_word_embeddings", gemma, errors);
        Integer bos = isAbsent(o, "bos_token_id") ? (o.has("bos_token_id") ? null : gemma ? 2 : 1)
                : integer(o, "bos_token_id", null, errors);
        List<Integer> eos = new ArrayList<>();
        JsonElement eosEl = o.get("eos_token_id");
        if (eosEl == null) eos.add(gemma ? 1 : 2);
        else if (eosEl.isJsonArray()) for (JsonElement e : eosEl.getAsJsonArray()) eos.add(asInt(e, "eos_token_id", errors));
        else if (!eosEl.isJsonNull()) eos.add(asInt(eosEl, "eos_token_id", errors));
        String dtype = isAbsent(o, "torch_dtype") ? (isAbsent(o, "dtype") ? null : string(o, "dtype", null, errors))
                : string(o, "torch_dtype", null, errors);

        double theta = 10000.0;
        RopeScaling scaling = null;
        JsonElement rp = o.get("rope_parameters"); // transformers >= 5
        JsonElement rs = o.get("rope_scaling");
        if (rp != null && rp.isJsonObject()) {
            JsonObject p = rp.getAsJsonObject();
            theta = number(p, "rope_theta", number(o, "rope_theta", 10000.0, errors), errors);
            scaling = scaling(p, errors);
        } else {
            theta = number(o, "rope_theta", family == ModelFamily.GEMMA3_TEXT ? 1_000_000.0 : 10000.0, errors);
            if (rs != null && rs.isJsonObject()) scaling = scaling(rs.getAsJsonObject(), errors);
            else if (rs != null && !rs.isJsonNull()) errors.add("rope_scaling is not an object");
        }
        if (!errors.isEmpty()) throw new FormatException(file, "invalid Llama config: " + String.join("; ", errors));
        try {
            return new LlamaConfig(modelType, hidden, inter, layers, heads, kv, headDim, eps, theta, scaling, vocab, maxPos,
                    tied, bos, eos, dtype, arch);
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, e.getMessage());
        }
    }

    /**
     * The sliding pattern p of a layer_types list ("sliding_attention" / "full_attention"): every
     * p-th layer full, the others sliding. Other arrangements are refused.
     */
    private static int layerTypesPattern(JsonArray types, List<String> errors) {
        int firstFull = -1;
        for (int i = 0; i < types.size(); i++)
            if ("full_attention".equals(types.get(i).getAsString())) {
                firstFull = i;
                break;
            }
        int p = firstFull < 0 ? types.size() + 1 : firstFull + 1;
        for (int i = 0; i < types.size(); i++) {
            String want = (i + 1) % p == 0 ? "full_attention" : "sliding_attention";
            if (!want.equals(types.get(i).getAsString())) {
                errors.add("layer_types is not a repeating pattern of " + (p - 1) + " sliding_attention layers and one full_attention layer");
                return 0;
            }
        }
        return p;
    }

    private static RopeScaling scaling(JsonObject p, List<String> errors) {
        String type = p.has("rope_type") ? string(p, "rope_type", null, errors) : string(p, "type", null, errors);
        if (type == null || type.equals("default")) return null;
        return new RopeScaling(type, number(p, "factor", 1.0, errors), number(p, "low_freq_factor", 1.0, errors),
                number(p, "high_freq_factor", 4.0, errors), integer(p, "original_max_position_embeddings", 8192, errors));
    }

    /** config.json content for this config (HF key names; the family's *ForCausalLM). */
    public JsonObject toJson() {
        JsonObject o = new JsonObject();
        JsonArray arch = new JsonArray();
        arch.add(architecture.family().hfClass);
        o.add("architectures", arch);
        o.addProperty("model_type", modelType);
        o.addProperty("hidden_size", hiddenSize);
        o.addProperty("intermediate_size", intermediateSize);
        o.addProperty("num_hidden_layers", numHiddenLayers);
        o.addProperty("num_attention_heads", numAttentionHeads);
        o.addProperty("num_key_value_heads", numKeyValueHeads);
        o.addProperty("head_dim", headDim);
        o.addProperty("hidden_act", "silu");
        if (architecture.family() != ModelFamily.QWEN2) o.addProperty("attention_bias", false);
        o.addProperty("mlp_bias", false);
        if (architecture.family() == ModelFamily.MISTRAL || architecture.family() == ModelFamily.PHI3)
            o.add("sliding_window", architecture.slidingWindow() == 0 ? JsonNull.INSTANCE : new JsonPrimitive(architecture.slidingWindow()));
        if (architecture.family() == ModelFamily.GEMMA3_TEXT || architecture.family() == ModelFamily.GEMMA2) {
            o.remove("hidden_act");
            o.addProperty("hidden_activation", "gelu_pytorch_tanh");
            o.addProperty("sliding_window", architecture.slidingWindow());
            o.addProperty("sliding_window_pattern", architecture.slidingPattern());
            o.addProperty("query_pre_attn_scalar", new PyFloat(architecture.queryPreAttnScalar()));
            if (architecture.family() == ModelFamily.GEMMA3_TEXT)
                o.addProperty("rope_local_base_freq", new PyFloat(architecture.localRopeTheta()));
            o.add("attn_logit_softcapping", architecture.attnSoftcap() == 0 ? JsonNull.INSTANCE
                    : new JsonPrimitive(new PyFloat(architecture.attnSoftcap())));
            o.add("final_logit_softcapping", architecture.finalSoftcap() == 0 ? JsonNull.INSTANCE
                    : new JsonPrimitive(new PyFloat(architecture.finalSoftcap())));
        }
        o.addProperty("rms_norm_eps", new PyFloat(rmsNormEps));
        o.addProperty("rope_theta", new PyFloat(ropeTheta));
        o.add("rope_scaling", ropeScaling == null ? JsonNull.INSTANCE : ropeScaling.toJson());
        o.addProperty("vocab_size", vocabSize);
        o.addProperty("max_position_embeddings", maxPositionEmbeddings);
        o.addProperty("tie_word_embeddings", tieWordEmbeddings);
        o.add("bos_token_id", bosTokenId == null ? JsonNull.INSTANCE : new JsonPrimitive(bosTokenId));
        if (eosTokenIds.isEmpty()) o.add("eos_token_id", JsonNull.INSTANCE);
        else if (eosTokenIds.size() == 1) o.addProperty("eos_token_id", eosTokenIds.get(0));
        else {
            JsonArray a = new JsonArray();
            eosTokenIds.forEach(a::add);
            o.add("eos_token_id", a);
        }
        if (torchDtype != null) o.addProperty("torch_dtype", torchDtype);
        return o;
    }

    /** Writes {@code json} (a config.json object) pretty-printed and atomically to {@code file}. */
    public static void writeJson(JsonObject json, Path file) throws IOException {
        String s = new GsonBuilder().setPrettyPrinting().serializeNulls().disableHtmlEscaping().create().toJson(json) + "\n";
        AtomicFiles.writeBytes(file, s.getBytes(StandardCharsets.UTF_8));
    }

    /** Writes this config's {@link #toJson()} to {@code file}. */
    public void write(Path file) throws IOException {
        writeJson(toJson(), file);
    }

    // ---- JSON field helpers: a wrong type is recorded in errors, never thrown ----------------

    /** A soft cap: a positive number, or 0 when the key is absent or null. */
    private static double softcap(JsonObject o, String key, List<String> errors) {
        double c = number(o, key, 0, errors);
        if (!isAbsent(o, key) && !(c > 0)) errors.add(key + " must be a positive number or null, got " + o.get(key));
        return c;
    }

    private static boolean isAbsent(JsonObject o, String key) {
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull();
    }

    private static int integer(JsonObject o, String key, Integer dflt, List<String> errors) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) {
            if (dflt == null) {
                errors.add("missing " + key);
                return -1;
            }
            return dflt;
        }
        return asInt(e, key, errors);
    }

    private static int asInt(JsonElement e, String key, List<String> errors) {
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
            double d = e.getAsDouble();
            if (d == Math.rint(d) && Math.abs(d) <= Integer.MAX_VALUE) return (int) d;
        }
        errors.add(key + " must be an integer, got " + e);
        return -1;
    }

    private static double number(JsonObject o, String key, double dflt, List<String> errors) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return dflt;
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) return e.getAsDouble();
        errors.add(key + " must be a number, got " + e);
        return Double.NaN;
    }

    private static boolean bool(JsonObject o, String key, boolean dflt, List<String> errors) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return dflt;
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean()) return e.getAsBoolean();
        errors.add(key + " must be true or false, got " + e);
        return dflt;
    }

    private static String string(JsonObject o, String key, String dflt, List<String> errors) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return dflt;
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) return e.getAsString();
        errors.add(key + " must be a string, got " + e);
        return dflt;
    }
}
