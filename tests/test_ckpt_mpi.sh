#!/bin/bash
# test_ckpt_mpi.sh - sharded checkpoints under mpirun: tests/test_ckpt_mpi.c (which `make
# test` also runs as a one-rank singleton) run on 1, 2, 3 and 4 ranks, each rank writing
# only its slice of the moments; every file read back slice by slice on other rank counts
# (2 -> 1, 1 -> 4, 4 -> 2, ...); h5py sees the same values in the files of 1, 2 and 4
# ranks. Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
#
# The test programs are found in $BUILD/tests/{f32,f64} (BUILD defaults to the folder
# above $BIN, i.e. build/h11 for BIN=build/h11/bin, else build/).
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
BUILD=${BUILD:-$(dirname "$BIN")}
[ -x "$BUILD/tests/f32/test_ckpt_mpi" ] || BUILD=build
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
# a hang (a rank left waiting in a collective) fails the test instead of blocking make
MPIRUN=(timeout 120 mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS
    -x KSA_CKPT_MPI_DIR)
[ -n "${ASAN_OPTIONS:-}" ] && MPIRUN+=(-x ASAN_OPTIONS)

# ranks PREC N: one run of the program on N ranks in $TMP/PREC (writes npN.h5, reads all)
ranks() {
    local prec=$1 n=$2 out="$TMP/$1.np$2.$RANDOM.out"
    mkdir -p "$TMP/$prec"
    if ! KSA_CKPT_MPI_DIR="$TMP/$prec" "${MPIRUN[@]}" -np "$n" \
        "$BUILD/tests/$prec/test_ckpt_mpi" >"$out" 2>&1; then
        cat "$out"
        echo "test_ckpt_mpi ($prec) failed on $n ranks"
        return 1
    fi
    # every rank ran every test and passed
    [ "$(grep -c '^\[  PASSED  \] 5 test(s)\.' "$out")" = "$n" ] || { cat "$out"; return 1; }
    cat "$out" >>"$TMP/$prec.reads"
}

# 1, 2, 3, 4 ranks write; each run reads the files already there; 1 and 2 ranks again
# then read the files of every rank count
write_and_read_across_rank_counts() {
    local prec=$1
    : >"$TMP/$prec.reads"
    for n in 1 2 3 4 1 2; do ranks "$prec" "$n"; done
    for pair in 1:1 2:2 4:4 1:2 1:4 2:4 2:1 4:1 4:2; do
        grep -q "^read np${pair%:*}.h5 on ${pair#*:} ranks: ok$" "$TMP/$prec.reads" ||
            { echo "no read of np${pair%:*}.h5 on ${pair#*:} ranks"; cat "$TMP/$prec.reads"; return 1; }
    done
}

sharded_files_of_1_to_4_ranks_read_back_on_other_counts_float32() {
    write_and_read_across_rank_counts f32
}

sharded_files_of_1_to_4_ranks_read_back_on_other_counts_float64() {
    write_and_read_across_rank_counts f64
}

# Independent of this code: the files written by 1, 2 and 4 ranks hold, at every element
# of every parameter, the value the test gave that element of the flat buffer.
h5py_sees_every_slice_in_its_place() {
    [ -f "$TMP/f32/np4.h5" ] || write_and_read_across_rank_counts f32
    "$PY" - "$TMP/f32" <<'PYEOF'
import sys, h5py, numpy as np
# tests/test_ckpt_mpi.c's table; offsets rounded up to 16 elements (src/autograd/params.c)
table = [("model.embed_tokens.weight", (3, 5)), ("huge", (9, 11)), ("model.norm.weight", (45,)),
         ("col", (5, 1)), ("wide", (2, 16))]
offset, layout = 0, []
for name, shape in table:
    layout.append((name, shape, offset))
    offset += (int(np.prod(shape)) + 15) // 16 * 16
for n in (1, 2, 4):
    with h5py.File(f"{sys.argv[1]}/np{n}.h5", "r") as f:
        assert f["train"].attrs["world_size"] == n
        for name, shape, off in layout:
            g = off + np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
            for group, want in (("params", -(g + 1)), ("optim/exp_avg", g + 1),
                                ("optim/exp_avg_sq", 0.5 * (g + 1))):
                d = f[group][name]
                assert d.shape == shape and d.dtype == np.float32, (n, group, name, d.shape)
                bad = np.argwhere(d[()] != want)
                assert len(bad) == 0, (n, group, name, "first wrong element", bad[0].tolist())
print("np1.h5, np2.h5, np4.h5: every element in its place")
PYEOF
}

echo "[==========] Running test_ckpt_mpi.sh"
for t in sharded_files_of_1_to_4_ranks_read_back_on_other_counts_float32 \
    sharded_files_of_1_to_4_ranks_read_back_on_other_counts_float64 \
    h5py_sees_every_slice_in_its_place; do
    run_test "$t" "$t"
done
finish
