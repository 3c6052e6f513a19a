"""Every setting of one tradestream-bench invocation (flags and TRADESTREAM_* variables)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from bus import endpoints, kinds
from bus.kinds import Kind
from bus.process import setting
from store.db import DEFAULT_DATABASE_URL, sqlalchemy_url

T = TypeVar("T")
DEFAULT_RATE = 1000.0


def _optional(kind: Callable[[str], T]) -> Kind[T | None]:
    """A kind whose empty text means "none"."""
    return Kind(f"{getattr(kind, 'expected', 'a value')} or empty", lambda text: kind(text) if text else None)


@dataclass(frozen=True)
class BenchConfig:
    """Every setting of one tradestream-bench invocation."""

    connections: int = setting(1000, kind=kinds.positive_int, help="SSE streams to open (N)")
    keys: int = setting(100, kind=kinds.positive_int, help="stream keys they are spread over (K; N/K streams per key)")
    rate: float | None = setting(None, kind=_optional(kinds.positive_float), shown="1000; --broker-only: flat out", help="events published per second (over all keys); --find-max starts here; with --broker-only: paced at this rate")
    duration: float = setting(10.0, kind=kinds.positive_float, help="seconds of publishing per run")
    clients_procs: int = setting(1, kind=kinds.positive_int, help="load-generator processes reading the streams")
    json: str | None = setting(None, kind=_optional(kinds.text), help="write the result object (CONTRACT section 7) to this file, '-' for stdout")
    plot: str | None = setting(None, kind=_optional(kinds.text), help="write a PNG: latency histogram and CDF, deliveries/s over time")
    find_max: bool = setting(False, help="ramp and bisect to the highest rate with >= 99.9% delivered, no stream lost, p99 <= 50 ms")
    pin: bool = setting(False, help="streamer on core 0, load generator, publisher and broker on core 1")
    broker_only: bool = setting(False, help="measure the broker alone: events/s it sequences per CPU second")
    transport: str = setting("tcp", kind=kinds.one_of("tcp", "ipc", "both"), help="the bus's endpoints, loopback tcp:// or ipc:// unix sockets; with --broker-only also both back to back (a full stack takes tcp for both)")
    broker_journal: bool = setting(False, aliases=("--journal",), help="the broker keeps a journal (in the run's temporary folder); with --broker-only, measure without and then with it, back to back (--journal: its older name)")
    attach: bool = setting(False, help="use a running broker and streamer instead of starting them")
    ingress: str = setting(endpoints.INGRESS, kind=kinds.zmq_endpoint, help="broker ingress, with --attach")
    publish: str = setting(endpoints.PUBLISH, kind=kinds.zmq_endpoint, help="broker XPUB, with --attach")
    replay: str = setting(endpoints.REPLAY, kind=kinds.zmq_endpoint, help="broker ROUTER, with --attach")
    host: str = setting("127.0.0.1", help="streamer host, with --attach")
    port: int = setting(8080, kind=kinds.positive_int, help="streamer port, with --attach")
    database_url: str = setting(DEFAULT_DATABASE_URL, kind=sqlalchemy_url, help="the running stack's database, with --attach (bench users are added)")
    streamer_pid: int | None = setting(None, kind=_optional(kinds.positive_int), help="streamer pid for CPU/RSS figures, with --attach")
    max_streams_per_user: int = setting(20, kind=kinds.positive_int, help="the attached streamer's per-user stream limit")
    sweep: str = setting("", help="runs at several rates, one table and one plot (--plot): comma-separated rates, or a count n: n rates evenly up to half of the --find-max rate (found first)")
    cost_curve: str = setting("", help="comma-separated stream counts N, each on a fresh stack with K = N/10 keys at --rate: CPU per delivery and RSS per stream (table, --plot)")
    priority: int = setting(0, kind=kinds.integer, help="nice value (e.g. -10) for the broker, streamer, publisher and load generator and their autogroups, to measure the stack rather than the machine's other work; 0: leave as is")
    rounds: int = setting(1, kind=kinds.positive_int, help="with --broker-only: rounds of floor, broker (and broker with journal) back to back")
    code_root: str = setting("", help="checkout whose broker and streamer are started (default: this one), for before/after runs with one harness")
    streamer_args: str = setting("", help="extra flags for the started streamer, e.g. '--event-loop asyncio'")
    drain_quiet: float = setting(1.0, kind=kinds.positive_float, help="after publishing, stop waiting once nothing arrived for this many seconds")

    @property
    def fanout_rate(self) -> float:
        """The rate of a fan-out run (the --rate given, else DEFAULT_RATE)."""
        return self.rate or DEFAULT_RATE

    def numbers(self, text: str) -> list[float]:
        """The comma-separated numbers of --sweep or --cost-curve."""
        return [float(part) for part in text.split(",") if part.strip()]
