#!/usr/bin/python3
"""torch_train.py - the PyTorch training peer of `ksa train`: the model of torch_reference.py
in float32, trained with torch.optim.AdamW on one batch of rows, timed step by step.

    scripts/torch_train.py --config FILE --seq-len L [--batch B] [--steps K] [--threads N]
                           [--data FILE] [--seed S]
    scripts/torch_train.py --ckpt FILE --data FILE --seq-len L [--batch B] --steps 0

The model is built from a ksa.c configuration file (the model keys of docs/configs.md, their
defaults for keys the file lacks; the training keys lr, weight_decay, beta1, beta2, adam_eps,
clip_value and clip_norm set the optimizer as in `ksa train`, the other training keys are
ignored) or from a ksa checkpoint (`--ckpt`: /config and /params, CHECKPOINT_FORMAT.md).
Without a checkpoint the parameters are drawn by torch_reference.init_params.

A step is what `ksa train --global-batch B --micro-batch B` does with a constant learning
rate: forward and backward of B rows of L text tokens (mean loss over the B*L targets),
element-wise gradient clipping to clip_value, global-norm clipping to clip_norm if > 0, one
AdamW update (torch semantics, as src/optim/adamw.c). The rows are rows 0..B-1 of --data
(row r = tokens r*L ... r*L + L, docs/data.md) or, without --data, seeded random ids below
vocab_size; every step trains on the same batch (the cost of a step does not depend on it).

One step runs first as a warm-up (it allocates what later steps reuse), then --steps timed
steps. OMP_WAIT_POLICY is passive unless set, as `ksa` makes it. Prints one JSON line: tokens_per_s (text tokens of the timed steps over their wall
time), cpu_s_per_token (user + system CPU seconds of the process during the timed steps,
getrusage, over their tokens), peak_rss_kib (ru_maxrss of the process, KiB), step_seconds,
initial_loss (the loss of the first forward, before any update) and the losses of the
timed steps. --steps 0 runs no step at all: only the initial loss.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

# OpenMP threads sleep while they wait, as in ksa (src/cli/ksa.c): libgomp reads the variable
# once, when torch loads it, and its default (spinning) makes a run on a shared machine
# several times slower. An explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402  (the model: one implementation for both scripts)

# Model keys a ksa.c configuration may set, with the defaults of docs/configs.md (None: unset;
# summary_independent_qkv follows summary_independent_parameters, Model resolves that).
MODEL_DEFAULTS = {
    "vocab_size": 257, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 64, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6, "max_position_embeddings": 131072, "tie_word_embeddings": 0,
    "use_summary_attention": 0, "summary_chunk_size": 0, "summary_token_num": 0,
    "summary_sliding_chunk_num": 0, "summary_layer_freq": 0,
    "summary_independent_parameters": 0, "summary_independent_qkv": None,
    "summary_independent_attention_layernorm": 0, "summary_independent_qk_norm": 0,
    "summary_chunk_position_ids_type": "origin",
    "summary_token_position_ids_type": "last_chunk_slice_right", "summary_token_begin": None,
    "layer_sliding_window": 0, "sliding_chunk_attention": 0,
}
# The optimizer's training keys and the defaults of `ksa train` (docs/training.md).
OPTIM_DEFAULTS = {"lr": 4e-4, "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.95,
                  "adam_eps": 1e-8, "clip_value": 1.0, "clip_norm": 0.0}
# The other training keys of docs/training.md: accepted in a file, not used here.
OTHER_TRAINING_KEYS = {
    "data", "data_mix", "val_data", "dtype", "seq_len", "global_batch", "micro_batch", "steps",
    "min_lr", "lr_schedule", "warmup_steps", "decay_steps", "seed", "data_seed", "eval_every",
    "eval_batches", "log", "out", "save_every", "keep", "save_best", "threads", "peak_gflops",
}


class InputError(Exception):
    pass


def model_value(key, text):
    """A model key's value as Model() takes it: booleans 0/1, numbers, patterns as text."""
    if key in ref.BOOL_KEYS:
        low = text.lower()
        if low in ("true", "1"):
            return 1
        if low in ("false", "0"):
            return 0
        raise InputError("%s = '%s' is not a boolean (true/false/1/0)" % (key, text))
    if key in ref.STRING_KEYS or key in ref.PATTERN_KEYS:
        return text
    try:
        return float(text) if key in ref.FLOAT_KEYS else int(text)
    except ValueError:
        raise InputError("%s = '%s' is not a number" % (key, text)) from None


def read_config_file(path):
    """(model config dict, optimizer dict) of a ksa.c `key = value` file (docs/configs.md)."""
    cfg, opt = dict(MODEL_DEFAULTS), dict(OPTIM_DEFAULTS)
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        raise InputError("cannot read configuration '%s': %s" % (path, e.strerror)) from None
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = (s.strip() for s in line.partition("="))
        if not eq or not key:
            raise InputError("%s:%d: expected 'key = value', got '%s'" % (path, n, line))
        if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
            value = value[1:-1]
        if key in MODEL_DEFAULTS:
            cfg[key] = model_value(key, value)
        elif key in OPTIM_DEFAULTS:
            try:
                opt[key] = float(value)
            except ValueError:
                raise InputError("%s:%d: %s = '%s' is not a number"
                                 % (path, n, key, value)) from None
        elif key not in OTHER_TRAINING_KEYS:
            raise InputError("%s:%d: unknown configuration key '%s'" % (path, n, key))
    return cfg, opt


