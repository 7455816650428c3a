#!/bin/bash
# triage.sh HARNESS INPUT... - where each crash input fails: runs the harness (built for
# `make fuzz`) once on it and prints "INPUT: hdf5|ours|none: WHERE", from the first frame of
# the report that is neither the sanitizers', libFuzzer's nor the C library's (for hdf5: the
# first named HDF5 function of the stack, then that frame). An out-of-memory report has no
# stack of the code running, only those of the largest live allocations: the first not made
# by libFuzzer itself decides (memory freed and not yet reused is in none of them).
# "hdf5": that frame is inside libhdf5, which is not built with sanitizers (a corrupted
# file can crash HDF5 itself; docs/reliability.md); "ours": in ksa.c's code (a bug to fix);
# "none": the input no longer fails. The report is kept in INPUT.report.
set -uo pipefail
harness=$1
shift
# a crashed harness leaves its folder behind (run.sh passes its own TMPDIR)
if [ -z "${KSA_FUZZ_TMP:-}" ]; then
    TMPDIR=$(mktemp -d /dev/shm/ksa-fuzz-run.XXXXXX 2>/dev/null || mktemp -d)
    export TMPDIR KSA_FUZZ_TMP=1
    trap 'rm -rf "$TMPDIR"' EXIT
fi
for input in "$@"; do
    if ASAN_OPTIONS=fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1 "$harness" \
        -timeout=20 -rss_limit_mb=2048 -close_fd_mask=3 "$input" >"$input.report" 2>&1; then
        echo "$input: none: runs clean now"
        continue
    fi
    # frames are "#N 0xADDR in FUNCTION FILE:LINE" or "#N 0xADDR (MODULE+OFFSET)"
    frame=$(grep -a -E '^ *#[0-9]+ 0x[0-9a-f]+ ' "$input.report" |
        sed -E 's/^ *#[0-9]+ 0x[0-9a-f]+ +(in )?//' |
        grep -vE '^(__sanitizer|__asan|__ubsan|__lsan|__interceptor|___interceptor|fuzzer::)' |
        grep -vE '^(__libc_)?(malloc|calloc|realloc|free|memcpy|memmove|memset|strlen|strdup) ' |
        grep -vE '^(abort|raise|__pthread_kill_implementation|__libc_start_(call_)?main|_start|main) ' |
        grep -vE '^__(mem|str)|^operator (new|delete)|sysdeps/|/libc\.so|libstdc\+\+|libclang_rt' |
        head -1)
    # the first HDF5 function with a name (static ones have none in Debian's library)
    named=$(grep -a -E '^ *#[0-9]+ 0x[0-9a-f]+ in H5' "$input.report" | head -1 |
        sed -E 's/^ *#[0-9]+ 0x[0-9a-f]+ in ([A-Za-z0-9_]+).*/\1/')
    # the HDF5 API function our code called (H5Fopen, H5Aread: no underscore)
    api=$(grep -a -oE '^ *#[0-9]+ 0x[0-9a-f]+ in H5[A-Z][a-z][A-Za-z0-9]* ' "$input.report" |
        head -1 | sed -E 's/.* in //; s/ $//')
    case "$frame" in
        *libhdf5*) echo "$input: hdf5: ${named:-?} via ${api:-?} (first frame: $frame)" ;;
        fuzz_fail*) echo "$input: ours: $(grep -a -m1 'property failed' "$input.report")" ;;
        "") echo "$input: ours: $(grep -a -m1 -E 'ERROR|runtime error' "$input.report")" ;;
        *) echo "$input: ours: $frame" ;;
    esac
done
