#!/bin/bash
# context_parallel.sh - bin/bench_context_parallel under mpirun for each P of --P (default
# 1, 2, 4: one context group of P ranks, one mpirun per P), and the combined tables: per
# (L, P) the summary layers' bytes per layer per step (measured by the ranks' counters, next
# to the formula) and ring attention's for the same sequence, the step's wall and CPU time,
# the peak RSS per rank against P = 1's (measured in this script's P = 1 run) and the
# activation memory per rank against P = 1's (ksa_model_plan in the same run), and whether
# the targets hold. Each run's own output (with the check of both formulas against the
# counters of a summary and a causal layer at --ring-length) follows the tables.
#
#   bench/context_parallel.sh [--P 1,2,4] [--lengths 32768,65536,131072] [--reps 2]
#                             [--bin DIR] [-- OPTIONS OF bench_context_parallel]
#
# Threads: a rank runs max(1, cores / P) threads (OMP_NUM_THREADS and --threads): on the
# 2-core test machine P = 1 has 2 threads, P = 2 one per rank, P = 4 one per rank with two
# ranks per core (mpirun --oversubscribe): the wall time of P = 4 there measures the
# machine, not the scheme (its CPU time and its traffic do). Root may run mpirun
# (OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set).
set -euo pipefail
usage() {
    cat >&2 <<'USAGE'
usage: bench/context_parallel.sh [--P 1,2,4] [--lengths L1,L2,...] [--reps N] [--bin DIR]
                                 [-- OPTIONS OF bench_context_parallel]
  --P        ranks per context group, one mpirun each; 1 must come first (default 1,2,4)
  --lengths  tokens of the sequence (default 32768,65536,131072)
  --reps     steps per (P, L), the fastest kept (default 2)
  --bin      the folder of bench_context_parallel (default bin)
  after --: passed to every run (--layers, --hidden, --heads, --kv-heads, --head-dim,
             --intermediate, --vocab, --C, --S, --W, --ring-length)
USAGE
    exit 2
}
. "$(dirname "$0")/lib.sh"
bench_cmdline bench/context_parallel.sh "$@"
PS=1,2,4 LENGTHS=32768,65536,131072 REPS=2 BIN=bin EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; EXTRA=("$@"); break ;;
        --P | --lengths | --reps | --bin) ;;
        *) echo "context_parallel.sh: unknown option '$1'" >&2; usage ;;
    esac
    [ $# -ge 2 ] || { echo "context_parallel.sh: option '$1' needs a value" >&2; usage; }
    case "$1" in
        --P) PS=$2 ;;
        --lengths) LENGTHS=$2 ;;
        --reps) REPS=$2 ;;
        --bin) BIN=$2 ;;
    esac
    shift 2
