package io.lora4j.gguf;

import io.lora4j.tensor.Halfs;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * ggml's reference quantizers and dequantizers, bit-exact: {@code quantize_row_q8_0_ref},
 * {@code q4_0_ref}, {@code q5_0_ref}, {@code q4_K_ref} and {@code q6_K_ref} of ggml-quants.c, the ones
 * {@code llama-quantize} runs when no importance matrix is given. Every step is the fp32 arithmetic of
 * the C code in its order (Java float arithmetic is IEEE binary32, as C's float without FMA
 * contraction); scales go to f16 rounding to nearest even as {@code GGML_FP32_TO_FP16} does.
 *
 * <p>Block layouts (ggml-common.h), all little-endian:
 * <pre>
 * q8_0  [34]  f16 d | int8 qs[32]                                   x = d*q
 * q4_0  [18]  f16 d | u8 qs[16]: elem j low nibble, j+16 high          x = d*(q-8)
 * q5_0  [22]  f16 d | u32 qh (bit j: 5th bit of elem j) | u8 qs[16]    x = d*(q-16)
 * q4_K  [144] f16 d | f16 dmin | u8 scales[12] | u8 qs[128]           x = d*sc_j*q - dmin*m_j, 8 sub-blocks of 32
 *             scales: sub-block j&lt;4: sc = s[j]&amp;63, m = s[j+4]&amp;63; j&gt;=4: sc = (s[j+4]&amp;15) | (s[j-4]&gt;&gt;6)&lt;&lt;4,
 *             m = (s[j+4]&gt;&gt;4) | (s[j]&gt;&gt;6)&lt;&lt;4; qs: per 64 elements, 32 bytes: elem l low nibble, elem l+32 high
 * q6_K  [210] u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d        x = d*scale_(j/16)*(q-32)
 *             per 128 elements: ql[l] = q[l]&amp;15 | (q[l+64]&amp;15)&lt;&lt;4, ql[l+32] = q[l+32]&amp;15 | (q[l+96]&amp;15)&lt;&lt;4,
 *             qh[l] = q[l]&gt;&gt;4 | (q[l+32]&gt;&gt;4)&lt;&lt;2 | (q[l+64]&gt;&gt;4)&lt;&lt;4 | (q[l+96]&gt;&gt;4)&lt;&lt;6
 * </pre>
 */
public final class GgmlQuants {
    private GgmlQuants() {}

    /** ggml-quants.c GROUP_MAX_EPS: a group whose largest |x| is below it is all zero. */
    static final float GROUP_MAX_EPS = 1e-15f;

    /**
     * Quantizes {@code n} values of {@code x} from {@code off} into {@code out} at its position
     * (little-endian; the position advances by {@link GgmlType#rowBytes}).
     *
     * @throws IllegalArgumentException when n is not a multiple of the block size
     */
    public static void quantizeRow(GgmlType type, float[] x, int off, int n, ByteBuffer out) {
        out.order(ByteOrder.LITTLE_ENDIAN);
        type.rowBytes(n);
        switch (type) {
            case F32: for (int i = 0; i < n; i++) out.putFloat(x[off + i]); break;
            case F16: for (int i = 0; i < n; i++) out.putShort(Halfs.fromFloat(x[off + i])); break;
            case BF16: for (int i = 0; i < n; i++) out.putShort(Halfs.floatToBf16(x[off + i])); break;
            case Q8_0: for (int b = 0; b < n; b += 32) q8_0(x, off + b, out); break;
            case Q4_0: for (int b = 0; b < n; b += 32) q4_0(x, off + b, out); break;
            case Q5_0: for (int b = 0; b < n; b += 32) q5_0(x, off + b, out); break;
            case Q4_K: for (int b = 0; b < n; b += 256) q4_K(x, off + b, out); break;
            case Q6_K: for (int b = 0; b < n; b += 256) q6_K(x, off + b, out); break;
            default: throw new IllegalArgumentException("no quantizer for " + type);
        }
    }

    /** {@code quantizeRow} into a new array. */
    public static byte[] quantize(GgmlType type, float[] x) {
        byte[] b = new byte[Math.toIntExact(type.rowBytes(x.length))];
        quantizeRow(type, x, 0, x.length, ByteBuffer.wrap(b));
        return b;
    }

