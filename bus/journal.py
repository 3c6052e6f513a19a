"""The broker's journal: epoch, heads, histories, producer streams and rejections, kept across restarts.

SQLite in WAL mode through the standard library: a crash-safe, much-tested
store with nothing to install, instead of a file format of our own. The broker
writes one transaction per drained batch and commits it before any event of
the batch is published or acknowledged, so whatever a client or a relay was
shown is on disk when the broker is SIGKILLed. Its size is bounded by what the
history needs:

    meta(name TEXT PRIMARY KEY, value INTEGER)      schema, epoch, history
    heads(topic BLOB PRIMARY KEY, head, touched)    every key sequenced (as the broker keeps in memory)
    runs(topic BLOB, first, last, events BLOB, UNIQUE (topic, last))
        the events of one key in one batch, seqs first..last, `events` a msgpack array of
        [header, payload] (at most `history` of them); runs whose last seq fell out of the
        key's history are deleted once it moved on by `history` / 4 (Journal._trims), so a
        key keeps fewer than 2.25 x `history` events; a key that loses its history (beyond
        --max-keys) loses its runs
    streams(stream TEXT PRIMARY KEY, last, touched) producer streams of the acknowledged ingress
    rejections(stream, event_id, reason, UNIQUE (stream, event_id))
        the rejections the broker remembers (bus/producer_streams.py), oldest first in rowid
        order; those it forgets (beyond its REJECTION_BYTES) are deleted in the batch that
        forgot them, so the table holds what memory holds. In the batch's transaction with the
        streams' lasts: a `reject` is on disk before it is answered, and a relay killed before
        writing it is answered `reject` again even by a broker SIGKILLed and restarted since.

One row per key per batch rather than one per event (schema 1, migrated when
opened): flat out over 100 keys a batch of 1,024 events is ~100 rows, not 1,024
(docs/benchmarks.md, issue 13). Schema 2 had no rejections table: it is created
when a journal of schema 2 is opened (bus/journal_schema.py has the migrations).

`touched` is the number of the batch that last wrote a row: the least recently
active come back first, so the bounds evict in the same order after a restart.
The file is locked while a broker has it open: a second broker on it exits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bus import codec, journal_schema
from bus.errors import DecodeError, JournalError
from bus.protocol import MAX_REASON, MAX_STREAM_NAME
from bus.topics import parse_key_topic

Frames = tuple[bytes, bytes]  # (header, payload) as published
PAGE_SIZE = 16384
_RUN = codec.Schema[list[tuple[bytes, bytes]]](list[tuple[bytes, bytes]], shape="a run [[header, payload], ...]")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a journal gives back: the broker's state at its last commit."""

    epoch: int
    heads: dict[bytes, int]
    rings: list[tuple[bytes, list[Frames]]]  # least recently active first, each oldest first
    streams: list[tuple[str, int]]  # least recently changed first
    rejections: list[tuple[str, int, str]] = field(default_factory=list)  # (stream, event_id, reason), oldest first


@dataclass(slots=True)
class JournalBatch:
    """What one drained batch sequenced and forgot; written in one transaction."""

    events: dict[bytes, list[Frames]] = field(default_factory=dict)  # per key, oldest first, ending at its head
    heads: dict[bytes, int] = field(default_factory=dict)
    forgotten_keys: set[bytes] = field(default_factory=set)
    streams: dict[str, int] = field(default_factory=dict)
    rejections: list[tuple[str, int, str]] = field(default_factory=list)  # remembered: (stream, event_id, reason)
    forgotten_rejections: list[tuple[str, int]] = field(default_factory=list)  # (stream, event_id)

    def add(self, topic: bytes, seq: int, header: bytes, payload: bytes) -> None:
        """A sequenced event (`seq` is its key's new head)."""
        frames = self.events.get(topic)
        if frames is None:
            self.events[topic] = [(header, payload)]
        else:
            frames.append((header, payload))
        self.heads[topic] = seq

    def forget(self, topic: bytes) -> None:
        """A key lost its history: its rows go, with this batch's events of it so far."""
        self.events.pop(topic, None)
        self.forgotten_keys.add(topic)

    def __bool__(self) -> bool:
        return bool(self.heads or self.forgotten_keys or self.streams or self.rejections or self.forgotten_rejections)


