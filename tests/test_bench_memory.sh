#!/bin/bash
# test_bench_memory.sh - bench/memory.sh at tiny context lengths on a tiny model (a few
# seconds): the table has its columns and one row per length, its numbers parse and agree
# with each other, the peak RSS grows with L, the fit is printed, plans above --max-gib are
# skipped, a failed run is reported, and the --recompute column fills in once `ksa train`
# offers the option (a wrapper around bin/ksa stands in for it). Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
PY=${PY:-/usr/bin/python3}
KSA_ABS=$(cd "$BIN" && pwd)/ksa

cat >"$TMP/tiny.conf" <<'CONF'
vocab_size = 257
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 2
num_key_value_heads = 1
head_dim = 32
tie_word_embeddings = true
use_summary_attention = true
summary_chunk_size = 8
summary_token_num = 1
summary_sliding_chunk_num = 4
summary_independent_parameters = true
CONF

# check_table OUT PYTHON: parses the Markdown table of OUT into `rows` (dicts by column
# name, text cells) and the fit lines into `fits` {model: (slope, intercept)}, then runs
# the PYTHON assertions
check_table() {
    "$PY" - "$1" "$2" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
lines = [l for l in text.splitlines() if l.startswith("|")]
columns = ["model", "L", "peak RSS MiB", "KiB per text token", "planned MiB",
           "measured / planned", "step wall s", "CPU s", "process wall s",
           "--recompute: peak RSS MiB (step wall s)"]
cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
assert cells(lines[0]) == columns, cells(lines[0])
assert set(cells(lines[1])) == {"---"}, lines[1]
rows = [dict(zip(columns, cells(l))) for l in lines[2:]]
assert all(len(cells(l)) == len(columns) for l in lines[2:]), lines
fits = {m: (float(s), float(i)) for m, s, i in re.findall(
    r"^- (\S+): ([-0-9.]+) KiB per text token, intercept ([-0-9.]+) MiB", text, re.M)}
exec(sys.argv[2])
PYEOF
}

table_has_one_row_per_length_and_rss_grows_with_L() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 256,1024 --base-L 64 \
        >"$TMP/out"
    check_table "$TMP/out" '
assert [r["model"] for r in rows] == ["tiny"] * 3, rows
assert [r["L"] for r in rows] == ["64 (baseline)", "256", "1024"], rows
for r in rows:
    L = int(r["L"].split()[0])
    peak, per_token, plan, ratio = (float(r[c]) for c in ("peak RSS MiB",
        "KiB per text token", "planned MiB", "measured / planned"))
    wall, cpu, pwall = (float(r[c]) for c in ("step wall s", "CPU s", "process wall s"))
    assert 10 < peak < 1000 and 0 < plan < 1000, r
    assert abs(per_token - peak * 1024 / L) <= 0.01 * per_token + 0.01, r
    assert abs(ratio - peak / plan) <= 0.01 * ratio, r
    assert 0 <= wall <= pwall and cpu > 0, r
peaks = [float(r["peak RSS MiB"]) for r in rows]
plans = [float(r["planned MiB"]) for r in rows]
assert peaks[0] < peaks[1] < peaks[2], peaks
assert plans[0] < plans[1] < plans[2], plans
slope, intercept = fits["tiny"]
assert abs(slope - (peaks[2] - peaks[1]) * 1024 / 768) <= 0.02 * slope + 0.01, (slope, peaks)
assert abs(intercept - (peaks[1] - slope * 256 / 1024)) <= 0.2, (intercept, peaks)
'
    grep -q "^- load average at start: [0-9]" "$TMP/out"
    grep -q "^- load average at end: [0-9]" "$TMP/out"
    grep -qF -- '- command: `bench/memory.sh --bin' "$TMP/out"
    if ! "$BIN/ksa" train --help | grep -q -- --recompute; then # until the option arrives
        check_table "$TMP/out" 'assert {r["--recompute: peak RSS MiB (step wall s)"] for r in rows} == {"—"}'
        grep -q "does not accept --recompute yet" "$TMP/out"
    fi
}

