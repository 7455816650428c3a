#!/bin/bash
# test_resume.sh - training checkpoints end to end: exact resume, the state is really read,
# signals, crashes during a save, keep, contradictions, readers (h5py, h5dump).
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$(cd "$(dirname "$BIN/ksa")" && pwd)/ksa"
PY=${PY:-/usr/bin/python3}
CONF="$PWD/configs/tiny.conf"
# a short, fast run of the demo model
RUN=(--config "$CONF" --seq-len 64 --global-batch 4 --micro-batch 2 --eval-every 0 --val-data "")

# losses (and grad norms) of steps FROM..TO of a JSONL log, one per line
losses() { "$PY" -c "
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    if int(sys.argv[2]) <= r['step'] <= int(sys.argv[3]): print(r['step'], repr(r['loss']), repr(r['grad_norm']))
" "$1" "$2" "$3"; }

# same_state A B: checkpoints A and B hold the same parameters and optimizer moments, bit
# for bit (every dataset of /params and /optim, the same names, none missing).
same_state() { "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = 0
for group in ("params", "optim/exp_avg", "optim/exp_avg_sq"):
    names = sorted(a[group])
    assert names and names == sorted(b[group]), group
    for name in names:
        x, y = a[group][name][()], b[group][name][()]
        assert x.shape == y.shape and x.tobytes() == y.tobytes(), (group, name)
        n += 1
print(n, "datasets identical")
PYEOF
}

resume_continues_the_run_bit_for_bit() {
    "$KSA" train "${RUN[@]}" --steps 8 --save-every 4 --out "$TMP/a" --log "$TMP/a.jsonl" >/dev/null
    [ -f "$TMP/a/step_00000004.h5" ]
    [ -f "$TMP/a/step_00000008.h5" ]
    # from another folder: the data paths in the checkpoint are absolute
    (cd / && "$KSA" train --resume "$TMP/a/step_00000004.h5" --out "$TMP/b" \
        --log "$TMP/b.jsonl" >/dev/null)
    [ "$(head -c 11 "$TMP/b.jsonl")" = '{"step": 5,' ]   # the resumed log starts at N+1
    diff <(losses "$TMP/a.jsonl" 5 8) <(losses "$TMP/b.jsonl" 5 8)
    same_state "$TMP/a/step_00000008.h5" "$TMP/b/step_00000008.h5"
}

# recompute changes the memory, not the maths: a run resumed with it continues bit for bit
recompute_may_be_switched_on_resume_and_changes_nothing() {
    "$KSA" train "${RUN[@]}" --steps 6 --save-every 3 --out "$TMP/rc" --log "$TMP/rc.jsonl" >/dev/null
    "$KSA" train --resume "$TMP/rc/step_00000003.h5" --recompute --out "$TMP/rc2" \
        --log "$TMP/rc2.jsonl" >"$TMP/rc2.out"
    grep -q "^recompute = true" "$TMP/rc2.out"
    [ "$(losses "$TMP/rc2.jsonl" 4 6 | wc -l)" = 3 ]
    diff <(losses "$TMP/rc.jsonl" 4 6) <(losses "$TMP/rc2.jsonl" 4 6)
    same_state "$TMP/rc/step_00000006.h5" "$TMP/rc2/step_00000006.h5"
}

# inspect names what --resume would refuse: damaged /train values, missing data
inspect_flags_what_resume_would_refuse() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/ir" >/dev/null
    "$KSA" inspect "$TMP/ir/step_00000002.h5" >"$TMP/ir.ok"
    must_fail grep -q "PROBLEM" "$TMP/ir.ok"
    local change want
    for change in "step=-3:attribute step is '-3'" "step=abc:attribute step is 'abc'" \
        "lr=nan:lr = 'nan' is not a finite number" "seq_len=0:must be at least 1" \
        "data=/nonexistent.bin:data file '/nonexistent.bin' does not exist"; do
        want=${change#*:}
        mkdir -p "$TMP/ir2"
        cp "$TMP/ir/step_00000002.h5" "$TMP/ir2/bad.h5"
        "$PY" - "$TMP/ir2/bad.h5" "${change%%:*}" <<'PYEOF'
import sys, h5py, numpy as np
key, value = sys.argv[2].split("=")
with h5py.File(sys.argv[1], "r+") as f:
    a = f["train"].attrs
    del a[key]
    a[key] = np.float64("nan") if value == "nan" else np.int64(value) if value.lstrip("-").isdigit() else value
PYEOF
        expect_error "$want" "$KSA" inspect "$TMP/ir2/bad.h5"
        grep -qF "PROBLEM: " "$TMP/stdout"
        must_fail "$KSA" train --resume "$TMP/ir2/bad.h5" --steps 3 --out "$TMP/ir3"
    done
}

resume_reads_the_optimizer_state() {
    "$KSA" train "${RUN[@]}" --steps 6 --save-every 3 --out "$TMP/c" --log "$TMP/c.jsonl" >/dev/null
    mkdir -p "$TMP/d"
    cp "$TMP/c/step_00000003.h5" "$TMP/d/"
    "$PY" - "$TMP/d/step_00000003.h5" <<'PYEOF'
import sys, h5py
sys.path.insert(0, "scripts")
import ckpt_checksum
with h5py.File(sys.argv[1], "r+") as f:
    for name in f["optim/exp_avg"]:
        f["optim/exp_avg"][name][...] *= -3.0   # perturbed first moments
        ckpt_checksum.update(f["optim/exp_avg"][name])
PYEOF
    "$KSA" train --resume "$TMP/d" --out "$TMP/d2" --log "$TMP/d.jsonl" >/dev/null
    losses "$TMP/c.jsonl" 5 6 >"$TMP/c.losses"
    losses "$TMP/d.jsonl" 5 6 >"$TMP/d.losses"
    [ "$(wc -l <"$TMP/d.losses")" = 2 ]
    must_fail cmp -s "$TMP/c.losses" "$TMP/d.losses"
}

checkpoints_are_readable_by_h5py_and_h5dump() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/e" >/dev/null
    local f="$TMP/e/step_00000002.h5"
    h5dump -H "$f" >/dev/null
    h5dump -A -g /train "$f" | grep -q 'ATTRIBUTE "step"'
    "$PY" - "$f" "$PWD" <<'PYEOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == b"ksa-checkpoint" and f.attrs["format_version"] == 2
cfg, train, optim = f["config"].attrs, f["train"].attrs, f["optim"].attrs
assert cfg["hidden_size"] == 128 and cfg["summary_layer_freq"] == b"([1]*3+[0]*1)"
assert train["step"] == 2 and train["tokens_seen"] == 2 * 4 * 64 and train["world_size"] == 1
assert train["seq_len"] == 64 and train["lr_schedule"] == b"wsd"
assert train["data"].startswith(b"/") and train["data"].endswith(b"build/data/kjv.bin")
assert optim["type"] == b"adamw" and abs(optim["beta2"] - 0.95) < 1e-12
names = sorted(f["params"])
assert names == sorted(f["optim/exp_avg"]) == sorted(f["optim/exp_avg_sq"])
for n in names:
    p, m, v = f["params"][n], f["optim/exp_avg"][n], f["optim/exp_avg_sq"][n]
    assert p.dtype == np.float32 and p.shape == m.shape == v.shape, n
    assert np.all(v[()] >= 0), n
    # two steps were taken: the moments are real (the last summary layer's summary queries
    # feed nothing that is read later: their gradient, hence their moments, are exactly 0)
    assert np.any(m[()] != 0) or "2.self_attn.q_proj_summary" in n, n
print(len(names), "parameters with their moments")
PYEOF
}

