#!/usr/bin/python3
"""PyTorch reference for the model families (FamilyReferenceTest): tiny random-weight models in
HF layout, their logits, greedy continuations and a few LoRA training steps.

For each family below this script writes tests/resources/model/families/<family>/:
  model/config.json, model/model.safetensors   the model (fp32, HF tensor names)
  init_adapter/                                a PEFT adapter (random A and B, PEFT key names)
  data.jsonl                                   8 training rows (input_ids, labels)
  expected.json                                logits of `prompt`, greedy ids, training losses,
                                               grad norms and final adapter parameters

The forward is written here from transformers' modeling code, not imported (transformers is not
installed beside Debian's torch 1.13):
  llama / mistral  modeling_llama.py, modeling_mistral.py: RMSNorm w * x * rsqrt(mean(x^2) + eps)
                   in fp32, rotate_half RoPE (theta from config), causal GQA attention scaled by
                   head_dim^-0.5, SwiGLU MLP down(silu(gate(x)) * up(x)); Mistral's sliding window
                   lets query i see key j when 0 <= i - j < sliding_window (masking_utils'
                   sliding_window_overlay: kv_idx > q_idx - sliding_window).
  qwen2            modeling_qwen2.py: the same with biases on q_proj, k_proj and v_proj (o_proj none).
  qwen3            modeling_qwen3.py: no biases; q_norm / k_norm (RMSNorm over head_dim, per head)
                   applied to q and k after the projection and before RoPE; explicit head_dim.
  gemma3_text      modeling_gemma3.py: RMSNorm x * rsqrt(mean(x^2) + eps) * (1 + w) in fp32; the
                   embedding times sqrt(hidden_size) (a float32 tensor here: fp32 activations);
                   four norms per layer (input, post_attention on the attention output,
                   pre_feedforward, post_feedforward on the MLP output); (1 + w) q_norm/k_norm before
                   RoPE; GeGLU down(gelu_tanh(gate(x)) * up(x)); attention scale
                   query_pre_attn_scalar^-0.5; layer i slides when (i + 1) % sliding_window_pattern
                   != 0, with RoPE base rope_local_base_freq and no scaling, the others use rope_theta
                   and rope_scaling (linear: inv_freq / factor); tied embeddings.
  gemma2           modeling_gemma2.py: Gemma 3's layer without q_norm/k_norm and without a local RoPE
                   base (rope_theta on every layer); layer i slides when (i + 1) % 2 != 0 (layer_types'
                   default); attn_logit_softcapping c: scores = c * tanh(scores / c) after the
                   query_pre_attn_scalar^-0.5 scale and before the mask; final_logit_softcapping c:
                   logits = c * tanh(logits / c).
  phi3             modeling_phi3.py: Llama's layer with fused projections: qkv_proj [Q | K | V] rows
                   (query_pos = heads * head_dim, then the key and value heads) and gate_up_proj
                   [gate | up] rows (chunk(2): up * silu(gate)); PEFT adapts each fused module with one
                   lora_A [r, in] and one lora_B [rows of the module, r].
LoRA (PEFT): y = x W^T (+ b) + s (x A^T) B^T, s = alpha / r. Training as
lora_train_reference.py: micro-batches of 2 right-padded rows, 2 micro-batches per step with the
GA fix (CE sums / window target count), clip_grad_norm_(0.5), AdamW(0.9, 0.999, 1e-8, wd 0.01),
linear schedule with 2 warmup steps over 6 steps.

Run with Debian's interpreter (torch 1.13): /usr/bin/python3 scripts/reference/families_reference.py
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from lora_train_reference import BATCH, CLIP, GA, STEPS, WARMUP, WD, train_steps  # GoldenTrainTest's recipe

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "resources", "model", "families")
LR = 1e-2
R, ALPHA = 4, 8
PROJ = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
        ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]
VOCAB = 64
PROMPT = [1, 17, 33, 5, 48, 22, 9, 61, 40, 3, 27, 12]
GREEDY_PROMPT, GREEDY_NEW = [1, 17, 33, 5], 12

COMMON = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128, hidden_act="silu",
              bos_token_id=1, eos_token_id=2, torch_dtype="float32")

FAMILIES = {
    # Qwen2.5-0.5B's shape in miniature: q/k/v biases, rope_theta 1e6, tied embeddings, window keys off
    "qwen2": dict(COMMON, model_type="qwen2", architectures=["Qwen2ForCausalLM"], rms_norm_eps=1e-6,
                  rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
                  sliding_window=4096, max_window_layers=2, rope_scaling=None),
    # Qwen3: q/k norms, explicit head_dim (16 here: 4 x 16 = 64 != hidden 32), no biases, untied
    "qwen3": dict(COMMON, model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=16, rms_norm_eps=1e-6,
                  rope_theta=1000000.0, tie_word_embeddings=False, attention_bias=False, use_sliding_window=False,
                  sliding_window=None, max_window_layers=2, rope_scaling=None),
    # Gemma 3 text: 3 layers, pattern 3 (layers 0, 1 slide with window 5 and the local RoPE base, layer 2 is
    # global with linear scaling), head_dim 16 with query_pre_attn_scalar 24 (scale != head_dim^-0.5)
    "gemma3_text": dict(COMMON, model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], num_hidden_layers=3,
                        head_dim=16, hidden_act=None, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                        rope_theta=1000000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
                        rope_local_base_freq=10000.0, query_pre_attn_scalar=24, sliding_window=5,
                        sliding_window_pattern=3, final_logit_softcapping=None, attn_logit_softcapping=None,
                        tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0),
    # Mistral v0.1-style: sliding window (5 here, shorter than the prompt and the greedy run), head_dim given
    "mistral": dict(COMMON, model_type="mistral", architectures=["MistralForCausalLM"], head_dim=8, rms_norm_eps=1e-5,
                    rope_theta=10000.0, tie_word_embeddings=False, sliding_window=5),
    # Gemma 2: 3 layers (0 and 2 slide with window 5, 1 is global), head_dim 16 with query_pre_attn_scalar 24,
    # caps low enough that the tanh bends the scores and the logits of these weights
    "gemma2": dict(COMMON, model_type="gemma2", architectures=["Gemma2ForCausalLM"], num_hidden_layers=3,
                   head_dim=16, hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                   rms_norm_eps=1e-6, rope_theta=10000.0, query_pre_attn_scalar=24, sliding_window=5,
                   attn_logit_softcapping=1.0, final_logit_softcapping=2.0, tie_word_embeddings=True,
                   bos_token_id=2, eos_token_id=1, pad_token_id=0),
    # Phi-3: fused qkv_proj / gate_up_proj, GQA 4 / 2 heads of 8, no sliding window here
    "phi3": dict(COMMON, model_type="phi3", architectures=["Phi3ForCausalLM"], rms_norm_eps=1e-5, rope_theta=10000.0,
                 tie_word_embeddings=False, sliding_window=None, rope_scaling=None, attention_bias=False,
                 original_max_position_embeddings=128, pad_token_id=0),
}
# training rows stay within Mistral's window: lora4j trains windowed families on rows <= the window
MAX_ROW = {"qwen2": 14, "qwen3": 14, "mistral": 5, "gemma3_text": 5, "gemma2": 5, "phi3": 14}
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def peft_modules(cfg):
    """The (parent, module) pairs PEFT adapts: the seven projections, or Phi-3's four (two fused)."""
    if cfg["model_type"] == "phi3":
        return [("self_attn", "qkv_proj"), ("self_attn", "o_proj"), ("mlp", "gate_up_proj"), ("mlp", "down_proj")]
    return PROJ
