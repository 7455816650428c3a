#!/bin/bash
# test_train.sh - `ksa train` end to end on the embedded default data (build/data/kjv.bin,
# made by `make`). Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
KSA64="$BIN/ksa64"
PY=${PY:-/usr/bin/python3}

# The issue's bar: configs/tiny.conf, 40 steps at a constant learning rate, the mean loss of
# the last 5 steps at least 0.3 below that of the first 5; the log has the keys.
tiny_config_learns_and_logs_every_step() {
    "$KSA" train --config configs/tiny.conf --steps 40 --lr-schedule constant \
        --warmup-steps 0 --eval-every 20 --eval-batches 8 --log "$TMP/run.jsonl" >"$TMP/train.out"
    grep -q "^step 40/40 | loss" "$TMP/train.out"
    # what step 1 used of the plan: the arena's high-water mark within its reservation, and
    # the gradient pool's live set well below its reservation (dead gradients are freed)
    "$PY" - "$TMP/train.out" <<'PYEOF'
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("# memory used by step")]
assert len(lines) == 1, lines
m = re.search(r"step 1 \(the first of this process\): activations arena ([0-9.]+) of ([0-9.]+) MiB; "
              r"activation grads ([0-9.]+) MiB at most alive, ([0-9.]+) touched of ([0-9.]+) reserved", lines[0])
assert m, lines[0]
used, arena, alive, touched, reserved = map(float, m.groups())
assert 0 < used <= arena, (used, arena)
assert 0 < alive <= touched <= reserved, (alive, touched, reserved)
assert touched < reserved / 2, (touched, reserved)
PYEOF
    "$PY" - "$TMP/run.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert [r["step"] for r in rows] == list(range(1, 41)), "steps are 1..40"
for r in rows:
    for k in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "tokens", "elapsed", "cpu"):
        assert k in r, (k, r)
cpu = [r["cpu"] for r in rows]
assert 0 < cpu[0] and all(a < b for a, b in zip(cpu, cpu[1:])), cpu  # process CPU grows
assert [r["step"] for r in rows if "val_loss" in r] == [20, 40]
assert all(r["lr"] == rows[0]["lr"] for r in rows), "constant learning rate"
assert not [r for r in rows if "loss_high_steps" in r], "the loss-spike guard stayed quiet"
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
    grep -q "^# dry run: the data checks passed" "$TMP/plan"
    must_fail grep -q "^step " "$TMP/plan"
    # the data is checked as a run would check it: missing, too short, ids beyond the vocabulary
    expect_error "nothing-here.bin" "$KSA" train --config configs/tiny.conf --dry-run \
        --data "$TMP/nothing-here.bin"
    expect_error "no-val.bin" "$KSA" train --config configs/tiny.conf --dry-run \
        --val-data "$TMP/no-val.bin"
    head -c 100 build/data/kjv.bin >"$TMP/short.bin"
    cp build/data/kjv.bin.meta "$TMP/short.bin.meta"
    expect_error "short.bin" "$KSA" train --config configs/tiny.conf --dry-run --data "$TMP/short.bin"
    expect_error "not below vocab_size 100" "$KSA" train --config configs/tiny.conf --dry-run \
        --vocab-size 100
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
    expect_error "loss_spike_action = 'halt'" "$KSA" train --config configs/tiny.conf \
        --loss-spike-action halt --dry-run
    expect_error "loss_spike_factor = 0.5 must be 0 (off) or above 1" \
        "$KSA" train --config configs/tiny.conf --loss-spike-factor 0.5 --steps 1
    expect_error "loss_spike_window = 1001 exceeds the supported 1000" \
        "$KSA" train --config configs/tiny.conf --loss-spike-window 1001 --steps 1
}

a_diverging_run_stops_naming_step_and_parameter() {
    expect_error "step 2: non-finite gradient" "$KSA" train --config configs/tiny.conf \
        --steps 3 --lr 1e30 --lr-schedule constant --warmup-steps 0 --val-data ""
}

