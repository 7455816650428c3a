#!/bin/bash
# test_mpi.sh - data-parallel training under mpirun: the same losses on 1, 2 and 4 ranks,
# optimizer memory falling as 1/N, collectives in pieces, errors on any rank ending the
# job. Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
MPIRUN=(timeout 300 mpirun -x OMP_NUM_THREADS -x KSA_TEST_FAULT -x KSA_MPI_MAX_COUNT)
[ -n "${ASAN_OPTIONS:-}" ] && MPIRUN+=(-x ASAN_OPTIONS)
RUN=(--config configs/tiny.conf --seq-len 64 --global-batch 8 --micro-batch 1 --eval-every 0
    --val-data "" --lr-schedule constant --warmup-steps 0)
export KSA_TEST_FAULT="" KSA_MPI_MAX_COUNT=""

# compare.py A B: losses within 1e-5 relative and grad norms within 1e-4 at every step
compare() { "$PY" - "$@" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 0
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (x["step"], x["loss"], y["loss"])
    assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * abs(x["grad_norm"]), (x["step"], x["grad_norm"], y["grad_norm"])
print("agree over", len(a), "steps")
PYEOF
}

losses_agree_on_1_2_and_4_ranks() {
    "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --steps 20 --log "$TMP/r1.jsonl" >"$TMP/r1.out"
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 20 --log "$TMP/r2.jsonl" >"$TMP/r2.out"
    "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --steps 20 --log "$TMP/r4.jsonl" >"$TMP/r4.out"
    compare "$TMP/r1.jsonl" "$TMP/r2.jsonl"
    compare "$TMP/r1.jsonl" "$TMP/r4.jsonl"
    # only rank 0 prints: one progress line per step
    [ "$(grep -c '^step ' "$TMP/r4.out")" = 20 ]
    # optimizer state per rank falls as 1/N
    local b1 b2 b4
    b1=$(sed -n 's/.*moments of \([0-9]*\) of.*/\1/p' "$TMP/r1.out")
    b2=$(sed -n 's/.*moments of \([0-9]*\) of.*/\1/p' "$TMP/r2.out")
    b4=$(sed -n 's/.*moments of \([0-9]*\) of.*/\1/p' "$TMP/r4.out")
    echo "moment elements per rank: $b1 $b2 $b4"
    [ "$b4" -gt 0 ]   # each is a number: an empty one fails here
    [ "$b1" = $((2 * b2)) ]
    [ "$b1" = $((4 * b4)) ]
}

collectives_in_pieces_give_the_same_run() {
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 3 --log "$TMP/p0.jsonl" >/dev/null
    KSA_MPI_MAX_COUNT=1000 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 3 \
        --log "$TMP/p1.jsonl" >/dev/null
    compare "$TMP/p0.jsonl" "$TMP/p1.jsonl"
}

a_rank_count_that_does_not_divide_the_batch_is_refused() {
    if "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --micro-batch 4 --steps 1 \
        >/dev/null 2>"$TMP/err"; then
        echo "expected failure"; return 1
    fi
    grep -q "global_batch = 8 is not a multiple of micro_batch (4) x ranks (4)" "$TMP/err"
}

an_error_on_one_rank_ends_the_job() {
    local t0=$SECONDS
    if KSA_TEST_FAULT=step_error:1:3 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 50 \
        >"$TMP/f.out" 2>"$TMP/f.err"; then
        echo "expected failure"; return 1
    fi
    grep -q "\[rank 1\] ksa train: step 3: fault injected by KSA_TEST_FAULT" "$TMP/f.err"
    must_fail grep -q "^step 3/" "$TMP/f.out"
    [ $((SECONDS - t0)) -lt 60 ]
    if KSA_TEST_FAULT=step_nan:1:2 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 50 \
        >/dev/null 2>"$TMP/n.err"; then
        echo "expected failure"; return 1
    fi
    grep -q "step 2: non-finite gradient" "$TMP/n.err"
}

