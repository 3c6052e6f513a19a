"""Every bus socket that faces a peer gets its options here, so none is forgotten.

    sock = peersock.make(ctx, zmq.PULL, rcvhwm=hwm, linger=0)

`ZMQ_MAXMSGSIZE` is MAX_MESSAGE_BYTES on all of them: libzmq reads a frame's
length before its bytes and disconnects a peer announcing a larger one, so a
200 MB frame costs nothing (it was read whole, then copied, before: +368 MiB).
The limit is codec.MAX_FRAME_BYTES, the largest frame any decoder of the bus
accepts, so nothing legitimate is cut; the broker's `--max-payload` refuses,
counts and logs what lies between its limit and this one. libzmq applies it per
frame, so a replay answer of many events is not one "message" here.

The sockets (tests/bus/test_peersock.py lists them): broker ingress PULL, acked
ingress ROUTER, replay ROUTER, egress XPUB (its inbound subscriptions);
streamer SUB and replay DEALER; the producers' wake-up PULL sockets, their relay
DEALER and every Publisher's PUSH.
"""

from __future__ import annotations

from typing import Any, TypeVar

import zmq

from bus import codec

MAX_MESSAGE_BYTES = codec.MAX_FRAME_BYTES

SocketT = TypeVar("SocketT", bound="zmq.Socket[Any]")


def configure(
    sock: SocketT,
    *,
    rcvhwm: int | None = None,
    sndhwm: int | None = None,
    linger: int | None = None,
    router_mandatory: bool | None = None,
) -> SocketT:
    """Set the options every peer-facing socket has, and the ones its caller asks for; returns `sock`."""
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if sndhwm is not None:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    if linger is not None:
        sock.setsockopt(zmq.LINGER, linger)
    if router_mandatory is not None:
        sock.setsockopt(zmq.ROUTER_MANDATORY, int(router_mandatory))
    return sock


def make(ctx: zmq.Context[SocketT], kind: int, **options: Any) -> SocketT:
    """A new socket of `ctx` with `configure`'s options."""
    return configure(ctx.socket(kind), **options)
