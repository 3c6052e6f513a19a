"""The acknowledged ingress of a real broker process, driven by a real DEALER (CONTRACT section 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import codec, protocol
from bus.protocol import Answer
from bus.topics import StreamKey, key_topic
from tests.bus.ack_client import AckClient
from tests.bus.conftest import BrokerProcess, broker_stats, make_order
from tests.bus.conftest import history as broker_history
from tests.waiting import wait_until

KEY = StreamKey(3, 4)
TOPIC = key_topic(KEY)
STREAM = "orders:0123abcd"


def event(number: int) -> bytes:
    return codec.pack(make_order(*KEY, order_id=f"row-{number}").to_wire())


def history(ctx: zmq.Context[Any], broker: BrokerProcess) -> list[str]:
    """The order ids the broker's history holds for KEY, in seq order."""
    return [payload["order_id"] for _, payload in broker_history(ctx, broker, KEY)[1]]


def send_rows(client: AckClient, numbers: list[int], prev: int, stream: str = STREAM) -> None:
    """Rows `numbers` in order, the first one claiming `prev` as the row sent before it."""
    for number in numbers:
        client.send(stream, number, prev, TOPIC, event(number))
        prev = number


@pytest.fixture
def client(broker: BrokerProcess, zctx: zmq.Context[Any]) -> Any:
    dealer = AckClient(zctx, broker.endpoints["ack_ingress"])
    yield dealer
    dealer.close()


def test_events_are_acknowledged_and_a_resent_event_is_not_sequenced_twice(broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient) -> None:
    send_rows(client, list(range(1, 11)), 0)
    client.acked(STREAM, 10)
    send_rows(client, list(range(5, 11)), 4)  # a relay that crashed before marking rows 5..10 sent
    client.wait_for(lambda a: sum(x.verb == protocol.ACK for x in a) >= 2 and a[-1] == Answer(protocol.ACK, STREAM, 10), "the duplicates' ack")
    assert history(zctx, broker) == [f"row-{n}" for n in range(1, 11)]
    stats = broker_stats(zctx, broker.endpoints["replay"])
    assert (stats["ack_sequenced"], stats["ack_duplicates"], stats["published"], stats["streams"]) == (10, 6, 10, 1)
    assert all(a.verb == protocol.ACK for a in client.answers)


def test_a_gap_gets_resend_from_last_and_nothing_after_it_is_sequenced(broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient) -> None:
    send_rows(client, [1, 2], 0)
    client.acked(STREAM, 2)
    send_rows(client, [4, 5], 3)  # row 3 was lost in transit
    client.wait_for(lambda a: Answer(protocol.RESEND, STREAM, 2) in a, "resend after 2")
    assert history(zctx, broker) == ["row-1", "row-2"]
    send_rows(client, [3, 4, 5], 2)
    client.acked(STREAM, 5)
    assert history(zctx, broker) == ["row-1", "row-2", "row-3", "row-4", "row-5"]
    assert broker_stats(zctx, broker.endpoints["replay"])["ack_resends"] == 2


def test_an_unknown_stream_is_refused_after_its_start_until_hello_says_where_it_restarts(
    broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient
) -> None:
    # A broker restarted without a journal: the relay had 5 and 6 in flight to the one before, and
    # sends 7. Taking 7 would acknowledge 5 and 6, which may never have arrived.
    send_rows(client, [7, 8], 6)
    client.wait_for(lambda a: Answer(protocol.UNKNOWN, STREAM, 7) in a, "unknown at 7")
    assert history(zctx, broker) == [] and broker_stats(zctx, broker.endpoints["replay"])["streams"] == 0
    client.send_raw(*protocol.hello_message(STREAM, 4))  # the relay confirmed up to 4
    client.acked(STREAM, 4)
    send_rows(client, [5, 6, 7, 8], 4)
    client.acked(STREAM, 8)
    assert history(zctx, broker) == ["row-5", "row-6", "row-7", "row-8"]
    answered = len(client.answers)
    client.send_raw(*protocol.hello_message(STREAM, 2))  # a late hello of a known stream: its last
    client.wait_for(lambda a: len(a) > answered, "the late hello's answer")
    assert client.answers[answered:] == [Answer(protocol.ACK, STREAM, 8)]
    stats = broker_stats(zctx, broker.endpoints["replay"])
    assert (stats["ack_unknown"], stats["ack_hellos"], stats["ack_sequenced"]) == (2, 2, 4)


