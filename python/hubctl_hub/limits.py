"""Users' servers first for the OOM killer, and per-user limits through jupyterhub-systemdspawner.

The hub, the proxy and nginx run with a negative oom_score_adj (the service's OOMScoreAdjust, or
hubctl's supervisor's own value, which its children inherit). A server started by the hub would
inherit it too: `oom_adjusted(cls, score)` is the spawner class whose servers set `score` (positive)
before they run, so the server and every kernel and terminal it starts are the OOM killer's first
choice. `systemd_spawner()` is SystemdSpawner with hubctl's port and the server's process known to
the readiness check (its MainPID), so the listener proof and servers.json work as with the others.
"""

import asyncio

from traitlets import import_item, validate


def write_oom_score_adj(score, path="/proc/self/oom_score_adj"):
    """Raising one's own oom_score_adj needs no privilege; a failure leaves the server as it was."""
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(int(score)))
    except OSError:
        pass


def oom_adjusted(base, score):
    """The spawner class `base` (a class or its dotted name) whose servers start with oom_score_adj `score`."""
    if isinstance(base, str):
        base = import_item(base)

    class OomAdjusted(base):
        # hubctl's checks (doctor's user server) know the spawner by the class it extends.
        _hubctl_base = f"{base.__module__}.{base.__name__}"

        def make_preexec_fn(self, name):
            inner = super().make_preexec_fn(name)

            def preexec():
                # Before the uid changes (LocalProcessSpawner), in the child, before exec.
                write_oom_score_adj(score)
                if inner is not None:
                    inner()

            return preexec

    OomAdjusted.__name__ = OomAdjusted.__qualname__ = "Hubctl" + base.__name__
    return OomAdjusted


async def _main_pid(unit):
    proc = await asyncio.create_subprocess_exec(
        "systemctl",
        "show",
        "--property=MainPID",
        "--value",
        unit,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    try:
        return int(out.decode().strip() or 0)
    except ValueError:
        return 0


def systemd_spawner():
    """SystemdSpawner on the port hubctl's pre-spawn hook chose, with `pid` (the unit's MainPID) once started."""
    from systemdspawner import SystemdSpawner

    class HubctlSystemdSpawner(SystemdSpawner):
        _hubctl_base = "systemdspawner.SystemdSpawner"
        _hubctl_port = 0
        pid = 0

        @validate("port")
        def _hubctl_keep_port(self, proposal):
            # SystemdSpawner.start picks a random port of its own: hubctl's (hubctl_hub.ports) is kept.
            return self._hubctl_port or proposal["value"]

        async def start(self):
            self._hubctl_port = self.port
            try:
                started = await super().start()
            finally:
                self._hubctl_port = 0
            self.pid = await _main_pid(self.unit_name) if started else 0
            return started

        async def stop(self, now=False):
            await super().stop(now=now)
            self.pid = 0

    return HubctlSystemdSpawner
