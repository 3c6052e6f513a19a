"""The streamer fuzzed: generated hostile logins, credentials, query strings, Last-Event-IDs, admin calls and paths.

Each example is one request on a new connection to streamer.server.make_server
(the server its process runs: tolerant Last-Event-ID, timeouts) over the seeded
world and a real broker; tests/hostile.py says what every answer must be.
Cost: ~15 s for these tests on this machine (one worker).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.ioloop
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bus import decimals
from streamer.handlers import parse_id
from streamer.server import MAX_BODY_BYTES, make_server
from streamer.services import Services
from tests.hostile import (
    HOSTILE_SETTINGS,
    Answer,
    Big,
    broken_bodies,
    changes_of,
    check_answer,
    exchange,
    headers_too_large,
    hostile_text,
    json_numbers,
    json_values,
    mutated,
    raw_request,
    render,
    shown_short,
    trap_number_text,
    url_pieces,
    watched_log,
)
from tests.hostile_json import hostile_json_bodies
from tests.ports import listen_on_free_port
from tests.streamer.conftest import World

# Limits out of the way: a 429 is a documented answer, but one on every example would hide the rest.
ROOMY = pytest.mark.streamer_config(login_per_address=100_000, login_per_user=100_000, max_streams_per_user=100_000)
LOGIN_STATUSES = {200, 400, 401, 413, 429}
STREAM = b"/api/events/stream"


@pytest.fixture
def streamer(services: Services, io_loop: tornado.ioloop.IOLoop) -> Iterator[int]:
    """The port of the streamer's server (make_server, as its process runs it)."""
    server = make_server(services)
    yield listen_on_free_port(server)
    server.stop()


def ask(io_loop: tornado.ioloop.IOLoop, port: int, request: bytes) -> Answer:
    answer: Answer = io_loop.run_sync(lambda: exchange(port, request))
    return answer


def still_serving(io_loop: tornado.ioloop.IOLoop, port: int, world: World) -> None:
    """A normal request is still answered: u10's strategies."""
    answer = ask(io_loop, port, raw_request("GET", b"/api/strategies", [(b"Authorization", f"Bearer {world.users['u10'].token}".encode())]))
    assert answer.status == 200, answer


def bearer(world: World, name: str) -> tuple[bytes, bytes]:
    return b"Authorization", f"Bearer {world.users[name].token}".encode()


login_values = st.one_of(hostile_text, hostile_text, json_values, st.sampled_from(["u10", "u10-pw", "root", "U10", "u10 ", "u10\x00"]))
login_documents = st.one_of(
    changes_of(["username", "password"], login_values).map(lambda changes: mutated({"username": "u10", "password": "u10-pw"}, changes)),
    changes_of(["username", "password"], login_values).map(lambda changes: mutated({"username": "u10", "password": "wrong"}, changes)),
    json_values,
)


@ROOMY
@HOSTILE_SETTINGS
@given(document=login_documents, raw=st.one_of(st.none(), st.none(), st.none(), broken_bodies, hostile_json_bodies()),
       content_type=st.sampled_from([b"application/json", b"text/plain", b"application/x-www-form-urlencoded"]))
def test_hostile_login_bodies_are_200_400_401_413_or_429(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, document: Any, raw: bytes | None, content_type: bytes
) -> None:
    body = raw if raw is not None else render(document).encode("utf-8", "surrogatepass")
    with watched_log() as log:
        answer = ask(io_loop, streamer, raw_request("POST", b"/api/login", [(b"Content-Type", content_type)], body))
        check_answer(answer, LOGIN_STATUSES)
        assert (answer.status == 413) == (len(body) > MAX_BODY_BYTES), answer  # CONTRACT section 3: body_too_large
        if answer.status != 200:
            assert "set-cookie" not in answer.headers
        log.check()
    still_serving(io_loop, streamer, world)


def tampered(token: str) -> st.SearchStrategy[str]:
    """A real credential with a character changed, cut, doubled, or joined to another (spaces around it are no change)."""
    return st.one_of(
        st.integers(0, len(token) - 1).map(lambda i: token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]),
        st.integers(0, len(token) - 1).map(lambda i: token[:i]),
        st.just(token + token), st.just(token + " x"), st.just(token + "\x00"), st.just(token.swapcase()), st.just(token + "%00"),
    )


