"""Login attempts: limited per client address and per username, checked in threads of their own.

Every attempt takes a token from its address's bucket and from its username's
before anything is hashed; an empty bucket is TooManyAttempts (429 with
Retry-After), and costs nothing more. A bucket holds `limit` attempts and
refills at `limit` per `window` (CONTRACT section 3: 60 per address and 10 per
username per 5 minutes, which a person typing never meets). IPv6 addresses
count per /64, which one client usually holds whole.

The password check (scrypt: ~35 ms of CPU and 16 MiB) runs in LOGIN_THREADS
threads of its own: never on the IOLoop, and never in the database threads
that stream admission needs. At most MAX_PENDING attempts wait for them;
beyond, TooManyAttempts too (counted in `refused_busy`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from streamer import queries
from streamer.queries import Database, Viewer
from web.ratelimit import RateLimiter, address_key, retry_after

LOGIN_THREADS = 2
MAX_PENDING = 16
# A username longer than any stored one (64) cannot log in; its bucket key needs no more.
MAX_KEY_CHARS = 128


class TooManyAttempts(Exception):
    """A login refused before any check; `retry_after` in whole seconds."""

    def __init__(self, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message


class LoginGate:
    """Rate limits and the password check of `POST /api/login`."""

    def __init__(self, database: Database, per_address: int, per_user: int, window: float) -> None:
        self.database = database
        self.by_address = RateLimiter(per_address / window, burst=per_address)
        self.by_user = RateLimiter(per_user / window, burst=per_user)
        self.executor = ThreadPoolExecutor(LOGIN_THREADS, thread_name_prefix="login")
        self.pending = 0
        self.refused_busy = 0

    async def attempt(self, address: str, username: str, password: str) -> tuple[Viewer, str] | None:
        """The user these credentials are for and a new session's token, else None; TooManyAttempts before any check."""
        self._admit(address, username)
        self.pending += 1
        try:
            return await self.database.run_in(self.executor, queries.login, username, password)
        finally:
            self.pending -= 1

    def counters(self) -> dict[str, int]:
        """Logins refused before any check, by cause (for stats and /metrics)."""
        return {
            "login_refused_address": self.by_address.refused,
            "login_refused_user": self.by_user.refused,
            "login_refused_busy": self.refused_busy,
        }

    def _admit(self, address: str, username: str) -> None:
        if self.pending >= MAX_PENDING:
            self.refused_busy += 1
            raise TooManyAttempts(1, "Too many logins in progress; try again in a second.")
        wait = self.by_address.wait(address_key(address))
        if wait:
            raise TooManyAttempts(retry_after(wait), "Too many login attempts from this address; try again later.")
        wait = self.by_user.wait(username[:MAX_KEY_CHARS])
        if wait:
            raise TooManyAttempts(retry_after(wait), "Too many login attempts for this user; try again later.")

    def close(self) -> None:
        """Wait for running checks, then release the threads."""
        self.executor.shutdown(wait=True)
