"""A command's `main(argv)` run in the test's own process, as its console script would run it.

Starting the real script costs a Python start and the imports of SQLAlchemy, ZeroMQ and the
rest, ~0.5 s of CPU a call (125 s of the suite's worker time in the admin CLI's tests alone).
Where the process is not what a test is about, `run_main` gives the same CompletedProcess from
`main` itself: the command sees only the TRADESTREAM_* variables given, works in `cwd`, writes
into captured stdout and stderr (its log lines too: `configure_logging` binds sys.stderr), and
its exit code is `main`'s return or its SystemExit's code (argparse's exit 2 and --help's 0).
Everything it changed (environment, working directory, the root logger, alembic's level, the stop
signals' handlers) is put back afterwards. Each command keeps tests that run the real console script.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

ENV_PREFIX = "TRADESTREAM_"
# Loggers whose level `bus.process.configure_logging` sets (the root, and alembic's below it).
CONFIGURED_LOGGERS = ("", "alembic")
# What `bus.process.exit_on_stop_signals_while_starting` and `stop_on_signals` set in a process's main.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with its TRADESTREAM_* variables replaced by `env`, restored afterwards."""
    saved = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    for name in saved:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)


@contextlib.contextmanager
def _signals_restored() -> Iterator[None]:
    """This process's SIGTERM and SIGINT handlers, put back."""
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """The root logger's handlers (pytest's capture among them) and the configured levels, put back."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in CONFIGURED_LOGGERS}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run_main(
    main: Callable[[list[str]], int], args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`main(args)` with only `env`'s TRADESTREAM_* variables, in `cwd`: its exit code and output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _environment(env or {}),
        contextlib.chdir(cwd),
        _logging_restored(),
        _signals_restored(),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            code: int | str | None = main(list(args))
        except SystemExit as exc:
            code = exc.code
    if isinstance(code, str):  # SystemExit("message"): printed, exit 1, as the interpreter does
        stderr.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(args, code or 0, stdout.getvalue(), stderr.getvalue())
