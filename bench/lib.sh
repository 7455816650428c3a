#!/bin/bash
# lib.sh - what the shell benchmarks (bench/memory.sh, bench/train.sh) share; sourced, after
# the script has defined its `usage`.

# bench_cmdline NAME ARGS...: CMDLINE = the command line as typed, an argument quoted only
# when the shell would need it
bench_cmdline() {
    CMDLINE=$1
    shift
    local a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./,=:+-]+$ ]]; then CMDLINE+=" $a"; else CMDLINE+=" '${a//\'/\'\\\'\'}'"; fi
    done
}

# bench_models SCRIPT LIST: the arrays names and confs of the comma-separated models of LIST:
# `ksa-4.3M` (bench/ksa-4.3M.conf) or configuration files; anything else is a usage error
bench_models() {
    local script=$1 m n
    names=() confs=()
    for m in ${2//,/ }; do
        if [ "$m" = ksa-4.3M ]; then
            names+=("$m") confs+=("$(dirname "${BASH_SOURCE[0]}")/ksa-4.3M.conf")
        else
            [ -f "$m" ] || { echo "$script: model '$m' is neither ksa-4.3M nor a file" >&2; usage; }
            n=${m##*/}
            names+=("${n%.conf}") confs+=("$m")
        fi
    done
    [ ${#names[@]} -gt 0 ] || { echo "$script: --models '$2' names no model" >&2; usage; }
}

# bench_tokens FILE N: N pseudo-random byte ids (uint16, headerless + .meta), below every
# vocabulary the byte tokenizer allows (257)
bench_tokens() {
    LC_ALL=C awk -v n="$2" 'BEGIN { s = 12345; for (i = 0; i < n; i++) {
        s = (s * 1103515245 + 12345) % 2147483648; v = s % 256
        printf "%c%c", v, 0 } }' >"$1"
    echo uint16 >"$1.meta"
}