class Journal:
    """One journal file, opened (and locked) for one broker."""

    def __init__(self, path: str | Path, history: int, max_keys: int, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.history = history
        self.max_keys = max_keys
        self._batch_no = 1
        self._stored_topics = 0  # keys with runs in the file when it was restored
        self.trim_step = max(1, history // 4)
        self._trimmed: dict[bytes, int] = {}  # topic -> the cutoff of its last trim (none yet: 0)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # timeout=0: a journal locked by another broker fails at once instead of waiting.
            self._db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from None
        try:
            self._prepare(synchronous)
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalError(f"journal {self.path} is unreadable: {exc}") from None
        except JournalError:
            self._db.close()
            raise

    def _prepare(self, synchronous: str) -> None:
        db = self._db
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: no shared-memory file, one owner
        # A new file's pages (an existing one keeps its own): a batch's ~400 KB of runs in a quarter of the
        # WAL frames of 4 KiB pages; commits 1.9 -> 1.1 us of CPU per event flat out (measured here).
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        # FULL: a commit survives a power cut too, not only a crash of this process. Batches amortise the
        # fsync: flat out, FULL 16.1-22.2 us per event against NORMAL 16.2-17.5 (docs/benchmarks.md).
        db.execute(f"PRAGMA synchronous = {synchronous}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(f"journal {self.path}: WAL mode unavailable (got {mode})")
        db.execute("BEGIN EXCLUSIVE")  # takes and keeps the lock: a second broker fails here
        db.execute("COMMIT")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise JournalError(f"journal {self.path} is corrupt: {'; '.join(problems[:3])}")
        journal_schema.prepare(db, self.path)

    def _meta(self, name: str) -> int | None:
        return journal_schema.meta(self._db, name)

    def restore(self) -> Restored | None:
        """The state at the last commit, None for a new journal; JournalError when it does not add up."""
        try:
            epoch = self._meta("epoch")
            if epoch is None:
                return None
            restored = self._read(epoch, self._meta("history") or self.history)
            self._compact(restored)
            return restored
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path} is unreadable: {exc}") from None

    def _read(self, epoch: int, stored_history: int) -> Restored:
        db = self._db
        heads: dict[bytes, int] = {}
        touched: dict[bytes, int] = {}
        for topic, head, at in db.execute("SELECT topic, head, touched FROM heads"):
            self._check_head(topic, head)
            heads[topic], touched[topic] = head, at
        rings: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        for topic, first, last, blob in db.execute("SELECT topic, first, last, events FROM runs ORDER BY topic, last"):
            try:
                frames = _RUN.decode(blob)
            except DecodeError as exc:
                raise JournalError(f"journal {self.path} is corrupt: a run of {topic[:40]!r}: {exc}") from None
            if type(first) is not int or type(last) is not int or len(frames) != last - first + 1 or len(frames) > stored_history:
                raise JournalError(f"journal {self.path} is corrupt: a run of {topic[:40]!r} does not hold seqs {first}..{last}")
            rings.setdefault(topic, []).extend((seq, h, p) for seq, (h, p) in enumerate(frames, first))
        self._stored_topics = len(rings)
        kept = sorted(rings, key=lambda t: touched.get(t, 0))[-self.max_keys:]
        ordered = [(topic, self._ring(topic, heads.get(topic), rings[topic])) for topic in kept]
        streams = [(stream, last) for stream, last in db.execute("SELECT stream, last FROM streams ORDER BY touched")]
        for stream, last in streams:
            if not (isinstance(stream, str) and 0 < len(stream) <= MAX_STREAM_NAME and type(last) is int and last >= 0):
                raise JournalError(f"journal {self.path} is corrupt: bad stream row {stream!r:.80}")
        newest = db.execute("SELECT max(touched) FROM streams").fetchone()[0] or 0
        self._batch_no = 1 + max(newest, *touched.values(), 0)
        return Restored(epoch, heads, ordered, streams, self._read_rejections(dict(streams)))

    def _read_rejections(self, lasts: dict[str, int]) -> list[tuple[str, int, str]]:
        """The remembered rejections, oldest first; each of a known stream, at or below its `last`."""
        rejections = list(self._db.execute("SELECT stream, event_id, reason FROM rejections ORDER BY rowid"))
        for stream, event_id, reason in rejections:
            last = lasts.get(stream) if isinstance(stream, str) else None
            if last is None or type(event_id) is not int or not 0 < event_id <= last or not (
                isinstance(reason, str) and len(reason) <= MAX_REASON
            ):
                raise JournalError(f"journal {self.path} is corrupt: bad rejection row {stream!r:.80} {event_id!r:.30}")
        return rejections

    def _check_head(self, topic: object, head: object) -> None:
        try:
            if not isinstance(topic, bytes) or type(head) is not int or head < 1:
                raise DecodeError(f"bad head row {topic!r:.60}")
            parse_key_topic(topic)
        except DecodeError as exc:
            raise JournalError(f"journal {self.path} is corrupt: {exc}") from None

    def _ring(self, topic: bytes, head: int | None, rows: list[tuple[int, bytes, bytes]]) -> list[Frames]:
        """A key's history, checked: the last seqs up to its head, without a hole (replay counts on it)."""
        seqs = [seq for seq, _, _ in rows]
        if head is None or seqs != list(range(head - len(rows) + 1, head + 1)) or seqs[0] < 1:
            raise JournalError(f"journal {self.path} is corrupt: the history of {topic[:40]!r} does not end at its head")
        return [(header, payload) for _, header, payload in rows[-self.history:]]

    def _compact(self, restored: Restored) -> None:
        """Drop what smaller bounds than the journal's no longer keep: one run per key kept."""
        if self._meta("history") == self.history and self._stored_topics == len(restored.rings):
            return
        rows = [
            (topic, restored.heads[topic] - len(frames) + 1, restored.heads[topic], codec.pack(frames))
            for topic, frames in restored.rings
        ]
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM runs")
        self._db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?)", rows)
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('history', ?)", (self.history,))
        self._db.execute("COMMIT")

    def begin_epoch(self, epoch: int) -> None:
        """Record the epoch of a new journal."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("epoch", epoch), ("history", self.history)])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc}") from None

    def write(self, batch: JournalBatch) -> None:
        """Commit one batch; JournalError when it cannot be written (nothing of it then counts)."""
        batch_no, self._batch_no = self._batch_no, self._batch_no + 1
        history, pack = self.history, codec.pack
        db = self._db
        try:
            db.execute("BEGIN")
            if batch.forgotten_keys:
                db.executemany("DELETE FROM runs WHERE topic = ?", _rows(batch.forgotten_keys))
                for topic in batch.forgotten_keys:
                    self._trimmed.pop(topic, None)
            heads = batch.heads
            runs = []
            for topic, frames in batch.events.items():
                head = heads[topic]
                kept = frames[-history:]
                runs.append((topic, head - len(kept) + 1, head, pack(kept)))
            db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", runs)
            db.executemany("DELETE FROM runs WHERE topic = ? AND last <= ?", self._trims(heads))
            db.executemany("INSERT OR REPLACE INTO heads VALUES (?, ?, ?)", [(t, s, batch_no) for t, s in heads.items()])
            if batch.streams:
                db.executemany("INSERT OR REPLACE INTO streams VALUES (?, ?, ?)", [(s, last, batch_no) for s, last in batch.streams.items()])
            if batch.forgotten_rejections:
                db.executemany("DELETE FROM rejections WHERE stream = ? AND event_id = ?", batch.forgotten_rejections)
            if batch.rejections:
                db.executemany("INSERT OR REPLACE INTO rejections VALUES (?, ?, ?)", batch.rejections)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(f"cannot write journal {self.path}: {exc}") from None

    def _trims(self, heads: dict[bytes, int]) -> list[tuple[bytes, int]]:
        """(topic, cutoff): delete the key's runs whose last seq is at most cutoff, out of its history.

        A key is trimmed once its cutoff moved `trim_step` seqs past the last trim, not at every
        batch: a key keeps at most history + trim_step runs and fewer than 2 x history + trim_step
        events, and a key paced at one event a batch costs one DELETE every `trim_step` batches.
        """
        trimmed, step, history = self._trimmed, self.trim_step, self.history
        trims = []
        for topic, head in heads.items():
            cutoff = head - history
            if cutoff >= trimmed.get(topic, 0) + step:
                trimmed[topic] = cutoff
                trims.append((topic, cutoff))
        return trims

    def rows(self) -> dict[str, int]:
        """How many rows each table holds, and how many events the runs hold (for the bounds' tests)."""
        counts = {t: int(self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in ("heads", "runs", "streams", "rejections")}
        counts["events"] = int(self._db.execute("SELECT coalesce(sum(last - first + 1), 0) FROM runs").fetchone()[0])
        return counts

    def close(self) -> None:
        """Close the file (and give up its lock)."""
        self._db.close()


def _rows(values: Iterable[bytes | str]) -> list[tuple[bytes | str]]:
    return [(value,) for value in values]
