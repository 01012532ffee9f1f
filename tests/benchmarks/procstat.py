"""CPU time and peak memory of processes, read from /proc (Linux only).

utime+stime of a process (field 14 and 15 of /proc/<pid>/stat, in clock
ticks) and VmHWM (peak resident set) of /proc/<pid>/status. A process tree
is the process and every live descendant; time spent by children that
already exited is not counted (the phases here start no short-lived ones).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str) -> tuple[int, float]:
    """(ppid, utime+stime in seconds) from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may hold spaces or
    parentheses itself, so fields are counted from the last ')'.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12])
    return ppid, ticks / CLOCK_TICKS


def parse_status_kib(text: str, key: str) -> int | None:
    """A `Key:   1234 kB` line of /proc/<pid>/status, in KiB."""
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    text = _read(PROC / str(pid) / "stat")
    return parse_stat(text)[1] if text is not None else None


def peak_rss_kib(pid: int) -> int | None:
    text = _read(PROC / str(pid) / "status")
    return parse_status_kib(text, "VmHWM") if text is not None else None


def parents() -> dict[int, int]:
    """pid -> ppid for every process visible now."""
    found: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            text = _read(entry / "stat")
            if text is not None:
                found[int(entry.name)] = parse_stat(text)[0]
    return found


def descendants(root: int, parent_of: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """utime+stime summed over the roots and all their live descendants."""
    parent_of = parents()
    seen: set[int] = set()
    total = 0.0
    for root in roots:
        for pid in descendants(root, parent_of):
            if pid not in seen:
                seen.add(pid)
                total += cpu_seconds(pid) or 0.0
    return total


def self_cpu_seconds() -> float:
    """This process's own utime+stime (all threads)."""
    times = os.times()
    return times.user + times.system


def parse_listen_inodes(text: str, port: int) -> set[int]:
    """Socket inodes in LISTEN state (st 0A) on `port`, from /proc/net/tcp or tcp6."""
    inodes: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            inodes.add(int(fields[9]))
    return inodes


def listening_pid(port: int) -> int | None:
    """The process listening on a TCP port (needs permission to read other processes' fds)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        text = _read(PROC / "net" / name)
        if text is not None:
            inodes |= parse_listen_inodes(text, port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return int(entry.name)
            except OSError:
                continue  # closed meanwhile: a busy server opens and closes fds all the time
    return None


def parse_machine_busy(text: str) -> float:
    """Busy CPU-seconds of the whole machine (all cores) from the `cpu` line of /proc/stat."""
    fields = [int(value) for value in text.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user/nice: leave fields 8 and 9 out.
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    return parse_machine_busy((PROC / "stat").read_text())
