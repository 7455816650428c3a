#!/bin/bash
# test_task.sh - end-to-end tests of `ksa task` through the built binary (run by `make test`
# with BIN set): the token file and the JSONL file agree example by example, the loader reads
# the token file, the same seed gives the same bytes, bad input writes nothing, existing
# outputs are kept unless --overwrite; with --tokenizer (Qwen3's tokenizer.json, installed by
# `make tokenizer-ref`) the examples are checked against the JavaScript reference tokenizer
# (tests/task_bpe_check.js), and `ksa eval --task` scores a BPE model. The examples themselves
# are tested in test_tasks.c.
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
    for o in task len n depths seed filler out tokenizer vocab-size overwrite help; do
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
    expect_error "--data, --seq-len, --offset, --grads-out, --by-position and --context-parallel do not apply" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 300 --data x.bin
    expect_error "--len, --depths and --n belong to --task" \
        "$KSA" eval --ckpt "$d/m.h5" --data x.bin --seq-len 8 --len 300
    expect_error "cannot read filler file '$d/none.txt'" \
        "$KSA" eval --ckpt "$d/m.h5" --task passkey --len 300 --filler "$d/none.txt"
}

# The byte tokenizer's files are what they were before --tokenizer existed (checksums of
# files written then).
byte_task_files_are_unchanged() {
    local d="$TMP/unchanged"
    mkdir -p "$d"
    "$KSA" task --task vartrack --len 777 --n 12 --depths 0,12.5,50,99,100 --seed 42 \
        --out "$d/vt" >/dev/null
    "$KSA" task --task niah-multivalue --len 500 --n 9 --seed 7 --filler noise --out "$d/mv" \
        >/dev/null
    (cd "$d" && sha256sum -c --quiet) <<'EOF'
14704c25532e2ce370b9c74c9f92c849a9eb5610b826e0a178c6d622380e1e20  vt.bin
cd248a1964be9716ba713629b6e530226bbc501f6ce0f56f72eb0544bcb1b331  vt.jsonl
d55ea763ab523670279dcdfcc1668eb8779cf7d3eb9de8b16b3819629f4f2880  mv.bin
32ac8058f706dd9a7054921992c9db83f43d8b3f12e30990e3bcf05f6e7f7870  mv.jsonl
EOF
    [ "$(ls "$d" | tr '\n' ' ')" = "mv.bin mv.bin.meta mv.bin.tokenizer mv.jsonl vt.bin vt.bin.meta vt.bin.tokenizer vt.jsonl " ]
}