sigterm_finishes_the_step_and_saves() {
    "$KSA" train "${RUN[@]}" --steps 100000 --out "$TMP/f" --log "$TMP/f.jsonl" >"$TMP/f.out" &
    local pid=$!
    trap "kill $pid 2>/dev/null || true" EXIT # a failing check must not leave it running
    for _ in $(seq 100); do [ -s "$TMP/f.jsonl" ] && break; sleep 0.1; done
    kill -TERM $pid
    wait $pid
    grep -q "resume with: ksa train --resume $TMP/f" "$TMP/f.out"
    local n
    n=$(ls "$TMP/f" | sed -n 's/^step_0*\([0-9]*\)\.h5$/\1/p')
    [ "$n" = "$(tail -1 "$TMP/f.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/')" ]   # the last step logged
    # (a shorter run: its decay may move)
    "$KSA" train --resume "$TMP/f" --steps $((n + 1)) --allow-schedule-change --out "$TMP/f" >/dev/null
}

# ckpt_step FILE: the /train step of a checkpoint
ckpt_step() { "$PY" -c "import h5py, sys; print(h5py.File(sys.argv[1], 'r')['train'].attrs['step'])" "$1"; }

# SIGHUP (the terminal went away) and SIGUSR1 (what mpirun forwards: docs/mpi.md) stop a
# run as SIGTERM does: the step finishes, is saved, and the run exits with status 0.
sighup_and_sigusr1_stop_and_save_like_sigterm() {
    local sig pid n rc
    for sig in HUP USR1; do
        "$KSA" train "${RUN[@]}" --steps 100000 --out "$TMP/stop_$sig" \
            --log "$TMP/stop_$sig.jsonl" >/dev/null &
        pid=$!
        trap "kill $pid 2>/dev/null || true" EXIT # a failing check must not leave it running
        for _ in $(seq 300); do [ -s "$TMP/stop_$sig.jsonl" ] && break; sleep 0.1; done
        kill -$sig $pid
        rc=0
        wait $pid || rc=$?
        [ "$rc" = 0 ]
        n=$(tail -1 "$TMP/stop_$sig.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/')
        [ "$(ckpt_step "$TMP/stop_$sig/step_$(printf %08d "$n").h5")" = "$n" ] # the last logged
    done
}

# A save that cannot fit the free space is not begun: the run stops with status 1 at that
# save, the message says how much it needs and how much there is, the previous checkpoint
# is intact and no .tmp is left; the run resumes from it.
a_save_that_cannot_fit_is_not_begun() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/fit_size" >/dev/null
    local size rc=0
    size=$(stat -c %s "$TMP/fit_size/step_00000002.h5")
    # room for the first save's estimate (size + 2 % + 4 MiB), not for a second one beside it
    small_disk "$TMP/fit_disk" $((size * 102 / 100 + 4194304 + 524288))
    "$KSA" train "${RUN[@]}" --steps 6 --save-every 2 --out "$TMP/fit_disk/run" \
        --log "$TMP/fit_disk.jsonl" >/dev/null 2>"$TMP/fit_disk.err" || rc=$?
    cat "$TMP/fit_disk.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/fit_disk/run/step_00000004.h5: not written: No space left on device (it needs about [0-9.]* MiB, the disk has [0-9.]* MiB free); the previous checkpoints are kept" \
        "$TMP/fit_disk.err"
    must_fail grep -q "ending without shutting HDF5" "$TMP/fit_disk.err"
    [ "$(ls "$TMP/fit_disk/run")" = step_00000002.h5 ]
    [ -z "$(find "$TMP/fit_disk/run" -name '*.tmp')" ] # no .tmp
    [ "$(tail -1 "$TMP/fit_disk.jsonl" | head -c 11)" = '{"step": 4,' ]
    same_state "$TMP/fit_size/step_00000002.h5" "$TMP/fit_disk/run/step_00000002.h5"
    "$KSA" train --resume "$TMP/fit_disk/run" --out "$TMP/fit_disk_resumed" --steps 3 \
        >"$TMP/fit_disk_resumed.out"
    grep -q "resumed from $TMP/fit_disk/run/step_00000002.h5 after step 2" \
        "$TMP/fit_disk_resumed.out"
}

# A disk that fills during a save (KSA_TEST_FAULT=skip_room_check begins it anyway, as when
# another program takes the room meanwhile): the save fails naming the checkpoint and the
# reason, the run exits with status 1 (HDF5 used to crash at exit: a close that failed for
# lack of room left it a freed file), the previous checkpoint is intact and no .tmp is left.
# The failed .tmp is emptied before it is closed, so HDF5 closes it and shuts down normally.
a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/ckpt_size" >/dev/null
    local size rc=0
    size=$(stat -c %s "$TMP/ckpt_size/step_00000002.h5")
    # room for one checkpoint and most of a second: the second's data does not fit
    small_disk "$TMP/small_disk" $((2 * size - 1048576))
    KSA_TEST_FAULT=skip_room_check "$KSA" train "${RUN[@]}" --steps 6 --save-every 2 \
        --out "$TMP/small_disk/run" --log "$TMP/small_disk_fill.jsonl" >/dev/null \
        2>"$TMP/small_disk_fill.err" || rc=$?
    cat "$TMP/small_disk_fill.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/small_disk/run/step_00000004.h5: .*No space left on device" \
        "$TMP/small_disk_fill.err"
    must_fail grep -q "not written: No space" "$TMP/small_disk_fill.err" # past the room check
    must_fail grep -q "ending without shutting HDF5" "$TMP/small_disk_fill.err" # it closed
    [ "$(ls "$TMP/small_disk/run")" = step_00000002.h5 ] # no step 4, no .tmp
    [ "$(tail -1 "$TMP/small_disk_fill.jsonl" | head -c 11)" = '{"step": 4,' ] # none after
    same_state "$TMP/ckpt_size/step_00000002.h5" "$TMP/small_disk/run/step_00000002.h5"
    "$KSA" train --resume "$TMP/small_disk/run" --out "$TMP/small_disk_resumed" --steps 3 \
        >"$TMP/small_disk_resumed.out"
    grep -q "resumed from $TMP/small_disk/run/step_00000002.h5 after step 2" \
        "$TMP/small_disk_resumed.out"
}