# A NaN planted in rank 1's moments before step 3's update (KSA_TEST_FAULT=nan_moment): the
# fused finite check of rank 1's slice finds it, the ranks agree before the allgather, and
# both stop at step 3, before its checkpoint. A loss spike on one rank's share makes the
# global loss spike: both ranks skip the same step.
a_nonfinite_update_on_one_rank_stops_every_rank_at_that_step() {
    if KSA_TEST_FAULT=nan_moment:1:3 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 6 \
        --save-every 1 --out "$TMP/nm" >"$TMP/nm.out" 2>"$TMP/nm.err"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/nm.err"
    grep -q "^\[rank 1\] ksa train: step 3: non-finite value after the AdamW update in model\." \
        "$TMP/nm.err"
    grep -q "^\[rank 0\] ksa train: step 3: rank 1 found a parameter or moment that is not finite" \
        "$TMP/nm.err"
    must_fail grep -q "^step 3/" "$TMP/nm.out"
    KSA_TEST_FAULT=loss_spike:1:3 "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 4 \
        --loss-spike-action skip --log "$TMP/sk.jsonl" >/dev/null
    "$PY" - "$TMP/nm" "$TMP/sk.jsonl" <<'PYEOF'
import json, os, sys
names = sorted(os.listdir(sys.argv[1]))
assert names == [".ksa_lock", ".ksa_run", "step_00000001.h5", "step_00000002.h5"], names
rows = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in rows if "skipped" in r] == [3], rows
PYEOF
}

eval_gives_the_same_result_on_several_ranks() {
    "$KSA" init --config configs/tiny.conf --out "$TMP/m.h5" >/dev/null
    local args=(eval --ckpt "$TMP/m.h5" --data build/data/kjv.val.bin --seq-len 128 --json)
    "${MPIRUN[@]}" -np 1 "$KSA" "${args[@]}" --batch 5 --grads-out "$TMP/g1.h5" >"$TMP/e1" 2>/dev/null
    "${MPIRUN[@]}" -np 3 "$KSA" "${args[@]}" --batch 5 --grads-out "$TMP/g3.h5" >"$TMP/e3" 2>/dev/null
    "${MPIRUN[@]}" -np 1 "$KSA" "${args[@]}" >"$TMP/w1" 2>/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" "${args[@]}" >"$TMP/w2" 2>/dev/null
    "$PY" - "$TMP" <<'PYEOF'
import json, sys, h5py, numpy as np
d = sys.argv[1]
for a, b in (("e1", "e3"), ("w1", "w2")):
    x, y = (json.load(open(f"{d}/{n}")) for n in (a, b))
    assert x["tokens"] == y["tokens"] and abs(x["loss"] - y["loss"]) <= 1e-6 * x["loss"], (x, y)
g1, g3 = h5py.File(f"{d}/g1.h5", "r")["grads"], h5py.File(f"{d}/g3.h5", "r")["grads"]
for n in g1:
    m = np.abs(g1[n][()]).max()
    assert np.abs(g1[n][()] - g3[n][()]).max() <= 1e-4 * m + 1e-12, n
print("eval agrees on 1, 2 and 3 ranks")
PYEOF
}

# --by-position on 1 and 2 ranks, whole file and --batch: the same buckets (the sums of the
# ranks reduced: equal to rounding); progress lines come from rank 0 alone (its rows are
# 0, 2, 4, ...: a line after row b says b + 1 rows, so every count is odd).
eval_by_position_is_the_same_on_several_ranks() {
    "$KSA" init --config configs/tiny.conf --out "$TMP/m.h5" >/dev/null
    "$PY" - "$TMP/t.bin" <<'PYEOF'
import sys
import numpy as np
np.random.default_rng(1).integers(0, 257, 9 * 48 + 20).astype("<u2").tofile(sys.argv[1])
open(sys.argv[1] + ".meta", "w").write("uint16")
PYEOF
    local args=(eval --ckpt "$TMP/m.h5" --data "$TMP/t.bin" --seq-len 48 --json --by-position)
    local n
    for n in 1 2; do
        "${MPIRUN[@]}" -np $n "$KSA" "${args[@]}" --progress 1e-9 >"$TMP/w$n" 2>"$TMP/w$n.err"
        "${MPIRUN[@]}" -np $n "$KSA" "${args[@]}" --batch 5 --offset 7 >"$TMP/b$n" 2>/dev/null
    done
    "$PY" - "$TMP" <<'PYEOF'
import json, re, sys
d = sys.argv[1]
for mode, rows in (("w", 9), ("b", 5)):
    one, two = (json.load(open(f"{d}/{mode}{n}")) for n in (1, 2))
    assert [b["targets"] for b in one["by_position"]] == [b["targets"] for b in two["by_position"]]
    assert one["by_position"][-1]["to"] == 48 and len(one["by_position"]) == 7, one
    assert sum(b["targets"] for b in one["by_position"]) == rows * 48 == one["tokens"]
    for x, y in zip([one] + one["by_position"], [two] + two["by_position"]):
        assert abs(x["loss"] - y["loss"]) <= 1e-12 * x["loss"], (mode, x, y)
counts = [int(m) for m in re.findall(r"^ksa eval: rows (\d+)/9 ", open(f"{d}/w2.err").read(), re.M)]
assert counts == [1, 3, 5, 7], counts
print("by position agrees on 1 and 2 ranks")
PYEOF
}

