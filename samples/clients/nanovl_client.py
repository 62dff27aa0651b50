#!/usr/bin/env python3
"""A client for `nanovl serve` (docs/api.md), Python standard library only: copy it into a pipeline.

    python3 nanovl_client.py --socket /run/nanovl.sock report.pdf "What is the total?"
    python3 nanovl_client.py --socket /run/nanovl.sock --ocr scan.pdf --pages 1-3
    python3 nanovl_client.py --socket /run/nanovl.sock --inline photo.jpg "Describe it."
    python3 nanovl_client.py --socket /run/nanovl.sock --events chart.png "Which quarter is best?"

Files go as absolute paths (the server resolves relative ones against its own working
directory), or with --inline as base64 bytes. Streams the answer to stdout as it is generated,
progress to stderr, and exits 1 on an error event (printing its code and message). Ctrl-C
cancels the request on the server (exit 130); a second Ctrl-C leaves at once.
"""
import argparse
import base64
import json
import os
import signal
import socket
import sys
import uuid


def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {s!r}")
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--ocr", action="store_true", help="markdown per page instead of a question")
    ap.add_argument("--inline", action="store_true", help="send file bytes (base64) instead of paths")
    ap.add_argument("--pages")
    ap.add_argument("--max-tokens", type=positive_int)
    ap.add_argument("--no-think", action="store_true")
    ap.add_argument("--events", action="store_true", help="print every event line of the request as sent")
    ap.add_argument("args", nargs="+", help="FILE... [question]")
    a = ap.parse_args()
    files, question = (a.args, None) if a.ocr else (a.args[:-1], a.args[-1])

    def media(path):
        if a.inline:
            if not os.path.isfile(path):  # a FIFO would block the read, a directory fails it
                sys.exit(f"{path}: not a regular file" if os.path.exists(path) else f"{path}: no such file")
            with open(path, "rb") as f:
                return {"type": "file", "data": base64.b64encode(f.read()).decode(), "name": path}
        # the server resolves a relative path against its own working directory: send absolute ones
        return {"type": "file", "path": os.path.abspath(path)}

    params = {}
    if a.pages:
        params["pages"] = a.pages
    if a.max_tokens:
        params["max_tokens"] = a.max_tokens
    if a.no_think:
        params["think"] = False
    rid = str(uuid.uuid4())
    req = {"v": 1, "id": rid, "params": params}
    if a.ocr:
        req.update(type="ocr", files=[media(p) for p in files])
    else:
        req["messages"] = [{"role": "user", "content": [media(p) for p in files] + [{"type": "text", "text": question}]}]

    # Ctrl-C raises KeyboardInterrupt even where SIGINT came ignored (a background job of sh)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    s.sendall((json.dumps(req) + "\n").encode())
    f = s.makefile("rb")
    try:
        return read_events(s, f, rid, a.ocr, a.events)
    except KeyboardInterrupt:  # Ctrl-C: cancel on the server, then wait for its answer
        print("\ncancelling (Ctrl-C again to leave at once)", file=sys.stderr)
        s.sendall((json.dumps({"v": 1, "type": "cancel", "target": rid}) + "\n").encode())
        try:
            rc = read_events(s, f, rid, a.ocr, a.events)
        except KeyboardInterrupt:
            return 130
        return 130 if rc == 1 else rc


def read_events(s, f, rid, ocr, events=False):
    for line in f:  # one JSON event per line
        ev = json.loads(line)
        if ev.get("id") not in (rid, None):  # None: the connection's own trouble (timeout, busy)
            continue
        kind = ev["event"]
        if events:
            sys.stdout.write(line.decode())
            sys.stdout.flush()
        if kind == "token" and not ev.get("reasoning") and not events:
            sys.stdout.write(ev["text"])
            sys.stdout.flush()
        elif kind == "progress":
            print(f"\r[{ev['stage']}] {ev.get('item', '')} {ev['done']}/{ev['total']}", end="", file=sys.stderr)
        elif kind == "notice":
            print(f"\nnote: {ev['message']}", file=sys.stderr)
        elif kind == "page":
            if not events:
                where = f"page {ev['page']}" if "page" in ev else "image"  # as nanovl ocr marks them
                print(f"<!-- {where}: {ev['file']} -->\n\n{ev.get('text', '')}\n")
            if "error" in ev:
                print(f"page error: {ev['error']['code']}: {ev['error']['message']}", file=sys.stderr)
        elif kind == "done":
            if ocr:
                print(f"\n[done: {ev.get('failed_pages', 0)} failed pages]", file=sys.stderr)
            else:
                u = ev.get("usage", {})
                print(f"\n[done: {u.get('prompt_tokens', '-')} prompt tokens, {u.get('completion_tokens', '-')} generated]",
                      file=sys.stderr)
            return 0
        elif kind == "error":
            print(f"\nerror: {ev['code']}: {ev['message']}", file=sys.stderr)
            return 1
    print("error: the server closed the connection", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