    /**
     * Dequantizes {@code n} values from {@code in} (at its position, which advances) into {@code y} from {@code off}.
     */
    public static void dequantizeRow(GgmlType type, ByteBuffer in, float[] y, int off, int n) {
        in.order(ByteOrder.LITTLE_ENDIAN);
        type.rowBytes(n);
        switch (type) {
            case F32: for (int i = 0; i < n; i++) y[off + i] = in.getFloat(); break;
            case F16: for (int i = 0; i < n; i++) y[off + i] = Halfs.toFloat(in.getShort()); break;
            case BF16: for (int i = 0; i < n; i++) y[off + i] = Halfs.bf16ToFloat(in.getShort()); break;
            case Q8_0:
                for (int b = 0; b < n; b += 32) {
                    float d = Halfs.toFloat(in.getShort());
                    for (int j = 0; j < 32; j++) y[off + b + j] = d * in.get();
                }
                break;
            case Q4_0:
                for (int b = 0; b < n; b += 32) {
                    float d = Halfs.toFloat(in.getShort());
                    for (int j = 0; j < 16; j++) {
                        int q = in.get() & 0xff;
                        y[off + b + j] = ((q & 15) - 8) * d;
                        y[off + b + j + 16] = ((q >> 4) - 8) * d;
                    }
                }
                break;
            case Q5_0:
                for (int b = 0; b < n; b += 32) {
                    float d = Halfs.toFloat(in.getShort());
                    int qh = in.getInt();
                    for (int j = 0; j < 16; j++) {
                        int q = in.get() & 0xff;
                        int x0 = (q & 15) | ((qh >>> j) & 1) << 4, x1 = (q >> 4) | ((qh >>> (j + 16)) & 1) << 4;
                        y[off + b + j] = (x0 - 16) * d;
                        y[off + b + j + 16] = (x1 - 16) * d;
                    }
                }
                break;
            case Q4_K: for (int b = 0; b < n; b += 256) dq4_K(in, y, off + b); break;
            case Q6_K: for (int b = 0; b < n; b += 256) dq6_K(in, y, off + b); break;
            default: throw new IllegalArgumentException("no dequantizer for " + type);
        }
    }

    // ---- ggml's helpers ---------------------------------------------------------------------

    /** ggml's nearest_int: round half to even via the 1.5·2^23 trick, for |v| &lt;= 4194303. */
    static int nearestInt(float v) {
        float t = v + 12582912.f;
        return (Float.floatToRawIntBits(t) & 0x007fffff) - 0x00400000;
    }

    /** C's roundf: half away from zero (exact in double for any float). */
    static float roundf(float v) {
        double a = Math.floor(Math.abs((double) v) + 0.5);
        return (float) (v < 0 ? -a : a);
    }

    /** f16 round trip, as the C code reads back a scale it stored. */
    private static float f16(float v) {
        return Halfs.toFloat(Halfs.fromFloat(v));
    }

    // ---- 32-element blocks ------------------------------------------------------------------