# A short run of 64-token rows for the divergence tests below.
SHORT=(--config configs/tiny.conf --seq-len 64 --global-batch 4 --micro-batch 2 --val-data ""
    --eval-every 0)

# checkpoints.py DIR STEP...: DIR holds exactly step_STEP.h5 for the steps given (no .tmp
# left), each with /train step = STEP and every parameter and moment finite.
checkpoints() { "$PY" - "$@" <<'PYEOF'
import os, sys, h5py, numpy as np
d, steps = sys.argv[1], [int(s) for s in sys.argv[2:]]
names = sorted(n for n in os.listdir(d) if n.endswith((".h5", ".tmp")))
assert names == [f"step_{s:08d}.h5" for s in steps], names
for s in steps:
    with h5py.File(f"{d}/step_{s:08d}.h5", "r") as f:
        assert f["train"].attrs["step"] == s
        for g in ("params", "optim/exp_avg", "optim/exp_avg_sq"):
            for n, x in f[g].items():
                assert np.isfinite(x[()]).all(), (s, g, n)
print("checkpoints", steps, "complete and finite")
PYEOF
}

# A NaN that reaches a moment (KSA_TEST_FAULT=nan_moment: the first element of the slice's
# exp_avg_sq, before the update of step 3) is caught by the update's fused finite check:
# the run stops naming the step and the parameter, before the checkpoint of step 3, and
# the checkpoints of steps 1 and 2 stay whole.
a_nonfinite_update_stops_before_any_checkpoint_of_its_step() {
    expect_error "step 3: non-finite value after the AdamW update in model.embed_tokens.weight" \
        env KSA_TEST_FAULT=nan_moment:0:3 "$KSA" train "${SHORT[@]}" --steps 5 --save-every 1 \
        --out "$TMP/nan"
    grep -q "model.embed_tokens.weight (element 0): parameter nan" "$TMP/stderr"
    grep -q "exp_avg_sq nan" "$TMP/stderr"
    checkpoints "$TMP/nan" 1 2
    # the same run without the fault goes on past step 3
    "$KSA" train "${SHORT[@]}" --steps 3 --save-every 1 --out "$TMP/fine" >/dev/null
    checkpoints "$TMP/fine" 1 2 3
}

# `--lr 100` diverges at once: step 3's loss is far above 3 x the median of steps 1 and 2.
# The run stops before step 3's update with the loss and the median, saves nothing of it,
# and exits non-zero.
a_learning_rate_of_100_stops_at_the_first_loss_spike() {
    if "$KSA" train "${SHORT[@]}" --lr 100 --steps 20 --save-every 1 --out "$TMP/lr" \
        --log "$TMP/lr.jsonl" >"$TMP/lr.out" 2>"$TMP/lr.err"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/lr.err"
    grep -q "^ksa train: step 3: the loss diverges" "$TMP/lr.err"
    grep -q -- "--loss-spike-factor K" "$TMP/lr.err"
    checkpoints "$TMP/lr" 1 2
    "$PY" - "$TMP/lr.jsonl" "$TMP/lr.err" <<'PYEOF'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == [1, 2], rows
m = re.search(r"the loss diverges: (\S+) is above 3 x (\S+), the median of the last 2 normal", open(sys.argv[2]).read())
loss, median = float(m.group(1)), float(m.group(2))
want = statistics.median(r["loss"] for r in rows)
assert abs(median - want) <= 1e-5 * want, (median, want)
assert loss > 3 * median, (loss, median)
print(f"step 3: loss {loss} > 3 x {median}")
PYEOF
}