# --max-gib below every plan: no run, each row names the predicted GiB (the planned MiB)
plans_above_max_gib_are_skipped() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 128 --base-L 64 \
        --max-gib 0.001 >"$TMP/out"
    check_table "$TMP/out" '
assert len(rows) == 2, rows
for r in rows:
    m = re.fullmatch(r"skipped: predicted ([0-9.]+) GiB > limit", r["peak RSS MiB"])
    assert m, r
    assert abs(float(m.group(1)) - float(r["planned MiB"]) / 1024) <= 0.005, r
    assert r["step wall s"] == "—" and r["measured / planned"] == "—", r
assert fits == {}, fits
'
    grep -q "^- tiny: fewer than 2 measured L, no fit" "$TMP/out"
}

bad_options_print_the_usage_and_exit_2() {
    local rc
    for args in "--bogus 1" "--L 256,,512" "--L 0" "--threads x" "--max-gib many" "--L"; do
        rc=0
        # shellcheck disable=SC2086
        bench/memory.sh $args >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" = 2 ] || { echo "'$args': exit $rc, expected 2"; return 1; }
        grep -q "^usage: bench/memory.sh" "$TMP/err"
        [ ! -s "$TMP/out" ]
    done
    expect_error "model '$TMP/none.conf' is neither" bench/memory.sh --models "$TMP/none.conf"
}

# a stand-in for a ksa whose train offers --recompute (dropped before calling the real one);
# KSA_FAKE_FAIL=1 makes every training run fail
fake_ksa() {
    mkdir -p "$TMP/fake"
    cat >"$TMP/fake/ksa" <<FAKE
#!/bin/bash
if [ "\$1" = train ] && [ "\${2:-}" = --help ]; then
    echo "  --recompute                  recompute activations in backward"
    exit 0
fi
if [ "\$1" = train ] && [ "\${KSA_FAKE_FAIL:-0}" = 1 ]; then
    echo "ksa train: out of memory (fake)" >&2
    exit 1
fi
args=()
for a in "\$@"; do [ "\$a" = --recompute ] || args+=("\$a"); done
exec "$KSA_ABS" "\${args[@]}"
FAKE
    chmod +x "$TMP/fake/ksa"
}

recompute_column_fills_in_when_train_offers_it() {
    fake_ksa
    bench/memory.sh --bin "$TMP/fake" --models "$TMP/tiny.conf" --L 128 --base-L 64 >"$TMP/out"
    check_table "$TMP/out" '
assert len(rows) == 2, rows
for r in rows:
    m = re.fullmatch(r"([0-9.]+) \(([0-9.]+)\)", r["--recompute: peak RSS MiB (step wall s)"])
    assert m, r
    assert 10 < float(m.group(1)) < 1000, r
'
    must_fail grep -q "does not accept --recompute" "$TMP/out"
}

a_failed_run_is_reported_and_the_exit_status_is_1() {
    fake_ksa
    local rc=0
    KSA_FAKE_FAIL=1 bench/memory.sh --bin "$TMP/fake" --models "$TMP/tiny.conf" --L 128 \
        --base-L 64 >"$TMP/out" || rc=$?
    [ "$rc" = 1 ]
    check_table "$TMP/out" '
assert len(rows) == 2, rows
for r in rows:
    assert r["peak RSS MiB"].startswith("failed: ksa train: out of memory"), r
    assert r["--recompute: peak RSS MiB (step wall s)"].startswith("failed: "), r
'
}

echo "[==========] Running test_bench_memory.sh"
for t in table_has_one_row_per_length_and_rss_grows_with_L plans_above_max_gib_are_skipped \
    bad_options_print_the_usage_and_exit_2 recompute_column_fills_in_when_train_offers_it \
    a_failed_run_is_reported_and_the_exit_status_is_1; do
    run_test "$t" "$t"
done
finish
