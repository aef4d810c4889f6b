#!/usr/bin/python3
"""Golden vectors for lora4j's NF4 kernels, from an independent PyTorch reimplementation of
bitsandbytes' algorithms (bitsandbytes/functional.py create_dynamic_map, quantize_4bit with
compress_statistics=True, quantize_blockwise; csrc/kernels.cu dQuantizeNF4, dQuantize<0>).

Run with Debian's torch (the system interpreter):   /usr/bin/python3 scripts/reference/nf4_reference.py
It writes tests/resources/nf4/nf4_golden.txt (override with --out PATH). Deterministic: fixed
seeds, no threads (torch.set_num_threads(1)).

File format (line-based text, ASCII; read by native/tests/harness.cpp `golden` and the Java
tests). Lines starting with '#' are comments. Each other line is `key value...`:

  dynamic_map <hex>          256 fp32, little-endian, concatenated (the signed 8-bit map)
  nf4_code <hex>             16 fp32 LE, the NF4 code values
  case NAME DTYPE N BLOCKSIZE    starts a case; DTYPE is f32 | bf16 | f16
  input <hex>                N elements, raw little-endian bytes of DTYPE (bf16/f16: bit patterns)
  packed <hex>               (N+1)/2 bytes, first element in the high nibble; odd N: the low
                             nibble codes a padding 0.0 (bitsandbytes pads the last block with 0)
  absmax <hex>               ceil(N/BLOCKSIZE) fp32 LE
  dequant <hex>              N fp32 LE: NF4[q] * absmax[block] (one fp32 rounding)
  offset <hex>               1 fp32 LE: torch's absmax.mean() (fp32)
  qabsmax <hex>              ceil(N/BLOCKSIZE) bytes: codes of (absmax - offset) into dynamic_map
  nested_absmax <hex>        ceil(nblocks/256) fp32 LE
  absmax_dq <hex>            nblocks fp32 LE: dynamic_map[q] * nested_absmax + offset (two roundings)
  end                        closes the case

Hex is lowercase, two digits per byte, no separators; an empty array is written as '-'.

Notes on exactness:
- qabsmax/nested_absmax are computed from *this file's* offset. torch's fp32 mean (a cascade
  sum) may differ from lora4j's (double sum, fixed order) in the last bit, so a consumer should
  compare offset within a few ulp and check qabsmax by quantizing absmax - offset (from this
  file) with lora4j_nf4_quantize_nested, which must match bit for bit.
- dynamic_map is built with torch.linspace in fp32, exactly as bitsandbytes does: its values
  depend on torch's linspace kernel (here torch 1.13, AVX2). lora4j's lora4j_dynamic_map must
  reproduce it bit for bit.
"""
import argparse
import fractions
import os
import struct
import sys

import torch

# NF4 code values: bitsandbytes csrc/kernels.cu dDequantizeNF4.
NF4_CODE = [
    "-1.0",
    "-0.6961928009986877",
    "-0.5250730514526367",
    "-0.39491748809814453",
    "-0.28444138169288635",
    "-0.18477343022823334",
    "-0.09105003625154495",
    "0.0",
    "0.07958029955625534",
    "0.16093020141124725",
    "0.24611230194568634",
    "0.33791524171829224",
    "0.44070982933044434",
    "0.5626170039176941",
    "0.7229568362236023",
    "1.0",
]
# Decision thresholds: bitsandbytes csrc/kernels.cu dQuantizeNF4 (fp32 literals), ascending.
NF4_THRESH = [
    "-0.8480964004993439",
    "-0.6106329262256622",
    "-0.4599952697753906",
    "-0.33967943489551544",
    "-0.23460740596055984",
    "-0.13791173323988914",
    "-0.045525018125772476",
    "0.03979014977812767",
    "0.1202552504837513",
    "0.2035212516784668",
    "0.2920137718319893",
    "0.3893125355243683",
    "0.5016634166240692",
    "0.6427869200706482",
    "0.8614784181118011",
]


