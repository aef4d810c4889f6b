#!/usr/bin/python3
"""PyTorch + PEFT peer of issue 15's training-step benchmark (lora4j's side: tests/io/lora4j/emu/TrainStepBench.java).

The same work as lora4j's side, written as a PEFT user on a GPU writes it (HF Trainer with bf16=True):
transformers' LlamaForCausalLM built from CONFIG (an HF config.json, num_hidden_layers replaced by
--layers) with its random init (initializer_range), held in bf16 on the device, SDPA attention;
peft.get_peft_model with LoraConfig(r=16, lora_alpha=16, lora_dropout=0, bias="none", all seven
projections: the adapter weights in fp32, PEFT's autocast_adapter_dtype); forward under
torch.autocast(bf16) as the Trainer does with bf16=True; HF's shifted cross-entropy over every
position (labels = input_ids); torch.optim.AdamW(lr 2e-4, weight_decay 0.01) with
clip_grad_norm_(1.0). Gradient checkpointing (HF's, use_reentrant=False) unless --no-checkpointing:
lora4j's side recomputes each layer's forward in the backward as well (unsloth mode).

Timing: two warm-up steps, then --steps steps, each ended by torch.cuda.synchronize(); the median.
Peak: torch.cuda.max_memory_allocated over the timed steps (reset after the warm-up), weights
included, as lora4j's MemoryTracker peak; max_memory_reserved beside it.

--tiny shrinks the shapes as TrainStepBench --tiny does (hidden 64, intermediate 128, 4 heads,
2 KV heads, vocabulary 256). FALLBACK, for trying the script only: with --tiny --cpu and
transformers or peft not importable (this development machine has neither), a plain-torch stand-in
of the same model (HF Llama's math, LoRA as two F.linear) runs instead, and the JSON says
"peer": "plain-torch stand-in ...". Its figures are not the peer's.

Prints one JSON line: {"side": "peft", "peer", "layers", "seq", "batch", "median_ms", "all_ms",
"tokens_per_second", "peak_bytes", "peak_reserved_bytes", "first_loss", "last_loss", "torch", ...}.
"""
import argparse
import contextlib
import json
import math
import time

import torch
import torch.nn.functional as F

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "vocab_size": 256, "bos_token_id": 1, "eos_token_id": 2}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def config_dict(path, layers, tiny):
    with open(path) as f:
        c = json.load(f)
    c["num_hidden_layers"] = layers
    if tiny:
        c.update(TINY)
    return c


def peft_model(c, dev, checkpointing):
    import transformers
    import peft
    cfg = transformers.LlamaConfig(**{k: v for k, v in c.items() if k not in ("architectures", "transformers_version")})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(7)
    model = transformers.LlamaForCausalLM(cfg).to(dtype=torch.bfloat16, device=dev)
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lc = peft.LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", target_modules=TARGETS, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lc)
    for n, p in model.named_parameters():  # PEFT keeps the adapter in fp32 (autocast_adapter_dtype); make sure
        if p.requires_grad:
            p.data = p.data.float()
    model.train()

    def loss_of(ids):
        return model(input_ids=ids, labels=ids).loss
    return loss_of, [p for p in model.parameters() if p.requires_grad], f"transformers {transformers.__version__} + peft {peft.__version__}"