    private static void q8_0(float[] x, int o, ByteBuffer out) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        out.putShort(Halfs.fromFloat(d));
        for (int j = 0; j < 32; j++) out.put((byte) (int) roundf(x[o + j] * id));
    }

    /** The signed value of largest magnitude (first one on ties), as q4_0/q5_0 pick it. */
    private static float signedMax(float[] x, int o) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[o + j];
            if (amax < Math.abs(v)) {
                amax = Math.abs(v);
                max = v;
            }
        }
        return max;
    }

    private static void q4_0(float[] x, int o, ByteBuffer out) {
        float d = signedMax(x, o) / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        out.putShort(Halfs.fromFloat(d));
        for (int j = 0; j < 16; j++) {
            int xi0 = Math.min(15, (byte) (int) (x[o + j] * id + 8.5f));
            int xi1 = Math.min(15, (byte) (int) (x[o + 16 + j] * id + 8.5f));
            out.put((byte) ((xi0 & 0xff) | (xi1 << 4)));
        }
    }

    private static void q5_0(float[] x, int o, ByteBuffer out) {
        float d = signedMax(x, o) / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        out.putShort(Halfs.fromFloat(d));
        int qh = 0;
        byte[] qs = new byte[16];
        for (int j = 0; j < 16; j++) {
            int xi0 = Math.min(31, (byte) (int) (x[o + j] * id + 16.5f)) & 0xff;
            int xi1 = Math.min(31, (byte) (int) (x[o + 16 + j] * id + 16.5f)) & 0xff;
            qs[j] = (byte) ((xi0 & 15) | ((xi1 & 15) << 4));
            qh |= ((xi0 & 0x10) >> 4) << j;
            qh |= ((xi1 & 0x10) >> 4) << (j + 16);
        }
        out.putInt(qh);
        out.put(qs);
    }

    // ---- q4_K -------------------------------------------------------------------------------

    /**
     * make_qkx2_quants: an asymmetric nmax-level quantization of x[o, o+n) with weights w that
     * searches nstep+1 scales around nmax/(max-min) for the least weighted squared error. Writes
     * the levels to L[lo..], returns the scale and stores -min in theMin[0].
     */
    static float makeQkx2Quants(int n, int nmax, float[] x, int o, float[] w, byte[] L, int lo, float[] theMin, byte[] laux,
            float rmin, float rdelta, int nstep) {
        float min = x[o], max = x[o];
        float sumW = w[0];
        float sumX = sumW * x[o];
        for (int i = 1; i < n; i++) {
            if (x[o + i] < min) min = x[o + i];
            if (x[o + i] > max) max = x[o + i];
            sumW += w[i];
            sumX += w[i] * x[o + i];
        }
        if (min > 0) min = 0;
        if (max == min) {
            for (int i = 0; i < n; i++) L[lo + i] = 0;
            theMin[0] = -min;
            return 0.f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++) {
            int l = nearestInt(iscale * (x[o + i] - min));
            L[lo + i] = (byte) Math.max(0, Math.min(nmax, l));
            float diff = scale * L[lo + i] + min - x[o + i];
            bestError += w[i] * (diff * diff);
        }
        for (int is = 0; is <= nstep; is++) {
            iscale = (rmin + rdelta * is + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXl = 0;
            for (int i = 0; i < n; i++) {
                int l = Math.max(0, Math.min(nmax, nearestInt(iscale * (x[o + i] - min))));
                laux[i] = (byte) l;
                sumL += w[i] * l;
                sumL2 += w[i] * l * l;
                sumXl += w[i] * l * x[o + i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0) {
                float thisScale = (sumW * sumXl - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXl) / det;
                if (thisMin > 0) {
                    thisMin = 0;
                    thisScale = sumXl / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; i++) {
                    float diff = thisScale * laux[i] + thisMin - x[o + i];
                    curError += w[i] * (diff * diff);
                }
                if (curError < bestError) {
                    System.arraycopy(laux, 0, L, lo, n);
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin[0] = -min;
        return scale;
    }

    private static void q4_K(float[] x, int o, ByteBuffer out) {
        byte[] L = new byte[256], laux = new byte[32];
        float[] weights = new float[32], mins = new float[8], scales = new float[8], theMin = new float[1];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++) {
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += x[o + 32 * j + l] * x[o + 32 * j + l];
            float avX = (float) Math.sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + Math.abs(x[o + 32 * j + l]);
            scales[j] = makeQkx2Quants(32, 15, x, o + 32 * j, weights, L, 32 * j, theMin, laux, -1.f, 0.1f, 20);
            mins[j] = theMin[0];
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63.f / maxScale : 0.f;
        float invMin = maxMin > 0 ? 63.f / maxMin : 0.f;
        int[] s = new int[12];
        for (int j = 0; j < 8; j++) {
            int ls = Math.min(63, nearestInt(invScale * scales[j]) & 0xff); // uint8_t, then MIN(63, .)
            int lm = Math.min(63, nearestInt(invMin * mins[j]) & 0xff);
            if (j < 4) {
                s[j] = ls;
                s[j + 4] = lm;
            } else {
                s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                s[j - 4] |= (ls >> 4) << 6;
                s[j] |= (lm >> 4) << 6;
            }
        }
        short dBits = Halfs.fromFloat(maxScale / 63.f), dminBits = Halfs.fromFloat(maxMin / 63.f);
        float dAll = Halfs.toFloat(dBits), dminAll = Halfs.toFloat(dminBits);
        for (int j = 0; j < 8; j++) {
            int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            float d = dAll * sc;
            if (d == 0) continue;
            float dm = dminAll * m;
            for (int ii = 0; ii < 32; ii++) {
                int l = nearestInt((x[o + 32 * j + ii] + dm) / d);
                L[32 * j + ii] = (byte) Math.max(0, Math.min(15, l));
            }
        }
        out.putShort(dBits);
        out.putShort(dminBits);
        for (int v : s) out.put((byte) v);
        for (int j = 0; j < 256; j += 64)
            for (int l = 0; l < 32; l++) out.put((byte) (L[j + l] | (L[j + l + 32] << 4)));
    }

    private static void dq4_K(ByteBuffer in, float[] y, int o) {
        float d = Halfs.toFloat(in.getShort()), dmin = Halfs.toFloat(in.getShort());
        int[] s = new int[12];
        for (int i = 0; i < 12; i++) s[i] = in.get() & 0xff;
        for (int j = 0; j < 256; j += 64) {
            int js = j / 32;
            float d1 = d * scK4(js, s), m1 = dmin * minK4(js, s), d2 = d * scK4(js + 1, s), m2 = dmin * minK4(js + 1, s);
            for (int l = 0; l < 32; l++) {
                int q = in.get() & 0xff;
                y[o + j + l] = d1 * (q & 0xF) - m1;
                y[o + j + l + 32] = d2 * (q >> 4) - m2;
            }
        }
    }

    private static int scK4(int j, int[] s) {
        return j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    }

    private static int minK4(int j, int[] s) {
        return j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }

    // ---- q6_K -------------------------------------------------------------------------------

    /**
     * make_qx_quants with rmse_type 1 and no importance weights: a symmetric quantization to
     * [-nmax, nmax-1] of x[o, o+n), weights x², searching 18 scales around -nmax/max. Writes
     * level+nmax to L[lo..] and returns the scale.
     */
    static float makeQxQuants(int n, int nmax, float[] x, int o, byte[] L, int lo) {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++) {
            float ax = Math.abs(x[o + i]);
            if (ax > amax) {
                amax = ax;
                max = x[o + i];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            for (int i = 0; i < n; i++) L[lo + i] = 0;
            return 0.f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(iscale * x[o + i])));
            L[lo + i] = (byte) (l + nmax);
            float w = x[o + i] * x[o + i];
            sumlx += w * x[o + i] * l;
            suml2 += w * l * l;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int is = -9; is <= 9; is++) {
            if (is == 0) continue;
            iscale = -(nmax + 0.1f * is) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++) {
                int l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(iscale * x[o + i])));
                float w = x[o + i] * x[o + i];
                sumlx += w * x[o + i] * l;
                suml2 += w * l * l;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2) {
                for (int i = 0; i < n; i++)
                    L[lo + i] = (byte) (nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(iscale * x[o + i]))));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    private static void q6_K(float[] x, int o, ByteBuffer out) {
        byte[] L = new byte[256];
        float[] scales = new float[16];
        float maxScale = 0, maxAbsScale = 0;
        for (int ib = 0; ib < 16; ib++) {
            float scale = makeQxQuants(16, 32, x, o + 16 * ib, L, 16 * ib);
            scales[ib] = scale;
            float abs = Math.abs(scale);
            if (abs > maxAbsScale) {
                maxAbsScale = abs;
                maxScale = scale;
            }
        }
        if (maxAbsScale < GROUP_MAX_EPS) {
            out.put(new byte[208]);
            out.putShort(Halfs.fromFloat(0.f));
            return;
        }
        float iscale = -128.f / maxScale;
        short dBits = Halfs.fromFloat(1 / iscale);
        float dAll = Halfs.toFloat(dBits);
        byte[] sc = new byte[16];
        for (int ib = 0; ib < 16; ib++) sc[ib] = (byte) Math.min(127, nearestInt(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            float d = dAll * sc[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = Math.max(-32, Math.min(31, nearestInt(x[o + 16 * j + ii] / d)));
                L[16 * j + ii] = (byte) (l + 32);
            }
        }
        byte[] ql = new byte[128], qh = new byte[64];
        for (int j = 0, qlo = 0, qho = 0; j < 256; j += 128, qlo += 64, qho += 32) {
            for (int l = 0; l < 32; l++) {
                int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[qlo + l] = (byte) (q1 | (q3 << 4));
                ql[qlo + l + 32] = (byte) (q2 | (q4 << 4));
                qh[qho + l] = (byte) ((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
        out.put(ql);
        out.put(qh);
        out.put(sc);
        out.putShort(dBits);
    }

    private static void dq6_K(ByteBuffer in, float[] y, int o) {
        byte[] ql = new byte[128], qh = new byte[64], sc = new byte[16];
        in.get(ql);
        in.get(qh);
        in.get(sc);
        float d = Halfs.toFloat(in.getShort());
        for (int n = 0; n < 256; n += 128) {
            int qlo = n / 2, qho = n / 4, so = n / 16;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int h = qh[qho + l] & 0xff;
                int q1 = ((ql[qlo + l] & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((ql[qlo + l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = (((ql[qlo + l] & 0xff) >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = (((ql[qlo + l + 32] & 0xff) >> 4) | (((h >> 6) & 3) << 4)) - 32;
                y[o + n + l] = d * sc[so + is] * q1;
                y[o + n + l + 32] = d * sc[so + is + 2] * q2;
                y[o + n + l + 64] = d * sc[so + is + 4] * q3;
                y[o + n + l + 96] = d * sc[so + is + 6] * q4;
            }
        }
    }
}
