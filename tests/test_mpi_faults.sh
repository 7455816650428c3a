#!/bin/bash
# test_mpi_faults.sh - one rank fails, the job ends (docs/mpi.md, "One rank fails"): a
# start-up failure on one rank alone, ranks run with different settings, a failure that
# was not agreed, and a rank that stops (the watchdog). Every job runs under `timeout`, so
# a job that hangs fails its test instead of hanging the suite. Prints a cmocka-style
# summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$(cd "$BIN" && pwd)/ksa"
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
export KSA_TEST_FAULT=""
MPIRUN=(timeout 60 mpirun -x OMP_NUM_THREADS -x KSA_TEST_FAULT)
[ -n "${ASAN_OPTIONS:-}" ] && MPIRUN+=(-x ASAN_OPTIONS)
# tiny steps; a fixed MFU peak (no GEMM measured on rank 0 while rank 1 waits)
RUN=(--config "$PWD/configs/tiny.conf" --seq-len 64 --global-batch 8 --micro-batch 1
    --eval-every 0 --val-data "" --lr-schedule constant --warmup-steps 0 --peak-gflops 100)

# Each rank runs in a folder of its own, $TMP/r0 and $TMP/r1; a path under /proc/self/cwd/
# is the same text on both ranks but names each rank's own file, as the same path does on
# two hosts. Rank 0 has a copy of the training data there, rank 1 nothing unless a test
# puts it there.
make_rank_folders() {
    rm -rf "$TMP/r0" "$TMP/r1"
    mkdir -p "$TMP/r0" "$TMP/r1"
    cp build/data/kjv.bin build/data/kjv.bin.meta "$TMP/r0/"
}
HERE=/proc/self/cwd

# on_ranks ARGS...: `ksa train ARGS` on 2 ranks, each in its own folder, each writing its
# pid to $TMP/pid.RANK; stdout to $TMP/job.out, stderr to $TMP/job.err; the exit code is
# the job's.
on_ranks() {
    "${MPIRUN[@]}" -np 2 sh -c 'echo $$ >"$0/pid.$OMPI_COMM_WORLD_RANK"
        cd "$0/r$OMPI_COMM_WORLD_RANK" && exec "$@"' "$TMP" "$KSA" train "$@" \
        >"$TMP/job.out" 2>"$TMP/job.err"
}

# fails_on_ranks ARGS...: on_ranks ARGS must fail; shows its stderr; $TMP/elapsed: the
# seconds it took.
fails_on_ranks() {
    local t0=$SECONDS
    if on_ranks "$@"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/job.err"
    echo $((SECONDS - t0)) >"$TMP/elapsed"
    echo "ended after $(cat "$TMP/elapsed") s"
}

# Each start-up failure on one rank ends the job within seconds: the rank that failed says
# why, the other which rank failed (agreed, not after report.c's wait of 10 s for ranks
# that never come, after which only the failed rank would have spoken).
data_missing_on_one_rank() {
    make_rank_folders
    fails_on_ranks "${RUN[@]}" --data "$HERE/kjv.bin" --steps 5
    grep -qF "[rank 1] ksa train: cannot open token file '$HERE/kjv.bin'" "$TMP/job.err"
    grep -qF "[rank 0] ksa train: rank 1 failed (its message says why)" "$TMP/job.err"
    [ "$(cat "$TMP/elapsed")" -lt 30 ]
}

a_bad_token_file_on_one_rank() {
    make_rank_folders
    "$PY" -c 'import sys, numpy as np
np.full(4000, 300, "<u2").tofile(sys.argv[1])
open(sys.argv[1] + ".meta", "w").write("uint16")' "$TMP/r1/kjv.bin"
    fails_on_ranks "${RUN[@]}" --data "$HERE/kjv.bin" --steps 5 --dry-run
    grep -qF "[rank 1] ksa train: token file '$HERE/kjv.bin': token 0 (byte offset 0) is 300, not below vocab_size 257" "$TMP/job.err"
    grep -qF "[rank 0] ksa train: rank 1 failed (its message says why)" "$TMP/job.err"
    [ "$(cat "$TMP/elapsed")" -lt 30 ]
}

an_unknown_flag_on_one_rank() {
    make_rank_folders
    if "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --steps 5 : \
        -np 1 "$KSA" train "${RUN[@]}" --steps 5 --bogus 1 >/dev/null 2>"$TMP/job.err"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/job.err"
    grep -qF "[rank 1] ksa train: unknown option or configuration key '--bogus'" "$TMP/job.err"
    grep -qF "[rank 0] ksa train: rank 1 failed (its message says why)" "$TMP/job.err"
}

