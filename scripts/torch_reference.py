#!/usr/bin/python3
"""torch_reference.py - independent float64 PyTorch implementation of the KSA model.

Written from the shared docs KSA_SPEC.md (sections 0-7) and CHECKPOINT_FORMAT.md only; no code
is shared with src/. It exists to cross-check the C implementation (docs/crosscheck.md).

    scripts/torch_reference.py [--out DIR]     write the fixtures (default: <repo>/tests/refs)
    scripts/torch_reference.py --check PATH    recompute every PATH/*.h5 (or the one file PATH)
                                               from its own /config, /params and /inputs;
                                               compare with its stored outputs and grads
    scripts/torch_reference.py --selftest      masks vs the drawn grids of KSA_SPEC 3.3, position
                                               ids vs 2.5 / Appendix A, model-level invariants
    scripts/torch_reference.py --list          the fixtures and what each switches on
    scripts/torch_reference.py --loss MODEL TOKENS L
                                               the mean loss of MODEL (a checkpoint, or a
                                               Hugging Face folder read here with numpy:
                                               config.json + safetensors, KSA_SPEC 7.3) over
                                               every full row of L+1 tokens of TOKENS

Model (KSA_SPEC 6.2): the expanded sequence interleaves chunks of C text tokens with S summary
tokens; a partial tail chunk has text only (ksa.c decision, 2.3). Summary layers attend with a
dense mask built literally from the 3.1 predicate visible(q, k) with the layer's window W_l;
bypass layers (4.3) run causal attention over the text rows only and pass summary rows through
unchanged. Loss (6.3, ksa.c convention): a row holds L+1 tokens, inputs the first L, targets
the last L, all L targets count; loss = mean over all nseq*L targets.

Everything is computed in float64. Parameters are drawn in float64, rounded to float32 (the
stored values) and used at exactly those values, so a float32 reader of the fixture sees the
same model that produced the stored outputs.

Needs Debian's interpreter (/usr/bin/python3 with python3-torch 1.13, python3-h5py, numpy).
"""

import argparse
import json
import math
import os
import sys

import h5py
import numpy as np
import torch

torch.set_num_threads(2)
DT = torch.float64

# ---------------------------------------------------------------------------------------------
# Configuration (KSA_SPEC 1, CHECKPOINT_FORMAT /config)
# ---------------------------------------------------------------------------------------------

MODEL_KEYS = [
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "rope_theta", "rms_norm_eps",
    "max_position_embeddings", "tie_word_embeddings", "use_summary_attention",
    "summary_chunk_size", "summary_token_num", "summary_sliding_chunk_num",
    "summary_layer_freq", "summary_independent_parameters", "summary_independent_qkv",
    "summary_independent_attention_layernorm", "summary_independent_qk_norm",
    "summary_chunk_position_ids_type", "summary_token_position_ids_type",
    "summary_token_begin", "layer_sliding_window", "sliding_chunk_attention",
    "summary_mix_qkv", "summary_mix_start_iter", "summary_mix_end_iter",
]
FLOAT_KEYS = {"rope_theta", "rms_norm_eps"}
STRING_KEYS = {"summary_chunk_position_ids_type", "summary_token_position_ids_type"}
PATTERN_KEYS = {"summary_sliding_chunk_num", "summary_layer_freq"}
BOOL_KEYS = {
    "tie_word_embeddings", "use_summary_attention", "summary_independent_parameters",
    "summary_independent_qkv", "summary_independent_attention_layernorm",
    "summary_independent_qk_norm", "sliding_chunk_attention", "summary_mix_qkv",
}
# Keys a file may lack; the attention variants (docs/configs.md) are written only when on,
# so that files of models without them look as they did before the keys existed.
OPTIONAL_DEFAULTS = {"summary_independent_qk_norm": 0, "layer_sliding_window": 0,
                     "sliding_chunk_attention": 0, "summary_mix_qkv": 0,
                     "summary_mix_start_iter": 0, "summary_mix_end_iter": 0}
VARIANT_KEYS = ("layer_sliding_window", "sliding_chunk_attention", "summary_mix_qkv",
                "summary_mix_start_iter", "summary_mix_end_iter")
TEXT_POS_TYPES = ("origin", "inner_chunk")
SUM_POS_TYPES = ("zeros", "last_chunk_slice_right", "last_chunk_slice_left")


def parse_pattern(s):
    """KSA_SPEC 1.3: '[a,b]' lists, '+' concatenation, '*' repetition, parentheses.

    expr := term ('+' term)*;  term := factor ('*' INT)* | INT '*' factor;
    factor := '[' INT (',' INT)* ']' | '(' expr ')'.  '*' binds tighter than '+'.
    """
    allowed = set("0123456789,[]()+* \t\n")
    bad = set(s) - allowed
    if bad:
        raise ValueError("pattern %r has characters outside digits , [ ] ( ) + *: %r" % (s, bad))
    toks = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(s) and s[j].isdigit():
                j += 1
            toks.append(("int", int(s[i:j])))
            i = j
        else:
            toks.append((ch, None))
            i += 1
    pos = [0]

    def peek():
        return toks[pos[0]][0] if pos[0] < len(toks) else None

    def take(kind):
        if peek() != kind:
            raise ValueError("pattern %r: expected %r at token %d" % (s, kind, pos[0]))
        t = toks[pos[0]]
        pos[0] += 1
        return t[1]

    def factor():
        if peek() == "[":
            take("[")
            out = [take("int")]
            while peek() == ",":
                take(",")
                out.append(take("int"))
            take("]")
            return out
        if peek() == "(":
            take("(")
            out = expr()
            take(")")
            return out
        raise ValueError("pattern %r: expected '[' or '(' at token %d" % (s, pos[0]))

    def term():
        if peek() == "int":
            n = take("int")
            take("*")
            out = factor() * n
        else:
            out = factor()
        while peek() == "*":
            take("*")
            out = out * take("int")
        return out

    def expr():
        out = term()
        while peek() == "+":
            take("+")
            out = out + term()
        return out

    out = expr()
    if pos[0] != len(toks):
        raise ValueError("pattern %r: trailing input at token %d" % (s, pos[0]))
    return out


def per_layer_values(value, n_layers, key):
    """int -> the same value for every layer; '[...]' pattern -> one value per layer."""
    if isinstance(value, str):
        if "[" in value:
            vals = parse_pattern(value)
            if len(vals) != n_layers:
                raise ValueError("%s = %r gives %d entries, the model has %d layers"
                                 % (key, value, len(vals), n_layers))
            return vals
        value = int(value.strip())
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ValueError("%s has %d entries, the model has %d layers"
                             % (key, len(value), n_layers))
        return [int(v) for v in value]
    return [int(value)] * n_layers