# Header values as a client may send them (latin-1, no CR/LF, which end the line; control bytes Tornado refuses).
header_text = st.one_of(
    hostile_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.sampled_from([Big(b"a" * 30_000), Big(b"x" * 8000), b"=" * 100, b";" * 100, b'"' * 3, b"\\", b"%ff%00", b"\xff\xfe"]),
).map(lambda value: shown_short(value.replace(b"\r", b"").replace(b"\n", b"")))


@ROOMY
@HOSTILE_SETTINGS
@given(data=st.data(), path=st.sampled_from([b"/api/strategies", b"/api/events/stats", STREAM + b"?strategy_id=1"]))
def test_hostile_credentials_are_401_or_what_the_credential_allows(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, data: st.DataObject, path: bytes
) -> None:
    token = world.users["u10"].token
    authorization = data.draw(st.one_of(
        st.builds(lambda scheme, value: shown_short(scheme + value), st.sampled_from([b"Bearer ", b"bearer ", b"BEARER  ", b"Basic ", b"", b"Bearer"]),
                  st.one_of(tampered(token).map(str.encode), header_text)),
        header_text,
    ))
    cookie = data.draw(st.one_of(
        header_text,
        st.builds(lambda value: shown_short(b"tradestream_session=" + value), header_text),
        # Shaped like Tornado's signed values: version 1 (`value|timestamp|signature`) and 2, forged.
        st.builds(lambda value: b"tradestream_session=" + value, st.sampled_from([
            b"abc|123|def", b"YWJj|1700000000|" + b"0" * 40, b"YWJj|0170|sig", b"|||", b"2|1:0|10:1700000000|19:tradestream_session|4:YWJj|00",
            b"2|1:0|10:9999999999|19:tradestream_session|4:YWJj|" + b"0" * 64, b"2|99999999999999999999:0|", b"2|-1:0|", b"999|x"])),
        st.builds(lambda value: b"tradestream_session=" + value, st.sampled_from([b"abc|123|def", b"YWJj|1700000000|" + b"0" * 40])),
        st.lists(st.sampled_from([b"a=1", b"tradestream_session=x", b"=", b"b", b'"c"=d']), min_size=2, max_size=50).map(b"; ".join),
    ))
    # The bearer token wins over the cookie (CONTRACT section 3): each alone too, and repeated.
    headers = data.draw(st.sampled_from([
        [(b"Cookie", cookie)], [(b"Authorization", authorization)], [(b"Cookie", cookie), (b"Authorization", authorization)],
        [(b"Cookie", cookie)] * 2, [(b"Authorization", authorization)] * 2, [],
    ]))
    with watched_log() as log:
        request = raw_request("GET", path, headers)
        answer = ask(io_loop, streamer, request)
        event("sent " + " and ".join(sorted({name.decode() for name, _ in headers})) if headers else "no credential")
        # 403 only for stats (u10 is no admin); a stream that opens with a tampered token would be a hole.
        if not headers_too_large(request, answer):
            check_answer(answer, {401, 403} if b"stats" in path else {401}, bad_http=True)
        log.check()
    still_serving(io_loop, streamer, world)


forwarded = st.one_of(header_text, st.sampled_from([
    b"1.2.3.4", b"1.2.3.4, 5.6.7.8", b"::1", b"2001:db8::1, ::ffff:10.0.0.1", b"999.1.1.1", b"1.2.3.4:80", b"unknown", b",,,",
    b"http", b"https", b"HTTPS", b"https, http", b"ftp", b"", b"fe80::1%eth0", b"[::1]",
]))


