#!/bin/bash
# test_prepare.sh - end-to-end tests of `ksa prepare` through the built binary (run by
# `make test` with BIN set): exit codes, the files written, nothing written on bad input.
# The splitting itself is tested in test_prepare.c. Prints a cmocka-style summary so
# tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"

prepare_writes_train_and_validation_files_with_meta() {
    local d="$TMP/ok"
    mkdir -p "$d"
    printf 'In the beginning God created the heaven and the earth.\n' >"$d/a.txt"
    printf 'Grüße 日本語 🙂\n' >"$d/b.txt"
    local bytes tokens
    bytes=$(( $(stat -c %s "$d/a.txt") + $(stat -c %s "$d/b.txt") ))
    "$KSA" prepare --input "$d/a.txt" "$d/b.txt" --out "$d/P.bin" --val-fraction 0.2 >"$d/out"
    grep -q "2 files, $bytes bytes" "$d/out"
    [ "$(cat "$d/P.bin.meta")" = uint16 ]
    [ "$(cat "$d/P.val.bin.meta")" = uint16 ]
    tokens=$(( ($(stat -c %s "$d/P.bin") + $(stat -c %s "$d/P.val.bin")) / 2 ))
    [ "$tokens" = $((bytes + 2)) ]   # one end-of-text per input file
    [ -z "$(ls "$d" | grep '\.tmp$')" ]
    "$KSA" prepare --input "$d/a.txt" --out "$d/W.bin" --vocab-size 70000 >/dev/null
    [ "$(cat "$d/W.bin.meta")" = uint32 ]
    # the output folder is created
    "$KSA" prepare --input "$d/a.txt" --out "$d/new/sub/N.bin" >/dev/null
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
    bad_command_lines_fail_and_write_nothing the_command_line_is_parsed_like_every_command; do
    run_test "$t" "$t"
done
finish
