"""Two retries of one signal `id` racing, past the idempotency window: the orders are placed once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from producers.errors import StoreUnavailable
from producers.intake import IDEMPOTENCY_WINDOW, Accepted, Intake, payload_text
from producers.signals import parse_envelope, parse_json, parse_orders
from store.columns import utc_now
from store.db import make_session_factory
from store.demo import demo
from store.handoff import InboxCommand


def test_two_racing_reuses_of_an_expired_id_enqueue_one_command(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with sessions() as session:
        world = demo(session, None)
    token = next(s["webhook_token"] for s in world["strategies"] if s["group_name"] == "btc-trend")
    body = parse_json(b'{"group_name": "btc-trend", "token": "%s", "id": "tv-9", "order_type": "LIMIT",'
                      b' "symbol": "BTC/USDT", "side": "buy", "price": 100, "qty_per": 1}' % token.encode())
    envelope = parse_envelope(body)
    orders = parse_orders(envelope)
    stale = utc_now() - IDEMPOTENCY_WINDOW - timedelta(minutes=1)
    Intake(sessions, clock=lambda: stale).accept(envelope, orders, None, payload_text(body))

    both_read = threading.Barrier(2)

    def clock() -> datetime:  # each retry has read the old row when it asks the time: the race, every run
        both_read.wait(10)
        return utc_now()

    racing = Intake(sessions, clock=clock)
    answers: list[Accepted | Exception] = []

    def retry() -> None:
        try:
            answers.append(racing.accept(envelope, orders, None, payload_text(body)))
        except (StoreUnavailable, OperationalError) as exc:  # SQLite's stale snapshot: a 503, the sender retries
            answers.append(exc)

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    accepted = [a for a in answers if isinstance(a, Accepted)]
    assert len(answers) == 2 and [a.duplicate for a in accepted].count(False) == 1, answers
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxCommand)) == 2  # the first and one reuse
