#!/usr/bin/python3
"""Reference vectors for lora4j's SentencePiece tokenizer, from the real SentencePiece library.

Run with Debian's python3-sentencepiece (the system interpreter):
    /usr/bin/python3 scripts/reference/make_tokenizer_vectors.py [--model PATH] [--out PATH]
It loads the Llama-2 tokenizer.model fetched by scripts/fetch-assets.sh
(~/.cache/lora4j/tokenizer.model, or $LORA4J_CACHE/tokenizer.model) and writes
tests/resources/tokenizer/llama2_sentencepiece_vectors.json: a JSON array of
{"text": str, "ids": [1, ...], "decoded": str} where ids = [BOS] + sp.encode(text) (the DESIGN's
"ids include BOS" convention) and decoded = sp.decode(ids). Deterministic: fixed inputs only.
"""
import argparse
import json
import os
import sys

import sentencepiece as spm

TEXTS = [
    "",
    " ",
    "  ",
    "a",
    "Hello world",
    "Hello, world!",
    " leading space",
    "trailing space ",
    "  two leading and two trailing  ",
    "multiple     spaces   inside",
    "line one\nline two\n",
    "\n\n\nthree newlines first",
    "windows\r\nline\r\nendings",
    "tab\tseparated\tvalues",
    "12345",
    "3.14159 and 2,718,281 and -42",
    "1+1=2; 10*10=100",
    "Once upon a time, there was a little girl named Lily.",
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; i++) { sum += a[i]; }",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?query=1&b=2#frag",
    "café naïve résumé façade",
    "Größenwahn Straße Übermäßig",
    "日本語のテキストです。",
    "中文分词测试",
    "한국어 문장",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "ελληνικά γράμματα",
    "emoji 😀🎉👍🏽 end",
    "🦙🦙🦙",
    "family 👨‍👩‍👧‍👦 zwj",
    "math ∑∫∂√∞ ≠ ≤ ≥",
    "控制\u0000字符\u0001",
    "non\u00a0breaking\u00a0space",
    "<s> not a bos </s> not an eos",
    "[INST] What is the capital of France? [/INST]",
    "ALL CAPS SHOUTING AND lowercase",
    "don't won't can't it's I'm we'll they'd",
    "a" * 200,
    "ab " * 100,
    "The quick brown fox jumps over the lazy dog. " * 5,
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.environ.get("LORA4J_CACHE") or os.path.expanduser("~/.cache/lora4j")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(cache, "tokenizer.model"))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "resources", "tokenizer",
                                                  "llama2_sentencepiece_vectors.json"))
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=args.model)
    rows = []
    for t in TEXTS:
        ids = [sp.bos_id()] + sp.encode(t)
        rows.append({"text": t, "ids": ids, "decoded": sp.decode(ids)})
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        f.write("\n]\n")
    print(f"wrote {len(rows)} vectors to {os.path.normpath(args.out)} (sentencepiece {spm.__version__})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
