"""The broker protocol's words are those of CONTRACT section 2 (the one test that spells them out)."""

from __future__ import annotations

from bus import codec, protocol


def test_the_protocol_words_are_the_contracts() -> None:
    assert (protocol.REPLAY, protocol.OK, protocol.GONE, protocol.STATS, protocol.ERROR) == (
        b"replay", b"ok", b"gone", b"stats", b"error",
    )
    assert protocol.HEAD_ONLY == -1
    assert codec.unpack_map(protocol.HEAD_PAYLOAD) == {"kind": "_head"}
    assert codec.unpack_map(protocol.HEARTBEAT_PAYLOAD) == {"kind": "_heartbeat"}


def test_a_replay_request_is_verb_topic_and_epoch_after_seq() -> None:
    verb, topic, position = protocol.replay_request(b"k/1/2/", 7, 3)
    assert (verb, topic) == (b"replay", b"k/1/2/")
    assert protocol.unpack_int_pair(position) == (7, 3)


def test_the_header_is_four_msgpack_integers_in_contract_order() -> None:
    frame = protocol.pack_header(1, 2, 3, 4)
    assert frame == bytes([0x94, 1, 2, 3, 4])
    assert protocol.unpack_header(frame) == protocol.Header(epoch=1, seq=2, published_ns=3, sequenced_ns=4)


def test_private_kinds_are_those_starting_with_an_underscore() -> None:
    assert protocol.is_private("_head") and protocol.is_private("_anything") and protocol.is_private(None)
    assert not protocol.is_private("order_update")