GEMMA = ("gemma3_text", "gemma2")


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
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


def make_weights(cfg, g):
    """Seeded weights large enough to give non-uniform logits and real gradients."""
    d, inter, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"q_proj": (qd, d), "k_proj": (kvd, d), "v_proj": (kvd, d), "o_proj": (d, qd),
              "gate_proj": (inter, d), "up_proj": (inter, d), "down_proj": (d, inter)}

    def normal(*shape, std):
        return torch.randn(*shape, generator=g) * std

    gemma = cfg["model_type"] in GEMMA

    def around_one(n):  # Gemma stores w - 1: the norm multiplies by 1 + w
        return (torch.rand(n, generator=g) - 0.5) if gemma else 0.5 + torch.rand(n, generator=g)

    W = {"model.embed_tokens.weight": normal(VOCAB, d, std=0.25)}
    for l in range(L):
        p = "model.layers.%d." % l
        W[p + "input_layernorm.weight"] = around_one(d)
        for blk, name in PROJ:
            W[p + "%s.%s.weight" % (blk, name)] = normal(*shapes[name], std=0.15)
            if cfg["model_type"] == "qwen2" and name in ("q_proj", "k_proj", "v_proj"):
                W[p + "%s.%s.bias" % (blk, name)] = normal(shapes[name][0], std=0.1)
        if cfg["model_type"] in ("qwen3", "gemma3_text"):
            W[p + "self_attn.q_norm.weight"] = around_one(hd)
            W[p + "self_attn.k_norm.weight"] = around_one(hd)
        W[p + "post_attention_layernorm.weight"] = around_one(d)
        if gemma:
            W[p + "pre_feedforward_layernorm.weight"] = around_one(d)
            W[p + "post_feedforward_layernorm.weight"] = around_one(d)
    W["model.norm.weight"] = around_one(d)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = normal(VOCAB, d, std=0.25)
    if cfg["model_type"] == "phi3":  # the same draws, stored fused as Phi-3 checkpoints hold them
        for l in range(L):
            for blk, fused in (("self_attn", "qkv_proj"), ("mlp", "gate_up_proj")):
                parts = ["model.layers.%d.%s.%s.weight" % (l, blk, n) for n in FUSED[fused]]
                W["model.layers.%d.%s.%s.weight" % (l, blk, fused)] = torch.cat([W.pop(k) for k in parts], 0)
    return W


