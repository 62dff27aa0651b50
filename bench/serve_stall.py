#!/usr/bin/env python3
"""The longest silence of one client's token stream while another client's OCR request starts
(nanovl serve on a socket; standard library only).

Client A asks a long question (reasoning on, max_tokens 3000); at its 50th token client B sends an
OCR request over N copies of a PDF; A's token arrival times give the longest gap between two
tokens. Before the OCR request's inputs were listed off the stepping thread, that gap was the time
to open all N documents.

    build/api/nanovl serve --model tests/data/vl_tiny --socket /tmp/s.sock &
    python3 bench/serve_stall.py /tmp/s.sock tests/data/media/made/image.bmp tests/data/media/made/two_pages.pdf 30
"""
import json
import os
import socket
import sys
import time


def main():
    sock, image, pdf, n = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3]), int(sys.argv[4])

    def conn():
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        return s

    a = conn()
    a.sendall((json.dumps({"v": 1, "id": "long", "messages": [{"role": "user", "content": [
        {"type": "image", "path": image}, {"type": "text", "text": "What is in this picture?"}]}],
        "params": {"max_tokens": 3000, "think": True}}) + "\n").encode())
    times, b = [], None
    for line in a.makefile():
        ev = json.loads(line)
        if ev.get("event") in ("done", "error"):
            break
        if ev.get("event") != "token":
            continue
        times.append(time.time())
        if len(times) == 50:
            b = conn()
            b.sendall((json.dumps({"v": 1, "id": "ocr", "type": "ocr", "files": [pdf] * n,
                                   "params": {"max_tokens": 2}}) + "\n").encode())
        if len(times) == 400:
            break
    gaps = [times[i + 1] - times[i] for i in range(len(times) - 1)]
    print("tokens %d, longest gap %.3f s (after token %d), median %.4f s" %
          (len(times), max(gaps), gaps.index(max(gaps)) + 1, sorted(gaps)[len(gaps) // 2]))


if __name__ == "__main__":
    main()
