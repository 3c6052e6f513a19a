"""The relay's state per stream (CONTRACT section 2, the relay's rules), as tables of steps and what is sent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.relay_window import RelayWindow, Row, WindowLimits

LIMITS = WindowLimits(window=3, max_rows=6, max_bytes=1000, retry_s=1.0, max_retry_s=4.0)


def row(event_id: int, size: int = 10) -> Row:
    return Row(event_id, b"k/1/1/", b"x" * size)


def started(acked: int = 0, *ids: int, limits: WindowLimits = LIMITS) -> RelayWindow:
    """A window at start-up that loaded `ids` from the database (fewer than asked: nothing else is there)."""
    window = RelayWindow(acked, limits)
    window.loaded([row(i) for i in ids], limit=len(ids) + 1)
    return window


def sent(window: RelayWindow, now: float = 0.0) -> list[tuple[int, int]]:
    return [(r.id, prev) for r, prev in window.take(now)]


def test_first_rows_go_out_pipelined_each_naming_the_one_before_starting_at_the_last_confirmed() -> None:
    window = started(5, 6, 7, 8, 9)
    assert sent(window) == [(6, 5), (7, 6), (8, 7)]  # the window is 3
    assert sent(window) == []
    assert window.ack(7, 0.1) == 7
    assert sent(window) == [(9, 8)]


# (steps applied after sending 1, 2, 3 of rows 1..5 from acked 0) → what is sent next, acked, marked
STEPS: list[tuple[str, list[tuple[str, int]], list[tuple[int, int]], int, list[int | None]]] = [
    ("a cumulative ack frees the window", [("ack", 3)], [(4, 3), (5, 4)], 3, [3]),
    ("a stale or repeated ack changes nothing", [("ack", 2), ("ack", 1), ("ack", 2)], [(4, 3), (5, 4)], 2, [2, None, None]),
    ("resend rewinds to the broker's last", [("resend", 1)], [(2, 1), (3, 2), (4, 3)], 1, [1]),
    ("one rewind per gap however many rows report it", [("resend", 1), ("take", 0), ("resend", 1)], [], 1, [1, None]),
    ("a broker ahead of the database confirms rows never sent", [("ack", 5)], [], 5, [5]),
    ("a reject counts as handled", [("reject", 1)], [(4, 3)], 1, [1]),
]


@pytest.mark.parametrize(("steps", "then_sent", "acked", "marks"), [pytest.param(*s[1:], id=s[0]) for s in STEPS])
def test_answers_of_the_broker(steps: list[tuple[str, int]], then_sent: list[tuple[int, int]], acked: int, marks: list[Any]) -> None:
    window = started(0, 1, 2, 3, 4, 5)
    assert sent(window) == [(1, 0), (2, 1), (3, 2)]
    got_marks = []
    for word, value in steps:
        if word == "take":
            sent(window)
        else:
            got_marks.append(getattr(window, word)(value, 0.5))
    assert sent(window) == then_sent
    assert window.acked == acked
    assert got_marks == marks


def test_an_ack_below_rows_in_flight_keeps_them_and_the_timeout_sends_them_again_from_it() -> None:
    # The broker's ack stops below a remembered rejection (or a dropped reject) it has not told the relay
    # of yet: the rows above it stay in flight, nothing is marked past it, and the deadline resends them.
    window = started(0, 1, 2, 3)
    assert sent(window, now=0.0) == [(1, 0), (2, 1), (3, 2)]
    assert window.ack(1, 0.5) == 1
    assert (window.in_flight, window.deadline, sent(window, 0.6)) == (2, 1.5, [])
    assert window.ack(1, 1.4) is None and window.deadline == 1.5  # the same capped ack again does not put it off
    assert not window.expire(1.4) and window.expire(1.5)
    assert sent(window, 1.5) == [(2, 1), (3, 2)]


def test_unknown_sends_again_after_the_last_confirmed_whatever_was_rewound_before() -> None:
    window = started(0, 1, 2, 3, 4)
    assert sent(window) == [(1, 0), (2, 1), (3, 2)]
    assert window.ack(1, 0.1) == 1
    window.unknown(0.2)  # a restarted broker: the relay said `hello 1`
    assert sent(window) == [(2, 1), (3, 2), (4, 3)]
    window.unknown(0.3)  # a second `unknown` (rows in flight before the hello): from acked again
    assert sent(window) == [(2, 1), (3, 2), (4, 3)]
    assert (window.acked, window.stats.rewinds) == (1, 2)


def test_no_answer_in_time_resends_from_the_last_confirmed_and_backs_off() -> None:
    window = started(0, 1, 2)
    assert sent(window, now=0.0) == [(1, 0), (2, 1)]
    assert window.deadline == 1.0
    assert not window.expire(0.9)
    assert window.expire(1.0) and window.stats.timeouts == 1
    assert sent(window, now=1.0) == [(1, 0), (2, 1)]
    assert window.deadline == 1.0 + 2.0  # backed off
    window.ack(2, 1.5)
    assert window.deadline is None and window.idle


def test_a_refused_send_is_taken_again_and_the_deadline_wakes_the_loop() -> None:
    window = started(0, 1, 2, 3)
    assert sent(window, now=0.0) == [(1, 0), (2, 1), (3, 2)]
    window.unsent(2)  # the socket took only the first
    assert window.in_flight == 1
    assert sent(window, now=0.1) == [(2, 1), (3, 2)]
    window.unsent(3)
    assert window.in_flight == 0 and window.deadline == 1.0
    assert not window.expire(1.0)  # nothing in flight: nothing to rewind, only the next attempt is set
    assert window.deadline == 2.0  # and no backing off: a refused send costs nothing
    assert sent(window, now=1.0) == [(1, 0), (2, 1), (3, 2)]


def test_rows_beyond_the_bounds_stay_in_the_database_and_are_loaded_back_in_order() -> None:
    window = started(0)
    assert window.complete and window.load_after() is None
    window.offer([row(i) for i in range(1, 9)])  # 8 rows, 6 fit
    assert window.stats.spilled == 2 and not window.complete
    assert window.load_after() is None  # no room: loading waits until half of it is free
    assert sent(window) == [(1, 0), (2, 1), (3, 2)]
    window.ack(3, 0.1)
    assert window.load_after() == (6, 3)
    window.loaded([row(7), row(8)], limit=3)
    assert window.complete
    assert sent(window) == [(4, 3), (5, 4), (6, 5)]
    window.ack(6, 0.2)
    assert sent(window) == [(7, 6), (8, 7)]
    window.offer([row(9)])
    assert sent(window) == [(9, 8)]


def test_bytes_bound_the_rows_held() -> None:
    window = started(0)
    window.offer([row(1, 600), row(2, 600)])
    assert window.tail == 1 and not window.complete and window.stats.spilled == 1


def test_a_broker_behind_what_it_confirmed_gets_everything_after_its_last_again() -> None:
    window = started(0, 1, 2, 3)
    sent(window)
    window.ack(3, 0.1)
    assert window.resend(1, 0.2) is None
    assert (window.acked, window.complete, window.load_after()) == (1, False, (1, 3))
    window.loaded([row(2), row(3)], limit=3)
    assert sent(window) == [(2, 1), (3, 2)]


@given(st.lists(st.sampled_from(["ack", "resend", "timeout", "refuse", "offer"]), max_size=60))
def test_whatever_the_answers_every_row_is_sent_in_order_with_the_right_prev_id(steps: list[str]) -> None:
    """A broker that sequences by the rules sees rows 1..N in order, once each, whatever the relay went through."""
    window = started(0, *range(1, 11), limits=WindowLimits(window=4, max_rows=100, retry_s=1.0))
    broker_last, sequenced, now, next_id = 0, [], 0.0, 11
    for word in [*steps, *["ack"] * 40]:
        now += 1.0
        if word == "offer":
            window.offer([row(next_id)])
            next_id += 1
        elif word == "timeout":
            window.expire(now + 100)
        taken = window.take(now)
        if word == "refuse" and taken:
            window.unsent(len(taken))
            continue
        for r, prev in taken:
            if r.id > broker_last and prev == broker_last:
                broker_last = r.id
                sequenced.append(r.id)
        if word == "resend":
            window.resend(broker_last, now)
        else:
            window.ack(broker_last, now)
    assert sequenced == list(range(1, next_id))
    assert window.idle


def test_after_a_broker_ahead_confirmation_the_next_row_names_the_brokers_last() -> None:
    window = started(0, 1, 2)
    assert sent(window) == [(1, 0), (2, 1)]
    window.ack(5, 0.1)  # the database was behind the broker (killed between its ack and the mark)
    window.offer([row(6)])
    assert sent(window) == [(6, 5)]


def test_a_full_load_means_more_may_wait_in_the_database() -> None:
    window = RelayWindow(0, LIMITS)
    assert window.load_after() == (0, 3)
    window.loaded([row(1), row(2), row(3)], limit=3)
    assert not window.complete and window.load_after() == (3, 3)
    window.loaded([row(4)], limit=3)
    assert window.complete and window.load_after() is None


def test_after_a_recheck_rows_offered_wait_for_the_rows_committed_before_them_that_nobody_offered() -> None:
    window = started(0, 1)
    window.recheck()  # rows 2 and 3 were committed, the producer never knew (its COMMIT's answer was lost)
    window.offer([row(4)])
    assert window.load_after() == (1, 3)
    window.loaded([row(2), row(3), row(4)], limit=3)
    assert sent(window) == [(1, 0), (2, 1), (3, 2)]
    window.ack(3, 0.1)
    assert sent(window) == [(4, 3)]


def greeting(acked: int, highest: int, *ids: int) -> RelayWindow:
    """A window at start-up: the broker not answered yet, `ids` loaded, `highest` the database's highest id."""
    window = RelayWindow(acked, LIMITS, highest=highest, greet=True)
    window.loaded([row(i) for i in ids], limit=len(ids) + 1)
    return window


