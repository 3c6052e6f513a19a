"""The hostile benches' targets: a broker and a database with credentials, a streamer or webhook process, one request.

    with hostile_stack() as (stack, workdir):
        proc, port, log_path = start_target("webhook", stack, workdir, orders=..., root=..., extra=[...])

`root` is the tree whose code the process runs (default: this one; an extract of main
gives "before" figures, as bench.busflood does), `fd_limit` its RLIMIT_NOFILE.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.stack import BIN, ROOT, Stack, child_env, create_credentials, free_port, start_broker

READY_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0


def _limited(fd_limit: int) -> Any:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    return set_limit


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = PROBE_TIMEOUT_S) -> int:
    """The status of one request on a new connection; 0 when it does not answer in time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the process at `port` answers /healthz 200; SystemExit with its log's tail if it does not in time."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if request(port, "GET", "/healthz") == 200:
            return
        time.sleep(0.05)  # polling pace while the process starts
    raise SystemExit(f"target not ready; log tail:\n{log_path.read_text(errors='replace')[-2000:]}")


def start_target(target: str, stack: Stack, workdir: Path, fd_limit: int = 4096, orders: str = "", root: Path = ROOT,
                 extra: tuple[str, ...] = (), env: Mapping[str, str] | None = None
                 ) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start `target` (streamer or webhook) of `root` on a free port and wait until /healthz answers; `env` added to its
    environment (a variable an older `root` does not know is ignored, where a flag would be refused)."""
    port = free_port()
    common = ["--database-url", stack.database_url, "--host", "127.0.0.1", "--port", str(port)]
    if target == "streamer":
        args = [str(BIN / "tradestream-streamer"), *common, "--publish", stack.publish, "--replay", stack.replay,
                "--ingress", stack.ingress, "--secret", secrets.token_hex(16)]
    else:
        args = [str(BIN / "tradestream-webhook"), *common, "--orders", orders or f"tcp://127.0.0.1:{free_port()}"]
    args += extra
    log_path = workdir / f"{target}-{len(stack.procs)}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stderr=log, stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True,
                                env={**child_env(root), **(env or {})}, preexec_fn=_limited(fd_limit))
    stack.procs.append(proc)
    wait_healthy(port, proc, log_path)
    return proc, port, log_path


@contextlib.contextmanager
def hostile_stack() -> Iterator[tuple[Stack, Path]]:
    """A broker and a SQLite database with one user owning one strategy; every process stopped at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="tradestream-hostile-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _, match = start_broker(workdir, 100, procs)
        stack = Stack(ingress=match[1], publish=match[2], replay=match[3], database_url=f"sqlite:///{workdir / 'h.db'}",
                      workdir=workdir, procs=procs)
        stack.keys, stack.tokens, _ = create_credentials(stack.database_url, 1, 1, 20)
        yield stack, workdir
    finally:
        Stack("", "", "", procs=procs).stop()