# Validation batches of micro_batch rows go to rank b mod N and the sums are reduced: 1 and 2
# ranks give the same val_loss, for the whole file (10 rows) and for 3 rows spread over it.
# lr = 0 keeps the parameters identical on both, so only the order of the sums may differ.
validation_gives_the_same_loss_on_1_and_2_ranks() {
    "$PY" -c 'import sys, numpy as np
np.fromfile("build/data/kjv.val.bin", "<u2")[: 10 * 32 + 1].tofile(sys.argv[1])
open(sys.argv[1] + ".meta", "w").write("uint16")' "$TMP/v.bin"
    local n rows
    for rows in 3 10; do
        for n in 1 2; do
            "${MPIRUN[@]}" -np $n "$KSA" train "${RUN[@]}" --seq-len 32 --steps 1 --lr 0 \
                --min-lr 0 --val-data "$TMP/v.bin" --eval-batches $rows \
                --log "$TMP/v$rows-$n.jsonl" >/dev/null
        done
    done
    "$PY" - "$TMP" <<'PYEOF'
import json, sys
d = sys.argv[1]
val = {k: json.load(open(f"{d}/v{k}.jsonl"))["val_loss"] for k in ("3-1", "3-2", "10-1", "10-2")}
print(val)
assert abs(val["3-1"] - val["3-2"]) <= 1e-12 * val["3-1"], val
assert abs(val["10-1"] - val["10-2"]) <= 1e-12 * val["10-1"], val
assert val["3-1"] != val["10-1"], val
PYEOF
}

# Checkpoints written by 2 and 4 ranks (each rank its own slice of the moments) hold what
# one rank writes, and any of them resumes on another rank count continuing the same run.
sharded_checkpoints_match_and_resume_on_other_rank_counts() {
    local n
    for n in 1 2 4; do
        "${MPIRUN[@]}" -np $n "$KSA" train "${RUN[@]}" --steps 8 --save-every 4 \
            --out "$TMP/c$n" --log "$TMP/c$n.jsonl" >/dev/null
    done
    "$PY" - "$TMP" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]
ref = h5py.File(f"{d}/c1/step_00000004.h5", "r")
lr = float(ref["train"].attrs["lr"])
for n in (2, 4):
    f = h5py.File(f"{d}/c{n}/step_00000004.h5", "r")
    assert f["train"].attrs["world_size"] == n
    for g in ("optim/exp_avg", "optim/exp_avg_sq", "params"):
        assert sorted(f[g]) == sorted(ref[g]), g
        for k in ref[g]:
            a, b = ref[g][k][()], f[g][k][()]
            m = np.abs(a).max()
            # moments: 1e-4 relative. Parameters: also 1e-4 relative, plus 1 % of lr: Adam
            # divides by sqrt(v), so a gradient that is a sum of cancelling terms (whose
            # rounding differs with the summation order) moves its parameter by a
            # normalised step whose last digits differ (~lr x its relative rounding).
            tol = 1e-4 * m + (0.01 * lr if g == "params" else 0.0)
            assert np.abs(a - b).max() <= tol, (n, g, k, np.abs(a - b).max(), tol)
