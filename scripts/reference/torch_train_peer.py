#!/usr/bin/python3
"""PyTorch peer of TrainBench: LoRA optimizer steps on stories15M as a competent PyTorch user writes them.

Same work as bench/io/lora4j/bench/TrainBench.java: stories15M (llama2.c .bin, fp32) with LoRA r=16,
alpha=16 on all seven projections, `batch` rows of `seq` tokens; forward, CE (sum / N over the
labelled targets), backward, clip_grad_norm_(1.0), torch.optim.AdamW(weight_decay 0.01).

Written the way one writes it for speed in PyTorch 1.13 (no SDPA yet): the B x S tokens flattened into
2-D GEMMs (F.linear on [B*S, d]), LoRA as two F.linear, RoPE through view_as_complex (Meta's
llama code), frozen weights with requires_grad=False so autograd computes only what it needs,
zero_grad(set_to_none=True). Like HF's LlamaForCausalLM it computes lm_head on every position and
lets cross_entropy ignore the -100 targets.

Batches: --data FILE (JSON {"input_ids": [[...]], "labels": [[...]]}, B rows of S, as
scripts/bench-train.sh writes them: labels aligned with input_ids as in HF, -100 where nothing is
trained; the targets are labels shifted by one), else random tokens with every next token trained.

Run it as scripts/bench.sh does: one thread (OPENBLAS_NUM_THREADS=1 and torch.set_num_threads(1)),
on OpenBLAS's AVX2 kernels (libopenblas0-pthread's libblas.so.3, OPENBLAS_CORETYPE=Haswell).
Prints JSON: {"batch", "seq", "train_step": {"median_ms", "min_ms", "max_ms", "all_ms"},
"tokens_per_second", "peak_rss_bytes", "torch", "blas"}.
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
import torch.nn.functional as F


def load_llama2c(path):
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv, vocab, seq = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
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


def blas_in_use():
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line}
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--data", help="JSON with input_ids and labels (B rows of S)")
    ap.add_argument("--model", default=os.path.join(os.environ.get("LORA4J_CACHE", os.path.expanduser("~/.cache/lora4j")), "stories15M.bin"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(7)
    c, W = load_llama2c(args.model)
    d, hd, H, KV, L, V = c["dim"], c["hd"], c["heads"], c["kv"], c["layers"], c["vocab"]
    if args.data:
        with open(args.data) as f:
            rows = json.load(f)
        ids = torch.tensor(rows["input_ids"], dtype=torch.long)
        labels = torch.tensor(rows["labels"], dtype=torch.long)  # aligned with input_ids (HF): shift
        targets = torch.full_like(labels, -100)
        targets[:, :-1] = labels[:, 1:]
    else:
        ids = torch.randint(3, V, (args.batch, args.seq))
        ids[:, 0] = 1
        targets = torch.full_like(ids, -100)
        targets[:, :-1] = ids[:, 1:]
    B, S = ids.shape
    r, s = 16, 1.0
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.polar(torch.ones(S, hd // 2), torch.arange(S).float()[:, None] * inv[None, :])  # [S, hd/2]
    freqs = freqs[None, :, None, :]
    shapes = {"wq": (d, d), "wk": (KV * hd, d), "wv": (KV * hd, d), "wo": (d, d), "w1": (c["hidden"], d), "w3": (c["hidden"], d), "w2": (d, c["hidden"])}
    A, Bm, lora = {}, {}, []
    for l in range(L):
        for k, (o, i) in shapes.items():
            a = torch.empty(r, i).uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i)).requires_grad_(True)
            b = torch.zeros(o, r, requires_grad=True)
            A[(l, k)], Bm[(l, k)] = a, b
            lora += [a, b]

    def lin(x, l, k):  # x [B*S, in]
        return F.linear(x, W[k][l]) + s * F.linear(F.linear(x, A[(l, k)]), Bm[(l, k)])

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    def rope(x, heads):  # [B*S, heads*hd], Meta's interleaved pairs
        xc = torch.view_as_complex(x.view(B, S, heads, hd // 2, 2))
        return torch.view_as_real(xc * freqs).reshape(B, S, heads, hd)

    mask = torch.full((S, S), float("-inf")).triu(1)
    scale = 1.0 / math.sqrt(hd)

    def forward(ids):
        x = W["emb"][ids.view(-1)]  # [B*S, d]
        for l in range(L):
            h = rms(x, W["rms_att"][l])
            q = rope(lin(h, l, "wq"), H).transpose(1, 2)
            k = rope(lin(h, l, "wk"), KV).transpose(1, 2)
            v = lin(h, l, "wv").view(B, S, KV, hd).transpose(1, 2)
            att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + mask, dim=-1)
            x = x + lin(torch.matmul(att, v).transpose(1, 2).reshape(B * S, d), l, "wo")
            h = rms(x, W["rms_ffn"][l])
            x = x + lin(F.silu(lin(h, l, "w1")) * lin(h, l, "w3"), l, "w2")
        return F.linear(rms(x, W["rms_final"]), W["emb"])  # [B*S, V]

    n = int((targets != -100).sum())
    opt = torch.optim.AdamW(lora, lr=2e-4, weight_decay=0.01)
    flat_targets = targets.view(-1)
    times = []
    for step in range(args.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(ids), flat_targets, ignore_index=-100, reduction="sum") / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        if step >= 2:  # two warmup steps
            times.append((time.perf_counter() - t0) * 1000)
    st = sorted(times)
    med = st[len(st) // 2] if len(st) % 2 else 0.5 * (st[len(st) // 2 - 1] + st[len(st) // 2])
    print(json.dumps({"batch": B, "seq": S, "labelled": n, "train_step": {"median_ms": med, "min_ms": st[0], "max_ms": st[-1], "all_ms": times},
                      "tokens_per_second": B * S / (med / 1000), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "torch": torch.__version__, "blas": blas_in_use()}))


if __name__ == "__main__":
    main()
