#!/bin/bash
# test_cli.sh - end-to-end tests of the `ksa` command (run by `make test` with BIN set).
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}

gradcheck_passes_on_configs_that_switch_on_every_flag() {
    for conf in tests/configs/gc_*.conf; do
        "$KSA" gradcheck --config "$conf" --seq-len 13 --batch 2 >"$TMP/gc" ||
            { cat "$TMP/gc"; return 1; }
        grep -q "): ok$" "$TMP/gc"
    done
    # a tail chunk shorter than C and T < C (no summary rows at all)
    "$KSA" gradcheck --config tests/configs/gc_qkv_left.conf --seq-len 3 --batch 1 >/dev/null
}

gradcheck_has_an_absolute_floor_and_can_fail() {
    # rms_norm_eps 0.1 makes some gradients ~5e-5: their finite-difference floor (~1e-9
    # absolute) is above 1e-5 relative, so a relative criterion alone reports this correct
    # model FAILED; atol + rtol*max|num| passes it
    local gc=("$KSA" gradcheck --config tests/configs/gc_shared_tied_inner_zeros.conf
        --rms-norm-eps 0.1 --seed 3)
    "${gc[@]}" >"$TMP/gc" || { cat "$TMP/gc"; return 1; }
    grep -q "atol 1e-08, rtol 1e-05" "$TMP/gc"
    grep -q "): ok$" "$TMP/gc"
    # without the floor the same run fails, naming the tensors
    if "${gc[@]}" --atol 0 >"$TMP/gc0"; then
        echo "expected failure with --atol 0"; return 1
    fi
    grep -q "k_norm.weight .* FAIL$" "$TMP/gc0"
    grep -q "): FAILED$" "$TMP/gc0"
    expect_error "--rtol and --atol must be >= 0" "${gc[@]}" --rtol -1
}

gradcheck_selects_parameters_and_rejects_unknown_ones() {
    "$KSA" gradcheck --config tests/configs/gc_causal.conf --params model.norm.weight \
        lm_head.weight >"$TMP/gc"
    [ "$(grep -c '^model\.\|^lm_head' "$TMP/gc")" = 2 ]
    expect_error "the model has no parameter 'nope.weight'" \
        "$KSA" gradcheck --config tests/configs/gc_causal.conf --params nope.weight
}

configuration_errors_name_the_problem() {
    expect_error "unknown option or configuration key '--hidden-sise'" \
        "$KSA" inspect --config configs/tiny.conf --hidden-sise 3
    expect_error "num_attention_heads = 6 is not divisible by num_key_value_heads = 4" \
        "$KSA" inspect --config configs/tiny.conf --num-attention-heads 6 --num-key-value-heads 4
    printf 'hidden_size = 64\nnum_layers = 3\n' >"$TMP/bad.conf"
    expect_error "bad.conf:2: unknown configuration key 'num_layers'" \
        "$KSA" inspect --config "$TMP/bad.conf"
    expect_error "summary_sliding_chunk_num = '[1,2]' gives 2 values, num_hidden_layers is 4" \
        "$KSA" inspect --config configs/tiny.conf --summary-sliding-chunk-num "[1,2]"
}

# refused_cleanly MSG CMD...: CMD ends within 30 s with status 1 or 2 (no crash, no hang,
# no abort) and one line on stderr that holds MSG
refused_cleanly() {
    local msg=$1 rc=0
    shift
    timeout 30 "$@" >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
    if [ "$rc" != 1 ] && [ "$rc" != 2 ]; then
        echo "status $rc, expected 1 or 2: $*"
        cat "$TMP/stderr"
        return 1
    fi
    if [ "$(wc -l <"$TMP/stderr")" != 1 ] || ! grep -qF -- "$msg" "$TMP/stderr"; then
        echo "stderr is not the one line '$msg':"
        cat "$TMP/stderr"
        return 1
    fi
}

# sizes and counts beyond what the program supports are one clear line before anything is
# sized, allocated or looped over; so are config files with repeated keys or NUL bytes, and
# an option whose value was forgotten
hostile_values_are_refused_before_anything_is_allocated() {
    local big=4611686018427387904
    refused_cleanly "hidden_size = $big exceeds the supported 65536" \
        "$KSA" inspect --config configs/tiny.conf --hidden-size $big
    refused_cleanly "hidden_size = 1099511627776 exceeds the supported" \
        "$KSA" train --config configs/tiny.conf --hidden-size 1099511627776 --dry-run
    refused_cleanly "vocab_size = $big exceeds the supported" \
        "$KSA" inspect --config configs/tiny.conf --vocab-size $big
    refused_cleanly "intermediate_size = $big exceeds the supported" \
        "$KSA" train --config configs/tiny.conf --intermediate-size $big --dry-run
    refused_cleanly "num_attention_heads = $big exceeds the supported" \
        "$KSA" inspect --config configs/tiny.conf --num-attention-heads $big
    refused_cleanly "threads = 2147483648 exceeds the supported 1024" \
        "$KSA" train --config configs/tiny.conf --threads 2147483648 --dry-run
    refused_cleanly "threads = 4294967297 exceeds the supported 1024" \
        "$KSA" train --config configs/tiny.conf --threads 4294967297 --dry-run
    refused_cleanly "seq_len = 1000000000000 exceeds the supported" \
        "$KSA" train --config configs/tiny.conf --seq-len 1000000000000 --dry-run
    refused_cleanly "seq_len = 8193 exceeds max_position_embeddings = 8192" \
        "$KSA" train --config configs/tiny.conf --seq-len 8193 --dry-run
    # within every bound, but more memory than any machine of ours has (~200 GiB)
    refused_cleanly "more than its" "$KSA" train --config configs/tiny.conf --seq-len 16777216 \
        --max-position-embeddings 16777216 --global-batch 1 --micro-batch 1 --dry-run
    "$KSA" inspect --config configs/tiny.conf --seq-len 16777216 --max-position-embeddings \
        16777216 --micro-batch 16777216 >"$TMP/huge"
    grep -q "TiB of activations, too large to plan$" "$TMP/huge"
    refused_cleanly "--out needs a value, got the option '--dry-run'" \
        "$KSA" train --config configs/tiny.conf --out --dry-run
    [ ! -e --dry-run ]
    printf 'hidden_size = 64\nseq_len = 128\nhidden_size = 96\n' >"$TMP/twice.conf"
    refused_cleanly "twice.conf:3: key 'hidden_size' given twice (first at line 1)" \
        "$KSA" inspect --config "$TMP/twice.conf"
    printf 'hidden_size = 64\nseq_len = 1\0002\n' >"$TMP/nul.conf"
    refused_cleanly "nul.conf:2: the line holds a NUL byte" "$KSA" inspect --config "$TMP/nul.conf"
    # a FIFO as token file: refused at once, not opened and waited on
    mkfifo "$TMP/fifo.bin"
    refused_cleanly "token file '$TMP/fifo.bin' is not a regular file" \
        "$KSA" train --config configs/tiny.conf --data "$TMP/fifo.bin" --dry-run
    refused_cleanly "vocab_size 100 is too small for the byte-level tokenizer" \
        "$KSA" init --config configs/tiny.conf --vocab-size 100 --out "$TMP/v100.h5"
    [ ! -e "$TMP/v100.h5" ]
    # rows the file cannot hold: refused before they are allocated
    "$KSA" init --config configs/tiny.conf --out "$TMP/tiny.h5" >/dev/null
    refused_cleanly "1000000000000 sequential rows of seq_len 64" "$KSA" eval \
        --ckpt "$TMP/tiny.h5" --data build/data/kjv.bin --seq-len 64 --batch 1000000000000
}

