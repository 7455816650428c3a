#!/bin/bash
# run.sh FUZZ_DIR SECONDS NAME... - `make fuzz`: runs each harness FUZZ_DIR/fuzz_NAME for
# SECONDS, one after the other, one process at a time (libFuzzer's -fork=1: a crash ends a
# child process, the next one goes on fuzzing). Inputs: the working corpus
# FUZZ_DIR/corpus/NAME (libFuzzer adds the inputs that reach new code there), the committed
# seeds tests/fuzz/corpus/NAME, the reproducers of fixed crashes tests/fuzz/regressions/NAME
# and the seeds made at build time, FUZZ_DIR/seeds/NAME. Every crash, leak, timeout or
# out-of-memory input is written to FUZZ_DIR/crashes/NAME/ (emptied first) and triaged
# (tests/fuzz/triage.sh): in our code, or inside libhdf5. libFuzzer's output is in
# FUZZ_DIR/NAME.log. Prints one line per harness (and FUZZ_DIR/summary.txt); fails if any
# harness failed to run or found a crash in our code. Crashes inside libhdf5 are listed
# but do not fail the run: HDF5 is not built with sanitizers and is not ours to fix here
# (docs/reliability.md).
set -uo pipefail
dir=$1 seconds=$2
shift 2
failed=0
# the harnesses' files: in memory when /dev/shm is there; a crashed harness leaves its
# folder behind, so all of them go inside one that is removed at the end
TMPDIR=$(mktemp -d /dev/shm/ksa-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)
export TMPDIR KSA_FUZZ_TMP=1
trap 'rm -rf "$TMPDIR"' EXIT
: >"$dir/summary.txt"
for name in "$@"; do
    crashes="$dir/crashes/$name"
    mkdir -p "$dir/corpus/$name"
    rm -rf "$crashes"
    mkdir -p "$crashes"
    inputs=("$dir/corpus/$name")
    for d in "tests/fuzz/corpus/$name" "tests/fuzz/regressions/$name" "$dir/seeds/$name"; do
        if [ -d "$d" ]; then
            inputs+=("$d")
        fi
    done
    # -close_fd_mask=3: the readers' own output (warnings about unknown attributes, ...) is
    # not wanted; libFuzzer's and the sanitizers' reports still reach the log
    UBSAN_OPTIONS=print_stacktrace=1 "$dir/fuzz_$name" "${inputs[@]}" -fork=1 \
        -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" \
        -timeout=20 -rss_limit_mb=2048 -close_fd_mask=3 -artifact_prefix="$crashes/" \
        >"$dir/$name.log" 2>&1
    rc=$?
    # fork mode's progress lines: "#EXECUTIONS: cov: EDGES ft: ... time: Ns job: ..."
    last=$(grep -E '^#[0-9]+: cov: ' "$dir/$name.log" | tail -1)
    runs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$last")
    time=$(sed -nE 's/^INFO: exiting: [0-9]+ time: ([0-9]+)s.*/\1/p' "$dir/$name.log" | tail -1)
    ours=0 hdf5=0
    # (slow-unit-* inputs are only slow: not failures)
    artifacts=$(find "$crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' \) ! -name '*.report' | sort)
    if [ -n "$artifacts" ]; then
        # shellcheck disable=SC2086
        tests/fuzz/triage.sh "$dir/fuzz_$name" $artifacts >"$crashes/triage.txt.report"
        ours=$(grep -c ': ours: ' "$crashes/triage.txt.report")
        hdf5=$(grep -c ': hdf5: ' "$crashes/triage.txt.report")
    fi
    line="fuzz $name: ${runs:-?} executions in ${time:-?} s, coverage ${cov:-?} edges"
    line="$line, crashes: $ours in our code, $hdf5 inside libhdf5"
    # in fork mode libFuzzer exits with the code of the last child that crashed: a failure
    # by itself only when nothing was saved
    if [ "$ours" != 0 ] || [ -z "$runs" ] || { [ "$rc" != 0 ] && [ -z "$artifacts" ]; }; then
        line="$line: FAILED (exit $rc; $dir/$name.log, $crashes/triage.txt.report)"
        failed=1
    fi
    echo "$line" | tee -a "$dir/summary.txt"
    if [ "$hdf5" != 0 ]; then
        sed -nE 's/.*: hdf5: ([^ ]*) via ([^ ]*) .*/    inside libhdf5: \1, called by \2/p' \
            "$crashes/triage.txt.report" |
            sort | uniq -c | tee -a "$dir/summary.txt"
    fi
done
exit $failed
