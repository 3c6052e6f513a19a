"""One measured run: connect the streams, publish at a rate, drain, account (plus the progress display)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from array import array
from typing import Any

from bench import report, stages
from bench.config import BenchConfig
from bench.loadgen import StreamSpec, loadgen_process
from bench.procstat import cpu_seconds, rss_kib, runqueue_wait_s
from bench.publish import publisher_process
from bench.stack import Stack, streamer_stats

log = logging.getLogger(__name__)


class Progress:
    """tqdm on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def note(self, text: str) -> None:
        """One progress line."""
        if self.tty:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)
        else:
            print(f"bench: {text}", file=sys.stderr, flush=True)

    def timed(self, seconds: float, label: str) -> Any:
        """A bar advanced by elapsed seconds (None when not on a terminal)."""
        if not self.tty:
            self.note(f"{label} for {seconds:g} s")
            return None
        from tqdm import tqdm

        return tqdm(total=round(seconds, 1), desc=label, unit="s", file=sys.stderr, leave=False)


def split_specs(stack: Stack, connections: int, procs: int) -> list[list[StreamSpec]]:
    """Spread the streams round-robin over the keys, then over the load-generator processes."""
    specs = [StreamSpec(key.strategy_id, stack.tokens[key.strategy_id])
             for key in (stack.keys[n % len(stack.keys)] for n in range(connections))]
    return [specs[i::procs] for i in range(procs)]