class Model:
    """Resolved configuration: every decision derived from the /config keys in one place."""

    def __init__(self, cfg):
        self.cfg = dict(cfg)
        g = self.cfg.get
        self.V = int(cfg["vocab_size"])
        self.D = int(cfg["hidden_size"])
        self.n_layers = int(cfg["num_hidden_layers"])
        self.Hq = int(cfg["num_attention_heads"])
        self.Hkv = int(cfg["num_key_value_heads"])
        self.dh = int(cfg["head_dim"])
        self.I = int(cfg["intermediate_size"])
        self.theta = float(cfg["rope_theta"])
        self.eps = float(cfg["rms_norm_eps"])
        self.max_pos = int(cfg["max_position_embeddings"])
        self.tied = bool(int(cfg["tie_word_embeddings"]))
        if self.Hq % self.Hkv != 0:
            raise ValueError("num_attention_heads %d is not a multiple of num_key_value_heads %d"
                             % (self.Hq, self.Hkv))
        if self.dh % 2 != 0:
            raise ValueError("RoPE needs an even head_dim, got %d" % self.dh)
        self.C = int(g("summary_chunk_size", 0))
        self.S = int(g("summary_token_num", 0))
        # causal layers: a token sees itself and the N before it (SWA; 0 = all earlier)
        self.window = int(g("layer_sliding_window", 0))
        if self.window < 0:
            raise ValueError("layer_sliding_window must be >= 0, got %d" % self.window)
        # sliding chunks (SCA): summary layers without summary tokens
        self.sca = bool(int(g("sliding_chunk_attention", 0)))
        use = bool(int(g("use_summary_attention", 0)))
        if self.sca and (not use or self.C < 1 or self.S != 0):
            raise ValueError("sliding_chunk_attention needs use_summary_attention, C >= 1, S = 0")
        # KSA_SPEC 1.1: KSA is on only with the switch AND C > 0 AND S > 0
        self.active = use and self.C > 0 and (self.S > 0 or self.sca)
        if not self.active:
            # a plain causal Qwen3-style model; every summary_* key is ignored
            self.is_summary_layer = [False] * self.n_layers
            self.W = [None] * self.n_layers
            self.indep_params = self.indep_qkv = self.indep_ln = self.indep_qkn = False
            self.text_pos_type = "origin"
            self.sum_pos_type = "zeros"
            self.begin = None
            return
        self.W = per_layer_values(g("summary_sliding_chunk_num", 0), self.n_layers,
                                  "summary_sliding_chunk_num")
        if any(w < 0 for w in self.W):
            raise ValueError("negative summary_sliding_chunk_num: %r" % (self.W,))
        freq = g("summary_layer_freq", 0)
        if isinstance(freq, str) and "[" not in freq:
            freq = int(freq.strip())
        if isinstance(freq, str):
            flags = per_layer_values(freq, self.n_layers, "summary_layer_freq")
            if any(f not in (0, 1) for f in flags):
                raise ValueError("summary_layer_freq list entries must be 0 or 1: %r" % flags)
            self.is_summary_layer = [f == 1 for f in flags]
        else:
            freq = int(freq)
            if freq < 0:
                raise ValueError("summary_layer_freq must be >= 0, got %d" % freq)
            # KSA_SPEC 4.1 (the code's meaning): layer i is a summary layer iff i mod N == 0
            self.is_summary_layer = [freq == 0 or i % freq == 0 for i in range(self.n_layers)]
        self.indep_params = bool(int(g("summary_independent_parameters", 0)))
        qkv = g("summary_independent_qkv", None)
        self.indep_qkv = self.indep_params if qkv is None else bool(int(qkv))
        self.indep_ln = bool(int(g("summary_independent_attention_layernorm", 0)))
        self.indep_qkn = bool(int(g("summary_independent_qk_norm", 0)))
        # annealing (KSA_SPEC 5.5): the coefficient m of the step being computed; a fixture
        # sets it (the file's root attribute summary_mix), 1 otherwise
        self.mix_qkv = bool(int(g("summary_mix_qkv", 0)))
        self.mix = 1.0
        if self.sca:  # no summary tokens: no summary parameters
            self.indep_params = self.indep_qkv = self.indep_ln = self.indep_qkn = False
        self.text_pos_type = g("summary_chunk_position_ids_type", "inner_chunk")
        self.sum_pos_type = g("summary_token_position_ids_type", "zeros")
        if self.text_pos_type not in TEXT_POS_TYPES:
            raise ValueError("summary_chunk_position_ids_type %r" % self.text_pos_type)
        if self.sum_pos_type not in SUM_POS_TYPES:
            raise ValueError("summary_token_position_ids_type %r" % self.sum_pos_type)
        self.begin = None
        if not self.indep_params and not self.sca:
            b = g("summary_token_begin", None)
            if b is None:
                raise ValueError("shared summary parameters need summary_token_begin")
            self.begin = int(b)
            if self.begin < 0 or self.begin + self.S > self.V:
                raise ValueError("summary_token_begin %d + S %d exceeds vocab_size %d"
                                 % (self.begin, self.S, self.V))

    def layer_kinds(self):
        if not self.active:
            return "causal x%d" % self.n_layers
        return ", ".join("%d:%s" % (i, ("SA(W=%d)" % self.W[i]) if s else "bypass")
                         for i, s in enumerate(self.is_summary_layer))

    def param_specs(self):
        """[(name, shape, init kind)] in a canonical order (KSA_SPEC 7.1, CHECKPOINT_FORMAT)."""
        D, I, V, dh = self.D, self.I, self.V, self.dh
        qd, kvd = self.Hq * dh, self.Hkv * dh
        out = [("model.embed_tokens.weight", (V, D), "embed")]
        if self.active and self.indep_params:
            out.append(("summary_embedding.weight", (self.S, D), "embed"))
        for i in range(self.n_layers):
            p = "model.layers.%d." % i
            sa = self.is_summary_layer[i]
            out.append((p + "input_layernorm.weight", (D,), "norm"))
            if sa and self.indep_ln:
                out.append((p + "input_layernorm_summary.weight", (D,), "norm"))
            out += [(p + "self_attn.q_proj.weight", (qd, D), "linear"),
                    (p + "self_attn.k_proj.weight", (kvd, D), "linear"),
                    (p + "self_attn.v_proj.weight", (kvd, D), "linear"),
                    (p + "self_attn.o_proj.weight", (D, qd), "linear"),
                    (p + "self_attn.q_norm.weight", (dh,), "norm"),
                    (p + "self_attn.k_norm.weight", (dh,), "norm")]
            if sa and self.indep_qkv:
                out += [(p + "self_attn.q_proj_summary.weight", (qd, D), "linear"),
                        (p + "self_attn.k_proj_summary.weight", (kvd, D), "linear"),
                        (p + "self_attn.v_proj_summary.weight", (kvd, D), "linear")]
                if self.indep_qkn:
                    out += [(p + "self_attn.q_norm_summary.weight", (dh,), "norm"),
                            (p + "self_attn.k_norm_summary.weight", (dh,), "norm")]
            out += [(p + "post_attention_layernorm.weight", (D,), "norm"),
                    (p + "mlp.gate_proj.weight", (I, D), "linear"),
                    (p + "mlp.up_proj.weight", (I, D), "linear"),
                    (p + "mlp.down_proj.weight", (D, I), "linear")]
        out.append(("model.norm.weight", (D,), "norm"))
        if not self.tied:
            out.append(("lm_head.weight", (V, D), "linear"))
        return out


# ---------------------------------------------------------------------------------------------
# Layout and position ids (KSA_SPEC 2)
# ---------------------------------------------------------------------------------------------

