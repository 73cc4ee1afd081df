"""A user's server is up when its own URL answers, from the process the spawner started.

JupyterHub takes any answer below 500 on the server's URL for "up", so another server's 404 on the
port was taken for this user's server. And only when the listener on its port is the process the
spawner started (LocalProcessSpawner): another local user who binds the port first (watching for
the server's process to appear) and answers 200 would otherwise get /user/NAME/ with the user's
cookies. Such a server cannot bind its port and exits: the spawn fails at once, naming the other
program, instead of at the timeout. `install(record)` puts this in place of JupyterHub's check.
"""

import asyncio
import contextvars
import time
from urllib.parse import urlparse

import jupyterhub.objects
import jupyterhub.user
from jupyterhub.spawner import LocalProcessSpawner

from . import owners

# JupyterHub's own, taken once (when this module is first imported): a config loaded twice wraps them once.
_wait_for_http_server = jupyterhub.objects.wait_for_http_server
_user_wait_up = jupyterhub.user.User._wait_up
spawner_waiting = contextvars.ContextVar("hubctl_spawner_waiting", default=None)
_record = None


def install(record):
    """Patch JupyterHub's readiness check; `record(spawner, pid, port)` is called for each server found up."""
    global _record
    _record = record
    jupyterhub.user.User._wait_up = wait_up
    jupyterhub.objects.wait_for_http_server = wait_for_own_server


async def wait_up(self, spawner):
    """User._wait_up with the spawner known to the readiness check below."""
    token = spawner_waiting.set(spawner)
    try:
        return await _user_wait_up(self, spawner)
    finally:
        spawner_waiting.reset(token)


async def wait_for_own_server(url, timeout=10, ssl_context=None):
    parsed = urlparse(url)
    if not parsed.path.startswith("/user/"):
        return await _wait_for_http_server(url, timeout=timeout, ssl_context=ssl_context)
    spawner = spawner_waiting.get()
    # LocalProcessSpawner's process, or the MainPID of hubctl's SystemdSpawner's unit (limits.py).
    known = isinstance(spawner, LocalProcessSpawner) or hasattr(spawner, "_hubctl_base")
    pid = getattr(spawner, "pid", 0) if known else 0
    port = parsed.port
    deadline = time.monotonic() + timeout
    while True:
        if pid:
            state, problem = owners.port_owner(port, pid)
            if state != "owned":
                ended = owners.exited(spawner, pid)
                if ended:
                    raise RuntimeError(
                        f"The server's process (pid {pid}) {ended} before it listened on port {port}"
                        + (f": {problem}" if state != "none" else "")
                    )
                if state == "mixed":
                    raise RuntimeError(f"Server at {url}: {problem}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"Server at {url} not up in {timeout} seconds: {problem}")
                await asyncio.sleep(0.1)
                continue
        left = max(deadline - time.monotonic(), 0.1)
        response = await _wait_for_http_server(url, timeout=left, ssl_context=ssl_context)
        code = getattr(response, "status", None) or getattr(response, "code", 0)
        if code < 400:
            if not pid:
                return response
            if owners.port_owner(port, pid)[0] == "owned":
                if _record is not None:
                    _record(spawner, pid, port)
                return response
            continue
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Server at {url} answered {code} (not this user's server) for {timeout} seconds")
        await asyncio.sleep(0.5)
