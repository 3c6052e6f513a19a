"""The harness's /proc readings: an autogroup file may be absent, empty or odd (CI containers)."""

import os

import pytest

from bench.procstat import autogroup_nice, parse_autogroup


@pytest.mark.parametrize(("text", "nice"), [
    (b"/autogroup-85 nice 0\n", 0),
    (b"/autogroup-7 nice -5\n", -5),
    (b"/autogroup-7 nice 19", 19),
    (b"", None),                      # the file exists but the kernel leaves it empty
    (b"\n", None),
    (b"/autogroup-7 nice\n", None),
    (b"/autogroup-7 nice x\n", None),
    (b"/autogroup-7 weight 3\n", None),
])
def test_parse_autogroup(text: bytes, nice: int | None) -> None:
    assert parse_autogroup(text) == nice


def test_this_process_reads_as_a_nice_value_or_none() -> None:
    assert autogroup_nice(os.getpid()) in (None, *range(-20, 20))
