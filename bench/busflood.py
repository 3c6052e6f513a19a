"""Floods of the bus, with the peak RSS they cost: the figures of issue 11's memory bounds.

    python -m bench.busflood history   [--count 800 --size 600000]    events on one key -> broker
    python -m bench.busflood frame     [--size 200000000]             one frame on the ingress -> broker
    python -m bench.busflood noreader  [--count 20]                   replay requests never read -> broker
    python -m bench.busflood subscriber [--count 1500 --size 480000]  events on one key -> a Subscriber process

Each starts a fresh broker from `--code-root` (default: this tree; give a checkout of
main for the "before" figure) with `--broker-args`, and prints one line: the process
measured, its RSS before, its peak RSS (VmHWM) after, and the broker's stats that
tell what happened. One run each; the figures are what this machine gave then.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from bench.stack import child_env
from bus import codec, protocol
from bus.events import Account, OrderEvent, utc_now
from bus.topics import StreamKey, key_topic

_LISTENING = re.compile(r"listening ingress=(\S+) publish=(\S+) replay=(\S+) ack_ingress=(\S+)")
TOPIC = key_topic(StreamKey(1, 1))

SUBSCRIBER_CHILD = """
import asyncio, sys
from bus.subscriber import Subscriber
from bus.topics import StreamKey
want = int(sys.argv[3])
class Sink:
    got = 0
    def on_events(self, key, events):
        Sink.got += len(events)
        if Sink.got >= want:
            done.set()
    def on_resync(self, key, reason, position): pass
    def on_control(self, message): pass
    def on_broker_status(self, up): pass
async def main():
    global done
    done = asyncio.Event()
    sub = Subscriber(sys.argv[1], sys.argv[2], Sink())
    await sub.start(timeout=10)
    await sub.subscribe(StreamKey(1, 1))
    print("ready", flush=True)
    await asyncio.wait_for(done.wait(), 600)
    print("done", Sink.got, flush=True)
    sys.stdin.readline()
    await sub.close()