def f32_literal(s):
    """The fp32 a C compiler gives the literal `s`f: the nearest fp32 to the exact decimal.
    (float(s) then fp32 could double-round; check the candidates with exact fractions.)"""
    exact = fractions.Fraction(s)
    d = struct.unpack("<f", struct.pack("<f", float(s)))[0]
    bits = struct.unpack("<I", struct.pack("<f", d))[0]
    cands = []
    for db in (-1, 0, 1):
        b = (bits + db) & 0xFFFFFFFF
        v = struct.unpack("<f", struct.pack("<I", b))[0]
        if v != v or v in (float("inf"), float("-inf")):
            continue
        cands.append((abs(fractions.Fraction(v) - exact), v))
    cands.sort(key=lambda c: c[0])
    return cands[0][1]


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes functional.py create_dynamic_map, transcribed (same torch calls)."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(
            2 ** (i + non_sign_bits - max_exponent_bits) + 1
            if signed
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        )
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    assert len(data) == 2**total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def nf4_quantize(w32, blocksize):
    """w32: 1-D fp32 tensor. Returns (codes uint8 [n + (n & 1)], absmax fp32 [nblocks]): for odd n
    the extra code is that of the 0.0 bitsandbytes pads its last block with."""
    n = w32.numel()
    nb = (n + blocksize - 1) // blocksize
    pad = torch.zeros(nb * blocksize, dtype=torch.float32)
    pad[:n] = w32
    blocks = pad.view(nb, blocksize)
    absmax = blocks.abs().max(dim=1).values
    inv = torch.ones_like(absmax) / absmax  # fp32 reciprocal (absmax 0 -> inf)
    x = blocks * inv[:, None]  # absmax 0 -> 0 * inf = NaN
    thresh = torch.tensor([f32_literal(t) for t in NF4_THRESH], dtype=torch.float32)
    codes = (x[..., None] > thresh).sum(dim=-1).to(torch.uint8)  # NaN: all False -> 0
    return codes.flatten()[:n + (n & 1)], absmax


def pack(codes):
    """codes: an even number of 4-bit codes -> bytes, first code in the high nibble."""
    return (codes[0::2] << 4) | codes[1::2]


def dquantize(code, x):
    """bitsandbytes csrc/kernels.cu dQuantize<0>, vectorised with torch.where; fp32 throughout."""
    n = x.numel()
    pivot = torch.full((n,), 127, dtype=torch.long)
    upper_pivot = torch.full((n,), 255, dtype=torch.long)
    lower_pivot = torch.zeros(n, dtype=torch.long)
    lower = torch.full((n,), -1.0, dtype=torch.float32)
    upper = torch.full((n,), 1.0, dtype=torch.float32)
    val = code[pivot]
    i = 64
    while i > 0:
        gt = x > val
        lower_pivot = torch.where(gt, pivot, lower_pivot)
        lower = torch.where(gt, val, lower)
        upper_pivot = torch.where(gt, upper_pivot, pivot)
        upper = torch.where(gt, upper, val)
        pivot = torch.where(gt, pivot + i, pivot - i)
        val = code[pivot]
        i >>= 1
    upper = torch.where(upper_pivot == 255, code[255].expand(n), upper)
    lower = torch.where(lower_pivot == 0, code[0].expand(n), lower)
    gt = x > val
    mid_up = (upper + val) * 0.5
    mid_lo = (lower + val) * 0.5
    res = torch.where(gt, torch.where(x > mid_up, upper_pivot, pivot),
                      torch.where(x < mid_lo, lower_pivot, pivot))
    return res.to(torch.uint8)


def quantize_blockwise(a, code, blocksize=256):
    """bitsandbytes quantize_blockwise (kQuantizeBlockwise General8bit): per block absmax, then
    dQuantize(code, a * (1/absmax))."""
    n = a.numel()
    nb = (n + blocksize - 1) // blocksize
    q = torch.zeros(n, dtype=torch.uint8)
    nested = torch.zeros(nb, dtype=torch.float32)
    for b in range(nb):
        blk = a[b * blocksize:(b + 1) * blocksize]
        m = blk.abs().max()
        nested[b] = m
        inv = torch.ones((), dtype=torch.float32) / m
        q[b * blocksize:(b + 1) * blocksize] = dquantize(code, blk * inv)
    return q, nested


def hexf32(t):
    t = t.to(torch.float32).contiguous()
    return "".join(struct.pack("<f", v).hex() for v in t.tolist()) or "-"


def hexbytes(t):
    return bytes(t.to(torch.uint8).tolist()).hex() or "-"


def to_dtype(w32, dtype):
    """Returns (fp32 values actually quantized, raw input hex)."""
    if dtype == "f32":
        return w32, hexf32(w32)
    td = torch.bfloat16 if dtype == "bf16" else torch.float16
    h = w32.to(td)
    bits = h.view(torch.int16).to(torch.int32) & 0xFFFF
    raw = "".join(struct.pack("<H", b).hex() for b in bits.tolist()) or "-"
    return h.to(torch.float32), raw


