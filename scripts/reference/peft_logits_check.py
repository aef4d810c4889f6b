#!/usr/bin/python3
"""Our LoRA adapter, loaded by PEFT onto the HF model made from the same weights, against our logits.

    python3 scripts/reference/peft_logits_check.py MODEL_DIR OUT

MODEL_DIR is an HF Llama directory (config.json + model.safetensors + reference.json with "ids"),
e.g. tests/resources/model/synthetic-gqa-untied. OUT holds what io.lora4j.emu.DeviceCheckMain
adapter-logits wrote: adapter/ (adapter_config.json + adapter_model.safetensors, PEFT's format)
and logits-<device>.json (our logits with the adapter, per device).

Reference, in float64: transformers' LlamaForCausalLM + peft's PeftModel.from_pretrained when both
import (the GPU machine: torch 2.x, transformers, peft); every tensor of our adapter file must then
arrive unchanged in PEFT's lora_A/lora_B parameters (PEFT ignores keys it does not recognise, so a
misnamed key would otherwise pass unnoticed). Without them (Debian's torch 1.13 here), a plain-torch
reimplementation: PEFT's documented LoRA, W + scale·B·A with scale = lora_alpha/r (alpha/sqrt(r)
with use_rslora), on the forward pass of scripts/reference/synthetic_reference.py; it says so.

Prints a short table last; exit 1 when a device's logits differ from the reference by more than
TOLERANCE, or PEFT did not load every adapter tensor.
"""
import glob
import json
import math
import os
import struct
import sys

import torch

# Our fp32 forward (and the fp32 merge W + s·B·A) against a float64 reference: logits of size ~1-5
# through 2 layers pick up ~1e-6 relative rounding per op; 2e-4 absolute leaves a wide margin while
# an adapter applied wrongly (its effect on these logits is ~1e-1) cannot pass.
TOLERANCE = 2e-4


def read_safetensors(path):
    """{name: float64 tensor} from a safetensors file (F32, BF16, F16), without the safetensors package."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=dtypes[e["dtype"]]) if end > b else torch.zeros(0)
        out[name] = t.reshape(e["shape"]).double()
    return out


def peft_reference(model_dir, adapter_dir, ids):
    """Logits from transformers + PEFT, and the list of adapter tensors PEFT did not take unchanged."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64)
    model = PeftModel.from_pretrained(base, adapter_dir).to(torch.float64).eval()
    params = dict(model.named_parameters())
    ours = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    problems = []
    for key, t in ours.items():
        name = key.replace(".weight", ".default.weight")  # PEFT names the adapter "default"
        p = params.get(name)
        if p is None:
            problems.append("no PEFT parameter for " + key)
        elif tuple(p.shape) != tuple(t.shape) or not torch.equal(p.detach().double(), t):
            problems.append("PEFT's " + name + " differs from the file")
    n_lora = sum(1 for n in params if ".lora_A." in n or ".lora_B." in n)
    if n_lora != len(ours):
        problems.append("PEFT made %d LoRA tensors, the file has %d" % (n_lora, len(ours)))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return logits, problems, "transformers + peft " + __import__("peft").__version__


def plain_reference(model_dir, adapter_dir, ids):
    """Logits from a plain-torch Llama with PEFT's LoRA merged by its documented formula."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import synthetic_reference as ref

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    c = dict(hidden=cfg["hidden_size"], inter=cfg["intermediate_size"], layers=cfg["num_hidden_layers"],
             heads=cfg["num_attention_heads"], kv=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
             head_dim=cfg.get("head_dim"), vocab=cfg["vocab_size"], tie=cfg.get("tie_word_embeddings", False),
             rope_theta=cfg.get("rope_theta", 10000.0), rope_scaling=cfg.get("rope_scaling"))
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    A = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    r, alpha = acfg["r"], acfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
    problems = []
    for key in A:
        if not key.endswith(".lora_A.weight"):
            continue
        target = key[len("base_model.model."):].replace(".lora_A.weight", ".weight")
        if target not in W:
            problems.append("adapter key " + key + " names no weight of the model")
            continue
        W[target] = W[target] + scale * A[key.replace("lora_A", "lora_B")] @ A[key]
    return ref.forward(c, W, ids), problems, "plain torch %s (PEFT's formula, merged)" % torch.__version__


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, out = sys.argv[1], sys.argv[2]
    adapter_dir = os.path.join(out, "adapter")
    ids = json.load(open(os.path.join(model_dir, "reference.json")))["ids"]
    try:
        import peft  # noqa: F401
        import transformers  # noqa: F401
        logits, problems, source = peft_reference(model_dir, adapter_dir, ids)
    except ImportError as e:
        print("peft/transformers not importable (%s): the reference is a plain-torch reimplementation of "
              "PEFT's LoRA, not PEFT itself" % e)
        logits, problems, source = plain_reference(model_dir, adapter_dir, ids)
    base = torch.tensor(json.load(open(os.path.join(model_dir, "reference.json")))["logits"], dtype=torch.float64)
    effect = (logits - base).abs().max().item()
    rows, ok = [], not problems and effect > 100 * TOLERANCE
    for path in sorted(glob.glob(os.path.join(out, "logits-*.json"))):
        ours = json.load(open(path))
        z = torch.tensor(ours["logits"], dtype=torch.float64)
        if z.shape != logits.shape:
            rows.append((ours["device"], "shape %s vs %s" % (tuple(z.shape), tuple(logits.shape)), "", "FAIL"))
            ok = False
            continue
        err = (z - logits).abs().max().item()
        agree = (z.argmax(-1) == logits.argmax(-1)).float().mean().item()
        good = err <= TOLERANCE
        ok = ok and good
        rows.append((ours["device"] + " (" + ours["backend"][:56] + ")", "%.2e" % err, "%.0f %%" % (100 * agree),
                     "ok" if good else "FAIL"))
    if not rows:
        problems.append("no logits-*.json in " + out)
        ok = False
    for p in problems:
        print("problem: " + p)
    print()
    print("== PEFT logits check: %s, %d positions, reference %s" % (os.path.basename(model_dir.rstrip("/")), len(ids), source))
    print("adapter's effect on the logits: max |delta| %.3f (tolerance %.0e)" % (effect, TOLERANCE))
    print("%-70s %-12s %-8s %s" % ("ours", "max|diff|", "argmax", ""))
    for r in rows:
        print("%-70s %-12s %-8s %s" % r)
    print("result: " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
