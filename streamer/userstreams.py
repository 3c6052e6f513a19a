"""The open streams of each user on this streamer: what an ended session, a deactivation and the limit act on.

Channels index streams by key; an `end_sessions` message or the per-user
limit names a user, and this index answers without a scan of every key.
"""

from __future__ import annotations

from bus.events import EndSessionsMessage
from streamer.auth import ends
from streamer.client import Client


class UserStreams:
    """Open streams by user id (only users holding one)."""

    __slots__ = ("_by_user",)

    def __init__(self) -> None:
        self._by_user: dict[int, set[Client]] = {}

    def add(self, client: Client) -> None:
        """A stream opened."""
        self._by_user.setdefault(client.user_id, set()).add(client)

    def remove(self, client: Client) -> None:
        """A stream closed."""
        streams = self._by_user.get(client.user_id)
        if streams is not None:
            streams.discard(client)
            if not streams:
                del self._by_user[client.user_id]

    def ended_by(self, message: EndSessionsMessage) -> list[Client]:
        """The user's open streams whose credential the message ends."""
        streams = self._by_user.get(message.user_id, ())
        return [client for client in streams if not client.closed and ends(message, client.user_id, client.session_id)]

    def newest(self, user_id: int, count: int) -> list[Client]:
        """The user's `count` most recently opened streams still open."""
        streams = [client for client in self._by_user.get(user_id, ()) if not client.closed and not client.finishing]
        return sorted(streams, key=lambda client: client.opened, reverse=True)[:count]

    def credentials(self) -> tuple[dict[int, int], set[int]]:
        """The login sessions open streams were opened with (session id → user id), and every user with a stream."""
        sessions = {c.session_id: c.user_id for streams in self._by_user.values() for c in streams if c.session_id is not None}
        return sessions, set(self._by_user)
