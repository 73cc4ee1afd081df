"""The ports of user servers: one at random from hubctl's range, free on IPv4 and IPv6, not handed out twice."""

import errno
import random
import socket
import time

import jupyterhub.orm
from jupyterhub.spawner import LocalProcessSpawner

_random = random.SystemRandom()


class ServerPorts:
    """Part of the pre-spawn hook: the port of the server about to start."""

    def __init__(self, first, last, hold_seconds):
        self.first = first
        self.last = last
        self.hold_seconds = hold_seconds
        self.handed_out = {}

    def __deepcopy__(self, memo):
        # traitlets hands each spawner a deep copy of a configured value: one hook for all of them,
        # or each would hand out ports by itself, and two servers starting together got the same one.
        return self

    def __call__(self, spawner):
        # hubctl's SystemdSpawner (limits.py) keeps the port given here, too.
        if isinstance(spawner, LocalProcessSpawner) or hasattr(spawner, "_hubctl_base"):
            spawner.port = self.pick(ports_in_db(spawner))

    def pick(self, taken=()):
        now = time.monotonic()
        self.handed_out = {p: t for p, t in self.handed_out.items() if now - t < self.hold_seconds}
        candidates = [
            port
            for port in range(self.first, self.last + 1)
            if port not in self.handed_out and port not in taken
        ]
        while candidates:
            i = _random.randrange(len(candidates))
            port = candidates[i]
            candidates[i] = candidates[-1]
            candidates.pop()
            if port_free(port):
                self.handed_out[port] = now
                return port
        raise RuntimeError(
            f"no free port for a user server in {self.first}-{self.last}:"
            " stop servers, or free ports in that range"
        )


def ports_in_db(spawner):
    """The ports of every server the hub's database holds (started or starting)."""
    try:
        return {port for (port,) in spawner.user.db.query(jupyterhub.orm.Server.port)}
    except Exception:
        return set()


def port_free(port):
    """Nothing holds the port on any address, IPv4 or IPv6."""
    for family, host in ((socket.AF_INET, ""), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
        finally:
            sock.close()
    return True