@pytest.mark.expect_log("dropped malformed frame")
def test_a_malformed_event_is_rejected_with_its_reason_and_counts_as_handled(broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient) -> None:
    client.send(STREAM, 1, 0, TOPIC, event(1))
    client.send(STREAM, 2, 1, TOPIC, codec.pack({**make_order(*KEY).to_wire(), "quantity": "lots"}))
    client.send(STREAM, 3, 2, key_topic(StreamKey(3, 40)), event(3))  # another key's topic
    client.send(STREAM, 4, 3, TOPIC, event(4))
    client.acked(STREAM, 4)
    rejects = [a for a in client.answers if a.verb == protocol.REJECT]
    assert [(a.stream, a.number) for a in rejects] == [(STREAM, 2), (STREAM, 3)]
    assert "quantity" in rejects[0].reason and "does not match" in rejects[1].reason
    assert history(zctx, broker) == ["row-1", "row-4"]
    answered = len(client.answers)
    # A rejected row re-sent (a relay killed before it wrote the reject) is rejected again, never a second chance.
    client.send(STREAM, 2, 1, TOPIC, event(2))
    client.wait_for(lambda a: len(a) >= answered + 2, "the reject again and the duplicate's ack")
    # and its ack stops below 3, the next rejection: a relay that lost both must hear of 3 again too
    assert [(a.verb, a.number) for a in client.answers[answered:]] == [(protocol.REJECT, 2), (protocol.ACK, 2)]
    assert "quantity" in client.answers[answered].reason
    assert history(zctx, broker) == ["row-1", "row-4"]
    stats = broker_stats(zctx, broker.endpoints["replay"])
    assert (stats["ack_rejected"], stats["ack_rejected_again"]) == (2, 1)


BAD_MESSAGES: list[tuple[str, list[bytes]]] = [
    ("no frames after the verb", [protocol.PUB]),
    ("unknown verb", [b"publish", codec.pack((STREAM, 1, 0)), TOPIC, event(1)]),
    ("bad envelope msgpack", [protocol.PUB, b"\xc1", TOPIC, event(1)]),
    ("empty stream name", [protocol.PUB, codec.pack(("", 1, 0)), TOPIC, event(1)]),
    ("stream name of 65 characters", [protocol.PUB, codec.pack(("s" * 65, 1, 0)), TOPIC, event(1)]),
    ("event id 0", [protocol.PUB, codec.pack((STREAM, 0, 0)), TOPIC, event(1)]),
    ("event id beyond 2^63", [protocol.PUB, codec.pack((STREAM, 2**63, 0)), TOPIC, event(1)]),
    ("prev id not below the event id", [protocol.PUB, codec.pack((STREAM, 5, 5)), TOPIC, event(1)]),
    ("envelope as a map", [protocol.PUB, codec.pack({"stream": STREAM}), TOPIC, event(1)]),
]


@pytest.mark.expect_log("dropped malformed frame")
def test_a_message_whose_envelope_cannot_be_read_gets_no_answer_and_is_counted(broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient) -> None:
    for _name, frames in BAD_MESSAGES:
        client.send_raw(*frames)
    send_rows(client, [1], 0)
    client.acked(STREAM, 1)
    assert client.answers == [Answer(protocol.ACK, STREAM, 1)]
    stats = broker_stats(zctx, broker.endpoints["replay"])
    assert (stats["ack_malformed"], stats["ack_received"]) == (len(BAD_MESSAGES), len(BAD_MESSAGES) + 1)
    assert "acknowledged ingress" in broker.log_text()


def test_streams_are_acknowledged_each_to_its_own_sender(broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient) -> None:
    other = AckClient(zctx, broker.endpoints["ack_ingress"])
    try:
        send_rows(client, [1, 2], 0)
        send_rows(other, [7], 0, stream="positions:feedbeef")
        client.acked(STREAM, 2)
        other.acked("positions:feedbeef", 7)
        assert {a.stream for a in client.answers} == {STREAM}
        assert {a.stream for a in other.answers} == {"positions:feedbeef"}
    finally:
        other.close()


