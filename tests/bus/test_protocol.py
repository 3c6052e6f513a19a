"""The broker protocol's words are those of CONTRACT section 2 (the one test that spells them out)."""

from __future__ import annotations

import pytest

from bus import codec, protocol
from bus.errors import DecodeError


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


def test_the_acknowledged_ingress_speaks_the_contracts_frames() -> None:
    assert (protocol.PUB, protocol.ACK, protocol.RESEND, protocol.REJECT) == (b"pub", b"ack", b"resend", b"reject")
    verb, envelope, topic, payload = protocol.pub_message("orders:ab", 7, 6, b"k/1/2/", b"p")
    assert (verb, envelope, topic, payload) == (b"pub", b"\x93\xa9orders:ab\x07\x06", b"k/1/2/", b"p")
    assert protocol.unpack_envelope(envelope) == ("orders:ab", 7, 6)
    assert protocol.ack_message(b"id", "s", 9) == [b"id", b"ack", b"\x92\xa1s\x09"]
    assert protocol.resend_message(b"id", "s", 9) == [b"id", b"resend", b"\x92\xa1s\x09"]
    assert protocol.reject_message(b"id", "s", 9, "why") == [b"id", b"reject", b"\x92\xa1s\x09", b"why"]
    assert protocol.unknown_message(b"id", "s", 9) == [b"id", b"unknown", b"\x92\xa1s\x09"]
    assert protocol.hello_message("s", 0) == [b"hello", b"\x92\xa1s\x00"]
    assert protocol.unpack_hello(b"\x92\xa1s\x00") == ("s", 0)
    for body in (codec.pack(("s", -1)), codec.pack(("", 1)), codec.pack(("s",)), b"\xc1"):
        with pytest.raises(DecodeError):
            protocol.unpack_hello(body)


def test_a_relay_reads_each_answer_and_nothing_else() -> None:
    for message in (protocol.ack_message(b"i", "s", 3), protocol.resend_message(b"i", "s", 3), protocol.reject_message(b"i", "s", 3, "bad"),
                    protocol.unknown_message(b"i", "s", 3)):
        answer = protocol.parse_answer(message[1:])
        assert (answer.verb, answer.stream, answer.number) == (message[1], "s", 3)
    assert protocol.parse_answer(protocol.reject_message(b"i", "s", 3, "bad")[1:]).reason == "bad"
    # `last` 0: the broker's `ack` of a `hello 0` (a stream with nothing confirmed yet); it was refused as malformed
    assert protocol.parse_answer(protocol.ack_message(b"i", "s", 0)[1:]) == (protocol.ACK, "s", 0, "")
    assert protocol.parse_answer(protocol.resend_message(b"i", "s", 0)[1:]) == (protocol.RESEND, "s", 0, "")
    for frames in ([b"ack"], [b"ok", codec.pack(("s", 1))], [b"ack", codec.pack(("s", -1))], [b"unknown", codec.pack(("s", 0))],
                   [b"reject", codec.pack(("s", 1))], [b"reject", codec.pack(("s", 0)), b"bad"]):
        with pytest.raises(DecodeError):
            protocol.parse_answer(frames)
