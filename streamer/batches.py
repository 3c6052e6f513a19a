"""The newest `order_batch_update` of a key, found in the broker's history (`GET /api/batches/latest`).

A batch summary is an event, not a row: the database has no table of them. The
broker keeps each key's last events (100 by default; with a journal across its
restarts too), so the page's "Last batch" survives a reload, and is the same in
every browser, by asking the history for it. The streamer does not know how
long the history is, so it asks for the newest 8 events, then 16, 32... until a
batch is among them, or the window reaches the key's first event, or the history
does not reach back that far (`gone`): then it halves its way to where the
history starts. About 2 log2(history) small requests at most (13 for 100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.replay import Replay
from bus.subscriber import Subscriber
from bus.topics import StreamKey
from streamer import sse

BATCH_KIND = "order_batch_update"
FIRST_WINDOW = 8


@dataclass(frozen=True, slots=True)
class LatestBatch:
    """The batch's event id and its data as the stream sends it."""

    event_id: str
    data: dict[str, Any]


def newest_batch(reply: Replay) -> LatestBatch | None:
    """The newest batch event of a replay answer, if it holds one."""
    for event in reversed(reply.events):
        if event.payload.get("kind") == BATCH_KIND:
            return LatestBatch(str(event.position), sse.event_payload(event.payload))
    return None


async def latest_batch(subscriber: Subscriber, key: StreamKey) -> LatestBatch | None:
    """The key's newest batch still in the broker's history, or None; BusError when the broker does not answer."""
    head = await subscriber.head(key)
    checked, window = 0, FIRST_WINDOW  # the newest `checked` events hold no batch
    too_far: int | None = None  # a window the history does not reach back to
    while too_far is None or too_far - checked > 1:
        after = max(0, head.seq - window)
        reply = await subscriber.replay(key, head.epoch, after)
        if reply.ok:
            found = newest_batch(reply)
            if found is not None or after == 0:
                return found
            checked = window
        else:
            too_far = window
        # Doubling until the history ends, then halving the rest (a binary search for its start).
        window = window * 2 if too_far is None else (checked + too_far) // 2
    return None
