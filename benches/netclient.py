#!/usr/bin/env python3
"""The host side of benches/network.sh: bulk transfers and short HTTP requests to a server
in a container, timed here. One JSON object on stdout per call.

  netclient.py up   HOST PORT MIB PIDS    send MIB MiB; the server (busybox dd with bs=1M,
                                          iflag=fullblock) answers "MIB+0 records in"
  netclient.py down HOST PORT MIB PIDS    send "MIB\\n", receive MIB MiB, until EOF
  netclient.py http HOST PORT COUNT BODY PIDS
                                          COUNT sequential HTTP/1.0 GETs of /index.html,
                                          each on a new connection; the answer must be a 200
                                          with a BODY-byte body

PIDS: comma-separated process IDs whose CPU time (user + system, all threads) is read from
/proc before and after, the proxy's; "-" for none. Standard library only.
"""

import json
import os
import socket
import sys
import time

CHUNK = 1 << 20
TIMEOUT = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    if not pids:
        return None
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
        except (OSError, IndexError, ValueError):
            return None
    return total / TICKS


def connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect((host, port))
    return s


def read_all(s, buf):
    """Reads until EOF into buf (a bytearray, reused); returns the byte count."""
    got = 0
    view = memoryview(buf)
    while True:
        n = s.recv_into(view)
        if n == 0:
            return got
        got += n


def up(host, port, mib):
    zeros = memoryview(bytes(CHUNK))
    with connect(host, port) as s:
        for _ in range(mib):
            s.sendall(zeros)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            part = s.recv(4096)
            if not part:
                break
            reply += part
    text = reply.decode("ascii", "replace")
    if f"{mib}+0 records in" not in text:
        raise RuntimeError(f"the server did not receive {mib} MiB: its answer: {text.strip()!r}")
    return mib * CHUNK


def down(host, port, mib):
    buf = bytearray(CHUNK)
    with connect(host, port) as s:
        s.sendall(b"%d\n" % mib)
        got = read_all(s, buf)
    if got != mib * CHUNK:
        raise RuntimeError(f"received {got} bytes, expected {mib * CHUNK}")
    return got


def http(host, port, count, body):
    request = b"GET /index.html HTTP/1.0\r\nHost: bench\r\n\r\n"
    us = []
    errors = 0
    first_error = None
    for _ in range(count):
        t0 = time.perf_counter_ns()
        try:
            with connect(host, port) as s:
                s.sendall(request)
                reply = b""
                while True:
                    part = s.recv(65536)
                    if not part:
                        break
                    reply += part
            t1 = time.perf_counter_ns()
            head, sep, content = reply.partition(b"\r\n\r\n")
            if not sep or not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
                raise RuntimeError(f"not a 200: {head[:60]!r}")
            if len(content) != body:
                raise RuntimeError(f"a {len(content)}-byte body, expected {body}")
        except (OSError, RuntimeError) as e:
            errors += 1
            if first_error is None:
                first_error = f"{type(e).__name__}: {e}"
            continue
        us.append((t1 - t0) // 1000)
    return {"n": len(us), "errors": errors, "first_error": first_error, "us": us}


def main(argv):
    if len(argv) < 2 or argv[1] not in ("up", "down", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, host, port = argv[1], argv[2], int(argv[3])
    pids = [] if argv[-1] == "-" else [int(p) for p in argv[-1].split(",")]
    c0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    try:
        if mode == "http":
            out = http(host, port, int(argv[4]), int(argv[5]))
        else:
            mib = int(argv[4])
            out = {"bytes": (up if mode == "up" else down)(host, port, mib)}
    except (OSError, RuntimeError) as e:
        print(f"netclient.py: {mode} {host}:{port}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    out["seconds"] = time.perf_counter() - t0
    c1 = cpu_seconds(pids)
    out["proxy_cpu_s"] = None if c0 is None or c1 is None else c1 - c0
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
