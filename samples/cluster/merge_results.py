#!/usr/bin/env python3
"""Merges the results files of a sharded `nanovl batch` (Slurm array, Kubernetes indexed Job) and
checks that every job of the manifest has exactly one result line. Standard library only.

    python3 merge_results.py JOBS.jsonl results.0.jsonl results.1.jsonl ... [--out MERGED.jsonl]

A job's id is its "id", or "line-N-HHHHHHHH" (N: its line in the manifest; H: the FNV-1a of the
line's bytes without the spaces, tabs and CR around them) when it has none or the line is not a
JSON object, as nanovl batch names it. The merged file holds the result lines in manifest
order, unchanged. Prints a summary and every problem: a job with no line (a shard that did not
run or finish: rerun it), a job with several lines, a line whose id is not in the manifest, a
line that is not JSON (a torn write: rerun that shard; once every job has its line such lines
are only warnings), a results file that cannot be read. Exit 0 when every job has exactly one line (some may have status "error": they are counted; `nanovl batch
--retry-failed` redoes them), 1 otherwise, 2 on bad usage.
"""
import argparse
import json
import sys


def manifest_ids(path):
    ids = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip(b" \t\r\n"):  # blank as nanovl sees it (spaces, tabs, CR only)
                continue
            try:  # one JSON value with no NUL in it, as nanovl's request parser takes a line
                text = raw.decode("utf-8", "surrogateescape")
                if text.startswith("\ufeff"):  # a UTF-8 byte order mark: nanovl's parser skips it
                    text = text[1:]
                job = None if b"\0" in raw else json.loads(text, strict=False)
                if "\\u0000" in json.dumps(job):  # a NUL in any string: nanovl refuses the line
                    job = None
            except ValueError:
                job = None
            jid = job.get("id") if isinstance(job, dict) else None
            if isinstance(jid, str):
                b = jid.encode("utf-8", "surrogateescape")
                # nanovl: at most 256 bytes, no NUL; invalid bytes compared as U+FFFD
                jid = None if len(b) > 256 else b.decode("utf-8", "replace")
            if not isinstance(jid, str):
                h = 2166136261
                for c in raw.rstrip(b"\n").rstrip(b"\r \t").lstrip(b" \t"):
                    h = ((h ^ c) * 16777619) & 0xFFFFFFFF
                jid = f"line-{n}-{h:08x}"
            ids.append(jid)
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jobs")
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", help="write the merged result lines here")
    a = ap.parse_args()

    ids = manifest_ids(a.jobs)
    known = set(ids)
    lines = {}  # id -> [(file, line number, text)]
    problems = []
    garbled = []  # lines that are not result lines: a problem only where a job lacks its line
    for path in a.results:
        try:
            f = open(path, "rb")
        except OSError as e:
            problems.append(f"{path}: cannot be read ({e.strerror}): did that shard run?")
            continue
        with f:
            for n, raw in enumerate(f, 1):
                text = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    rid = json.loads(text)["id"]
                    if not isinstance(rid, str):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    garbled.append(f"{path}:{n}: not a result line (a torn write; a rerun of that shard redoes "
                                   "its job if it has no other line)")
                    continue
                if rid not in known:
                    problems.append(f"{path}:{n}: id {rid!r} is not in {a.jobs}")
                lines.setdefault(rid, []).append((path, n, text))

    status = {}
    for jid in ids:
        got = lines.get(jid, [])
        if not got:
            problems.append(f"{jid}: no result line")
        elif len(got) > 1:
            problems.append(f"{jid}: {len(got)} result lines (" + ", ".join(f"{p}:{n}" for p, n, _ in got) + ")")
        else:
            s = json.loads(got[0][2]).get("status", "?")
            status[s] = status.get(s, 0) + 1
    if len(known) != len(ids):
        problems.append(f"{a.jobs}: {len(ids) - len(known)} duplicate job ids (nanovl batch refuses such a manifest)")
    if problems:
        problems += garbled
    else:  # every job has its one line: the garbled ones are leftovers, named but not failing
        for g in garbled:
            print(f"warning: {g}", file=sys.stderr)

    if a.out and not problems:
        with open(a.out, "w", encoding="utf-8") as f:
            for jid in ids:
                f.write(lines[jid][0][2] + "\n")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
    print(f"{len(ids)} jobs, {len(a.results)} results files: {summary or 'no complete jobs'}; "
          f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" + (f" -> {a.out}" if a.out and not problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
