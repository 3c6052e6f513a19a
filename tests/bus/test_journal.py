"""The broker's journal on real SQLite files: what comes back, its bounds, and what it refuses."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import JournalError
from bus.journal import Journal, JournalBatch, Restored
from bus.journal_schema import SCHEMA_VERSION
from bus.producer_streams import REJECTION_OVERHEAD, Decision, ProducerStreams, RejectionChanges, Verdict
from bus.sequencer import Sequencer

A, B, C = b"k/1/1/", b"k/2/2/", b"k/3/3/"


class Journaled:
    """A Sequencer whose batches go to a journal, the way the broker drives them."""

    def __init__(self, path: Path, history: int = 3, max_keys: int = 2) -> None:
        self.journal = Journal(path, history, max_keys)
        restored = self.journal.restore()
        epoch = restored.epoch if restored else 77
        self.batch = JournalBatch()
        self.sequencer = Sequencer(epoch, history, max_keys, on_forget=lambda t: self.batch.forget(t))
        if restored is None:
            self.journal.begin_epoch(epoch)
        else:
            self.sequencer.restore(restored.heads, restored.rings)
        self.restored = restored

    def sequence(self, topic: bytes, payload: bytes) -> None:
        header = self.sequencer.sequence(topic, payload, 1, 2)
        self.batch.add(topic, self.sequencer.head(topic), header, payload)

    def commit(self, streams: dict[str, int] | None = None) -> None:
        self.batch.streams = streams or {}
        self.journal.write(self.batch)
        self.batch = JournalBatch()

    def answers(self, topics: list[bytes]) -> dict[tuple[bytes, int], tuple[bool, list[bytes]]]:
        """Every replay answer of these keys, payloads only."""
        seq = self.sequencer
        return {
            (t, after): (r.ok, [p for _, p in r.events])
            for t in topics
            for after in range(-1, seq.head(t) + 2)
            for r in [seq.replay(t, seq.epoch, after)]
        }


def test_a_new_journal_restores_nothing_and_then_keeps_its_epoch(tmp_path: Path) -> None:
    first = Journaled(tmp_path / "j.db")
    assert first.restored is None
    first.journal.close()
    again = Journaled(tmp_path / "j.db")
    assert again.restored is not None and again.restored.epoch == 77
    assert again.restored.heads == {} and again.restored.rings == []


def test_heads_histories_and_streams_come_back_as_they_were_committed(tmp_path: Path) -> None:
    first = Journaled(tmp_path / "j.db", history=3, max_keys=2)
    for i in range(5):
        first.sequence(A, b"a%d" % i)
    first.commit({"orders:x": 9})
    first.sequence(B, b"b0")
    first.commit({"orders:y": 3, "orders:x": 10})
    first.commit({"positions:z": 0})  # known from a relay's `hello 0`: nothing acknowledged yet (was "corrupt")
    first.sequence(A, b"uncommitted")  # never committed: a SIGKILL before the write
    first.journal.close()
    again = Journaled(tmp_path / "j.db", history=3, max_keys=2)
    assert again.restored is not None
    assert again.restored.streams == [("orders:x", 10), ("orders:y", 3), ("positions:z", 0)]
    assert (again.sequencer.head(A), again.sequencer.head(B)) == (5, 1)
    assert [p for _, p in again.sequencer.replay(A, 77, 2).events] == [b"a2", b"a3", b"a4"]
    assert not again.sequencer.replay(A, 77, 1).ok
    assert [p for _, p in again.sequencer.replay(B, 77, 0).events] == [b"b0"]


def test_the_journal_keeps_history_rows_only_and_forgets_evicted_keys(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journaled = Journaled(path, history=3, max_keys=2)
    for i in range(50):
        journaled.sequence(A, b"%d" % i)
        if i % 7 == 0:
            journaled.commit()
    journaled.commit()
    assert journaled.journal.rows()["events"] == 3
    journaled.sequence(B, b"b")
    journaled.sequence(C, b"c")  # A, the least recently active, loses its history
    journaled.commit()
    assert journaled.journal.rows()["events"] == 2 and journaled.journal.rows()["heads"] == 3
    journaled.journal.close()
    again = Journaled(path, history=3, max_keys=2)
    assert again.sequencer.head(A) == 50 and not again.sequencer.replay(A, 77, 49).ok
    assert again.sequencer.keys_with_history == 2


def test_a_key_forgotten_and_seen_again_in_one_batch_keeps_only_its_new_events(tmp_path: Path) -> None:
    journaled = Journaled(tmp_path / "j.db", history=5, max_keys=1)
    journaled.sequence(A, b"old")
    journaled.sequence(B, b"b")  # A forgotten
    journaled.sequence(A, b"new")  # B forgotten, A back with seq 2
    journaled.commit()
    journaled.journal.close()
    again = Journaled(tmp_path / "j.db", history=5, max_keys=1)
    assert again.restored is not None
    assert again.restored.rings == [(A, [again.sequencer.replay(A, 77, 1).events[0]])]
    assert [p for _, p in again.sequencer.replay(A, 77, 1).events] == [b"new"]


def test_smaller_bounds_at_restart_trim_the_journal_to_them(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = Journaled(path, history=10, max_keys=3)
    for topic in (A, B, C):
        for i in range(10):
            first.sequence(topic, b"%d" % i)
        first.commit()
    first.journal.close()
    again = Journaled(path, history=4, max_keys=2)
    assert again.sequencer.keys_with_history == 2 and not again.sequencer.replay(A, 77, 9).ok
    assert [p for _, p in again.sequencer.replay(C, 77, 6).events] == [b"6", b"7", b"8", b"9"]
    assert again.journal.rows()["events"] == 8
    for i in range(10, 14):  # the re-slotted ring overwrites its own oldest rows
        again.sequence(C, b"%d" % i)
    again.commit()
    assert again.journal.rows()["events"] == 8
    again.journal.close()
    third = Journaled(path, history=4, max_keys=2)
    assert [p for _, p in third.sequencer.replay(C, 77, 10).events] == [b"10", b"11", b"12", b"13"]


ops = st.lists(st.tuples(st.sampled_from([A, B, C, b"k/4/4/"]), st.booleans()), max_size=60)


@settings(max_examples=40, deadline=None)
@given(ops=ops, history=st.integers(1, 4), max_keys=st.integers(1, 3))
def test_a_restored_broker_answers_every_replay_as_the_one_that_committed(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[bytes, bool]], history: int, max_keys: int) -> None:
    path = tmp_path_factory.mktemp("j") / "j.db"
    first = Journaled(path, history, max_keys)
    for i, (topic, commit) in enumerate(ops):
        first.sequence(topic, b"%d" % i)
        if commit:
            first.commit()
    first.commit()
    topics = [A, B, C, b"k/4/4/"]
    expected = first.answers(topics)
    first.journal.close()
    again = Journaled(path, history, max_keys)
    assert again.answers(topics) == expected


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=r"unreadable|corrupt"):
        Journal(path, 3, 2)


def test_a_damaged_page_is_found_before_anything_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journaled = Journaled(path, history=100, max_keys=10)
    for i in range(2000):
        journaled.sequence(b"k/1/%d/" % (i % 10 + 1), b"x" * 200)
    journaled.commit()
    journaled.journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # fold the WAL into the file, so the damage below hits the data
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = len(data) // 2 // 4096 * 4096
    data[page + 100 : page + 3000] = b"\x5a" * 2900
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"corrupt|unreadable"):
        Journaled(path, history=100, max_keys=10)


def test_a_history_with_a_hole_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journaled = Journaled(path)
    for i in range(3):
        journaled.sequence(A, b"%d" % i)
        journaled.commit()  # one run per event
    journaled.journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DELETE FROM runs WHERE last = 2")
    with pytest.raises(JournalError, match="does not end at its head"):
        Journaled(path)


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journaled(path).journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    with pytest.raises(JournalError, match="schema 99"):
        Journal(path, 3, 2)


def test_a_journal_in_use_by_another_broker_is_refused(tmp_path: Path) -> None:
    owner = Journal(tmp_path / "j.db", 3, 2)
    try:
        with pytest.raises(JournalError, match="locked"):
            Journal(tmp_path / "j.db", 3, 2)
    finally:
        owner.close()


def test_a_journal_path_that_cannot_be_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(JournalError):
        Journal(tmp_path / "dir.db", 3, 2)


@pytest.mark.parametrize(("per_batch", "history"), [(1, 3), (2, 3), (3, 3), (5, 3), (7, 4), (1, 1), (1, 100), (9, 100), (250, 100)])
def test_a_key_keeps_fewer_than_twice_its_history_and_a_step_on_disk_whatever_its_batches(tmp_path: Path, per_batch: int, history: int) -> None:
    journaled = Journaled(tmp_path / "j.db", history=history, max_keys=2)
    step = journaled.journal.trim_step
    batches = max(12, 3 * history // per_batch)
    for batch in range(batches):
        for i in range(per_batch):
            journaled.sequence(A, b"%d-%d" % (batch, i))
        journaled.commit()
        rows = journaled.journal.rows()
        assert history <= rows["events"] or rows["events"] == (batch + 1) * per_batch
        assert rows["events"] < 2 * history + step
        assert rows["runs"] <= history + step
    journaled.journal.close()
    again = Journaled(tmp_path / "j.db", history=history, max_keys=2)
    total = batches * per_batch
    after = max(0, total - history)
    assert [p for _, p in again.sequencer.replay(A, 77, after).events] == [b"%d-%d" % divmod(n, per_batch) for n in range(after, total)]


SCHEMA_1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE heads (topic BLOB PRIMARY KEY, head INTEGER NOT NULL, touched INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE events (
    topic BLOB NOT NULL, slot INTEGER NOT NULL, seq INTEGER NOT NULL, header BLOB NOT NULL, payload BLOB NOT NULL,
    UNIQUE (topic, slot)
);
CREATE TABLE streams (stream TEXT PRIMARY KEY, last INTEGER NOT NULL, touched INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', 1), ('epoch', 77), ('history', 3);
"""


