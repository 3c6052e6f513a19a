"""The clients of one stream key: those live, those still catching up, its head and its counters."""

from __future__ import annotations

from typing import Any, NoReturn

from bus.replay import Position
from bus.topics import StreamKey
from streamer.catchup import CatchUp
from streamer.client import Client


class Channel:
    """The clients of one stream key, its head and its counters.

    `live` is a tuple, rebuilt when a client joins, leaves or goes live, so
    fan-out iterates it without copying and a client closing mid-loop changes
    nothing under the loop; `catching_up` maps each resuming client to its core.
    """

    __slots__ = (
        "catching_up", "events", "hash", "head", "key", "last_latency_ms", "live", "members", "slow_consumer_disconnects",
    )

    def __init__(self, key: StreamKey, head: Position) -> None:
        self.key = key
        self.hash = hash(key)  # the heartbeat's slice is taken from it without hashing the key again
        self.members: tuple[Client, ...] = ()  # every client, in arrival order
        self.live: tuple[Client, ...] = ()
        self.catching_up: dict[Client, CatchUp] = {}
        self.head = head
        self.events = 0
        self.slow_consumer_disconnects = 0
        self.last_latency_ms: float | None = None

    def join(self, client: Client, catch_up: CatchUp | None = None) -> None:
        """Add a client: live, or catching up with `catch_up`."""
        self.members += (client,)
        if catch_up is None:
            self.live += (client,)
        else:
            self.catching_up[client] = catch_up

    def go_live(self, client: Client) -> None:
        """A client that caught up receives the live stream from now on."""
        if self.catching_up.pop(client, None) is not None:
            self.live += (client,)

    def leave(self, client: Client) -> None:
        """Remove a client (it closed)."""
        self.members = tuple(c for c in self.members if c is not client)
        self.live = tuple(c for c in self.live if c is not client)
        self.catching_up.pop(client, None)

    def describe(self) -> dict[str, Any]:
        """Per-key figures for the stats endpoint: clients, head, lag and drops."""
        return {
            "clients": len(self.members),
            "head": str(self.head),
            "events": self.events,
            "max_backlog_frames": max((c.backlog_frames for c in self.members), default=0),
            "last_latency_ms": self.last_latency_ms,
            "slow_consumer_disconnects": self.slow_consumer_disconnects,
        }


class Channels(dict[StreamKey, Channel]):
    """The hub's channels by key, also kept in `slices` groups by their key's hash (the heartbeat's slices).

    A heartbeat slice then touches its own ~1/`slices` of the keys instead of testing every
    key's hash: at 5,000 keys that scan was ~190 µs, ten times a second. Only `[]=` and `del`
    change it (the hub's two places); the grouping follows them.
    """

    def __init__(self, slices: int) -> None:
        super().__init__()
        self._slices: list[dict[StreamKey, Channel]] = [{} for _ in range(slices)]

    def __setitem__(self, key: StreamKey, channel: Channel) -> None:
        old = self.get(key)
        if old is not None:
            del self._slices[old.hash % len(self._slices)][key]
        super().__setitem__(key, channel)
        self._slices[channel.hash % len(self._slices)][key] = channel

    def __delitem__(self, key: StreamKey) -> None:
        channel = self[key]
        super().__delitem__(key)
        del self._slices[channel.hash % len(self._slices)][key]

    def _unsupported(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("Channels changes only by [] = and del (the slices follow those two)")

    pop = popitem = setdefault = update = clear = _unsupported  # dict's own would bypass the slices

    def in_slice(self, index: int) -> list[Channel]:
        """The channels of slice `index` (a copy: a write may close a client, and its channel with it)."""
        return list(self._slices[index].values())
