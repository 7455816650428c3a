#!/bin/bash
# train.sh - training throughput and memory of `ksa train` against the PyTorch peer
# (scripts/torch_train.py: the model of scripts/torch_reference.py in float32, dense masked
# attention, torch.optim.AdamW), the same model, batch, length, tokens and thread count.
#
# A run is one process: one warm-up step, then --steps timed steps of one batch of B rows of
# L text tokens (global batch = micro batch = B, constant learning rate, no validation, no
# checkpoint). tokens/s = timed text tokens over the timed steps' wall time; CPU = the
# process's user + system CPU seconds over the timed steps (ksa: the `cpu` of its JSONL log,
# torch: getrusage), per 1000 tokens; peak RSS = ru_maxrss of the whole process (ksa: GNU
# time %M; torch: its own ru_maxrss). ksa.c and PyTorch runs alternate, --reps times each.
#
#   bench/train.sh [--L 1024,4096,8192] [--models ksa-4.3M,configs/tiny.conf] [--reps 2]
#                  [--steps 3] [--batch 1] [--threads 2] [--max-gib 16] [--probe-L 256,512]
#                  [--budget-gib 24] [--bin DIR]
#
# Memory: each implementation first runs once at the two --probe-L lengths; before every
# (model, L, implementation) the peak RSS is estimated from the lengths measured so far
# (ksa.c: the line through the two longest; PyTorch: the parabola through the three longest,
# its attention keeps [L', L'] score matrices) and a run above --max-gib is skipped. At the
# end the same fits give the KiB per text token and the longest L whose peak fits in
# --budget-gib, extrapolated.
set -euo pipefail
usage() {
    cat >&2 <<'USAGE'
usage: bench/train.sh [--L L1,L2,...] [--models M1,M2,...] [--reps N] [--steps N] [--batch B]
                      [--threads N] [--max-gib G] [--probe-L L1,L2] [--budget-gib G] [--bin DIR]
  --L           context lengths, text tokens per row (default 1024,4096,8192)
  --models      ksa-4.3M (bench/ksa-4.3M.conf) or configuration files
                (default ksa-4.3M,configs/tiny.conf)
  --reps        runs of each implementation per (model, L), alternated (default 2)
  --steps       timed steps per run, after one warm-up step (default 3)
  --batch       rows per step, B (default 1)
  --threads     threads of both implementations (default 2)
  --max-gib     skip a run whose estimated peak exceeds this many GiB (default 16)
  --probe-L     the two small lengths measured first, for the estimates (default 256,512)
  --budget-gib  the memory of the extrapolated longest L (default 24)
  --bin         the folder of the ksa binary (default bin)
USAGE
    exit 2
}
. "$(dirname "$0")/lib.sh"
bench_cmdline bench/train.sh "$@"
LS=1024,4096,8192 MODELS=ksa-4.3M,configs/tiny.conf REPS=2 STEPS=3 BATCH=1 THREADS=2
MAX_GIB=16 PROBE_LS=256,512 BUDGET_GIB=24 BIN=bin
while [ $# -gt 0 ]; do
    case "$1" in
        --L | --models | --reps | --steps | --batch | --threads | --max-gib | --probe-L | \
            --budget-gib | --bin) ;;
        *) echo "train.sh: unknown option '$1'" >&2; usage ;;
    esac
    [ $# -ge 2 ] || { echo "train.sh: option '$1' needs a value" >&2; usage; }
    case "$1" in
        --L) LS=$2 ;;
        --models) MODELS=$2 ;;
        --reps) REPS=$2 ;;
        --steps) STEPS=$2 ;;
        --batch) BATCH=$2 ;;
        --threads) THREADS=$2 ;;
        --max-gib) MAX_GIB=$2 ;;
        --probe-L) PROBE_LS=$2 ;;
        --budget-gib) BUDGET_GIB=$2 ;;
        --bin) BIN=$2 ;;
    esac
    shift 2