@pytest.mark.streamer_config(trust_proxy=True, login_per_address=100_000, login_per_user=100_000)
@settings(HOSTILE_SETTINGS, max_examples=40)  # a login's password check is ~35 ms of scrypt
@given(forwarded_for=st.lists(forwarded, max_size=2), proto=st.lists(forwarded, max_size=2), right=st.booleans())
def test_behind_a_proxy_any_forwarded_header_is_a_plain_login(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, forwarded_for: list[bytes], proto: list[bytes], right: bool
) -> None:
    # --trust-proxy: the last X-Forwarded-For entry is the address (a login bucket), the last X-Forwarded-Proto the scheme.
    headers = [*((b"X-Forwarded-For", value) for value in forwarded_for), *((b"X-Forwarded-Proto", value) for value in proto)]
    body = b'{"username": "u11", "password": "%s"}' % (b"u11-pw" if right else b"wrong")
    with watched_log() as log:
        request = raw_request("POST", b"/api/login", headers, body)
        answer = ask(io_loop, streamer, request)
        if not headers_too_large(request, answer):
            check_answer(answer, {200, 401}, bad_http=True)
        if answer.status == 200:
            last_proto = b",".join(proto).rsplit(b",", 1)[-1].strip().lower() if proto else b""
            assert ("Secure" in answer.headers["set-cookie"]) == (last_proto == b"https"), (proto, answer.headers)
        log.check()
    still_serving(io_loop, streamer, world)


QUERY_NAMES = [b"strategy_id", b"limit", b"before", b"last_event_id", b"x", b"strategy_id[]", b"STRATEGY_ID", b""]
queries = st.lists(
    st.tuples(st.sampled_from(QUERY_NAMES), url_pieces),
    max_size=4,
).map(lambda pairs: b"&".join(name + b"=" + value for name, value in pairs))
# The answers each path documents (CONTRACT section 3) for u10, who may read strategies 1, 4, 10 and 11.
QUERY_PATHS = {
    b"/api/orders": {200, 400, 403},
    b"/api/positions": {200, 400, 403},
    b"/api/batches/latest": {200, 400, 403},
    STREAM: {200, 400, 403, 409},
}


@ROOMY
@HOSTILE_SETTINGS
@given(path=st.sampled_from(sorted(QUERY_PATHS)), query=queries,
       strategy=st.sampled_from([b"strategy_id=1&", b"strategy_id=3&", b"strategy_id=4&", b""]))
def test_hostile_query_strings_are_400_or_the_documented_answer(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, path: bytes, query: bytes, strategy: bytes
) -> None:
    with watched_log() as log:
        answer = ask(io_loop, streamer, raw_request("GET", path + b"?" + strategy + query, [bearer(world, "u10")]))
        check_answer(answer, QUERY_PATHS[path])
        if answer.status == 200 and path == STREAM:
            assert b"event: connection" in answer.body, answer.body
        log.check()
    still_serving(io_loop, streamer, world)


last_event_ids = st.one_of(
    header_text,
    st.builds(lambda a, b: f"{a}-{b}".encode(), st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70)),
    st.sampled_from([b"0-0", b"1-1", b"-1", b"1--1", b"01-1", b"1-01", b"1-\xd9\xa1", b"1-1 ", b"1-1\x00", b"\x00", b"\x1b[31m",
                     b"1\r1", b"9223372036854775807-9223372036854775807", Big(b"1-" + b"9" * 5000), b"-" * 1000]),
)


@ROOMY
@HOSTILE_SETTINGS
@given(value=last_event_ids, twice=st.booleans())
def test_any_last_event_id_gets_the_stream_never_an_http_error(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, value: bytes, twice: bool
) -> None:
    # CONTRACT section 3: an id that cannot be parsed (control bytes such as NUL included) gets resync, never an error.
    headers = [bearer(world, "u10"), *[(b"Last-Event-ID", value)] * (2 if twice else 1)]
    with watched_log() as log:
        request = raw_request("GET", STREAM + b"?strategy_id=1", headers)
        answer = ask(io_loop, streamer, request)
        if not headers_too_large(request, answer):  # a Last-Event-ID sent twice can take the block past 64 KiB
            check_answer(answer, {200})
            assert b"event: connection" in answer.body, answer.body
        log.check()
    still_serving(io_loop, streamer, world)


