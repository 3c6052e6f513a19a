"""What every tradestream `main` does first: settings, logging, signals.

A process's settings are declared once, as the fields of its frozen config
dataclass, each made with `setting()` (help, value kind, shown default):

    port: int = setting(8080, kind=kinds.tcp_port, help="HTTP port (0: any free port)")

`SettingsParser(Config, ...)` derives the rest from those fields: the flag
`--port`, the variable `TRADESTREAM_PORT` (CONTRACT section 1), the `--help`
line naming both, and the conversion. A bool field is an on/off switch. A
value comes from its flag, else its variable, else the field's default;
a bad one exits 2 with one line, `--port: expected an integer 0..65535, got
'abc'` (or `TRADESTREAM_PORT: ...`). Every parser also has `--version` and
`--log-level`. The kinds of values are in bus/kinds.py. The environment is
read only here, in `main`; everything below receives the frozen config.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from bus import kinds

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
C = TypeVar("C", bound="DataclassInstance")

ENV_PREFIX = "TRADESTREAM_"
PACKAGE = "tradestream"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_SETTING = "tradestream.setting"  # the key of a field's metadata that makes it a setting
_UNSET: Any = object()  # an argparse default that says "the flag was not given"


def env_name(flag: str) -> str:
    """`--client-buffer` → `TRADESTREAM_CLIENT_BUFFER`."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def flag_name(field_name: str) -> str:
    """`client_buffer` → `--client-buffer`."""
    return "--" + field_name.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    """The metadata that makes a config field a setting."""

    help: str
    kind: Callable[[str], Any]
    shown: str | None  # the default as --help shows it; None: the field's default
    aliases: tuple[str, ...] = ()  # further flags, e.g. "--journal"


def setting(
    default: T, *, help: str, kind: Callable[[str], T] | None = None, shown: str | None = None, aliases: tuple[str, ...] = ()
) -> T:
    """A config field that is a setting: a flag, a TRADESTREAM_* variable and a --help line.

    `kind` may be left out for text (a str default) and switches (a bool default).
    `aliases` are further flags of the same setting (an older name); its variable comes from the field alone.
    """
    convert: Callable[[str], Any]
    if kind is not None:
        convert = kind
    elif isinstance(default, bool):
        convert = kinds.switch_word
    elif isinstance(default, str):
        convert = kinds.text
    else:
        raise TypeError(f"a setting with default {default!r} needs a kind")
    field: T = dataclasses.field(default=default, metadata={_SETTING: Setting(help, convert, shown, aliases)})
    return field


def required_setting(*, help: str, kind: Callable[[str], T], shown: str) -> T:
    """A setting without a default: parse_config supplies one when neither flag nor variable is set.

    mypy takes the field for one with a default; the dataclass itself requires it.
    """
    field: T = dataclasses.field(metadata={_SETTING: Setting(help, kind, shown)})
    return field


def metrics_port_setting() -> int | None:
    """The `metrics_port` setting of a process whose only other sockets are ZeroMQ's (orders, positions).

    Off by default (no listener); 0 is any free port, logged in the process's start line.
    """
    port: int | None = setting(
        None, kind=kinds.optional_port, shown="off", help="HTTP port of GET /metrics (0: any free port; off: no listener)"
    )
    return port


_LOG_LEVEL = Setting("least severe log level written to stderr", kinds.log_level, None)


@dataclass(frozen=True)
class _Declared:
    name: str
    default: Any
    setting: Setting

    @property
    def switch(self) -> bool:
        return isinstance(self.default, bool)


def declared_settings(config_type: type[DataclassInstance]) -> list[_Declared]:
    """The settings of a config dataclass, in field order, then --log-level."""
    found = [
        _Declared(f.name, f.default, f.metadata[_SETTING])
        for f in dataclasses.fields(config_type)
        if _SETTING in f.metadata
    ]
    return [*found, _Declared("log_level", "INFO", _LOG_LEVEL)]


