"""Something that repeats logs its first occurrence, then at most one line per interval with the count it stands for."""

from __future__ import annotations

import logging

import pytest

from bus.quiet_log import CountLog, QuietLog


@pytest.mark.expect_log("store down")
def test_one_line_per_interval_saying_how_many_were_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    quiet = QuietLog(logging.getLogger("quiet-test"), logging.WARNING, interval_s=10.0, clock=lambda: now[0])
    for moment in (0.0, 1.0, 2.0, 9.9, 10.0, 11.0, 30.0):
        now[0] = moment
        quiet("store down: %s", "locked")
    assert [r.getMessage() for r in caplog.records] == [
        "store down: locked",
        "store down: locked (3 more since the last report)",
        "store down: locked (1 more since the last report)",
    ]
    assert (quiet.count, quiet.suppressed) == (7, 0)


@pytest.mark.expect_log("payloads refused")
def test_a_running_total_logs_what_it_grew_by_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    counts = CountLog(logging.getLogger("count-test"), "payloads refused", interval_s=10.0, clock=lambda: now[0])
    for moment, total in ((0.0, 0), (1.0, 2), (5.0, 5), (10.9, 5), (12.0, 9), (30.0, 9), (31.0, 10)):
        now[0] = moment
        counts.tick(total)
    assert [r.getMessage() for r in caplog.records] == [
        "2 payloads refused (2 in all)",  # the first growth at once
        "7 payloads refused (9 in all)",  # 5 s later it had grown, but the next line waits for the interval
        "1 payloads refused (10 in all)",  # no line while the total stood still
    ]