# (method, path, a valid body): every action of the admin API (streamer/admin_api.py); `{}` is an id in the path.
ADMIN_CALLS = [
    ("POST", b"/api/admin/users", {"username": "fuzz", "password": "pw", "is_admin": False}),
    ("POST", b"/api/admin/users/{}/password", {"password": "new-pw"}),
    ("POST", b"/api/admin/users/{}/deactivate", None),
    ("POST", b"/api/admin/users/{}/activate", None),
    ("POST", b"/api/admin/accounts", {"username": "u2", "name": "acct", "exchange": "paper", "capital": "1000.5"}),
    ("POST", b"/api/admin/strategies", {"owner": "root", "name": "Fuzz", "group_name": "fuzz"}),
    ("POST", b"/api/admin/links", {"strategy_id": 2, "account_id": 1}),
    ("DELETE", b"/api/admin/links", {"strategy_id": 2, "account_id": 1}),
    ("POST", b"/api/admin/strategies/{}/deactivate", None),
    ("POST", b"/api/admin/strategies/{}/activate", None),
    ("DELETE", b"/api/admin/strategies/{}", None),
    ("POST", b"/api/admin/nothing", {}),
]
ADMIN_FIELDS = ["username", "password", "is_admin", "name", "exchange", "capital", "owner", "group_name", "strategy_id", "account_id"]
# Users 2..9 and 11 (u10 asks still_serving's question, root asks the admin's; neither may be deactivated).
path_ids = st.one_of(st.sampled_from([b"2", b"5", b"9", b"11", b"12", b"999"]), url_pieces).filter(
    lambda piece: parse_id(piece) not in (1, 10))


@ROOMY
@settings(HOSTILE_SETTINGS, max_examples=150)
@given(call=st.sampled_from(ADMIN_CALLS), path_id=path_ids, changes=changes_of(ADMIN_FIELDS, st.one_of(json_values, trap_number_text)),
       raw=st.one_of(st.none(), st.none(), broken_bodies), method=st.sampled_from([None, None, None, "GET", "PUT", "POST", "DELETE"]),
       who=st.sampled_from(["root", "root", "root", "u10", None]), query=st.one_of(st.just(b""), queries))
def test_hostile_admin_calls_are_4xx_or_their_answer(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, call: tuple[str, bytes, dict[str, Any] | None],
    path_id: bytes, changes: list[tuple[str, str, Any]], raw: bytes | None, method: str | None, who: str | None, query: bytes,
) -> None:
    verb, path, template = call
    target = path.replace(b"{}", path_id.replace(b"/", b"%2f") or b"%20") + (b"?" + query if query else b"")
    if raw is not None:
        body = raw
    elif template is None and not changes:
        body = b""
    else:
        body = shown_short(render(mutated(template or {}, changes)).encode("utf-8", "surrogatepass"))
    headers = [(b"Content-Type", b"application/json"), *([bearer(world, who)] if who else [])]
    with watched_log() as log:
        answer = ask(io_loop, streamer, raw_request(method or verb, target, headers, body))
        # Past the limit an admin endpoint answers 413 (a method it has not: 405); a path of none, Tornado's bare 400.
        check_answer(answer, {200, 201, 400, 401, 403, 404, 405, 409, 413}, bad_http=len(body) > MAX_BODY_BYTES)
        if who != "root" and answer.status is not None:
            assert answer.status in {400, 401, 403, 404, 405, 413}, answer
        if answer.status == 201 and "capital" in answer.json():  # the equity of its position events carries it
            assert re.match(decimals.PATTERN, answer.json()["capital"]), answer.json()
        log.check()
    still_serving(io_loop, streamer, world)


ACCOUNT_NUMBERS = itertools.count()


@ROOMY
@HOSTILE_SETTINGS
@given(capital=st.one_of(trap_number_text, json_numbers, st.decimals(allow_nan=False, allow_infinity=False).map(str)))
def test_a_capital_is_400_or_one_the_wire_carries(io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, capital: Any) -> None:
    name = f"acct-{next(ACCOUNT_NUMBERS)}"  # a new one each time: a repeated name is a 409
    body = render({"username": "u11", "name": name, "exchange": "paper", "capital": capital}).encode()
    with watched_log() as log:
        answer = ask(io_loop, streamer, raw_request("POST", b"/api/admin/accounts", [bearer(world, "root")], body))
        check_answer(answer, {201, 400})
        if answer.status == 201:  # the equity of the account's position events carries its digits
            assert re.match(decimals.PATTERN, answer.json()["capital"]), answer.json()
        log.check()
    still_serving(io_loop, streamer, world)


