"""A keyed bus refuses strangers: a real broker with --bus-keys, real CURVE sockets, keyless and rogue peers.

Each client here has a zmq context of its own with its host's keys installed
(bus/security.py), so keyed and keyless peers live side by side in the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from bus import codec, protocol, security
from bus.curvekeys import BusKeys, make_deployment
from bus.events import DisconnectMessage
from bus.publisher import Publisher, topic_of
from bus.roles import Domain, Role, may_connect, may_send
from bus.topics import CONTROL_TOPIC, StreamKey, key_topic
from tests.bus.conftest import BrokerProcess, make_order
from tests.waiting import wait_until

HOSTS = {
    "broker": frozenset({"server"}),
    "publisher": frozenset({"publisher"}),
    "subscriber": frozenset({"subscriber"}),
    "control": frozenset({"control"}),
}
KEY = StreamKey(7, 3)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    make_deployment(str(folder), dict(HOSTS))
    return folder / "hosts"


@pytest.fixture
def keyed_broker(tmp_path: Path, keys: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path, "--bus-keys", str(keys / "broker")).start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


class Host:
    """A context holding one host's keys (or none): the peers it makes are that host's."""

    def __init__(self, keys: Path | None) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        if keys is not None:
            security.install(self.ctx, BusKeys.load(str(keys), server=False, client=True))
        self.sockets: list[zmq.Socket[Any]] = []

    def socket(self, kind: int, endpoint: str) -> zmq.Socket[Any]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        security.connect(sock, endpoint)
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        security.uninstall(self.ctx)
        self.ctx.destroy(linger=0)


@pytest.fixture
def hosts(keys: Path) -> Iterator[Callable[[str | None], Host]]:
    made: list[Host] = []

    def host(name: str | None) -> Host:
        made.append(Host(keys / name if name else None))
        return made[-1]

    yield host
    for each in made:
        each.close()


def stats(host: Host, broker: BrokerProcess) -> dict[str, int]:
    dealer = host.socket(zmq.DEALER, broker.endpoints["replay"])
    dealer.setsockopt(zmq.RCVTIMEO, 5000)
    dealer.send_multipart([protocol.STATS])
    status, payload = dealer.recv_multipart()
    assert status == protocol.STATS
    return codec.unpack_map(payload)  # type: ignore[return-value]


def counted(answer: dict[str, int], counters: str) -> int:
    return sum(answer[name] for name in counters.split("+"))


def subscribed(host: Host, broker: BrokerProcess, topic: bytes) -> zmq.Socket[Any]:
    """A SUB whose subscription is live: the broker's head marker for `topic` arrived."""
    sub = host.socket(zmq.SUB, broker.endpoints["publish"])
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.subscribe(topic)
    if topic != CONTROL_TOPIC:
        frames = sub.recv_multipart()
        assert frames[0] == topic and frames[2] == protocol.HEAD_PAYLOAD
    return sub


def forged_event(user_id: int = KEY.user_id) -> tuple[bytes, bytes]:
    event = make_order(user_id, KEY.strategy_id, "forged")
    return key_topic(event.key), codec.pack({**event.to_wire(), "published_ns": 1})


def forged_disconnect() -> tuple[bytes, bytes]:
    message = DisconnectMessage(KEY.user_id, KEY.strategy_id, "permission_revoked", "forged")
    return topic_of(message), codec.pack({**message.to_wire(), "published_ns": 1})


def test_roles_open_only_their_sockets_and_topics() -> None:
    table = [
        ({Role.PUBLISHER}, Domain.INGRESS, True), ({Role.PUBLISHER}, Domain.ACK_INGRESS, True),
        ({Role.PUBLISHER}, Domain.WAKEUP, True), ({Role.PUBLISHER}, Domain.PUBLISH, False),
        ({Role.PUBLISHER}, Domain.REPLAY, False), ({Role.SUBSCRIBER}, Domain.PUBLISH, True),
        ({Role.SUBSCRIBER}, Domain.REPLAY, True), ({Role.SUBSCRIBER}, Domain.INGRESS, False),
        ({Role.SUBSCRIBER}, Domain.ACK_INGRESS, False), ({Role.SUBSCRIBER}, Domain.WAKEUP, False),
        ({Role.CONTROL}, Domain.INGRESS, True), ({Role.CONTROL}, Domain.ACK_INGRESS, False),
        ({Role.CONTROL}, Domain.PUBLISH, False), ({Role.SUBSCRIBER, Role.CONTROL}, Domain.INGRESS, True),
        (set(), Domain.INGRESS, False),
    ]
    assert [may_connect(roles, domain) for roles, domain, _ in table] == [allowed for *_, allowed in table]
    sends = [
        ({Role.PUBLISHER}, b"k/1/2/", True), ({Role.PUBLISHER}, CONTROL_TOPIC, False),
        ({Role.CONTROL}, CONTROL_TOPIC, True), ({Role.CONTROL}, b"k/1/2/", False),
        ({Role.SUBSCRIBER}, b"k/1/2/", False), ({Role.PUBLISHER, Role.CONTROL}, CONTROL_TOPIC, True),
    ]
    assert [may_send(roles, topic) for roles, topic, _ in sends] == [allowed for *_, allowed in sends]


