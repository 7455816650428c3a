#!/usr/bin/python3
"""ablation_report.py - the tables and plots of scripts/ablation.sh.

    scripts/ablation_report.py --run DIR --variants full,swa,... --budget X --steps N
                               --train-len L --out results

Reads, from the run folder DIR: eval.jsonl (one `ksa eval --task --json` object per line,
with "variant" added), VARIANT.jsonl (the training logs), VARIANT.conf and `seconds`. Writes
OUT/ablation.md: accuracy per variant and length for every task (all depths together), the
accuracy by depth at every length, final training and validation loss, training and
decode tokens/s and KV-cache bytes per sequence at each length; and OUT/ablation_accuracy.png
(accuracy against length, a line per variant, a panel per task) and OUT/ablation_loss.png
(training loss against tokens, validation loss as markers). Without python3-matplotlib the
plots are skipped with a message (the tables are still written).
"""
import argparse
import datetime
import json
import os
import platform
import sys

NAMES = {"full": "Full (causal)", "swa": "SWA", "sca": "SCA", "ksa": "KSA",
         "hybrid": "KSA hybrid 3:1"}


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    sys.exit("ablation_report.py: %s:%d: %s" % (path, n, e))
    return out


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def attention_keys(conf):
    keys = []
    for line in open(conf):
        k = line.split("=", 1)[0].strip()
        if k.startswith(("use_summary", "summary_chunk_size", "summary_token_num",
                         "summary_sliding", "summary_layer_freq", "layer_sliding",
                         "sliding_chunk")):
            keys.append(line.strip())
    return ", ".join(keys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--variants", required=True)
    ap.add_argument("--budget", required=True)
    ap.add_argument("--steps", required=True, type=int)
    ap.add_argument("--train-len", required=True, type=int)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    variants = a.variants.split(",")
    evals = read_jsonl(os.path.join(a.run, "eval.jsonl"))
    logs = {v: read_jsonl(os.path.join(a.run, v + ".jsonl")) for v in variants}
    tasks = sorted(set(e["task"] for e in evals), key=lambda t: [e["task"] for e in evals].index(t))
    lengths = sorted(set(e["len"] for e in evals))
    res = {(e["variant"], e["task"], e["len"]): e for e in evals}
    seconds = open(os.path.join(a.run, "seconds")).read().strip() \
        if os.path.exists(os.path.join(a.run, "seconds")) else "?"

    md = []
    md.append("# Attention ablation: Full / SWA / SCA / KSA\n")
    md.append("Written by `scripts/ablation.sh --budget %s` on %s (%s, %s threads), %s s in all. "
              "Discussion: docs/evaluation.md.\n"
              % (a.budget, datetime.date.today().isoformat(), cpu_model(),
                 os.environ.get("OMP_NUM_THREADS", "2"), seconds))
    md.append("Every variant: the same 4-layer byte-level model (hidden 128, 4 query / 2 kv "
              "heads of 32, SwiGLU 384, tied embeddings), %d steps of 16 rows of %d tokens "
              "(%.2f M tokens), the same data mixture, seed and schedule; only the attention "
              "keys differ:\n" % (a.steps, a.train_len, a.steps * 16 * a.train_len / 1e6))
    for v in variants:
        md.append("- **%s**: %s" % (NAMES.get(v, v), attention_keys(os.path.join(a.run, v + ".conf"))))
    md.append("")
    n_eval = evals[0]["n"] if evals else 0
    md.append("## Accuracy (exact match, %d examples per cell, depths 0/25/50/75/100 %%)\n" % n_eval)
    for t in tasks:
        md.append("**%s**\n" % t)
        md.append("| variant | " + " | ".join("%d" % L for L in lengths) + " |")
        md.append("|---|" + "---:|" * len(lengths))
        for v in variants:
            cells = []
            for L in lengths:
                e = res.get((v, t, L))
                cells.append("%.2f" % e["accuracy"] if e else "—")
            md.append("| %s | %s |" % (NAMES.get(v, v), " | ".join(cells)))
        md.append("")
    md.append("## Accuracy by depth\n")
    md.append("Depth: where the needle sits, in percent of the filler (0: at the start, the "
              "farthest from the question).\n")
    for t in tasks:
        for L in lengths:
            depths = None
            rows = []
            for v in variants:
                e = res.get((v, t, L))
                if not e:
                    continue
                depths = [b["depth"] for b in e["by_depth"]]
                rows.append("| %s | %s |" % (NAMES.get(v, v), " | ".join(
                    "%.2f" % b["accuracy"] for b in e["by_depth"])))
            if depths:
                md.append("**%s, %d tokens**\n" % (t, L))
                md.append("| variant | " + " | ".join("%g %%" % d for d in depths) + " |")
                md.append("|---|" + "---:|" * len(depths))
                md += rows
                md.append("")
    md.append("## Loss, speed and KV cache\n")
    md.append("| variant | final train loss | final val loss | train tok/s | "
              + " | ".join("decode tok/s @%d" % L for L in lengths) + " | "
              + " | ".join("KV KiB @%d" % L for L in lengths) + " |")
    md.append("|---|---:|---:|---:|" + "---:|" * (2 * len(lengths)))
    for v in variants:
        log = logs[v]
        train = [r["loss"] for r in log if "loss" in r]
        val = [r["val_loss"] for r in log if "val_loss" in r]
        tps = [r["tokens_per_s"] for r in log[5:] if "tokens_per_s" in r] or [0]
        last = sum(train[-10:]) / max(1, len(train[-10:]))
        dec, kv = [], []
        for L in lengths:
            e = res.get((v, tasks[0], L)) if tasks else None
            dec.append("%.0f" % e["decode_tokens_per_s"] if e else "—")
            kv.append("%.0f" % (e["kv_cache_bytes_per_sequence"] / 1024) if e else "—")
        md.append("| %s | %.4f | %s | %.0f | %s | %s |" % (
            NAMES.get(v, v), last, "%.4f" % val[-1] if val else "—",
            sorted(tps)[len(tps) // 2], " | ".join(dec), " | ".join(kv)))
    md.append("")
    md.append("Final train loss: the mean of the last 10 steps (the mixture's tasks and text "
              "together); val loss: on build/data/kjv.val.bin at the last evaluation. Train "
              "tok/s: the median over the steps after the fifth. Decode tok/s and KV cache: "
              "from the `%s` evaluation (float32 K and V of every layer of one sequence). "
              "Timings come from a shared machine; compare them within a column.\n"
              % (tasks[0] if tasks else "?"))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "ablation.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    print("wrote %s" % os.path.join(a.out, "ablation.md"))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("ablation_report.py: no plots (apt install python3-matplotlib)", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4),
                             squeeze=False)
    # markers shrinking and line styles changing from one variant to the next, so that
    # variants with the same accuracies stay visible on top of each other
    styles = [("o", "-", 11), ("s", "--", 9), ("^", ":", 7), ("D", "-.", 5), ("v", "-", 4)]
    for ax, t in zip(axes[0], tasks):
        for k, v in enumerate(variants):
            xs = [L for L in lengths if (v, t, L) in res]
            marker, ls, size = styles[k % len(styles)]
            ax.plot(xs, [res[(v, t, L)]["accuracy"] for L in xs], marker=marker, ls=ls,
                    ms=size, label=NAMES.get(v, v))
        ax.axvline(a.train_len, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens; dotted: training length)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(t)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "ablation_accuracy.png"), dpi=110)
    fig, ax = plt.subplots(figsize=(7, 4))
    for v in variants:
        log = logs[v]
        xs = [r.get("tokens", r["step"]) for r in log if "loss" in r]
        line, = ax.plot(xs, [r["loss"] for r in log if "loss" in r], lw=0.7,
                        label=NAMES.get(v, v))
        vx = [r.get("tokens", r["step"]) for r in log if "val_loss" in r]
        ax.plot(vx, [r["val_loss"] for r in log if "val_loss" in r], "o",
                color=line.get_color())
    ax.set_xlabel("text tokens seen")
    ax.set_ylabel("loss (nats); markers: validation")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "ablation_loss.png"), dpi=110)
    print("wrote %s, %s" % (os.path.join(a.out, "ablation_accuracy.png"),
                            os.path.join(a.out, "ablation_loss.png")))


if __name__ == "__main__":
    main()
