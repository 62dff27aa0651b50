#!/usr/bin/env python3
"""A client for `nanovl serve` (docs/api.md), Python standard library only: copy it into a pipeline.

    python3 nanovl_client.py --socket /run/nanovl.sock report.pdf "What is the total?"
    python3 nanovl_client.py --socket /run/nanovl.sock --ocr scan.pdf --pages 1-3
    python3 nanovl_client.py --socket /run/nanovl.sock --inline photo.jpg "Describe it."
    python3 nanovl_client.py --socket /run/nanovl.sock --events chart.png "Which quarter is best?"
    python3 nanovl_client.py --socket /run/nanovl.sock --chat report.pdf    # questions on stdin

Files go as absolute paths (the server resolves relative ones against its own working
directory), or with --inline as base64 bytes. Streams the answer to stdout as it is generated,
progress to stderr, and exits 1 on an error event (printing its code and message). Ctrl-C
cancels the request on the server (exit 130); a second Ctrl-C leaves at once.

--chat holds a conversation: every argument is a file, the questions come one per line of stdin,
and each request carries the conversation so far as "messages" (the files with the first
question, then each answer as an "assistant" turn and the next question), as `nanovl ask --chat`
does: the server keeps no conversation, and reuses the files' vision and prefill. /reset starts
again, /exit or /quit ends, /help lists these. Ctrl-C cancels the answer being written and the
conversation goes on; at the prompt it ends it (exit 130).
"""
import argparse
import base64
import json
import os
import re
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
    ap.add_argument("--chat", action="store_true", help="a conversation: FILE... then questions on stdin")
    ap.add_argument("args", nargs="+", help="FILE... [question]")
    a = ap.parse_args()
    if a.chat and a.ocr:
        ap.error("--chat asks questions; --ocr asks none")
    files, question = (a.args, None) if a.ocr or a.chat else (a.args[:-1], a.args[-1])

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
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came ignored (a background job of sh)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(a.socket)
    f = s.makefile("rb")
    if a.chat:
        return chat(s, f, [media(p) for p in files], params, a.events)
    req = {"v": 1, "id": str(uuid.uuid4()), "params": params}
    if a.ocr:
        req.update(type="ocr", files=[media(p) for p in files])
    else:
        req["messages"] = [{"role": "user", "content": [media(p) for p in files] + [{"type": "text", "text": question}]}]
    rc, _ = ask(s, f, req, a.ocr, a.events)
    return rc


def ask(s, f, req, ocr, events):
    """Sends req and streams its events: (exit status, its done event or None); Ctrl-C cancels it."""
    s.sendall((json.dumps(req) + "\n").encode())
    try:
        return read_events(s, f, req["id"], ocr, events)
    except KeyboardInterrupt:  # Ctrl-C: cancel on the server, then wait for its answer
        print("\ncancelling (Ctrl-C again to leave at once)", file=sys.stderr)
        s.sendall((json.dumps({"v": 1, "type": "cancel", "target": req["id"]}) + "\n").encode())
        try:
            rc, done = read_events(s, f, req["id"], ocr, events)
        except KeyboardInterrupt:
            return 130, None
        return (130 if rc == 1 else rc), done


def chat(s, f, files, params, events):
    """A question per line of stdin, each sent with the conversation before it (see the top)."""
    history, rc = [], 0
    while True:
        if sys.stdin.isatty():
            print("> ", end="", file=sys.stderr, flush=True)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:  # at the prompt: the conversation ends
            print(file=sys.stderr)
            return 130
        if not line:
            return rc
        q = line.strip()
        if not q:
            continue
        word, rest = (re.split(r"[ \t]+", q, maxsplit=1) + [""])[:2]
        cmd = word.lower() if re.fullmatch(r"/[A-Za-z]+", word) else None  # the commands of `nanovl ask --chat`
        if cmd and cmd not in ("/exit", "/quit", "/reset", "/help"):
            print(f"{word} is not a command (/help lists them; to ask a question that begins so, put a word "
                  "before it)", file=sys.stderr)
            continue
        if cmd and rest.strip():
            print(f"{word} takes nothing after it", file=sys.stderr)
            continue
        if cmd in ("/exit", "/quit"):
            return rc
        if cmd == "/reset":
            history = []
            print("(a new conversation about the same files)", file=sys.stderr)
            continue
        if cmd == "/help":
            print("a question per line; /reset starts the conversation again; /exit, /quit or end of input "
                  "ends; Ctrl-C cancels an answer, at the prompt it ends", file=sys.stderr)
            continue
        # the files go with the first question only; earlier answers as the assistant's turns
        turn = {"role": "user", "content": ([*files, {"type": "text", "text": q}] if not history else q)}
        req = {"v": 1, "id": str(uuid.uuid4()), "params": params, "messages": history + [turn]}
        r, done = ask(s, f, req, False, events)
        if r == 0 and done is not None and done.get("finish_reason") != "cancelled":
            history += [turn, {"role": "assistant", "content": done.get("answer") or ""}]
        else:
            rc = 1  # a failed or cancelled turn is left out of the conversation
        if events:
            print(file=sys.stderr)


def comment_text(t):
    """t inside an HTML comment, as nanovl ocr writes it: a '>' that would end the comment (after
    "--" or "--!") as &gt;, a '<' that would open one ("<!--") as &lt;."""
    out = []
    for k, ch in enumerate(t):
        if ch == ">" and (t[max(0, k - 2):k] == "--" or t[max(0, k - 3):k] == "--!"):
            out.append("&gt;")
        elif ch == "<" and t.startswith("<!--", k):
            out.append("&lt;")
        else:
            out.append(ch)
    return "".join(out)


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
        elif kind == "progress":  # (total 0: not known yet)
            count = f"{ev['done']}/{ev['total']}" if ev.get("total") else f"{ev['done']}"
            print(f"\r[{ev['stage']}] {ev.get('item', '')} {count}", end="", file=sys.stderr)
        elif kind == "notice":
            print(f"\nnote: {ev['message']}", file=sys.stderr)
        elif kind == "page":
            if not events:
                where = f"page {ev['page']}" if "page" in ev else "image"  # as nanovl ocr marks them
                print(f"<!-- {where}: {comment_text(ev['file'])} -->\n\n{ev.get('text', '')}\n")
            if "error" in ev:
                print(f"page error: {ev['error']['code']}: {ev['error']['message']}", file=sys.stderr)
        elif kind == "done":
            if not events and not ocr:  # the answer's line ends (as the C client and nanovl ask end it)
                sys.stdout.write("\n")
                sys.stdout.flush()
            if ocr:
                print(f"\n[done: {ev.get('failed_pages', 0)} failed pages]", file=sys.stderr)
            else:
                u = ev.get("usage", {})
                print(f"\n[done: {u.get('prompt_tokens', '-')} prompt tokens, {u.get('completion_tokens', '-')} generated]",
                      file=sys.stderr)
            return 0, ev
        elif kind == "error":
            print(f"\nerror: {ev['code']}: {ev['message']}", file=sys.stderr)
            return 1, None
    print("error: the server closed the connection", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
