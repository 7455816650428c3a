#!/bin/bash
# test_doc_commands.sh - every command of the README and docs/ runs as written
# (tests/doc_commands.py: the ```sh blocks, in a fresh copy of the repository, on a scaled-down
# tiny configuration), and a broken command in a document is reported naming its line.
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
PY=${PY:-/usr/bin/python3}

every_documented_command_runs() {
    "$PY" tests/doc_commands.py >"$TMP/docs.out" 2>&1 || { cat "$TMP/docs.out"; return 1; }
    grep -q "^README.md: 1[0-9] commands ran$" "$TMP/docs.out"
    grep -q "^docs/checkpoints.md: 3 commands ran$" "$TMP/docs.out"
    grep -q "^docs/mpi.md: 6 commands ran$" "$TMP/docs.out"
}

# A document with a failing command: reported as FILE:LINE with the command and its error.
a_broken_command_is_reported() {
    local repo="$TMP/repo"
    mkdir -p "$repo/configs"
    cp configs/tiny.conf "$repo/configs/"
    ln -s "$PWD/bin" "$repo/bin"
    mkdir -p "$repo/build"
    ln -s "$PWD/build/data" "$repo/build/data"
    printf '# x\n\n```sh\nbin/ksa inspect --config configs/tiny.conf\nbin/ksa inspect --config configs/tiny.conf \\\n    --no-such-key 1\n```\n' >"$repo/README.md"
    git -C "$repo" init -q
    git -C "$repo" add README.md configs/tiny.conf
    if "$PY" tests/doc_commands.py --repo "$repo" README.md >"$TMP/out" 2>&1; then
        echo "a failing command went unnoticed"; cat "$TMP/out"; return 1
    fi
    grep -q "^README.md:5: exit 2: bin/ksa inspect --config configs/tiny.conf *--no-such-key 1$" "$TMP/out"
    grep -q "no-such-key" "$TMP/out"
}

echo "[==========] Running test_doc_commands.sh"
for t in every_documented_command_runs a_broken_command_is_reported; do
    run_test "$t" "$t"
done
finish
