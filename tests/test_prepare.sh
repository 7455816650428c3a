#!/bin/bash
# test_prepare.sh - end-to-end tests of `ksa prepare` through the built binary (run by
# `make test` with BIN set): exit codes, the files written, nothing written on bad input.
# The splitting itself is tested in test_prepare.c. Prints a cmocka-style summary so
# tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}

prepare_writes_train_and_validation_files_with_meta() {
    local d="$TMP/ok"
    mkdir -p "$d"
    printf 'In the beginning God created the heaven and the earth.\n' >"$d/a.txt"
    printf 'Grüße 日本語 🙂\n' >"$d/b.txt"
    local bytes tokens
    bytes=$(( $(stat -c %s "$d/a.txt") + $(stat -c %s "$d/b.txt") ))
    # seed 1 (the default) sends the first of two documents to training, the second to
    # validation at val-fraction 0.5
    "$KSA" prepare --input "$d/a.txt" "$d/b.txt" --out "$d/P.bin" --val-fraction 0.5 >"$d/out"
    grep -q "2 files, $bytes bytes" "$d/out"
    [ "$(stat -c %s "$d/P.bin")" = $(( 2 * ($(stat -c %s "$d/a.txt") + 1) )) ]
    [ "$(stat -c %s "$d/P.val.bin")" = $(( 2 * ($(stat -c %s "$d/b.txt") + 1) )) ]
    [ "$(cat "$d/P.bin.meta")" = uint16 ]
    [ "$(cat "$d/P.val.bin.meta")" = uint16 ]
    [ "$(cat "$d/P.bin.tokenizer")" = byte ]     # whose ids: checkpoints record it
    [ "$(cat "$d/P.val.bin.tokenizer")" = byte ]
    tokens=$(( ($(stat -c %s "$d/P.bin") + $(stat -c %s "$d/P.val.bin")) / 2 ))
    [ "$tokens" = $((bytes + 2)) ]   # one end-of-text per input file
    [ -z "$(ls "$d" | grep '\.tmp$')" ]
    "$KSA" prepare --input "$d/a.txt" --out "$d/W.bin" --vocab-size 70000 --val-fraction 0 \
        >/dev/null
    [ "$(cat "$d/W.bin.meta")" = uint32 ]
    # the output folder is created
    "$KSA" prepare --input "$d/a.txt" --out "$d/new/sub/N.bin" --val-fraction 0 >/dev/null
    [ "$(cat "$d/new/sub/N.bin.meta")" = uint16 ]
}

bad_command_lines_fail_and_write_nothing() {
    local d="$TMP/bad"
    mkdir -p "$d"
    printf 'text' >"$d/a.txt"
    expect_error "cannot read input '$d/missing.txt'" \
        "$KSA" prepare --input "$d/a.txt" "$d/missing.txt" --out "$d/P.bin"
    expect_error "unknown option '--val'" \
        "$KSA" prepare --input "$d/a.txt" --out "$d/P.bin" --val 0.1
    expect_error "--val-fraction 1.5 is outside [0, 1)" \
        "$KSA" prepare --input "$d/a.txt" --out "$d/P.bin" --val-fraction 1.5
    expect_error "no input files" "$KSA" prepare --out "$d/P.bin"
    expect_error "no output file" "$KSA" prepare --input "$d/a.txt"
    [ "$(ls "$d")" = a.txt ]
    "$KSA" prepare --help | grep -q "usage: ksa prepare"
}