done
COUNT='[1-9][0-9]*'
[[ $PS =~ ^1(,$COUNT)*$ ]] || { echo "context_parallel.sh: --P '$PS' is not a list of positive integers starting with 1" >&2; usage; }
[[ $LENGTHS =~ ^$COUNT(,$COUNT)*$ ]] || { echo "context_parallel.sh: --lengths '$LENGTHS' is not a list of positive integers" >&2; usage; }
[[ $REPS =~ ^$COUNT$ ]] || { echo "context_parallel.sh: --reps '$REPS' is not a positive integer" >&2; usage; }
PROG=$BIN/bench_context_parallel
[ -x "$PROG" ] || { echo "context_parallel.sh: no executable $PROG (run make bench, or give --bin)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "context_parallel.sh: needs mpirun (Open MPI)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
CORES=$(nproc)

load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
failed=0
for P in ${PS//,/ }; do
    threads=$((CORES / P))
    [ "$threads" -ge 1 ] || threads=1
    if ! OMP_NUM_THREADS=$threads mpirun --oversubscribe -x OMP_NUM_THREADS -np "$P" "$PROG" \
        --lengths "$LENGTHS" --reps "$REPS" --threads "$threads" --tsv "$TMP/rows.tsv" \
        "${EXTRA[@]}" >"$TMP/out.$P" 2>&1; then
        echo "context_parallel.sh: the run on P = $P ranks failed:" >&2
        cat "$TMP/out.$P" >&2
        failed=1
    fi
done
[ -s "$TMP/rows.tsv" ] || { echo "context_parallel.sh: no run produced numbers" >&2; exit 1; }

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
first=${PS%%,*}
echo "# Context parallelism: one sequence over P ranks (bench_context_parallel)"
echo
echo "- command: \`$CMDLINE\`"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); host CPU: ${cpu_model:-unknown}, $CORES cores," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 2^20 }' /proc/meminfo);" \
    "load average at start $load_start, at end $(cut -d ' ' -f 1-3 /proc/loadavg)"
sed -n 's/^model: /- model: /p; s/^machine: .*; one/- one/p' "$TMP/out.$first"
echo "- threads per rank: max(1, $CORES cores / P); P above $CORES: ranks oversubscribed"
echo "- MiB are per layer per step (forward + backward), bytes sent; \"total\" over the ranks," \
    "\"largest\" the rank that sends most; ring = what ring attention (the causal layers'" \
    "scheme, dist/cp_attn.c) sends for the same sequence, by its formula (checked against the" \
    "counters at --ring-length below)"
echo
echo "| L | P | block rows | summary MiB total: measured | formula | largest rank: measured |" \
    "formula | ring MiB total | ring largest rank | ring / summary: total | largest |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
sort -t $'\t' -k3,3n -k1,1n "$TMP/rows.tsv" | awk -F '\t' '
    function mib(b) { return b / 2^20 }
    function r(a, b) { return b > 0 ? sprintf("%.1fx", a / b) : "—" }
    { printf "| %d | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n",
        $3, $1, $4, mib($5), mib($6), mib($7), mib($8), mib($9), mib($10), r($9, $5), r($10, $7) }'
echo
echo "Step (forward + backward of the sequence; wall: the slowest rank's, CPU: all ranks'," \
    "MPI's waiting included) and memory per rank (peak RSS: the largest rank's VmHWM during" \
    "the step; growth: peak - RSS before the step; activations: arena peak + activation" \
    "gradients of ksa_model_plan for the rank's block). \"x P / (P = 1)\": per rank, times P," \
    "over P = 1's (the measured RSS of this script's P = 1 run; the plan of the whole" \
    "sequence at the same thread count, in the same run); 1.00 is a perfect 1/P."
echo
echo "| L | P | threads per rank | step wall s | CPU s | loss | peak RSS MiB | x P / (P = 1) |" \
    "RSS growth MiB | x P / (P = 1) | activations MiB (plan) | x P / (P = 1) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
sort -t $'\t' -k3,3n -k1,1n "$TMP/rows.tsv" | awk -F '\t' '
    $1 == 1 { rss1[$3] = $14; grow1[$3] = $14 - $15 }
    { row[NR] = $0 }
    END {
        for (i = 1; i <= NR; i++) {
            split(row[i], f, "\t")
            P = f[1]; L = f[3]; grow = f[14] - f[15]
            rr = (L in rss1) ? sprintf("%.3f", f[14] * P / rss1[L]) : "—"
            gr = (L in grow1) ? sprintf("%.3f", grow * P / grow1[L]) : "—"
            printf "| %d | %d | %d | %.2f | %.2f | %.6f | %.1f | %s | %.1f | %s | %.1f | %.3f |\n",
                L, P, f[2], f[11], f[12], f[13], f[14], rr, grow, gr, f[16], f[16] * P / f[17]
        }
    }'
echo
echo "Targets:"
sort -t $'\t' -k3,3n -k1,1n "$TMP/rows.tsv" | awk -F '\t' '
    $1 == 1 { next }
    { x = $16 * $1 / $17
      printf "- L = %d, P = %d: activation memory per rank %.3f x P = 1'"'"'s / P: %s\n", $3, $1, x,
          (x >= 0.8 && x <= 1.2) ? "within 20 %, holds" : sprintf("off by %+.0f %%, misses", 100 * (x - 1))
      if ($3 == 131072)
          printf "- L = 131072, P = %d: summary-layer traffic %.1fx below ring attention'"'"'s" \
              " (total; %.1fx for the largest rank), target >= 10x: %s\n", $1, $9 / $5, $10 / $7,
              ($9 / $5 >= 10) ? "holds" : "misses" }'
for P in ${PS//,/ }; do
    grep -q '^  counters equal to the formulas' "$TMP/out.$P" || continue
    echo "- P = $P: $(sed -n 's/^  counters equal to the formulas/counters equal to the formulas/p' "$TMP/out.$P")"
done
for P in ${PS//,/ }; do
    echo
    echo "## The run on P = $P ranks"
    echo
    echo '```'
    cat "$TMP/out.$P"
    echo '```'
done
exit $failed
