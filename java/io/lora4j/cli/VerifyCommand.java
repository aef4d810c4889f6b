package io.lora4j.cli;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import io.lora4j.io.FormatException;
import io.lora4j.io.SafeTensors;
import io.lora4j.lora.LoraAdapter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.TreeSet;
import org.apache.commons.cli.CommandLine;
import org.apache.commons.cli.Option;
import org.apache.commons.cli.Options;

/**
 * {@code lora4j verify}: the guide's "Verifying LoRA weight updates" — per tensor sha256, mean and
 * variance; with two adapters also Σ|a−b| and max|a−b| and which lora_A/lora_B changed. Exact
 * comparisons (hashes, sums of differences), never allclose: LoRA A moves by tiny amounts.
 */
public final class VerifyCommand implements Command {
    @Override public String name() { return "verify"; }

    @Override public String summary() { return "hash and compare LoRA adapters tensor by tensor"; }

    @Override public String synopsis() { return "verify ADAPTER [ADAPTER2] [--json]"; }

    @Override public String description() {
        return "ADAPTER is a PEFT adapter directory (or its adapter_model.safetensors). With one adapter: per tensor sha256,\n"
                + "mean, variance, and whether every lora_B is zero (an untrained, freshly initialised adapter). With two: per\n"
                + "tensor sum |a-b| and max |a-b|, and which lora_A / lora_B tensors changed.";
    }

    @Override
    public Options options() {
        return new Options().addOption(Option.builder().longOpt("json").desc("print the report as JSON").get());
    }

    private record Stats(String name, String dtype, String shape, String sha256, double mean, double variance, double sumAbs, float[] values) {}

    private static Path weights(Path p) throws FormatException {
        Path f = Files.isDirectory(p) ? p.resolve(LoraAdapter.WEIGHTS_FILE) : p;
        if (!Files.isRegularFile(f)) throw new FormatException(f, Files.exists(f) ? "not a regular file" : "no such file (not a PEFT adapter)");
        return f;
    }

