#!/usr/bin/python3
"""The PyTorch peer for lora4j's inference benchmarks: stories15M in fp32 on one thread.

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 scripts/reference/torch_peer.py [--out FILE]

Measures, with the same model file, prompt and token counts as bench/.../InferenceBench.java:
  decode64    BOS + "Once upon a time" fed token by token into a KV cache, then 64 greedy
              tokens: ms for the 69 decode steps
  prefill256  one forward pass over 256 tokens, ms per pass
Each is repeated (3 warm-up, 7 measured); the JSON output has the median, min and max.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_reference import load_llama2c  # noqa: E402

PROMPT = [1, 9038, 2501, 263, 931]  # BOS + "Once upon a time" (Llama-2 tokenizer)
NEW_TOKENS = 64
PREFILL = 256


class Model:
    def __init__(self, cfg, w):
        self.c = cfg
        self.w = {k: v.float().contiguous() for k, v in w.items()}
        D = cfg["head"]
        self.inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))

    def rope(self, x, pos):
        ang = pos[:, None].float() * self.inv_freq[None, :]
        cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :]
        sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :]
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def forward(self, ids, start, cache):
        """ids: [T] new tokens at positions start..start+T-1; cache: per layer [k, v] lists."""
        c, w = self.c, self.w
        T, H, KV, D = len(ids), c["n_heads"], c["n_kv"], c["head"]
        pos = torch.arange(start, start + T)
        x = w["emb"][ids]
        for l in range(c["n_layers"]):
            h = self.rms(x, w["rms_att"][l])
            q = self.rope((h @ w["wq"][l].T).view(T, H, D), pos)
            k = self.rope((h @ w["wk"][l].T).view(T, KV, D), pos)
            v = (h @ w["wv"][l].T).view(T, KV, D)
            cache[l][0][start:start + T] = k
            cache[l][1][start:start + T] = v
            K = cache[l][0][:start + T].repeat_interleave(H // KV, 1)
            V = cache[l][1][:start + T].repeat_interleave(H // KV, 1)
            s = torch.einsum("thd,shd->hts", q, K) / math.sqrt(D)
            if T > 1:
                s = s + torch.full((T, start + T), float("-inf")).triu(start + 1)
            o = torch.einsum("hts,shd->thd", s.softmax(-1), V).reshape(T, H * D)
            x = x + o @ w["wo"][l].T
            h = self.rms(x, w["rms_ffn"][l])
            x = x + (torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
        return self.rms(x, w["rms_final"]) @ w["cls"].T

    def new_cache(self, n):
        c = self.c
        return [[torch.zeros(n, c["n_kv"], c["head"]), torch.zeros(n, c["n_kv"], c["head"])]
                for _ in range(c["n_layers"])]


def timed(fn, warmup=3, reps=7):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(out), "min_ms": min(out), "max_ms": max(out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.environ.get("LORA4J_CACHE", os.path.expanduser("~/.cache/lora4j")))
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, w = load_llama2c(os.path.join(args.cache, "stories15M.bin"))
    m = Model(cfg, w)
    ids = []

    @torch.no_grad()
    def decode64():
        # As InferenceBench.decode64: the prompt fed one token at a time, then 64 greedy tokens.
        cache = m.new_cache(len(PROMPT) + NEW_TOKENS)
        for i, t in enumerate(PROMPT):
            logits = m.forward(torch.tensor([t]), i, cache)[-1]
        ids.clear()
        for i in range(NEW_TOKENS):
            nxt = int(logits.argmax())
            ids.append(nxt)
            logits = m.forward(torch.tensor([nxt]), len(PROMPT) + i, cache)[-1]

    g = torch.Generator().manual_seed(7)
    toks = torch.randint(3, cfg["vocab"], (PREFILL,), generator=g)

    @torch.no_grad()
    def prefill256():
        m.forward(toks, 0, m.new_cache(PREFILL))

    res = {"peer": "torch %s fp32, 1 thread" % torch.__version__,
           "decode64": timed(decode64), "decode_first_ids": ids[:8],
           "prefill256": timed(prefill256)}
    text = json.dumps(res, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
