"""A private PostgreSQL cluster for one test: its own data folder, port and socket folder, crashable.

The machine's shared PostgreSQL (5432) serves every other test at once, so a test
that kills the database server runs its own: `initdb` (trust authentication,
`fsync=on`, so that a crash is recovered from the WAL as in production) into a
temporary folder, a port reserved outside the ephemeral range (tests/ports.py),
its unix socket in the folder. PostgreSQL refuses to run as root: run as root,
the cluster's folder belongs to the `postgres` OS user and `initdb` and the
server run as it (subprocess's `user=`). The postmaster is this process's child,
not pg_ctl's daemon: a daemon SIGKILLed is reparented to PID 1, which here may
leave it a zombie, and PostgreSQL takes a zombie's pid in `postmaster.pid` for a
server still running. `stop()` is a clean stop; `crash()` SIGKILLs the postmaster (its pid is the first
line of `postmaster.pid`), as the OOM killer would, and waits until its children
have gone too; `start()` then brings it back on the same folder and port, and
PostgreSQL's crash recovery replays the WAL. `unavailable_reason()` says why a
cluster cannot run here (no binaries, no `postgres` user to switch to), for a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.ports import reserved_ports
from tests.waiting import PROCESS_START_S, wait_until

SERVER_USER = "postgres"
# Small shared memory: the cluster starts in a fraction of a second; the default connections for the pools
# of the stack's four database processes and the test's own.
SETTINGS = {"fsync": "on", "max_connections": "100", "shared_buffers": "16MB", "listen_addresses": "127.0.0.1"}
# A postmaster's children notice its death within a latch wait (PostmasterIsAlive): well under a second.
CHILDREN_EXIT_S = 10.0


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (`/usr/lib/postgresql/<major>/bin`), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(initdb: str) -> tuple[int, ...]:
    version = Path(initdb).parent.parent.name  # "15", or "9.6" of old releases
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def unavailable_reason() -> str | None:
    """Why a private cluster cannot run here, or None when it can."""
    if binaries() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)"
    if os.geteuid() != 0:
        return None  # an ordinary user runs the server as itself
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as (it refuses root)"
    return None


class Cluster:
    """initdb'd at construction; `start`, `crash` or `stop`, `start` again, `close` (stops it and removes its folder)."""

    def __init__(self) -> None:
        bin_folder = binaries()
        assert bin_folder is not None, unavailable_reason()
        self.bin = bin_folder
        # Not under pytest's tmp_path: /tmp/pytest-of-root is root's alone, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="tradestream-pg-"))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self._reservation = reserved_ports(1)
        self.port = self._reservation.ports[0]
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
                          "env": {**os.environ, "HOME": user.pw_dir, "USER": SERVER_USER, "LOGNAME": SERVER_USER}}
        self.server: subprocess.Popen[bytes] | None = None
        try:
            done = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SERVER_USER, "--auth=trust",
                                   "--no-sync", "-E", "UTF8"], capture_output=True, text=True, cwd=self.folder,
                                  timeout=60, **self._user)
            if done.returncode != 0:
                raise AssertionError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database, over TCP as the stack's processes connect."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server (after a crash: crash recovery first) and wait until it accepts connections."""
        assert self.server is None or self.server.poll() is not None, "the server runs already"
        settings = [arg for name, value in SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        command = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.folder), *settings]
        with open(self.log, "ab") as log:
            self.server = subprocess.Popen(command, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           **self._user)
        wait_until(self.ready, timeout=PROCESS_START_S, what=f"PostgreSQL on port {self.port} to accept connections",
                   poll=0.05)

    def ready(self) -> bool:
        """pg_isready over TCP: the server accepts connections, not only runs; fails the wait if it exited."""
        if self.server is not None and self.server.poll() is not None:
            raise AssertionError(f"PostgreSQL exited {self.server.returncode}:\n{self.server_log()[-3000:]}")
        command = [str(self.bin / "pg_isready"), "-q", "-U", SERVER_USER, "-h", "127.0.0.1", "-p", str(self.port), "-d", "postgres"]
        return subprocess.run(command, cwd=self.folder, timeout=30).returncode == 0

    def crash(self) -> None:
        """SIGKILL the postmaster, then wait until each of its children has exited too (they notice its death)."""
        assert self.server is not None
        pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        assert pid == self.server.pid, (pid, self.server.pid)
        children = _children(pid)
        self.server.send_signal(signal.SIGKILL)
        self.server.wait()
        try:
            wait_until(lambda: not any(map(_alive, children)), timeout=CHILDREN_EXIT_S,
                       what="the postmaster's children to exit", poll=0.02)
        except AssertionError:
            for child in filter(_alive, children):  # one that did not notice: as if the machine died with it
                os.kill(child, signal.SIGKILL)
            wait_until(lambda: not any(map(_alive, children)), timeout=CHILDREN_EXIT_S, what="the children killed")

    def stop(self) -> None:
        """A clean stop (SIGINT, PostgreSQL's fast shutdown: sessions ended, a checkpoint), as an operator's or a reboot's."""
        assert self.server is not None and self.server.poll() is None, "the server does not run"
        self.server.send_signal(signal.SIGINT)
        self.server.wait(timeout=30)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        """Stop the server (SIGQUIT, immediate: a test's end needs no checkpoint), remove its folder, free the port."""
        try:
            if self.server is not None and self.server.poll() is None:
                self.server.send_signal(signal.SIGQUIT)
                try:
                    self.server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.server.kill()
                    self.server.wait()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._reservation.close()


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (the postmaster's backends and auxiliary processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone: it no longer holds shared memory or sockets)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