    private static List<Stats> read(Path p) throws Exception {
        Path f = weights(p);
        SafeTensors st = SafeTensors.open(f);
        List<Stats> out = new ArrayList<>();
        for (String n : new TreeSet<>(st.entries().keySet())) {
            SafeTensors.Entry e = st.entry(n);
            byte[] raw = st.bytes(n);
            String sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(raw));
            float[] v = e.dtype().dtype != null && (e.dtype() == SafeTensors.StDType.F32 || e.dtype() == SafeTensors.StDType.F16
                    || e.dtype() == SafeTensors.StDType.BF16) ? st.tensor(n).toFloats() : new float[0];
            double sum = 0, abs = 0;
            for (float x : v) {
                sum += x;
                abs += Math.abs(x);
            }
            double mean = v.length == 0 ? Double.NaN : sum / v.length, var = 0;
            for (float x : v) var += (x - mean) * (x - mean);
            var = v.length == 0 ? Double.NaN : var / v.length;
            out.add(new Stats(n, e.dtype().name(), java.util.Arrays.toString(e.shape()), sha, mean, var, abs, v));
        }
        if (out.isEmpty()) throw new FormatException(f, "holds no tensors");
        return out;
    }

    @Override
    public int run(CommandLine cl, CliContext ctx) throws Exception {
        List<String> args = cl.getArgList();
        if (args.isEmpty() || args.size() > 2) throw new UsageException("give one or two adapter directories");
        boolean json = cl.hasOption("json");
        List<Stats> a = read(Path.of(args.get(0)));
        JsonObject report = new JsonObject();
        JsonArray tensors = new JsonArray();
        if (args.size() == 1) {
            int bZero = 0, bCount = 0;
            for (Stats s : a) {
                JsonObject t = stats(s);
                boolean zero = s.sumAbs == 0;
                t.addProperty("all_zero", zero);
                if (s.name.contains("lora_B")) {
                    bCount++;
                    if (zero) bZero++;
                }
                tensors.add(t);
                if (!json)
                    ctx.out().printf(Locale.ROOT, "%-70s %s %s sha256 %s mean %.6e var %.6e%s%n", s.name, s.dtype, s.shape, s.sha256.substring(0, 16),
                            s.mean, s.variance, zero ? " (all zero)" : "");
            }
            boolean fresh = bCount > 0 && bZero == bCount;
            report.add("tensors", tensors);
            report.addProperty("lora_B_tensors", bCount);
            report.addProperty("lora_B_all_zero", bZero);
            report.addProperty("untrained", fresh);
            if (!json)
                ctx.out().printf(Locale.ROOT, "%d tensors; %d of %d lora_B are all zero%s%n", a.size(), bZero, bCount,
                        fresh ? ": a freshly initialised (untrained) adapter" : bZero > 0 ? ": some projections never trained" : ": trained");
        } else {
            List<Stats> b = read(Path.of(args.get(1)));
            List<String> onlyA = new ArrayList<>(), onlyB = new ArrayList<>();
            int changedA = 0, changedB = 0, totalA = 0, totalB = 0;
            for (Stats s : a) {
                Stats o = b.stream().filter(x -> x.name.equals(s.name)).findFirst().orElse(null);
                if (o == null) {
                    onlyA.add(s.name);
                    continue;
                }
                JsonObject t = new JsonObject();
                t.addProperty("name", s.name);
                t.addProperty("sha256_a", s.sha256);
                t.addProperty("sha256_b", o.sha256);
                boolean same = s.sha256.equals(o.sha256);
                double sumAbs = 0, max = 0;
                boolean comparable = s.values.length == o.values.length && s.shape.equals(o.shape);
                if (comparable)
                    for (int i = 0; i < s.values.length; i++) {
                        double d = Math.abs((double) s.values[i] - o.values[i]);
                        sumAbs += d;
                        max = Math.max(max, d);
                    }
                t.addProperty("changed", !same);
                if (comparable) {
                    t.addProperty("sum_abs_diff", sumAbs);
                    t.addProperty("max_abs_diff", max);
                } else t.addProperty("shape_mismatch", s.shape + " vs " + o.shape);
                t.addProperty("mean_a", s.mean);
                t.addProperty("mean_b", o.mean);
                t.addProperty("variance_a", s.variance);
                t.addProperty("variance_b", o.variance);
                tensors.add(t);
                if (s.name.contains("lora_A")) {
                    totalA++;
                    if (!same) changedA++;
                } else if (s.name.contains("lora_B")) {
                    totalB++;
                    if (!same) changedB++;
                }
                if (!json)
                    ctx.out().printf(Locale.ROOT, "%-70s %s  sum|a-b| %.6e  max|a-b| %.6e%n", s.name, same ? "same   " : "CHANGED", sumAbs, max);
            }
            for (Stats s : b) if (a.stream().noneMatch(x -> x.name.equals(s.name))) onlyB.add(s.name);
            report.add("tensors", tensors);
            report.addProperty("lora_A_changed", changedA);
            report.addProperty("lora_A_total", totalA);
            report.addProperty("lora_B_changed", changedB);
            report.addProperty("lora_B_total", totalB);
            JsonArray oa = new JsonArray(), ob = new JsonArray();
            onlyA.forEach(oa::add);
            onlyB.forEach(ob::add);
            report.add("only_in_first", oa);
            report.add("only_in_second", ob);
            if (!json) {
                ctx.out().printf(Locale.ROOT, "changed: %d of %d lora_A, %d of %d lora_B%n", changedA, totalA, changedB, totalB);
                if (!onlyA.isEmpty() || !onlyB.isEmpty())
                    ctx.out().printf("tensors only in the first: %d, only in the second: %d%n", onlyA.size(), onlyB.size());
            }
        }
        if (json) ctx.out().println(new GsonBuilder().setPrettyPrinting().serializeSpecialFloatingPointValues().create().toJson(report));
        return OK;
    }

    private static JsonObject stats(Stats s) {
        JsonObject t = new JsonObject();
        t.addProperty("name", s.name);
        t.addProperty("dtype", s.dtype);
        t.addProperty("shape", s.shape);
        t.addProperty("sha256", s.sha256);
        t.addProperty("mean", s.mean);
        t.addProperty("variance", s.variance);
        t.addProperty("sum_abs", s.sumAbs);
        return t;
    }
}