def stand_in_model(c, dev):
    """HF Llama's math in plain torch with LoRA on the seven projections: only for trying the script."""
    torch.manual_seed(7)
    d, inter, H, KV = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or d // H
    V, L, eps, std = c["vocab_size"], c["num_hidden_layers"], c.get("rms_norm_eps", 1e-5), c.get("initializer_range", 0.02)
    shapes = {"q_proj": (H * hd, d), "k_proj": (KV * hd, d), "v_proj": (KV * hd, d), "o_proj": (d, H * hd),
              "gate_proj": (inter, d), "up_proj": (inter, d), "down_proj": (d, inter)}
    W = {(l, k): torch.randn(o, i) * std for l in range(L) for k, (o, i) in shapes.items()}
    emb, head = torch.randn(V, d) * std, torch.randn(V, d) * std
    A = {key: torch.empty(16, w.shape[1]).uniform_(-1 / math.sqrt(w.shape[1]), 1 / math.sqrt(w.shape[1])).requires_grad_(True)
         for key, w in W.items()}
    B = {key: torch.zeros(w.shape[0], 16, requires_grad=True) for key, w in W.items()}
    inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))

    def lin(x, l, k):
        return F.linear(x, W[(l, k)]) + F.linear(F.linear(x, A[(l, k)]), B[(l, k)])

    def rms(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def rope(x, cos, sin):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat((-x2, x1), -1) * sin

    def loss_of(ids):
        b, s = ids.shape
        ang = torch.arange(s).float()[:, None] * inv[None, :]
        cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
        mask = torch.full((s, s), float("-inf")).triu(1)
        x = emb[ids]
        for l in range(L):
            h = rms(x)
            q = rope(lin(h, l, "q_proj").view(b, s, H, hd).transpose(1, 2), cos, sin)
            k = rope(lin(h, l, "k_proj").view(b, s, KV, hd).transpose(1, 2), cos, sin).repeat_interleave(H // KV, 1)
            v = lin(h, l, "v_proj").view(b, s, KV, hd).transpose(1, 2).repeat_interleave(H // KV, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
            x = x + lin(att.transpose(1, 2).reshape(b, s, H * hd), l, "o_proj")
            h = rms(x)
            x = x + lin(F.silu(lin(h, l, "gate_proj")) * lin(h, l, "up_proj"), l, "down_proj")
        logits = F.linear(rms(x), head)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    return loss_of, list(A.values()) + list(B.values()), "plain-torch stand-in (transformers/peft not importable): for trying the script only"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="HF config.json (e.g. examples/configs/Llama-3.1-8B.json)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes, for trying the script")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (with --tiny: for trying the script)")
    ap.add_argument("--no-checkpointing", action="store_true")
    a = ap.parse_args()
    if a.cpu and not a.tiny:
        ap.error("--cpu is for trying the script: use it with --tiny")
    dev = "cpu" if a.cpu else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("peft_train_step_peer.py: CUDA not available (use --tiny --cpu to try the script)")
    c = config_dict(a.config, a.layers, a.tiny)
    try:
        loss_of, params, peer = peft_model(c, dev, not a.no_checkpointing)
        autocast, checkpointing = dev == "cuda", not a.no_checkpointing
    except ImportError as e:
        if not (a.tiny and a.cpu):
            raise SystemExit(f"peft_train_step_peer.py: {e}: the peer needs transformers and peft")
        loss_of, params, peer = stand_in_model(c, dev)
        autocast = checkpointing = False
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    g = torch.Generator().manual_seed(17)
    ids = torch.randint(3, c["vocab_size"], (a.batch, a.seq), generator=g).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            loss = loss_of(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)  # reads the loss back: the step has finished

    first = step()
    step()
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, last = [], first
    for _ in range(a.steps):
        t0 = time.perf_counter()
        last = step()
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    st = sorted(times)
    med = st[len(st) // 2] if len(st) % 2 else 0.5 * (st[len(st) // 2 - 1] + st[len(st) // 2])
    peak = torch.cuda.max_memory_allocated() if dev == "cuda" else 0
    reserved = torch.cuda.max_memory_reserved() if dev == "cuda" else 0
    print(json.dumps({"side": "peft", "peer": peer, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                      "layers": a.layers, "hidden": c["hidden_size"], "vocab": c["vocab_size"], "seq": a.seq, "batch": a.batch,
                      "checkpointing": checkpointing, "tiny": a.tiny, "median_ms": med, "min_ms": st[0], "max_ms": st[-1],
                      "all_ms": times, "tokens_per_second": a.batch * a.seq / (med / 1000), "peak_bytes": peak,
                      "peak_reserved_bytes": reserved, "first_loss": first, "last_loss": last, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
