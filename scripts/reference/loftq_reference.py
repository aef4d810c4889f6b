#!/usr/bin/python3
"""Golden vectors for lora4j's LoftQ initialisation (io.lora4j.lora.LoftQ), from an independent
PyTorch reimplementation of PEFT's `loftq_init` (peft/utils/loftq_utils.py) with the
bitsandbytes NF4 path (`Params4bit(..., compress_statistics=False, quant_type="nf4")`, blocksize
64, no double quantization):

    res = W
    repeat num_iter times:
        Q   = nf4(res)                     # bitsandbytes NF4 (scripts/reference/nf4_reference.py)
        res = W - dequant(Q)
        U, S, Vh = svd(res)                # full, thin
        L = U[:, :r] sqrt(S[:r])           # B  [out, r]
        R = sqrt(S[:r]) Vh[:r]             # A  [r, in]
        res = W - L R
    returns dequant(Q), A = R, B = L       # PEFT assigns them as they are (no alpha/r correction)

Two differences from PEFT's literal code, both stated: the SVD and the residuals are computed in
float64 (PEFT uses float32; the fp32 result differs from the exact one by the amount printed per
case as `# peft_fp32_max_diff`), and each singular pair's sign is fixed (the largest-magnitude
entry of each row of A positive, flipping the column of B with it), because an SVD leaves it free
(LAPACK's choice is not specified) and B·A does not depend on it.

Run with Debian's torch (the system interpreter):   /usr/bin/python3 scripts/reference/loftq_reference.py
It writes tests/resources/lora/loftq_golden.txt (override with --out PATH). Deterministic.

File format (text; '#' lines are comments):
  case NAME OUT IN R ITERS
  w <hex>        OUT*IN fp32 little-endian, row-major
  dequant <hex>  OUT*IN fp32: dequant(Q) after the last iteration
  a <hex>        R*IN fp32: lora_A
  b <hex>        OUT*R fp32: lora_B
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nf4_reference import NF4_CODE, f32_literal, hexf32, nf4_quantize  # noqa: E402

BLOCKSIZE = 64
CODE = torch.tensor([f32_literal(c) for c in NF4_CODE], dtype=torch.float32)


def nf4_roundtrip(w32):
    """dequant(nf4(w32)) in fp32, as bitsandbytes' dequantize_4bit: code value times absmax, one rounding."""
    out, inp = w32.shape
    n = w32.numel()
    codes, absmax = nf4_quantize(w32.flatten(), BLOCKSIZE)
    nb = absmax.numel()
    pad = torch.zeros(nb * BLOCKSIZE, dtype=torch.float32)
    pad[:n] = CODE[codes[:n].long()]
    return (pad.view(nb, BLOCKSIZE) * absmax[:, None]).flatten()[:n].view(out, inp)


def loftq(w32, r, iters, dtype):
    """PEFT's loftq_init with the residuals and the SVD in `dtype`; returns (dequant fp32, A, B) in dtype."""
    w = w32.to(dtype)
    lr = torch.zeros_like(w)
    dq = None
    L = R = None
    for _ in range(iters):
        target = (w - lr).to(torch.float32)
        dq = nf4_roundtrip(target)
        res = w - dq.to(dtype)
        U, S, Vh = torch.linalg.svd(res, full_matrices=False)
        sq = torch.sqrt(S[:r])
        L = U[:, :r] * sq[None, :]
        R = sq[:, None] * Vh[:r, :]
        lr = L @ R
    for t in range(R.shape[0]):
        j = int(torch.argmax(R[t].abs()))
        if R[t, j] < 0:
            R[t] = -R[t]
            L[:, t] = -L[:, t]
    return dq, R, L


def weights(out, inp, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g, dtype=torch.float64) * 0.02
    # a few outliers, as real projections have: they dominate their NF4 blocks
    idx = torch.randint(0, out * inp, (max(1, out * inp // 200),), generator=g)
    w.view(-1)[idx] *= 8
    return w.to(torch.float32)


CASES = [  # name, out, in, r, iters, seed
    ("tall_r4_iter1", 48, 32, 4, 1, 1),
    ("wide_r8_iter2", 32, 48, 8, 2, 2),
    ("square_r4_iter3", 64, 64, 4, 3, 3),
    ("odd_blocks_r2_iter1", 40, 24, 2, 1, 4),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "resources", "lora", "loftq_golden.txt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["# PEFT loftq_init reimplemented in PyTorch " + torch.__version__ + " (scripts/reference/loftq_reference.py)"]
    for name, out, inp, r, iters, seed in CASES:
        w = weights(out, inp, seed)
        dq, a, b = loftq(w, r, iters, torch.float64)
        _, a32, b32 = loftq(w, r, iters, torch.float32)
        diff = max(float((a32.double() - a).abs().max()), float((b32.double() - b).abs().max()))
        scale = max(float(a.abs().max()), float(b.abs().max()))
        lines.append(f"# peft_fp32_max_diff {diff:.3e} (largest |A|,|B| entry {scale:.3e})")
        lines.append(f"case {name} {out} {inp} {r} {iters}")
        lines.append("w " + hexf32(w.flatten()))
        lines.append("dequant " + hexf32(dq.flatten()))
        lines.append("a " + hexf32(a.to(torch.float32).flatten()))
        lines.append("b " + hexf32(b.to(torch.float32).flatten()))
    path = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
