"""The SUB reader's interrupt coalescing (NAPI-style): when to watch the FD and when to read next.

A state core with no socket and no loop (bus/subreader.py is the wiring). After a
read that returned messages the reader stops watching ZMQ_FD and reads again after
`coalesce_s`, taking in one batch whatever arrived meanwhile; a read that finds
nothing puts it back on the FD. So a lone event after a quiet spell is read on its
edge, at once, and at paced rates one wake-up of the loop (and one activation of the
socket by libzmq's I/O thread: while nobody reads, the pipe stays active and the
I/O thread signals no more) serves every event of a `coalesce_s` window.

    state      read found   →  state      FD       next read
    WATCHING   nothing         WATCHING   watch    on the FD's next edge
    WATCHING   some            RESTING    unwatch  after coalesce_s
    RESTING    some            RESTING    unwatch  after coalesce_s
    RESTING    nothing         WATCHING   watch    on the FD's next edge
    any        a full batch    as above   as above soon (more waits, and no edge will say so)

With `coalesce_s` 0 it never rests: every read that returned messages stays
WATCHING (the reader before coalescing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.Enum):
    WATCHING = "watching"  # the FD's reader is registered: the next edge reads
    RESTING = "resting"  # not watching: a timer reads after coalesce_s


class Found(enum.Enum):
    NOTHING = "nothing"  # the first recv said EAGAIN
    SOME = "some"  # messages, then EAGAIN: drained
    FULL = "full"  # the batch's bound ended the read: more may wait


class Fd(enum.Enum):
    KEEP = "keep"
    WATCH = "watch"  # add the FD's reader
    UNWATCH = "unwatch"  # remove it


class Then(enum.Enum):
    EDGE = "edge"  # wait for the FD
    LATER = "later"  # read after coalesce_s
    SOON = "soon"  # read on the loop's next turn


@dataclass(frozen=True, slots=True)
class Step:
    """What the reader does after a read: its new mode, what it does with the FD, when it reads next."""

    mode: Mode
    fd: Fd
    then: Then


def after_read(mode: Mode, found: Found, coalescing: bool) -> Step:
    """The reader's next step after a read in `mode` that found `found`."""
    if found is Found.NOTHING:
        new, then = Mode.WATCHING, Then.EDGE
    elif not coalescing:
        new, then = Mode.WATCHING, Then.SOON if found is Found.FULL else Then.EDGE
    else:
        new, then = Mode.RESTING, Then.SOON if found is Found.FULL else Then.LATER
    if new is mode:
        return Step(new, Fd.KEEP, then)
    return Step(new, Fd.WATCH if new is Mode.WATCHING else Fd.UNWATCH, then)


# Every step looked up, not built: the reader takes one after each read, on the hot path.
STEPS = {(mode, found, coalescing): after_read(mode, found, coalescing) for mode in Mode for found in Found for coalescing in (False, True)}