# loss_spike_action = skip: a step whose loss spikes (KSA_TEST_FAULT=loss_spike: x100, as a
# bad batch would) keeps no update: parameters, moments and the AdamW count stay, the step
# counter and the data move on, the log says why, and training goes on. A loss that stays
# high for loss_spike_window skipped steps stops the run.
skip_mode_drops_the_spiking_step_and_trains_on() {
    KSA_TEST_FAULT=loss_spike:0:4 "$KSA" train "${SHORT[@]}" --steps 6 --save-every 1 \
        --loss-spike-action skip --out "$TMP/skip" --log "$TMP/skip.jsonl" >"$TMP/skip.out"
    grep -q "^step 4/6 | loss .* | skipped: loss above 3 x median" "$TMP/skip.out"
    "$PY" - "$TMP/skip.jsonl" "$TMP/skip" <<'PYEOF'
import json, statistics, sys, h5py, numpy as np
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
assert [r["step"] for r in rows if "skipped" in r] == [4], rows
r4 = rows[3]
assert r4["loss_high_steps"] == 1
assert r4["loss_median"] == statistics.median(r["loss"] for r in rows[:3])
assert r4["loss"] > 3 * r4["loss_median"]
assert r4["tokens"] == 4 * 4 * 64   # the data moved on
def state(step):
    with h5py.File(f"{sys.argv[2]}/step_{step:08d}.h5", "r") as f:
        t = f["train"].attrs
        arrays = {g + "/" + n: x[()] for g in ("params", "optim/exp_avg", "optim/exp_avg_sq")
                  for n, x in f[g].items()}
        return int(t["step"]), int(t["skipped_steps"]), arrays
s3, k3, a3 = state(3)
s4, k4, a4 = state(4)
s5, k5, a5 = state(5)
assert (s3, s4, s5) == (3, 4, 5) and (k3, k4, k5) == (0, 1, 1), (k3, k4, k5)
assert all(np.array_equal(a3[n], a4[n]) for n in a3), "the skipped step changed nothing"
assert not all(np.array_equal(a4[n], a5[n]) for n in a4), "step 5 trained"
print("step 4 skipped; parameters and moments of steps 3 and 4 identical")
PYEOF
    # a loss that stays high: skipped 3 times (loss_spike_window), then the run stops
    expect_error "step 6: the loss diverges" env KSA_TEST_FAULT=loss_spike:0:3:20 \
        "$KSA" train "${SHORT[@]}" --steps 10 --loss-spike-action skip --loss-spike-window 3 \
        --log "$TMP/stay.jsonl"
    grep -q "skipping the last 3 steps (loss_spike_window) did not bring it down" "$TMP/stderr"
    "$PY" - "$TMP/stay.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows if "skipped" in r] == [3, 4, 5], rows
PYEOF
}

# Annealing (KSA_SPEC §5.5, start 1, end 5): step it uses m = 1 - (it - 1)/4, shown on the
# progress line and in the log; a resumed run continues the schedule from the checkpoint's
# step, with the same losses; eval and sample run a checkpoint with its last step's m.
annealing_follows_the_schedule_across_a_resume() {
    local mix=(--summary-mix-qkv true --summary-mix-start-iter 1 --summary-mix-end-iter 5)
    "$KSA" train "${SHORT[@]}" "${mix[@]}" --steps 6 --save-every 2 --out "$TMP/anneal" \
        --log "$TMP/anneal.jsonl" >"$TMP/anneal.out"
    grep -q "^step 2/6 | .* | summary mix 0.7500" "$TMP/anneal.out"
    "$KSA" train --resume "$TMP/anneal/step_00000002.h5" --out "$TMP/anneal_resumed" --log "$TMP/anneal_resumed.jsonl" >/dev/null
    "$PY" - "$TMP/anneal.jsonl" "$TMP/anneal_resumed.jsonl" <<'PYEOF'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["summary_mix"] for r in a] == [1, 0.75, 0.5, 0.25, 0, 0], a
assert [r["step"] for r in b] == [3, 4, 5, 6], b
assert [r["summary_mix"] for r in b] == [0.5, 0.25, 0, 0], b
assert [r["loss"] for r in b] == [r["loss"] for r in a[2:]], (a, b)
PYEOF
    "$KSA" eval --ckpt "$TMP/anneal/step_00000004.h5" --data build/data/kjv.val.bin --seq-len 64 \
        --batch 2 >"$TMP/anneal_eval.out"
    grep -q "^# summary mix 0.2500 (the annealing coefficient of step 4)" "$TMP/anneal_eval.out"
    # without annealing the log has no such key
    "$KSA" train "${SHORT[@]}" --steps 1 --log "$TMP/anneal_plain.jsonl" >/dev/null
    must_fail grep -q summary_mix "$TMP/anneal_plain.jsonl"
}