# A disk already full when a save begins (past the room check, as above): HDF5 cannot even
# close the failed file (there is nothing of it to empty), which leaves HDF5 1.10 unable to
# shut down without crashing; the run reports the error and ends at once with status 1,
# without shutting HDF5 down.
a_disk_full_before_a_save_ends_the_run_cleanly() {
    small_disk "$TMP/full_disk" 20m
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/full_disk/run" >/dev/null
    dd if=/dev/zero of="$TMP/full_disk/filler" bs=64k 2>/dev/null || true # until the disk is full
    local rc=0
    KSA_TEST_FAULT=skip_room_check "$KSA" train --resume "$TMP/full_disk/run" --steps 4 \
        >/dev/null 2>"$TMP/full_disk.err" || rc=$?
    cat "$TMP/full_disk.err"
    [ "$rc" = 1 ]
    grep -q "checkpoint $TMP/full_disk/run/step_00000004.h5: .*No space left on device" \
        "$TMP/full_disk.err"
    must_fail grep -q "not written: No space" "$TMP/full_disk.err" # past the room check
    [ "$(ls "$TMP/full_disk/run")" = step_00000002.h5 ]
    [ "$(ckpt_step "$TMP/full_disk/run/step_00000002.h5")" = 2 ]
}

a_crash_during_a_save_leaves_the_previous_checkpoint() {
    if KSA_TEST_FAULT=kill_before_rename:step_00000004 "$KSA" train "${RUN[@]}" --steps 6 \
        --save-every 2 --out "$TMP/g" >/dev/null 2>&1; then
        echo "the run should have been killed"; return 1
    fi
    [ -f "$TMP/g/step_00000002.h5" ]
    [ ! -f "$TMP/g/step_00000004.h5" ]
    [ -f "$TMP/g/step_00000004.h5.tmp" ]      # the interrupted save, never renamed
    "$KSA" train --resume "$TMP/g" --out "$TMP/g" >"$TMP/g.out"   # picks step 2, ignores .tmp
    grep -q "resumed from $TMP/g/step_00000002.h5 after step 2" "$TMP/g.out"
}

