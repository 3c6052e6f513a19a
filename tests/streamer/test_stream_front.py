"""The stream's lean path in front of the Application (streamer.app.make_front): same answers, same logs, the rest routed."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from tornado.httpclient import AsyncHTTPClient

from streamer.handlers import UNAUTHORIZED
from tests.streamer.conftest import World
from tests.streamer.sse_client import DEADLINE_S, SseStream

REFUSED = {"error": "unauthorized", "message": UNAUTHORIZED}


class RawConnection:
    """One keep-alive HTTP/1 connection: raw requests in, (status line, headers, body) out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, request: bytes) -> tuple[str, dict[str, str], bytes]:
        self.writer.write(request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {name: value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("Content-Length", "0"))), DEADLINE_S)
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


def get(path: str, version: str = "1.1", *lines: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/{version}", "Host: x", *lines, "", ""]).encode()


@pytest.mark.gen_test
@pytest.mark.parametrize(("version", "lines"), [("1.1", ()), ("1.0", ("Connection: keep-alive",))], ids=["http/1.1", "http/1.0 keep-alive"])
async def test_a_refused_stream_gets_the_headers_and_body_of_any_handlers_refusal_and_keeps_the_connection(
    port: int, version: str, lines: tuple[str, ...]
) -> None:
    connection = await RawConnection.open(port)
    try:
        stream = await connection.ask(get("/api/events/stream?strategy_id=1", version, *lines))  # the lean path
        handler = await connection.ask(get("/api/strategies", version, *lines))  # a RequestHandler, same connection
        live = await connection.ask(get("/livez", version, *lines))  # and still open
    finally:
        connection.close()
    for status, headers, body in (stream, handler):
        assert status == "HTTP/1.1 401 Unauthorized" and json.loads(body) == REFUSED
        assert headers["Content-Length"] == str(len(body))
    unlike = {"Date", "Content-Length"}
    assert {k: v for k, v in stream[1].items() if k not in unlike} == {k: v for k, v in handler[1].items() if k not in unlike}
    assert set(stream[1]) == set(handler[1]) and stream[1]["Cache-Control"] == "no-store"
    assert live[0] == "HTTP/1.1 200 OK"


@pytest.mark.gen_test
async def test_the_lean_path_writes_the_access_line_of_the_applications_requests(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    connection = await RawConnection.open(port)
    try:
        await connection.ask(get("/api/events/stream?strategy_id=1"))
        await connection.ask(get("/api/strategies"))
    finally:
        connection.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tornado.access"]
    assert len(lines) == 2 and {level for level, _ in lines} == {logging.DEBUG}  # a 4xx: DEBUG only
    assert re.fullmatch(r"401 GET /api/events/stream\?strategy_id=1 \(127\.0\.0\.1\) \d+\.\d\dms", lines[0][1]), lines
    assert re.fullmatch(r"401 GET /api/strategies \(127\.0\.0\.1\) \d+\.\d\dms", lines[1][1]), lines


@pytest.mark.gen_test
async def test_an_access_line_shows_at_most_200_characters_of_the_uri(port: int, caplog: pytest.LogCaptureFixture) -> None:
    # A 2xx is an INFO line: with the whole URI, its size was the client's choice (up to the 64 KiB of headers).
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    long_query = "?x=" + "a" * 60_000
    connection = await RawConnection.open(port)
    try:
        for path in ("/reasons.json", "/api/events/stream"):
            await connection.ask(get(path + long_query))
    finally:
        connection.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tornado.access"]
    assert [level for level, _ in lines] == [logging.INFO, logging.DEBUG]
    for (_, line), path in zip(lines, ("/reasons.json", "/api/events/stream")):
        assert line.startswith(f"{200 if path == '/reasons.json' else 401} GET {path}?x=aaa") and len(line) < 300, line[:400]
        assert f"...({len(path + long_query)} chars) (127.0.0.1)" in line


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_of_the_stream_path_are_still_the_applications_405(
    http_client: AsyncHTTPClient, base_url: str, world: World, method: str
) -> None:
    response = await http_client.fetch(
        base_url + "/api/events/stream?strategy_id=1", method=method, body=b"", headers=world.users["u10"].bearer,
        raise_error=False, allow_nonstandard_methods=True,
    )
    assert response.code == 405 and json.loads(response.body)["error"] == "method_not_allowed"


@pytest.mark.gen_test
async def test_other_paths_are_still_routed_by_the_application(http_client: AsyncHTTPClient, base_url: str) -> None:
    for path, status in (("/api/events/stream/", 404), ("/api/events/streams", 404), ("/API/events/stream", 404),
                         ("/api/events/%73tream?strategy_id=1", 404), ("/livez", 200), ("/api/strategies", 401)):
        response = await http_client.fetch(base_url + path, raise_error=False)
        assert response.code == status, path


@pytest.mark.gen_test
async def test_a_stream_request_that_may_carry_a_body_is_the_applications_which_parses_it_first(port: int) -> None:
    connection = await RawConnection.open(port)
    try:
        # Tornado refuses this body before any handler runs: 400, where the lean path would say 401 first.
        status, _, body = await connection.ask(get(
            "/api/events/stream?strategy_id=1", "1.1",
            "Content-Type: application/x-www-form-urlencoded", "Content-Encoding: gzip", "Content-Length: 0",
        ))
    finally:
        connection.close()
    assert status == "HTTP/1.1 400 Bad Request" and json.loads(body)["error"] == "invalid_request"


@pytest.mark.gen_test
async def test_a_stream_opened_through_the_application_is_the_same_stream(port: int, world: World) -> None:
    # A body (ignored) takes the request past the lean path to StreamHandler, whose admission is the same open_stream.
    stream = await SseStream.open(port, "/api/events/stream?strategy_id=1", {**world.users["u10"].bearer, "Content-Length": "0"})
    try:
        assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
        connected = await stream.next_event()
        assert connected is not None and connected.event == "connection" and connected.json()["user_id"] == 10
    finally:
        await stream.close()
