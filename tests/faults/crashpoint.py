"""Run a tradestream console script that SIGKILLs itself at one exact point: before or after the N-th call of a function.

    CRASHPOINT="after producers.relay:Relay.offer 3 nonempty" python tests/faults/crashpoint.py tradestream-orders ARGS...

The launcher (run as a script, test code only) wraps the named function in the
real process, then runs the console script's `main(ARGS)`. On the N-th call it
writes one line to stderr (`crashpoint: SIGKILL ...`, the proof that this point
was reached) and sends itself SIGKILL, before the call or once it returned (or
raised): a real process killed by a real signal, whatever thread it is in.

- `TARGET` is `module:qualname` as it is looked up when called: a module function
  called as `outbox.mark_sent(...)` is `producers.outbox:mark_sent`, a method is
  `producers.relay:Relay.offer`, a function imported by name into another module
  is named in that module (`producers.webhook:send_json`).
- `nonempty` counts only the calls whose first argument (after `self`) is truthy:
  `Relay.offer([])` (a commit that wrote no event) is not a hand-off.

Nothing in the product knows about it. `CrashPoint` is the test side's name for
one point (parsed back here from the environment).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENV = "CRASHPOINT"
LAUNCHER = Path(__file__)
WHEN = ("before", "after")


@dataclass(frozen=True)
class CrashPoint:
    """SIGKILL `process` `when` ("before"/"after") its `nth` call of `target`."""

    process: str
    when: str
    target: str
    nth: int = 1
    nonempty: bool = False

    def __post_init__(self) -> None:
        if self.when not in WHEN or ":" not in self.target or self.nth < 1:
            raise ValueError(f"not a crash point: {self}")

    @property
    def spec(self) -> str:
        """The value of the CRASHPOINT variable."""
        return f"{self.when} {self.target} {self.nth}" + (" nonempty" if self.nonempty else "")

    @property
    def line(self) -> str:
        """What the process writes to stderr as it kills itself."""
        return f"crashpoint: SIGKILL {self.spec}"

    @classmethod
    def parse(cls, process: str, spec: str) -> CrashPoint:
        when, target, nth, *flags = spec.split()
        if flags not in ([], ["nonempty"]):
            raise ValueError(f"{ENV}: unknown flags {flags}")
        return cls(process, when, target, int(nth), bool(flags))


def _die(point: CrashPoint) -> None:
    os.write(2, f"{point.line}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: CrashPoint) -> None:
    """Replace the target with a wrapper that counts its calls and kills the process at the chosen one."""
    module_name, qualname = point.target.split(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    raw = inspect.getattr_static(owner, name)
    static = isinstance(raw, staticmethod)
    function: Callable[..., Any] = raw.__func__ if static else raw
    skip = 1 if inspect.isclass(owner) and not static else 0  # `self` is not the argument `nonempty` looks at
    lock = threading.Lock()
    calls = 0

    def due(args: tuple[Any, ...]) -> bool:
        nonlocal calls
        if point.nonempty and not (len(args) > skip and args[skip]):
            return False
        with lock:
            calls += 1
            return calls == point.nth

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        fire = due(args)
        if fire and point.when == "before":
            _die(point)
        try:
            return function(*args, **kwargs)
        finally:
            if fire:
                _die(point)

    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def main(argv: list[str]) -> int:
    """`crashpoint.py CONSOLE_SCRIPT ARGS...` with CRASHPOINT set: run the script's main, armed."""
    script, *args = argv
    (entry,) = entry_points(group="console_scripts", name=script)
    install(CrashPoint.parse(script, os.environ[ENV]))
    result: int = entry.load()(args)
    return result


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == LAUNCHER.parent.resolve():
        del sys.path[0]  # this folder's modules are the tests', never the product's
    raise SystemExit(main(sys.argv[1:]))