# With Qwen3's tokenizer: every example exactly --len ids, spelled as the reference spells its
# prompt and answer, needles where reported, the byte example's content (task_bpe_check.js);
# the files are a BPE token file like ksa prepare --tokenizer's; the same seed the same bytes.
bpe_task_files_hold_exact_examples_the_reference_spells() {
    need_ref
    local d="$TMP/bpe"
    mkdir -p "$d"
    printf 'Grüße aus Köln, 日本語のテキスト, 🙂🙂 ok. naïve café, déjà vu. ' >"$d/utf8.txt"
    local t f
    for t in passkey niah-multikey niah-multivalue vartrack; do
        for f in "$KJV" noise; do
            local args=(--task "$t" --len 300 --n 9 --depths 0,50,100 --seed 3 --filler "$f")
            "$KSA" task "${args[@]}" --tokenizer "$QWEN3" --out "$d/$t.$(basename "$f")" \
                >"$d/$t.out"
            "$KSA" task "${args[@]}" --out "$d/$t.$(basename "$f").byte" >/dev/null
            node tests/task_bpe_check.js "$d/$t.$(basename "$f")" "$t" 300 9 0,50,100 \
                "$d/$t.$(basename "$f").byte"
        done
        grep -q "9 $t examples of 300 tokens .*uint32, tokenizer bpe-[0-9a-f]\{16\}, vocab_size 151669" \
            "$d/$t.out"
    done
    local args=(--task passkey --n 6 --depths 0,25,50,75,100 --seed 11)
    "$KSA" task "${args[@]}" --len 71 --filler "$d/utf8.txt" --tokenizer "$QWEN3" \
        --out "$d/short" >/dev/null
    "$KSA" task "${args[@]}" --len 71 --filler "$d/utf8.txt" --out "$d/short.byte" >/dev/null
    node tests/task_bpe_check.js "$d/short" passkey 71 6 0,25,50,75,100 "$d/short.byte"
    "$KSA" task "${args[@]}" --len 3000 --tokenizer "$QWEN3" --out "$d/long" >/dev/null
    "$KSA" task "${args[@]}" --len 3000 --out "$d/long.byte" >/dev/null
    node tests/task_bpe_check.js "$d/long" passkey 3000 6 0,25,50,75,100 "$d/long.byte"
    # the files: as ksa prepare --tokenizer writes them
    local name
    name=$(cat "$d/long.bin.tokenizer")
    [[ "$name" =~ ^bpe-[0-9a-f]{16}$ ]]
    cmp "$QWEN3" "$d/long.bin.tokenizer.json"
    [ "$(head -1 "$d/long.bin.meta")" = uint32 ]
    grep -qx "tokenizer $name" "$d/long.bin.meta"
    grep -qx "eot_id 151643" "$d/long.bin.meta"
    "$KSA" prepare --tokenizer "$QWEN3" --input "$d/utf8.txt" --out "$d/prep.bin" \
        --val-fraction 0 >/dev/null 2>&1
    cmp "$d/prep.bin.tokenizer" "$d/long.bin.tokenizer"
    # deterministic; --vocab-size above the tokenizer's is kept (uint32 either way)
    "$KSA" task "${args[@]}" --len 3000 --tokenizer "$QWEN3" --out "$d/again" \
        --vocab-size 151680 >/dev/null
    cmp "$d/long.bin" "$d/again.bin"
    cmp "$d/long.jsonl" "$d/again.jsonl"
    grep -qx "vocab_size 151669" "$d/again.bin.meta"
    # the loader takes the file for a model that holds the vocabulary, and refuses a smaller one
    "$KSA" train --config configs/tiny.conf --data "$d/long.bin" --val-data "" --seq-len 3000 \
        --vocab-size 151680 --dry-run >"$d/plan"
    grep -q "# tokenizer of the data: $name" "$d/plan"
    expect_error "the model's vocab_size 257 is smaller than the vocabulary of the tokenizer $name" \
        "$KSA" train --config configs/tiny.conf --data "$d/long.bin" --val-data "" --seq-len 3000 \
        --dry-run
}

bpe_task_refuses_bad_input_and_writes_nothing() {
    need_ref
    local d="$TMP/bpebad"
    mkdir -p "$d/out"
    printf 'cafe\xcc\x81 ' >"$d/nfd.txt" # e + combining acute: NFC makes it one character
    printf '{"model": {"type": "WordPiece"}}' >"$d/wp.json"
    local ok=(--task passkey --len 300 --n 3 --filler noise)
    expect_error "--vocab-size 1000 does not fit the tokenizer '$QWEN3' (bpe-" \
        "$KSA" task "${ok[@]}" --tokenizer "$QWEN3" --vocab-size 1000 --out "$d/out/P"
    expect_error "$d/missing.json" \
        "$KSA" task "${ok[@]}" --tokenizer "$d/missing.json" --out "$d/out/P"
    expect_error "$d/wp.json" "$KSA" task "${ok[@]}" --tokenizer "$d/wp.json" --out "$d/out/P"
    expect_error "its normalization (NFC) changes the filler '$d/nfd.txt'" \
        "$KSA" task --task passkey --len 300 --n 3 --filler "$d/nfd.txt" --tokenizer "$QWEN3" \
        --out "$d/out/P"
    [ -z "$(ls "$d/out")" ]
    # an existing copy of the tokenizer is an existing output too
    printf 'mine' >"$d/out/P.bin.tokenizer.json"
    expect_error "'$d/out/P.bin.tokenizer.json' exists" \
        "$KSA" task "${ok[@]}" --tokenizer "$QWEN3" --out "$d/out/P"
    [ "$(ls "$d/out")" = P.bin.tokenizer.json ]
    "$KSA" task "${ok[@]}" --tokenizer "$QWEN3" --out "$d/out/P" --overwrite >/dev/null
    cmp "$QWEN3" "$d/out/P.bin.tokenizer.json"
}