def test_an_authorized_publisher_reaches_an_authorized_subscriber(keyed_broker: BrokerProcess, hosts: Callable[[str | None], Host]) -> None:
    sub = subscribed(hosts("subscriber"), keyed_broker, key_topic(KEY))
    control = subscribed(hosts("subscriber"), keyed_broker, CONTROL_TOPIC)
    publisher_host, control_host = hosts("publisher"), hosts("control")
    with Publisher(keyed_broker.endpoints["ingress"], context=publisher_host.ctx) as publisher:
        publisher.publish(make_order(KEY.user_id, KEY.strategy_id, "o-1"))
        topic, header, payload = sub.recv_multipart()
    assert (topic, protocol.unpack_header(header).seq, codec.unpack_map(payload)["order_id"]) == (key_topic(KEY), 1, "o-1")
    with Publisher(keyed_broker.endpoints["ingress"], context=control_host.ctx) as publisher:
        publisher.publish(DisconnectMessage(KEY.user_id, KEY.strategy_id, "permission_revoked", "by the admin"))
        frames = wait_until(lambda: next((f for f in _drain(control) if codec.unpack_map(f[2])["kind"] == "disconnect"), None),
                            what="the control message")
    assert codec.unpack_map(frames[2])["message"] == "by the admin"


def _drain(sub: zmq.Socket[Any]) -> list[list[bytes]]:
    frames = []
    while sub.poll(50):
        frames.append(sub.recv_multipart())
    return frames


# A peer that must be refused, and the counter its refusal moves (bus/security.py AuthStats). A keyless
# peer is seen as a mechanism mismatch or, depending on how far its greeting got, a failed handshake.
NO_KEY = "auth_refused_no_key+auth_refused_handshake"
REFUSED = [
    pytest.param(None, "ingress", forged_event, NO_KEY, id="no-key-publishes"),
    pytest.param("unknown", "ingress", forged_event, "auth_refused_unknown_key", id="unknown-key-publishes"),
    pytest.param("subscriber", "ingress", forged_event, "auth_refused_role", id="subscriber-key-publishes"),
    pytest.param("subscriber", "ingress", forged_disconnect, "auth_refused_role", id="subscriber-key-disconnects"),
    pytest.param("control", "ingress", forged_event, "auth_refused_messages", id="control-key-forges-an-event"),
    pytest.param("publisher", "ingress", forged_disconnect, "auth_refused_messages", id="publisher-key-disconnects"),
    pytest.param("other-server", "ingress", forged_event, "auth_refused_handshake", id="another-server-key"),
]


@pytest.mark.parametrize(("who", "socket_name", "message", "counter"), REFUSED)
def test_a_refused_peer_is_counted_and_its_message_never_sequenced(
    keyed_broker: BrokerProcess, hosts: Callable[[str | None], Host], keys: Path, tmp_path: Path,
    who: str | None, socket_name: str, message: Callable[[], tuple[bytes, bytes]], counter: str,
) -> None:
    rogue = hosts(None) if who in (None, "unknown", "other-server") else hosts(who)
    if who == "unknown":
        make_deployment(str(tmp_path / "elsewhere"), {"stranger": frozenset({"publisher"})})
        _install_foreign(rogue, keys / "broker" / "server.key", tmp_path / "elsewhere" / "hosts" / "stranger")
    elif who == "other-server":
        make_deployment(str(tmp_path / "elsewhere"), {"stranger": frozenset({"publisher"})})
        _install_foreign(rogue, None, tmp_path / "elsewhere" / "hosts" / "stranger")
    watcher = hosts("subscriber")
    sub = subscribed(watcher, keyed_broker, key_topic(KEY))
    control = subscribed(watcher, keyed_broker, CONTROL_TOPIC)
    push = rogue.socket(zmq.PUSH, keyed_broker.endpoints[socket_name])
    push.send_multipart(message(), zmq.NOBLOCK)  # refused at the handshake, it stays queued in the PUSH
    wait_until(lambda: counted(stats(watcher, keyed_broker), counter) >= 1, what=f"{counter} to count the rogue peer")
    with Publisher(keyed_broker.endpoints["ingress"], context=hosts("publisher").ctx) as publisher:
        publisher.publish(make_order(KEY.user_id, KEY.strategy_id, "real"))
        _topic, header, payload = sub.recv_multipart()
    assert (protocol.unpack_header(header).seq, codec.unpack_map(payload)["order_id"]) == (1, "real")
    assert all(codec.unpack_map(frames[2])["kind"] != "disconnect" for frames in _drain(control))


