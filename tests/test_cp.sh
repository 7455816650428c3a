#!/bin/bash
# test_cp.sh - context parallelism under mpirun: tests/test_cp.c (which `make test` also runs
# as a one-rank singleton) on 2, 3 and 4 ranks (4: P = 4, and P = 2 x 2 context groups), in
# float32 and float64: the loss and every gradient of the blocks equal the whole sequences'.
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
BUILD=${BUILD:-$(dirname "$BIN")}
[ -x "$BUILD/tests/f32/test_cp" ] || BUILD=build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
# a hang (a rank left waiting in a collective) fails the test instead of blocking make
MPIRUN=(timeout 300 mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS)
[ -n "${ASAN_OPTIONS:-}" ] && MPIRUN+=(-x ASAN_OPTIONS)

# ranks PREC N: the program on N ranks; every rank must report its 3 tests passed
ranks() {
    local prec=$1 n=$2 out="$TMP/$1.np$2.out"
    if ! "${MPIRUN[@]}" -np "$n" "$BUILD/tests/$prec/test_cp" >"$out" 2>&1; then
        cat "$out"
        echo "test_cp ($prec) failed on $n ranks"
        return 1
    fi
    [ "$(grep -c '^\[  PASSED  \] 3 test(s)\.' "$out")" = "$n" ] || { cat "$out"; return 1; }
    grep '^  ' "$out"
}

# ---- ksa train / ksa eval --context-parallel -----------------------------------------------
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}
# tiny.conf: 3 summary layers (C 8, S 1, W 4 chunks = 32 tokens) and a causal one (the ring);
# rows of 72 tokens: 9 chunks, blocks of 4 + 5 (P 2) and 2, 2, 2, 3 (P 4: shorter than W)
RUN=(--config configs/tiny.conf --seq-len 72 --global-batch 4 --micro-batch 1 --eval-every 4
    --eval-batches 4 --lr-schedule constant --warmup-steps 0)

# same_losses A B: every step's loss within 1e-5 relative, grad norm within 1e-4, validation
# losses within 1e-5 (float32 sums in another order)
same_losses() { "$PY" - "$@" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 0, "other steps"
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (x["step"], x["loss"], y["loss"])
    assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * abs(x["grad_norm"]), (x["step"], x["grad_norm"], y["grad_norm"])
    assert ("val_loss" in x) == ("val_loss" in y), x["step"]
    if "val_loss" in x:
        assert abs(x["val_loss"] - y["val_loss"]) <= 1e-5 * x["val_loss"], (x["val_loss"], y["val_loss"])
print("agree over", len(a), "steps")
PYEOF
}

# The same run on 1 rank, on P = 2, P = 4 (blocks shorter than the window) and P = 2 x 2
# context groups: the same losses, gradient norms and validation losses; with --recompute too.
training_losses_equal_on_every_grid() {
    "$KSA" train "${RUN[@]}" --steps 4 --log "$TMP/p1.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 4 --context-parallel 2 \
        --log "$TMP/p2.jsonl" >/dev/null
    same_losses "$TMP/p1.jsonl" "$TMP/p2.jsonl"
    "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --steps 4 --context-parallel 4 \
        --log "$TMP/p4.jsonl" >/dev/null
    same_losses "$TMP/p1.jsonl" "$TMP/p4.jsonl"
    "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --steps 4 --context-parallel 2 \
        --log "$TMP/p2x2.jsonl" >"$TMP/p2x2.out"
    same_losses "$TMP/p1.jsonl" "$TMP/p2x2.jsonl"
    grep -q "context parallelism: blocks of 32 of the 72 tokens" "$TMP/p2x2.out"
    # per row and layer: block 1 receives its halo (32 rows: W 4 chunks reach row 0) and 4
    # summary rows, k and v of 2 x 32 floats (36 x 512 B), and returns their gradients;
    # ring: block 0's 32 rows of k, v twice, and their gradients back (3 x 16 KiB). Mean per
    # rank: 18432 B x 3 summary layers x 2 rows = 0.105 MiB, 24576 B x 2 rows = 0.047 MiB
    grep -q "step 1: a rank sent 0.105 MiB in summary and sliding-window layers (halos, summaries and their gradients) and 0.047 MiB in causal layers (ring attention)" "$TMP/p2x2.out"
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 4 --context-parallel 2 --recompute \
        --log "$TMP/p2r.jsonl" >/dev/null
    same_losses "$TMP/p1.jsonl" "$TMP/p2r.jsonl"
}

# A checkpoint written under P = 2 resumes on one rank, one of one rank resumes under P = 4
# and under P = 2 x 2: the steps after the resume equal the uninterrupted run's.
checkpoints_resume_under_any_grid() {
    "$KSA" train "${RUN[@]}" --steps 6 --log "$TMP/whole.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 3 --context-parallel 2 \
        --out "$TMP/cp2" >/dev/null
    "$KSA" train --resume "$TMP/cp2/step_00000003.h5" --steps 6 --log "$TMP/r1.jsonl" >/dev/null
    "$KSA" train "${RUN[@]}" --steps 3 --out "$TMP/cp1" >/dev/null
    "${MPIRUN[@]}" -np 4 "$KSA" train --resume "$TMP/cp1/step_00000003.h5" --steps 6 \
        --context-parallel 4 --log "$TMP/r4.jsonl" >/dev/null
    "${MPIRUN[@]}" -np 4 "$KSA" train --resume "$TMP/cp1/step_00000003.h5" --steps 6 \
        --context-parallel 2 --log "$TMP/r2x2.jsonl" >/dev/null
    tail -n 3 "$TMP/whole.jsonl" >"$TMP/whole.tail"
    same_losses "$TMP/whole.tail" "$TMP/r1.jsonl"
    same_losses "$TMP/whole.tail" "$TMP/r4.jsonl"
    same_losses "$TMP/whole.tail" "$TMP/r2x2.jsonl"
}

