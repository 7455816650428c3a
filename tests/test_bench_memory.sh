#!/bin/bash
# test_bench_memory.sh - bench/memory.sh at tiny context lengths on a tiny model (several
# seconds): the table has its columns and one row per (length, mode), its numbers parse and
# agree with each other and with `ksa inspect`, the peak RSS grows with L and is lower with
# --recompute, the per-(model, mode) fit, plan error and extrapolation are printed and agree
# with the table, --modes selects the modes, plans above --max-gib are skipped, a failed run
# is reported, bad options are refused. Prints a cmocka-style summary.
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
# name, text cells) and the summary lines into `fits` {(model, mode): {slope (KiB per
# token), intercept (MiB), worst (%), worst_L, longest_L}}, then runs the PYTHON assertions
check_table() {
    "$PY" - "$1" "$2" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
lines = [l for l in text.splitlines() if l.startswith("|")]
columns = ["model", "mode", "L", "peak RSS MiB", "KiB per text token", "planned MiB",
           "measured / planned", "step wall s", "CPU s", "process wall s"]
cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
assert cells(lines[0]) == columns, cells(lines[0])
assert set(cells(lines[1])) == {"---"}, lines[1]
rows = [dict(zip(columns, cells(l))) for l in lines[2:]]
assert all(len(cells(l)) == len(columns) for l in lines[2:]), lines
fits = {(m, mode): dict(slope=float(s), intercept=float(i), worst=float(w), worst_L=int(wl),
                        longest_L=int(ll))
        for m, mode, s, i, w, wl, ll in re.findall(
    r"^- (\S+), (stored|recompute): ([-0-9.]+) KiB per text token, intercept ([-0-9.]+) MiB"
    r" .*; measured / planned off by at most ([0-9.]+) % \(L = ([0-9]+)\); extrapolated:"
    r" longest L within 24 GiB ([0-9]+)$", text, re.M)}
exec(sys.argv[2])
PYEOF
}

# plan_mib L [--recompute]: the "total per rank" of `ksa inspect` for the tiny model, in MiB
plan_mib() {
    local L=$1
    shift
    "$BIN/ksa" inspect --config "$TMP/tiny.conf" --seq-len "$L" --micro-batch 1 --threads 2 "$@" |
        awk '/^ *total per rank/ {
            printf "%.1f\n", $4 * ($5 == "GiB" ? 1024 : $5 == "KiB" ? 1 / 1024 : 1) }'
}

table_has_one_row_per_length_and_mode_and_agrees_with_itself() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 256,1024 --base-L 64 \
        >"$TMP/out"
    check_table "$TMP/out" '
assert [r["model"] for r in rows] == ["tiny"] * 6, rows
assert [(r["L"], r["mode"]) for r in rows] == [(L, m) for L in ("64 (baseline)", "256", "1024")
                                               for m in ("stored", "recompute")], rows
for r in rows:
    L = int(r["L"].split()[0])
    peak, per_token, plan, ratio = (float(r[c]) for c in ("peak RSS MiB",
        "KiB per text token", "planned MiB", "measured / planned"))
    wall, cpu, pwall = (float(r[c]) for c in ("step wall s", "CPU s", "process wall s"))
    assert 10 < peak < 1000 and 0 < plan < 1000, r
    assert abs(per_token - peak * 1024 / L) <= 0.01 * per_token + 0.01, r
    assert abs(ratio - peak / plan) <= 0.01 * ratio, r
    assert 0 <= wall <= pwall and cpu > 0, r
for mode in ("stored", "recompute"):
    mine = [r for r in rows if r["mode"] == mode]
    peaks = [float(r["peak RSS MiB"]) for r in mine]
    plans = [float(r["planned MiB"]) for r in mine]
    assert peaks[0] < peaks[1] < peaks[2], (mode, peaks)
    assert plans[0] < plans[1] < plans[2], (mode, plans)
    fit = fits["tiny", mode]
    slope, intercept = fit["slope"], fit["intercept"]
    assert abs(slope - (peaks[2] - peaks[1]) * 1024 / 768) <= 0.02 * slope + 0.01, (slope, peaks)
    assert abs(intercept - (peaks[1] - slope * 256 / 1024)) <= 0.2, (intercept, peaks)
    offs = {int(r["L"]): abs(float(r["measured / planned"]) - 1) * 100 for r in mine[1:]}
    assert abs(fit["worst"] - max(offs.values())) <= 0.15, (fit, offs)
    assert fit["worst_L"] == max(offs, key=offs.get), (fit, offs)
    longest = (24 * 1024 - intercept) / slope * 1024
    assert abs(fit["longest_L"] - longest) <= 0.01 * longest, (fit, longest)
assert sorted(fits) == [("tiny", "recompute"), ("tiny", "stored")], fits
'
    grep -q "^- load average at start: [0-9]" "$TMP/out"
    grep -q "^- load average at end: [0-9]" "$TMP/out"
    grep -qF -- '- command: `bench/memory.sh --bin' "$TMP/out"
}

# each mode's planned column is `ksa inspect` with (recompute) or without (stored)
# --recompute (within 0.5 MiB: the program's resident size differs a little from process to
# process), and the recompute run recomputes: at 1024 tokens its peak is measurably lower
planned_is_inspect_of_the_mode_and_recompute_lowers_the_peak() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 1024 --base-L 64 >"$TMP/out"
    check_table "$TMP/out" "