# The guard's state (its window, the run of high losses, the skipped steps) goes into every
# checkpoint: resumed after the first high loss (step 4, loss_spike_steps 2) or after the
# skip (step 6), a run prints and skips exactly what the uninterrupted run did.
a_resumed_run_keeps_the_guard_state() {
    export KSA_TEST_FAULT=loss_spike:0:4:5
    local guard=(--loss-spike-steps 2 --loss-spike-action skip)
    "$KSA" train "${SHORT[@]}" "${guard[@]}" --steps 8 --save-every 2 --out "$TMP/a" \
        --log "$TMP/a.jsonl" >/dev/null
    "$KSA" train --resume "$TMP/a/step_00000004.h5" --out "$TMP/b" --log "$TMP/b.jsonl" >/dev/null
    "$KSA" train --resume "$TMP/a/step_00000006.h5" --out "$TMP/c" --log "$TMP/c.jsonl" >/dev/null
    "$PY" - "$TMP/a.jsonl" "$TMP/b.jsonl" "$TMP/c.jsonl" <<'PYEOF'
import json, sys
a, b, c = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["step"] for r in a if "skipped" in r] == [5], a
assert [r["step"] for r in a if "loss_high_steps" in r] == [4, 5], a
keys = ("step", "loss", "grad_norm", "loss_high_steps", "skipped")
row = lambda r: tuple(r.get(k) for k in keys)
assert [row(r) for r in b] == [row(r) for r in a[4:]], ([row(r) for r in b], [row(r) for r in a[4:]])
assert [row(r) for r in c] == [row(r) for r in a[6:]], ([row(r) for r in c], [row(r) for r in a[6:]])
print("resumed at steps 4 and 6: the same losses and the same skip as the uninterrupted run")
PYEOF
    # the guard's keys may change on resume: with stop, the second high loss ends the run
    expect_error "step 5: the loss diverges" "$KSA" train --resume "$TMP/a/step_00000004.h5" \
        --loss-spike-action stop
}

# data = ... in configs/tiny.conf is relative to the file's folder: it works from anywhere
config_paths_resolve_against_the_config_folder() {
    local root=$PWD
    (cd "$TMP" && "$root/$KSA" train --config "$root/configs/tiny.conf" --steps 1 \
        --eval-every 0 --val-data "" >/dev/null)
}

# Idle OpenMP threads spin briefly (GOMP_SPINCOUNT=10000) and then sleep, unless
# OMP_WAIT_POLICY or GOMP_SPINCOUNT says otherwise (src/cli/ksa.c); the plan's first line
# shows the setting in force, and the OpenMP runtime reports the spin count it uses (its
# last OMP_DISPLAY_ENV report: the one after ksa executed itself again).
openmp_threads_spin_briefly_unless_the_user_chose() {
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$KSA" train --config configs/tiny.conf \
        --dry-run >"$TMP/d.out"
    grep -q "^# ksa train (.*, OMP_WAIT_POLICY=(unset), GOMP_SPINCOUNT=10000)" "$TMP/d.out"
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose "$KSA" --help \
        >/dev/null 2>"$TMP/env.err"
    [ "$(grep "GOMP_SPINCOUNT = " "$TMP/env.err" | tail -n 1)" = "  GOMP_SPINCOUNT = '10000'" ]
    env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive "$KSA" train --config configs/tiny.conf \
        --dry-run >"$TMP/p.out"
    grep -q "^# ksa train (.*, OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=(unset))" "$TMP/p.out"
    env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=123 "$KSA" train --config configs/tiny.conf \
        --dry-run >"$TMP/s.out"
    grep -q "^# ksa train (.*, OMP_WAIT_POLICY=(unset), GOMP_SPINCOUNT=123)" "$TMP/s.out"
}