class Layout:
    """The expanded sequence, one entry per position: (is_sum, chunk, index).

    index = text index i for a text token t_i, j for summary token s_c.j. The ksa.c layout
    (tail_summaries=False) gives summaries to complete chunks only; tail_summaries=True is the
    training reference's layout (2.1), used only by the self-test."""

    def __init__(self, L, C, S, active=True, tail_summaries=False):
        self.L, self.C, self.S = L, C, S
        self.is_sum, self.chunk, self.index = [], [], []
        if not active:
            for i in range(L):
                self._add(False, 0, i)
        else:
            for c in range((L + C - 1) // C):
                e = min((c + 1) * C, L)
                for i in range(c * C, e):
                    self._add(False, c, i)
                if e - c * C == C or tail_summaries:
                    for j in range(S):
                        self._add(True, c, j)
        self.N = len(self.is_sum)
        self.text_rows = [p for p in range(self.N) if not self.is_sum[p]]
        self.sum_rows = [p for p in range(self.N) if self.is_sum[p]]

    def _add(self, is_sum, c, idx):
        self.is_sum.append(is_sum)
        self.chunk.append(c)
        self.index.append(idx)

    def labels(self):
        return [("s%d.%d" % (self.chunk[p], self.index[p])) if self.is_sum[p]
                else ("t%d" % self.index[p]) for p in range(self.N)]


def text_position(i, C, typ):
    if typ == "origin":
        return i
    if typ == "inner_chunk":
        return i - (i // C) * C
    raise ValueError(typ)


def summary_position(c, j, C, S, L, typ, tail_quirk=False):
    """KSA_SPEC 2.4 with the recommended a = c*C (tail_quirk reproduces the training
    reference's a = c*len_c, only for the self-test against the bold entries of 2.5)."""
    e = min((c + 1) * C, L)
    a = c * C
    if tail_quirk:
        a = c * (e - c * C)
    ln = e - a
    if typ == "zeros":
        return 0
    if typ == "last_chunk_slice_right":
        return max(a, a + ((j + 1) * ln) // S - 1)
    if typ == "last_chunk_slice_left":
        return max(a, a + (j * ln) // S - 1)
    raise ValueError(typ)


def position_ids(lay, text_type, sum_type, tail_quirk=False):
    out = []
    for p in range(lay.N):
        if lay.is_sum[p]:
            out.append(summary_position(lay.chunk[p], lay.index[p], lay.C, lay.S, lay.L,
                                        sum_type, tail_quirk))
        else:
            out.append(text_position(lay.index[p], lay.C, text_type))
    return out


# ---------------------------------------------------------------------------------------------
# Visibility (KSA_SPEC 3.1), literally
# ---------------------------------------------------------------------------------------------

def visible(lay, q, k, W):
    cq, ck = lay.chunk[q], lay.chunk[k]
    if lay.is_sum[q]:
        return ck == cq and k <= q
    return k <= q and ((not lay.is_sum[k] and cq - ck <= W) or (lay.is_sum[k] and cq - ck > W))


def summary_mask_literal(lay, W):
    """Dense bool mask [N, N]: mask[q, k] = visible(q, k), one call per pair (the definition;
    quadratic in Python, so only for the self-test's small layouts)."""
    m = torch.zeros(lay.N, lay.N, dtype=torch.bool)
    for q in range(lay.N):
        for k in range(lay.N):
            if visible(lay, q, k, W):
                m[q, k] = True
    return m


def summary_mask(lay, W):
    """Dense bool mask [N, N] for a summary layer of window W: the predicate of visible()
    evaluated on every (q, k) pair at once (the self-test checks it against the literal mask),
    so that long layouts (N in the thousands) take tensor operations, not N^2 calls."""
    is_sum = torch.tensor(lay.is_sum, dtype=torch.bool)
    chunk = torch.tensor(lay.chunk, dtype=torch.int32)            # [N, N] differences below
    past = causal_mask(lay.N)                                   # k <= q
    dist = chunk[:, None] - chunk[None, :]                      # cq - ck
    sum_q, sum_k = is_sum[:, None], is_sum[None, :]
    text_q = (~sum_k & (dist <= W)) | (sum_k & (dist > W))
    return past & torch.where(sum_q, dist == 0, text_q)


def causal_mask(n, window=0):
    """Causal [n, n]; with window N > 0 query q sees keys q-N ... q only."""
    m = torch.ones(n, n, dtype=torch.bool).tril()
    if window > 0:
        m &= torch.ones(n, n, dtype=torch.bool).triu(-window)
    return m


# ---------------------------------------------------------------------------------------------
# The model (KSA_SPEC 6)
# ---------------------------------------------------------------------------------------------

# The eps of q_norm_summary / k_norm_summary (KSA_SPEC 5.4): hard-coded, not rms_norm_eps.
SUMMARY_QK_NORM_EPS = 1e-6


def rmsnorm(x, w, eps):
    """y = w * x / sqrt(mean(x^2) + eps) over the last axis."""
    return w * (x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps))


def rope_tables(pos, dh, theta):
    """cos, sin [N, dh/2] for integer positions pos; angle p * theta_i in float64."""
    i = torch.arange(0, dh // 2, dtype=DT)
    inv = theta ** (-2.0 * i / dh)
    ang = torch.tensor(pos, dtype=DT)[:, None] * inv[None, :]
    return torch.cos(ang), torch.sin(ang)


def rope(x, cos, sin):
    """Half rotation (rotate_half). x: [nseq, N, H, dh]; cos, sin: [N, dh/2]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    # the tables are float64; a float32 model (scripts/torch_train.py) rotates in float32
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def attention(q, k, v, mask, Hq, Hkv):
    """q: [nseq, N, Hq, dh]; k, v: [nseq, N, Hkv, dh]; mask [N, N] bool (query, key).
    GQA: query head h reads kv head h // (Hq / Hkv). Returns [nseq, N, Hq*dh]."""
    nseq, N, _, dh = q.shape
    g = Hq // Hkv
    k = k.repeat_interleave(g, dim=2)
    v = v.repeat_interleave(g, dim=2)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)   # [nseq, H, N, dh]
    scores = torch.matmul(qt, kt.transpose(-1, -2)) / math.sqrt(dh)
    scores = scores.masked_fill(~mask[None, None], float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = torch.matmul(p, vt)                                                 # [nseq, H, N, dh]
    return o.transpose(1, 2).reshape(nseq, N, Hq * dh)


def mlp(x, P, pre):
    gate = x @ P[pre + "mlp.gate_proj.weight"].T
    up = x @ P[pre + "mlp.up_proj.weight"].T
    return (gate * torch.sigmoid(gate) * up) @ P[pre + "mlp.down_proj.weight"].T


def causal_block(m, P, i, h, pos):
    """Ordinary pre-norm Qwen3 block over text rows h [nseq, L, D] (bypass / plain causal)."""
    pre = "model.layers.%d." % i
    nseq, n, _ = h.shape
    x = rmsnorm(h, P[pre + "input_layernorm.weight"], m.eps)
    q = (x @ P[pre + "self_attn.q_proj.weight"].T).reshape(nseq, n, m.Hq, m.dh)
    k = (x @ P[pre + "self_attn.k_proj.weight"].T).reshape(nseq, n, m.Hkv, m.dh)
    v = (x @ P[pre + "self_attn.v_proj.weight"].T).reshape(nseq, n, m.Hkv, m.dh)
    q = rmsnorm(q, P[pre + "self_attn.q_norm.weight"], m.eps)
    k = rmsnorm(k, P[pre + "self_attn.k_norm.weight"], m.eps)
    cos, sin = rope_tables(pos, m.dh, m.theta)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    a = attention(q, k, v, causal_mask(n, m.window), m.Hq, m.Hkv)
    h = h + a @ P[pre + "self_attn.o_proj.weight"].T
    return h + mlp(rmsnorm(h, P[pre + "post_attention_layernorm.weight"], m.eps), P, pre)


def summary_block(m, P, i, h, lay, pos, mask):
    """Summary layer over the whole expanded sequence h [nseq, N, D] (KSA_SPEC 4.2, 5)."""
    pre = "model.layers.%d." % i
    nseq, N, _ = h.shape
    is_sum = torch.tensor(lay.is_sum, dtype=torch.bool)
    row = is_sum[None, :, None]                               # broadcast over [nseq, N, *]
    x = rmsnorm(h, P[pre + "input_layernorm.weight"], m.eps)
    if m.indep_ln:
        x = torch.where(row, rmsnorm(h, P[pre + "input_layernorm_summary.weight"], m.eps), x)

    def proj(name):
        y = x @ P[pre + "self_attn.%s.weight" % name].T
        if m.indep_qkv:
            y = torch.where(row, x @ P[pre + "self_attn.%s_summary.weight" % name].T, y)
        return y

    def head_norm(y, name):
        w = P[pre + "self_attn.%s.weight" % name]
        y_text = rmsnorm(y, w, m.eps)
        if not (m.indep_qkv and m.indep_qkn):
            return y_text
        # {q,k}_norm_summary: eps fixed at 1e-6 whatever rms_norm_eps is (KSA_SPEC 5.4, 6.1)
        y_sum = rmsnorm(y, P[pre + "self_attn.%s_summary.weight" % name], SUMMARY_QK_NORM_EPS)
        return torch.where(is_sum[None, :, None, None], y_sum, y_text)

    q = head_norm(proj("q_proj").reshape(nseq, N, m.Hq, m.dh), "q_norm")
    k = head_norm(proj("k_proj").reshape(nseq, N, m.Hkv, m.dh), "k_norm")
    v = proj("v_proj").reshape(nseq, N, m.Hkv, m.dh)
    if m.indep_qkv and m.mix_qkv and m.mix != 1:
        # KSA_SPEC 5.5: after the head norms, summary rows m·own + (1 − m)·shared, where
        # shared = the shared projection and head norm of the same summary row's input
        def shared(name, H, norm):
            y = (x @ P[pre + "self_attn.%s.weight" % name].T).reshape(nseq, N, H, m.dh)
            return rmsnorm(y, P[pre + "self_attn.%s.weight" % norm], m.eps) if norm else y
        srow = is_sum[None, :, None, None]
        q = torch.where(srow, m.mix * q + (1 - m.mix) * shared("q_proj", m.Hq, "q_norm"), q)
        k = torch.where(srow, m.mix * k + (1 - m.mix) * shared("k_proj", m.Hkv, "k_norm"), k)
        v = torch.where(srow, m.mix * v + (1 - m.mix) * shared("v_proj", m.Hkv, None), v)
    cos, sin = rope_tables(pos, m.dh, m.theta)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    a = attention(q, k, v, mask, m.Hq, m.Hkv)
    h = h + a @ P[pre + "self_attn.o_proj.weight"].T
    return h + mlp(rmsnorm(h, P[pre + "post_attention_layernorm.weight"], m.eps), P, pre)


def forward(m, P, tokens, tail_summaries=False, tail_quirk=False):
    """tokens: int64 [nseq, L+1]. Returns (logits [nseq, L, V], mean loss over nseq*L).

    tail_summaries / tail_quirk switch to the training reference's layout (self-test only)."""
    nseq, L1 = tokens.shape
    L = L1 - 1
    x, tgt = tokens[:, :L], tokens[:, 1:]
    E = P["model.embed_tokens.weight"]
    text_emb = E[x]                                                      # [nseq, L, D]
    if not m.active:
        h = text_emb
        pos = list(range(L))
        for i in range(m.n_layers):
            h = causal_block(m, P, i, h, pos)
        ht = h
    else:
        lay = Layout(L, m.C, m.S, True, tail_summaries)
        n_sum = len(lay.sum_rows)
        if m.sca:  # sliding chunks: no summary tokens, no summary rows
            srows = E[:0]
        elif m.indep_params:
            srows = P["summary_embedding.weight"]
        else:
            srows = E[m.begin:m.begin + m.S]
        sum_emb = srows[torch.tensor([lay.index[p] for p in lay.sum_rows], dtype=torch.long)]
        sum_emb = sum_emb[None].expand(nseq, n_sum, m.D)
        # concatenated rows [text..., summary...] -> expanded order
        perm = [0] * lay.N
        for r, p in enumerate(lay.text_rows):
            perm[p] = r
        for r, p in enumerate(lay.sum_rows):
            perm[p] = L + r
        perm = torch.tensor(perm, dtype=torch.long)
        h = torch.cat([text_emb, sum_emb], dim=1)[:, perm]
        pos = position_ids(lay, m.text_pos_type, m.sum_pos_type, tail_quirk)
        if max(pos) >= m.max_pos:
            raise ValueError("position %d >= max_position_embeddings %d" % (max(pos), m.max_pos))
        text_idx = torch.tensor(lay.text_rows, dtype=torch.long)
        sum_idx = torch.tensor(lay.sum_rows, dtype=torch.long)
        text_pos = [pos[p] for p in lay.text_rows]
        masks = {}
        for i in range(m.n_layers):
            if m.is_summary_layer[i]:
                W = m.W[i]
                if W not in masks:
                    masks[W] = summary_mask(lay, W)
                h = summary_block(m, P, i, h, lay, pos, masks[W])
            else:
                # bypass (4.3): text rows through a causal block, summary rows unchanged
                ht = causal_block(m, P, i, h[:, text_idx], text_pos)
                h = torch.cat([ht, h[:, sum_idx]], dim=1)[:, perm]
        ht = h[:, text_idx]
    y = rmsnorm(ht, P["model.norm.weight"], m.eps)
    head = E if m.tied else P["lm_head.weight"]
    logits = y @ head.T                                                  # [nseq, L, V]
    logp = torch.log_softmax(logits, dim=-1)
    loss = -logp.gather(-1, tgt[..., None]).mean()
    return logits, loss


def loss_and_grads(m, P, tokens):
    """Leaf float64 parameters P (requires_grad). Returns (loss, logits, {name: grad})."""
    for t in P.values():
        t.grad = None
    logits, loss = forward(m, P, tokens)
    loss.backward()
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)) for n, t in P.items()}
    return loss.detach(), logits.detach(), grads


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

def base_cfg(**kw):
    cfg = {
        "vocab_size": 61, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "intermediate_size": 48, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 128, "tie_word_embeddings": False,
        "use_summary_attention": True, "summary_chunk_size": 4, "summary_token_num": 1,
        "summary_sliding_chunk_num": 0, "summary_layer_freq": 0,
        "summary_independent_parameters": True, "summary_independent_qkv": None,
        "summary_independent_attention_layernorm": False, "summary_independent_qk_norm": False,
        "summary_chunk_position_ids_type": "origin",
        "summary_token_position_ids_type": "last_chunk_slice_right",
        "summary_token_begin": None,
        "layer_sliding_window": 0, "sliding_chunk_attention": False,
        "summary_mix_qkv": False, "summary_mix_start_iter": 0, "summary_mix_end_iter": 0,
    }
    for k, v in kw.items():
        if k not in cfg:
            raise KeyError(k)
        cfg[k] = v
    return cfg


# Each fixture: name, seed, nseq, L, config (summary_independent_qkv None = resolve from
# summary_independent_parameters), and the features it switches on (docs/crosscheck.md).
FIXTURES = [
    dict(name="ksa_s2_tail_indep", seed=1001, nseq=2, L=19,
         cfg=base_cfg(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=4,
                      intermediate_size=24, summary_chunk_size=4, summary_token_num=2,
                      summary_sliding_chunk_num="([2]*1+[0]*1)", summary_layer_freq=0,
                      summary_independent_parameters=True, summary_independent_qkv=None,
                      summary_independent_attention_layernorm=True,
                      summary_independent_qk_norm=True,
                      summary_chunk_position_ids_type="origin",
                      summary_token_position_ids_type="last_chunk_slice_right"),
         features="S=2, C=4, L=19 (4 complete chunks + tail of 3), nseq=2; mixed per-layer "
                  "windows from the pattern ([2]*1+[0]*1) (layer 0 W=2, layer 1 W=0); GQA 4/2; "
                  "independent summary embedding, q/k/v (resolved from "
                  "summary_independent_parameters), attention layernorm and q/k norms; "
                  "head_dim 4 (Hq*dh = 16 != hidden 32); untied lm_head; origin + "
                  "last_chunk_slice_right"),
    dict(name="ksa_bypass_list_shared_tied", seed=1002, nseq=1, L=23,
         cfg=base_cfg(vocab_size=97, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=6,
                      intermediate_size=16, rope_theta=1000.0, tie_word_embeddings=True,
                      summary_chunk_size=5, summary_token_num=2,
                      summary_sliding_chunk_num=1, summary_layer_freq="[1,0,1]",
                      summary_independent_parameters=False, summary_independent_qkv=None,
                      summary_token_begin=95,
                      summary_chunk_position_ids_type="origin",
                      summary_token_position_ids_type="last_chunk_slice_left"),
         features="bypass layer in list form [1,0,1] (layer 1 bypass); shared summary "
                  "parameters (summary tokens = embed_tokens rows 95, 96 = V-S..V-1; "
                  "summary_independent_qkv resolves to 0); tied embeddings; GQA 4/1; "
                  "head_dim 6 (Hq*dh = 24 != hidden 32); rope_theta 1000; S=2, C=5, L=23 "
                  "(tail of 3); W=1 (int); origin + last_chunk_slice_left"),
    dict(name="ksa_freq3_inner_zeros", seed=1003, nseq=2, L=16,
         cfg=base_cfg(vocab_size=61, hidden_size=32, num_hidden_layers=4,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=4,
                      intermediate_size=16, summary_chunk_size=4, summary_token_num=1,
                      summary_sliding_chunk_num=0, summary_layer_freq=3,
                      summary_independent_parameters=True, summary_independent_qkv=False,
                      summary_independent_attention_layernorm=True,
                      summary_chunk_position_ids_type="inner_chunk",
                      summary_token_position_ids_type="zeros"),
         features="summary_layer_freq = 3 (int form, the code's meaning: layers 0 and 3 are "
                  "summary layers, 1 and 2 bypass; the docs' reading 'every 3rd layer causal' "
                  "or an inverted one give different losses); summary rows pass unchanged "
                  "through two bypass layers and are read again in layer 3; W = 0 everywhere; "
                  "inner_chunk + zeros position ids (bypass layers see repeating text "
                  "positions); summary embedding on but summary_independent_qkv = 0 "
                  "explicitly, independent attention layernorm on; MHA 2/2, head_dim 4; "
                  "L=16 multiple of C=4 (no tail); S=1; nseq=2; untied"),
    dict(name="ksa_fullwin_s3_tied", seed=1004, nseq=1, L=37,
         cfg=base_cfg(vocab_size=67, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                      intermediate_size=16, tie_word_embeddings=True,
                      summary_chunk_size=6, summary_token_num=3,
                      summary_sliding_chunk_num="[8,1]", summary_layer_freq="([1]*2)",
                      summary_independent_parameters=True, summary_independent_qkv=True,
                      summary_independent_attention_layernorm=False,
                      summary_independent_qk_norm=True,
                      summary_chunk_position_ids_type="origin",
                      summary_token_position_ids_type="last_chunk_slice_right"),
         features="W >= number of chunks (layer 0 W=8, 6 complete chunks: all text, no "
                  "summaries visible to text) mixed with W=1 (layer 1) via the list [8,1]; "
                  "summary_layer_freq as an all-ones pattern ([1]*2); S=3, C=6, L=37 (tail of "
                  "1); right slices of S=3 (positions a+1, a+3, a+5); GQA 4/1; tied; "
                  "independent q/k/v and q/k norms without independent attention layernorm"),
    dict(name="ksa_eps1e-3_qknorm_long", seed=1006, nseq=1, L=300,
         cfg=base_cfg(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      intermediate_size=16, rms_norm_eps=1e-3, max_position_embeddings=512,
                      summary_chunk_size=4, summary_token_num=1,
                      summary_sliding_chunk_num="[3,0]", summary_layer_freq=0,
                      summary_independent_parameters=True, summary_independent_qkv=True,
                      summary_independent_attention_layernorm=False,
                      summary_independent_qk_norm=True,
                      summary_chunk_position_ids_type="origin",
                      summary_token_position_ids_type="last_chunk_slice_right"),
         features="rms_norm_eps = 1e-3 with independent q/k norms: every norm uses 1e-3 "
                  "except q_norm_summary / k_norm_summary, fixed at 1e-6 (KSA_SPEC 5.4, 6.1); "
                  "L=300 (75 chunks, 3 query blocks of the C kernels, so the multi-threaded "
                  "backward splits every kv head's work and sums partial dK/dV); W=3 and W=0; "
                  "GQA 4/2; independent q/k/v, shared attention layernorm; untied"),
    dict(name="ksa_eps0.1_ln_qknorm", seed=1007, nseq=2, L=25,
         cfg=base_cfg(vocab_size=53, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                      intermediate_size=24, rms_norm_eps=0.1,
                      summary_chunk_size=3, summary_token_num=2,
                      summary_sliding_chunk_num=1, summary_layer_freq=0,
                      summary_independent_parameters=True, summary_independent_qkv=None,
                      summary_independent_attention_layernorm=True,
                      summary_independent_qk_norm=True,
                      summary_chunk_position_ids_type="origin",
                      summary_token_position_ids_type="last_chunk_slice_right"),
         features="rms_norm_eps = 0.1 (large enough to change every norm by several percent) "
                  "with independent attention layernorm (eps 0.1, like every norm) and "
                  "independent q/k norms (eps 1e-6 whatever rms_norm_eps is); S=2, C=3, "
                  "L=25 (tail of 1); W=1; GQA 4/1; q/k/v resolved from "
                  "summary_independent_parameters; untied"),
    dict(name="sca_swa_hybrid", seed=1008, nseq=2, L=29,
         cfg=base_cfg(vocab_size=53, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      intermediate_size=24, summary_chunk_size=4, summary_token_num=0,
                      sliding_chunk_attention=True, summary_sliding_chunk_num="[1,0,2]",
                      summary_layer_freq="[1,0,1]", layer_sliding_window=5,
                      summary_independent_parameters=True,
                      summary_chunk_position_ids_type="origin"),
         features="attention variants (docs/configs.md): sliding-chunk layers (no summary "
                  "tokens; own chunk + W chunks of text, W = 1 and 2; summary_independent_"
                  "parameters is set but creates nothing) around a causal layer with a token "
                  "window of 5 (query t sees t-5 ... t); C=4, L=29 (tail of 1); GQA 4/2"),
    dict(name="swa_plain", seed=1009, nseq=1, L=33,
         cfg=base_cfg(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                      intermediate_size=16, use_summary_attention=False,
                      layer_sliding_window=7),
         features="sliding-window attention without summary attention: every layer a causal "
                  "layer whose queries see themselves and the 7 tokens before; MHA 2/2"),
    dict(name="ksa_anneal_mix", seed=1010, nseq=2, L=23, summary_mix=0.35,
         cfg=base_cfg(vocab_size=53, hidden_size=32, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      intermediate_size=24, summary_chunk_size=3, summary_token_num=2,
                      summary_sliding_chunk_num="[1,0,2]", summary_layer_freq="[1,0,1]",
                      summary_independent_parameters=True, summary_independent_qkv=True,
                      summary_independent_attention_layernorm=True,
                      summary_independent_qk_norm=True, summary_mix_qkv=True,
                      summary_mix_start_iter=2, summary_mix_end_iter=12),
         features="annealing (KSA_SPEC 5.5) at m = 0.35 (the root attribute summary_mix): the "
                  "summary rows' q/k/v are 0.35 x their own projections and head norms plus "
                  "0.65 x the shared ones on the same rows; independent attention layernorm "
                  "and q/k norms; a causal layer between two summary layers; S=2, C=3, L=23 "
                  "(tail of 2); GQA 4/2"),
    dict(name="causal_plain", seed=1005, nseq=2, L=40,
         cfg=base_cfg(vocab_size=61, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      intermediate_size=16, use_summary_attention=False,
                      summary_chunk_size=4, summary_token_num=1,
                      summary_sliding_chunk_num=0, summary_layer_freq=0,
                      summary_independent_parameters=True, summary_independent_qkv=True,
                      summary_chunk_position_ids_type="inner_chunk",
                      summary_token_position_ids_type="zeros"),
         features="plain causal Qwen3-style model: use_summary_attention = 0 while the other "
                  "summary_* keys hold non-default values (C=4, S=1, independent parameters, "
                  "inner_chunk) that must all be ignored: no summary rows, no summary "
                  "parameters, positions 0..L-1; GQA 4/2; untied; L=40, nseq=2"),
]


def resolved_cfg(cfg):
    """The /config attributes of a fixture: every key, summary_independent_qkv resolved,
    summary_token_begin only with summary attention on and shared summary parameters."""
    out = dict(cfg)
    if out["summary_independent_qkv"] is None:
        out["summary_independent_qkv"] = out["summary_independent_parameters"]
    m = Model(out)
    if not (m.active and not m.indep_params and not m.sca):
        out.pop("summary_token_begin", None)
    for key in VARIANT_KEYS:  # written only when on (OPTIONAL_DEFAULTS)
        if not out[key]:
            out.pop(key)
    return out


def init_params(m, gen):
    """Xavier-uniform linears, norm weights 1 + 0.1 N(0,1), embeddings N(0,1); the tied
    embedding (it is also the LM head) N(0, 1/D) so logits stay O(1). Rounded to float32."""
    P = {}
    for name, shape, kind in m.param_specs():
        if kind == "linear":
            a = math.sqrt(6.0 / (shape[0] + shape[1]))
            t = (torch.rand(shape, generator=gen, dtype=DT) * 2 - 1) * a
        elif kind == "norm":
            t = 1 + 0.1 * torch.randn(shape, generator=gen, dtype=DT)
        else:
            std = 1.0 / math.sqrt(m.D) if (m.tied and name == "model.embed_tokens.weight") \
                else 1.0
            t = std * torch.randn(shape, generator=gen, dtype=DT)
        P[name] = t.to(torch.float32).to(DT)
    return P


def write_attr(obj, key, value, kind):
    if kind == "str":
        obj.attrs.create(key, value, dtype=h5py.string_dtype("utf-8"))
    elif kind == "int":
        obj.attrs.create(key, np.int64(value), dtype=np.int64)
    elif kind == "float":
        obj.attrs.create(key, np.float64(value), dtype=np.float64)
    else:
        raise ValueError(kind)


def config_attr_kind(key, value):
    if key in STRING_KEYS:
        return "str"
    if key in FLOAT_KEYS:
        return "float"
    if key in PATTERN_KEYS:
        return "str" if isinstance(value, str) else "int"
    return "int"


def make_fixture(fx, outdir):
    cfg = resolved_cfg(fx["cfg"])
    m = Model(cfg)
    m.mix = fx.get("summary_mix", 1.0)
    gen = torch.Generator().manual_seed(fx["seed"])
    P = init_params(m, gen)
    tokens = torch.randint(0, m.V, (fx["nseq"], fx["L"] + 1), generator=gen, dtype=torch.long)
    for t in P.values():
        t.requires_grad_(True)
    loss, logits, grads = loss_and_grads(m, P, tokens)
    path = os.path.join(outdir, fx["name"] + ".h5")
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        write_attr(f, "format", "ksa-checkpoint", "str")
        write_attr(f, "format_version", 1, "int")
        write_attr(f, "seed", fx["seed"], "int")
        write_attr(f, "torch_version", torch.__version__, "str")
        write_attr(f, "generator", "scripts/torch_reference.py", "str")
        write_attr(f, "description", fx["features"], "str")
        if "summary_mix" in fx:  # the annealing coefficient the outputs were computed with
            write_attr(f, "summary_mix", fx["summary_mix"], "float")
        g = f.create_group("config")
        for key in MODEL_KEYS:
            if key not in cfg:
                continue
            v = cfg[key]
            kind = config_attr_kind(key, v)
            write_attr(g, key, int(v) if kind == "int" else v, kind)
        g = f.create_group("params")
        for name, shape, _ in m.param_specs():
            g.create_dataset(name, data=P[name].detach().numpy().astype(np.float32))
        g = f.create_group("tokenizer")
        write_attr(g, "type", "byte", "str")
        write_attr(g, "eot_id", 256, "int")
        g = f.create_group("inputs")
        g.create_dataset("tokens", data=tokens.numpy().astype(np.int32))
        g = f.create_group("outputs")
        g.create_dataset("loss", data=np.float64(loss.item()))
        g.create_dataset("logits", data=logits.reshape(-1, m.V).numpy().astype(np.float32))
        g = f.create_group("grads")
        for name, shape, _ in m.param_specs():
            g.create_dataset(name, data=grads[name].numpy().astype(np.float32))
    os.replace(tmp, path)
    return path, m, loss.item(), logits, grads


# ---------------------------------------------------------------------------------------------
# --check: format validation and recomputation
# ---------------------------------------------------------------------------------------------

class CheckError(Exception):
    pass


def attr_info(obj, key):
    """(is_scalar, class) of attribute key: class 'int', 'float', 'vlen-utf8' or other."""
    aid = h5py.h5a.open(obj.id, key.encode())
    scalar = aid.get_space().get_simple_extent_type() == h5py.h5s.SCALAR
    t = aid.get_type()
    if isinstance(t, h5py.h5t.TypeStringID):
        cls = "vlen-utf8" if (t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_UTF8) \
            else "string"
    elif isinstance(t, h5py.h5t.TypeIntegerID):
        cls = "int64" if t.get_size() == 8 else "int"
    elif isinstance(t, h5py.h5t.TypeFloatID):
        cls = "float64" if t.get_size() == 8 else "float"
    else:
        cls = "other"
    return scalar, cls


def expect_attr(obj, key, cls, where):
    if key not in obj.attrs:
        raise CheckError("%s: attribute %s missing" % (where, key))
    scalar, got = attr_info(obj, key)
    if not scalar:
        raise CheckError("%s: attribute %s has no scalar dataspace" % (where, key))
    if got != cls:
        raise CheckError("%s: attribute %s is %s, expected %s" % (where, key, got, cls))
    v = obj.attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def read_config(f):
    g = f["config"]
    cfg = {}
    for key in MODEL_KEYS:
        if key not in g.attrs:
            continue
        v = g.attrs[key]
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0]
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating,)):
            v = float(v)
        cfg[key] = v
    for key, d in OPTIONAL_DEFAULTS.items():
        cfg.setdefault(key, d)
    return cfg


