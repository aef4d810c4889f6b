#!/usr/bin/python3
"""Reference values for lora4j's Llama forward pass, from an independent PyTorch implementation.

Run with Debian's torch (the system interpreter, not the pyenv python3 first on PATH):

    /usr/bin/python3 scripts/reference/llama_reference.py [--cache ~/.cache/lora4j]

It loads stories15M.bin (llama2.c v0) directly from the file, permutes q/k rows into the HF
layout (DESIGN.md §4), runs an HF-style Llama forward pass in fp64 (RMSNorm, rotate_half RoPE,
causal attention, SwiGLU, tied lm_head), and writes tests/resources/model/stories15m_reference.json:

  golden_logits   logits at position 7 for ids 0..4 after BOS + "Once upon a time" (DESIGN §5)
  greedy_ids      40 greedy ids from BOS + "Once upon a time" (must equal DESIGN §5's list)
  texts           [{text, ids, loss}]: mean next-token cross-entropy of [BOS] + encode(text) + [EOS]

Tokenization uses the real SentencePiece library (python3-sentencepiece) on tokenizer.model.
fp64 makes these values independent of summation order; lora4j's fp32 path is compared within
the tolerances its tests state.
"""
import argparse
import json
import math
import os
import struct

import sentencepiece as spm
import torch

TEXTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
    "The cat sat on the mat. It was a sunny day and the cat was happy.",
    "Tom and Sue went to the park. They saw a big dog and a small bird. Tom said, \"Look at the bird!\"",
    "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.",
]


def load_llama2c(path):
    """Reads a llama2.c v0 checkpoint into HF-layout float64 tensors."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    floats = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32).double()
    pos = 0

    def take(*shape):
        nonlocal pos
        n = 1
        for s in shape:
            n *= s
        t = floats[pos:pos + n].reshape(*shape)
        pos += n
        return t

    w = {"emb": take(vocab, dim), "rms_att": take(n_layers, dim),
         "wq": take(n_layers, dim, dim), "wk": take(n_layers, n_kv * head, dim),
         "wv": take(n_layers, n_kv * head, dim), "wo": take(n_layers, dim, dim),
         "rms_ffn": take(n_layers, dim), "w1": take(n_layers, hidden, dim),
         "w2": take(n_layers, dim, hidden), "w3": take(n_layers, hidden, dim),
         "rms_final": take(dim)}
    take(seq_len, head // 2)  # freq_cis_real (unused)
    take(seq_len, head // 2)  # freq_cis_imag (unused)
    w["cls"] = w["emb"] if shared else take(vocab, dim)

    def permute(t, heads):
        # Meta interleaved pairs (2i, 2i+1) -> HF halves (i, i + d/2), per head.
        return t.view(heads, head // 2, 2, dim).transpose(1, 2).reshape(heads * head, dim)

    w["wq"] = torch.stack([permute(w["wq"][l], n_heads) for l in range(n_layers)])
    w["wk"] = torch.stack([permute(w["wk"][l], n_kv) for l in range(n_layers)])
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv,
               vocab=vocab, seq_len=seq_len, head=head)
    return cfg, w


def rms_norm(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, w, ids):
    """Logits [T, vocab] for one sequence, fp64."""
    T = len(ids)
    H, KV, D = cfg["n_heads"], cfg["n_kv"], cfg["head"]
    x = w["emb"][torch.tensor(ids)]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :]
    sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["n_layers"]):
        h = rms_norm(x, w["rms_att"][l])
        q = (h @ w["wq"][l].T).view(T, H, D)
        k = (h @ w["wk"][l].T).view(T, KV, D)
        v = (h @ w["wv"][l].T).view(T, KV, D)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask
        att = att.softmax(-1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, H * D)
        x = x + o @ w["wo"][l].T
        h = rms_norm(x, w["rms_ffn"][l])
        x = x + (torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
    x = rms_norm(x, w["rms_final"])
    return x @ w["cls"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("LORA4J_CACHE", os.path.expanduser("~/.cache/lora4j")))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests",
                                                  "resources", "model", "stories15m_reference.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, w = load_llama2c(os.path.join(args.cache, "stories15M.bin"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.cache, "tokenizer.model"))

    prompt = [1] + sp.encode("Once upon a time")
    ids = list(prompt)
    while len(ids) < 40:
        ids.append(int(forward(cfg, w, ids)[-1].argmax()))
    # DESIGN §5: logits at position 7 of the greedy sequence, ids 0..4.
    golden = forward(cfg, w, ids[:8])[7, :5].tolist()

    texts = []
    for t in TEXTS:
        tid = [1] + sp.encode(t) + [2]
        lg = forward(cfg, w, tid)
        loss = torch.nn.functional.cross_entropy(lg[:-1], torch.tensor(tid[1:])).item()
        texts.append({"text": t, "ids": tid, "loss": loss})

    out = {"generated_by": "scripts/reference/llama_reference.py (torch %s, fp64)" % torch.__version__,
           "prompt_ids": prompt, "golden_logits_pos7_ids0to4": golden, "greedy_ids": ids,
           "greedy_text": sp.decode(ids[1:]), "texts": texts}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    print(json.dumps({k: out[k] for k in ("golden_logits_pos7_ids0to4", "greedy_text")}, indent=1))
    for t in texts:
        print("%.6f  %s" % (t["loss"], t["text"][:50]))


if __name__ == "__main__":
    main()