def test_a_journal_of_schema_1_comes_back_migrated(tmp_path: Path) -> None:
    """The journal a broker before issue 13 left (one row per event) is read and rewritten as runs."""
    path = tmp_path / "j.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA_1)
        db.executemany("INSERT INTO heads VALUES (?, ?, ?)", [(A, 5, 2), (B, 1, 3)])
        db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            [(A, seq % 3, seq, b"h%d" % seq, b"a%d" % seq) for seq in (3, 4, 5)] + [(B, 1, 1, b"h1", b"b1")],
        )
        db.execute("INSERT INTO streams VALUES ('orders:x', 9, 3)")
    again = Journaled(path, history=3, max_keys=2)
    assert again.restored is not None and again.restored.epoch == 77
    assert again.restored.streams == [("orders:x", 9)]
    assert [p for _, p in again.sequencer.replay(A, 77, 2).events] == [b"a3", b"a4", b"a5"]
    assert [p for _, p in again.sequencer.replay(B, 77, 0).events] == [b"b1"]
    assert again.journal.rows() == {"heads": 2, "runs": 2, "streams": 1, "rejections": 0, "events": 4}
    again.sequence(A, b"a6")
    again.commit()
    again.journal.close()
    third = Journaled(path, history=3, max_keys=2)
    assert [p for _, p in third.sequencer.replay(A, 77, 3).events] == [b"a4", b"a5", b"a6"]