def check_format(f, path):
    """The file layout of CHECKPOINT_FORMAT.md plus the fixture groups; returns the Model."""
    if expect_attr(f, "format", "vlen-utf8", path) != "ksa-checkpoint":
        raise CheckError("%s: format is not ksa-checkpoint" % path)
    if int(expect_attr(f, "format_version", "int64", path)) != 1:
        raise CheckError("%s: format_version is not 1" % path)
    expect_attr(f, "seed", "int64", path)
    expect_attr(f, "torch_version", "vlen-utf8", path)
    g = f["config"]
    cfg = read_config(f)
    m = Model(cfg)
    if "summary_mix" in f.attrs:
        m.mix = float(f.attrs["summary_mix"])
    for key in MODEL_KEYS:
        if key == "summary_token_begin":
            need = m.active and not m.indep_params and not m.sca
            if need and key not in g.attrs:
                raise CheckError("%s: /config summary_token_begin missing" % path)
            if key not in g.attrs:
                continue
        if key in OPTIONAL_DEFAULTS and key not in g.attrs:
            continue
        v = cfg[key]
        want = {"str": "vlen-utf8", "int": "int64", "float": "float64"}[config_attr_kind(key, v)]
        expect_attr(g, key, want, path + " /config")
    unknown = set(g.attrs.keys()) - set(MODEL_KEYS)
    if unknown:   # CHECKPOINT_FORMAT: readers warn about unknown keys and ignore them
        print("warning: %s: unknown /config attributes %s ignored" % (path, sorted(unknown)))
    if expect_attr(f["tokenizer"], "type", "vlen-utf8", path + " /tokenizer") != "byte":
        raise CheckError("%s: tokenizer type is not byte" % path)
    expect_attr(f["tokenizer"], "eot_id", "int64", path + " /tokenizer")
    specs = m.param_specs()
    for grp in ("params", "grads"):
        names = set(f[grp].keys())
        want = set(n for n, _, _ in specs)
        if names != want:
            raise CheckError("%s: /%s names differ: missing %s, extra %s"
                             % (path, grp, sorted(want - names), sorted(names - want)))
        for n, shape, _ in specs:
            ds = f[grp][n]
            if ds.shape != tuple(shape) or ds.dtype != np.float32:
                raise CheckError("%s: /%s/%s is %s %s, expected %s float32"
                                 % (path, grp, n, ds.shape, ds.dtype, tuple(shape)))
    tok = f["inputs/tokens"]
    if tok.dtype != np.int32 or tok.ndim != 2:
        raise CheckError("%s: /inputs/tokens must be int32 [nseq, L+1]" % path)
    nseq, L1 = tok.shape
    loss = f["outputs/loss"]
    if loss.shape != () or loss.dtype != np.float64:
        raise CheckError("%s: /outputs/loss must be a scalar float64 dataset" % path)
    lg = f["outputs/logits"]
    if lg.shape != (nseq * (L1 - 1), m.V) or lg.dtype != np.float32:
        raise CheckError("%s: /outputs/logits is %s %s, expected (%d, %d) float32"
                         % (path, lg.shape, lg.dtype, nseq * (L1 - 1), m.V))
    return m


