"""Schema migrations (store/migrate.py) on a real SQLite file and, when configured, a fresh PostgreSQL database.

The PostgreSQL databases are new ones (CREATE DATABASE tradestream_alembic_<random>,
dropped afterwards): migrations work on a database's default schema, and other
test runs on the server never see them. The admin's subcommands run its `main` in this
process (tests/in_process.py) but for the operator's sequence on SQLite and processes
migrating together, which start the real `python -m store.admin`.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from store import migrate, revisions, schema_status
from store.admin import main as admin_main
from store.db import init_db, make_engine, make_session_factory
from store.handoff import Execution
from store.models import Account, MarketPrice, Order, Position, Signal, Strategy, StrategyAccount, User
from store.schema import METADATA
from tests.conftest import DATABASES, POSTGRES_URL
from tests.in_process import run_main
from tests.ports import refused_port
from tests.store.legacy import release_0001, release_0002

ADMIN = [sys.executable, "-m", "store.admin"]
NEW_REVISION = (
    "write a revision for the models' change: `python -m store.migrate revision --autogenerate -m WHAT`,"
    " check it on SQLite and PostgreSQL (docs/operations.md, 'Writing a revision')"
)
LEGACY = {"0001": release_0001.Base.metadata, "0002": release_0002.Base.metadata}

NewDatabase = Callable[[], str]


@pytest.fixture(params=DATABASES)
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Makes empty databases: SQLite files, or new PostgreSQL databases (all dropped at the end)."""
    made: list[str] = []
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT") if request.param == "postgresql" else None

    def new() -> str:
        name = f"tradestream_alembic_{secrets.token_hex(6)}"
        if admin is None:
            return f"sqlite:///{tmp_path / (name + '.db')}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    yield new
    if admin is not None:
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database(new_database: NewDatabase) -> Iterator[tuple[str, Engine]]:
    url = new_database()
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def admin_process(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """tradestream-admin as an operator runs it (a process of its own)."""
    return subprocess.run([*ADMIN, "--database-url", url, *args], capture_output=True, text=True, timeout=120)


def admin(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`admin_process`'s exit code and output from the admin's main in this process (~0.5 s of CPU less a call)."""
    return run_main(admin_main, ["--database-url", url, *args], cwd=Path.cwd())


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, METADATA))


def schema_of(engine: Engine) -> dict[str, Any]:
    """Everything reflection tells about each table (what compare_metadata does not look at included)."""
    inspector = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {revisions.VERSION_TABLE}):
        tables[table] = {
            "columns": {c["name"]: (repr(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(table)},
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                 fk.get("options", {}).get("ondelete"))
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]),
                 " ".join(str(value) for key, value in sorted(ix.get("dialect_options", {}).items()) if key.endswith("_where")))
                for ix in inspector.get_indexes(table)
            ),
            "unique": sorted((uc["name"], tuple(uc["column_names"])) for uc in inspector.get_unique_constraints(table)),
            "checks": sorted((ck["name"], " ".join(ck["sqltext"].split())) for ck in inspector.get_check_constraints(table)),
        }
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            sql = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
        tables["(autoincrement)"] = sorted(name for name, ddl in sql if "AUTOINCREMENT" in ddl.upper())
    return tables


def models_schema(new_database: NewDatabase) -> dict[str, Any]:
    """The schema create_all makes from the models, reflected."""
    engine = make_engine(new_database())
    try:
        METADATA.create_all(engine)
        return schema_of(engine)
    finally:
        engine.dispose()


def test_upgrade_head_makes_exactly_the_models_schema(new_database: NewDatabase, database: tuple[str, Engine]) -> None:
    _, engine = database
    assert migrate.upgrade(engine).after == revisions.head()
    assert differences(engine) == [], f"upgrade head does not make the models' schema: {NEW_REVISION}"
    # Check constraints, partial indexes, ON DELETE and SQLite's AUTOINCREMENT, which compare_metadata skips:
    assert schema_of(engine) == models_schema(new_database), f"the migrated schema differs from create_all's: {NEW_REVISION}"


def test_a_fresh_process_schema_has_every_table_head_makes(database: tuple[str, Engine]) -> None:
    # Alembic's environment and init_db read store.schema in processes that may have imported no table module yet.
    _, engine = database
    migrate.upgrade(engine)
    listed = subprocess.run([sys.executable, "-c", "from store.schema import METADATA; print(*sorted(METADATA.tables))"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert listed.stdout.split() == sorted(set(inspect(engine).get_table_names()) - {revisions.VERSION_TABLE})


def test_the_comparison_sees_a_model_the_revisions_lack(database: tuple[str, Engine]) -> None:
    _, engine = database
    migrate.upgrade(engine, "0002")
    # A table's difference is a tuple ("add_table", ...), a column's type a list of ("modify_type", ...) tuples.
    kinds = {diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in differences(engine)}
    assert kinds >= {"add_table", "add_column", "modify_type"}


def _old_release_rows(engine: Engine, metadata: MetaData) -> None:
    """Rows as an older release wrote them: a user, an account, a strategy and its link, a signal, an order, a position."""
    now = datetime.now(UTC)
    t = metadata.tables
    with engine.begin() as connection:
        connection.execute(t["users"].insert(), [
            {"id": 1, "username": "olduser", "password_hash": "x", "is_admin": True, "api_token_hash": "a" * 64, "created_at": now},
        ])
        connection.execute(t["accounts"].insert(), [
            {"id": 1, "user_id": 1, "name": "main", "exchange": "paper", "capital": 1000.5, "created_at": now},
        ])
        connection.execute(t["strategies"].insert(), [
            {"id": 1, "owner_id": 1, "name": "Old", "group_name": "old-trend", "webhook_token_hash": "b" * 64,
             "is_active": True, "created_at": now},
        ])
        connection.execute(t["strategy_accounts"].insert(), [{"strategy_id": 1, "account_id": 1}])
        connection.execute(t["signals"].insert(), [
            {"id": 1, "strategy_id": 1, "client_id": "c-1", "payload": "{}", "received_at": now},
        ])
        connection.execute(t["orders"].insert(), [
            {"id": 1, "order_id": "o-1", "signal_id": 1, "account_id": 1, "strategy_id": 1, "user_id": 1,
             "symbol": "BTCUSDT", "side": "BUY", "order_type": "MARKET", "quantity": 0.25, "price": None,
             "stop_price": None, "status": "FILLED", "filled_quantity": 0.25, "average_price": 90000.0,
             "created_at": now, "updated_at": now},
        ])
        connection.execute(t["positions"].insert(), [
            {"id": 1, "account_id": 1, "strategy_id": 1, "user_id": 1, "symbol": "BTCUSDT", "quantity": 0.25,
             "entry_price": 90000.0, "realized_pnl": 0.0, "created_at": now, "updated_at": now},
        ])


def _assert_old_rows_survived(engine: Engine) -> None:
    with make_session_factory(engine)() as session:
        user = session.scalars(select(User)).one()
        assert (user.username, user.is_admin, user.is_active) == ("olduser", True, True)
        assert session.scalars(select(Strategy.group_name)).all() == ["old-trend"]
        assert session.scalars(select(StrategyAccount.account_id)).all() == [1]
        assert session.scalars(select(Signal.client_id)).all() == ["c-1"]
        order = session.scalars(select(Order)).one()
        assert (order.order_id, order.quantity, order.average_price, order.signal_id) == ("o-1", 0.25, 90000.0, 1)
        position = session.scalars(select(Position)).one()
        assert (position.symbol, position.quantity, position.entry_price) == ("BTCUSDT", 0.25, 90000.0)


@pytest.mark.parametrize("release", sorted(LEGACY))
def test_an_older_release_database_is_stamped_then_upgraded_and_keeps_its_rows(
    release: str, new_database: NewDatabase, database: tuple[str, Engine]
) -> None:
    url, engine = database
    LEGACY[release].create_all(engine)  # what that release's init-db did
    _old_release_rows(engine, LEGACY[release])

    status = admin(url, "db-status")
    assert status.returncode == 3, status
    assert f"made by an older release without a revision (its tables match {release})" in status.stdout

    migrated = admin(url, "migrate")
    assert migrated.returncode == 0, migrated
    assert f"migrated from an older release's schema ({release}, stamped) to revision {revisions.head()}" in migrated.stdout
    _assert_old_rows_survived(engine)
    assert differences(engine) == [], NEW_REVISION
    assert schema_of(engine) == models_schema(new_database), NEW_REVISION
    assert admin(url, "db-status").returncode == 0


def test_downgrade_one_step_and_up_again_keeps_the_rows(new_database: NewDatabase, database: tuple[str, Engine]) -> None:
    _, engine = database
    migrate.upgrade(engine, "0002")
    _old_release_rows(engine, LEGACY["0002"])
    migrate.upgrade(engine)

    down = migrate.downgrade(engine, "-1")
    assert (down.before.current, down.after) == (revisions.head(), "0004")
    assert schema_of(engine) == schema_at_revision(new_database, "0004")  # replay_runs gone
    assert migrate.downgrade(engine, "-1").after == "0003"
    assert schema_of(engine) == schema_at_revision(new_database, "0003")  # money columns doubles again
    assert migrate.downgrade(engine, "-1").after == "0002"
    # Batch mode copied users to drop is_active: with foreign keys on, dropping the old copy would have cascaded.
    assert schema_of(engine) == schema_of_release(new_database, "0002")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM orders")).scalar_one() == 1
        assert connection.execute(text("SELECT count(*) FROM positions")).scalar_one() == 1

    assert migrate.upgrade(engine).after == revisions.head()
    _assert_old_rows_survived(engine)
    assert differences(engine) == []


def schema_at_revision(new_database: NewDatabase, revision: str) -> dict[str, Any]:
    engine = make_engine(new_database())
    try:
        migrate.upgrade(engine, revision)
        return schema_of(engine)
    finally:
        engine.dispose()


def schema_of_release(new_database: NewDatabase, release: str) -> dict[str, Any]:
    engine = make_engine(new_database())
    try:
        LEGACY[release].create_all(engine)
        return schema_of(engine)
    finally:
        engine.dispose()


def test_each_revision_is_its_release_schema(new_database: NewDatabase, database: tuple[str, Engine]) -> None:
    _, engine = database
    for release in sorted(LEGACY):
        migrate.upgrade(engine, release)
        assert schema_of(engine) == schema_of_release(new_database, release), f"revision {release}"


def test_db_status_and_migrate_as_an_operator_runs_them(database: tuple[str, Engine]) -> None:
    url, engine = database
    head = revisions.head()
    steps: list[tuple[tuple[str, ...], int, str]] = [
        (("db-status",), 3, f"Database empty (no schema yet), head is {head}: run `tradestream-admin migrate`."),
        (("migrate", "--revision", "0001"), 0, "Database migrated from an empty database to revision 0001."),
        (("db-status",), 3, f"Database at revision 0001, head is {head}: run `tradestream-admin migrate`."),
        (("migrate",), 0, f"Database migrated from 0001 to revision {head}."),
        (("db-status",), 0, f"Database at revision {head} (head): up to date."),
        (("migrate",), 0, f"Database already at revision {head}: nothing to do."),
        (("init-db",), 0, f"Database already at revision {head}: nothing to do."),
    ]
    run = admin_process if url.startswith("sqlite") else admin  # on PostgreSQL the SQL is what differs
    for args, code, line in steps:
        result = run(url, *args)
        assert (result.returncode, result.stderr) == (code, ""), (args, result)
        assert result.stdout.startswith(line), (args, result.stdout)
    with engine.connect() as connection:
        assert revisions.current(connection) == head


ONE_LINE_ERRORS = [
    # (args before, args, the line on stderr)
    (("migrate", "--revision", "9999"), "cannot upgrade to '9999': Can't locate revision identified by '9999'"),
    (("migrate", "--revision", "0001"), "newer than 0001: downgrade with `python -m store.migrate downgrade 0001`"),
]


@pytest.mark.parametrize(("args", "message"), ONE_LINE_ERRORS)
def test_a_migration_that_cannot_be_done_is_one_line(args: tuple[str, ...], message: str, database: tuple[str, Engine]) -> None:
    url, engine = database
    migrate.upgrade(engine)
    result = admin(url, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_database_of_a_newer_release_is_refused_in_one_line(database: tuple[str, Engine]) -> None:
    url, engine = database
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9000'"))
    status = admin(url, "db-status")
    assert status.returncode == 3 and "revision 9000, unknown to this release" in status.stdout
    result = admin(url, "migrate")
    assert result.returncode == 1 and "revision 9000, unknown to this release" in result.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    port = refused_port()  # a port nobody listens on
    for url in (f"postgresql+psycopg://nobody@127.0.0.1:{port}/x", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"):
        for args in (("migrate",), ("db-status",)):
            result = admin(url, *args)
            assert result.returncode == 1 and result.stderr.count("\n") == 1, result
            assert result.stderr.startswith("tradestream-admin: error: cannot "), result.stderr


def test_processes_started_together_migrate_one_after_another(database: tuple[str, Engine]) -> None:
    url, engine = database
    runs = [subprocess.Popen([*ADMIN, "--database-url", url, "migrate"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    assert all(code == 0 and err == "" for code, _, err in results), results
    outputs = sorted(out.split(" (")[0] for _, out, _ in results)
    assert outputs == [f"Database already at revision {revisions.head()}: nothing to do."] * 2 + [
        f"Database migrated from an empty database to revision {revisions.head()}."
    ]
    assert differences(engine) == []


def test_a_process_that_migrates_at_its_start_says_so_in_one_line_and_alembic_says_nothing(
    database: tuple[str, Engine], tmp_path: Path
) -> None:
    # Alembic is imported only to migrate, after the process's logging is set up: its INFO lines
    # ("setup plugin ...", one per plugin, seven) were each a line of every producer's log that migrated.
    url, _ = database
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    replay = subprocess.run([str(Path(sys.executable).with_name("tradestream-replay")), str(empty), "--database-url", url],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert f"Database migrated from an empty database to revision {revisions.head()}." in replay.stderr
    assert "alembic" not in replay.stderr, replay.stderr


def test_the_tests_fast_path_is_stamped_at_head(database: tuple[str, Engine]) -> None:
    _, engine = database
    init_db(engine)
    assert schema_status.status(engine).at_head
    assert migrate.upgrade(engine).changed is False


def test_the_fast_path_migrates_an_older_release_database_instead_of_stamping_it(database: tuple[str, Engine]) -> None:
    _, engine = database
    LEGACY["0001"].create_all(engine)
    _old_release_rows(engine, LEGACY["0001"])
    init_db(engine)
    assert differences(engine) == []
    _assert_old_rows_survived(engine)


# (a double as an older release stored it, the Decimal 0004 makes of it: its shortest round-trip digits)
FLOAT_TO_DECIMAL = [
    (0.1 + 0.2, Decimal("0.30000000000000004")),  # SQLite's and PostgreSQL's own casts would say 0.3 (15 digits)
    (0.20392143, Decimal("0.20392143")),
    (90000.0, Decimal("90000.0")),
    (64123.45, Decimal("64123.45")),
    (1e-07, Decimal("1E-7")),
    (123456789.12345679, Decimal("123456789.12345679")),  # 17 significant digits
]


def test_a_0003_database_with_float_rows_upgrades_to_exact_decimals(database: tuple[str, Engine]) -> None:
    _, engine = database
    migrate.upgrade(engine, "0003")
    _old_release_rows(engine, LEGACY["0002"])  # 0003 only added user_sessions and users.is_active (server default)
    now = datetime.now(UTC)
    t = LEGACY["0002"].tables
    doubles = [double for double, _ in FLOAT_TO_DECIMAL]
    with engine.begin() as connection:
        connection.execute(t["orders"].insert(), [
            {"id": 1 + n, "order_id": f"f-{n}", "signal_id": 1, "account_id": 1, "strategy_id": 1, "user_id": 1,
             "symbol": "BTC/USDT", "side": "BUY", "order_type": "LIMIT", "quantity": double, "price": double,
             "stop_price": None, "status": "FILLED", "filled_quantity": double, "average_price": double,
             "created_at": now, "updated_at": now}
            for n, double in enumerate(doubles, start=1)
        ])
        connection.execute(t["executions"].insert(), [
            {"id": n, "order_id": 1 + n, "account_id": 1, "strategy_id": 1, "user_id": 1, "symbol": "BTC/USDT",
             "side": "BUY", "quantity": double, "price": double, "executed_at": now}
            for n, double in enumerate(doubles, start=1)
        ])
        connection.execute(t["market_prices"].insert(), [
            {"symbol": f"S{n}", "price": double, "updated_at": now} for n, double in enumerate(doubles, start=1)
        ])
        connection.execute(t["positions"].update().values(realized_pnl=0.1 + 0.2, quantity=0.20392143))

    assert migrate.upgrade(engine).after == revisions.head()
    wanted = [exact for _, exact in FLOAT_TO_DECIMAL]
    with make_session_factory(engine)() as session:
        orders = session.scalars(select(Order).where(Order.order_id.startswith("f-")).order_by(Order.id)).all()
        for order, exact in zip(orders, wanted, strict=True):
            values = (order.quantity, order.price, order.filled_quantity, order.average_price)
            assert all(type(value) is Decimal for value in values)
            assert values == (exact,) * 4, order.order_id
            assert order.stop_price is None
        executions = session.scalars(select(Execution).order_by(Execution.id)).all()
        assert [(e.quantity, e.price) for e in executions] == [(exact, exact) for exact in wanted]
        prices = session.scalars(select(MarketPrice).order_by(MarketPrice.symbol)).all()
        assert [p.price for p in prices] == wanted
        position = session.scalars(select(Position)).one()
        assert (position.quantity, position.realized_pnl) == (Decimal("0.20392143"), Decimal("0.30000000000000004"))
        assert (position.entry_price, position.mark_price, position.unrealized_pnl) == (Decimal("90000.0"), None, 0)
        assert session.scalars(select(Account.capital)).one() == Decimal("1000.5")
    assert differences(engine) == []


def test_the_frozen_revisions_name_each_type_in_the_module_that_defines_it() -> None:
    # Comments only (a revision's DDL is frozen): `store.models.Id` was moved to store/columns.py.
    store = Path(migrate.__file__).parent
    named = {(path.name, module, name)
             for path in sorted((store / "migrations" / "versions").glob("r*.py"))
             for module, name in re.findall(r"\bstore\.(\w+)\.([A-Z]\w*)", path.read_text())}
    assert named, "no revision names a type of the store any more: drop this test"
    wrong = [f"{revision}: store.{module}.{name}" for revision, module, name in sorted(named)
             if not (store / f"{module}.py").exists()
             or not re.search(rf"^(class {name}\b|{name} = )", (store / f"{module}.py").read_text(), re.MULTILINE)]
    assert not wrong, wrong
