"""web/backoff.py: when accepting pauses and what reaches the log, as tables of (time, event) → output."""

from __future__ import annotations

import pytest

from web.backoff import AcceptBackoff, ReportThrottle

# (name, times of occurrences, what note() returns for each) with a 10 s interval.
THROTTLE_CASES = [
    ("the first is reported at once", [0.0], [1]),
    ("within the interval: quiet", [0.0, 1.0, 9.9], [1, None, None]),
    ("after the interval: the count since the last report", [0.0, 1.0, 9.9, 10.0], [1, None, None, 3]),
    ("a lone one long after is a count of one", [0.0, 50.0], [1, 1]),
    ("a flood of 1,000 in 3 s is one line", [i * 0.003 for i in range(1000)], [1] + [None] * 999),
]


@pytest.mark.parametrize(("times", "expected"), [pytest.param(*c[1:], id=c[0]) for c in THROTTLE_CASES])
def test_report_throttle_reports_once_per_interval_with_the_count(times: list[float], expected: list[int | None]) -> None:
    throttle = ReportThrottle(interval=10.0)
    assert [throttle.note(now) for now in times] == expected


# (name, events as (time, "fail" | "accept"), which events give a log line)
BACKOFF_CASES = [
    ("one failure: a warning, then recovery", [(0.0, "fail"), (0.1, "accept")], ["warning", "info"]),
    ("accepts without failures say nothing", [(0.0, "accept"), (1.0, "accept")], [None, None]),
    ("a long exhaustion: one warning per 10 s", [(t / 10, "fail") for t in range(250)],
     ["warning"] + [None] * 99 + ["warning"] + [None] * 99 + ["warning"] + [None] * 49),
    ("flapping: one recovery line per 10 s",
     [(0.0, "fail"), (0.1, "accept"), (0.2, "fail"), (0.3, "accept"), (10.2, "fail"), (10.3, "accept")],
     ["warning", "info", None, None, "warning", "info"]),
]


@pytest.mark.parametrize(("events", "expected"), [pytest.param(*c[1:], id=c[0]) for c in BACKOFF_CASES])
def test_accept_backoff_pauses_every_failure_and_logs_at_most_once_per_interval(
    events: list[tuple[float, str]], expected: list[str | None]
) -> None:
    backoff = AcceptBackoff(pause=0.1, interval=10.0)
    lines: list[str | None] = []
    for now, event in events:
        if event == "fail":
            pause, line = backoff.failed("EMFILE: Too many open files", now)
            assert pause == 0.1
            lines.append(None if line is None else "warning")
        else:
            lines.append(None if backoff.accepted(now) is None else "info")
    assert lines == expected
    assert backoff.failures == sum(1 for _, event in events if event == "fail")


def test_accept_backoff_lines_carry_the_reason_and_the_counts() -> None:
    backoff = AcceptBackoff(pause=0.1, interval=10.0)
    for tenth in range(101):
        _, line = backoff.failed("EMFILE: Too many open files", tenth / 10)
    assert line is not None and "EMFILE" in line and "100 failed since the last report" in line
    recovered = backoff.accepted(10.5)
    assert recovered == "accepting again after 101 failed accepts over 10.5 s"
