#!/usr/bin/python3
"""PyTorch peer of TrainBench: one LoRA optimizer step on stories15M, one thread.

Same work as bench/io/lora4j/bench/TrainBench.java: stories15M (llama2.c .bin, fp32) with LoRA
r=16, alpha=16 on all seven projections, `batch` rows of 256 random tokens (seed-independent
shapes), every next token trained; forward, CE (sum / N), backward, clip_grad_norm_(1.0),
torch.optim.AdamW(weight_decay 0.01). Frozen base weights have requires_grad=False, so autograd
computes only the LoRA gradients and the input gradients it needs. Prints JSON:
{"batch", "seq", "train_step": {"median_ms", "min_ms", "max_ms"}, "tokens_per_second", "peak_rss_bytes"}.

Usage: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 scripts/reference/torch_train_peer.py [--batch 1] [--steps 8]
"""
import argparse
import json
import math
import os
import resource
import struct
import time

import numpy as np
import torch


def load_llama2c(path):
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    tied = vocab > 0
    vocab = abs(vocab)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        t = torch.from_numpy(data[off:off + n].copy()).reshape(shape)
        off += n
        return t
    hd = dim // heads
    W = {"emb": take(vocab, dim), "rms_att": take(layers, dim), "wq": take(layers, dim, dim), "wk": take(layers, kv * hd, dim),
         "wv": take(layers, kv * hd, dim), "wo": take(layers, dim, dim), "rms_ffn": take(layers, dim), "w1": take(layers, hidden, dim),
         "w2": take(layers, dim, hidden), "w3": take(layers, hidden, dim), "rms_final": take(dim)}
    return dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv=kv, vocab=vocab, hd=hd), W


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--model", default=os.path.join(os.environ.get("LORA4J_CACHE", os.path.expanduser("~/.cache/lora4j")), "stories15M.bin"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(7)
    c, W = load_llama2c(args.model)
    S, B, r, s = 256, args.batch, 16, 1.0
    d, hd, H, KV, L = c["dim"], c["hd"], c["heads"], c["kv"], c["layers"]
    # llama2.c interleaved RoPE on the Meta layout (same cost as rotate_half on the HF layout)
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.arange(S).float()[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    lora = []
    shapes = {"wq": (d, d), "wk": (KV * hd, d), "wv": (KV * hd, d), "wo": (d, d), "w1": (c["hidden"], d), "w3": (c["hidden"], d), "w2": (d, c["hidden"])}
    A, Bm = {}, {}
    for l in range(L):
        for k, (o, i) in shapes.items():
            a = torch.empty(r, i).uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i)).requires_grad_(True)
            b = torch.zeros(o, r, requires_grad=True)
            A[(l, k)], Bm[(l, k)] = a, b
            lora += [a, b]

    def lin(x, l, k):
        return x @ W[k][l].t() + s * ((x @ A[(l, k)].t()) @ Bm[(l, k)].t())

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    def rope(x):  # [B, S, H, hd] interleaved pairs
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * cos[None, :, None] - x1 * sin[None, :, None], x0 * sin[None, :, None] + x1 * cos[None, :, None]], -1).flatten(-2)

    mask = torch.full((S, S), float("-inf")).triu(1)

    def forward(ids):
        x = W["emb"][ids]
        for l in range(L):
            h = rms(x, W["rms_att"][l])
            q = rope(lin(h, l, "wq").view(B, S, H, hd)).transpose(1, 2)
            k = rope(lin(h, l, "wk").view(B, S, KV, hd)).transpose(1, 2)
            v = lin(h, l, "wv").view(B, S, KV, hd).transpose(1, 2)
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask).softmax(-1)
            x = x + lin((att @ v).transpose(1, 2).reshape(B, S, d), l, "wo")
            h = rms(x, W["rms_ffn"][l])
            x = x + lin(torch.nn.functional.silu(lin(h, l, "w1")) * lin(h, l, "w3"), l, "w2")
        return rms(x, W["rms_final"]) @ W["emb"].t()

    ids = torch.randint(3, c["vocab"], (B, S))
    ids[:, 0] = 1
    targets = torch.full((B, S), -100, dtype=torch.long)
    targets[:, :-1] = ids[:, 1:]
    n = int((targets != -100).sum())
    opt = torch.optim.AdamW(lora, lr=2e-4, weight_decay=0.01)
    times = []
    for step in range(args.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = forward(ids)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, c["vocab"]), targets.view(-1), ignore_index=-100, reduction="sum") / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        if step >= 2:  # two warmup steps
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    print(json.dumps({"batch": B, "seq": S, "train_step": {"median_ms": med, "min_ms": times[0], "max_ms": times[-1]},
                      "tokens_per_second": B * S / (med / 1000), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
