#!/bin/bash
# test_plot.sh - scripts/plot_loss.py on small hand-written JSONL logs (run by `make test`):
# a PNG is written, logs without `tokens` fall back to steps, and bad input fails naming the
# file and line. Prints a cmocka-style summary so tests/run_tests.sh counts its tests. If
# /usr/bin/python3 lacks matplotlib (the script's interpreter), the tests that draw are
# skipped and counted as passed, with a note.
. "$(dirname "$0")/shlib.sh"
set -u
PLOT=scripts/plot_loss.py

# expect_png FILE: FILE exists, is not empty and starts with the 8-byte PNG signature.
expect_png() {
    [ -s "$1" ] || { echo "$1 missing or empty"; return 1; }
    local magic
    magic=$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')
    [ "$magic" = 89504e470d0a1a0a ] || { echo "$1 is not a PNG (starts with $magic)"; return 1; }
}

# write_log FILE STEPS [notokens]: a log as `ksa train --log` writes it, val_loss every 5 steps
write_log() {
    local s loss tok
    : >"$1"
    for ((s = 1; s <= $2; s++)); do
        loss=$(awk -v s="$s" 'BEGIN { printf "%.9g", 2.5 + 3 * exp(-s / 8) }')
        tok=", \"tokens\": $((s * 512))"
        [ "${3:-}" = notokens ] && tok=""
        printf '{"step": %d, "loss": %s, "lr": %.9g, "grad_norm": 0.75, "tokens_per_s": 1234.5%s' \
            "$s" "$loss" "0.001" "$tok" >>"$1"
        ((s % 5 == 0)) && printf ', "val_loss": %s' "$loss" >>"$1"
        printf '}\n' >>"$1"
    done
}

plot_writes_a_png_from_a_small_log() {
    write_log "$TMP/run.jsonl" 20
    "$PLOT" "$TMP/run.jsonl" -o "$TMP/loss.png" --title "tiny"
    expect_png "$TMP/loss.png"
}

plot_draws_several_runs_in_one_figure() {
    write_log "$TMP/a.jsonl" 20
    write_log "$TMP/b.jsonl" 12
    "$PLOT" "$TMP/a.jsonl" "$TMP/b.jsonl" -o "$TMP/two.png" >"$TMP/stdout"
    expect_png "$TMP/two.png"
    grep -q "2 run(s), 32 steps" "$TMP/stdout"
}

plot_falls_back_to_steps_without_tokens() {
    write_log "$TMP/old.jsonl" 10 notokens
    "$PLOT" "$TMP/old.jsonl" -o "$TMP/steps.png" 2>"$TMP/stderr"
    expect_png "$TMP/steps.png"
    grep -q "no 'tokens' in old.jsonl; plotting against step" "$TMP/stderr"
}

plot_names_file_and_line_of_a_malformed_line() {
    write_log "$TMP/bad.jsonl" 6
    sed -i '4s/}$//' "$TMP/bad.jsonl"               # line 4 loses its closing brace
    expect_error "bad.jsonl:4: not valid JSON" "$PLOT" "$TMP/bad.jsonl" -o "$TMP/bad.png"
    [ ! -e "$TMP/bad.png" ]
    printf '{"step": 1, "loss": 3.5}\n{"step": 2, "loss": nan}\n' >"$TMP/nan.jsonl"
    expect_error "nan.jsonl:2: not valid JSON" "$PLOT" "$TMP/nan.jsonl" -o "$TMP/bad.png"
    printf '{"step": 1, "loss": 3.5}\n\n{"step": 3, "loss": "x"}\n' >"$TMP/str.jsonl"
    expect_error "str.jsonl:3: 'loss' is \"x\", expected a finite number" \
        "$PLOT" "$TMP/str.jsonl" -o "$TMP/bad.png"
    printf '{"loss": 3.5}\n' >"$TMP/nostep.jsonl"
    expect_error "nostep.jsonl:1: no 'step' key" "$PLOT" "$TMP/nostep.jsonl" -o "$TMP/bad.png"
}

plot_reports_a_missing_file() {
    write_log "$TMP/ok.jsonl" 3
    expect_error "cannot open '$TMP/nope.jsonl'" \
        "$PLOT" "$TMP/ok.jsonl" "$TMP/nope.jsonl" -o "$TMP/x.png"
    [ ! -e "$TMP/x.png" ]
}

# a python3 without matplotlib (-S: no site-packages): one line naming the package and the
# Debian package that installs it, a non-zero exit, no file
plot_without_matplotlib_says_what_to_install() {
    write_log "$TMP/run.jsonl" 3
    /usr/bin/python3 -S -c 'import json, argparse' # the standard library is there
    must_fail /usr/bin/python3 -S -c 'import matplotlib' 2>/dev/null
    expect_error "matplotlib is missing" /usr/bin/python3 -S "$PLOT" "$TMP/run.jsonl" -o "$TMP/x.png"
    grep -q "apt install python3-matplotlib" "$TMP/stderr"
    [ "$(wc -l <"$TMP/stderr")" = 1 ]
    [ ! -e "$TMP/x.png" ]
}

tests=(plot_writes_a_png_from_a_small_log
    plot_draws_several_runs_in_one_figure
    plot_falls_back_to_steps_without_tokens
    plot_names_file_and_line_of_a_malformed_line
    plot_reports_a_missing_file)
echo "[==========] Running test_plot.sh"
run_test plot_without_matplotlib_says_what_to_install plot_without_matplotlib_says_what_to_install
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    echo "note: /usr/bin/python3 has no matplotlib (Debian: python3-matplotlib); skipping" \
        "${#tests[@]} plot tests, counted as passed"
    passed=$((passed + ${#tests[@]}))
else
    for t in "${tests[@]}"; do
        run_test "$t" "$t"
    done
fi
finish
