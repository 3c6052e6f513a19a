"""The subcommands of `tradestream-admin`: their options, and what each prints (JSON or a sentence).

Each handler runs one store action in the session `run` gives it and returns an
Outcome: the contract's JSON (CONTRACT §6, printed with `--json`) and a
sentence for people.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bus import kinds
from bus.curvekeys import SERVER, make_deployment
from bus.process import OneLineParser
from bus.roles import Role
from store import actions, demo, revisions, rows, schema_status
from store.errors import InvalidInput

# db-status's exit status when the database is not at head (1 is an error, 2 bad flags).
EXIT_BEHIND = 3


class Outcome(NamedTuple):
    """What a subcommand prints: its contract JSON, or a sentence for people; and its exit status."""

    data: dict[str, Any]
    text: str
    status: int = 0


Publish = actions.Publish
Handler = Callable[[Session, Publish, argparse.Namespace], Outcome]
# The schema's subcommands get the engine, not a session: they run before (or instead of) a migration.
SchemaHandler = Callable[[Engine, argparse.Namespace], Outcome]


def _capital(text: str) -> Decimal:
    try:
        return actions.checked_capital(kinds.positive_decimal.convert(text))
    except InvalidInput:
        raise ValueError(text) from None


# A capital the account would refuse is a bad flag value (exit 2 before any database work, CONTRACT §1, §6),
# not an action's error: `--capital 1e-25` exited 1 after migrating the database.
CAPITAL = kinds.Kind("a decimal number > 0, below 10^21, with at most 24 decimals", _capital)


def _shown_url(engine: Engine) -> str:
    return make_url(engine.url).render_as_string(hide_password=True)


def _status_json(engine: Engine, status: schema_status.Status) -> dict[str, Any]:
    return {
        "database_url": _shown_url(engine),
        "revision": status.current,
        "head": status.head,
        "legacy": status.legacy,
        "at_head": status.at_head,
    }


def _migrate(engine: Engine, args: argparse.Namespace) -> Outcome:
    from store import migrate  # Alembic (~0.2 s of CPU) only for the subcommands that migrate: store/revisions.py

    migrated = migrate.upgrade(engine, args.revision)
    data = {
        "database_url": _shown_url(engine),
        "from": migrated.before.current,
        "stamped": migrated.before.legacy,
        "revision": migrated.after,
        "head": migrated.before.head,
    }
    return Outcome(data, f"{migrated.describe()} ({data['database_url']})")


def _db_status(engine: Engine, args: argparse.Namespace) -> Outcome:
    status = schema_status.status(engine)
    return Outcome(_status_json(engine, status), status.describe(), 0 if status.at_head else EXIT_BEHIND)


def _create_user(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    user, api_token = actions.create_user(session, publish, args.name, args.password, args.admin)
    role = "admin" if user.is_admin else "user"
    text = f"Created {role} {user.username!r} (id {user.id}).\nAPI token (shown once): {api_token}"
    return Outcome(rows.user_json(user, api_token), text)


def _set_password(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    user = actions.set_password(session, publish, args.name, args.password)
    text = f"Changed the password of {user.username!r} (id {user.id}): their sessions and streams are being ended."
    return Outcome(rows.user_state_json(user), text)


def _deactivate_user(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    user = actions.deactivate_user(session, publish, args.name)
    text = f"Deactivated user {user.username!r} (id {user.id}): their sessions and streams are being ended."
    return Outcome(rows.user_state_json(user), text)


def _activate_user(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    user = actions.activate_user(session, publish, args.name)
    return Outcome(rows.user_state_json(user), f"Activated user {user.username!r} (id {user.id}).")


def _create_account(session: Session, publish: Publish, args: argparse.Namespace) -> Outcome:
    account = actions.create_account(
        session, publish, args.user, args.name, args.exchange, args.capital
    )
    text = (
        f"Created account {account.name!r} (id {account.id}) of user {args.user!r}"
        f" on {account.exchange}, capital {account.capital}."
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
    world = demo.demo(session, publish)
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
        f" on {a['exchange']}, capital {a['capital']}"
        for a in world["accounts"]
    ]
    return "\n".join(lines)


def _host_plan(text: str) -> tuple[str, frozenset[str]]:
    name, _, wanted = text.partition("=")
    # Empty entries are passed over, as parse_roles does ("publisher," is publisher); they reached Role('') in a traceback.
    roles = {role.strip() for role in wanted.split(",")} - {""}
    if not name or not roles:
        raise argparse.ArgumentTypeError(f"expected NAME=ROLE[,ROLE...], got {text!r}")
    unknown = sorted(roles - {SERVER} - {role.value for role in Role})
    if unknown:
        known = ", ".join([*(role.value for role in Role), SERVER])
        raise argparse.ArgumentTypeError(f"{text!r}: unknown role {unknown[0]!r} (known: {known})")
    return name, frozenset(roles)


def _hosts(plans: list[tuple[str, frozenset[str]]]) -> dict[str, frozenset[str]]:
    """Each host's roles; a host named twice (`--host bus=server --host bus=publisher`) has both, not the last only."""
    hosts: dict[str, frozenset[str]] = {}
    for name, roles in plans:
        hosts[name] = hosts.get(name, frozenset()) | roles
    return hosts


