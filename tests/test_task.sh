#!/bin/bash
# test_task.sh - end-to-end tests of `ksa task` through the built binary (run by `make test`
# with BIN set): the token file and the JSONL file agree example by example, the loader reads
# the token file, the same seed gives the same bytes, bad input writes nothing, existing
# outputs are kept unless --overwrite. The examples themselves are tested in test_tasks.c.
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}
KJV=build/data/kjv.txt # made by `make` (make test builds it first)

# The examples of P.bin and P.jsonl, checked against each other: N lines, each example exactly
# LEN tokens of prompt + answer + end-of-text as the .bin holds them, depths cycled over
# DEPTHS, needles inside the prompt (the target ones holding a piece of the answer).
check_task_files() { # PREFIX TASK LEN N DEPTHS
    "$PY" - "$@" <<'PYEOF'
import json, sys
import numpy as np
prefix, task, length, n, depths = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
depths = [float(d) for d in depths.split(",")]
tokens = np.fromfile(prefix + ".bin", dtype="<u2")
assert len(tokens) == n * length, (len(tokens), n, length)
lines = open(prefix + ".jsonl", encoding="utf-8").read().splitlines()
assert len(lines) == n, (len(lines), n)
seeds = set()
for i, line in enumerate(lines):
    ex = json.loads(line)
    assert ex["task"] == task and ex["len"] == length, ex
    assert ex["depth"] == depths[i % len(depths)], (i, ex["depth"])
    prompt, answer = ex["prompt"].encode(), ex["answer"].encode()
    ids = list(prompt) + list(answer) + [256]
    assert ids == tokens[i * length:(i + 1) * length].tolist(), i
    assert ex["prompt_tokens"] == len(prompt) and ex["answer_tokens"] == len(answer), i
    assert 0 <= ex["depth_needle"] < len(ex["needles"]), ex
    pieces = answer.split(b", ")
    for nd in ex["needles"]:
        text = prompt[nd["pos"]:nd["pos"] + nd["tokens"]]
        assert text.endswith(b".") and b"\n" not in text, (i, text)
        if nd["target"] and task != "vartrack":
            assert any(p in text for p in pieces), (i, text, answer)
    seeds.add(ex["seed"])
assert len(seeds) == n, "every example has its own seed"
print(task, n, "examples of", length, "tokens: ok")
PYEOF
}