inspect_prints_layers_parameters_and_memory_of_shipped_configs() {
    "$KSA" inspect --config configs/tiny.conf >"$TMP/i"
    grep -q "layers 0-2: summary W=4" "$TMP/i"
    grep -q "layer 3: causal bypass" "$TMP/i"
    "$KSA" inspect --config configs/ksa-1b9-hybrid.conf --seq-len 8192 >"$TMP/i"
    grep -q "# parameters: 2233051136" "$TMP/i"   # KSA_SPEC §1.2: about 2.23 B
    grep -q "layer 23: summary W=1024" "$TMP/i"
    "$KSA" inspect --config configs/small.conf >/dev/null
}

# A fixture of scripts/torch_reference.py with one row is a checkpoint plus the row's
# tokens: `ksa eval` on those tokens must give the reference loss and gradients.
eval_matches_the_reference_loss_and_gradients() {
    local fx=tests/refs/ksa_bypass_list_shared_tied.h5
    "$PY" - "$fx" "$TMP/row.bin" <<'PYEOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
f["inputs/tokens"][0].astype("<u2").tofile(sys.argv[2])
open(sys.argv[2] + ".meta", "w").write("uint16")
PYEOF
    local L
    L=$("$PY" -c "import h5py,sys; print(h5py.File('$fx','r')['inputs/tokens'].shape[1]-1)")
    "$KSA" eval --ckpt "$fx" --data "$TMP/row.bin" --seq-len "$L" --json \
        --grads-out "$TMP/g.h5" >"$TMP/eval.json"
    "$PY" - "$fx" "$TMP/eval.json" "$TMP/g.h5" "$L" <<'PYEOF'
import sys, json, h5py, numpy as np
ref = h5py.File(sys.argv[1], "r")
out = json.load(open(sys.argv[2]))
assert out["tokens"] == int(sys.argv[4]), out
want = float(ref["outputs/loss"][()])
assert abs(out["loss"] - want) <= 1e-5 * abs(want), (out["loss"], want)
g = h5py.File(sys.argv[3], "r")
names = list(ref["grads"].keys())
assert sorted(names) == sorted(g["grads"].keys())
for n in names:
    a, b = g["grads"][n][()], ref["grads"][n][()]
    assert a.shape == b.shape and a.dtype == np.float32, n
    m = np.abs(b).max()
    assert np.abs(a - b).max() <= 2e-3 * m + (0 if m else 0), n
print("eval matches the reference:", out)
PYEOF
    # the float64 build agrees to 1e-12: only a full-precision (%.17g) loss can show it
    # (the whole-file output, and the --batch output)
    "$BIN/ksa64" eval --ckpt "$fx" --data "$TMP/row.bin" --seq-len "$L" --json >"$TMP/eval64.json"
    "$BIN/ksa64" eval --ckpt "$fx" --data "$TMP/row.bin" --seq-len "$L" --batch 1 --json \
        >>"$TMP/eval64.json"
    "$PY" - "$fx" "$TMP/eval64.json" <<'PYEOF'
import sys, json, h5py
want = float(h5py.File(sys.argv[1], "r")["outputs/loss"][()])
got = [json.loads(line)["loss"] for line in open(sys.argv[2])]
assert len(got) == 2, got
for g in got:
    assert abs(g - want) <= 1e-12 * abs(want), (g, want)
PYEOF
}

eval_refuses_bad_input() {
    local fx=tests/refs/ksa_bypass_list_shared_tied.h5
    printf '\x05\x00\xc8\x00\x01\x00' >"$TMP/big.bin"      # ids 5, 200, 1 (vocab 97)
    echo uint16 >"$TMP/big.bin.meta"
    expect_error "big.bin" "$KSA" eval --ckpt "$fx" --data "$TMP/big.bin" --seq-len 2
    grep -q "200" "$TMP/stderr"
    printf '\x05\x00\x06\x00' >"$TMP/short.bin"
    echo uint16 >"$TMP/short.bin.meta"
    expect_error "short.bin" "$KSA" eval --ckpt "$fx" --data "$TMP/short.bin" --seq-len 8
    expect_error "nonexistent.h5" "$KSA" eval --ckpt "$TMP/nonexistent.h5" \
        --data "$TMP/short.bin" --seq-len 1
    expect_error "--ckpt, --data and --seq-len" "$KSA" eval --data "$TMP/short.bin"
}

# small_model: $TMP/small.h5, a freshly initialised KSA model over the byte vocabulary
# (vocab_size 257; C = 4, so 16-token rows have 4 chunks and a window of 2 chunks).
small_model() {
    cat >"$TMP/small.conf" <<'EOF'
vocab_size = 257
hidden_size = 16
intermediate_size = 24
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
head_dim = 4
use_summary_attention = true
summary_chunk_size = 4
summary_token_num = 1
summary_sliding_chunk_num = 2
summary_layer_freq = [1,0]
summary_independent_parameters = true
EOF
    "$KSA" init --config "$TMP/small.conf" --out "$TMP/small.h5" --seed 3 >/dev/null
}

# Two documents of 20 and 38 bytes: 60 tokens, 3 full rows of 16 (+ 11 tokens never
# targets); the first end-of-text (token 20) is a target of row 1, the second (token 59) is
# in the tail. So 48 targets, 47 of them bytes.
eval_without_batch_walks_the_whole_file() {
    small_model
    printf 'In the beginning God' >"$TMP/doc1.txt"
    printf 'created the heaven and the earth. And ' >"$TMP/doc2.txt"
    "$KSA" prepare --input "$TMP/doc1.txt" "$TMP/doc2.txt" --out "$TMP/docs.bin" \
        --val-fraction 0 >/dev/null 2>&1
    local e=("$KSA" eval --ckpt "$TMP/small.h5" --data "$TMP/docs.bin" --seq-len 16)
    "${e[@]}" --json >"$TMP/whole.json" 2>/dev/null
    "${e[@]}" --json --batch 3 --offset 0 >"$TMP/b3.json" 2>/dev/null
    for o in 0 16 32; do
        "${e[@]}" --json --batch 1 --offset $o 2>/dev/null
    done >"$TMP/rows.json"
    "${e[@]}" >"$TMP/whole.txt"
    grep -q "perplexity .*bits per byte .* over 48 tokens (47 target bytes" "$TMP/whole.txt"
    "$PY" - "$TMP/docs.bin" "$TMP/whole.json" "$TMP/b3.json" "$TMP/rows.json" <<'PYEOF'
import sys, json, math
import numpy as np
tok = np.fromfile(sys.argv[1], dtype="<u2")
assert open(sys.argv[1] + ".meta").read().strip() == "uint16"
L = 16
rows = (len(tok) - 1) // L
assert len(tok) == 60 and rows == 3, (len(tok), rows)
targets = tok[1 : rows * L + 1]
n_bytes = int((targets < 256).sum())
assert n_bytes == 47 and (targets == 256).sum() == 1, n_bytes
w = json.load(open(sys.argv[2]))
b3 = json.load(open(sys.argv[3]))
per_row = [json.loads(line)["loss"] for line in open(sys.argv[4])]
assert sorted(w) == ["bits_per_byte", "loss", "perplexity", "tokens"], w
assert w["tokens"] == rows * L == b3["tokens"], (w, b3)
close = lambda a, b, r: abs(a - b) <= r * abs(b)
assert close(w["loss"], b3["loss"], 1e-7), (w, b3)
assert close(w["loss"], sum(per_row) / 3, 1e-6), (w, per_row)
assert close(w["perplexity"], math.exp(w["loss"]), 1e-7), w
bpb = w["loss"] * w["tokens"] / math.log(2) / n_bytes
assert close(w["bits_per_byte"], bpb, 1e-7), (w, bpb)
assert 5 < w["bits_per_byte"] < 12, w  # an untrained model: near log2(257) ~ 8 per byte
print("whole file:", w)
PYEOF
    # unchanged with --batch: too many rows is an error; --offset needs --batch
    expect_error "docs.bin" "${e[@]}" --batch 4
    expect_error "--offset needs --batch" "${e[@]}" --offset 16
    expect_error "--batch must be at least 1" "${e[@]}" --batch 0
    expect_error "docs.bin' has 60 tokens, fewer than one row" \
        "$KSA" eval --ckpt "$TMP/small.h5" --data "$TMP/docs.bin" --seq-len 60
}

