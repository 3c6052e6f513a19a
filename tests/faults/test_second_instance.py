"""A second order or position handler started by mistake on the same database: it does not run.

The bind of the handler's wake-up endpoint keeps a second one from starting with
the same endpoints; one started with others (another working directory, whose
relative `ipc://var/bus/...` endpoints are other files, or other flags) on the
same database was a second writer of the inbox, the executions and the outbox
stream, which the handlers and the broker's stream bookkeeping assume have one
writer each: with ticks racing a burst, a second order handler filled resting
orders twice and lost fill events, a second position handler lost 26 of 92
position events on a key (producers/writer_lock.py).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from sqlalchemy import text

from producers.writer_lock import lock_key
from tests.faults.conftest import ON_BOTH, ON_POSTGRESQL, POSTGRESQL
from tests.faults.stack import BIN, Stack
from tests.ports import reserved_ports
from tests.producers.conftest import World
from tests.waiting import wait_until


@ON_BOTH
@pytest.mark.parametrize("name", ["orders", "positions"])
def test_a_second_handler_on_the_same_database_with_other_endpoints_refuses_to_start(stack: Stack, name: str) -> None:
    with reserved_ports(1) as ports:
        args = list(stack.args[name])
        flag = "--orders" if name == "orders" else "--fills"
        args[args.index(flag) + 1] = f"tcp://127.0.0.1:{ports[0]}"
        log = stack.folder / f"second-{name}.log"
        with open(log, "ab") as out:
            second = subprocess.Popen([str(BIN / f"tradestream-{name}"), *args], cwd=stack.folder, env=stack.env,
                                      stdout=subprocess.DEVNULL, stderr=out)
        try:
            wait_until(lambda: second.poll() is not None or re.search("listening on", log.read_text()),
                       timeout=30, what=f"the second {name} to start or exit")
            assert second.poll() is not None, f"a second {name} runs on the same database:\n{log.read_text()}"
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    assert second.returncode == 1
    assert f"cannot start: another tradestream-{name} runs on this database" in log.read_text()
    assert stack.procs[name].poll() is None  # the first one runs on


@pytest.mark.parametrize("backend", [pytest.param(POSTGRESQL, marks=ON_POSTGRESQL)], indirect=True)
def test_a_handler_whose_lock_another_process_took_while_its_session_was_gone_stops(stack: Stack, world: World) -> None:
    with world.engine.connect() as other:
        database, schema = other.execute(text("SELECT current_database(), current_schema()")).one()
        key = lock_key(database, schema, "orders")
        (pid,) = other.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
                                    " (classid::bigint << 32 | objid::bigint) = (:key & x'ffffffffffffffff'::bigint)"),
                               {"key": key}).one()
        # Its session ended and the lock taken by another in one statement: the handler's next sweep finds it held.
        other.execute(text("SELECT pg_terminate_backend(:pid), pg_advisory_lock(:key)"), {"pid": pid, "key": key})
        orders = stack.procs["orders"]
        wait_until(lambda: orders.poll() is not None, timeout=15, what="the order handler to stop")
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        other.commit()
    assert orders.returncode == 1
    assert "another process holds it now" in (stack.folder / "orders.log").read_text()