def package_version() -> str:
    """The installed package's version (setup.cfg)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `prog: error: --flag: reason` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message.removeprefix('argument ')}\n")


class SettingsParser(OneLineParser, Generic[C]):
    """The parser of one config dataclass's settings (see the module docstring)."""

    def __init__(
        self, config_type: type[C], *, prog: str, description: str, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(prog=prog, description=description, **kwargs)
        self.config_type = config_type
        self.environ = os.environ if environ is None else environ
        self.settings = declared_settings(config_type)
        self.add_argument("--version", action="version", version=f"{prog} {package_version()}")
        for declared in self.settings:
            self._add(declared)

    def _add(self, declared: _Declared) -> None:
        flag, setting = flag_name(declared.name), declared.setting
        shown = setting.shown or _shown_default(declared.default)
        help = f"{setting.help} (env {env_name(flag)}; default {shown})".replace("%", "%%")
        flags = (flag, *setting.aliases)
        if declared.switch:
            self.add_argument(*flags, dest=declared.name, action="store_true", default=_UNSET, help=help)
        else:
            metavar = getattr(setting.kind, "metavar", None)
            self.add_argument(*flags, dest=declared.name, default=_UNSET, type=setting.kind, metavar=metavar, help=help)

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """Each setting's value from its flag, else its variable, else its default.

        A setting without a default is left out when neither is given; `log_level`
        is included only when the config declares it.
        """
        names = {f.name for f in dataclasses.fields(self.config_type)}
        values: dict[str, Any] = {}
        for declared in self.settings:
            value = self._value(declared, getattr(args, declared.name))
            if value is not _UNSET and declared.name in names:
                values[declared.name] = value
        return values

    def _value(self, declared: _Declared, given: Any) -> Any:
        if given is not _UNSET:
            return given
        variable = env_name(declared.name)
        raw = self.environ.get(variable)
        if raw is None:
            return _UNSET if declared.default is dataclasses.MISSING else declared.default
        try:
            return declared.setting.kind(raw)
        except argparse.ArgumentTypeError as exc:
            self.error(f"{variable}: {exc}")

    def parse(self, argv: Sequence[str] | None) -> tuple[C, str]:
        """The config and the log level of `argv` and the environment."""
        args = self.parse_args(argv)
        return self.config_type(**self.values(args)), self.log_level(args)

    def log_level(self, args: argparse.Namespace) -> str:
        """The --log-level flag, else TRADESTREAM_LOG_LEVEL, else INFO."""
        level: str = self._value(self.settings[-1], args.log_level)
        return level


def _shown_default(default: Any) -> str:
    if default is None or default == "":
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


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
    # Alembic, imported only to migrate (store/revisions.py), logs each plugin as it loads and each step at
    # INFO; a process that migrates says one summary line of its own instead (store/migrate.py). DEBUG shows all.
    logging.getLogger("alembic").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


def exit_on_stop_signals_while_starting() -> None:
    """Until `stop_on_signals` takes over, a SIGTERM or SIGINT ends the process at once with exit 0.

    Called in `main` as soon as the settings are read. A process still opening its
    database, migrating or binding has accepted nothing, so leaving right away is a
    clean stop; without this a stop during start-up (a Ctrl-C of `make run` just after
    its banner, on a busy machine) killed it by the signal's default action, which
    supervisord reports as `terminated by SIGTERM`. An interrupted migration rolls
    back: it is one transaction.
    """
    def leave(_signum: int, _frame: object) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        raise SystemExit(0)

    for signum in STOP_SIGNALS:
        signal.signal(signum, leave)


def stop_on_signals(stop: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Call `stop` once, on the first SIGTERM or SIGINT; from the event loop when one is given.

    Every later stop signal is ignored until the process has exited: under `make run`
    a Ctrl-C reaches every program and supervisord then sends its SIGTERM, and that
    second request must not kill, by the signal's default action, a process already
    finishing its shutdown (its event loop closed, or the interpreter finalizing). A
    shutdown that hangs still ends: supervisord sends SIGKILL after stopwaitsecs. Not
    `loop.add_signal_handler`: closing the loop puts SIG_DFL back, and the
    interpreter does the same to a Python handler as it finalizes; SIG_IGN stays.
    """
    def on_signal(_signum: int, _frame: object) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if loop is None:
            stop()
            return
        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop is closed: the process is already on its way out
            pass

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    if not isinstance(sys.unraisablehook, _QuietStopSignalRaces):
        sys.unraisablehook = _QuietStopSignalRaces(sys.unraisablehook)


class _QuietStopSignalRaces:
    """An unraisable-exception hook that drops CPython's note on a stop signal set to SIG_IGN while it was pending.

    A SIGTERM that lands with the SIGINT (Ctrl-C of make run, then supervisord; or a
    loaded machine that runs the process late) is pending when `on_signal` ignores
    both; CPython then writes `OSError: Signal 15 ignored due to race condition` with
    a traceback to stderr, the process's log. Ignoring it was the intent. Anything
    else goes to the previous hook.
    """

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, OSError) and str(exc) in _RACE_NOTES:
            return
        self.previous(unraisable)


_RACE_NOTES = frozenset(f"Signal {int(signum)} ignored due to race condition" for signum in STOP_SIGNALS)