keep_removes_only_older_checkpoints() {
    "$KSA" train "${RUN[@]}" --steps 5 --save-every 1 --keep 2 --out "$TMP/h" >/dev/null
    [ "$(ls "$TMP/h" | tr '\n' ' ')" = "step_00000004.h5 step_00000005.h5 " ]
}

contradicting_resumes_are_refused_and_touch_nothing() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/i" >/dev/null
    local sum
    sum=$(md5sum "$TMP/i/step_00000002.h5")
    expect_error "training key 'lr' differs" "$KSA" train --resume "$TMP/i" --steps 4 --lr 1
    expect_error "model key 'hidden_size' differs" "$KSA" train --resume "$TMP/i" --steps 4 --hidden-size 64
    expect_error "drop --config" "$KSA" train --resume "$TMP/i" --config "$CONF"
    expect_error "steps = 2 leaves nothing to do" "$KSA" train --resume "$TMP/i"
    expect_error "holds no step_*.h5" "$KSA" train --resume "$TMP"
    expect_error "no /train group" "$KSA" train --resume tests/refs/causal_plain.h5 --steps 3
    head -c 100000 "$TMP/i/step_00000002.h5" >"$TMP/trunc.h5"
    expect_error "trunc.h5" "$KSA" train --resume "$TMP/trunc.h5" --steps 3
    [ "$(md5sum "$TMP/i/step_00000002.h5")" = "$sum" ]
}

