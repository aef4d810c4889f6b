package io.lora4j.train;

import io.lora4j.data.DataConfig;
import io.lora4j.lora.LoraConfig;
import io.lora4j.model.Projection;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.YAMLException;

/**
 * Everything {@code lora4j train} runs with, from a YAML file plus {@code --key value} overrides.
 * Keys are Unsloth's {@code get_peft_model} / TRL's {@code SFTConfig} names (DESIGN.md §8), so a
 * notebook's settings port 1:1. Every problem (unknown key with "did you mean", wrong type, bad
 * value) is collected into one {@link IllegalArgumentException}.
 *
 * @param model         base model (llama2.c .bin or HF directory)
 * @param tokenizer     tokenizer path, or null: the model's own / beside the .bin
 * @param loadIn4bit    QLoRA: NF4 base (blocksize 64, double quant)
 * @param dataset       training JSONL
 * @param evalDataset   evaluation JSONL, or null
 * @param evalSplit     fraction of the training rows held out for evaluation (0: none;
 *                      {@link DataConfig#EVAL_SPLIT_AUTO}: auto, the default)
 * @param lora          the LoRA settings
 * @param train         the optimisation settings
 * @param optim         the optimizer name as given (every AdamW variant runs as fp32 AdamW)
 * @param outputDir     output_dir (the command's --out wins), or null
 * @param device        "cpu", "cuda" or null (automatic)
 * @param weightDtype   {@code dtype} (alias {@code torch_dtype}, as transformers' from_pretrained): storage
 *                      of the embedding, lm_head and dense projections, F32 or BF16; null = auto (BF16 on
 *                      CUDA, F32 on the CPU; {@link io.lora4j.model.DeviceWeights#defaultStorage})
 * @param bf16          TRL's {@code bf16} (mixed precision): true keeps the activations the backward reads
 *                      (decoder layer inputs and outputs, projection inputs, the MLP's gate and up) in bf16 with fp32 compute and
 *                      accumulation; false keeps them fp32; null = auto (true on CUDA, false on the CPU;
 *                      {@link LoraTrainingModel#defaultBf16})
 * @param computeDtype  {@code bnb_4bit_compute_dtype} (bitsandbytes' key, also read from a bnb checkpoint's
 *                      quantization_config): the NF4 projections' forward product in F32 (exact) or BF16
 *                      (bf16 operands, fp32 sums); null = the checkpoint's, else F32
 */
