"""The folder of `ipc://` endpoints: only the service's user may open it (CONTRACT section 1).

On one host the bus defaults to unix sockets in `var/bus/`. A unix socket is
as open as the folders on its path, so the folder that holds them is created
0700 by whoever binds first, and a process refuses to start, with one line,
when the folder exists but another user owns it or its mode lets a group or
others in: any local account could otherwise publish into a user's stream or
read everybody's. `folder_problem` is the rule (pure, table-tested);
`prepare` applies it to an endpoint. tcp:// endpoints pass untouched.
"""

from __future__ import annotations

import os
import socket
import stat

from bus.errors import BusError

IPC = "ipc://"
FOLDER_MODE = 0o700


class BusFolderError(BusError):
    """The folder of an ipc:// endpoint is open to other users, or cannot be made."""


def ipc_folder(endpoint: str) -> str | None:
    """The folder holding an `ipc://` endpoint's socket (`.` for a bare name); None for another transport."""
    if not endpoint.startswith(IPC):
        return None
    return os.path.dirname(endpoint[len(IPC):]) or "."


def folder_problem(mode: int, owner: int, user: int) -> str | None:
    """What is wrong with a folder of this mode and owner for `user`'s sockets; None: nothing."""
    if not stat.S_ISDIR(mode):
        return "is not a folder"
    if owner != user:
        return f"belongs to user id {owner}, not to this process's user ({user})"
    if stat.S_IMODE(mode) & 0o077:
        return f"has mode {stat.S_IMODE(mode):04o}: other users could reach its sockets (expected 0700)"
    return None


def prepare(endpoint: str, *, bind: bool) -> None:
    """Check the folder of an ipc:// endpoint, creating it 0700 when binding; BusFolderError says why not.

    A connecting process only checks a folder that exists: the binder makes it,
    and libzmq waits for the socket to appear.
    """
    folder = ipc_folder(endpoint)
    if folder is None:
        return
    if bind:
        try:
            os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)
        except OSError as exc:
            raise BusFolderError(f"{endpoint}: cannot create its folder {folder}: {exc.strerror}") from None
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BusFolderError(f"{endpoint}: cannot read its folder {folder}: {exc.strerror}") from None
    problem = folder_problem(info.st_mode, info.st_uid, os.geteuid())
    if problem is not None:
        raise BusFolderError(f"{endpoint}: its folder {os.path.abspath(folder)} {problem}")
    if bind and _answers(endpoint[len(IPC):]):
        # libzmq would unlink a live socket's file and take its place: say so, as a taken TCP port would.
        raise BusFolderError(f"{endpoint}: in use by another process")


def _answers(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False  # a file left by a process that died: libzmq replaces it
    return True
