#!/bin/bash
# test_interop.sh - `ksa import` and `ksa export` (docs/interop.md) on the Hugging Face folders
# of scripts/make_hf_fixture.py, against the values the fixture meant, the PyTorch reference
# (which reads the folders itself) and each other. Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$BIN/ksa"
PY=${PY:-/usr/bin/python3}

fixtures() {
    "$PY" scripts/make_hf_fixture.py "$TMP/hf"
}

# params_equal A B: every /params dataset of checkpoint A equals B's, bit for bit (and the
# same names on both sides).
params_equal() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert sorted(a["params"]) == sorted(b["params"]), (sorted(a["params"]), sorted(b["params"]))
for k in a["params"]:
    x, y = a["params"][k][()], b["params"][k][()]
    assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, k
    assert np.array_equal(x.view(np.uint32), y.view(np.uint32)), k
print(len(a["params"]), "datasets equal")
PYEOF
}

# matches_expected CKPT DIR: CKPT's /params are DIR/expected.npz (what the fixture meant).
matches_expected() {
    "$PY" - "$1" "$2/expected.npz" <<'PYEOF'
import sys, h5py, numpy as np
f, want = h5py.File(sys.argv[1], "r"), np.load(sys.argv[2])
assert sorted(f["params"]) == sorted(want.files), (sorted(f["params"]), want.files)
for k in want.files:
    assert np.array_equal(f["params"][k][()].view(np.uint32), want[k].view(np.uint32)), k
print(len(want.files), "parameters as the fixture meant them")
PYEOF
}

import_reads_sharded_bf16_in_the_merged_form() {
    fixtures
    "$KSA" import --hf "$TMP/hf/sharded" --out "$TMP/s.h5" >"$TMP/log"
    grep -q "from 28 tensors in 3 safetensors files (summary rows split off embed_tokens)" \
        "$TMP/log"
    matches_expected "$TMP/s.h5" "$TMP/hf/sharded"
    "$PY" - "$TMP/s.h5" "$TMP/hf/sharded/tokenizer.json" <<'PYEOF'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
c = f["config"].attrs
assert c["vocab_size"] == 300 and c["summary_token_num"] == 2, dict(c)  # V, not V + S
assert "summary_token_begin" not in c, c["summary_token_begin"]  # unused: independent summary rows
assert c["summary_sliding_chunk_num"] == b"([2]*1+[3]*1)*1", c["summary_sliding_chunk_num"]
assert c["summary_layer_freq"] == b"[0]*1+[1]*1", c["summary_layer_freq"]
t = f["tokenizer"]
assert t["tokenizer.json"][()].tobytes() == open(sys.argv[2], "rb").read()
assert t.attrs["eot_id"] == 297, dict(t.attrs)  # the <|endoftext|> added token
assert t.attrs["type"].decode().startswith("bpe-") and len(t.attrs["type"]) == 20
assert f.attrs["format_version"] == 3
sys.path.insert(0, "scripts")
import ckpt_checksum
assert ckpt_checksum.verify(f) == [], ckpt_checksum.verify(f)
PYEOF
}

import_reads_a_single_f32_f16_file_in_the_training_spelling() {
    fixtures
    "$KSA" import --hf "$TMP/hf/single" --out "$TMP/one.h5" >"$TMP/log"
    grep -q "from 31 tensors in 1 safetensors file;" "$TMP/log"
    matches_expected "$TMP/one.h5" "$TMP/hf/single"
    "$KSA" inspect "$TMP/one.h5" >"$TMP/i"
    grep -qx 'hidden_size = 32' "$TMP/i"
    grep -qx 'num_key_value_heads = 2' "$TMP/i"
    grep -qx 'summary_sliding_chunk_num = "\[3,2\]"' "$TMP/i"
    grep -qx 'tie_word_embeddings = 1' "$TMP/i"
    grep -qx 'max_position_embeddings = 4096' "$TMP/i"
    grep -qx 'format_version = 2' "$TMP/i" # no tokenizer.json: an ordinary version-2 file
}

