#!/bin/bash
# cpt_recipe.sh - continual pre-training of a causal model into KSA (KSA_SPEC §9, docs/cpt.md):
# the three stages from a causal checkpoint, the control the report implies, and a table.
#
#   scripts/cpt_recipe.sh [--causal CKPT] [--out DIR] [--report FILE] [--budget X]
#                         [--len L] [--n N] [--threads T]
#
# Every file goes under --out (default results/cpt_run); the table to --report (default
# results/cpt.md). Steps, at training length L (default 256) with configs/tiny.conf's model:
#   0. the causal model: --causal CKPT, or trained here on the default corpus (tiny.conf with
#      use_summary_attention = false, 600 x budget steps);
#   1. attention distillation (--distill, only the summary parameters train; 150 x budget
#      steps) from it, the KSA model's summary parameters copies of the shared ones;
#   2. annealing (summary_mix_qkv from 1 to 0 over the first half of 150 x budget steps,
#      every parameter training) from stage 1;
#   3. length extension: a new run at 4L (100 x budget steps) from stage 2;
#   control: the same token budget without distillation or annealing: --init-from the causal
#      checkpoint into the KSA model, 300 x budget steps at L, then 100 x budget at 4L.
# Each checkpoint is evaluated on build/data/kjv.val.bin at L and at 4L (`ksa eval
# --by-position`, 16 rows) and on the passkey task at L and 4L (`ksa eval --task`, N
# examples, seed 1000). Runs from the repository's root; needs bin/ksa (make).
set -euo pipefail
cd "$(dirname "$0")/.."

CAUSAL=""
OUT=results/cpt_run
REPORT=results/cpt.md
BUDGET=1
L=256
N_EVAL=20
THREADS=${OMP_NUM_THREADS:-2}
usage() {
    sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --causal) CAUSAL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --len) L=$2; shift 2 ;;
    --n) N_EVAL=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "cpt_recipe.sh: unknown option '$1'" >&2; usage 2 ;;
    esac
done
case "$L" in
'' | *[!0-9]*) echo "cpt_recipe.sh: --len must be a whole number of tokens, got '$L'" >&2; exit 2 ;;
esac
case "$BUDGET" in
'' | *[!0-9.]* | *.*.*) echo "cpt_recipe.sh: --budget must be a positive number, got '$BUDGET'" >&2; exit 2 ;;
esac
if [ -n "$CAUSAL" ] && [ ! -f "$CAUSAL" ]; then
    echo "cpt_recipe.sh: --causal '$CAUSAL' is not a file" >&2
    exit 2
fi

KSA=${KSA_BIN:-bin/ksa}
PY=/usr/bin/python3
export OMP_NUM_THREADS=$THREADS
steps() { "$PY" -c "import sys; print(max(2, round(int(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$BUDGET"; }
S0=$(steps 600)
S1=$(steps 150)
S2=$(steps 150)
S3=$(steps 100)
L4=$((4 * L))
mkdir -p "$OUT" "$(dirname "$REPORT")"
# the training keys every stage shares (tiny.conf's model, the default corpus)
COMMON=(--config configs/tiny.conf --seq-len "$L" --global-batch 16 --micro-batch 4
    --eval-every 0 --max-position-embeddings $((2 * L4)) --lr 1e-3 --min-lr 1e-4
    --lr-schedule wsd --warmup-steps 10 --seed 7)
LONG=(--seq-len "$L4" --global-batch 4 --micro-batch 1) # 4L: the same tokens per step
last() { ls "$1"/step_*.h5 | tail -n 1; }
run() { # NAME ARGS...: one stage into $OUT/NAME, its log $OUT/NAME.jsonl (skipped when done)
    local name=$1
    shift
    if [ -f "$OUT/$name/.done" ]; then
        return 0
    fi
    echo "== $name: ksa train $*"
    "$KSA" train "${COMMON[@]}" "$@" --out "$OUT/$name" --log "$OUT/$name.jsonl" --overwrite \
        >"$OUT/$name.out"
    touch "$OUT/$name/.done"
}

# 0. the causal model
if [ -z "$CAUSAL" ]; then
    run causal --use-summary-attention false --steps "$S0" --decay-steps $((S0 / 5))
    CAUSAL=$(last "$OUT/causal")
fi
# 1. distillation: only the summary parameters train
run stage1 --init-from "$CAUSAL" --distill --steps "$S1" --decay-steps $((S1 / 5))
# 2. annealing: summary q/k/v into the shared ones over the first half, everything trains
run stage2 --init-from "$(last "$OUT/stage1")" --summary-mix-qkv true \
    --summary-mix-start-iter 0 --summary-mix-end-iter $((S2 / 2)) --steps "$S2" \
    --decay-steps $((S2 / 5))
# 3. length extension: a new run at 4L
run stage3 --init-from "$(last "$OUT/stage2")" "${LONG[@]}" --summary-mix-qkv true \
    --summary-mix-start-iter 0 --summary-mix-end-iter 1 --steps "$S3" --decay-steps $((S3 / 5))
