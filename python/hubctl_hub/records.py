"""servers.json: which process serves each user's server, for hubctl's supervisor."""

import json
import os
import tempfile

from . import owners


class ServerRecords:
    """Tell hubctl's supervisor which process serves a user's server: its route check then takes an
    answer only from that process's listener (hubctl status's routeOk). `path` is servers.json."""

    def __init__(self, path):
        self.path = path

    def __call__(self, spawner, pid, port):
        try:
            key = f"{spawner.user.name}/{spawner.name}"
        except AttributeError:
            return
        path = self.path
        try:
            with open(path, encoding="utf-8") as f:
                records = json.load(f)
        except (OSError, ValueError):
            records = {}
        if not isinstance(records, dict):
            records = {}
        records[key] = {"pid": pid, "startTime": owners.start_time(pid), "port": port}
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".servers-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(records, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except BaseException:
                os.unlink(temp)
                raise
        except OSError as e:
            spawner.log.warning("hubctl: could not record the server process of %s: %s", key, e)
