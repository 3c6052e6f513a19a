"""The ipc:// folder rule: made 0700 by the binder, refused when another user could open it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from bus import codec, protocol
from bus.ipcdir import folder_problem
from tests.bus.conftest import BrokerProcess

ME, OTHER = 1000, 1001
DIR = stat.S_IFDIR
# (mode, owner, the problem's words or None)
FOLDERS = [
    (DIR | 0o700, ME, None),
    (DIR | 0o750, ME, "mode 0750"),
    (DIR | 0o705, ME, "mode 0705"),
    (DIR | 0o777, ME, "mode 0777"),
    (DIR | 0o700, OTHER, "belongs to user id 1001"),
    (stat.S_IFREG | 0o600, ME, "is not a folder"),
]


@pytest.mark.parametrize(("mode", "owner", "words"), FOLDERS)
def test_only_a_0700_folder_of_this_user_is_accepted(mode: int, owner: int, words: str | None) -> None:
    problem = folder_problem(mode, owner, ME)
    assert (problem is None) if words is None else (problem is not None and words in problem)


def _ipc(folder: Path) -> list[str]:
    return [arg for name in ("ingress", "publish", "replay", "ack-ingress") for arg in (f"--{name}", f"ipc://{folder}/{name}")]


def test_the_broker_makes_its_ipc_folder_0700_and_serves_there(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "bus"
    broker = BrokerProcess(tmp_path)
    broker.endpoints = {name: f"ipc://{folder}/{name}" for name in broker.endpoints}
    broker.start()
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        ctx: zmq.Context[object] = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVTIMEO, 5000)
        dealer.connect(broker.endpoints["replay"])
        dealer.send(protocol.STATS)
        status, payload = dealer.recv_multipart()
        assert status == protocol.STATS and codec.unpack_map(payload)["received"] == 0
        dealer.close(linger=0)
        ctx.term()
        second = subprocess.run([sys.executable, "-m", "bus.broker", *_ipc(folder)], capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and len(second.stderr.strip().splitlines()) == 1
        assert "in use by another process" in second.stderr
    finally:
        assert broker.terminate() == 0


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_folder_others_can_open_is_refused_in_one_line(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "bus"
    folder.mkdir()
    os.chmod(folder, mode)
    done = subprocess.run([sys.executable, "-m", "bus.broker", *_ipc(folder)], capture_output=True, text=True, timeout=30)
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (1, 1), done.stderr
    assert f"has mode {mode:04o}" in lines[0] and str(folder) in lines[0]
    assert not any(folder.iterdir())  # nothing was bound there
