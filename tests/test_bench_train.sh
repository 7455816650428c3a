#!/bin/bash
# test_bench_train.sh - bench/train.sh and its PyTorch peer, scripts/torch_train.py, on
# configs/tiny.conf at tiny lengths: the table has both implementations with positive,
# consistent numbers and the memory summary; runs estimated above --max-gib are skipped; a
# failed run is reported; bad options print the usage; and the peer computes the loss that
# `ksa eval` computes for the same checkpoint and tokens. Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}

# check_table OUT PYTHON: parses the two Markdown tables of OUT into `rows` (the runs) and
# `mem` (the memory summary), dicts by column name with text cells, then runs PYTHON
check_table() {
    "$PY" - "$1" "$2" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
tables, cur = [], None
for line in text.splitlines():
    if line.startswith("|"):
        if cur is None:
            cur = []
            tables.append(cur)
        cur.append(cells(line))
    else:
        cur = None
assert len(tables) == 2, tables
def parse(t):
    assert set(t[1]) == {"---"}, t[1]
    assert all(len(r) == len(t[0]) for r in t[2:]), t
    return t[0], [dict(zip(t[0], r)) for r in t[2:]]
columns, rows = parse(tables[0])
assert columns == ["model", "L", "implementation", "tokens/s", "s per step",
                   "CPU s per 1k tokens", "CPU / wall", "peak RSS MiB", "ksa.c speed-up",
                   "load"], columns
mem_columns, mem = parse(tables[1])
assert mem_columns == ["model", "implementation", "KiB per text token",
                       "longest L in 24 GiB"], mem_columns
exec(sys.argv[2])
PYEOF
}

both_implementations_are_timed_and_the_memory_is_extrapolated() {
    bench/train.sh --bin "$BIN" --models configs/tiny.conf --L 64 --steps 1 --reps 1 \
        --probe-L 32,48 >"$TMP/out"
    check_table "$TMP/out" '
assert [(r["L"], r["implementation"]) for r in rows] == [
    ("32 (probe)", "ksa.c"), ("32 (probe)", "PyTorch"), ("48 (probe)", "ksa.c"),
    ("48 (probe)", "PyTorch"), ("64", "ksa.c"), ("64", "PyTorch")], rows
for r in rows:
    L = int(r["L"].split()[0])
    m = re.fullmatch(r"(\d+) \((\d+)–(\d+)\)", r["tokens/s"])
    assert m, r
    tps, lo, hi = map(float, m.groups())
    assert 0 < lo == tps == hi, r  # one run: median = min = max
    step, cpu, busy, peak = (float(r[c]) for c in ("s per step", "CPU s per 1k tokens",
                                                    "CPU / wall", "peak RSS MiB"))
    rounding = 0.5 / tps  # the relative error of tokens/s printed as a whole number
    assert abs(step - L / tps) <= (0.01 + rounding) * step + 0.002, r
    assert cpu > 0 and busy > 0 and 10 < peak < 4000, r
    assert abs(busy - cpu / 1000 * tps) <= (0.02 + rounding) * busy + 0.01, r
    assert float(r["load"]) >= 0, r
    if r["implementation"] == "PyTorch":
        ksa = next(k for k in rows if k["L"] == r["L"] and k["implementation"] == "ksa.c")
        speedup = float(r["ksa.c speed-up"].rstrip("x"))
        ksa_tps = float(ksa["tokens/s"].split()[0])
        want = ksa_tps / tps
        assert abs(speedup - want) <= (0.01 + rounding + 0.5 / ksa_tps) * want + 0.01, (r, ksa)
    else:
        assert r["ksa.c speed-up"] == "—", r
assert [(m["model"], m["implementation"]) for m in mem] == [("tiny", "ksa.c"), ("tiny", "PyTorch")], mem
for m in mem:
    assert re.fullmatch(r"-?[0-9.]+ \(L = 48 → 64\)", m["KiB per text token"]), m
    assert re.fullmatch(r"(\d+ \(extrapolated: .*\)|— \(no growth measured\))",
                        m["longest L in 24 GiB"]), m
'
    grep -q "^- load average at start: [0-9]" "$TMP/out"
    grep -q "^- load average at end: [0-9]" "$TMP/out"
    grep -qF -- '- command: `bench/train.sh --bin' "$TMP/out"
}

# --max-gib below every estimate: after the probes (never estimated), nothing runs
runs_estimated_above_max_gib_are_skipped() {
    bench/train.sh --bin "$BIN" --models configs/tiny.conf --L 64,128 --steps 1 --reps 1 \
        --probe-L 32,48 --max-gib 0.001 >"$TMP/out"
    check_table "$TMP/out" '
assert [r["L"] for r in rows] == ["32 (probe)"] * 2 + ["48 (probe)"] * 2 + ["64"] * 2 + ["128"] * 2, rows
for r in rows[4:]:
    m = re.fullmatch(r"skipped \(estimated ([0-9.]+) GiB\)", r["tokens/s"])
    assert m and float(m.group(1)) > 0.001, r
    assert r["s per step"] == "—" and r["peak RSS MiB"] == "—", r
for r in rows[:4]:
    assert float(r["peak RSS MiB"]) > 10, r
'
}