imported_model_loss_agrees_with_the_torch_reference() {
    fixtures
    "$PY" -c "
import numpy as np
np.random.default_rng(3).integers(0, 300, size=81).astype('<u2').tofile('$TMP/t.bin')
open('$TMP/t.bin.meta', 'w').write('uint16')"
    local d b
    for d in sharded single; do
        "$KSA" import --hf "$TMP/hf/$d" --out "$TMP/$d.h5" >/dev/null
        # the reference reads the Hugging Face folder itself (config.json, safetensors)
        "$PY" scripts/torch_reference.py --loss "$TMP/hf/$d" "$TMP/t.bin" 20 >"$TMP/ref.json"
        for b in ksa ksa64; do
            "$BIN/$b" eval --ckpt "$TMP/$d.h5" --data "$TMP/t.bin" --seq-len 20 --json \
                >"$TMP/$b.json" 2>/dev/null
        done
        "$PY" - "$TMP" <<'PYEOF'
import sys, json
d = sys.argv[1]
ref = json.load(open(d + "/ref.json"))
for build, tol in (("ksa64", 1e-12), ("ksa", 1e-6)):
    got = json.load(open("%s/%s.json" % (d, build)))
    assert got["tokens"] == ref["tokens"] == 80, (got, ref)
    assert abs(got["loss"] - ref["loss"]) <= tol * ref["loss"], (build, got, ref)
print("loss", ref["loss"], "agrees")
PYEOF
    done
}

export_then_import_is_bit_identical_in_f32() {
    fixtures
    "$KSA" import --hf "$TMP/hf/sharded" --out "$TMP/a.h5" >/dev/null
    "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/exp" --dtype f32 >"$TMP/log"
    grep -q "summary rows merged into embed_tokens, tokenizer.json" "$TMP/log"
    cmp "$TMP/exp/tokenizer.json" "$TMP/hf/sharded/tokenizer.json"
    "$KSA" import --hf "$TMP/exp" --out "$TMP/b.h5" >/dev/null
    params_equal "$TMP/a.h5" "$TMP/b.h5"
    "$KSA" inspect "$TMP/a.h5" | sed 1d >"$TMP/ia"
    "$KSA" inspect "$TMP/b.h5" | sed 1d >"$TMP/ib"
    diff "$TMP/ia" "$TMP/ib" # configuration, tokenizer identity and eot_id too
    # a model of ksa init (byte tokenizer, tied, summary on) the same way
    "$KSA" init --config configs/tiny.conf --out "$TMP/t.h5" >/dev/null
    "$KSA" export --ckpt "$TMP/t.h5" --hf "$TMP/tiny" >/dev/null
    "$KSA" import --hf "$TMP/tiny" --out "$TMP/t2.h5" >/dev/null
    params_equal "$TMP/t.h5" "$TMP/t2.h5"
    "$KSA" inspect "$TMP/t.h5" | sed 1d >"$TMP/ta"
    "$KSA" inspect "$TMP/t2.h5" | sed 1d >"$TMP/tb"
    diff "$TMP/ta" "$TMP/tb"
}