def bus_keys(args: argparse.Namespace) -> Outcome:
    """`bus-keys DIR --host NAME=ROLES...`: a key folder per host (bus/curvekeys.py); no database."""
    made = make_deployment(args.folder, _hosts(args.host))
    lines = [f"Bus keys in {args.folder}: copy {args.folder}/hosts/NAME to host NAME and point --bus-keys at it."]
    lines += [f"  {name}: {', '.join(files)}" for name, files in made.items()]
    return Outcome({"folder": args.folder, "hosts": made}, "\n".join(lines))


def _command(
    commands: Any, name: str, handler: Handler | None, summary: str
) -> argparse.ArgumentParser:
    # A subcommand's options have no defaults worth showing.
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary)
    # SUPPRESS: a --json given before the subcommand (add_commands) is not reset by this one's default.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON instead")
    parser.set_defaults(handler=handler)
    return parser


def _strategy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", type=kinds.integer, required=True, metavar="ID", help="strategy id")


def add_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (here or after the subcommand)")
    # Subcommands take arguments, not settings: plain parsers with the same one-line errors.
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND", parser_class=OneLineParser)
    init_db = _command(commands, "init-db", None, "migrate the schema to head (every subcommand does)")
    init_db.set_defaults(schema=_migrate, revision=revisions.HEAD)
    upgrade = _command(commands, "migrate", None, "upgrade the schema to head, or to --revision")
    upgrade.add_argument("--revision", default=revisions.HEAD, metavar="REV", help="a revision id (default: head)")
    upgrade.set_defaults(schema=_migrate)
    _command(commands, "db-status", None, f"the schema's revision and head; exit {EXIT_BEHIND} when behind").set_defaults(
        schema=_db_status
    )
    keys = _command(commands, "bus-keys", None, "make CURVE key folders for a bus across hosts (no database)")
    keys.add_argument("folder", metavar="DIR", help="the deployment's key folder (made 0700; run again to add hosts)")
    keys.add_argument(
        "--host", type=_host_plan, action="append", required=True, metavar="NAME=ROLES",
        help="a host and its roles: publisher, subscriber, control (client keys) and server (it binds bus sockets)",
    )
    keys.set_defaults(without_database=bus_keys)
    _command(commands, "demo", _demo, "create demo users, accounts, strategies; print logins")
    user = _command(commands, "create-user", _create_user, "create a user; print its API token")
    user.add_argument("name", metavar="NAME", help="login name (letters, digits, . _ @ -)")
    user.add_argument("--password", required=True, help="login password")
    user.add_argument("--admin", action="store_true", help="may use the admin endpoints")
    password = _command(commands, "set-password", _set_password, "change a user's password; ends their sessions")
    password.add_argument("name", metavar="NAME", help="login name")
    password.add_argument("--password", required=True, help="the new password")
    for name, user_handler, summary in (
        ("deactivate-user", _deactivate_user, "refuse a user's logins and API token; ends their sessions and streams"),
        ("activate-user", _activate_user, "let a deactivated user log in again"),
    ):
        _command(commands, name, user_handler, summary).add_argument("name", metavar="NAME", help="login name")
    account = _command(commands, "create-account", _create_account, "create a user's account")
    account.add_argument("--user", required=True, metavar="NAME", help="owner's login name")
    account.add_argument("--name", required=True, help="account name, unique per user")
    account.add_argument("--exchange", required=True, help="exchange name, e.g. paper")
    account.add_argument("--capital", type=CAPITAL, required=True, help="capital (> 0, < 10^21, at most 24 decimals), e.g. 10000 or 2500.50")
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