def test_a_starting_window_says_hello_and_sends_no_row_until_the_broker_answered() -> None:
    window = greeting(2, 4, 3, 4)
    assert window.greet_due(0.0) and sent(window) == []
    window.greeted(0.0, refused=True)  # the connection is not up yet: again after 10 ms, doubling
    assert not window.greet_due(0.005) and window.greet_due(0.01)
    window.greeted(0.01, refused=True)
    assert window.deadline == 0.03
    window.greeted(0.03)  # said: again after retry_s unless answered, and no timeout rewinds meanwhile
    assert (window.deadline, window.greet_due(1.0), window.expire(2.0), window.greet_due(1.03)) == (1.03, False, False, True)
    assert sent(window, 1.1) == []
    assert window.ack(2, 1.1) is None  # the broker has the stream up to 2, as the database does
    assert (window.greeting, window.greet_due(1.2), window.deadline) == (False, False, None)
    assert sent(window, 1.2) == [(3, 2), (4, 3)]


# (the broker's answer to `hello 2` of a database whose highest id is 4) → whether it is beyond the database,
# and, when it is not, acked and what is sent next
GREETINGS: list[tuple[str, str, int, bool, int, list[tuple[int, int]]]] = [
    ("where the database is", "ack", 2, False, 2, [(3, 2), (4, 3)]),
    ("ahead of the marks (killed before it wrote them)", "ack", 4, False, 4, []),
    ("one row ahead", "ack", 3, False, 3, [(4, 3)]),
    ("behind it (a broker on an older journal)", "resend", 1, False, 1, []),
    ("past anything the database held: a restored database", "ack", 5, True, 2, []),
    ("a resend past it", "resend", 6, True, 2, []),
    ("a reject past it", "reject", 5, True, 2, []),
]


