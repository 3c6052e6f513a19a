"""Why the server ends a stream: the `force_disconnect` reasons (CONTRACT §3) and their texts, in one table.

The store's admin actions put them in the control messages they publish, the
streamer in what its access re-check and its own shutdown send, and the
dashboard shows the message it received (or, when it finds out by itself after
a reconnect, the same text, which the streamer serves it from this table). A
text about a strategy names it: by its name, in quotes, or else by its id.
The session reasons end every stream opened with a session (a logout, a
password change) or by a user (deactivated); `too_many_streams` ends the
streams one streamer admitted beyond the per-user limit in a race with another.
"""

from __future__ import annotations

PERMISSION_REVOKED = "permission_revoked"
STRATEGY_DELETED = "strategy_deleted"
STRATEGY_INACTIVE = "strategy_inactive"
SERVER_SHUTDOWN = "server_shutdown"
SESSION_ENDED = "session_ended"
USER_DEACTIVATED = "user_deactivated"
TOO_MANY_STREAMS = "too_many_streams"

TEXTS = {
    PERMISSION_REVOKED: "Your access to strategy {strategy} was revoked.",
    STRATEGY_INACTIVE: "Strategy {strategy} was deactivated.",
    STRATEGY_DELETED: "Strategy {strategy} was deleted.",
    SERVER_SHUTDOWN: "The server is shutting down; reconnect to resume.",
    SESSION_ENDED: "Your session has ended; log in again.",
    USER_DEACTIVATED: "Your user account was deactivated.",
    TOO_MANY_STREAMS: "Too many open streams for this user; close another one first.",
}
DISCONNECT_REASONS = frozenset(TEXTS)


def message(reason: str, strategy: str | int = "") -> str:
    """The text of `reason` about `strategy` (its name, or its id); KeyError for an unknown reason."""
    label = f'"{strategy}"' if isinstance(strategy, str) else str(strategy)
    return TEXTS[reason].format(strategy=label)
