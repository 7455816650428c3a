#!/bin/bash
# test_cli.sh - end-to-end tests of the `ksa` command (run by `make test` with BIN set).
# Prints a cmocka-style summary so tests/run_tests.sh counts its tests.
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=()

# run_test NAME FUNCTION: runs FUNCTION, records the result by its exit status.
run_test() {
    echo "[ RUN      ] $1"
    # not inside `if`: there bash would ignore set -e within the function
    ( set -e; "$2" ) >"$TMP/out" 2>&1
    if [ $? = 0 ]; then
        echo "[       OK ] $1"
        passed=$((passed + 1))
    else
        sed 's/^/    /' "$TMP/out"
        echo "[  FAILED  ] $1"
        failed+=("$1")
    fi
}

# expect_error MESSAGE CMD...: CMD must exit non-zero and print MESSAGE on stderr.
expect_error() {
    local msg=$1
    shift
    if "$@" >"$TMP/stdout" 2>"$TMP/stderr"; then
        echo "expected failure, got success: $*"
        return 1
    fi
    grep -qF -- "$msg" "$TMP/stderr" || { echo "stderr lacks '$msg':"; cat "$TMP/stderr"; return 1; }
}

gradcheck_passes_on_configs_that_switch_on_every_flag() {
    for conf in tests/configs/gc_*.conf; do
        "$KSA" gradcheck --config "$conf" --seq-len 13 --batch 2 >"$TMP/gc" ||
            { cat "$TMP/gc"; return 1; }
        grep -q "): ok$" "$TMP/gc"
    done
    # a tail chunk shorter than C and T < C (no summary rows at all)
    "$KSA" gradcheck --config tests/configs/gc_qkv_left.conf --seq-len 3 --batch 1 >/dev/null
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

echo "[==========] Running test_cli.sh"
for t in gradcheck_passes_on_configs_that_switch_on_every_flag \
    gradcheck_selects_parameters_and_rejects_unknown_ones \
    configuration_errors_name_the_problem \
    inspect_prints_layers_parameters_and_memory_of_shipped_configs \
    eval_matches_the_reference_loss_and_gradients \
    eval_refuses_bad_input; do
    run_test "$t" "$t"
done
echo "[==========] $((passed + ${#failed[@]})) test(s) run."
echo "[  PASSED  ] ${passed} test(s)."
if ((${#failed[@]})); then
    echo "[  FAILED  ] ${#failed[@]} test(s), listed below:"
    printf '[  FAILED  ] %s\n' "${failed[@]}"
    exit 1
fi
