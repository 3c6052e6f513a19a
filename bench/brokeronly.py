"""--broker-only: the broker's CPU per event, flat out or paced, with the floor beside it.

The broker (or the floor, bench/floor.py: a PULL → XPUB loop doing no work) is
pinned to core 0 with --pin; a PUSH publisher and a SUB reader run on core 1.
The CPU of the process under test is read over a window inside the push, so it
is busy from the first to the last sample; events in the window come from the
process's own count. Paced (`rate` > 0), the reader also takes the publish →
SUB latency of each event (the publisher's `published_ns` in the payload).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import zmq

from bench.floor import floor_process
from bench.procstat import cpu_seconds, pin
from bench.publish import publisher_process
from bench.report import latency_summary
from bench.stack import Stack, broker_stats
from bus import codec
from bus.topics import StreamKey


def sub_reader_process(conn: Connection, publish: str, cores: set[int] | None, timed: bool) -> None:
    """Entry of the SUB reader: count key events (and their latencies if `timed`) until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cores:
        os.sched_setaffinity(0, cores)
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"k/")
    sock.connect(publish)
    conn.send("ready")
    received = 0
    latencies: array[int] = array("q")
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not conn.poll():
        if poller.poll(50):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
                if timed:
                    latencies.append((time.time_ns() - codec.unpack_map(frames[-1])["published_ns"]) // 1000)
    conn.recv()
    conn.send((received, latencies.tobytes()))
    sock.close(linger=0)


def measure(pid: int, ingress: str, publish: str, count: Callable[[], int], keys: int, duration_s: float,
            rate: float, pinned: bool) -> dict[str, Any]:
    """Push to `ingress` (flat out when `rate` is 0) and read `publish`; the CPU of `pid` per event it moved."""
    ctx = multiprocessing.get_context("spawn")
    if pinned:
        pin(pid, {0})
    others = {1} if pinned else None
    reader_conn, reader_end = ctx.Pipe()
    reader = ctx.Process(target=sub_reader_process, args=(reader_end, publish, others, rate > 0), daemon=True)
    pusher_conn, pusher_end = ctx.Pipe()
    key_list = [StreamKey(1, n + 1) for n in range(keys)]
    pusher = ctx.Process(target=publisher_process, args=(pusher_end, ingress, key_list, rate, duration_s, others), daemon=True)
    reader.start()
    pusher.start()
    load = os.getloadavg()[0]
    try:
        reader_conn.recv()
        pusher_conn.recv()  # "ready": under load a spawned process takes seconds to import
        pusher_conn.send("go")
        # Measure a window inside the push, so the process is busy from its first to its last sample.
        warmup = min(1.0, duration_s / 4)
        time.sleep(warmup)  # the window's start: a time, not a condition
        before, cpu_before, wall_before = count(), cpu_seconds(pid), time.monotonic()
        time.sleep(duration_s - 2 * warmup)  # the window's length
        after, cpu_after, wall_after = count(), cpu_seconds(pid), time.monotonic()
        sent = pusher_conn.recv()
        reader_conn.send("stop")
        read, raw = reader_conn.recv()
    finally:
        for proc in (reader, pusher):
            proc.terminate()
            proc.join(5)
    moved = after - before
    cpu_s, wall_s = cpu_after - cpu_before, wall_after - wall_before
    latencies: array[int] = array("q")
    latencies.frombytes(raw)
    result: dict[str, Any] = {
        "keys": keys, "rate": rate or "flat out", "duration_s": duration_s, "pinned": pinned,
        "pushed_total": sent if isinstance(sent, int) else sum(sent), "moved_in_window": moved,
        "read_by_subscriber_total": read, "cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
        "events_per_cpu_s": round(moved / cpu_s) if cpu_s else None,
        "cpu_us_per_event": round(cpu_s * 1e6 / moved, 2) if moved else None,
        "events_per_wall_s": round(moved / wall_s) if wall_s else None,
        "cpu_share": round(cpu_s / wall_s, 3) if wall_s else None,
        "load_average": round(load, 2),
    }
    if latencies:
        result["publish_to_sub_ms"] = latency_summary(latencies)
    return result


def run_broker(stack: Stack, keys: int, duration_s: float, rate: float, pinned: bool) -> dict[str, Any]:
    """The broker of `stack`, counted by its `published` statistic."""
    assert stack.broker_pid is not None  # broker_only_stack always starts one
    return measure(stack.broker_pid, stack.ingress, stack.publish, lambda: int(broker_stats(stack.replay).get("published", 0)),
                   keys, duration_s, rate, pinned)


def run_floor(keys: int, duration_s: float, rate: float, pinned: bool, transport: str = "tcp") -> dict[str, Any]:
    """The floor (bench/floor.py) in a process of its own, counted by itself."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=floor_process, args=(there, {0} if pinned else None, transport), daemon=True)
    proc.start()
    assert proc.pid is not None
    try:
        ends = here.recv()

        def count() -> int:
            here.send("count")
            return int(here.recv())

        return measure(proc.pid, ends["ingress"], ends["publish"], count, keys, duration_s, rate, pinned)
    finally:
        here.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
