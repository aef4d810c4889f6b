// TEST-ONLY GGUF v3 writer for the decode benchmark's llama.cpp peer: converts a llama2.c v0
// checkpoint (DESIGN.md §4) and its tokenizer.bin into a `llama` GGUF with F32 or Q4_0
// projections, and writes seeded synthetic llama2.c checkpoints of any size. Not lora4j's
// exporter (that is io.lora4j.gguf); it writes only what llama.cpp needs to run the model.
//
//   node gguf.mjs convert MODEL.bin TOKENIZER.bin OUT.gguf f32|q4_0
//   node gguf.mjs synth OUT.bin dim hidden layers heads vocab seq_len seed
//
// Format (ggml docs/gguf.md): "GGUF", u32 version 3, u64 tensor count, u64 KV count, KVs
// (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64 ne[n_dims] with ne[0]
// the contiguous dimension, u32 ggml type, u64 offset into the data section), padding to
// general.alignment (32), data. Strings are u64 length + UTF-8 bytes, all little-endian.
// llama.cpp's `llama` architecture reads q/k rows in Meta's interleaved RoPE order, which is the
// llama2.c order: the projections are copied as they are.
//
// Q4_0 (ggml block_q4_0, 32 weights in 18 bytes = 4.5 bits/weight): m = the element of largest
// |x| (sign kept), d = m / -8 stored as fp16, q_j = min(15, trunc(x_j/d + 8.5)), byte j of the 16
// = q_j | q_{j+16} << 4; dequantized x_j = (q_j - 8)·d.
import fs from "node:fs";

const GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9;
const GGML_F32 = 0, GGML_Q4_0 = 2;
const ALIGN = 32;

class Out {
  constructor() { this.parts = []; this.len = 0; }
  push(buf) { this.parts.push(buf); this.len += buf.length; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  i32(v) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b); }
  u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  str(s) { const b = Buffer.from(s, "utf8"); this.u64(b.length); this.push(b); }
  pad() { const r = this.len % ALIGN; if (r) this.push(Buffer.alloc(ALIGN - r)); }
}