def run_once(stack: Stack, cfg: BenchConfig, rate: float, progress: Progress) -> tuple[report.RunResult, array[int], dict[int, int]]:
    """Connect N streams, publish `rate` events/s for the duration, drain, account."""
    ctx = multiprocessing.get_context("spawn")
    pid = stack.streamer_pid
    client_cores = {1} if cfg.pin else None
    rss_before = rss_kib(pid) if pid else None
    pipes, procs = [], []
    for specs in split_specs(stack, cfg.connections, cfg.clients_procs):
        here, there = ctx.Pipe()
        proc = ctx.Process(target=loadgen_process, args=(there, stack.host, stack.port, specs, client_cores), daemon=True)
        pipes.append(here)
        procs.append(proc)
    pub_here, pub_there = ctx.Pipe()
    publisher = ctx.Process(target=publisher_process, args=(pub_there, stack.ingress, stack.keys, rate, cfg.duration, client_cores), daemon=True)
    try:
        progress.note(f"connecting {cfg.connections:,} streams over {len(stack.keys)} keys")
        cpu_start = cpu_seconds(pid) if pid else 0.0
        for proc in (*procs, publisher):
            proc.start()
        hellos = [pipe.recv() for pipe in pipes]
        cpu_connected = cpu_seconds(pid) if pid else 0.0  # the connect burst's CPU (and the idle start of the clients)
        pub_here.recv()  # the publisher's "ready"
        connected = sum(h["connected"] for h in hellos)
        failed = sum(h["failed"] for h in hellos)
        if failed:
            progress.note(f"{failed} streams failed to connect, e.g. {hellos[0]['errors'] or hellos[-1]['errors']}")
        connect_s = max(h["connect_s"] for h in hellos)
        rss_idle = rss_kib(pid) if pid else None
        progress.note(f"{connected:,} streams connected in {connect_s:.2f} s; publishing {rate:,.0f} events/s")
        stats_before = streamer_stats(stack)  # after connecting: the stages and pauses of the publishing only
        cpu_before, wall_before, load = cpu_seconds(pid) if pid else 0.0, time.monotonic(), os.getloadavg()[0]
        wait_before = runqueue_wait_s(pid) if pid else 0.0
        pub_here.send("go")
        rss_loaded = _watch_publisher(pub_here, cfg.duration, pid, progress)
        sent: list[int] = pub_here.recv()
        published = {key.strategy_id: count for key, count in zip(stack.keys, sent)}
        for pipe in pipes:
            pipe.send({"published": published, "quiet_s": cfg.drain_quiet, "deadline_s": cfg.duration + 30})
        results = [pipe.recv() for pipe in pipes]
        cpu_after, wall_after = cpu_seconds(pid) if pid else 0.0, time.monotonic()
        wait_after = runqueue_wait_s(pid) if pid else 0.0
        stats_after = streamer_stats(stack)  # before the streams close
        for pipe in pipes:
            pipe.send("close")
    finally:
        for proc in (*procs, publisher):
            proc.terminate()
            proc.join(5)
    latencies: array[int] = array("q")
    arrivals: array[int] = array("q")
    waits: array[int] = array("q")
    per_second: dict[int, int] = {}
    for result in results:
        latencies.frombytes(result["latencies"])
        arrivals.frombytes(result.get("arrivals", b""))
        waits.frombytes(result.get("arrival_to_read", b""))
        for second, count in result["per_second"].items():
            per_second[second] = per_second.get(second, 0) + count
    reads = sum(r.get("reads", 0) for r in results)
    received = sum(r["received"] for r in results)
    closed = sum(r["streams_closed"] for r in results)
    slow = (stats_after.get("slow_consumer_disconnects", 0) - stats_before.get("slow_consumer_disconnects", 0)
            if stats_after else closed)

    def per_conn(rss: int | None) -> float | None:
        if rss is None or rss_before is None:
            return None
        return round(float(rss - rss_before) / max(1, int(connected)), 2)

    run = report.RunResult(
        connections=cfg.connections, keys=len(stack.keys), rate=rate, duration_s=cfg.duration,
        deliveries_per_s=received / cfg.duration, latency_ms=report.latency_summary(latencies),
        lost=sum(r["lost"] for r in results) + failed * (sum(sent) // max(1, len(stack.keys))),
        duplicated=sum(r["duplicated"] for r in results), slow_consumer_disconnects=slow,
        streamer_cpu_us_per_delivery=round((cpu_after - cpu_before) * 1e6 / received, 2) if pid and received else None,
        rss_idle_kib=per_conn(rss_idle), rss_loaded_kib=per_conn(rss_loaded), connect_s=connect_s,
        stages={**stages.breakdown(stats_before, stats_after), **({"arrived_to_read": report.stage_row(waits)} if waits else {})},
        arrival_latency_ms=report.latency_summary(arrivals) if arrivals else None,
        loadgen_cpu_us_per_read=round(sum(r["cpu_s"] for r in results) * 1e6 / reads, 2) if reads else None,
        streamer_cpu_share=round((cpu_after - cpu_before) / (wall_after - wall_before), 3) if pid else None,
        load_average=round(load, 2),
        streamer_runqueue_wait=round((wait_after - wait_before) / (wall_after - wall_before), 3) if pid else None,
        loadgen_cpu_share=round(sum(r["cpu_s"] for r in results) / max(r["wall_s"] for r in results), 3),
        extra={"published": sum(sent), "expected_deliveries": sum(published[s.strategy_id] for p in split_specs(stack, cfg.connections, 1) for s in p),
               "received": received, "streams_connected": connected, "streams_failed": failed, "streams_closed": closed,
               "streamer_cpu_us_per_connect": round((cpu_connected - cpu_start) * 1e6 / connected, 1) if pid and connected else None,
               "loadgen_reads": reads, "reads_without_arrival": sum(r.get("unstamped_reads", 0) for r in results),
               # Events recovered from the broker's history reach clients outside the stamped live path (stages_ms).
               **{f"streamer_{name}": stats_after[name] - stats_before.get(name, 0)
                  for name in ("gaps_detected", "gaps_recovered", "resyncs") if name in stats_after}},
    )
    return run, latencies, per_second


def _watch_publisher(pub: Any, duration: float, pid: int | None, progress: Progress) -> int | None:
    """Advance the progress bar while the publisher runs; the streamer's highest RSS seen meanwhile."""
    bar = progress.timed(duration, "publishing")
    start = time.monotonic()
    peak = rss_kib(pid) if pid else None
    while not pub.poll(0.25):
        if pid:
            peak = max(peak or 0, rss_kib(pid))
        if bar is not None:
            bar.n = round(min(duration, time.monotonic() - start), 1)
            bar.refresh()
    if bar is not None:
        bar.close()
    return peak