fine_tuning_starts_from_a_checkpoints_parameters() {
    "$KSA" train "${RUN[@]}" --steps 6 --lr-schedule constant --warmup-steps 0 --out "$TMP/j" \
        --log "$TMP/j0.jsonl" >/dev/null
    # fresh optimizer and schedule, another learning rate: the log starts again at step 1
    "$KSA" train "${RUN[@]}" --init-from "$TMP/j/step_00000006.h5" --lr 1e-4 --min-lr 1e-5 --steps 2 \
        --log "$TMP/j1.jsonl" --out "$TMP/j1" >"$TMP/j1.out"
    grep -q "^init-from .*: [0-9]* loaded, 0 created, 0 kept, 0 ignored$" "$TMP/j1.out"
    [ "$(head -c 11 "$TMP/j1.jsonl")" = '{"step": 1,' ]
    "$PY" - "$TMP/j0.jsonl" "$TMP/j1.jsonl" <<'PYEOF'
import json, sys
base = [json.loads(l) for l in open(sys.argv[1])]
tuned = [json.loads(l) for l in open(sys.argv[2])]
# the fine-tuned run starts where the first one ended, far below a fresh model's loss
assert tuned[0]["loss"] < base[0]["loss"] - 0.3, (base[0]["loss"], tuned[0]["loss"])
assert tuned[0]["lr"] == 0.0 and base[-1]["lr"] == 3e-3   # its own warmup from 0
PYEOF
    # its own data order: a data_seed derived from its parent's run id, the same every time
    "$KSA" train "${RUN[@]}" --init-from "$TMP/j/step_00000006.h5" --steps 1 --out "$TMP/j2" >/dev/null
    "$KSA" train "${RUN[@]}" --init-from "$TMP/j/step_00000006.h5" --steps 1 --data-seed 7 \
        --out "$TMP/j3" >/dev/null
    "$PY" - "$TMP/j/step_00000006.h5" "$TMP/j1/step_00000002.h5" "$TMP/j2/step_00000001.h5" \
        "$TMP/j3/step_00000001.h5" <<'PYEOF'
import sys, h5py
parent, a, b, c = (h5py.File(p, "r")["train"].attrs for p in sys.argv[1:])
assert parent["data_seed"] == parent["seed"] == 42, parent["data_seed"]
assert a["data_seed"] != 42 and a["data_seed"] == b["data_seed"], (a["data_seed"], b["data_seed"])
assert a["run_id"] != parent["run_id"] and a["run_id"] != b["run_id"]
assert c["data_seed"] == 7
PYEOF
    expect_error "the checkpoint has [257, 128], the configuration needs [257, 64]" \
        "$KSA" train "${RUN[@]}" --init-from "$TMP/j/step_00000006.h5" --hidden-size 64 --steps 1
    expect_error "give one of them" \
        "$KSA" train --init-from "$TMP/j/step_00000006.h5" --resume "$TMP/j" --steps 9
}

# A run holds its folder: a second run, or a resume of it, is refused naming the holder's pid;
# once the run ends (here by SIGTERM, which saves) the folder is free again.
a_running_run_holds_its_folder() {
    "$KSA" train "${RUN[@]}" --steps 100000 --out "$TMP/k" --log "$TMP/k.jsonl" >/dev/null &
    local pid=$!
    trap "kill $pid 2>/dev/null || true" EXIT # a failing check must not leave it running
    for _ in $(seq 300); do [ -s "$TMP/k.jsonl" ] && break; sleep 0.1; done
    expect_error "the checkpoint folder '$TMP/k' is in use by another run (pid $pid)" \
        "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/k"
    must_fail grep -q "^step " "$TMP/stdout"
    expect_error "is in use by another run (pid $pid)" "$KSA" train --resume "$TMP/k" --steps 5
    kill -TERM $pid
    wait $pid
    local n
    n=$(ls "$TMP/k" | sed -n 's/^step_0*\([0-9]*\)\.h5$/\1/p')
    "$KSA" train --resume "$TMP/k" --steps $((n + 1)) --allow-schedule-change >"$TMP/k.out"
    grep -q "resumed from $TMP/k/step_" "$TMP/k.out"
}

# Where a run writes is checked before step 1: a log or checkpoint folder that cannot be
# created fails at once; missing log folders are created.
output_locations_are_checked_before_step_1() {
    printf 'a file\n' >"$TMP/plain"
    expect_error "the log folder '$TMP/plain' is not a folder" \
        "$KSA" train "${RUN[@]}" --steps 2 --log "$TMP/plain/run.jsonl"
    must_fail grep -q "^step " "$TMP/stdout"
    expect_error "cannot create the checkpoint folder '$TMP/plain/ck'" \
        "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/plain/ck"
    must_fail grep -q "^step " "$TMP/stdout"
    "$KSA" train "${RUN[@]}" --steps 1 --log "$TMP/new/deep/run.jsonl" >/dev/null
    [ "$(wc -l <"$TMP/new/deep/run.jsonl")" = 1 ]
}

# A resume into its own folder named relatively (the checkpoint stores it absolute) is one
# folder, not a second run holding it.
a_relative_resume_into_its_own_folder_works() {
    cd "$TMP"
    "$KSA" train "${RUN[@]}" --steps 2 --out rel >/dev/null
    "$KSA" train --resume rel --steps 3 >"$TMP/rel.out"
    grep -q "resumed from rel/step_00000002.h5 after step 2" "$TMP/rel.out"
    [ -f rel/step_00000003.h5 ]
}

