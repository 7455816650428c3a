#!/bin/bash
# make_ckpt_seeds.sh KSA OUT - the seed corpus of the checkpoint harness (fuzz_ckpt.c), written
# by the program itself: OUT/model.h5 (`ksa init` of tests/fuzz/ckpt_seed.conf: a summary
# layer with independent summary parameters, and a causal layer), OUT/train.h5 (a training
# checkpoint after 2 steps: /optim and /train as well) and OUT/causal_untied.h5 (no summary
# attention, an untied head). Made at fuzz time: the training checkpoint is ~90 KB. The
# harness picks its reader by the input's size (fuzz_ckpt.c), so each file is also copied
# with 1 to 11 zero bytes appended (HDF5 ignores bytes after a file's end of data).
set -euo pipefail
ksa=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
mkdir -p "$out/work"
cp "$here/ckpt_seed.conf" "$out/work/seed.conf"
"$ksa" prepare --input "$here/ckpt_seed.conf" --out "$out/work/data.bin" --val-fraction 0 \
    >/dev/null 2>&1
"$ksa" init --config "$out/work/seed.conf" --out "$out/model.h5" >/dev/null
"$ksa" init --config "$out/work/seed.conf" --use-summary-attention false \
    --tie-word-embeddings false --out "$out/causal_untied.h5" >/dev/null
"$ksa" train --config "$out/work/seed.conf" --out "$out/work/run" --threads 1 >/dev/null 2>&1
mv "$out/work/run/step_00000002.h5" "$out/train.h5"
rm -rf "$out/work"
for name in model causal_untied train; do
    for pad in 1 2 3 4 5 6 7 8 9 10 11; do
        { cat "$out/$name.h5"; head -c "$pad" /dev/zero; } >"$out/${name}_pad$pad.h5"
    done
done
