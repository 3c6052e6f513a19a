"""Per-user stream limits (CONTRACT §3: 429 beyond `--max-streams-per-user`): a count per user, no more."""

from __future__ import annotations


class Admission:
    """How many streams each user holds; a reservation is taken before a stream opens."""

    __slots__ = ("limit", "streams_per_user")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.streams_per_user: dict[int, int] = {}  # only users holding at least one

    def reserve(self, user_id: int) -> bool:
        """Count one more stream of the user; False when at the limit."""
        count = self.streams_per_user.get(user_id, 0)
        if count >= self.limit:
            return False
        self.streams_per_user[user_id] = count + 1
        return True

    def release(self, user_id: int) -> None:
        """Give back a reservation (a refused connect, or a closed stream)."""
        count = self.streams_per_user.get(user_id, 0) - 1
        if count > 0:
            self.streams_per_user[user_id] = count
        else:
            self.streams_per_user.pop(user_id, None)