# run_id FILE: the /train run_id of a checkpoint
run_id() { "$PY" -c "import h5py, sys; print(h5py.File(sys.argv[1], 'r')['train'].attrs['run_id'].decode())" "$1"; }

# A folder belongs to one run: a new run refuses a folder holding another run's checkpoints
# and leaves them untouched; --overwrite deletes them; the marker names the owner.
a_folder_belongs_to_one_run() {
    "$KSA" train "${RUN[@]}" --steps 3 --save-every 1 --out "$TMP/m" >/dev/null
    local a sums
    a=$(run_id "$TMP/m/step_00000003.h5")
    [ "$(cat "$TMP/m/.ksa_run")" = "$a" ]
    [ "$(run_id "$TMP/m/step_00000001.h5")" = "$a" ]
    sums=$(md5sum "$TMP"/m/step_*.h5)
    expect_error "holds 3 checkpoints of another run (run $a)" \
        "$KSA" train "${RUN[@]}" --steps 2 --save-every 1 --out "$TMP/m"
    must_fail grep -q "^step " "$TMP/stdout"
    [ "$(md5sum "$TMP"/m/step_*.h5)" = "$sums" ]
    [ "$(cat "$TMP/m/.ksa_run")" = "$a" ]
    "$KSA" train "${RUN[@]}" --steps 2 --save-every 1 --out "$TMP/m" --overwrite >"$TMP/m.out"
    grep -q "removed $TMP/m/step_00000003.h5 (another run's)" "$TMP/m.out"
    [ "$(ls "$TMP/m" | tr '\n' ' ')" = "step_00000001.h5 step_00000002.h5 " ]
    local b
    b=$(run_id "$TMP/m/step_00000002.h5")
    [ "$b" != "$a" ]
    [ "$(cat "$TMP/m/.ksa_run")" = "$b" ]
    expect_error "--overwrite is for a new run" "$KSA" train --resume "$TMP/m" --steps 3 --overwrite
    # a fine-tune must not delete the very checkpoint it starts from
    expect_error "--overwrite would delete '$TMP/m/step_00000002.h5'" \
        "$KSA" train "${RUN[@]}" --init-from "$TMP/m/step_00000002.h5" --steps 1 --out "$TMP/m" \
        --overwrite
    [ -f "$TMP/m/step_00000002.h5" ]
}

# --keep rotates only the run's own checkpoints and --resume DIR takes the newest of the
# folder's run: another run's file, even with a higher step, is neither removed nor resumed.
keep_and_resume_leave_another_runs_files_alone() {
    "$KSA" train "${RUN[@]}" --lr-schedule constant --steps 3 --save-every 1 --keep 2 \
        --out "$TMP/n" >/dev/null
    "$KSA" train "${RUN[@]}" --steps 1 --out "$TMP/other" >/dev/null
    cp "$TMP/other/step_00000001.h5" "$TMP/n/step_00000099.h5"
    "$KSA" train --resume "$TMP/n" --steps 6 >"$TMP/n.out"
    grep -q "resumed from $TMP/n/step_00000003.h5 after step 3" "$TMP/n.out"
    [ "$(ls "$TMP/n" | tr '\n' ' ')" = "step_00000005.h5 step_00000006.h5 step_00000099.h5 " ]
    [ "$(run_id "$TMP/n/step_00000006.h5")" = "$(cat "$TMP/n/.ksa_run")" ]
}

# The data may move between a run and its resume (same bytes: the losses are the ones of the
# uninterrupted run), but not change.
a_resume_may_name_moved_data_but_not_changed_data() {
    mkdir -p "$TMP/data"
    head -c 200000 build/data/kjv.bin >"$TMP/data/t.bin"
    cp build/data/kjv.bin.meta "$TMP/data/t.bin.meta"
    "$KSA" train "${RUN[@]}" --data "$TMP/data/t.bin" --lr-schedule constant --steps 4 \
        --save-every 2 --out "$TMP/o" --log "$TMP/o.jsonl" >/dev/null
    mv "$TMP/data" "$TMP/moved"
    expect_error "t.bin" "$KSA" train --resume "$TMP/o/step_00000002.h5" --out "$TMP/o2"
    "$KSA" train --resume "$TMP/o/step_00000002.h5" --data "$TMP/moved/t.bin" --out "$TMP/o2" \
        --log "$TMP/o2.jsonl" >/dev/null
    diff <(losses "$TMP/o.jsonl" 3 4) <(losses "$TMP/o2.jsonl" 3 4)
    printf '\x07' | dd of="$TMP/moved/t.bin" bs=1 seek=1000 conv=notrunc status=none
    expect_error "is not the data $TMP/o/step_00000002.h5 was trained on" \
        "$KSA" train --resume "$TMP/o/step_00000002.h5" --data "$TMP/moved/t.bin" --out "$TMP/o3"
    [ ! -e "$TMP/o3/step_00000003.h5" ]
}

