"""The per-user stream limit across every streamer of a deployment (CONTRACT §3: 429 beyond `--max-streams-per-user`).

Chosen: every streamer announces on the bus how many streams each user holds
on it (`stream_counts` control messages, streamer/peers.py), and admits a new
stream when its own count plus the others' last announced counts stays below
the limit. The decision itself is local, a dictionary lookup per peer: a
reconnect storm of thousands of clients costs no database round trip at all,
and no extra wait on the event loop. Considered and not chosen: a lease row
per stream in the database (a write per connect and per disconnect, and a
renewal per stream, on the path of every connect; the database is what a storm
already queues on) and a counter row per user (exact, but the same round trip).

    reserve(user, now)    local + peers' fresh counts < limit?  count it, note the change
    changes()             the (user, count) pairs to announce now; `full()` all of them
    heard(peer, pairs)    a peer's counts; the users of which this streamer now holds too many
    excess(user, now)     the same for one user (asked again when a stream opens)
    forget_peer / expire  a streamer that left, or went silent for PEER_TTL_S, counts no more

Crashes: a peer's counts are kept PEER_TTL_S after they were last heard (every
peer repeats all of its counts each FULL_EVERY_S, streamer/peers.py); then a
crashed streamer's streams count no more. A streamer that stops cleanly says
so (`leaving`) and is forgotten at once.

Races, and the tolerance: two streamers admitting for one user at the same
moment do not see each other's new streams until the announcement arrives
(at most FLUSH_DELAY_S plus one bus hop: a millisecond or two on one host), so
for that long the user may exceed the limit by what the other streamers
admitted meanwhile. It does not stay exceeded: streamers are ranked by id
(the older one first) and each keeps at most `limit - sum of the counts of the
streamers ranked before it`; one that hears it holds more closes its newest
streams of that user (`force_disconnect` `too_many_streams`), when it hears
the counts and when one of its streams opens. Once the counts are heard, the
total is at most the limit again. Measured (tests/streamer/test_across_streamers.py,
two processes on one host, limit 5, 15 connects of one user on each at once):
9 to 10 admitted, the excess closed within 3 to 20 ms of the last answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

PEER_TTL_S = 3.5  # three repeats of every count missed
MAX_PEERS = 256
Pairs = list[tuple[int, int]]


class Admission:
    """Streams per user on this streamer (reservations included) and on its peers; pure, `now` is given."""

    __slots__ = ("_changed", "_peers", "limit", "me", "on_change", "peer_ttl", "peers_refused", "streams_per_user")

    def __init__(self, limit: int, me: str = "", peer_ttl: float = PEER_TTL_S) -> None:
        self.limit = limit
        self.me = me
        self.peer_ttl = peer_ttl
        self.streams_per_user: dict[int, int] = {}  # only users holding at least one
        self.on_change: Callable[[], None] | None = None  # told when the first change since `changes()` happens
        self.peers_refused = 0  # announcements of peers beyond MAX_PEERS, ignored
        self._peers: dict[str, dict[int, tuple[int, float]]] = {}  # peer -> user -> (count, heard at)
        self._changed: set[int] = set()

    def elsewhere(self, user_id: int, now: float, ranked_before: str | None = None) -> int:
        """The user's streams on other streamers, as last heard (only those ranked before `ranked_before` if given)."""
        horizon = now - self.peer_ttl
        total = 0
        for peer, counts in self._peers.items():
            entry = counts.get(user_id)
            if entry is not None and entry[1] > horizon and (ranked_before is None or peer < ranked_before):
                total += entry[0]
        return total

    def reserve(self, user_id: int, now: float) -> bool:
        """Count one more stream of the user; False when the deployment holds the limit already."""
        count = self.streams_per_user.get(user_id, 0)
        if count + (self.elsewhere(user_id, now) if self._peers else 0) >= self.limit:
            return False
        self.streams_per_user[user_id] = count + 1
        self._note(user_id)
        return True

    def release(self, user_id: int) -> None:
        """Give back a reservation (a refused connect, or a closed stream)."""
        count = self.streams_per_user.get(user_id, 0) - 1
        if count > 0:
            self.streams_per_user[user_id] = count
        elif self.streams_per_user.pop(user_id, None) is None:
            return  # one release too many changes nothing
        self._note(user_id)

    def changes(self) -> Pairs:
        """The counts changed since the last call, zeros included, to announce."""
        pairs = [(user_id, self.streams_per_user.get(user_id, 0)) for user_id in self._changed]
        self._changed.clear()
        return pairs

    def full(self) -> Pairs:
        """Every user's count on this streamer (a repeat, so that peers may forget what they stop hearing)."""
        return list(self.streams_per_user.items())

    def heard(self, peer: str, pairs: Iterable[tuple[int, int]], now: float) -> Pairs:
        """A peer's counts; the (user, excess) this streamer must shed, because the peer ranks before it."""
        counts = self._peers.get(peer)
        if counts is None:
            if len(self._peers) >= MAX_PEERS:
                self.peers_refused += 1
                return []
            counts = self._peers[peer] = {}
        excess: Pairs = []
        for user_id, count in pairs:
            if count:
                counts[user_id] = (count, now)
            else:
                counts.pop(user_id, None)
            over = self.excess(user_id, now) if peer < self.me else 0
            if over:
                excess.append((user_id, over))
        return excess

    def excess(self, user_id: int, now: float) -> int:
        """How many of the user's streams here are beyond this streamer's share: the limit minus what peers ranked before it hold."""
        count = self.streams_per_user.get(user_id, 0)
        if not count or not self._peers:
            return 0
        return max(0, count + self.elsewhere(user_id, now, self.me) - self.limit)

    def forget_peer(self, peer: str) -> None:
        """A peer that stopped: its streams count no more."""
        self._peers.pop(peer, None)

    def expire(self, now: float) -> None:
        """Drop counts not heard for `peer_ttl` (a crashed peer's, or a user's whose zero was lost)."""
        horizon = now - self.peer_ttl
        for peer in list(self._peers):
            counts = self._peers[peer]
            for user_id in [user_id for user_id, (_, heard) in counts.items() if heard <= horizon]:
                del counts[user_id]
            if not counts:
                del self._peers[peer]

    @property
    def peers(self) -> int:
        """Peers with counts currently heard."""
        return len(self._peers)

    def elsewhere_total(self, now: float) -> int:
        """Every user's streams on other streamers, as last heard (for stats)."""
        horizon = now - self.peer_ttl
        return sum(count for counts in self._peers.values() for count, heard in counts.values() if heard > horizon)

    def _note(self, user_id: int) -> None:
        if not self._changed and self.on_change is not None:
            self._changed.add(user_id)
            self.on_change()
        else:
            self._changed.add(user_id)