/** fp32 -> IEEE fp16 bits, round to nearest even. */
function toHalf(f) {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, f);
  const x = b.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  let exp = (x >>> 23) & 0xff, mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function quantizeQ4_0(x) {
  if (x.length % 32) throw new Error("Q4_0 needs a multiple of 32 elements, got " + x.length);
  const out = Buffer.alloc((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
    }
    const dh = toHalf(max / -8);
    const d = Math.fround(max / -8), id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(dh, b * 18);
    for (let j = 0; j < 16; j++) {
      const x0 = Math.fround(x[b * 32 + j] * id), x1 = Math.fround(x[b * 32 + 16 + j] * id);
      const q0 = Math.min(15, Math.trunc(Math.fround(x0 + 8.5))), q1 = Math.min(15, Math.trunc(Math.fround(x1 + 8.5)));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

function readLlama2c(path) {
  const buf = fs.readFileSync(path);
  const h = [];
  for (let i = 0; i < 7; i++) h.push(buf.readInt32LE(4 * i));
  const [dim, hidden, layers, heads, kvHeads, vocabSigned, seqLen] = h;
  const vocab = Math.abs(vocabSigned), shared = vocabSigned > 0;
  const kvDim = (dim / heads) * kvHeads;
  const f = new Float32Array(buf.buffer, buf.byteOffset + 28, (buf.length - 28) / 4);
  let off = 0;
  const take = (n) => { const t = f.subarray(off, off + n); off += n; return t; };
  const m = { dim, hidden, layers, heads, kvHeads, vocab, seqLen, kvDim };
  m.tokEmb = take(vocab * dim);
  m.rmsAtt = take(layers * dim);
  m.wq = take(layers * dim * dim);
  m.wk = take(layers * kvDim * dim);
  m.wv = take(layers * kvDim * dim);
  m.wo = take(layers * dim * dim);
  m.rmsFfn = take(layers * dim);
  m.w1 = take(layers * hidden * dim);
  m.w2 = take(layers * dim * hidden);
  m.w3 = take(layers * hidden * dim);
  m.rmsFinal = take(dim);
  take(seqLen * (dim / heads) / 2);
  take(seqLen * (dim / heads) / 2);
  m.wcls = shared ? null : take(vocab * dim);
  return m;
}

/** tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes. */
function readTokenizer(path, vocab) {
  const buf = fs.readFileSync(path);
  let off = 4;
  const tokens = [], scores = [], types = [];
  for (let i = 0; i < vocab; i++) {
    const score = buf.readFloatLE(off), len = buf.readInt32LE(off + 4);
    const bytes = buf.subarray(off + 8, off + 8 + len);
    off += 8 + len;
    let piece, type = 1;                         // 1 normal
    if (i === 0) { piece = "<unk>"; type = 2; }  // 2 unknown
    else if (i === 1) { piece = "<s>"; type = 3; } // 3 control
    else if (i === 2) { piece = "</s>"; type = 3; }
    else if (i >= 3 && i < 259) { piece = "<0x" + (i - 3).toString(16).toUpperCase().padStart(2, "0") + ">"; type = 6; } // 6 byte
    else piece = bytes.toString("utf8").replaceAll(" ", "\u2581"); // llama2.c's export turned ▁ into spaces
    tokens.push(piece);
    scores.push(score);
    types.push(type);
  }
  return { tokens, scores, types };
}

function convert(modelPath, tokPath, outPath, ftype) {
  const m = readLlama2c(modelPath);
  const tok = readTokenizer(tokPath, m.vocab);
  const hd = m.dim / m.heads;
  const tensors = []; // {name, ne, type, data}
  const dense = (name, ne, data) => tensors.push({ name, ne, type: GGML_F32, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
  const proj = (name, ne, data) => {
    if (ftype === "q4_0") tensors.push({ name, ne, type: GGML_Q4_0, data: quantizeQ4_0(data) });
    else dense(name, ne, data);
  };
  dense("token_embd.weight", [m.dim, m.vocab], m.tokEmb);
  dense("output_norm.weight", [m.dim], m.rmsFinal);
  if (m.wcls) dense("output.weight", [m.dim, m.vocab], m.wcls);
  for (let l = 0; l < m.layers; l++) {
    const sl = (arr, n) => arr.subarray(l * n, (l + 1) * n);
    dense(`blk.${l}.attn_norm.weight`, [m.dim], sl(m.rmsAtt, m.dim));
    proj(`blk.${l}.attn_q.weight`, [m.dim, m.dim], sl(m.wq, m.dim * m.dim));
    proj(`blk.${l}.attn_k.weight`, [m.dim, m.kvDim], sl(m.wk, m.kvDim * m.dim));
    proj(`blk.${l}.attn_v.weight`, [m.dim, m.kvDim], sl(m.wv, m.kvDim * m.dim));
    proj(`blk.${l}.attn_output.weight`, [m.dim, m.dim], sl(m.wo, m.dim * m.dim));
    dense(`blk.${l}.ffn_norm.weight`, [m.dim], sl(m.rmsFfn, m.dim));
    proj(`blk.${l}.ffn_gate.weight`, [m.dim, m.hidden], sl(m.w1, m.hidden * m.dim));
    proj(`blk.${l}.ffn_down.weight`, [m.hidden, m.dim], sl(m.w2, m.dim * m.hidden));
    proj(`blk.${l}.ffn_up.weight`, [m.dim, m.hidden], sl(m.w3, m.hidden * m.dim));
  }
  const kv = [
    ["general.architecture", GGUF_STRING, "llama"],
    ["general.name", GGUF_STRING, "lora4j-bench"],
    ["general.alignment", GGUF_UINT32, ALIGN],
    ["general.file_type", GGUF_UINT32, ftype === "q4_0" ? 2 : 0],
    ["llama.context_length", GGUF_UINT32, m.seqLen],
    ["llama.embedding_length", GGUF_UINT32, m.dim],
    ["llama.block_count", GGUF_UINT32, m.layers],
    ["llama.feed_forward_length", GGUF_UINT32, m.hidden],
    ["llama.rope.dimension_count", GGUF_UINT32, hd],
    ["llama.attention.head_count", GGUF_UINT32, m.heads],
    ["llama.attention.head_count_kv", GGUF_UINT32, m.kvHeads],
    ["llama.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, 1e-5],
    ["llama.rope.freq_base", GGUF_FLOAT32, 10000],
    ["llama.vocab_size", GGUF_UINT32, m.vocab],
    ["tokenizer.ggml.model", GGUF_STRING, "llama"],
    ["tokenizer.ggml.tokens", GGUF_ARRAY, [GGUF_STRING, tok.tokens]],
    ["tokenizer.ggml.scores", GGUF_ARRAY, [GGUF_FLOAT32, tok.scores]],
    ["tokenizer.ggml.token_type", GGUF_ARRAY, [GGUF_INT32, tok.types]],
    ["tokenizer.ggml.bos_token_id", GGUF_UINT32, 1],
    ["tokenizer.ggml.eos_token_id", GGUF_UINT32, 2],
    ["tokenizer.ggml.unknown_token_id", GGUF_UINT32, 0],
    ["tokenizer.ggml.add_bos_token", GGUF_BOOL, true],
    ["tokenizer.ggml.add_eos_token", GGUF_BOOL, false],
  ];
  const o = new Out();
  o.push(Buffer.from("GGUF", "ascii"));
  o.u32(3);
  o.u64(tensors.length);
  o.u64(kv.length);
  const value = (type, v) => {
    switch (type) {
      case GGUF_UINT32: o.u32(v); break;
      case GGUF_INT32: o.i32(v); break;
      case GGUF_FLOAT32: o.f32(v); break;
      case GGUF_BOOL: o.push(Buffer.from([v ? 1 : 0])); break;
      case GGUF_STRING: o.str(v); break;
      case GGUF_ARRAY: o.u32(v[0]); o.u64(v[1].length); for (const e of v[1]) value(v[0], e); break;
      default: throw new Error("type " + type);
    }
  };
  for (const [key, type, v] of kv) { o.str(key); o.u32(type); value(type, v); }
  let offset = 0;
  for (const t of tensors) {
    o.str(t.name);
    o.u32(t.ne.length);
    for (const n of t.ne) o.u64(n);
    o.u32(t.type);
    o.u64(offset);
    t.offset = offset;
    offset += t.data.length;
    offset += (ALIGN - (offset % ALIGN)) % ALIGN;
  }
  o.pad();
  for (const t of tensors) { o.push(t.data); o.pad(); }
  const tmp = outPath + ".tmp";
  const fd = fs.openSync(tmp, "w");
  for (const p of o.parts) fs.writeSync(fd, p);
  fs.closeSync(fd);
  fs.renameSync(tmp, outPath);
  let projWeights = 0, projBytes = 0;
  for (const t of tensors) if (/attn_[qkvo]|attn_output|ffn_/.test(t.name) && !t.name.endsWith("norm.weight")) {
    projWeights += t.ne.reduce((a, b) => a * b, 1);
    projBytes += t.data.length;
  }
  console.log(JSON.stringify({ out: outPath, ftype, projection_bytes_per_weight: projBytes / projWeights }));
}

/** A seeded llama2.c v0 checkpoint: N(0, 0.02²) weights, unit norms, tied embeddings. */
function synth(outPath, dim, hidden, layers, heads, vocab, seqLen, seed) {
  let a = Number(seed) >>> 0;
  const next = () => { // mulberry32: uniform in [0, 1)
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const hd = dim / heads;
  const counts = [vocab * dim, layers * dim, layers * dim * dim, layers * dim * dim, layers * dim * dim, layers * dim * dim,
    layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim, seqLen * hd / 2, seqLen * hd / 2];
  const norms = new Set([1, 6, 10]);
  const fd = fs.openSync(outPath + ".tmp", "w");
  const head = Buffer.alloc(28);
  [dim, hidden, layers, heads, heads, vocab, seqLen].forEach((v, i) => head.writeInt32LE(v, 4 * i));
  fs.writeSync(fd, head);
  counts.forEach((n, idx) => {
    const chunk = new Float32Array(1 << 20);
    for (let done = 0; done < n; done += chunk.length) {
      const len = Math.min(chunk.length, n - done);
      for (let i = 0; i < len; i++) {
        if (norms.has(idx)) chunk[i] = 1;
        else if (idx >= 11) chunk[i] = 0; // freq_cis tables: unused by both readers
        else { // Box-Muller
          const u1 = next() || 1e-12, u2 = next();
          chunk[i] = 0.02 * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
        }
      }
      fs.writeSync(fd, Buffer.from(chunk.buffer, 0, len * 4));
    }
  });
  fs.closeSync(fd);
  fs.renameSync(outPath + ".tmp", outPath);
}

const [cmd, ...a] = process.argv.slice(2);
if (cmd === "convert") convert(a[0], a[1], a[2], a[3] || "f32");
else if (cmd === "synth") synth(a[0], ...a.slice(1, 7).map(Number), a[7] || "3407");
else {
  console.error("usage: node gguf.mjs convert MODEL.bin TOKENIZER.bin OUT.gguf f32|q4_0 | synth OUT.bin dim hidden layers heads vocab seq_len seed");
  process.exit(2);
}