class Model:
    """The family's decoder (fp32) with optional LoRA on every projection."""

    def __init__(self, cfg, W, lora=None, scale=0.0):
        self.c, self.W, self.lora, self.s = cfg, W, lora or {}, scale
        d = cfg["hidden_size"]
        self.hq, self.hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or d // self.hq
        self.eps = cfg["rms_norm_eps"]
        self.gemma = cfg["model_type"] in GEMMA

        def inv_freq(theta, factor):
            return (torch.tensor([1.0 / (theta ** ((2.0 * i) / self.hd)) for i in range(self.hd // 2)],
                                 dtype=torch.float64) / factor).float()

        scaling = cfg.get("rope_scaling") or {}
        factor = scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear" else 1.0
        self.inv_freq = inv_freq(cfg.get("rope_theta", 10000.0), factor)
        local = cfg.get("rope_local_base_freq")
        self.local_inv_freq = inv_freq(local, 1.0) if local else self.inv_freq
        self.window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral",) + GEMMA else None
        self.pattern = cfg.get("sliding_window_pattern", 2) if self.gemma else 0
        self.scale = cfg["query_pre_attn_scalar"] ** -0.5 if self.gemma else self.hd ** -0.5
        self.attn_cap = cfg.get("attn_logit_softcapping")
        self.final_cap = cfg.get("final_logit_softcapping")

    def sliding(self, l):
        return bool(self.window) and (self.pattern == 0 or (l + 1) % self.pattern != 0)

    def rms(self, x, w):
        n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return n * (1.0 + w) if self.gemma else w * n

    def rope(self, x, pos, inv_freq):  # x [B, S, H, D]
        ang = pos.float()[:, :, None] * inv_freq[None, None, :]
        cos = torch.cat([ang.double().cos().float()] * 2, -1)[:, :, None, :]
        sin = torch.cat([ang.double().sin().float()] * 2, -1)[:, :, None, :]
        h = self.hd // 2
        x1, x2 = x[..., :h], x[..., h:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def lin(self, x, l, blk, name):
        p = "model.layers.%d.%s.%s." % (l, blk, name)
        y = x @ self.W[p + "weight"].t()
        if p + "bias" in self.W:
            y = y + self.W[p + "bias"]
        if (l, name) in self.lora:
            a, b = self.lora[(l, name)]
            y = y + self.s * ((x @ a.t()) @ b.t())
        return y

    def forward(self, ids):  # ids [B, S] -> logits [B, S, V]
        c, W = self.c, self.W
        B, S = ids.shape
        hq, hkv, hd = self.hq, self.hkv, self.hd
        pos = torch.arange(S)[None, :].expand(B, S)
        i = torch.arange(S)[:, None]
        j = torch.arange(S)[None, :]
        causal = torch.zeros(S, S).masked_fill(~(j <= i), float("-inf"))
        windowed = torch.zeros(S, S).masked_fill(~((j <= i) & (i - j < (self.window or S + 1))), float("-inf"))
        x = W["model.embed_tokens.weight"][ids]
        if self.gemma:
            x = x * torch.tensor(c["hidden_size"] ** 0.5, dtype=torch.float32)
        for l in range(c["num_hidden_layers"]):
            mask = windowed if self.sliding(l) else causal
            inv_freq = self.local_inv_freq if self.sliding(l) else self.inv_freq
            p = "model.layers.%d." % l
            h = self.rms(x, W[p + "input_layernorm.weight"])
            if c["model_type"] == "phi3":
                qkv = self.lin(h, l, "self_attn", "qkv_proj")
                q = qkv[..., :hq * hd].reshape(B, S, hq, hd)
                k = qkv[..., hq * hd:(hq + hkv) * hd].reshape(B, S, hkv, hd)
                v = qkv[..., (hq + hkv) * hd:].reshape(B, S, hkv, hd)
            else:
                q = self.lin(h, l, "self_attn", "q_proj").view(B, S, hq, hd)
                k = self.lin(h, l, "self_attn", "k_proj").view(B, S, hkv, hd)
                v = self.lin(h, l, "self_attn", "v_proj").view(B, S, hkv, hd)
            if c["model_type"] in ("qwen3", "gemma3_text"):
                q = self.rms(q, W[p + "self_attn.q_norm.weight"])
                k = self.rms(k, W[p + "self_attn.k_norm.weight"])
            q, k = self.rope(q, pos, inv_freq), self.rope(k, pos, inv_freq)
            k = k.repeat_interleave(hq // hkv, dim=2)
            v = v.repeat_interleave(hq // hkv, dim=2)
            att = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) * self.scale
            if self.attn_cap:
                att = torch.tanh(att / self.attn_cap) * self.attn_cap
            att = att + mask
            o = (att.softmax(-1) @ v.transpose(1, 2)).transpose(1, 2).reshape(B, S, hq * hd)
            o = self.lin(o, l, "self_attn", "o_proj")
            if self.gemma:
                x = x + self.rms(o, W[p + "post_attention_layernorm.weight"])
                h = self.rms(x, W[p + "pre_feedforward_layernorm.weight"])
            else:
                x = x + o
                h = self.rms(x, W[p + "post_attention_layernorm.weight"])
            if c["model_type"] == "phi3":
                g, u = self.lin(h, l, "mlp", "gate_up_proj").chunk(2, dim=-1)
            else:
                g = self.lin(h, l, "mlp", "gate_proj")
                u = self.lin(h, l, "mlp", "up_proj")
            act = torch.nn.functional.gelu(g, approximate="tanh") if self.gemma else torch.nn.functional.silu(g)
            m = self.lin(act * u, l, "mlp", "down_proj")
            x = x + (self.rms(m, W[p + "post_feedforward_layernorm.weight"]) if self.gemma else m)
        head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
        logits = self.rms(x, W["model.norm.weight"]) @ head.t()
        if self.final_cap:
            logits = torch.tanh(logits / self.final_cap) * self.final_cap
        return logits


def rows_for(family, g):
    rows = []
    for _ in range(8):
        n = int(torch.randint(3, MAX_ROW[family] + 1, (1,), generator=g))
        ids = [1] + torch.randint(3, VOCAB, (n - 1,), generator=g).tolist()
        prompt = n // 3
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def train(cfg, W, AD, rows):
    lora, params = {}, []
    for l in range(cfg["num_hidden_layers"]):
        for blk, name in peft_modules(cfg):
            base = "base_model.model.model.layers.%d.%s.%s" % (l, blk, name)
            a = AD[base + ".lora_A.weight"].clone().requires_grad_(True)
            b = AD[base + ".lora_B.weight"].clone().requires_grad_(True)
            lora[(l, name)] = (a, b)
            params += [a, b]
    m = Model(cfg, W, lora, ALPHA / R)

    return train_steps(m.forward, params, rows, LR)


def adapter_config(target_modules):
    return {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "model", "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
            "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": ALPHA,
            "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA", "r": R, "rank_pattern": {},
            "revision": None, "target_modules": sorted(target_modules), "task_type": "CAUSAL_LM",
            "use_dora": False, "use_rslora": False}


def main():
    torch.set_num_threads(1)
    for seed, (family, cfg) in enumerate(FAMILIES.items()):
        g = torch.Generator().manual_seed(1000 + seed)
        out = os.path.join(OUT, family)
        os.makedirs(os.path.join(out, "model"), exist_ok=True)
        os.makedirs(os.path.join(out, "init_adapter"), exist_ok=True)
        W = make_weights(cfg, g)
        with open(os.path.join(out, "model", "config.json"), "w") as f:
            json.dump({k: v for k, v in cfg.items() if not (k == "hidden_act" and v is None)}, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(out, "model", "model.safetensors"), W)

        m = Model(cfg, W)
        with torch.no_grad():
            logits = m.forward(torch.tensor([PROMPT]))[0]
            ids = list(GREEDY_PROMPT)
            for _ in range(GREEDY_NEW):
                ids.append(int(m.forward(torch.tensor([ids]))[0, -1].argmax()))

        AD = {}
        for l in range(cfg["num_hidden_layers"]):
            for blk, name in peft_modules(cfg):
                w = W["model.layers.%d.%s.%s.weight" % (l, blk, name)]
                base = "base_model.model.model.layers.%d.%s.%s" % (l, blk, name)
                AD[base + ".lora_A.weight"] = torch.randn(R, w.shape[1], generator=g) * 0.1
                AD[base + ".lora_B.weight"] = torch.randn(w.shape[0], R, generator=g) * 0.1
        write_safetensors(os.path.join(out, "init_adapter", "adapter_model.safetensors"), AD)
        with open(os.path.join(out, "init_adapter", "adapter_config.json"), "w") as f:
            json.dump(adapter_config([n for _, n in peft_modules(cfg)]), f, indent=2)
            f.write("\n")
        rows = rows_for(family, g)
        with open(os.path.join(out, "data.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        losses, norms, final = train(cfg, W, AD, rows)
        print("%s: logits[0,:3] %s greedy %s losses %s" % (family, logits[0, :3].tolist(), ids, losses))
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump({"generator": "scripts/reference/families_reference.py (torch %s)" % torch.__version__,
                       "prompt": PROMPT, "logits": logits.reshape(-1).tolist(),
                       "greedy_prompt": GREEDY_PROMPT, "greedy_ids": ids,
                       "steps": STEPS, "lr": LR, "warmup": WARMUP, "clip": CLIP, "weight_decay": WD,
                       "batch": BATCH, "grad_accum": GA,
                       "losses": losses, "grad_norms": norms, "final_params": final}, f)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
