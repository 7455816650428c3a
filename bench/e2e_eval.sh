#!/bin/bash
# e2e_eval.sh - end-to-end speed of the whole model with summary attention against the same
# model with plain causal attention (the peer, measured in the same run): a one-layer model
# (hidden 256, intermediate 512, vocabulary 512, 4 query and 4 key/value heads of 64; KSA
# C = 8, S = 1, W = 128, independent summary parameters, tied embeddings) evaluated with
# `ksa eval --grads-out` (forward + backward) on one row of T text tokens, 2 threads. The two
# models run alternately (summary, causal, summary, causal, ...) so that a change of the
# host's load hits both alike; each run is timed by GNU time (Debian package `time`): whole
# process wall time and CPU time (user + sys), best of --reps runs each.
#
#   bench/e2e_eval.sh [--bin DIR] [--T 32768] [--reps 3] [--threads 2]
set -euo pipefail
BIN=bin T=32768 REPS=3 THREADS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --T) T=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        *) echo "e2e_eval.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
KSA=$BIN/ksa
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cat >"$TMP/ksa.conf" <<CONF
vocab_size = 512
hidden_size = 256
intermediate_size = 512
num_hidden_layers = 1
num_attention_heads = 4
num_key_value_heads = 4
head_dim = 64
tie_word_embeddings = true
max_position_embeddings = 131072
use_summary_attention = true
summary_chunk_size = 8
summary_token_num = 1
summary_sliding_chunk_num = 128
summary_independent_parameters = true
CONF
sed 's/^use_summary_attention = true/use_summary_attention = false/' "$TMP/ksa.conf" >"$TMP/causal.conf"
"$KSA" init --config "$TMP/ksa.conf" --out "$TMP/ksa.h5" >/dev/null
"$KSA" init --config "$TMP/causal.conf" --out "$TMP/causal.h5" >/dev/null
# T + 1 tokens of pseudo-random ids below the vocabulary (uint16, headerless + .meta)
LC_ALL=C awk -v n=$((T + 1)) 'BEGIN { s = 12345; for (i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648; v = s % 509
    printf "%c%c", v % 256, int(v / 256) } }' >"$TMP/row.bin"
[ "$(stat -c %s "$TMP/row.bin")" = $((2 * (T + 1))) ] || { echo "token file has the wrong size" >&2; exit 1; }
echo uint16 >"$TMP/row.bin.meta"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# one run of ksa eval on checkpoint $1; appends "wall cpu" (seconds) to the file $2
time_one() {
    OMP_NUM_THREADS=$THREADS /usr/bin/time -f '%e %U %S' -o "$TMP/time" \
        "$KSA" eval --ckpt "$1" --data "$TMP/row.bin" --seq-len "$T" --grads-out "$TMP/g.h5" >/dev/null
    awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$TMP/time" >>"$2"
}
: >"$TMP/ksa.times"
: >"$TMP/causal.times"
for ((r = 0; r < REPS; r++)); do
    time_one "$TMP/ksa.h5" "$TMP/ksa.times"
    time_one "$TMP/causal.h5" "$TMP/causal.times"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
best() { # smallest value of column $2 of file $1
    awk -v c="$2" 'NR == 1 || $c < b { b = $c } END { printf "%.3f", b }' "$1"
}
ksa_wall=$(best "$TMP/ksa.times" 1) ksa_cpu=$(best "$TMP/ksa.times" 2)
causal_wall=$(best "$TMP/causal.times" 1) causal_cpu=$(best "$TMP/causal.times" 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f (causal %.2fx)", a / b, b / a }'; }
echo "end-to-end ksa eval --grads-out, one layer, T = $T, $THREADS threads, best of $REPS" \
    "alternated runs; load average $load_before before, $load_after after"
echo
echo "| model | wall time (s) | CPU time, user + sys (s) |"
echo "|---|---|---|"
echo "| summary attention (C=8, S=1, W=128) | $ksa_wall | $ksa_cpu |"
echo "| causal attention (peer) | $causal_wall | $causal_cpu |"
echo "| ratio summary / causal (target: causal >= 2.5x) | $(ratio "$ksa_wall" "$causal_wall") | $(ratio "$ksa_cpu" "$causal_cpu") |"
