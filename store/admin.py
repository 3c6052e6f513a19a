"""tradestream-admin: set up the database and administer users, accounts and strategies.

Global settings go before the subcommand (or in TRADESTREAM_* variables), `--json`
after it. Errors print one line on stderr and exit 1; bad flags exit 2. Actions
that end streams PUSH a control message to the broker's ingress; the socket is
opened only when there is a message, and closing it waits at most CLOSE_LINGER_MS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import zmq
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bus import endpoints, kinds
from bus.errors import BusError, BusUnavailable
from bus.events import ControlMessage
from bus.process import OneLineParser, SettingsParser, configure_logging, setting
from bus.publisher import Publisher
from store import actions, rows
from store.db import DEFAULT_DATABASE_URL, first_line, make_session_factory, open_database, sqlalchemy_url
from store.errors import StoreError

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
    log_level: str = "INFO"  # the --log-level every process has


class Outcome(NamedTuple):
    """What a subcommand prints: its contract JSON, or a sentence for people."""

    data: dict[str, Any]
    text: str


Publish = actions.Publish
Handler = Callable[[Session, Publish, argparse.Namespace], Outcome]


class ControlPublisher:
    """Publishes control messages, connecting to the ingress only for the first one."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._context: zmq.Context[Any] | None = None
        self._publisher: Publisher | None = None

    def __call__(self, message: ControlMessage) -> None:
        if self._publisher is None:
            self._context = zmq.Context()
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
            self._context.destroy(linger=0)  # only a socket that failed to connect is left


