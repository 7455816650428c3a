#!/bin/bash
# test_ablation.sh - scripts/ablation.sh end to end at a tiny budget (a few steps per
# variant): every variant is trained and scored on every task and length, the report has a
# row per variant and a column per length, the plots are written, and bad options fail.
# The budget is far too small to learn anything: this checks the plumbing, not the result
# (results/ablation.md is the result). Prints a cmocka-style summary for tests/run_tests.sh.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}

ablation_trains_scores_and_reports_every_variant() {
    local d="$TMP/abl"
    mkdir -p "$d"
    KSA_BIN="$BIN/ksa" scripts/ablation.sh --budget 0.01 --variants full,swa,sca,ksa,hybrid \
        --train-len 128 --lengths 128,256 --tasks passkey,niah-multikey --n 2 --out "$d/run" \
        --report "$d/report" >"$d/out.txt" 2>&1 || { cat "$d/out.txt"; return 1; }
    "$PY" - "$d" <<'PYEOF'
import json, os, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "run", "eval.jsonl"))]
got = sorted((r["variant"], r["task"], r["len"]) for r in rows)
# niah-multikey needs at least 200 tokens: not scored at 128
want = sorted((v, t, L) for v in ["full", "swa", "sca", "ksa", "hybrid"]
              for t, L in [("passkey", 128), ("passkey", 256), ("niah-multikey", 256)])
assert got == want, got
for r in rows:
    assert r["n"] == 2 and 0 <= r["accuracy"] <= 1, r
md = open(os.path.join(d, "report", "ablation.md")).read()
for name in ["Full (causal)", "SWA", "SCA", "KSA", "KSA hybrid 3:1"]:
    # accuracy (2 tasks), by depth (3 task-length pairs), loss
    assert md.count("| %s |" % name) == 2 + 3 + 1, (name, md.count("| %s |" % name))
assert "| variant | 128 | 256 |" in md, md
assert "| SWA | — | " in md, md  # niah-multikey at 128: skipped
# the variants differ in their attention keys only
confs = {v: open(os.path.join(d, "run", v + ".conf")).read() for v in ["full", "swa", "sca", "ksa"]}
assert "layer_sliding_window = 32" in confs["swa"] and "layer_sliding_window" not in confs["full"]
assert "sliding_chunk_attention = true" in confs["sca"]
assert "summary_token_num = 1" in confs["ksa"]
assert "seq_len = 128" in confs["ksa"], confs["ksa"]
# the training mixture: every task that fits in 128 tokens, the copy task and the corpus
mix = [l.split()[:2] for l in open(os.path.join(d, "run", "mix.txt"))]
assert [n for n, _ in mix] == ["passkey", "copy", "kjv"], mix
assert abs(sum(float(w) for _, w in mix) - 1) < 1e-9, mix
PYEOF
    grep -q "niah-multikey left out of the training mixture" "$d/out.txt" || { cat "$d/out.txt"; return 1; }
    # --eval-only scores the same checkpoints again: the same answers, only the tasks asked for
    cp "$d/run/eval.jsonl" "$d/eval.first.jsonl"
    KSA_BIN="$BIN/ksa" scripts/ablation.sh --eval-only --budget 0.01 --variants full,ksa \
        --train-len 128 --lengths 128 --tasks passkey --n 2 --out "$d/run" \
        --report "$d/report2" >"$d/out2.txt" 2>&1 || { cat "$d/out2.txt"; return 1; }
    "$PY" - "$d/eval.first.jsonl" "$d/run/eval.jsonl" <<'PYEOF'
import json, sys
first = [json.loads(l) for l in open(sys.argv[1])]
again = [json.loads(l) for l in open(sys.argv[2])]
got = [(r["variant"], r["task"], r["len"]) for r in again]
assert got == [("full", "passkey", 128), ("ksa", "passkey", 128)], got
for r in again:
    key = (r["variant"], r["task"], r["len"])
    old = [f for f in first if (f["variant"], f["task"], f["len"]) == key][0]
    assert r["by_depth"] == old["by_depth"] and r["accuracy"] == old["accuracy"], (r, old)
PYEOF
    test -s "$d/report2/ablation.md"
    test -s "$d/report/ablation_accuracy.png"
    test -s "$d/report/ablation_loss.png"
    # the KV cache of SWA and SCA does not grow with the length; the causal one does
    "$PY" - "$d/eval.first.jsonl" <<'PYEOF'
import json, sys
kv = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["task"] == "passkey":
        kv[(r["variant"], r["len"])] = r["kv_cache_bytes_per_sequence"]
assert kv[("full", 256)] > 1.9 * kv[("full", 128)], kv  # T = prompt + answer
assert kv[("swa", 256)] == kv[("swa", 128)], kv
assert kv[("sca", 256)] <= kv[("sca", 128)] + 8 * 1024, kv
assert kv[("ksa", 256)] < kv[("full", 256)], kv
PYEOF
}

ablation_refuses_bad_options() {
    expect_error "unknown variant 'mamba'" scripts/ablation.sh --variants full,mamba
    expect_error "--budget must be a positive number, got 'lots'" scripts/ablation.sh --budget lots
    expect_error "unknown option '--bogus'" scripts/ablation.sh --bogus
    expect_error "--eval-only: $TMP/none/runs/full is missing" scripts/ablation.sh --eval-only --out "$TMP/none"
    expect_error "--train-len must be a whole number of tokens, got '2k'" scripts/ablation.sh --train-len 2k
}

echo "[==========] Running test_ablation.sh"
for t in ablation_trains_scores_and_reports_every_variant ablation_refuses_bad_options; do
    run_test "$t" "$t"
done
finish