# Validation checks run in float64 (bin/ksa64) from a float32 checkpoint with lr = 0: the
# run keeps exactly the checkpoint's parameters, and the final checkpoint stores them without
# rounding, so its validation loss must equal `ksa64 eval` of that checkpoint to 1e-12.
# The validation file: 10 rows of 32 tokens (+ 5 tokens never targets) of the KJV's.
validation_run() { # validation_run NAME EVAL_BATCHES: $TMP/NAME.out, NAME.jsonl, NAME/
    if [ ! -f "$TMP/m.h5" ]; then
        "$PY" -c 'import sys, numpy as np
np.fromfile("build/data/kjv.val.bin", "<u2")[: 10 * 32 + 1 + 5].tofile(sys.argv[1])
open(sys.argv[1] + ".meta", "w").write("uint16")' "$TMP/v.bin"
        "$KSA" init --config configs/tiny.conf --out "$TMP/m.h5" >/dev/null
    fi
    "$KSA64" train --config configs/tiny.conf --init-from "$TMP/m.h5" --seq-len 32 \
        --global-batch 3 --micro-batch 3 --steps 1 --lr 0 --min-lr 0 --lr-schedule constant \
        --warmup-steps 0 --val-data "$TMP/v.bin" --eval-every 0 --eval-batches "$2" \
        --out "$TMP/$1" --log "$TMP/$1.jsonl" >"$TMP/$1.out"
}

# eval_batches >= the rows of the file: all of them (batches of 3, 3, 3 and 1 rows)
validation_of_a_small_file_is_ksa_eval_over_the_whole_file() {
    validation_run all 12
    grep -q "^# validation: all 10 rows of $TMP/v.bin" "$TMP/all.out"
    "$KSA64" eval --ckpt "$TMP/all/step_00000001.h5" --data "$TMP/v.bin" --seq-len 32 --json \
        >"$TMP/eval.json" 2>/dev/null
    "$PY" - "$TMP/all.jsonl" "$TMP/eval.json" <<'PYEOF'
import json, sys
val = json.loads(open(sys.argv[1]).read().splitlines()[-1])["val_loss"]
ev = json.load(open(sys.argv[2]))
print("val_loss", val, "ksa eval", ev["loss"])
assert ev["tokens"] == 10 * 32, ev
assert abs(val - ev["loss"]) <= 1e-12 * abs(ev["loss"]), (val, ev["loss"])
PYEOF
}

# fewer rows than the file holds: rows floor(i * 10 / 3) = 0, 3, 6, not the first three
validation_of_a_larger_file_reads_rows_spread_over_it() {
    validation_run spread 3
    grep -q "^# validation: 3 of 10 rows of $TMP/v.bin (seq_len 32), spread evenly" \
        "$TMP/spread.out"
    local r
    for r in 0 1 2 3 6; do
        "$KSA64" eval --ckpt "$TMP/spread/step_00000001.h5" --data "$TMP/v.bin" --seq-len 32 \
            --batch 1 --offset $((r * 32)) --json 2>/dev/null
    done >"$TMP/rows.json"
    "$PY" - "$TMP/spread.jsonl" "$TMP/rows.json" <<'PYEOF'
import json, sys
val = json.loads(open(sys.argv[1]).read().splitlines()[-1])["val_loss"]
row = dict(zip((0, 1, 2, 3, 6), (json.loads(l)["loss"] for l in open(sys.argv[2]))))
spread, first = (row[0] + row[3] + row[6]) / 3, (row[0] + row[1] + row[2]) / 3
print("val_loss", val, "rows 0, 3, 6", spread, "rows 0, 1, 2", first)
assert abs(val - spread) <= 1e-12 * spread, (val, spread)
assert abs(val - first) > 1e-9, (val, first)
PYEOF
}

