"""What the tests of hubctl_hub share: processes that listen, free ports, a spawner stand-in."""

import os
import signal
import socket
import subprocess
import sys

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)"
)
PARENT = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', sys.argv[2], sys.argv[1]])\n"
    "time.sleep(120)"
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(family, host, port=0):
    """A socket listening on (host, port): IPv6 ones on IPv6 only (a bind on IPv4 does not see them)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen()
    return s


class Children:
    """Python processes started for a test, each in its own session; all ended (their own children too) by end()."""

    def __init__(self):
        self.procs = []

    def start(self, *args):
        proc = subprocess.Popen(
            [sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def end(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            proc.stdout.close()
