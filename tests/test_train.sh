#!/bin/bash
# test_train.sh - `ksa train` end to end on the embedded default data (build/data/kjv.bin,
# made by `make`). Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}

# The issue's bar: configs/tiny.conf, 40 steps at a constant learning rate, the mean loss of
# the last 5 steps at least 0.3 below that of the first 5; the log has the keys.
tiny_config_learns_and_logs_every_step() {
    "$KSA" train --config configs/tiny.conf --steps 40 --lr-schedule constant \
        --warmup-steps 0 --eval-every 20 --eval-batches 8 --log "$TMP/run.jsonl" >"$TMP/train.out"
    grep -q "^step 40/40 | loss" "$TMP/train.out"
    "$PY" - "$TMP/run.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert [r["step"] for r in rows] == list(range(1, 41)), "steps are 1..40"
for r in rows:
    for k in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "tokens"):
        assert k in r, (k, r)
assert [r["step"] for r in rows if "val_loss" in r] == [20, 40]
assert all(r["lr"] == rows[0]["lr"] for r in rows), "constant learning rate"
first = sum(r["loss"] for r in rows[:5]) / 5
last = sum(r["loss"] for r in rows[-5:]) / 5
print(f"mean loss first 5 {first:.4f}, last 5 {last:.4f}")
assert last <= first - 0.3, (first, last)
PYEOF
}

dry_run_prints_the_plan_and_trains_nothing() {
    "$KSA" train --config configs/small.conf --data build/data/kjv.bin --seq-len 8192 \
        --dry-run >"$TMP/plan"
    grep -q "^# parameters: 28453376" "$TMP/plan"
    grep -q "activations arena" "$TMP/plan"
    grep -q "^layer 3: causal bypass" "$TMP/plan"
    must_fail grep -q "^step " "$TMP/plan"
}

bad_training_input_is_refused() {
    printf 'data = a.bin\ndata_mix = mix.txt\n' >"$TMP/both.conf"
    expect_error "give either data (a token file) or data_mix" \
        "$KSA" train --config "$TMP/both.conf" --dry-run
    # the command line's data replaces the file's data_mix (and the other way round)
    "$KSA" train --config "$TMP/both.conf" --data build/data/kjv.bin --dry-run >/dev/null
    printf 'data = nothing-here.bin\n' >"$TMP/t.conf"
    expect_error "nothing-here.bin" "$KSA" train --config "$TMP/t.conf" --steps 1
    expect_error "global_batch = 10 is not a multiple of micro_batch (4)" \
        "$KSA" train --config configs/tiny.conf --global-batch 10 --micro-batch 4 --dry-run
    expect_error "lr_schedule = 'linear'" "$KSA" train --config configs/tiny.conf --lr-schedule linear
    expect_error "unknown option or configuration key '--learning-rate'" \
        "$KSA" train --config configs/tiny.conf --learning-rate 3
}

a_diverging_run_stops_naming_step_and_parameter() {
    expect_error "step 2: non-finite gradient" "$KSA" train --config configs/tiny.conf \
        --steps 3 --lr 1e30 --lr-schedule constant --warmup-steps 0 --val-data ""
}

# data = ... in configs/tiny.conf is relative to the file's folder: it works from anywhere
config_paths_resolve_against_the_config_folder() {
    local root=$PWD
    (cd "$TMP" && "$root/$KSA" train --config "$root/configs/tiny.conf" --steps 1 \
        --eval-every 0 --val-data "" >/dev/null)
}

# stdout and stderr into one file: the error comes after the plan printed before it
an_error_in_a_redirected_log_comes_after_the_plan() {
    if "$KSA" train --config configs/tiny.conf --data "$TMP/missing.bin" --steps 1 \
        >"$TMP/log" 2>&1; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/log"
    local plan_line error_line
    plan_line=$(grep -n "^# model FLOPs per step" "$TMP/log" | cut -d: -f1)
    error_line=$(grep -n "^ksa train: .*missing.bin" "$TMP/log" | cut -d: -f1)
    [ "$plan_line" -gt 1 ]
    [ "$error_line" -gt "$plan_line" ]
}

# the start-up output names the data file once in its data section
the_data_file_is_named_once() {
    "$KSA" train --config configs/tiny.conf --steps 1 --seq-len 32 --eval-every 0 \
        --val-data "" >"$TMP/train_out"
    sed -n '/^data: /,/windows, weight/p' "$TMP/train_out" >"$TMP/data"
    cat "$TMP/data"
    [ "$(grep -o "build/data/kjv.bin" "$TMP/data" | wc -l)" = 1 ]
}

echo "[==========] Running test_train.sh"
for t in tiny_config_learns_and_logs_every_step \
    dry_run_prints_the_plan_and_trains_nothing \
    bad_training_input_is_refused \
    a_diverging_run_stops_naming_step_and_parameter \
    config_paths_resolve_against_the_config_folder \
    an_error_in_a_redirected_log_comes_after_the_plan \
    the_data_file_is_named_once; do
    run_test "$t" "$t"
done
finish