# The MFU peak is cached per CPU model, precision and thread count, kept while plausible,
# measured again when implausibly low or when --remeasure-peak asks.
mfu_peak_is_cached_per_machine_and_remeasured_when_implausible() {
    export XDG_CACHE_HOME="$TMP/cache"
    local t=(train --config configs/tiny.conf --steps 1 --eval-every 0 --val-data "" --threads 2)
    "$KSA" "${t[@]}" >"$TMP/1.out"
    local f
    f=$(ls "$TMP"/cache/ksa/sgemm_peak_*_float32_2threads)
    [ "$(ls "$TMP/cache/ksa" | wc -l)" = 1 ]
    must_fail grep -q unknown-cpu <<<"$f"
    grep -q "^# MFU against .*: measured now, cached in $f\$" "$TMP/1.out"
    # (a second run would keep the figure just measured only if the host's load did not drop
    # meanwhile: a plausible figure is written instead)
    echo 1e9 >"$f"
    "$KSA" "${t[@]}" >"$TMP/2.out"
    grep -q "^# MFU against a peak of 1000000000.0 GFLOP/s .*: cached $(date -r "$f" '+%Y-%m-%d %H:%M:%S') in $f\$" \
        "$TMP/2.out"
    echo 0.001 >"$f"
    "$KSA" "${t[@]}" >"$TMP/3.out"
    grep -q "re-measured: a quick GEMM ran at .* above the cached 0.0" "$TMP/3.out"
    [ "$(cat "$f")" != 0.001 ]
    echo 1e9 >"$f"
    "$KSA" "${t[@]}" --remeasure-peak >"$TMP/5.out"
    grep -q "re-measured (--remeasure-peak; was 1000000000.0)" "$TMP/5.out"
    [ "$(cat "$f")" != 1e9 ]
}