def write_case(f, name, dtype, w32, blocksize, code_map):
    vals, raw = to_dtype(w32, dtype)
    n = vals.numel()
    codes, absmax = nf4_quantize(vals, blocksize)
    nf4 = torch.tensor([f32_literal(c) for c in NF4_CODE], dtype=torch.float32)
    blk = torch.arange(n) // blocksize
    deq = nf4[codes[:n].long()] * absmax[blk]
    offset = absmax.mean()
    centered = absmax - offset
    qabsmax, nested = quantize_blockwise(centered, code_map, 256)
    absmax_dq = code_map[qabsmax.long()] * nested[torch.arange(absmax.numel()) // 256]
    absmax_dq = absmax_dq + offset
    f.write(f"case {name} {dtype} {n} {blocksize}\n")
    f.write(f"input {raw}\n")
    f.write(f"packed {hexbytes(pack(codes))}\n")
    f.write(f"absmax {hexf32(absmax)}\n")
    f.write(f"dequant {hexf32(deq)}\n")
    f.write(f"offset {hexf32(offset.reshape(1))}\n")
    f.write(f"qabsmax {hexbytes(qabsmax)}\n")
    f.write(f"nested_absmax {hexf32(nested)}\n")
    f.write(f"absmax_dq {hexf32(absmax_dq)}\n")
    f.write("end\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(repo, "tests", "resources", "nf4", "nf4_golden.txt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    code_map = create_dynamic_map(signed=True)

    cases = []
    g = torch.Generator().manual_seed(3407)
    # A 4-row [4, 288] weight with blocksize 64: blocks span rows (stories15M's dim).
    cases.append(("rows288_bs64", "f32", torch.randn(288 * 4, generator=g) * 0.02, 64))
    # Odd n: last block short; the last byte's low nibble codes bitsandbytes' 0.0 padding.
    cases.append(("odd1001_bs64", "f32", torch.randn(1001, generator=g), 64))
    cases.append(("bs32", "f32", torch.randn(32 * 37, generator=g) * 3.0, 32))
    cases.append(("bs4096", "f32", torch.randn(4096 + 777, generator=g), 4096))
    # A block of zeros (absmax 0 -> NaN -> code 0 -> dequant 0) between random blocks.
    z = torch.randn(64 * 3, generator=g)
    z[64:128] = 0.0
    cases.append(("zero_block", "f32", z, 64))
    cases.append(("bf16_bs64", "bf16", torch.randn(64 * 9 + 10, generator=g) * 0.05, 64))
    cases.append(("f16_bs128", "f16", torch.randn(128 * 5 + 3, generator=g) * 0.5, 128))
    # Values exactly at the thresholds (absmax 1 makes x == w), one ulp either side, and the
    # code values themselves; a 1.0 in each block pins absmax to 1.
    th = torch.tensor([f32_literal(t) for t in NF4_THRESH], dtype=torch.float32)
    up = torch.nextafter(th, torch.full_like(th, 2.0))
    dn = torch.nextafter(th, torch.full_like(th, -2.0))
    nf4 = torch.tensor([f32_literal(c) for c in NF4_CODE], dtype=torch.float32)
    edge = torch.cat([torch.tensor([1.0]), th, up, dn, nf4, torch.tensor([-1.0, 0.0, -0.0])])
    edge = torch.cat([edge, torch.zeros((-edge.numel()) % 64)])
    cases.append(("thresholds_bs64", "f32", edge, 64))
    # Many blocks: > 256 absmax values, so double quantization has several nested blocks and
    # a short last one; scales vary over 3 decades like real weights.
    big = torch.randn(32 * 600, generator=g) * torch.logspace(-3, 0, 600).repeat_interleave(32)
    cases.append(("many_blocks_bs32", "f32", big, 32))

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("# lora4j NF4 golden vectors. GENERATED by scripts/reference/nf4_reference.py\n")
        f.write(f"# torch {torch.__version__}; format: see the script's docstring. Do not edit.\n")
        f.write(f"dynamic_map {hexf32(code_map)}\n")
        nf4c = torch.tensor([f32_literal(c) for c in NF4_CODE], dtype=torch.float32)
        f.write(f"nf4_code {hexf32(nf4c)}\n")
        for name, dtype, w, bs in cases:
            write_case(f, name, dtype, w.to(torch.float32), bs, code_map)
    print(f"wrote {args.out}: {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