def read_checkpoint(path):
    """(model config dict, {name: float32 tensor}) of a ksa checkpoint."""
    try:
        with h5py.File(path, "r") as f:
            cfg = ref.read_config(f)
            m = ref.Model(cfg)
            params = {}
            for name, shape, _ in m.param_specs():
                if name not in f["params"]:
                    raise InputError("checkpoint '%s' has no /params/%s" % (path, name))
                t = torch.tensor(f["params"][name][()], dtype=torch.float32)
                if tuple(t.shape) != tuple(shape):
                    raise InputError("checkpoint '%s': /params/%s is %s, expected %s"
                                     % (path, name, tuple(t.shape), tuple(shape)))
                params[name] = t
    except OSError as e:
        raise InputError("cannot read checkpoint '%s': %s" % (path, e)) from None
    return cfg, params


def read_rows(path, L, B, V):
    """Rows 0..B-1 of a headerless token file (dtype from its .meta): int64 [B, L + 1]."""
    try:
        dtype = open(path + ".meta").read().strip()
    except OSError:
        raise InputError("token file '%s' has no readable .meta file (uint16 or uint32)"
                         % path) from None
    if dtype not in ("uint16", "uint32"):
        raise InputError("token file '%s': dtype '%s' in its .meta is not uint16 or uint32"
                         % (path, dtype))
    ids = np.fromfile(path, dtype="<u2" if dtype == "uint16" else "<u4")
    if len(ids) < B * L + 1:
        raise InputError("token file '%s' holds %d tokens, %d rows of %d + 1 need %d"
                         % (path, len(ids), B, L, B * L + 1))
    rows = np.stack([ids[r * L:r * L + L + 1] for r in range(B)]).astype(np.int64)
    if rows.max() >= V:
        raise InputError("token file '%s' has id %d, not below vocab_size %d"
                         % (path, int(rows.max()), V))
    return torch.from_numpy(rows)


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("%s is not a positive integer" % text)
    return v


def non_negative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("%s is negative" % text)
    return v


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="ksa.c configuration file (model and optimizer keys)")
    ap.add_argument("--ckpt", help="ksa checkpoint: the model's /config and /params")
    ap.add_argument("--data", help="headerless token file with .meta (default: random ids)")
    ap.add_argument("--seq-len", type=positive, required=True, help="text tokens per row, L")
    ap.add_argument("--batch", type=positive, default=1, help="rows per step, B (default 1)")
    ap.add_argument("--steps", type=non_negative, default=3,
                    help="timed steps after the warm-up step (default 3; 0: initial loss only)")
    ap.add_argument("--threads", type=positive, default=2, help="torch threads (default 2)")
    ap.add_argument("--seed", type=int, default=42, help="parameters and random ids")
    args = ap.parse_args(argv)
    if (args.config is None) == (args.ckpt is None):
        ap.error("give exactly one of --config and --ckpt")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    opt_cfg = dict(OPTIM_DEFAULTS)
    try:
        if args.ckpt:
            cfg, params = read_checkpoint(args.ckpt)
            model = ref.Model(cfg)
        else:
            cfg, opt_cfg = read_config_file(args.config)
            model = ref.Model(cfg)
            gen = torch.Generator().manual_seed(args.seed)
            params = {n: t.to(torch.float32) for n, t in ref.init_params(model, gen).items()}
        if args.data:
            tokens = read_rows(args.data, args.seq_len, args.batch, model.V)
        else:
            gen = torch.Generator().manual_seed(args.seed + 1)
            tokens = torch.randint(0, model.V, (args.batch, args.seq_len + 1), generator=gen)
    except (InputError, ValueError, KeyError) as e:
        print("torch_train.py: %s" % e, file=sys.stderr)
        return 1
    P = {n: t.requires_grad_(True) for n, t in params.items()}
    optimizer = torch.optim.AdamW(list(P.values()), lr=opt_cfg["lr"],
                                  betas=(opt_cfg["beta1"], opt_cfg["beta2"]),
                                  eps=opt_cfg["adam_eps"], weight_decay=opt_cfg["weight_decay"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        _, loss = ref.forward(model, P, tokens)
        loss.backward()
        if opt_cfg["clip_value"] > 0:
            torch.nn.utils.clip_grad_value_(P.values(), opt_cfg["clip_value"])
        if opt_cfg["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(P.values(), opt_cfg["clip_norm"])
        optimizer.step()
        return loss.item()

    out = {"implementation": "torch", "torch_version": torch.__version__,
           "threads": args.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
           "seq_len": args.seq_len, "batch": args.batch,
           "steps": args.steps, "parameters": sum(t.numel() for t in P.values())}
    if args.steps == 0:
        with torch.no_grad():
            out["initial_loss"] = ref.forward(model, P, tokens)[1].item()
    else:
        out["initial_loss"] = step()  # the warm-up step; its loss is that of the first weights
        tokens_per_step = args.batch * args.seq_len
        losses, seconds = [], []
        cpu0 = cpu_seconds()
        for _ in range(args.steps):
            t0 = time.perf_counter()
            losses.append(step())
            seconds.append(time.perf_counter() - t0)
        cpu = cpu_seconds() - cpu0
        out["tokens_per_s"] = tokens_per_step * args.steps / sum(seconds)
        out["cpu_s_per_token"] = cpu / (tokens_per_step * args.steps)
        out["step_seconds"] = seconds
        out["losses"] = losses
        if not all(math.isfinite(v) for v in losses):
            print("torch_train.py: a loss is not finite: %r" % losses, file=sys.stderr)
            return 1
    out["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