# ksa eval --context-parallel: the loss and the per-position losses of one rank.
evaluation_equals_one_rank() {
    "$KSA" train "${RUN[@]}" --steps 2 --out "$TMP/ev" >/dev/null
    local ck="$TMP/ev/step_00000002.h5" data=build/data/kjv.val.bin
    "$KSA" eval --ckpt "$ck" --data $data --seq-len 72 --batch 5 --by-position --json \
        --progress 0 >"$TMP/e1.json"
    "${MPIRUN[@]}" -np 2 "$KSA" eval --ckpt "$ck" --data $data --seq-len 72 --batch 5 \
        --by-position --json --progress 0 --context-parallel 2 >"$TMP/e2.json"
    "${MPIRUN[@]}" -np 4 "$KSA" eval --ckpt "$ck" --data $data --seq-len 72 --batch 5 \
        --by-position --json --progress 0 --context-parallel 2 >"$TMP/e4.json"
    "$PY" - "$TMP/e1.json" "$TMP/e2.json" "$TMP/e4.json" <<'PYEOF'
import json, sys
a, *others = [json.load(open(p)) for p in sys.argv[1:]]
for b in others:
    assert abs(a["loss"] - b["loss"]) <= 1e-6 * a["loss"], (a["loss"], b["loss"])
    assert len(a["by_position"]) == len(b["by_position"]) == 8
    for x, y in zip(a["by_position"], b["by_position"]):
        assert (x["from"], x["to"], x["targets"]) == (y["from"], y["to"], y["targets"]), (x, y)
        assert abs(x["loss"] - y["loss"]) <= 1e-5 * x["loss"], (x, y)
PYEOF
}

# Grids that cannot be: one message, status 2, on every rank, no hang.
bad_grids_are_refused_at_start_up() {
    must_fail "${MPIRUN[@]}" -np 3 "$KSA" train "${RUN[@]}" --steps 1 --context-parallel 2 \
        >"$TMP/o1" 2>&1
    grep -q "^ksa train: context_parallel = 2 does not divide the 3 ranks" "$TMP/o1"
    must_fail "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --steps 1 --context-parallel 4 \
        --seq-len 24 >"$TMP/o2" 2>&1
    grep -q "^ksa train: context_parallel = 4: a sequence of 24 tokens has 3 whole chunks of 8, fewer than the 4 blocks" "$TMP/o2"
    must_fail "$KSA" train "${RUN[@]}" --steps 1 --context-parallel 0 >"$TMP/o3" 2>&1
    grep -q "^ksa train: context_parallel = 0: it must be at least 1" "$TMP/o3"
    must_fail "${MPIRUN[@]}" -np 4 "$KSA" train "${RUN[@]}" --steps 1 --context-parallel 2 \
        --global-batch 3 >"$TMP/o4" 2>&1
    grep -q "global_batch = 3 is not a multiple of micro_batch (1) x context groups (2 = 4 ranks / context_parallel 2)" "$TMP/o4"
    must_fail "${MPIRUN[@]}" -np 2 "$KSA" train "${RUN[@]}" --steps 1 --context-parallel 2 \
        --seq-len 8000000 --max-position-embeddings 8000000 --micro-batch 4 \
        --global-batch 8 >"$TMP/o5" 2>&1
    grep -q "^ksa train: context parallelism: the keys and values of 4 rows of 8000000 tokens (4.61e+09 elements) may not fit one MPI message" "$TMP/o5"
    "$KSA" init --config configs/tiny.conf --out "$TMP/init.h5" >/dev/null
    must_fail "${MPIRUN[@]}" -np 3 "$KSA" eval --ckpt "$TMP/init.h5" \
        --data build/data/kjv.val.bin --seq-len 72 --context-parallel 2 >"$TMP/o6" 2>&1
    grep -q "^ksa eval: context_parallel = 2 does not divide the 3 ranks" "$TMP/o6"
}

blocks_equal_whole_sequences_on_2_ranks() { ranks f32 2 && ranks f64 2; }
blocks_equal_whole_sequences_on_3_ranks() { ranks f32 3 && ranks f64 3; }
blocks_equal_whole_sequences_on_4_ranks() { ranks f32 4 && ranks f64 4; }

echo "[==========] Running test_cp.sh"
for t in blocks_equal_whole_sequences_on_2_ranks blocks_equal_whole_sequences_on_3_ranks \
    blocks_equal_whole_sequences_on_4_ranks training_losses_equal_on_every_grid \
    checkpoints_resume_under_any_grid evaluation_equals_one_rank \
    bad_grids_are_refused_at_start_up; do
    run_test "$t" "$t"
done
finish
