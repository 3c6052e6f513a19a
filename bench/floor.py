"""The floor of --broker-only: a PULL → XPUB loop in pyzmq doing no work, run like the broker.

Same poll-then-drain pattern, same per-frame calls (bus/frames.py), same HWMs,
same transport (loopback tcp:// or ipc://), but no decoding, checking,
sequencing or header: what it costs per event is the price of the wake-ups and
of libzmq's I/O-thread hand-offs alone, so that broker minus floor is the
broker's own work.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from multiprocessing.connection import Connection
from typing import Any

import zmq

from bus.frames import SNDMORE, recv_frames, send_frame

DRAIN_BATCH = 1024
HWM = 100_000


def _forward(pull: zmq.Socket[Any], xpub: zmq.Socket[Any]) -> int:
    """Move what waits on `pull` to `xpub`, at most DRAIN_BATCH messages; how many."""
    moved = 0
    for _ in range(DRAIN_BATCH):
        try:
            frames = recv_frames(pull)
        except zmq.Again:
            break
        for frame in frames[:-1]:
            send_frame(xpub, frame, SNDMORE)
        send_frame(xpub, frames[-1])
        moved += 1
    return moved


def _drop_subscriptions(xpub: zmq.Socket[Any]) -> None:
    while True:
        try:
            recv_frames(xpub)
        except zmq.Again:
            return


def floor_process(conn: Connection, cores: set[int] | None, transport: str = "tcp") -> None:
    """Entry: bind on ephemeral ports (or unix sockets), send the endpoints, forward until "stop"; answer "count"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cores:
        os.sched_setaffinity(0, cores)
    ctx: zmq.Context[Any] = zmq.Context.instance()
    pull, xpub = ctx.socket(zmq.PULL), ctx.socket(zmq.XPUB)
    pull.setsockopt(zmq.RCVHWM, HWM)
    xpub.setsockopt(zmq.SNDHWM, HWM)
    folder = tempfile.mkdtemp(prefix="tradestream-floor-")
    pull.bind(f"ipc://{folder}/ingress" if transport == "ipc" else "tcp://127.0.0.1:*")
    xpub.bind(f"ipc://{folder}/publish" if transport == "ipc" else "tcp://127.0.0.1:*")
    conn.send({"ingress": pull.getsockopt(zmq.LAST_ENDPOINT).decode(), "publish": xpub.getsockopt(zmq.LAST_ENDPOINT).decode()})
    poller = zmq.Poller()
    for sock in (pull, xpub):
        poller.register(sock, zmq.POLLIN)
    poller.register(conn.fileno(), zmq.POLLIN)  # the pipe is polled with the sockets: no call per wake-up
    forwarded = 0
    while True:
        ready = dict(poller.poll(100))
        if xpub in ready:
            _drop_subscriptions(xpub)
        if pull in ready:
            forwarded += _forward(pull, xpub)
        if conn.fileno() in ready:
            if conn.recv() == "stop":
                break
            conn.send(forwarded)
    for sock in (pull, xpub):
        sock.close(linger=0)
    shutil.rmtree(folder, ignore_errors=True)
    conn.send(forwarded)