def compare(name, got, want, atol, rtol):
    """max |got - want| - (atol + rtol |want|) <= 0 elementwise; returns the worst excess."""
    err = (got - want).abs()
    lim = atol + rtol * want.abs()
    bad = ~(err <= lim)                                     # NaN counts as a mismatch
    if bad.any():
        idx = int(torch.argmax((err - lim).reshape(-1)))
        raise CheckError("%s: %d elements out of tolerance; worst flat index %d: got %.9g, "
                         "stored %.9g" % (name, int(bad.sum()), idx, got.reshape(-1)[idx].item(),
                                          want.reshape(-1)[idx].item()))
    return err.max().item() if err.numel() else 0.0


def check_file(path):
    with h5py.File(path, "r") as f:
        m = check_format(f, path)
        P = {n: torch.tensor(f["params"][n][()], dtype=DT).requires_grad_(True)
             for n, _, _ in m.param_specs()}
        tokens = torch.tensor(f["inputs/tokens"][()], dtype=torch.long)
        loss_ref = float(f["outputs/loss"][()])
        logits_ref = torch.tensor(f["outputs/logits"][()], dtype=DT)
        grads_ref = {n: torch.tensor(f["grads"][n][()], dtype=DT) for n in P}
    if tokens.min() < 0 or tokens.max() >= m.V:
        raise CheckError("%s: tokens outside [0, %d)" % (path, m.V))
    loss, logits, grads = loss_and_grads(m, P, tokens)
    # stored float32 values: half an ulp of float32 relative, plus a floor for values near 0
    if not abs(loss.item() - loss_ref) <= 1e-10 * max(1.0, abs(loss_ref)):
        raise CheckError("%s: loss %.15g, stored %.15g" % (path, loss.item(), loss_ref))
    compare(path + " logits", logits.reshape(-1, m.V), logits_ref,
            1e-7 * logits_ref.abs().max().item(), 1e-6)
    gmax = max(g.abs().max().item() for g in grads_ref.values())
    for n in P:
        compare(path + " grad " + n, grads[n], grads_ref[n], 1e-7 * gmax, 1e-6)
    return m, loss.item(), gmax