def _install_foreign(host: Host, server_key: Path | None, folder: Path) -> None:
    """Keys of another deployment; with `server_key`, aimed at this broker (an unknown client key)."""
    foreign = BusKeys.load(str(folder), server=False, client=True)
    if server_key is not None:
        real = BusKeys.load(str(server_key.parent), server=False, client=False)
        foreign = BusKeys(foreign.folder, real.server_public, None, foreign.client_public, foreign.client_secret)
    security.install(host.ctx, foreign)


def test_a_subscriber_without_a_key_receives_nothing(keyed_broker: BrokerProcess, hosts: Callable[[str | None], Host]) -> None:
    rogue = hosts(None).socket(zmq.SUB, keyed_broker.endpoints["publish"])
    rogue.subscribe(b"")
    watcher = hosts("subscriber")
    sub = subscribed(watcher, keyed_broker, key_topic(KEY))
    wait_until(lambda: counted(stats(watcher, keyed_broker), NO_KEY) >= 1, what="the keyless SUB to be refused")
    with Publisher(keyed_broker.endpoints["ingress"], context=hosts("publisher").ctx) as publisher:
        publisher.publish(make_order(KEY.user_id, KEY.strategy_id, "private"))
        sub.recv_multipart()
    assert not rogue.poll(200)  # the authorized subscriber has it; the keyless one was never connected


# Bad key folders: (what to break, the words of the one line).
BAD_KEYS = [
    pytest.param("missing-folder", "not a folder of bus keys", id="missing-folder"),
    pytest.param("no-server-key", "server.key: missing", id="no-server-key"),
    pytest.param("secret-readable", "lets others read a secret key", id="secret-0644"),
    pytest.param("garbage-key", "not a 40-character z85 CURVE key", id="garbage-key"),
    pytest.param("mismatched-secret", "not the secret of", id="mismatched-server-secret"),
    pytest.param("no-client-key", "client.key_secret: missing", id="no-client-key"),
]


def _break(folder: Path, how: str) -> Path:
    if how == "missing-folder":
        return folder / "nothing-here"
    if how == "no-server-key":
        (folder / "server.key").unlink()
    elif how == "secret-readable":
        os.chmod(folder / "server.key_secret", 0o644)
    elif how == "garbage-key":
        (folder / "server.key").write_text('curve\n    public-key = "not-a-key"\n')
    elif how == "mismatched-secret":
        other = folder.parent / "publisher" / "client.key_secret"
        (folder / "server.key_secret").unlink()
        (folder / "server.key_secret").write_bytes(other.read_bytes())
        os.chmod(folder / "server.key_secret", 0o600)
    elif how == "no-client-key":
        pass  # the broker host's folder has no client key; a connecting process needs one
    return folder


@pytest.mark.parametrize(("how", "words"), BAD_KEYS)
def test_bad_key_files_are_one_line_at_start(keys: Path, tmp_path: Path, how: str, words: str) -> None:
    folder = _break(keys / "broker", how)
    command = [sys.executable, "-m", "producers.replay", "--bus-keys", str(folder), "--orders", "tcp://127.0.0.1:1",
               str(tmp_path / "none.jsonl")] if how == "no-client-key" else [
               sys.executable, "-m", "bus.broker", "--bus-keys", str(folder), *_free_tcp()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (1, 1), done.stderr
    assert words in lines[0] and "cannot start: bus keys" in lines[0]


def _free_tcp() -> list[str]:
    return [arg for name in ("ingress", "publish", "replay", "ack-ingress") for arg in (f"--{name}", "tcp://127.0.0.1:*")]
