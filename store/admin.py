"""tradestream-admin: set up and migrate the database, administer users, accounts and strategies.

Global settings go before the subcommand (or in TRADESTREAM_* variables), `--json`
before or after it. Errors print one line on stderr and exit 1; bad flags exit 2. Actions
that end streams PUSH a control message to the broker's ingress; the socket is
opened only when there is a message, and closing it waits at most CLOSE_LINGER_MS.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import zmq
from sqlalchemy.exc import SQLAlchemyError

from bus import endpoints, kinds, security
from bus.curvekeys import BusKeys, BusKeysError
from bus.errors import BusError, BusUnavailable
from bus.events import ControlMessage
from bus.process import SettingsParser, configure_logging, setting
from bus.publisher import Publisher
from bus.security import bus_keys_setting
from store.db import DEFAULT_DATABASE_URL, first_line, make_session_factory, open_database, sqlalchemy_url
from store.errors import StoreError
from store.subcommands import Handler, Outcome, SchemaHandler, add_commands

PROG = "tradestream-admin"
# A down broker must not hang the command: queued control messages get this long.
CLOSE_LINGER_MS = 1500


@dataclass(frozen=True)
class AdminConfig:
    """The global settings of one run (flags before the subcommand, or TRADESTREAM_* variables)."""

    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="SQLAlchemy URL")
    ingress: str = setting(
        endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker ingress (PULL) where control messages are pushed"
    )
    bus_keys: str = bus_keys_setting()
    log_level: str = "INFO"  # the --log-level every process has


class ControlPublisher:
    """Publishes control messages, connecting to the ingress only for the first one."""

    def __init__(self, endpoint: str, keys: BusKeys | None = None) -> None:
        self.endpoint, self.keys = endpoint, keys
        self._context: zmq.Context[Any] | None = None
        self._publisher: Publisher | None = None

    def __call__(self, message: ControlMessage) -> None:
        if self._publisher is None:
            self._context = zmq.Context()
            if self.keys is not None:
                security.install(self._context, self.keys)
            try:
                self._publisher = Publisher(
                    self.endpoint, context=self._context, linger_ms=CLOSE_LINGER_MS
                )
            except zmq.ZMQError as exc:
                raise BusUnavailable(f"cannot connect to {self.endpoint}: {exc}") from None
        self._publisher.publish(message)

    def close(self) -> None:
        """Let queued messages reach the broker for up to CLOSE_LINGER_MS, then let go."""
        if self._publisher is not None:
            self._publisher.close()
        if self._context is not None:
            security.uninstall(self._context)
            self._context.destroy(linger=0)  # only a socket that failed to connect is left


def build_parser(environ: Mapping[str, str] | None = None) -> SettingsParser[AdminConfig]:
    """The parser of every flag and subcommand; settings also read TRADESTREAM_* variables."""
    parser = SettingsParser(
        AdminConfig,
        prog=PROG,
        description="Set up the tradestream database and administer users, accounts"
        " and strategies. Run `%(prog)s SUBCOMMAND --help` for a subcommand's options.",
        environ=environ,
    )
    add_commands(parser)
    return parser


def run(config: AdminConfig, handler: Handler | None, args: argparse.Namespace) -> Outcome:
    """A schema subcommand on the engine; any other after migrating to head, in one session."""
    schema: SchemaHandler | None = getattr(args, "schema", None)
    if schema is not None:
        engine = open_database(config.database_url, create_tables=False)
        try:
            return schema(engine, args)
        finally:
            engine.dispose()
    assert handler is not None
    # Bad keys are an error before any change, not after it.
    keys = BusKeys.load(config.bus_keys, server=False, client=True) if config.bus_keys else None
    engine = open_database(config.database_url)
    publish = ControlPublisher(config.ingress, keys)
    try:
        with make_session_factory(engine)() as session:
            return handler(session, publish, args)
    finally:
        publish.close()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand: 0 on success, 1 on an error, 2 on bad flags, 3 when db-status finds the schema behind."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = AdminConfig(**parser.values(args))
    configure_logging(PROG, config.log_level)
    try:
        without_database = getattr(args, "without_database", None)
        outcome = without_database(args) if without_database else run(config, args.handler, args)
    except BusKeysError as exc:
        print(f"{PROG}: error: bus keys: {first_line(exc)}", file=sys.stderr)
        return 1
    except BusError as exc:
        print(f"{PROG}: error: {first_line(exc)} (the change is saved)", file=sys.stderr)
        return 1
    except (StoreError, SQLAlchemyError, OSError) as exc:
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return 1
    try:
        print(orjson.dumps(outcome.data, option=orjson.OPT_INDENT_2).decode() if args.json else outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader left; one line, not a traceback (a token may be unseen)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # interpreter exit flushes nowhere
        print(f"{PROG}: error: the output's reader closed it before it was all written (the change is saved)",
              file=sys.stderr)
        return 1
    return outcome.status


if __name__ == "__main__":
    raise SystemExit(main())
