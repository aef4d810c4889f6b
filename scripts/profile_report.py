#!/usr/bin/env python3
"""Markdown report of scripts/profile-train-step.sh's runs (JSON lines of TrainStepProfile):
where a training step's time goes by op at 1 thread, the same ops at 2 threads, and the step's
1 -> 2 thread scaling, with the machine's load average during each run.

    python3 scripts/profile_report.py RUNS.jsonl "CPU MODEL NAME" NPROC > REPORT.md
"""
import json
import statistics
import sys

GROUPS = [  # (group, predicate on the op key), first match wins
    ("lm_head + cross-entropy", lambda k: k.startswith("sgemm") and "32000" in k or k.startswith("crossEntropy")),
    ("projections + LoRA (fused linear)", lambda k: k.startswith("lora")),
    ("attention", lambda k: k.startswith("attention")),
    ("other sgemm", lambda k: k.startswith("sgemm")),
    ("RMSNorm, RoPE, SwiGLU, embedding, residual adds", lambda k: k.split()[0] in (
        "rmsnormFwd", "rmsnormBwd", "ropeFwd", "ropeBwd", "swigluFwd", "swigluBwd", "gegluFwd", "gegluBwd",
        "embeddingFwd", "axpy")),
    ("optimizer (AdamW, gradient norm)", lambda k: k in ("adamwStep", "sumOfSquares")),
    ("allocation and copies", lambda k: True),
]


def group_of(key):
    return next(g for g, p in GROUPS if p(key))


def main():
    runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    cpu, nproc = sys.argv[2], int(sys.argv[3])
    by_t = {}
    for r in runs:
        by_t.setdefault(r["threads"], []).append(r)
    med = statistics.median

    def step(t, field):
        return med([x for r in by_t[t] for x in r[field]])

    def mean_step(t):  # the ops are sums over a run's steps / steps: compare them with the mean step
        return statistics.mean([x for r in by_t[t] for x in r["profiled_ms"]])

    def op_ms(t):
        keys = sorted({k for r in by_t[t] for k in r["ops"]})
        return {k: (med([r["ops"].get(k, {"ms": 0})["ms"] for r in by_t[t]]), med([r["ops"].get(k, {"calls": 0})["calls"] for r in by_t[t]]))
                for k in keys}

    o1, o2 = op_ms(1), op_ms(2) if 2 in by_t else {}
    p1, p2 = step(1, "profiled_ms"), step(2, "profiled_ms") if 2 in by_t else float("nan")
    s1, s2 = step(1, "plain_ms"), step(2, "plain_ms") if 2 in by_t else float("nan")
    r0 = runs[0]
    tokens = r0["batch"] * r0["seq"]
    loads = [float(r["loadavg_before"].split()[0]) for r in runs] + [float(r["loadavg_after"].split()[0]) for r in runs]
    out = []
    w = out.append
    w("# One LoRA training step by op, and 1 -> 2 thread scaling\n")
    w(f"CPU: **{cpu}** ({nproc} logical CPUs). Made by `scripts/profile-train-step.sh` "
      f"(`bench/io/lora4j/bench/TrainStepProfile.java`): stories15M fp32, LoRA r 16 on all seven projections, "
      f"batch {r0['batch']} x seq {r0['seq']} random tokens (all labelled), no activation checkpointing, AdamW + clipping; "
      f"{r0['steps']} steps per run after 2 warm-up, {len(by_t[1])} run(s) per thread count, 1 and 2 threads alternating. "
      f"BLAS: `{r0['blas'].split('/')[-1]}`.\n")
    w("Load average (1 min) before / after each run: " + ", ".join(
        f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}: {r['loadavg_before'].split()[0]} / {r['loadavg_after'].split()[0]}" for r in runs) + ".")
    if max(loads) >= 0.5:
        w(f"**The machine was not idle** (load up to {max(loads):.1f} on {nproc} CPUs, other jobs running): absolute times "
          "are inflated and the thread scaling is not a clean measurement; the shares by op are the figures to read.\n")
    else:
        w("The machine was idle.\n")
    w("## The step\n")
    w("| | 1 thread | 2 threads | 1 -> 2 speed-up |")
    w("|---|---:|---:|---:|")
    w(f"| step, median ms (plain) | {s1:.0f} | {s2:.0f} | {s1 / s2:.2f}x |")
    w(f"| tokens / s | {tokens / s1 * 1000:.0f} | {tokens / s2 * 1000:.0f} | |")
    w(f"| step, median ms (profiled) | {p1:.0f} | {p2:.0f} | {p1 / p2:.2f}x |")
    w(f"\nProfiling overhead: {100 * (p1 / s1 - 1):+.1f} % at 1 thread (the proxy times every backend call; plain and "
      "profiled steps are interleaved in one process).\n")
    hc = [r["host_cache"] for r in by_t[1] if "host_cache" in r]
    if hc:
        w(f"Host caching allocator (1 thread, medians over runs; limit {hc[0]['limit_bytes'] / 2**20:.0f} MiB): "
          f"{med([c['hits_per_step'] for c in hc]):.0f} blocks reused and {med([c['misses_per_step'] for c in hc]):.0f} fresh per step; "
          f"peak host bytes allocated {med([c['peak_allocated_bytes'] for c in hc]) / 2**20:.1f} MiB, "
          f"reserved {med([c['peak_reserved_bytes'] for c in hc]) / 2**20:.1f} MiB.\n")
    w("## By group (1 thread)\n")
    w("Shares are of the median profiled step; \"outside the backend\" is the mean profiled step minus the ops' per-step sums.\n")
    groups = {}
    for k, (ms, _) in o1.items():
        groups.setdefault(group_of(k), [0.0, 0.0])[0] += ms
    for k, (ms, _) in o2.items():
        groups.setdefault(group_of(k), [0.0, 0.0])[1] += ms
    outside1 = mean_step(1) - sum(ms for ms, _ in o1.values())
    outside2 = mean_step(2) - sum(ms for ms, _ in o2.values()) if o2 else float("nan")
    w("| group | 1 thread ms | share | 2 threads ms | speed-up |")
    w("|---|---:|---:|---:|---:|")
    for g, (a, b) in sorted(groups.items(), key=lambda e: -e[1][0]):
        w(f"| {g} | {a:.1f} | {100 * a / p1:.1f} % | {b:.1f} | {a / b if b else float('nan'):.2f}x |")
    w(f"| outside the backend (Java, bookkeeping, proxy) | {outside1:.1f} | {100 * outside1 / p1:.1f} % | {outside2:.1f} | "
      f"{outside1 / outside2 if outside2 > 0 else float('nan'):.2f}x |")
    w("\n## By op (per step)\n")
    w("`loraFwd` / `loraBwd` are the fused LoRA linear: the frozen projection x Wᵀ (and dY W) with the adapter's two "
      "products; sgemm rows are keyed M x N x K and the transposes of A and B (lm_head: the 32000-wide ones, run "
      "on the labelled rows in chunks).\n")
    w("| op | calls | 1 thread ms | share | 2 threads ms | speed-up |")
    w("|---|---:|---:|---:|---:|---:|")
    for k, (ms, calls) in sorted(o1.items(), key=lambda e: -e[1][0]):
        b = o2.get(k, (float("nan"), 0))[0]
        w(f"| {k} | {calls:g} | {ms:.2f} | {100 * ms / p1:.1f} % | {b:.2f} | {ms / b if b else float('nan'):.2f}x |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
