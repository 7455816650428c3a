#!/usr/bin/env python3
"""mutate_shell_tests.py - a test of the tests: can every assertion of tests/test_*.sh fail?

For each suite given on the command line this script
  1. runs the suite unmutated (a copy, from the repository root, with the environment of
     `make test`) and requires it to pass; the `[ RUN      ] name` lines name its tests;
  2. makes one mutant per assertion line of every test function: a copy of the suite in
     which that one assertion is made to fail (the operators below), and runs only the
     test holding the line (KSA_TEST_ONLY=name, see tests/shlib.sh);
  3. reports each mutant: `killed` (the suite exited non-zero, as it must), `SURVIVED`
     (it still passed: that assertion cannot fail, a bug in the suite) or `timeout`
     (counted as killed, but reported).
It exits 0 only if every suite passed unmutated and every mutant was killed.

Mutation operators, one mutant per assertion line, the first that applies:
  1. test     `[ A = B ]`, `[ A == B ]`: B becomes WRONG_MUTANT; `[ A != B ]`: `!=` becomes
              `=`; -eq/-ne/-lt/-le/-gt/-ge become their negation; `[ -f X ]` (any unary
              test, or a lone operand) gets a `!`, `[ ! ... ]` loses it. Same for `[[ ]]`.
              A test followed by `|| cmd` that does not fail, or by `&& cmd` that is not
              another check, is a condition rather than an assertion and is skipped.
  2. grep     a line starting with grep, or a pipeline ending in `grep -q...`: WRONG_MUTANT
              is appended to the pattern (inside its quotes, before a final `$` anchor).
  3. message  `expect_error "msg" cmd...`: WRONG_MUTANT is appended inside the message.
  4. fail     a line starting with cmp, diff, must_fail or a checking helper of the suite
              (a top-level function, not a test, holding `return 1`, `exit 1` or a Python
              `assert`): prefixed with `mutant_fail`, which runs it and returns 1.
  5. if       `if CMD; then` with a `return 1` within the next lines: `if true || CMD; then`.
  6. assert   in a Python heredoc of a test: `assert X` becomes `assert False and X`, or
              `assert False and (X)` when the assert is one line (so that `A or B` and
              `A if C else B` fail too).
Only lines inside the test functions themselves are mutated (not helpers, not top-level
code); assignments, `local`, loop control and commands that merely produce data are not
assertions. A mutant is checked with `bash -n` first: one that is not valid shell is a bug
of this script and is reported as INVALID.

Usage: tests/mutate_shell_tests.py [--list] [--timeout SECONDS] [--only TEST]... tests/test_x.sh...
"""
import argparse
import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "WRONG_MUTANT"
MUTANT_FAIL = 'mutant_fail() { "$@" >/dev/null 2>&1; return 1; }'
OPS = ("&&", "||", ";;", "|", ";", "&", "(", ")")   # control operators at the top level
NEGATE = {"-eq": "-ne", "-ne": "-eq", "-lt": "-ge", "-ge": "-lt", "-gt": "-le", "-le": "-gt"}
FAILS = re.compile(r"\breturn 1\b|\bexit 1\b|\bfalse\b")   # a block that fails the test
CHECKS = re.compile(r"\breturn 1\b|\bexit 1\b")               # a helper that checks