done
COUNT='[1-9][0-9]*' NUMBER='[0-9]*\.?[0-9]+'
[[ $LS =~ ^$COUNT(,$COUNT)*$ ]] || { echo "train.sh: --L '$LS' is not a list of positive integers" >&2; usage; }
[[ $PROBE_LS =~ ^$COUNT,$COUNT$ ]] || { echo "train.sh: --probe-L '$PROBE_LS' is not two positive integers" >&2; usage; }
for v in REPS STEPS BATCH THREADS; do
    opt=--$(tr '[:upper:]' '[:lower:]' <<<"$v")
    [[ ${!v} =~ ^$COUNT$ ]] || { echo "train.sh: $opt '${!v}' is not a positive integer" >&2; usage; }
done
[[ $MAX_GIB =~ ^$NUMBER$ ]] || { echo "train.sh: --max-gib '$MAX_GIB' is not a number" >&2; usage; }
[[ $BUDGET_GIB =~ ^$NUMBER$ ]] || { echo "train.sh: --budget-gib '$BUDGET_GIB' is not a number" >&2; usage; }
HERE=$(dirname "$0")
KSA=$BIN/ksa
PY=${PY:-/usr/bin/python3}
TORCH_TRAIN=$HERE/../scripts/torch_train.py
[ -x "$KSA" ] || { echo "train.sh: no executable $KSA (run make, or give --bin)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "train.sh: needs GNU time (/usr/bin/time, Debian package time)" >&2; exit 1; }
"$PY" -c 'import torch, h5py' 2>/dev/null ||
    { echo "train.sh: $PY cannot import torch and h5py (scripts/install_deps.sh --torch)" >&2; exit 1; }
bench_models train.sh "$MODELS"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=$THREADS


# run_ksa CONF L STEPS: one `ksa train` process; prints "tokens_per_s cpu_s_per_token
# peak_KiB", or "failed: ..." (and returns 1)
run_ksa() {
    local conf=$1 L=$2 steps=$3 data=$TMP/rows_$2.bin
    rm -f "$TMP/log.jsonl"
    # --peak-gflops: no GEMM-peak measurement; --out "": no checkpoint; --val-data "": none
    if ! /usr/bin/time -o "$TMP/time" -f '%M' \
        "$KSA" train --config "$conf" --data "$data" --val-data "" --seq-len "$L" \
        --max-position-embeddings "$L" --global-batch "$BATCH" --micro-batch "$BATCH" --steps $((steps + 1)) \
        --lr-schedule constant --warmup-steps 0 --eval-every 0 --out "" --save-best false \
        --log "$TMP/log.jsonl" --peak-gflops 1 --threads "$THREADS" \
        >"$TMP/ksa.out" 2>"$TMP/ksa.err"; then
        echo "failed: ksa train: $(tail -n 1 "$TMP/ksa.err" | tr '|' '/')"
        return 1
    fi
    # the timed steps: from the end of step 1 (the warm-up) to the end of the last
    "$PY" - "$TMP/log.jsonl" "$(tail -n 1 "$TMP/time")" "$((BATCH * L))" <<'PYEOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[0], rows[-1]
tokens = (len(rows) - 1) * int(sys.argv[3])
print("%.6g %.6g %d" % (tokens / (last["elapsed"] - first["elapsed"]),
                        (last["cpu"] - first["cpu"]) / tokens, int(sys.argv[2])))
PYEOF
}

# run_torch CONF L STEPS: one scripts/torch_train.py process; same output as run_ksa
run_torch() {
    local conf=$1 L=$2 steps=$3 data=$TMP/rows_$2.bin
    if ! "$PY" "$TORCH_TRAIN" --config "$conf" --data "$data" --seq-len "$L" --batch "$BATCH" \
        --steps "$steps" --threads "$THREADS" >"$TMP/torch.out" 2>"$TMP/torch.err"; then
        echo "failed: torch_train.py: $(tail -n 1 "$TMP/torch.err" | tr '|' '/')"
        return 1
    fi
    "$PY" -c 'import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("%.6g %.6g %d" % (r["tokens_per_s"], r["cpu_s_per_token"], r["peak_rss_kib"]))' "$TMP/torch.out"
}

# fit POINTS IMPL MODE [ARG]: the memory model of an implementation over the file POINTS of
# "L peak_KiB" lines (ksa: the line through the two longest L; torch: the parabola through
# the three longest, the line through two when only two were measured). MODE estimate L: the peak at L in GiB ("" with
# fewer than 2 points); MODE slope: "KiB per text token|L1|L2" (the secant of the two
# longest L); MODE longest GIB: the largest L whose fitted peak is at most GIB ("" when the
# fit does not grow)
fit() {
    "$PY" - "$@" <<'PYEOF'
import sys
impl, mode = sys.argv[2], sys.argv[3]
pts = {}
for line in open(sys.argv[1]):
    L, kib = line.split()
    pts[int(L)] = max(pts.get(int(L), 0), int(kib))
xs = sorted(pts)
if len(xs) < 2:
    print("")
    sys.exit(0)
if mode == "slope":
    a, b = xs[-2], xs[-1]
    print("%.2f|%d|%d" % ((pts[b] - pts[a]) / (b - a), a, b))
    sys.exit(0)
use = xs[-3:] if impl == "torch" and len(xs) >= 3 else xs[-2:]
# Lagrange form through the points: peak(L) in KiB
def peak(L):
    total = 0.0
    for i, xi in enumerate(use):
        w = 1.0
        for j, xj in enumerate(use):
            if j != i:
                w *= (L - xj) / (xi - xj)
        total += w * pts[xi]
    return total
if mode == "estimate":
    print("%.3f" % (peak(float(sys.argv[4])) / 2**20))
    sys.exit(0)
limit = float(sys.argv[4]) * 2**20
L = use[-1]
if peak(2 * L) <= peak(L):
    print("")
    sys.exit(0)
while peak(2 * L) <= limit:  # bracket, then bisect to within 1 token
    L *= 2
    if L > 2**40:  # a parabola that turns down never reaches the limit
        print("")
        sys.exit(0)
lo, hi = L, 2 * L
if peak(lo) > limit:
    lo = use[0]
while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if peak(mid) <= limit else (lo, mid)
print(lo)
PYEOF
}

gib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 2^20 }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
load1() { cut -d ' ' -f 1 /proc/loadavg; }

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "# Training: ksa.c against the PyTorch peer"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host CPU: ${cpu_model:-unknown}, $(nproc) cores," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 2^20 }' /proc/meminfo);" \
    "PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