# tokens.py FILE N SEED [EOT_AT...]: N random byte tokens (uint16 with .meta), end-of-text at
# the given indices.
random_tokens() {
    "$PY" - "$@" <<'PYEOF'
import sys
import numpy as np
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tok = np.random.default_rng(seed).integers(0, 256, n).astype("<u2")
for i in sys.argv[4:]:
    tok[int(i)] = 256
tok.tofile(path)
open(path + ".meta", "w").write("uint16")
PYEOF
}

# --by-position against scripts/torch_reference.py (an independent float64 model) evaluated
# on the same rows: per bucket the mean of the per-target cross-entropies, the bits per byte
# (whole file), and the targets-weighted mean of the buckets equal to the overall loss.
# 68 tokens, L = 20: the whole file is 3 rows (the first target of each is end-of-text, so
# bucket [0, 1) has no byte); --batch 2 --offset 5 are 2 rows that share a token.
eval_by_position_matches_the_reference_per_target_losses() {
    small_model
    random_tokens "$TMP/t.bin" 68 7 1 21 41 30
    local e=(eval --ckpt "$TMP/small.h5" --data "$TMP/t.bin" --seq-len 20 --json)
    local b
    for b in ksa ksa64; do
        "$BIN/$b" "${e[@]}" >"$TMP/$b.plain.json" 2>/dev/null
        "$BIN/$b" "${e[@]}" --by-position >"$TMP/$b.whole.json" 2>/dev/null
        "$BIN/$b" "${e[@]}" --by-position --batch 2 --offset 5 >"$TMP/$b.batch.json" 2>/dev/null
    done
    "$PY" - "$TMP" <<'PYEOF'
import sys, json, math
import h5py, numpy as np, torch
sys.path.insert(0, "scripts")
import torch_reference as tr
d = sys.argv[1]
f = h5py.File(d + "/small.h5", "r")
m = tr.Model(tr.read_config(f))
P = {n: torch.tensor(f["params"][n][()], dtype=tr.DT) for n, _, _ in m.param_specs()}
tok = np.fromfile(d + "/t.bin", dtype="<u2").astype(np.int64)
L = 20
rows = {"whole": np.stack([tok[b * L : b * L + L + 1] for b in range((len(tok) - 1) // L)]),
        "batch": np.stack([tok[5 + b * L : 5 + b * L + L + 1] for b in range(2)])}
assert len(rows["whole"]) == 3
buckets = [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 20)]
for mode, r in rows.items():
    logits, _ = tr.forward(m, P, torch.tensor(r))
    tgt = torch.tensor(r[:, 1:])
    ce = -torch.log_softmax(logits, -1).gather(-1, tgt[..., None])[..., 0].numpy()  # [n, L]
    for build, tol in (("ksa64", 1e-12), ("ksa", 1e-5)):
        out = json.load(open(f"{d}/{build}.{mode}.json"))
        bp = out["by_position"]
        assert [(b["from"], b["to"]) for b in bp] == buckets, bp
        for b, (lo, hi) in zip(bp, buckets):
            assert b["targets"] == (hi - lo) * len(r), b
            want = ce[:, lo:hi].mean()
            assert abs(b["loss"] - want) <= tol * want, (build, mode, b, want)
            n_bytes = int((r[:, 1 + lo : 1 + hi] < 256).sum())
            if mode == "batch":
                assert sorted(b) == ["from", "loss", "targets", "to"], b
            elif n_bytes == 0:
                assert b["bits_per_byte"] is None and lo == 0, b
            else:
                bpb = ce[:, lo:hi].sum() / math.log(2) / n_bytes
                assert abs(b["bits_per_byte"] - bpb) <= tol * bpb, (build, b, bpb)
        mean = sum(b["targets"] * b["loss"] for b in bp) / out["tokens"]
        assert abs(mean - out["loss"]) <= 1e-12 * out["loss"], (build, mode, mean, out["loss"])
        assert abs(out["loss"] - ce.mean()) <= tol * ce.mean(), (build, mode, out["loss"])
    print(mode, "buckets agree with the reference")
# asking for the buckets leaves the loss as it was, bit for bit
for build in ("ksa", "ksa64"):
    plain = json.load(open(f"{d}/{build}.plain.json"))
    whole = json.load(open(f"{d}/{build}.whole.json"))
    assert plain == {k: v for k, v in whole.items() if k != "by_position"}, (plain, whole)
PYEOF
    # the text form: a table after the overall line, one row per bucket
    "$KSA" "${e[@]:0:7}" --by-position >"$TMP/table.txt"
    grep -q "^loss .* over 60 tokens" "$TMP/table.txt"
    [ "$(grep -cE '^\[[0-9]+, [0-9]+\) +[0-9]+ +[0-9.]+ +([0-9.]+|-)$' "$TMP/table.txt")" = 6 ]
    grep -qE '^\[16, 20\) +12 ' "$TMP/table.txt"
    expect_error "unexpected argument '3'" "$KSA" "${e[@]}" --by-position 3
}

# --progress S: at most one line per S seconds on stderr, none after the last row; stdout
# (one JSON line) unchanged. 8 rows of 16.
eval_prints_progress_on_stderr() {
    small_model
    random_tokens "$TMP/p.bin" 130 3
    local e=("$KSA" eval --ckpt "$TMP/small.h5" --data "$TMP/p.bin" --seq-len 16 --json)
    "${e[@]}" --progress 1e-9 >"$TMP/p.out" 2>"$TMP/p.err"
    "${e[@]}" --progress 0 >"$TMP/p0.out" 2>"$TMP/p0.err"
    "${e[@]}" >"$TMP/pd.out" 2>"$TMP/pd.err" # the default, 10 s: a fast run prints none
    "$PY" - "$TMP" <<'PYEOF'
import sys, re, json
d = sys.argv[1]
pat = re.compile(r"^ksa eval: rows (\d+)/(\d+) \| (\d+) tok/s \| \d+:\d\d:\d\d elapsed \| "
                 r"ETA \d+:\d\d:\d\d$")
lines = [l for l in open(d + "/p.err") if l.startswith("ksa eval: rows")]
got = [pat.match(l.rstrip("\n")) for l in lines]
assert all(got), lines
assert [int(g[1]) for g in got] == list(range(1, 8)), lines  # every row but the last
assert {int(g[2]) for g in got} == {8} and all(int(g[3]) > 0 for g in got), lines
for name in ("p0", "pd"):
    assert "rows" not in open(f"{d}/{name}.err").read(), name
outs = [open(f"{d}/{n}.out").read() for n in ("p", "p0", "pd")]
assert outs[0] == outs[1] == outs[2] and len(outs[0].splitlines()) == 1, outs
assert json.loads(outs[0])["tokens"] == 128
PYEOF
    expect_error "--progress must be >= 0" "${e[@]}" --progress -1
}

# --ckpt DIR: the highest step_%08ld.h5 of the folder (other files ignored), named on
# stderr (eval --json, sample) or stdout (eval); no lock taken, so a folder whose run holds
# its lock is read; an empty folder is an error naming it.
eval_and_sample_read_the_newest_checkpoint_of_a_folder() {
    small_model
    local d="$TMP/run"
    mkdir -p "$d" "$TMP/empty"
    cp "$TMP/small.h5" "$d/step_00000005.h5"
    "$KSA" init --config "$TMP/small.conf" --out "$d/step_00000012.h5" --seed 4 >/dev/null
    "$KSA" init --config "$TMP/small.conf" --out "$d/step_00000099.h5.tmp" --seed 5 >/dev/null
    random_tokens "$TMP/t.bin" 50 5
    local e=(eval --data "$TMP/t.bin" --seq-len 16 --json)
    "$KSA" "${e[@]}" --ckpt "$d" >"$TMP/dir.json" 2>"$TMP/dir.err"
    grep -qF "# checkpoint $d/step_00000012.h5 (the newest in $d)" "$TMP/dir.err"
    [ ! -e "$d/.ksa_lock" ] # nothing written into the folder
    "$KSA" "${e[@]}" --ckpt "$d/step_00000012.h5" >"$TMP/12.json" 2>"$TMP/12.err"
    must_fail grep -q "# checkpoint" "$TMP/12.err" # a file is used as given, silently
    "$KSA" "${e[@]}" --ckpt "$d/step_00000005.h5" >"$TMP/5.json" 2>/dev/null
    cmp "$TMP/dir.json" "$TMP/12.json"
    must_fail cmp -s "$TMP/dir.json" "$TMP/5.json"
    # a folder a training run holds (its lock taken) is read all the same
    flock "$d/.ksa_lock" "$KSA" eval --data "$TMP/t.bin" --seq-len 16 --ckpt "$d" >"$TMP/dir.txt"
    grep -qF "# checkpoint $d/step_00000012.h5 (the newest in $d)" "$TMP/dir.txt"
    local s=(sample --tokens 12 --temperature 0 --prompt "In the")
    flock "$d/.ksa_lock" "$KSA" "${s[@]}" --ckpt "$d" >"$TMP/dir.txt" 2>"$TMP/dir.err"
    grep -qF "# checkpoint $d/step_00000012.h5 (the newest in $d)" "$TMP/dir.err"
    "$KSA" "${s[@]}" --ckpt "$d/step_00000012.h5" >"$TMP/12.txt" 2>/dev/null
    "$KSA" "${s[@]}" --ckpt "$d/step_00000005.h5" >"$TMP/5.txt" 2>/dev/null
    cmp "$TMP/dir.txt" "$TMP/12.txt"
    must_fail cmp -s "$TMP/dir.txt" "$TMP/5.txt"
    expect_error "$TMP/empty: the folder holds no step_*.h5 checkpoint" "$KSA" "${e[@]}" --ckpt "$TMP/empty"
    expect_error "$TMP/empty: the folder holds no step_*.h5 checkpoint" "$KSA" sample --ckpt "$TMP/empty"
}

# L above max_position_embeddings is refused naming both numbers, as the reference model
# (scripts/torch_reference.py) refuses it; L equal to it is evaluated.
eval_refuses_a_seq_len_beyond_max_position_embeddings() {
    small_model
    "$KSA" init --config "$TMP/small.conf" --max-position-embeddings 16 --out "$TMP/m16.h5" \
        >/dev/null
    random_tokens "$TMP/t.bin" 40 9
    local e=("$KSA" eval --ckpt "$TMP/m16.h5" --data "$TMP/t.bin")
    "${e[@]}" --seq-len 16 --json >"$TMP/ok.json" 2>/dev/null
    expect_error "--seq-len 17 exceeds max_position_embeddings = 16" "${e[@]}" --seq-len 17
    grep -qF "$TMP/m16.h5" "$TMP/stderr"
    expect_error "--seq-len 17 exceeds" "${e[@]}" --seq-len 17 --batch 1
    "$PY" - "$TMP/m16.h5" <<'PYEOF'
import sys, h5py, torch
sys.path.insert(0, "scripts")
import torch_reference as tr
f = h5py.File(sys.argv[1], "r")
m = tr.Model(tr.read_config(f))
P = {n: torch.tensor(f["params"][n][()], dtype=tr.DT) for n, _, _ in m.param_specs()}
tr.forward(m, P, torch.zeros(1, 17, dtype=torch.long))  # L = 16 runs
try:
    tr.forward(m, P, torch.zeros(1, 18, dtype=torch.long))  # L = 17 is refused
    raise SystemExit("the reference ran L = 17")
except ValueError as e:
    assert "max_position_embeddings 16" in str(e), e
PYEOF
}

sample_is_deterministic_and_continues_the_prompt() {
    small_model
    local s=("$KSA" sample --ckpt "$TMP/small.h5" --tokens 20)
    "${s[@]}" --temperature 0 >"$TMP/g1" 2>/dev/null
    "${s[@]}" --temperature 0 --seed 5 >"$TMP/g2" 2>/dev/null
    cmp "$TMP/g1" "$TMP/g2"
    [ "$(stat -c %s "$TMP/g1")" -le 20 ]
    "${s[@]}" --temperature 1 --top-k 0 --seed 7 >"$TMP/t1" 2>/dev/null
    "${s[@]}" --temperature 1 --top-k 0 --seed 7 >"$TMP/t2" 2>/dev/null
    cmp "$TMP/t1" "$TMP/t2"
    "${s[@]}" --temperature 0 --prompt "In the beginning" >"$TMP/p" 2>"$TMP/p.err"
    [ "$(head -c 16 "$TMP/p")" = "In the beginning" ]
    [ "$(stat -c %s "$TMP/p")" -le 36 ]
    grep -q "at most 20 new tokens, temperature 0," "$TMP/p.err"
    must_fail grep -q "endoftext" "$TMP/g1" "$TMP/t1" "$TMP/p"
    "${s[@]}" --tokens 0 --prompt "abc" >"$TMP/p0" 2>/dev/null
    [ "$(cat "$TMP/p0")" = "abc" ]
    # a checkpoint of another tokenizer's small vocabulary (ksa init refuses to write one)
    expect_error "vocab_size 61 is too small" "$KSA" sample --ckpt tests/refs/causal_plain.h5
    expect_error "vocab_size 19 is too small" "$KSA" init --config tests/configs/gc_causal.conf \
        --out "$TMP/v19.h5"
    [ ! -e "$TMP/v19.h5" ]
    expect_error "--ckpt FILE|DIR is required" "$KSA" sample --tokens 3
    expect_error "--temperature must be finite and >= 0" "${s[@]}" --temperature -1
}

# Text mode: stdout is exactly the prompt's bytes and then the generated bytes, the ids that
# --json reports for the same options; the statistics go to stderr. --greedy is
# --temperature 0, --tokens is --max-new-tokens.
sample_prints_the_prompt_then_the_ids_that_json_reports() {
    small_model
    local s=("$KSA" sample --ckpt "$TMP/small.h5" --prompt "In the beginning")
    "${s[@]}" --max-new-tokens 60 --top-p 0.9 --seed 3 >"$TMP/t.out" 2>"$TMP/t.err"
    "${s[@]}" --max-new-tokens 60 --top-p 0.9 --seed 3 --json >"$TMP/t.json" 2>"$TMP/t.jerr"
    "$PY" - "$TMP/t.out" "$TMP/t.json" <<'PYEOF'
import json, sys
out = open(sys.argv[1], "rb").read()
j = json.load(open(sys.argv[2]))
prompt = b"In the beginning"
assert j["prompt_ids"] == list(prompt), j["prompt_ids"]
assert len(j["generated_ids"]) == 60, j
assert all(0 <= i < 256 for i in j["generated_ids"]), j["generated_ids"]
assert out == prompt + bytes(j["generated_ids"]), (out, j["generated_ids"])
assert j["stop_reason"] == "max_new_tokens" and j["stop_id"] is None, j
assert j["options"] == {"max_new_tokens": 60, "temperature": 0.8, "top_k": 40, "top_p": 0.9,
                        "seed": 3}, j["options"]
PYEOF
    [ ! -s "$TMP/t.jerr" ] # JSON mode: the statistics are in the object
    grep -q "^ksa sample: at most 60 new tokens, temperature 0.8, top-k 40, top-p 0.9, seed 3: 60 generated, stop: max_new_tokens$" "$TMP/t.err"
    grep -q "^ksa sample: prompt 16 tokens, prefill [0-9.]* s; decode 59 tokens in [0-9.]* s, [0-9.]* tokens/s" "$TMP/t.err"
    grep -q "^ksa sample: KV cache [0-9]* bytes allocated, [0-9]* live; a causal cache would hold [0-9]* bytes$" "$TMP/t.err"
    must_fail grep -q "ksa sample" "$TMP/t.out"
    # a different top-p draws other tokens
    "${s[@]}" --max-new-tokens 60 --top-p 0.3 --seed 3 >"$TMP/p3.out" 2>/dev/null
    must_fail cmp -s "$TMP/t.out" "$TMP/p3.out"
    # --greedy = --temperature 0, whatever --temperature says; --tokens = --max-new-tokens
    "${s[@]}" --tokens 25 --temperature 0 >"$TMP/g0" 2>/dev/null
    "${s[@]}" --max-new-tokens 25 --greedy --temperature 1.5 --seed 9 >"$TMP/g1" 2>/dev/null
    cmp "$TMP/g0" "$TMP/g1"
    "${s[@]}" --tokens 25 --seed 4 >"$TMP/a0" 2>/dev/null
    "${s[@]}" --max-new-tokens 25 --seed 4 >"$TMP/a1" 2>/dev/null
    cmp "$TMP/a0" "$TMP/a1"
    [ "$(stat -c %s "$TMP/a0")" = 41 ]
    "$KSA" sample --help >"$TMP/help"
    grep -q "^  --tokens N  .*alias" "$TMP/help"
}

# --json: the ids, the text of the ids as a JSON string (valid UTF-8 as it is, quotes,
# backslashes and control bytes escaped, any other byte as \u00XX), the stop reason and the
# statistics; a prompt read with --prompt-file holds every kind of byte.
sample_json_holds_ids_text_stop_reason_and_statistics() {
    small_model
    printf 'say "hi" \\ back\tslash\n\x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac \xff\xc3( \xed\xa0\x80.' \
        >"$TMP/prompt.bin"
    "$KSA" sample --ckpt "$TMP/small.h5" --prompt-file "$TMP/prompt.bin" --max-new-tokens 200 \
        --temperature 1.3 --top-k 0 --json >"$TMP/s.json" 2>"$TMP/s.err"
    [ ! -s "$TMP/s.err" ]
    "$PY" - "$TMP/s.json" "$TMP/prompt.bin" <<'PYEOF'
import codecs, json, sys
raw = open(sys.argv[1], "rb").read()
assert raw.count(b"\n") == 1 and raw.endswith(b"}\n"), raw[-40:]
j = json.loads(raw)
prompt = open(sys.argv[2], "rb").read()
# the bytes that are not valid UTF-8 stand for themselves as code points U+0000 ... U+00FF
codecs.register_error("as_code_points",
                      lambda e: ("".join(chr(b) for b in e.object[e.start:e.end]), e.end))
def text_of(ids):
    return bytes(ids).decode("utf-8", "as_code_points")
assert j["prompt_ids"] == list(prompt), j["prompt_ids"]
assert j["prompt"] == text_of(prompt), (j["prompt"], text_of(prompt))
assert "café €" in j["prompt"] and "\xff\xc3(" in j["prompt"], j["prompt"]
ids = j["generated_ids"]
assert len(ids) == 200 and all(0 <= i < 256 for i in ids), ids
assert j["text"] == text_of(ids), (j["text"], text_of(ids))
assert any(i < 32 for i in ids) and any(i >= 128 for i in ids), ids  # escapes were needed
assert j["stop_reason"] == "max_new_tokens" and j["stop_id"] is None, j
s = j["stats"]
assert s["prompt_tokens"] == len(prompt) and s["generated_tokens"] == 200, s
assert s["decode_steps"] == 199 and s["decode_tokens"] == 199, s
assert s["prefill_seconds"] > 0 and s["decode_seconds"] > 0 and s["decode_tokens_per_s"] > 0, s
assert 0 < s["cache_live_bytes"] <= s["cache_allocated_bytes"], s
# 2 layers, 2 kv heads of 4, float32, keys and values: 64 bytes per token and layer; the
# summary layer keeps the tail and 2 chunks of text and 1 summary row per chunk
T = len(prompt) + 199
assert s["causal_cache_bytes"] == 2 * T * 64, (s, T)
assert s["cache_live_bytes"] == (T + T % 4 + 8 + T // 4) * 64, (s, T)
assert s["max_position_embeddings"] == 131072, s
print("json ok:", len(raw), "bytes,", s)
PYEOF
    # the same options in text mode print the same ids
    "$KSA" sample --ckpt "$TMP/small.h5" --prompt-file "$TMP/prompt.bin" --max-new-tokens 200 \
        --temperature 1.3 --top-k 0 >"$TMP/s.out" 2>/dev/null
    "$PY" - "$TMP/s.json" "$TMP/s.out" "$TMP/prompt.bin" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
out, prompt = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
assert out == prompt + bytes(j["generated_ids"]), out
PYEOF
}

# --prompt-file: its bytes exactly (NUL included) are the prompt; a file holding the text of
# --prompt gives the same output; an empty file is no prompt.
sample_reads_the_prompt_from_a_file() {
    small_model
    local s=("$KSA" sample --ckpt "$TMP/small.h5" --max-new-tokens 30 --seed 8)
    printf 'And God said, ' >"$TMP/p.txt"
    "${s[@]}" --prompt "And God said, " >"$TMP/arg.out" 2>/dev/null
    "${s[@]}" --prompt-file "$TMP/p.txt" >"$TMP/file.out" 2>/dev/null
    cmp "$TMP/arg.out" "$TMP/file.out"
    printf 'a\x00b\x00' >"$TMP/nul.bin"
    "${s[@]}" --prompt-file "$TMP/nul.bin" >"$TMP/nul.out" 2>/dev/null
    cmp -n 4 "$TMP/nul.bin" "$TMP/nul.out"
    [ "$(stat -c %s "$TMP/nul.out")" = 34 ]
    : >"$TMP/empty.txt"
    "${s[@]}" --prompt-file "$TMP/empty.txt" >"$TMP/e1.out" 2>/dev/null
    "${s[@]}" >"$TMP/e2.out" 2>/dev/null
    cmp "$TMP/e1.out" "$TMP/e2.out"
    "${s[@]}" --prompt-file <(printf 'And God said, ') >"$TMP/pipe.out" 2>/dev/null
    cmp "$TMP/arg.out" "$TMP/pipe.out"
}

# A sequence holds at most max_position_embeddings tokens, prompt included: generation stops
# there, and says so (stderr; "stop_reason" in JSON).
sample_stops_at_max_position_embeddings() {
    small_model
    "$KSA" init --config "$TMP/small.conf" --max-position-embeddings 16 --out "$TMP/m16.h5" \
        >/dev/null
    local s=("$KSA" sample --ckpt "$TMP/m16.h5" --prompt "0123456789")
    "${s[@]}" --max-new-tokens 20 >"$TMP/o" 2>"$TMP/e"
    [ "$(stat -c %s "$TMP/o")" = 16 ]
    grep -q "stopped at max_position_embeddings = 16 tokens" "$TMP/e"
    grep -q "6 generated, stop: max_position_embeddings$" "$TMP/e"
    "${s[@]}" --max-new-tokens 20 --json >"$TMP/j"
    "$PY" - "$TMP/j" "$TMP/o" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["stop_reason"] == "max_position_embeddings", j
assert len(j["generated_ids"]) == 6 and j["stats"]["max_position_embeddings"] == 16, j
assert open(sys.argv[2], "rb").read() == b"0123456789" + bytes(j["generated_ids"])
PYEOF
    # exactly up to the limit: stopped by --max-new-tokens, nothing said about the context
    "${s[@]}" --max-new-tokens 6 >"$TMP/o6" 2>"$TMP/e6"
    cmp "$TMP/o" "$TMP/o6"
    must_fail grep -q "stopped at max_position_embeddings" "$TMP/e6"
}

# Each bad input: a non-zero exit and one line naming the problem, nothing on stdout.
sample_refuses_bad_input() {
    small_model
    "$KSA" init --config "$TMP/small.conf" --max-position-embeddings 16 --out "$TMP/m16.h5" \
        >/dev/null
    local s=("$KSA" sample --ckpt "$TMP/small.h5")
    mkdir -p "$TMP/dir"
    echo "not an HDF5 file" >"$TMP/text.h5"
    "$PY" - "$TMP/small.h5" "$TMP" <<'PYEOF'
import shutil, sys, h5py, numpy as np
with h5py.File(sys.argv[2] + "/nonksa.h5", "w") as f:
    f["x"] = np.zeros(3, "f4")
shutil.copy(sys.argv[1], sys.argv[2] + "/noconfig.h5")
with h5py.File(sys.argv[2] + "/noconfig.h5", "a") as f:
    del f["config"]
PYEOF
    local cases=(
        "--top-p must be in (0, 1]|--top-p 0"
        "--top-p must be in (0, 1]|--top-p 1.5"
        "--top-p must be in (0, 1]|--top-p nan"
        "--temperature must be finite and >= 0|--temperature -1"
        "--temperature must be finite and >= 0|--temperature inf"
        "--temperature must be finite and >= 0|--temperature nan"
        "--max-new-tokens: '-1' is not a non-negative integer|--max-new-tokens -1"
        "--tokens: '-2' is not a non-negative integer|--tokens -2"
        "--top-k: '-1' is not a non-negative integer|--top-k -1"
        "give --prompt or --prompt-file, not both|--prompt a --prompt-file $TMP/text.h5"
        "cannot read prompt file '$TMP/missing.txt': No such file or directory|--prompt-file $TMP/missing.txt"
        "cannot read prompt file '$TMP/dir': Is a directory|--prompt-file $TMP/dir"
    )
    local c msg args
    for c in "${cases[@]}"; do
        msg="${c%%|*}"
        read -r -a args <<<"${c#*|}"
        expect_error "$msg" "${s[@]}" "${args[@]}"
        [ "$(wc -l <"$TMP/stderr")" = 1 ]
        [ ! -s "$TMP/stdout" ]
    done
    expect_error "--ckpt FILE|DIR is required" "$KSA" sample --prompt abc
    expect_error "the prompt has 17 tokens, more than the model's max_position_embeddings = 16" \
        "$KSA" sample --ckpt "$TMP/m16.h5" --prompt "0123456789abcdefg"
    [ ! -s "$TMP/stdout" ]
    "$KSA" sample --ckpt "$TMP/m16.h5" --prompt "0123456789abcdef" >"$TMP/full" 2>"$TMP/full.err"
    [ "$(cat "$TMP/full")" = "0123456789abcdef" ] # 16 tokens: nothing left to generate
    grep -q "0 generated, stop: max_position_embeddings$" "$TMP/full.err"
    local f bad=(
        "missing.h5|cannot open checkpoint $TMP/missing.h5: No such file or directory"
        "text.h5|checkpoint $TMP/text.h5 is not an HDF5 file"
        "nonksa.h5|no root attribute 'format': not a ksa checkpoint"
        "noconfig.h5|checkpoint $TMP/noconfig.h5: no /config group"
    )
    for c in "${bad[@]}"; do
        f="$TMP/${c%%|*}" msg="${c#*|}"
        expect_error "$msg" "$KSA" sample --ckpt "$f" --prompt abc
        grep -qF "$f" "$TMP/stderr"
        [ ! -s "$TMP/stdout" ]
    done
    # stdout that cannot be written
    if "${s[@]}" --prompt abc --max-new-tokens 3 >/dev/full 2>"$TMP/full.err"; then
        echo "expected failure writing to /dev/full"; return 1
    fi
    grep -q "cannot write the sample: No space left on device" "$TMP/full.err"
    if "${s[@]}" --prompt abc --max-new-tokens 3 --json >/dev/full 2>"$TMP/full.err"; then
        echo "expected failure writing JSON to /dev/full"; return 1
    fi
    grep -q "cannot write the output: No space left on device" "$TMP/full.err"
}

inspect_prints_a_checkpoint() {
    small_model
    "$KSA" inspect "$TMP/small.h5" >"$TMP/i"
    grep -qx 'format = "ksa-checkpoint"' "$TMP/i"
    grep -qx 'format_version = 2' "$TMP/i"
    grep -qx 'summary_layer_freq = "\[1,0\]"' "$TMP/i"
    grep -qx 'layer 0: summary W=2' "$TMP/i"
    grep -qx 'layer 1: causal bypass' "$TMP/i"
    grep -q '^# parameters: 12688 (0.013 M) in 29 tensors$' "$TMP/i"
    grep -qE '^model\.layers\.0\.self_attn\.k_proj_summary\.weight +\[8, 16\] +float32$' "$TMP/i"
    grep -qE '^lm_head\.weight +\[257, 16\] +float32$' "$TMP/i"
    grep -qx 'type = "byte"' "$TMP/i"
    grep -qx '# training state: absent (no /train: not a training checkpoint)' "$TMP/i"
    # the count of the configuration the file was made from
    "$KSA" inspect --config "$TMP/small.conf" | grep -q '^# parameters: 12688 '
    expect_error "a checkpoint takes no options" "$KSA" inspect "$TMP/small.h5" --seq-len 8
}

# Each bad file must make `ksa inspect` and `ksa eval` fail naming the problem, and no
# file may change. The corrupted file has the object header of the parameter nearest the
# middle of the file zeroed (inspect reads no values: it sees damaged metadata; eval reads
# them too). Edits made with h5py keep every checksum right but the one they test.
bad_checkpoint_files_are_refused_by_eval_and_inspect() {
    small_model
    local d="$TMP/bad" good="$TMP/small.h5"
    mkdir -p "$d"
    printf '\x05\x00\x06\x00\x07\x00\x08\x00\x09\x00' >"$d/tok.bin"
    echo uint16 >"$d/tok.bin.meta"
    "$KSA" eval --ckpt "$good" --data "$d/tok.bin" --seq-len 4 >/dev/null # the data is fine
    local size
    size=$(stat -c %s "$good")
    head -c $((size / 2)) "$good" >"$d/truncated.h5"
    local off name
    read -r off name < <("$PY" - "$good" <<'PYEOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
mid = f.id.get_filesize() // 2
addr = {n: h5py.h5o.get_info(d.id).addr for n, d in f["params"].items()}
name = min(addr, key=lambda n: abs(addr[n] - mid))
print(addr[name], name)
PYEOF
)
    cp "$good" "$d/corrupted.h5"
    dd if=/dev/zero of="$d/corrupted.h5" bs=1 seek="$off" count=64 conv=notrunc status=none
    "$PY" - "$good" "$d" <<'PYEOF'
import sys, shutil, h5py, numpy as np
sys.path.insert(0, "scripts")
import ckpt_checksum
good, d = sys.argv[1], sys.argv[2]
with h5py.File(d + "/nonksa.h5", "w") as f:
    f["x"] = np.zeros(3, "f4")
def edited(name, change):
    shutil.copy(good, d + "/" + name)
    with h5py.File(d + "/" + name, "a") as f:
        change(f)
edited("version.h5", lambda f: f.attrs.modify("format_version", 4))
def reshape(f):
    del f["params/model.layers.1.mlp.up_proj.weight"]
    f["params/model.layers.1.mlp.up_proj.weight"] = np.zeros((16, 24), "f4")
    ckpt_checksum.update(f["params/model.layers.1.mlp.up_proj.weight"])
edited("shape.h5", reshape)
edited("no_dataset.h5", lambda f: f.__delitem__("params/lm_head.weight"))
def poison(f):  # a NaN, with the checksum made right: only the value is wrong
    d = f["params/model.layers.0.mlp.down_proj.weight"]
    a = d[()]
    a[2, 5] = np.nan
    d[...] = a
    ckpt_checksum.update(d)
edited("nan.h5", poison)
shutil.copy(good, d + "/flipped.h5")  # one stored value changed behind HDF5's back
with h5py.File(good, "r") as f:
    at = f["params/model.norm.weight"].id.get_offset() + 2
with open(d + "/flipped.h5", "r+b") as g:
    g.seek(at)
    b = g.read(1)[0] ^ 0x01
    g.seek(at)
    g.write(bytes([b]))
PYEOF
    md5sum "$good" "$d"/*.h5 >"$TMP/sums"
    local cases=(
        "missing.h5|cannot open checkpoint $d/missing.h5: No such file or directory"
        "truncated.h5|truncated file"
        "corrupted.h5|damaged: cannot open /params/$name"
        "nonksa.h5|no root attribute 'format': not a ksa checkpoint"
        "version.h5|format_version 4 is newer than this program reads (3)"
        "shape.h5|/params/model.layers.1.mlp.up_proj.weight has shape [16, 24], the configuration needs [24, 16]"
        "no_dataset.h5|/params/lm_head.weight is missing (the configuration needs [257, 16])"
        "nan.h5|dataset /params/model.layers.0.mlp.down_proj.weight holds a non-finite value (nan) at element [2, 5]"
        "flipped.h5|damaged: dataset /params/model.norm.weight does not match its checksum"
    )
    local c f msg
    for c in "${cases[@]}"; do
        f="$d/${c%%|*}" msg="${c#*|}"
        case "$f" in
        *nan.h5 | *flipped.h5) # values: inspect reads none, --verify reads them all
            "$KSA" inspect "$f" >"$TMP/stdout"
            grep -qx '# values: not read (ksa inspect --verify FILE reads every one against its dataset.s checksum)' "$TMP/stdout"
            expect_error "$msg" "$KSA" inspect --verify "$f"
            grep '^PROBLEM: ' "$TMP/stdout" | grep -qF "$msg"
            ;;
        *)
            expect_error "$msg" "$KSA" inspect "$f"
            [ ! -s "$TMP/stdout" ] # nothing printed but the error
            ;;
        esac
        grep -qF "$f" "$TMP/stderr"
        expect_error "$msg" "$KSA" eval --ckpt "$f" --data "$d/tok.bin" --seq-len 4
        grep -qF "$f" "$TMP/stderr"
    done
    md5sum -c --quiet "$TMP/sums"
    [ ! -e "$d/missing.h5" ]
    [ "$(ls "$d" | grep -c '\.h5$')" = 8 ] # nothing created either
}

# --name=value is --name value, for options, keys, lists and the configuration file
options_and_keys_take_an_equals_sign() {
    "$KSA" inspect --config configs/tiny.conf --hidden-size 64 --rope_theta 500 >"$TMP/space"
    "$KSA" inspect --config=configs/tiny.conf --hidden-size=64 --rope-theta=500 >"$TMP/eq"
    # the same output but the program's resident memory, measured by each process
    cmp <(grep -v "^  program \|^  total per rank " "$TMP/space") \
        <(grep -v "^  program \|^  total per rank " "$TMP/eq")
    grep -qx "hidden_size = 64" "$TMP/eq"
    grep -qx "rope_theta = 500" "$TMP/eq"
    "$KSA" gradcheck --config=tests/configs/gc_causal.conf --params=model.norm.weight \
        lm_head.weight --sample=2 >"$TMP/gc"
    [ "$(grep -c '^model\.\|^lm_head' "$TMP/gc")" = 2 ]
    # an empty value after '=' is a value
    "$KSA" train --config configs/tiny.conf --val-data= --dry-run >"$TMP/plan"
    grep -qx "val_data = " "$TMP/plan"
    expect_error "--dry-run takes no value" "$KSA" train --config configs/tiny.conf --dry-run=yes
    expect_error "--steps needs a value" "$KSA" train --config configs/tiny.conf --steps
}

# An unknown name is reported with the nearest known names, or none when nothing is near.
unknown_names_get_the_nearest_known_ones() {
    expect_error "'--hidden-sise' (did you mean --hidden-size?)" \
        "$KSA" inspect --config configs/tiny.conf --hidden-sise 3
    expect_error "'--seq' (did you mean --seq-len?)" "$KSA" train --config configs/tiny.conf --seq 3
    expect_error "'--beta3' (did you mean --beta1 or --beta2?)" \
        "$KSA" train --config configs/tiny.conf --beta3=0.9
    expect_error "'--outt' (did you mean --out?)" "$KSA" init --outt x.h5
    expect_error "unknown option '--val' (did you mean --val-fraction?)" \
        "$KSA" prepare --input a.txt --val 0.1
    expect_error "unknown option '--xyzzy'" "$KSA" sample --xyzzy 1
    must_fail grep -q "did you mean" "$TMP/stderr"
    printf 'hiden_size = 64\n' >"$TMP/typo.conf"
    expect_error "typo.conf:1: unknown configuration key 'hiden_size' (did you mean 'hidden_size'?)" \
        "$KSA" inspect --config "$TMP/typo.conf"
}

# `ksa COMMAND --help`: the command's options, and every key it takes with its default (the
# value the configuration dump shows when nothing is given) and a description.
every_command_lists_its_options_and_keys_in_help() {
    "$KSA" inspect >"$TMP/model_defaults"
    "$KSA" train --data build/data/kjv.bin --dry-run >"$TMP/all_defaults"
    local c
    for c in eval init inspect gradcheck train prepare sample; do
        "$KSA" "$c" --help >"$TMP/help_$c"
        "$KSA" "$c" -h | cmp - "$TMP/help_$c"
    done
    "$PY" - "$TMP" <<'PYEOF'
import re, sys
d = sys.argv[1]
options = {
    "eval": "ckpt data seq-len batch offset dtype grads-out json threads context-parallel help",
    "init": "config out seed help",
    "inspect": "config help",
    "gradcheck": "config params seq-len batch seed sample progress rtol atol help",
    "train": "config dry-run resume init-from summary-init sample prompt verbose help overwrite "
             "allow-schedule-change remeasure-peak",
    "prepare": "input out val-fraction seed vocab-size help",
    "sample": "ckpt prompt prompt-file max-new-tokens tokens temperature top-k top-p seed greedy "
              "json threads help",
}
def dump(path):  # key = value lines of a configuration dump; "# key = (unset)" as (unset)
    out = {}
    for line in open(path):
        m = re.match(r"^(# )?([a-z0-9_]+) = (.*)$", line.rstrip("\n"))
        if m:
            out[m.group(2)] = m.group(3)
    return out
model = dump(f"{d}/model_defaults")
train = {k: v for k, v in dump(f"{d}/all_defaults").items() if k not in model}
train["data"] = ""  # given on the command line above
assert train["data_seed"] == train["seed"], train  # unset: resolved to seed in the plan
train["data_seed"] = "(unset)"
assert len(model) >= 20 and len(train) >= 20, (len(model), len(train))  # both dumps parsed
want_keys = {
    "eval": {}, "prepare": {}, "sample": {}, "init": model, "gradcheck": model,
    "inspect": {**model, "seq_len": train["seq_len"], "micro_batch": train["micro_batch"],
                "recompute": train["recompute"], "context_parallel": train["context_parallel"],
                "trainable": train["trainable"], "frozen": train["frozen"]},
    "train": {**model, **train},
}
for cmd, opts in options.items():
    lines = open(f"{d}/help_{cmd}").read().splitlines()
    assert lines[0].startswith(f"usage: ksa {cmd} "), lines[0]
    for o in opts.split():
        assert any(l.startswith(f"  --{o} ") or l == f"  --{o}" for l in lines), (cmd, o)
    keys = {}
    in_keys = False
    for l in lines:
        if re.match(r"^(model|training) keys ", l):
            in_keys = True
            continue
        m = re.match(r"^  --([a-z0-9-]+) (\S+) +(\S+) +(\S.*)$", l)
        if in_keys and m:
            keys[m.group(1).replace("-", "_")] = (m.group(3), m.group(4))
    assert sorted(keys) == sorted(want_keys[cmd]), (cmd, set(keys) ^ set(want_keys[cmd]))
    for k, (default, meaning) in keys.items():
        shown = "" if default == '""' else default
        assert shown == want_keys[cmd][k], (cmd, k, default, want_keys[cmd][k])
        assert len(meaning) > 5, (cmd, k, meaning)
print("help lists", {c: len(open(f"{d}/help_{c}").read().splitlines()) for c in options})
PYEOF
}

# the tokens after C*(W+1) see the oldest chunks through summary tokens only
gradcheck_rows_reach_beyond_the_summary_window_by_default() {
    # gc_independent_all: C = 3; layers 0 and 2 are summary layers with W = 0 and 9
    "$KSA" gradcheck --config tests/configs/gc_independent_all.conf --sample 1 \
        --params model.norm.weight summary_embedding.weight >"$TMP/gc"
    local T
    T=$(sed -n 's/.* rows of \([0-9]*\) tokens.*/\1/p' "$TMP/gc")
    echo "default row length $T"
    [ "$T" -gt $((3 * (9 + 1))) ]
    [ $((T % 3)) != 0 ] # a tail chunk
    grep -q "): ok$" "$TMP/gc"
    # a causal model keeps the short rows
    "$KSA" gradcheck --config tests/configs/gc_causal.conf --params model.norm.weight >"$TMP/gc"
    grep -q " rows of 13 tokens" "$TMP/gc"
}

# --sample N checks N elements per tensor, the same ones for the same seed
gradcheck_samples_elements_with_its_seed() {
    local gc=("$KSA" gradcheck --config tests/configs/gc_qkv_left.conf --seq-len 9 --sample 3)
    "${gc[@]}" >"$TMP/s1"
    "${gc[@]}" >"$TMP/s2"
    "${gc[@]}" --seed 2 >"$TMP/s3"
    cmp "$TMP/s1" "$TMP/s2"
    must_fail cmp -s "$TMP/s1" "$TMP/s3"
    "$PY" - "$TMP/s1" <<'PYEOF'
import re, sys
rows = [l.split() for l in open(sys.argv[1]) if re.match(r"^(model|lm_head|summary)", l)]
assert len(rows) == 31, len(rows)
for r in rows:
    numel, checked = int(r[1]), int(r[2])
    assert checked == min(3, numel), r
print("checked per tensor:", sorted({int(r[2]) for r in rows}))
PYEOF
    grep -q "): ok$" "$TMP/s1"
}

# progress lines on stderr, at most one per --progress seconds; none with 0
gradcheck_reports_progress_on_stderr() {
    local gc=("$KSA" gradcheck --config tests/configs/gc_independent_all.conf --seq-len 13
        --sample 24)
    local t0 t1 n
    t0=$(date +%s.%N)
    "${gc[@]}" --progress 0.1 >"$TMP/gc_out" 2>"$TMP/gc_err"
    t1=$(date +%s.%N)
    n=$(grep -c "^gradcheck: [0-9]*/[0-9]* elements" "$TMP/gc_err" || true)
    echo "$n progress lines in $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') s"
    [ "$n" -ge 1 ]
    [ "$n" -le "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print int((b - a) / 0.1) + 1 }')" ]
    must_fail grep -q "elements, tensor" "$TMP/gc_out"
    "${gc[@]}" --progress 0 >/dev/null 2>"$TMP/gc_err0"
    [ ! -s "$TMP/gc_err0" ]
}

# the memory plan of `ksa inspect` is that of `ksa train` for the same configuration: its
# seq_len and micro_batch, not defaults of inspect's own
inspect_sizes_the_step_of_the_configuration() {
    "$KSA" inspect --config configs/tiny.conf >"$TMP/i"
    "$KSA" train --config configs/tiny.conf --dry-run >"$TMP/t"
    grep -q "micro-batch of 4 x 256 tokens" "$TMP/i" # tiny.conf: micro_batch 4, seq_len 256
    sed -n '/^# memory/,/total per rank/p' "$TMP/i" >"$TMP/im"
    sed -n '/^# memory/,/total per rank/p' "$TMP/t" >"$TMP/tm"
    [ "$(wc -l <"$TMP/im")" = 9 ]
    # the same plan, but for the resident memory of the program, measured by each process
    cmp <(grep -v "^  program \|^  total per rank " "$TMP/im") \
        <(grep -v "^  program \|^  total per rank " "$TMP/tm")
    "$KSA" inspect --config configs/tiny.conf --seq-len 128 --micro-batch=2 >"$TMP/i2"
    grep -q "micro-batch of 2 x 128 tokens" "$TMP/i2"
}

# Started without mpirun, ksa initialises MPI as an isolated singleton: Open MPI starts no
# orted daemon for it (~1 s of every command; src/dist/dist.c). A user's own setting is kept.
a_command_without_mpirun_starts_no_mpi_daemon() {
    env -u OMPI_MCA_ess_singleton_isolated strace -f -e trace=execve -o "$TMP/exec.log" \
        "$KSA" inspect --config configs/tiny.conf >/dev/null
    grep -q 'execve("/proc/self/exe"' "$TMP/exec.log" # strace saw ksa's own executions
    must_fail grep -q orted "$TMP/exec.log"
    OMPI_MCA_ess_singleton_isolated=0 strace -f -e trace=execve -o "$TMP/exec0.log" \
        "$KSA" inspect --config configs/tiny.conf >/dev/null
    grep -q 'execve("[^"]*orted"' "$TMP/exec0.log"
}

echo "[==========] Running test_cli.sh"
for t in gradcheck_passes_on_configs_that_switch_on_every_flag \
    gradcheck_has_an_absolute_floor_and_can_fail \
    gradcheck_selects_parameters_and_rejects_unknown_ones \
    configuration_errors_name_the_problem \
    hostile_values_are_refused_before_anything_is_allocated \
    inspect_prints_layers_parameters_and_memory_of_shipped_configs \
    eval_matches_the_reference_loss_and_gradients \
    eval_refuses_bad_input \
    eval_without_batch_walks_the_whole_file \
    eval_by_position_matches_the_reference_per_target_losses \
    eval_prints_progress_on_stderr \
    eval_and_sample_read_the_newest_checkpoint_of_a_folder \
    eval_refuses_a_seq_len_beyond_max_position_embeddings \
    sample_is_deterministic_and_continues_the_prompt \
    sample_prints_the_prompt_then_the_ids_that_json_reports \
    sample_json_holds_ids_text_stop_reason_and_statistics \
    sample_reads_the_prompt_from_a_file \
    sample_stops_at_max_position_embeddings \
    sample_refuses_bad_input \
    inspect_prints_a_checkpoint \
    bad_checkpoint_files_are_refused_by_eval_and_inspect \
    options_and_keys_take_an_equals_sign \
    unknown_names_get_the_nearest_known_ones \
    every_command_lists_its_options_and_keys_in_help \
    gradcheck_rows_reach_beyond_the_summary_window_by_default \
    gradcheck_samples_elements_with_its_seed \
    gradcheck_reports_progress_on_stderr \
    inspect_sizes_the_step_of_the_configuration \
    a_command_without_mpirun_starts_no_mpi_daemon; do
    run_test "$t" "$t"
done
finish
