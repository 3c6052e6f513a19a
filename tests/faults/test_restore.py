"""A database restored from a backup while the broker (with its journal) runs on: what it does next reaches the stream.

The whole pipeline runs as real processes. A follower of alice's btc-trend key sees the orders of
signals sent before a backup and after it; then every process but the broker is SIGKILLed, the
backup (taken with SQLite's online backup, as `sqlite3 db ".backup file"` does) is put back, and
the processes start again on it. The restored database holds the outbox stream names of its
original, which the broker has further than the backup: its next events came with ids the
original had used, the broker confirmed them as duplicates and they were never published.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.crashpoint import CrashPoint
from tests.faults.stack import Follower, Sender, Stack
from tests.producers.conftest import World
from tests.waiting import wait_until

SIGNALS = 3
# The order handler SIGKILLed right after it wrote its new stream name, before it sent anything on it.
RENEWED = CrashPoint("orders", "after", "producers.outbox:renew_stream", 1)


def send(sender: Sender, world: World, symbol: str) -> None:
    """SIGNALS MARKET buys of `symbol` on btc-trend, each retried with its id until answered 200."""
    deadline = time.monotonic() + 30
    for n in range(SIGNALS):
        body = {"group_name": "btc-trend", "token": world.tokens["btc-trend"], "symbol": symbol, "side": "buy",
                "order_type": "MARKET", "price": "100", "qty_per": 1, "id": f"{symbol}-{n}"}
        sender.deliver(body, deadline)
        assert sender.answered[body["id"]] == 200


def orders_of(follower: Follower, symbol: str) -> set[str]:
    return {data["order_id"] for _, event, data in list(follower.received.events)
            if event == "order_update" and data.get("symbol") == symbol}


@pytest.mark.expect_log("older than its stream")
@pytest.mark.parametrize("crash", [None, RENEWED], ids=["plain", "killed-after-renewing"])
def test_the_events_of_a_restored_database_reach_the_stream(
    stack: Stack, world: World, demo: dict[str, Any], tmp_path: Path, crash: CrashPoint | None
) -> None:
    database = Path(world.url.removeprefix("sqlite:///"))
    token = {user["username"]: user["api_token"] for user in demo["users"]}["alice"]
    follower = Follower(stack.http_port, world.strategy_ids["btc-trend"], token)
    sender = Sender(stack.webhook_port)
    try:
        send(sender, world, "AAA/USDT")
        wait_until(lambda: len(orders_of(follower, "AAA/USDT")) == SIGNALS, timeout=30, what="the orders before the backup")
        source, backup = sqlite3.connect(database), sqlite3.connect(tmp_path / "backup.db")
        source.backup(backup)
        source.close()
        backup.close()
        send(sender, world, "BBB/USDT")  # lost with the restore; the broker has their events
        wait_until(lambda: len(orders_of(follower, "BBB/USDT")) == SIGNALS, timeout=30, what="the orders after the backup")
        stack.kill("orders", "positions", "webhook", "streamer")
        world.engine.dispose()
        for journal in (database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
            journal.unlink(missing_ok=True)
        shutil.copyfile(tmp_path / "backup.db", database)
        if crash is not None:  # dies with its new name written, nothing sent on it: the next start goes on from it
            stack.start("orders", armed=crash)
            stack.crashed_at(crash)
        stack.start("orders", "positions", "webhook", "streamer")
        send(sender, world, "CCC/USDT")
        # Failed before: none of them (the broker took their events for duplicates of the BBB ones).
        wait_until(lambda: len(orders_of(follower, "CCC/USDT")) == SIGNALS, timeout=30, what="the orders after the restore")
    finally:
        follower.close()
    logs = (stack.folder / "orders.log").read_text() + (stack.folder / "positions.log").read_text()
    assert logs.count("the database is older than its stream") == 2  # orders and positions, once each (the crash too)