prefixes = st.sampled_from([b"/", b"/static/", b"/api/", b"/api/events/", b"/static/../", b"//", b"/favicon.ico/", b"/reasons.json",
                            b"/metrics", b"/healthz", b"/livez", b"/api/events/stats", b"/api/logout"])


@ROOMY
@settings(HOSTILE_SETTINGS, max_examples=150)
@given(prefix=prefixes, pieces=st.lists(url_pieces, max_size=3), query=st.one_of(st.just(b""), queries),
       method=st.sampled_from(["GET", "GET", "HEAD", "POST", "DELETE", "OPTIONS", "FOO"]), signed_in=st.booleans())
def test_any_path_and_method_is_a_json_4xx_or_the_page(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, prefix: bytes, pieces: list[bytes], query: bytes,
    method: str, signed_in: bool,
) -> None:
    target = prefix + b"/".join(pieces) + (b"?" + query if query else b"")
    request = raw_request(method, target, [bearer(world, "u10")] if signed_in else [])
    with watched_log() as log:
        answer = ask(io_loop, streamer, request)
        if method != "HEAD":  # a HEAD answer has no body to check
            check_answer(answer, {200, 301, 302, 304, 400, 401, 403, 404, 405, 409})
        log.check()
    still_serving(io_loop, streamer, world)


# Header lines that break HTTP/1.1 or try to: injected lines, repeats that disagree, folding, sizes.
header_lines = st.lists(
    st.one_of(
        st.sampled_from([
            b"Host: a", b"Host: a\r\nHost: b", b"Content-Length: 5", b"Content-Length: 5\r\nContent-Length: 6",
            b"Content-Length: -1", b"Content-Length: 1e3", b"Content-Length: 0x10", b"Content-Length: \xd9\xa1",
            b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: xchunked",
            b"X-A: 1\r\n continued", b" leading: space", b"No-Colon", b": no-name", b"X-\x00: 1", b"X-A: \x00",
            b"X-A: \x7f", b"X-A:\x0b1", b"Last-Event-ID: 1\r2", b"Last-Event-ID: \x00\x01", b"Expect: 100-continue",
            b"Expect: 999-x", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket", Big(b"X-Big: " + b"b" * 70_000),
            Big(b"Cookie: " + b"c=" * 20_000), b"X-Forwarded-For: 1.2.3.4", b"Content-Type: application/json; charset=\xff",
        ]),
        st.builds(lambda name, value: name + b": " + value, st.binary(min_size=1, max_size=10).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b), header_text),
    ),
    max_size=4,
)


# A Content-Length beyond the body sent makes the server wait for the rest: the body timeout closes it, within ANSWER_S.
@pytest.mark.streamer_config(**ROOMY.kwargs, body_timeout=1.0)
@HOSTILE_SETTINGS
@given(lines=header_lines, path=st.sampled_from([b"/api/strategies", b"/livez", STREAM + b"?strategy_id=1", b"/api/login"]),
       method=st.sampled_from(["GET", "POST"]), body=st.sampled_from([b"", b"{}", b"0\r\n\r\n", b"zz\r\nabc\r\n"]))
def test_broken_or_injected_header_lines_are_refused_without_a_500(
    io_loop: tornado.ioloop.IOLoop, streamer: int, world: World, lines: list[bytes], path: bytes, method: str, body: bytes
) -> None:
    head = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *lines, b"Connection: close"]
    request = b"\r\n".join(head) + b"\r\n\r\n" + body
    with watched_log() as log:
        answer = ask(io_loop, streamer, request)
        if headers_too_large(request, answer):
            pass
        elif answer.status is not None:  # a body shorter than its Content-Length, or a chunked one cut: closed
            check_answer(answer, {200, 400, 401, 404, 405, 413, 417}, bad_http=True)
        log.check()
    still_serving(io_loop, streamer, world)
