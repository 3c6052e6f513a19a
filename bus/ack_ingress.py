"""The broker's acknowledged ingress: a ROUTER for the producers' outbox relays (CONTRACT section 2).

    relay DEALER ─ [pub, [stream, event_id, prev_id], topic, payload] · [hello, [stream, acked]] ─▶ ROUTER --ack-ingress
                 ◀ [ack, [stream, last]] · [resend, [stream, last]] · [reject, [stream, event_id], reason]
                   · [unknown, [stream, event_id]]

ProducerStreams (a pure core) decides what each event is; this module reads the
envelope, hands the events to sequence to the broker, and collects the answers
of a drained batch. The broker sends them with `answer()` only after the batch is
journaled and published, so an ack never runs ahead of what a crash would keep.
Per batch: one `reject` per rejected event (and per resent event the broker
remembers rejecting: REJECTED), then one cumulative `ack` per stream and sender,
then at most one `resend` and one `unknown` per stream and sender. A new stream
beyond ProducerStreams' bound (REFUSED) gets no answer at all. A `hello` names one
stream and is answered one `ack` or `resend` of it (in `_acks` / `_resends`, keyed by
sender and stream): its answer does not grow with the streams or rejections known.

Before its `ack` or `resend`, a sender also gets every *untold* rejection of the
stream (ProducerStreams: a `reject` dropped in an earlier batch, or one queued to
a connection of the stream that has gone since, or restored from the journal), in
event order: an `ack` of a later batch must not mark a row sent whose `reject` the
relay never read. A batch's answers are bounded by its DRAIN_BATCH messages
(bus/broker.py) plus those untold rejections; sending to a relay stops at the
first answer its queue does not take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from bus import protocol
from bus.errors import DecodeError
from bus.ingest import Admitted, Ingest
from bus.producer_streams import ProducerStreams, Verdict


@dataclass(slots=True)
class AckStats:
    """Counters of the acknowledged ingress (part of the broker's `stats` answer)."""

    ack_received: int = 0
    ack_sequenced: int = 0
    ack_duplicates: int = 0
    ack_resends: int = 0
    ack_rejected: int = 0
    ack_rejected_again: int = 0
    ack_malformed: int = 0
    ack_unknown: int = 0
    ack_hellos: int = 0
    ack_answers: int = 0
    ack_answers_dropped: int = 0  # a relay's queue was full (or it left): the rest of the batch to it is dropped
    ack_rejects_untold: int = 0  # remembered rejections not known to have reached their relay: sent before its next ack
    ack_rejects_untold_forgotten: int = 0  # forgotten (beyond the rejections' bound) while untold
    streams: int = 0
    streams_refused: int = 0


class AckIngress:
    """Reads `pub` messages off the ROUTER, decides with ProducerStreams, answers once per batch."""

    def __init__(self, sock: zmq.Socket[Any], ingest: Ingest, drop: Callable[[str], None]) -> None:
        self.sock = sock
        self.ingest = ingest
        self.stats = AckStats()
        self._drop = drop
        self._rejects: dict[tuple[bytes, str], dict[int, str]] = {}  # this batch's, with their reasons
        self._acks: dict[tuple[bytes, str], int] = {}
        self._resends: dict[tuple[bytes, str], int] = {}
        self._unknowns: dict[tuple[bytes, str], int] = {}

    def handle(self, frames: list[bytes]) -> None:
        """One message from a relay: `[identity, pub, envelope, topic, payload]` or `[identity, hello, body]`."""
        self.stats.ack_received += 1
        if len(frames) == 3 and frames[1] == protocol.HELLO:
            return self._hello(frames[0], frames[2])
        if len(frames) != 5 or frames[1] != protocol.PUB:
            return self._malformed(f"{len(frames) - 1} frames, expected [pub, envelope, topic, payload] or [hello, body]")
        identity, _, envelope, topic, payload = frames
        try:
            stream, event_id, prev_id = protocol.unpack_envelope(envelope)
        except DecodeError as exc:
            return self._malformed(str(exc))  # names no stream we could answer for: the relay's timeout resends
        event: Admitted | None = None
        reason = ""
        try:
            event = self.ingest.check(topic, payload)
        except DecodeError as exc:
            reason = str(exc)
        streams = self.ingest.streams
        verdict, last = streams.decide(stream, event_id, prev_id, event is not None, reason)
        if verdict is Verdict.REFUSED:
            return  # a new stream beyond the bound: no answer, the relay's timeout retries (counted by the streams)
        if verdict is Verdict.UNKNOWN:
            self.stats.ack_unknown += 1
            self._unknowns.setdefault((identity, stream), event_id)
            return
        streams.heard(stream, identity)  # before any answer to it: a new connection was told none of its rejections
        if verdict is Verdict.RESEND:
            self.stats.ack_resends += 1
            self._resends[identity, stream] = last
            return
        if verdict is Verdict.SEQUENCE:
            assert event is not None  # SEQUENCE only for a valid event
            self.stats.ack_sequenced += 1
            self.ingest.accept(event)
        elif verdict is Verdict.REJECT:
            self.stats.ack_rejected += 1
            self._rejects.setdefault((identity, stream), {})[event_id] = reason
        elif verdict is Verdict.REJECTED:
            # Rejected before: a relay killed before it wrote the reject sends the row again (it would
            # otherwise mark the row sent without its reason on the duplicate's ack).
            self.stats.ack_rejected_again += 1
            self._rejects.setdefault((identity, stream), {})[event_id] = streams.rejection(stream, event_id) or ""
        else:
            self.stats.ack_duplicates += 1
        self._acks[identity, stream] = max(last, self._acks.get((identity, stream), 0))

    def _hello(self, identity: bytes, body: bytes) -> None:
        try:
            stream, acked = protocol.unpack_hello(body)
        except DecodeError as exc:
            return self._malformed(f"hello: {exc}")
        self.stats.ack_hellos += 1
        verdict, last = self.ingest.streams.hello(stream, acked)
        if verdict is Verdict.REFUSED:
            return
        self._unknowns.pop((identity, stream), None)  # known from here: an earlier event's `unknown` is moot
        self.ingest.streams.heard(stream, identity)
        if verdict is Verdict.RESEND:
            self._resends[identity, stream] = last
        else:
            self._acks[identity, stream] = max(last, self._acks.get((identity, stream), 0))

    def _malformed(self, reason: str) -> None:
        self.stats.ack_malformed += 1
        self._drop(f"acknowledged ingress: {reason}")

    def answer(self) -> None:
        """Send the batch's answers (after its journal commit and publication).

        A relay whose queue is full (it does not read) or that left gets nothing more of the
        batch once one answer to it could not be queued: a later `ack` must not reach it
        past a `reject` it missed (it would mark that row sent without its reason). Such a
        `reject` stays untold and goes first to the stream's next answer, in a later batch.
        Dropped answers are counted; the relay's timeout sends the rows again.
        """
        streams = self.ingest.streams
        if not (self._acks or self._resends or self._unknowns or self._rejects):  # most batches: the PULL's only
            self._count_streams(streams)
            return
        missed: set[bytes] = set()
        told = [
            (stream, event_id, identity)
            for identity, stream in dict.fromkeys([*self._acks, *self._resends])
            for event_id in self._send_rejects(identity, stream, missed)
        ]
        for stream, event_id, identity in told:
            streams.told(stream, event_id, identity)
        for (identity, stream), last in self._acks.items():
            self._send(protocol.ack_message(identity, stream, last), missed)
        for (identity, stream), last in self._resends.items():
            self._send(protocol.resend_message(identity, stream, last), missed)
        for (identity, stream), event_id in self._unknowns.items():
            self._send(protocol.unknown_message(identity, stream, event_id), missed)
        self._count_streams(streams)
        self._rejects.clear()
        self._acks.clear()
        self._resends.clear()
        self._unknowns.clear()

    def _count_streams(self, streams: ProducerStreams) -> None:
        self.stats.streams, self.stats.streams_refused = len(streams), streams.refused
        self.stats.ack_rejects_untold, self.stats.ack_rejects_untold_forgotten = streams.untold_count, streams.untold_forgotten

    def _send_rejects(self, identity: bytes, stream: str, missed: set[bytes]) -> list[int]:
        """Send the batch's rejections of (identity, stream) and the stream's untold ones, in event order; those queued."""
        streams, own = self.ingest.streams, self._rejects.get((identity, stream), {})
        event_ids = sorted({*own, *streams.untold(stream)})
        if identity in missed:  # not even built: the relay gets nothing more of this batch
            self.stats.ack_answers += len(event_ids)
            self.stats.ack_answers_dropped += len(event_ids)
            return []
        sent = []
        for event_id in event_ids:
            reason = own.get(event_id, streams.rejection(stream, event_id) or "")
            if self._send(protocol.reject_message(identity, stream, event_id, reason), missed):
                sent.append(event_id)
        return sent

    def _send(self, message: list[bytes], missed: set[bytes]) -> bool:
        """Queue one answer without blocking, unless its relay already missed one of this batch; whether it was queued."""
        self.stats.ack_answers += 1
        if message[0] not in missed:
            try:
                self.sock.send_multipart(message, zmq.NOBLOCK)
                return True
            except zmq.ZMQError:  # EAGAIN: its queue is full; EHOSTUNREACH: it left (ROUTER_MANDATORY)
                missed.add(message[0])
        self.stats.ack_answers_dropped += 1
        return False
