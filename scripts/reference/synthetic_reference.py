#!/usr/bin/python3
"""Small synthetic Llama models (GQA, untied lm_head, Llama 3.1 rope_scaling, explicit head_dim,
bf16 weights) written as HF directories, with fp64 reference logits from an independent PyTorch
forward pass. Run with Debian's torch:

    /usr/bin/python3 scripts/reference/synthetic_reference.py

Writes tests/resources/model/<name>/{config.json, model.safetensors, reference.json} where
reference.json holds {"ids": [...], "logits": [[...] per position]} (float64 values). The
safetensors writer here is independent of lora4j's (header JSON + raw little-endian data).
"""
import json
import math
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "resources", "model")

MODELS = {
    # GQA (4 query heads share 2 KV heads), untied lm_head, fp32 weights.
    "synthetic-gqa-untied": dict(hidden=64, inter=96, layers=2, heads=4, kv=2, head_dim=None, vocab=300,
                                 tie=False, dtype="float32", rope_theta=10000.0, rope_scaling=None),
    # Llama 3.1 rope scaling, head_dim given explicitly (hidden != heads*head_dim), bf16 weights, tied.
    "synthetic-llama31-bf16": dict(hidden=48, inter=80, layers=2, heads=4, kv=1, head_dim=16, vocab=257,
                                   tie=True, dtype="bfloat16", rope_theta=500000.0,
                                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
}


def inv_freq(c, head_dim):
    f = [1.0 / (c["rope_theta"] ** (2.0 * i / head_dim)) for i in range(head_dim // 2)]
    rs = c["rope_scaling"]
    if rs is None:
        return torch.tensor(f, dtype=torch.float64)
    out = []
    low_w = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    high_w = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    for x in f:
        w = 2 * math.pi / x
        if w > low_w:
            out.append(x / rs["factor"])
        elif w < high_w:
            out.append(x)
        else:
            s = (rs["original_max_position_embeddings"] / w - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            out.append((1 - s) * x / rs["factor"] + s * x)
    return torch.tensor(out, dtype=torch.float64)


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def forward(c, W, ids):
    T = len(ids)
    H, KV = c["heads"], c["kv"]
    D = c["head_dim"] or c["hidden"] // H
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq(c, D)[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :]
    sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(T, H, D)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(T, KV, D)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, KV, D)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, 1)
        v = v.repeat_interleave(H // KV, 1)
        a = (torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask).softmax(-1)
        o = torch.einsum("hts,shd->thd", a, v).reshape(T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T)
        x = x + (g * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if c["tie"] else W["lm_head.weight"]
    return x @ head.T


def write_safetensors(path, tensors, dtype):
    st = {"float32": ("F32", torch.float32), "bfloat16": ("BF16", torch.bfloat16)}[dtype]
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.to(st[1]).contiguous().numpy().tobytes() if st[1] == torch.float32 else \
            t.to(st[1]).contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": st[0], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    torch.set_num_threads(1)
    for name, c in MODELS.items():
        g = torch.Generator().manual_seed(1234)
        D = c["head_dim"] or c["hidden"] // c["heads"]
        d, f, V = c["hidden"], c["inter"], c["vocab"]
        shapes = {"model.embed_tokens.weight": (V, d)}
        for l in range(c["layers"]):
            p = "model.layers.%d." % l
            shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                           p + "self_attn.q_proj.weight": (c["heads"] * D, d),
                           p + "self_attn.k_proj.weight": (c["kv"] * D, d),
                           p + "self_attn.v_proj.weight": (c["kv"] * D, d),
                           p + "self_attn.o_proj.weight": (d, c["heads"] * D),
                           p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                           p + "mlp.down_proj.weight": (d, f)})
        shapes["model.norm.weight"] = (d,)
        if not c["tie"]:
            shapes["lm_head.weight"] = (V, d)
        W = {}
        for n, s in shapes.items():
            if n.endswith("norm.weight"):
                t = 1.0 + 0.1 * torch.randn(s, generator=g)
            else:
                t = torch.randn(s, generator=g) * (0.5 / math.sqrt(s[-1]) if len(s) == 2 and "embed" not in n else 0.5)
            # Round to the stored dtype first so the reference computes with exactly the stored values.
            W[n] = t.to(torch.bfloat16 if c["dtype"] == "bfloat16" else torch.float32).double()
        ids = [int(i) for i in torch.randint(0, V, (24,), generator=g)]
        logits = forward(c, W, ids)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
               "intermediate_size": f, "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
               "num_key_value_heads": c["kv"], "rms_norm_eps": 1e-5, "rope_theta": c["rope_theta"],
               "vocab_size": V, "max_position_embeddings": 128, "tie_word_embeddings": c["tie"],
               "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": c["dtype"], "hidden_act": "silu"}
        if c["head_dim"]:
            cfg["head_dim"] = c["head_dim"]
        if c["rope_scaling"]:
            cfg["rope_scaling"] = c["rope_scaling"]
        with open(os.path.join(out, "config.json"), "w") as fh:
            json.dump(cfg, fh, indent=2)
        write_safetensors(os.path.join(out, "model.safetensors"), {k: W[k] for k in shapes}, c["dtype"])
        with open(os.path.join(out, "reference.json"), "w") as fh:
            json.dump({"generated_by": "scripts/reference/synthetic_reference.py (torch %s, fp64)" % torch.__version__,
                       "ids": ids, "logits": logits.tolist()}, fh)
        print(name, "written,", len(ids), "positions")


if __name__ == "__main__":
    main()
