"""CPU time and resident memory of a process, read from /proc (Linux only)."""

from __future__ import annotations

import os
import time
from typing import NamedTuple

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuSample(NamedTuple):
    """A process's CPU time (user + system) in seconds, and the wall clock when read."""

    cpu_s: float
    wall_s: float


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        raw = stat.read()
    # The command name may contain spaces; fields after the closing paren are positional.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of `pid` were runnable but waited for a CPU (/proc/<pid>/schedstat, its main thread).

    On a machine shared with other work this says how much of a latency was the
    scheduler's: the process wanted to run and another one had the core.
    """
    with open(f"/proc/{pid}/schedstat", "rb") as stat:
        return int(stat.read().split()[1]) / 1e9


def sample_cpu(pid: int) -> CpuSample:
    """CPU seconds of `pid` with the monotonic time of the reading."""
    return CpuSample(cpu_seconds(pid), time.monotonic())


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def autogroup_nice(pid: int) -> int | None:
    """The nice value of `pid`'s scheduler autogroup (its session's CPU share), None without autogroups.

    Some kernels and containers have the file but leave it empty or unreadable: that is "no autogroups" too.
    """
    try:
        with open(f"/proc/{pid}/autogroup", "rb") as group:
            return parse_autogroup(group.read())
    except OSError:
        return None


def parse_autogroup(text: bytes) -> int | None:
    """The nice value in a /proc/<pid>/autogroup line (`/autogroup-85 nice 0`), None when there is none."""
    fields = text.split()
    if len(fields) != 3 or fields[1] != b"nice":
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def set_priority(pid: int, nice: int) -> None:
    """Give `pid` and its autogroup the nice value `nice` (negative: ahead of the machine's other work).

    With autogroups (Linux's default for desktops and shells) each session shares
    the CPU equally whatever its processes' nice values, so the group is set too.
    """
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    if autogroup_nice(pid) is not None:
        with open(f"/proc/{pid}/autogroup", "w") as group:
            group.write(str(nice))


def pin(pid: int, cores: set[int]) -> None:
    """Restrict `pid` (0 = this process) to `cores`, when the machine has them."""
    usable = cores & set(range(os.cpu_count() or 1))
    if usable:
        os.sched_setaffinity(pid, usable)
