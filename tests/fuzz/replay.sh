#!/bin/bash
# replay.sh BIN_DIR SEEDS_DIR NAME... - `make fuzz-replay`: runs BIN_DIR/fuzz_NAME (a harness
# linked with tests/fuzz/replay.c) once on every committed seed (tests/fuzz/corpus/NAME),
# every crash reproducer (tests/fuzz/regressions/NAME) and the seeds made at build time
# (SEEDS_DIR/NAME). Fails at the first harness that fails (a sanitizer report, a broken
# property); prints one line per harness.
set -euo pipefail
bin=$1 seeds=$2
shift 2
# the harnesses' files: in memory when /dev/shm is there; a crashed harness leaves its
# folder behind, so all of them go inside one that is removed at the end
TMPDIR=$(mktemp -d /dev/shm/ksa-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)
export TMPDIR KSA_FUZZ_TMP=1
trap 'rm -rf "$TMPDIR"' EXIT
for name in "$@"; do
    inputs=()
    for d in "tests/fuzz/corpus/$name" "tests/fuzz/regressions/$name" "$seeds/$name"; do
        if [ -d "$d" ]; then
            inputs+=("$d")
        fi
    done
    "$bin/fuzz_$name" "${inputs[@]}" 2>"$bin/$name.log" || {
        cat "$bin/$name.log" >&2
        echo "fuzz-replay $name: FAILED" >&2
        exit 1
    }
done
