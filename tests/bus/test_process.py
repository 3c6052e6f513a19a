"""Settings derived from a config dataclass: flag > TRADESTREAM_* > default; bad values are one line, exit 2."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from bus import kinds
from bus.process import SettingsParser, declared_settings, env_name, flag_name, required_setting, setting

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Config:
    """A process's settings, as a module declares them."""

    client_buffer: int = setting(50, kind=kinds.positive_int, help="frames a client may fall behind")
    reuse_port: bool = setting(False, help="share the port")
    host: str = setting("127.0.0.1", help="address")
    on_error: str = setting("stop", kind=kinds.one_of("stop", "skip"), help="what a bad line does")
    port: int = setting(8080, kind=kinds.tcp_port, help="HTTP port")
    not_a_flag: float = 5.0


@dataclass(frozen=True)
class WithSecret:
    secret: str = required_setting(help="signing secret", kind=kinds.text, shown="kept in a file")
    log_level: str = "INFO"


def parse(environ: dict[str, str], argv: list[str], config_type: type[Any] = Config) -> tuple[Any, str]:
    return SettingsParser(config_type, prog="t", description="d", environ=environ).parse(argv)


def test_names_follow_the_contract() -> None:
    assert (flag_name("client_buffer"), env_name("--client-buffer")) == ("--client-buffer", "TRADESTREAM_CLIENT_BUFFER")
    declared = [d.name for d in declared_settings(Config)]
    assert declared == ["client_buffer", "reuse_port", "host", "on_error", "port", "log_level"]


