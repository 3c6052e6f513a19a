"""The webhook's work, without HTTP: check a signal, store it with its command, wake the order handler.

producers/webhook.py is its HTTP face (handlers, statuses, the process). A
signal is accepted once its Signal row and inbox row are committed (intake.py);
the wake-up after it is best effort, since the row is the hand-off. Database
work runs in the service's thread pool, never on the IOLoop. Before it, and
before the per-token rate limit, the client address's budget of failed
authentications (producers/failed_auth.py, which decides; here only wiring)
may refuse the request: TooManyFailures, 429.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from bus.errors import BusUnavailable
from bus.publisher import Publisher
from bus.quiet_log import QuietLog
from producers.commands import WAKE
from producers.errors import (
    TRANSIENT,
    InvalidJSON,
    InvalidSignal,
    NotJSON,
    RateLimited,
    StoreUnavailable,
    StrategyInactive,
    TooManyFailures,
    UnknownGroup,
    WrongToken,
)
from producers.failed_auth import Admission, FailedAuthBudget, Refusal, Verdict
from producers.intake import Accepted, Intake, payload_text
from producers.metrics import WebhookMetrics
from producers.signals import Envelope, OrderSpec, parse_envelope, parse_json, parse_orders
from store import health
from web.health import Probe
from web.ratelimit import RateLimiter, address_key, retry_after

log = logging.getLogger(__name__)


class WebhookService:
    """Everything a webhook request needs, shared by the handlers of one process."""

    def __init__(
        self, intake: Intake, wakes: Publisher, executor: ThreadPoolExecutor, limiter: RateLimiter,
        database: Probe | None = None, budget: FailedAuthBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.intake, self.wakes, self.executor, self.limiter = intake, wakes, executor, limiter
        self.budget = FailedAuthBudget() if budget is None else budget
        self._clock = clock
        # Once per address and window (the budget decides), and never more than one line a second in all.
        self._limited_log = QuietLog(log, logging.INFO, interval_s=1.0)
        # Without a started probe of its own (tests), readiness follows what requests met.
        self.database = database or Probe("database", lambda: None)
        self.wakes_dropped = 0
        self._not_stored = QuietLog(log, logging.WARNING)
        self.in_flight = 0
        self.metrics = WebhookMetrics(self.budget)

    async def receive(self, content_type: str, body: bytes, address: str = "") -> dict[str, Any]:
        """Run every check and hand the signal on; raises a ProducerError of WEBHOOK_ERRORS otherwise.

        `address` is the client's (web.proxy.request_address), whose failed authentications are budgeted.
        """
        self.in_flight += 1
        try:
            return await self._receive(content_type, body, address_key(address))
        finally:
            self.in_flight -= 1

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is between its checks and its answer (at shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.in_flight

    async def _receive(self, content_type: str, body: bytes, address: str) -> dict[str, Any]:
        document = _json_document(content_type, body)
        envelope = parse_envelope(document)
        admission = self._admit(address, envelope)
        with self._settled(admission):
            wait = self.limiter.wait(envelope.token)
            if wait:
                raise RateLimited(f"more than {self.limiter.rate:g} requests per second with this token", retry_after(wait))
            try:
                orders, field_error = parse_orders(envelope), None
            except InvalidSignal as exc:
                orders, field_error = (), exc  # reported only after the group, token and strategy checks
            accepted = await self._accept(envelope, orders, field_error, payload_text(document))
        # A duplicate wakes the order handler too: the first one's wake-up may have died with a webhook
        # killed between its commit and its send (the retry that follows would otherwise wait for a sweep).
        self._wake()
        if accepted.duplicate:
            return {"status": "accepted", "signals": len(orders), "duplicate": True}
        return {"status": "accepted", "signals": len(orders)}

    def _admit(self, address: str, envelope: Envelope) -> Admission:
        """The budget's leave to check this pair's token; TooManyFailures when the address has spent it."""
        decision = self.budget.admit(address, envelope.group_name, envelope.token, self._clock())
        if isinstance(decision, Admission):
            return decision
        wait = retry_after(decision.retry_after_s)
        self._report(address, decision)
        raise TooManyFailures(f"too many failed authentications from this address; retry in {wait} s", wait)

    def _report(self, address: str, refusal: Refusal) -> None:
        if refusal.report:
            self._limited_log("address %s refused: %d failed authentications within %g s (one line per address and window)",
                              address, self.budget.limit, self.budget.window_s)

    @contextmanager
    def _settled(self, admission: Admission) -> Iterator[None]:
        """Tell the budget what the checks inside said of the pair: failed, authenticated, or nothing (no answer)."""
        verdict = Verdict.UNDECIDED
        try:
            yield
            verdict = Verdict.AUTHENTICATED
        except (UnknownGroup, WrongToken):
            verdict = Verdict.FAILED
            raise
        except (StrategyInactive, InvalidSignal):  # raised by intake after the group and token passed
            verdict = Verdict.AUTHENTICATED
            raise
        finally:
            self.budget.settle(admission, verdict, self._clock())

    async def _accept(
        self, envelope: Envelope, orders: tuple[OrderSpec, ...], field_error: InvalidSignal | None, payload: str
    ) -> Accepted:
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(
                self.executor, self.intake.accept, envelope, orders, field_error, payload
            )
        except TRANSIENT as exc:  # nothing was committed: the sender retries, and a retry with its id is new
            self._not_stored("signal not stored: %s", str(exc).splitlines()[0][:200])
            if health.unavailable(exc):
                self.database.failed(health.describe(exc))
            raise StoreUnavailable("the signal could not be stored; retry later") from None
        self.database.succeeded()
        return accepted

    def _wake(self) -> None:
        """Tell the order handler its inbox has a new row; the row is the hand-off, so a refusal is only counted."""
        try:
            self.wakes.send(*WAKE)
        except BusUnavailable:
            self.wakes_dropped += 1


def _json_document(content_type: str, body: bytes) -> Any:
    """The decoded body: NotJSON unless the content type is JSON, InvalidJSON unless the body is."""
    if not _is_json(content_type):
        raise NotJSON("Content-Type must be application/json")
    try:
        return parse_json(body)
    except ValueError as exc:
        raise InvalidJSON(f"body is not valid JSON: {exc}") from None


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))
