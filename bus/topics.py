"""The topic layout, in one place.

A stream key (user_id, strategy_id) travels on `k/<user_id>/<strategy_id>/`;
control messages on `c/`. The trailing slash makes prefix subscription exact:
the subscriber of (1, 1) never receives (1, 10) or (11, 1).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from bus.errors import DecodeError

CONTROL_TOPIC = b"c/"
MAX_ID = 2**63 - 1
_KEY_TOPIC = re.compile(rb"k/([1-9][0-9]{0,18})/([1-9][0-9]{0,18})/\Z")


class StreamKey(NamedTuple):
    """Whose events: the account owner's user id and the strategy id."""

    user_id: int
    strategy_id: int

    def __str__(self) -> str:
        return f"{self.user_id}:{self.strategy_id}"


def key_topic(key: StreamKey) -> bytes:
    """The topic of a stream key."""
    return ids_topic(key.user_id, key.strategy_id)


def ids_topic(user_id: int, strategy_id: int) -> bytes:
    """The topic of the stream key (user_id, strategy_id), without making the key (the broker's hot path)."""
    return b"k/%d/%d/" % (user_id, strategy_id)


def parse_key_topic(topic: bytes) -> StreamKey:
    """The stream key of a key topic; DecodeError for anything else."""
    match = _KEY_TOPIC.match(topic)
    if match is None:
        raise DecodeError(f"not a key topic: {topic[:40]!r}")
    user_id, strategy_id = int(match[1]), int(match[2])
    if user_id > MAX_ID or strategy_id > MAX_ID:
        raise DecodeError(f"id out of range in topic {topic[:40]!r}")
    return StreamKey(user_id, strategy_id)
