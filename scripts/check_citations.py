#!/usr/bin/env python3
"""check_citations.py - every reference document the code cites is in docs/, and every section
it cites exists.

The sources cite five documents that live in docs/: KSA_SPEC.md, DESIGN.md, STYLE.md,
CHECKPOINT_FORMAT.md and ENVIRONMENT.md, as `KSA_SPEC.md §6.1`, `DESIGN.md §4`, `(§5.4)`...
This script scans src/, tests/, bench/, scripts/, docs/, mk/, the Makefile and the README and
checks:
  1. a named document (`NAME.md` or `NAME §x`) exists as docs/NAME.md;
  2. a section cited with a document (`NAME.md §6.1`, `NAME §6`) is a heading of that document
     (`## 6. ...`, `### 6.1 ...`);
  3. a bare `§x` is a heading of one of the documents the same file names, or of KSA_SPEC.md
     (the default: the algorithm's sections are what the code cites most). Sections of outside
     works named in EXTERNAL (e.g. `FlashAttention-2 §3.1.2`) are not checked.
Prints every unresolved citation as FILE:LINE: problem, and exits 1 if there is any.
Usage: scripts/check_citations.py [ROOT]   (default: the repository holding this script)
"""
import os
import re
import sys

DOCS = ("KSA_SPEC", "DESIGN", "STYLE", "CHECKPOINT_FORMAT", "ENVIRONMENT")
SCAN_DIRS = ("src", "tests", "bench", "scripts", "docs", "mk")
SCAN_FILES = ("Makefile", "README.md")
SUFFIXES = (".c", ".h", ".sh", ".py", ".md", ".mk", ".conf")

NAMED = re.compile(r"\b(%s)(\.md)?(?:,? ?(§ ?\d+(?:\.\d+)*))?" % "|".join(DOCS))
SECTION = re.compile(r"§ ?(\d+(?:\.\d+)*)")
# sections of works outside the repository, cited by name (not checked)
EXTERNAL = re.compile(r"\b(FlashAttention-2) §")
HEADING = re.compile(r"^#{2,4} +(\d+(?:\.\d+)*)\.? ")


def sections(path):
    """The section numbers of a markdown document: '6', '6.1', ..."""
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = HEADING.match(line)
            if m:
                out.add(m.group(1))
    return out


def files(root):
    for name in SCAN_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            yield path
    for d in SCAN_DIRS:
        for dirpath, _, names in os.walk(os.path.join(root, d)):
            for name in sorted(names):
                if name.endswith(SUFFIXES):
                    yield os.path.join(dirpath, name)


def check(root):
    docs = {}
    for name in DOCS:
        path = os.path.join(root, "docs", name + ".md")
        docs[name] = sections(path) if os.path.isfile(path) else None
    problems, n_cited = [], 0
    for path in files(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        text = "\n".join(lines)
        own = os.path.splitext(os.path.basename(path))[0] if rel.startswith("docs/") else None
        # the documents this file names; a bare § resolves against them or KSA_SPEC
        named_here = {m.group(1) for m in NAMED.finditer(text)} | {"KSA_SPEC"}
        if own in DOCS:
            named_here.add(own)
        for no, line in enumerate(lines, 1):
            spans = []
            for m in NAMED.finditer(line):
                name, sec = m.group(1), m.group(3)
                spans.append(m.span(3) if sec else (m.end(), m.end()))
                n_cited += 1
                if docs[name] is None:
                    problems.append("%s:%d: docs/%s.md does not exist" % (rel, no, name))
                    continue
                if sec:
                    num = SECTION.match(sec).group(1)
                    if num not in docs[name]:
                        problems.append("%s:%d: %s has no section §%s" % (rel, no, name, num))
            spans += [(m.end() - 1, m.end() + 1) for m in EXTERNAL.finditer(line)]
            for m in SECTION.finditer(line):
                if any(a <= m.start() < b for a, b in spans if a != b):
                    continue  # already checked with its document, or an outside work
                num = m.group(1)
                n_cited += 1
                if not any(docs.get(n) and num in docs[n] for n in named_here):
                    problems.append("%s:%d: §%s is a section of none of %s" %
                                    (rel, no, num, ", ".join(sorted(named_here))))
    return problems, n_cited


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems, n = check(root)
    for p in problems:
        print(p)
    print("citations: %d checked, %d unresolved" % (n, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
