#!/usr/bin/python3
"""doc_commands.py - run every command the README and docs/ show, as written, so they cannot rot.

The commands are the lines of the ```sh blocks of README.md and docs/*.md (a line ending in a
backslash continues on the next). Blocks fenced otherwise (```text, or no language) are
synopses, file layouts or output, and are not run.

Each document runs in its own sandbox: a copy of the repository's tracked files (a fresh
clone of the working tree) with the built bin/ linked in and a copy of build/data/. Two
things differ from a user's machine, both listed here so that nothing is hidden:

  * configs/tiny.conf in the sandbox trains a smaller problem (FAST_TINY: 64-token rows, a
    8-row batch), and every step count is scaled by SCALE: the config's steps, warmup and
    decay, and the docs' --steps N, --save-every N and step_%08d.h5 names (scaled(), so that
    a 300-step run saving every 100 steps becomes a 9-step run saving every 3, and its
    step_00000200.h5 is step_00000006.h5); every option, path and file name is still the
    docs' own;
  * the documents the docs use as examples of a user's corpus (corpus/*.txt, a.txt, b.txt)
    are chapters of the KJV text.

Commands that cannot run here are skipped, each by a rule with its reason (SKIPS).

    doc_commands.py [--repo DIR] [--list] [DOC ...]    (DOC: README.md, docs/training.md, ...)

Exit status 0 when every command of the documents succeeded; otherwise the first failing
command of each document is reported with its output, and the status is 1.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

FAST_TINY = {"seq_len": "64", "global_batch": "8", "micro_batch": "2", "eval_every": "0",
             "eval_batches": "2"}
SCALED_KEYS = ("steps", "warmup_steps", "decay_steps")  # of configs/tiny.conf
SCALE = (3, 100)  # step counts times 3/100, at least 1


def scaled(n):
    return max(1, int(n) * SCALE[0] // SCALE[1])


# step counts in commands -> scaled ones (a step number keeps its 8-digit file name)
REWRITES = [
    (r"--steps (\d+)", lambda m: "--steps %d" % scaled(m.group(1))),
    (r"--save-every (\d+)", lambda m: "--save-every %d" % scaled(m.group(1))),
    (r"step_(\d{8})\.h5", lambda m: "step_%08d.h5" % scaled(m.group(1))),
]

SKIPS = [
    (r"^make\b", "build and test targets: CI runs make test itself, and make demo is the "
                 "README's main command (a 90-second run)"),
    (r"--hostfile", "needs other hosts"),
    (r"^bin/bench_", "benchmarks run for minutes (docs/benchmarks.md)"),
    (r"^scripts/cpt_recipe\.sh", "a minute even on a tiny budget; tests/test_cpt.sh runs it"),
]


def commands(path):
    """(line number, command) of every ```sh block of a Markdown file."""
    out, in_sh, pending, start = [], False, "", 0
    for no, line in enumerate(open(path, encoding="utf-8"), 1):
        stripped = line.rstrip("\n")
        if stripped.startswith("```"):
            in_sh = not in_sh and stripped[3:].strip() == "sh"
            continue
        if not in_sh or (not stripped.strip() and not pending):
            continue
        if not pending:
            start = no
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((start, pending + stripped))
        pending = ""
    return out


def skip_reason(cmd):
    for pattern, reason in SKIPS:
        if re.search(pattern, cmd.strip()):
            return reason
    return None


def rewrite(cmd):
    for pattern, new in REWRITES:
        cmd = re.sub(pattern, new, cmd)
    return cmd


def make_sandbox(repo, root):
    files = subprocess.run(["git", "-C", repo, "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = os.path.join(repo, f)
        if not os.path.exists(src):
            continue  # deleted in the working tree
        dst = os.path.join(root, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    os.symlink(os.path.join(repo, "bin"), os.path.join(root, "bin"))
    shutil.copytree(os.path.join(repo, "build", "data"), os.path.join(root, "build", "data"))
    conf = os.path.join(root, "configs", "tiny.conf")
    text = open(conf).read()
    for key in SCALED_KEYS:
        m = re.search(r"^%s\s*=\s*(\d+)" % key, text, flags=re.M)
        assert m, "configs/tiny.conf has no line '%s = N'" % key
        FAST_TINY[key] = str(scaled(m.group(1)))
    for key, value in FAST_TINY.items():
        text, n = re.subn(r"^%s\s*=.*$" % key, "%s = %s" % (key, value), text, flags=re.M)
        assert n == 1, "configs/tiny.conf has no line '%s = ...'" % key
    open(conf, "w").write(text)
    chapters = os.path.join(root, "build", "data", "kjv_chapters")
    os.makedirs(os.path.join(root, "corpus"))
    for i in range(1, 201):
        shutil.copy(os.path.join(chapters, "%04d.txt" % i), os.path.join(root, "corpus"))
    for name, i in (("a.txt", 1), ("b.txt", 2)):
        shutil.copy(os.path.join(chapters, "%04d.txt" % i), os.path.join(root, name))


def run_document(repo, doc, listing):
    cmds = commands(os.path.join(repo, doc))
    if listing:
        for no, cmd in cmds:
            reason = skip_reason(cmd)
            print("%s:%d: %s%s" % (doc, no, rewrite(cmd),
                                   "   [skipped: %s]" % reason if reason else ""))
        return True
    root = tempfile.mkdtemp(prefix="ksa_docs_")
    try:
        make_sandbox(repo, root)
        ran = 0
        for no, cmd in cmds:
            if skip_reason(cmd):
                continue
            run = rewrite(cmd)
            p = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=root, timeout=600,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            ran += 1
            if p.returncode != 0:
                out = p.stdout.decode(errors="replace").splitlines()
                print("%s:%d: exit %d: %s" % (doc, no, p.returncode, run))
                for line in out[-15:]:
                    print("    " + line)
                return False
        print("%s: %d command%s ran" % (doc, ran, "" if ran == 1 else "s"))
        return True
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--list", action="store_true", help="print the commands, run nothing")
    ap.add_argument("docs", nargs="*")
    a = ap.parse_args()
    docs = a.docs or ["README.md"] + sorted(
        os.path.relpath(p, a.repo) for p in glob.glob(os.path.join(a.repo, "docs", "*.md")))
    ok = True
    for doc in docs:
        ok = run_document(a.repo, doc, a.list) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