# a configuration both implementations refuse: each row says which failed, exit status 1
a_failed_run_is_reported_and_the_exit_status_is_1() {
    sed 's/^hidden_size = 128/hidden_size = many/' configs/tiny.conf >"$TMP/bad.conf"
    local rc=0
    bench/train.sh --bin "$BIN" --models "$TMP/bad.conf" --L 64 --steps 1 --reps 1 \
        --probe-L 32,48 >"$TMP/out" || rc=$?
    [ "$rc" = 1 ]
    check_table "$TMP/out" '
assert len(rows) == 6, rows
for r in rows:
    want = "failed: ksa train: " if r["implementation"] == "ksa.c" else "failed: torch_train.py: "
    assert r["tokens/s"].startswith(want), r
    assert "hidden_size" in r["tokens/s"], r
'
}

bad_options_print_the_usage_and_exit_2() {
    local rc
    for args in "--bogus 1" "--L 64,,128" "--L 0" "--reps 0" "--steps x" "--batch -1" \
        "--threads 1.5" "--max-gib many" "--budget-gib" "--probe-L 32" "--L"; do
        rc=0
        # shellcheck disable=SC2086
        bench/train.sh $args >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" = 2 ] || { echo "'$args': exit $rc, expected 2"; return 1; }
        grep -q "^usage: bench/train.sh" "$TMP/err"
        [ ! -s "$TMP/out" ]
    done
    expect_error "model '$TMP/none.conf' is neither" bench/train.sh --models "$TMP/none.conf"
}

# the peer's loss for a ksa checkpoint and token file is the loss `ksa eval` prints
the_peer_computes_the_loss_of_ksa_eval() {
    "$BIN/ksa" init --config configs/tiny.conf --seed 7 --out "$TMP/tiny.h5" >/dev/null
    # 2 rows of 96 text tokens (+ 1): ids below 257 from a fixed generator
    "$PY" -c 'import numpy as np
np.random.default_rng(3).integers(0, 257, 2 * 96 + 1).astype("<u2").tofile("'"$TMP"'/rows.bin")'
    printf uint16 >"$TMP/rows.bin.meta"
    "$BIN/ksa" eval --ckpt "$TMP/tiny.h5" --data "$TMP/rows.bin" --seq-len 96 --batch 2 --json \
        >"$TMP/ksa.json"
    env -u OMP_WAIT_POLICY "$PY" scripts/torch_train.py --ckpt "$TMP/tiny.h5" \
        --data "$TMP/rows.bin" --seq-len 96 --batch 2 --steps 0 >"$TMP/torch.json"
    "$PY" - "$TMP/ksa.json" "$TMP/torch.json" <<'PYEOF'
import json, sys
ksa = json.loads(open(sys.argv[1]).read())["loss"]
torch = json.loads(open(sys.argv[2]).read())["initial_loss"]
print("ksa eval %.7f, torch_train.py %.7f" % (ksa, torch))
assert 4 < ksa < 8, ksa  # an untrained byte model: about ln(257) = 5.55
assert abs(torch - ksa) <= 1e-4 * abs(ksa), (ksa, torch)
# threads sleep while waiting, as in ksa: spinning ones starve a shared machine
assert json.loads(open(sys.argv[2]).read())["omp_wait_policy"] == "passive"
PYEOF
}

the_peer_refuses_bad_input() {
    expect_error "unknown configuration key 'hidden_sise'" "$PY" scripts/torch_train.py \
        --config <(sed 's/^hidden_size/hidden_sise/' configs/tiny.conf) --seq-len 8 --steps 0
    printf '\001\000\002\000' >"$TMP/short.bin"
    printf uint16 >"$TMP/short.bin.meta"
    expect_error "holds 2 tokens" "$PY" scripts/torch_train.py --config configs/tiny.conf \
        --data "$TMP/short.bin" --seq-len 8 --steps 0
    expect_error "give exactly one of --config and --ckpt" "$PY" scripts/torch_train.py \
        --seq-len 8
}

echo "[==========] Running test_bench_train.sh"
for t in both_implementations_are_timed_and_the_memory_is_extrapolated \
    runs_estimated_above_max_gib_are_skipped a_failed_run_is_reported_and_the_exit_status_is_1 \
    bad_options_print_the_usage_and_exit_2 the_peer_computes_the_loss_of_ksa_eval \
    the_peer_refuses_bad_input; do
    run_test "$t" "$t"
done
finish
