#!/bin/bash
# test_distill.sh - attention distillation (training key distill, KSA_SPEC 9.2) end to end: a
# KSA model initialised from a causal checkpoint of the project learns to imitate it (the
# distillation loss falls), only the summary parameters train by default, the log holds every
# term, 2 ranks give the losses of 1, and what distillation cannot do is refused; and CPT's
# stage 3, the length extension, as a new run from a checkpoint.
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
RUN=(--config configs/tiny.conf --seq-len 96 --global-batch 4 --micro-batch 2 --eval-every 0
    --val-data "" --lr 3e-3 --warmup-steps 2)

# the teacher: tiny.conf as a plain causal model, 40 steps
causal() {
    [ -f "$TMP/causal/step_00000040.h5" ] ||
        "$KSA" train "${RUN[@]}" --use-summary-attention false --steps 40 --out "$TMP/causal" \
            >/dev/null
}

# Pure distillation (distill_lm_weight 0) from the causal checkpoint: the loss is 5 attn + 5 kl
# at every step and its mean over the last 4 of 16 steps is below that of the first 4.
the_distillation_loss_falls() {
    causal
    # a fixed data order (a fine-tune's default derives from its parent's random run id) and
    # 16-row batches, so that the comparison does not hang on which rows a step drew
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" --steps 16 --distill \
        --distill-lm-weight 0 --data-seed 11 --global-batch 16 --micro-batch 4 \
        --log "$TMP/d.jsonl" --out "$TMP/d" >"$TMP/out"
    grep -q "^step  1/16 | loss .* | ce [0-9.]* attn [0-9.e-]* kl [0-9.e-]*$" "$TMP/out"
    "$PY" - "$TMP/d.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 16
for r in rows:
    want = 5 * r["loss_attn"] + 5 * r["loss_kl"]
    assert abs(r["loss"] - want) <= 1e-6 * want, (r["step"], r["loss"], want)
    assert r["loss_ce"] > 0 and r["loss_cos"] == 0, r
first = sum(r["loss"] for r in rows[:4]) / 4
last = sum(r["loss"] for r in rows[-4:]) / 4
assert last < 0.95 * first, (first, last)
print("distillation loss %.4f -> %.4f" % (first, last))
PYEOF
}

# By default only the summary parameters train: every shared parameter of the distilled model
# is the causal checkpoint's, bit for bit; the summary projections moved from their copies.
only_summary_parameters_train_by_default() {
    causal
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" --steps 3 --distill \
        --out "$TMP/s" >"$TMP/out"
    grep -q "^# trained: 10 of 56 tensors" "$TMP/out"
    "$PY" - "$TMP/causal/step_00000040.h5" "$TMP/s/step_00000003.h5" <<'PYEOF'
import sys
import h5py, numpy as np
c, s = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
shared = [n for n in s["params"] if n in c["params"]]
summary = [n for n in s["params"] if n not in c["params"]]
assert len(shared) == 46 and len(summary) == 10, (len(shared), len(summary))
for n in shared:
    assert np.array_equal(c["params"][n][()], s["params"][n][()]), n
for n in summary:
    if n.endswith("_summary.weight"):  # started as a copy of its shared twin
        twin = n.replace("_summary.weight", ".weight")
        assert not np.array_equal(s["params"][n][()], c["params"][twin][()]), n
assert sorted(s["optim"]["exp_avg"]) == sorted(summary)
PYEOF
}

distillation_on_2_ranks_and_split_rows_gives_the_losses_of_1() {
    causal
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" --steps 3 --distill \
        --distill-cos-weight 0.5 --log "$TMP/r1.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" \
        --steps 3 --distill --distill-cos-weight 0.5 --log "$TMP/r2.jsonl" >/dev/null
    # and with each row split over the 2 ranks (context parallelism: the teacher's ring too)
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" \
        --steps 3 --distill --distill-cos-weight 0.5 --context-parallel 2 \
        --log "$TMP/cp2.jsonl" >/dev/null
    "$PY" - "$TMP/r1.jsonl" "$TMP/r2.jsonl" "$TMP/cp2.jsonl" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])] + [json.loads(l) for l in open(sys.argv[3])]
assert len(a) == 3 and len(b) == 6
for x, y in zip(a + a, b):
    for k in ("loss", "loss_ce", "loss_attn", "loss_kl", "loss_cos"):
        assert abs(x[k] - y[k]) <= 1e-5 * abs(x[k]), (x["step"], k, x[k], y[k])
    assert x["loss_cos"] > 0
PYEOF
}

# CPT stage 3 (KSA_SPEC 9.4): --init-from a KSA checkpoint at 4x the length with a new RoPE
# base is a new run: steps count from 0 with the schedule's warmup from 0, the configuration
# holds the new base and length, and with a zero learning rate the loaded parameters stay
# exactly the checkpoint's.
length_extension_is_a_new_run_at_4x_with_a_new_rope_base() {
    causal
    "$KSA" train "${RUN[@]}" --init-from "$TMP/causal/step_00000040.h5" --steps 2 --distill \
        --out "$TMP/s1" >/dev/null
    "$KSA" train "${RUN[@]}" --init-from "$TMP/s1/step_00000002.h5" --seq-len 384 \
        --rope-theta 40000 --steps 2 --out "$TMP/ext" --log "$TMP/ext.jsonl" >/dev/null
    "$KSA" train "${RUN[@]}" --init-from "$TMP/s1/step_00000002.h5" --seq-len 384 \
        --rope-theta 40000 --steps 1 --lr 0 --min-lr 0 --out "$TMP/ext0" >/dev/null
    "$PY" - "$TMP/s1/step_00000002.h5" "$TMP/ext/step_00000002.h5" "$TMP/ext0/step_00000001.h5" \
        "$TMP/ext.jsonl" <<'PYEOF'
import json, sys
import h5py, numpy as np
src, ext, ext0 = (h5py.File(p, "r") for p in sys.argv[1:4])
assert ext["config"].attrs["rope_theta"] == 40000 and src["config"].attrs["rope_theta"] == 10000
assert ext["train"].attrs["step"] == 2 and ext["train"].attrs["seq_len"] == 384
log = [json.loads(l) for l in open(sys.argv[4])]
assert [r["step"] for r in log] == [1, 2] and log[0]["lr"] == 0, log
for n in src["params"]:
    assert np.array_equal(src["params"][n][()], ext0["params"][n][()]), n
PYEOF
}

what_distillation_cannot_do_is_refused() {
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --distill --recompute >"$TMP/o1" 2>&1
    grep -q "^ksa train: distill does not run with recompute yet" "$TMP/o1"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --distill --use-summary-attention false \
        >"$TMP/o2" 2>&1
    grep -q "^ksa train: distill compares the summary layers of a KSA model with its causal teacher, but this model has none" "$TMP/o2"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --distill \
        --summary-independent-parameters false --summary-token-begin 250 >"$TMP/o3" 2>&1
    grep -q "^ksa train: distill trains only the summary parameters by default (KSA_SPEC 9.2), but the model has none" "$TMP/o3"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --distill --distill-clamp 0 >"$TMP/o4" 2>&1
    grep -q "^ksa train: distill_clamp = 0 must be positive" "$TMP/o4"
}

echo "[==========] Running test_distill.sh"
for t in the_distillation_loss_falls only_summary_parameters_train_by_default \
    distillation_on_2_ranks_and_split_rows_gives_the_losses_of_1 \
    length_extension_is_a_new_run_at_4x_with_a_new_rope_base what_distillation_cannot_do_is_refused; do
    run_test "$t" "$t"
done
finish
