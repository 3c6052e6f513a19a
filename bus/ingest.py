"""The broker's write path: check, sequence, journal, publish, in that order, once per drained batch.

Both ingresses feed it: the PULL (at most once, CONTRACT section 2) and the
acknowledged ROUTER (bus/ack_ingress.py). `accept()` sequences an event at once
(the next one of the batch gets the next seq) but only queues its frames;
`flush()` commits the batch to the journal when there is one (with the producer
streams' new lasts and rejections), and only then publishes it; the acknowledged ingress answers after that. A crash before the
commit loses nothing anybody was shown: not published, not acknowledged.
Head markers and replays are answered between batches, never from an event
that is not published yet.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import zmq

from bus import codec, events, exact_decode, protocol
from bus.errors import DecodeError, JournalError, PayloadTooLarge
from bus.frames import SNDMORE, send_frame
from bus.journal import Journal, JournalBatch
from bus.producer_streams import ProducerStreams
from bus.sequencer import UNBOUNDED, Sequencer, new_epoch
from bus.topics import CONTROL_TOPIC, ids_topic


class Admitted(NamedTuple):
    """An event that passed the checks, ready to be sequenced (or, for control messages, forwarded)."""

    topic: bytes
    payload: bytes
    published_ns: int
    control: bool


class Ingest:
    """The sequencer, the journal and the frames of the batch being drained."""

    def __init__(self, sequencer: Sequencer, streams: ProducerStreams, journal: Journal | None, restored: str = "") -> None:
        self.sequencer = sequencer
        self.streams = streams
        self.journal = journal
        self.restored = restored  # what the journal gave back, for the start-up log line
        self.commits = 0
        self.max_payload = codec.MAX_FRAME_BYTES
        self.refused_oversize = 0  # payloads over max_payload, from either ingress
        self._frames: list[tuple[bytes, bytes, bytes]] = []
        self._sequenced = 0
        self._batch = JournalBatch()
        if journal is not None:
            sequencer.on_forget = self._forget

    @classmethod
    def open(
        cls, journal: Journal | None, history: int, max_keys: int, *, history_bytes: int = UNBOUNDED, total_bytes: int = UNBOUNDED
    ) -> Ingest:
        """The state the journal left (same epoch), or a new epoch; closes the journal on JournalError."""
        streams = ProducerStreams()
        try:
            restored = journal.restore() if journal is not None else None
            if restored is None:
                sequencer = Sequencer(new_epoch(), history, max_keys, history_bytes=history_bytes, total_bytes=total_bytes)
                if journal is not None:
                    journal.begin_epoch(sequencer.epoch)
                return cls(sequencer, streams, journal)
        except JournalError:
            assert journal is not None  # only a journal raises it
            journal.close()
            raise
        sequencer = Sequencer(restored.epoch, history, max_keys, history_bytes=history_bytes, total_bytes=total_bytes)
        sequencer.restore(restored.heads, restored.rings)
        streams.restore(restored.streams)
        streams.restore_rejections(restored.rejections)
        summary = (
            f"restored: {len(sequencer.heads)} keys, {sequencer.keys_with_history} with history, {len(streams)} producer streams,"
            f" {streams.rejections} rejections"
        )
        return cls(sequencer, streams, journal, summary)

    def take(self, topic: bytes, payload: bytes) -> None:
        """accept(check(topic, payload)) without an Admitted in between: the PULL ingress's hot path."""
        self._accept(*self._check(topic, payload))

    def check(self, topic: bytes, payload: bytes) -> Admitted:
        """The event a `[topic, payload]` pair carries; DecodeError says what is wrong with it.

        A payload over `max_payload` is PayloadTooLarge (counted here), before anything decodes it.
        """
        return Admitted(*self._check(topic, payload))

    def _check(self, topic: bytes, payload: bytes) -> tuple[bytes, bytes, int, bool]:
        if len(payload) > self.max_payload:
            self.refused_oversize += 1
            raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds --max-payload {self.max_payload}")
        exact = exact_decode.decode_exact(payload)
        if exact is not None:
            message, published_ns = exact  # every field a field of the schema: one pass checked it all
        else:
            message = events.decode(payload)
            # The schema skips unknown keys unread; decoding the whole map as well guarantees that
            # every subscriber can decode what is sequenced (a bad string there would poison the
            # key's replays), and gives the transport's `published_ns`.
            published_ns = codec.unpack_map(payload).get("published_ns")
        if type(published_ns) is not int or published_ns < 0:
            published_ns = time.time_ns()
        if isinstance(message, events.ControlMessage):
            if topic == CONTROL_TOPIC:
                return topic, payload, published_ns, True
        elif topic == ids_topic(message.user_id, message.strategy_id):
            return topic, payload, published_ns, False
        raise DecodeError(f"topic {topic[:40]!r} does not match a {message.kind} payload")

    def accept(self, event: Admitted) -> None:
        """Sequence a key event (a control message takes no seq) and queue its frames for `flush()`."""
        self._accept(*event)

    def _accept(self, topic: bytes, payload: bytes, published_ns: int, control: bool) -> None:
        now = time.time_ns()
        if control:
            header = protocol.pack_header(self.sequencer.epoch, 0, published_ns, now)
        else:
            header = self.sequencer.sequence(topic, payload, published_ns, now)
            self._sequenced += 1
            if self.journal is not None:
                self._batch.add(topic, self.sequencer.heads[topic], header, payload)
        self._frames.append((topic, header, payload))

    def flush(self, egress: zmq.Socket[Any]) -> tuple[int, int]:
        """Journal the batch (JournalError if that fails: nothing of it may be shown), then publish it.

        Returns how many key events and control messages went out.
        """
        changed = self.streams.take_changes()
        rejections = self.streams.take_rejection_changes()  # taken without a journal too: nothing piles up
        if self.journal is not None:
            # The rejections in the lasts' transaction: a `reject` answered below is on disk first.
            self._batch.streams = changed
            self._batch.rejections, self._batch.forgotten_rejections = rejections
            if self._batch:
                self.journal.write(self._batch)
                self.commits += 1
                self._batch = JournalBatch()
        frames, sequenced = self._frames, self._sequenced
        self._frames, self._sequenced = [], 0
        send = send_frame  # send3 inlined: one Python call fewer per event
        for topic, header, payload in frames:
            send(egress, topic, SNDMORE)
            send(egress, header, SNDMORE)
            send(egress, payload)
        return sequenced, len(frames) - sequenced

    def _forget(self, topic: bytes) -> None:
        self._batch.forget(topic)
