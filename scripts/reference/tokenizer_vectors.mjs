// Shared by make_qwen3_vectors.mjs and make_gemma3_vectors.mjs: the texts every tokenizer.json
// tokenizer is checked on, and one vector row per text, {"text", "ids", "plain", "decoded"}:
//   ids:     tokenizer.encode(text, {add_special_tokens: false}) (added-token strings read as their ids)
//   plain:   the BPE model over the normalized, pre-tokenized text, no added-token splitting; null
//            for texts with non-special added tokens, which every encode splits out
//   decoded: tokenizer.decode(ids, {skip_special_tokens: false})
import { writeFileSync } from "node:fs";

/** Plain text of every kind: spaces, newlines, digits, contractions, code, accents, scripts, emoji. */
export const COMMON_TEXTS = [
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
];

/** The last text of every vector file: one long repeated sentence. */
export const LAST_TEXT = "The quick brown fox jumps over the lazy dog. ".repeat(3);

/** The vector row of {@code text} under transformers.js tokenizer {@code tok}. */
export function vectorRow(tok, text) {
  const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
  const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  if (tok.added_tokens.some((t) => !t.special && text.includes(t.content))) return { text, ids, plain: null, decoded };
  const plain = tok.model(tok.pre_tokenizer(tok.normalizer ? tok.normalizer(text) : text)).map((t) => {
    const id = tok.model.tokens_to_ids.get(t);
    if (id === undefined) throw new Error(`no id for ${t}`);
    return id;
  });
  return { text, ids, plain, decoded };
}

/** Writes the rows, one JSON object a line. */
export function writeRows(file, rows) {
  writeFileSync(file, "[\n" + rows.map((r) => JSON.stringify(r)).join(",\n") + "\n]\n");
}
