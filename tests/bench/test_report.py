"""The harness's own logic: seq accounting, percentiles, the JSON schema of CONTRACT section 7."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report
from bench.report import RunResult, SeqTracker
from bench.ssestream import SseStream, Tally


def tally(after: int, seqs: list[int], published: int) -> tuple[int, int]:
    tracker = SeqTracker(after)
    for seq in seqs:
        tracker.see(seq)
    return tracker.lost(published), tracker.duplicated


@pytest.mark.parametrize(
    ("after", "seqs", "published", "lost", "duplicated"),
    [
        (0, [1, 2, 3], 3, 0, 0),
        (10, [11, 12, 13, 14], 4, 0, 0),
        (0, [1, 3], 3, 1, 0),  # a gap
        (0, [1, 2], 4, 2, 0),  # the tail never arrived
        (0, [], 5, 5, 0),
        (0, [1, 2, 2, 3], 3, 0, 1),  # a repeat
        (5, [5, 6, 7], 2, 0, 1),  # at or below the head the stream started from
        (0, [1, 4, 2], 4, 2, 1),  # out of order counts as a gap and a repeat: the contract orders each key
    ],
)
def test_seq_tracker_counts_lost_and_duplicated_events(after: int, seqs: list[int], published: int, lost: int, duplicated: int) -> None:
    assert tally(after, seqs, published) == (lost, duplicated)


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert report.percentile(values, 0.5) == 500
    assert report.percentile(values, 0.99) == 990
    assert report.percentile(values, 0.999) == 999
    assert report.percentile([7], 0.999) == 7
    assert report.percentile([], 0.5) == 0.0


def test_latency_summary_converts_microseconds_to_milliseconds() -> None:
    summary = report.latency_summary([3000, 1000, 2000, 4000])
    assert summary == {"p50": 2.0, "p90": 4.0, "p99": 4.0, "p999": 4.0, "max": 4.0}


def sample_run(**changes: object) -> RunResult:
    values: dict[str, object] = dict(
        connections=20, keys=4, rate=50.0, duration_s=2.0, deliveries_per_s=250.0,
        latency_ms={"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.0}, lost=0, duplicated=0,
        slow_consumer_disconnects=0, streamer_cpu_us_per_delivery=12.5, rss_idle_kib=6.0, rss_loaded_kib=7.0,
        connect_s=0.1, extra={"streams_closed": 0},
    )
    values.update(changes)
    return RunResult(**values)  # type: ignore[arg-type]


def check_run_schema(obj: dict[str, object]) -> None:
    assert tuple(obj)[: len(report.RUN_KEYS)] == report.RUN_KEYS
    assert set(obj["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}  # type: ignore[arg-type]
    assert set(obj["streamer_rss_kib_per_connection"]) == {"idle", "loaded"}  # type: ignore[arg-type]


def test_run_json_has_exactly_the_contract_keys() -> None:
    obj = sample_run().to_json()
    assert set(obj) == {*report.RUN_KEYS, *report.DIAGNOSTIC_KEYS}
    check_run_schema(obj)


def test_find_max_json_adds_max_rate_and_the_two_runs(tmp_path: Path) -> None:
    obj = report.find_max_json(1000.0, sample_run(rate=500.0), sample_run(rate=900.0))
    assert set(obj) == {*report.RUN_KEYS, *report.DIAGNOSTIC_KEYS, "max_rate", "at_half", "at_90"}
    check_run_schema(obj["at_half"])
    check_run_schema(obj["at_90"])
    report.write_json(str(tmp_path / "r.json"), obj)
    assert json.loads((tmp_path / "r.json").read_text())["at_90"]["rate"] == 900.0


@pytest.mark.parametrize(
    ("changes", "passes"),
    [({}, True), ({"lost": 1}, True), ({"lost": 2}, False), ({"slow_consumer_disconnects": 1}, False),
     ({"latency_ms": {"p50": 1, "p90": 2, "p99": 50.1, "p999": 60, "max": 70}}, False),
     ({"extra": {"streams_closed": 1}}, False)],
)
def test_find_max_criterion(changes: dict[str, object], passes: bool) -> None:
    assert sample_run(**changes).passes(expected_deliveries=1000) is passes


def test_table_and_plot_render(tmp_path: Path) -> None:
    assert "lost / duplicated" in report.table(sample_run())
    report.plot(str(tmp_path / "p.png"), [1000, 2000, 30000], {100: 5, 101: 7}, "t")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_sse_stream_decodes_chunks_split_anywhere() -> None:
    """Every split of a chunked body yields the same seqs, and one latency of each kind per event."""
    frames = [b"retry: 3000\n\n",
              b'event: connection\ndata: {"status": "connected", "last_event_id": "77-10"}\n\n',
              b'id: 77-11\nevent: order_update\ndata: {"order_id":"bench-1000000"}\n\n',
              b'id: 77-12\nevent: order_update\ndata: {"order_id": "bench-2000000"}\n\n']
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(f), f) for f in frames)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    for cut in range(1, len(wire)):
        tally = Tally()
        stream = SseStream(tally)
        stream.feed(wire[:cut], 5_000_000, 7_000_000)
        stream.feed(wire[cut:], 5_000_000, 7_000_000)
        assert stream.tracker is not None
        assert (stream.tracker.after, stream.tracker.next_seq) == (10, 13), cut
        assert (list(tally.to_read), list(tally.to_arrival), list(tally.arrival_to_read)) == ([6000, 5000], [4000, 3000], [2000, 2000]), cut


def test_a_refused_stream_reads_no_body() -> None:
    stream = SseStream(Tally())
    stream.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nid: 1-1\n\n", 1, 1)
    assert stream.refused
    assert stream.tracker is None


def test_full_seconds_leave_out_the_partial_first_and_last_seconds() -> None:
    assert report.full_seconds({10: 40, 11: 1000, 12: 990, 13: 1010, 14: 300}) == [(1, 1000), (2, 990), (3, 1010)]
    assert report.full_seconds({10: 40, 11: 30}) == [(0, 40), (1, 30)]


def test_the_percentile_axis_gives_each_nine_the_same_room() -> None:
    assert [round(report.nines(q), 6) for q, _ in report.NINES_TICKS] == [0.30103, 1.0, 2.0, 3.0, 4.0]


def test_a_sweep_up_to_half_of_max_ends_at_half() -> None:
    from bench.sweep import half_max_rates

    assert half_max_rates(8000, 4) == [1000, 2000, 3000, 4000]


def test_sweep_and_cost_tables_have_a_row_per_run(tmp_path: Path) -> None:
    from bench import sweep

    arrived = {"p50": 0.25, "p90": 0.5, "p99": 2.75, "p999": 3.5, "max": 4.5}
    runs = [sample_run(rate=100.0, arrival_latency_ms=arrived),
            sample_run(rate=200.0, stages={"sequenced_to_read": {"p99": 1.5, "count": 9}}, arrival_latency_ms=arrived)]
    assert len(sweep.sweep_table(runs).splitlines()) == 4
    assert "| 1.5 |" in sweep.sweep_table(runs)
    assert "| 2.75 | 3.5 |" in sweep.sweep_table(runs)  # publish → arrived p99, p99.9 beside publish → read
    assert len(sweep.cost_table(runs).splitlines()) == 4
    sweep.plot_sweep(str(tmp_path / "s.png"), runs, "t")
    sweep.plot_cost(str(tmp_path / "c.png"), runs, "t")
    assert (tmp_path / "s.png").stat().st_size > 1000