@pytest.mark.parametrize("damage", ["UPDATE runs SET first = 2", "UPDATE runs SET events = x'c1'", "UPDATE runs SET events = x'90'"])
def test_a_run_that_is_not_what_its_row_says_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "j.db"
    journaled = Journaled(path)
    for i in range(3):
        journaled.sequence(A, b"%d" % i)
    journaled.commit()
    journaled.journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(damage)
    with pytest.raises(JournalError, match="corrupt"):
        Journaled(path)


REASON = "quantity: expected a decimal"
COST = REJECTION_OVERHEAD + len("orders:x") + len(REASON)


def journaled_streams(path: Path, rejection_bytes: int) -> tuple[Journal, ProducerStreams, Restored | None]:
    """A journal and the producer streams it restores, as Ingest.open makes them (with a chosen byte bound)."""
    journal = Journal(path, 3, 2)
    restored = journal.restore()
    streams = ProducerStreams(rejection_bytes=rejection_bytes)
    if restored is None:
        journal.begin_epoch(77)
    else:
        streams.restore(restored.streams)
        streams.restore_rejections(restored.rejections)
    return journal, streams, restored


def commit_streams(journal: Journal, streams: ProducerStreams) -> None:
    """One batch of the producer streams' changes, as Ingest.flush writes it."""
    batch = JournalBatch(streams=streams.take_changes())
    batch.rejections, batch.forgotten_rejections = streams.take_rejection_changes()
    journal.write(batch)


