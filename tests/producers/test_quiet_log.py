"""A repeating failure logs its first occurrence, then at most one line per interval with the count it stands for."""

from __future__ import annotations

import logging

import pytest

from producers.quiet_log import QuietLog


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
