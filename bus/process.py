"""What every tradestream `main` does first: settings, logging, signals.

Settings come from flags, then `TRADESTREAM_<FLAG>` environment variables, then
defaults (a flag wins). `SettingsParser` reads the environment only here, in
`main`; everything below receives a frozen config dataclass.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "TRADESTREAM_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def env_name(flag: str) -> str:
    """`--client-buffer` → `TRADESTREAM_CLIENT_BUFFER`."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


class SettingsParser(argparse.ArgumentParser):
    """An ArgumentParser whose settings also read `TRADESTREAM_*` environment variables."""

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.environ = os.environ if environ is None else environ

    def add_setting(self, flag: str, *, default: Any, help: str, **kwargs: Any) -> None:
        """A `--flag VALUE` option whose default may come from the environment."""
        name = env_name(flag)
        raw = self.environ.get(name)
        if raw is not None:
            # argparse converts string defaults with `type`, so a bad value exits 2 like a bad flag;
            # it never checks a default against `choices`, so that is done here.
            default = raw
            choices = kwargs.get("choices")
            if choices is not None and kwargs.get("type", str)(raw) not in choices:
                self.error(f"{name}={raw!r}: expected one of {', '.join(map(str, choices))}")
        self.add_argument(flag, default=default, help=f"{help} (env {name})", **kwargs)

    def add_switch(self, flag: str, *, help: str) -> None:
        """An on/off `--flag`, also set by `TRADESTREAM_<FLAG>=1|true|yes|on`."""
        name = env_name(flag)
        raw = self.environ.get(name, "").strip().lower()
        if raw not in _TRUE | _FALSE:
            self.error(f"{name}={raw!r}: expected one of 1, true, yes, on, 0, false, no, off")
        self.add_argument(flag, action="store_true", default=raw in _TRUE, help=f"{help} (env {name})")

    def add_logging(self) -> None:
        """The `--log-level` setting every process has."""
        self.add_setting(
            "--log-level",
            default="INFO",
            type=str.upper,
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="least severe log level written to stderr",
        )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError(text)
    return value


def configure_logging(process_name: str, level: str = "INFO") -> None:
    """One line per record on stderr, naming the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {process_name}[%(process)d] %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def stop_on_signals(stop: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Call `stop` on SIGTERM or SIGINT; from the event loop when one is given."""
    for signum in STOP_SIGNALS:
        if loop is not None:
            loop.add_signal_handler(signum, stop)
        else:
            signal.signal(signum, lambda _signum, _frame: stop())