def test_help_shows_every_flag_its_variable_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as helped:
        parse({"TRADESTREAM_PORT": "not even read"}, ["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert helped.value.code == 0
    for flag, variable, default in [
        ("--client-buffer", "TRADESTREAM_CLIENT_BUFFER", "default 50"),
        ("--reuse-port", "TRADESTREAM_REUSE_PORT", "default off"),
        ("--on-error {stop,skip}", "TRADESTREAM_ON_ERROR", "default stop"),
        ("--port", "TRADESTREAM_PORT", "default 8080"),
        ("--log-level {DEBUG,INFO,WARNING,ERROR}", "TRADESTREAM_LOG_LEVEL", "default INFO"),
    ]:
        assert flag in out and f"(env {variable}; {default})" in out
    assert "--not-a-flag" not in out and "--version" in out


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        parse({}, ["--version"])
    assert shown.value.code == 0
    assert capsys.readouterr().out == f"t {metadata.version('tradestream')}\n"


@pytest.mark.parametrize(
    ("environ", "argv", "expected"),
    [
        ({}, [], (50, False, "stop", 8080, "INFO")),
        ({"TRADESTREAM_CLIENT_BUFFER": "7", "TRADESTREAM_REUSE_PORT": "yes", "TRADESTREAM_LOG_LEVEL": "debug"}, [], (7, True, "stop", 8080, "DEBUG")),
        ({"TRADESTREAM_CLIENT_BUFFER": "7"}, ["--client-buffer", "9"], (9, False, "stop", 8080, "INFO")),
        ({"TRADESTREAM_REUSE_PORT": "off"}, ["--reuse-port"], (50, True, "stop", 8080, "INFO")),
        ({"TRADESTREAM_PORT": "abc"}, ["--port", "0"], (50, False, "stop", 0, "INFO")),  # a flag wins: the variable is not read
        ({"TRADESTREAM_ON_ERROR": "skip"}, ["--log-level", "error"], (50, False, "skip", 8080, "ERROR")),
    ],
)
def test_a_flag_wins_over_the_environment_which_wins_over_the_default(
    environ: dict[str, str], argv: list[str], expected: tuple[object, ...]
) -> None:
    config, log_level = parse(environ, argv)
    assert (config.client_buffer, config.reuse_port, config.on_error, config.port, log_level) == expected
    assert config.not_a_flag == 5.0


@pytest.mark.parametrize(
    ("environ", "argv", "line"),
    [
        ({}, ["--port", "abc"], "t: error: --port: expected an integer 0..65535, got 'abc'"),
        ({"TRADESTREAM_PORT": "65536"}, [], "t: error: TRADESTREAM_PORT: expected an integer 0..65535, got '65536'"),
        ({"TRADESTREAM_CLIENT_BUFFER": "many"}, [], "t: error: TRADESTREAM_CLIENT_BUFFER: expected an integer >= 1, got 'many'"),
        ({}, ["--client-buffer", "0"], "t: error: --client-buffer: expected an integer >= 1, got '0'"),
        ({"TRADESTREAM_LOG_LEVEL": "LOUD"}, [], "t: error: TRADESTREAM_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
        ({}, ["--on-error", "panic"], "t: error: --on-error: expected one of stop, skip, got 'panic'"),
        ({"TRADESTREAM_ON_ERROR": "panic"}, [], "t: error: TRADESTREAM_ON_ERROR: expected one of stop, skip, got 'panic'"),
        ({"TRADESTREAM_REUSE_PORT": "perhaps"}, [], "t: error: TRADESTREAM_REUSE_PORT: expected one of 1, true, yes, on, 0, false, no, off, got 'perhaps'"),
        ({}, ["--no-such-flag"], "t: error: unrecognized arguments: --no-such-flag"),
        ({}, ["--port"], "t: error: --port: expected one argument"),
    ],
)
def test_bad_values_exit_2_with_one_line_naming_the_flag_or_variable(
    environ: dict[str, str], argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(environ, argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_required_setting_is_left_to_the_caller_unless_given() -> None:
    parser = SettingsParser(WithSecret, prog="t", description="d", environ={"TRADESTREAM_LOG_LEVEL": "warning"})
    assert parser.values(parser.parse_args([])) == {"log_level": "WARNING"}
    assert parser.values(parser.parse_args(["--secret", "s"])) == {"secret": "s", "log_level": "WARNING"}
    with pytest.raises(TypeError):
        WithSecret()  # type: ignore[call-arg]  # mypy takes the field for one with a default; it has none


def test_a_setting_of_a_type_that_is_not_text_needs_a_kind() -> None:
    with pytest.raises(TypeError, match="needs a kind"):
        setting(3, help="no kind")


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (kinds.positive_int, "7", 7),
        (kinds.positive_int, "0", None),
        (kinds.positive_int, "1.5", None),
        (kinds.tcp_port, "0", 0),
        (kinds.tcp_port, "65535", 65535),
        (kinds.tcp_port, "-1", None),
        (kinds.positive_float, "0.5", 0.5),
        (kinds.positive_float, "0", None),
        (kinds.positive_float, "inf", None),
        (kinds.positive_float, "nan", None),
        (kinds.non_negative_float, "0", 0.0),
        (kinds.non_negative_float, "-0.1", None),
        (kinds.switch_word, " On ", True),
        (kinds.switch_word, "", False),
        (kinds.zmq_endpoint, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
        (kinds.zmq_endpoint, "ipc:///run/tradestream/ingress", "ipc:///run/tradestream/ingress"),
        (kinds.zmq_endpoint, "127.0.0.1:5557", None),
        (kinds.log_level, "warning", "WARNING"),
        (kinds.integer, "x", None),
    ],
)
def test_kinds_accept_their_values_and_refuse_the_rest(kind: kinds.Kind[Any], text: str, value: object) -> None:
    if value is None:
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            kind(text)
        assert str(refused.value) == f"expected {kind.expected}, got {text!r}"
    else:
        assert kind(text) == value



# A process that stops on signals, then lingers in its shutdown until its stdin closes: the test
# sends the second stop signal exactly there, after the first has been handled (and the loop closed).
_STOPPING_CHILD = """
import asyncio, sys, threading
from bus.process import stop_on_signals

calls = []
if sys.argv[1] == "loop":
    async def main():
        stopped = asyncio.Event()
        stop_on_signals(lambda: (calls.append(1), stopped.set()), asyncio.get_running_loop())
        print("ready", flush=True)
        await stopped.wait()
    asyncio.run(main())
else:
    stopped = threading.Event()
    stop_on_signals(lambda: (calls.append(1), stopped.set()))
    print("ready", flush=True)
    stopped.wait()
print("stopping", flush=True)
sys.stdin.read()
print(f"stop called {len(calls)} times", flush=True)
"""


@pytest.mark.parametrize("mode", ["loop", "no-loop"])
@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_during_shutdown_neither_kills_the_process_nor_stops_it_twice(
    mode: str, first: signal.Signals
) -> None:
    """Under `make run` a Ctrl-C reaches every program, then supervisord sends SIGTERM to each."""
    with subprocess.Popen([sys.executable, "-c", _STOPPING_CHILD, mode], cwd=REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline() == "ready\n"
            child.send_signal(first)
            assert child.stdout.readline() == "stopping\n"
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGINT)
            child.stdin.close()
            assert child.stdout.read() == "stop called 1 times\n"
            assert child.wait(timeout=10) == 0
        finally:
            child.kill()


# Both stop signals pending at once (blocked, sent, unblocked): CPython runs the SIGINT handler, which
# ignores both, then finds SIGTERM ignored and would write "Signal 15 ignored due to race condition".
_TWO_AT_ONCE_CHILD = """
import os, signal, threading
from bus.process import stop_on_signals

stopped = threading.Event()
stop_on_signals(stopped.set)
both = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, both)
os.kill(os.getpid(), signal.SIGINT)
os.kill(os.getpid(), signal.SIGTERM)
signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
assert stopped.wait(10)
print("stopped", flush=True)
"""


def test_a_sigterm_pending_with_the_sigint_is_ignored_without_a_traceback() -> None:
    """A loaded machine runs a process late: Ctrl-C's SIGINT and supervisord's SIGTERM are then handled together."""
    child = subprocess.run([sys.executable, "-c", _TWO_AT_ONCE_CHILD], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (child.returncode, child.stdout, child.stderr) == (0, "stopped\n", "")
