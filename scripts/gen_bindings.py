#!/usr/bin/env python3
"""Generates, from the declarations of native/include/lora4j/{nf4,ops,lora,infer,storage}.h:

  java/io/lora4j/nativeapi/Lora4jOpsNative.java  the JavaCPP binding of every entry of those headers;
  java/io/lora4j/ops/KernelEntries.java          one method per op that has both twins, lora4j_<op>
                                                 (CPU) and lora4j_cuda_<op> (the same parameters and
                                                 a trailing `void* stream`), with its two
                                                 implementations KernelEntries.Cpu and .Cuda, over
                                                 which io.lora4j.ops.NativeBackend marshals tensors once.

    python3 scripts/gen_bindings.py           # rerun whenever those headers change
    python3 scripts/gen_bindings.py --check   # exit 1 if a generated file is stale (KernelEntriesTest runs it)

An entry without its twin must be listed below with the reason (CPU_ONLY, CUDA_ONLY); an unlisted
one, or a CUDA twin whose parameters are not the CPU entry's plus the stream, stops the generator.
Every pointer parameter becomes a JavaCPP Pointer (host pointers on the CPU entries, device pointers
on lora4j_cuda_*); callers in io.lora4j.ops validate before calling.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cheaders  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HEADERS = ["native/include/lora4j/nf4.h", "native/include/lora4j/ops.h", "native/include/lora4j/lora.h",
           "native/include/lora4j/infer.h", "native/include/lora4j/storage.h"]
BINDING = "java/io/lora4j/nativeapi/Lora4jOpsNative.java"
ENTRIES = "java/io/lora4j/ops/KernelEntries.java"

# CPU entries with no CUDA twin, and why.
CPU_ONLY = {
    "lora4j_nf4_code": "the NF4 table, read once on the host",
    "lora4j_dynamic_map": "bitsandbytes' 8-bit map, read once on the host",
    "lora4j_nf4_quantize_nested": "the nested step of lora4j_nf4_double_quant alone, for its golden test",
    "lora4j_set_num_threads": "the CPU thread pool",
    "lora4j_get_num_threads": "the CPU thread pool",
    "lora4j_lora_bwd_workspace_floats": "a size, no device work",
    "lora4j_ce_chunked_workspace_floats": "a size, no device work",
    "lora4j_ce_chunked_fwd_bwd": "the fused CPU head of the native harness; Java runs lora4j_ce_chunk_* on both devices",
    "lora4j_decode_isa": "names the CPU decode kernels' SIMD path",
    "lora4j_nf4_matmul_fwd_bf16": "bnb_4bit_compute_dtype bfloat16 on the CPU; CUDA's NF4 product already takes bf16 operands",
    "lora4j_nf4_bf16_path": "names the CPU bf16-compute NF4 path",
    "lora4j_sample_probs": "sampling runs on the host: logits are copied there first",
    "lora4j_sample_token": "sampling runs on the host: logits are copied there first",
}
# CUDA entries with no CPU twin in these headers, and why.
CUDA_ONLY = {
    "lora4j_cuda_sgemm": "its CPU twin lora4j_sgemm (runtime.h, OpenBLAS) is bound by hand in Lora4jNative",
    "lora4j_cuda_nf4_dequantize_bf16": "a dequantize-then-GEMM reference of the CUDA harness",
    "lora4j_cuda_bf16_matmul_fwd": "a dequantize-then-GEMM reference of the CUDA harness",
}

JAVA_TYPES = {"void": "void", "int64_t": "long", "int32_t": "int", "uint64_t": "long", "float": "float",
              "double": "double"}
# JavaCPP needs the C type where Java's differs in signedness or width
BINDING_TYPES = dict(JAVA_TYPES, uint64_t='@Cast("uint64_t") long')
JAVA_KEYWORDS = {"abstract", "assert", "boolean", "break", "byte", "case", "catch", "char", "class", "const",
                 "continue", "default", "do", "double", "else", "enum", "extends", "final", "finally", "float",
                 "for", "goto", "if", "implements", "import", "instanceof", "int", "interface", "long", "native",
                 "new", "package", "private", "protected", "public", "return", "short", "static", "strictfp",
                 "super", "switch", "synchronized", "this", "throw", "throws", "transient", "try", "void",
                 "volatile", "while"}


def fail(msg):
    raise SystemExit("gen_bindings.py: " + msg)


def java_name(p):
    return p.name + "_" if p.name in JAVA_KEYWORDS else p.name


def java_type(ctype, d, binding):
    if ctype == "const char*":
        return '@Cast("const char*") BytePointer' if binding else "BytePointer"
    if ctype.endswith("*"):
        return '@Cast("%s") Pointer' % ctype if binding else "Pointer"
    types = BINDING_TYPES if binding else JAVA_TYPES
    if ctype not in types:
        fail("%s: %s: no Java type for C type '%s' (add it to JAVA_TYPES)" % (d.header, d.signature(), ctype))
    return types[ctype]


def method_name(cpu_name):
    """lora4j_nf4_dq_matmul_fwd -> nf4DqMatmulFwd."""
    words = cpu_name[len("lora4j_"):].split("_")
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def javadoc_text(s):
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")
    return s.replace("*/", "*&#47;").replace("{", "&#123;").replace("}", "&#125;")


def twins(decls):
    """[(cpu, cuda)] of the ops with both entries, in header order; fails on an unexplained lone entry."""
    by_name = {d.name: d for d in decls}
    pairs, problems = [], []
    for d in decls:
        if d.name.startswith("lora4j_cuda_"):
            cpu = by_name.get("lora4j_" + d.name[len("lora4j_cuda_"):])
            if cpu is None and d.name not in CUDA_ONLY:
                problems.append("%s: %s has no CPU twin %s: write it (STYLE.md: every CUDA kernel has one), or list "
                                "it in CUDA_ONLY with the reason" % (d.header, d.name, "lora4j_" + d.name[12:]))
            continue
        cuda = by_name.get("lora4j_cuda_" + d.name[len("lora4j_"):])
        if cuda is None:
            if d.name not in CPU_ONLY:
                problems.append("%s: %s has no CUDA twin lora4j_cuda_%s: write it, or list it in CPU_ONLY with the "
                                "reason" % (d.header, d.name, d.name[7:]))
            continue
        want = [p.ctype for p in d.params] + ["void*"]
        got = [p.ctype for p in cuda.params]
        if got != want or cuda.params[-1].name != "stream" or cuda.ret != d.ret:
            problems.append("%s: %s must take %s's parameters and a trailing void* stream:\n  %s\n  %s"
                            % (cuda.header, cuda.name, d.name, d.signature(), cuda.signature()))
            continue
        pairs.append((d, cuda))
    for name in sorted(set(CPU_ONLY) | set(CUDA_ONLY)):
        if name not in by_name:
            problems.append("%s is listed in CPU_ONLY/CUDA_ONLY but declared in none of %s" % (name, HEADERS))
    for name in sorted(set(CPU_ONLY) & {c.name for c, _ in pairs} | set(CUDA_ONLY) & {g.name for _, g in pairs}):
        problems.append("%s is listed as lone but has its twin: remove it from the list" % name)
    if problems:
        fail("\n".join(problems))
    return pairs


def binding_source(by_header):
    lines = []
    for h, decls in by_header:
        lines.append("    // ---- %s ----\n" % h)
        for d in decls:
            params = ", ".join("%s %s" % (java_type(p.ctype, d, True), java_name(p)) for p in d.params)
            lines.append("    public static native %s %s(%s);\n\n" % (java_type(d.ret, d, True), d.name, params))
    includes = ", ".join('"lora4j/%s"' % os.path.basename(h) for h, _ in by_header)
    return f"""// GENERATED by scripts/gen_bindings.py from {', '.join(h for h, _ in by_header)}. Do not edit.