def _create_user(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    user, api_token = actions.create_user(session, publish, args.name, args.password, args.admin)
    role = "admin" if user.is_admin else "user"
    text = f"Created {role} {user.username!r} (id {user.id}).\nAPI token (shown once): {api_token}"
    return Outcome(rows.user_json(user, api_token), text)


def _create_account(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    account = actions.create_account(
        session, publish, args.user, args.name, args.exchange, args.capital
    )
    text = (
        f"Created account {account.name!r} (id {account.id}) of user {args.user!r}"
        f" on {account.exchange}, capital {account.capital:g}."
    )
    return Outcome(rows.account_json(account), text)


def _create_strategy(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    strategy, token = actions.create_strategy(session, publish, args.owner, args.name, args.group)
    text = (
        f"Created strategy {strategy.name!r} (id {strategy.id}, group {strategy.group_name!r})"
        f" owned by {args.owner!r}.\nWebhook token (shown once): {token}"
    )
    return Outcome(rows.new_strategy_json(strategy, token), text)


def _link(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    actions.link(session, publish, args.strategy, args.account)
    text = f"Linked account {args.account} to strategy {args.strategy}."
    return Outcome(rows.link_json(args.strategy, args.account), text)


def _unlink(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    revoked = actions.unlink(session, publish, args.strategy, args.account)
    text = f"Unlinked account {args.account} from strategy {args.strategy}."
    if revoked is not None:
        text += f" User {revoked.user_id} lost access: their streams of it are being closed."
    return Outcome(rows.link_json(args.strategy, args.account), text)


def _deactivate(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    strategy = actions.deactivate(session, publish, args.strategy)
    text = f"Deactivated strategy {strategy.id}: its streams are being closed."
    return Outcome(rows.strategy_json(strategy), text)


def _activate(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    strategy = actions.activate(session, publish, args.strategy)
    return Outcome(rows.strategy_json(strategy), f"Activated strategy {strategy.id}.")


def _delete_strategy(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    actions.delete_strategy(session, publish, args.strategy)
    text = (
        f"Deleted strategy {args.strategy} with its links, orders and positions:"
        " its streams are being closed."
    )
    return Outcome({"strategy_id": args.strategy}, text)


def _demo(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    world = actions.demo(session, publish)
    return Outcome(world, describe_demo(world))


def describe_demo(world: Mapping[str, Any]) -> str:
    """The `demo` output for people: the logins first, then what they can use."""
    names = {user["id"]: user["username"] for user in world["users"]}
    lines = ["Demo data ready (passwords and tokens were just reset).", "", "Logins:"]
    lines += [
        f"  {u['username']:<8} password {u['password']:<14} API token {u['api_token']}"
        for u in world["users"]
    ]
    lines += ["", "Strategies (webhook: group_name + token):"]
    lines += [
        f"  id {s['id']:<3} {s['group_name']:<10} owner {names.get(s['owner_id'], '?'):<8}"
        f" token {s['webhook_token']}"
        for s in world["strategies"]
    ]
    lines += ["", "Accounts:"]
    lines += [
        f"  id {a['id']:<3} {a['name']!r} of {names.get(a['user_id'], '?')}"
        f" on {a['exchange']}, capital {a['capital']:g}"
        for a in world["accounts"]
    ]
    return "\n".join(lines)


def _command(
    commands: Any, name: str, handler: Handler | None, summary: str
) -> argparse.ArgumentParser:
    # A subcommand's options have no defaults worth showing.
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary)
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead")
    parser.set_defaults(handler=handler)
    return parser


def _strategy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", type=kinds.integer, required=True, metavar="ID", help="strategy id")


def _add_commands(parser: argparse.ArgumentParser) -> None:
    # Subcommands take arguments, not settings: plain parsers with the same one-line errors.
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND", parser_class=OneLineParser)
    _command(commands, "init-db", None, "create the missing tables (every subcommand does)")
    _command(commands, "demo", _demo, "create demo users, accounts, strategies; print logins")
    user = _command(commands, "create-user", _create_user, "create a user; print its API token")
    user.add_argument("name", metavar="NAME", help="login name (letters, digits, . _ @ -)")
    user.add_argument("--password", required=True, help="login password")
    user.add_argument("--admin", action="store_true", help="may use the admin endpoints")
    account = _command(commands, "create-account", _create_account, "create a user's account")
    account.add_argument("--user", required=True, metavar="NAME", help="owner's login name")
    account.add_argument("--name", required=True, help="account name, unique per user")
    account.add_argument("--exchange", required=True, help="exchange name, e.g. paper")
    account.add_argument("--capital", type=kinds.number, required=True, help="capital (> 0)")
    strategy = _command(
        commands, "create-strategy", _create_strategy, "create a strategy; print its webhook token"
    )
    strategy.add_argument("--owner", required=True, metavar="NAME", help="owner's login name")
    strategy.add_argument("--name", required=True, help="display name")
    strategy.add_argument("--group", required=True, help="webhook group_name, unique")
    for name, handler, summary in (
        ("link", _link, "trade a strategy on an account (its owner may then stream it)"),
        ("unlink", _unlink, "undo a link; disconnects the owner if it was their last access"),
    ):
        linking = _command(commands, name, handler, summary)
        _strategy_option(linking)
        linking.add_argument("--account", type=kinds.integer, required=True, metavar="ID", help="account id")
    for name, handler, summary in (
        ("deactivate", _deactivate, "refuse the strategy's webhooks and close its streams"),
        ("activate", _activate, "accept the strategy's webhooks and streams again"),
        ("delete-strategy", _delete_strategy, "delete a strategy, its orders and positions"),
    ):
        _strategy_option(_command(commands, name, handler, summary))


def build_parser(environ: Mapping[str, str] | None = None) -> SettingsParser[AdminConfig]:
    """The parser of every flag and subcommand; settings also read TRADESTREAM_* variables."""
    parser = SettingsParser(
        AdminConfig,
        prog=PROG,
        description="Set up the tradestream database and administer users, accounts"
        " and strategies. Run `%(prog)s SUBCOMMAND --help` for a subcommand's options.",
        environ=environ,
    )
    _add_commands(parser)
    return parser


def _init_db_outcome(url: str) -> Outcome:
    shown = make_url(url).render_as_string(hide_password=True)
    return Outcome({"database_url": shown}, f"Database ready: {shown}")


def run(config: AdminConfig, handler: Handler | None, args: argparse.Namespace) -> Outcome:
    """Create missing tables, then run the subcommand in one session."""
    engine = open_database(config.database_url)
    publish = ControlPublisher(config.ingress)
    try:
        if handler is None:
            return _init_db_outcome(config.database_url)
        with make_session_factory(engine)() as session:
            return handler(session, publish, args)
    finally:
        publish.close()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand: 0 on success, 1 on an error, 2 on bad flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = AdminConfig(**parser.values(args))
    configure_logging(PROG, config.log_level)
    try:
        outcome = run(config, args.handler, args)
    except BusError as exc:
        print(f"{PROG}: error: {first_line(exc)} (the change is saved)", file=sys.stderr)
        return 1
    except (StoreError, SQLAlchemyError, OSError) as exc:
        print(f"{PROG}: error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(outcome.data, indent=2) if args.json else outcome.text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