plan = {(r['L'], r['mode']): float(r['planned MiB']) for r in rows}
peak = {(r['L'], r['mode']): float(r['peak RSS MiB']) for r in rows}
assert abs(plan['1024', 'stored'] - $(plan_mib 1024)) <= 0.5, plan
assert abs(plan['1024', 'recompute'] - $(plan_mib 1024 --recompute)) <= 0.5, plan
assert plan['1024', 'recompute'] < plan['1024', 'stored'] - 1, plan
assert peak['1024', 'recompute'] < peak['1024', 'stored'] - 1, peak
"
}

# --modes recompute: only recompute rows and fit; --modes stored: only stored ones
modes_selects_the_rows_and_the_fits() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 128,256 --base-L 64 \
        --modes recompute >"$TMP/out"
    check_table "$TMP/out" '
assert [(r["L"], r["mode"]) for r in rows] == [("64 (baseline)", "recompute"),
    ("128", "recompute"), ("256", "recompute")], rows
assert list(fits) == [("tiny", "recompute")], fits
'
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 128 --base-L 64 \
        --modes stored >"$TMP/out"
    check_table "$TMP/out" '
assert [(r["L"], r["mode"]) for r in rows] == [("64 (baseline)", "stored"), ("128", "stored")], rows
'
    grep -q "^- tiny, stored: fewer than 2 measured L, no fit" "$TMP/out"
    must_fail grep -q "^- tiny, recompute" "$TMP/out"
}

# --max-gib below every plan: no run, each row names the predicted GiB (the planned MiB)
plans_above_max_gib_are_skipped() {
    bench/memory.sh --bin "$BIN" --models "$TMP/tiny.conf" --L 128 --base-L 64 \
        --max-gib 0.001 >"$TMP/out"
    check_table "$TMP/out" '
assert [r["mode"] for r in rows] == ["stored", "recompute"] * 2, rows
for r in rows:
    m = re.fullmatch(r"skipped: predicted ([0-9.]+) GiB > limit", r["peak RSS MiB"])
    assert m, r
    assert abs(float(m.group(1)) - float(r["planned MiB"]) / 1024) <= 0.0051, r  # both printed rounded: 0.005 GiB + 0.05 MiB
    assert r["step wall s"] == "—" and r["measured / planned"] == "—", r
assert fits == {}, fits
'
    grep -q "^- tiny, stored: fewer than 2 measured L, no fit" "$TMP/out"
    grep -q "^- tiny, recompute: fewer than 2 measured L, no fit" "$TMP/out"
}

bad_options_print_the_usage_and_exit_2() {
    local rc
    for args in "--bogus 1" "--L 256,,512" "--L 0" "--threads x" "--max-gib many" "--L" \
        "--modes bogus" "--modes stored," "--modes stored,stored" "--modes Stored" "--modes"; do
        rc=0
        # --bin first: an option accepted by mistake ends in "no executable" (exit 1), not
        # in a benchmark of the default models
        # shellcheck disable=SC2086
        bench/memory.sh --bin "$TMP/none" $args >"$TMP/out" 2>"$TMP/err" || rc=$?
        [ "$rc" = 2 ] || { echo "'$args': exit $rc, expected 2"; return 1; }
        grep -q "^usage: bench/memory.sh" "$TMP/err"
        [ ! -s "$TMP/out" ]
    done
    expect_error "model '$TMP/none.conf' is neither" bench/memory.sh --models "$TMP/none.conf"
    expect_error "'recompute,recompute' names recompute twice" \
        bench/memory.sh --bin "$TMP/none" --modes recompute,recompute
}

# a stand-in for a ksa whose every training run fails (inspect is the real one)
fake_failing_ksa() {
    mkdir -p "$TMP/fake"
    cat >"$TMP/fake/ksa" <<FAKE
#!/bin/bash
if [ "\$1" = train ]; then
    echo "ksa train: out of memory (fake)" >&2
    exit 1
fi
exec "$KSA_ABS" "\$@"
FAKE
    chmod +x "$TMP/fake/ksa"
}

a_failed_run_is_reported_and_the_exit_status_is_1() {
    fake_failing_ksa
    local rc=0
    bench/memory.sh --bin "$TMP/fake" --models "$TMP/tiny.conf" --L 128 --base-L 64 \
        >"$TMP/out" || rc=$?
    [ "$rc" = 1 ]
    check_table "$TMP/out" '
assert [r["mode"] for r in rows] == ["stored", "recompute"] * 2, rows
for r in rows:
    assert r["peak RSS MiB"].startswith("failed: ksa train: out of memory"), r
    assert r["measured / planned"] == "—", r
'
}

echo "[==========] Running test_bench_memory.sh"
for t in table_has_one_row_per_length_and_mode_and_agrees_with_itself \
    planned_is_inspect_of_the_mode_and_recompute_lowers_the_peak \
    modes_selects_the_rows_and_the_fits plans_above_max_gib_are_skipped \
    bad_options_print_the_usage_and_exit_2 a_failed_run_is_reported_and_the_exit_status_is_1; do
    run_test "$t" "$t"
done
finish
