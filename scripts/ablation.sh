#!/bin/bash
# ablation.sh - what the summary tokens buy: Full, SWA, SCA, KSA and a 3:1 KSA hybrid trained
# with the same model size, data, token budget, seed and schedule, then scored on retrieval
# tasks at several lengths (docs/evaluation.md, "The ablation").
#
#   scripts/ablation.sh [--budget X] [--out DIR] [--report DIR] [--n N] [--threads T]
#                       [--variants full,swa,sca,ksa,hybrid] [--train-len 128]
#                       [--lengths 128,256,512,1024] [--eval-only] [--report-only]
#                       [--tasks passkey,niah-multikey,niah-multivalue,vartrack]
#
# Steps (every file goes under --out, default results/ablation_run; the report to --report,
# default results/):
#   1. training data, a mixture: examples of every --tasks task at the training length
#      (`ksa task`, noise filler, seed 1; a task longer than --train-len is left out), a copy
#      task (a random string, then the same string again: it makes the model learn to
#      retrieve, which passkey alone did not teach in the first runs) and the default corpus
#      (build/data/kjv.bin, made by `make`);
#   2. one configuration per variant: the same backbone and training keys, only the
#      attention keys differ (docs/configs.md, "Attention variants");
#   3. `ksa train` of each variant (steps = BASE_STEPS x budget), JSONL log, validation loss
#      on build/data/kjv.val.bin;
#   4. `ksa eval --task --json` of each variant on each --tasks task at each length (seed
#      1000: no training example; a length below the task's minimum is skipped), depths 0,
#      25, 50, 75, 100;
#   5. scripts/ablation_report.py: results/ablation.md (tables) and results/ablation_*.png.
# --eval-only redoes steps 4 and 5 with the checkpoints of an earlier run (other --tasks or
# --lengths); --report-only redoes step 5 from the files of an earlier run. Runs from the
# repository's root; needs bin/ksa (make) and Debian's python3-matplotlib for the plots.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=1
OUT=results/ablation_run
REPORT=results
VARIANTS=full,swa,sca,ksa,hybrid
LENGTHS=128,256,512,1024
TASKS=passkey,niah-multikey,niah-multivalue,vartrack
TRAIN_LEN=128
N_EVAL=20
THREADS=${OMP_NUM_THREADS:-2}
REPORT_ONLY=0
EVAL_ONLY=0
usage() {
    sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --budget) BUDGET=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    --variants) VARIANTS=$2; shift 2 ;;
    --lengths) LENGTHS=$2; shift 2 ;;
    --train-len) TRAIN_LEN=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --n) N_EVAL=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --report-only) REPORT_ONLY=1; shift ;;
    --eval-only) EVAL_ONLY=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "ablation.sh: unknown option '$1'" >&2; usage 2 ;;
    esac
done
case "$TRAIN_LEN" in
'' | *[!0-9]*) echo "ablation.sh: --train-len must be a whole number of tokens, got '$TRAIN_LEN'" >&2; exit 2 ;;
esac
case "$BUDGET" in
'' | *[!0-9.]* | *.*.*) echo "ablation.sh: --budget must be a positive number, got '$BUDGET'" >&2; exit 2 ;;
esac
for v in ${VARIANTS//,/ }; do
    case "$v" in full | swa | sca | ksa | hybrid) ;;
    *) echo "ablation.sh: unknown variant '$v' (full, swa, sca, ksa, hybrid)" >&2; exit 2 ;;
    esac
done

KSA=${KSA_BIN:-bin/ksa} # the tests run another build
PY=/usr/bin/python3
# The experiment (docs/evaluation.md says why these): a 4-layer byte-level model, chunks of
# C = 8 and a window of W = 4 chunks (32 tokens), the SWA window the same 32 tokens, trained
# at 128 tokens (the window covers a quarter of a training row), evaluated up to 1024.
BASE_STEPS=3000
C=8
W=4
S=1
STEPS=$("$PY" -c "import sys; print(max(1, round($BASE_STEPS * float(sys.argv[1]))))" "$BUDGET")
mkdir -p "$OUT/data" "$REPORT"

write_config() { # VARIANT FILE
    local attention
    case "$1" in
    full) attention="use_summary_attention = false" ;;
    swa) attention="use_summary_attention = false
layer_sliding_window = $((C * W))" ;;
    sca) attention="use_summary_attention = true
sliding_chunk_attention = true
summary_chunk_size = $C
summary_token_num = 0
summary_sliding_chunk_num = $W" ;;
    ksa | hybrid) attention="use_summary_attention = true
summary_chunk_size = $C
summary_token_num = $S
summary_sliding_chunk_num = $W
summary_independent_parameters = true
summary_layer_freq = $([ "$1" = hybrid ] && echo '"([1]*3+[0]*1)"' || echo 0)" ;;
    esac
    cat >"$2" <<EOF
# ablation variant $1 (scripts/ablation.sh): the backbone and training keys are shared
vocab_size = 257
hidden_size = 128
intermediate_size = 384
num_hidden_layers = 4
num_attention_heads = 4
num_key_value_heads = 2
head_dim = 32
max_position_embeddings = 8192
tie_word_embeddings = true
summary_chunk_position_ids_type = origin
summary_token_position_ids_type = last_chunk_slice_right
$attention