def test_an_ack_is_sent_only_after_the_journal_commit(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    journal = tmp_path / "journal.db"
    broker = BrokerProcess(tmp_path, "--journal", str(journal), "--history", "1000").start()
    client = AckClient(zctx, broker.endpoints["ack_ingress"])
    try:
        for number in range(1, 201):
            client.send(STREAM, number, number - 1, TOPIC, event(number))
            if number % 50 == 0:
                client.acked(STREAM, number)
                broker.kill()  # the instant the ack arrives: what it confirmed must be on disk
                broker.start()
                client.close()
                client = AckClient(zctx, broker.endpoints["ack_ingress"])
        assert history(zctx, broker) == [f"row-{n}" for n in range(1, 201)]
        client.send(STREAM, 200, 199, TOPIC, event(200))  # the restarted broker still knows the stream
        client.wait_for(lambda a: a[-1:] == [Answer(protocol.ACK, STREAM, 200)], "the duplicate's ack")
        assert broker_stats(zctx, broker.endpoints["replay"])["ack_duplicates"] == 1
    finally:
        client.close()
        broker.kill()


def test_a_flood_of_new_streams_does_not_make_the_broker_forget_one_and_sequence_its_resent_events_twice(
    broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient
) -> None:
    send_rows(client, [1, 2, 3, 4, 5], 0)
    client.acked(STREAM, 5)
    flood = AckClient(zctx, broker.endpoints["ack_ingress"])
    other = key_topic(StreamKey(9, 9))
    payload = codec.pack(make_order(9, 9).to_wire())
    try:
        for number in range(10_050):  # more than the 10,000 streams the broker used to keep
            flood.send(f"flood:{number}", 1, 0, other, payload)
        wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["ack_received"] >= 10_050 + 5,
                   timeout=30, what="the flood taken")
    finally:
        flood.close()
    # The victim's relay never got the acks of 3..5 (lost in transit) and says so; then it resends them.
    answered = len(client.answers)
    client.send_raw(*protocol.hello_message(STREAM, 2))
    send_rows(client, [3, 4, 5], 2)
    client.wait_for(lambda a: len(a) > answered and a[-1] == Answer(protocol.ACK, STREAM, 5), "the resend's ack")
    assert history(zctx, broker) == [f"row-{n}" for n in range(1, 6)]  # nothing sequenced twice


def bad_event(number: int) -> bytes:
    return codec.pack({**make_order(*KEY, order_id=f"row-{number}").to_wire(), "quantity": "lots"})


def answers_after(client: AckClient, answered: int, last: int) -> list[tuple[bytes, int]]:
    """(verb, number) of the answers after the first `answered`, once one of them is `ack last`."""
    client.wait_for(lambda a: Answer(protocol.ACK, STREAM, last) in a[answered:], f"ack {last}")
    return [(a.verb, a.number) for a in client.answers[answered:]]


@pytest.mark.expect_log("dropped malformed frame")
def test_a_stream_heard_on_a_new_connection_is_told_its_rejections_before_any_ack(
    broker: BrokerProcess, zctx: zmq.Context[Any], client: AckClient
) -> None:
    # The relay's connection went (a restart, a network cut) perhaps with the reject of 2 still queued to
    # it: its new connection (a new ROUTER identity) hears of 2 again before the ack that covers it.
    client.send(STREAM, 1, 0, TOPIC, event(1))
    client.send(STREAM, 2, 1, TOPIC, bad_event(2))
    client.send(STREAM, 3, 2, TOPIC, event(3))
    assert (protocol.REJECT, 2) in answers_after(client, 0, 3)
    again = AckClient(zctx, broker.endpoints["ack_ingress"])
    try:
        again.send(STREAM, 4, 3, TOPIC, event(4))
        assert answers_after(again, 0, 4) == [(protocol.REJECT, 2), (protocol.ACK, 4)]  # failed before: [ack 4]
        assert "quantity" in again.answers[0].reason
        again.send(STREAM, 5, 4, TOPIC, event(5))
        assert answers_after(again, 2, 5) == [(protocol.ACK, 5)]  # told once per connection
    finally:
        again.close()
    assert history(zctx, broker) == ["row-1", "row-3", "row-4", "row-5"]
    assert broker_stats(zctx, broker.endpoints["replay"])["ack_rejects_untold"] == 0


@pytest.mark.expect_log("dropped malformed frame")
def test_a_broker_restarted_on_its_journal_tells_the_restored_rejections_before_the_next_ack(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    # Whether a `reject` queued before a SIGKILL left the process is unknown: after the restart every
    # remembered rejection is sent again before an ack passes it (a dropped one stayed untold in memory only).
    broker = BrokerProcess(tmp_path, "--journal", str(tmp_path / "journal.db")).start()
    client = AckClient(zctx, broker.endpoints["ack_ingress"])
    try:
        client.send(STREAM, 1, 0, TOPIC, bad_event(1))
        client.send(STREAM, 2, 1, TOPIC, event(2))
        assert answers_after(client, 0, 2) == [(protocol.REJECT, 1), (protocol.ACK, 2)]
        broker.kill()
        broker.start()
        client.send(STREAM, 3, 2, TOPIC, event(3))
        assert answers_after(client, 2, 3) == [(protocol.REJECT, 1), (protocol.ACK, 3)]  # failed before: [ack 3]
        assert "quantity" in client.answers[2].reason
        assert history(zctx, broker) == ["row-2", "row-3"]
    finally:
        client.close()
        broker.kill()