# control: the same tokens, plain fine-tuning into KSA, then the same extension
run control --init-from "$CAUSAL" --steps $((S1 + S2)) --decay-steps $(((S1 + S2) / 5))
run control4 --init-from "$(last "$OUT/control")" "${LONG[@]}" --steps "$S3" \
    --decay-steps $((S3 / 5))

# evaluation: validation loss by position at L and 4L, passkey accuracy at L and 4L
EVAL="$OUT/eval.jsonl"
: >"$EVAL"
for name in causal stage1 stage2 stage3 control control4; do
    if [ "$name" = causal ]; then ck=$CAUSAL; else ck=$(last "$OUT/$name"); fi
    for len in "$L" "$L4"; do
        "$KSA" eval --ckpt "$ck" --data build/data/kjv.val.bin --seq-len "$len" --batch 16 \
            --by-position --json --progress 0 >"$OUT/e.json"
        "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); r.update(model=sys.argv[2], len=int(sys.argv[3]), kind='loss'); print(json.dumps(r))" \
            "$OUT/e.json" "$name" "$len" >>"$EVAL"
        if "$KSA" eval --ckpt "$ck" --task passkey --len "$len" --n "$N_EVAL" --json \
            --progress 0 >"$OUT/t.json" 2>"$OUT/t.err"; then
            "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); r.update(model=sys.argv[2], len=int(sys.argv[3]), kind='task'); print(json.dumps(r))" \
                "$OUT/t.json" "$name" "$len" >>"$EVAL"
        else # a length too short for the task: reported, not fatal
            echo "passkey at $len: $(tail -n 1 "$OUT/t.err")" >&2
        fi
    done
done

# the table
"$PY" - "$OUT" "$EVAL" "$REPORT" "$L" "$S0" "$S1" "$S2" "$S3" "$CAUSAL" <<'PYEOF'
import json, os, sys
out, evalf, report, L = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
S0, S1, S2, S3, causal = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
rows = [json.loads(l) for l in open(evalf)]
def log(name):
    p = os.path.join(out, name + ".jsonl")
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")
models = ["causal", "stage1", "stage2", "stage3", "control", "control4"]
what = {"causal": "causal model (stage 0)", "stage1": "1: distillation", "stage2": "2: annealing",
        "stage3": "3: length extension (4L)", "control": "control: fine-tune at L",
        "control4": "control: extension (4L)"}
lines = ["# Continual pre-training into KSA: results of scripts/cpt_recipe.sh", "",
         "Training length L = %d; steps: causal %s, distillation %d, annealing %d, extension %d; "
         "control %d at L + %d at 4L (the same tokens). Causal checkpoint: %s." %
         (L, S0 if causal.startswith(out) else "given", S1, S2, S3, S1 + S2, S3, causal), "",
         "## Training loss per stage (mean of the first and last 10 % of steps)", "",
         "| stage | steps | loss first | loss last | terms at the end |", "|---|---|---|---|---|"]
for m in models:
    lg = log(m)
    if not lg:
        continue
    k = max(1, len(lg) // 10)
    end = lg[-1]
    terms = ""
    if "loss_attn" in end:
        terms = "ce %.4f, attn %.4g, kl %.4g" % (end["loss_ce"], end["loss_attn"], end["loss_kl"])
    if "summary_mix" in end:
        terms += ("; " if terms else "") + "summary mix %.2f" % end["summary_mix"]
    lines.append("| %s | %d | %.4f | %.4f | %s |" % (what[m], len(lg), mean([r["loss"] for r in lg[:k]]),
                                                    mean([r["loss"] for r in lg[-k:]]), terms))
for length in (L, 4 * L):
    lines += ["", "## Validation loss by target position at %d tokens (nats)" % length, ""]
    loss = {r["model"]: r for r in rows if r["kind"] == "loss" and r["len"] == length}
    buckets = next(iter(loss.values()))["by_position"]
    head = ["%d-%d" % (b["from"], b["to"] - 1) for b in buckets if b["to"] - b["from"] >= 16]
    lines.append("| model | all | " + " | ".join(head) + " |")
    lines.append("|---" * (len(head) + 2) + "|")
    for m in models:
        if m not in loss:
            continue
        r = loss[m]
        cells = ["%.4f" % b["loss"] for b in r["by_position"] if b["to"] - b["from"] >= 16]
        lines.append("| %s | %.4f | %s |" % (what[m], r["loss"], " | ".join(cells)))
lines += ["", "## Passkey accuracy (`ksa eval --task passkey`, seed 1000)", "",
          "| model | at %d | at %d |" % (L, 4 * L), "|---|---|---|"]
for m in models:
    acc = {r["len"]: r for r in rows if r["kind"] == "task" and r["model"] == m}
    if acc:
        lines.append("| %s | %s | %s |" % (what[m], *("%d/%d" % (acc[n]["correct"], acc[n]["n"])
                                                    if n in acc else "-" for n in (L, 4 * L))))
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