task_writes_token_and_jsonl_files_that_agree() {
    local d="$TMP/ok"
    mkdir -p "$d"
    for task in passkey niah-multikey niah-multivalue vartrack; do
        "$KSA" task --task "$task" --len 300 --n 7 --depths 0,50,100 --seed 3 \
            --filler "$KJV" --out "$d/$task" >"$d/$task.out"
        check_task_files "$d/$task" "$task" 300 7 0,50,100
        [ "$(cat "$d/$task.bin.meta")" = uint16 ]
        [ "$(cat "$d/$task.bin.tokenizer")" = byte ]
        grep -q "7 $task examples of 300 tokens" "$d/$task.out"
    done
    # the default depths and filler (build/data/kjv.txt), noise, decimal depths
    "$KSA" task --task passkey --len 200 --n 6 --out "$d/default" >/dev/null
    check_task_files "$d/default" passkey 200 6 0,25,50,75,100
    grep -q '"filler":"build/data/kjv.txt"' "$d/default.jsonl"
    "$KSA" task --task passkey --len 600 --n 3 --depths 12.5 --filler noise --out "$d/noise" \
        >/dev/null
    check_task_files "$d/noise" passkey 600 3 12.5
    [ "$(grep -c '"filler":"noise","prompt":"The grass is green. The sky is blue.' \
        "$d/noise.jsonl")" = 3 ]
    [ -z "$(ls "$d" | grep '\.tmp$')" ]
}

# The token file is one for the loader: `ksa train --dry-run` opens and checks it.
the_loader_reads_the_token_file() {
    local d="$TMP/loader"
    mkdir -p "$d"
    "$KSA" task --task niah-multikey --len 256 --n 9 --filler noise --out "$d/mk" >/dev/null
    "$KSA" train --config configs/tiny.conf --data "$d/mk.bin" --seq-len 256 --dry-run \
        >"$d/plan"
    grep -q "mk.bin: 2304 tokens (uint16, headerless)" "$d/plan"
    grep -q "# tokenizer of the data: byte" "$d/plan"
    # a large vocabulary makes uint32 tokens, as ksa prepare does
    "$KSA" task --task passkey --len 100 --n 2 --filler noise --vocab-size 70000 \
        --out "$d/wide" >/dev/null
    [ "$(cat "$d/wide.bin.meta")" = uint32 ]
    [ "$(stat -c %s "$d/wide.bin")" = 800 ]
}

same_seed_same_bytes_another_seed_other_examples() {
    local d="$TMP/seed"
    mkdir -p "$d"
    local args=(task --task niah-multivalue --len 400 --n 5 --filler "$KJV")
    "$KSA" "${args[@]}" --seed 9 --out "$d/a" >/dev/null
    "$KSA" "${args[@]}" --seed 9 --out "$d/b" >/dev/null
    "$KSA" "${args[@]}" --seed 10 --out "$d/c" >/dev/null
    cmp "$d/a.bin" "$d/b.bin"
    cmp "$d/a.jsonl" "$d/b.jsonl"
    must_fail cmp -s "$d/a.bin" "$d/c.bin"
    # --out P.bin is the prefix P; the folder is created
    "$KSA" "${args[@]}" --seed 9 --out "$d/new/sub/e.bin" >/dev/null
    cmp "$d/a.bin" "$d/new/sub/e.bin"
    [ "$(ls "$d/new/sub" | tr '\n' ' ')" = "e.bin e.bin.meta e.bin.tokenizer e.jsonl " ]
}

# Each bad input: exit status non-zero, an error naming the problem, no file written.
bad_input_fails_naming_the_problem_and_writes_nothing() {
    local d="$TMP/bad"
    mkdir -p "$d"
    printf 'Gr\xfc\xdfe aus K\xf6ln' >"$d/latin1.txt"
    local ok=(--len 300 --n 3 --filler noise --out "$d/P")
    expect_error "unknown task 'needle' (known: passkey, niah-multikey, niah-multivalue, vartrack)" \
        "$KSA" task --task needle "${ok[@]}"
    expect_error "--len 70 is too short for passkey: it needs at least 71 tokens" \
        "$KSA" task --task passkey --len 70 --n 3 --out "$d/P"
    expect_error "is too short for vartrack: it needs at least" \
        "$KSA" task --task vartrack --len 71 --n 3 --out "$d/P"
    expect_error "depth 101 is outside [0, 100]" \
        "$KSA" task --task passkey "${ok[@]}" --depths 0,101
    expect_error "--depths: 'half' is not a number" \
        "$KSA" task --task passkey "${ok[@]}" --depths 0,half
    expect_error "--depths: '' is not a number" "$KSA" task --task passkey "${ok[@]}" --depths 0,,5
    expect_error "--n 0: the number of examples must be at least 1" \
        "$KSA" task --task passkey --len 300 --n 0 --out "$d/P"
    expect_error "cannot read filler file '$d/missing.txt'" \
        "$KSA" task --task passkey --len 300 --n 3 --filler "$d/missing.txt" --out "$d/P"
    expect_error "filler file '$d' is not a regular file" \
        "$KSA" task --task passkey --len 300 --n 3 --filler "$d" --out "$d/P"
    expect_error "filler file '$d/latin1.txt' is not UTF-8 text (byte offset 2)" \
        "$KSA" task --task passkey --len 300 --n 3 --filler "$d/latin1.txt" --out "$d/P"
    expect_error "vocab_size 200 is too small" \
        "$KSA" task --task passkey "${ok[@]}" --vocab-size 200
    expect_error "--task NAME is required" "$KSA" task --len 300 --n 3 --out "$d/P"
    expect_error "--len L is required" "$KSA" task --task passkey --n 3 --out "$d/P"
    expect_error "no output prefix" "$KSA" task --task passkey --len 300 --n 3
    expect_error "unknown option '--lenght'" "$KSA" task --task passkey --lenght 300 --n 3
    [ "$(ls "$d")" = latin1.txt ]
}

# Existing outputs are refused, each of the four files alone, and kept as they were; with
# --overwrite they are replaced.
existing_outputs_are_kept_unless_overwrite() {
    local d="$TMP/over"
    mkdir -p "$d"
    local args=(task --task passkey --len 150 --n 4 --filler noise --out "$d/P")
    "$KSA" "${args[@]}" --seed 1 >/dev/null
    mkdir "$d/before"
    cp "$d"/P.* "$d/before/"
    expect_error "'$d/P.bin' exists (give --overwrite" "$KSA" "${args[@]}" --seed 2
    for f in P.bin P.jsonl P.bin.meta P.bin.tokenizer; do
        cmp "$d/before/$f" "$d/$f"
    done
    for f in P.jsonl P.bin.meta P.bin.tokenizer; do
        mkdir -p "$d/alone_$f"
        printf 'mine' >"$d/alone_$f/$f"
        expect_error "'$d/alone_$f/$f' exists" \
            "$KSA" task --task passkey --len 150 --n 4 --filler noise --out "$d/alone_$f/P"
        [ "$(ls "$d/alone_$f")" = "$f" ]
        [ "$(cat "$d/alone_$f/$f")" = mine ]
    done
    "$KSA" "${args[@]}" --seed 2 --overwrite >/dev/null
    must_fail cmp -s "$d/before/P.bin" "$d/P.bin"
    must_fail cmp -s "$d/before/P.jsonl" "$d/P.jsonl"
    check_task_files "$d/P" passkey 150 4 0,25,50,75,100
    [ -z "$(ls "$d" | grep '\.tmp$')" ]
}

task_is_listed_and_has_help() {
    "$KSA" --help >"$TMP/commands"
    grep -q "^  task  " "$TMP/commands"
    "$KSA" task --help >"$TMP/help"
    grep -q "^usage: ksa task " "$TMP/help"
    for o in task len n depths seed filler out vocab-size overwrite help; do
        grep -q "^  --$o " "$TMP/help"
    done
}

# ksa eval --task: the JSON accounts for every example (per depth and overall), the text
# table says the same, the examples are those ksa task writes (the first wrong one is shown
# from the same set), and bad options fail naming the problem.
eval_task_reports_accuracy_per_depth() {
    local d="$TMP/evaltask"
    mkdir -p "$d"
    "$KSA" init --config configs/tiny.conf --out "$d/m.h5" >/dev/null
    "$KSA" eval --ckpt "$d/m.h5" --task niah-multikey --len 400 --depths 0,50,100 --n 7 \
        --filler noise --batch 3 --json >"$d/e.json" 2>"$d/e.err"
    "$PY" - "$d/e.json" <<'PYEOF'
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["task"] == "niah-multikey" and r["len"] == 400 and r["n"] == 7, r
assert [b["depth"] for b in r["by_depth"]] == [0, 50, 100], r
assert [b["n"] for b in r["by_depth"]] == [3, 2, 2], r
assert sum(b["correct"] for b in r["by_depth"]) == r["correct"], r
assert r["accuracy"] == r["correct"] / r["n"], r
assert 0 < r["kv_cache_bytes_per_sequence"] < r["causal_cache_bytes_per_sequence"], r
PYEOF
    "$KSA" eval --ckpt "$d/m.h5" --task niah-multikey --len 400 --depths 0,50,100 --n 7 \
        --filler noise >"$d/e.txt"
    grep -Eq "^all +7 +[0-7] +[0-9.]+$" "$d/e.txt"
    grep -Eq "^50 +2 +[0-2] +[0-9.]+$" "$d/e.txt"
    # the same examples as ksa task with the same seed: the first wrong one's answer is
    # not what the untrained model wrote
    "$KSA" task --task niah-multikey --len 400 --depths 0,50,100 --n 7 --seed 1000 \
        --filler noise --out "$d/set" >/dev/null
    "$PY" - "$d/set.jsonl" "$d/e.txt" <<'PYEOF'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
m = re.search(r'first wrong: example (\d+), the model wrote "(.*)"', open(sys.argv[2]).read())
assert m, "no first-wrong line"
ex = json.loads(lines[int(m.group(1))])
assert ex["answer"] != m.group(2), (ex["answer"], m.group(2))
PYEOF
}

eval_task_refuses_bad_options() {
    local d="$TMP/evalbad"
    mkdir -p "$d"
    "$KSA" init --config configs/tiny.conf --out "$d/m.h5" >/dev/null
    expect_error "unknown task 'needle'" "$KSA" eval --ckpt "$d/m.h5" --task needle --len 300
    expect_error "need at least 71 tokens" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 70 --filler noise
    expect_error "--len 9000 exceeds the model's max_position_embeddings 8192" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 9000 --filler noise
    expect_error "depth 120 is outside [0, 100]" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 300 --depths 10,120 --filler noise
    expect_error "--task needs --ckpt and --len" "$KSA" eval --ckpt "$d/m.h5" --task passkey
    expect_error "--data, --seq-len, --offset, --grads-out and --by-position do not apply" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 300 --data x.bin
    expect_error "--len, --depths and --n belong to --task" \
        "$KSA" eval --ckpt "$d/m.h5" --data x.bin --seq-len 8 --len 300
    expect_error "cannot read filler file '$d/none.txt'" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 300 --filler "$d/none.txt"
}

echo "[==========] Running test_task.sh"
for t in task_writes_token_and_jsonl_files_that_agree the_loader_reads_the_token_file \
    same_seed_same_bytes_another_seed_other_examples \
    bad_input_fails_naming_the_problem_and_writes_nothing \
    existing_outputs_are_kept_unless_overwrite task_is_listed_and_has_help \
    eval_task_reports_accuracy_per_depth eval_task_refuses_bad_options; do
    run_test "$t" "$t"
done
finish
