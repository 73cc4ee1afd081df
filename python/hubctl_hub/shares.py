"""The links to the course's shared folders in each user's home (`shared/NAME`), placed at every server start."""

import asyncio
import json
import os
import pwd
import re
import subprocess
import sys

from jupyterhub.spawner import SimpleLocalProcessSpawner

# What `hubctl share add` accepts (src/lib/course/shares.ts): anything else in the file is skipped.
SHARE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,18}$")

# Run as the user, in the user's home: the home is theirs, and they may be changing it while this
# runs, so nothing here is done with root's rights. A link is made only where nothing is (a file or
# folder of the user's own of that name is left alone); a link to a share no longer in the list is
# removed. Never fails the start: the exit status only says what happened.
PLACE_LINKS = r"""
import os, sys
home, root, folder, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    os.chdir(home)
except OSError:
    sys.exit(3)
try:
    if names:
        os.mkdir(folder, 0o755)
except FileExistsError:
    pass
try:
    os.chdir(folder)
except OSError:
    sys.exit(0 if not names else 4)
for entry in os.listdir("."):
    if entry in names or not os.path.islink(entry):
        continue
    if os.path.dirname(os.readlink(entry)) == root:
        os.unlink(entry)
for name in names:
    try:
        os.lstat(name)
    except FileNotFoundError:
        os.symlink(os.path.join(root, name), name)
"""


def share_names(record_file):
    """The shares in hubctl's record (none when it is missing or unreadable)."""
    try:
        with open(record_file, encoding="utf-8") as f:
            shares = json.load(f).get("shares", {})
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(shares, dict):
        return []
    return sorted(name for name in shares if isinstance(name, str) and SHARE_NAME.match(name))


class SharedLinks:
    """Part of the pre-spawn hook: `<home>/<folder>/NAME` → `<root>/NAME` for each share, made as the user."""

    def __init__(self, record_file, root, folder):
        self.record_file = record_file
        self.root = root
        self.folder = folder

    def who(self, spawner):
        """The home, uid and gid the server runs with."""
        if isinstance(spawner, SimpleLocalProcessSpawner):
            return os.path.abspath(spawner.home_dir), os.getuid(), os.getgid()
        account = pwd.getpwnam(spawner.user.name)
        return account.pw_dir, account.pw_uid, account.pw_gid

    async def __call__(self, spawner):
        names = share_names(self.record_file)
        if not names and not os.path.isdir(self.root):
            return  # no share was ever made: no process to start
        try:
            home, uid, gid = self.who(spawner)
        except KeyError:
            return  # no system account: the spawner itself says so
        as_user = {} if uid == os.getuid() else {"user": uid, "group": gid, "extra_groups": []}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                "-c",
                PLACE_LINKS,
                home,
                self.root,
                self.folder,
                *names,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd="/",
                env={},
                **as_user,
            )
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        except (OSError, asyncio.TimeoutError) as error:
            spawner.log.warning("hubctl: the shared folders' links of %s were not placed: %s", spawner.user.name, error)
            return
        if process.returncode != 0:
            spawner.log.warning(
                "hubctl: the shared folders' links of %s were not placed (exit %s): %s",
                spawner.user.name,
                process.returncode,
                stderr.decode(errors="replace").strip().splitlines()[-1:] or "",
            )
