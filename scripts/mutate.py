#!/usr/bin/env python3
"""Sampled mutation testing (issue 20 item 14), run by hand, never in CI.

For each module (media/, vision/, tokenreduce/, llm/, api/ by default) a seeded random sample of
single-point mutants is drawn from its C sources: a relational operator changed (< <= > >= == !=),
&& <-> ||, an integer constant off by one, or an expression statement deleted. Each mutant is
written into the work tree, built (cmake --build), and judged by the default suite
(ctest -LE slow, stopping at the first failure): killed when the suite fails, survived when it
passes, stillborn when it does not compile (left out of the rate). The source file is restored
after every mutant, also on Ctrl-C.

    scripts/mutate.py --per-module 8 --seed 1 --report bench/MUTATION.md

A run of 8 mutants per module takes about an hour on 2 cores (a survivor costs a full suite run,
~45 s; a killed mutant usually less). Look at every survivor: either a test is missing, or the
mutant is equivalent (say why in the report).
"""
import argparse
import os
import random
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ["media", "vision", "tokenreduce", "llm", "api"]

# token-aware patterns: '>' is not part of '->', '>>', '>=' ; '<' not part of '<<', '<='
OPS = [
    ("rel", re.compile(r"(?<![<>=!])<=(?!=)"), "<"),
    ("rel", re.compile(r"(?<![<>=!-])>=(?!=)"), ">"),
    ("rel", re.compile(r"(?<![<>-])<(?![<=])"), "<="),
    ("rel", re.compile(r"(?<![<>-])>(?![>=])"), ">="),
    ("rel", re.compile(r"=="), "!="),
    ("rel", re.compile(r"!="), "=="),
    ("logic", re.compile(r"&&"), "||"),
    ("logic", re.compile(r"\|\|"), "&&"),
]
CONST = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
STMT = re.compile(r"^\s*[A-Za-z_][\w\->.\[\]]*\s*(\(|[-+*/|&]?=[^=]).*;\s*$")
SKIP_LINE = re.compile(r"^\s*(#|//|/\*|\*|$)")
DECL = re.compile(r"^\s*(static\s+|const\s+|struct\s+|enum\s+|unsigned\s+)*"
                  r"(int|size_t|double|float|char|uint\d+_t|int\d+_t|nvl_status|bool|void|long)\b")


def strip_strings(line):
    """Masks string and char literals so that operators inside them are not mutated."""
    return re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', lambda m: "\0" * len(m.group(0)), line)


def candidates(path):
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().split("\n")
    in_comment = False
    for i, line in enumerate(lines):
        s = line.strip()
        if in_comment:
            if "*/" in s:
                in_comment = False
            continue
        if s.startswith("/*") and "*/" not in s:
            in_comment = True
            continue
        if SKIP_LINE.match(line):
            continue
        code = strip_strings(line.split("//")[0])
        for kind, rx, rep in OPS:
            for m in rx.finditer(code):
                out.append((i, kind, m.start(), m.end(), rep))
        for m in CONST.finditer(code):
            if "[" in code[:m.start()] and "]" in code[m.end():] and DECL.match(line):
                continue  # array sizes in declarations: mostly stillborn or equivalent
            out.append((i, "const", m.start(), m.end(), str(int(m.group(1)) + 1)))
        if STMT.match(code) and not DECL.match(line) and not s.startswith("return") and s.count("(") == s.count(")"):
            out.append((i, "delete", 0, len(line), ";"))
    return lines, out


def sources(module):
    if os.path.isfile(os.path.join(ROOT, module)):  # one file: a targeted run (--modules llm/forward.c)
        return [os.path.join(ROOT, module)]
    res = []
    for d, _, files in os.walk(os.path.join(ROOT, module)):
        res += [os.path.join(d, f) for f in sorted(files) if f.endswith(".c")]
    return sorted(res)