# rank 0 claims the output folders: here it is the one that fails
an_unwritable_out_folder() {
    make_rank_folders
    echo "a file, not a folder" >"$TMP/r0/out"
    fails_on_ranks "${RUN[@]}" --data "$HERE/kjv.bin" --steps 5 --out "$HERE/out"
    grep -qF "[rank 0] ksa train: the checkpoint folder '$HERE/out' is not a folder" "$TMP/job.err"
    grep -qF "[rank 1] ksa train: rank 0 failed (its message says why)" "$TMP/job.err"
    [ "$(cat "$TMP/elapsed")" -lt 30 ]
}

a_checkpoint_to_resume_missing_on_one_rank() {
    make_rank_folders
    (cd "$TMP/r0" && "$KSA" train "${RUN[@]}" --data "$HERE/kjv.bin" --steps 1 \
        --out "$TMP/r0/run" >/dev/null)
    ln -s "$TMP/r0/run/step_00000001.h5" "$TMP/r0/ck.h5"
    fails_on_ranks --resume "$HERE/ck.h5" --steps 3
    grep -qF "[rank 1] ksa train: --resume $HERE/ck.h5: No such file" "$TMP/job.err"
    grep -qF "[rank 0] ksa train: rank 1 failed (its message says why)" "$TMP/job.err"
    [ "$(cat "$TMP/elapsed")" -lt 30 ]
}

a_checkpoint_to_start_from_missing_on_one_rank() {
    make_rank_folders
    "$KSA" init --config configs/tiny.conf --out "$TMP/r0/m.h5" >/dev/null
    fails_on_ranks "${RUN[@]}" --data "$HERE/kjv.bin" --steps 3 --init-from "$HERE/m.h5"
    grep -qF "[rank 1] ksa train: cannot open checkpoint $HERE/m.h5" "$TMP/job.err"
    grep -qF "[rank 0] ksa train: rank 1 failed (its message says why)" "$TMP/job.err"
    [ "$(cat "$TMP/elapsed")" -lt 30 ]
}

# Ranks with different settings stop at start-up naming the first key that differs and
# both values, once (every rank has the same message); threads may differ (a per-host
# choice that changes no result).
ranks_with_different_settings_stop_naming_the_key() {
    local key ours theirs
    for key in "seq-len 64 32" "lr 0.001 0.002" "seed 1 2" "hidden-size 128 64"; do
        read -r key ours theirs <<<"$key"
        if "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --dry-run --"$key" "$ours" : \
            -np 1 "$KSA" train "${RUN[@]}" --dry-run --"$key" "$theirs" \
            >/dev/null 2>"$TMP/job.err"; then
            echo "expected failure for $key"; return 1
        fi
        cat "$TMP/job.err"
        grep -qx "ksa train: the ranks do not run the same configuration: ${key//-/_} = $ours on rank 0, $theirs on rank 1" "$TMP/job.err"
    done
    "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --dry-run : \
        -np 1 "$KSA" train "${RUN[@]}" --dry-run --threads 1 >/dev/null
}

# A failure that was not agreed (as on a path a check missed) ends the job at once: the
# rank prints its message and aborts, instead of leaving the others in a collective.
a_failure_that_was_not_agreed_ends_the_job() {
    if KSA_TEST_FAULT=unagreed_error:1:3 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" \
        --steps 100000 --watchdog-factor 0 >/dev/null 2>"$TMP/job.err"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/job.err"
    grep -qF "[rank 1] ksa train: step 3: fault injected by KSA_TEST_FAULT" "$TMP/job.err"
    grep -qF "[rank 1] ksa train: this rank failed alone" "$TMP/job.err"
    must_fail grep -q "did not reach the end of the command" "$TMP/job.err"
}

# stopped_rank FAULT EXTRA...: a run of many steps on 2 ranks (on_ranks); after rank 0 has
# printed step 2, rank 1 is stopped: by kill -STOP when FAULT is "", else by the fault
# hook KSA_TEST_FAULT=FAULT. Waits for the job, kills rank 1 if it is still there (the
# job's exit code in $TMP/rc, the seconds from the stop to its end in $TMP/after_stop).
stopped_rank() {
    local fault=$1 i pid
    shift
    make_rank_folders
    rm -f "$TMP/job.out" "$TMP/pid.1"
    KSA_TEST_FAULT=$fault on_ranks "${RUN[@]}" --data "$PWD/build/data/kjv.bin" --steps 100000 \
        "$@" &
    local job=$!
    for i in $(seq 600); do
        grep -q "^step *2/" "$TMP/job.out" 2>/dev/null && break
        sleep 0.1
    done
    pid=$(cat "$TMP/pid.1")
    local t0=$SECONDS rc=0
    [ -n "$fault" ] || kill -STOP "$pid"
    wait $job || rc=$?
    echo $((SECONDS - t0)) >"$TMP/after_stop"
    echo $rc >"$TMP/rc"
    kill -KILL "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    for i in $(seq 50); do # a killed process is gone once its parent has reaped it
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$TMP/job.err"
    echo "exit $rc, $(cat "$TMP/after_stop") s after the stop"
}

