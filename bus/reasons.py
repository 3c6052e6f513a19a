"""Why the server ends a stream: the `force_disconnect` reasons (CONTRACT §3) and their texts, in one table.

The store's admin actions put them in the control messages they publish, the
streamer in what its access re-check and its own shutdown send, and the
dashboard shows the message it received (or, when it finds out by itself after
a reconnect, the same text, which the streamer serves it from this table). A
text names its strategy: by its name, in quotes, or else by its id.
"""

from __future__ import annotations

PERMISSION_REVOKED = "permission_revoked"
STRATEGY_DELETED = "strategy_deleted"
STRATEGY_INACTIVE = "strategy_inactive"
SERVER_SHUTDOWN = "server_shutdown"

TEXTS = {
    PERMISSION_REVOKED: "Your access to strategy {strategy} was revoked.",
    STRATEGY_INACTIVE: "Strategy {strategy} was deactivated.",
    STRATEGY_DELETED: "Strategy {strategy} was deleted.",
    SERVER_SHUTDOWN: "The server is shutting down; reconnect to resume.",
}
DISCONNECT_REASONS = frozenset(TEXTS)


def message(reason: str, strategy: str | int = "") -> str:
    """The text of `reason` about `strategy` (its name, or its id); KeyError for an unknown reason."""
    label = f'"{strategy}"' if isinstance(strategy, str) else str(strategy)
    return TEXTS[reason].format(strategy=label)
