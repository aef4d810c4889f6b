package io.lora4j.lora;

import io.lora4j.model.Projection;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * How LoRA is attached to a Llama model (PEFT's {@code LoraConfig} / Unsloth's
 * {@code get_peft_model} arguments), validated at construction: every bad field is reported in one
 * {@link IllegalArgumentException} message.
 *
 * <p>Each targeted projection {@code y = x Wᵀ} becomes {@code y = x Wᵀ + s·(drop(x) Aᵀ) Bᵀ} with
 * A [r, in], B [out, r] and {@link #scaling() s} = alpha/r (alpha/√r with rsLoRA).
 *
 * @param r              the rank, &gt; 0 (Unsloth default 16)
 * @param loraAlpha      alpha, &gt; 0 (default 16)
 * @param loraDropout    dropout probability on the LoRA branch's input, in [0, 1) (default 0);
 *                       applied only while training
 * @param bias           which biases train. Llama's projections and norms have no bias, so in
 *                       PEFT {@code "all"} and {@code "lora_only"} select no parameter for this
 *                       architecture: they are accepted and train nothing extra here either (the
 *                       adapter holds no bias tensors), exactly as PEFT behaves on Llama.
 * @param targetModules  the projections that get an adapter (default all seven)
 * @param useRslora      scale by alpha/√r instead of alpha/r
 * @param init           how A and B start (default {@link Init#KAIMING})
 * @param loftqIter      LoftQ alternating iterations (≥ 1; used with {@link Init#LOFTQ})
 * @param randomState    seed of the initialisation (default 3407)
 */
public record LoraConfig(int r, double loraAlpha, double loraDropout, Bias bias, Set<Projection> targetModules,
        boolean useRslora, Init init, int loftqIter, long randomState) {

    /** Unsloth's seed. */
    public static final long DEFAULT_SEED = 3407;
    /** Largest rank the Java LoftQ SVD handles (subspace iteration in double). */
    public static final int MAX_LOFTQ_RANK = 256;

    /** PEFT's {@code bias} choice. */
    public enum Bias {
        NONE("none"), ALL("all"), LORA_ONLY("lora_only");

        /** The PEFT spelling. */
        public final String peftName;

        Bias(String peftName) {
            this.peftName = peftName;
        }

        /** Parses "none", "all" or "lora_only". */
        public static Bias parse(String s) {
            for (Bias b : values()) if (b.peftName.equals(s)) return b;
            throw new IllegalArgumentException("bias must be none, all or lora_only, got '" + s + "'");
        }
    }

    /** PEFT's {@code init_lora_weights}. B starts at zero in every mode except LoftQ. */
    public enum Init {
        /** A ~ kaiming_uniform(a=√5) = U(-1/√in, 1/√in), B = 0 (PEFT's {@code True}). */
        KAIMING,
        /** A ~ N(0, σ = 1/r) as PEFT draws it ({@code normal_(std=1/r)}), B = 0 (PEFT's {@code "gaussian"}). */
        GAUSSIAN,
        /** A, B from the top-r SVD of W - dequant(nf4(W)) (PEFT's {@code "loftq"}); needs a 4-bit base. */
        LOFTQ;

        /** Parses PEFT's value: true/"true"/"kaiming", "gaussian" or "loftq". */
        public static Init parse(Object v) {
            if (Boolean.TRUE.equals(v)) return KAIMING;
            String s = String.valueOf(v).toLowerCase(Locale.ROOT);
            switch (s) {
                case "true": case "kaiming": return KAIMING;
                case "gaussian": return GAUSSIAN;
                case "loftq": return LOFTQ;
                default:
                    throw new IllegalArgumentException("init_lora_weights must be true, gaussian or loftq, got '" + v + "'"
                            + ("false".equals(s) ? " (untrained random B is not supported)" : ""));
            }
        }
    }

    public LoraConfig {
        List<String> errors = new ArrayList<>();
        if (r <= 0) errors.add("r must be > 0, got " + r);
        if (!(loraAlpha > 0) || Double.isInfinite(loraAlpha)) errors.add("lora_alpha must be > 0, got " + loraAlpha);
        if (!(loraDropout >= 0 && loraDropout < 1)) errors.add("lora_dropout must be in [0, 1), got " + loraDropout);
        if (bias == null) errors.add("bias must be none, all or lora_only");
        if (targetModules == null || targetModules.isEmpty()) errors.add("target_modules must name at least one projection");
        if (init == null) errors.add("init_lora_weights must be set");
        if (loftqIter < 1) errors.add("loftq_iter must be >= 1, got " + loftqIter);
        if (init == Init.LOFTQ && r > MAX_LOFTQ_RANK) errors.add("LoftQ supports r <= " + MAX_LOFTQ_RANK + ", got " + r);
        if (!errors.isEmpty()) throw new IllegalArgumentException("invalid LoRA config: " + String.join("; ", errors));
        targetModules = Collections.unmodifiableSet(EnumSet.copyOf(targetModules));
    }

    /** Unsloth's defaults: r 16, alpha 16, dropout 0, bias none, all seven projections, seed 3407. */
    public static LoraConfig defaults() {
        return new LoraConfig(16, 16, 0, Bias.NONE, EnumSet.allOf(Projection.class), false, Init.KAIMING, 1, DEFAULT_SEED);
    }

    /** The LoRA scale s: alpha/r, or alpha/√r with rsLoRA. */
    public double scaling() {
        return useRslora ? loraAlpha / Math.sqrt(r) : loraAlpha / r;
    }

    public boolean targets(Projection p) {
        return targetModules.contains(p);
    }

    public LoraConfig withRank(int newR) {
        return new LoraConfig(newR, loraAlpha, loraDropout, bias, targetModules, useRslora, init, loftqIter, randomState);
    }

    public LoraConfig withAlpha(double a) {
        return new LoraConfig(r, a, loraDropout, bias, targetModules, useRslora, init, loftqIter, randomState);
    }

    public LoraConfig withDropout(double p) {
        return new LoraConfig(r, loraAlpha, p, bias, targetModules, useRslora, init, loftqIter, randomState);
    }

    public LoraConfig withTargets(Set<Projection> t) {
        return new LoraConfig(r, loraAlpha, loraDropout, bias, t, useRslora, init, loftqIter, randomState);
    }

    public LoraConfig withRslora(boolean rs) {
        return new LoraConfig(r, loraAlpha, loraDropout, bias, targetModules, rs, init, loftqIter, randomState);
    }

    public LoraConfig withInit(Init i) {
        return new LoraConfig(r, loraAlpha, loraDropout, bias, targetModules, useRslora, i, loftqIter, randomState);
    }

    public LoraConfig withSeed(long seed) {
        return new LoraConfig(r, loraAlpha, loraDropout, bias, targetModules, useRslora, init, loftqIter, seed);
    }

    /**
     * Parses PEFT's {@code target_modules}: module names (q_proj, k_proj, v_proj, o_proj,
     * gate_proj, up_proj, down_proj; Phi-3's fused qkv_proj and gate_up_proj stand for their
     * projections) or the single string "all-linear".
     *
     * @throws IllegalArgumentException naming the unknown entries and listing the valid ones
     */
    public static Set<Projection> parseTargets(Collection<String> names) {
        EnumSet<Projection> set = EnumSet.noneOf(Projection.class);
        List<String> bad = new ArrayList<>();
        for (String n : names) {
            String s = n.trim();
            if (s.equals("all-linear")) {
                set.addAll(EnumSet.allOf(Projection.class));
                continue;
            }
            Projection found = null;
            for (Projection p : Projection.values()) if (p.moduleName.equals(s)) found = p;
            if (s.equals(Projection.QKV)) set.addAll(List.of(Projection.Q.fusedGroup()));
            else if (s.equals(Projection.GATE_UP)) set.addAll(List.of(Projection.GATE.fusedGroup()));
            else if (found == null) bad.add("'" + s + "'");
            else set.add(found);
        }
        if (!bad.isEmpty())
            throw new IllegalArgumentException("unknown target_modules " + String.join(", ", bad) + " (valid: " + validTargets() + ")");
        return set;
    }

    /** "q_proj, k_proj, ..., down_proj, all-linear". */
    public static String validTargets() {
        List<String> v = new ArrayList<>();
        for (Projection p : Projection.values()) v.add(p.moduleName);
        v.add(Projection.QKV);
        v.add(Projection.GATE_UP);
        v.add("all-linear");
        return String.join(", ", v);
    }

    /**
     * The target module names as PEFT writes them for a model whose q/k/v and gate/up are fused
     * modules (Phi-3): qkv_proj and gate_up_proj for whole groups, sorted.
     *
     * @throws IllegalArgumentException when a fused module is only partly targeted
     */
    public List<String> targetModuleNames(boolean fused) {
        if (!fused) return targetModuleNames();
        List<String> v = new ArrayList<>();
        for (Projection p : targetModules) {
            if (p != p.fusedLeader() && targetModules.contains(p.fusedLeader())) continue;
            for (Projection q : p.fusedGroup())
                if (!targetModules.contains(q))
                    throw new IllegalArgumentException("target_modules names " + p.moduleName + " but not " + q.moduleName + ": "
                            + "this model fuses them into " + p.fusedModuleName() + " (PEFT's target); target all of them or none");
            v.add(p.fusedModuleName());
        }
        Collections.sort(v);
        return v;
    }

    /** The target module names, sorted (as PEFT writes them). */
    public List<String> targetModuleNames() {
        List<String> v = new ArrayList<>();
        for (Projection p : targetModules) v.add(p.moduleName);
        Collections.sort(v);
        return v;
    }
}
