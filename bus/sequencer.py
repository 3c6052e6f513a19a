"""Per-key sequencing and history, with no sockets: the broker's state.

Each stream key has a contiguous `seq` starting at 1 under one `epoch` (new at
every broker start), and a ring of its last `history` events for replay.
Heads are kept for every key ever seen (an int each) so a key's seq never
restarts inside an epoch; histories are bounded in number too, and the least
recently active key loses its history first (its replays then answer `gone`).
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
    ) -> None:
        if history < 1 or max_histories < 1:
            raise ValueError("history and max_histories must be at least 1")
        self.epoch = epoch
        self.history = history
        self.max_histories = max_histories
        self.heads: dict[bytes, int] = {}
        self._rings: OrderedDict[bytes, deque[Frames]] = OrderedDict()
        self.histories_evicted = 0
        # Told the key whose history was just dropped, before the event that displaced it is kept.
        self.on_forget = on_forget

    def sequence(self, topic: bytes, payload: bytes, published_ns: int, now_ns: int) -> bytes:
        """Assign the next seq of `topic`'s key, remember the event, return its header."""
        seq = self.heads.get(topic, 0) + 1
        self.heads[topic] = seq
        header = protocol.pack_header(self.epoch, seq, published_ns, now_ns)
        ring = self._rings.get(topic)
        if ring is None:
            ring = self._rings[topic] = deque(maxlen=self.history)
            if len(self._rings) > self.max_histories:
                self._forget_oldest()
        else:
            self._rings.move_to_end(topic)
        ring.append((header, payload))
        return header

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
            self._rings[topic] = deque(frames, maxlen=self.history)
            self._rings.move_to_end(topic)
            if len(self._rings) > self.max_histories:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        topic, _ = self._rings.popitem(last=False)
        self.histories_evicted += 1
        if self.on_forget is not None:
            self.on_forget(topic)
