"""--broker-only: how many events/s the broker sequences on one core, from its own CPU time."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import zmq

from bench.procstat import cpu_seconds, pin
from bench.publish import publisher_process
from bench.stack import Stack, broker_stats
from bus.topics import StreamKey


def sub_reader_process(conn: Connection, publish: str, cores: set[int] | None) -> None:
    """Entry of the SUB reader: count key events until told to stop, then send the count."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cores:
        os.sched_setaffinity(0, cores)
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.setsockopt(zmq.SUBSCRIBE, b"k/")
    sock.connect(publish)
    conn.send("ready")
    received = 0
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not conn.poll():
        if poller.poll(50):
            while True:
                try:
                    sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
    conn.recv()
    conn.send(received)
    sock.close(linger=0)


def run_broker_only(stack: Stack, keys: int, duration_s: float, pinned: bool) -> dict[str, Any]:
    """Push flat out for `duration_s` over `keys` keys; the broker's events/s per CPU second and per wall second."""
    assert stack.broker_pid is not None  # broker_only_stack always starts one
    ctx = multiprocessing.get_context("spawn")
    if pinned:
        pin(stack.broker_pid, {0})
    others = {1} if pinned else None
    reader_conn, reader_end = ctx.Pipe()
    reader = ctx.Process(target=sub_reader_process, args=(reader_end, stack.publish, others), daemon=True)
    pusher_conn, pusher_end = ctx.Pipe()
    key_list = [StreamKey(1, n + 1) for n in range(keys)]
    pusher = ctx.Process(target=publisher_process, args=(pusher_end, stack.ingress, key_list, 0, duration_s, others), daemon=True)
    reader.start()
    pusher.start()
    try:
        reader_conn.recv()
        pusher_conn.send("go")
        # Measure a window inside the push, so the broker is saturated from its first to its last sample.
        warmup = min(1.0, duration_s / 4)
        time.sleep(warmup)  # the window's start: a time, not a condition
        before, cpu_before, wall_before = broker_stats(stack.replay), cpu_seconds(stack.broker_pid), time.monotonic()
        time.sleep(duration_s - 2 * warmup)  # the window's length
        after, cpu_after, wall_after = broker_stats(stack.replay), cpu_seconds(stack.broker_pid), time.monotonic()
        sent = pusher_conn.recv()
        reader_conn.send("stop")
        read = reader_conn.recv()
    finally:
        for proc in (reader, pusher):
            proc.terminate()
            proc.join(5)
    published = after.get("published", 0) - before.get("published", 0)
    cpu_s = cpu_after - cpu_before
    wall_s = wall_after - wall_before
    return {
        "keys": keys, "duration_s": duration_s, "pinned": pinned, "pushed_total": sent, "sequenced_in_window": published,
        "read_by_subscriber_total": read, "broker_cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
        "events_per_cpu_s": round(published / cpu_s) if cpu_s else None,
        "broker_cpu_us_per_event": round(cpu_s * 1e6 / published, 2) if published else None,
        "events_per_wall_s": round(published / wall_s) if wall_s else None,
        "broker_cpu_share": round(cpu_s / wall_s, 3) if wall_s else None,
    }
