#!/bin/bash
# memory.sh - peak resident memory of one training step of `ksa train` (forward, backward and
# the AdamW update of one row of L text tokens: global_batch 1, micro_batch 1, 1 step, no
# validation, no checkpoint), for each model, each mode (activations stored, or recomputed
# with --recompute) and each context length L, against the memory plan that
# `ksa inspect --config F --seq-len L --micro-batch 1 [--recompute]` prints for the same run
# (its "total per rank", the expected peak: the peer).
#
# The peak is the whole process's: GNU time's %M, the ru_maxrss that wait4() returns for the
# child (KiB), nothing subtracted. The same process at a tiny L (--base-L) is the baseline;
# a least-squares line over the L list gives, per model and mode, the memory per text token
# and the intercept, and from them the longest L whose peak fits in 24 GiB (extrapolated).
#
#   bench/memory.sh [--L 4096,8192,16384,32768] [--models ksa-4.3M,configs/small.conf]
#                   [--modes stored,recompute] [--max-gib 16] [--base-L 256] [--threads 2]
#                   [--bin DIR]
#
# Models: `ksa-4.3M` is built in (bench/ksa-4.3M.conf, shared with bench/train.sh: hidden
# 256, 4 layers, all summary layers with C = 8, S = 1, W = 128, independent summary
# parameters, 4 query and 4 kv heads of 64, intermediate 768, vocabulary 512, tied
# embeddings: 4 328 448 parameters); any other item is a configuration file, whose training
# keys the run overrides (and max_position_embeddings, raised to L when it is shorter). A
# (model, mode, L) whose planned peak exceeds --max-gib is skipped.
set -euo pipefail
usage() {
    cat >&2 <<'USAGE'
usage: bench/memory.sh [--L L1,L2,...] [--models M1,M2,...] [--modes stored,recompute]
                       [--max-gib G] [--base-L L] [--threads N] [--bin DIR]
  --L        context lengths, text tokens per row (default 4096,8192,16384,32768)
  --models   ksa-4.3M (built in) or configuration files (default ksa-4.3M,configs/small.conf)
  --modes    stored (activations kept) and/or recompute (ksa train --recompute)
             (default stored,recompute)
  --max-gib  skip a (model, mode, L) whose planned peak exceeds this many GiB (default 16)
  --base-L   the tiny L of the baseline row of each model (default 256)
  --threads  OpenMP / OpenBLAS threads of every run (default 2)
  --bin      the folder of the ksa binary (default bin)
USAGE
    exit 2
}
. "$(dirname "$0")/lib.sh"
bench_cmdline bench/memory.sh "$@"
LS=4096,8192,16384,32768 MODELS=ksa-4.3M,configs/small.conf MODES=stored,recompute MAX_GIB=16
BASE_L=256 THREADS=2 BIN=bin
while [ $# -gt 0 ]; do
    case "$1" in
        --L | --models | --modes | --max-gib | --base-L | --threads | --bin) ;;
        *) echo "memory.sh: unknown option '$1'" >&2; usage ;;
    esac
    [ $# -ge 2 ] || { echo "memory.sh: option '$1' needs a value" >&2; usage; }
    case "$1" in
        --L) LS=$2 ;;
        --models) MODELS=$2 ;;
        --modes) MODES=$2 ;;
        --max-gib) MAX_GIB=$2 ;;
        --base-L) BASE_L=$2 ;;
        --threads) THREADS=$2 ;;
        --bin) BIN=$2 ;;
    esac
    shift 2
done
COUNT='[1-9][0-9]*'
[[ $LS =~ ^$COUNT(,$COUNT)*$ ]] || { echo "memory.sh: --L '$LS' is not a list of positive integers" >&2; usage; }
[[ $BASE_L =~ ^$COUNT$ ]] || { echo "memory.sh: --base-L '$BASE_L' is not a positive integer" >&2; usage; }
[[ $THREADS =~ ^$COUNT$ ]] || { echo "memory.sh: --threads '$THREADS' is not a positive integer" >&2; usage; }
[[ $MODES =~ ^(stored|recompute)(,(stored|recompute))*$ ]] ||
    { echo "memory.sh: --modes '$MODES' is not a list of stored and recompute" >&2; usage; }
