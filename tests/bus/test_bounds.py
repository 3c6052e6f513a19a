"""The bus's bounds in bytes (issue 11): frame size, payload size, history bytes, unread replay answers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import zmq

from bench.busflood import memory_kib, payload
from bus import codec, peersock, protocol
from bus.broker import Broker
from bus.broker_config import BrokerConfig
from bus.publisher import Publisher
from bus.sequencer import Sequencer
from bus.topics import StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, broker_stats, request
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOPIC = key_topic(StreamKey(1, 1))
ANY = "tcp://127.0.0.1:*"
MiB = 1024


def test_every_peer_facing_socket_of_the_broker_and_publisher_has_the_frame_limit() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        broker = Broker(BrokerConfig(ingress=ANY, publish=ANY, replay=ANY, ack_ingress=ANY), ctx)
        publisher = Publisher(broker.endpoints["ingress"], context=ctx)
        sockets = [*broker._sockets, publisher._socket]
        assert [s.getsockopt(zmq.MAXMSGSIZE) for s in sockets] == [peersock.MAX_MESSAGE_BYTES] * len(sockets)
        publisher.close()
        broker._close(linger=0)
    finally:
        ctx.destroy(linger=0)


# Production code makes its sockets through bus/peersock.py only; a new one elsewhere fails here.
_SOCKET_CALL = re.compile(r"\.socket\(zmq\.|zmq\.Socket\(")


@pytest.mark.parametrize("package", ["bus", "producers", "streamer", "store", "web"])
def test_no_socket_is_made_outside_peersock(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "peersock.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _SOCKET_CALL.search(line) and "peersock." not in line
    ]
    assert offenders == []


def _rss_bound_kib(before_kib: int, allowed_mib: int) -> int:
    return before_kib + allowed_mib * MiB


def test_a_frame_over_the_limit_costs_the_broker_nothing_and_the_next_peer_is_served(
    broker: BrokerProcess, zctx: zmq.Context[Any]
) -> None:
    assert broker.proc is not None
    before = memory_kib(broker.proc.pid, "VmRSS")
    big = zctx.socket(zmq.PUSH)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(broker.endpoints["ingress"])
    big.send_multipart([TOPIC, b"\x00" * (200 * 1024 * 1024)])
    good = zctx.socket(zmq.PUSH)
    good.setsockopt(zmq.LINGER, 1000)
    good.connect(broker.endpoints["ingress"])
    good.send_multipart([TOPIC, payload(400)])
    wait_until(lambda: broker_stats(zctx, broker.endpoints["replay"])["published"] == 1, what="the good peer served")
    # Before: +316..368 MiB (the frame read whole, then copied). The bound is far below one copy.
    assert memory_kib(broker.proc.pid, "VmHWM") < _rss_bound_kib(before, 50)
    assert broker_stats(zctx, broker.endpoints["replay"])["received"] == 1  # the big frame never reached Python
    big.close()
    good.close()


# Payload sizes around --max-payload 4096: (size, refused). One line a case.
PAYLOAD_SIZES = [
    (4096, False),
    (4097, True),
    (65_536, True),
    (1_000_000, True),
]


@pytest.mark.expect_log("payloads over --max-payload 4096 bytes refused")
def test_payloads_over_max_payload_are_refused_counted_and_logged_once(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    process = BrokerProcess(tmp_path, "--max-payload", "4096").start()
    try:
        push = zctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(process.endpoints["ingress"])
        bodies = []
        for size, _ in PAYLOAD_SIZES:
            body = payload(size)
            body = codec.pack({**codec.unpack_map(body), "note": codec.unpack_map(body)["note"] + "x" * (size - len(body))})
            assert len(body) == size
            bodies.append(body)
        for _ in range(50):  # a flood: still one line per interval
            for body in bodies:
                push.send_multipart([TOPIC, body])
        refused = 50 * sum(1 for _, r in PAYLOAD_SIZES if r)
        stats = wait_until(
            lambda: (s := broker_stats(zctx, process.endpoints["replay"]))["received"] == 50 * len(PAYLOAD_SIZES) and s,
            what="every payload read",
        )
        assert stats["refused_oversize"] == refused
        assert stats["published"] == 50 * len(PAYLOAD_SIZES) - refused
        line = wait_until(lambda: re.search(r"(\d+) payloads over --max-payload 4096 bytes refused", process.log_text()), what="the log line")
        # One line per 10 s interval saying how many (here: those refused by the first heartbeat), never one per event.
        assert process.log_text().count("payloads over --max-payload") == 1
        assert 1 <= int(line.group(1)) <= refused
        push.close()
    finally:
        process.kill()


def test_history_bytes_bound_a_key_and_a_resume_before_it_is_gone(tmp_path: Path, zctx: zmq.Context[Any]) -> None:
    process = BrokerProcess(tmp_path, "--max-payload", "1048576", "--history-bytes", "3000000").start()
    try:
        push = zctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(process.endpoints["ingress"])
        body = payload(600_000)
        for _ in range(40):
            push.send_multipart([TOPIC, body])
        stats = wait_until(lambda: (s := broker_stats(zctx, process.endpoints["replay"]))["published"] == 40 and s, what="the flood")
        assert stats["history_bytes"] <= 3_000_000
        epoch = stats["epoch"]
        kept = 3_000_000 // (len(body) + 40)  # 4 events of ~600 KB with their headers
        ok = request(zctx, process.endpoints["replay"], *protocol.replay_request(TOPIC, epoch, 40 - kept))
        assert ok[0] == protocol.OK and len(ok[2:]) == 2 * kept
        gone = request(zctx, process.endpoints["replay"], *protocol.replay_request(TOPIC, epoch, 40 - kept - 1))
        assert gone[0] == protocol.GONE
        push.close()
    finally:
        process.kill()


def test_a_replay_peer_that_never_reads_cannot_grow_the_broker_and_others_are_answered(
    tmp_path: Path, zctx: zmq.Context[Any]
) -> None:
    process = BrokerProcess(tmp_path, "--max-payload", "1048576").start()
    assert process.proc is not None
    try:
        push = zctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(process.endpoints["ingress"])
        for _ in range(100):
            push.send_multipart([TOPIC, payload(600_000)])
        stats = wait_until(lambda: (s := broker_stats(zctx, process.endpoints["replay"]))["published"] == 100 and s, what="the history")
        before = memory_kib(process.proc.pid, "VmRSS")
        rude = zctx.socket(zmq.DEALER)
        rude.setsockopt(zmq.LINGER, 0)
        rude.setsockopt(zmq.RCVHWM, 1)
        rude.connect(process.endpoints["replay"])
        for _ in range(200):
            rude.send_multipart(protocol.replay_request(TOPIC, stats["epoch"], 0))
        stats = wait_until(
            lambda: (s := broker_stats(zctx, process.endpoints["replay"]))["replay_requests"] == 200 and s, what="every request"
        )
        assert stats["replay_answers_dropped"] > 0
        # Queued at most: REPLAY_QUEUE answers of at most --history-bytes (1 MiB) each, plus the socket buffers.
        assert memory_kib(process.proc.pid, "VmHWM") < _rss_bound_kib(before, 64)
        # A well-behaved peer is answered in full meanwhile.
        assert request(zctx, process.endpoints["replay"], *protocol.replay_request(TOPIC, stats["epoch"], 99))[0] == protocol.OK
        rude.close()
        push.close()
    finally:
        process.kill()


# Per-key and total byte bounds of the sequencer: (history, history_bytes, total_bytes, events per key of
# (key, size), expected kept events per key). One line a case.
SEQUENCER_CASES: list[tuple[int, int, int, list[tuple[bytes, int]], dict[bytes, int]]] = [
    (100, 1000, 10_000, [(b"a", 300)] * 10, {b"a": 3}),
    (2, 10_000, 10_000, [(b"a", 300)] * 10, {b"a": 2}),
    (100, 100, 10_000, [(b"a", 300)] * 3, {b"a": 0}),
    (100, 1000, 1000, [(b"a", 300)] * 3 + [(b"b", 300)] * 2, {b"b": 2}),
    (100, 1000, 1500, [(b"a", 300)] * 3 + [(b"b", 300)] * 3, {b"b": 3}),
    (100, 1000, 2000, [(b"a", 300)] * 3 + [(b"b", 300)] * 3, {b"a": 3, b"b": 3}),
]


@pytest.mark.parametrize(("history", "history_bytes", "total", "events", "kept"), SEQUENCER_CASES)
def test_sequencer_byte_bounds(history: int, history_bytes: int, total: int, events: list[tuple[bytes, int]], kept: dict[bytes, int]) -> None:
    seq = Sequencer(1, history, history_bytes=history_bytes, total_bytes=total)
    for topic, size in events:
        seq.sequence(topic, b"p" * (size - 33), 0, 0)  # 33: the header's bytes
    found = {topic: len(ring) for topic, ring in seq._rings.items() if ring or topic in kept}
    assert found == kept
    assert seq.bytes_kept <= total
    for topic, count in kept.items():
        head = seq.head(topic)
        assert seq.replay(topic, 1, head - count).ok
        assert not seq.replay(topic, 1, head - count - 1).ok or head - count == 0


def test_a_subscriber_batch_holds_at_most_drain_bytes_and_one_message() -> None:
    import asyncio

    from bus import subreader

    async def scenario() -> list[int]:
        ctx: zmq.Context[Any] = zmq.Context()
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sizes: list[int] = []
        got = asyncio.Event()
        count = 0

        def on_batch(batch: subreader.Batch) -> None:
            nonlocal count
            sizes.append(sum(len(f) for frames in batch for f in frames))
            count += len(batch)
            if count >= 40:
                got.set()

        reader = subreader.SubReader(ctx, f"tcp://127.0.0.1:{port}", 1000, on_batch)
        reader.open(asyncio.get_running_loop(), [TOPIC])
        pub.recv()  # the subscription arrived
        body = b"x" * 1_000_000
        for _ in range(40):
            pub.send_multipart([TOPIC, b"h", body])
        await asyncio.wait_for(got.wait(), 30)
        reader.close()
        ctx.destroy(linger=0)
        return sizes

    sizes = asyncio.run(scenario())
    assert sum(sizes) == 40 * (1_000_000 + len(TOPIC) + 1)
    assert max(sizes) <= subreader.DRAIN_BYTES + 1_000_000 + len(TOPIC) + 1
