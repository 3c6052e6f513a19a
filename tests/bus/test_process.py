"""Settings: a flag wins over TRADESTREAM_* which wins over the default; bad values exit 2."""

from __future__ import annotations

import pytest

from bus.process import SettingsParser, env_name, positive_int


def parser(environ: dict[str, str]) -> SettingsParser:
    p = SettingsParser(prog="t", environ=environ)
    p.add_setting("--client-buffer", default=50, type=positive_int, help="frames")
    p.add_switch("--reuse-port", help="share the port")
    p.add_logging()
    return p


def test_env_name_follows_the_contract() -> None:
    assert env_name("--client-buffer") == "TRADESTREAM_CLIENT_BUFFER"


@pytest.mark.parametrize(
    "environ, argv, expected",
    [
        ({}, [], (50, False, "INFO")),
        ({"TRADESTREAM_CLIENT_BUFFER": "7", "TRADESTREAM_REUSE_PORT": "yes", "TRADESTREAM_LOG_LEVEL": "debug"}, [], (7, True, "DEBUG")),
        ({"TRADESTREAM_CLIENT_BUFFER": "7"}, ["--client-buffer", "9"], (9, False, "INFO")),
    ],
)
def test_a_flag_wins_over_the_environment_which_wins_over_the_default(environ: dict[str, str], argv: list[str], expected: tuple[object, ...]) -> None:
    args = parser(environ).parse_args(argv)
    assert (args.client_buffer, args.reuse_port, args.log_level) == expected


@pytest.mark.parametrize(
    "environ, argv",
    [
        ({"TRADESTREAM_CLIENT_BUFFER": "many"}, []),
        ({"TRADESTREAM_CLIENT_BUFFER": "0"}, []),
        ({"TRADESTREAM_LOG_LEVEL": "LOUD"}, []),
        ({"TRADESTREAM_REUSE_PORT": "perhaps"}, []),
        ({}, ["--client-buffer", "-1"]),
        ({}, ["--no-such-flag"]),
    ],
)
def test_bad_values_exit_2_with_a_reason(environ: dict[str, str], argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser(environ).parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
