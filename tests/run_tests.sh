#!/bin/bash
# run_tests.sh - run test programs one after another, show their output, total the cmocka
# results, list the slowest programs and exit 1 if any program failed (a crash counts as a
# failure). Used by make test.
set -u
failed_progs=()
times=() # seconds per program, printed at the end, slowest first
n_pass=0
n_fail=0
for prog in "$@"; do
    echo "=== ${prog}"
    out=$(mktemp)
    case "$prog" in
        *.sh) cmd=(bash "$prog") ;;
        *) cmd=("$prog") ;;
    esac
    start=$SECONDS
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "${cmd[@]}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]} # the pipeline has ended: tee has written everything
    times+=("$((SECONDS - start)) s  ${prog}")
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$out" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$out" | tail -1)
    n_pass=$((n_pass + ${p:-0}))
    n_fail=$((n_fail + ${f:-0}))
    if [ "$rc" != 0 ]; then
        failed_progs+=("$prog (exit $rc)")
        [ -z "$f" ] && n_fail=$((n_fail + 1))
    fi
    rm -f "$out"
done
echo
echo "slowest programs:"
printf '%s\n' "${times[@]}" | sort -rn | head -8 | sed 's/^/  /'
if ((${#failed_progs[@]})); then
    printf 'FAILED program: %s\n' "${failed_progs[@]}"
fi
echo "tests: ${n_pass} passed, ${n_fail} failed"
((${#failed_progs[@]} == 0))