def scan(text):
    """Lex shell text into top-level tokens (kind, start, end) with kind "word", "op" or
    "heredoc". Quotes, $(...), ${...}, <(...) and backticks stay inside their word (with
    their own nested quotes); comments are dropped. Returns (tokens, complete, heredocs):
    complete is False while a quote or parenthesis is open or the text ends in a
    backslash; heredocs lists (delimiter, strip_tabs) of every `<<` found, nested or not."""
    tokens, heredocs, stack = [], [], []
    i, n, start = 0, len(text), None

    def word_ends(end):
        nonlocal start
        if start is not None:
            tokens.append(("word", start, end))
            start = None

    while i < n:
        c, top = text[i], (stack[-1] if stack else None)
        if top == "'":
            if c == "'":
                stack.pop()
            i += 1
            continue
        if c == "\\":
            if not stack and text.startswith("\\\n", i):    # line continuation: a blank
                word_ends(i)
            elif start is None and not stack:
                start = i
            i += 2
            continue
        if top in ('"', "`", "${"):
            close = {'"': '"', "`": "`", "${": "}"}[top]
            if c == close:
                stack.pop()
            elif text.startswith("$(", i) or text.startswith("${", i):
                stack.append(text[i:i + 2])
                i += 1
            elif top == "${" and c in "\"'":
                stack.append(c)
            elif top == '"' and c == "`":
                stack.append(c)
            i += 1
            continue
        # command context: the top level, or inside $(...), <(...) or (...)
        if c in " \t\n":
            if not stack:
                word_ends(i)
            i += 1
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n;|&("):   # a comment
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("<<<", i):  # a here-string: the word after it is an ordinary word
            if not stack:
                word_ends(i)
            i += 3
        elif text.startswith("<<", i):
            m = re.match(r"<<(-?)\s*(['\"]?)(\w+)\2", text[i:])
            if not m:
                raise ValueError("cannot read the here-document at: " + text[i:i + 40])
            heredocs.append((m.group(3), m.group(1) == "-"))
            if not stack:
                word_ends(i)
                tokens.append(("heredoc", i, i + m.end()))
            i += m.end()
        elif c in "\"'`":
            if start is None and not stack:
                start = i
            stack.append(c)
            i += 1
        elif text[i:i + 2] in ("$(", "${", "<(", ">("):
            if start is None and not stack:
                start = i
            stack.append("${" if text[i + 1] == "{" else "$(")
            i += 2
        elif c == "(" and stack:
            stack.append("(")
            i += 1
        elif c == ")" and stack:
            stack.pop()
            i += 1
        elif not stack and text[i:i + 2] in (">&", "&>"):   # redirections, not `&`
            start = i if start is None else start
            i += 2
        elif not stack and any(text.startswith(o, i) for o in OPS):
            op = next(o for o in OPS if text.startswith(o, i))
            word_ends(i)
            tokens.append(("op", i, i + len(op)))
            i += len(op)
        else:
            if start is None and not stack:
                start = i
            i += 1
    word_ends(n)
    return tokens, not stack and not text.endswith("\\"), heredocs


class Logical:
    """One command line: physical lines joined by continuations or open quotes/parens,
    without the bodies of its here-documents."""

    def __init__(self, idxs, text):
        self.idxs, self.text = idxs, text
        self.tokens = scan(text)[0]

    def tok(self, k):
        return self.text[self.tokens[k][1]:self.tokens[k][2]]


def parse(lines):
    """Split a suite into logical lines; return them and {physical index: is_python} for
    every here-document body line."""
    logical, heredoc_lines, cur, pending, seen = [], {}, [], [], 0
    for i, line in enumerate(lines):
        if pending:
            delim, strip, py = pending[0]
            heredoc_lines[i] = py
            if (line.lstrip("\t") if strip else line) == delim:
                pending.pop(0)
            continue
        cur.append(i)
        text = "\n".join(lines[j] for j in cur)
        _, complete, heredocs = scan(text)
        py = "$PY" in text or "python" in text
        pending += [(d, s, py) for d, s in heredocs[seen:]]
        seen = len(heredocs)
        if complete:
            logical.append(Logical(cur, text))
            cur, seen = [], 0
    return logical, heredoc_lines


def functions(logical):
    """{name: (first, last)} logical-line ranges of the top-level function definitions."""
    funcs = {}
    for k, L in enumerate(logical):
        m = re.match(r"([A-Za-z_]\w*)\(\)\s*\{", L.text)
        if not m:
            continue
        if L.tokens and L.tok(len(L.tokens) - 1) == "}":       # name() { ...; } on one line
            funcs[m.group(1)] = (k, k)
        else:
            end = next(j for j in range(k + 1, len(logical)) if logical[j].text.rstrip() == "}")
            funcs[m.group(1)] = (k, end)
    return funcs


def with_mark(word):
    """The word (a grep pattern or a message) with WRONG_MUTANT appended inside its quotes,
    before a final `$` anchor, and without gluing it to a trailing $variable."""
    quote = word[-1] if word[-1] in "\"'" else ""
    body = word[:-1] if quote else word
    if body.endswith("$") and not body.endswith("\\$"):
        return body[:-1] + MARK + "$" + quote
    if quote != "'":
        body = re.sub(r"\$([A-Za-z_]\w*)$", r"${\1}", body)
    return body + MARK + quote


def mutate(L, after, helpers):
    """(operator, mutated text) for the logical line L, or None if it is no assertion.
    after: the logical lines following L (for `if`); helpers: the checking helpers."""
    toks = [t for t in L.tokens if t[0] != "heredoc"]
    words = [L.text[s:e] for _, s, e in toks]
    if not words:
        return None
    first = words[0]
    if re.match(r"\w+(\[[^]]*\])?\+?=", first) or first in ("local", "declare", "export"):
        return None
    if any(w in ("break", "continue") for w in words):
        return None
    splice = lambda s, e, new: L.text[:s] + new + L.text[e:]
    # 1. [ ... ] and [[ ... ]]
    if first in ("[", "[["):
        close = "]" if first == "[" else "]]"
        end = next((k for k in range(1, len(words)) if words[k] == close), None)
        if end is None:
            return None
        rest = words[end + 1:]
        checks = ("[", "[[", "grep", "cmp", "diff", "must_fail", "expect_error") + tuple(helpers)
        if rest and not (rest[0] == "&&" and rest[1:2] and rest[1] in checks) and not (
                rest[0] == "||" and FAILS.search(" ".join(rest))):
            return None                                  # a condition, not an assertion
        args = toks[1:end]
        a = [L.text[s:e] for _, s, e in args]
        if a and a[0] == "!":
            return "test", splice(args[0][1], args[1][1], "")
        if len(a) >= 3 and a[1] in ("=", "==", "=~"):
            return "test", splice(args[2][1], args[2][2], MARK)
        if len(a) >= 3 and a[1] == "!=":
            return "test", splice(args[1][1], args[1][2], "=")
        if len(a) >= 3 and a[1] in NEGATE:
            return "test", splice(args[1][1], args[1][2], NEGATE[a[1]])
        if len(a) == 1 or (len(a) == 2 and re.match(r"-[a-zA-Z]$", a[0])):
            return "test", splice(args[0][1], args[0][1], "! ")
        return None
    # 2. grep as a check: the first command of the line, or the end of its pipeline
    cmd = next((k for k, w in enumerate(words) if w in ("&&", "||", ";", "&")), len(words))
    if cmd < len(words) and not (words[cmd] == "||" and FAILS.search(" ".join(words[cmd:]))):
        cmd = None                                        # `grep ... || true`: no check
    if cmd is not None:
        pipes = [k for k in range(cmd) if words[k] == "|"]
        g = pipes[-1] + 1 if pipes else 0
        quiet = any(re.match(r"-\w*q|--quiet", w) for w in words[g + 1:cmd])
        # (a line ending in `|` continues on the next one: nothing after the pipe here)
        if g < cmd and words[g] == "grep" and (not pipes or quiet):
            k = g + 1
            while k < cmd and words[k].startswith("-") and len(words[k]) > 1:
                if words[k] in ("--", "-e"):
                    k += 1
                    break
                k += 2 if words[k] in ("-m", "-A", "-B", "-C", "-f") else 1
            if k < cmd:
                return "grep", splice(toks[k][1], toks[k][2], with_mark(words[k]))
    # 3. expect_error "message" cmd...
    if first == "expect_error" and len(words) > 2:
        return "message", splice(toks[1][1], toks[1][2], with_mark(words[1]))
    # 4. a check command or helper: made to fail
    if first in ("cmp", "diff", "must_fail") or first in helpers:
        return "fail", splice(toks[0][1], toks[0][1], "mutant_fail ")
    # 5. if CMD; then ... return 1: the branch is taken
    if first == "if" and "then" in words:
        then = words.index("then")
        body = [L.text[toks[then][1]:]]
        for M in after[:4] if "fi" not in words[then:] else []:
            if M.tokens and M.tok(0) in ("fi", "else", "elif"):
                break
            body.append(M.text)
        if re.search(r"\breturn 1\b", "\n".join(body)):
            return "if", splice(toks[0][2], toks[0][2], " true ||")
    return None


def false_assert(line):
    """`assert X, msg` -> `assert False and (X), msg`; a multi-line assert (which does not
    parse alone) -> `assert False and X...`, which stays valid whatever follows."""
    indent, stmt = re.match(r"(\s*)(.*)", line).groups()
    try:
        test = ast.parse(stmt).body[0].test
    except SyntaxError:
        return line.replace("assert ", "assert False and ", 1)
    b, s, e = stmt.encode(), test.col_offset, test.end_col_offset   # offsets in bytes
    return indent + (b[:s] + b"False and (" + b[s:e] + b")" + b[e:]).decode()


def mutants(path, tests=None):
    """The suite's lines and its mutants [(physical index, test, operator, new lines)],
    for the given tests (default: the functions named in the suite's top-level code)."""
    lines = open(path).read().split("\n")
    logical, heredoc_lines = parse(lines)
    funcs = functions(logical)
    inside = {k for a, b in funcs.values() for k in range(a, b + 1)}
    if tests is None:       # the functions the top level names (`for t in ...`, `tests=(...)`)
        named = {L.tok(j) for k, L in enumerate(logical) if k not in inside
                 for j in range(len(L.tokens))}
        tests = [f for f in funcs if f in named]
    helpers = []
    for name, (a, b) in funcs.items():
        lo, hi = logical[a].idxs[0], logical[b].idxs[-1]
        body = "\n".join(lines[lo:hi + 1])
        if name not in tests and (CHECKS.search(body) or any(
                heredoc_lines.get(i) and re.match(r"\s*assert\b", lines[i])
                for i in range(lo, hi + 1))):
            helpers.append(name)
    out = []
    for test in (t for t in tests if t in funcs):
        a, b = funcs[test]
        for k in range(a + 1, b):
            m = mutate(logical[k], logical[k + 1:b], helpers)
            if m:
                L = logical[k]
                new = m[1].split("\n")
                assert len(new) == len(L.idxs)
                out.append((L.idxs[0], test, m[0], dict(zip(L.idxs, new))))
        for i in range(logical[a].idxs[0], logical[b].idxs[0]):
            if heredoc_lines.get(i) and re.match(r"\s*assert\s", lines[i]):
                out.append((i, test, "assert", {i: false_assert(lines[i])}))
    out.sort(key=lambda m: m[0])
    return lines, out


def write_suite(suite, lines, changes, folder):
    """Write the (mutated) suite and a copy of the shlib.sh beside it (tests/shlib.sh) to
    folder; mutant_fail is defined right after the line that sources shlib.sh. Returns
    the path of the copy."""
    out = []
    for i, line in enumerate(lines):
        out.append(changes.get(i, line))
        if re.match(r"\s*(\.|source)\s.*shlib\.sh", line):
            out.append(MUTANT_FAIL)
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(suite)), "shlib.sh"), folder)
    path = os.path.join(folder, os.path.basename(suite))
    with open(path, "w") as f:
        f.write("\n".join(out))
    return path


