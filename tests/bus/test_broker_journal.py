"""The broker with --journal, as a real process killed with SIGKILL: same epoch, heads, history and streams."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from bus import codec
from bus.publisher import Publisher
from bus.topics import StreamKey, key_topic
from tests.bus.ack_client import AckClient
from tests.bus.conftest import BrokerProcess, broker_stats, make_order
from tests.bus.conftest import history as broker_history
from tests.bus.test_freezes import SubscriberProcess
from tests.waiting import wait_until

KEYS = [StreamKey(1, 1), StreamKey(1, 2), StreamKey(2, 1)]
FREE = ["--ingress", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*", "--replay", "tcp://127.0.0.1:*", "--ack-ingress", "tcp://127.0.0.1:*"]


def replay_all(ctx: zmq.Context[Any], broker: BrokerProcess, key: StreamKey, newest: int | None = 100) -> tuple[int, list[tuple[int, str]]]:
    """The epoch and (seq, order_id) of the newest 100 events the broker's history holds for `key` (all: `newest=None`)."""
    epoch, events = broker_history(ctx, broker, key, newest)
    return epoch, [(seq, payload["order_id"]) for seq, payload in events]


def publish(pub: Publisher, ctx: zmq.Context[Any], broker: BrokerProcess, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        key = KEYS[i % len(KEYS)]
        pub.publish(make_order(*key, order_id=str(i)))
    wait_until(lambda: broker_stats(ctx, broker.endpoints["replay"])["published"] == count, what=f"{count} events sequenced")


def test_a_sigkilled_broker_comes_back_with_its_epoch_heads_and_histories(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db")).start()
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            publish(pub, zctx, broker, 300)
            before = {key: replay_all(zctx, broker, key) for key in KEYS}
            broker.kill()
            broker.start()
            assert {key: replay_all(zctx, broker, key) for key in KEYS} == before
            assert "restored: 3 keys, 3 with history" in broker.log_text()
            publish(pub, zctx, broker, 3, start=300)
        for key in KEYS:
            epoch, events = replay_all(zctx, broker, key)
            assert epoch == before[key][0] and events[-1][0] == 101  # the seq goes on, it does not restart
    finally:
        broker.kill()


def test_a_subscriber_connected_across_a_broker_sigkill_gets_every_event_without_resync(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db"), "--bus-heartbeat", "1.0").start()
    child = SubscriberProcess(broker, KEYS[:2])
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            publish(pub, zctx, broker, 20)
            broker.kill()
            broker.start()
            publish(pub, zctx, broker, 20, start=20)
        wait_until(lambda: bool(child.resyncs) or all(len(child.delivered(k)) >= 13 for k in KEYS[:2]), what="every event delivered")
        assert child.resyncs == []
        assert child.delivered(KEYS[0]) == list(range(1, 15)) and child.delivered(KEYS[1]) == list(range(1, 14))
    finally:
        child.kill()
        broker.kill()


def test_a_backlog_past_the_history_after_a_broker_sigkill_reaches_a_subscriber_back_late_live_without_resync(
    tmp_path: Path, zctx: zmq.Context[Any]
) -> None:
    # The producers' backlog (300 events of one key, the history keeps 100) is queued while the broker is down; the
    # subscriber (a streamer on a busy host) is stopped and comes back only after the restarted broker listens. It
    # must be subscribed again before the backlog is sequenced (bus/resume_grace.py): else the first 200 are gone
    # from the history by the time it asks, and it resyncs. --resume-grace 10: its bound, not the time it takes.
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db"), "--resume-grace", "10").start()
    key = KEYS[0]
    child = SubscriberProcess(broker, [key])
    try:
        with Publisher(broker.endpoints["ingress"], context=zctx) as pub:
            for i in range(5):
                pub.publish(make_order(*key, order_id=str(i)))
            wait_until(lambda: child.delivered(key) == [1, 2, 3, 4, 5], what="five events delivered")
            child.proc.send_signal(signal.SIGSTOP)
            broker.kill()
            for i in range(5, 305):  # queued by the PUSH socket until the broker is back
                pub.publish(make_order(*key, order_id=str(i)))
            broker.start()
            # Either the broker waits for its subscribers, or (without the grace) it has sequenced the backlog.
            wait_until(lambda: "waiting up to" in broker.log_text()
                       or broker_stats(zctx, broker.endpoints["replay"])["published"] == 300, what="the restarted broker")
            child.proc.send_signal(signal.SIGCONT)
            wait_until(lambda: bool(child.resyncs) or len(child.delivered(key)) >= 305, what="the backlog delivered")
        assert child.resyncs == []
        assert child.delivered(key) == list(range(1, 306))
        assert "taking events after" in broker.log_text()
    finally:
        child.kill()
        broker.kill()


def test_a_broker_sigkilled_under_load_never_gives_a_seq_twice(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db"), "--history", "25000", "--history-bytes", "100000000").start()
    keys = KEYS[:2]
    child = SubscriberProcess(broker, keys)
    pub = Publisher(broker.endpoints["ingress"], context=zctx)
    stop = threading.Event()

    def flood() -> None:  # at most 40,000: the history holds every event of both keys
        for sent in range(40_000):
            if stop.is_set():
                return
            pub.publish(make_order(*keys[sent % 2], order_id=str(sent)))
            if sent % 50 == 49:
                time.sleep(0.01)  # the flood's pace, about 5,000 events/s: a rate, not a condition

    pusher = threading.Thread(target=flood)
    try:
        pusher.start()
        for kill in range(1, 4):
            # Killed when the subscriber has seen enough, not right after a stats answer (which the
            # broker gives between batches): so the SIGKILL lands anywhere in a batch.
            wanted = 2000 * kill
            wait_until(lambda: sum(len(child.delivered(k)) for k in keys) >= wanted, what="the flood under way")  # noqa: B023  # runs before the loop moves on
            broker.kill()  # what was published is committed; the rest never was, and is lost (PUSH is at most once)
            broker.start()
        stop.set()
        pusher.join(30)
        for key in keys:  # last in the PUSH queue: once they are sequenced, so is everything before them
            pub.publish(make_order(*key, order_id="end"))
        for key in keys:
            wait_until(lambda: replay_all(zctx, broker, key, newest=None)[1][-1][1] == "end", what="the flood sequenced")  # noqa: B023
            history = replay_all(zctx, broker, key, newest=None)[1]
            head = history[-1][0]
            wait_until(lambda: bool(child.resyncs) or max(child.delivered(key), default=0) == head, what="the subscriber at the head")  # noqa: B023
            assert child.resyncs == []
            assert child.delivered(key) == list(range(1, head + 1))
            assert child.order_ids(key) == dict(history), "a seq delivered before the crash was given to another event"
    finally:
        stop.set()
        pusher.join(30)
        pub.close()
        child.kill()
        broker.kill()


def test_a_relay_resending_after_a_broker_sigkill_is_recognised(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db")).start()
    topic, stream = key_topic(KEYS[0]), "orders:5eed"
    client = AckClient(zctx, broker.endpoints["ack_ingress"])
    try:
        for n in range(1, 6):
            client.send(stream, n, n - 1, topic, codec.pack(make_order(*KEYS[0], order_id=str(n)).to_wire()))
        client.acked(stream, 5)
        broker.kill()
        broker.start()
        client.close()
        client = AckClient(zctx, broker.endpoints["ack_ingress"])
        for n in range(1, 8):  # a relay that never marked its rows sent sends them all again
            client.send(stream, n, n - 1, topic, codec.pack(make_order(*KEYS[0], order_id=str(n)).to_wire()))
        client.acked(stream, 7)
        assert [order_id for _, order_id in replay_all(zctx, broker, KEYS[0])[1]] == [str(n) for n in range(1, 8)]
    finally:
        client.close()
        broker.kill()


def run_broker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bus.broker", *FREE, *args], capture_output=True, text=True, timeout=20)


def test_an_unreadable_journal_is_one_log_line_and_exit_1(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    journal.write_bytes(b"not a journal, and not SQLite either" * 200)
    result = run_broker("--journal", str(journal))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(journal) in lines[0] and "unreadable" in lines[0] and "Traceback" not in result.stderr


def test_a_journal_held_by_another_broker_is_one_log_line_and_exit_1(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    broker = BrokerProcess(tmp_path, "--journal", str(journal)).start()
    try:
        result = run_broker("--journal", str(journal))
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "locked" in result.stderr
    finally:
        broker.kill()
