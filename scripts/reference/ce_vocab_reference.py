#!/usr/bin/python3
"""PyTorch reference for the vocabulary-sliced cross-entropy head at real vocabulary sizes
(ChunkedCrossEntropyVocabTest): Qwen3's 151,936 and Gemma 3's 262,144 columns, a few rows of a
small width d = 8, so the head runs over several vocabulary slices, the last one partial.

Labels are real token ids: the ids of "Once upon a time, there was a little girl named Lily." from
the committed transformers.js vectors of each tokenizer (tests/resources/tokenizer/qwen3_vectors.json
and gemma3_vectors.json), shifted by one as next-token targets, the last row ignored (-100).
The hidden states and lm_head come from closed formulas (computed in float64, rounded to float32)
that the test evaluates the same way, so no large tensor is committed:
    h[i, j]  = A_h * sin(1.7 i + 0.9 j + 0.3)
    W[v, j]  = A_w * sin(0.37 v + 1.3 j) + 0.5 A_w * cos(0.011 v (j + 1))
The loss is torch's cross_entropy(reduction="sum") over z = h W^T, or over c tanh(z / c) with a
final-logit soft cap c (Gemma 2's 30, on the Gemma 3 vocabulary with logits wide enough to bend);
the gradient dL/dh is of that sum times LOSS_SCALE (1 / the labelled-row count).

Run with Debian's interpreter (torch 1.13): /usr/bin/python3 scripts/reference/ce_vocab_reference.py
"""
import json
import math
import os

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TEXT = "Once upon a time, there was a little girl named Lily."
D = 8
CASES = [  # name, vocabulary, tokenizer vectors, A_h, A_w, soft cap (0 = none)
    ("qwen3", 151936, "qwen3_vectors.json", 2.0, 0.05, 0.0),
    ("gemma3", 262144, "gemma3_vectors.json", 2.0, 0.05, 0.0),
    ("gemma3_softcap30", 262144, "gemma3_vectors.json", 4.0, 3.0, 30.0),
]


def hidden(n, a):
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(D, dtype=np.float64)[None, :]
    return (a * np.sin(1.7 * i + 0.9 * j + 0.3)).astype(np.float32)


def lm_head(v, a):
    r = np.arange(v, dtype=np.float64)[:, None]
    j = np.arange(D, dtype=np.float64)[None, :]
    return (a * np.sin(0.37 * r + 1.3 * j) + 0.5 * a * np.cos(0.011 * r * (j + 1))).astype(np.float32)


def main():
    torch.set_num_threads(1)
    out = []
    for name, vocab, vectors, ah, aw, cap in CASES:
        rows = json.load(open(os.path.join(ROOT, "tests", "resources", "tokenizer", vectors)))
        ids = next(r["ids"] for r in rows if r["text"] == TEXT)
        labels = ids[1:] + [-100]
        n = len(labels)
        h = torch.tensor(hidden(n, ah), dtype=torch.float64, requires_grad=True)
        w = torch.tensor(lm_head(vocab, aw), dtype=torch.float64)
        z = h @ w.t()
        if cap:
            z = torch.tanh(z / cap) * cap
        lab = torch.tensor(labels)
        loss = torch.nn.functional.cross_entropy(z, lab, ignore_index=-100, reduction="none")
        scale = 1.0 / sum(1 for y in labels if y != -100)
        (loss.sum() * scale).backward()
        print("%s: V %d rows %d loss sum %.6f |z| max %.2f" % (name, vocab, n, float(loss.sum()), float(z.abs().max())))
        out.append({"name": name, "vocab": vocab, "dim": D, "a_h": ah, "a_w": aw, "softcap": cap, "labels": labels,
                    "loss_scale": scale, "losses": loss.detach().tolist(), "loss_sum": float(loss.sum()),
                    "dh": h.grad.reshape(-1).tolist()})
    with open(os.path.join(ROOT, "tests", "resources", "train", "ce_vocab_reference.json"), "w") as f:
        json.dump({"generator": "scripts/reference/ce_vocab_reference.py (torch %s, float64)" % torch.__version__,
                   "text": TEXT, "cases": out}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