def test_rejections_come_back_after_a_reopen_within_the_byte_bound_and_the_file_holds_no_more(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal, streams, _ = journaled_streams(path, 3 * COST)
    streams.decide("orders:x", 1, 0, True)
    for event_id in range(2, 7):  # 2..6 rejected, one batch each: 2 and 3 forgotten, deleted by later batches
        streams.decide("orders:x", event_id, event_id - 1, False, REASON)
        commit_streams(journal, streams)
    streams.decide("orders:x", 7, 6, False, REASON)  # never committed: a SIGKILL before the write
    assert journal.rows()["rejections"] == 3
    journal.close()
    journal, streams, restored = journaled_streams(path, 3 * COST)
    assert restored is not None and restored.streams == [("orders:x", 6)]
    assert restored.rejections == [("orders:x", n, REASON) for n in (4, 5, 6)]  # oldest first
    assert [streams.rejection("orders:x", n) for n in range(1, 8)] == [None, None, None, REASON, REASON, REASON, None]
    # the relay killed before it wrote the reject of 5 resends from 1: 5 is rejected again, the ack stops below 4
    assert streams.decide("orders:x", 1, 0, True) == Decision(Verdict.DUPLICATE, 3)
    assert streams.decide("orders:x", 5, 4, False) == Decision(Verdict.REJECTED, 5)
    assert streams.take_rejection_changes() == RejectionChanges([], [])  # restoring is not a change
    journal.close()


def test_a_smaller_byte_bound_at_restart_restores_the_newest_rejections_and_deletes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal, streams, _ = journaled_streams(path, 4 * COST)
    streams.decide("orders:x", 1, 0, True)
    for event_id in range(2, 6):
        streams.decide("orders:x", event_id, event_id - 1, False, REASON)
    commit_streams(journal, streams)
    journal.close()
    journal, streams, _ = journaled_streams(path, COST)
    assert [streams.rejection("orders:x", n) for n in range(2, 6)] == [None, None, None, REASON]
    assert streams.rejections_forgotten == 3
    commit_streams(journal, streams)  # the next batch deletes what the restore forgot
    assert journal.rows()["rejections"] == 1
    journal.close()
    _, _, restored = journaled_streams(path, COST)
    assert restored is not None and restored.rejections == [("orders:x", 5, REASON)]


def test_a_journal_of_schema_2_opens_with_no_rejections_and_keeps_them_from_then_on(tmp_path: Path) -> None:
    """The journal of the broker before rejections were journaled: schema 2, no rejections table."""
    path = tmp_path / "j.db"
    journal, streams, _ = journaled_streams(path, 4 * COST)
    streams.decide("orders:x", 1, 0, True)
    commit_streams(journal, streams)
    journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP TABLE rejections")
        db.execute("UPDATE meta SET value = 2 WHERE name = 'schema'")
    journal, streams, restored = journaled_streams(path, 4 * COST)
    assert restored is not None and restored.streams == [("orders:x", 1)] and restored.rejections == []
    streams.decide("orders:x", 2, 1, False, REASON)
    commit_streams(journal, streams)
    journal.close()
    journal, _, restored = journaled_streams(path, 4 * COST)
    assert restored is not None and restored.rejections == [("orders:x", 2, REASON)]
    journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        assert db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == (SCHEMA_VERSION,)


@pytest.mark.parametrize("damage", [
    "UPDATE rejections SET event_id = 9",  # above its stream's last
    "UPDATE rejections SET stream = 'orders:other'",  # of no known stream
    "UPDATE rejections SET event_id = 'two'",
    "UPDATE rejections SET reason = x'00'",
])
def test_a_rejection_that_does_not_fit_its_stream_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "j.db"
    journal, streams, _ = journaled_streams(path, 4 * COST)
    streams.decide("orders:x", 1, 0, True)
    streams.decide("orders:x", 2, 1, False, REASON)
    commit_streams(journal, streams)
    journal.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(damage)
    with pytest.raises(JournalError, match="bad rejection row"):
        journaled_streams(path, 4 * COST)
