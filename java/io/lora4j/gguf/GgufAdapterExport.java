package io.lora4j.gguf;

import io.lora4j.io.FormatException;
import io.lora4j.lora.LoraAdapter;
import io.lora4j.model.LlamaConfig;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Writes a PEFT LoRA adapter as a GGUF LoRA adapter, the form llama.cpp's {@code --lora} and
 * Ollama's {@code ADAPTER} load (convert_lora_to_gguf.py's conventions):
 * <ul>
 * <li>{@code general.type = adapter}, {@code adapter.type = lora}, {@code general.architecture} of the base;</li>
 * <li>{@code <base tensor>.lora_a} = A [r, in] (ggml ne {in, r}) and {@code .lora_b} = B [out, r]
 *     (ne {r, out}), fp32, with B's rows permuted per head for q/k exactly like the base weight rows,
 *     so that B·A acts on the permuted base;</li>
 * <li>{@code adapter.lora.alpha}: llama.cpp scales by alpha/r with r read from lora_b, so the alpha
 *     written is the one that makes alpha/r equal PEFT's scale s (times --scale): lora_alpha for
 *     plain LoRA, lora_alpha·√r for rsLoRA (s = alpha/√r).</li>
 * </ul>
 */
public final class GgufAdapterExport {
    private GgufAdapterExport() {}

    /**
     * @param adapter         loaded against the base's config (its shapes are checked there)
     * @param scaleMultiplier multiplies the adapter's scale (post-training alpha scaling; 1 = as trained)
     * @return the file size
     */
    public static long write(LoraAdapter adapter, LlamaConfig base, double scaleMultiplier, String name, Path out) throws IOException {
        GgufArchitecture arch = GgufArchitecture.of(base.modelType())
                .orElseThrow(() -> new FormatException(out, "model_type '" + base.modelType() + "' has no GGUF export yet"));
        String why = arch.unsupported(base);
        if (why != null) throw new FormatException(out, "the base cannot be exported as GGUF: " + why);
        int r = adapter.config().r();
        GgufWriter w = new GgufWriter();
        w.put("general.architecture", GgufValue.string(arch.name()));
        w.put("general.type", GgufValue.string("adapter"));
        w.put("general.name", GgufValue.string(name));
        w.put("adapter.type", GgufValue.string("lora"));
        w.put("adapter.lora.alpha", GgufValue.f32(ggufAlpha(adapter.config().scaling() * scaleMultiplier, r)));
        float[] v = adapter.toFloats();
        boolean fused = base.architecture().fusedProjections();
        for (LoraAdapter.Slot s : adapter.slots()) {
            // a fused module's (Phi-3) slots share one A and their Bs follow each other: the module's B, written once
            if (fused && s.projection() != s.projection().fusedLeader()) continue;
            String base0 = arch.weightName(s.layer(), s.projection());
            int heads = arch.permuteHeads(s.projection(), base);
            int offA = (int) s.offsetA(), offB = (int) s.offsetB(), in = (int) s.in();
            int outF = (int) (fused ? s.projection().fusedOutFeatures(base) : s.out());
            int headDim = heads == 0 ? 0 : outF / heads;
            w.addTensor(base0 + ".lora_a", GgmlType.F32, new long[] {in, r}, floats(v, offA, r * in));
            float[] b = new float[outF * r];
            for (int row = 0; row < outF; row++) {
                long src = headDim > 0 ? GgufArchitecture.sourceRow(row, headDim) : row;
                System.arraycopy(v, (int) (offB + src * r), b, row * r, r);
            }
            // B·A adds to the stored weight, so it is stored as that weight is (Gemma 2's scaled q)
            arch.stored(base0, base).apply(b);
            w.addTensor(base0 + ".lora_b", GgmlType.F32, new long[] {r, outF}, floats(b, 0, b.length));
        }
        return w.write(out);
    }

    /** The adapter.lora.alpha that makes llama.cpp's alpha/r equal {@code scale}. */
    static double ggufAlpha(double scale, int r) {
        return scale * r;
    }

    private static byte[] floats(float[] v, int off, int n) {
        ByteBuffer b = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) b.putFloat(v[off + i]);
        return b.array();
    }
}
