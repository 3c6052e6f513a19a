"""The webhook's budget of failed authentications per client address, and the senders known good: pure, `now` given.

Random tokens are never rate limited per token (each guess is a new token), so
each client address may fail authentication (an unknown group, a wrong token:
the webhook's 404 and 401) at most `limit` times per window; beyond, its
requests are refused (429) before any token check or database work, until the
window that began with its first failure ends. A (group, token) pair that
authenticated skips the budget, so a sender behind an address shared with an
attacker (NAT) keeps working: it is kept as a keyed hash (blake2b, a random key
per process), never the token itself.

    admit(address, group, token, now) ─▶ Admission     go on and check the token
                                     └─▶ Refusal       429, Retry-After; `report`: the window's first refusal
    settle(admission, verdict, now)                    FAILED, AUTHENTICATED or UNDECIDED (the store failed)

A check in flight holds a place in its address's budget until settled, so
concurrent guesses cannot pass the budget while the first ones are checked.
Both tables are bounded: at most `max_addresses` addresses (the least recently
seen dropped first, its budget then whole again) and `max_known` pairs (each
forgotten `known_for_s` after it last authenticated). Measured with
tracemalloc: ~300 bytes per address tracked, ~200 per pair known, so the
defaults hold at most ~5 MB.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_LIMIT = 20
DEFAULT_WINDOW_S = 60.0
MAX_ADDRESSES = 10_000
MAX_KNOWN = 10_000
KNOWN_FOR_S = 3600.0
# A refusal caused only by checks still in flight: they settle within a database round trip.
IN_FLIGHT_RETRY_S = 1.0


class Verdict(enum.Enum):
    """What the token check said of an admitted request."""

    FAILED = "failed"  # unknown group or wrong token
    AUTHENTICATED = "authenticated"  # the pair is right (the request may still be refused later: inactive, fields)
    UNDECIDED = "undecided"  # no answer (the database failed): counts neither way


@dataclass(frozen=True, slots=True)
class Admission:
    """A request let through to the token check; `reserved`: it holds a place in its address's budget."""

    address: str
    pair: bytes
    reserved: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused before any check: retry after `retry_after_s`; `report` once per address and window."""

    retry_after_s: float
    report: bool


@dataclass(slots=True)
class _Spent:
    """One address's window: when it began (its first failure), failures in it, checks in flight."""

    started: float = 0.0
    failures: int = 0
    in_flight: int = 0
    reported: bool = False


class FailedAuthBudget:
    """Failed authentications per address per window, and the pairs known good; `limit` 0 turns it off."""

    def __init__(
        self, limit: int = DEFAULT_LIMIT, window_s: float = DEFAULT_WINDOW_S, *,
        max_addresses: int = MAX_ADDRESSES, max_known: int = MAX_KNOWN, known_for_s: float = KNOWN_FOR_S,
        key: bytes | None = None,
    ) -> None:
        if limit < 0 or window_s <= 0 or max_addresses < 1 or max_known < 1:
            raise ValueError("limit must be >= 0, the window > 0 and the bounds >= 1")
        self.limit, self.window_s = limit, window_s
        self.max_addresses, self.max_known, self.known_for_s = max_addresses, max_known, known_for_s
        self._key = secrets.token_bytes(32) if key is None else key
        self._addresses: OrderedDict[str, _Spent] = OrderedDict()
        self._known: OrderedDict[bytes, float] = OrderedDict()  # pair hash → when it last authenticated
        self.failures = 0  # failed authentications counted
        self.limited = 0  # requests refused
        self.evicted = 0  # addresses dropped for room

    @property
    def enabled(self) -> bool:
        """Whether there is a budget at all (`limit` > 0)."""
        return self.limit > 0

    @property
    def tracked(self) -> int:
        """Addresses with failures or checks in flight in their table (expired ones go lazily)."""
        return len(self._addresses)

    @property
    def known(self) -> int:
        """Pairs known good."""
        return len(self._known)

    def pair_hash(self, group: str, token: str) -> bytes:
        """The keyed hash a (group, token) pair is known by (lengths first: no two pairs share a message)."""
        group_bytes, token_bytes = group.encode(), token.encode()
        message = len(group_bytes).to_bytes(4, "big") + group_bytes + token_bytes
        return hashlib.blake2b(message, key=self._key, digest_size=16).digest()

    def admit(self, address: str, group: str, token: str, now: float) -> Admission | Refusal:
        """Whether a request from `address` with this pair may have its token checked."""
        if not self.enabled:
            return Admission(address, b"", reserved=False)
        self._prune(now)
        pair = self.pair_hash(group, token)
        if self._is_known(pair, now):
            return Admission(address, pair, reserved=False)
        spent = self._current(address, now)
        if spent.failures + spent.in_flight >= self.limit:
            self.limited += 1
            report, spent.reported = not spent.reported, True
            if spent.failures >= self.limit:
                return Refusal(spent.started + self.window_s - now, report)
            return Refusal(IN_FLIGHT_RETRY_S, report)
        spent.in_flight += 1
        return Admission(address, pair, reserved=True)

    def settle(self, admission: Admission, verdict: Verdict, now: float) -> None:
        """What the token check of an admitted request said."""
        if not self.enabled:
            return
        spent = self._addresses.get(admission.address)
        if spent is not None and admission.reserved:
            spent.in_flight = max(0, spent.in_flight - 1)
        if verdict is Verdict.FAILED:
            self._known.pop(admission.pair, None)  # a pair once good and now refused: a replaced token
            spent = self._current(admission.address, now)
            if spent.failures == 0:
                spent.started = now
            spent.failures += 1
            self.failures += 1
        elif verdict is Verdict.AUTHENTICATED:
            self._remember(admission.pair, now)
        if spent is not None and spent.failures == 0 and spent.in_flight == 0:
            self._addresses.pop(admission.address, None)

    def _is_known(self, pair: bytes, now: float) -> bool:
        since = self._known.get(pair)
        if since is None:
            return False
        if now - since >= self.known_for_s:
            del self._known[pair]
            return False
        return True

    def _remember(self, pair: bytes, now: float) -> None:
        self._known.pop(pair, None)
        self._known[pair] = now
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

    def _current(self, address: str, now: float) -> _Spent:
        """`address`'s window, made the most recently seen; a new one if its window is over or it had none."""
        spent = self._addresses.pop(address, None)
        if spent is None:
            spent = _Spent()
            while len(self._addresses) >= self.max_addresses:
                self._addresses.popitem(last=False)
                self.evicted += 1
        elif spent.failures and now - spent.started >= self.window_s:
            spent.started, spent.failures, spent.reported = 0.0, 0, False
        self._addresses[address] = spent
        return spent

    def _prune(self, now: float) -> None:
        """Drop the least recently seen addresses whose window is over (the table's order is last seen)."""
        while self._addresses:
            address, spent = next(iter(self._addresses.items()))
            if spent.in_flight or (spent.failures and now - spent.started < self.window_s):
                return
            del self._addresses[address]