export_shards_above_the_size_limit() {
    fixtures
    "$KSA" import --hf "$TMP/hf/sharded" --out "$TMP/a.h5" >/dev/null
    "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/exp" --max-shard-size 20KB >"$TMP/log"
    grep -q "shards with model.safetensors.index.json" "$TMP/log"
    must_fail test -e "$TMP/exp/model.safetensors"
    ls "$TMP/exp" >"$TMP/files"
    grep -qx "model-00001-of-000[0-9][0-9].safetensors" "$TMP/files"
    must_fail grep -q '\.tmp$' "$TMP/files"
    "$PY" - "$TMP/exp" <<'PYEOF'
import sys, os, json, struct
d = sys.argv[1]
idx = json.load(open(d + "/model.safetensors.index.json"))
shards = sorted(set(idx["weight_map"].values()))
assert len(shards) >= 3, shards
total = 0
for s in shards:
    raw = open(os.path.join(d, s), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0
    h = json.loads(raw[8:8 + n])
    data = len(raw) - 8 - n
    size = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items() if k != "__metadata__")
    assert size == data, (s, size, data)
    total += data
    # one tensor alone may exceed the limit; a shard of several stays below it
    if len(h) > 2:
        assert data <= 20000, (s, data)
    assert all(idx["weight_map"][k] == s for k in h if k != "__metadata__")
assert idx["metadata"]["total_size"] == total
PYEOF
    "$KSA" import --hf "$TMP/exp" --out "$TMP/b.h5" >/dev/null
    params_equal "$TMP/a.h5" "$TMP/b.h5"
    # into the same folder with fewer shards: the earlier export's shards are gone
    touch "$TMP/exp/model-00001-of-00002.safetensors.keep" "$TMP/exp/notes.txt"
    "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/exp" --max-shard-size 40KB >/dev/null
    ls "$TMP/exp" | grep -x "model-0000[0-9]-of-000[0-9][0-9].safetensors" | sed 's/.*-of-//' |
        sort -u >"$TMP/counts"
    [ "$(wc -l <"$TMP/counts")" = 1 ]
    test -e "$TMP/exp/model-00001-of-00002.safetensors.keep" # only the exact names go
    test -e "$TMP/exp/notes.txt"
    # exporting into the same folder as one file removes the index that would shadow it, and
    # every shard
    "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/exp" >/dev/null
    must_fail test -e "$TMP/exp/model.safetensors.index.json"
    [ -z "$(ls "$TMP/exp" | grep -x 'model-.*\.safetensors')" ]
    "$KSA" import --hf "$TMP/exp" --out "$TMP/c.h5" >/dev/null
    params_equal "$TMP/a.h5" "$TMP/c.h5"
}