asyncio.run(main())
"""


def memory_kib(pid: int, field: str) -> int:
    """VmRSS or VmHWM (peak) of `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {field} for pid {pid}")


def payload(size: int, n: int = 0) -> bytes:
    """A valid order event of key 1/1 padded to about `size` bytes with an unknown field."""
    event = OrderEvent(
        event_type="order_created", order_id=f"o-{n}", symbol="BTC/USDT", strategy_id=1, user_id=1, side="BUY",
        quantity="1.0", price="100.0", status="NEW", timestamp=utc_now(), order_type="LIMIT", stop_price=None,
        account=Account(1, "main", "paper"), suppress_toast=False,
    )
    return codec.pack({**event.to_wire(), "note": "x" * max(0, size - 400)})


class Broker:
    """A broker subprocess of `code_root` on free ports."""

    def __init__(self, code_root: Path, args: list[str], log_path: Path) -> None:
        command = [sys.executable, "-m", "bus.broker", "--bus-heartbeat", "0.5", *args]
        for name in ("ingress", "publish", "replay", "ack-ingress"):
            command += [f"--{name}", "tcp://127.0.0.1:*"]
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=code_root, stderr=log, env=child_env(code_root))
        deadline = time.monotonic() + 20
        while not (match := _LISTENING.search(log_path.read_text())):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the broker did not start: {log_path.read_text()}")
            time.sleep(0.05)
        self.ingress, self.publish, self.replay, _ = match.groups()

    def stats(self, ctx: zmq.Context[Any]) -> dict[str, Any]:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVTIMEO, 20000)
        dealer.connect(self.replay)
        try:
            dealer.send_multipart([protocol.STATS])
            return codec.unpack_map(dealer.recv_multipart()[1])
        finally:
            dealer.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def push_events(ctx: zmq.Context[Any], endpoint: str, count: int, size: int) -> None:
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.setsockopt(zmq.LINGER, 60000)
    push.connect(endpoint)
    body = payload(size)
    for _ in range(count):
        push.send_multipart([TOPIC, body])
    push.close()  # lingers until every frame is out


def run(mode: str, args: argparse.Namespace) -> str:
    ctx: zmq.Context[Any] = zmq.Context()
    broker = Broker(args.code_root, shlex.split(args.broker_args), Path(args.log_dir) / f"busflood-{mode}.log")
    pid = broker.proc.pid
    before = memory_kib(pid, "VmRSS")
    measured, extra = pid, ""
    try:
        if mode == "history":
            push_events(ctx, broker.ingress, args.count, args.size)
            wait_for(lambda: broker.stats(ctx)["received"] >= args.count, 300, "the broker to read the flood")
        elif mode == "frame":
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 60000)
            push.connect(broker.ingress)
            push.send_multipart([TOPIC, b"\x00" * args.size])
            push.close()
            push_events(ctx, broker.ingress, 1, 400)  # a fresh peer: served after the big frame
            wait_for(lambda: broker.stats(ctx)["published"] >= 1, 60, "the broker to serve the next peer")
            time.sleep(1)  # what the big frame cost is in VmHWM either way; a measurement, not a test
        elif mode == "noreader":
            push_events(ctx, broker.ingress, 100, args.size)
            wait_for(lambda: broker.stats(ctx)["received"] >= 100, 120, "the history to fill")
            epoch = broker.stats(ctx)["epoch"]
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.RCVHWM, 1)
            dealer.setsockopt(zmq.RCVBUF, 4096)
            dealer.connect(broker.replay)
            for _ in range(args.count):
                dealer.send_multipart(protocol.replay_request(TOPIC, epoch, 0))
            wait_for(lambda: broker.stats(ctx)["replay_requests"] >= args.count, 300, "the requests to be answered")
            time.sleep(2)  # let the io thread queue what it will (a measurement, not a test)
            extra = f" replay_answers_dropped={broker.stats(ctx).get('replay_answers_dropped', 'n/a')}"
            dealer.close(linger=0)
        elif mode == "subscriber":
            env = child_env(args.code_root)
            child = subprocess.Popen(
                [sys.executable, "-c", SUBSCRIBER_CHILD, broker.publish, broker.replay, str(args.count)],
                cwd=args.code_root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            measured, before = child.pid, memory_kib(child.pid, "VmRSS")
            push_events(ctx, broker.ingress, args.count, args.size)
            line = child.stdout.readline().strip()
            peak = memory_kib(child.pid, "VmHWM")
            child.stdin.write("\n")
            child.stdin.close()
            child.wait(timeout=30)
            extra = f" subscriber: {line}"
            stats = broker.stats(ctx)
            return _line(mode, "subscriber", before, peak, stats, extra)
        peak = memory_kib(measured, "VmHWM")
        stats = broker.stats(ctx)
    finally:
        broker.stop()
        ctx.destroy(linger=0)
    return _line(mode, "broker", before, peak, stats, extra)


def _line(mode: str, who: str, before: int, peak: int, stats: dict[str, Any], extra: str) -> str:
    keys = ("received", "published", "dropped_malformed", "refused_oversize", "history_bytes", "replay_requests")
    shown = " ".join(f"{k}={stats[k]}" for k in keys if k in stats)
    return f"{mode}: {who} RSS {before / 1024:.0f} MiB -> peak {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f} MiB); {shown}{extra}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.busflood", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("history", "frame", "noreader", "subscriber"))
    parser.add_argument("--count", type=int, help="events (history, subscriber) or unread requests (noreader)")
    parser.add_argument("--size", type=int, help="bytes of each event, or of the one frame")
    parser.add_argument("--code-root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--broker-args", default="", help="extra broker flags, e.g. '--max-payload 1048576'")
    parser.add_argument("--log-dir", default="/tmp")
    args = parser.parse_args(argv)
    defaults = {"history": (800, 600_000), "frame": (1, 200_000_000), "noreader": (20, 600_000), "subscriber": (1500, 480_000)}
    count, size = defaults[args.mode]
    args.count = args.count or count
    args.size = args.size or size
    print(run(args.mode, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