public record RunConfig(Path model, Path tokenizer, boolean loadIn4bit, Path dataset, Path evalDataset, double evalSplit,
        LoraConfig lora, TrainConfig train, String optim, Path outputDir, String device, DataConfig data,
        io.lora4j.tensor.DType weightDtype, Boolean bf16, io.lora4j.tensor.DType computeDtype) {

    /** Keys handed to the data pipeline ({@link DataConfig#fromMap}). */
    private static final List<String> DATA_KEYS = List.of("dataset", "eval_dataset", "eval_split", "dataset_format", "chat_template",
            "train_on_responses_only", "instruction_part", "response_part", "last_response_only", "packing", "max_seq_length",
            "group_by_length", "seed", "split_special_tokens");

    private enum Kind { STRING, PATH, BOOL, INT, FLOAT, TARGETS, MAP, ANY, BOOL_OR_AUTO, FLOAT_OR_AUTO }

    private static final Map<String, Kind> KEYS = new LinkedHashMap<>();

    static {
        String[][] k = {
            {"model", "PATH"}, {"tokenizer", "PATH"}, {"load_in_4bit", "BOOL"}, {"max_seq_length", "INT"},
            {"r", "INT"}, {"lora_alpha", "FLOAT"}, {"lora_dropout", "FLOAT"}, {"bias", "STRING"},
            {"target_modules", "TARGETS"}, {"use_rslora", "BOOL"}, {"loftq_config", "MAP"}, {"init_lora_weights", "ANY"},
            {"random_state", "INT"}, {"use_gradient_checkpointing", "ANY"}, {"checkpoint_every", "INT"}, {"dataset", "PATH"}, {"eval_dataset", "PATH"},
            {"eval_split", "FLOAT_OR_AUTO"}, {"dataset_format", "STRING"}, {"chat_template", "STRING"},
            {"train_on_responses_only", "BOOL_OR_AUTO"}, {"instruction_part", "STRING"}, {"response_part", "STRING"},
            {"packing", "BOOL"}, {"last_response_only", "BOOL"}, {"group_by_length", "BOOL"}, {"split_special_tokens", "BOOL"}, {"learning_rate", "FLOAT"}, {"num_train_epochs", "FLOAT"}, {"max_steps", "INT"},
            {"per_device_train_batch_size", "INT"}, {"gradient_accumulation_steps", "INT"}, {"warmup_steps", "INT"},
            {"warmup_ratio", "FLOAT"}, {"lr_scheduler_type", "STRING"}, {"weight_decay", "FLOAT"},
            {"max_grad_norm", "FLOAT"}, {"optim", "STRING"}, {"seed", "INT"}, {"logging_steps", "INT"},
            {"eval_steps", "INT"}, {"save_steps", "INT"}, {"save_total_limit", "INT"}, {"early_stopping_patience", "INT"},
            {"early_stopping_threshold", "FLOAT"}, {"output_dir", "PATH"}, {"device", "STRING"},
            {"dtype", "STRING"}, {"bf16", "BOOL_OR_AUTO"}, {"bnb_4bit_compute_dtype", "STRING"}};
        for (String[] e : k) KEYS.put(e[0], Kind.valueOf(e[1]));
    }

    /** AdamW spellings accepted for {@code optim}; all run as fp32 AdamW (torch semantics). */
    public static final Set<String> OPTIMIZERS = Set.of("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "adamw_8bit",
            "paged_adamw_8bit", "paged_adamw_32bit");

    /** Every config key, in documentation order. */
    public static List<String> keys() {
        return List.copyOf(KEYS.keySet());
    }

    /**
     * Reads {@code yaml} (may be null: only overrides) and applies {@code overrides} (key →
     * the command line's string, parsed as a YAML scalar and type-checked like the file's values).
     *
     * @throws IOException              when the file cannot be read
     * @throws IllegalArgumentException listing every problem
     */
    public static RunConfig load(Path yaml, Map<String, String> overrides) throws IOException {
        Map<String, Object> values = new LinkedHashMap<>();
        List<String> errors = new ArrayList<>();
        if (yaml != null) {
            Object doc;
            try (Reader r = Files.newBufferedReader(yaml, StandardCharsets.UTF_8)) {
                doc = new Yaml(new SafeConstructor(new LoaderOptions())).load(r);
            } catch (YAMLException e) {
                throw new io.lora4j.io.FormatException(yaml, "not valid YAML: " + e.getMessage());
            }
            if (doc != null) {
                if (!(doc instanceof Map<?, ?> m)) throw new io.lora4j.io.FormatException(yaml, "expected a mapping of config keys");
                for (Map.Entry<?, ?> e : m.entrySet()) values.put(String.valueOf(e.getKey()), e.getValue());
            }
        }
        for (Map.Entry<String, String> e : overrides.entrySet()) {
            Object v;
            try {
                v = new Yaml(new SafeConstructor(new LoaderOptions())).load(e.getValue());
            } catch (YAMLException x) {
                v = e.getValue();
            }
            values.put(e.getKey().replace('-', '_'), v == null ? e.getValue() : v);
        }
        return from(values, errors, yaml);
    }

    /** Builds from parsed values; see {@link #load}. */
    public static RunConfig from(Map<String, Object> values) {
        return from(values, new ArrayList<>(), null);
    }

    /** Accepted spellings of a key as other tools write it: transformers' from_pretrained(torch_dtype=...). */
    private static final Map<String, String> ALIASES = Map.of("torch_dtype", "dtype");

    private static RunConfig from(Map<String, Object> given, List<String> errors, Path source) {
        Map<String, Object> in = new LinkedHashMap<>(given);
        for (Map.Entry<String, String> a : ALIASES.entrySet()) {
            if (!in.containsKey(a.getKey())) continue;
            Object alias = in.remove(a.getKey());
            if (in.containsKey(a.getValue()) && !java.util.Objects.equals(in.get(a.getValue()), alias))
                errors.add(a.getValue() + " '" + in.get(a.getValue()) + "' and its alias " + a.getKey() + " '" + alias + "' disagree: give one");
            else in.put(a.getValue(), alias);
        }
        Map<String, Object> v = new TreeMap<>();
        for (Map.Entry<String, Object> e : in.entrySet()) {
            if (!KEYS.containsKey(e.getKey())) {
                String s = suggest(e.getKey());
                errors.add("unknown key '" + e.getKey() + "'" + (s != null ? " (did you mean '" + s + "'?)" : ""));
                continue;
            }
            Object x = check(e.getKey(), KEYS.get(e.getKey()), e.getValue(), errors);
            if (x != null) v.put(e.getKey(), x);
        }
        TrainConfig d = TrainConfig.defaults();
        LoraConfig ld = LoraConfig.defaults();
        if (!v.containsKey("model")) errors.add("model is required");
        if (!v.containsKey("dataset")) errors.add("dataset is required");
        DataConfig data = null;
        if (v.containsKey("dataset")) {
            Map<String, Object> dm = new java.util.HashMap<>();
            for (String k : DATA_KEYS) {
                Object x = v.get(k);
                if (x != null) dm.put(k, x instanceof Path p ? p.toString() : x);
            }
            if (!dm.containsKey("max_seq_length")) dm.put("max_seq_length", TrainConfig.defaults().maxSeqLength());
            try {
                data = DataConfig.fromMap(dm);
            } catch (IllegalArgumentException e) {
                errors.add(e.getMessage());
            }
        }
        String optim = (String) v.getOrDefault("optim", "adamw_torch");
        if (!OPTIMIZERS.contains(optim)) errors.add("optim must be one of " + String.join(", ", new java.util.TreeSet<>(OPTIMIZERS)) + ", got '" + optim + "'");
        String device = (String) v.get("device");
        if (device != null && !device.equals("cpu") && !device.equals("cuda")) {
            try {
                if (io.lora4j.tensor.Device.ordinal(device) < 0) errors.add("device must be cpu, cuda or cuda:N, got '" + device + "'");
            } catch (IllegalArgumentException e) {
                errors.add(e.getMessage());
            }
        }
        double evalSplit = data != null ? data.evalSplit() : DataConfig.EVAL_SPLIT_AUTO;
        io.lora4j.tensor.DType weightDtype = null;
        String dtype = (String) v.get("dtype");
        if (dtype != null) {
            try {
                weightDtype = io.lora4j.model.DeviceWeights.parseStorage(dtype);
            } catch (IllegalArgumentException e) {
                errors.add(e.getMessage());
            }
        }
        io.lora4j.tensor.DType computeDtype = null;
        if (v.get("bnb_4bit_compute_dtype") != null) {
            try {
                computeDtype = io.lora4j.model.Bnb4bit.computeDtype((String) v.get("bnb_4bit_compute_dtype"));
            } catch (IllegalArgumentException e) {
                errors.add(e.getMessage());
            }
        }

        LoraConfig lora = null;
        TrainConfig train = null;
        try {
            LoraConfig.Init init = v.containsKey("init_lora_weights") ? LoraConfig.Init.parse(v.get("init_lora_weights")) : ld.init();
            int loftqIter = 1;
            if (v.get("loftq_config") instanceof Map<?, ?> lq && !lq.isEmpty()) {
                if (!v.containsKey("init_lora_weights")) init = LoraConfig.Init.LOFTQ;
                for (Map.Entry<?, ?> e : lq.entrySet()) {
                    String k = String.valueOf(e.getKey());
                    if (k.equals("loftq_iter")) loftqIter = ((Number) e.getValue()).intValue();
                    else if (k.equals("loftq_bits")) {
                        if (((Number) e.getValue()).intValue() != 4) errors.add("loftq_config.loftq_bits must be 4 (NF4), got " + e.getValue());
                    } else errors.add("unknown loftq_config key '" + k + "' (loftq_bits, loftq_iter)");
                }
            }
            if (init == LoraConfig.Init.LOFTQ && !Boolean.TRUE.equals(v.get("load_in_4bit")))
                errors.add("LoftQ initialisation (init_lora_weights: loftq) needs load_in_4bit: true");
            @SuppressWarnings("unchecked")
            Set<Projection> targets = v.containsKey("target_modules") ? (Set<Projection>) v.get("target_modules") : EnumSet.allOf(Projection.class);
            lora = new LoraConfig((int) num(v, "r", ld.r()), num(v, "lora_alpha", ld.loraAlpha()), num(v, "lora_dropout", 0),
                    v.containsKey("bias") ? LoraConfig.Bias.parse((String) v.get("bias")) : LoraConfig.Bias.NONE, targets,
                    Boolean.TRUE.equals(v.get("use_rslora")), init, loftqIter, (long) num(v, "random_state", ld.randomState()));
        } catch (IllegalArgumentException | ClassCastException e) {
            errors.add(e.getMessage());
        }
        try {
            CheckpointMode ck = v.containsKey("use_gradient_checkpointing") ? CheckpointMode.parse(v.get("use_gradient_checkpointing")) : d.checkpointing();
            LrSchedule sched = v.containsKey("lr_scheduler_type") ? LrSchedule.parse((String) v.get("lr_scheduler_type")) : d.lrScheduler();
            train = new TrainConfig(num(v, "learning_rate", d.learningRate()), num(v, "num_train_epochs", d.numTrainEpochs()),
                    (long) num(v, "max_steps", d.maxSteps()), (int) num(v, "per_device_train_batch_size", d.perDeviceTrainBatchSize()),
                    (int) num(v, "gradient_accumulation_steps", d.gradientAccumulationSteps()), (long) num(v, "warmup_steps", d.warmupSteps()),
                    num(v, "warmup_ratio", d.warmupRatio()), sched, num(v, "weight_decay", d.weightDecay()), num(v, "max_grad_norm", d.maxGradNorm()),
                    (long) num(v, "seed", d.seed()), (int) num(v, "logging_steps", d.loggingSteps()), (int) num(v, "eval_steps", d.evalSteps()),
                    (int) num(v, "save_steps", d.saveSteps()), (int) num(v, "save_total_limit", d.saveTotalLimit()), (int) num(v, "max_seq_length", d.maxSeqLength()),
                    ck, (int) num(v, "early_stopping_patience", d.earlyStoppingPatience()),
                    num(v, "early_stopping_threshold", d.earlyStoppingThreshold()), (int) num(v, "checkpoint_every", d.checkpointEvery()));
        } catch (IllegalArgumentException e) {
            errors.add(e.getMessage());
        }
        if (!errors.isEmpty())
            throw new IllegalArgumentException((source != null ? source + ": " : "") + String.join("; ", errors));
        return new RunConfig((Path) v.get("model"), (Path) v.get("tokenizer"), Boolean.TRUE.equals(v.get("load_in_4bit")),
                (Path) v.get("dataset"), (Path) v.get("eval_dataset"), evalSplit, lora, train, optim, (Path) v.get("output_dir"), device,
                data, weightDtype, v.get("bf16") instanceof Boolean b ? b : null, computeDtype);
    }

    private static double num(Map<String, Object> v, String k, double dflt) {
        Object x = v.get(k);
        return x instanceof Number n ? n.doubleValue() : dflt;
    }

    /** Type-checks one value; returns the normalised value, or null after recording an error. */
    private static Object check(String key, Kind kind, Object val, List<String> errors) {
        if (val == null) {
            if (kind == Kind.PATH || kind == Kind.STRING || kind == Kind.MAP || kind == Kind.ANY) return null;
            errors.add(key + " must not be empty");
            return null;
        }
        switch (kind) {
            case STRING:
                if (val instanceof Map || val instanceof List) break;
                return String.valueOf(val);
            case PATH:
                if (val instanceof Map || val instanceof List) break;
                return Path.of(String.valueOf(val));
            case BOOL:
                if (val instanceof Boolean) return val;
                if (val instanceof String s && (s.equalsIgnoreCase("true") || s.equalsIgnoreCase("false"))) return Boolean.parseBoolean(s);
                errors.add(key + " must be true or false, got '" + val + "'");
                return null;
            case INT: {
                Double d = asDouble(val);
                if (d != null && d == Math.rint(d) && Math.abs(d) < 9e15) return d.longValue();
                errors.add(key + " must be an integer, got '" + val + "'");
                return null;
            }
            case FLOAT: {
                Double d = asDouble(val); // YAML 1.1 reads "2e-4" as a string: accept it as a number
                if (d != null && Double.isFinite(d)) return d;
                errors.add(key + " must be a number, got '" + val + "'");
                return null;
            }
            case TARGETS: {
                List<String> names = new ArrayList<>();
                if (val instanceof List<?> l) for (Object o : l) names.add(String.valueOf(o));
                else for (String s : String.valueOf(val).split(",")) names.add(s.trim());
                try {
                    return LoraConfig.parseTargets(names);
                } catch (IllegalArgumentException e) {
                    errors.add(e.getMessage());
                    return null;
                }
            }
            case MAP:
                if (val instanceof Map) return val;
                break;
            case BOOL_OR_AUTO:
            case FLOAT_OR_AUTO: {
                if (val instanceof String s && s.trim().equalsIgnoreCase("auto")) return "auto";
                List<String> own = new ArrayList<>();
                Object x = check(key, kind == Kind.BOOL_OR_AUTO ? Kind.BOOL : Kind.FLOAT, val, own);
                if (own.isEmpty()) return x;
                errors.add(key + " must be " + (kind == Kind.BOOL_OR_AUTO ? "true, false" : "a number") + " or auto, got '" + val + "'");
                return null;
            }
            default:
                return val;
        }
        errors.add(key + " has the wrong type: " + val.getClass().getSimpleName().toLowerCase(Locale.ROOT));
        return null;
    }

    private static Double asDouble(Object v) {
        if (v instanceof Number n) return n.doubleValue();
        if (v instanceof String s) {
            try {
                return Double.parseDouble(s.trim());
            } catch (NumberFormatException e) {
                return null;
            }
        }
        return null;
    }

    /** The known key closest to {@code key} (edit distance ≤ 3, or a prefix/substring match), or null. */
    static String suggest(String key) {
        String best = null;
        int bestD = Integer.MAX_VALUE;
        for (String k : KEYS.keySet()) {
            int d = distance(key.toLowerCase(Locale.ROOT), k);
            if (k.contains(key) || key.contains(k)) d = Math.min(d, 2);
            if (d < bestD) {
                bestD = d;
                best = k;
            }
        }
        return bestD <= Math.max(3, key.length() / 3) ? best : null;
    }

    private static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) prev[j] = j;
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++)
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
