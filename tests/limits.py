"""Commands run under a lowered RLIMIT_NOFILE, to exhaust a process's descriptors cheaply."""

from __future__ import annotations

import sys

# An exec wrapper rather than Popen(preexec_fn=...): preexec_fn may deadlock in a parent with threads.
_WRAPPER = "import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"


def fd_limited(command: list[str], fd_limit: int) -> list[str]:
    """`command` (its first item an absolute path) run with at most `fd_limit` open descriptors."""
    return [sys.executable, "-c", _WRAPPER, str(fd_limit), *command]
