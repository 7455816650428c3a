#!/usr/bin/python3
"""plot_loss.py - training and validation loss of `ksa train --log` runs, one PNG.

    scripts/plot_loss.py run.jsonl [more.jsonl ...] -o loss.png [--title T]

Each input holds one JSON object per completed optimizer step (blank lines are skipped):
`step` (1-based), `loss`, `lr`, `grad_norm`, `tokens_per_s`, `val_loss` on validation steps
and `tokens` (text tokens seen so far) when the trainer writes it. Only `step` is required on
every line, plus `loss` or `val_loss`; `lr` is plotted where present. If a step appears more
than once (a resumed run appending to the same log), the later line's keys win.

Top panel: training loss (thin line) and validation loss (markers) against text tokens seen,
one colour per file, the legend naming the files. Bottom panel: the learning rate. If any
file lacks `tokens` on some line, tokens cannot be computed (the log does not carry seq_len
and the batch size), so every file is plotted against the step and the x label says why.

Errors (missing file, malformed line: the message names the file and line number) go to
stderr and exit with status 1. Uses Debian's python3-matplotlib with the Agg backend; without
it the script says so in one line (apt install python3-matplotlib) and exits with status 1.
"""
import argparse
import json
import math
import os
import re
import sys

NUMERIC_KEYS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "tokens")


class LogError(Exception):
    pass


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_log(path):
    """Returns (steps sorted, {step: merged record}) of one JSONL file; raises LogError."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise LogError(f"cannot open '{path}': {e.strerror}")
    records = {}
    with f:
        try:
            lines = list(f)
        except (OSError, UnicodeDecodeError) as e:
            raise LogError(f"cannot read '{path}': {e}")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line.rstrip())
        except json.JSONDecodeError as e:
            hint = ""
            if re.search(r"\b-?(nan|inf|infinity)\b", line, re.IGNORECASE):
                hint = "; a non-finite number such as nan or inf is not JSON"
            raise LogError(f"{where}: not valid JSON ({e.msg} at column {e.colno}{hint})")
        if not isinstance(rec, dict):
            raise LogError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        if "step" not in rec:
            raise LogError(f"{where}: no 'step' key")
        for key in NUMERIC_KEYS:
            if key in rec and not (is_number(rec[key]) and math.isfinite(rec[key])):
                raise LogError(f"{where}: '{key}' is {json.dumps(rec[key])}, "
                               "expected a finite number")
        if "loss" not in rec and "val_loss" not in rec:
            raise LogError(f"{where}: neither 'loss' nor 'val_loss'")
        step = rec["step"]
        if step != int(step):
            raise LogError(f"{where}: 'step' is {step}, expected an integer")
        records.setdefault(int(step), {}).update(rec)
    if not records:
        raise LogError(f"{path}: no steps (empty log)")
    return sorted(records), records


def series(steps, records, key, xkey):
    xs, ys = [], []
    for s in steps:
        r = records[s]
        if key in r:
            xs.append(r[xkey] if xkey != "step" else s)
            ys.append(r[key])
    return xs, ys


def main(argv):
    ap = argparse.ArgumentParser(
        description="Plot training/validation loss and learning rate of ksa train logs.")
    ap.add_argument("logs", nargs="+", metavar="run.jsonl", help="JSONL logs of ksa train")
    ap.add_argument("-o", "--out", required=True, metavar="loss.png", help="PNG to write")
    ap.add_argument("--title", default=None, help="figure title")
    args = ap.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        print(f"plot_loss.py: the Python package matplotlib is missing for {sys.executable} "
              "(Debian: apt install python3-matplotlib)", file=sys.stderr)
        return 1

    runs = []
    try:
        for path in args.logs:
            runs.append((path,) + read_log(path))
    except LogError as e:
        print(f"plot_loss.py: {e}", file=sys.stderr)
        return 1

    without_tokens = [p for p, steps, recs in runs
                      if any("tokens" not in recs[s] for s in steps)]
    if without_tokens:
        xkey = "step"
        names = ", ".join(os.path.basename(p) for p in without_tokens)
        xlabel = f"optimizer step (no 'tokens' in {names}: tokens seen unknown)"
        print(f"plot_loss.py: note: no 'tokens' in {names}; plotting against step",
              file=sys.stderr)
    else:
        xkey = "tokens"
        xlabel = "text tokens seen"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, (ax_loss, ax_lr) = plt.subplots(
        2, 1, sharex=True, figsize=(9, 6.5), gridspec_kw={"height_ratios": [3, 1]})
    for i, (path, steps, recs) in enumerate(runs):
        color = f"C{i % 10}"
        x, y = series(steps, recs, "loss", xkey)
        if x:
            ax_loss.plot(x, y, color=color, linewidth=0.8, label=path)
        x, y = series(steps, recs, "val_loss", xkey)
        if x:
            ax_loss.plot(x, y, color=color, linestyle="none", marker="o", markersize=4,
                         label=f"{path} (validation)")
        x, y = series(steps, recs, "lr", xkey)
        if x:
            ax_lr.plot(x, y, color=color, linewidth=1.0)
    ax_loss.set_ylabel("loss (nats / token)")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(fontsize="small")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(True, alpha=0.3)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.set_xlabel(xlabel)
    if xkey == "tokens":
        ax_lr.xaxis.set_major_formatter(EngFormatter())
    ax_loss.set_title(args.title if args.title else "ksa train: " +
                      ", ".join(os.path.basename(p) for p in args.logs))
    fig.tight_layout()
    try:
        fig.savefig(args.out, dpi=120)
    except OSError as e:
        print(f"plot_loss.py: cannot write '{args.out}': {e.strerror}", file=sys.stderr)
        return 1
    n = sum(len(steps) for _, steps, _ in runs)
    print(f"wrote {args.out} ({len(runs)} run(s), {n} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
