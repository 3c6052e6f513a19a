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


def pin(pid: int, cores: set[int]) -> None:
    """Restrict `pid` (0 = this process) to `cores`, when the machine has them."""
    usable = cores & set(range(os.cpu_count() or 1))
    if usable:
        os.sched_setaffinity(pid, usable)