# kill -STOP of rank 1 anywhere in a step: rank 0 names it, whether rank 1 stopped before
# the collective rank 0 waits in or inside it; the job fails (not by timeout) and leaves
# nothing running.
a_stopped_rank_is_named_by_the_watchdog() {
    stopped_rank "" --watchdog-seconds 2
    grep -qE "^\[rank 0\] ksa train: rank 1 (did not arrive at|stopped inside a collective of) step [0-9]+" "$TMP/job.err"
    [ "$(cat "$TMP/after_stop")" -lt 20 ]
    [ "$(cat "$TMP/rc")" != 0 ]
    [ "$(cat "$TMP/rc")" != 124 ]
    must_fail kill -0 "$(cat "$TMP/pid.1")" 2>/dev/null
}

# With the default watchdog_factor 10: the limit is 10 x the median step, at least 10 s.
a_rank_that_stops_before_a_step_did_not_arrive() {
    stopped_rank stop_at_step:1:3
    grep -q "^\[rank 0\] ksa train: rank 1 did not arrive at step 3 within 10 s (watchdog_factor 10 x the median step of" "$TMP/job.err"
    [ "$(cat "$TMP/after_stop")" -ge 9 ]
    [ "$(cat "$TMP/after_stop")" -lt 30 ]
    [ "$(cat "$TMP/rc")" != 124 ]
    must_fail kill -0 "$(cat "$TMP/pid.1")" 2>/dev/null
}

a_rank_that_stops_inside_a_collective_is_named() {
    stopped_rank stop_in_collective:1:3 --watchdog-seconds 2
    grep -q "^\[rank 0\] ksa train: rank 1 stopped inside a collective of step 3" "$TMP/job.err"
    [ "$(cat "$TMP/after_stop")" -lt 20 ]
    [ "$(cat "$TMP/rc")" != 124 ]
    must_fail kill -0 "$(cat "$TMP/pid.1")" 2>/dev/null
}

# The watchdog keys: not negative; stored in checkpoints like every key; a resume may
# change them.
watchdog_keys_are_checked_stored_and_may_change_on_resume() {
    expect_error "watchdog_factor = -1 and watchdog_seconds = 0 must not be negative" \
        "$KSA" train "${RUN[@]}" --watchdog-factor -1 --dry-run
    "$KSA" train "${RUN[@]}" --steps 1 --watchdog-seconds 600 --out "$TMP/w" >/dev/null
    "$KSA" train --resume "$TMP/w" --steps 2 --watchdog-seconds 300 --watchdog-factor 0 \
        --log "$TMP/w.jsonl" >/dev/null
    "$PY" - "$TMP/w" <<'PYEOF'
import sys, h5py
a = h5py.File(sys.argv[1] + "/step_00000001.h5", "r")["train"].attrs
b = h5py.File(sys.argv[1] + "/step_00000002.h5", "r")["train"].attrs
assert (a["watchdog_factor"], a["watchdog_seconds"]) == (10, 600), dict(a)
assert (b["watchdog_factor"], b["watchdog_seconds"]) == (0, 300), dict(b)
PYEOF
}

echo "[==========] Running test_mpi_faults.sh"
for t in data_missing_on_one_rank a_bad_token_file_on_one_rank an_unknown_flag_on_one_rank \
    an_unwritable_out_folder a_checkpoint_to_resume_missing_on_one_rank \
    a_checkpoint_to_start_from_missing_on_one_rank \
    ranks_with_different_settings_stop_naming_the_key \
    a_failure_that_was_not_agreed_ends_the_job a_stopped_rank_is_named_by_the_watchdog \
    a_rank_that_stops_before_a_step_did_not_arrive \
    a_rank_that_stops_inside_a_collective_is_named \
    watchdog_keys_are_checked_stored_and_may_change_on_resume; do
    run_test "$t" "$t"
done
finish