# 400 documents of distinct text (one of them empty) and 0 to 60 bytes, split at val-fraction 0.2: every
# document lands whole in exactly one file, each file keeps the command-line order, the
# printed counts are those of the files, the same seed gives the same bytes and another
# seed another split.
documents_go_whole_to_one_file_chosen_by_the_seed() {
    local d="$TMP/docs"
    mkdir -p "$d/in"
    "$PY" - "$d/in" <<'PYEOF'
import sys
for i in range(400):
    text = "" if i == 5 else f"document {i}: " + "abcdefghij"[i % 10] * (i * 7 % 47)
    open(f"{sys.argv[1]}/{i:03d}.txt", "w").write(text)
PYEOF
    "$KSA" prepare --input "$d"/in/*.txt --out "$d/A.bin" --val-fraction 0.2 >"$d/A.out"
    "$KSA" prepare --input "$d"/in/*.txt --out "$d/B.bin" --val-fraction 0.2 --seed 1 >/dev/null
    "$KSA" prepare --input "$d"/in/*.txt --out "$d/C.bin" --val-fraction 0.2 --seed 7 >/dev/null
    cmp "$d/A.bin" "$d/B.bin"
    cmp "$d/A.val.bin" "$d/B.val.bin"
    "$PY" - "$d" <<'PYEOF'
import re, sys
import numpy as np
d = sys.argv[1]
docs = [open(f"{d}/in/{i:03d}.txt", "rb").read() for i in range(400)]
index = {doc: i for i, doc in enumerate(docs)}
assert len(index) == 400, "the documents are distinct"
def documents(path):  # the documents of a token file, as indices into docs
    tok = np.fromfile(path, dtype="<u2")
    assert tok[-1] == 256, path
    cut = np.flatnonzero(tok == 256)
    pieces = np.split(tok, cut + 1)[:-1]
    return [index[bytes(p[:-1].astype(np.uint8))] for p in pieces]
split = {}
for name in "AC":
    train, val = documents(f"{d}/{name}.bin"), documents(f"{d}/{name}.val.bin")
    print(name, len(train), "train and", len(val), "validation documents")
    assert train == sorted(train) and val == sorted(val), "command-line order"
    assert not set(train) & set(val), "a document in both files"
    assert sorted(train + val) == list(range(400)), "every document once"
    assert 40 <= len(val) <= 120, len(val)  # binomial(400, 0.2): 80 +- 8
    split[name] = set(val)
assert split["A"] != split["C"], "another seed, another split"
out = open(f"{d}/A.out").read()
m = re.search(r"(\d+) documents?, (\d+) tokens \(train\), .* (\d+) documents?, (\d+) tokens \(validation", out)
assert m, out
n_val = len(split["A"])
tokens = lambda ids: sum(len(docs[i]) + 1 for i in ids)
assert [int(g) for g in m.groups()] == [400 - n_val, tokens(set(range(400)) - split["A"]), n_val, tokens(split["A"])], (m.groups(), out)
PYEOF
}

# With val-fraction > 0 each file needs a whole document: one document, or a seed that sends
# every document to one side, is an error naming the counts, and nothing is written.
too_few_documents_are_refused_and_write_nothing() {
    local d="$TMP/few"
    mkdir -p "$d"
    printf 'In the beginning' >"$d/a.txt"
    printf 'God created' >"$d/b.txt"
    expect_error "puts 0 of the 1 document (0 of 17 tokens) in the validation file and 1 in the training" \
        "$KSA" prepare --input "$d/a.txt" --out "$d/P.bin"
    # seed 2 sends both documents to training at val-fraction 0.5
    expect_error "--seed 2 puts 0 of the 2 documents (0 of 29 tokens)" \
        "$KSA" prepare --input "$d/a.txt" "$d/b.txt" --out "$d/P.bin" --val-fraction 0.5 --seed 2
    [ "$(ls "$d" | tr '\n' ' ')" = "a.txt b.txt " ]
    # without a validation file one document is fine
    "$KSA" prepare --input "$d/a.txt" --out "$d/P.bin" --val-fraction 0 >/dev/null
    [ "$(stat -c %s "$d/P.bin")" = 34 ]
}

# --input may repeat and take several files; --name=value works; bad numbers are refused
the_command_line_is_parsed_like_every_command() {
    local d="$TMP/cl"
    mkdir -p "$d"
    printf 'abc' >"$d/a.txt"
    printf 'defg' >"$d/b.txt"
    printf 'hi' >"$d/c.txt"
    "$KSA" prepare --input="$d/a.txt" "$d/b.txt" --input "$d/c.txt" --out="$d/P.bin" \
        --val-fraction=0 --vocab-size=70000 >"$d/out"
    grep -q "3 files, 9 bytes" "$d/out"
    [ "$(stat -c %s "$d/P.bin")" = $((4 * (9 + 3))) ] # uint32: vocab-size was read
    [ "$(stat -c %s "$d/P.val.bin")" = 0 ]            # val-fraction was read
    expect_error "--vocab-size: '-5' is not a non-negative integer" \
        "$KSA" prepare --input "$d/a.txt" --out "$d/Q.bin" --vocab-size -5
    expect_error "--val-fraction: '1%' is not a number" \
        "$KSA" prepare --input "$d/a.txt" --out "$d/Q.bin" --val-fraction 1%
    expect_error "--input needs at least one value" "$KSA" prepare --input --out "$d/Q.bin"
    expect_error "--out needs a value" "$KSA" prepare --input "$d/a.txt" --out
    [ ! -e "$d/Q.bin" ]
}

echo "[==========] Running test_prepare.sh"
for t in prepare_writes_train_and_validation_files_with_meta \
    bad_command_lines_fail_and_write_nothing documents_go_whole_to_one_file_chosen_by_the_seed \
    too_few_documents_are_refused_and_write_nothing \
    the_command_line_is_parsed_like_every_command; do
    run_test "$t" "$t"
done
finish