# A resume whose --steps reshapes the learning-rate schedule is refused unless allowed; then
# the new schedule applies from the next step.
a_new_steps_must_not_reshape_the_schedule_silently() {
    "$KSA" train "${RUN[@]}" --steps 30 --warmup-steps 2 --decay-steps 10 --out "$TMP/p" \
        --save-every 10 >/dev/null
    expect_error "--allow-schedule-change" \
        "$KSA" train --resume "$TMP/p/step_00000010.h5" --steps 60 --out "$TMP/p2"
    must_fail grep -q "^step " "$TMP/stdout"
    "$KSA" train --resume "$TMP/p/step_00000010.h5" --steps 60 --allow-schedule-change \
        --out "$TMP/p2" --log "$TMP/p2.jsonl" >"$TMP/p2.out"
    grep -q "^# schedule change (--allow-schedule-change): steps 30 -> 60; step 22 runs at lr 0.003 instead of 0.00273" \
        "$TMP/p2.out"
    "$PY" - "$TMP/p2.jsonl" <<'PYEOF'
import json, sys
lr = {r["step"]: r["lr"] for r in map(json.loads, open(sys.argv[1]))}
assert lr[21] == 3e-3 and lr[50] == 3e-3, (lr[21], lr[50])   # the new decay starts at step 51
assert lr[60] < 3e-3
PYEOF
}

# --save-best keeps DIR/best.h5: the checkpoint of the lowest validation loss, stamped with it;
# a resume continues the comparison.
save_best_keeps_the_best_validation_checkpoint() {
    local V=(--val-data "$PWD/build/data/kjv.val.bin" --eval-batches 2 --eval-every 1)
    "$KSA" train "${RUN[@]}" "${V[@]}" --lr 3e-2 --steps 6 --save-every 1 --save-best \
        --out "$TMP/q" --log "$TMP/q.jsonl" >/dev/null
    "$KSA" train --resume "$TMP/q" --steps 9 --allow-schedule-change --log "$TMP/q.jsonl" >/dev/null
    local step
    step=$("$PY" - "$TMP/q.jsonl" "$TMP/q/best.h5" <<'PYEOF'
import json, sys, h5py
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == list(range(1, 10)), [r["step"] for r in rows]
best = min(rows, key=lambda r: r["val_loss"])
t = h5py.File(sys.argv[2], "r")["train"].attrs
assert t["val_loss"] == best["val_loss"], (t["val_loss"], best["val_loss"])
assert t["step"] == best["step"], (t["step"], best["step"])
print(best["step"])
PYEOF
)
    same_state "$TMP/q/best.h5" "$(printf '%s/q/step_%08d.h5' "$TMP" "$step")" >/dev/null
    expect_error "save_best needs val_data" \
        "$KSA" train "${RUN[@]}" --steps 1 --save-best 1 --out "$TMP/q3"
}

# --init-from reports counts per kind with a few names; --verbose one line per parameter
init_from_summarises_unless_verbose() {
    "$KSA" train "${RUN[@]}" --use-summary-attention false --steps 1 --out "$TMP/causal" >/dev/null
    local tensors
    tensors=$("$KSA" inspect --config "$CONF" | sed -n 's/^# parameters: .* in \([0-9]*\) tensors$/\1/p')
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000001.h5" --steps 1 >"$TMP/short"
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000001.h5" --steps 1 --verbose \
        >"$TMP/long"
    sed -n '/^init-from .*configuration;/,/^init-from .* ignored$/p' "$TMP/short" >"$TMP/s"
    sed -n '/^init-from .*configuration;/,/^init-from .* ignored$/p' "$TMP/long" >"$TMP/l"
    cat "$TMP/s"
    # header, loaded, copies, drawn, counts
    [ "$(wc -l <"$TMP/s")" = 5 ]
    [ "$(wc -l <"$TMP/l")" = $((tensors + 2)) ]
    grep -q "^  loaded from the checkpoint  *[0-9]*: model.embed_tokens.weight, " "$TMP/s"
    grep -q "^  created: copies of loaded parameters  *9: model.layers.0.*_summary.weight <- " "$TMP/s"
    grep -q "^  created: drawn from N(0, 0.02^2)  *1: summary_embedding.weight$" "$TMP/s"
    [ "$(tail -1 "$TMP/s")" = "$(tail -1 "$TMP/l")" ]
    grep -q "^  model.norm.weight \[128\]: loaded$" "$TMP/l"
}