export_rounds_bf16_and_f16_to_nearest_even() {
    fixtures
    "$KSA" init --config configs/tiny.conf --out "$TMP/t.h5" >/dev/null
    "$KSA" export --ckpt "$TMP/t.h5" --hf "$TMP/bf" --dtype bf16 >/dev/null
    "$KSA" export --ckpt "$TMP/t.h5" --hf "$TMP/hf16" --dtype f16 >/dev/null
    "$PY" - "$TMP" <<'PYEOF'
import sys, json, struct, h5py, numpy as np
sys.path.insert(0, "scripts")
from make_hf_fixture import to_bf16
d = sys.argv[1]
f = h5py.File(d + "/t.h5", "r")
P = {k: f["params"][k][()] for k in f["params"]}
S = int(f["config"].attrs["summary_token_num"])
P["model.embed_tokens.weight"] = np.concatenate([P["model.embed_tokens.weight"],
                                                 P.pop("summary_embedding.weight")])
for sub, dt, conv in (("bf", "BF16", lambda x: to_bf16(x)),
                      ("hf16", "F16", lambda x: x.astype(np.float16).view(np.uint16))):
    raw = open(d + "/" + sub + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    assert sorted(k for k in h if k != "__metadata__") == sorted(P), sub
    for k, x in P.items():
        a, b = h[k]["data_offsets"]
        assert h[k]["dtype"] == dt and h[k]["shape"] == list(x.shape), (k, h[k])
        got = np.frombuffer(raw[8 + n + a: 8 + n + b], "<u2").reshape(x.shape)
        assert np.array_equal(got, conv(x)), (sub, k)
    cfg = json.load(open(d + "/" + sub + "/config.json"))
    assert cfg["torch_dtype"] == {"BF16": "bfloat16", "F16": "float16"}[dt]
    assert cfg["vocab_size"] == f["config"].attrs["vocab_size"] + S
print("bf16 and f16 as numpy rounds them")
PYEOF
    # and back: the widened values
    "$KSA" import --hf "$TMP/bf" --out "$TMP/bf.h5" >/dev/null
    "$PY" - "$TMP" <<'PYEOF'
import sys, h5py, numpy as np
sys.path.insert(0, "scripts")
from make_hf_fixture import to_bf16, from_bf16
d = sys.argv[1]
a, b = h5py.File(d + "/t.h5", "r"), h5py.File(d + "/bf.h5", "r")
for k in a["params"]:
    assert np.array_equal(b["params"][k][()], from_bf16(to_bf16(a["params"][k][()])).reshape(
        a["params"][k].shape)), k
PYEOF
}

bad_inputs_are_refused_with_one_line_and_no_output() {
    fixtures
    local h="$TMP/hf"
    local cases=(
        "missing_key|config $h/bad_missing_key/config.json: missing key 'num_key_value_heads' (or 'num_kv_heads')"
        "inconsistent_key|config $h/bad_inconsistent_key/config.json: inconsistent keys: hidden_size = 32 but embed_dim = 64"
        "unsupported|config $h/bad_unsupported/config.json: attention_bias = true is not supported"
        "bad_shape|$h/bad_bad_shape/model-00001-of-00003.safetensors: tensor 'model.embed_tokens.weight' has shape [32, 302, 1], the configuration needs [302, 32]"
        "bad_dtype|$h/bad_bad_dtype/model-00001-of-00003.safetensors: tensor 'model.embed_tokens.weight' has dtype I16"
        "unknown_dtype|safetensors $h/bad_unknown_dtype/model-00001-of-00003.safetensors: tensor 'model.embed_tokens.weight' has unknown dtype 'F12'"
        "truncated|safetensors $h/bad_truncated/model-00002-of-00003.safetensors: tensor 'model.layers.1.self_attn.k_norm.weight' ends at data byte 12384, past the end of the file (12374 data bytes): truncated?"
        "overlap|safetensors $h/bad_overlap/model-00001-of-00003.safetensors: tensor 'model.layers.0.input_layernorm.weight' (bytes 19326-19390) overlaps tensor 'model.embed_tokens.weight'"
        "header_too_large|safetensors $h/bad_header_too_large/model-00003-of-00003.safetensors: the header length"
        "missing_shard|$h/bad_missing_shard/model.safetensors.index.json names shard $h/bad_missing_shard/model-00002-of-00003.safetensors, which is missing"
    )
    local c
    for c in "${cases[@]}"; do
        expect_error "ksa import: ${c#*|}" "$KSA" import --hf "$h/bad_${c%%|*}" --out "$TMP/x.h5"
        [ "$(wc -l <"$TMP/stderr")" = 1 ]
        must_fail test -e "$TMP/x.h5"
        must_fail test -e "$TMP/x.h5.tmp"
    done
    mkdir "$TMP/noweights"
    cp "$h/sharded/config.json" "$TMP/noweights"
    expect_error "$TMP/noweights holds neither model.safetensors nor model.safetensors.index.json" \
        "$KSA" import --hf "$TMP/noweights" --out "$TMP/x.h5"
    expect_error "cannot read config '$TMP/config.json': No such file or directory" \
        "$KSA" import --hf "$TMP" --out "$TMP/x.h5"
    expect_error "--hf DIR and --out FILE are required" "$KSA" import --hf "$h/sharded"
    # export: bad options and an unreadable checkpoint leave no folder content behind
    "$KSA" import --hf "$h/sharded" --out "$TMP/a.h5" >/dev/null
    expect_error "--dtype f8: expected f32, bf16 or f16" \
        "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/e" --dtype f8
    expect_error "--max-shard-size lots: expected a size" \
        "$KSA" export --ckpt "$TMP/a.h5" --hf "$TMP/e" --max-shard-size lots
    expect_error "cannot open checkpoint $TMP/none.h5" \
        "$KSA" export --ckpt "$TMP/none.h5" --hf "$TMP/e"
    must_fail test -e "$TMP/e"
}

# A checkpoint in the middle of annealing (summary_mix_qkv) is not exported: Hugging Face would
# run its summary projections at mix 1. Before the annealing starts it exports.
ANNEAL=(--config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 1 --eval-every 0
    --val-data "" --summary-mix-qkv true --summary-mix-start-iter 1 --summary-mix-end-iter 5)
a_model_in_the_middle_of_annealing_is_not_exported() {
    "$KSA" train "${ANNEAL[@]}" --steps 2 --out "$TMP/an" >/dev/null
    must_fail "$KSA" export --ckpt "$TMP/an/step_00000002.h5" --hf "$TMP/an_hf" >"$TMP/o" 2>&1
    grep -q "^ksa export: $TMP/an/step_00000002.h5 anneals its summary projections (summary_mix_qkv) and runs with summary mix 0.7500 at step 2" "$TMP/o"
    [ ! -e "$TMP/an_hf" ]
    "$KSA" train "${ANNEAL[@]}" --steps 1 --out "$TMP/an1" >/dev/null
    "$KSA" export --ckpt "$TMP/an1/step_00000001.h5" --hf "$TMP/an1_hf" >/dev/null
    [ -s "$TMP/an1_hf/config.json" ]
}

inspect_shows_the_tokenizer_identity() {
    fixtures
    "$KSA" import --hf "$TMP/hf/sharded" --out "$TMP/s.h5" >"$TMP/log"
    local id
    id=$(sed -n 's/.*tokenizer \(bpe-[0-9a-f]\{16\}\), eot_id 297;.*/\1/p' "$TMP/log")
    [ -n "$id" ]
    "$KSA" inspect "$TMP/s.h5" >"$TMP/i"
    grep -qx "type = \"$id\"" "$TMP/i"
    grep -qx "eot_id = 297" "$TMP/i"
    grep -q "^tokenizer.json = $(wc -c <"$TMP/hf/sharded/tokenizer.json") bytes" "$TMP/i"
    # another tokenizer.json (one byte more) is another identity
    printf ' ' >>"$TMP/hf/sharded/tokenizer.json"
    "$KSA" import --hf "$TMP/hf/sharded" --out "$TMP/s2.h5" >"$TMP/log2"
    must_fail grep -q "$id" "$TMP/log2"
}

# The weights are mapped and each tensor's pages released after it is read: the peak is the
# program, the float32 parameters and about one tensor, not parameters + file. A 46 M-parameter
# model (177 MiB as float32, 89 MiB as bf16, its largest tensor 31 MiB): ~204 MiB above the
# program's own peak (a tiny import in the same build); ~265 MiB without the release. Under
# ASan every touched byte has 1/8 byte of shadow memory more.
import_memory_stays_near_the_float32_parameters() {
    fixtures
    cat >"$TMP/big.conf" <<'EOF'
vocab_size = 32000
hidden_size = 512
intermediate_size = 1536
num_hidden_layers = 4
num_attention_heads = 8
num_key_value_heads = 8
head_dim = 64
EOF
    "$KSA" init --config "$TMP/big.conf" --out "$TMP/big.h5" >/dev/null
    "$KSA" export --ckpt "$TMP/big.h5" --hf "$TMP/big" --dtype bf16 >/dev/null
    "$KSA" import --hf "$TMP/hf/single" --out "$TMP/small.h5" >"$TMP/log0"
    "$KSA" import --hf "$TMP/big" --out "$TMP/big2.h5" >"$TMP/log"
    cat "$TMP/log"
    local asan=0
    if ldd "$KSA" | grep -q libasan; then asan=1; fi
    "$PY" - "$TMP" "$asan" <<'PYEOF'
import sys, re, json, struct
d, asan = sys.argv[1], int(sys.argv[2])
def peak(name):
    t = open(d + "/" + name).read()
    return map(float, re.search(r"peak memory ([0-9.]+) MiB \(parameters ([0-9.]+) MiB", t).groups())
base, _ = peak("log0")
top, params = peak("log")
raw = open(d + "/big/model.safetensors", "rb").read(1 << 20)
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
largest = max(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items()
              if k != "__metadata__") / 2**20
bound = params + largest + 16 + (params / 8 if asan else 0)
print("peak %.1f MiB - program %.1f MiB = %.1f MiB for %.1f MiB of float32 parameters "
      "(largest tensor %.1f MiB; bound %.1f MiB)" % (top, base, top - base, params, largest, bound))
assert top - base <= bound, (top, base, bound)
PYEOF
}

for t in \
    import_reads_sharded_bf16_in_the_merged_form \
    import_reads_a_single_f32_f16_file_in_the_training_spelling \
    imported_model_loss_agrees_with_the_torch_reference \
    export_then_import_is_bit_identical_in_f32 \
    export_shards_above_the_size_limit \
    export_rounds_bf16_and_f16_to_nearest_even \
    bad_inputs_are_refused_with_one_line_and_no_output \
    inspect_shows_the_tokenizer_identity \
    a_model_in_the_middle_of_annealing_is_not_exported \
    import_memory_stays_near_the_float32_parameters; do
    run_test "$t" "$t"
done
finish