def run(cmd, timeout):
    t = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, time.time() - t, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return -1, time.time() - t, "timeout"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", nargs="*", default=MODULES)
    ap.add_argument("--per-module", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--suite-timeout", type=int, default=900)
    ap.add_argument("--test-timeout", type=int, default=180,
                    help="per test (a mutant that hangs a test is killed by the timeout; test_batch needs ~60 s)")
    ap.add_argument("--report", default=None, help="markdown file to append the run to")
    ap.add_argument("--list", action="store_true", help="only print the sampled mutants")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    build = ["cmake", "--build", a.build_dir, f"-j{a.jobs}"]
    suite = ["ctest", "--test-dir", a.build_dir, f"-j{a.jobs}", "-LE", "slow", "--stop-on-failure",
             "--timeout", str(a.test_timeout)]
    rc, _, out = run(build, 3600)
    if rc != 0:
        sys.exit("the unmutated tree does not build:\n" + out[-2000:])
    rows = []
    for mod in a.modules:
        pool = []
        for path in sources(mod):
            _, cands = candidates(path)
            pool += [(path, c) for c in cands]
        picks = rng.sample(pool, min(a.per_module, len(pool)))
        print(f"{mod}: {len(pool)} candidate mutants, {len(picks)} sampled", flush=True)
        for path, (i, kind, b, e, rep) in picks:
            with open(path, "rb") as f:
                orig = f.read()
            lines = orig.decode("utf-8", "surrogateescape").split("\n")
            before = lines[i]
            after = before[:b] + rep + before[e:]
            rel = os.path.relpath(path, ROOT)
            row = {"module": mod, "where": f"{rel}:{i + 1}", "kind": kind, "before": before.strip(),
                   "after": after.strip()}
            if a.list:
                print(f"  {row['where']} [{kind}] {row['before']}  ->  {row['after']}")
                continue
            try:
                lines[i] = after
                with open(path, "wb") as f:
                    f.write("\n".join(lines).encode("utf-8", "surrogateescape"))
                brc, bt, _ = run(build, 1800)
                if brc != 0:
                    row["outcome"], row["seconds"] = "stillborn", bt
                else:
                    trc, tt, tout = run(suite, a.suite_timeout)
                    row["outcome"] = "survived" if trc == 0 else "killed"
                    row["seconds"] = bt + tt
                    failed = re.findall(r"\d+ - (\S+) \((?!Skipped)", tout)
                    row["by"] = ",".join(failed[:3]) if failed else ("timeout" if trc == -1 else "")
            finally:
                with open(path, "wb") as f:
                    f.write(orig)
            print(f"  {row['outcome']:9s} {row['where']} [{kind}] {row['before']}  ->  {row['after']}"
                  f"  ({row['seconds']:.0f} s{'; ' + row['by'] if row.get('by') else ''})", flush=True)
            rows.append(row)
    if a.list:
        return
    run(build, 3600)  # back to the unmutated binaries
    summary = []
    for mod in a.modules:
        k = sum(r["module"] == mod and r["outcome"] == "killed" for r in rows)
        s = sum(r["module"] == mod and r["outcome"] == "survived" for r in rows)
        sb = sum(r["module"] == mod and r["outcome"] == "stillborn" for r in rows)
        rate = f"{100 * k / (k + s):.0f} %" if k + s else "-"
        summary.append(f"| {mod} | {k} | {s} | {sb} | {rate} |")
        print(summary[-1])
    if a.report:
        with open(a.report, "a", encoding="utf-8") as f:
            f.write(f"\n## Mutation run {time.strftime('%Y-%m-%d %H:%M')} (seed {a.seed}, {a.per_module} per module)\n\n"
                    "| module | killed | survived | stillborn | kill rate |\n|---|---|---|---|---|\n")
            f.write("\n".join(summary) + "\n\n| outcome | where | mutant | killed by |\n|---|---|---|---|\n")
            for r in rows:
                mut = f"`{r['before']}` -> `{r['after']}`".replace("|", "\\|")
                f.write(f"| {r['outcome']} | {r['where']} | {mut} | {r.get('by', '')} |\n")


if __name__ == "__main__":
    main()
