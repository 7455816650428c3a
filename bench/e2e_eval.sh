#!/bin/bash
# e2e_eval.sh - end-to-end speed of the whole model with summary attention against the same
# model with plain causal attention (the peer, measured in the same run): a one-layer model
# (hidden 256, intermediate 512, vocabulary 512, 4 query and 4 key/value heads of 64; KSA
# C = 8, S = 1, W = 128, independent summary parameters, tied embeddings) evaluated with
# `ksa eval --grads-out` (forward + backward) on one row of T text tokens, 2 threads, whole
# process wall time, best of --reps runs.
#
#   bench/e2e_eval.sh [--bin DIR] [--T 32768] [--reps 2] [--threads 2]
set -euo pipefail
BIN=bin T=32768 REPS=2 THREADS=2
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

best_time() { # best wall time over REPS runs of ksa eval on checkpoint $1
    local best=""
    for ((r = 0; r < REPS; r++)); do
        local t0 t1 dt
        t0=$(date +%s.%N)
        OMP_NUM_THREADS=$THREADS "$KSA" eval --ckpt "$1" --data "$TMP/row.bin" --seq-len "$T" \
            --grads-out "$TMP/g.h5" >/dev/null
        t1=$(date +%s.%N)
        dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
        if [ -z "$best" ] || awk -v d="$dt" -v b="$best" 'BEGIN { exit !(d < b) }'; then best=$dt; fi
    done
    printf '%.3f' "$best"
}
ksa_t=$(best_time "$TMP/ksa.h5")
causal_t=$(best_time "$TMP/causal.h5")
ratio=$(awk -v a="$ksa_t" -v b="$causal_t" 'BEGIN { print a / b }')
echo "end-to-end ksa eval --grads-out, one layer, T = $T, $THREADS threads, best of $REPS"
echo
echo "| model | wall time (s) |"
echo "|---|---|"
echo "| summary attention (C=8, S=1, W=128) | $ksa_t |"
echo "| causal attention (peer) | $causal_t |"
printf '| ratio summary / causal | %.3f (target <= 0.5) |\n' "$ratio"