# flip_value_byte FILE DATASET: one byte of DATASET's stored values changed (its checksum not)
flip_value_byte() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    at = f[sys.argv[2]].id.get_offset() + 1
with open(sys.argv[1], "r+b") as g:
    g.seek(at)
    b = g.read(1)[0] ^ 0x10
    g.seek(at)
    g.write(bytes([b]))
PYEOF
}

# --resume DIR passes over a damaged newest checkpoint for the newest sound one, naming both,
# and continues exactly as the first run did; a damaged file named on the command line is
# refused; when every checkpoint is damaged the error names the newest's damage
resume_passes_over_a_damaged_newest_checkpoint() {
    "$KSA" train "${RUN[@]}" --steps 3 --save-every 1 --out "$TMP/dmg" --log "$TMP/dmg1.jsonl" \
        >/dev/null
    flip_value_byte "$TMP/dmg/step_00000003.h5" params/model.norm.weight
    local newest="$TMP/dmg/step_00000003.h5"
    expect_error "checkpoint $newest: damaged: dataset /params/model.norm.weight does not match its checksum" \
        "$KSA" train --resume "$newest" --steps 4
    "$KSA" train --resume "$TMP/dmg" --steps 4 --log "$TMP/dmg2.jsonl" >"$TMP/dmg.out" \
        2>"$TMP/dmg.err"
    grep -qF "warning: --resume $TMP/dmg: checkpoint $newest: damaged: dataset /params/model.norm.weight does not match its checksum" "$TMP/dmg.err"
    grep -qF "resuming from $TMP/dmg/step_00000002.h5, the newest sound checkpoint" "$TMP/dmg.err"
    grep -qF "# resumed from $TMP/dmg/step_00000002.h5 after step 2" "$TMP/dmg.out"
    losses "$TMP/dmg1.jsonl" 3 3 >"$TMP/dmg1.losses"
    losses "$TMP/dmg2.jsonl" 3 3 >"$TMP/dmg2.losses"
    [ -s "$TMP/dmg1.losses" ]
    cmp "$TMP/dmg1.losses" "$TMP/dmg2.losses" # step 3 again, as the first run computed it
    "$KSA" inspect --verify "$newest" >/dev/null # rewritten by the resumed run: sound
    local s
    for s in 1 2 3 4; do
        flip_value_byte "$(printf '%s/dmg/step_%08d.h5' "$TMP" $s)" optim/exp_avg/model.norm.weight
    done
    expect_error "--resume $TMP/dmg: no undamaged checkpoint of the run; the newest: checkpoint $TMP/dmg/step_00000004.h5: damaged: dataset /optim/exp_avg/model.norm.weight does not match its checksum" \
        "$KSA" train --resume "$TMP/dmg" --steps 5
}

echo "[==========] Running test_resume.sh"
for t in resume_continues_the_run_bit_for_bit resume_reads_the_optimizer_state \
    recompute_may_be_switched_on_resume_and_changes_nothing \
    inspect_flags_what_resume_would_refuse \
    checkpoints_are_readable_by_h5py_and_h5dump sigterm_finishes_the_step_and_saves \
    sighup_and_sigusr1_stop_and_save_like_sigterm \
    a_save_that_cannot_fit_is_not_begun \
    a_disk_that_fills_during_a_save_keeps_the_previous_checkpoint \
    a_disk_full_before_a_save_ends_the_run_cleanly \
    a_crash_during_a_save_leaves_the_previous_checkpoint keep_removes_only_older_checkpoints \
    contradicting_resumes_are_refused_and_touch_nothing \
    fine_tuning_starts_from_a_checkpoints_parameters a_running_run_holds_its_folder \
    output_locations_are_checked_before_step_1 a_relative_resume_into_its_own_folder_works \
    a_folder_belongs_to_one_run \
    keep_and_resume_leave_another_runs_files_alone a_resume_may_name_moved_data_but_not_changed_data \
    a_new_steps_must_not_reshape_the_schedule_silently save_best_keeps_the_best_validation_checkpoint \
    init_from_summarises_unless_verbose resume_passes_over_a_damaged_newest_checkpoint; do
    run_test "$t" "$t"
done
finish
