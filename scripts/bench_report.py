#!/usr/bin/env python3
"""Prints JMH results (JSON) as ratios to the ceiling or peer measured in the same run.

Pairs: a benchmark `X` and its reference `XReadFloor` / `XSgemm` / `XPeer` with equal params,
or, given a second JSON file from a peer script (PyTorch), the peer's entry named `X`.
Ratio = reference time / our time (1.0 = as fast as the ceiling, higher is better), with the
spread from the min and max of the measured iterations.
"""
import json, sys

REFS = ("ReadFloor", "Sgemm", "Peer")
# Benchmarks whose throughput is quoted in GB/s of input: name -> bytes processed per call.
BYTES = {"quantize4096": 4096 * 4096 * 4}

def key(r):
    name = r["benchmark"].rsplit(".", 1)[1]
    params = tuple(sorted((r.get("params") or {}).items()))
    return name, params

def main(path, peer_path=None):
    rows = json.load(open(path))
    by = {key(r): r for r in rows}
    peer = json.load(open(peer_path)) if peer_path else {}
    print(f"{'benchmark':40s} {'params':18s} {'median ms':>10s} {'min..max':>18s}  ratio to ceiling (min..max)")
    for (name, params), r in sorted(by.items()):
        if name.endswith(REFS):
            continue
        raw = sorted(v for fork in r["primaryMetric"]["rawData"] for v in fork)
        med = raw[len(raw) // 2]
        ptxt = ",".join(f"{k}={v}" for k, v in params)
        line = f"{name:40s} {ptxt:18s} {med:10.3f} {raw[0]:8.3f}..{raw[-1]:8.3f}"
        for suffix in REFS:
            ref = by.get((name + suffix, params))
            if ref:
                rr = sorted(v for fork in ref["primaryMetric"]["rawData"] for v in fork)
                rmed = rr[len(rr) // 2]
                line += f"  {rmed / med:.2f} of {suffix} {rmed:.3f} ms ({rr[0] / raw[-1]:.2f}..{rr[-1] / raw[0]:.2f})"
        if name in peer and isinstance(peer[name], dict):
            p = peer[name]
            line += (f"  {p['median_ms'] / med:.2f}x the speed of the peer {p['median_ms']:.3f} ms"
                     f" ({p['min_ms'] / raw[-1]:.2f}..{p['max_ms'] / raw[0]:.2f}; {peer.get('peer', '')})")
        if name in BYTES:
            line += f"  {BYTES[name] / (med * 1e-3) / 1e9:.2f} GB/s of fp32 input"
        print(line)

if __name__ == "__main__":
    main(*sys.argv[1:3])
