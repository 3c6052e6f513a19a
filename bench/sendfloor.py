"""The floor of a delivery: what one `send()` of an SSE frame costs the sender here, with nothing else done.

    python -m bench.sendfloor --connections 10000 --fanout 2 --rate 2000 --pin

A sender (core 0 with --pin) holds N loopback TCP connections set up as the
streamer's (TCP_NODELAY, a 64 KiB send buffer) and, paced at `rate` events/s,
writes one ~400-byte frame per event to `fanout` consecutive connections, in
1 ms ticks like the bench publisher. A reader process (core 1) takes every byte
on asyncio, as the load generator does. The sender's CPU over the sends is the
price of the syscall plus what the kernel does on its behalf: on loopback the
whole receive path, and waking the reader on the other core when it sleeps. So
streamer CPU per delivery minus this is what the streamer itself spends.
Not a test: prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import signal
import socket
import time
from multiprocessing.connection import Connection

import orjson

from bench.procstat import cpu_seconds, pin
from streamer.client import SEND_BUFFER_BYTES

FRAME = b"id: 1-1\nevent: order_update\ndata: " + b"x" * 360 + b"\n\n"
TICK_S = 0.001


class Sink(asyncio.Protocol):
    """Counts what arrives."""

    received = 0

    def data_received(self, data: bytes) -> None:
        Sink.received += len(data)


def reader_process(conn: Connection, cores: set[int] | None) -> None:
    """Entry of the reader: listen, send the port, read everything until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cores:
        os.sched_setaffinity(0, cores)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Sink, "127.0.0.1", 0, backlog=4096)
        conn.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, conn.recv)
        conn.send(Sink.received)
        server.close()

    asyncio.run(serve())


def connect(port: int, count: int) -> list[socket.socket]:
    """`count` connections set up as streamer/client.py sets up a stream's socket."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def paced_sends(socks: list[socket.socket], fanout: int, rate: float, duration_s: float) -> int:
    """Write FRAME to `fanout` consecutive sockets per event, `rate` events/s; the sends made."""
    sends, events, start = 0, 0, time.monotonic()
    while (now := time.monotonic()) - start < duration_s:
        due = int((now - start) * rate)
        while events < due:
            base = events * fanout
            for i in range(fanout):
                socks[(base + i) % len(socks)].send(FRAME)
            sends += fanout
            events += 1
        time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))  # the pacing itself
    return sends


def main(argv: list[str] | None = None) -> int:
    """Entry point: connect, send paced for the duration, print the sender's CPU per send."""
    parser = argparse.ArgumentParser(prog="python -m bench.sendfloor", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=2, help="connections written per event (N/K)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--pin", action="store_true")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.pin:
        pin(0, {0})
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    reader = ctx.Process(target=reader_process, args=(there, {1} if args.pin else None), daemon=True)
    reader.start()
    try:
        socks = connect(here.recv(), args.connections)
        load, cpu_before = os.getloadavg()[0], cpu_seconds(os.getpid())
        sends = paced_sends(socks, args.fanout, args.rate, args.duration)
        cpu_s = cpu_seconds(os.getpid()) - cpu_before
        here.send("stop")
        received = here.recv()
    finally:
        reader.terminate()
        reader.join(5)
    result = {"connections": args.connections, "fanout": args.fanout, "rate": args.rate, "duration_s": args.duration,
              "sends": sends, "bytes_received": received, "sender_cpu_s": round(cpu_s, 3),
              "sender_cpu_us_per_send": round(cpu_s * 1e6 / sends, 2) if sends else None, "load_average": round(load, 2)}
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