modes=()
for mode in ${MODES//,/ }; do
    [[ " ${modes[*]} " != *" $mode "* ]] || { echo "memory.sh: --modes '$MODES' names $mode twice" >&2; usage; }
    modes+=("$mode")
done
[[ $MAX_GIB =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "memory.sh: --max-gib '$MAX_GIB' is not a number" >&2; usage; }
KSA=$BIN/ksa
[ -x "$KSA" ] || { echo "memory.sh: no executable $KSA (run make, or give --bin)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "memory.sh: needs GNU time (/usr/bin/time, Debian package time)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS

# the built-in model (bench/ksa-4.3M.conf): a summary layer in each of its 4 layers
bench_models memory.sh "$MODELS"

# plan_bytes OUT CONF L [--recompute]: the "total per rank" of `ksa inspect`, in bytes; the
# plan is kept in the file OUT and read again from there when OUT exists
plan_bytes() {
    local out=$1 conf=$2 L=$3
    shift 3
    if [ ! -f "$out" ]; then
        "$KSA" inspect --config "$conf" --seq-len "$L" --max-position-embeddings "$L" \
            --micro-batch 1 --threads "$THREADS" "$@" >"$out.tmp" ||
            { echo "memory.sh: ksa inspect failed for $conf at L = $L" >&2; exit 1; }
        mv "$out.tmp" "$out"
    fi
    awk '/^ *total per rank/ { v = $4; u = $5
        printf "%.0f\n", v * (u == "GiB" ? 2^30 : u == "MiB" ? 2^20 : u == "KiB" ? 2^10 : 1); f = 1 }
        END { exit !f }' "$out" ||
        { echo "memory.sh: no 'total per rank' in the plan of $conf" >&2; exit 1; }
}

# train_step CONF L [--recompute]: one step under GNU time; prints
# "peak_KiB step_wall_s cpu_s process_wall_s", or "failed: ..." (and returns 1)
train_step() {
    local conf=$1 L=$2
    shift 2
    [ -f "$TMP/row_$L.bin" ] || bench_tokens "$TMP/row_$L.bin" $((L + 1))
    rm -f "$TMP/log.jsonl"
    # --peak-gflops: no GEMM-peak measurement (its matrices would count in the peak);
    # --out "": no checkpoint; --val-data "": no validation
    if ! /usr/bin/time -o "$TMP/time" -f '%M %U %S %e' \
        "$KSA" train --config "$conf" --data "$TMP/row_$L.bin" --val-data "" --seq-len "$L" \
        --max-position-embeddings "$L" --global-batch 1 --micro-batch 1 --steps 1 --lr-schedule constant --warmup-steps 0 \
        --eval-every 0 --out "" --save-best false --log "$TMP/log.jsonl" --peak-gflops 1 \
        --threads "$THREADS" "$@" >"$TMP/train.out" 2>"$TMP/train.err"; then
        echo "failed: $(tail -n 1 "$TMP/train.err" | tr '|' '/')"
        return 1
    fi
    local wall
    wall=$(sed -n 's/.*"elapsed": \([0-9.eE+-]*\).*/\1/p' "$TMP/log.jsonl")
    tail -n 1 "$TMP/time" | awk -v w="$wall" '{ printf "%d %.2f %.2f %.2f\n", $1, w, $2 + $3, $4 }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 2^20 }'; }
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
echo "# Peak resident memory of one training step (ksa train)"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host CPU: ${cpu_model:-unknown}, $(nproc) cores," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 2^20 }' /proc/meminfo)"
echo "- load average at start: $load_start"
echo "- $THREADS threads; one row of L text tokens per step (global_batch 1, micro_batch 1)," \
    "1 step, no validation, no checkpoint; mode stored: activations kept for the backward," \
    "recompute: \`ksa train --recompute\`; peak = GNU time %M (ru_maxrss of the whole" \
    "process), nothing subtracted; planned = the expected peak (\"total per rank\") of" \
    "\`ksa inspect\` with the same options"
for i in "${!names[@]}"; do
    plan_bytes "$TMP/plan.$i.$BASE_L.${modes[0]}" "${confs[$i]}" "$BASE_L" >/dev/null
    what=${confs[$i]}
    if [ "${names[$i]}" = ksa-4.3M ]; then
        what="built in: hidden 256, 4 summary layers (C 8, S 1, W 128, independent summary"
        what+=" parameters), 4 + 4 heads of 64, intermediate 768, vocabulary 512, tied"
    fi
    echo "- ${names[$i]}: $what; $(sed -n 's/^# parameters: \([0-9]*\).*/\1/p' "$TMP/plan.$i.$BASE_L.${modes[0]}") parameters"
done
echo
echo "| model | mode | L | peak RSS MiB | KiB per text token | planned MiB | measured / planned" \
    "| step wall s | CPU s | process wall s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
failed=0
declare -A points base_kib # by "model index,mode": "L peak_KiB plan_bytes" lines; baseline KiB
for i in "${!names[@]}"; do
    name=${names[$i]} conf=${confs[$i]}
    first=1 # the baseline rows, then the L list
    for L in "$BASE_L" ${LS//,/ }; do
        label=$L
        if [ "$first" = 1 ]; then label="$L (baseline)" first=0; fi
        for mode in "${modes[@]}"; do
            opt=()
            [ "$mode" = stored ] || opt=(--recompute)
            plan=$(plan_bytes "$TMP/plan.$i.$L.$mode" "$conf" "$L" "${opt[@]}")
            plan_gib=$(awk -v b="$plan" 'BEGIN { printf "%.2f", b / 2^30 }')
            if awk -v b="$plan" -v g="$MAX_GIB" 'BEGIN { exit !(b > g * 2^30) }'; then
                echo "| $name | $mode | $label | skipped: predicted $plan_gib GiB > limit | — | $(mib "$plan") | — | — | — | — |"
            elif ! r=$(train_step "$conf" "$L" "${opt[@]}"); then
                echo "| $name | $mode | $label | $r | — | $(mib "$plan") | — | — | — | — |"
                failed=1
            else
                read -r kib wall cpu pwall <<<"$r"
                awk -v n="$name" -v m="$mode" -v l="$label" -v L="$L" -v k="$kib" -v p="$plan" \
                    -v w="$wall" -v c="$cpu" -v pw="$pwall" 'BEGIN {
                    printf "| %s | %s | %s | %.1f | %.2f | %.1f | %.3f | %s | %s | %s |\n",
                        n, m, l, k / 1024, k / L, p / 2^20, k * 1024 / p, w, c, pw }'
                if [ "$label" != "$L" ]; then
                    base_kib[$i,$mode]=$kib
                else
                    points[$i,$mode]+="$L $kib $plan"$'\n'
                fi
            fi
        done
    done
done
echo
echo "Per model and mode: fitted peak RSS = intercept + slope x L (least squares over the L" \
    "list); the worst |measured / planned - 1| over the L list; the longest L whose fitted" \
    "peak fits in 24 GiB (extrapolated):"
echo
for i in "${!names[@]}"; do
    for mode in "${modes[@]}"; do
        printf '%s' "${points[$i,$mode]:-}" | awk -v n="${names[$i]}" -v m="$mode" \
            -v b="${base_kib[$i,$mode]:-}" -v bl="$BASE_L" '
            { x[NR] = $1; y[NR] = $2; sx += $1; sy += $2
              off = $2 * 1024 / $3 - 1; if (off < 0) off = -off
              if (NR == 1 || off > worst) { worst = off; worst_L = $1 } }
            END {
                base = b == "" ? "—" : sprintf("%.1f MiB", b / 1024)
                if (NR < 2) {
                    printf "- %s, %s: fewer than 2 measured L, no fit (baseline at L = %d: %s)\n",
                        n, m, bl, base
                    exit
                }
                mx = sx / NR; my = sy / NR
                for (i = 1; i <= NR; i++) { sxx += (x[i] - mx) ^ 2; sxy += (x[i] - mx) * (y[i] - my) }
                if (sxx == 0) {
                    printf "- %s, %s: a single distinct L, no fit (baseline at L = %d: %s)\n",
                        n, m, bl, base
                    exit
                }
                slope = sxy / sxx; icpt = my - slope * mx
                printf "- %s, %s: %.2f KiB per text token, intercept %.1f MiB (least squares" \
                    " over %d L; baseline at L = %d: %s); measured / planned off by at most" \
                    " %.1f %% (L = %d); extrapolated: ", n, m, slope, icpt / 1024, NR, bl, base,
                    100 * worst, worst_L
                if (slope <= 0) print "no limit (the slope is not positive)"
                else printf "longest L within 24 GiB %d\n", (24 * 2^20 - icpt) / slope
            }'
    done
done
echo
echo "- load average at end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
exit $failed
