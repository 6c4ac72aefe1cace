"""Stands in for systemd's notification socket (packaging/check).

Binds a datagram socket at SOCKET (writable by the service's user) and appends each
state line a service sends (READY=1, WATCHDOG=1, STOPPING=1, ...) to LOG, flushed at
once, until killed or TIMEOUT seconds pass.
"""

import os
import socket
import sys
import time

path, log, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.chmod(path, 0o666)
deadline = time.monotonic() + timeout
with open(log, "a", encoding="utf-8") as out:
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        for line in data.decode("utf-8", "replace").splitlines():
            out.write(line + "\n")
        out.flush()
