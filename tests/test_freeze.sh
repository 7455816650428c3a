#!/bin/bash
# test_freeze.sh - training some parameters only (training keys trainable and frozen,
# docs/training.md "Frozen parameters"): frozen parameters are bit-identical after training on
# 1 and 2 ranks and have no optimizer state in memory or in the checkpoint, a resume keeps
# them frozen and continues the uninterrupted run, patterns that select nothing are refused.
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
MPIRUN=(timeout 300 mpirun -x OMP_NUM_THREADS)
[ -n "${ASAN_OPTIONS:-}" ] && MPIRUN+=(-x ASAN_OPTIONS)
RUN=(--config configs/tiny.conf --seq-len 64 --global-batch 4 --micro-batch 2 --eval-every 0
    --val-data "" --lr-schedule constant --warmup-steps 0)
FROZEN='model.layers.*.mlp.*, model.embed_tokens.weight'

# check_frozen INIT CKPT: the parameters FROZEN matches are those of INIT bit for bit and have no
# moments; every other parameter moved and has both moments
check_frozen() { "$PY" - "$1" "$2" "$FROZEN" <<'PYEOF'
import fnmatch, sys
import h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
pats = [p.strip() for p in sys.argv[3].split(",")]
frozen = trained = 0
for n in a["params"]:
    fz = any(fnmatch.fnmatchcase(n, p) for p in pats)
    same = np.array_equal(a["params"][n][()], b["params"][n][()])
    assert same == fz, (n, "frozen" if fz else "trained", "unchanged" if same else "changed")
    for g in ("exp_avg", "exp_avg_sq"):
        assert (n in b["optim"][g]) == (not fz), (n, g)
    frozen += fz
    trained += not fz
assert frozen == 13 and trained == 43, (frozen, trained)
print(frozen, "frozen parameters unchanged and without moments,", trained, "trained")
PYEOF
}

frozen_parameters_stay_bit_identical_on_1_and_2_ranks() {
    "$KSA" init --config configs/tiny.conf --out "$TMP/init.h5" >/dev/null
    "$KSA" train "${RUN[@]}" --steps 3 --frozen "$FROZEN" --out "$TMP/r1" >"$TMP/out1"
    check_frozen "$TMP/init.h5" "$TMP/r1/step_00000003.h5"
    grep -q "^# trained: 43 of 56 tensors, 296448 (0.296 M) elements; frozen (no gradient, no optimizer state): model.embed_tokens.weight model.layers.0.mlp.gate_proj.weight" "$TMP/out1"
    grep -q "AdamW moments of 296448 of 919168 elements" "$TMP/out1"
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 3 --frozen "$FROZEN" --out "$TMP/r2" \
        >"$TMP/out2"
    check_frozen "$TMP/init.h5" "$TMP/r2/step_00000003.h5"
    grep -q "AdamW moments of 148224 of 919168 elements" "$TMP/out2"
    "$KSA" inspect "$TMP/r2/step_00000003.h5" >"$TMP/info"
    grep -q "^moments: exp_avg and exp_avg_sq present for all 43 trained parameters, with their shapes; the 13 frozen ones have none$" "$TMP/info"
    "$KSA" inspect --verify "$TMP/r2/step_00000003.h5" >/dev/null
}

# --trainable: only what it lists trains (the distillation default, KSA_SPEC 9.2)
trainable_lists_what_trains() {
    "$KSA" init --config configs/tiny.conf --out "$TMP/init.h5" >/dev/null
    "$KSA" train "${RUN[@]}" --steps 2 --trainable '*_summary*,summary_embedding*' \
        --out "$TMP/t" >"$TMP/out"
    grep -q "^# trained: 10 of 56 tensors" "$TMP/out"
    "$PY" - "$TMP/init.h5" "$TMP/t/step_00000002.h5" <<'PYEOF'
import sys
import h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
moved = sorted(n for n in a["params"] if not np.array_equal(a["params"][n][()], b["params"][n][()]))
assert moved == sorted(b["optim"]["exp_avg"]), moved
assert len(moved) == 10 and all("summary" in n for n in moved), moved
PYEOF
}

# A resume keeps the run's frozen parameters (the keys are the checkpoint's) and continues it:
# 2 + 2 steps on 2 ranks and then 1 rank give the losses of 4 uninterrupted steps.
a_resume_keeps_them_frozen() {
    "$KSA" init --config configs/tiny.conf --out "$TMP/init.h5" >/dev/null
    "$KSA" train "${RUN[@]}" --steps 4 --frozen "$FROZEN" --log "$TMP/whole.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 2 --frozen "$FROZEN" \
        --out "$TMP/r" >/dev/null
    "$KSA" train --resume "$TMP/r/step_00000002.h5" --steps 4 --log "$TMP/resumed.jsonl" \
        >/dev/null
    check_frozen "$TMP/init.h5" "$TMP/r/step_00000004.h5"
    "$PY" - "$TMP/whole.jsonl" "$TMP/resumed.jsonl" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])][2:]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b] == [3, 4], (a, b)
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * x["loss"], (x["loss"], y["loss"])
PYEOF
    must_fail "$KSA" train --resume "$TMP/r/step_00000002.h5" --steps 5 --frozen "" \
        >"$TMP/o" 2>&1
    grep -q "training key 'frozen' differs from the checkpoint's" "$TMP/o"
}

patterns_that_select_nothing_are_refused() {
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --frozen 'model.layer.*' >"$TMP/o1" 2>&1
    grep -q "^ksa train: frozen: the pattern 'model.layer.\*' matches no parameter of the model" "$TMP/o1"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --trainable 'summary_embeding*' >"$TMP/o2" 2>&1
    grep -q "^ksa train: trainable: the pattern 'summary_embeding\*' matches no parameter" "$TMP/o2"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --frozen '*' >"$TMP/o3" 2>&1
    grep -q "^ksa train: trainable = '', frozen = '\*' leave no parameter to train" "$TMP/o3"
}

echo "[==========] Running test_freeze.sh"
for t in frozen_parameters_stay_bit_identical_on_1_and_2_ranks trainable_lists_what_trains \
    a_resume_keeps_them_frozen patterns_that_select_nothing_are_refused; do
    run_test "$t" "$t"
done
finish