package io.lora4j.nativeapi;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * Raw JavaCPP binding of liblora4j's ops: NF4, transformer ops, the fused LoRA linear, the decode
 * kernels and the compact-storage kernels. No validation here: use {{@code io.lora4j.ops.Backend}}.
 * Native {{@code std::runtime_error}}s arrive as {{@link RuntimeException}}s.
 */
@Platform(include = {{{includes}}}, link = "lora4j")
public final class Lora4jOpsNative {{
    static {{
        Loader.load();
    }}

    private Lora4jOpsNative() {{}}

{''.join(lines).rstrip()}
}}
"""


def wrap(head, items, tail, indent):
    """head + items joined by ', ' + tail, broken before an item that would pass column 120."""
    out, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "")
        if len(line) + len(piece.rstrip()) > 120 and line.strip():
            out.append(line.rstrip())
            line = indent
        line += piece
    out.append(line + tail)
    return "\n".join(out)


def entries_source(pairs):
    iface, cpu_impl, cuda_impl = [], [], []
    for cpu, cuda in pairs:
        name = method_name(cpu.name)
        ret = java_type(cpu.ret, cpu, False)
        params = ["%s %s" % (java_type(p.ctype, cpu, False), java_name(p)) for p in cpu.params]
        args = [java_name(p) for p in cpu.params]
        what = "{@code %s} | {@code %s} (%s)." % (cpu.name, cuda.name, os.path.basename(cpu.header))
        documented = [p for p in cpu.params if p.doc]
        doc = ["    /** %s */" % what]
        if documented:  # the header's comments: shapes, units, aliasing
            doc = ["    /**", "     * " + what, "     *"]
            doc += ["     * @param %s %s" % (java_name(p), javadoc_text(p.doc)) for p in documented]
            doc.append("     */")
        iface.append("\n".join(doc) + "\n" + wrap("    %s %s(" % (ret, name), params, ");", " " * 12) + "\n")
        call = "" if ret == "void" else "return "
        for impl, entry, extra in ((cpu_impl, cpu.name, []), (cuda_impl, cuda.name, ["stream"])):
            impl.append("        @Override\n" + wrap("        public %s %s(" % (ret, name), params, ") {", " " * 16)
                        + "\n" + wrap("            %s%s(" % (call, entry), args + extra, ");", " " * 20)
                        + "\n        }\n")
    lone = "\n".join(" * <li>{@code %s}: %s" % (n, javadoc_text(why))
                     for n, why in sorted(CPU_ONLY.items()) + sorted(CUDA_ONLY.items()))
    return f"""// GENERATED by scripts/gen_bindings.py from {', '.join(HEADERS)}. Do not edit.