# The peak is that of the GEMM the run configures: its threads and OpenBLAS's kernels
# (OPENBLAS_CORETYPE, else the core OpenBLAS detects) are in the cache key, and a figure
# cached more than a day ago is measured again.
mfu_peak_is_keyed_by_core_type_and_threads_and_remeasured_after_a_day() {
    export XDG_CACHE_HOME="$TMP/keyed_cache" # not the folder of the test above
    local lib core
    lib=$(ldd "$KSA" | awk '/libopenblas/ { print $3 }')
    core=${OPENBLAS_CORETYPE:-$("$PY" -c "import ctypes, sys
blas = ctypes.CDLL(sys.argv[1]); blas.openblas_get_corename.restype = ctypes.c_char_p
print(blas.openblas_get_corename().decode())" "$lib")}
    local t=(train --config configs/tiny.conf --steps 1 --eval-every 0 --val-data "" --threads 1)
    "$KSA" "${t[@]}" >"$TMP/1.out"
    local f
    f=$(ls "$TMP"/keyed_cache/ksa/sgemm_peak_*)
    [ "$(ls "$TMP/keyed_cache/ksa" | wc -l)" = 1 ]
    grep -q "^sgemm_peak_.*_${core}_float32_1threads\$" <<<"$(basename "$f")"
    grep -q "^# MFU against a peak of .* = 1 rank x .* GEMM peak of 1 thread on OpenBLAS core $core (key .*_${core}_float32_1threads): measured now" \
        "$TMP/1.out"
    # 23 hours old: kept (a 1e9 figure is never implausibly low)
    echo 1e9 >"$f"
    touch -d "23 hours ago" "$f"
    "$KSA" "${t[@]}" >"$TMP/2.out"
    grep -q "^# MFU against a peak of 1000000000.0 GFLOP/s .*: cached " "$TMP/2.out"
    [ "$(cat "$f")" = 1e9 ]
    # 25 hours old: measured again, and the file is new
    touch -d "25 hours ago" "$f"
    "$KSA" "${t[@]}" >"$TMP/3.out"
    grep -q "re-measured: the cached 1000000000.0 of .* was more than a day old; cached in $f\$" \
        "$TMP/3.out"
    [ "$(cat "$f")" != 1e9 ]
    [ $(($(date +%s) - $(stat -c %Y "$f"))) -lt 3600 ]
}

# A peak that cannot be cached (a full disk; a read-only home) costs a measurement next time,
# not the run: the MFU line says so, and no partly written file is left to be read back.
a_peak_that_cannot_be_cached_is_said_and_not_kept() {
    export XDG_CACHE_HOME="$TMP/full_cache"
    local t=(train --config configs/tiny.conf --steps 1 --eval-every 0 --val-data "" --threads 1)
    "$KSA" "${t[@]}" >/dev/null
    local f
    f=$(ls "$TMP"/full_cache/ksa/sgemm_peak_*)
    ln -sf /dev/full "$f" # writing it fails as on a full disk
    "$KSA" "${t[@]}" --remeasure-peak >"$TMP/peak_full.out"
    grep -q "^# MFU against .*, cached in $f; but not cached (cannot write $f: No space left on device)\$" \
        "$TMP/peak_full.out"
    [ ! -e "$f" ]
    [ ! -L "$f" ]
}

# A log that cannot be written (here /dev/full, always full) stops the run at the step whose
# line it could not write, naming the file and the reason, with status 1 and no checkpoint
# saved after it (it used to lose the lines and exit 0).
a_log_that_cannot_be_written_stops_the_run() {
    local rc=0
    "$KSA" train --config configs/tiny.conf --seq-len 64 --global-batch 4 --micro-batch 2 \
        --eval-every 0 --val-data "" --steps 4 --save-every 1 --out "$TMP/full_log" \
        --log /dev/full >"$TMP/log_full.out" 2>"$TMP/log_full.err" || rc=$?
    [ "$rc" = 1 ]
    grep -q "^ksa train: step 1: cannot write the log '/dev/full': No space left on device\$" \
        "$TMP/log_full.err"
    grep -q "^step 1/4 " "$TMP/log_full.out"
    must_fail grep -q "^step 2/4 " "$TMP/log_full.out"
    [ -z "$(ls "$TMP/full_log")" ]
}

# A checkpoint records the tokenizer that made its training data (the .tokenizer file ksa
# prepare writes; "unknown" without one), and text is never sampled through another.
the_data_tokenizer_is_recorded_and_sampling_refuses_a_foreign_one() {
    local t=(train --config configs/tiny.conf --steps 1 --eval-every 0 --val-data "")
    [ "$(cat build/data/kjv.bin.tokenizer)" = byte ]
    "$KSA" "${t[@]}" --out "$TMP/byte" >/dev/null
    head -c 20000 build/data/kjv.bin >"$TMP/ids.bin" # the same ids, but nothing says whose
    cp build/data/kjv.bin.meta "$TMP/ids.bin.meta"
    "$KSA" "${t[@]}" --data "$TMP/ids.bin" --out "$TMP/unknown" >/dev/null
    "$PY" - "$TMP/byte/step_00000001.h5" "$TMP/unknown/step_00000001.h5" <<'PYEOF'
import sys, h5py
types = [h5py.File(p, "r")["tokenizer"].attrs["type"] for p in sys.argv[1:]]
assert types == [b"byte", b"unknown"], types
PYEOF
    "$KSA" sample --ckpt "$TMP/byte" --tokens 5 >/dev/null 2>&1
    expect_error "trained on ids of the 'unknown' tokenizer" \
        "$KSA" sample --ckpt "$TMP/unknown" --tokens 5
    expect_error "the model was trained on ids of the 'unknown' tokenizer" \
        "$KSA" "${t[@]}" --data "$TMP/ids.bin" --sample 5
    # a validation file, or a mixture source, made by another tokenizer is refused
    cp build/data/kjv.val.bin "$TMP/gpt2_val.bin"
    cp build/data/kjv.val.bin.meta "$TMP/gpt2_val.bin.meta"
    echo gpt2 >"$TMP/gpt2_val.bin.tokenizer"
    expect_error "the validation file '$TMP/gpt2_val.bin' was made by the gpt2 tokenizer, the training data by byte" \
        "$KSA" "${t[@]}" --val-data "$TMP/gpt2_val.bin" --dry-run
    printf '1 %s\n1 %s\n' "$PWD/build/data/kjv.bin" "$TMP/gpt2_val.bin" >"$TMP/tok_mix.txt"
    expect_error "were made by different tokenizers" \
        "$KSA" "${t[@]}" --data "" --data-mix "$TMP/tok_mix.txt" --dry-run
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

# --recompute: the same run, step for step (losses and gradient norms bit for bit), in a
# smaller arena, as the plan (ksa train's and ksa inspect's) predicts
recompute_trains_identically_in_less_memory() {
    local args=(--config configs/tiny.conf --steps 3 --seq-len 256 --global-batch 4 --micro-batch 2
        --eval-every 0 --val-data "" --lr-schedule constant --warmup-steps 0)
    "$KSA" train "${args[@]}" --log "$TMP/stored.jsonl" >"$TMP/stored.out"
    "$KSA" train "${args[@]}" --recompute --log "$TMP/again.jsonl" >"$TMP/again.out"
    "$KSA" inspect --config configs/tiny.conf --seq-len 256 --micro-batch 2 >"$TMP/plan_stored"
    "$KSA" inspect --config configs/tiny.conf --seq-len 256 --micro-batch 2 --recompute \
        >"$TMP/plan_again"
    grep -q "^recompute = true" "$TMP/again.out"
    "$PY" - "$TMP/stored.jsonl" "$TMP/again.jsonl" "$TMP/stored.out" "$TMP/again.out" \
        "$TMP/plan_stored" "$TMP/plan_again" <<'PYEOF'
import json, re, sys
runs = [[(r["step"], r["loss"], r["grad_norm"]) for r in map(json.loads, open(p))] for p in sys.argv[1:3]]
assert len(runs[0]) == 3, runs
assert runs[0] == runs[1], runs
def used(path):
    text = open(path).read()
    return float(re.search(r"activations arena ([0-9.]+) of", text).group(1))
def touched(path):
    return float(re.search(r"MiB at most alive, ([0-9.]+) touched of", open(path).read()).group(1))
def planned(path):
    return float(re.search(r"activations arena +([0-9.]+) MiB", open(path).read()).group(1))
def planned_grads(path):
    return float(re.search(r"activation grads +([0-9.]+) MiB", open(path).read()).group(1))
assert used(sys.argv[4]) < 0.7 * used(sys.argv[3]), (used(sys.argv[3]), used(sys.argv[4]))
# the plan's sizing run uses what the step uses (the step prints one decimal)
for out in sys.argv[3:5]:
    assert abs(planned(out) - used(out)) <= 0.05, (out, planned(out), used(out))
    assert abs(planned_grads(out) - touched(out)) <= 0.05, (out, planned_grads(out), touched(out))
assert planned(sys.argv[6]) < 0.7 * planned(sys.argv[5]), "inspect's plan"
assert planned(sys.argv[6]) == planned(sys.argv[4]), "inspect plans what train uses"
PYEOF
}

echo "[==========] Running test_train.sh"
for t in tiny_config_learns_and_logs_every_step \
    dry_run_prints_the_plan_and_trains_nothing \
    bad_training_input_is_refused \
    a_diverging_run_stops_naming_step_and_parameter \
    a_nonfinite_update_stops_before_any_checkpoint_of_its_step \
    a_learning_rate_of_100_stops_at_the_first_loss_spike \
    skip_mode_drops_the_spiking_step_and_trains_on \
    a_resumed_run_keeps_the_guard_state \
    annealing_follows_the_schedule_across_a_resume \
    config_paths_resolve_against_the_config_folder \
    openmp_threads_spin_briefly_unless_the_user_chose \
    mfu_peak_is_cached_per_machine_and_remeasured_when_implausible \
    mfu_peak_is_keyed_by_core_type_and_threads_and_remeasured_after_a_day \
    a_peak_that_cannot_be_cached_is_said_and_not_kept a_log_that_cannot_be_written_stops_the_run \
    the_data_tokenizer_is_recorded_and_sampling_refuses_a_foreign_one \
    validation_of_a_small_file_is_ksa_eval_over_the_whole_file \
    validation_of_a_larger_file_reads_rows_spread_over_it \
    an_error_in_a_redirected_log_comes_after_the_plan \
    the_data_file_is_named_once \
    recompute_trains_identically_in_less_memory; do
    run_test "$t" "$t"
done
finish
