"""The streamer's request bodies past 64 KiB: a JSON 413 body_too_large on login and the admin API (CONTRACT section 3).

Through streamer.server.make_server (its limits as the process has them), on a real
socket: exactly 64 KiB is read, one byte more is 413, checked before the credentials;
a declared body past 1 MiB is answered at once; a chunked one is counted as it comes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import tornado.ioloop

from streamer.server import make_server
from streamer.services import Services
from tests.hostile import Answer, exchange, raw_request, watched_log
from tests.ports import listen_on_free_port
from tests.streamer.conftest import World
from web.bodies import DISCARD_CAP, MAX_BODY


@pytest.fixture
def streamer(services: Services, io_loop: tornado.ioloop.IOLoop) -> Iterator[int]:
    server = make_server(services)
    yield listen_on_free_port(server)
    server.stop()


def padded(document: dict[str, object], size: int) -> bytes:
    """`document` as JSON with a "padding" string that makes it exactly `size` bytes."""
    base = json.dumps({**document, "padding": ""}).encode()
    return base.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(base)) + b'"')


def ask(io_loop: tornado.ioloop.IOLoop, port: int, request: bytes) -> Answer:
    answer: Answer = io_loop.run_sync(lambda: exchange(port, request))
    return answer


LOGIN = {"username": "u10", "password": "u10-pw"}
# (name, path, who sends it (None: nobody), the answer at exactly MAX_BODY bytes)
ENDPOINTS = [
    ("login", b"/api/login", None, 200),
    ("an admin action, as the admin", b"/api/admin/users/2/password", "root", 200),
    ("an admin action, as nobody: the size comes first", b"/api/admin/users/2/password", None, 401),
]


@pytest.mark.parametrize(("path", "who", "at_limit"), [pytest.param(*row[1:], id=row[0]) for row in ENDPOINTS])
def test_a_body_one_byte_past_64_kib_is_a_json_413_and_64_kib_is_read(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, path: bytes, who: str | None, at_limit: int
) -> None:
    headers = [(b"Content-Type", b"application/json")]
    if who is not None:
        headers.append((b"Authorization", f"Bearer {world.users[who].token}".encode()))
    document = LOGIN if path == b"/api/login" else {"password": "new-pw"}
    with watched_log() as log:
        assert ask(io_loop, streamer, raw_request("POST", path, headers, padded(document, MAX_BODY))).status == at_limit
        answer = ask(io_loop, streamer, raw_request("POST", path, headers, padded(document, MAX_BODY + 1)))
        assert (answer.status, answer.json()) == (413, {"error": "body_too_large", "message": f"the body exceeds {MAX_BODY} bytes"})
        log.check(requests=2)


def test_a_declared_body_past_1_mib_is_answered_before_it_is_sent(io_loop: tornado.ioloop.IOLoop, streamer: int) -> None:
    request = raw_request("POST", b"/api/login", [(b"Content-Length", str(DISCARD_CAP + 1).encode())])
    answer = ask(io_loop, streamer, request)  # headers only: the body never comes
    assert (answer.status, answer.json()["error"]) == (413, "body_too_large")


def test_a_chunked_body_past_64_kib_is_413(io_loop: tornado.ioloop.IOLoop, streamer: int) -> None:
    chunk = b"x" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    request = raw_request("POST", b"/api/login", [(b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"application/json")])
    answer = ask(io_loop, streamer, request + chunks)
    assert (answer.status, answer.json()["error"]) == (413, "body_too_large")


def test_a_chunked_body_past_1_mib_is_413_too(io_loop: tornado.ioloop.IOLoop, streamer: int) -> None:
    # Past DISCARD_CAP the read loop stops reading (Tornado's "chunked body too large"): the same 413, not a 400.
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(DISCARD_CAP // len(chunk) + 1)) + b"0\r\n\r\n"
    request = raw_request("POST", b"/api/login", [(b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"application/json")])
    answer = ask(io_loop, streamer, request + chunks)
    assert (answer.status, answer.json()["error"]) == (413, "body_too_large")


def test_a_declared_body_past_64_kib_on_another_post_is_413(io_loop: tornado.ioloop.IOLoop, streamer: int) -> None:
    # /api/logout reads no body: past the server's max_body_size Tornado refuses it, and that is a 413 as well.
    answer = ask(io_loop, streamer, raw_request("POST", b"/api/logout", [(b"Content-Length", str(MAX_BODY + 1).encode())]))
    assert (answer.status, answer.json()["error"]) == (413, "body_too_large")
