"""The homes of servers run as the hub's user (SimpleLocalProcessSpawner): hubctl's 0700 directories, or refused."""

import os
import stat

from jupyterhub.spawner import SimpleLocalProcessSpawner


def refuse(problem, fix):
    message = f"hubctl: {problem}. Fix: {fix}"
    error = RuntimeError(message)
    error.jupyterhub_message = message  # shown on the spawn page
    raise error


def check_home(path, mark=None):
    """The home (with `mark`) or the directory holding it: not a link, the hub's user's, nobody else writes it."""
    uid = os.getuid()
    what = "the server home" if mark else "the directory of server homes"
    away = f"look at what it holds, move it away (mv {path} {path}.not-hubctl) and start the server again: hubctl makes a new one"
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        refuse(f"{what} {path} is a symbolic link", away)
    if not stat.S_ISDIR(st.st_mode):
        refuse(f"{what} {path} is not a directory", away)
    # Above a home, a sticky directory of root's (/tmp) is fine: nobody replaces another's entry in it.
    sticky_root = mark is None and st.st_uid == 0 and st.st_mode & stat.S_ISVTX
    if st.st_uid != uid and not (mark is None and st.st_uid == 0):
        refuse(
            f"{what} {path} belongs to uid {st.st_uid}, not to the hub's user (uid {uid}): the server would run what that user put in it",
            away,
        )
    if mark:
        try:
            marked = os.lstat(mark)
        except FileNotFoundError:
            marked = None
        if marked is None or not stat.S_ISREG(marked.st_mode) or marked.st_uid != uid:
            refuse(
                f"{what} {path} was not made by hubctl (it has no {os.path.basename(mark)})",
                f"if it is the home you want and you trust what it holds, touch {mark}; otherwise {away}",
            )
    if st.st_mode & 0o022 and not sticky_root:
        refuse(
            f"{what} {path} is writable by {'its group' if st.st_mode & 0o020 else 'others'}: they could put code in it that the server runs",
            f"look at what it holds, then chmod go-w {path}",
        )


class ServerHomes:
    """Part of the pre-spawn hook: the home of a server run as the hub's user, made 0700 with hubctl's mark, or checked.

    `homes_dir` is hubctl's directory of homes (made when missing), `marker` the name of its mark."""

    def __init__(self, homes_dir, marker):
        self.homes_dir = homes_dir
        self.marker = marker

    def __call__(self, spawner):
        if not isinstance(spawner, SimpleLocalProcessSpawner):
            return
        home = os.path.abspath(spawner.home_dir)
        homes = os.path.dirname(home)
        if homes == self.homes_dir:
            os.makedirs(homes, 0o700, exist_ok=True)
        check_home(homes)
        mark = os.path.join(home, self.marker)
        try:
            os.mkdir(home, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(home, 0o700)
            fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("hubctl made this directory as a server home.\n")
        check_home(home, mark)