echo "- load average at start: $(cut -d ' ' -f 1-3 /proc/loadavg) ($(uptime | sed 's/^ *//'))"
echo "- OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} in both implementations (each sets passive when it is unset)"
echo "- $THREADS threads; $BATCH row(s) of L text tokens per step, one warm-up step then" \
    "$STEPS timed steps per run, $REPS runs of each implementation alternated (ksa.c first);" \
    "medians over the runs, (min–max) of tokens/s; CPU = user + system seconds of the process" \
    "during the timed steps; peak RSS = the largest ru_maxrss of the runs (whole process);" \
    "load = the 1-minute load average when each run started"
for i in "${!names[@]}"; do
    echo "- ${names[$i]}: ${confs[$i]}; $("$KSA" inspect --config "${confs[$i]}" --seq-len 64 |
        sed -n 's/^# parameters: \([0-9]*\).*/\1/p') parameters"
done
echo
echo "| model | L | implementation | tokens/s | s per step | CPU s per 1k tokens | CPU / wall" \
    "| peak RSS MiB | ksa.c speed-up | load |"
echo "|---|---|---|---|---|---|---|---|---|---|"
failed=0
declare -A tps # "model|L|impl" -> median tokens/s
summary=()
for i in "${!names[@]}"; do
    name=${names[$i]} conf=${confs[$i]}
    for impl in ksa torch; do : >"$TMP/points.$i.$impl"; done
    first_probe=1
    for L in ${PROBE_LS//,/ } $(tr ',' '\n' <<<"$LS" | sort -n | uniq); do
        label=$L reps=$REPS steps=$STEPS
        if [ "$first_probe" -le 2 ]; then
            label="$L (probe)" reps=1 steps=1 first_probe=$((first_probe + 1))
        fi
        [ -f "$TMP/rows_$L.bin" ] || bench_tokens "$TMP/rows_$L.bin" $((BATCH * L + 1))
        declare -A est=() skip=() res=() loads=()
        for impl in ksa torch; do
            est[$impl]=$(fit "$TMP/points.$i.$impl" "$impl" estimate "$L")
            skip[$impl]=0
            if [ -n "${est[$impl]}" ] && awk -v e="${est[$impl]}" -v g="$MAX_GIB" 'BEGIN { exit !(e > g) }'; then
                skip[$impl]=1
            fi
            res[$impl]="" loads[$impl]=""
        done
        for ((r = 0; r < reps; r++)); do
            for impl in ksa torch; do
                [ "${skip[$impl]}" = 0 ] || continue
                case "${res[$impl]}" in failed:*) continue ;; esac
                loads[$impl]+="${loads[$impl]:+, }$(load1)"
                if out=$("run_$impl" "$conf" "$L" "$steps"); then
                    res[$impl]+="$out"$'\n'
                else
                    res[$impl]=$out failed=1
                fi
            done
        done
        for impl in ksa torch; do
            what=ksa.c
            [ "$impl" = ksa ] || what=PyTorch
            if [ "${skip[$impl]}" = 1 ]; then
                echo "| $name | $label | $what | skipped (estimated ${est[$impl]} GiB) | — | — | — | — | — | — |"
                continue
            fi
            case "${res[$impl]}" in failed:*)
                echo "| $name | $label | $what | ${res[$impl]} | — | — | — | — | — | ${loads[$impl]} |"
                continue ;;
            esac
            t=$(awk 'NF { print $1 }' <<<"${res[$impl]}" | median)
            tmin=$(awk 'NF { print $1 }' <<<"${res[$impl]}" | sort -g | head -n 1)
            tmax=$(awk 'NF { print $1 }' <<<"${res[$impl]}" | sort -g | tail -n 1)
            c=$(awk 'NF { print $2 }' <<<"${res[$impl]}" | median)
            kib=$(awk 'NF { print $3 }' <<<"${res[$impl]}" | sort -n | tail -n 1)
            echo "$L $kib" >>"$TMP/points.$i.$impl"
            tps["$name|$L|$impl"]=$t
            speedup="—"
            if [ "$impl" = torch ] && [ -n "${tps["$name|$L|ksa"]:-}" ]; then
                speedup=$(awk -v a="${tps["$name|$L|ksa"]}" -v b="$t" 'BEGIN { printf "%.2fx", a / b }')
            fi
            awk -v n="$name" -v l="$label" -v w="$what" -v t="$t" -v lo="$tmin" -v hi="$tmax" \
                -v c="$c" -v k="$kib" -v tok=$((BATCH * L)) -v s="$speedup" -v ld="${loads[$impl]}" 'BEGIN {
                printf "| %s | %s | %s | %.0f (%.0f–%.0f) | %.3f | %.3f | %.2f | %.1f | %s | %s |\n",
                    n, l, w, t, lo, hi, tok / t, 1000 * c, c * t, k / 1024, s, ld }'
        done
        unset est skip res loads
    done
    for impl in ksa torch; do
        what=ksa.c
        [ "$impl" = ksa ] || what=PyTorch
        s=$(fit "$TMP/points.$i.$impl" "$impl" slope)
        if [ -z "$s" ]; then
            summary+=("| $name | $what | — (fewer than 2 lengths measured) | — |")
            continue
        fi
        IFS='|' read -r slope l1 l2 <<<"$s"
        longest=$(fit "$TMP/points.$i.$impl" "$impl" longest "$BUDGET_GIB")
        how="line through L = $l1, $l2"
        if [ "$impl" = torch ] && [ "$(sort -u "$TMP/points.$i.$impl" | wc -l)" -ge 3 ]; then
            how="parabola through the 3 longest L measured"
        fi
        [ -n "$longest" ] && longest="$longest (extrapolated: $how)" || longest="— (no growth measured)"
        summary+=("| $name | $what | $slope (L = $l1 → $l2) | $longest |")
    done
done
echo
echo "Peak RSS per text token and the longest L whose peak fits in $BUDGET_GIB GiB:"
echo
echo "| model | implementation | KiB per text token | longest L in $BUDGET_GIB GiB |"
echo "|---|---|---|---|"
printf '%s\n' "${summary[@]}"
echo
echo "- load average at end: $(cut -d ' ' -f 1-3 /proc/loadavg) ($(uptime | sed 's/^ *//'))"
exit $failed
