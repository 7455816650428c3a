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

blocks_equal_whole_sequences_on_2_ranks() { ranks f32 2 && ranks f64 2; }
blocks_equal_whole_sequences_on_3_ranks() { ranks f32 3 && ranks f64 3; }
blocks_equal_whole_sequences_on_4_ranks() { ranks f32 4 && ranks f64 4; }

echo "[==========] Running test_cp.sh"
for t in blocks_equal_whole_sequences_on_2_ranks blocks_equal_whole_sequences_on_3_ranks \
    blocks_equal_whole_sequences_on_4_ranks; do
    run_test "$t" "$t"
done
finish
