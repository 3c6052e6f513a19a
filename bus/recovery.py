"""Recovery of one key's gap: replay requests until the key is in order again (KeySync decides)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from bus.errors import BusUnavailable
from bus.keysync import KeySync, Resync
from bus.replay import BusEvent, Replay
from bus.topics import StreamKey

FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0


class RecoveryHost(Protocol):
    """What a recovery needs from its Subscriber."""

    def is_current(self, key: StreamKey, sync: KeySync) -> bool:
        """Whether `sync` still is the key's (not unsubscribed, Subscriber not closed)."""

    async def replay(self, key: StreamKey, epoch: int, after_seq: int) -> Replay:
        """The broker's answer; BusUnavailable when it does not come in time."""

    def deliver(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        """Hand events of the key to the sink."""

    def resync(self, key: StreamKey, resync: Resync) -> None:
        """Tell the sink the key's history is lost."""


async def recover(host: RecoveryHost, key: StreamKey, sync: KeySync) -> None:
    """Replay until the key is contiguous with what waits in its pending list, delivering as it goes."""
    backoff = FIRST_RETRY_S
    while host.is_current(key, sync):
        asked = sync.replay_from()
        try:
            reply = await host.replay(key, asked.epoch, asked.seq)
        except BusUnavailable:
            await asyncio.sleep(backoff)  # a retry pace while the broker is away, not a condition
            backoff = min(backoff * 2, MAX_RETRY_S)
            continue
        if not host.is_current(key, sync):
            return
        step = sync.on_replay(asked, reply)
        if step.replayed:
            host.deliver(key, step.replayed)
        if step.resync is not None:
            host.resync(key, step.resync)
        if step.released:
            host.deliver(key, step.released)
        if step.done:
            return