# ksa eval --task on a model trained on BPE data: the examples are spelled with the tokenizer
# its checkpoint holds (the first wrong one is from ksa task --tokenizer's set of the same
# seed); ids of another tokenizer are refused in one line.
eval_task_on_a_bpe_model_uses_its_tokenizer() {
    need_ref
    local d="$TMP/evalbpe"
    mkdir -p "$d"
    kjv_bpe_data "$d/B.bin" 0
    "$KSA" train --config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 2 \
        --eval-every 0 --val-data "" --steps 2 --data "$d/B.bin" --vocab-size 151680 \
        --out "$d/run" >/dev/null 2>&1
    "$KSA" eval --ckpt "$d/run" --task passkey --len 200 --depths 0,100 --n 4 --filler noise \
        --batch 2 >"$d/e.txt" 2>"$d/e.err"
    grep -Eq "^all +4 +[0-4] +[0-9.]+$" "$d/e.txt"
    grep -q "^# tokenizer bpe-[0-9a-f]\{16\} (vocabulary 151669, end-of-text 151643)" "$d/e.txt"
    "$KSA" eval --ckpt "$d/run" --task niah-multikey --len 300 --n 3 --filler noise --json \
        >"$d/e.json" 2>/dev/null
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["n"]==3 and r["len"]==300, r' \
        "$d/e.json"
    "$KSA" task --task passkey --len 200 --depths 0,100 --n 4 --seed 1000 --filler noise \
        --tokenizer "$QWEN3" --out "$d/set" >/dev/null
    "$PY" - "$d/set.jsonl" "$d/e.txt" <<'PYEOF'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
m = re.search(r'first wrong: example (\d+), the model wrote "(.*)"', open(sys.argv[2]).read())
assert m, "no first-wrong line"
ex = json.loads(lines[int(m.group(1))])
assert ex["answer"] != m.group(2), (ex["answer"], m.group(2))
PYEOF
    # a byte task file for the BPE model, a BPE one for a byte model: refused in one line
    "$KSA" task --task passkey --len 100 --n 3 --filler noise --out "$d/bytes" >/dev/null
    "$KSA" task --task passkey --len 100 --n 3 --filler noise --tokenizer "$QWEN3" \
        --out "$d/bpe" >/dev/null
    expect_error "its model reads ids of the tokenizer 'bpe-" \
        "$KSA" eval --ckpt "$d/run" --data "$d/bytes.bin" --seq-len 99
    [ "$(wc -l <"$TMP/stderr")" = 1 ]
    "$KSA" init --config configs/tiny.conf --out "$d/byte.h5" >/dev/null
    expect_error "not below vocab_size 257" "$KSA" eval --ckpt "$d/byte.h5" --data "$d/bpe.bin" \
        --seq-len 99
    "$KSA" eval --ckpt "$d/run" --data "$d/bpe.bin" --seq-len 99 >"$d/loss.txt"
    grep -q "^loss .* over 297 tokens" "$d/loss.txt"
}

echo "[==========] Running test_task.sh"
for t in task_writes_token_and_jsonl_files_that_agree the_loader_reads_the_token_file \
    same_seed_same_bytes_another_seed_other_examples \
    bad_input_fails_naming_the_problem_and_writes_nothing \
    existing_outputs_are_kept_unless_overwrite task_is_listed_and_has_help \
    eval_task_reports_accuracy_per_depth eval_task_refuses_bad_options \
    byte_task_files_are_unchanged bpe_task_files_hold_exact_examples_the_reference_spells \
    bpe_task_refuses_bad_input_and_writes_nothing eval_task_on_a_bpe_model_uses_its_tokenizer; do
    run_test "$t" "$t"
done
finish