# ---------------------------------------------------------------------------------------------
# --selftest
# ---------------------------------------------------------------------------------------------

GRID_1 = """
      t0  t1  s0  t2  t3  s1  t4  t5  s2  t6  t7  s3
  t0   X   .   .   .   .   .   .   .   .   .   .   .
  t1   X   X   .   .   .   .   .   .   .   .   .   .
  s0   X   X   X   .   .   .   .   .   .   .   .   .
  t2   X   X   .   X   .   .   .   .   .   .   .   .
  t3   X   X   .   X   X   .   .   .   .   .   .   .
  s1   .   .   .   X   X   X   .   .   .   .   .   .
  t4   .   .   X   X   X   .   X   .   .   .   .   .
  t5   .   .   X   X   X   .   X   X   .   .   .   .
  s2   .   .   .   .   .   .   X   X   X   .   .   .
  t6   .   .   X   .   .   X   X   X   .   X   .   .
  t7   .   .   X   .   .   X   X   X   .   X   X   .
  s3   .   .   .   .   .   .   .   .   .   X   X   X
"""

GRID_2 = """
        t0   t1 s0.0 s0.1   t2   t3 s1.0 s1.1   t4   t5 s2.0 s2.1
   t0    X    .    .    .    .    .    .    .    .    .    .    .
   t1    X    X    .    .    .    .    .    .    .    .    .    .
 s0.0    X    X    X    .    .    .    .    .    .    .    .    .
 s0.1    X    X    X    X    .    .    .    .    .    .    .    .
   t2    .    .    X    X    X    .    .    .    .    .    .    .
   t3    .    .    X    X    X    X    .    .    .    .    .    .
 s1.0    .    .    .    .    X    X    X    .    .    .    .    .
 s1.1    .    .    .    .    X    X    X    X    .    .    .    .
   t4    .    .    X    X    .    .    X    X    X    .    .    .
   t5    .    .    X    X    .    .    X    X    X    X    .    .
 s2.0    .    .    .    .    .    .    .    .    X    X    X    .
 s2.1    .    .    .    .    .    .    .    .    X    X    X    X
"""


