#!/usr/bin/env python3
"""Sends one command to QEMU's human monitor on a unix socket and prints the reply.

    ci/vm/monitor.py SOCKET "set_link lnk0 off"

Retries the connection for up to 10 s (QEMU may not listen yet); exit 1 if it never does.
"""
import socket
import sys
import time

if len(sys.argv) != 3:
    print("usage: monitor.py SOCKET COMMAND", file=sys.stderr)
    sys.exit(2)
path, cmd = sys.argv[1], sys.argv[2]
deadline = time.time() + 10
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        break
    except OSError as e:
        if time.time() > deadline:
            print(f"monitor.py: cannot connect to {path}: {e}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)
s.settimeout(2)
out = b""
try:
    out += s.recv(4096)  # the banner and prompt
except socket.timeout:
    pass
s.sendall(cmd.encode() + b"\n")
time.sleep(0.5)
try:
    out += s.recv(4096)
except socket.timeout:
    pass
s.close()
sys.stdout.write(out.decode(errors="replace"))
