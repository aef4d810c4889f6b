package io.lora4j.lora;

import io.lora4j.model.LayerWeights;
import io.lora4j.model.LlamaWeights;
import io.lora4j.model.Projection;
import io.lora4j.model.ProjectionWeight;
import io.lora4j.ops.Backend;
import io.lora4j.quant.Nf4;
import io.lora4j.quant.Nf4Weight;
import io.lora4j.tensor.DType;
import io.lora4j.tensor.MemoryCategory;
import io.lora4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * LoftQ initialisation (Li et al. 2023; PEFT {@code utils/loftq_utils.py}): for each targeted
 * projection W, alternate T times
 * <pre>
 *   Q_t = nf4(W - L_{t-1} R_{t-1})           (L_0 R_0 = 0)
 *   L_t R_t = top-r SVD of W - dequant(Q_t)   (L = U√Σ [out, r], R = √Σ Vᵀ [r, in])
 * </pre>
 * so that dequant(Q) + L·R approximates W better than dequant(nf4(W)) alone. The frozen base
 * becomes Q_T; the adapter starts, as in PEFT, at B = L, A = R ({@link Split#PEFT}: the singular
 * values split as √Σ on each side), or optionally at B = L/√s, A = R/√s so that s·B·A = L·R for
 * any alpha ({@link Split#SCALE_COMPENSATED}). With one iteration Q is nf4(W) itself, the base
 * bitsandbytes' {@code load_in_4bit} makes. Untargeted projections are plainly quantized.
 *
 * <p>The truncated SVD: for min(out, in) ≤ {@value #EXACT_SVD_MAX} exact, like PEFT's full
 * {@code torch.linalg.svd} (Gram matrix of the smaller side, cyclic Jacobi, double precision);
 * above, a randomized subspace iteration in double precision (rank r + 8, 12 power iterations with
 * re-orthonormalisation) and a Jacobi eigendecomposition of the small projected Gram matrix: exact
 * to ~1e-10 for the leading r singular pairs when the spectrum has a gap, a good rank-r
 * approximation otherwise (r ≤ {@value LoraConfig#MAX_LOFTQ_RANK}). Checked against a PyTorch
 * reimplementation of PEFT's loftq_init (scripts/reference/loftq_reference.py).
 */
public final class LoftQ {
    private static final int OVERSAMPLE = 8, POWER_ITERS = 12;
    /**
     * Largest min(out, in) for the exact SVD (Gram matrix + Jacobi, O(k³)); larger weights use the
     * randomized subspace iteration, a close rank-r approximation but not PEFT's vectors bit for bit.
     */
    public static final int EXACT_SVD_MAX = 256;

    private LoftQ() {}

    /**
     * The outcome.
     *
     * @param weights     the NF4 base (Q_T for targets; the embedding, norms and lm_head are the
     *                    dense model's own tensors: close only the projections, or the dense model)
     * @param adapter     the initial adapter
     * @param errorBefore ‖W − dequant(nf4(W))‖_F / ‖W‖_F over all targeted projections together
     * @param errorAfter  ‖W − dequant(Q_T) − s·B·A‖_F / ‖W‖_F over the same projections
     */
    public record Result(LlamaWeights weights, LoraAdapter adapter, double errorBefore, double errorAfter) {}

    /**
     * How the singular values are split between A and B.
     */
    public enum Split {
        /**
         * PEFT's {@code loftq_init}: B = U√Σ, A = √Σ Vᵀ, assigned as they are, so that the adapter
         * adds s·B·A = s·L·R: the LoftQ residual exactly when the scale s = alpha/r is 1 (alpha = r,
         * lora4j's default), s times it otherwise. The default: the same A and B as PEFT.
         */
        PEFT,
        /** B = U√Σ/√s, A = √Σ Vᵀ/√s: s·B·A = L·R for any alpha (exact start, A and B differ from PEFT's when s ≠ 1). */
        SCALE_COMPENSATED
    }

    /**
     * The LoftQ factors of one weight: dequant(Q_T) and L [out, r], R [r, in] with L·R the rank-r
     * approximation of W − dequant(Q_T).
     */
    record Factors(Nf4Weight q, float[] dequantized, double[] l, double[] r, double errorBefore2) {}

    /**
     * PEFT's {@code loftq_init} on one weight w [out, in] (row-major fp32): T alternations of NF4
     * quantization and a rank-r SVD of the residual, with PEFT's √Σ split. Each singular pair's sign
     * is fixed (the largest-magnitude entry of each row of R positive): an SVD leaves it free, and
     * L·R does not depend on it.
     */
    static Factors factor(Backend backend, float[] w, int out, int in, int r, int iters, int blocksize, boolean doubleQuant, SplittableRandom rnd) {
        double[] lr = new double[out * in]; // L·R of the previous iteration
        Nf4Weight q = null;
        double[][] f = null;
        float[] dq = null;
        double before2 = 0;
        for (int it = 0; it < iters; it++) {
            float[] target = new float[w.length];
            for (int i = 0; i < w.length; i++) target[i] = (float) (w[i] - lr[i]);
            if (q != null) q.close();
            q = quantize(backend, target, out, in, blocksize, doubleQuant);
            dq = dequantize(backend, q);
            double[] res = new double[w.length];
            for (int i = 0; i < w.length; i++) res[i] = (double) w[i] - dq[i];
            if (it == 0) for (double x : res) before2 += x * x;
            f = lowRank(res, out, in, r, rnd);
            lr = product(f[0], f[1], out, in, r);
        }
        fixSigns(f[0], f[1], out, in, Math.min(r, Math.min(out, in)), r);
        return new Factors(q, dq, f[0], f[1], before2);
    }

    /** Makes the largest-magnitude entry of each row t of R positive, flipping column t of L with it. */
    private static void fixSigns(double[] l, double[] rr, int out, int in, int rank, int r) {
        for (int t = 0; t < rank; t++) {
            int arg = 0;
            for (int j = 1; j < in; j++) if (Math.abs(rr[t * in + j]) > Math.abs(rr[t * in + arg])) arg = j;
            if (rr[t * in + arg] >= 0) continue;
            for (int j = 0; j < in; j++) rr[t * in + j] = -rr[t * in + j];
            for (int o = 0; o < out; o++) l[o * r + t] = -l[o * r + t];
        }
    }

    /** {@link #initialize(Backend, LlamaWeights, LoraConfig, int, boolean, Split)} with PEFT's split. */
    public static Result initialize(Backend backend, LlamaWeights dense, LoraConfig config, int blocksize, boolean doubleQuant) {
        return initialize(backend, dense, config, blocksize, doubleQuant, Split.PEFT);
    }

    /**
     * Runs LoftQ over a dense model. While it runs, the dense projections and their NF4 copies are
     * both held (the start-up memory spike the guide warns about, {@code MemoryPlanner.loftqStartupBytes});
     * the caller may close the dense projections afterwards ({@link #releaseDenseProjections}).
     *
     * @throws IllegalArgumentException when {@code dense} has NF4 projections or config's init is not LoftQ
     */
    public static Result initialize(Backend backend, LlamaWeights dense, LoraConfig config, int blocksize, boolean doubleQuant, Split split) {
        if (dense.config().architecture().fusedProjections())
            throw new IllegalArgumentException("LoftQ initialisation of fused projections (Phi-3's qkv_proj, gate_up_proj) is not supported");
        if (config.init() != LoraConfig.Init.LOFTQ) throw new IllegalArgumentException("config init is " + config.init() + ", not LOFTQ");
        int r = config.r();
        double s = config.scaling();
        List<LoraAdapter.Slot> slots = LoraAdapter.layout(dense.config(), config);
        LoraAdapter.Slot lastSlot = slots.get(slots.size() - 1);
        float[] values = new float[Math.toIntExact(lastSlot.offsetB() + lastSlot.out() * r)];
        double wNorm2 = 0, before2 = 0, after2 = 0;
        SplittableRandom rnd = new SplittableRandom(config.randomState());
        List<LayerWeights> layers = new ArrayList<>();
        for (int l = 0; l < dense.layers().size(); l++) {
            LayerWeights lw = dense.layer(l);
            Map<Projection, ProjectionWeight> m = new EnumMap<>(Projection.class);
            for (Projection p : Projection.values()) {
                ProjectionWeight pw = lw.projection(p);
                if (!(pw instanceof ProjectionWeight.Dense d)) throw new IllegalArgumentException("LoftQ needs the dense base weights, " + p.moduleName + " is " + pw);
                float[] w = d.tensor().toFloats();
                int out = (int) p.outFeatures(dense.config()), in = (int) p.inFeatures(dense.config());
                LoraAdapter.Slot slot = config.targets(p) ? slotOf(slots, l, p) : null;
                if (slot == null) {
                    m.put(p, new ProjectionWeight.Quantized(quantize(backend, w, out, in, blocksize, doubleQuant)));
                    continue;
                }
                Factors f = factor(backend, w, out, in, r, config.loftqIter(), blocksize, doubleQuant, rnd);
                before2 += f.errorBefore2();
                float[] dq = f.dequantized();
                double fs = split == Split.PEFT ? 1 : 1.0 / Math.sqrt(s);
                for (int i = 0; i < r * in; i++) values[(int) slot.offsetA() + i] = (float) (f.r()[i] * fs);
                for (int i = 0; i < out * r; i++) values[(int) slot.offsetB() + i] = (float) (f.l()[i] * fs);
                // the error the fp32 adapter actually reaches (with the run's scale s)
                float[] aF = new float[r * in], bF = new float[out * r];
                System.arraycopy(values, (int) slot.offsetA(), aF, 0, aF.length);
                System.arraycopy(values, (int) slot.offsetB(), bF, 0, bF.length);
                for (int o = 0; o < out; o++)
                    for (int i = 0; i < in; i++) {
                        double ba = 0;
                        for (int k = 0; k < r; k++) ba += (double) bF[o * r + k] * aF[k * in + i];
                        double e = w[o * in + i] - dq[o * in + i] - s * ba;
                        after2 += e * e;
                        wNorm2 += (double) w[o * in + i] * w[o * in + i];
                    }
                m.put(p, new ProjectionWeight.Quantized(f.q()));
            }
            layers.add(lw.withProjections(m));
        }
        LlamaWeights qw = new LlamaWeights(dense.config(), dense.embedding(), layers, dense.norm(), dense.tied() ? null : dense.lmHead(),
                dense.format(), dense.source(), dense.configJson());
        LoraAdapter ad = LoraAdapter.of(backend, dense.config(), config, values);
        return new Result(qw, ad, Math.sqrt(before2 / wNorm2), Math.sqrt(after2 / wNorm2));
    }

    /**
     * Closes the dense projections of {@code dense} once LoftQ has made their NF4 copies (embedding,
     * norms and lm_head are shared with the result and stay open). Ends the start-up spike.
     */
    public static void releaseDenseProjections(LlamaWeights dense) {
        for (LayerWeights l : dense.layers()) for (ProjectionWeight pw : l.projections().values()) pw.close();
    }

    private static LoraAdapter.Slot slotOf(List<LoraAdapter.Slot> slots, int l, Projection p) {
        for (LoraAdapter.Slot s : slots) if (s.layer() == l && s.projection() == p) return s;
        return null;
    }

    private static Nf4Weight quantize(Backend backend, float[] w, int out, int in, int blocksize, boolean dq) {
        Tensor host = Tensor.ofFloats(w, out, in);
        Tensor dev = backend.upload(host, MemoryCategory.WORKSPACE);
        try {
            return Nf4.quantize(backend, dev, blocksize, dq);
        } finally {
            if (dev != host) dev.close();
            host.close();
        }
    }

    private static float[] dequantize(Backend backend, Nf4Weight q) {
        try (Tensor d = Nf4.dequantize(backend, q)) {
            Tensor h = backend.download(d);
            try {
                return h.toFloats();
            } finally {
                if (h != d) h.close();
            }
        }
    }

    private static double[] product(double[] l, double[] rr, int out, int in, int r) {
        double[] p = new double[out * in];
        for (int o = 0; o < out; o++)
            for (int k = 0; k < r; k++) {
                double lv = l[o * r + k];
                for (int i = 0; i < in; i++) p[o * in + i] += lv * rr[k * in + i];
            }
        return p;
    }

    /**
     * The rank-r factors of M [m, n] (row-major): {L = U√Σ [m, r], R = √Σ Vᵀ [r, n]}, with the
     * leading r singular triplets from a randomized subspace iteration.
     */
    static double[][] lowRank(double[] mat, int m, int n, int r, SplittableRandom rnd) {
        if (Math.min(m, n) <= EXACT_SVD_MAX) return lowRankExact(mat, m, n, r);
        int k = Math.min(Math.min(m, n), r + OVERSAMPLE);
        r = Math.min(r, k);
        double[] y = new double[m * k]; // Y = M Ω
        double[] omega = new double[n * k];
        for (int i = 0; i < omega.length; i++) omega[i] = rnd.nextDouble() * 2 - 1;
        mulMN(mat, omega, y, m, n, k);
        orthonormalize(y, m, k);
        double[] z = new double[n * k];
        for (int it = 0; it < POWER_ITERS; it++) {
            mulMtY(mat, y, z, m, n, k); // Z = Mᵀ Y
            orthonormalize(z, n, k);
            mulMN(mat, z, y, m, n, k);  // Y = M Z
            orthonormalize(y, m, k);
        }
        // C = Yᵀ M [k, n]; G = C Cᵀ [k, k] = eigvecs E, eigenvalues σ²
        double[] c = new double[k * n];
        for (int i = 0; i < m; i++)
            for (int a = 0; a < k; a++) {
                double ya = y[i * k + a];
                if (ya == 0) continue;
                for (int j = 0; j < n; j++) c[a * n + j] += ya * mat[i * n + j];
            }
        Eigen eig = Eigen.of(gram(k, (a, b) -> {
            double sum = 0;
            for (int j = 0; j < n; j++) sum += c[a * n + j] * c[b * n + j];
            return sum;
        }), k);
        double[] eval = eig.values(), evec = eig.vectors();
        Integer[] order = eig.order();
        double[] lf = new double[m * r], rf = new double[r * n];
        for (int t = 0; t < r; t++) {
            int e = order[t];
            double sigma = Math.sqrt(Math.max(0, eval[e]));
            if (sigma == 0) continue;
            double sq = Math.sqrt(sigma);
            // u = Y e (left singular vector); v = Cᵀ e / σ
            for (int i = 0; i < m; i++) {
                double u = 0;
                for (int a = 0; a < k; a++) u += y[i * k + a] * evec[a * k + e];
                lf[i * r + t] = u * sq;
            }
            for (int j = 0; j < n; j++) {
                double v = 0;
                for (int a = 0; a < k; a++) v += c[a * n + j] * evec[a * k + e];
                rf[t * n + j] = v / sigma * sq;
            }
        }
        return new double[][] {lf, rf};
    }

    /**
     * The exact rank-r factors (as PEFT's full {@code torch.linalg.svd}): the eigendecomposition of
     * the Gram matrix of the smaller side (MᵀM [n, n] or MMᵀ [m, m]) by cyclic Jacobi, in double.
     */
    static double[][] lowRankExact(double[] mat, int m, int n, int r) {
        boolean right = n <= m; // eigenvectors are the right singular vectors v (else the left u)
        int k = right ? n : m;
        Eigen eig = Eigen.of(gram(k, (a, b) -> {
            double sum = 0;
            if (right) for (int i = 0; i < m; i++) sum += mat[i * n + a] * mat[i * n + b];
            else for (int j = 0; j < n; j++) sum += mat[a * n + j] * mat[b * n + j];
            return sum;
        }), k);
        double[] eval = eig.values(), evec = eig.vectors();
        Integer[] order = eig.order();
        int rank = Math.min(r, k);
        double[] lf = new double[m * r], rf = new double[r * n];
        for (int t = 0; t < rank; t++) {
            int e = order[t];
            double sigma = Math.sqrt(Math.max(0, eval[e]));
            if (sigma == 0) continue;
            double sq = Math.sqrt(sigma);
            if (right) { // v = evec column; R row = √σ vᵀ; L column = M v / √σ
                for (int j = 0; j < n; j++) rf[t * n + j] = evec[j * k + e] * sq;
                for (int i = 0; i < m; i++) {
                    double u = 0;
                    for (int j = 0; j < n; j++) u += mat[i * n + j] * evec[j * k + e];
                    lf[i * r + t] = u / sq;
                }
            } else { // u = evec column; L column = √σ u; R row = uᵀ M / √σ
                for (int i = 0; i < m; i++) lf[i * r + t] = evec[i * k + e] * sq;
                for (int j = 0; j < n; j++) {
                    double v = 0;
                    for (int i = 0; i < m; i++) v += evec[i * k + e] * mat[i * n + j];
                    rf[t * n + j] = v / sq;
                }
            }
        }
        return new double[][] {lf, rf};
    }

    /** An entry of a symmetric matrix. */
    private interface Entry {
        double at(int a, int b);
    }

    /** The symmetric k x k matrix of {@code entry}, each pair computed once. */
    private static double[] gram(int k, Entry entry) {
        double[] g = new double[k * k];
        for (int a = 0; a < k; a++)
            for (int b = a; b < k; b++) {
                double v = entry.at(a, b);
                g[a * k + b] = v;
                g[b * k + a] = v;
            }
        return g;
    }

    /** Eigenvalues, eigenvectors (columns of [k, k]) and their indices by decreasing eigenvalue. */
    private record Eigen(double[] values, double[] vectors, Integer[] order) {
        /** Cyclic Jacobi of symmetric g [k, k] (overwritten). */
        static Eigen of(double[] g, int k) {
            double[] eval = new double[k];
            double[] evec = jacobi(g, k, eval);
            Integer[] order = new Integer[k];
            for (int i = 0; i < k; i++) order[i] = i;
            java.util.Arrays.sort(order, (p, q) -> Double.compare(eval[q], eval[p]));
            return new Eigen(eval, evec, order);
        }
    }

    private static void mulMN(double[] mat, double[] x, double[] out, int m, int n, int k) {
        java.util.Arrays.fill(out, 0);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double v = mat[i * n + j];
                if (v == 0) continue;
                for (int a = 0; a < k; a++) out[i * k + a] += v * x[j * k + a];
            }
    }

    private static void mulMtY(double[] mat, double[] y, double[] out, int m, int n, int k) {
        java.util.Arrays.fill(out, 0);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double v = mat[i * n + j];
                if (v == 0) continue;
                for (int a = 0; a < k; a++) out[j * k + a] += v * y[i * k + a];
            }
    }

    /** Modified Gram-Schmidt over the k columns of x [rows, k], twice for stability. */
    private static void orthonormalize(double[] x, int rows, int k) {
        for (int pass = 0; pass < 2; pass++)
            for (int a = 0; a < k; a++) {
                for (int b = 0; b < a; b++) {
                    double dot = 0;
                    for (int i = 0; i < rows; i++) dot += x[i * k + a] * x[i * k + b];
                    for (int i = 0; i < rows; i++) x[i * k + a] -= dot * x[i * k + b];
                }
                double nrm = 0;
                for (int i = 0; i < rows; i++) nrm += x[i * k + a] * x[i * k + a];
                nrm = Math.sqrt(nrm);
                for (int i = 0; i < rows; i++) x[i * k + a] = nrm > 1e-300 ? x[i * k + a] / nrm : 0;
            }
    }

    /** Cyclic Jacobi eigendecomposition of symmetric a [k, k]; returns eigenvectors as columns. */
    private static double[] jacobi(double[] a, int k, double[] eval) {
        double[] v = new double[k * k];
        for (int i = 0; i < k; i++) v[i * k + i] = 1;
        for (int sweep = 0; sweep < 100; sweep++) {
            double off = 0;
            for (int p = 0; p < k; p++) for (int q = p + 1; q < k; q++) off += a[p * k + q] * a[p * k + q];
            if (off < 1e-30) break;
            for (int p = 0; p < k; p++)
                for (int q = p + 1; q < k; q++) {
                    double apq = a[p * k + q];
                    if (Math.abs(apq) < 1e-300) continue;
                    double theta = (a[q * k + q] - a[p * k + p]) / (2 * apq);
                    double t = Math.signum(theta) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
                    if (theta == 0) t = 1;
                    double c = 1 / Math.sqrt(t * t + 1), s = t * c;
                    for (int i = 0; i < k; i++) {
                        double aip = a[i * k + p], aiq = a[i * k + q];
                        a[i * k + p] = c * aip - s * aiq;
                        a[i * k + q] = s * aip + c * aiq;
                    }
                    for (int i = 0; i < k; i++) {
                        double api = a[p * k + i], aqi = a[q * k + i];
                        a[p * k + i] = c * api - s * aqi;
                        a[q * k + i] = s * api + c * aqi;
                    }
                    for (int i = 0; i < k; i++) {
                        double vip = v[i * k + p], viq = v[i * k + q];
                        v[i * k + p] = c * vip - s * viq;
                        v[i * k + q] = s * vip + c * viq;
                    }
                }
        }
        for (int i = 0; i < k; i++) eval[i] = a[i * k + i];
        return v;
    }
}