def parse_grid(text):
    lines = [ln.split() for ln in text.strip("\n").splitlines() if ln.strip()]
    cols = lines[0]
    rows = [ln[0] for ln in lines[1:]]
    m = torch.tensor([[c == "X" for c in ln[1:]] for ln in lines[1:]], dtype=torch.bool)
    return cols, rows, m


class SelfTest:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL: %s %s" % (what, detail))


def two_stream_visible(L, C, S, W):
    """Visible (query, key) label pairs by the two-stream ranges of KSA_SPEC 3.2."""
    out = set()
    n_full = L // C
    for t in range(L):
        c = t // C
        w0 = max(0, c - W)
        for r in range(0, w0 * S):
            out.add(("t%d" % t, "s%d.%d" % (r // S, r % S)))
        for k in range(w0 * C, t + 1):
            out.add(("t%d" % t, "t%d" % k))
    for c in range(n_full):
        for j in range(S):
            q = "s%d.%d" % (c, j)
            for k in range(c * C, min((c + 1) * C, L)):
                out.add((q, "t%d" % k))
            for r in range(c * S, c * S + j + 1):
                out.add((q, "s%d.%d" % (r // S, r % S)))
    return out


def selftest_masks(st):
    for grid, (C, S, W, L) in ((GRID_1, (2, 1, 1, 8)), (GRID_2, (2, 2, 0, 6))):
        cols, rows, want = parse_grid(grid)
        lay = Layout(L, C, S)
        labels = lay.labels()
        if S == 1:
            labels = [lb[:-2] if lb.startswith("s") else lb for lb in labels]   # s0.0 -> s0
        st.check("grid C=%d S=%d W=%d labels" % (C, S, W), labels == cols and labels == rows,
                 "%r vs %r" % (labels, cols))
        got = summary_mask(lay, W)
        st.check("grid C=%d S=%d W=%d mask" % (C, S, W), torch.equal(got, want),
                 "\n%s\nvs\n%s" % (got.int(), want.int()))
        st.check("grid C=%d S=%d W=%d literal mask" % (C, S, W),
                 torch.equal(summary_mask_literal(lay, W), want))
    # Appendix A count: t7 of the first grid sees s0, s1, t4, t5, t6, t7
    lay = Layout(8, 2, 1)
    m = summary_mask(lay, 1)
    t7 = lay.labels().index("t7")
    seen = [lay.labels()[k] for k in range(lay.N) if m[t7, k]]
    st.check("t7 visible set", seen == ["s0.0", "s1.0", "t4", "t5", "t6", "t7"], repr(seen))
    # two-stream ranges (3.2) and the count formula (3.5) vs the predicate, tails included
    for C in range(1, 5):
        for S in range(1, 4):
            for W in (0, 1, 2, 5):
                for L in range(1, 7 * C + 2):
                    lay = Layout(L, C, S)
                    mk = summary_mask(lay, W)
                    st.check("vectorised = literal mask C=%d S=%d W=%d L=%d" % (C, S, W, L),
                             torch.equal(mk, summary_mask_literal(lay, W)))
                    lb = lay.labels()
                    dense = set((lb[q], lb[k]) for q in range(lay.N) for k in range(lay.N)
                                if mk[q, k])
                    ok = dense == two_stream_visible(L, C, S, W)
                    st.check("two-stream C=%d S=%d W=%d L=%d" % (C, S, W, L), ok)
                    bad = []
                    for q in range(lay.N):
                        if lay.is_sum[q]:
                            want = C + lay.index[q] + 1
                        else:
                            c, o = lay.chunk[q], lay.index[q] % C
                            want = (o + 1) + C * min(c, W) + S * max(0, c - W)
                        if int(mk[q].sum()) != want:
                            bad.append("%s: %d vs %d" % (lb[q], int(mk[q].sum()), want))
                    st.check("3.5 counts C=%d S=%d W=%d L=%d" % (C, S, W, L), not bad,
                             "; ".join(bad[:3]))
    # W >= n: text sees exactly causal text; W = 0: own chunk + all earlier summaries
    lay = Layout(13, 3, 2)
    mk = summary_mask(lay, 4)
    tr = lay.text_rows
    st.check("W>=n is causal over text",
             torch.equal(mk[tr][:, tr], causal_mask(len(tr))) and not mk[tr][:, lay.sum_rows].any())


def selftest_positions(st):
    # 2.5: C=4, S=2, L=10, training layout (tail summaries) with the reference's quirk
    lay = Layout(10, 4, 2, tail_summaries=True)
    st.check("2.5 training layout",
             lay.labels() == ["t0", "t1", "t2", "t3", "s0.0", "s0.1", "t4", "t5", "t6", "t7",
                              "s1.0", "s1.1", "t8", "t9", "s2.0", "s2.1"], repr(lay.labels()))
    st.check("2.5 expanded length (training) 16", lay.N == 16)
    hf = Layout(10, 4, 2)
    st.check("2.5 HF layout = first 14 columns", hf.labels() == lay.labels()[:14])

    def sums(lay, typ, quirk):
        pos = position_ids(lay, "origin", typ, quirk)
        return [pos[p] for p in lay.sum_rows]

    def texts(lay, typ):
        pos = position_ids(lay, typ, "zeros")
        return [pos[p] for p in lay.text_rows]

    st.check("2.5 origin", texts(lay, "origin") == list(range(10)))
    st.check("2.5 inner_chunk", texts(lay, "inner_chunk") == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    st.check("2.5 zeros", sums(lay, "zeros", False) == [0] * 6)
    for typ, quirk, want in (("last_chunk_slice_right", True, [1, 3, 5, 7, 6, 9]),
                             ("last_chunk_slice_left", True, [0, 1, 4, 5, 4, 6]),
                             ("last_chunk_slice_right", False, [1, 3, 5, 7, 8, 9]),
                             ("last_chunk_slice_left", False, [0, 1, 4, 5, 8, 8])):
        got = sums(lay, typ, quirk)
        st.check("2.5 %s quirk=%s" % (typ, quirk), got == want, "%r vs %r" % (got, want))
    # ksa.c layout (no tail summaries): the complete chunks' values, quirk or not
    st.check("2.5 HF right", sums(hf, "last_chunk_slice_right", False) == [1, 3, 5, 7])
    st.check("2.5 HF left", sums(hf, "last_chunk_slice_left", False) == [0, 1, 4, 5])
    # Appendix A: C=8, S=3, L=16
    lay = Layout(16, 8, 3)
    st.check("A right C=8 S=3", sums(lay, "last_chunk_slice_right", False) == [1, 4, 7, 9, 12, 15])
    st.check("A left C=8 S=3", sums(lay, "last_chunk_slice_left", False) == [0, 1, 4, 8, 9, 12])
    # released C=8, S=1: t_i -> i, s_c.0 -> 8c+7; expanded length 9216 in both layouts
    lay = Layout(8192, 8, 1)
    st.check("A released expanded length", lay.N == 9216
             and Layout(8192, 8, 1, tail_summaries=True).N == 9216)
    pos = position_ids(lay, "origin", "last_chunk_slice_right")
    st.check("A released positions",
             [pos[p] for p in lay.sum_rows] == [8 * c + 7 for c in range(1024)]
             and [pos[p] for p in lay.text_rows] == list(range(8192)))
    # expanded index formulas of 2.2 for full chunks
    lay = Layout(24, 4, 3)
    ok = all(lay.labels()[i + (i // 4) * 3] == "t%d" % i for i in range(24)) and \
        all(lay.labels()[c * 7 + 4 + j] == "s%d.%d" % (c, j) for c in range(6) for j in range(3))
    st.check("2.2 expanded index formulas", ok)
    # pattern grammar (1.3)
    st.check("1.3 pattern", parse_pattern("([128]*3+[1024]*1)*6") == ([128] * 3 + [1024]) * 6)
    st.check("1.3 INT*factor", parse_pattern("2*[1,0]+[3]") == [1, 0, 1, 0, 3])


def tiny_params(m, seed):
    return init_params(m, torch.Generator().manual_seed(seed))


def selftest_model(st):
    """Model-level invariants that an independent implementation must satisfy."""
    gen = torch.Generator().manual_seed(7)
    # (a) W >= n in every layer: text never sees summaries -> the plain causal model's loss
    cfg = base_cfg(num_hidden_layers=2, summary_chunk_size=3, summary_token_num=2,
                   summary_sliding_chunk_num=9, summary_independent_attention_layernorm=True,
                   summary_independent_qk_norm=True, summary_independent_qkv=True)
    m = Model(cfg)
    P = tiny_params(m, 11)
    tok = torch.randint(0, m.V, (2, 21), generator=gen)
    causal = Model(dict(cfg, use_summary_attention=False))
    Pc = {n: P[n] for n, _, _ in causal.param_specs()}
    la, lb = forward(m, P, tok)[0], forward(causal, Pc, tok)[0]
    st.check("W>=n equals plain causal", (la - lb).abs().max().item() < 1e-12)
    # (b) every layer bypass -> plain causal
    cfg2 = dict(cfg, summary_layer_freq="[0,0]", summary_sliding_chunk_num=0)
    m2 = Model(cfg2)
    P2 = {n: P[n] for n, _, _ in m2.param_specs()}
    st.check("all-bypass equals plain causal",
             (forward(m2, P2, tok)[0] - lb).abs().max().item() < 1e-12)
    # (c) tail summaries are unobservable (2.3): training layout gives the same text outputs
    cfg3 = dict(cfg, summary_sliding_chunk_num="[0,1]")
    m3 = Model(cfg3)
    for quirk in (False, True):
        a = forward(m3, P, tok)[0]
        b = forward(m3, P, tok, tail_summaries=True, tail_quirk=quirk)[0]
        st.check("tail summaries unobservable (quirk=%s)" % quirk,
                 (a - b).abs().max().item() < 1e-12)
    # (d) summaries matter when W is small: outputs differ from the plain causal model
    st.check("summaries are read when W=0",
             (forward(m3, P, tok)[0] - lb).abs().max().item() > 1e-3)
    # (e) autograd vs central differences on a few elements of every parameter kind
    Pg = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    _, _, grads = loss_and_grads(m3, Pg, tok)
    for n, t in P.items():
        flat = t.reshape(-1)
        for idx in torch.randint(0, flat.numel(), (2,), generator=gen).tolist():
            h = 1e-6 * max(1.0, abs(flat[idx].item()))
            vals = []
            for s in (1, -1):
                Q = dict(P)
                q = t.clone().reshape(-1)
                q[idx] += s * h
                Q[n] = q.reshape(t.shape)
                vals.append(forward(m3, Q, tok)[1].item())
            num = (vals[0] - vals[1]) / (2 * h)
            a = grads[n].reshape(-1)[idx].item()
            ok = abs(a - num) <= 1e-8 + 1e-6 * max(abs(a), abs(num))
            st.check("finite differences %s[%d]" % (n, idx), ok, "%.12g vs %.12g" % (a, num))


def run_selftest():
    st = SelfTest()
    selftest_masks(st)
    selftest_positions(st)
    selftest_model(st)
    print("selftest: %d passed, %d failed" % (st.passed, st.failed))
    return st.failed == 0


# ---------------------------------------------------------------------------------------------

def default_out():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tests", "refs")


# ---------------------------------------------------------------------------------------------
# --loss: a model (checkpoint or Hugging Face folder) on a token file
# ---------------------------------------------------------------------------------------------

# the training reference's spellings of config.json keys (KSA_SPEC 0)
HF_ALIASES = {"embed_dim": "hidden_size", "num_layers": "num_hidden_layers",
              "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
              "intermediate_dim": "intermediate_size", "max_seq_len": "max_position_embeddings",
              "rope_base": "rope_theta", "norm_eps": "rms_norm_eps"}


def read_safetensors(path):
    """{name: float64 numpy array} of a safetensors file (F32, F16, BF16, F64)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        buf = data[a:b]
        if t["dtype"] == "BF16":
            x = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(buf, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[t["dtype"]])
        out[name] = x.astype(np.float64).reshape(t["shape"])
    return out


def read_hf_folder(d):
    """(Model, {name: float64 tensor}) of a Hugging Face folder, summary rows split off."""
    raw = json.load(open(os.path.join(d, "config.json")))
    cfg = {}
    for k, v in raw.items():
        k = HF_ALIASES.get(k, k)
        if k in MODEL_KEYS and v is not None:
            cfg[k] = int(v) if isinstance(v, bool) else v
    for key, dflt in OPTIONAL_DEFAULTS.items():
        cfg.setdefault(key, dflt)
    cfg.setdefault("max_position_embeddings", 32768)
    index = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values()))
             if os.path.exists(index) else ["model.safetensors"])
    W = {}
    for f in files:
        W.update(read_safetensors(os.path.join(d, f)))
    S = int(cfg.get("summary_token_num", 0))
    if (cfg.get("use_summary_attention") and cfg.get("summary_independent_parameters")
            and S > 0 and "summary_embedding.weight" not in W):  # KSA_SPEC 7.3
        V = int(cfg["vocab_size"]) - S
        E = W["model.embed_tokens.weight"]
        W["model.embed_tokens.weight"], W["summary_embedding.weight"] = E[:V], E[V:]
        if "lm_head.weight" in W:
            W["lm_head.weight"] = W["lm_head.weight"][:V]
        cfg["vocab_size"] = V
        cfg.pop("summary_token_begin", None)
    m = Model(cfg)
    return m, {n: torch.tensor(W[n], dtype=DT) for n, _, _ in m.param_specs()}


def model_loss(path, tokens_path, L):
    if os.path.isdir(path):
        m, P = read_hf_folder(path)
    else:
        f = h5py.File(path, "r")
        m = Model(read_config(f))
        P = {n: torch.tensor(f["params"][n][()], dtype=DT) for n, _, _ in m.param_specs()}
    meta = tokens_path + ".meta"
    dtype = open(meta).read().strip() if os.path.exists(meta) else "uint16"
    tok = np.fromfile(tokens_path, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int64)
    rows = np.stack([tok[b * L: b * L + L + 1] for b in range((len(tok) - 1) // L)])
    _, loss = forward(m, P, torch.tensor(rows))
    return loss.item(), len(rows) * L


def main(argv):
    if argv[:1] == ["--loss"]:
        if len(argv) != 4:
            print("usage: torch_reference.py --loss MODEL TOKENS L", file=sys.stderr)
            return 2
        loss, n = model_loss(argv[1], argv[2], int(argv[3]))
        print(json.dumps({"loss": loss, "tokens": n}))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="fixture folder (default <repo>/tests/refs)")
    ap.add_argument("--check", metavar="PATH",
                    help="recompute and compare every PATH/*.h5 (or the one file PATH)")
    ap.add_argument("--selftest", action="store_true", help="masks, positions, invariants")
    ap.add_argument("--list", action="store_true", help="list the fixtures and their features")
    ap.add_argument("--only", action="append", help="write only this fixture (repeatable)")
    args = ap.parse_args(argv)
    if args.list:
        for fx in FIXTURES:
            m = Model(resolved_cfg(fx["cfg"]))
            print("%s: nseq=%d L=%d layers [%s]\n    %s"
                  % (fx["name"], fx["nseq"], fx["L"], m.layer_kinds(), fx["features"]))
        return 0
    if args.selftest:
        return 0 if run_selftest() else 1
    if args.check:
        if os.path.isfile(args.check):
            files = [args.check]
        else:
            files = sorted(os.path.join(args.check, n) for n in os.listdir(args.check)
                           if n.endswith(".h5"))
        if not files:
            print("crosscheck: no .h5 files in %s" % args.check, file=sys.stderr)
            return 1
        n_fail = 0
        for p in files:
            try:
                m, loss, gmax = check_file(p)
                print("ok   %s  loss %.10f  max|grad| %.3g  layers [%s]"
                      % (p, loss, gmax, m.layer_kinds()))
            except (CheckError, ValueError, KeyError, OSError) as e:
                n_fail += 1
                print("FAIL %s: %s" % (p, e))
        print("check: %d passed, %d failed" % (len(files) - n_fail, n_fail))
        return 1 if n_fail else 0
    out = args.out or default_out()
    os.makedirs(out, exist_ok=True)
    names = set(fx["name"] for fx in FIXTURES)
    for n in args.only or []:
        if n not in names:
            print("unknown fixture %r (known: %s)" % (n, ", ".join(sorted(names))),
                  file=sys.stderr)
            return 2
    for fx in FIXTURES:
        if args.only and fx["name"] not in args.only:
            continue
        path, m, loss, logits, grads = make_fixture(fx, out)
        zero = [n for n, g in grads.items() if g.abs().max().item() == 0.0]
        print("wrote %s (%d bytes): loss %.6f, logits std %.3f, max|grad| %.3g, layers [%s]%s"
              % (path, os.path.getsize(path), loss, logits.std().item(),
                 max(g.abs().max().item() for g in grads.values()), m.layer_kinds(),
                 ("\n    zero grads: " + ", ".join(zero)) if zero else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
