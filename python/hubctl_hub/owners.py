"""Who listens on a server's port (as hubctl proves it for its own children, src/lib/stack/listeners.ts).

/proc/net/tcp and tcp6 list each listening socket with its inode and its owner's uid;
/proc/PID/fd of a process holds `socket:[INODE]` for each socket it has (the hub runs as root and
reads every process's). A port is the server's when every socket listening on it where a
connection to 127.0.0.1 can land (127.0.0.1, 0.0.0.0, ::, ::ffff:127.0.0.1) is held by the
process the spawner started or one of its descendants.
"""

import os

REACHABLE = {
    "0100007F",
    "00000000",
    "00000000000000000000000000000000",
    "0000000000000000FFFF00000100007F",
}


def listeners(port):
    """(inode, uid) of each socket listening on `port` that a connection to 127.0.0.1 can reach."""
    found = []
    want = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":
                continue
            address, _, local_port = fields[1].partition(":")
            if local_port == want and address in REACHABLE:
                found.append((fields[9], int(fields[7])))
    return found


def socket_inodes(pid):
    """The inodes of the sockets process `pid` holds."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def processes():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(pid):
    """Every process whose chain of parents leads to `pid`."""
    children = {}
    for child in processes():
        try:
            with open(f"/proc/{child}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def port_owner(port, pid):
    """("owned", None): every listener on 127.0.0.1:port is the process tree of `pid`; otherwise
    ("none" | "foreign" | "mixed", why): nothing listens; only others do; it and another program do."""
    found = listeners(port)
    if not found:
        return "none", f"nothing listens on port {port}"
    ours = socket_inodes(pid)
    if not all(inode in ours for inode, _ in found):
        for child in descendants(pid):
            ours |= socket_inodes(child)
    foreign = [(inode, uid) for inode, uid in found if inode not in ours]
    if not foreign:
        return "owned", None
    inode, uid = foreign[0]
    holder = next((p for p in processes() if inode in socket_inodes(p)), None)
    who = f"pid {holder}, uid {uid}" if holder else f"uid {uid}"
    problem = f"port {port} is held by another program ({who}), not by the server's process (pid {pid})"
    return ("mixed" if len(foreign) < len(found) else "foreign"), problem


def start_time(pid):
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def exited(spawner, pid):
    """How the server's process ended ("exited with code N", "is gone"), or None while it runs."""
    proc = getattr(spawner, "proc", None)
    if proc is not None and proc.pid == pid:
        code = proc.poll()
        return None if code is None else f"exited with code {code}"
    return "is gone" if start_time(pid) is None else None
