"""Heartbeats are spread over slices: each key once per round, never all keys in one turn of the loop."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bus.replay import Position
from bus.topics import StreamKey
from streamer.channel import Channel, Channels
from streamer.client import Client
from streamer.heartbeat import SLICES, Heartbeat
from streamer.stats import StreamerStats


def test_a_round_of_slices_beats_every_key_once_and_no_slice_beats_them_all() -> None:
    async def main() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        channels = Channels(SLICES)
        peers: list[socket.socket] = []
        listener = socket.create_server(("127.0.0.1", 0))
        for n in range(200):
            key = StreamKey(1 + n % 7, n + 1)
            theirs = socket.create_connection(listener.getsockname())
            mine, _ = listener.accept()
            peers.append(theirs)
            channel = channels[key] = Channel(key, Position(1, 0))
            channel.join(Client(mine, key, 50, lambda _c: None, loop))
        stats = StreamerStats()
        heartbeat = Heartbeat(channels, stats, 10.0)
        per_slice = []
        for _ in range(SLICES):
            heartbeat.beat_slice()
            per_slice.append(sum(1 for p in peers if _readable(p)))
            for peer in peers:
                _drain(peer)
        heartbeat2 = Heartbeat(channels, stats, 10.0)
        for _ in range(SLICES):
            heartbeat2.beat_slice()
        beats = [_drain(peer).count(b"event: heartbeat") for peer in peers]
        for channel in channels.values():
            for client in channel.members:
                client.abort("test")
        for peer in peers:
            peer.close()
        listener.close()
        assert stats.heartbeats == 2
        return per_slice, beats

    per_slice, beats = asyncio.run(main())
    assert sum(per_slice) == 200
    assert max(per_slice) < 200 // 4
    assert beats == [1] * 200


def _readable(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


def _drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_channels_keep_each_slice_to_the_channels_there_as_keys_come_go_and_return() -> None:
    channels = Channels(SLICES)
    keys = [StreamKey(1 + n % 5, n + 1) for n in range(500)]
    for key in keys:
        channels[key] = Channel(key, Position(1, 0))
    for key in keys[::3]:
        del channels[key]
    for key in keys[::6]:
        channels[key] = Channel(key, Position(2, 0))  # a key back after its last stream left
    replaced = channels[keys[1]] = Channel(keys[1], Position(3, 0))  # and one set again while present
    sliced = [channel for index in range(SLICES) for channel in channels.in_slice(index)]
    assert sorted(map(id, sliced)) == sorted(map(id, channels.values()))
    assert all(channel.hash % SLICES == index for index in range(SLICES) for channel in channels.in_slice(index))
    assert replaced in channels.in_slice(replaced.hash % SLICES)
    assert len(channels) == len(keys) - len(keys[::3]) + len(keys[::6])


@pytest.mark.parametrize("change", ["pop", "popitem", "setdefault", "update", "clear"])
def test_channels_refuse_the_dict_changes_that_would_bypass_the_slices(change: str) -> None:
    channels = Channels(SLICES)
    key = StreamKey(1, 1)
    channels[key] = Channel(key, Position(1, 0))
    with pytest.raises(TypeError):
        getattr(channels, change)(key)
    assert list(channels) == [key] and channels.in_slice(channels[key].hash % SLICES) == [channels[key]]
