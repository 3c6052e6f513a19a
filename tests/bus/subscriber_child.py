"""A real Subscriber in a process of its own, for tests that freeze it with SIGSTOP.

    python -m tests.bus.subscriber_child PUBLISH REPLAY USER:STRATEGY[,USER:STRATEGY...] [--reconnect-after S]

Writes JSON lines to stdout: {"ready": true} once every key is live, then
{"events": [[key, epoch, seq, order_id], ...]}, {"resync": key, "reason": ...},
{"broker_up": bool}; on SIGTERM {"stats": {...}} and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bus.events import ControlMessage
from bus.replay import BusEvent, Position
from bus.subscriber import Subscriber
from bus.topics import StreamKey


def say(**line: Any) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class PrintingSink:
    """Tells the test everything the Subscriber delivers."""

    def on_events(self, key: StreamKey, events: Sequence[BusEvent]) -> None:
        say(events=[[str(key), e.epoch, e.seq, e.payload.get("order_id")] for e in events])

    def on_resync(self, key: StreamKey, reason: str, position: Position) -> None:
        say(resync=str(key), reason=reason, position=str(position))

    def on_control(self, message: ControlMessage) -> None:
        pass

    def on_broker_status(self, up: bool) -> None:
        say(broker_up=up)


async def run(args: argparse.Namespace) -> None:
    options = {} if args.reconnect_after is None else {"reconnect_after": args.reconnect_after}
    subscriber = Subscriber(args.publish, args.replay, PrintingSink(), **options)
    await subscriber.start(timeout=10)
    for text in args.keys.split(","):
        user_id, strategy_id = map(int, text.split(":"))
        await subscriber.subscribe(StreamKey(user_id, strategy_id), timeout=10)
    say(ready=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    say(stats=asdict(subscriber.stats))
    await subscriber.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("publish")
    parser.add_argument("replay")
    parser.add_argument("keys")
    parser.add_argument("--reconnect-after", type=float, default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