package io.lora4j.ops;

import static io.lora4j.nativeapi.Lora4jOpsNative.*;

import io.lora4j.nativeapi.NativeLibrary;
import org.bytedeco.javacpp.Pointer;

/**
 * liblora4j's ops as the headers declare them, one method per op with a CPU entry {{@code lora4j_<op>}}
 * and a CUDA twin {{@code lora4j_cuda_<op>}}: raw pointers (host ones for {{@link Cpu}}, device ones for
 * {{@link Cuda}}) and the header's scalars, no validation ({{@link CheckedBackend}} does it), so that
 * {{@link NativeBackend}} marshals tensors to an op once for both devices.
 *
 * <p>Entries with no twin, and why (scripts/gen_bindings.py CPU_ONLY, CUDA_ONLY):
 * <ul>
{lone}
 * </ul>
 */
interface KernelEntries {{
{chr(10).join(iface).rstrip()}

    /** The CPU kernels ({{@code lora4j_<op>}}): host pointers; a call returns when its work is done. */
    final class Cpu implements KernelEntries {{
        /** Loads liblora4j first. */
        Cpu() {{
            NativeLibrary.load();
        }}

{chr(10).join(cpu_impl).rstrip()}
    }}

    /** The CUDA kernels ({{@code lora4j_cuda_<op>}}): device pointers, each call queued on one stream. */
    final class Cuda implements KernelEntries {{
        private final Pointer stream;

        /** Loads liblora4j first; {{@code stream}} is a cudaStream_t (null = the legacy default stream). */
        Cuda(Pointer stream) {{
            NativeLibrary.load();
            this.stream = stream;
        }}

{chr(10).join(cuda_impl).rstrip()}
    }}
}}
"""


def generate():
    """{path: text} of every generated file."""
    by_header, decls = [], []
    for h in HEADERS:
        with open(os.path.join(ROOT, h)) as f:
            ds = list(cheaders.declarations(f.read(), h))
        if not ds:
            fail("no lora4j_* declaration found in " + h)
        by_header.append((h, ds))
        decls += ds
    seen = set()
    for d in decls:
        if d.name in seen:
            fail("%s: %s is declared twice" % (d.header, d.name))
        seen.add(d.name)
    return {BINDING: binding_source(by_header), ENTRIES: entries_source(twins(decls))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file differs")
    args = ap.parse_args()
    stale = []
    for rel, text in generate().items():
        path = os.path.join(ROOT, rel)
        old = open(path).read() if os.path.exists(path) else None
        if args.check:
            if old != text:
                stale.append(rel)
            continue
        if old != text:
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        print("wrote" if old != text else "unchanged", rel)
    if stale:
        fail("stale: %s (the headers changed since they were generated): run python3 scripts/gen_bindings.py"
             % ", ".join(stale))


if __name__ == "__main__":
    main()
