"""Per-key sequencing and history, with no sockets: the broker's state.

Each stream key has a contiguous `seq` starting at 1 under one `epoch` (new at
every broker start), and a ring of its last `history` events for replay.
Heads are kept for every key ever seen (an int each) so a key's seq never
restarts inside an epoch; histories are bounded in number too, and the least
recently active key loses its history first (its replays then answer `gone`).
Histories are bounded in bytes as well (header + payload of each event kept):
a key's ring drops its oldest events beyond `history_bytes`, and beyond
`total_bytes` over all keys the least recently active key loses its whole
history, as beyond `max_histories`. A replay from before what is kept answers
`gone` whichever bound dropped it (the subscriber resyncs).
With a journal (bus/journal.py) the same state comes back after a restart:
`on_forget` tells it which key lost its history, `restore` loads it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from bus import protocol

Frames = tuple[bytes, bytes]  # (header, payload) as published
UNBOUNDED = 1 << 62


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A replay answer: `ok` with events after the asked seq, or gone."""

    ok: bool
    epoch: int
    head: int
    events: list[Frames] = field(default_factory=list)


def new_epoch() -> int:
    """An epoch that differs across restarts: the start time in microseconds."""
    return time.time_ns() // 1000


class Sequencer:
    """Numbers events per key and remembers the last few of each."""

    def __init__(
        self,
        epoch: int,
        history: int = 100,
        max_histories: int = 100_000,
        on_forget: Callable[[bytes], None] | None = None,
        *,
        history_bytes: int = UNBOUNDED,
        total_bytes: int = UNBOUNDED,
    ) -> None:
        if min(history, max_histories, history_bytes, total_bytes) < 1:
            raise ValueError("history, max_histories and the byte bounds must be at least 1")
        self.epoch = epoch
        self.history = history
        self.max_histories = max_histories
        self.history_bytes = min(history_bytes, total_bytes)  # one key may fill the total, not more
        self.total_bytes = total_bytes
        self.heads: dict[bytes, int] = {}
        self._rings: OrderedDict[bytes, deque[Frames]] = OrderedDict()
        self._ring_bytes: dict[bytes, int] = {}
        self.bytes_kept = 0  # header + payload bytes of every event kept, all keys
        self.histories_evicted = 0
        self.events_evicted_bytes = 0  # events dropped from a ring by the per-key byte bound
        # Told the key whose history was just dropped, before the event that displaced it is kept.
        self.on_forget = on_forget

    def sequence(self, topic: bytes, payload: bytes, published_ns: int, now_ns: int) -> bytes:
        """Assign the next seq of `topic`'s key, remember the event, return its header."""
        seq = self.heads.get(topic, 0) + 1
        self.heads[topic] = seq
        header = protocol.pack_header(self.epoch, seq, published_ns, now_ns)
        ring = self._rings.get(topic)
        if ring is None:
            ring = self._rings[topic] = deque()
            self._ring_bytes[topic] = 0
            if len(self._rings) > self.max_histories:
                self._forget_oldest()
        else:
            self._rings.move_to_end(topic)
        self._keep(topic, ring, (header, payload))
        return header

    def _keep(self, topic: bytes, ring: deque[Frames], frames: Frames) -> None:
        """Append to `topic`'s ring, then drop what the count and byte bounds no longer keep."""
        size = len(frames[0]) + len(frames[1])
        ring.append(frames)
        kept = self._ring_bytes[topic] + size
        self.bytes_kept += size
        while ring and (len(ring) > self.history or kept > self.history_bytes):
            if len(ring) <= self.history:
                self.events_evicted_bytes += 1  # not the count bound: the byte bound
            header, payload = ring.popleft()
            dropped = len(header) + len(payload)
            kept -= dropped
            self.bytes_kept -= dropped
        self._ring_bytes[topic] = kept
        while self.bytes_kept > self.total_bytes and len(self._rings) > 1:
            self._forget_oldest()

    def head(self, topic: bytes) -> int:
        """The last seq given to `topic`'s key, 0 when it has none yet."""
        return self.heads.get(topic, 0)

    def replay(self, topic: bytes, epoch: int, after_seq: int) -> ReplayResult:
        """Events of `topic` after `after_seq` of `epoch`, or gone when that cannot be honoured."""
        head = self.heads.get(topic, 0)
        if after_seq == protocol.HEAD_ONLY:
            return ReplayResult(True, self.epoch, head)
        if epoch != self.epoch or not 0 <= after_seq <= head:
            return ReplayResult(False, self.epoch, head)
        if after_seq == head:
            return ReplayResult(True, self.epoch, head)
        ring = self._rings.get(topic)
        oldest = head - len(ring) + 1 if ring else head + 1
        if after_seq + 1 < oldest:
            return ReplayResult(False, self.epoch, head)
        assert ring is not None  # oldest <= after_seq + 1 <= head implies a non-empty ring
        start = len(ring) - (head - after_seq)
        return ReplayResult(True, self.epoch, head, list(islice(ring, start, None)))

    @property
    def keys_with_history(self) -> int:
        return len(self._rings)

    def restore(self, heads: dict[bytes, int], rings: Iterable[tuple[bytes, list[Frames]]]) -> None:
        """Load heads and histories (least recently active first, events oldest first), within the bounds."""
        self.heads.update(heads)
        for topic, frames in rings:
            ring = self._rings.get(topic)
            if ring is None:
                ring = self._rings[topic] = deque()
                self._ring_bytes[topic] = 0
            self._rings.move_to_end(topic)
            if len(self._rings) > self.max_histories:
                self._forget_oldest()
            for one in frames:
                self._keep(topic, ring, one)

    def _forget_oldest(self) -> None:
        topic, _ = self._rings.popitem(last=False)
        self.bytes_kept -= self._ring_bytes.pop(topic)
        self.histories_evicted += 1
        if self.on_forget is not None:
            self.on_forget(topic)