def run(path, folder, timeout, only=None):
    """Run a suite from the repository root as `make test` does (its TMP inside folder).
    Returns (exit status or None on timeout, output)."""
    env = dict(os.environ)
    for k, v in (("BIN", "bin"), ("BUILD", "build"), ("PY", "/usr/bin/python3"),
                 ("OMP_NUM_THREADS", "2")):
        env.setdefault(k, v)
    env["TMPDIR"] = folder
    env.pop("KSA_TEST_ONLY", None)
    if only:
        env["KSA_TEST_ONLY"] = only
    log = os.path.join(folder, "output")
    with open(log, "w") as f:
        p = subprocess.Popen(["bash", path], cwd=ROOT, env=env, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        try:    # the process group this call started: a timeout, or a straggler (`cmd &`)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    return rc, open(log, errors="replace").read()


def shown(changes):
    """The mutated line, continuation lines joined, for the report."""
    text = " ".join(changes[i].strip() for i in sorted(changes))
    return text if len(text) <= 150 else text[:147] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suites", nargs="+", metavar="SUITE.sh")
    ap.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run (300)")
    ap.add_argument("--only", action="append", default=[], metavar="TEST",
                    help="mutate only this test function (repeatable; default: all)")
    args = ap.parse_args()
    t_start, ok, summary = time.time(), True, []
    n_killed = n_survived = n_timeout = 0
    scratch = tempfile.mkdtemp(prefix="ksamut.")     # short: mpirun's sockets live in it
    try:
        for suite in args.suites:
            t0, rel = time.time(), os.path.relpath(os.path.abspath(suite), ROOT)
            rel = os.path.abspath(suite) if rel.startswith("..") else rel
            name = os.path.basename(suite)
            lines, muts = mutants(suite)
            if args.only:
                muts = [m for m in muts if m[1] in args.only]
            if args.list:
                for i, test, op, changes in muts:
                    print(f"{rel}:{i + 1} {test} [{op}] {shown(changes)}")
                summary.append(f"{name} {len(muts)}")
                continue
            base = os.path.join(scratch, "base")     # the whole suite: a timeout per test
            n_tests = len({m[1] for m in muts}) or 1
            rc, out = run(write_suite(suite, lines, {}, base), base, args.timeout * n_tests,
                          only=" ".join(args.only) or None)
            shutil.rmtree(base, ignore_errors=True)
            tests = re.findall(r"^\[ RUN      \] (\S+)$", out, re.M)
            if rc != 0:
                print(out + f"{rel}: FAILS unmutated (exit {rc}): no mutants run")
                ok = False
                summary.append(f"{name} failed unmutated")
                continue
            if not tests:       # e.g. test_plot.sh without matplotlib: skipped, not failed
                print(f"{rel}: passed but ran no test (skipped?): no mutants run")
                summary.append(f"{name} ran no test")
                continue
            lines, muts = mutants(suite, tests)       # the tests that really ran
            if args.only:
                muts = [m for m in muts if m[1] in args.only]
            for t in tests:
                if not re.search(rf"^{t}\(\)", "\n".join(lines), re.M):
                    print(f"{rel}: warning: test {t} ran but is not a function of the suite")
            killed = 0
            for n, (i, test, op, changes) in enumerate(muts):
                folder = os.path.join(scratch, f"m{n}")
                path = write_suite(suite, lines, changes, folder)
                if subprocess.run(["bash", "-n", path], capture_output=True).returncode:
                    status = "INVALID"
                else:
                    rc, out = run(path, folder, args.timeout, only=test)
                    status = ("timeout" if rc is None else "killed" if rc else
                              "SURVIVED" if f"[ RUN      ] {test}\n" in out
                              else "SURVIVED (the test did not run)")
                shutil.rmtree(folder, ignore_errors=True)
                if status in ("killed", "timeout"):
                    killed += 1
                    n_timeout += status == "timeout"
                else:
                    ok = False
                print(f"{status:8} {rel}:{i + 1} {test} [{op}] {shown(changes)}", flush=True)
            n_killed += killed
            n_survived += len(muts) - killed
            summary.append(f"{name} {killed}/{len(muts)} killed in {time.time() - t0:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.list:
        print(f"mutants: {', '.join(summary)}")
        return 0
    timeouts = f" ({n_timeout} by timeout)" if n_timeout else ""
    print(f"mutants: {n_killed} killed{timeouts}, {n_survived} survived "
          f"(suites: {'; '.join(summary)})")
    print(f"total run time {time.time() - t_start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
