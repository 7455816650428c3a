#!/bin/bash
# test_cpt.sh - scripts/cpt_recipe.sh end to end on a tiny budget: the causal model, the three
# stages (distillation, annealing, length extension) and the control run, each stage doing
# what it says (the log's distillation terms, the annealing coefficient from 1 to 0, 4x the
# length), and the report's tables; bad options refused. Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}

the_recipe_runs_every_stage_and_reports() {
    KSA_BIN="$BIN/ksa" bash scripts/cpt_recipe.sh --budget 0.04 --len 128 --n 1 \
        --out "$TMP/run" --report "$TMP/cpt.md" >"$TMP/out" 2>&1
    "$PY" - "$TMP/run" "$TMP/cpt.md" <<'PYEOF'
import json, os, sys
run, report = sys.argv[1], open(sys.argv[2]).read()
log = lambda n: [json.loads(l) for l in open(os.path.join(run, n + ".jsonl"))]
s1, s2, s3, c, c4 = (log(n) for n in ("stage1", "stage2", "stage3", "control", "control4"))
assert len(s1) == 6 and all("loss_attn" in r and "loss_kl" in r for r in s1), s1[0]
assert [r["summary_mix"] for r in s2] == [1 - i / 3 if i < 3 else 0 for i in range(1, 7)], \
    [r["summary_mix"] for r in s2]
assert all("loss_attn" not in r for r in s2 + s3 + c + c4)
assert len(c) == len(s1) + len(s2)  # the control's token budget
assert s3[-1]["tokens"] == c4[-1]["tokens"] == len(s3) * 4 * 512  # 4 rows of 4 x 128
for title in ("Training loss per stage", "at 128 tokens", "at 512 tokens", "Passkey accuracy"):
    assert title in report, title
for m in ("causal model (stage 0)", "1: distillation", "2: annealing", "3: length extension (4L)",
          "control: fine-tune at L", "control: extension (4L)"):
    assert report.count("| " + m + " |") == 4, (m, report.count("| " + m + " |"))
PYEOF
}

bad_options_are_refused() {
    must_fail bash scripts/cpt_recipe.sh --len x >"$TMP/o1" 2>&1
    grep -q "^cpt_recipe.sh: --len must be a whole number of tokens, got 'x'" "$TMP/o1"
    must_fail bash scripts/cpt_recipe.sh --causal "$TMP/none.h5" >"$TMP/o2" 2>&1
    grep -q "^cpt_recipe.sh: --causal '$TMP/none.h5' is not a file" "$TMP/o2"
    must_fail bash scripts/cpt_recipe.sh --no-such-option >"$TMP/o3" 2>&1
    grep -q "^cpt_recipe.sh: unknown option '--no-such-option'" "$TMP/o3"
}

echo "[==========] Running test_cpt.sh"
for t in the_recipe_runs_every_stage_and_reports bad_options_are_refused; do
    run_test "$t" "$t"
done
finish