print("checkpoints of 1, 2 and 4 ranks agree")
PYEOF
    # resume across rank counts: 2 -> 1, 1 -> 4, 4 -> 2 continue the uninterrupted run
    "${MPIRUN[@]}" -np 1 "$KSA" train --resume "$TMP/c2/step_00000004.h5" --out "$TMP/x21" \
        --log "$TMP/x21.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 4 "$KSA" train --resume "$TMP/c1/step_00000004.h5" --out "$TMP/x14" \
        --log "$TMP/x14.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" train --resume "$TMP/c4/step_00000004.h5" --out "$TMP/x42" \
        --log "$TMP/x42.jsonl" >/dev/null
    tail -4 "$TMP/c1.jsonl" >"$TMP/c1.tail"
    compare "$TMP/c1.tail" "$TMP/x21.jsonl"
    compare "$TMP/c1.tail" "$TMP/x14.jsonl"
    compare "$TMP/c1.tail" "$TMP/x42.jsonl"
}

# ckpt_step FILE: the /train step of a checkpoint (and its world_size, as "STEP SIZE")
ckpt_step() { "$PY" -c "import h5py, sys; a = h5py.File(sys.argv[1], 'r')['train'].attrs
print(a['step'], a['world_size'])" "$1"; }

# last_step LOG: the step of the last line of a JSONL log
last_step() { tail -1 "$1" | sed 's/{"step": \([0-9]*\),.*/\1/'; }

# Stopping a run under mpirun (docs/mpi.md): SIGUSR1 to mpirun, which forwards it to every
# rank (its SIGTERM would kill them), or any stop signal to any one rank (the ranks agree on
# the step). The job saves the last step, exits with status 0, and a resume continues it.
a_signal_to_mpirun_or_to_one_rank_saves_and_resumes() {
    local pid mp n rc=0
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 100000 --out "$TMP/stop_usr1" \
        --log "$TMP/stop_usr1.jsonl" >"$TMP/stop_usr1.out" &
    pid=$!
    trap "kill $pid 2>/dev/null || true" EXIT # a failing check must not leave it running
    for _ in $(seq 600); do [ -s "$TMP/stop_usr1.jsonl" ] && break; sleep 0.1; done
    mp=$(pgrep -P $pid -x mpirun) # timeout's child
    kill -USR1 "$mp"
    wait $pid || rc=$?
    [ "$rc" = 0 ] # mpirun's status
    n=$(last_step "$TMP/stop_usr1.jsonl")
    [ "$(ls "$TMP/stop_usr1")" = "step_$(printf %08d "$n").h5" ]
    [ "$(ckpt_step "$TMP/stop_usr1/step_$(printf %08d "$n").h5")" = "$n 2" ]
    "${MPIRUN[@]}" -np 2 "$KSA" train --resume "$TMP/stop_usr1" --steps $((n + 2)) \
        --log "$TMP/stop_usr1.jsonl" >/dev/null
    [ "$(last_step "$TMP/stop_usr1.jsonl")" = $((n + 2)) ]
    # SIGTERM to rank 1 alone (mpirun's second child): both ranks stop at the same step
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 100000 --out "$TMP/stop_rank" \
        --log "$TMP/stop_rank.jsonl" >/dev/null &
    pid=$!
    trap "kill $pid 2>/dev/null || true" EXIT
    for _ in $(seq 600); do [ -s "$TMP/stop_rank.jsonl" ] && break; sleep 0.1; done
    mp=$(pgrep -P $pid -x mpirun)
    kill -TERM "$(pgrep -P "$mp" | tail -1)"
    wait $pid || rc=$?
    [ "$rc" = 0 ]
    n=$(last_step "$TMP/stop_rank.jsonl")
    [ "$(ckpt_step "$TMP/stop_rank/step_$(printf %08d "$n").h5")" = "$n 2" ]
}

# A log that cannot be written (rank 0 writes it) stops every rank at that step, saving
# nothing, with a non-zero status, instead of losing lines.
a_log_that_cannot_be_written_stops_every_rank() {
    if "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 4 --save-every 1 --out "$TMP/log_full" \
        --log /dev/full >/dev/null 2>"$TMP/log_full.err"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/log_full.err"
    grep -q "\[rank 0\] ksa train: step 1: cannot write the log '/dev/full': No space left on device" \
        "$TMP/log_full.err"
    [ -z "$(ls "$TMP/log_full")" ]
}

# A save that cannot fit is not begun, on 2 ranks as on one (test_resume.sh): rank 0 looks,
# every rank stops at that save with status 1, the previous checkpoint is kept, no .tmp.
a_save_that_cannot_fit_is_not_begun_on_two_ranks() {
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/fit_size" >/dev/null
    local size rc=0
    size=$(stat -c %s "$TMP/fit_size/step_00000002.h5")
    small_disk "$TMP/fit_disk" $((size * 102 / 100 + 4194304 + 524288))
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 6 --save-every 2 \
        --out "$TMP/fit_disk/run" >/dev/null 2>"$TMP/fit_disk.err" || rc=$?
    cat "$TMP/fit_disk.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/fit_disk/run/step_00000004.h5: not written: No space left on device (it needs about [0-9.]* MiB, the disk has [0-9.]* MiB free)" \
        "$TMP/fit_disk.err"
    must_fail grep -q "ending without shutting HDF5" "$TMP/fit_disk.err"
    [ "$(ls "$TMP/fit_disk/run")" = step_00000002.h5 ]
    [ -z "$(find "$TMP/fit_disk/run" -name '*.tmp')" ]
    [ "$(ckpt_step "$TMP/fit_disk/run/step_00000002.h5")" = "2 2" ]
}

# A disk that fills during a save, then one full before it (both past the room check, as
# when another program takes the room meanwhile): on 2 ranks as on one (test_resume.sh),
# status 1, the error names the checkpoint and the reason, the previous checkpoint is kept
# and nothing else is left.
a_full_disk_on_two_ranks_keeps_the_previous_checkpoint() {
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/ckpt_size" >/dev/null
    local size rc=0
    size=$(stat -c %s "$TMP/ckpt_size/step_00000002.h5")
    small_disk "$TMP/small_disk" $((2 * size - 1048576))
    KSA_TEST_FAULT=skip_room_check "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 6 --save-every 2 \
        --out "$TMP/small_disk/run" >/dev/null 2>"$TMP/small_disk_fill.err" || rc=$?
    cat "$TMP/small_disk_fill.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/small_disk/run/step_00000004.h5: .*No space left on device" \
        "$TMP/small_disk_fill.err"
    must_fail grep -q "not written: No space" "$TMP/small_disk_fill.err" # past the room check
    must_fail grep -q "ending without shutting HDF5" "$TMP/small_disk_fill.err"
    [ "$(ls "$TMP/small_disk/run")" = step_00000002.h5 ]
    [ "$(ckpt_step "$TMP/small_disk/run/step_00000002.h5")" = "2 2" ]
    # now full before the save: HDF5 cannot close the failed file, the job ends at once
    dd if=/dev/zero of="$TMP/small_disk/filler" bs=64k 2>/dev/null || true
    rc=0
    KSA_TEST_FAULT=skip_room_check "${MPIRUN[@]}" -np 2 "$KSA" train --resume "$TMP/small_disk/run" --steps 4 >/dev/null \
        2>"$TMP/small_disk_full.err" || rc=$?
    cat "$TMP/small_disk_full.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/small_disk/run/step_00000004.h5: .*No space left on device" \
        "$TMP/small_disk_full.err"
    must_fail grep -q "not written: No space" "$TMP/small_disk_full.err" # past the room check
    [ "$(ls "$TMP/small_disk/run")" = step_00000002.h5 ]
}

# An error every rank has (a bad value) is printed once, by rank 0, without a prefix; one
# that only some ranks have (MPMD: rank 1 gets another command line) by those, prefixed.
errors_are_printed_once_or_by_the_ranks_that_have_them() {
    if "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --lr abc >/dev/null 2>"$TMP/all"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/all"
    [ "$(grep -c "lr = 'abc'" "$TMP/all")" = 1 ]
    grep -q "^ksa train: command line: lr = 'abc'" "$TMP/all"
    if "${MPIRUN[@]}" -np 2 "$KSA" inspect --config configs/tiny.conf --hidden-sise 3 \
        >/dev/null 2>"$TMP/inspect"; then
        echo "expected failure"; return 1
    fi
    [ "$(grep -c "hidden-sise" "$TMP/inspect")" = 1 ]
    if "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --dry-run : \
        -np 1 "$KSA" train "${RUN[@]}" --dry-run --lr abc >/dev/null 2>"$TMP/one"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/one"
    [ "$(grep -c "lr = 'abc'" "$TMP/one")" = 1 ]
    grep -q "^\[rank 1\] ksa train: command line: lr = 'abc'" "$TMP/one"
    if "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --dry-run --lr x0 : \
        -np 1 "$KSA" train "${RUN[@]}" --dry-run --lr x1 >/dev/null 2>"$TMP/two"; then
        echo "expected failure"; return 1
    fi
    grep -q "^\[rank 0\] ksa train: command line: lr = 'x0'" "$TMP/two"
    grep -q "^\[rank 1\] ksa train: command line: lr = 'x1'" "$TMP/two"
}

# A rank that fails alone at start-up prints its error, and the job ends at once instead of
# hanging: the ranks agree on every start-up step (tests/test_mpi_faults.sh has the rest).
a_rank_failing_alone_prints_its_error_and_ends_the_job() {
    local t0=$SECONDS
    if "${MPIRUN[@]}" -np 1 "$KSA" train "${RUN[@]}" --steps 100000 : \
        -np 1 "$KSA" train "${RUN[@]}" --steps 100000 --lr abc >/dev/null 2>"$TMP/alone"; then
        echo "expected failure"; return 1
    fi
    cat "$TMP/alone"
    grep -q "^\[rank 1\] ksa train: command line: lr = 'abc'" "$TMP/alone"
    echo "ended after $((SECONDS - t0)) s"
    [ $((SECONDS - t0)) -lt 60 ]
}

# Under mpirun the memory plan is per rank (the moments are this rank's slice), as train's
inspect_plans_memory_per_rank() {
    "${MPIRUN[@]}" -np 1 "$KSA" inspect --config configs/tiny.conf >"$TMP/i1"
    "${MPIRUN[@]}" -np 2 "$KSA" inspect --config configs/tiny.conf >"$TMP/i2"
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --dry-run >"$TMP/t2"
    grep -q "^# memory of one training step per rank (2 ranks; " "$TMP/i2"
    local m1 m2
    m1=$(sed -n 's/.*moments .*per rank: 2 x \([0-9]*\) elements.*/\1/p' "$TMP/i1")
    m2=$(sed -n 's/.*moments .*per rank: 2 x \([0-9]*\) elements.*/\1/p' "$TMP/i2")
    echo "moment elements per rank: $m1 on 1 rank, $m2 on 2"
    [ "$m2" -gt 0 ]
    [ "$m1" = $((2 * m2)) ]
    # what train prints on 2 ranks (its own seq_len 64, micro_batch 1)
    "${MPIRUN[@]}" -np 2 "$KSA" inspect --config configs/tiny.conf --seq-len 64 \
        --micro-batch 1 >"$TMP/i2b"
    sed -n '/^# memory/,/total per rank/p' "$TMP/i2b" >"$TMP/im"
    sed -n '/^# memory/,/total per rank/p' "$TMP/t2" >"$TMP/tm"
    [ "$(wc -l <"$TMP/im")" = 9 ]
    # the same plan, but for the resident memory of the program, measured by each process
    cmp <(grep -v "^  program \|^  total per rank " "$TMP/im") \
        <(grep -v "^  program \|^  total per rank " "$TMP/tm")
}

echo "[==========] Running test_mpi.sh"
for t in losses_agree_on_1_2_and_4_ranks collectives_in_pieces_give_the_same_run \
    a_rank_count_that_does_not_divide_the_batch_is_refused an_error_on_one_rank_ends_the_job \
    eval_gives_the_same_result_on_several_ranks \
    eval_by_position_is_the_same_on_several_ranks \
    validation_gives_the_same_loss_on_1_and_2_ranks \
    sharded_checkpoints_match_and_resume_on_other_rank_counts \
    a_signal_to_mpirun_or_to_one_rank_saves_and_resumes a_log_that_cannot_be_written_stops_every_rank \
    a_save_that_cannot_fit_is_not_begun_on_two_ranks \
    a_full_disk_on_two_ranks_keeps_the_previous_checkpoint \
    errors_are_printed_once_or_by_the_ranks_that_have_them \
    a_rank_failing_alone_prints_its_error_and_ends_the_job inspect_plans_memory_per_rank \
    a_nonfinite_update_on_one_rank_stops_every_rank_at_that_step; do
    run_test "$t" "$t"
done
finish