@pytest.mark.parametrize(("word", "value", "beyond", "acked", "then_sent"), [pytest.param(*g[1:], id=g[0]) for g in GREETINGS])
def test_the_answer_to_hello(word: str, value: int, beyond: bool, acked: int, then_sent: list[tuple[int, int]]) -> None:
    window = greeting(2, 4, 3, 4)
    assert window.beyond(value) is beyond
    if not beyond:  # a beyond answer is not applied: the wiring moves the database to a new stream
        getattr(window, word)(value, 0.5)
        assert (window.greeting, window.acked, sent(window)) == (False, acked, then_sent)


def test_only_rows_sent_raise_the_highest_id_an_answer_may_confirm() -> None:
    window = greeting(2, 2)
    window.offer([row(3), row(4)])  # committed after the start, held while greeting: the broker cannot have them
    assert window.beyond(3)
    window.ack(2, 0.1)
    assert sent(window) == [(3, 2), (4, 3)]
    assert (window.beyond(4), window.beyond(5)) == (False, True)


def test_a_restart_on_a_new_stream_greets_again_from_the_last_confirmed_and_keeps_the_counts() -> None:
    window = greeting(2, 4, 3, 4)
    window.ack(2, 0.1)
    assert sent(window) == [(3, 2), (4, 3)]
    window.restart(2, 6)  # the metrics hold this window: the same object goes on
    assert (window.greeting, window.acked, window.held, window.in_flight, window.complete) == (True, 2, 0, 0, False)
    assert (window.beyond(6), window.beyond(7), window.stats.sent) == (False, True, 2)
    assert window.load_after() == (2, 3)
    window.loaded([row(3), row(4), row(5)], limit=3)
    assert window.greet_due(0.2) and sent(window, 0.2) == []
    window.ack(2, 0.3)
    assert sent(window, 0.3) == [(3, 2), (4, 3), (5, 4)]
