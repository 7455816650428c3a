#!/usr/bin/python3
"""make_hf_fixture.py - small Hugging Face model folders for the tests of `ksa import`.

    scripts/make_hf_fixture.py OUT

writes, with numpy, struct and json only (no safetensors package):

  OUT/sharded/  config.json in the Hugging Face Qwen3 + KSA spelling (pattern strings of
                KSA_SPEC 1.3), BF16 weights in three shards with model.safetensors.index.json,
                in the exported form of KSA_SPEC 7.3 (summary_embedding merged below
                embed_tokens, vocab_size V+S, untied lm_head padded with S zero rows), and a
                tokenizer.json whose <|endoftext|> is an added token;
  OUT/single/   config.json in the training reference's spelling (embed_dim, num_layers, ...),
                one model.safetensors, F32 weights but the norms in F16, summary_embedding
                kept separate, tied embeddings, no tokenizer.json;
  OUT/<name>/expected.npz  the float32 value of every ksa.c parameter (KSA_SPEC 7.1 names)
                that importing the folder must give (the BF16 / F16 values widened);
  OUT/bad_<kind>/  copies of `sharded` broken in one way each (see BAD below).

Deterministic (numpy seed 7)."""
import json
import os
import shutil
import struct
import sys

import numpy as np

V, S, D, I, L, HQ, HKV, DH = 300, 2, 32, 48, 2, 4, 2, 8


def param_shapes(tied, summary_layers):
    """ksa.c's parameters of the fixture model (KSA_SPEC 7.1) in order."""
    shapes = [("model.embed_tokens.weight", (V, D)), ("summary_embedding.weight", (S, D))]
    for i in range(L):
        p = "model.layers.%d." % i
        shapes += [(p + "input_layernorm.weight", (D,)),
                   (p + "self_attn.q_proj.weight", (HQ * DH, D)),
                   (p + "self_attn.k_proj.weight", (HKV * DH, D)),
                   (p + "self_attn.v_proj.weight", (HKV * DH, D)),
                   (p + "self_attn.o_proj.weight", (D, HQ * DH)),
                   (p + "self_attn.q_norm.weight", (DH,)),
                   (p + "self_attn.k_norm.weight", (DH,))]
        if i in summary_layers:
            shapes += [(p + "self_attn.q_proj_summary.weight", (HQ * DH, D)),
                       (p + "self_attn.k_proj_summary.weight", (HKV * DH, D)),
                       (p + "self_attn.v_proj_summary.weight", (HKV * DH, D))]
        shapes += [(p + "post_attention_layernorm.weight", (D,)),
                   (p + "mlp.gate_proj.weight", (I, D)),
                   (p + "mlp.up_proj.weight", (I, D)),
                   (p + "mlp.down_proj.weight", (D, I))]
    shapes.append(("model.norm.weight", (D,)))
    if not tied:
        shapes.append(("lm_head.weight", (V, D)))
    return shapes


def values(shapes, rng):
    out = {}
    for name, shape in shapes:
        if len(shape) == 1:  # norms near 1, as trained ones are
            out[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    return out


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def encode(x, dtype):
    """(bytes, the float32 values they hold) of x stored as dtype."""
    if dtype == "BF16":
        h = to_bf16(x)
        return h.astype("<u2").tobytes(), from_bf16(h).reshape(x.shape)
    if dtype == "F16":
        h = x.astype(np.float16)
        return h.astype("<f2").tobytes(), h.astype(np.float32)
    return x.astype("<f4").tobytes(), x.astype(np.float32)


def write_safetensors(path, tensors):
    """tensors: [(name, dtype, shape, raw bytes)] in file order."""
    header, at = {"__metadata__": {"format": "pt"}}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, raw in tensors:
            f.write(raw)


def tokenizer_json():
    vocab = {chr(33 + i) if i < 94 else "<%d>" % i: i for i in range(V - 3)}
    return json.dumps({
        "version": "1.0",
        "added_tokens": [
            {"id": V - 3, "content": "<|endoftext|>", "special": True},
            {"id": V - 2, "content": "<|im_start|>", "special": True},
            {"id": V - 1, "content": "<|im_end|>", "special": True}],
        "model": {"type": "BPE", "vocab": vocab, "merges": []}}, indent=1).encode()


def make_sharded(out, rng):
    summary_layers = [1]
    shapes = param_shapes(False, summary_layers)
    P = values(shapes, rng)
    # KSA_SPEC 7.3: the HF form merges the summary rows below the text rows
    hf = []
    for name, shape in shapes:
        if name == "summary_embedding.weight":
            continue
        x = P[name]
        if name == "model.embed_tokens.weight":
            x = np.concatenate([x, P["summary_embedding.weight"]])
        if name == "lm_head.weight":
            x = np.concatenate([x, np.zeros((S, D), np.float32)])
        hf.append((name, x))
    expected, shards = {}, [[], [], []]
    for k, (name, x) in enumerate(hf):
        raw, held = encode(x, "BF16")
        shards[min(k * 3 // len(hf), 2)].append((name, "BF16", x.shape, raw))
        if name == "model.embed_tokens.weight":
            expected[name], expected["summary_embedding.weight"] = held[:V], held[V:]
        elif name == "lm_head.weight":
            expected[name] = held[:V]
        else:
            expected[name] = held
    os.makedirs(out, exist_ok=True)
    weight_map = {}
    for k, tensors in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, len(shards))
        write_safetensors(os.path.join(out, fname), tensors)
        weight_map.update({t[0]: fname for t in tensors})
    total = sum(len(t[3]) for s in shards for t in s)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)
    cfg = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
        "hidden_act": "silu", "rope_scaling": None, "use_sliding_window": False,
        "sliding_window": None, "torch_dtype": "bfloat16", "bos_token_id": V - 3,
        "eos_token_id": V - 3, "vocab_size": V + S, "hidden_size": D, "num_hidden_layers": L,
        "num_attention_heads": HQ, "num_key_value_heads": HKV, "head_dim": DH,
        "intermediate_size": I, "rope_theta": 10000, "rms_norm_eps": 1e-06,
        "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "use_summary_attention": True, "summary_chunk_size": 4, "summary_token_num": S,
        "summary_token_begin": V, "summary_sliding_chunk_num": "([2]*1+[3]*1)*1",
        "summary_layer_freq": "[0]*1+[1]*1", "summary_independent_parameters": True,
        "summary_independent_attention_layernorm": False,
        "summary_chunk_position_ids_type": "origin",
        "summary_token_position_ids_type": "last_chunk_slice_right",
        "summary_attention_mode": "kernel", "mix_coeff": 1.0}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    open(os.path.join(out, "tokenizer.json"), "wb").write(tokenizer_json())
    np.savez(os.path.join(out, "expected.npz"), **expected)


