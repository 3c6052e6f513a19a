"""A C server on the dashboard shape: nginx + nchan, one worker on core 0, its CPU per delivery.

    python -m bench.nchan --connections 10000 --keys 5000 --rate 2000 --duration 15 --pin

Needs Debian's `nginx-light` (or `nginx`) and `libnginx-mod-nchan`; not part of the
product or its tests. One nginx worker (nice -10, core 0 with --pin) serves N
EventSource subscribers over K channels (`/sub/<channel>`, the memory store, a
`:` ping every `--ping` s like the streamer's heartbeat) and takes each event as
an HTTP POST to `/pub/<channel>`. One client process on core 1 opens the
streams, then publishes `rate` events/s in 1 ms ticks (the bench publisher's
pacing) over pipelined keep-alive connections, each event a ~400-byte JSON
body carrying `bench-<time_ns>` (frames of ~440 bytes, as the streamer's), and
reads every stream. The worker's utime+stime over the publishing and draining,
divided by the deliveries, is what tradestream-bench reports for the streamer
(here it includes parsing the POSTs: the broker's and the bus's share in
tradestream). Prints one JSON object. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import orjson

from bench.procstat import cpu_seconds, pin

MARK = b'"bench-'
TICK_S = 0.001
PUBLISH_CONNECTIONS = 4
BODY_PAD = "x" * 250  # an event's JSON of ~400 bytes, its frame ~440 as the streamer's at this shape

CONFIG = """
load_module {module};
worker_processes 1;
{affinity}
worker_rlimit_nofile {nofile};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {nofile}; use epoll; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 100000000;  # the publishing connections live through the run (default 1,000)
  keepalive_timeout 600s;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  nchan_max_reserved_memory 256M;
  server {{
    listen 127.0.0.1:{port} backlog=8192;
    location ~ ^/sub/(\\w+)$ {{
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_eventsource_ping_interval {ping};
    }}
    location ~ ^/pub/(\\w+)$ {{
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 100;
    }}
  }}
}}
"""


class Stream(asyncio.Protocol):
    """One EventSource stream: counts the events (their `bench-` marks) and their latency."""

    def __init__(self, latencies: list[int], ready: asyncio.Future[None]) -> None:
        self.latencies = latencies
        self.ready = ready
        self.tail = b""
        self.received = 0

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        now_ns = time.time_ns()
        data = self.tail + data
        pos = 0
        while (mark := data.find(MARK, pos)) >= 0:
            end = data.find(b'"', mark + len(MARK))
            if end < 0:
                break
            self.latencies.append((now_ns - int(data[mark + len(MARK) : end])) // 1000)
            self.received += 1
            pos = end
        cut = data.rfind(MARK, pos)
        self.tail = data[cut:] if cut >= 0 and data.find(b'"', cut + len(MARK)) < 0 else b""


class Responses(asyncio.Protocol):
    """A publishing connection: nchan's answers are read and dropped."""

    def data_received(self, data: bytes) -> None:
        pass


async def client(port: int, args: argparse.Namespace, worker: int) -> dict[str, object]:
    """Open the streams, publish paced, drain; the figures."""
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    streams: list[Stream] = []
    gate = asyncio.Semaphore(200)
    prefix = f"c{os.getpid()}x"

    async def subscribe(n: int) -> None:
        async with gate:
            stream = Stream(latencies, loop.create_future())
            transport, _ = await loop.create_connection(lambda: stream, "127.0.0.1", port)
            transport.write(f"GET /sub/{prefix}{n % args.keys} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
            await asyncio.wait_for(stream.ready, 30)  # the response headers
            streams.append(stream)

    started = time.monotonic()
    await asyncio.gather(*(subscribe(n) for n in range(args.connections)))
    connect_s = time.monotonic() - started
    publishers = [(await loop.create_connection(Responses, "127.0.0.1", port))[0] for _ in range(PUBLISH_CONNECTIONS)]
    await asyncio.sleep(1.0)  # let the worker settle after the connects
    load, cpu_before = os.getloadavg()[0], cpu_seconds(worker)
    published, start = 0, time.monotonic()
    while (now := time.monotonic()) - start < args.duration:
        due = int((now - start) * args.rate)
        while published < due:
            body = orjson.dumps({"event_type": "order_created", "order_id": f"bench-{time.time_ns()}", "symbol": "BTC/USDT",
                                 "side": "BUY", "quantity": "0.125", "price": "90000.5", "pad": BODY_PAD})
            head = f"POST /pub/{prefix}{published % args.keys} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            publishers[published % PUBLISH_CONNECTIONS].write(head.encode() + body)
            published += 1
        await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - now)))  # the pacing itself
    expected = published * args.connections // args.keys
    deadline = time.monotonic() + 10
    while sum(s.received for s in streams) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # polling pace of the drain condition
    cpu_s = cpu_seconds(worker) - cpu_before
    received = sum(s.received for s in streams)
    latencies.sort()
    return {
        "connections": args.connections, "keys": args.keys, "rate": args.rate, "duration_s": args.duration,
        "connect_s": round(connect_s, 2), "published": published, "expected_deliveries": expected, "received": received,
        "worker_cpu_s": round(cpu_s, 3), "worker_cpu_us_per_delivery": round(cpu_s * 1e6 / received, 2) if received else None,
        "latency_ms_p50_p99_p999": [round(latencies[int(q * (len(latencies) - 1))] / 1000, 3) for q in (0.5, 0.99, 0.999)]
        if latencies else None, "load_average": round(load, 2),
    }


def start_nginx(root: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """nginx with one worker, nice -10 (as the bench's --priority -10), on core 0 with --pin."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100
    config = CONFIG.format(module=args.module, affinity="worker_cpu_affinity 01;" if args.pin else "", nofile=nofile,
                           root=root, port=port, ping=args.ping)
    (root / "nginx.conf").write_text(config)
    return subprocess.Popen(["nice", "-n", "-10", args.nginx, "-c", str(root / "nginx.conf"), "-p", str(root)],
                            stdin=subprocess.DEVNULL)


def worker_pid(master: int) -> int:
    """The worker of an nginx master (its one child)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)  # polling pace while nginx starts
    raise RuntimeError("nginx started no worker")


def main(argv: list[str] | None = None) -> int:
    """Entry point: start nginx + nchan, measure, stop it, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.nchan", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--ping", type=int, default=10, help="nchan_eventsource_ping_interval, s (the streamer's --heartbeat)")
    parser.add_argument("--pin", action="store_true", help="the nginx worker on core 0, the client on core 1")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--module", default="/usr/share/nginx/modules/ngx_nchan_module.so")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = args.port or _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nchan-") as folder:
        nginx = start_nginx(Path(folder), port, args)
        try:
            worker = worker_pid(nginx.pid)
            if args.pin:
                pin(0, {1})
            result = asyncio.run(client(port, args, worker))
        finally:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
    print(orjson.dumps(result).decode())
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