data_mix = mix.txt
val_data = $PWD/build/data/kjv.val.bin
seq_len = $TRAIN_LEN
global_batch = 16
micro_batch = 8
steps = $STEPS
lr = 3e-3
min_lr = 3e-4
lr_schedule = wsd
warmup_steps = 30
decay_steps = $((STEPS / 5))
weight_decay = 0.01
clip_value = 1.0
eval_every = $((STEPS / 4))
eval_batches = 8
seed = 1
EOF
}

evaluate() { # VARIANT: every task at every length, appended to eval.jsonl
    for t in ${TASKS//,/ }; do
        for len in ${LENGTHS//,/ }; do
            "$KSA" task --task "$t" --len "$len" --n 1 --out "$OUT/probe" --overwrite \
                --filler noise >/dev/null 2>&1 || continue # below the task's minimum
            "$KSA" eval --ckpt "$OUT/runs/$1" --task "$t" --len "$len" --n "$N_EVAL" \
                --filler noise --json --threads "$THREADS" 2>/dev/null |
                "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["variant"]=sys.argv[1]; print(json.dumps(r))' "$1" \
                    >>"$OUT/eval.jsonl"
        done
    done
}

if [ "$EVAL_ONLY" = 1 ]; then
    # 4. only: the checkpoints of an earlier run scored again (other tasks or lengths)
    [ -x "$KSA" ] || { echo "ablation.sh: $KSA is missing: run make first" >&2; exit 1; }
    for v in ${VARIANTS//,/ }; do
        [ -d "$OUT/runs/$v" ] || { echo "ablation.sh: --eval-only: $OUT/runs/$v is missing (no earlier run of $v)" >&2; exit 1; }
    done
    : >"$OUT/eval.jsonl"
    for v in ${VARIANTS//,/ }; do
        evaluate "$v"
        echo "== $v: evaluated ($(date +%T))"
    done
elif [ "$REPORT_ONLY" = 0 ]; then
    [ -x "$KSA" ] || { echo "ablation.sh: $KSA is missing: run make first" >&2; exit 1; }
    [ -f build/data/kjv.bin ] || { echo "ablation.sh: build/data/kjv.bin is missing: run make first" >&2; exit 1; }
    start=$(date +%s)
    # 1. training data: the tasks' examples, the copy task and the corpus
    mix_tasks=()
    for t in ${TASKS//,/ }; do
        if "$KSA" task --task "$t" --len "$TRAIN_LEN" --n 40000 --seed 1 --filler noise \
            --out "$OUT/data/$t" --overwrite >/dev/null 2>"$OUT/data.err"; then
            mix_tasks+=("$t")
        else
            echo "   $t left out of the training mixture: $(cat "$OUT/data.err")"
        fi
    done
    [ ${#mix_tasks[@]} -gt 0 ] || { echo "ablation.sh: no task fits in --train-len $TRAIN_LEN" >&2; exit 2; }
    "$PY" - "$OUT/data/copy" "$TRAIN_LEN" <<'PYEOF'
import sys
import numpy as np
# rows of L tokens: a random string of letters and digits, '|', the same string, end-of-text
prefix, L = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(1)
alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
half = (L - 2) // 2
rows = np.full((20000, L), 256, dtype="<u2")
for r in rows:
    s = alphabet[rng.integers(0, len(alphabet), half)]
    r[:half], r[half], r[half + 1:2 * half + 1] = s, ord("|"), s
rows.tofile(prefix + ".bin")
open(prefix + ".bin.meta", "w").write("uint16\n")
open(prefix + ".bin.tokenizer", "w").write("byte\n")
PYEOF
    # the tasks share 0.45 of the rows (passkey counting three times as much as each other
    # task: at 256 tokens an equal share taught nothing), the copy task 0.45, the corpus 0.1
    "$PY" - "$PWD/build/data/kjv.bin" "${mix_tasks[@]}" >"$OUT/mix.txt" <<'PYEOF'
import sys
corpus, tasks = sys.argv[1], sys.argv[2:]
parts = [3 if t == "passkey" else 1 for t in tasks]
for t, p in zip(tasks, parts):
    print("%s %.6g data/%s.bin" % (t, 0.45 * p / sum(parts), t))
print("copy 0.45 data/copy.bin")
print("kjv 0.1 " + corpus)
PYEOF
    # 2.-4. per variant: train, then evaluate every task at every length
    : >"$OUT/eval.jsonl"
    for v in ${VARIANTS//,/ }; do
        write_config "$v" "$OUT/$v.conf"
        echo "== $v: training $STEPS steps ($(date +%T))"
        rm -f "$OUT/$v.jsonl"
        "$KSA" train --config "$OUT/$v.conf" --out "$OUT/runs/$v" --overwrite --keep 1 \
            --log "$OUT/$v.jsonl" --threads "$THREADS" >"$OUT/$v.train.txt" 2>&1 ||
            { tail -5 "$OUT/$v.train.txt" >&2; exit 1; }
        tail -1 "$OUT/$v.train.txt"
        evaluate "$v"
        echo "   evaluated ($(date +%T))"
    done
    echo "ablation.sh: $(($(date +%s) - start)) s in all"
    echo "$(($(date +%s) - start))" >"$OUT/seconds"
fi
# 5. the report
"$PY" scripts/ablation_report.py --run "$OUT" --variants "$VARIANTS" --budget "$BUDGET" \
    --steps "$STEPS" --train-len "$TRAIN_LEN" --out "$REPORT"