def make_single(out, rng):
    shapes = param_shapes(True, [0, 1])
    P = values(shapes, rng)
    tensors, expected = [], {}
    for name, shape in reversed(shapes):  # file order need not be the model's
        dtype = "F16" if len(shape) == 1 else "F32"
        raw, held = encode(P[name], dtype)
        tensors.append((name, dtype, shape, raw))
        expected[name] = held
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    cfg = {  # the training reference's spelling (its model_config_*.json)
        "__class__": "Qwen3SummaryAttentionConfig", "model_class": "Qwen3SummaryModel",
        "vocab_size": V, "embed_dim": D, "num_layers": L, "num_heads": HQ, "num_kv_heads": HKV,
        "head_dim": DH, "intermediate_dim": I, "max_seq_len": 4096, "rope_base": 10000,
        "norm_eps": 1e-6, "attn_dropout": 0.0, "q_proj_bias": False, "k_proj_bias": False,
        "v_proj_bias": False, "q_norm": True, "k_norm": True, "tie_word_embeddings": True,
        "use_summary_attention": True, "summary_chunk_size": 4, "summary_token_num": S,
        "summary_sliding_chunk_num": [3, 2], "summary_chunk_position_ids_type": "origin",
        "summary_token_position_ids_type": "last_chunk_slice_left",
        "summary_independent_parameters": True}
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    np.savez(os.path.join(out, "expected.npz"), **expected)


def edit_config(d, fn):
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    fn(cfg)
    json.dump(cfg, open(p, "w"), indent=2)


def shard(d, k=1):
    return os.path.join(d, "model-%05d-of-00003.safetensors" % k)


def rewrite_header(path, fn, keep_length=False):
    """Applies fn to the parsed header of path and writes the file back (same data)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    fn(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def first_tensor(header):
    return sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")[0][1]


# Each: (what it breaks, the edit). The test expects an error naming the file and the problem.
BAD = {
    "missing_key": lambda d: edit_config(d, lambda c: c.pop("num_key_value_heads")),
    "inconsistent_key": lambda d: edit_config(d, lambda c: c.update(embed_dim=2 * D)),
    "unsupported": lambda d: edit_config(d, lambda c: c.update(attention_bias=True)),
    "bad_shape": lambda d: rewrite_header(
        shard(d), lambda h: h[first_tensor(h)].update(
            shape=h[first_tensor(h)]["shape"][::-1] + [1])),
    "bad_dtype": lambda d: rewrite_header(
        shard(d), lambda h: h[first_tensor(h)].update(dtype="I16")),
    "unknown_dtype": lambda d: rewrite_header(
        shard(d), lambda h: h[first_tensor(h)].update(dtype="F12")),
    "truncated": lambda d: open(shard(d, 2), "r+b").truncate(os.path.getsize(shard(d, 2)) - 10),
    "overlap": lambda d: rewrite_header(shard(d), overlap_first_two),
    "header_too_large": lambda d: grow_header_length(shard(d, 3)),
    "missing_shard": lambda d: os.remove(shard(d, 2)),
}


def overlap_first_two(h):
    names = sorted((v["data_offsets"][0], k) for k, v in h.items() if k != "__metadata__")
    b = h[names[1][1]]  # the second tensor now starts 2 bytes inside the first
    b["data_offsets"] = [b["data_offsets"][0] - 2, b["data_offsets"][1] - 2]


def grow_header_length(path):
    raw = bytearray(open(path, "rb").read())
    raw[:8] = struct.pack("<Q", len(raw))  # larger than the file
    open(path, "wb").write(bytes(raw))


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    out = argv[1]
    rng = np.random.default_rng(7)
    make_sharded(os.path.join(out, "sharded"), rng)
    make_single(os.path.join(out, "single"), rng)
    for kind, edit in BAD.items():
        d = os.path.join(out, "bad_" + kind)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(os.path.join(out, "sharded"), d)
        edit(d)


if __name__ == "__main__":
    main(sys.argv)
